"""Provisioning log entries to the events, steps and properties tables: the Python row loop that reads any
shape, the orchestration of chunks (Arrow path first, the loop as fallback), and stacking tables.
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

from provkit.data.stepdetails import (
    detail_column,
    is_scope_evaluation_key,
)
from provkit.data.tables.arrow import _arrow_chunk, _Irregular
from provkit.data.tables.convert import (
    _EMPTY,
    _as_dict,
    _as_list,
    _column,
    _combine,
    _details_dict,
    _details_encoder,
    _encode,
    _first_per_group,
    _frame,
    _integers,
    _scope_failure,
    _spread,
    _strings,
)
from provkit.data.tables.schema import (
    _DETAIL_COLUMNS,
    _DETAIL_KEYS,
    _EVENT_ENUMS,
    _EVENT_INT_COLUMNS,
    _EVENT_LOOP_COLUMNS,
    _KNOWN_EVENT_FIELDS,
    _SCOPE_FAILURE_COLUMNS,
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
    # Arrow buffers come and go by the thousand here; the C library's allocator recycles them faster than
    # mimalloc (pyarrow's default), which returns freed pages to the system and faults them in again.
    # Buffers remember their pool, so switching back afterwards is safe.
    pool = pa.default_memory_pool()
    pa.set_memory_pool(_POOL)
    try:
        return _tables_from_records(records)
    finally:
        pa.set_memory_pool(pool)


_POOL = pa.system_memory_pool()


def _tables_from_records(records: Iterable[object]) -> Tables:
    """:func:`events_from_records`, with whatever Arrow memory pool is the default."""
    rejects: list[tuple[int, str]] = []
    positions: list[int] = []
    chunks: dict[str, list[Any]] = {}
    sparse_chunks: dict[str, tuple[list[np.ndarray], list[pa.Array[Any]]]] = {}
    n_steps = 0
    encode_details = _details_encoder()
    items = iter(enumerate(records))
    # Parsed JSON is millions of dicts; the cyclic collector would rescan them again and again while this
    # runs (and while a streaming source parses its pages), and none of it forms cycles. Pause it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        while chunk := list(itertools.islice(items, _ARROW_CHUNK if _USE_ARROW else _CHUNK)):
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


def _normalise_chunk(
    chunk: list[tuple[int, object]],
    positions: list[int],
    rejects: list[tuple[int, str]],
    first_step: int,
    encode_details: Callable[[dict[str, Any]], str],
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, pa.Array[Any]]], int]:
    """Columns for one chunk of (position, entry): Arrow arrays keyed by column name (step and property
    columns prefixed ``step_`` and ``property_``), sparse step columns as (step rows, values) counting
    from ``first_step``, and the number of steps.

    One loop touches each entry, its steps, their details and its properties once, while they are still
    in the CPU cache, appending plain values to lists; the lists become Arrow arrays at the end of the
    chunk. Typing (times, enums, booleans) happens later, once per column. Unusual shapes (JSON text for
    nested objects, steps that are not objects, ...) take side branches so the common path stays short.
    """
    ev: dict[str, list[Any]] = {name: [] for name in _EVENT_LOOP_COLUMNS}
    st: dict[str, list[Any]] = {
        name: [] for name in ("step_name", "step_step_type", "step_status", "step_description")
    }
    pr: dict[str, list[Any]] = {
        name: [] for name in ("property_name", "property_old_value", "property_new_value")
    }
    sparse: dict[str, tuple[list[int], list[Any]]] = {
        name: ([], []) for name in ("details", *_DETAIL_COLUMNS)
    }
    step_counts: list[int] = []
    prop_counts: list[int] = []
    # Appends bound to locals: this loop runs once per entry, and its inner loops once per step.
    (
        e_id, e_time, e_tenant, e_job, e_cycle, e_change, e_action, e_status, e_duration, e_init_type,
        e_init_name, e_sp_id, e_sp_name, e_src_sys, e_tgt_sys, e_src_id, e_src_name, e_src_type, e_tgt_id,
        e_tgt_name, e_tgt_type, e_err_code, e_err_cat, e_err_reason, e_err_details, e_err_action, e_extra,
    ) = (ev[name].append for name in _EVENT_LOOP_COLUMNS)  # fmt: skip
    s_name, s_type, s_status, s_desc = (values.append for values in st.values())
    p_name, p_old, p_new = (values.append for values in pr.values())
    detail_append = {col: (sparse[col][0].append, sparse[col][1].append) for col in _DETAIL_KEYS}
    details_row, details_text = sparse["details"][0].append, sparse["details"][1].append
    failure_appends = [(sparse[col][0].append, sparse[col][1].append) for col in _SCOPE_FAILURE_COLUMNS]
    lift = detail_column
    position_append = positions.append
    step_count_append = step_counts.append
    prop_count_append = prop_counts.append
    known_fields = _KNOWN_EVENT_FIELDS.issuperset
    encode = _encode
    as_dict = _as_dict
    empty: dict[str, Any] = _EMPTY
    step_row = first_step

    for index, rec in chunk:
        if rec.__class__ is not dict and not isinstance(rec, dict):
            rejects.append((index, f"not a JSON object (got {type(rec).__name__})"))
            continue
        get = rec.get
        rid = get("id")
        if rid is None or rid == "":
            rejects.append((index, "missing id"))
            continue
        position_append(index)
        e_id(rid)
        e_time(get("activityDateTime"))
        e_tenant(get("tenantId"))
        e_job(get("jobId"))
        e_cycle(get("cycleId"))
        e_change(get("changeId"))
        action = get("provisioningAction")
        e_action(get("action") if action is None else action)
        e_duration(get("durationInMilliseconds"))

        info = get("provisioningStatusInfo")
        if info is None:
            info = get("statusInfo")
        if info.__class__ is not dict:
            info = as_dict(info)
        e_status(info.get("status"))
        error = info.get("errorInformation")
        if error is None:
            error = info.get("errorInfo")
            if error is None:
                error = empty
        if error.__class__ is not dict:
            error = as_dict(error)
        e_err_code(error.get("errorCode"))
        e_err_cat(error.get("errorCategory"))
        e_err_reason(error.get("reason"))
        e_err_details(error.get("additionalDetails"))
        e_err_action(error.get("recommendedAction"))

        obj = get("initiatedBy")
        if obj.__class__ is not dict:
            obj = as_dict(obj)
        kind = obj.get("initiatorType")
        e_init_type(obj.get("initiatingType") if kind is None else kind)
        e_init_name(obj.get("displayName"))
        obj = get("servicePrincipal")
        if obj.__class__ is not dict:
            obj = as_dict(obj)
        e_sp_id(obj.get("id"))
        name = obj.get("displayName")
        e_sp_name(obj.get("name") if name is None else name)
        obj = get("sourceSystem")
        if obj.__class__ is not dict:
            obj = as_dict(obj)
        e_src_sys(obj.get("displayName"))
        obj = get("targetSystem")
        if obj.__class__ is not dict:
            obj = as_dict(obj)
        e_tgt_sys(obj.get("displayName"))
        obj = get("sourceIdentity")
        if obj.__class__ is not dict:
            obj = as_dict(obj)
        e_src_id(obj.get("id"))
        e_src_name(obj.get("displayName"))
        e_src_type(obj.get("identityType"))
        obj = get("targetIdentity")
        if obj.__class__ is not dict:
            obj = as_dict(obj)
        e_tgt_id(obj.get("id"))
        e_tgt_name(obj.get("displayName"))
        e_tgt_type(obj.get("identityType"))

        extra = None if known_fields(rec) else {k: rec[k] for k in rec.keys() - _KNOWN_EVENT_FIELDS}
        steps = get("provisioningSteps")
        if steps.__class__ is not list:
            parsed = _as_list(steps)
            if parsed is None:
                extra = (extra or {}) | {"provisioningSteps": steps}
                parsed = []
            steps = parsed
        step_count_append(len(steps))
        for step in steps:
            if step.__class__ is not dict:
                step = _malformed_step(step)
            sget = step.get
            s_name(sget("name"))
            s_type(sget("provisioningStepType"))
            s_status(sget("status"))
            s_desc(sget("description"))
            details = sget("details")
            if details:
                if details.__class__ is not dict:
                    details = _details_dict(details)
                details_row(step_row)
                details_text(encode_details(details))
                # Only the keys present are recorded (most details hold one key): sparse columns. When a
                # step spells a key more than one way, the preferred spelling (lowest rank) wins.
                lifted: dict[str, tuple[int, Any]] = {}
                scope_seen = False
                for key, value in details.items():
                    found = lift(key)
                    if found is not None:
                        column, rank = found
                        if column not in lifted or rank < lifted[column][0]:
                            lifted[column] = (rank, value)
                    elif not scope_seen and is_scope_evaluation_key(key):
                        scope_seen = True  # the first ScopeEvaluationResult of the step
                        failure = _scope_failure(value)
                        if failure[1] is not None:
                            lifted["failed_scope_clause"] = (0, failure)
                for column, (_, value) in lifted.items():
                    if column == "failed_scope_clause":
                        for (add_row, add_value), part in zip(failure_appends, value, strict=True):
                            add_row(step_row)
                            add_value(part)
                    else:
                        add_row, add_value = detail_append[column]
                        add_row(step_row)
                        add_value(value)
            step_row += 1

        props = get("modifiedProperties")
        if props.__class__ is not list:
            parsed = _as_list(props)
            if parsed is None:
                extra = (extra or {}) | {"modifiedProperties": props}
                parsed = []
            props = parsed
        prop_count_append(len(props))
        for prop in props:
            if prop.__class__ is not dict:
                prop = {"newValue": prop}  # kept: what was sent becomes the new value
            pget = prop.get
            name = pget("displayName")
            p_name(pget("name") if name is None else name)
            p_old(pget("oldValue"))
            p_new(pget("newValue"))
        e_extra(encode(extra) if extra else "")

    columns: dict[str, Any] = {
        name: _integers(values) if name in _EVENT_INT_COLUMNS else _strings(values)
        for name, values in ev.items()
    }
    columns |= {name: _strings(values) for name, values in st.items()}
    columns |= {name: _strings(values) for name, values in pr.items()}
    columns["step_count"] = np.asarray(step_counts, dtype=np.int64)
    columns["property_count"] = np.asarray(prop_counts, dtype=np.int64)
    sparse_arrays = {
        name: (np.asarray(rows, dtype=np.int64), _strings(values)) for name, (rows, values) in sparse.items()
    }
    return columns, sparse_arrays, step_row - first_step


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


def _malformed_step(step: object) -> dict[str, Any]:
    """A step that is not an object: kept as a row whose details hold what was sent."""
    return {"details": {"value": step}}


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
