"""Graph times and ISO-8601 durations to pandas values, one at a time or a column at once."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa


# ---------------------------------------------------------------------------------------------------------
# Times and durations
def _object_array(values: Iterable[object]) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values
    items = values if isinstance(values, list) else list(values)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


_NS_MIN = pd.Timestamp.min.tz_localize("UTC")
_NS_MAX = pd.Timestamp.max.tz_localize("UTC")
_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_graph_time(value: object) -> pd.Timestamp | Any:
    """Parse one Graph time to a UTC :class:`pandas.Timestamp` (nanosecond unit), or ``pd.NaT``.

    Accepts strings with up to nine fractional digits (Graph sends seven), ``Z`` or ``+hh:mm`` offsets,
    no fraction, or a date only; values without an offset are taken as UTC. ``datetime`` objects are
    accepted too. ``0001-01-01T00:00:00Z`` ("never"), empty values, unparsable text and times outside the
    nanosecond range give NaT; this function does not raise.
    """
    if value is None or value is pd.NaT:
        return pd.NaT
    if isinstance(value, datetime | np.datetime64):
        ts = pd.Timestamp(value)
    elif isinstance(value, str):
        match = _TIME_RE.fullmatch(value.strip())
        if match is None:
            return pd.NaT
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        if year == "0001":
            return pd.NaT
        fraction = (fraction or "")[:9].ljust(9, "0")
        if offset in (None, "Z", "z", "UTC"):
            offset = "+00:00"
        elif len(offset) == 3:
            offset += ":00"
        elif ":" not in offset:
            offset = f"{offset[:3]}:{offset[3:]}"
        text = f"{year}-{month}-{day}T{hour or '00'}:{minute or '00'}:{second or '00'}.{fraction}{offset}"
        try:
            ts = pd.Timestamp(text)
        except (ValueError, OverflowError):
            return pd.NaT
    else:
        return pd.NaT
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts < _NS_MIN or ts > _NS_MAX:
        return pd.NaT
    return ts.as_unit("ns")


def parse_graph_times(values: Iterable[object] | pd.Series) -> pd.Series:
    """Vectorised :func:`parse_graph_time`: a ``datetime64[ns, UTC]`` Series (index kept for a Series input).

    Well-formed Graph strings take a fast Arrow path; anything else falls back to pandas' ISO-8601 parser
    and then, for the values it rejects, to :func:`parse_graph_time`. Never raises for bad values (NaT).
    """
    index = values.index if isinstance(values, pd.Series) else None
    data = _object_array(values.tolist() if isinstance(values, pd.Series) else values)
    try:
        text = pa.array(data, type=pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # datetime objects and the like
        return _utc_series(_parse_times_carefully(data), index)
    return _utc_series(_times_from_text(text), index)


def _utc_series(naive_utc: np.ndarray, index: pd.Index | None = None) -> pd.Series:
    return pd.Series(naive_utc, index=index, copy=False).dt.tz_localize("UTC")


def _times_from_text(text: pa.Array[Any] | pa.ChunkedArray[Any]) -> np.ndarray:
    """Naive-UTC datetime64[ns] values for Arrow strings, NaT where missing or unparsable."""
    try:
        # Arrow parses ISO-8601 with up to 9 digits and offsets, and refuses (raises) on anything odd,
        # including year 1 ("never"), naive times and date-only values: then the careful path runs.
        return text.cast(pa.timestamp("ns", "UTC")).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _parse_times_carefully(_object_array(text.to_pylist()))


def _parse_times_carefully(data: np.ndarray) -> np.ndarray:
    """Naive-UTC datetime64[ns] values for an object array of times, NaT where unparsable."""
    out = np.full(len(data), np.datetime64("NaT"), dtype="M8[ns]")
    is_text = np.fromiter((v.__class__ is str for v in data), dtype=bool, count=len(data))
    if is_text.any():
        parsed = pd.to_datetime(
            pd.Series(data[is_text], dtype=object), format="ISO8601", utc=True, errors="coerce"
        )
        if parsed.dt.unit != "ns":
            parsed = parsed.where((parsed >= _NS_MIN) & (parsed <= _NS_MAX)).dt.as_unit("ns")
        out[is_text] = parsed.dt.tz_localize(None).to_numpy(dtype="M8[ns]")
    # Retry one by one what the vectorised parser refused (odd offsets, lower-case z, datetime objects).
    retry = np.flatnonzero(np.isnat(out) & pd.notna(data))
    for position in retry:
        ts = parse_graph_time(data[position])
        if ts is not pd.NaT:
            out[position] = ts.tz_localize(None).to_datetime64()
    return out


_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION_RE = re.compile(
    rf"(-)?P(?:{_NUMBER}Y)?(?:{_NUMBER}M)?(?:{_NUMBER}W)?(?:{_NUMBER}D)?"
    rf"(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?"
)
_DAY_NS = 86400 * 10**9
_NS_PER = (365 * _DAY_NS, 30 * _DAY_NS, 7 * _DAY_NS, _DAY_NS, 3600 * 10**9, 60 * 10**9, 10**9)
# The largest timedelta64[ns]; int64 min is NaT.
_TIMEDELTA_MAX_NS = np.iinfo(np.int64).max


def _duration_ns(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, pd.Timedelta | timedelta):
        return None if value is pd.NaT else int(pd.Timedelta(value).value)
    if not isinstance(value, str):
        return None
    text = value.strip().upper().replace(",", ".")
    match = _DURATION_RE.fullmatch(text)
    if match is None or text.endswith(("P", "T")):
        return None
    sign, *parts = match.groups()
    total = sum(int(Decimal(part) * unit) for part, unit in zip(parts, _NS_PER, strict=True) if part)
    if total > _TIMEDELTA_MAX_NS:
        return None  # .NET TimeSpan.MaxValue and the like: no schedule, not a 292-year interval.
    return -total if sign else total


def parse_graph_duration(value: object) -> pd.Timedelta | Any:
    """Parse an ISO-8601 duration such as ``PT40M`` to a :class:`pandas.Timedelta`, or ``pd.NaT``.

    Years and months count as 365 and 30 days (Graph sends days and smaller units). Durations too long
    for a nanosecond timedelta, notably ``P10675199DT2H48M5.4775807S`` (.NET TimeSpan.MaxValue, sent for
    jobs without a schedule), give NaT, as do empty and unparsable values.
    """
    ns = _duration_ns(value)
    return pd.NaT if ns is None else pd.Timedelta(ns, unit="ns")
