"""The Log Analytics query API's wire format, as the simulated workspace speaks it: the request's ``timespan``,
the column types and cell values of the documented ``tables``/``columns``/``rows`` answer, and the OneAPI error
bodies (response-format and errors pages of the Log Analytics API docs)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class WorkspaceError(Exception):
    """A query the workspace refuses: HTTP status, the OneAPI error ``code`` and ``innererror``."""

    def __init__(self, status: int, code: str, message: str, inner: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner

    def body(self) -> dict:
        error: dict[str, Any] = {
            "message": self.message,
            "code": self.code,
            "correlationId": str(uuid.uuid4()),
        }
        if self.inner:
            error["innererror"] = self.inner
        return {"error": error}


def la_type(duck_type: str) -> str:
    t = duck_type.upper()
    if t.startswith("TIMESTAMP") or t == "DATE":
        return "datetime"
    if t in ("BIGINT", "HUGEINT", "UBIGINT"):
        return "long"
    if t in ("INTEGER", "SMALLINT", "TINYINT", "UINTEGER", "USMALLINT", "UTINYINT"):
        return "int"
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return "real"
    if t == "BOOLEAN":
        return "bool"
    if t == "INTERVAL":
        return "timespan"
    if t in ("JSON",) or t.endswith("[]") or t.startswith(("STRUCT", "MAP", "LIST")):
        return "dynamic"
    return "string"


def cell(value: Any, la_type: str) -> Any:
    if value is None:
        return None
    if la_type == "datetime" and isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if la_type == "timespan" and isinstance(value, timedelta):
        seconds = value.total_seconds()
        hours, rest = divmod(abs(seconds), 3600)
        minutes, secs = divmod(rest, 60)
        return f"{'-' if seconds < 0 else ''}{int(hours):02d}:{int(minutes):02d}:{secs:09.6f}"
    if la_type == "dynamic" and not isinstance(value, str):
        return dumps(value)
    if la_type == "real" and not isinstance(value, float):
        return float(value)
    return value


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE)


def _duration(text: str) -> timedelta | None:
    m = _DURATION.match(text.strip())
    if not m or not any(m.groups()):
        return None
    days, hours, minutes, seconds = m.groups()
    return timedelta(
        days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0), seconds=float(seconds or 0)
    )


def _instant(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_timespan(value: Any, now_ticks: int) -> tuple[datetime, datetime] | None:
    """The ISO 8601 ``timespan`` of a query body (``PT1H``, ``start/end``, ``start/PT1H``) as (start, end);
    None when absent. The simulated clock is "now" for a bare duration."""
    if value in (None, ""):
        return None
    now = datetime.fromtimestamp(now_ticks / 10**7, tz=UTC)
    text = str(value)
    if "/" in text:
        left, right = text.split("/", 1)
        start = _instant(left)
        end = _instant(right)
        if start is not None and end is None:
            span = _duration(right)
            end = start + span if span is not None else None
        elif start is None and end is not None:
            span = _duration(left)
            start = end - span if span is not None else None
        if start is not None and end is not None:
            return start, end
    else:
        span = _duration(text)
        if span is not None:
            return now - span, now
    raise WorkspaceError(
        400,
        "BadArgumentError",
        "The request had some invalid properties",
        {"code": "QueryValidationError", "message": f"Invalid timespan '{text[:80]}'."},
    )


# Columns a query only passes through (never names, never reads as a whole row) need not be rendered for the rows
# its filters drop: the workspace first answers with a marker holding the row's key, then renders the rows the
# answer keeps. DuckDB evaluates a view's Python functions before filters that may raise (JSON, regex), so
# without this a query returning whole entries renders every entry of its time window.
MARK = "\x1f"
_BLOCKERS = re.compile(r"\b(search|find|pack_all|pack|bag_pack|evaluate|invoke|hash\w*)\b", re.IGNORECASE)
_ROW_STAR = re.compile(r"\barg_(?:max|min)\s*\([^,()]+,\s*\*\s*\)")
_INT_KEY = (1 << 48, 1 << 24)


def passes_through(kql: str, names: Iterable[str]) -> bool:
    """Whether ``kql`` cannot read the values of the columns ``names``: none is named (anywhere, strings and
    comments included), no whole-row operator (search, pack_all, ...) and no ``*`` but ``arg_max(x, *)``."""
    if any(re.search(rf"\b{re.escape(name)}\b", kql) for name in names) or _BLOCKERS.search(kql):
        return False
    return "*" not in _ROW_STAR.sub("", kql)


def marker_sql(name: str, duck_type: str) -> str:
    """The SQL of the marker standing for column ``name`` of the stored row ``s`` (app, cyc, idx)."""
    if duck_type == "BIGINT":  # a negative number: a duration never is
        return f"-(1 + s.app::BIGINT * {_INT_KEY[0]} + s.cyc::BIGINT * {_INT_KEY[1]} + s.idx) AS {name}"
    return f"chr(31) || '{name}:' || s.app || ':' || s.cyc || ':' || s.idx AS {name}"


def marker_key(value: Any) -> tuple[str | None, tuple[int, int, int]] | None:
    """(column or None for a number, (app, cycle position, index)) of a marker; None for any other value."""
    if isinstance(value, str) and value.startswith(MARK):
        name, app, cyc, idx = value[1:].split(":")
        return name, (int(app), int(cyc), int(idx))
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        key = -value - 1
        return None, (key // _INT_KEY[0], (key % _INT_KEY[0]) // _INT_KEY[1], key % _INT_KEY[1])
    return None


def fill_markers(
    rows: list[tuple],
    names: list[str],
    lazy: Iterable[str],
    value: Callable[[str, tuple[int, int, int]], Any],
) -> list[tuple]:
    """``rows`` with each marker in a ``lazy`` column (or its join copy, ``Name1``) replaced by
    ``value(column, key)``."""
    wanted = set(lazy)
    columns = [(n, re.sub(r"\d+$", "", name)) for n, name in enumerate(names)]
    columns = [(n, base) for n, base in columns if base in wanted]
    if not columns:
        return rows
    filled = []
    for row in rows:
        values = list(row)
        for n, base in columns:
            found = marker_key(values[n])
            if found is not None:
                values[n] = value(found[0] or base, found[1])
        filled.append(tuple(values))
    return filled


def sql_text(value: str | None) -> str:
    """A SQL string literal (or NULL)."""
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"
