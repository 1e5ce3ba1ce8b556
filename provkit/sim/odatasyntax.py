"""The ``$filter`` syntax of the simulated Graph server: tokens, the syntax tree and its parser.

:class:`Parser` turns a filter's text into a tree of :data:`Node` (comparisons, ``in``, ``contains`` and
``startswith`` calls, ``not``, ``and``, ``or``) and refuses, with :class:`ODataError` in Graph's words, anything
outside the grammar. :mod:`provkit.sim.odata` states the grammar and semantics and compiles the tree.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from provkit.errors import ProvkitError

MAX_DEPTH = 64  # nesting of not / parentheses / tolower; deeper filters are refused, not a RecursionError

_COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
_OPERATOR_KIND = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
    "in": "In",
}
CMP: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_UNSUPPORTED_OPERATORS = ("has", "add", "sub", "mul", "div", "divby", "mod")
_KEYWORDS = frozenset(("and", "or", "not", "in", "true", "false", "null", *_COMPARISONS))
_EDM = {"string": "Edm.String", "int": "Edm.Int32", "bool": "Edm.Boolean", "guid": "Edm.Guid"}
_EDM_DATETIME = "Edm.DateTimeOffset"


class ODataError(ProvkitError, ValueError):
    """A ``$filter`` or ``$orderby`` Graph would refuse; the message is safe to send back to the client.

    ``position`` is the 0-based character offset of the offending text (None when a property is at fault),
    ``near`` the text found there and ``property`` the property path named, when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        position: int | None = None,
        near: str | None = None,
        property: str | None = None,
    ) -> None:
        super().__init__(message)
        self.position = position
        self.near = near
        self.property = property


# -- instants ---------------------------------------------------------------------------------------------------
# An instant is compared as a fixed-width UTC key "YYYY-MM-DDTHH:MM:SS.fffffff": for years 0001-9999 the order of
# these strings is the order of the instants, and Graph's own values ("...:21.1160981Z", "...:21Z") reach it by
# slicing, without building a datetime per record.

_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?([Zz]|[+-]\d{2}:\d{2})?)?"
)


@dataclass(frozen=True, slots=True)
class Instant:
    key: str  # UTC, 7 fractional digits
    floor: datetime  # the instant rounded down to the microsecond
    ceil: datetime  # ... and up


