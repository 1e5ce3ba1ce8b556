"""Observed cycles: one vectorised pass over the log entries, one row per ``cycleId``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from provkit.analysis.cycles.rules import ACTION_COLUMNS, CYCLE_COLUMNS, STATUS_COLUMNS
from provkit.analysis.cycles.values import ns_of


def _lut(categories: pd.Index, known: dict[str, str]) -> np.ndarray:
    """Map category codes (with -1 for NA as the last slot) to column positions; unknown -> last column."""
    names = list(known)
    unknown = len(names)
    lut = np.full(len(categories) + 1, unknown, dtype=np.int64)
    for code, value in enumerate(categories):
        text = str(value).strip().lower()
        if text in known:
            lut[code] = names.index(text)
    return lut


def _category_codes(series: pd.Series) -> tuple[np.ndarray, pd.Index]:
    if not isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype("category")
    return series.cat.codes.to_numpy(), series.cat.categories


def observed_cycles(events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per cycleId in the log entries, and the number of entries that carry no cycleId.

    Vectorised: factorised ids, then bincounts and sorted reductions (no Python loop per entry).
    """
    count_columns = [
        *ACTION_COLUMNS.values(),
        "n_unknown_action",
        *STATUS_COLUMNS.values(),
        "n_unknown_status",
    ]
    columns = ["job_id", "cycle_id", "first", "last", "entries", *count_columns, "distinct_objects"]
    if len(events) == 0:
        return pd.DataFrame(columns=columns), 0
    codes, cycle_ids = pd.factorize(events["cycle_id"])
    keep = codes >= 0
    without_cycle = int((~keep).sum())
    k = len(cycle_ids)
    if k == 0:
        return pd.DataFrame(columns=columns), without_cycle
    times = ns_of(events["activity_time"])
    job_codes, job_ids = pd.factorize(events["job_id"])
    action_codes, action_categories = _category_codes(events["action"])
    status_codes, status_categories = _category_codes(events["status"])
    source_codes, source_ids = pd.factorize(events["source_id"])
    if without_cycle:
        codes, times, job_codes = codes[keep], times[keep], job_codes[keep]
        action_codes, status_codes, source_codes = action_codes[keep], status_codes[keep], source_codes[keep]

    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    sorted_times = times[order]
    first = np.minimum.reduceat(sorted_times, starts)
    last = np.maximum.reduceat(sorted_times, starts)
    entries = np.bincount(codes, minlength=k)
    job_of = job_codes[order][starts]

    def counts(value_codes: np.ndarray, categories: pd.Index, known: dict[str, str]) -> np.ndarray:
        lut = _lut(categories, known)
        slot = lut[value_codes]  # code -1 (NA) indexes the last slot: unknown
        width = len(known) + 1
        return np.bincount(codes * width + slot, minlength=k * width).reshape(k, width)

    by_action = counts(action_codes, action_categories, ACTION_COLUMNS)
    by_status = counts(status_codes, status_categories, STATUS_COLUMNS)

    # Distinct (cycle, object) pairs: sort the combined key and keep the first of each run (a sort is
    # faster here than NumPy's hash-based unique).
    has_source = source_codes >= 0
    span = np.int64(len(source_ids) + 1)
    pairs = np.sort(codes[has_source].astype(np.int64) * span + source_codes[has_source])
    firsts = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] if len(pairs) else pairs
    distinct = np.bincount(firsts // span, minlength=k)

    frame = pd.DataFrame(
        {
            "job_id": pd.array(
                [None if j < 0 else job_ids[j] for j in job_of.tolist()], dtype=CYCLE_COLUMNS["job_id"]
            ),
            "cycle_id": pd.array(np.asarray(cycle_ids, dtype=object), dtype="str"),
            "first": pd.to_datetime(first, utc=True).astype("datetime64[ns, UTC]"),
            "last": pd.to_datetime(last, utc=True).astype("datetime64[ns, UTC]"),
            "entries": entries.astype(np.int64),
        }
    )
    for i, name in enumerate([*ACTION_COLUMNS.values(), "n_unknown_action"]):
        frame[name] = by_action[:, i]
    for i, name in enumerate([*STATUS_COLUMNS.values(), "n_unknown_status"]):
        frame[name] = by_status[:, i]
    frame["distinct_objects"] = distinct.astype(np.int64)
    return frame.sort_values("first", kind="stable").reset_index(drop=True), without_cycle
