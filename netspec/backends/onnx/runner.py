"""Running an exported model: an onnxruntime session that knows its input, checks what
it is given, and measures its own latency."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import UsageError

#: ONNX element type names as onnxruntime reports them → numpy
_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
           "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def session_options(threads: int | None = None) -> Any:
    """The onnxruntime options of every session netspec opens. The memory-pattern
    planner is off: its plan is quadratic in the tensors alive at once (a concat of
    10,000 copies of a block ran 1.6 s with it, 0.1 s without; resnet18's latency is the
    same either way), and without it each tensor is taken from the arena when needed,
    computing the same values."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_mem_pattern = False
    if threads:
        options.intra_op_num_threads = threads
    return options


class OnnxRunner:
    """``OnnxRunner("model.onnx")(x)``: CUDA when onnxruntime has it, else CPU."""

    def __init__(self, path: str | Path, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        p = Path(path)
        if not p.is_file():
            raise UsageError(f"{p}: no such model file")
        if providers is None:
            available = ort.get_available_providers()
            providers = [e for e in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if e in available]
        try:
            self.session = ort.InferenceSession(str(p), session_options(threads),
                                                providers=providers)
        except Exception as e:  # onnxruntime raises its own classes for bad files
            raise UsageError(f"{p}: onnxruntime cannot load it ({e})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs) or "none"
            raise UsageError(f"{p}: the model has {len(inputs)} inputs ({names}); "
                             "netspec runs models with one input")
        (inp,) = inputs
        self.path = p
        self.input_name: str = inp.name
        #: dims as the model declares them: ints, or a name (``batch``) for dynamic ones
        self.input_shape: list[Any] = list(inp.shape)
        if inp.type not in _DTYPES:
            raise UsageError(f"{p}: the model's input {inp.name} is {inp.type}; netspec "
                             f"runs models whose input is one of {', '.join(_DTYPES)}")
        self.input_dtype = np.dtype(_DTYPES[inp.type])
        #: every output's name, in the model's order (a detector has several)
        self.output_names: list[str] = [o.name for o in self.session.get_outputs()]
        self.output_name: str = self.output_names[0]
        self.providers: list[str] = self.session.get_providers()

    def check(self, x: np.ndarray) -> None:
        """A clear UsageError when ``x`` cannot be the model's input."""
        want = "[" + ", ".join(str(d) for d in self.input_shape) + "]"
        if x.dtype != self.input_dtype:
            raise UsageError(f"input dtype {x.dtype}, the model wants {self.input_dtype} "
                             f"(convert with x.astype(np.{self.input_dtype}))")
        if x.ndim != len(self.input_shape):
            hint = " (add the batch axis: x[None])" if x.ndim == len(self.input_shape) - 1 \
                else ""
            raise UsageError(f"input shape {list(x.shape)}, the model wants {want}{hint}")
        for have, dim in zip(x.shape, self.input_shape, strict=True):
            if isinstance(dim, int) and have != dim:
                raise UsageError(f"input shape {list(x.shape)}, the model wants {want}")

    def feedable(self, x: np.ndarray) -> np.ndarray:
        """fp32 data for a model with fp16 inputs, or the reverse, cast to the model's
        dtype (half rounds as any cast would); any other dtype is left to ``check``."""
        halves = {np.dtype(np.float32), np.dtype(np.float16)}
        if x.dtype != self.input_dtype and {x.dtype, self.input_dtype} == halves:
            return x.astype(self.input_dtype)
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The first output (a classifier's or segmenter's only one)."""
        x = self.feedable(x)
        self.check(x)
        return self._run([self.output_name], {self.input_name: x})[0]

    def _run(self, names: list[str] | None, feed: dict[str, np.ndarray]) -> list[Any]:
        """``session.run``, with an onnxruntime failure as one line."""
        try:
            return self.session.run(names, feed)
        except Exception as e:  # onnxruntime raises its own classes
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UsageError(f"{self.path}: onnxruntime failed running it ({first})") \
                from None

    def run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every output, by name, in the model's order."""
        x = self.feedable(x)
        self.check(x)
        ys = self._run(None, {self.input_name: x})
        return dict(zip(self.output_names, ys, strict=True))

    def latency_text(self, x: np.ndarray, runs: int) -> str:
        lat = self.latency(x, runs)
        return (f"latency over {runs} runs (batch {len(x)}): p50 {lat['p50']:.3f} ms, "
                f"p90 {lat['p90']:.3f} ms, p99 {lat['p99']:.3f} ms")

    def latency(self, x: np.ndarray, runs: int, warmup: int = 3) -> dict[str, float]:
        """p50/p90/p99 (and mean) of ``runs`` calls on ``x``, in milliseconds."""
        x = self.feedable(x)
        self.check(x)
        feed = {self.input_name: x}
        for _ in range(warmup):
            self._run(None, feed)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            self._run(None, feed)
            times.append((time.perf_counter() - t) * 1e3)
        p50, p90, p99 = np.percentile(times, [50, 90, 99])
        return {"p50": float(p50), "p90": float(p90), "p99": float(p99),
                "mean": float(np.mean(times)), "runs": runs}
