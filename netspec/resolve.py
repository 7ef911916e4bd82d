"""Resolve: a validated spec → the Graph. Blocks, repeat, vars, residual and dense
blocks and named skips are expanded here, and every node's output shape is inferred,
so a channel mismatch is an error with a position before any tensor exists.

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
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from netspec.errors import Pos, SpecError, SpecErrors, did_you_mean
from netspec.expr import ExprError, evaluate, is_expression
from netspec.graph import INPUT, Graph, Node, Scope
from netspec.kinds import FAMILIES, KIND_HINTS, NORM_KINDS, SPEC_KINDS, LayerArgs, Shape, ShapeError
from netspec.kinds.base import fmt_shape
from netspec.kinds.conv import Conv
from netspec.kinds.linear import Linear
from netspec.kinds.merge import Add, Concat
from netspec.kinds.split import Split
from netspec.spec import IDENTIFIER, SpecModel, errors_from_pydantic, is_required
from netspec.yaml_loader import Document, Path

STRUCTURES = ("residual", "dense", "parallel")
COMMON_KEYS = ("as", "repeat", "input")
#: the name that refers to the enclosing block's input (the network's, at top level)
BLOCK_INPUT = "in"
MAX_REPEAT = 10_000
MAX_NODES = 100_000
MAX_BLOCK_DEPTH = 32

#: names a layer cannot take because backends give them another meaning: attributes of
#: torch modules (a layer named ``train`` would shadow Module.train). The torch backend's
#: tests check this list against the torch they run with.
RESERVED_NAMES = frozenset("""
    T_destination add_module add_submodule apply bfloat16 buffers call_super_init children
    code compile cpu cuda delete_all_unused_submodules delete_submodule double dump_patches eval
    extra_repr float forward get_buffer get_extra_state get_parameter get_submodule graph
    half ipu load_state_dict meta modules mtia named_buffers named_children named_modules
    named_parameters parameters print_readable recompile register_backward_hook
    register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook
    register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
    register_parameter register_state_dict_post_hook register_state_dict_pre_hook
    requires_grad_ set_extra_state set_submodule shape_env share_memory state_dict to
    to_empty to_folder train training type xpu zero_grad
