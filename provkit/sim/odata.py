"""OData ``$filter`` and ``$orderby`` for the simulated Graph server: parse once, evaluate fast.

Grammar (keywords, function names and property names are case-insensitive, as in Graph)::

    filter     := or
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "not" unary | "(" or ")" | predicate
    predicate  := ("contains" | "startswith") "(" operand "," string ")" [("eq" | "ne") ("true" | "false")]
                | operand ("eq" | "ne" | "gt" | "ge" | "lt" | "le") literal
                | operand "in" "(" literal ("," literal)* ")"
    operand    := path | ("tolower" | "toupper") "(" operand ")"
    path       := name ("/" name)*                  e.g. servicePrincipal/id
    literal    := 'text' ('' is a quote) | datetime | integer | true | false | null

Semantics, as a client sees them:

- Strings, ``contains`` and ``startswith`` are case-sensitive ("the filters are all case sensitive"), except on
  enum properties (``enum_paths``), which compare case-insensitively whatever the case of either side.
- Date and time properties (``datetime_paths``) compare instants. Literals are unquoted ISO-8601: ``2024-01-01``
  (midnight UTC), ``2024-01-01T00:00:00Z``, up to 7 fractional digits, ``Z`` or a ``+hh:mm``/``-hh:mm`` offset; a
  literal without an offset is UTC. Record values are ISO strings with up to 7 fractional digits.
- A missing property or a null value satisfies ``eq null`` and nothing else: ``ne 'x'``, ``gt``, ``contains`` are
  false for it (so ``not (p eq 'x')`` is true). A value of another type than the literal (a number against a
  string, a list or an object against anything) behaves the same way.
- ``not`` applies to the comparison or parenthesised group after it: ``not a eq 'x'`` means ``not (a eq 'x')``;
  precedence is not > and > or.
- Rejected with :class:`ODataError`, in Graph's words where Graph has them: unknown properties, quoted strings where
  a date and time is needed (and the reverse), unquoted GUIDs, ``any``/``all`` lambdas, functions and operators
  outside the grammar, ordering operators on enums, and syntax errors, which name the 0-based character position
  and the text found there.

:meth:`Filter.bounds` and :meth:`Filter.equalities` let the server skip whole apps, jobs and time ranges without
evaluating records. Both are conservative (None means "no pruning"); the server still calls :meth:`Filter.matches`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, cast

from provkit.errors import ProvkitError

__all__ = ["ODataError", "Filter", "compile_filter", "parse_orderby"]

Predicate = Callable[[dict], bool]

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
_CMP: dict[str, Callable[[Any, Any], bool]] = {
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
class _Instant:
    key: str  # UTC, 7 fractional digits
    floor: datetime  # the instant rounded down to the microsecond
    ceil: datetime  # ... and up


def _instant(m: re.Match[str]) -> _Instant:
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
    return _Instant(key, floor, ceil)


@lru_cache(maxsize=4096)
def _slow_key(text: str) -> str | None:
    m = _DATETIME.fullmatch(text.strip())
    if m is None:
        return None
    try:
        return _instant(m).key
    except (ValueError, OverflowError):
        return None


def _instant_key(value: object) -> str | None:
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


def _near(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _syntax_error(pos: int, near: str, detail: str) -> ODataError:
    return ODataError(
        f"Invalid filter clause: syntax error at position {pos} near '{_near(near)}': {detail}.",
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


def _datetime_literal(text: str, m: re.Match[str]) -> _Instant:
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
class _Operand:
    path: str  # canonical spelling, as in allowed_paths
    kind: str  # enum, datetime or value
    case: str | None  # lower or upper when wrapped in tolower/toupper
    pos: int


@dataclass(frozen=True, slots=True)
class _Literal:
    kind: str  # string, datetime, int, bool, null
    value: object
    pos: int


@dataclass(frozen=True, slots=True)
class _Compare:
    operand: _Operand
    op: str
    literal: _Literal


@dataclass(frozen=True, slots=True)
class _In:
    operand: _Operand
    literals: tuple[_Literal, ...]


@dataclass(frozen=True, slots=True)
class _Call:
    name: str  # contains or startswith
    operand: _Operand
    needle: str
    negate: bool  # "contains(...) eq false"


@dataclass(frozen=True, slots=True)
class _Not:
    item: _Node


@dataclass(frozen=True, slots=True)
class _And:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Or:
    items: tuple[_Node, ...]


_Node = _Compare | _In | _Call | _Not | _And | _Or


class _Parser:
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
    def parse(self) -> _Node:
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

    def parse_or(self) -> _Node:
        items = [self.parse_and()]
        while self.word() == "or":
            self.advance()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else _Or(_flatten(_Or, items))

    def parse_and(self) -> _Node:
        items = [self.parse_unary()]
        while self.word() == "and":
            self.advance()
            items.append(self.parse_unary())
        return items[0] if len(items) == 1 else _And(_flatten(_And, items))

    def parse_unary(self) -> _Node:
        tok = self.peek()
        if self.word() == "not":
            self.advance()
            self.deeper(tok)
            node: _Node = _Not(self.parse_unary())
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

    def parse_predicate(self) -> _Node:
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

    def parse_operand(self) -> _Operand:
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
            return _Operand(inner.path, inner.kind, "lower" if word == "tolower" else "upper", tok.pos)
        self.advance()
        path = self.paths.get(word)
        if path is None:
            raise ODataError(
                f"Invalid filter clause: property '{tok.text}' is not supported.",
                position=tok.pos,
                property=tok.text,
            )
        kind = "enum" if path in self.enums else "datetime" if path in self.datetimes else "value"
        return _Operand(path, kind, None, tok.pos)

    def parse_literal(self) -> _Literal | _Token:
        """A literal, or the GUID token itself so the caller can name the operator it was given to."""
        tok = self.peek()
        word = self.word()
        if tok.kind == "guid":
            return self.advance()
        if tok.kind in ("string", "datetime", "number"):
            self.advance()
            kind = "int" if tok.kind == "number" else tok.kind
            return _Literal(kind, tok.value, tok.pos)
        if word in ("true", "false"):
            self.advance()
            return _Literal("bool", word == "true", tok.pos)
        if word == "null":
            self.advance()
            return _Literal("null", None, tok.pos)
        raise _syntax_error(
            tok.pos,
            tok.text,
            "expected a value: a quoted string, a date and time, a number, true, false or null",
        )

    def parse_comparison(self, operand: _Operand) -> _Node:
        tok = self.peek()
        word = self.word()
        if word in _COMPARISONS:
            self.advance()
            literal = self.checked(operand, word, tok.pos, self.parse_literal())
            return _Compare(operand, word, literal)
        if word == "in":
            self.advance()
            self.expect("lparen", "expected '(' after 'in'")
            literals = [self.checked(operand, "in", tok.pos, self.parse_literal())]
            while self.peek().kind == "comma":
                self.advance()
                literals.append(self.checked(operand, "in", tok.pos, self.parse_literal()))
            self.expect("rparen", "expected ',' or ')' in the list after 'in'")
            return _In(operand, tuple(literals))
        if word in _UNSUPPORTED_OPERATORS:
            raise ODataError(
                f"Invalid filter clause: operator '{tok.text}' at position {tok.pos} is not supported.",
                position=tok.pos,
                near=tok.text,
            )
        raise _syntax_error(
            tok.pos, tok.text, "expected a comparison operator (eq, ne, gt, ge, lt, le or in)"
        )

    def checked(self, operand: _Operand, op: str, op_pos: int, literal: _Literal | _Token) -> _Literal:
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

    def parse_call(self, name: str) -> _Call:
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
        return _Call(name, operand, needle.value, negate)


def _flatten(kind: type[_And] | type[_Or], items: list[_Node]) -> tuple[_Node, ...]:
    out: list[_Node] = []
    for item in items:
        out.extend(item.items if isinstance(item, kind) else (item,))
    return tuple(out)


# -- compilation to closures ------------------------------------------------------------------------------------


def _false(record: dict) -> bool:
    return False


def _reader(operand: _Operand) -> Callable[[dict], object]:
    """A function returning the operand's value in a record (None when missing), folded as the operand asks."""
    segments = tuple(operand.path.split("/"))
    fold: Callable[[str], str] | None = (
        str.casefold
        if operand.kind == "enum"
        else {"lower": str.lower, "upper": str.upper}.get(operand.case or "")
    )
    if len(segments) == 1:
        (a,) = segments
        if fold is None:
            return lambda r: r.get(a)

        def read1(r: dict) -> object:
            v = r.get(a)
            return fold(v) if v.__class__ is str else v

        return read1
    if len(segments) == 2:
        a, b = segments
        if fold is None:

            def read2(r: dict) -> object:
                v = r.get(a)
                return v.get(b) if isinstance(v, dict) else None

            return read2

        def read2f(r: dict) -> object:
            v = r.get(a)
            v = v.get(b) if isinstance(v, dict) else None
            return fold(v) if v.__class__ is str else v

        return read2f

    def readn(r: dict) -> object:
        v: object = r
        for s in segments:
            if not isinstance(v, dict):
                return None
            v = v.get(s)
        return fold(v) if fold is not None and v.__class__ is str else v

    return readn


