"""How provkit writes values for people: times, durations, ages, object-id checks and file-name slugs.

The foundation every layer may use (like ``provkit.errors`` and ``provkit.window``): one way to say a duration
or a time, so a notebook, a report, a finding and the command line agree.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported inside the functions that read pandas values, on purpose: sign-in, the Graph client and the
# simulator use GUID and is_guid, and importing pandas would add about 0.9 s to each of them.

# An object id as Entra writes it (tenant, client, service principal, job): 8-4-4-4-12 hexadecimal digits.
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_guid(text: object) -> bool:
    """True for an object id written as a GUID (any case)."""
    return isinstance(text, str) and GUID.match(text) is not None


def is_missing(value: object) -> bool:
    """None, NaN, NaT and pandas' NA: a value that is not there (lists and dicts are never missing)."""
    import pandas as pd

    if value is None:
        return True
    if isinstance(value, (list, tuple, dict, set)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def text_or_none(value: object, *, strip: bool = False) -> str | None:
    """A value as text, or None when it is missing or empty (after stripping, with ``strip=True``)."""
    if is_missing(value):
        return None
    text = str(value)
    if strip:
        text = text.strip()
    return text or None


def slug(text: str | None, *, default: str = "app") -> str:
    """A file-name part from a display name: lower case, runs of anything else than a-z and 0-9 as one dash."""
    return re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-") or default


def _seconds(value: Any) -> float | None:
    import pandas as pd

    if is_missing(value):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    delta = pd.Timedelta(value)
    return None if pd.isna(delta) else float(delta.total_seconds())


def format_duration(value: Any, *, missing: str = "") -> str:
    """A duration as a reader says it: ``45 s``, ``3 min 20 s``, ``12 min``, ``1 h 01 min``, ``2 d 3 h``.

    ``value`` is seconds, a ``timedelta``/``pd.Timedelta`` or anything ``pd.Timedelta`` reads; ``missing`` when
    it is not there. Seconds are shown under ten minutes, where they still matter.
    """
    seconds = _seconds(value)
    if seconds is None:
        return missing
    total = int(round(abs(seconds)))
    sign = "-" if seconds < 0 and total else ""
    if total < 60:
        text = f"{total} s"
    elif total < 600:
        text = f"{total // 60} min" + (f" {total % 60:02d} s" if total % 60 else "")
    elif total < 3600:
        text = f"{total // 60} min"
    elif total < 86400:
        text = f"{total // 3600} h {total % 3600 // 60:02d} min"
    else:
        text = f"{total // 86400} d {total % 86400 // 3600} h"
    return sign + text


def as_timestamp(value: Any) -> pd.Timestamp | None:
    """A UTC ``pd.Timestamp`` from a datetime, a timestamp or ISO-8601 text; None when missing or unreadable."""
    import pandas as pd

    if is_missing(value):
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if pd.isna(stamp):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def format_time(value: Any, *, missing: str = "-", seconds: bool = False) -> str:
    """``2026-12-07 08:45 UTC`` (with ``:05`` seconds when asked); ``missing`` for no time. provkit shows UTC only."""
    stamp = as_timestamp(value)
    if stamp is None:
        return missing
    return str(stamp.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"))


def ago(when: Any, now: datetime | pd.Timestamp) -> str:
    """``12 min ago``, ``3.5 h ago``, ``4.2 days ago`` (``in ...`` for the future); '' for a missing time."""
    import pandas as pd

    stamp = as_timestamp(when)
    if stamp is None:
        return ""
    seconds = (pd.Timestamp(now) - stamp).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 3600:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 2 * 86400:
        text = f"{seconds / 3600:.1f} h"
    else:
        text = f"{seconds / 86400:.1f} days"
    return f"in {text}" if future else f"{text} ago"
