"""``netspec train`` and ``netspec calibrate``.

Every expectation is computed here independently of netspec.train: accuracy and mean
IoU from the saved weights' own predictions, BN statistics from forward hooks on the
BN inputs, "identical" as bitwise equality of every tensor. Runs that measure time or
need several processes go through the real command line (subprocess); the rest call
``netspec.cli.main`` in-process to save torch's start-up.

All of it runs on one CPU thread per process: these networks are far too small to gain
from a second thread, and on a busy 2-core machine OpenMP threads spinning against
other processes made a training step several times slower (measured: 40 ms with one
thread vs 250 ms with two), which would turn the timing assertion into noise.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import netspec
from netspec.backends.torch import build, load_weights_into
from netspec.cli import main
from netspec.load import loads
from netspec.weights import check_weights, load_weights

ROOT = Path(__file__).resolve().parent.parent
DIGITS_CNN = str(ROOT / "specs" / "digits_cnn.yaml")
MLP = str(ROOT / "specs" / "mlp.yaml")
UNET = str(ROOT / "specs" / "unet.yaml")
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

BN = torch.nn.modules.batchnorm._BatchNorm
sklearn_datasets = pytest.importorskip("sklearn.datasets")  # in the [test] extra


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netspec", *args], capture_output=True,
                          text=True, cwd=ROOT, env=ONE_THREAD, timeout=300)


def digits(flat: bool = False) -> tuple[np.ndarray, np.ndarray]:
    bunch = sklearn_datasets.load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    return (x if flat else x.reshape(-1, 1, 8, 8)), bunch.target.astype(np.int64)


def heldout_split(n: int, fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, ...]:
    """The documented split: a numpy default_rng(seed) permutation, the first
    round(n·fraction) held out (both index sets sorted)."""
    order = np.random.default_rng(seed).permutation(n)
    k = round(n * fraction)
    return np.sort(order[k:]), np.sort(order[:k])


def model_from(spec: str, weights: Path, **vars) -> torch.nn.Module:
    model = build(spec, **vars)
    load_weights_into(model, weights)
    return model.eval()


def bn_inputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each BatchNorm's input over ``x`` in one forward pass (the model's current mode)."""
    seen: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_pre_hook(
        lambda mod, args, name=name: seen.__setitem__(name, args[0].detach().double()))
        for name, m in model.named_modules() if isinstance(m, BN)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def channel_stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased variance (channels on dim 1)."""
    flat = t.transpose(0, 1).reshape(t.shape[1], -1)
    return flat.mean(1), flat.var(1, unbiased=True)


# ---------------------------------------------------------------- digits end to end
@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("digits") / "cnn.safetensors"
    start = time.perf_counter()
    done = cli("train", DIGITS_CNN, "--data", "digits", "--epochs", "5", "-o", str(out))
    wall = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    return {"ckpt": out, "wall": wall, "stdout": done.stdout}


@pytest.mark.slow
def test_digits_cnn_trains_to_95_percent_and_exports(digits_run, tmp_path):
    ckpt = digits_run["ckpt"]
    # a guard against a step gone slow, not a benchmark: 5 s on an idle 2-core machine,
    # 19 s with two busy processes beside it, 55 s on a busier one (issue 21); the old
    # bound of a minute judged the machine's load, not netspec
    assert digits_run["wall"] < 110, f"took {digits_run['wall']:.1f} s"
    lines = digits_run["stdout"].splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 5  # not a TTY: one per epoch

    x, y = digits()
    _, held = heldout_split(len(x))
    model = model_from(DIGITS_CNN, ckpt)
    with torch.no_grad():
        torch_pred = model(torch.from_numpy(x[held])).argmax(1).numpy()
    accuracy = float((torch_pred == y[held]).mean())
    assert accuracy >= 0.95

    tensors, meta = load_weights(ckpt)
    check_weights(netspec.load(DIGITS_CNN), tensors, str(ckpt))
    assert meta["netspec.epoch"] == "5"
    assert meta["netspec.bn_stats"] == "ema"
    assert meta["netspec.spec"] == Path(DIGITS_CNN).read_text()
    # the command's own held-out figure is over the same samples
    assert json.loads(meta["netspec.metrics"])["heldout"]["accuracy"] == pytest.approx(accuracy)

    onnx_path = tmp_path / "cnn.onnx"
    done = cli("export", DIGITS_CNN, "--weights", str(ckpt), "-o", str(onnx_path))
    assert done.returncode == 0, done.stderr
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    onnx_scores = session.run(None, {inp.name: x[held]})[0]
    assert np.array_equal(onnx_scores.argmax(1), torch_pred)


# ---------------------------------------------------------------- calibrate
def test_calibrate_sets_each_bn_to_its_input_statistics(digits_run, tmp_path):
    ckpt = digits_run["ckpt"]
    x, _ = digits()
    train, held = heldout_split(len(x))
    results = {}
    for split, idx in (("train", train), ("heldout", held)):
        out = tmp_path / f"cal-{split}.safetensors"
        # a batch size that does not divide the data: the result must not depend on it
        assert main(["calibrate", DIGITS_CNN, "--weights", str(ckpt), "--data", "digits",
                     "--split", split, "--batch-size", "100", "-o", str(out)]) == 0
        tensors, meta = load_weights(out)
        assert meta["netspec.bn_stats"] == f"calibrate-{split}"
        model = model_from(DIGITS_CNN, out)
        # the stored statistics are those of each BN's input when the calibrated model
        # runs in eval mode (as inference does) over the whole split in one batch
        inputs = bn_inputs(model, torch.from_numpy(x[idx]))
        assert len(inputs) == 3
        for name, t in inputs.items():
            mean, var = channel_stats(t)
            bn = model.get_submodule(name)
            torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-4, atol=1e-5)
        results[split] = tensors

    trained, _ = load_weights(ckpt)
    for key, value in trained.items():
        if "running_" in key or key.endswith("num_batches_tracked"):
            continue
        assert np.array_equal(value, results["train"][key]), key  # no gradient step
    # statistics from the held-out images are not those from the training images
    stats = [k for k in trained if "running_" in k]
    assert all(not np.allclose(results["train"][k], results["heldout"][k]) for k in stats)


BRANCHY = """
netspec: 1
name: branchy
input: [3, 8, 8]
layers:
  - conv: {out: 8, k: 3}
  - norm: batch
  - relu
  - dropout: {drop: 0.5}        # before a BN: calibration must run it in eval mode
  - residual:                   # stride 2 and more channels: a projection shortcut with BN
      body:
        - conv: {out: 16, k: 3, stride: 2, bias: false}
        - norm: batch
        - relu
        - conv: {out: 16, k: 3, bias: false}
        - norm: batch
  - relu
  - global_avgpool
  - flatten
  - linear: {out: 32}
  - norm: batch                 # BatchNorm1d on features
  - relu
  - linear: {out: 4}
