"""Small value helpers of the cycles modules: UTC times, job keys, nanosecond arrays, text for people, and
JSON-ready values."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from provkit.data.tables import parse_graph_time
from provkit.formatting import text_or_none


def as_utc(value: object) -> pd.Timestamp | Any:
    """A UTC Timestamp or NaT from a datetime, Timestamp, Graph text or missing value."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return pd.NaT
    if isinstance(value, pd.Timestamp | datetime):
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return parse_graph_time(value)


def same_text(value: object, expected: str) -> bool:
    text = text_or_none(value, strip=True)
    return text is not None and text.lower() == expected.lower()


def job_key(value: object) -> str:
    """A job id as text, "" when missing (NA and NaN compare unequal to themselves)."""
    return text_or_none(value, strip=True) or ""


def ns_of(series: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch (int64) of a UTC time column; NaT is the int64 minimum."""
    return series.to_numpy(dtype="datetime64[ns]").view("i8")


def jsonable(value: Any) -> Any:
    """Plain JSON values: times as ISO-8601 UTC text, durations as seconds, missing values as None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, pd.DataFrame):
        return [jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, timedelta | pd.Timedelta | np.timedelta64):
        return None if pd.isna(value) else pd.Timedelta(value).total_seconds()
    if isinstance(value, datetime | pd.Timestamp | np.datetime64):
        stamp = as_utc(value)
        return None if pd.isna(stamp) else stamp.isoformat().replace("+00:00", "Z")
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value
