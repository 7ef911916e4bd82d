"""A PyTorch module → the flat net of netspec layers (``netspec import``).

torch.fx traces the module symbolically (docs/architecture.md says why fx and not
torch.export): the modules some kind claims (netspec/backends/torch/readers.py) stay
leaves, everything else is traced through to functions and tensor methods. Then an
interpreter walks the fx graph once, in order:

- a leaf module, function or method some reader claims becomes a netspec layer, with its
  options, the source tensors of its weights and the module scopes around it;
- arithmetic on sizes (``x.size(1) // 2``) is computed, since every shape is known;
- a view (view, reshape, permute, transpose, flatten, contiguous…) changes no value, only
  where values sit: it is applied to an *index map* — the positions of the source tensor's
  values — and the layer kinds that only move values (flatten, shuffle, tokens, map,
  select of one token) recognise themselves in it, whatever code spelled them. A map
  that is ConvNeXt's channels-last permute stays pending for the layers that read
  channels-last data (a Linear or a LayerNorm over the channels) until it is permuted
  back.

A parameter expanded to the batch (ViT's ``class_token.expand(n, -1, -1)``) is the
parameter itself at the traced batch of 1. A module that returns its output with values
netspec does not compute (nn.MultiheadAttention's attention weights) gives a tuple whose
other items are refused only where the code uses them.

Anything else is refused in one line naming the module path and the operation.
"""

from __future__ import annotations

import bisect
import builtins
import dis
import functools
import inspect
import itertools
import operator
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from netspec.backends.torch.layers import add_into
from netspec.backends.torch.readers import (
    CANONICAL,
    CHANNELS_LAST,
    OTHER,
    READERS,
    Call,
    In,
    Mapped,
    Reader,
    behaviour_class,
    qualname,
)
from netspec.importer.flat import INPUT_ID, FlatNet, FlatNode, ScopeRef, Unmappable
from netspec.kinds import Shape

#: modules that pass their input through unchanged
_IDENTITY_MODULES = (nn.Identity,)
#: functions and methods that only move values (or change nothing): run on index maps
_MOVEMENT_FUNCTIONS = {torch.permute, torch.transpose, torch.reshape, torch.flatten,
                       torch.squeeze, torch.unsqueeze, torch.t, torch.swapaxes,
                       torch.movedim}
_MOVEMENT_METHODS = {"permute", "transpose", "view", "reshape", "flatten", "contiguous",
                     "squeeze", "unsqueeze", "t", "swapaxes", "movedim", "clone", "detach",
                     "view_as", "reshape_as"}
#: methods and attributes that read a tensor's size
_SIZE_METHODS = {"size", "dim", "numel", "ndimension"}
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass
class _Value:
    """A traced tensor: the flat node whose output it is a view of, and where its values
    sit: exactly that output (canonical), its channels-last permutation, or an explicit
    index map into it (batch axis first) for any other view."""

    node: int
    shape: Shape
    index: torch.Tensor | None = None
    layout: str = CANONICAL

    @property
    def torch_shape(self) -> tuple[int, ...]:
        if self.index is not None:
            return tuple(self.index.shape)
        if self.layout == CHANNELS_LAST:
            return (1, *self.shape[1:], self.shape[0])
        return (1, *self.shape)

    def indices(self) -> torch.Tensor:
        if self.index is not None:
            return self.index
        base = _arange(_numel(self.shape)).view(1, *self.shape)
        return base.permute(0, 2, 3, 1) if self.layout == CHANNELS_LAST else base


@functools.lru_cache(maxsize=8)
def _arange(n: int) -> torch.Tensor:
    # views of it are only read, never written: one per size is enough
    return torch.arange(n)


@dataclass
class _Param:
    """A parameter or buffer the code reads directly (``self.layer_scale * x``)."""

    name: str
    value: torch.Tensor
    first: bool = False


@dataclass
class _Absent:
    """A value a layer's module returns beside its output that netspec does not compute
    (nn.MultiheadAttention's attention weights): harmless unless something uses it."""

    what: str
    where: str


