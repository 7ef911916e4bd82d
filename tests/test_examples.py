"""Every script in examples/ runs, at a small size (--quick), in its own process.

OMP_NUM_THREADS=1: these models are tiny, and on a small shared machine torch's default
thread pool costs more than it gains."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def env(tmp_path: Path) -> dict[str, str]:
    """This interpreter's environment, with a `netspec` command that runs it."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "netspec"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m netspec "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run(cmd: list[str], tmp_path: Path, timeout: int = 120) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, env=env(tmp_path), capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_examples_all_have_tests() -> None:
    names = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh", ".yaml")}
    assert names == {"own_training_loop.py", "segmentation_unet.py", "onnxruntime_only.py",
                     "write_a_spec.sh", "write_a_spec.yaml", "seed_conventions.py",
                     "my_net.py",  # my_net.py: test_tutorial_imports_my_net_as_it_shows
                     # the timm specs: tests/test_vit.py (usage line, count) and
                     # tests/with_torchvision/test_vit_torchvision.py (against timm)
                     "vit_tiny_timm.yaml", "convnext_atto_timm.yaml"}


def test_own_training_loop(tmp_path: Path) -> None:
    out = run([sys.executable, str(EXAMPLES / "own_training_loop.py"), "--quick"], tmp_path)
    assert re.search(r"epoch 1: loss [\d.]+, held-out accuracy [\d.]+%", out)


def test_segmentation_unet(tmp_path: Path) -> None:
    out = run([sys.executable, str(EXAMPLES / "segmentation_unet.py"), "--quick"], tmp_path)
    m = re.search(r"torch ([\d.]+), onnxruntime ([\d.]+)", out)
    assert m and m.group(1) == m.group(2), out


def test_onnxruntime_only_never_imports_torch(tmp_path: Path) -> None:
    model = tmp_path / "digits.onnx"
    run([sys.executable, "-m", "netspec", "export", "specs/digits_cnn.yaml", "-o", str(model)],
        tmp_path)
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["onnxruntime_only.py", {str(model)!r}]
        runpy.run_path({str(EXAMPLES / "onnxruntime_only.py")!r}, run_name="__main__")
        heavy = [m for m in ("torch", "netspec") if m in sys.modules]
        assert not heavy, f"imported {{heavy}}"
    """)
    out = run([sys.executable, "-c", code], tmp_path)
    assert "input input ['batch', 1, 8, 8]" in out
    assert len(re.findall(r"^sample \d: class \d \(p = ", out, re.M)) == 4


def test_write_a_spec(tmp_path: Path) -> None:
    out = run(["bash", str(EXAMPLES / "write_a_spec.sh"), str(tmp_path)], tmp_path)
    assert out.count(": ok — tiny_resnet") == 2
    assert "stage2    stage(c=32, stride=2)" in out
    assert (tmp_path / "tiny_resnet.dot").read_text().startswith('digraph "tiny_resnet"')
    assert (tmp_path / "tiny_resnet.mmd").read_text().startswith("flowchart TB")


def test_seed_conventions(tmp_path: Path) -> None:
    out = run([sys.executable, str(EXAMPLES / "seed_conventions.py"), "--quick"], tmp_path)
    for line in ("{drop: 0.2, scaling: inverted}", "{keep: 0.8, scaling: classic }"):
        assert line in out
    assert "kept values = 1.250" in out and "every value = 0.800" in out
    strategies = re.findall(r"^  (ema|epoch|calibrate-train|calibrate-heldout) .*?([\d.]+)%$",
                            out, re.M)
    assert [s for s, _ in strategies] == ["ema", "epoch", "calibrate-train",
                                          "calibrate-heldout"]


@pytest.mark.parametrize("script", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_examples_are_short_and_documented(script: Path) -> None:
    text = script.read_text()
    assert text.startswith('"""') and "python examples/" in text
    assert len(text.splitlines()) <= 100


def test_tutorial_imports_my_net_as_it_shows(tmp_path: Path) -> None:
    """docs/tutorial.md, section 9: `netspec import my_net:make` writes exactly the spec
    the tutorial shows (so the page cannot drift from what the command does)."""
    tutorial = (ROOT / "docs" / "tutorial.md").read_text()
    section = tutorial.split("## 9. Bring your own network in", 1)[1]
    shown = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert shown, "section 9 shows the imported spec"
    out = tmp_path / "my_net.yaml"
    proc = subprocess.run([sys.executable, "-m", "netspec", "import", "my_net:make", "--name",
                           "my_net", "--input", "1,8,8", "-o", str(out)], cwd=EXAMPLES,
                          env=env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == shown.group(1)