def _literal_value(operand: _Operand, literal: _Literal) -> object:
    if literal.kind == "datetime":
        assert isinstance(literal.value, _Instant)
        return literal.value.key
    if literal.kind == "string" and operand.kind == "enum":
        assert isinstance(literal.value, str)
        return literal.value.casefold()
    return literal.value


def _compile_compare(node: _Compare) -> Predicate:
    read = _reader(node.operand)
    op, lit = node.op, node.literal
    if lit.kind == "null":
        if op == "eq":
            return lambda r: read(r) is None
        if op == "ne":
            return lambda r: read(r) is not None
        return _false
    value = _literal_value(node.operand, lit)
    cmp = _CMP[op]
    if node.operand.kind == "datetime":

        def instant(r: dict) -> bool:
            k = _instant_key(read(r))
            return k is not None and cmp(k, value)

        return instant
    if lit.kind == "string":
        if op == "eq":
            return lambda r: read(r) == value

        def text(r: dict) -> bool:
            v = read(r)
            return v.__class__ is str and cmp(v, value)

        return text
    if lit.kind == "int":

        def number(r: dict) -> bool:
            v = read(r)
            return (v.__class__ is int or v.__class__ is float) and cmp(v, value)

        return number
    # bool: eq or ne only (checked by the parser)
    want = value if op == "eq" else not value
    return lambda r: read(r) is want


