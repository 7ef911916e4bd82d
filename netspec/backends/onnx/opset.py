"""Which ONNX opsets netspec emits, and why.

Default: opset 17; accepted: 11 to the newest the installed onnx knows
(``onnx.defs.onnx_opset_version()``).

- Opset 17 runs on onnxruntime ≥ 1.14 (early 2023), TensorRT ≥ 8.6, OpenVINO and the
  other runtimes people deploy to, and has every operator netspec needs as one node
  (LayerNormalization is new in 17). Older runtimes, OpenCV's DNN module and TensorRT 7
  want 11 or 13, so every op also has an exact form at 11; newer opsets only replace a
  decomposition by the single operator, choosing by ``opset`` in the emitters:

  =====================  ==============================================  ==========
  netspec op             form below the boundary                         native at
  =====================  ==============================================  ==========
  split                  Split with ``split`` sizes as an attribute       sizes as an
                                                                         input, 13
  softmax (over C of     Transpose to NHWC → Softmax(axis 3) → back:      Softmax over
  [N, C, H, W])          before 13 Softmax flattens every axis from       one axis, 13
                         ``axis`` on, so axis=1 would mix C, H and W
  dfl (softmax over      Transpose the bins last → Softmax → back;       13
  the bins)              ReduceSum axes as an attribute
  hardswish              x · HardSigmoid(x; 1/6, 1/2)                    HardSwish, 14
  layernorm (and the     x−mean, ·itself, ReduceMean, +ε, Sqrt, Div,      LayerNorma-
  normalisations built   ·γ, +δ (biased variance, as torch)               lization, 17
  on it)
  ReduceMean             axes as an attribute                             axes as an
                                                                         input, 18
  mish                   x · Tanh(Softplus(x))                            Mish, 18
  gelu                   0.5·x·(1+Erf(x/√2)), or the tanh form            Gelu, 20
  groupnorm, layernorm   Reshape [N,G,-1] → InstanceNormalization →       GroupNorma-
  (per-channel γ, [C,H,W])  Reshape → Mul γ[C,1,1] → Add δ[C,1,1]         lization, 21
  rmsnorm (channels      x / Sqrt(ReduceMean(x·x) + ε) · γ                RMSNorma-
  +space, or [F])                                                         lization, 23
  attention              q, k, v MatMuls → Reshape/Transpose to heads →   Attention, 23
                         MatMul(q·scale, kᵀ) → Softmax → MatMul(·v) →
                         Transpose/Reshape the heads back
  =====================  ==============================================  ==========

  Operators whose inputs moved between 11 and 13 but whose meaning did not are written
  in the one form valid at every opset we emit: Clip takes min/max as inputs (from 11),
  Resize gets an empty ``roi`` input (required at 11–12, optional from 13), Pad is never
  emitted (Conv and the pools carry their own ``pads``).

  GroupNormalization is used from 21 only: at 18–20 its scale and bias are per
  *group*, which cannot express torch's per-channel γ, δ (opset 21 fixed that).
  RMSNormalization normalises over the trailing axes from ``axis``, so netspec's
  default ``over: channels`` (per position, over C only) keeps the decomposition at
  every opset rather than transposing twice.

- Every op has a form at 11, so ``NoForm`` (an op that cannot be written at the
  requested opset: exit 2 naming the layer and the lowest opset that works) is reached
  today only by int8 export, whose per-channel QuantizeLinear needs opset 13.

tests/test_onnx_deploy.py runs every op on each side of every boundary above, at 11 and
at the newest opset, against torch in onnxruntime (1.32, which loads opsets up to 28).
"""

from __future__ import annotations

import onnx

from netspec.errors import Pos, UsageError

DEFAULT_OPSET = 17
MIN_OPSET = 11
#: the newest opset the installed onnx defines (its checker rejects anything newer)
MAX_OPSET: int = onnx.defs.onnx_opset_version()

#: first opset where each single operator replaces our decomposition
GELU_OPSET = 20
MISH_OPSET = 18
GROUPNORM_OPSET = 21
RMSNORM_OPSET = 23
#: ONNX's own Attention (softmax(q·kᵀ·scale)·v over heads it splits and joins itself)
ATTENTION_OPSET = 23
#: ReduceMean's axes moved from an attribute to an input
REDUCE_AXES_INPUT_OPSET = 18
#: ReduceSum's axes moved from an attribute to an input (five opsets before ReduceMean's)
REDUCESUM_AXES_INPUT_OPSET = 13
#: Split's sizes moved from an attribute to an input
SPLIT_SIZES_INPUT_OPSET = 13
#: Softmax normalises one axis (before: every axis from ``axis`` on, flattened)
SOFTMAX_ONE_AXIS_OPSET = 13
HARDSWISH_OPSET = 14
#: Resize's roi input became optional (required, though unused, before)
RESIZE_ROI_OPTIONAL_OPSET = 13
LAYERNORM_OPSET = 17
#: QuantizeLinear/DequantizeLinear gained ``axis`` (per-channel int8 weights)
PER_CHANNEL_QUANT_OPSET = 13
#: every opset boundary above: the tests export every op on each side of each one
BOUNDARIES = sorted({GELU_OPSET, MISH_OPSET, GROUPNORM_OPSET, RMSNORM_OPSET, ATTENTION_OPSET,
                     REDUCE_AXES_INPUT_OPSET, REDUCESUM_AXES_INPUT_OPSET,
                     SPLIT_SIZES_INPUT_OPSET, SOFTMAX_ONE_AXIS_OPSET, HARDSWISH_OPSET,
                     RESIZE_ROI_OPTIONAL_OPSET, LAYERNORM_OPSET})


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"--opset {opset}: netspec exports opsets {MIN_OPSET} to {MAX_OPSET} "
                         f"(default {DEFAULT_OPSET}; {MAX_OPSET} is the newest the installed "
                         f"onnx {onnx.__version__} knows)")
    return opset


class NoForm(UsageError):
    """A layer with no form at the requested opset (exit 2): which, and the lowest
    opset that works."""

    def __init__(self, layer: str, pos: Pos, what: str, lowest: int, opset: int) -> None:
        super().__init__(f"{pos}: layer '{layer}': {what} needs opset {lowest} or newer "
                         f"(asked for {opset}); export with --opset {lowest}")
        self.layer = layer
        self.lowest = lowest
