"""Issue 24: weights from a .safetensors file, which keeps no order, pair with the spec by
structure (module paths, numbered modules, shapes, the spec's layer order), never by
sorted names; where the shapes allow two pairings and the names do not say which, the
import is refused in one line; ``--write-map`` writes the pairing as a ``--map`` file.

References come from outside netspec: the hand-written torchvision and Ultralytics nets
of tests/reference_nets*.py, saved with their own module names; the imported weights
must make the spec's model compute what the reference's own forward computes.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file
from zoo import REFERENCES, randomize

import netspec
from netspec.cli import main
from netspec.errors import UsageError
from netspec.weights_import import Source, pair, spec_tensors

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

#: two linear layers of the same shape: nothing but the names tells them apart
TWIN = """\
netspec: 1
name: twin
input: [4]
layers:
  - linear: {out: 4, as: fc1}
  - relu
  - linear: {out: 4, as: fc2}
"""


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def reference(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    ref = REFERENCES[name]().eval()
    randomize(ref, seed=1)
    return ref


def outputs(y: object) -> list[torch.Tensor]:
    # a detector returns its outputs as a tuple (netspec) or a list (Ultralytics)
    return list(y) if isinstance(y, list | tuple) else [y]  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_the_zoo_from_safetensors_computes_the_references_outputs(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        torch_one_thread: None) -> None:
    ref = reference(name)
    src = tmp_path / f"{name}.safetensors"
    save_file(ref.state_dict(), str(src))  # the original names, sorted: no order kept
    out = tmp_path / "w.safetensors"
    code, stdout, err = run_cli(capsys, "weights", "import", SPECS / f"{name}.yaml", src,
                                "-o", out)
    assert code == 0, err
    assert "by structure (the file keeps no order)" in stdout.splitlines()[0]

    model = netspec.build(SPECS / f"{name}.yaml").eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in load_file(str(out)).items()},
                          strict=False)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))  # small: fast
    with torch.no_grad():
        got, want = outputs(model(x)), outputs(ref(x))
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def timm_name(key: str) -> str:
    """torchvision's efficientnet_b0 name → timm's for the same tensor (timm registers
    the same modules in the same order under its own names: conv_stem, blocks.S.B.conv_pw,
    bn1, conv_dw, bn2, se.conv_reduce, se.conv_expand, conv_pwl, bn3, conv_head…)."""
    top = {"features.0.0": "conv_stem", "features.0.1": "bn1", "features.8.0": "conv_head",
           "features.8.1": "bn2", "classifier.1": "classifier"}
    module, _, tensor = key.rpartition(".")
    if module in top:
        return f"{top[module]}.{tensor}"
    stage, block, part, layer = re.fullmatch(r"features\.(\d)\.(\d+)\.block\.(\d)\.(\w+)",
                                             module).groups()
    # torchvision's (block part, layer in it) → timm's module
    separable = {("0", "0"): "conv_dw", ("0", "1"): "bn1", ("1", "fc1"): "se.conv_reduce",
                 ("1", "fc2"): "se.conv_expand", ("2", "0"): "conv_pw", ("2", "1"): "bn2"}
    inverted = {("0", "0"): "conv_pw", ("0", "1"): "bn1", ("1", "0"): "conv_dw",
                ("1", "1"): "bn2", ("2", "fc1"): "se.conv_reduce",
                ("2", "fc2"): "se.conv_expand", ("3", "0"): "conv_pwl", ("3", "1"): "bn3"}
    name = (separable if stage == "1" else inverted)[part, layer]
    return f"blocks.{int(stage) - 1}.{block}.{name}.{tensor}"


def test_timms_names_for_efficientnet_b0_pair_by_structure() -> None:
    """The issue's case: timm's efficientnet_b0 names (bn1 and bn2 of one shape in every
    inverted-residual block) from a .safetensors, paired with the torchvision-layout
    spec, every tensor where torch registers it."""
    ref = reference("efficientnet_b0")
    state = {k: v.numpy() for k, v in ref.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    tensors = {timm_name(k): v for k, v in sorted(state.items(), key=lambda kv:
                                                   timm_name(kv[0]))}
    assert len(tensors) == len(state) == 311
    graph = netspec.load(SPECS / "efficientnet_b0.yaml")
    p = pair(graph, Source(tensors, ordered=False), "timm.safetensors")
    assert p.how == "structure" and p.by_names
    # torchvision's state_dict order is the spec's (test_bundled_specs checks it)
    for t, key in zip(spec_tensors(graph), state, strict=True):
        np.testing.assert_array_equal(p.tensors[t.name], state[key])


def test_write_map_writes_the_pairing_which_reads_back_by_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = reference("resnet18")
    src = tmp_path / "r18.safetensors"
    save_file(ref.state_dict(), str(src))
    spec = SPECS / "resnet18.yaml"
    first, the_map = tmp_path / "a.safetensors", tmp_path / "map.yaml"
    code, stdout, err = run_cli(capsys, "weights", "import", spec, src, "-o", first,
                                "--write-map", the_map)
    assert code == 0, err
    assert f"wrote {the_map}" in stdout
    # the map names every source tensor with the spec tensor at its place in torch's
    # registration order (the reference's state_dict order is torch's)
    written = yaml.safe_load(the_map.read_text())
    names = [k for k in ref.state_dict() if not k.endswith("num_batches_tracked")]
    assert list(written) == names
    assert list(written.values()) == [t.name for t in spec_tensors(netspec.load(spec))]
    assert written["layer3.0.downsample.1.running_var"] == "layer3.0.shortcut.bn1.running_var"

    second = tmp_path / "b.safetensors"
    code, stdout, err = run_cli(capsys, "weights", "import", spec, src, "-o", second,
                                "--map", the_map)
    assert code == 0, err
    assert stdout.startswith("paired 102 tensors by name")
    a, b = load_file(str(first)), load_file(str(second))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])

    # --write-map alone writes the map and nothing else; an existing map needs --force,
    # and is refused before any work
    alone = tmp_path / "only"
    alone.mkdir()
    assert run_cli(capsys, "weights", "import", spec, src, "--write-map",
                   alone / "m.yaml")[0] == 0
    assert [p.name for p in alone.iterdir()] == ["m.yaml"]
    before = the_map.read_bytes()
    code, _, err = run_cli(capsys, "weights", "import", spec, src, "--write-map", the_map)
    assert code == 2 and one_line(err) == f"{the_map}: exists; pass --force to replace it"
    assert the_map.read_bytes() == before
    # nothing to write, or one file asked for twice: refused before any work
    code, _, err = run_cli(capsys, "weights", "import", spec, src)
    assert code == 2 and one_line(err) == ("weights import: give -o OUT.safetensors, "
                                           "--write-map FILE.yaml, or both")
    twice = tmp_path / "twice"
    code, _, err = run_cli(capsys, "weights", "import", spec, src, "-o", twice,
                           "--write-map", twice)
    assert code == 2 and one_line(err) == f"{twice}: given as both -o and --write-map"
    assert not twice.exists()


def twin_source(names: tuple[str, str]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"{m}.{k}": rng.standard_normal((4, 4) if k == "weight" else (4,))
            .astype(np.float32) for m in names for k in ("weight", "bias")}


def test_two_ways_by_shape_is_refused_in_one_line_and_nothing_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "twin.yaml"
    spec.write_text(TWIN)
    src = tmp_path / "twin.safetensors"
    tensors = twin_source(("left", "right"))
    save_numpy(tensors, str(src))
    out, the_map = tmp_path / "w.safetensors", tmp_path / "m.yaml"
    code, stdout, err = run_cli(capsys, "weights", "import", spec, src, "-o", out,
                                "--write-map", the_map)
    assert (code, stdout) == (2, "")
    assert one_line(err) == (
        f"{src}: cannot tell 'left.weight' from 'right.weight' ([4, 4]): either could be "
        "'fc1.weight' of spec layer fc1 (linear) and the rest still fits, and their names "
        "do not say which (the file keeps no order to pair by); say it in a --map file "
        "('left.: fc1.' renames the module), or name the spec's layers as the source's are")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twin.safetensors", "twin.yaml"]

    # either remedy the line names resolves it, each way round
    for first in ("left", "right"):
        second = "right" if first == "left" else "left"
        renames = tmp_path / f"{first}.yaml"
        renames.write_text(f"{first}.: fc1.\n")
        code, stdout, err = run_cli(capsys, "weights", "import", spec, src, "--map",
                                    renames, "-o", out, "--force")
        assert code == 0, err
        assert "by structure" in stdout and "the names where the shapes allowed" in stdout
        got = load_file(str(out))
        for k in ("weight", "bias"):
            np.testing.assert_array_equal(got[f"fc1.{k}"], tensors[f"{first}.{k}"])
            np.testing.assert_array_equal(got[f"fc2.{k}"], tensors[f"{second}.{k}"])
    named = tmp_path / "named.yaml"
    named.write_text(TWIN.replace("fc1", "right").replace("fc2", "left"))
    code, stdout, err = run_cli(capsys, "weights", "import", named, src, "-o", out,
                                "--force")
    assert code == 0 and stdout.startswith("paired 4 tensors by name"), err


def test_numbered_names_order_same_shaped_modules(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``layers.9`` before ``layers.10`` (numbers, not text), and ``dense2`` before
    ``dense10``: in either case the names say the order, whichever way they sort."""
    spec = tmp_path / "twin.yaml"
    spec.write_text(TWIN)
    for names in (("layers.9", "layers.10"), ("dense2", "dense10")):
        tensors = twin_source(names)
        source = Source(tensors, ordered=False)
        p = pair(netspec.load(spec), source, "src")
        assert p.how == "structure"
        for k in ("weight", "bias"):
            np.testing.assert_array_equal(p.tensors[f"fc1.{k}"], tensors[f"{names[0]}.{k}"])
            np.testing.assert_array_equal(p.tensors[f"fc2.{k}"], tensors[f"{names[1]}.{k}"])


