"""The spec's small arithmetic: ``$width * 2``, ``$in // 2``, ``max(8, round($c * 0.25))``.

A hand-written tokenizer and precedence-climbing parser over a fixed grammar — never
Python's ``eval``. It can read variables, do + - * / // % on numbers, and call the
functions of ``FUNCTIONS`` (round, min, max, int); nothing else exists for it to
reach. Sizes are bounded (text length, nesting, magnitude of every intermediate
result), and division by zero is an ordinary error.
"""

from __future__ import annotations

import functools
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


def _tokenize(text: str) -> tuple[_Tok, ...]:
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
    return tuple(toks)


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


#: a compiled expression: its value in an environment
Compiled = Callable[[Mapping[str, Any]], Any]


class _Parser:
    """Parses once into closures, so that a spec resolved again with other vars (a search
    over thousands of variants, ``netspec fit``) only evaluates. Errors that depend on
    values (an unknown variable, a division by zero) are raised when evaluated, at the
    offset of their token."""

    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0
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

    def parse(self) -> Compiled:
        value = self.binary(1)
        tok = self.peek()
        if tok.kind != "end":
            raise ExprError(f"unexpected '{tok.text}'", tok.offset)
        return value

    def binary(self, min_prec: int) -> Compiled:
        left = self.unary()
        while True:
            tok = self.peek()
            if tok.kind != "op" or tok.text not in _BINARY:
                return left
            prec, fn = _BINARY[tok.text]
            if prec < min_prec:
                return left
            self.take()
            left = _binary(tok, fn, left, self.binary(prec + 1))

    def unary(self) -> Compiled:
        tok = self.peek()
        if tok.kind == "op" and tok.text in "+-":
            self.take()
            inner = self.unary()
            what, sign = f"unary '{tok.text}'", -1 if tok.text == "-" else 1
            return lambda env: sign * _num(inner(env), what, tok.offset)
        return self.atom()

    def atom(self) -> Compiled:
        tok = self.take()
        if tok.kind == "num":
            text = tok.text
            if len(text) > 20:
                raise ExprError("number literal too long", tok.offset)
            is_float = any(c in text for c in ".eE")
            literal = _checked(float(text) if is_float else int(text), tok.offset)
            return lambda env: literal
        if tok.kind == "var":
            return _variable(tok)
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

    def call(self, name: _Tok) -> Compiled:
        self.expect("(")
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExprError("expression nested too deeply", name.offset)
        args: list[Compiled] = []
        if self.peek().text != ")":
            while True:
                args.append(self.binary(1))
                if self.peek().text != ",":
                    break
                self.take()
        self.expect(")")
        self.depth -= 1
        fn, what = FUNCTIONS[name.text], f"{name.text}()"

        def run(env: Mapping[str, Any]) -> Number:
            values = [_num(a(env), what, name.offset) for a in args]
            try:
                return _checked(fn(*values), name.offset)
            except (TypeError, ValueError, OverflowError) as e:
                raise ExprError(f"{name.text}(): {e}", name.offset) from None
        return run


def _binary(tok: _Tok, fn: Callable[[Number, Number], Number], left: Compiled,
            right: Compiled) -> Compiled:
    what, divides = f"'{tok.text}'", tok.text in ("/", "//", "%")

    def run(env: Mapping[str, Any]) -> Number:
        a = _num(left(env), what, tok.offset)
        b = _num(right(env), what, tok.offset)
        if divides and b == 0:
            raise ExprError("division by zero", tok.offset)
        return _checked(fn(a, b), tok.offset)
    return run


def _variable(tok: _Tok) -> Compiled:
    name = tok.text[1:]

    def run(env: Mapping[str, Any]) -> Any:
        try:
            return env[name]
        except KeyError:
            from netspec.errors import did_you_mean

            raise ExprError(f"unknown variable '${name}'{did_you_mean(name, env, '$')}",
                            tok.offset) from None
    return run


@functools.lru_cache(maxsize=4096)
def compile_expression(text: str) -> Compiled:
    """``text`` parsed once (cached: a spec's expressions are few and read many times)."""
    if len(text) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    return _Parser(text).parse()


def is_expression(value: Any) -> bool:
    """Spec strings that contain a ``$`` are expressions; all other strings are literal."""
    return isinstance(value, str) and "$" in value


def evaluate(text: str, env: Mapping[str, Any]) -> Any:
    """Evaluate one expression. ``$name`` alone returns the variable's value of any type."""
    return compile_expression(text)(env)