def _numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ---------------------------------------------------------------------------- dispatch
def _index() -> tuple[dict[str, list[tuple[str, Reader]]], dict[Any, list[tuple[str, Reader]]],
                      dict[str, list[tuple[str, Reader]]]]:
    # a class from outside torch is known by its qualified name and by its bare one
    by_module: dict[str, list[tuple[str, Reader]]] = {}
    by_function: dict[Any, list[tuple[str, Reader]]] = {}  # a function, or its name
    by_method: dict[str, list[tuple[str, Reader]]] = {}
    for op, reader in READERS.items():
        for name in reader.modules:
            by_module.setdefault(name, []).append((op, reader))
            if not name.startswith("torch."):
                by_module.setdefault(name.rpartition(".")[2], []).append((op, reader))
        for fn in reader.functions:
            by_function.setdefault(fn, []).append((op, reader))
        for m in reader.methods:
            by_method.setdefault(m, []).append((op, reader))
    return by_module, by_function, by_method


BY_MODULE, BY_FUNCTION, BY_METHOD = _index()


def _qualified(fn: Any) -> str:
    """A function's qualified name, as a reader names one from a library netspec does
    not import (torchvision's ``_patch_merging_pad``)."""
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}"
MOVEMENT_READERS = [(op, r) for op, r in READERS.items() if r.movement is not None]


def module_readers(module: nn.Module) -> list[tuple[str, Reader]]:
    cls = behaviour_class(module)
    readers = BY_MODULE.get(qualname(cls)) or BY_MODULE.get(cls.__name__, [])
    # a class known by a bare name is that kind only in the form its reader reads (a
    # user's own Attention wrapping nn.MultiheadAttention is traced through)
    return [(op, r) for op, r in readers if r.fits is None or r.fits(module)]


def claimed(module: nn.Module) -> bool:
    return bool(module_readers(module))


class _Proxy(fx.Proxy):
    """fx's Proxy that can also be iterated where the count is in the code: the parts of
    ``x.chunk(2, 1)`` (YOLOv8's ``list(self.cv1(x).chunk(2, 1))``)."""

    def __iter__(self) -> Iterator[Any]:
        n = _parts(self.node) or _unpacked(inspect.currentframe())
        if n is None:
            return self.tracer.iter(self)  # fx's own refusal
        return iter([self[i] for i in range(n)])


def _unpacked(frame: Any) -> int | None:
    """How many values the caller unpacks here (``n, c, h, w = x.shape``), as fx's own
    Proxy reads it from the calling code: it must be read from the caller's frame."""
    caller = frame.f_back if frame is not None else None
    if caller is None:
        return None
    code = list(dis.get_instructions(caller.f_code))
    at = bisect.bisect_left(code, caller.f_lasti, key=lambda i: i.offset)
    if at < len(code) and code[at].opname == "UNPACK_SEQUENCE":
        return int(code[at].argval)
    return None


def _parts(node: fx.Node) -> int | None:
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    args = node.args[1:] if len(node.args) > 1 else ()
    how = args[0] if args else node.kwargs.get("chunks", node.kwargs.get(
        "split_size_or_sections"))
    if name == "chunk" and isinstance(how, int):
        return how
    if name == "split" and isinstance(how, list | tuple):
        return len(how)
    return None


class _Tracer(fx.Tracer):
    """fx's tracer with the claimed modules as leaves, and the path of the module being
    traced kept for a message when tracing fails."""

    def __init__(self) -> None:
        # netspec's own residual add (a built model's) is one call, as operator.add is
        super().__init__(autowrap_functions=(add_into,))
        self.where: list[str] = []

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if claimed(m) or isinstance(m, (*_IDENTITY_MODULES, nn.Flatten)):
            return True
        if isinstance(m, _CONTAINERS):
            return False
        return super().is_leaf_module(m, module_qualified_name)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        self.where.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self.where.pop()