""".split())

RESIDUAL_KEYS = ("body", "shortcut", "combine", "shortcut_first")
DENSE_KEYS = ("n", "body", "combine")
PARALLEL_KEYS = ("branches", "combine")
STRUCTURE_KEYS = {"residual": RESIDUAL_KEYS, "dense": DENSE_KEYS, "parallel": PARALLEL_KEYS}


@dataclass
class Entry:
    """One layer entry of a spec, split into its kind and options, with positions."""

    kind: str
    args: dict[str, Any]
    #: where each option came from in the document (the layer, or ``defaults``)
    paths: dict[str, Path]
    path: Path
    kind_path: Path


@dataclass
class Ctx:
    """Where resolution stands: the scope, the vars in sight, the names in sight."""

    scope: str
    env: dict[str, Any]
    #: name → node; ``m.*`` → every copy of a repeat (or part of a split), in order
    names: ChainMap[str, str | tuple[str, ...]]
    taken: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)
    stack: tuple[tuple[str, Pos], ...] = ()

    def child(self, scope: str, env: dict[str, Any] | None = None,
              names: ChainMap[str, str | tuple[str, ...]] | None = None,
              block: tuple[str, Pos] | None = None) -> Ctx:
        return Ctx(
            scope=scope,
            env=self.env if env is None else env,
            names=self.names.new_child() if names is None else names,
            stack=(*self.stack, block) if block else self.stack,
        )


def join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


def _shown(text: str, quote: bool = False) -> str:
    """Command-line text as it goes into a one-line message: control characters (a form
    feed, a line separator) escaped, so the message stays one line."""
    if text.isprintable():
        return f"'{text}'" if quote else text
    return repr(text)


class Resolver:
    def __init__(self, doc: Document, spec: SpecModel, overrides: dict[str, Any]) -> None:
        self.doc = doc
        self.spec = spec
        self.overrides = overrides
        self.nodes: dict[str, Node] = {}
        self.scopes: dict[str, Scope] = {}
        self.global_env: dict[str, Any] = {}

    # ------------------------------------------------------------------ entry point
    def graph(self) -> Graph:
        self.global_env = self._vars()
        input_shape = self._input_shape()
        self.nodes[INPUT] = Node(INPUT, INPUT, None, (), input_shape, self.doc.pos(("input",)))
        ctx = Ctx(scope="", env=self.global_env, names=ChainMap({BLOCK_INPUT: INPUT}),
                  taken={INPUT})
        out = self.sequence(self.spec.layers, ("layers",), ctx, INPUT)
        outputs, names = self._outputs(ctx, out)
        task = self._task([self.nodes[o].shape for o in outputs])
        return Graph(
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

    def _register_order(self) -> tuple[str, ...] | None:
        """Node order, except that a layer registering first (a block's own layer scale)
        moves before the other layers of its scope."""
        early = [n for n in self.nodes.values() if n.args is not None
                 and n.args.registers_first()]
        if not early:
            return None
        order = [n for n in self.nodes if n != INPUT]
        for node in early:
            i = order.index(node.name)
            del order[i]
            prefix = f"{node.scope}." if node.scope else ""
            j = i
            while j > 0 and order[j - 1].startswith(prefix):
                j -= 1
            order.insert(j, node.name)
        return tuple(order)

    def _vars(self) -> dict[str, Any]:
        env: dict[str, Any] = {}
        for name in self.overrides:
            if name not in self.spec.vars:
                from netspec.errors import UsageError

                known = ", ".join(self.spec.vars) or "none"
                raise UsageError(
                    f"--set {_shown(name)}: the spec has no var {_shown(name, True)}"
                    f"{did_you_mean(name, self.spec.vars)} (its vars: {known})"
                )
        for name, value in self.spec.vars.items():
            if name in self.overrides:
                value = self.overrides[name]
                try:
                    env[name] = self._eval_value(value, env)
                except ExprError as e:
                    from netspec.errors import UsageError

                    raise UsageError(f"--set {name}={_shown(str(value))}: {e}") from None
            else:
                env[name] = self.value(value, ("vars", name), env)
        return env

    def _input_shape(self) -> Shape:
        shape = []
        for i, d in enumerate(self.spec.input):
            v = self.value(d, ("input", i), self.global_env)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"input sizes must be positive integers, got {v!r}",
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
        inferred = "classification" if len(out) == 1 else "segmentation"
        task = self.spec.task or inferred
        want = {"classification": 1, "segmentation": 3}[task]
        if len(out) != want:
            kind = "[K] class scores" if want == 1 else "[K, H, W] per-pixel class scores"
            raise SpecError(f"task {task} needs {kind}, but the network outputs {fmt_shape(out)}",
                            self.doc.pos(("task",)))
        return task

    # ------------------------------------------------------------------ values
    def _eval_value(self, value: Any, env: dict[str, Any]) -> Any:
        if is_expression(value):
            return evaluate(value, env)
        if isinstance(value, list):
            return [self._eval_value(v, env) for v in value]
        return value

    def value(self, value: Any, path: Path, env: dict[str, Any]) -> Any:
        """Evaluate ``$`` expressions in a value (recursively in lists), positioned."""
        if isinstance(value, list):
            return [self.value(v, (*path, i), env) for i, v in enumerate(value)]
        if not is_expression(value):
            return value
        try:
            return evaluate(value, env)
        except ExprError as e:
            raise SpecError(f"in {_shown(value, True)}: {e}", self._expr_pos(path, e.offset)
                            ) from None

    def _expr_pos(self, path: Path, offset: int) -> Pos:
        """The position of character ``offset`` of the expression at ``path``, following
        the scalar through its source text (quotes, lines folded into spaces)."""
        pos = self.doc.pos(path)
        value = _lookup(self.doc.data, path)
        lines = self.doc.text.splitlines(keepends=True)
        if not isinstance(value, str) or not 0 < pos.line <= len(lines):
            return pos
        src = "".join(lines[pos.line - 1:])
        j = pos.col - 1 + (1 if src[pos.col - 1:pos.col] in ("'", '"') else 0)
        i = 0
        while i < offset and j < len(src):
            if value[i] == src[j]:
                i, j = i + 1, j + 1
            elif src[j] in " \t\r\n":
                j += 1
            elif value[i] == " ":
                i += 1
            else:
                break
        while j < len(src) and src[j] in " \t\r\n" and (i >= len(value) or value[i] != " "):
            j += 1
        before = src[:j]
        line = pos.line + before.count("\n")
        col = j - before.rfind("\n") if "\n" in before else j + 1
        return Pos(pos.file, line, col)

    # ------------------------------------------------------------------ entries
    def parse_entry(self, raw: Any, path: Path) -> Entry:
        if isinstance(raw, str):
            return Entry(raw, {}, {}, path, path)
        if isinstance(raw, dict) and len(raw) == 1:
            ((kind, value),) = raw.items()
            kpath = (*path, kind)
            if value is None:
                return Entry(kind, {}, {}, path, kpath)
            if isinstance(value, dict):
                return Entry(kind, dict(value), {k: (*kpath, k) for k in value}, path, kpath)
            cls = self._op_class(kind, {})
            if cls is None and kind not in STRUCTURES and kind not in self.spec.blocks:
                raise self.unknown_kind(Entry(kind, {}, {}, path, kpath))
            if cls is not None and cls.shorthand:
                return Entry(kind, {cls.shorthand: value}, {cls.shorthand: kpath}, path, kpath)
            if cls is not None and cls.shorthand_refusal:
                raise SpecError(f"{kind}: {cls.shorthand_refusal}", self.doc.pos(kpath))
            raise SpecError(f"{kind} takes a mapping of options, not {_describe(value)}",
                            self.doc.pos(kpath))
        if isinstance(raw, dict) and len(raw) > 1:
            keys = list(raw)
            inner = [k for k in keys[1:] if k in COMMON_KEYS]
            hint = (f"; put {', '.join(inner)} inside {keys[0]}'s options"
                    if inner else "; write one layer per list item")
            raise SpecError(f"a layer is a mapping with one key (its kind), found "
                            f"{', '.join(keys)}{hint}", self.doc.key((*path, keys[1])))
        raise SpecError(f"a layer is a kind name or a one-key mapping, not {_describe(raw)}",
                        self.doc.pos(path))

    def _op_class(self, kind: str, args: dict[str, Any]) -> type[LayerArgs] | None:
        family = FAMILIES.get(kind)
        if family is None:
            return None
        if None in family:
            return family[None]
        return family.get(args.get("kind"), next(iter(family.values())))

    def unknown_kind(self, e: Entry) -> SpecError:
        choices = [*SPEC_KINDS, *STRUCTURES, *self.spec.blocks]
        if e.kind.lower() in KIND_HINTS:
            hint = f" (did you mean '{KIND_HINTS[e.kind.lower()]}'?)"
        else:
            hint = did_you_mean(e.kind, choices)
        return SpecError(f"unknown layer kind '{e.kind}'{hint}", self.doc.key(e.kind_path))

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
        e = self.parse_entry(raw, path)
        as_name = self._as_name(e, ctx)
        repeat = self._repeat(e, ctx)
        if "input" in e.args:
            where = e.paths["input"]
            ref = self.value(e.args.pop("input"), where, ctx.env)
            x = self.reference(ref, ctx, self.doc.pos(where), what="input")
        if repeat is None:
            out = self._one(e, ctx, x, as_name)
            if as_name:
                ctx.names[as_name] = out
            return out
        if repeat == 0:  # a stage a scale variant shrinks away: the tensor passes through
            if as_name:
                self._claim(as_name, ctx, e)
                ctx.names[as_name] = x
                ctx.names[f"{as_name}.*"] = ()
            return x
        container = self._claim(as_name or self._auto(ctx, e.kind), ctx, e)
        scope = join(ctx.scope, container)
        self._scope(scope, "repeat", f"{e.kind} × {repeat}", e)
        inner = ctx.child(scope, names=ctx.names)
        copies = []
        for i in range(repeat):
            inner.env = {**ctx.env, "i": i}
            x = self._one(e, inner, x, str(i))
            copies.append(x)
            if as_name:
                ctx.names[f"{as_name}.{i}"] = x
        if as_name:
            ctx.names[as_name] = x
            ctx.names[f"{as_name}.*"] = tuple(copies)
        return x

    def _one(self, e: Entry, ctx: Ctx, x: str, name: str | None) -> str:
        if e.kind in self.spec.blocks:
            out = self.block(e, ctx, x, self._claim(name or self._auto(ctx, e.kind), ctx, e))
        elif e.kind == "residual":
            out = self.residual(e, ctx, x, name)
        elif e.kind == "dense":
            out = self.dense(e, ctx, x, self._claim(name or self._auto(ctx, "dense"), ctx, e))
        elif e.kind == "parallel":
            out = self.parallel(e, ctx, x, name)
        else:
            out = self.layer(e, ctx, x, name)
        return out

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
        if not isinstance(name, str) or not IDENTIFIER.match(name):
            raise SpecError(f"as: '{name}' is not a valid name (letters, digits, _)",
                            self.doc.pos(e.paths["as"]))
        if name == INPUT:
            raise SpecError("as: 'input' is reserved for the network's input",
                            self.doc.pos(e.paths["as"]))
        if name == BLOCK_INPUT:
            raise SpecError("as: 'in' is reserved: it names the input of the enclosing block",
                            self.doc.pos(e.paths["as"]))
        if name.startswith("_") or name in RESERVED_NAMES:
            raise SpecError(f"as: '{name}' is reserved (torch modules use it for themselves); "
                            "choose another name", self.doc.pos(e.paths["as"]))
        return name

    def _repeat(self, e: Entry, ctx: Ctx) -> int | None:
        if "repeat" not in e.args:
            return None
        n = self.value(e.args.pop("repeat"), e.paths["repeat"], ctx.env)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_REPEAT:
            raise SpecError(f"repeat must be an integer from 0 to {MAX_REPEAT:,}, got {n!r}",
                            self.doc.pos(e.paths["repeat"]))
        return n

    def _auto(self, ctx: Ctx, prefix: str) -> str:
        while True:
            ctx.counters[prefix] = ctx.counters.get(prefix, 0) + 1
            name = f"{prefix}{ctx.counters[prefix]}"
            if name not in ctx.taken:
                return name

    def _claim(self, name: str, ctx: Ctx, e: Entry) -> str:
        if name in ctx.taken:
            raise SpecError(f"the name '{name}' is already used in this scope",
                            self.doc.pos(e.paths.get("as", e.path)))
        ctx.taken.add(name)
        return name

    def _scope(self, path: str, kind: str, label: str, e: Entry) -> None:
        self.scopes[path] = Scope(path, kind, label, self.doc.pos(e.path))

    # ------------------------------------------------------------------ layers
    def _options(self, e: Entry, ctx: Ctx, cls: type[LayerArgs]) -> tuple[dict, dict]:
        """The layer's options over its kind's defaults, evaluated, with their paths."""
        args: dict[str, Any] = {}
        paths: dict[str, Path] = {}
        defaults = self.spec.defaults.get(e.kind, {})
        fields = {f.alias or n for n, f in cls.model_fields.items()} | set(cls.model_fields)
        for key, value in defaults.items():
            if key not in fields and key not in e.args:
                continue  # a norm default that this norm kind has no use for
            dpath = ("defaults", e.kind, key)
            args[key], paths[key] = self.value(value, dpath, ctx.env), dpath
        for key, value in e.args.items():
            args[key], paths[key] = self.value(value, e.paths[key], ctx.env), e.paths[key]
        return args, paths

    def _kind_class(self, e: Entry, ctx: Ctx) -> type[LayerArgs]:
        if e.kind != "norm":
            cls = self._op_class(e.kind, e.args)
            if cls is None:
                raise self.unknown_kind(e)
            return cls
        default = self.spec.defaults.get("norm", {})
        if "kind" in e.args:
            value, where = e.args["kind"], e.paths["kind"]
        elif "kind" in default:
            value, where = default["kind"], ("defaults", "norm", "kind")
        else:
            raise SpecError("norm needs a kind: batch, layer, instance, group or rms "
                            "(e.g. 'norm: batch')", self.doc.key(e.kind_path))
        kind = self.value(value, where, ctx.env)
        if not isinstance(kind, str) or kind not in NORM_KINDS:
            raise SpecError(f"unknown norm kind '{kind}'{did_you_mean(str(kind), NORM_KINDS)}"
                            f"; expected one of: {', '.join(NORM_KINDS)}", self.doc.pos(where))
        return NORM_KINDS[kind]

    def layer(self, e: Entry, ctx: Ctx, x: str, name: str | None) -> str:
        cls = self._kind_class(e, ctx)
        args, paths = self._options(e, ctx, cls)
        try:
            model = cls.model_validate(args)
        except ValidationError as err:
            raise SpecErrors(errors_from_pydantic(
                err, self.doc, base=e.kind_path, prefix=f"{e.kind}: ", paths=paths,
                fields={f.alias or n: f for n, f in cls.model_fields.items()},
                data=args)) from None
        if isinstance(model, Split):
            return self.split(model, e, ctx, x, name, paths)
        ins = self._refs(model, e, ctx, x) if cls.arity is None else [x]
        return self.add_node(model, ins, name, ctx, e, paths=paths)

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
        if x in refs:
            return refs
        return [x, *refs]

    def split(self, model: Split, e: Entry, ctx: Ctx, x: str, name: str | None,
              paths: dict[str, Path]) -> str:
        """One node per part, ``x.0`` … in the split's scope; the last is the current."""
        local = self._claim(name, ctx, e) if name else self._auto(ctx, model.auto_name)
        ctx.taken.add(local)
        scope = join(ctx.scope, local)
        try:
            sizes = model.part_sizes(self.nodes[x].shape[0])
        except ShapeError as err:
            field_path = paths.get(err.field or "")
            where = self.doc.pos(field_path) if field_path else self.doc.key(e.kind_path)
            raise SpecError(f"{e.kind}: {err}", where) from None
        self._scope(scope, "split", f"split {sizes}", e)
        inner = ctx.child(scope)
        parts = tuple(self.add_node(model.part(i), [x], str(i), inner, e, paths=paths)
                      for i in range(len(sizes)))
        if name is not None and not name.isdigit():  # a name of its own, not a repeat copy's
            for i, part in enumerate(parts):
                ctx.names[f"{name}.{i}"] = part
            ctx.names[f"{name}.*"] = parts
        return parts[-1]

    def add_node(self, model: LayerArgs, inputs: list[str], name: str | None, ctx: Ctx,
                 e: Entry, note: str = "", paths: dict[str, Path] | None = None) -> str:
        shapes = [self.nodes[i].shape for i in inputs]
        try:
            shape = model.out_shape(shapes)
        except ShapeError as err:
            field_path = (paths or {}).get(err.field or "")
            where = self.doc.pos(field_path) if field_path else self.doc.key(e.kind_path)
            raise SpecError(f"{e.kind}: {err}", where) from None
        local = self._claim(name, ctx, e) if name else self._auto(ctx, model.auto_name)
        ctx.taken.add(local)
        full = join(ctx.scope, local)
        if len(self.nodes) >= MAX_NODES:
            raise SpecError(f"the network expands to more than {MAX_NODES:,} layers",
                            self.doc.pos(e.path))
        self.nodes[full] = Node(full, model.op, model, tuple(inputs), shape,
                                self.doc.pos(e.path), note)
        return full

    # ------------------------------------------------------------------ blocks
    def block(self, e: Entry, ctx: Ctx, x: str, local: str) -> str:
        block = self.spec.blocks[e.kind]
        use_pos = self.doc.pos(e.path)
        chain = [b for b, _ in ctx.stack]
        if e.kind in chain:
            cycle = " → ".join([*chain[chain.index(e.kind):], e.kind])
            raise SpecError(f"block '{e.kind}' uses itself: {cycle}", self.doc.key(e.kind_path))
        if len(ctx.stack) >= MAX_BLOCK_DEPTH:
            raise SpecError(f"blocks nested more than {MAX_BLOCK_DEPTH} deep",
                            self.doc.key(e.kind_path))
        for key in e.args:
            if key not in block.args:
                known = ", ".join(block.args) or "none"
                raise SpecError(f"block '{e.kind}' has no arg '{key}'"
                                f"{did_you_mean(key, block.args)} (its args: {known})",
                                self.doc.key(e.paths[key]))
        env = dict(self.global_env)
        env["in"] = self.nodes[x].shape[0]
        for arg, default in block.args.items():
            if arg in e.args:
                env[arg] = self.value(e.args[arg], e.paths[arg], ctx.env)
            elif is_required(default):
                raise SpecError(f"block '{e.kind}' needs arg '{arg}'", self.doc.key(e.kind_path))
            else:
                env[arg] = self.value(default, ("blocks", e.kind, "args", arg), env)
        scope = join(ctx.scope, local)
        shown = ", ".join(f"{a}={env[a]}" for a in block.args)
        self._scope(scope, "block", f"{e.kind}({shown})" if shown else e.kind, e)
        inner = ctx.child(scope, env=env, names=ChainMap({BLOCK_INPUT: x}),
                          block=(e.kind, use_pos))
        try:
            return self.sequence(block.layers, ("blocks", e.kind, "layers"), inner, x)
        except SpecErrors as errs:
            for err in errs.errors:
                _note_block(err, e.kind, use_pos)
            raise SpecErrors(errs.errors) from None
        except SpecError as err:
            _note_block(err, e.kind, use_pos)
            raise

    def _structure_opts(self, e: Entry, keys: tuple[str, ...]) -> None:
        for key in e.args:
            if key not in keys:
                raise SpecError(f"{e.kind}: unknown key '{key}'{did_you_mean(key, keys)}; "
                                f"expected one of: {', '.join(keys)}", self.doc.key(e.paths[key]))
        if "body" not in e.args:
            raise SpecError(f"{e.kind} needs a body: a list of layers or one layer",
                            self.doc.key(e.kind_path))

    def _combine(self, e: Entry, ctx: Ctx, default: str) -> type[Add] | type[Concat]:
        combine = self.value(e.args.get("combine", default), e.paths.get("combine", e.kind_path),
                             ctx.env)
        if combine not in ("add", "concat"):
            raise SpecError(f"{e.kind}: combine is add or concat, not {combine!r}",
                            self.doc.pos(e.paths["combine"]))
        return Add if combine == "add" else Concat

    def residual(self, e: Entry, ctx: Ctx, x: str, name: str | None) -> str:
        """out = combine(body(x), shortcut(x))."""
        self._structure_opts(e, RESIDUAL_KEYS)
        merge = self._combine(e, ctx, "add")
        first = self.value(e.args.get("shortcut_first", False),
                           e.paths.get("shortcut_first", e.kind_path), ctx.env)
        if not isinstance(first, bool):
            raise SpecError(f"residual: shortcut_first is true or false, not {first!r}",
                            self.doc.pos(e.paths["shortcut_first"]))
        start = len(self.nodes)
        y = self.sequence(e.args["body"], e.paths["body"], ctx, x)
        body = list(self.nodes.values())[start:]
        body_end = len(self.nodes)
        shortcut = self.value(e.args.get("shortcut", "auto"), e.paths.get("shortcut", e.path),
                              ctx.env)
        x_shape, y_shape = self.nodes[x].shape, self.nodes[y].shape
        fits = x_shape == y_shape if merge is Add else x_shape[1:] == y_shape[1:]
        if shortcut == "identity" or (shortcut == "auto" and fits):
            s, note = x, "residual, identity shortcut"
            if not fits:
                raise SpecError(
                    f"residual: identity shortcut cannot {merge.op} {fmt_shape(x_shape)} to the "
                    f"body's {fmt_shape(y_shape)}; use shortcut: auto or give its layers",
                    self.doc.pos(e.paths["shortcut"]) if "shortcut" in e.paths
                    else self.doc.key(e.kind_path))
        elif shortcut == "auto":
            s, note = self._projection(e, ctx, x, y, body)
        elif isinstance(e.args["shortcut"], list | dict):
            local = self._auto_scope(ctx, "shortcut")
            scope = join(ctx.scope, local)
            self._scope(scope, "shortcut", "shortcut", e)
            s = self.sequence(e.args["shortcut"], e.paths["shortcut"], ctx.child(scope), x)
            note = "residual, shortcut as written"
        else:
            raise SpecError(f"residual: shortcut is auto, identity or a list of layers, not "
                            f"{shortcut!r}", self.doc.pos(e.paths["shortcut"]))
        if first and len(self.nodes) > body_end:
            # the shortcut reads only x, so running it before the body keeps the order
            # topological; its tensors then register first, as torchvision's RegNet
            items = list(self.nodes.items())
            self.nodes = dict(items[:start] + items[body_end:] + items[start:body_end])
            note += ", registered before the body"
        return self.add_node(merge(), [y, s], name, ctx, e, note=note)

    def parallel(self, e: Entry, ctx: Ctx, x: str, name: str | None) -> str:
        """Every branch reads x; the outputs merge (concat by default) in branch order."""
        for key in e.args:
            if key not in PARALLEL_KEYS:
                raise SpecError(f"parallel: unknown key '{key}'"
                                f"{did_you_mean(key, PARALLEL_KEYS)}; expected one of: "
                                f"{', '.join(PARALLEL_KEYS)}", self.doc.key(e.paths[key]))
        branches = e.args.get("branches")
        if not isinstance(branches, list) or not branches:
            raise SpecError("parallel needs branches: a list whose items are each a layer, a "
                            "list of layers, or identity",
                            self.doc.pos(e.paths["branches"]) if "branches" in e.paths
                            else self.doc.key(e.kind_path))
        merge = self._combine(e, ctx, "concat")
        outs = []
        for i, branch in enumerate(branches):
            path = (*e.paths["branches"], i)
            if branch == "identity":
                outs.append(x)
                continue
            n = i + 1
            while f"branch{n}" in ctx.taken:
                n += 1
            ctx.taken.add(f"branch{n}")
            scope = join(ctx.scope, f"branch{n}")
            self._scope(scope, "branch", f"branch {i + 1}", e)
            outs.append(self.sequence(branch, path, ctx.child(scope), x))
        return self.add_node(merge(), outs, name, ctx, e,
                             note=f"parallel, {len(outs)} branches")

    def _auto_scope(self, ctx: Ctx, base: str) -> str:
        n = 1
        while (local := base if n == 1 else f"{base}{n}") in ctx.taken:
            n += 1
        ctx.taken.add(local)
        return local

    def _projection(self, e: Entry, ctx: Ctx, x: str, y: str, body: list[Node]
                    ) -> tuple[str, str]:
        """Auto shortcut: 1×1 conv (or linear) with the body's stride + the body's norm."""
        x_shape, y_shape = self.nodes[x].shape, self.nodes[y].shape
        norm = next((n.args for n in body if n.args is not None and n.args.is_norm), None)
        local = self._auto_scope(ctx, "shortcut")
        scope = join(ctx.scope, local)
        self._scope(scope, "shortcut", "projection shortcut", e)
        inner = ctx.child(scope)
        if len(x_shape) == 1:
            proj: LayerArgs = Linear(out=y_shape[0], bias=norm is None)
            what = "linear"
        else:
            if len(y_shape) != 3:
                raise SpecError(f"residual: the body turns {fmt_shape(x_shape)} into "
                                f"{fmt_shape(y_shape)}; a shortcut cannot follow",
                                self.doc.key(e.kind_path))
            stride = [_stride_between(a, b) for a, b in zip(x_shape[1:], y_shape[1:],
                                                            strict=True)]
            if None in stride:
                raise SpecError(
                    f"residual: no 1×1 strided conv maps {fmt_shape(x_shape)} to the body's "
                    f"{fmt_shape(y_shape)}; give the shortcut's layers",
                    self.doc.key(e.kind_path))
            s = stride[0] if stride[0] == stride[1] else (stride[0], stride[1])
            proj = Conv(out=y_shape[0], k=1, stride=s, pad=0, bias=norm is None)
            what = f"1×1 conv, stride {stride[0]}"
        s_out = self.add_node(proj, [x], None, inner, e)
        if norm is not None:
            s_out = self.add_node(norm, [s_out], None, inner, e)
            what += f" + {norm.op}"
        return s_out, (f"residual, projection shortcut ({what}): "
                       f"{fmt_shape(x_shape)} → {fmt_shape(y_shape)}")

    def dense(self, e: Entry, ctx: Ctx, x: str, local: str) -> str:
        """Each of n layers sees the block input and every earlier layer's output."""
        self._structure_opts(e, DENSE_KEYS)
        merge = self._combine(e, ctx, "concat")
        n = self.value(e.args.get("n"), e.paths.get("n", e.kind_path), ctx.env)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REPEAT:
            raise SpecError(f"dense: n must be an integer from 1 to {MAX_REPEAT:,}, got {n!r}",
                            self.doc.pos(e.paths["n"]) if "n" in e.paths
                            else self.doc.key(e.kind_path))
        scope = join(ctx.scope, local)
        self._scope(scope, "dense", f"dense × {n} ({merge.op})", e)
        inner = ctx.child(scope)
        features = [x]
        for i in range(n):
            seen = features[0] if i == 0 else self.add_node(merge(), features, None, inner, e)
            inner.taken.add(str(i))
            layer_ctx = inner.child(join(scope, str(i)))
            self._scope(join(scope, str(i)), "dense-layer", f"layer {i}", e)
            features = [*features, self.sequence(e.args["body"], e.paths["body"], layer_ctx,
                                                 seen)]
        return self.add_node(merge(), features, None, inner, e)


def _note_block(err: SpecError, block: str, use: Pos) -> None:
    """Say which use of a block went wrong: the error's position is inside its body."""
    if err.pos and err.pos.line != use.line and "[in block" not in err.message:
        err.message += f" [in block '{block}' used at line {use.line}]"


def _stride_between(n_in: int, n_out: int) -> int | None:
    for s in range(1, n_in + 1):
        if (n_in - 1) // s + 1 == n_out:
            return s
    return None


def _lookup(data: Any, path: Path) -> Any:
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"


def check_defaults(doc: Document, spec: SpecModel) -> list[SpecError]:
    """Every ``defaults`` key names a kind, and every option in it exists for that kind."""
    errors = []
    for kind, options in spec.defaults.items():
        if kind in FAMILIES:
            fields = set().union(*(c.option_names() for c in FAMILIES[kind].values()))
        else:
            errors.append(SpecError(
                f"defaults: unknown layer kind '{kind}'{did_you_mean(kind, SPEC_KINDS)}",
                doc.key(("defaults", kind))))
            continue
        for key in options:
            if key not in fields:
                errors.append(SpecError(
                    f"defaults: {kind} has no option '{key}'{did_you_mean(key, fields)}",
                    doc.key(("defaults", kind, key))))
    for name in spec.blocks:
        if name in SPEC_KINDS or name in STRUCTURES:
            errors.append(SpecError(f"block name '{name}' is a built-in layer kind; "
                                    "choose another", doc.key(("blocks", name))))
    return errors


def lint_layers(doc: Document, spec: SpecModel) -> list[SpecError]:
    """Problems that need no shapes — malformed entries, unknown kinds, options and block
    args — found in every layer list at once, so one run reports all of them."""
    r = Resolver(doc, spec, {})
    errors: list[SpecError] = []

    def walk(items: Any, path: Path) -> None:
        entries = items if isinstance(items, list) else [items]
        for i, raw in enumerate(entries):
            here = (*path, i) if isinstance(items, list) else path
            try:
                e = r.parse_entry(raw, here)
            except SpecError as err:
                errors.append(err)
                continue
            own = {k: v for k, v in e.args.items() if k not in COMMON_KEYS}
            if e.kind in spec.blocks:
                known: tuple[str, ...] | None = tuple(spec.blocks[e.kind].args)
                what = f"block '{e.kind}' has no arg"
            elif e.kind in STRUCTURES:
                known = STRUCTURE_KEYS[e.kind]
                what = f"{e.kind}: unknown key"
                for key in ("body", "shortcut"):
                    if isinstance(own.get(key), list | dict) or (
                            key == "body" and isinstance(own.get(key), str)):
                        walk(own[key], e.paths[key])
                if isinstance(own.get("branches"), list):
                    for i, branch in enumerate(own["branches"]):
                        if branch != "identity":
                            walk(branch, (*e.paths["branches"], i))
            elif e.kind == "norm":
                cls = NORM_KINDS.get(str(own.get("kind")))
                known = cls.option_names() if cls else None
                what = f"norm {own.get('kind')}: unknown option"
            elif e.kind in FAMILIES:
                known = FAMILIES[e.kind][None].option_names()
                what = f"{e.kind}: unknown option"
            else:
                errors.append(r.unknown_kind(e))
                continue
            if known is None:
                continue
            for key in own:
                if key not in known:
                    errors.append(SpecError(
                        f"{what} '{key}'{did_you_mean(key, known)}"
                        + (f"; expected one of: {', '.join(known)}" if known else ""),
                        doc.key(e.paths[key])))

    walk(spec.layers, ("layers",))
    for name, block in spec.blocks.items():
        walk(block.layers, ("blocks", name, "layers"))
    return errors
