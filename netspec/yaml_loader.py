"""Safe YAML loading that remembers where every value came from.

PyYAML composes the text into a node tree (safe: no tags beyond the core schema are
constructed); we walk that tree ourselves to build plain dicts, lists and scalars, and
record the position of every value and every mapping key by its *path* — the tuple of
keys and indices that reaches it. A pydantic error's ``loc`` is such a path, so every
validation error can be pinned to ``FILE:LINE:COL`` by a dictionary look-up.

Walking the tree ourselves is also what makes loading bounded: duplicate keys are
refused, nesting depth is capped, and aliases count every value they expand to, so a
"billion laughs" document is refused after a fixed amount of work.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from netspec.errors import Pos, SpecError, UsageError

Path = tuple[str | int, ...]

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000


# libyaml's parser when PyYAML was built with it: the same nodes and marks, ~10× faster
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """SafeLoader that also reads YAML 1.2 floats such as ``1e-5``.

    YAML 1.1 (PyYAML's default) wants a dot in an exponent float, so ``eps: 1e-5``
    would otherwise arrive as the *string* "1e-5".
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


@dataclass
class Document:
    """A loaded spec: plain data plus the position of everything in it."""

    file: str
    text: str
    data: Any
    value_pos: dict[Path, Pos] = field(default_factory=dict)
    key_pos: dict[Path, Pos] = field(default_factory=dict)
    #: where each value's text starts and ends (character offsets into ``text``): what
    #: ``netspec fit -o`` replaces when it writes a var's new value
    spans: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def pos(self, path: Path) -> Pos:
        """Position of the value at ``path``, or of its nearest positioned ancestor."""
        path = tuple(path)
        while path:
            if path in self.value_pos:
                return self.value_pos[path]
            path = path[:-1]
        return self.value_pos.get((), Pos(self.file, 1, 1))

    def key(self, path: Path) -> Pos:
        """Position of the mapping key that names ``path`` (falls back to the value)."""
        path = tuple(path)
        return self.key_pos.get(path) or self.pos(path)

    def at(self, path: Path) -> Any:
        """The value at ``path``, or None where there is none."""
        data = self.data
        for key in path:
            try:
                data = data[key]
            except (KeyError, IndexError, TypeError):
                return None
        return data

    def expr_pos(self, path: Path, offset: int) -> Pos:
        """The position of character ``offset`` of the string at ``path`` (an expression
        whose error points inside it), following the scalar through its source text:
        quotes, and lines YAML folded into spaces."""
        pos = self.pos(path)
        value = self.at(path)
        lines = self.text.splitlines(keepends=True)
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


def _mark_pos(file: str, mark: Any) -> Pos:
    return Pos(file, mark.line + 1, mark.column + 1)


def _reader_error(e: yaml.reader.ReaderError, text: str, file: str) -> SpecError:
    """A character YAML does not allow, at its line and column (str(e) spans two lines)."""
    # libyaml's position counts UTF-8 bytes, the pure-Python reader's characters: find the
    # character the way the pure reader does, in characters
    m = yaml.reader.Reader.NON_PRINTABLE.search(text)
    at = m.start() if m else min(max(e.position, 0), len(text))
    before = text[:at]
    line = before.count("\n") + 1
    col = at - (before.rfind("\n") + 1) + 1
    char = m.group() if m else (e.character if isinstance(e.character, str)
                                else chr(e.character))
    return SpecError(f"invalid YAML: character U+{ord(char):04X} is not allowed in YAML "
                     "text (a control character?)", Pos(file, line, col))


def load_file(path: str | FsPath, what: str = "spec") -> Document:
    """Read a spec file (or another YAML file netspec reads, ``what`` it is in messages: a
    ``--map``): a regular file (or a link to one) of at most MAX_FILE_BYTES.

    The size is checked on the bytes read, not on ``stat()``: at most the limit + 1 bytes
    are ever read, and a device, FIFO or socket (``/dev/zero``, ``/dev/urandom``, a named
    pipe that never ends) is refused before it is opened."""
    p = FsPath(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UsageError(f"{p}: no such file") from None
    except OSError as e:
        raise UsageError(f"{p}: cannot read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{p}: is a directory, not a {what} file")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{p}: is {_special_kind(st.st_mode)}, not a regular file; "
                         f"a {what} must be a file")
    if st.st_size > MAX_FILE_BYTES:
        raise SpecError(
            f"{what} file is {st.st_size:,} bytes; the limit is {MAX_FILE_BYTES:,}",
            Pos(str(p), 1, 1))
    try:
        # O_NONBLOCK: should the path have become a FIFO since stat(), open() does not wait
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise UsageError(f"{p}: is not a regular file; a {what} must be a file")
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise UsageError(f"{p}: cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(f"{what} file is larger than {MAX_FILE_BYTES:,} bytes, the limit",
                        Pos(str(p), 1, 1))
    return load_bytes(raw, str(p), what)


def _special_kind(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def load_bytes(raw: bytes, file: str, what: str = "spec") -> Document:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = raw[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError(
            f"not UTF-8 text: byte 0x{raw[e.start]:02x} cannot be decoded", Pos(file, line, col)
        ) from None
    return load_text(text, file, what)


def load_text(text: str, file: str = "<string>", what: str = "spec") -> Document:
    """``text`` as a Document whose data is a mapping, bounded (size, nesting, aliases)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise SpecError(f"{what} text is larger than {MAX_FILE_BYTES:,} bytes",
                        Pos(file, 1, 1))
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as e:  # the pure-Python reader checks on construction
        raise _reader_error(e, text, file) from None
    try:
        _check_nesting(text, file)  # before the composer, which recurses once per level
        root = loader.get_single_node()
    except yaml.reader.ReaderError as e:  # a control character: no mark, a position
        raise _reader_error(e, text, file) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = _mark_pos(file, mark) if mark else Pos(file, 1, 1)
        context = ""
        if e.context and e.context_mark and e.problem:
            context = f" ({e.context} at line {e.context_mark.line + 1})"
        if mark and _char_at(text, mark.line, mark.column) == "\t":
            context += " — a tab: YAML indents with spaces only"
        elif mark and (hint := _indentation(e, text)):
            raise SpecError(f"invalid YAML: {hint}", where) from None
        raise SpecError(f"invalid YAML: {e.problem or e.context}{context}", where) from None
    except yaml.YAMLError as e:
        raise SpecError(f"invalid YAML: {e}", Pos(file, 1, 1)) from None
    except RecursionError:
        raise SpecError(f"YAML nested deeper than {MAX_DEPTH} levels", Pos(file, 1, 1)) from None
    finally:
        loader.dispose()
    if root is None:
        keys = " with netspec, name, input, layers" if what == "spec" else ""
        raise SpecError(f"empty {what}: expected a mapping{keys}", Pos(file, 1, 1))
    doc = Document(file=file, text=text, data=None)
    walker = _Walker(doc, loader, what)
    doc.data = walker.walk(root, (), 0)
    if not isinstance(doc.data, dict):
        raise SpecError(
            f"the top level of a {what} must be a mapping, not {_type_name(doc.data)}",
            doc.pos(()),
        )
    return doc


def _check_nesting(text: str, file: str) -> None:
    """Refuse a document nested deeper than MAX_DEPTH from its parse events, before it is
    composed: libyaml's composer recurses in C once per level, and 50,000 levels
    (``- - - …``, ``[[[…``: two bytes each) overflow its stack — a crash, not an error.
    The parser keeps its own stack, so reading the events is bounded. Refused where the
    walker would refuse: the first value (or collection key) deeper than MAX_DEPTH."""
    loader = _Loader(text)
    try:
        # per open collection: whether it is a mapping, and how many nodes it has had
        open_: list[list[Any]] = []
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.CollectionEndEvent):
                open_.pop()
                continue
            if not isinstance(event, yaml.NodeEvent):  # stream and document events
                continue
            scalar_key = (bool(open_) and open_[-1][0] and open_[-1][1] % 2 == 0
                          and not isinstance(event, yaml.CollectionStartEvent))
            if open_:
                open_[-1][1] += 1
            if len(open_) > MAX_DEPTH and not scalar_key:
                raise SpecError(f"nested deeper than {MAX_DEPTH} levels",
                                _mark_pos(file, event.start_mark))
            if isinstance(event, yaml.CollectionStartEvent):
                open_.append([isinstance(event, yaml.MappingStartEvent), 0])
    except yaml.MarkedYAMLError as e:
        # PyYAML 6.0.4 bounds flow nesting itself (at 1,000), and its scanner, looking
        # ahead for a possible key, meets that bound before the events at our depth are
        # read: the same refusal, at the collection that goes past MAX_DEPTH
        if "maximum nesting depth" not in str(e.problem):
            raise
        where = _deep_flow(text)
        mark = e.problem_mark
        raise SpecError(f"nested deeper than {MAX_DEPTH} levels",
                        Pos(file, *where) if where else
                        _mark_pos(file, mark) if mark else Pos(file, 1, 1)) from None
    finally:
        loader.dispose()


def _deep_flow(text: str) -> tuple[int, int] | None:
    """Line and column of the first ``[`` or ``{`` that opens a collection deeper than
    MAX_DEPTH (quoted text skipped), or None when there is none."""
    depth, line, col, quote = 0, 1, 0, ""
    for ch in text:
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line, col
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return None


def _indentation(e: yaml.MarkedYAMLError, text: str) -> str | None:
    """The message for a YAML error that is an indentation mistake, or None: a line that
    lines up with no key (or ``-`` item) of the block it continues, or a key indented
    deeper than the line above it."""
    mark, ctx = e.problem_mark, e.context_mark
    if mark is None:
        return None
    problem = e.problem or ""
    col = mark.column + 1
    # libyaml's words, then the pure-Python parser's
    if ctx is not None and (problem in ("did not find expected key",
                                        "did not find expected '-' indicator")
                            or problem.startswith("expected <block end>")):
        what = "keys" if "mapping" in (e.context or "") else "'-' items"
        return (f"wrong indentation: this line is indented to column {col}, but the block "
                f"it continues (from line {ctx.line + 1}) has its {what} at column "
                f"{ctx.column + 1}")
    if problem == "mapping values are not allowed in this context":
        lines = text.splitlines()
        if not 0 < mark.line < len(lines):
            return None
        above = next((i for i in range(mark.line - 1, -1, -1)
                      if lines[i].strip() and not lines[i].lstrip().startswith("#")), None)
        here = len(lines[mark.line]) - len(lines[mark.line].lstrip(" "))
        if above is None or here <= len(lines[above]) - len(lines[above].lstrip(" ")):
            return None
        return (f"wrong indentation: this key is indented deeper than line {above + 1} "
                "above it, so YAML reads it as part of that line's value")
    return None


def _char_at(text: str, line: int, col: int) -> str:
    lines = text.splitlines()
    return lines[line][col:col + 1] if 0 <= line < len(lines) else ""


def _type_name(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


class _Walker:
    def __init__(self, doc: Document, loader: _Loader, what: str = "spec") -> None:
        self.doc = doc
        self.loader = loader
        self.what = what
        self.count = 0
        self.seen: set[int] = set()

    def walk(self, node: yaml.Node, path: Path, depth: int, fresh: Pos | None = None) -> Any:
        """``fresh`` is the innermost value on the way here that is seen for the first time:
        where an alias bomb is reported (its anchors were fine where they were defined)."""
        where = _mark_pos(self.doc.file, node.start_mark)
        if id(node) not in self.seen:
            self.seen.add(id(node))
            fresh = where
        self.count += 1
        if self.count > MAX_VALUES:
            raise SpecError(
                f"{self.what} expands to more than {MAX_VALUES:,} values (YAML aliases?); "
                "refused",
                fresh or where,
            )
        if depth > MAX_DEPTH:
            raise SpecError(f"nested deeper than {MAX_DEPTH} levels", where)
        self.doc.value_pos.setdefault(path, where)
        self.doc.spans.setdefault(path, (node.start_mark.index, node.end_mark.index))
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in (
                "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
            raise SpecError(f"YAML tag '{node.tag}' is not allowed in a {self.what}", where)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth, fresh)
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, (*path, i), depth + 1, fresh)
                    for i, item in enumerate(node.value)]
        return self._scalar(node, where)

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int,
                 fresh: Pos | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_where = _mark_pos(self.doc.file, key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError("a mapping key must be a plain name", key_where)
            key = key_node.value
            if key == "<<" and key_node.tag == "tag:yaml.org,2002:merge":
                raise SpecError(
                    "YAML merge keys (<<) are not supported; use blocks or defaults", key_where
                )
            if key in out:
                first = self.doc.key_pos[(*path, key)]
                raise SpecError(
                    f"duplicate key '{key}' (first at line {first.line}); YAML would keep only "
                    "the last one",
                    key_where,
                )
            self.doc.key_pos[(*path, key)] = key_where
            out[key] = self.walk(value_node, (*path, key), depth + 1, fresh)
        return out

    def _scalar(self, node: yaml.Node, where: Pos) -> Any:
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise SpecError(f"YAML tag '{node.tag}' is not allowed in a {self.what}", where)
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, yaml.YAMLError) as e:
            raise SpecError(f"bad scalar '{str(node.value)[:40]}': {e}", where) from None