def test_a_shape_the_source_lacks_is_named(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    ref = reference("resnet18")  # 1000 classes; the spec is asked for 10
    src = tmp_path / "r18.safetensors"
    save_file(ref.state_dict(), str(src))
    out = tmp_path / "w.safetensors"
    code, _, err = run_cli(capsys, "weights", "import", SPECS / "resnet18.yaml", src,
                           "--set", "classes=10", "-o", out)
    assert code == 2
    assert one_line(err) == (
        f"{src}: no tensor of the source has the shape of 'fc.weight' [10, 512] of spec "
        "layer fc (linear), and 'fc.bias' [1000] fits no tensor of the spec (paired by "
        "structure: the names do not all match and the file keeps no order)")
    assert not out.exists()


def test_a_net_whose_names_say_nothing_is_refused_not_guessed() -> None:
    """resnet18 with every named module renamed to letters that say no order: its
    blocks' two BNs (and convs) have one shape, so two pairings fit; refused."""
    ref = reference("resnet18")
    rename: dict[str, str] = {}

    def plain(part: str) -> str:
        if part.isdigit() or part in ("weight", "bias", "running_mean", "running_var",
                                      "num_batches_tracked"):
            return part
        return rename.setdefault(part, "m" + "xyzw"[len(rename) % 4] * (len(rename) + 2))

    tensors = {".".join(map(plain, k.split("."))): v.numpy()
               for k, v in ref.state_dict().items()}
    with pytest.raises(UsageError, match=r"cannot tell '.+' from '.+'") as e:
        pair(netspec.load(SPECS / "resnet18.yaml"), Source(tensors, ordered=False), "src")
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ property


WIDTHS = st.sampled_from([3, 4, 5])
WORDS = st.text("abcdefgh", min_size=2, max_size=6)


@settings(max_examples=60, deadline=None)
@given(widths=st.lists(WIDTHS, min_size=2, max_size=6),
       words=st.lists(WORDS, min_size=6, max_size=6, unique=True),
       numbered=st.booleans(), rnd=st.randoms(use_true_random=False))
def test_by_structure_is_right_or_refused_never_wrong(widths: list[int], words: list[str],
                                                      numbered: bool, rnd: object) -> None:
    """A chain of linear layers saved under names that say nothing of the order (or, in
    the numbered case, ``layers.N``), in a shuffled file: pairing by structure gives back
    exactly the tensors put in, or — exactly when two layers have one shape and nothing
    numbers them — refuses, naming two of them."""
    layers = "".join(f"  - linear: {{out: {w}}}\n" for w in widths[1:])
    graph = netspec.loads(f"netspec: 1\nname: chain\ninput: [{widths[0]}]\nlayers:\n{layers}")
    want = spec_tensors(graph)
    names = [f"layers.{i}" if numbered else words[i] for i in range(len(widths) - 1)]
    truth = {}
    for t in want:
        layer = int(t.layer.removeprefix("fc")) - 1
        truth[f"{names[layer]}.{t.name.rpartition('.')[2]}"] = t.name
    rng = np.random.default_rng(len(truth))
    arrays = {src: rng.standard_normal(next(t.shape for t in want if t.name == dst))
              .astype(np.float32) for src, dst in truth.items()}
    order = list(arrays)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    source = Source({k: arrays[k] for k in order}, ordered=False)
    shapes = list(itertools.pairwise(widths))
    twins = any(a == b for a, b in itertools.combinations(shapes, 2))
    if twins and not numbered:
        with pytest.raises(UsageError, match="cannot tell"):
            pair(graph, source, "src")
        return
    p = pair(graph, source, "src")
    assert p.how == "structure"
    for src, dst in truth.items():
        np.testing.assert_array_equal(p.tensors[dst], arrays[src])


def test_many_same_shaped_modules_are_bounded_work() -> None:
    """300 same-shaped layers: numbered (``layer1`` … ``layer300``), paired in their
    numbers' order at once; named without an order, refused after a bounded search."""
    layers = "".join("  - linear: {out: 4}\n" for _ in range(300))
    graph = netspec.loads(f"netspec: 1\nname: deep\ninput: [4]\nlayers:\n{layers}")
    rng = np.random.default_rng(0)
    for numbered in (True, False):
        names = [f"layer{i + 1}" if numbered else "l" + "".join(
            "qrstuvwxyz"[int(d)] for d in f"{i:03d}") for i in range(300)]
        tensors = {f"{n}.{k}": rng.standard_normal((4, 4) if k == "weight" else 4)
                   .astype(np.float32) for n in reversed(names) for k in ("weight", "bias")}
        source = Source(tensors, ordered=False)
        if not numbered:
            with pytest.raises(UsageError, match="too many ways to try to pair"):
                pair(graph, source, "src")
            continue
        p = pair(graph, source, "src")
        assert p.by_names
        for i, n in enumerate(names):
            np.testing.assert_array_equal(p.tensors[f"fc{i + 1}.weight"], tensors[f"{n}.weight"])


#: a small ViT: both layouts below, at sizes a test builds in a blink
SMALL_VIT = {"image": 32, "patch": 8, "dim": 24, "depth": 3, "heads": 3, "mlp": 40,
             "classes": 10}


def test_torchvisions_vit_pairs_by_structure_with_its_module_names() -> None:
    """torchvision's ViT from a .safetensors: MultiheadAttention holds in_proj_* itself
    and out_proj as a child (two layers to pair, one netspec attention); every block
    begins and ends with a [D] tensor, so shapes and numbering alone allow shifting each
    block's norms by one — the spec's `ln_1`, `ln_2`, `ln` (torchvision's module names)
    say which. Each tensor lands where torch registers it."""
    from reference_nets_vit import vit_b_16

    torch.manual_seed(0)
    ref = vit_b_16(SMALL_VIT["classes"], **{k: v for k, v in SMALL_VIT.items()
                                            if k != "classes"})
    randomize(ref, seed=1)
    state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    graph = netspec.load(SPECS / "vit_b_16.yaml", **SMALL_VIT)
    p = pair(graph, Source(dict(sorted(state.items())), ordered=False), "vit.safetensors")
    assert p.how == "structure" and p.by_names
    for t, key in zip(spec_tensors(graph), state, strict=True):
        np.testing.assert_array_equal(p.tensors[t.name], state[key])


def timm_vit_name(spec_name: str) -> str:
    """The name timm's VisionTransformer gives each tensor of examples/vit_tiny_timm.yaml
    (written out here from timm's module tree, not taken from netspec)."""
    fixed = {"cls_token.token": "cls_token", "pos_embed.weight": "pos_embed"}
    if spec_name in fixed:
        return fixed[spec_name]
    return re.sub(r"^blocks\.(\d+)\.(fc[12])\.", r"blocks.\1.mlp.\2.", spec_name).replace(
        "patch_embed.", "patch_embed.proj.")


def test_timms_vit_pairs_by_structure_its_own_tensors_two_layers() -> None:
    """timm's ViT holds the class token and the position table as the model's own two
    parameters (two spec layers in one module) and attention's qkv and proj as two
    child modules (one netspec layer)."""
    graph = netspec.load(ROOT / "examples" / "vit_tiny_timm.yaml", **SMALL_VIT)
    rng = np.random.default_rng(0)
    ordered = {timm_vit_name(t.name): rng.standard_normal(t.shape).astype(np.float32)
               for t in spec_tensors(graph)}
    assert "blocks.0.attn.qkv.weight" in ordered and "blocks.2.mlp.fc2.bias" in ordered
    p = pair(graph, Source(dict(sorted(ordered.items())), ordered=False), "timm.safetensors")
    assert p.how == "structure"
    for t, key in zip(spec_tensors(graph), ordered, strict=True):
        np.testing.assert_array_equal(p.tensors[t.name], ordered[key])