"""


def test_calibrate_api_on_branches_dropout_and_features():
    from netspec.train.bn_stats import calibrate, stages

    graph = loads(BRANCHY)
    assert any(len(s) >= 2 for s in stages(graph))  # body and shortcut BN side by side
    torch.manual_seed(0)
    model = build(graph)
    for m in model.modules():  # non-trivial γ, δ so each stage changes the next one
        if isinstance(m, BN):
            torch.nn.init.uniform_(m.weight, 0.5, 2.0)
            torch.nn.init.uniform_(m.bias, -1.0, 1.0)
    params = {k: v.clone() for k, v in model.named_parameters()}
    x = torch.randn(50, 3, 8, 8) * 3 + 2
    model.train()
    calibrate(model, graph, lambda: (x[i:i + 7] for i in range(0, len(x), 7)))
    assert model.training  # the caller's mode is given back

    model.eval()
    inputs = bn_inputs(model, x)
    assert len(inputs) == 5
    for name, t in inputs.items():
        mean, var = channel_stats(t)
        bn = model.get_submodule(name)
        torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-4, atol=1e-5)
    for k, v in model.named_parameters():
        assert torch.equal(v, params[k])


# ---------------------------------------------------------------- BN statistics "epoch"
def _small_digits_data(n: int = 400):
    from netspec.train.data import Data, Split

    x, y = digits()
    return Data(Split(x[:n], y[:n]), Split(x[n:n + 100], y[n:n + 100]),
                {"data": "test", "val_data": None, "val_fraction": 0.0, "seed": 0})


def _train_recording_last_epoch(bn_stats: str):
    from netspec.train.loop import TrainConfig, Trainer

    graph = netspec.load(DIGITS_CNN)
    trainer = Trainer(graph, _small_digits_data(), TrainConfig(epochs=2, bn_stats=bn_stats))
    trainer.train_epoch()
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    handles = []
    for name, m in trainer.model.named_modules():
        if isinstance(m, BN):
            handles.append(m.register_forward_pre_hook(
                lambda mod, args, name=name: seen.setdefault(name, []).append(
                    channel_stats(args[0].detach().double()))))
    trainer.train_epoch()
    for h in handles:
        h.remove()
    return trainer, seen


def test_bn_stats_epoch_is_the_average_of_the_last_epochs_batches():
    trainer, seen = _train_recording_last_epoch("epoch")
    assert len(seen) == 3
    for name, stats in seen.items():
        assert len(stats) == trainer.steps_per_epoch
        bn = trainer.model.get_submodule(name)
        mean = torch.stack([m for m, _ in stats]).mean(0)
        var = torch.stack([v for _, v in stats]).mean(0)
        torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-4, atol=1e-6)
        assert int(bn.num_batches_tracked) == trainer.steps_per_epoch

    # the check can tell: the default running average is not that average
    trainer, seen = _train_recording_last_epoch("ema")
    name, stats = next(iter(seen.items()))
    mean = torch.stack([m for m, _ in stats]).mean(0)
    assert not torch.allclose(trainer.model.get_submodule(name).running_mean.double(), mean,
                              rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- resume
def test_resume_continues_exactly(tmp_path, capsys):
    x, y = digits()
    data = tmp_path / "d.npz"
    np.savez(data, x=x[:300], y=y[:300])
    common = [DIGITS_CNN, "--data", str(data), "--epochs", "2", "--batch-size", "32",
              "--bn-stats", "epoch"]
    straight, split = tmp_path / "straight.safetensors", tmp_path / "split.safetensors"
    assert main(["train", *common, "-o", str(straight)]) == 0
    assert main(["train", *common, "--stop-after", "1", "-o", str(split)]) == 0
    assert load_weights(split)[1]["netspec.epoch"] == "1"
    # a resumed run keeps its settings: a contradicting flag is refused
    assert main(["train", DIGITS_CNN, "--data", str(data), "--resume", str(split),
                 "--lr", "0.5", "-o", str(split)]) == 2
    assert "--lr 0.5" in capsys.readouterr().err
    assert main(["train", DIGITS_CNN, "--data", str(data), "--resume", str(split),
                 "-o", str(split)]) == 0

    a, meta_a = load_weights(straight)
    b, meta_b = load_weights(split)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert meta_b["netspec.epoch"] == "2" and meta_b["netspec.bn_stats"] == "epoch"
    assert meta_a["netspec.metrics"] == meta_b["netspec.metrics"]
    # the optimizer state (Adam moments, step) went on identically too
    sa = load_file(str(tmp_path / "straight.state.safetensors"))
    sb = load_file(str(tmp_path / "split.state.safetensors"))
    assert any(k.startswith("optim.") for k in sa)
    for k in sa:
        assert np.array_equal(sa[k], sb[k]), k


# ---------------------------------------------------------------- bad data
def _bad(tmp_path, capsys, x, y, spec=DIGITS_CNN) -> str:
    data = tmp_path / "bad.npz"
    np.savez(data, x=x, y=y)
    out = tmp_path / "never.safetensors"
    code = main(["train", spec, "--data", str(data), "--epochs", "1", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""  # refused before training: no "training …" line
    assert not out.exists()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_data_is_refused_before_training(tmp_path, capsys):
    x, y = digits()
    x, y = x[:40], y[:40]
    assert "shape [40, 3, 8, 8]" in _bad(tmp_path, capsys, np.repeat(x, 3, axis=1), y)
    assert "shape [40, 64]" in _bad(tmp_path, capsys, x.reshape(40, 64), y)
    assert "label 10 is outside 0…9" in _bad(tmp_path, capsys, x, np.where(y == 3, 10, y))
    assert "label -1" in _bad(tmp_path, capsys, x, np.where(y == 3, -1, y))
    err = _bad(tmp_path, capsys, x, y.astype(np.float32))
    assert "float32" in err and "integer" in err
    assert "y has shape [40, 1]" in _bad(tmp_path, capsys, x, y[:, None])


def test_digits_without_scikit_learn_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn → ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    out = tmp_path / "never.safetensors"
    assert main(["train", DIGITS_CNN, "--data", "digits", "--epochs", "1",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "pip install 'netspec[data]'" in err
    assert not out.exists()


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "there.safetensors"
    out.write_bytes(b"x")
    assert main(["train", MLP, "--data", "digits", "--epochs", "1", "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


# ---------------------------------------------------------------- schedule, groups
def test_schedule_warms_up_linearly_then_follows_a_cosine():
    from netspec.train.schedule import lr_at

    lrs = [lr_at(s, base_lr=1.0, total_steps=110, warmup=10) for s in range(110)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5)  # half way through the cosine
    assert lrs[109] == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_no_weight_decay_on_norms_and_biases():
    from netspec.train.loop import TrainConfig, Trainer

    trainer = Trainer(netspec.load(DIGITS_CNN), _small_digits_data(60),
                      TrainConfig(epochs=1, weight_decay=0.1))
    by_id = {id(p): name for name, p in trainer.model.named_parameters()}
    for group in trainer.optimizer.param_groups:
        names = [by_id[id(p)] for p in group["params"]]
        for name in names:
            owner, _, leaf = name.rpartition(".")
            norm = isinstance(trainer.model.get_submodule(owner),
                              BN)
            want = 0.0 if norm or leaf == "bias" else 0.1
            assert group["weight_decay"] == want, name


# ---------------------------------------------------------------- segmentation
def shapes(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images with one bright disc each; the mask marks the disc (class 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    x = rng.normal(0, 0.2, (n, 3, size, size)).astype(np.float32)
    y = np.zeros((n, size, size), np.int64)
    for i in range(n):
        cy, cx = rng.integers(8, size - 8, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(4, 8) ** 2
        y[i] = disc
        x[i][:, disc] += 1.0
    return x, y


def test_segmentation_trains_and_reports_mean_iou(tmp_path, capsys):
    train, val = tmp_path / "train.npz", tmp_path / "val.npz"
    xt, yt = shapes(48, 32, seed=1)
    xv, yv = shapes(16, 32, seed=2)
    np.savez(train, x=xt, y=yt)
    np.savez(val, x=xv, y=yv)
    out = tmp_path / "unet.safetensors"
    assert main(["train", UNET, "--set", "size=32", "--set", "width=8", "--data", str(train),
                 "--val-data", str(val), "--epochs", "2", "--batch-size", "16",
                 "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "mIoU" in stdout.splitlines()[-2]

    model = model_from(UNET, out, size=32, width=8)
    with torch.no_grad():
        pred = model(torch.from_numpy(xv)).argmax(1).numpy()
    ious = []
    for c in range(2):
        union = np.sum((pred == c) | (yv == c))
        if union:
            ious.append(np.sum((pred == c) & (yv == c)) / union)
    heldout = json.loads(load_weights(out)[1]["netspec.metrics"])["heldout"]
    assert heldout["miou"] == pytest.approx(float(np.mean(ious)), abs=1e-6)
    assert heldout["accuracy"] == pytest.approx(float((pred == yv).mean()), abs=1e-6)


# ---------------------------------------------------------------- several processes
@pytest.mark.slow
def test_torchrun_two_cpu_processes_end_identical(tmp_path):
    x, y = digits()
    data = tmp_path / "d.npz"
    np.savez(data, x=x[:256], y=y[:256])
    out = tmp_path / "ddp.safetensors"
    dumps = tmp_path / "ranks"
    dumps.mkdir()
    env = {**ONE_THREAD, "NETSPEC_TEST_DUMP_RANKS": str(dumps)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "netspec", "train", DIGITS_CNN, "--data", str(data), "--epochs", "1",
         "--batch-size", "32", "--device", "cpu", "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes (gloo)" in done.stdout
    assert done.stdout.count("epoch 1/1:") == 1  # only rank 0 prints

    rank0 = load_file(str(dumps / "rank0.safetensors"))
    rank1 = load_file(str(dumps / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for k in rank0:
        assert np.array_equal(rank0[k], rank1[k]), k
    tensors, _ = load_weights(out)
    check_weights(netspec.load(DIGITS_CNN), tensors, str(out))
    for k in tensors:  # (weights.save_weights stores 0-d counters as shape [1])
        assert np.array_equal(tensors[k].reshape(rank0[k].shape), rank0[k]), k
    # and it trained: the weights moved away from the seed's initialisation
    torch.manual_seed(0)
    init = build(DIGITS_CNN).state_dict()
    assert not torch.equal(init["fc.weight"], torch.from_numpy(tensors["fc.weight"]))
