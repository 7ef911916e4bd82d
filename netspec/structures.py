"""The structure expanders: how a block use, ``repeat``, a residual, a dense block, a
parallel block and a split become ordinary nodes. One function each, over the small
interface the resolver offers (``value``, ``sequence``, ``add_node``, naming, scopes).

``STRUCTURES`` is the table of the kinds a spec writes that are structures rather than
layers — their option keys and their expander; a new structure is one function and one
row here (the lint pass reads the keys from the table; tests/test_doc_lists.py checks
the JSON Schema's against them). Block uses
(``spec.blocks``), ``repeat:`` (a key of any entry) and ``split`` (a layer kind whose
validated options make one node per part) are dispatched by the resolver to the
expanders below them.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from netspec.entries import Entry
from netspec.errors import Pos, SpecError, SpecErrors, did_you_mean
from netspec.kinds import LayerArgs, ShapeError
from netspec.kinds.base import fmt_shape
from netspec.kinds.conv import Conv
from netspec.kinds.linear import Linear
from netspec.kinds.merge import Add, Concat
from netspec.kinds.split import Split
from netspec.names import BLOCK_INPUT, Namespace, join
from netspec.spec import is_required

if TYPE_CHECKING:
    from netspec.graph import Node
    from netspec.spec import SpecModel
    from netspec.yaml_loader import Document, Path

MAX_REPEAT = 10_000
MAX_BLOCK_DEPTH = 32

#: ``(resolver, entry, ctx, input node, name or None) → output node``
Expander = Callable[["Resolving", Entry, "Ctx", str, "str | None"], str]


@dataclass
class Ctx:
    """Where resolution stands: the scope, the vars in sight, the names in sight."""

    scope: str
    env: dict[str, Any]
    #: name → node; ``m.*`` → every copy of a repeat (or part of a split), in order
    names: ChainMap[str, str | tuple[str, ...]]
    #: the local names taken in this scope, and its automatic-name counters
    ns: Namespace = field(default_factory=Namespace)
    stack: tuple[tuple[str, Pos], ...] = ()
    #: the named entries of this layer list → the range of node indices they made
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)

    def child(self, scope: str, env: dict[str, Any] | None = None,
              names: ChainMap[str, str | tuple[str, ...]] | None = None,
              block: tuple[str, Pos] | None = None) -> Ctx:
        return Ctx(
            scope=scope,
            env=self.env if env is None else env,
            names=self.names.new_child() if names is None else names,
            stack=(*self.stack, block) if block else self.stack,
        )


class Resolving(Protocol):
    """The resolver as the expanders see it: netspec/resolve.py's ``Resolver``, which
    imports this module (the expanders never import the resolver)."""

    doc: Document
    spec: SpecModel
    nodes: dict[str, Node]
    global_env: dict[str, Any]

    def value(self, v: Any, path: Path, env: dict[str, Any]) -> Any: ...

    def sequence(self, items: Any, path: Path, ctx: Ctx, x: str) -> str: ...

    def one(self, e: Entry, ctx: Ctx, x: str, name: str | None) -> str: ...

    def claim(self, name: str, ctx: Ctx, e: Entry) -> str: ...

    def scope(self, path: str, kind: str, label: str, e: Entry) -> None: ...

    def add_node(self, model: LayerArgs, inputs: list[str], name: str | None, ctx: Ctx,
                 e: Entry, note: str = "", paths: dict[str, Path] | None = None) -> str: ...


@dataclass(frozen=True)
class Structure:
    #: the keys its mapping takes
    keys: tuple[str, ...]
    expand: Expander
    #: keys holding layer lists (walked by lint), and the one holding a list of them
    bodies: tuple[str, ...] = ()
    branch_lists: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- helpers
def _check_keys(r: Resolving, e: Entry, keys: tuple[str, ...]) -> None:
    for key in e.args:
        if key not in keys:
            raise SpecError(f"{e.kind}: unknown key '{key}'{did_you_mean(key, keys)}; "
                            f"expected one of: {', '.join(keys)}", r.doc.key(e.paths[key]))


def _needs_body(r: Resolving, e: Entry, keys: tuple[str, ...]) -> None:
    _check_keys(r, e, keys)
    if "body" not in e.args:
        raise SpecError(f"{e.kind} needs a body: a list of layers or one layer",
                        r.doc.key(e.kind_path))


def _combine(r: Resolving, e: Entry, ctx: Ctx, default: str) -> type[Add] | type[Concat]:
    combine = r.value(e.args.get("combine", default), e.paths.get("combine", e.kind_path),
                      ctx.env)
    if combine not in ("add", "concat"):
        raise SpecError(f"{e.kind}: combine is add or concat, not {combine!r}",
                        r.doc.pos(e.paths["combine"]))
    return Add if combine == "add" else Concat


def _stride_between(n_in: int, n_out: int) -> int | None:
    """The smallest stride s that takes a size n_in to n_out ((n_in - 1) // s + 1), or
    None: in closed form, not a loop over every size (sizes go up to 2²⁴)."""
    if n_in < 1 or not 1 <= n_out <= n_in:
        return None
    # (n_in - 1) // s falls as s grows: the first s that brings it to n_out - 1 or below
    s = (n_in - 1) // n_out + 1
    if (n_in - 1) // s + 1 == n_out:
        return s
    return None


def _note_block(err: SpecError, block: str, use: Pos) -> None:
    """Say which use of a block went wrong: the error's position is inside its body."""
    if err.pos and err.pos.line != use.line and "[in block" not in err.message:
        err.message += f" [in block '{block}' used at line {use.line}]"


# ---------------------------------------------------------------------------- residual
RESIDUAL_KEYS = ("body", "shortcut", "combine", "shortcut_first")


def residual(r: Resolving, e: Entry, ctx: Ctx, x: str, name: str | None) -> str:
    """out = combine(body(x), shortcut(x))."""
    _needs_body(r, e, RESIDUAL_KEYS)
    merge = _combine(r, e, ctx, "add")
    first = r.value(e.args.get("shortcut_first", False),
                    e.paths.get("shortcut_first", e.kind_path), ctx.env)
    if not isinstance(first, bool):
        raise SpecError(f"residual: shortcut_first is true or false, not {first!r}",
                        r.doc.pos(e.paths["shortcut_first"]))
    start = len(r.nodes)
    y = r.sequence(e.args["body"], e.paths["body"], ctx, x)
    body_end = len(r.nodes)
    shortcut = r.value(e.args.get("shortcut", "auto"), e.paths.get("shortcut", e.path),
                       ctx.env)
    x_shape, y_shape = r.nodes[x].shape, r.nodes[y].shape
    fits = x_shape == y_shape if merge is Add else x_shape[1:] == y_shape[1:]
    if shortcut == "identity" or (shortcut == "auto" and fits):
        s, note = x, "residual, identity shortcut"
        if not fits:
            raise SpecError(
                f"residual: identity shortcut cannot {merge.op} {fmt_shape(x_shape)} to the "
                f"body's {fmt_shape(y_shape)}; use shortcut: auto or give its layers",
                r.doc.pos(e.paths["shortcut"]) if "shortcut" in e.paths
                else r.doc.key(e.kind_path))
    elif shortcut == "auto":
        # the body's nodes listed only here: most residuals take the identity
        body = list(r.nodes.values())[start:body_end]
        s, note = _projection(r, e, ctx, x, y, body)
    elif isinstance(e.args["shortcut"], list | dict):
        scope = join(ctx.scope, ctx.ns.numbered("shortcut"))
        r.scope(scope, "shortcut", "shortcut", e)
        s = r.sequence(e.args["shortcut"], e.paths["shortcut"], ctx.child(scope), x)
        note = "residual, shortcut as written"
    else:
        raise SpecError(f"residual: shortcut is auto, identity or a list of layers, not "
                        f"{shortcut!r}", r.doc.pos(e.paths["shortcut"]))
    if first and len(r.nodes) > body_end:
        # the shortcut reads only x, so running it before the body keeps the order
        # topological; its tensors then register first, as torchvision's RegNet
        items = list(r.nodes.items())
        r.nodes = dict(items[:start] + items[body_end:] + items[start:body_end])
        note += ", registered before the body"
    return r.add_node(merge(), [y, s], name, ctx, e, note=note)


def _projection(r: Resolving, e: Entry, ctx: Ctx, x: str, y: str, body: list[Node]
                ) -> tuple[str, str]:
    """Auto shortcut: 1×1 conv (or linear) with the body's stride + the body's norm."""
    x_shape, y_shape = r.nodes[x].shape, r.nodes[y].shape
    norm = next((n.args for n in body if n.args is not None and n.args.is_norm), None)
    scope = join(ctx.scope, ctx.ns.numbered("shortcut"))
    r.scope(scope, "shortcut", "projection shortcut", e)
    inner = ctx.child(scope)
    if len(x_shape) == 1:
        proj: LayerArgs = Linear(out=y_shape[0], bias=norm is None)
        what = "linear"
    else:
        if len(y_shape) != 3:
            raise SpecError(f"residual: the body turns {fmt_shape(x_shape)} into "
                            f"{fmt_shape(y_shape)}; a shortcut cannot follow",
                            r.doc.key(e.kind_path))
        stride = [_stride_between(a, b) for a, b in zip(x_shape[1:], y_shape[1:],
                                                        strict=True)]
        if None in stride:
            raise SpecError(
                f"residual: no 1×1 strided conv maps {fmt_shape(x_shape)} to the body's "
                f"{fmt_shape(y_shape)}; give the shortcut's layers",
                r.doc.key(e.kind_path))
        s = stride[0] if stride[0] == stride[1] else (stride[0], stride[1])
        proj = Conv(out=y_shape[0], k=1, stride=s, pad=0, bias=norm is None)
        what = f"1×1 conv, stride {stride[0]}"
    s_out = r.add_node(proj, [x], None, inner, e)
    if norm is not None:
        s_out = r.add_node(norm, [s_out], None, inner, e)
        what += f" + {norm.op}"
    return s_out, (f"residual, projection shortcut ({what}): "
                   f"{fmt_shape(x_shape)} → {fmt_shape(y_shape)}")


# ---------------------------------------------------------------------------- dense
DENSE_KEYS = ("n", "body", "combine")


def dense(r: Resolving, e: Entry, ctx: Ctx, x: str, name: str | None) -> str:
    """Each of n layers sees the block input and every earlier layer's output."""
    local = r.claim(name or ctx.ns.auto("dense"), ctx, e)
    _needs_body(r, e, DENSE_KEYS)
    merge = _combine(r, e, ctx, "concat")
    n = r.value(e.args.get("n"), e.paths.get("n", e.kind_path), ctx.env)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REPEAT:
        raise SpecError(f"dense: n must be an integer from 1 to {MAX_REPEAT:,}, got {n!r}",
                        r.doc.pos(e.paths["n"]) if "n" in e.paths
                        else r.doc.key(e.kind_path))
    scope = join(ctx.scope, local)
    r.scope(scope, "dense", f"dense × {n} ({merge.op})", e)
    inner = ctx.child(scope)
    # add and concat are associative: the merge of the input and every output so far is
    # the last merge joined with the newest output. Each merge reads those two, so the
    # Graph (and the torch code, the ONNX file, the picture) grows with n, not n² as
    # when every merge listed every earlier output
    seen = x
    for i in range(n):
        inner.ns.taken.add(str(i))
        layer_ctx = inner.child(join(scope, str(i)))
        r.scope(join(scope, str(i)), "dense-layer", f"layer {i}", e)
        newest = r.sequence(e.args["body"], e.paths["body"], layer_ctx, seen)
        seen = r.add_node(merge(), [seen, newest], None, inner, e)
    return seen


# ---------------------------------------------------------------------------- parallel
PARALLEL_KEYS = ("branches", "combine")


def parallel(r: Resolving, e: Entry, ctx: Ctx, x: str, name: str | None) -> str:
    """Every branch reads x; the outputs merge (concat by default) in branch order."""
    _check_keys(r, e, PARALLEL_KEYS)
    branches = e.args.get("branches")
    if not isinstance(branches, list) or not branches:
        raise SpecError("parallel needs branches: a list whose items are each a layer, a "
                        "list of layers, or identity",
                        r.doc.pos(e.paths["branches"]) if "branches" in e.paths
                        else r.doc.key(e.kind_path))
    merge = _combine(r, e, ctx, "concat")
    outs = []
    for i, branch in enumerate(branches):
        path = (*e.paths["branches"], i)
        if branch == "identity":
            outs.append(x)
            continue
        scope = join(ctx.scope, ctx.ns.numbered("branch", start=i + 1))
        r.scope(scope, "branch", f"branch {i + 1}", e)
        outs.append(r.sequence(branch, path, ctx.child(scope), x))
    return r.add_node(merge(), outs, name, ctx, e, note=f"parallel, {len(outs)} branches")


#: the kinds a spec writes that are structures, not layers
STRUCTURES: dict[str, Structure] = {
    "residual": Structure(RESIDUAL_KEYS, residual, bodies=("body", "shortcut")),
    "dense": Structure(DENSE_KEYS, dense, bodies=("body",)),
    "parallel": Structure(PARALLEL_KEYS, parallel, branch_lists=("branches",)),
}


# ---------------------------------------------------------------------------- block use
def block(r: Resolving, e: Entry, ctx: Ctx, x: str, name: str | None) -> str:
    """A use of one of the spec's ``blocks``: its args evaluated in the caller's scope,
    ``$in`` bound, its layers walked in a scope of their own."""
    local = r.claim(name or ctx.ns.auto(e.kind), ctx, e)
    blk = r.spec.blocks[e.kind]
    use_pos = r.memo.pos(r.doc, e.path)
    chain = [b for b, _ in ctx.stack]
    if e.kind in chain:
        cycle = " → ".join([*chain[chain.index(e.kind):], e.kind])
        raise SpecError(f"block '{e.kind}' uses itself: {cycle}", r.doc.key(e.kind_path))
    if len(ctx.stack) >= MAX_BLOCK_DEPTH:
        raise SpecError(f"blocks nested more than {MAX_BLOCK_DEPTH} deep",
                        r.doc.key(e.kind_path))
    for key in e.args:
        if key not in blk.args:
            known = ", ".join(blk.args) or "none"
            raise SpecError(f"block '{e.kind}' has no arg '{key}'"
                            f"{did_you_mean(key, blk.args)} (its args: {known})",
                            r.doc.key(e.paths[key]))
    env = dict(r.global_env)
    env["in"] = r.nodes[x].shape[0]
    for arg, default in blk.args.items():
        if arg in e.args:
            env[arg] = r.value(e.args[arg], e.paths[arg], ctx.env)
        elif is_required(default):
            raise SpecError(f"block '{e.kind}' needs arg '{arg}'", r.doc.key(e.kind_path))
        else:
            env[arg] = r.value(default, ("blocks", e.kind, "args", arg), env)
    scope = join(ctx.scope, local)
    args_shown = ", ".join(f"{a}={env[a]}" for a in blk.args)
    r.scope(scope, "block", f"{e.kind}({args_shown})" if args_shown else e.kind, e)
    inner = ctx.child(scope, env=env, names=ChainMap({BLOCK_INPUT: x}),
                      block=(e.kind, use_pos))
    try:
        return r.sequence(blk.layers, ("blocks", e.kind, "layers"), inner, x)
    except SpecErrors as errs:
        for err in errs.errors:
            _note_block(err, e.kind, use_pos)
        raise SpecErrors(errs.errors) from None
    except SpecError as err:
        _note_block(err, e.kind, use_pos)
        raise


# ---------------------------------------------------------------------------- repeat
def repeat(r: Resolving, e: Entry, ctx: Ctx, x: str, as_name: str | None, n: int) -> str:
    """``repeat: n``: a scope whose children ``0`` … ``n-1`` are copies of the entry, each
    reading the one before, with ``$i`` bound; ``as.i`` / ``as.*`` name them."""
    if n == 0:  # a stage a scale variant shrinks away: the tensor passes through
        if as_name:
            r.claim(as_name, ctx, e)
            ctx.names[as_name] = x
            ctx.names[f"{as_name}.*"] = ()
        return x
    container = r.claim(as_name or ctx.ns.auto(e.kind), ctx, e)
    scope = join(ctx.scope, container)
    r.scope(scope, "repeat", f"{e.kind} × {n}", e)
    inner = ctx.child(scope, names=ctx.names)
    copies = []
    for i in range(n):
        inner.env = {**ctx.env, "i": i}
        x = r.one(e, inner, x, str(i))
        copies.append(x)
        if as_name:
            ctx.names[f"{as_name}.{i}"] = x
    if as_name:
        ctx.names[as_name] = x
        ctx.names[f"{as_name}.*"] = tuple(copies)
    return x


def shape_error(doc: Document, err: ShapeError, e: Entry, paths: dict[str, Path]) -> SpecError:
    """A kind's shape rule refusing, positioned: at the option it names, else the kind."""
    field_path = paths.get(err.field or "")
    where = doc.pos(field_path) if field_path else doc.key(e.kind_path)
    return SpecError(f"{e.kind}: {err}", where)


# ---------------------------------------------------------------------------- split
def split(r: Resolving, model: Split, e: Entry, ctx: Ctx, x: str, name: str | None,
          paths: dict[str, Path]) -> str:
    """One node per part, ``x.0`` … in the split's scope; the last is the current."""
    local = r.claim(name, ctx, e) if name else ctx.ns.auto(model.auto_name)
    ctx.ns.taken.add(local)
    scope = join(ctx.scope, local)
    try:
        sizes = model.part_sizes(r.nodes[x].shape[0])
    except ShapeError as err:
        raise shape_error(r.doc, err, e, paths) from None
    r.scope(scope, "split", f"split {sizes}", e)
    inner = ctx.child(scope)
    parts = tuple(r.add_node(model.part(i), [x], str(i), inner, e, paths=paths)
                  for i in range(len(sizes)))
    if name is not None and not name.isdigit():  # a name of its own, not a repeat copy's
        for i, part in enumerate(parts):
            ctx.names[f"{name}.{i}"] = part
        ctx.names[f"{name}.*"] = parts
    return parts[-1]
