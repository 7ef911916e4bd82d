"""netspec's version, on the lowest floor so that what records it in a file (weights'
and ONNX files' metadata) need not import the package root."""

__version__ = "0.1.0"
