"""Backends read the Graph, never the YAML: ``torch`` builds modules, ``onnx`` emits a
ModelProto. Each keeps one entry per op of netspec.kinds.OPS."""