def _defaults(module: nn.Module) -> dict[str, Any]:
    """forward's arguments after the first that have defaults (timm's ``attn_mask=None``):
    fixed at them, so the network takes its one input."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def trace(module: nn.Module, name: str) -> fx.Graph:
    """The module's fx graph. Only the graph is read: no GraphModule is made, since its
    generated Python cannot name a submodule called ``in`` or ``my-conv`` (legal to
    ``add_module``), and the source module itself runs the forward."""
    tracer = _Tracer()
    try:
        graph = tracer.trace(module, concrete_args=_defaults(module) or None)
    except Unmappable:
        raise
    except Exception as e:  # fx raises TraceError, TypeError, AttributeError… on dynamic code
        where = tracer.where[-1] if tracer.where else name
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Unmappable(f"{where or name}: cannot be traced by torch.fx ({reason[:200]}); "
                         "netspec imports modules whose forward does not depend on the "
                         "values of its input") from None
    return graph


# ---------------------------------------------------------------------------- interpreter
class _Interpreter:
    def __init__(self, root: nn.Module, graph: fx.Graph, name: str, origin: str,
                 input_shape: Shape) -> None:
        self.root = root
        self.graph = graph
        self.input_shape = input_shape
        self.net = FlatNet(name, origin, input_shape, [], ())
        self.values: dict[fx.Node, Any] = {}
        self.shapes: dict[int, Shape] = {INPUT_ID: input_shape}
        self.called: dict[str, str] = {}  # module path → the fx node that called it
        self.splits = 0
        self.where = name
        #: the channel ranges code narrows each tensor to: its parts, as one split
        self.cuts = _narrow_cuts(graph)
        self.parts_of: dict[fx.Node, tuple[list[int], tuple[_Value, ...]]] = {}

    # -------------------------------------------------------------- values
    def _settle(self, v: _Value, fx_node: fx.Node) -> _Value:
        """After a view: the identity is the tensor itself, and ConvNeXt's permute is
        channels-last data; a view that a moving kind recognises becomes that layer;
        anything else stays pending."""
        assert v.index is not None
        shape, n = tuple(v.index.shape), _numel(v.shape)
        base = _arange(n).view(1, *v.shape)
        if shape == (1, *v.shape) and torch.equal(v.index, base):
            return _Value(v.node, v.shape)
        if (len(v.shape) == 3 and shape == (1, *v.shape[1:], v.shape[0])
                and torch.equal(v.index, base.permute(0, 2, 3, 1))):
            return _Value(v.node, v.shape, layout=CHANNELS_LAST)
        for op, reader in MOVEMENT_READERS:
            assert reader.movement is not None
            options = reader.movement(v.index, v.shape)
            if options is not None:
                kind = validated_kind(op)
                return self._add(fx_node, Mapped(kind, options), [_Value(v.node, v.shape)])
        return _Value(v.node, v.shape, v.index, OTHER)

    def _as_in(self, a: Any) -> Any:
        if isinstance(a, _Value):
            return In(a.shape, a.layout, source=a)
        if isinstance(a, _Param):
            own = _attr(self.root, a.name)
            return In(tuple(a.value.shape), CANONICAL, a.name, a.value, a.first,
                      tuple(own.shape), source=a)
        if isinstance(a, list | tuple):
            return type(a)(self._as_in(x) for x in a)
        if isinstance(a, dict):
            return {k: self._as_in(x) for k, x in a.items()}
        return a

    # -------------------------------------------------------------- nodes
    def run(self) -> FlatNet:
        for node in self.graph.nodes:
            self.where = self._path(node)
            self.values[node] = self._node(node)
        return self.net

    def _node(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            if self.values and node.args:  # an argument fixed at its default
                return node.args[0]
            if self.values:
                raise Unmappable(f"{self.net.name}: forward takes more than one input "
                                 f"('{node.target}'); netspec networks take one")
            return _Value(INPUT_ID, self.input_shape)
        if node.op == "get_attr":
            value = _attr(self.root, str(node.target))
            if not isinstance(value, torch.Tensor):
                return value
            owner = self.root.get_submodule(str(node.target).rpartition(".")[0])
            first = any(True for c in owner.children() for _ in c.parameters())
            return _Param(str(node.target), value, first)
        args = fx.node.map_arg(node.args, self.values.__getitem__)
        kwargs = fx.node.map_arg(node.kwargs, self.values.__getitem__)
        if not (node.target is operator.getitem and isinstance(args[0], tuple)):
            # taking the layer's output out of its tuple is fine; using the rest is not
            absent = _leaves((args, kwargs), _Absent)
            if absent:
                raise Unmappable(f"{absent[0].where}: the code uses {absent[0].what}, which "
                                 "netspec does not compute")
        if node.op == "output":
            self._outputs(args[0])
            return None
        if node.op == "call_module":
            return self._module(node, args, kwargs)
        return self._function(node, args, kwargs)

    def _path(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return str(node.target)
        stack = node.meta.get("nn_module_stack") or {}
        if stack:
            return str(list(stack.values())[-1][0])
        return self.net.name

    def _scopes(self, node: fx.Node) -> tuple[ScopeRef, ...]:
        out = []
        for path, _cls in (node.meta.get("nn_module_stack") or {}).values():
            path = str(path)
            if node.op == "call_module" and path == node.target:
                continue  # the layer itself
            module = self.root.get_submodule(path)
            cls = behaviour_class(module)
            container = isinstance(module, _CONTAINERS) and cls in (
                nn.Sequential, nn.ModuleList, nn.ModuleDict)
            out.append(ScopeRef(path, qualname(cls), container))
        return tuple(out)

    def _module(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        path = str(node.target)
        module = self.root.get_submodule(path)
        if isinstance(module, _IDENTITY_MODULES):
            return args[0]
        if isinstance(module, nn.Flatten):
            return self._move(node, lambda t: t.flatten(module.start_dim, module.end_dim),
                              args[0])
        if any(True for _ in module.parameters(recurse=False)) and path in self.called:
            raise Unmappable(f"{path}: called more than once, sharing its weights; a netspec "
                             "layer owns its weights")
        self.called[path] = node.name
        call = Call(path, module, None, self._as_in(args), self._as_in(kwargs))
        readers = module_readers(module)
        return self._read(node, call, readers, args, kwargs,
                          f"{type(module).__name__} has no netspec kind")

    def _function(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        target = node.target
        tracked = _has_tracked((args, kwargs))
        if node.op == "call_method":
            name = str(target)
            if not tracked:
                return self._evaluate(getattr(args[0], name), args[1:], kwargs)
            if isinstance(args[0], _Param) and name in _MOVEMENT_METHODS:
                # a parameter seen another way (timm's gamma.reshape(1, -1, 1, 1))
                p = args[0]
                return _Param(p.name, getattr(p.value, name)(*args[1:], **kwargs), p.first)
            if isinstance(args[0], _Param) and name == "expand":
                return self._expand(args[0], args[1:], kwargs)
            if isinstance(args[0], _Value):
                if name == "narrow":
                    return self._narrow(node, args[0], *args[1:], **kwargs)
                if name in _SIZE_METHODS:
                    return getattr(torch.empty(args[0].torch_shape, device="meta"),
                                   name)(*args[1:], **kwargs)
                if name in _MOVEMENT_METHODS:
                    return self._move(node, lambda t: getattr(t, name)(*args[1:], **kwargs),
                                      args[0])
                if name == "__getitem__":
                    return self._getitem(node, args[0], args[1])
            readers = BY_METHOD.get(name, [])
            call = Call(self.where, None, name, self._as_in(args), self._as_in(kwargs))
            return self._read(node, call, readers, args, kwargs,
                              f"tensor method .{name}() has no netspec kind")
        if _is_narrow(node) and isinstance(args[0], _Value):
            return self._narrow(node, args[0], *args[1:], **kwargs)
        if target is builtins.getattr and isinstance(args[0], _Value):
            meta = torch.empty(args[0].torch_shape, device="meta")
            return getattr(meta, args[1])
        if target is operator.getitem:
            if isinstance(args[0], _Value):
                return self._getitem(node, args[0], args[1])
            return args[0][args[1]]
        if not tracked:
            return self._evaluate(target, args, kwargs)
        if target in _MOVEMENT_FUNCTIONS and isinstance(args[0], _Value):
            return self._move(node, lambda t: target(t, *args[1:], **kwargs), args[0])
        if target in (torch.cat, torch.concat):
            parts = list(kwargs.get("tensors", args[0]))
            if len(parts) == 1:
                return parts[0]  # torch.cat of one tensor: that tensor (DenseNet's first)
        readers = BY_FUNCTION.get(target) or BY_FUNCTION.get(_qualified(target), [])
        call = Call(self.where, None, target, self._as_in(args), self._as_in(kwargs))
        what = getattr(target, "__name__", str(target))
        return self._read(node, call, readers, args, kwargs, f"{what} has no netspec kind")

    def _evaluate(self, target: Any, args: tuple, kwargs: dict) -> Any:
        """Arithmetic on sizes and constants, and the model's own checks (torch._assert
        of an input size): computed, since every size is known; a check that fails is the
        model's own refusal of this input."""
        try:
            return target(*args, **kwargs)
        except Exception as e:  # the user's code: anything may come out of it
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise Unmappable(f"{self.where}: the model refuses the input "
                             f"{list(self.input_shape)} ({first[:160]}); give --input") \
                from None

    def _expand(self, p: _Param, sizes: tuple, kwargs: dict) -> _Param:
        """A parameter expanded to the batch (ViT's ``class_token.expand(n, -1, -1)``):
        at batch 1, as traced, it is the parameter itself; an expansion along any other
        axis would be a new tensor netspec has no layer for."""
        value = p.value.expand(*sizes, **kwargs)
        if tuple(value.shape) != tuple(p.value.shape):
            raise Unmappable(f"{self.where}: expands {p.name} from {list(p.value.shape)} to "
                             f"{list(value.shape)}; netspec expands a parameter only to the "
                             "batch")
        return p

    def _narrow(self, node: fx.Node, x: _Value, dim: int, start: int, length: int) -> _Value:
        """``x.narrow(1, start, length)``: a part of a split whose parts are the ranges
        the code narrows x to (netspec's own split, torch.narrow per part)."""
        rank = len(x.shape) + 1
        src = node.args[0]
        assert isinstance(src, fx.Node)
        if x.layout != CANONICAL or dim % rank != 1 or src not in self.cuts:
            raise Unmappable(f"{self.where}: narrow along dim {dim} has no netspec kind")
        if src not in self.parts_of:
            ends = sorted({0, x.shape[0], *self.cuts[src]})
            sizes = [b - a for a, b in itertools.pairwise(ends)]
            options = {"parts": len(sizes)} if len(set(sizes)) == 1 else {"sizes": sizes}
            self.parts_of[src] = (ends, self._split(node, Mapped("split", options,
                                                                  parts=sizes), x))
        ends, parts = self.parts_of[src]
        if start not in ends or start + length not in ends or \
                ends.index(start + length) != ends.index(start) + 1:
            raise Unmappable(f"{self.where}: narrow to channels {start}…{start + length} "
                             "overlaps another part of the same tensor")
        return parts[ends.index(start)]

    def _getitem(self, node: fx.Node, v: _Value, index: Any) -> Any:
        return self._move(node, lambda t: t[index], v)

    def _move(self, node: fx.Node, move: Any, v: Any) -> Any:
        if not isinstance(v, _Value):
            raise Unmappable(f"{self.where}: {node.target} of a parameter has no netspec kind")
        try:
            index = move(v.indices())
        except (RuntimeError, IndexError, TypeError) as e:
            raise Unmappable(f"{self.where}: {node.target}: {str(e).splitlines()[0]}") from None
        if not isinstance(index, torch.Tensor) or index.dim() == 0 or index.shape[0] != 1:
            raise Unmappable(f"{self.where}: {node.target} mixes the batch axis with the "
                             "others; netspec layers keep it apart")
        return self._settle(_Value(v.node, v.shape, index), node)

    def _read(self, node: fx.Node, call: Call, readers: list[tuple[str, Reader]], args: tuple,
              kwargs: dict, refusal: str) -> Any:
        for _op, reader in readers:
            assert reader.read is not None
            mapped = reader.read(call)
            if mapped is not None:
                return self._mapped(node, call, mapped, args, kwargs)
        raise Unmappable(f"{call.path}: {refusal}")

    def _mapped(self, node: fx.Node, call: Call, mapped: Mapped, args: tuple,
                kwargs: dict) -> Any:
        values = _tracked((args, kwargs))
        if mapped.inputs is None:
            inputs = [v for v in values if isinstance(v, _Value)]
        else:
            lookup = {id(i): v for i, v in zip(_ins(call), values, strict=True)}
            inputs = [lookup[id(i)] for i in mapped.inputs]
        if mapped.parts is not None:
            return self._split(node, mapped, inputs[0])
        out = self._add(node, mapped, inputs)
        if mapped.extra_outputs:
            return (out, *(_Absent(what, call.path) for what in mapped.extra_outputs))
        return out

    def _add(self, node: fx.Node, mapped: Mapped, inputs: list[_Value]) -> _Value:
        layouts = {v.layout for v in inputs}
        if not mapped.keeps_layout and layouts - {CANONICAL}:
            raise Unmappable(f"{self.where}: {mapped.kind} reads a reshaped tensor")
        if len(layouts) > 1 or (OTHER in layouts and any(
                not torch.equal(v.indices(), inputs[0].indices()) for v in inputs[1:])):
            raise Unmappable(f"{self.where}: {mapped.kind} of tensors in different layouts")
        flat = self._node_for(node, mapped, inputs)
        layout = layouts.pop() if layouts else CANONICAL
        if mapped.view is not None:
            view = _arange(_numel(flat.shape)).view(mapped.view)
            return self._settle(_Value(flat.id, flat.shape, view), node)
        if layout == OTHER:
            if flat.shape != inputs[0].shape:
                raise Unmappable(f"{self.where}: {mapped.kind} changes the shape of a "
                                 "reshaped tensor")
            return _Value(flat.id, flat.shape, inputs[0].index, OTHER)
        return _Value(flat.id, flat.shape, layout=layout)

    def _node_for(self, node: fx.Node, mapped: Mapped, inputs: list[_Value],
                  split: tuple[int, int] | None = None) -> FlatNode:
        flat = self.net.add(mapped, [v.node for v in inputs],
                            [self.shapes[v.node] for v in inputs], self.where,
                            self._scopes(node), self._tensor_shape, split=split,
                            own_path=node.op == "call_module")
        self.shapes[flat.id] = flat.shape
        return flat

    def _tensor_shape(self, name: str) -> Shape | None:
        try:
            value = _attr(self.root, name)
        except AttributeError:
            return None
        return tuple(value.shape) if isinstance(value, torch.Tensor) else None

    def _split(self, node: fx.Node, mapped: Mapped, x: _Value) -> tuple[_Value, ...]:
        self.splits += 1
        parts = []
        for i in range(len(mapped.parts or ())):
            flat = self._node_for(node, mapped, [x], (self.splits, i))
            parts.append(_Value(flat.id, flat.shape))
        return tuple(parts)

    def _outputs(self, out: Any) -> None:
        outs = list(out) if isinstance(out, list | tuple) else [out]
        if isinstance(out, dict):
            outs = list(out.values())
        ids = []
        for v in outs:
            if not isinstance(v, _Value):
                raise Unmappable(f"{self.net.name}: an output is not a tensor computed "
                                 "from the input")
            if v.layout != CANONICAL:
                raise Unmappable(f"{self.net.name}: an output of shape "
                                 f"{list(v.torch_shape[1:])} is a reshaped view netspec "
                                 "has no layer for")
            ids.append(v.node)
        self.net.outputs = tuple(ids)


