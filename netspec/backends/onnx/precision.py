"""``--precision`` and ``--io-dtype``: what each precision means for the emitted model.

- fp32: weights, compute, inputs and outputs float32 (the default).
- fp16: weights and compute float16. Folds are done in float64 and rounded to half
  once (fold.py). Inputs and outputs stay float32 by default, with one Cast at each
  edge, so callers feed and read what they fed the fp32 model; ``--io-dtype fp16``
  declares them float16 (no casts: the caller keeps data in half end to end).
  Verified against torch (float32) with a tolerance suited to half: its unit roundoff
  is 2⁻¹¹ ≈ 4.9e-4, and the rounding of every layer's output adds up over a deep net,
  so the default is 1e-2 relative to the output's scale (the figure is reported).
- int8: the fp32 model, quantized by onnxruntime's static quantizer (quantize.py).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from netspec.errors import UsageError

PRECISIONS = ("fp32", "fp16", "int8")
IO_DTYPES = ("fp32", "fp16")
#: default verification tolerance per precision (int8 is judged on data, not by tolerance)
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 1e-4}

NUMPY = {"fp32": np.dtype(np.float32), "fp16": np.dtype(np.float16)}
ONNX = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16}


def check_precision(precision: str, io_dtype: str | None) -> str:
    """The I/O dtype for this precision; refuses --io-dtype without fp16."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision}: one of {', '.join(PRECISIONS)}")
    if io_dtype is None:
        return "fp32"
    if io_dtype not in IO_DTYPES:
        raise UsageError(f"--io-dtype {io_dtype}: one of {', '.join(IO_DTYPES)}")
    if precision != "fp16":
        raise UsageError(f"--io-dtype {io_dtype}: only with --precision fp16 (an "
                         f"{precision} model takes and returns float32)")
    return io_dtype
