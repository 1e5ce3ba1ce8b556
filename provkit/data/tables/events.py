"""Provisioning log entries to the events, steps and properties tables: chunks go to the Arrow path when it
vouches for them and to the Python row loop (:mod:`provkit.data.tables.rows`) otherwise; their columns are
joined and typed once; and tables are stacked.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from provkit.data.tables.arrow import _arrow_chunk, _Irregular
from provkit.data.tables.convert import (
    _column,
    _combine,
    _details_encoder,
    _first_per_group,
    _frame,
    _spread,
)
from provkit.data.tables.rows import _normalise_chunk
from provkit.data.tables.schema import (
    _DETAIL_COLUMNS,
    _EVENT_ENUMS,
    _STEP_ENUMS,
    CATEGORY,
    EVENT_COLUMNS,
    PROPERTY_COLUMNS,
    STEP_COLUMNS,
    Tables,
    _Enums,
)

# ---------------------------------------------------------------------------------------------------------
# Provisioning log entries

# Entries normalised at a time: small enough for a chunk of parsed JSON to stay in the CPU cache while its
# values are copied into Arrow arrays, large enough to amortise the per-chunk calls.
_CHUNK = 256


def events_from_records(records: Iterable[object]) -> Tables:
    """Normalise provisioningObjectSummary dicts into the events, steps and properties tables.

    ``records`` may be any iterable (a page, or pages chained together); it is read once. Prefer one call
    over a stream of pages to one call per page: the tables are then built once. Entries that are not
    objects, have no ``id``, or have a missing or unparsable ``activityDateTime`` are left out and listed
    in ``rejects`` with their position; every other entry gives one events row.
    """
    items = iter(enumerate(records))
    return _with_pool(iter(lambda: list(itertools.islice(items, _ARROW_CHUNK if _USE_ARROW else _CHUNK)), []))


def events_from_pages(pages: Iterable[Sequence[object]]) -> Tables:
    """:func:`events_from_records` over the entries of ``pages``, each page converted as soon as it is taken.

    For a stream whose pages arrive one by one (a fetch reads them ahead in a thread of its own), each page is
    normalised while the next is on its way, so when the last arrives only it is left to convert; the tables
    are the same as :func:`events_from_records` gives for the pages' entries chained together (a reject's
    position counts entries from the first page's first).
    """
    size = _ARROW_CHUNK if _USE_ARROW else _CHUNK

    def chunks() -> Iterable[list[tuple[int, object]]]:
        position = 0
        for page in pages:
            for start in range(0, len(page), size):
                part = page[start : start + size]
                yield list(enumerate(part, position + start))
            position += len(page)

    return _with_pool(chunks())


def _with_pool(chunks: Iterable[list[tuple[int, object]]]) -> Tables:
    # Arrow buffers come and go by the thousand here; the C library's allocator recycles them faster than
    # mimalloc (pyarrow's default), which returns freed pages to the system and faults them in again.
    # Buffers remember their pool, so switching back afterwards is safe.
    pool = pa.default_memory_pool()
    pa.set_memory_pool(_POOL)
    try:
        return _tables_from_chunks(chunks)
    finally:
        pa.set_memory_pool(pool)


_POOL = pa.system_memory_pool()


def _tables_from_chunks(entry_chunks: Iterable[list[tuple[int, object]]]) -> Tables:
    """The tables of the (position, entry) chunks, with whatever Arrow memory pool is the default."""
    rejects: list[tuple[int, str]] = []
    positions: list[int] = []
    chunks: dict[str, list[Any]] = {}
    sparse_chunks: dict[str, tuple[list[np.ndarray], list[pa.Array[Any]]]] = {}
    n_steps = 0
    encode_details = _details_encoder()
    # Parsed JSON is millions of dicts; the cyclic collector would rescan them again and again while this
    # runs (and while a streaming source parses its pages), and none of it forms cycles. Pause it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for chunk in entry_chunks:
            if not chunk:
                continue
            for columns, sparse, chunk_steps in _chunk_columns(
                chunk, positions, rejects, n_steps, encode_details
            ):
                for name, array in columns.items():
                    chunks.setdefault(name, []).append(array)
                for name, (rows, values) in sparse.items():
                    row_chunks, value_chunks = sparse_chunks.setdefault(name, ([], []))
                    row_chunks.append(rows)
                    value_chunks.append(values)
                n_steps += chunk_steps
    finally:
        if collecting:
            gc.enable()

    if not chunks:  # no input at all
        return empty_tables()
    data = _assemble(chunks, sparse_chunks, n_steps)
    events = _frame(data, EVENT_COLUMNS, _EVENT_ENUMS)
    steps = _frame(data, STEP_COLUMNS, _STEP_ENUMS, prefix="step_")
    properties = _frame(data, PROPERTY_COLUMNS, {}, prefix="property_")
    bad_time = events["activity_time"].isna().to_numpy()
    if bad_time.any():
        raw_times = data["activity_time"]
        for row in np.flatnonzero(bad_time):
            raw = raw_times[int(row)].as_py()
            reason = (
                "missing activityDateTime" if raw is None else f"unparsable activityDateTime {raw[:40]!r}"
            )
            rejects.append((positions[row], reason))
        keep = ~bad_time
        events = events[keep].reset_index(drop=True)
        steps = steps[np.repeat(keep, data["step_count"])].reset_index(drop=True)
        properties = properties[np.repeat(keep, data["property_count"])].reset_index(drop=True)
        rejects.sort()
    return Tables(events, steps, properties, rejects)


def _assemble(
    chunks: dict[str, list[Any]],
    sparse_chunks: dict[str, tuple[list[np.ndarray], list[pa.Array[Any]]]],
    n_steps: int,
) -> dict[str, Any]:
    """All raw columns of the three tables (steps and properties prefixed ``step_`` and ``property_``)
    from the per-chunk arrays: chunks joined, sparse step columns spread over all steps, step keys and
    order added, and each scoping value lifted from the first step carrying it onto its event."""
    data = {name: _combine(arrays) for name, arrays in chunks.items()}
    step_count = data["step_count"]
    n_events = len(step_count)
    step_event = np.repeat(np.arange(n_events), step_count)
    prop_event = np.repeat(np.arange(n_events), data["property_count"])
    starts = np.cumsum(step_count) - step_count
    data["step_step_order"] = np.arange(n_steps, dtype=np.int64) - np.repeat(starts, step_count)
    for name, source in (("event_id", data["id"]), ("change_id", data["change_id"])):
        source = source.combine_chunks()  # take() on many chunks is much slower than one copy
        data[f"step_{name}"] = source.take(step_event)
        data[f"property_{name}"] = source.take(prop_event)

    def sparse(name: str) -> tuple[np.ndarray, pa.Array[Any]]:
        row_chunks, value_chunks = sparse_chunks.get(name, ([], []))
        rows = np.concatenate(row_chunks) if row_chunks else np.zeros(0, dtype=np.int64)
        return rows, pa.chunked_array(value_chunks, type=pa.large_string()).combine_chunks()

    row_chunks, value_chunks = sparse_chunks.get("details", ([], []))
    if sum(len(rows) for rows in row_chunks) == n_steps:  # every step has its text (the Arrow path)
        details: Any = pa.chunked_array(value_chunks, type=pa.large_string())
    else:
        detail_rows, detail_values = sparse("details")
        details = _spread(detail_values, detail_rows, n_steps)
    data["step_details"] = pc.fill_null(details, "{}") if details.null_count else details
    for name in _DETAIL_COLUMNS:
        rows, values = sparse(name)
        data[f"step_{name}"] = _spread(values, rows, n_steps)
        if name in ("failed_scope_filter", "failed_scope_value"):
            continue  # lifted together with their clause
        events, picks = _first_per_group(step_event[rows], values.is_valid().to_numpy(zero_copy_only=False))
        data[name] = _spread(values, events, n_events, picks)
        if name == "failed_scope_clause":  # the filter and value that failed it sit at the same rows
            for other in ("failed_scope_filter", "failed_scope_value"):
                data[other] = _spread(sparse(other)[1], events, n_events, picks)
    return data


# The Arrow path (provkit.data.tables.arrow) takes a chunk when it can vouch for it; tests switch it off.
_USE_ARROW = True
# Entries converted at a time on the Arrow path: large enough to amortise the per-kernel calls.
_ARROW_CHUNK = 8192


def _chunk_columns(
    chunk: list[tuple[int, object]],
    positions: list[int],
    rejects: list[tuple[int, str]],
    first_step: int,
    encode_details: Callable[[dict[str, Any]], str],
) -> Iterable[tuple[dict[str, Any], dict[str, tuple[np.ndarray, pa.Array[Any]]], int]]:
    """The columns of ``chunk`` as :func:`_normalise_chunk` gives them: from the Arrow path when it takes
    the chunk, else from the Python loop in pieces of ``_CHUNK`` entries."""
    if _USE_ARROW:
        try:
            yield _arrow_chunk(chunk, positions, first_step)
            return
        except (_Irregular, pa.ArrowException, UnicodeError, TypeError, ValueError, OverflowError):
            pass
    for start in range(0, len(chunk), _CHUNK):
        result = _normalise_chunk(
            chunk[start : start + _CHUNK], positions, rejects, first_step, encode_details
        )
        first_step += result[2]
        yield result


def _empty_frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return (
        _frame(dict.fromkeys(EVENT_COLUMNS, []), EVENT_COLUMNS, _EVENT_ENUMS),
        _frame(dict.fromkeys(STEP_COLUMNS, []), STEP_COLUMNS, _STEP_ENUMS),
        _frame(dict.fromkeys(PROPERTY_COLUMNS, []), PROPERTY_COLUMNS, {}),
    )


def empty_tables() -> Tables:
    """Tables with every column and dtype and no rows."""
    return Tables(*_empty_frames())


def _recategorise(frame: pd.DataFrame, enums: _Enums) -> pd.DataFrame:
    for name, enum in enums.items():
        if name in frame.columns and not isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = _column(frame[name].to_numpy(dtype=object, na_value=None).tolist(), CATEGORY, enum)
    return frame


def concat_tables(parts: Sequence[Tables]) -> Tables:
    """Stack several :class:`Tables` (e.g. one per page or per file) into one, keeping dtypes.

    Category columns are rebuilt when the parts saw different unknown values. ``rejects`` are
    concatenated as they are, so their positions refer to each part's own input.
    """
    if not parts:
        return empty_tables()
    if len(parts) == 1:
        return parts[0]

    def stack(frames: list[pd.DataFrame], enums: _Enums) -> pd.DataFrame:
        return _recategorise(pd.concat(frames, ignore_index=True), enums)

    return Tables(
        stack([p.events for p in parts], _EVENT_ENUMS),
        stack([p.steps for p in parts], _STEP_ENUMS),
        stack([p.properties for p in parts], {}),
        [reject for p in parts for reject in p.rejects],
    )
