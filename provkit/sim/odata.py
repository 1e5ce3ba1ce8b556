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

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from provkit.sim.odatasyntax import (
    CMP,
    And,
    Call,
    Compare,
    In,
    Instant,
    Literal,
    Node,
    Not,
    ODataError,
    Operand,
    Or,
    Parser,
    instant_key,
    shorten,
)

__all__ = ["ODataError", "Filter", "compile_filter", "parse_orderby"]

Predicate = Callable[[dict], bool]


# -- compilation to closures ------------------------------------------------------------------------------------


def _false(record: dict) -> bool:
    return False


def _reader(operand: Operand) -> Callable[[dict], object]:
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


def _literal_value(operand: Operand, literal: Literal) -> object:
    if literal.kind == "datetime":
        assert isinstance(literal.value, Instant)
        return literal.value.key
    if literal.kind == "string" and operand.kind == "enum":
        assert isinstance(literal.value, str)
        return literal.value.casefold()
    return literal.value


def _compile_compare(node: Compare) -> Predicate:
    read = _reader(node.operand)
    op, lit = node.op, node.literal
    if lit.kind == "null":
        if op == "eq":
            return lambda r: read(r) is None
        if op == "ne":
            return lambda r: read(r) is not None
        return _false
    value = _literal_value(node.operand, lit)
    cmp = CMP[op]
    if node.operand.kind == "datetime":

        def instant(r: dict) -> bool:
            k = instant_key(read(r))
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


def _compile_in(node: In) -> Predicate:
    read = _reader(node.operand)
    has_null = any(lit.kind == "null" for lit in node.literals)
    values = [_literal_value(node.operand, lit) for lit in node.literals if lit.kind != "null"]
    if node.operand.kind == "datetime":
        keys = frozenset(values)

        def instant(r: dict) -> bool:
            v = read(r)
            return has_null if v is None else instant_key(v) in keys

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


def _compile_call(node: Call) -> Predicate:
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


def _compile(node: Node) -> Predicate:
    if isinstance(node, Compare):
        return _compile_compare(node)
    if isinstance(node, In):
        return _compile_in(node)
    if isinstance(node, Call):
        return _compile_call(node)
    if isinstance(node, Not):
        inner = _compile(node.item)
        return lambda r: not inner(r)
    if isinstance(node, And):
        return _all_of([_compile(i) for i in node.items])
    return _any_of([_compile(i) for i in node.items])


# -- pruning ----------------------------------------------------------------------------------------------------


def _bounds(node: Node, path: str) -> tuple[Instant | None, Instant | None]:
    """(lower, upper) instants every record matching ``node`` lies between; None is unbounded."""
    if isinstance(node, Compare):
        if node.operand.path != path or node.literal.kind != "datetime":
            return None, None
        inst = node.literal.value
        assert isinstance(inst, Instant)
        op = node.op
        return (inst if op in ("eq", "gt", "ge") else None), (inst if op in ("eq", "lt", "le") else None)
    if isinstance(node, In):
        if node.operand.path != path or any(lit.kind != "datetime" for lit in node.literals):
            return None, None
        insts = sorted((cast(Instant, lit.value) for lit in node.literals), key=lambda i: i.key)
        return insts[0], insts[-1]
    if isinstance(node, And | Or):
        parts = [_bounds(i, path) for i in node.items]
        lows = [lo for lo, _ in parts if lo is not None]
        highs = [hi for _, hi in parts if hi is not None]
        if isinstance(node, And):
            lo = max(lows, key=lambda i: i.key) if lows else None
            hi = min(highs, key=lambda i: i.key) if highs else None
            return lo, hi
        lo = min(lows, key=lambda i: i.key) if len(lows) == len(parts) else None
        hi = max(highs, key=lambda i: i.key) if len(highs) == len(parts) else None
        return lo, hi
    return None, None  # not, contains, startswith: no window


def _pins(node: Node, path: str) -> frozenset[str] | None:
    """The values ``path`` must hold in any record matching ``node``, or None when it may hold others."""
    if isinstance(node, Compare | In):
        operand = node.operand
        if operand.path != path or (operand.case and operand.kind != "enum"):
            return None
        literals = (node.literal,) if isinstance(node, Compare) else node.literals
        if isinstance(node, Compare) and node.op != "eq":
            return None
        if any(lit.kind != "string" for lit in literals):
            return None
        return frozenset(_literal_value(operand, lit) for lit in literals)  # type: ignore[misc]
    if isinstance(node, And):
        sets = [s for s in (_pins(i, path) for i in node.items) if s is not None]
        if not sets:
            return None
        return frozenset.intersection(*sets)
    if isinstance(node, Or):
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
    _root: Node = field(repr=False, compare=False)
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
    root = Parser(text, paths, enums, datetimes).parse()
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
                f"Invalid $orderby: syntax error at position {at} near '{shorten(part.strip())}': expected a "
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
                f"Invalid $orderby: syntax error at position {at} near '{shorten(direction)}': expected asc or desc.",
                position=at,
                near=direction,
            )
        if any(p == path for p, _ in order):
            raise ODataError(f"Invalid $orderby: property '{path}' is named twice.", property=path)
        order.append((path, direction is not None and direction.lower() == "desc"))
        pos += len(part) + 1
    return order
