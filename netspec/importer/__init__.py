"""``netspec import``: an existing network (a PyTorch module, an ONNX file) read back into a
spec a person would have written.

The readers (netspec/backends/torch/readers.py and trace.py, netspec/backends/onnx/readers.py
and read.py) turn the source into a :class:`~netspec.importer.flat.FlatNet`: the layers in
order, each a netspec kind with its options, its inputs and the source tensors its weights
come from. Everything after that is pure Python and knows nothing of torch or onnx:
``structure.py`` finds residuals, branches, dense blocks and gates in the flat net and the
source's own module nesting, ``blocks.py`` turns repeated modules into ``blocks:`` with
args and consecutive copies into ``repeat:``, ``write.py`` factors ``defaults:`` and writes
the YAML; ``check.py`` resolves the written text as any spec and proves that its Graph is
the flat net, layer for layer.
"""