def _is_narrow(node: fx.Node) -> bool:
    return node.target in (torch.narrow, "narrow")


def _narrow_cuts(graph: fx.Graph) -> dict[fx.Node, set[int]]:
    """For each tensor the code narrows along dim 1 with constant ranges, the range
    ends: where its split cuts it."""
    cuts: dict[fx.Node, set[int]] = {}
    for node in graph.nodes:
        if not _is_narrow(node) or len(node.args) != 4:
            continue
        src, _dim, start, length = node.args
        if isinstance(src, fx.Node) and isinstance(start, int) and isinstance(length, int):
            cuts.setdefault(src, set()).update({start, start + length})
    return cuts


def validated_kind(op: str) -> str:
    """The spec kind that writes op (``batchnorm`` → ``norm``)."""
    from netspec.kinds import OPS
    return OPS[op].spec_kind


def _attr(root: nn.Module, name: str) -> Any:
    obj: Any = root
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _has_tracked(tree: Any) -> bool:
    return bool(_tracked(tree))


def _leaves(tree: Any, kinds: type | tuple[type, ...]) -> list[Any]:
    """The values of ``kinds`` in an argument tree (lists, tuples, dicts), in order."""
    if isinstance(tree, kinds):
        return [tree]
    if isinstance(tree, list | tuple):
        return [x for a in tree for x in _leaves(a, kinds)]
    if isinstance(tree, dict):
        return [x for a in tree.values() for x in _leaves(a, kinds)]
    return []


