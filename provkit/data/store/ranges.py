"""Covered time ranges: the manifest's [start, end) pairs, merged, subtracted and checked."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from provkit.data.deferred import deferred
from provkit.data.store.disk import _GUIDISH

if TYPE_CHECKING:
    import pandas as pd
else:  # imported on first use: see provkit.data.deferred
    pd = deferred("pandas")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _ranges(pairs: object) -> list[tuple[datetime, datetime]]:
    """ISO pairs as datetime ranges; ValueError when they are not."""
    if not isinstance(pairs, list):
        raise ValueError("not a list")
    out = []
    for pair in pairs:
        try:
            out.append((_parse(pair[0]), _parse(pair[1])))
        except (TypeError, ValueError, IndexError, KeyError, AttributeError):
            raise ValueError(f"{pair!r} is not a pair of ISO-8601 instants") from None
    return out


def _pairs(ranges: Iterable[tuple[datetime, datetime]]) -> list[list[str]]:
    return [[_iso(a), _iso(b)] for a, b in ranges]


def _manifest_problem(data: object) -> str | None:
    """What is wrong with a parsed manifest's shape, or None when it can be used."""
    if not isinstance(data, dict):
        return f"it holds a JSON {type(data).__name__}, not an object"
    parts = data.get("parts", {})
    if not isinstance(parts, dict):
        return "'parts' is not an object"
    for kind, names in parts.items():
        if not isinstance(names, list) or not all(isinstance(n, str) and _GUIDISH.match(n) for n in names):
            return f"'parts.{kind}' is not a list of part file names"
    for key in ("covered", "unsettled"):
        try:
            _ranges(data.get(key, []))
        except ValueError as exc:
            return f"'{key}' holds {exc}"
    ranges = data.get("ranges", {})
    if not isinstance(ranges, dict):
        return "'ranges' is not an object"
    for name, pairs in ranges.items():
        try:
            _ranges(pairs)
        except ValueError as exc:
            return f"'ranges.{name}' holds {exc}"
    if not isinstance(data.get("fetches", []), list) or not isinstance(data.get("app", {}), dict):
        return "'fetches' or 'app' has the wrong type"
    return None


def merge_ranges(ranges: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Union of half-open [start, end) ranges, sorted."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in sorted(ranges):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract_ranges(
    start: datetime, end: datetime, covered: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) not in ``covered``."""
    gaps = []
    cursor = start
    for c_start, c_end in merge_ranges(covered):
        if c_end <= cursor:
            continue
        if c_start >= end:
            break
        if c_start > cursor:
            gaps.append((cursor, min(c_start, end)))
        cursor = max(cursor, c_end)
        if cursor >= end:
            break
    if cursor < end:
        gaps.append((cursor, end))
    return gaps


def remove_ranges(
    ranges: list[tuple[datetime, datetime]], remove: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """``ranges`` with every range in ``remove`` cut out."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in merge_ranges(ranges):
        out.extend(subtract_ranges(start, end, remove))
    return out


def _span(events: pd.DataFrame) -> list[tuple[datetime, datetime]]:
    """[first, last] activity time of ``events`` as one half-open range ([] when there are none)."""
    if not len(events) or "activity_time" not in events:
        return []
    times = pd.to_datetime(events["activity_time"], utc=True).dropna()
    if not len(times):
        return []
    first, last = times.min().floor("us").to_pydatetime(), times.max().ceil("us").to_pydatetime()
    return [(first, last + timedelta(microseconds=1))]
