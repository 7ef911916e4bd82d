"""Which ONNX opset netspec emits, and why.

Default: opset 17.

- Everything netspec's ops mean at inference can be written exactly with opset-17
  operators: Conv, ConvTranspose, Gemm, MaxPool/AveragePool (ceil_mode,
  count_include_pad, dilations), GlobalAveragePool, Resize (nearest/floor/asymmetric
  and linear/half_pixel), LayerNormalization (new in 17: the one operator we could not
  do without, for element-affine layer norm), InstanceNormalization, Flatten, Concat,
  Add/Sum/Mul, Relu/Clip/Sigmoid/Tanh/LeakyRelu/Erf.
- Opset 17 runs on onnxruntime ≥ 1.14 (early 2023), TensorRT ≥ 8.6, OpenVINO and the
  other runtimes people deploy to; a model at opset 23 refuses to load on anything
  older than onnxruntime 1.22. A user who exports once and ships the file gains
  nothing by requiring a newer runtime.
- The operators added later are conveniences over what 17 already expresses, so we
  emit an exact decomposition at 17 and the single operator where the user asks for a
  newer opset (``--opset``), choosing by ``opset`` in the emitters:

  ======================  ============================================  ===========
  netspec op              opset 17…(n−1)                                native at n
  ======================  ============================================  ===========
  gelu                    0.5·x·(1+Erf(x/√2)), or the tanh form         Gelu, 20
  groupnorm, layernorm    Reshape [N,G,-1] → InstanceNormalization →    GroupNorma-
  (per-channel γ, [C,H,W])  Reshape → Mul γ[C,1,1] → Add δ[C,1,1]       lization, 21
  rmsnorm (channels       x / Sqrt(ReduceMean(x·x) + ε) · γ             RMSNorma-
  +space, or [F])                                                       lization, 23
  ======================  ============================================  ===========

  GroupNormalization is used from 21 only: at 18–20 its scale and bias are per
  *group*, which cannot express torch's per-channel γ, δ (opset 21 fixed that).
  RMSNormalization normalises over the trailing axes from ``axis``, so netspec's
  default ``over: channels`` (per position, over C only) keeps the decomposition at
  every opset rather than transposing twice. ReduceMean takes its axes as an input
  from opset 18 on; the emitter writes either form.

All of these were checked against torch on onnxruntime 1.32 (tests/test_onnx_export.py
exports at 17 and at 23). The highest opset accepted is 23, the newest onnxruntime 1.32
implements and the newest the tests exercise.
"""

from __future__ import annotations

from netspec.errors import UsageError

DEFAULT_OPSET = 17
MIN_OPSET = 17
MAX_OPSET = 23

#: first opset where each single operator replaces our decomposition
GELU_OPSET = 20
MISH_OPSET = 18
GROUPNORM_OPSET = 21
RMSNORM_OPSET = 23
#: ReduceMean's axes moved from an attribute to an input
REDUCE_AXES_INPUT_OPSET = 18


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"--opset {opset}: netspec exports opsets {MIN_OPSET} to {MAX_OPSET} "
                         f"(default {DEFAULT_OPSET}; LayerNormalization needs 17)")
    return opset
