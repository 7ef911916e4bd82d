"""The spec's small arithmetic: ``$width * 2``, ``$in // 2``, ``max(8, round($c * 0.25))``.

A hand-written tokenizer and precedence-climbing parser over a fixed grammar — never
Python's ``eval``. It can read variables, do + - * / // % on numbers, and call the
functions of ``FUNCTIONS`` (round, min, max, int); nothing else exists for it to
reach. Sizes are bounded (text length, nesting, magnitude of every intermediate
result), and division by zero is an ordinary error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_EXPR_CHARS = 500
MAX_NESTING = 32
MAX_MAGNITUDE = 10**15

Number = int | float


class ExprError(ValueError):
    """A problem with an expression; ``offset`` is the character it was found at."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
    r"|(?P<var>\$[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|//|[-+*/%(),]))"
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    offset: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if not m or m.end() == i:
            skipped = len(text[i:]) - len(text[i:].lstrip())
            char = text[i + skipped]
            shown = f"'{char}'" if char.isprintable() else repr(char)
            raise ExprError(f"unexpected character {shown}", i + skipped)
        kind = m.lastgroup or ""
        if m.group(kind) == "**":
            raise ExprError("'**' (power) is not supported in expressions", m.start(kind))
        toks.append(_Tok(kind, m.group(kind), m.start(kind)))
        i = m.end()
    toks.append(_Tok("end", "", len(text)))
    return toks


def _checked(value: Any, offset: int) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError("result is not a finite number", offset)
    if abs(value) > MAX_MAGNITUDE:
        raise ExprError(f"value {value:.3g} is too large (limit {MAX_MAGNITUDE:.0e})", offset)
    return value


def _num(value: Any, what: str, offset: int) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExprError(f"{what} needs a number, got {value!r}", offset)
    return value


def _round(*args: Number) -> Number:
    if len(args) == 1:
        return round(args[0])
    if len(args) == 2 and isinstance(args[1], int):
        # beyond 16 digits either way nothing changes under the magnitude bound, and a huge
        # negative ndigits would make Python compute 10**|ndigits|
        return round(args[0], max(-16, min(16, args[1])))
    raise ValueError("round takes (x) or (x, ndigits)")


def _minmax(f: Callable[..., Number]) -> Callable[..., Number]:
    def call(*args: Number) -> Number:
        if not args:
            raise ValueError("needs at least one argument")
        return f(args)

    return call


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "round": _round,
    "min": _minmax(min),
    "max": _minmax(max),
    "int": lambda x: int(x),
}

_BINARY: dict[str, tuple[int, Callable[[Number, Number], Number]]] = {
    "+": (1, lambda a, b: a + b),
    "-": (1, lambda a, b: a - b),
    "*": (2, lambda a, b: a * b),
    "/": (2, lambda a, b: a / b),
    "//": (2, lambda a, b: a // b),
    "%": (2, lambda a, b: a % b),
}


class _Parser:
    def __init__(self, text: str, env: Mapping[str, Any]) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.env = env
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            found = f"'{tok.text}'" if tok.kind != "end" else "the end"
            raise ExprError(f"expected '{text}', found {found}", tok.offset)

    def parse(self) -> Any:
        value = self.binary(1)
        tok = self.peek()
        if tok.kind != "end":
            raise ExprError(f"unexpected '{tok.text}'", tok.offset)
        return value

    def binary(self, min_prec: int) -> Any:
        left = self.unary()
        while True:
            tok = self.peek()
            if tok.kind != "op" or tok.text not in _BINARY:
                return left
            prec, fn = _BINARY[tok.text]
            if prec < min_prec:
                return left
            self.take()
            right = self.binary(prec + 1)
            a = _num(left, f"'{tok.text}'", tok.offset)
            b = _num(right, f"'{tok.text}'", tok.offset)
            if tok.text in ("/", "//", "%") and b == 0:
                raise ExprError("division by zero", tok.offset)
            left = _checked(fn(a, b), tok.offset)

    def unary(self) -> Any:
        tok = self.peek()
        if tok.kind == "op" and tok.text in "+-":
            self.take()
            value = _num(self.unary(), f"unary '{tok.text}'", tok.offset)
            return -value if tok.text == "-" else value
        return self.atom()

    def atom(self) -> Any:
        tok = self.take()
        if tok.kind == "num":
            text = tok.text
            if len(text) > 20:
                raise ExprError("number literal too long", tok.offset)
            is_float = any(c in text for c in ".eE")
            return _checked(float(text) if is_float else int(text), tok.offset)
        if tok.kind == "var":
            name = tok.text[1:]
            if name not in self.env:
                from netspec.errors import did_you_mean

                raise ExprError(
                    f"unknown variable '${name}'{did_you_mean(name, self.env, '$')}", tok.offset
                )
            return self.env[name]
        if tok.kind == "name":
            if tok.text not in FUNCTIONS:
                hint = " (variables are written $name)" if tok.text not in ("true", "false") else ""
                raise ExprError(f"unknown name '{tok.text}'{hint}", tok.offset)
            return self.call(tok)
        if tok.text == "(":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise ExprError("expression nested too deeply", tok.offset)
            value = self.binary(1)
            self.expect(")")
            self.depth -= 1
            return value
        found = f"'{tok.text}'" if tok.kind != "end" else "the end of the expression"
        raise ExprError(f"expected a number, $variable or '(', found {found}", tok.offset)

    def call(self, name: _Tok) -> Number:
        self.expect("(")
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExprError("expression nested too deeply", name.offset)
        args: list[Number] = []
        if self.peek().text != ")":
            while True:
                args.append(_num(self.binary(1), f"{name.text}()", name.offset))
                if self.peek().text != ",":
                    break
                self.take()
        self.expect(")")
        self.depth -= 1
        try:
            return _checked(FUNCTIONS[name.text](*args), name.offset)
        except (TypeError, ValueError, OverflowError) as e:
            raise ExprError(f"{name.text}(): {e}", name.offset) from None


def is_expression(value: Any) -> bool:
    """Spec strings that contain a ``$`` are expressions; all other strings are literal."""
    return isinstance(value, str) and "$" in value


def evaluate(text: str, env: Mapping[str, Any]) -> Any:
    """Evaluate one expression. ``$name`` alone returns the variable's value of any type."""
    if len(text) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    return _Parser(text, env).parse()
