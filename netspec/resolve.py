"""Resolve: a validated spec → the Graph. Vars are evaluated, entries walked, every
layer validated against its kind and every node's output shape inferred, so a channel
mismatch is an error with a position before any tensor exists.

The work is shared out: values and vars are evaluated by netspec/values.py, entries
read by netspec/entries.py, names handed out by a
:class:`~netspec.names.Namespace` per scope, blocks, ``repeat``, residual, dense,
parallel and split expanded by netspec/structures.py (one function each, called through
this module's small interface: ``value``, ``sequence``, ``one``, ``add_node``,
``claim``, ``scope``), and positions inside expressions found by ``Document.expr_pos``.

Naming (these names become module paths and state_dict keys, so they are stable):
- a layer is named by ``as:`` or automatically, ``{prefix}{n}`` per scope: conv1, bn1…;
- a block use is a scope named by ``as:`` or ``{block}{n}``; ``repeat: n`` makes a
  scope whose children are ``0`` … ``n-1``;
- a residual's body lives in the enclosing scope (as torchvision's blocks do); its
  shortcut layers in ``shortcut`` (``shortcut2``…); the merge is ``add{n}``/``cat{n}``;
- a dense block is a scope; layer i of it is the scope ``i``;
- a parallel block's branches are the scopes ``branch1`` … in the enclosing scope;
- a split named ``x`` is a scope whose part nodes are ``x.0``, ``x.1``….

References (merges' lists, ``input:``, ``outputs:``): ``name``, ``in`` (the enclosing
block's input), ``name.i`` (copy i of a repeat, part i of a split), ``name.*`` (all).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from netspec import structures, values
from netspec.entries import COMMON_KEYS, Entry, op_class, unknown_kind
from netspec.entries import describe as _describe
from netspec.entries import shown as _shown
from netspec.errors import Pos, SpecError, SpecErrors, did_you_mean
from netspec.graph import INPUT, Graph, Node, Scope, live_nodes
from netspec.kinds import LayerArgs, Shape, ShapeError, family_members
from netspec.kinds.base import check_rank, fmt_shape
from netspec.kinds.split import Split
from netspec.memo import memo
from netspec.names import BLOCK_INPUT, Namespace, join, name_problem
from netspec.spec import IDENTIFIER, SpecModel, errors_from_pydantic
from netspec.structures import MAX_REPEAT, STRUCTURES, Ctx
from netspec.yaml_loader import Document, Path

MAX_NODES = 100_000
#: the most tensors the layers read in all (each merge's inputs counted): without it a
#: few lines (10,000 copies, then 10,000 adds of ``m.*``) make a Graph of 10⁸ edges
MAX_READS = 1_000_000
#: the largest size of any axis, of the input and of every layer's output: a rule of the
#: language, so that no shape rule, count or estimate ever works on an unbounded size
MAX_DIM = 1 << 24


def _or_list(names: Iterable[str]) -> str:
    """``batch, layer or rms``."""
    *head, last = names
    return f"{', '.join(head)} or {last}" if head else last


def _size(v: int) -> str:
    """A size for a message: a number of 400 digits is shown by its first ones."""
    text = str(v)
    return text if len(text) <= 24 else f"{text[:6]}… ({len(text)} digits)"


class Resolver:
    def __init__(self, doc: Document, spec: SpecModel, overrides: dict[str, Any]) -> None:
        self.doc = doc
        self.spec = spec
        self.overrides = overrides
        #: what earlier resolves of ``doc`` read that no var changes
        self.memo = memo(doc)
        self.nodes: dict[str, Node] = {}
        self.scopes: dict[str, Scope] = {}
        #: (range of node indices, index of the node to register them before)
        self.moves: list[tuple[tuple[int, int], int]] = []
        self.global_env: dict[str, Any] = {}
        #: the inputs of every node so far (MAX_READS)
        self.reads = 0

    # ------------------------------------------------------------------ entry point
    def graph(self) -> Graph:
        self.global_env = values.evaluate_vars(self.doc, self.spec, self.overrides)
        input_shape = self._input_shape()
        self.nodes[INPUT] = Node(INPUT, INPUT, None, (), input_shape, self.doc.pos(("input",)))
        ctx = Ctx(scope="", env=self.global_env, names=ChainMap({BLOCK_INPUT: INPUT}),
                  ns=Namespace({INPUT}))
        out = self.sequence(self.spec.layers, ("layers",), ctx, INPUT)
        outputs, names = self._outputs(ctx, out)
        self._check_dead(outputs)
        task = self._task([self.nodes[o].shape for o in outputs])
        graph = Graph(
            name=self.spec.name,
            input_shape=input_shape,
            nodes=self.nodes,
            outputs=outputs,
            scopes=self.scopes,
            task=task,
            spec_file=self.doc.file,
            spec_text=self.doc.text,
            vars=dict(self.global_env),
            output_names=names,
            register_order=self._register_order(),
        )
        problems = graph.lint()  # the IR's invariants, so no backend needs a backstop
        if problems:
            raise SpecErrors(problems)
        return graph

    def _outputs(self, ctx: Ctx, last: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The spec's ``outputs:`` as nodes (and their names), or the last layer."""
        if self.spec.outputs is None:
            return (last,), ("output",)
        nodes: list[str] = []
        seen: dict[str, str] = {}
        for i, ref in enumerate(self.spec.outputs):
            where = self.doc.pos(("outputs", i))
            if ref in seen.values():
                raise SpecError(f"outputs: '{ref}' is named twice", where)
            node = self.reference(ref, ctx, where, what="outputs")
            if node in seen:
                raise SpecError(f"outputs: '{ref}' is the same tensor as '{seen[node]}'",
                                where)
            seen[node] = ref
            nodes.append(node)
        return tuple(nodes), tuple(self.spec.outputs)

    def _check_dead(self, outputs: tuple[str, ...]) -> None:
        """A layer no output reads is never computed. Learned weights there could never
        learn — a mistake, refused; fixed weights (a DFL kept while the outputs are
        before decoding) are held; a layer without weights (the unused half of a split)
        is simply left out."""
        live = live_nodes(self.nodes, outputs)
        for node in list(self.nodes.values()):
            if node.name in live or node.op == INPUT or node.args is None:
                continue
            learned = node.args.param_shapes(self._shapes(node)) and not node.args.fixed_params
            if learned:
                names = ", ".join(self.spec.outputs or ()) or "the last layer"
                raise SpecError(f"layer '{node.name}' feeds no output (outputs: {names}), so "
                                "its weights could never learn; remove it, or name it in "
                                "outputs:", node.pos)
            note = ("feeds no output: its fixed weights are held, never computed"
                    if node.args.fixed_params else "feeds no output: never computed")
            self.nodes[node.name] = replace(node, note=note)

    def _shapes(self, node: Node) -> list[Shape]:
        return [self.nodes[i].shape for i in node.inputs]

    def _register_order(self) -> tuple[str, ...] | None:
        """Node order, except where an entry registers before an earlier sibling
        (``register_before``) or a layer first in its scope (a block's own layer scale).
        One pass: each moved range is emitted just before its anchor; a node moved by
        nested entries follows the innermost move."""
        names = list(self.nodes)
        index = {n: i for i, n in enumerate(names)}
        moves = list(self.moves)
        for node in self.nodes.values():
            if node.args is not None and node.args.registers_first():
                i = index[node.name]
                prefix = f"{node.scope}." if node.scope else ""
                j = i
                while j > 1 and names[j - 1].startswith(prefix):
                    j -= 1
                if j < i:
                    moves.insert(0, ((i, i + 1), j))  # innermost first
        if not moves:
            return None
        anchor_of: dict[int, int] = {}
        for (start, stop), anchor in moves:  # inner entries finish, so append, first
            for i in range(start, stop):
                anchor_of.setdefault(i, anchor)
        before: dict[int, list[int]] = {}
        for i in sorted(anchor_of):
            before.setdefault(anchor_of[i], []).append(i)
        order: list[str] = []

        def emit(i: int) -> None:
            for j in before.get(i, ()):
                emit(j)
            order.append(names[i])

        for i in range(1, len(names)):  # 0 is the input
            if i not in anchor_of:
                emit(i)
        return tuple(order)

    def _input_shape(self) -> Shape:
        shape = []
        for i, d in enumerate(self.spec.input):
            v = self.value(d, ("input", i), self.global_env)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"input sizes must be positive integers, got {v!r}",
                                self.doc.pos(("input", i)))
            if v > MAX_DIM:
                raise SpecError(f"input sizes must be at most {MAX_DIM:,}, got {_size(v)}",
                                self.doc.pos(("input", i)))
            shape.append(v)
        if len(shape) == 2:
            raise SpecError("input is [C, H, W] for images or [F] for features; [A, B] is "
                            "neither", self.doc.pos(("input",)))
        return tuple(shape)

    def _task(self, shapes: list[Shape]) -> str:
        if len(shapes) > 1 or self.spec.task == "features":
            if self.spec.task not in (None, "features"):
                raise SpecError(f"task {self.spec.task} needs one output, but the spec names "
                                f"{len(shapes)}; use task: features",
                                self.doc.pos(("task",)))
            return "features"
        out = shapes[0]
        if len(out) == 2 and self.spec.task is None:
            return "features"  # tokens out: an encoder, neither task's scores
        inferred = "classification" if len(out) == 1 else "segmentation"
        task = self.spec.task or inferred
        want = {"classification": 1, "segmentation": 3}[task]
        if len(out) != want:
            kind = "[K] class scores" if want == 1 else "[K, H, W] per-pixel class scores"
            raise SpecError(f"task {task} needs {kind}, but the network outputs {fmt_shape(out)}",
                            self.doc.pos(("task",)))
        return task

    # ------------------------------------------------------------------ values
    def value(self, v: Any, path: Path, env: dict[str, Any]) -> Any:
        """Evaluate ``$`` expressions in a value (netspec/values.py), positioned."""
        return values.value(self.doc, v, path, env)

    # ------------------------------------------------------------------ entries
    def sequence(self, items: Any, path: Path, ctx: Ctx, x: str) -> str:
        if not isinstance(items, list):
            items, path = [items], path
            single = True
        else:
            single = False
        if not items:
            raise SpecError("empty list of layers", self.doc.pos(path))
        for i, raw in enumerate(items):
            x = self.entry(raw, path if single else (*path, i), ctx, x)
        return x

    def entry(self, raw: Any, path: Path, ctx: Ctx, x: str) -> str:
        """One entry of a layer list; the range of nodes it makes is recorded for
        ``register_before`` (its own, and an earlier sibling's it names)."""
        e = self.parse_entry(raw, path)
        if e.args.keys().isdisjoint(COMMON_KEYS):  # most entries: no as, repeat, input…
            return self.one(e, ctx, x, None)
        start = len(self.nodes)
        before = self._register_before(e, ctx)
        as_name = self._as_name(e, ctx)
        out = self._expand(e, ctx, x, as_name)
        if as_name:
            ctx.spans[as_name] = (start, len(self.nodes))
        if before is not None and len(self.nodes) > start:
            self.moves.append(((start, len(self.nodes)), before))
        return out

    def _register_before(self, e: Entry, ctx: Ctx) -> int | None:
        """``register_before: name``: the index of the first node of that earlier sibling,
        which this entry's tensors register ahead of (Ultralytics' C2f registers cv2
        before the bottlenecks it runs after)."""
        if "register_before" not in e.args:
            return None
        where = e.paths["register_before"]
        ref = self.value(e.args.pop("register_before"), where, ctx.env)
        span = ctx.spans.get(ref) if isinstance(ref, str) else None
        if span is None:
            known = ", ".join(ctx.spans) or "none yet"
            raise SpecError(f"register_before: no earlier entry of this layer list is named "
                            f"'{_shown(str(ref))}'{did_you_mean(str(ref), ctx.spans)} "
                            f"(named here: {known})", self.doc.pos(where))
        if span[0] == span[1]:
            raise SpecError(f"register_before: '{ref}' has no layers to register before",
                            self.doc.pos(where))
        return span[0]

    def _expand(self, e: Entry, ctx: Ctx, x: str, as_name: str | None) -> str:
        repeat = self._repeat(e, ctx)
        if "input" in e.args:
            where = e.paths["input"]
            ref = self.value(e.args.pop("input"), where, ctx.env)
            x = self.reference(ref, ctx, self.doc.pos(where), what="input")
        if repeat is None:
            out = self.one(e, ctx, x, as_name)
            if as_name:
                ctx.names[as_name] = out
            return out
        return structures.repeat(self, e, ctx, x, as_name, repeat)

    def one(self, e: Entry, ctx: Ctx, x: str, name: str | None) -> str:
        """One use of an entry: a block, a structure, or a layer."""
        if e.kind in self.spec.blocks:
            return structures.block(self, e, ctx, x, name)
        if e.kind in STRUCTURES:
            return STRUCTURES[e.kind].expand(self, e, ctx, x, name)
        return self.layer(e, ctx, x, name)

    def parse_entry(self, raw: Any, path: Path) -> Entry:
        return self.memo.entry(self.doc, raw, path, STRUCTURES, self.spec.blocks)

    def unknown_kind(self, e: Entry) -> SpecError:
        return unknown_kind(self.doc, e, [*STRUCTURES, *self.spec.blocks])

    def reference(self, ref: Any, ctx: Ctx, where: Pos, what: str) -> str:
        """The node one name refers to (``in``, ``name``, ``name.i``)."""
        nodes = self.references(ref, ctx, where, what)
        if len(nodes) != 1:
            raise SpecError(f"{what}: '{ref}' names {len(nodes)} tensors; name one", where)
        return nodes[0]

    def references(self, ref: Any, ctx: Ctx, where: Pos, what: str) -> list[str]:
        """The nodes a name refers to: one, or every copy/part for ``name.*``."""
        if not isinstance(ref, str):
            raise SpecError(f"{what}: expected the name of an earlier layer, not "
                            f"{_describe(ref)}", where)
        found = ctx.names.get(ref)
        if found is None:
            base, dot, _ = ref.rpartition(".")
            if dot and f"{base}.*" in ctx.names:
                n = len(ctx.names[f"{base}.*"])
                why = (f"'{base}' has {n} (from {base}.0 to {base}.{n - 1})" if n
                       else f"'{base}' has none (repeat: 0)")
                raise SpecError(f"{what}: no '{_shown(ref)}': {why}", where)
            known = ", ".join(k for k in ctx.names if k != BLOCK_INPUT
                              and not k.endswith(".*") and "." not in k) or "none yet"
            raise SpecError(f"no earlier layer is named '{_shown(ref)}'"
                            f"{did_you_mean(ref, ctx.names)} (names in sight: {known})", where)
        return [found] if isinstance(found, str) else list(found)

    def _as_name(self, e: Entry, ctx: Ctx) -> str | None:
        if "as" not in e.args:
            return None
        name = self.value(e.args.pop("as"), e.paths["as"], ctx.env)
        problem = name_problem(name, isinstance(name, str) and bool(IDENTIFIER.fullmatch(name)))
        if problem:
            raise SpecError(problem, self.doc.pos(e.paths["as"]))
        return name

    def _repeat(self, e: Entry, ctx: Ctx) -> int | None:
        if "repeat" not in e.args:
            return None
        n = self.value(e.args.pop("repeat"), e.paths["repeat"], ctx.env)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_REPEAT:
            raise SpecError(f"repeat must be an integer from 0 to {MAX_REPEAT:,}, got {n!r}",
                            self.doc.pos(e.paths["repeat"]))
        return n

    def claim(self, name: str, ctx: Ctx, e: Entry) -> str:
        if not ctx.ns.claim(name):
            raise SpecError(f"the name '{name}' is already used in this scope",
                            self.doc.pos(e.paths.get("as", e.path)))
        return name

    def scope(self, path: str, kind: str, label: str, e: Entry) -> None:
        self.scopes[path] = Scope(path, kind, label, self.memo.pos(self.doc, e.path))

    # ------------------------------------------------------------------ layers
    def _options(self, e: Entry, ctx: Ctx, cls: type[LayerArgs]) -> tuple[dict, dict]:
        """The layer's options over its kind's defaults, evaluated, with their paths."""
        args: dict[str, Any] = {}
        paths: dict[str, Path] = {}
        doc, env, value_of = self.doc, ctx.env, values.value  # every layer of every variant
        defaults = self.spec.defaults.get(e.kind, {})
        family = family_members(e.kind) is not None
        for key, value in defaults.items():
            if not cls.accepts(key) and (key not in e.args or (family and key == "kind")):
                continue  # a family's default this member has no use for (or its kind)
            dpath = ("defaults", e.kind, key)
            args[key], paths[key] = value_of(doc, value, dpath, env), dpath
        for key, value in e.args.items():
            if key == "kind" and family and not cls.accepts(key):
                continue  # ``act: {kind: gelu}`` chose the member; gelu has no kind option
            path = e.paths[key]
            args[key], paths[key] = value_of(doc, value, path, env), path
        return args, paths

    def _kind_class(self, e: Entry, ctx: Ctx) -> type[LayerArgs]:
        members = family_members(e.kind)
        if members is None:
            cls = op_class(e.kind, e.args)
            if cls is None:
                raise self.unknown_kind(e)
            return cls
        # a family (norm, act): its member by ``kind``, from the layer or the defaults
        default = self.spec.defaults.get(e.kind, {})
        if "kind" in e.args:
            value, where = e.args["kind"], e.paths["kind"]
        elif "kind" in default:
            value, where = default["kind"], ("defaults", e.kind, "kind")
        else:
            first = next(iter(members))
            raise SpecError(f"{e.kind} needs a kind: {_or_list(members)} (e.g. "
                            f"'{e.kind}: {first}')", self.doc.key(e.kind_path))
        if isinstance(value, str) and value in members:  # norm: batch, no expression
            return members[value]
        kind = self.value(value, where, ctx.env)
        if not isinstance(kind, str) or kind not in members:
            raise SpecError(f"unknown {e.kind} kind '{kind}'{did_you_mean(str(kind), members)}"
                            f"; expected one of: {', '.join(members)}", self.doc.pos(where))
        return members[kind]

    def layer(self, e: Entry, ctx: Ctx, x: str, name: str | None) -> str:
        cls = self._kind_class(e, ctx)
        args, paths = self._options(e, ctx, cls)
        try:
            model = self.memo.validated(cls, args)
        except ValidationError as err:
            raise SpecErrors(errors_from_pydantic(
                err, self.doc, base=e.kind_path, prefix=f"{e.kind}: ", paths=paths,
                fields=cls.option_fields(),
                data=args)) from None
        if isinstance(model, Split):
            return structures.split(self, model, e, ctx, x, name, paths)
        ins = self._refs(model, e, ctx, x) if cls.arity is None else [x]
        return self.add_node(model, ins, name, ctx, e, paths=paths)

    def _check_reads(self, more: int, e: Entry) -> None:
        if self.reads + more > MAX_READS:
            raise SpecError(f"the network's layers read more than {MAX_READS:,} tensors in "
                            "all (each input of each merge counted)", self.doc.pos(e.path))

    def _refs(self, model: LayerArgs, e: Entry, ctx: Ctx, x: str) -> list[str]:
        """A merge's inputs: the current tensor, then the named ones — or the named ones
        alone, in their order, when they include the current tensor."""
        refs: list[str] = []
        names = getattr(model, "from_", [])
        if not names:
            raise SpecError(f"{e.kind} needs the names of earlier layers to merge with, e.g. "
                            f"{e.kind}: [enc1]", self.doc.key(e.kind_path))
        for i, ref in enumerate(names):
            where = self.doc.pos((*e.paths.get("from", e.kind_path), i))
            refs += self.references(ref, ctx, where, what=e.kind)
            self._check_reads(len(refs), e)  # before a list of m.* a thousand times over
        if refs == [x] and not any(str(n).endswith(".*") for n in names):
            raise SpecError(f"{e.kind}: '{names[0]}' is the current tensor, so there is nothing "
                            f"to {e.kind} it with (a list that names the current tensor is "
                            f"taken as written: {e.kind}: [{names[0]}, {names[0]}] joins it "
                            "with itself)", self.doc.pos((*e.paths.get("from", e.kind_path), 0)))
        if x in refs:
            return refs
        return [x, *refs]

    def add_node(self, model: LayerArgs, inputs: list[str], name: str | None, ctx: Ctx,
                 e: Entry, note: str = "", paths: dict[str, Path] | None = None) -> str:
        """A node of ``model`` on ``inputs``, its shape by the kind's rule."""
        self._check_reads(len(inputs), e)
        self.reads += len(inputs)
        nodes = self.nodes
        # most layers read one tensor (every layer of every variant a search resolves)
        shapes = ([nodes[inputs[0]].shape] if len(inputs) == 1
                  else [nodes[i].shape for i in inputs])
        try:
            if any(len(s) not in model.ranks for s in shapes):
                # tokens reach only the kinds that take them (and a map only those)
                for s in shapes:
                    check_rank(model.ranks, s)
            shape = model.out_shape(shapes)
        except ShapeError as err:
            raise structures.shape_error(self.doc, err, e, paths or {}) from None
        if max(shape, default=0) > MAX_DIM:  # sizes are ints: any one over the limit
            raise SpecError(f"{e.kind}: its output [{', '.join(map(_size, shape))}] has a "
                            f"size over the limit of {MAX_DIM:,}", self.doc.key(e.kind_path))
        local = self.claim(name, ctx, e) if name else ctx.ns.auto(model.auto_name)
        ctx.ns.taken.add(local)
        full = join(ctx.scope, local)
        if len(self.nodes) >= MAX_NODES:
            raise SpecError(f"the network expands to more than {MAX_NODES:,} layers",
                            self.doc.pos(e.path))
        self.nodes[full] = Node(full, model.op, model, tuple(inputs), shape,
                                self.memo.pos(self.doc, e.path), note)
        return full
