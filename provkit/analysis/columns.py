"""Lean reads of the log tables' columns for analyses that scan every entry.

A million entries are cheap as pandas columns (Arrow-backed text, categories, nullable booleans) and expensive as
Python objects: ``astype(object)`` or a boolean selection of the whole wide events table costs hundreds of
megabytes each. These helpers decide per distinct value (a handful of statuses, a few thousand object ids) and
return NumPy masks and positions, so a check takes the rows it reports and nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = [
    "by_value",
    "flag",
    "is_in",
    "last_position",
    "latest_entries",
    "lowered_codes",
    "lowered_values",
    "rows_where",
    "take",
]


def lowered_codes(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, values): ``values[codes]`` is each row's value as lower-case text, a missing value as "".

    ``codes`` index ``values``; the last slot of ``values`` is "" for the missing rows (code -1).
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        uniques = series.cat.categories
    else:
        codes, uniques = pd.factorize(series)
    values = pd.Series(np.asarray(uniques, dtype=object), dtype=object).map(lambda v: str(v).lower())
    return codes, np.append(values.to_numpy(dtype=object), "")


def lowered_values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Each row's value of ``column`` as lower-case text ("" when missing or when the column is absent), as an
    object array that shares one string per distinct value."""
    if column not in frame.columns:
        return np.full(len(frame), "", dtype=object)
    codes, values = lowered_codes(frame[column])
    return values[codes]


def is_in(frame: pd.DataFrame, column: str, values: Collection[str]) -> np.ndarray:
    """Rows whose ``column``, lower-cased, is one of ``values`` (a missing value reads as ""; an absent column
    as "" on every row)."""
    wanted = {v.lower() for v in values}
    if column not in frame.columns:
        return np.full(len(frame), "" in wanted, dtype=bool)
    codes, distinct = lowered_codes(frame[column])
    lut = np.fromiter((v in wanted for v in distinct), dtype=bool, count=len(distinct))
    return lut[codes]


def by_value(series: pd.Series, decide: Callable[[Any], object]) -> np.ndarray:
    """``decide(value)`` as a boolean mask, called once per distinct value (with None for a missing one)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        uniques: Any = series.cat.categories
    else:
        codes, uniques = pd.factorize(series)
    distinct = [*uniques, None]
    lut = np.fromiter((bool(decide(v)) for v in distinct), dtype=bool, count=len(distinct))
    return lut[codes]


def rows_where(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """The rows of ``mask`` (index labels kept), taken by position: no boolean Series over the whole table."""
    return take(frame, np.flatnonzero(mask))


def take(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """``frame.iloc[positions]``, with Arrow-backed text columns taken chunk by chunk.

    A stored table's text columns are Arrow arrays in one chunk per part; taking rows across chunks joins
    the whole column first (a long text column such as ``error_reason`` costs tens of megabytes for a few
    rows), where a take per chunk costs only the rows taken.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if not len(positions) or len(positions) * 4 > len(frame):  # none, or most rows: joining costs little more
        return frame.iloc[positions]
    columns = {name: _take_column(frame[name], positions) for name in frame.columns}
    return pd.DataFrame(columns, index=frame.index[positions], columns=frame.columns)


def _take_column(series: pd.Series, positions: np.ndarray) -> Any:
    """The column's values at ``positions`` as an array (no index: the caller sets it)."""
    array = series.array
    if not isinstance(series.dtype, pd.StringDtype) or not hasattr(array, "__arrow_array__"):
        return series.iloc[positions].array
    chunked = array.__arrow_array__()
    if not isinstance(chunked, pa.ChunkedArray) or chunked.num_chunks < 2:
        return series.iloc[positions].array
    bounds = np.cumsum([0, *(len(chunk) for chunk in chunked.chunks)])
    which = np.searchsorted(bounds, positions, side="right") - 1
    # Runs of positions in the same chunk, in the order asked for.
    starts = np.flatnonzero(np.r_[True, which[1:] != which[:-1]])
    ends = np.r_[starts[1:], len(positions)]
    pieces = [
        chunked.chunk(int(which[a])).take(pa.array(positions[a:b] - bounds[which[a]]))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
    taken = pa.chunked_array(pieces, type=chunked.type)
    return taken.to_pandas(types_mapper=lambda _: series.dtype).array


def flag(frame: pd.DataFrame, column: str, value: bool) -> np.ndarray:
    """Rows whose boolean ``column`` is exactly ``value`` (NA matches neither True nor False)."""
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return (frame[column] == value).fillna(False).to_numpy(dtype=bool)


def _time_keys(events: pd.DataFrame) -> np.ndarray:
    """Activity times as int64 nanoseconds, NaT as the largest value (pandas sorts NaT last)."""
    times = events["activity_time"].to_numpy(dtype="datetime64[ns]").view("i8").copy()
    times[times == np.iinfo(np.int64).min] = np.iinfo(np.int64).max
    return times


def last_position(events: pd.DataFrame, mask: np.ndarray) -> int | None:
    """The position of the row of ``mask`` that a stable sort by activity time puts last (the latest entry;
    among entries at the same time, the last one; an entry without a time counts as latest), None for none."""
    positions = np.flatnonzero(mask)
    if not len(positions):
        return None
    times = _time_keys(events)[positions]
    return int(positions[np.flatnonzero(times == times.max())[-1]])


def latest_entries(events: pd.DataFrame) -> pd.DataFrame:
    """The latest log entry of each source object (by activity time; among entries at the same time the last
    one), oldest first, indexed by position; entries without a source object id are left out.

    The same rows, in the same order, as a stable sort by time and ``drop_duplicates(keep="last")``, computed on
    three integer arrays instead of a sorted copy of the id column.
    """
    if events.empty:
        return events
    ids = events["source_id"]
    codes, _ = pd.factorize(ids)
    present = (codes >= 0) & (ids != "").fillna(False).to_numpy(dtype=bool)
    positions = np.flatnonzero(present)
    if not len(positions):
        return events.iloc[:0]
    times = _time_keys(events)[positions]
    mine = codes[positions]
    order = np.lexsort((positions, times, mine))  # by object, then time, then position
    ends = np.r_[mine[order][1:] != mine[order][:-1], True]
    chosen = order[ends]  # the last of each object's run
    chosen = chosen[np.lexsort((positions[chosen], times[chosen]))]  # oldest first, as a stable sort gives
    return take(events, positions[chosen]).reset_index(drop=True)
