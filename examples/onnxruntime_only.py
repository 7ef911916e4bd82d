"""Inference from an exported model with onnxruntime and numpy only: no torch, no netspec.

    netspec export specs/digits_cnn.yaml --weights digits.safetensors -o digits.onnx
    python examples/onnxruntime_only.py digits.onnx [inputs.npy]

Without an .npy file it runs a few random inputs of the model's input shape.
"""

import sys
import time

import numpy as np
import onnxruntime as ort

if len(sys.argv) < 2:
    sys.exit(__doc__)
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
inp, out = session.get_inputs()[0], session.get_outputs()[0]
print(f"input {inp.name} {inp.shape} {inp.type} → output {out.name} {out.shape}")

if len(sys.argv) > 2:
    x = np.load(sys.argv[2]).astype(np.float32)
else:  # the batch axis is symbolic ('batch'); the rest is fixed by the spec
    x = np.random.default_rng(0).normal(size=(4, *inp.shape[1:])).astype(np.float32)

start = time.perf_counter()
logits = session.run([out.name], {inp.name: x})[0]
ms = (time.perf_counter() - start) * 1e3
p = np.exp(logits - logits.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)
for i, (k, conf) in enumerate(zip(p.argmax(1), p.max(1), strict=True)):
    print(f"sample {i}: class {k} (p = {conf:.3f})")
print(f"{len(x)} samples in {ms:.1f} ms")