def _compile_in(node: _In) -> Predicate:
    read = _reader(node.operand)
    has_null = any(lit.kind == "null" for lit in node.literals)
    values = [_literal_value(node.operand, lit) for lit in node.literals if lit.kind != "null"]
    if node.operand.kind == "datetime":
        keys = frozenset(values)

        def instant(r: dict) -> bool:
            v = read(r)
            return has_null if v is None else _instant_key(v) in keys

        return instant
    strings = frozenset(v for v in values if v.__class__ is str)
    numbers = frozenset(v for v in values if v.__class__ is int)
    bools = frozenset(v for v in values if v.__class__ is bool)

    def member(r: dict) -> bool:
        v = read(r)
        if v is None:
            return has_null
        cls = v.__class__
        if cls is str:
            return v in strings
        if cls is bool:  # before numbers: True == 1 in Python, not in OData
            return v in bools
        if cls is int or cls is float:
            return v in numbers
        return False

    return member


def _compile_call(node: _Call) -> Predicate:
    read = _reader(node.operand)
    needle = node.needle.casefold() if node.operand.kind == "enum" else node.needle
    if node.name == "contains":
        if node.negate:

            def lacks(r: dict) -> bool:
                v = read(r)
                return v.__class__ is str and needle not in v  # type: ignore[operator]

            return lacks

        def has(r: dict) -> bool:
            v = read(r)
            return v.__class__ is str and needle in v  # type: ignore[operator]

        return has
    if node.negate:

        def starts_not(r: dict) -> bool:
            v = read(r)
            return v.__class__ is str and not v.startswith(needle)  # type: ignore[attr-defined]

        return starts_not

    def starts(r: dict) -> bool:
        v = read(r)
        return v.__class__ is str and v.startswith(needle)  # type: ignore[attr-defined]

    return starts