def _tracked(tree: Any) -> list[Any]:
    """The traced tensors and read parameters in an argument tree, in order."""
    return _leaves(tree, (_Value, _Param))


def _ins(call: Call) -> list[In]:
    return _leaves((call.args, call.kwargs), In)


@contextmanager
def _eval(module: nn.Module) -> Iterator[None]:
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)


def flatten_module(module: nn.Module, name: str, origin: str, input_shape: Shape) -> FlatNet:
    """The module, traced in eval mode, as a flat net of netspec layers."""
    params = {n: p.numel() for n, p in module.named_parameters()}
    reader: _Interpreter | None = None
    with _eval(module), torch.no_grad():
        try:
            graph = trace(module, name)
            reader = _Interpreter(module, graph, name, origin, input_shape)
            net = reader.run()
        except Unmappable as e:
            # how far it got: the parameters of the layers read before the refusal
            used = {t for n in (reader.net.nodes if reader else []) for t in n.tensors.values()}
            covered = sum(v for k, v in params.items() if k in used)
            total = sum(params.values())
            share = f" ({covered / total:.1%})" if total else ""
            raise Unmappable(f"{e} — the layers before it cover {covered:,} of the "
                             f"{total:,} parameters{share}") from None
    net.source_params = params
    net.source_tensors = dict(module.state_dict(keep_vars=False))
    return net
