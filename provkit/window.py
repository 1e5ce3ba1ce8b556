"""Time windows from the command line and notebook parameters: ``7d``, ``36h``, ``90m``, or explicit instants."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from provkit.errors import ConfigError

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(d|h|m|w)\s*$", re.IGNORECASE)
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
RETENTION = timedelta(days=30)
MAX_SPAN = timedelta(days=3660)  # ten years: beyond any retention, still far from datetime's limits


def parse_span(text: str) -> timedelta:
    """``7d`` -> 7 days; accepts m, h, d, w."""
    match = _SPAN.match(text or "")
    if not match:
        raise ConfigError(
            f"{text!r} is not a time span.", remedy="Write it as a number and a unit: 90m, 36h, 7d or 2w."
        )
    try:
        span = float(match.group(1)) * _UNITS[match.group(2).lower()]
    except OverflowError:
        span = timedelta.max
    if span > MAX_SPAN:
        raise ConfigError(
            f"The time span {text!r} reaches back further than any log exists.",
            remedy="Give a span of at most a few years, such as 30d (Graph keeps provisioning logs for 30 days).",
        )
    if span <= timedelta(0):
        raise ConfigError(f"The time span {text!r} is empty.", remedy="Give a positive span such as 7d.")
    return span


def parse_instant(text: str, *, name: str = "time") -> datetime:
    """An ISO-8601 date or instant; naive values are UTC."""
    value = (text or "").strip()
    try:
        if value.endswith(("Z", "z")):
            value = value[:-1] + "+00:00"
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"The {name} {text!r} is not a date or time.",
            remedy="Use ISO-8601, e.g. 2024-03-10 or 2024-03-10T16:00:00Z (UTC when no offset is given).",
        ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def resolve_window(
    *, since: str | None = None, start: str | None = None, end: str | None = None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """The [start, end) window a command works on; default the last 7 days.

    Raises ConfigError for reversed or empty windows and for windows that lie in the future.
    """
    now = now or datetime.now(UTC)
    if since and (start or end):
        raise ConfigError(
            "Give either --since or --start/--end, not both.",
            remedy="Use --since 7d for the last seven days, or --start and --end for a fixed window.",
        )
    if since:
        w_end = now
        w_start = now - parse_span(since)  # at most MAX_SPAN: cannot leave datetime's range
    else:
        w_end = parse_instant(end, name="end") if end else now
        w_start = parse_instant(start, name="start") if start else w_end - timedelta(days=7)
    if w_start > now + timedelta(minutes=5):
        raise ConfigError(
            f"The window starts in the future ({w_start:%Y-%m-%d %H:%M} UTC; now is {now:%Y-%m-%d %H:%M} UTC).",
            remedy="Provisioning logs exist only for the past; check the dates.",
        )
    w_end = min(w_end, now)  # nothing is logged after now
    if w_start >= w_end:
        raise ConfigError(
            f"The window is empty or reversed: start {w_start:%Y-%m-%d %H:%M} UTC is not before end "
            f"{w_end:%Y-%m-%d %H:%M} UTC.",
            remedy="Swap --start and --end, or use --since 7d.",
        )
    return w_start, w_end