def _all_of(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        return lambda r: a(r) and b(r)
    if len(preds) == 3:
        a, b, c = preds
        return lambda r: a(r) and b(r) and c(r)
    a, b, c = preds[:3]
    rest = _all_of(preds[3:])
    return lambda r: a(r) and b(r) and c(r) and rest(r)


def _any_of(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        return lambda r: a(r) or b(r)
    if len(preds) == 3:
        a, b, c = preds
        return lambda r: a(r) or b(r) or c(r)
    a, b, c = preds[:3]
    rest = _any_of(preds[3:])
    return lambda r: a(r) or b(r) or c(r) or rest(r)


def _compile(node: _Node) -> Predicate:
    if isinstance(node, _Compare):
        return _compile_compare(node)
    if isinstance(node, _In):
        return _compile_in(node)
    if isinstance(node, _Call):
        return _compile_call(node)
    if isinstance(node, _Not):
        inner = _compile(node.item)
        return lambda r: not inner(r)
    if isinstance(node, _And):
        return _all_of([_compile(i) for i in node.items])
    return _any_of([_compile(i) for i in node.items])


# -- pruning ----------------------------------------------------------------------------------------------------


def _bounds(node: _Node, path: str) -> tuple[_Instant | None, _Instant | None]:
    """(lower, upper) instants every record matching ``node`` lies between; None is unbounded."""
    if isinstance(node, _Compare):
        if node.operand.path != path or node.literal.kind != "datetime":
            return None, None
        inst = node.literal.value
        assert isinstance(inst, _Instant)
        op = node.op
        return (inst if op in ("eq", "gt", "ge") else None), (inst if op in ("eq", "lt", "le") else None)
    if isinstance(node, _In):
        if node.operand.path != path or any(lit.kind != "datetime" for lit in node.literals):
            return None, None
        insts = sorted((cast(_Instant, lit.value) for lit in node.literals), key=lambda i: i.key)
        return insts[0], insts[-1]
    if isinstance(node, _And | _Or):
        parts = [_bounds(i, path) for i in node.items]
        lows = [lo for lo, _ in parts if lo is not None]
        highs = [hi for _, hi in parts if hi is not None]
        if isinstance(node, _And):
            lo = max(lows, key=lambda i: i.key) if lows else None
            hi = min(highs, key=lambda i: i.key) if highs else None
            return lo, hi
        lo = min(lows, key=lambda i: i.key) if len(lows) == len(parts) else None
        hi = max(highs, key=lambda i: i.key) if len(highs) == len(parts) else None
        return lo, hi
    return None, None  # not, contains, startswith: no window


def _pins(node: _Node, path: str) -> frozenset[str] | None:
    """The values ``path`` must hold in any record matching ``node``, or None when it may hold others."""
    if isinstance(node, _Compare | _In):
        operand = node.operand
        if operand.path != path or (operand.case and operand.kind != "enum"):
            return None
        literals = (node.literal,) if isinstance(node, _Compare) else node.literals
        if isinstance(node, _Compare) and node.op != "eq":
            return None
        if any(lit.kind != "string" for lit in literals):
            return None
        return frozenset(_literal_value(operand, lit) for lit in literals)  # type: ignore[misc]
    if isinstance(node, _And):
        sets = [s for s in (_pins(i, path) for i in node.items) if s is not None]
        if not sets:
            return None
        return frozenset.intersection(*sets)
    if isinstance(node, _Or):
        union: set[str] = set()
        for item in node.items:
            s = _pins(item, path)
            if s is None:
                return None
            union |= s
        return frozenset(union)
    return None


# -- public interface -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """A compiled ``$filter``: evaluate with :meth:`matches`, prune with :meth:`bounds` and :meth:`equalities`."""

    text: str
    _root: _Node = field(repr=False, compare=False)
    _predicate: Predicate = field(repr=False, compare=False)
    _paths: Mapping[str, str] = field(repr=False, compare=False)

    def matches(self, record: dict) -> bool:
        """True when the record (one resource's Graph JSON) satisfies the filter."""
        return self._predicate(record)

    def bounds(self, path: str) -> tuple[datetime | None, datetime | None]:
        """(lower, upper) UTC instants every matching record's ``path`` lies within; None where unbounded.

        Derived from comparisons joined by ``and``, and from ``or`` only where every branch bounds the path;
        widened to whole microseconds, so a record on a 7-digit edge is never left out.
        """
        lo, hi = _bounds(self._root, self._paths.get(path.lower(), path))
        return (lo.floor if lo else None), (hi.ceil if hi else None)

    def equalities(self, path: str) -> set[str] | None:
        """The values ``path`` must equal in every matching record, or None when the filter does not pin it.

        Pins come from ``eq`` and ``in`` with quoted strings on the bare path (not under tolower/toupper), joined by
        ``and`` (intersected) or ``or`` (united, when every branch pins). Enum values come back casefolded. An
        empty set means no record can match.
        """
        pins = _pins(self._root, self._paths.get(path.lower(), path))
        return None if pins is None else set(pins)


def compile_filter(
    text: str,
    *,
    allowed_paths: Collection[str],
    enum_paths: Collection[str] = (),
    datetime_paths: Collection[str] = (),
) -> Filter:
    """Parse and compile a ``$filter``; raises :class:`ODataError` for anything Graph would refuse.

    ``allowed_paths`` are the filterable property paths of the resource (slash-separated, spelled as in its JSON);
    clients may write them in any case. ``enum_paths`` compare case-insensitively; ``datetime_paths`` compare
    instants and take unquoted date and time literals.
    """
    paths = {p.lower(): p for p in allowed_paths}
    enums = frozenset(paths.get(p.lower(), p) for p in enum_paths)
    datetimes = frozenset(paths.get(p.lower(), p) for p in datetime_paths)
    root = _Parser(text, paths, enums, datetimes).parse()
    return Filter(text, root, _compile(root), paths)


_ORDER_ITEM = re.compile(r"\s*([^\s,]+)(?:\s+([^\s,]+))?\s*")


def parse_orderby(text: str, *, allowed: Collection[str]) -> list[tuple[str, bool]]:
    """The ``$orderby`` as (path, descending) pairs, paths spelled as in ``allowed``; [] for an empty text.

    Raises :class:`ODataError` for an unknown property, a direction other than asc/desc, a property named twice or
    an empty item.
    """
    paths = {p.lower(): p for p in allowed}
    if not text.strip():
        return []
    order: list[tuple[str, bool]] = []
    pos = 0
    for part in text.split(","):
        m = _ORDER_ITEM.fullmatch(part)
        if m is None:
            at = pos + len(part) - len(part.lstrip())
            raise ODataError(
                f"Invalid $orderby: syntax error at position {at} near '{_near(part.strip())}': expected a "
                "property, optionally followed by asc or desc.",
                position=at,
                near=part.strip(),
            )
        name, direction = m.group(1), m.group(2)
        path = paths.get(name.lower())
        if path is None:
            raise ODataError(f"Invalid $orderby: property '{name}' is not supported.", property=name)
        if direction is not None and direction.lower() not in ("asc", "desc"):
            at = pos + m.start(2)
            raise ODataError(
                f"Invalid $orderby: syntax error at position {at} near '{_near(direction)}': expected asc or desc.",
                position=at,
                near=direction,
            )
        if any(p == path for p, _ in order):
            raise ODataError(f"Invalid $orderby: property '{path}' is named twice.", property=path)
        order.append((path, direction is not None and direction.lower() == "desc"))
        pos += len(part) + 1
    return order
