"""Graph's timestamp format: UTC, seven fractional digits (100 ns ticks), trailing Z."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

TICKS = 10_000_000
NEVER = "0001-01-01T00:00:00Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ticks(dt: datetime) -> int:
    """Exact integer ticks (floats lose the last digits at this magnitude)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return ((dt - _EPOCH) // timedelta(microseconds=1)) * 10


def ticks_to_datetime(ticks: int) -> datetime:
    return datetime.fromtimestamp(ticks / TICKS, tz=UTC)


def format_ticks(ticks: int) -> str:
    seconds, frac = divmod(ticks, TICKS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:07d}Z"


def format_seconds(ticks: int) -> str:
    """Whole-second form, as Graph uses for some fields (activityDateTime of audits, schedule times)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ticks // TICKS))


def parse_instant(text: str) -> datetime:
    """Parse an ISO-8601 instant with up to 7 fractional digits; naive values are UTC."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    if "." in s:
        head, _, rest = s.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        s = f"{head}.{(digits + '000000')[:6]}{rest}"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)