def _instant(m: re.Match[str]) -> Instant:
    """The instant a matched ISO-8601 text names; raises ValueError or OverflowError when there is none."""
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    tz = UTC
    if offset and offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError("offset out of range")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    local = datetime(
        int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=tz
    )
    utc = local.astimezone(UTC)
    ticks = int((fraction or "").ljust(7, "0"))  # offsets are whole minutes: the fraction survives conversion
    key = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
        f".{ticks:07d}"
    )
    floor = utc.replace(microsecond=ticks // 10)
    ceil = floor + timedelta(microseconds=1) if ticks % 10 else floor
    return Instant(key, floor, ceil)


@lru_cache(maxsize=4096)
def _slow_key(text: str) -> str | None:
    m = _DATETIME.fullmatch(text.strip())
    if m is None:
        return None
    try:
        return _instant(m).key
    except (ValueError, OverflowError):
        return None


def instant_key(value: object) -> str | None:
    """The comparison key of a record's date and time value, or None when it holds no instant."""
    if isinstance(value, str):
        n = len(value)
        if n == 28 and value[27] == "Z" and value[19] == "." and value[10] == "T":
            return value[:27]
        if n == 20 and value[19] == "Z" and value[10] == "T":
            return value[:19] + ".0000000"
        return _slow_key(value)
    if isinstance(value, datetime):
        return _slow_key(value.isoformat()) if value.tzinfo else _slow_key(value.isoformat() + "Z")
    return None


# -- tokens -----------------------------------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_NUMBER = re.compile(r"-?\d+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*")
_STRING = re.compile(r"'(?:[^']|'')*'")
_SPLIT_OFFSET = re.compile(r" (\d{2}:\d{2})")  # "+02:00" after URL decoding turned the "+" into a space
_PUNCT = {"(": "lparen", ")": "rparen", ",": "comma"}
_END_OF_VALUE = frozenset(" \t\r\n(),")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # name, string, datetime, number, guid, lparen, rparen, comma, end
    text: str
    pos: int
    value: object = None


def shorten(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _syntax_error(pos: int, near: str, detail: str) -> ODataError:
    return ODataError(
        f"Invalid filter clause: syntax error at position {pos} near '{shorten(near)}': {detail}.",
        position=pos,
        near=near,
    )


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, n = 0, len(text)
    while pos < n:
        ws = _WS.match(text, pos)
        if ws:
            pos = ws.end()
            continue
        ch = text[pos]
        if ch in _PUNCT:
            tokens.append(_Token(_PUNCT[ch], ch, pos))
            pos += 1
            continue
        if ch == "'":
            m = _STRING.match(text, pos)
            if m is None:
                raise _syntax_error(pos, text[pos:], "the quoted string is not closed")
            tokens.append(_Token("string", m.group(), pos, m.group()[1:-1].replace("''", "'")))
        elif m := _GUID.match(text, pos):
            tokens.append(_Token("guid", m.group(), pos))
        elif m := _DATETIME.match(text, pos):
            tokens.append(_Token("datetime", m.group(), pos, _datetime_literal(text, m)))
        elif m := _NUMBER.match(text, pos):
            tokens.append(_Token("number", m.group(), pos, int(m.group())))
        elif m := _NAME.match(text, pos):
            _refuse_lambda(text, m)
            tokens.append(_Token("name", m.group(), pos, m.group()))
            if m.end() < n and text[m.end()] == "'":  # "eq'x'" reads as "eq 'x'", as Graph's lexer does
                pos = m.end()
                continue
        else:
            raise _syntax_error(pos, text[pos:], "unexpected character")
        end = m.end()
        if end < n and text[end] not in _END_OF_VALUE:
            raise _syntax_error(pos, text[pos : end + 1], f"'{m.group()}' runs into '{text[end]}'")
        pos = end
    tokens.append(_Token("end", "", n))
    return tokens


def _refuse_lambda(text: str, m: re.Match[str]) -> None:
    """Raise for ``path/any(...)`` and ``path/all(...)``, which the grammar leaves out on purpose."""
    head, _, last = m.group().rpartition("/")
    if head and last.lower() in ("any", "all") and text[m.end() :].lstrip().startswith("("):
        raise ODataError(
            f"Invalid filter clause: lambda operator '{last}' at position {m.start() + len(head) + 1} is not "
            "supported here; filter on a single-valued property instead.",
            position=m.start() + len(head) + 1,
            near=m.group(),
            property=head,
        )


def _datetime_literal(text: str, m: re.Match[str]) -> Instant:
    pos = m.start()
    if m.group(4) is not None and m.group(8) is None and (split := _SPLIT_OFFSET.match(text, m.end())):
        raise _syntax_error(
            split.start(1),
            split.group(1),
            "an offset needs its sign; a '+' in a URL must be sent as %2B, or it arrives as a space",
        )
    try:
        return _instant(m)
    except (ValueError, OverflowError):
        raise ODataError(
            f"Invalid filter clause: '{m.group()}' at position {pos} is not a valid date and time.",
            position=pos,
            near=m.group(),
        ) from None


# -- syntax tree ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operand:
    path: str  # canonical spelling, as in allowed_paths
    kind: str  # enum, datetime or value
    case: str | None  # lower or upper when wrapped in tolower/toupper
    pos: int


@dataclass(frozen=True, slots=True)
class Literal:
    kind: str  # string, datetime, int, bool, null
    value: object
    pos: int


@dataclass(frozen=True, slots=True)
class Compare:
    operand: Operand
    op: str
    literal: Literal


@dataclass(frozen=True, slots=True)
class In:
    operand: Operand
    literals: tuple[Literal, ...]


@dataclass(frozen=True, slots=True)
class Call:
    name: str  # contains or startswith
    operand: Operand
    needle: str
    negate: bool  # "contains(...) eq false"


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


Node = Compare | In | Call | Not | And | Or


class Parser:
    def __init__(
        self, text: str, paths: Mapping[str, str], enums: Collection[str], datetimes: Collection[str]
    ) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.paths = paths
        self.enums = enums
        self.datetimes = datetimes

    # token helpers
    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def word(self, ahead: int = 0) -> str | None:
        tok = self.peek(ahead)
        return tok.text.lower() if tok.kind == "name" else None

    def expect(self, kind: str, detail: str) -> _Token:
        tok = self.peek()
        if tok.kind != kind:
            raise _syntax_error(tok.pos, tok.text, detail)
        return self.advance()

    def deeper(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ODataError(
                f"Invalid filter clause: nested more than {MAX_DEPTH} levels deep at position {tok.pos}.",
                position=tok.pos,
                near=tok.text,
            )

    # grammar
    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise _syntax_error(0, "", "the filter is empty")
        node = self.parse_or()
        tok = self.peek()
        if tok.kind != "end":
            detail = (
                "unbalanced ')'" if tok.kind == "rparen" else "expected 'and', 'or' or the end of the filter"
            )
            raise _syntax_error(tok.pos, tok.text, detail)
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.word() == "or":
            self.advance()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(_flatten(Or, items))

    def parse_and(self) -> Node:
        items = [self.parse_unary()]
        while self.word() == "and":
            self.advance()
            items.append(self.parse_unary())
        return items[0] if len(items) == 1 else And(_flatten(And, items))

    def parse_unary(self) -> Node:
        tok = self.peek()
        if self.word() == "not":
            self.advance()
            self.deeper(tok)
            node: Node = Not(self.parse_unary())
            self.depth -= 1
            return node
        if tok.kind == "lparen":
            self.advance()
            self.deeper(tok)
            node = self.parse_or()
            self.expect("rparen", "expected ')'")
            self.depth -= 1
            return node
        return self.parse_predicate()

    def parse_predicate(self) -> Node:
        tok = self.peek()
        word = self.word()
        if word is None:
            hint = (
                "expected a property or function; the property goes on the left, as in "
                "'activityDateTime gt 2024-01-01'"
                if tok.kind in ("string", "datetime", "number", "guid")
                else "expected a property, a function, 'not' or '('"
            )
            raise _syntax_error(tok.pos, tok.text, hint)
        if word in _KEYWORDS:
            raise _syntax_error(tok.pos, tok.text, "expected a property, a function, 'not' or '('")
        if word in ("contains", "startswith") and self.peek(1).kind == "lparen":
            return self.parse_call(word)
        return self.parse_comparison(self.parse_operand())

    def parse_operand(self) -> Operand:
        tok = self.peek()
        word = self.word()
        if word is None or word in _KEYWORDS:
            raise _syntax_error(tok.pos, tok.text, "expected a property")
        if self.peek(1).kind == "lparen":
            if word not in ("tolower", "toupper"):
                raise ODataError(
                    f"Invalid filter clause: function '{tok.text}' at position {tok.pos} is not supported; "
                    "use contains, startswith, tolower or toupper.",
                    position=tok.pos,
                    near=tok.text,
                )
            self.advance()
            self.advance()
            self.deeper(tok)
            inner = self.parse_operand()
            self.expect("rparen", f"expected ')' to close {word}(")
            self.depth -= 1
            if inner.kind == "datetime":
                raise ODataError(
                    f"Invalid filter clause: {word}() at position {tok.pos} needs a string, and property "
                    f"'{inner.path}' is a date and time.",
                    position=tok.pos,
                    near=tok.text,
                    property=inner.path,
                )
            return Operand(inner.path, inner.kind, "lower" if word == "tolower" else "upper", tok.pos)
        self.advance()
        path = self.paths.get(word)
        if path is None:
            raise ODataError(
                f"Invalid filter clause: property '{tok.text}' is not supported.",
                position=tok.pos,
                property=tok.text,
            )
        kind = "enum" if path in self.enums else "datetime" if path in self.datetimes else "value"
        return Operand(path, kind, None, tok.pos)

    def parse_literal(self) -> Literal | _Token:
        """A literal, or the GUID token itself so the caller can name the operator it was given to."""
        tok = self.peek()
        word = self.word()
        if tok.kind == "guid":
            return self.advance()
        if tok.kind in ("string", "datetime", "number"):
            self.advance()
            kind = "int" if tok.kind == "number" else tok.kind
            return Literal(kind, tok.value, tok.pos)
        if word in ("true", "false"):
            self.advance()
            return Literal("bool", word == "true", tok.pos)
        if word == "null":
            self.advance()
            return Literal("null", None, tok.pos)
        raise _syntax_error(
            tok.pos,
            tok.text,
            "expected a value: a quoted string, a date and time, a number, true, false or null",
        )

    def parse_comparison(self, operand: Operand) -> Node:
        tok = self.peek()
        word = self.word()
        if word in _COMPARISONS:
            self.advance()
            literal = self.checked(operand, word, tok.pos, self.parse_literal())
            return Compare(operand, word, literal)
        if word == "in":
            self.advance()
            self.expect("lparen", "expected '(' after 'in'")
            literals = [self.checked(operand, "in", tok.pos, self.parse_literal())]
            while self.peek().kind == "comma":
                self.advance()
                literals.append(self.checked(operand, "in", tok.pos, self.parse_literal()))
            self.expect("rparen", "expected ',' or ')' in the list after 'in'")
            return In(operand, tuple(literals))
        if word in _UNSUPPORTED_OPERATORS:
            raise ODataError(
                f"Invalid filter clause: operator '{tok.text}' at position {tok.pos} is not supported.",
                position=tok.pos,
                near=tok.text,
            )
        raise _syntax_error(
            tok.pos, tok.text, "expected a comparison operator (eq, ne, gt, ge, lt, le or in)"
        )

    def checked(self, operand: Operand, op: str, op_pos: int, literal: Literal | _Token) -> Literal:
        """The literal, once it is known to fit the operand and operator; otherwise ODataError."""
        where = f"property '{operand.path}' at position {operand.pos}"
        left = "Edm.String" if operand.kind == "value" or operand.case else "Edm.Enum"
        if operand.kind == "datetime":
            left = _EDM_DATETIME
        if isinstance(literal, _Token):  # an unquoted GUID
            raise ODataError(
                "Invalid filter clause: A binary operator with incompatible types was detected. Found operand "
                f"types '{left}' and 'Edm.Guid' for operator kind '{_OPERATOR_KIND[op]}' ({where}). "
                f"Quote the value: '{literal.text}'.",
                position=literal.pos,
                near=literal.text,
                property=operand.path,
            )
        kind = literal.kind
        if kind == "null":
            return literal
        right = _EDM_DATETIME if kind == "datetime" else _EDM[kind]
        fits = (
            kind == "datetime"
            if operand.kind == "datetime"
            else kind == "string"
            if operand.kind == "enum" or operand.case
            else kind != "datetime"
        )
        if not fits:
            raise ODataError(
                "Invalid filter clause: A binary operator with incompatible types was detected. Found operand "
                f"types '{left}' and '{right}' for operator kind '{_OPERATOR_KIND[op]}' ({where}).",
                position=literal.pos,
                property=operand.path,
            )
        if op not in ("eq", "ne", "in") and (operand.kind == "enum" or kind == "bool"):
            what = f"enum property '{operand.path}'" if operand.kind == "enum" else "true or false"
            raise ODataError(
                f"Invalid filter clause: operator '{op}' at position {op_pos} is not supported on {what}; "
                "use eq or ne.",
                position=op_pos,
                near=op,
                property=operand.path,
            )
        return literal

    def parse_call(self, name: str) -> Call:
        tok = self.advance()
        self.advance()  # "("
        self.deeper(tok)
        operand = self.parse_operand()
        if operand.kind == "datetime":
            raise ODataError(
                f"Invalid filter clause: {name}() at position {tok.pos} needs a string, and property "
                f"'{operand.path}' is a date and time.",
                position=tok.pos,
                near=tok.text,
                property=operand.path,
            )
        self.expect("comma", f"expected ',' after the first argument of {name}()")
        needle = self.parse_literal()
        if isinstance(needle, _Token) or needle.kind != "string":
            pos = needle.pos
            raise ODataError(
                f"Invalid filter clause: the second argument of {name}() at position {pos} must be a quoted "
                "string.",
                position=pos,
                near=needle.text if isinstance(needle, _Token) else None,
                property=operand.path,
            )
        self.expect("rparen", f"expected ')' to close {name}(")
        self.depth -= 1
        negate = False
        op = self.word()
        if op in ("eq", "ne"):
            self.advance()
            value = self.peek()
            if self.word() not in ("true", "false"):
                raise _syntax_error(value.pos, value.text, f"{name}() compares with true or false only")
            self.advance()
            negate = (op == "ne") == (value.text.lower() == "true")
        assert isinstance(needle.value, str)
        return Call(name, operand, needle.value, negate)


def _flatten(kind: type[And] | type[Or], items: list[Node]) -> tuple[Node, ...]:
    out: list[Node] = []
    for item in items:
        out.extend(item.items if isinstance(item, kind) else (item,))
    return tuple(out)
