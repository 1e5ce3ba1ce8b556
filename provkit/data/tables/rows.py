"""The Python row loop: provisioning log entries of any shape to the columns of the three log tables.

This is the path every entry can take (the Arrow path in :mod:`provkit.data.tables.arrow` takes only chunks of
regular entries, and must give exactly what this gives). One loop touches each entry, its steps, their details
and its properties once, while they are still in the CPU cache, appending plain values to lists; the lists
become Arrow arrays at the end of the chunk. Typing (times, enums, booleans) happens later, once per column.
Unusual shapes (JSON text for nested objects, steps that are not objects, ...) go through the small helpers
below, so the loop itself reads as the list of fields it copies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from provkit.data.stepdetails import detail_column, is_scope_evaluation_key
from provkit.data.tables.convert import (
    _EMPTY,
    _as_dict,
    _as_list,
    _details_dict,
    _encode,
    _integers,
    _scope_failure,
    _strings,
)
from provkit.data.tables.schema import (
    _DETAIL_COLUMNS,
    _EVENT_INT_COLUMNS,
    _EVENT_LOOP_COLUMNS,
    _KNOWN_EVENT_FIELDS,
    _SCOPE_FAILURE_COLUMNS,
)

_STEP_LOOP_COLUMNS = ("step_name", "step_step_type", "step_status", "step_description")
_PROPERTY_LOOP_COLUMNS = ("property_name", "property_old_value", "property_new_value")

Sparse = dict[str, tuple[np.ndarray, "pa.Array[Any]"]]


def _status_and_error(get: Callable[[str], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``provisioningStatusInfo`` or the older ``statusInfo``, its ``errorInformation`` or the older
    ``errorInfo``); empty objects where they are missing."""
    info = get("provisioningStatusInfo")
    if info is None:
        info = get("statusInfo")
    info = _as_dict(info)
    error = info.get("errorInformation")
    if error is None:
        error = info.get("errorInfo")
    return info, _EMPTY if error is None else _as_dict(error)


def _listed(value: object, key: str, extra: dict[str, Any] | None) -> tuple[list[Any], dict[str, Any] | None]:
    """An entry's steps or properties as a list (JSON text is parsed; missing is empty). A value that is no
    list is kept, as sent, in the entry's ``extra`` under ``key``, and read as no items."""
    if type(value) is list:
        return value, extra
    parsed = _as_list(value)
    if parsed is None:
        return [], (extra or {}) | {key: value}
    return parsed, extra


def _lifted(details: dict[str, Any]) -> dict[str, Any]:
    """The step-detail columns one step's details give: column -> value.

    Only the keys present are returned (most details hold one key). When a step spells a key more than one
    way, the preferred spelling (lowest rank, see :mod:`provkit.data.stepdetails`) wins. The first
    ScopeEvaluationResult of the step gives ``failed_scope_filter``, ``failed_scope_clause`` and
    ``failed_scope_value`` together, when a clause failed.
    """
    ranked: dict[str, tuple[int, Any]] = {}
    failure: tuple[str | None, str | None, str | None] | None = None
    scope_seen = False
    for key, value in details.items():
        found = detail_column(key)
        if found is not None:
            column, rank = found
            if column not in ranked or rank < ranked[column][0]:
                ranked[column] = (rank, value)
        elif not scope_seen and is_scope_evaluation_key(key):
            scope_seen = True
            failure = _scope_failure(value)
    lifted = {column: value for column, (_, value) in ranked.items()}
    if failure is not None and failure[1] is not None:
        lifted.update(zip(_SCOPE_FAILURE_COLUMNS, failure, strict=True))
    return lifted


def _malformed_step(step: object) -> dict[str, Any]:
    """A step that is not an object: kept as a row whose details hold what was sent."""
    return {"details": {"value": step}}


class _Columns:
    """The value lists of one chunk: event, step and property columns (one value per row), the sparse step
    columns (step row, value) for details and the lifted detail keys, and the steps and properties per entry."""

    def __init__(self) -> None:
        self.events: dict[str, list[Any]] = {name: [] for name in _EVENT_LOOP_COLUMNS}
        self.steps: dict[str, list[Any]] = {name: [] for name in _STEP_LOOP_COLUMNS}
        self.properties: dict[str, list[Any]] = {name: [] for name in _PROPERTY_LOOP_COLUMNS}
        self.sparse: dict[str, tuple[list[int], list[Any]]] = {
            name: ([], []) for name in ("details", *_DETAIL_COLUMNS)
        }
        self.step_counts: list[int] = []
        self.property_counts: list[int] = []

    def arrays(self) -> tuple[dict[str, Any], Sparse]:
        """The lists as Arrow arrays (counts as numpy), keyed as :func:`_normalise_chunk` returns them."""
        columns: dict[str, Any] = {
            name: _integers(values) if name in _EVENT_INT_COLUMNS else _strings(values)
            for name, values in self.events.items()
        }
        columns |= {name: _strings(values) for name, values in self.steps.items()}
        columns |= {name: _strings(values) for name, values in self.properties.items()}
        columns["step_count"] = np.asarray(self.step_counts, dtype=np.int64)
        columns["property_count"] = np.asarray(self.property_counts, dtype=np.int64)
        sparse = {
            name: (np.asarray(rows, dtype=np.int64), _strings(values))
            for name, (rows, values) in self.sparse.items()
        }
        return columns, sparse


def _normalise_chunk(
    chunk: list[tuple[int, object]],
    positions: list[int],
    rejects: list[tuple[int, str]],
    first_step: int,
    encode_details: Callable[[dict[str, Any]], str],
) -> tuple[dict[str, Any], Sparse, int]:
    """Columns for one chunk of (position, entry): Arrow arrays keyed by column name (step and property
    columns prefixed ``step_`` and ``property_``), sparse step columns as (step rows, values) counting
    from ``first_step``, and the number of steps. Entries that are not objects or have no id are added to
    ``rejects``; the positions of the others to ``positions``.
    """
    out = _Columns()
    # Appends bound to locals: this loop runs once per entry, and its inner loops once per step.
    (
        e_id, e_time, e_tenant, e_job, e_cycle, e_change, e_action, e_status, e_duration, e_init_type,
        e_init_name, e_sp_id, e_sp_name, e_src_sys, e_tgt_sys, e_src_id, e_src_name, e_src_type, e_tgt_id,
        e_tgt_name, e_tgt_type, e_err_code, e_err_cat, e_err_reason, e_err_details, e_err_action, e_extra,
    ) = (out.events[name].append for name in _EVENT_LOOP_COLUMNS)  # fmt: skip
    s_name, s_type, s_status, s_desc = (out.steps[name].append for name in _STEP_LOOP_COLUMNS)
    p_name, p_old, p_new = (out.properties[name].append for name in _PROPERTY_LOOP_COLUMNS)
    details_row, details_text = out.sparse["details"][0].append, out.sparse["details"][1].append
    sparse = out.sparse
    known_fields = _KNOWN_EVENT_FIELDS.issuperset
    step_row = first_step

    for index, rec in chunk:
        if not isinstance(rec, dict):
            rejects.append((index, f"not a JSON object (got {type(rec).__name__})"))
            continue
        get = rec.get
        rid = get("id")
        if rid is None or rid == "":
            rejects.append((index, "missing id"))
            continue
        positions.append(index)
        e_id(rid)
        e_time(get("activityDateTime"))
        e_tenant(get("tenantId"))
        e_job(get("jobId"))
        e_cycle(get("cycleId"))
        e_change(get("changeId"))
        action = get("provisioningAction")
        e_action(get("action") if action is None else action)
        e_duration(get("durationInMilliseconds"))

        info, error = _status_and_error(get)
        e_status(info.get("status"))
        e_err_code(error.get("errorCode"))
        e_err_cat(error.get("errorCategory"))
        e_err_reason(error.get("reason"))
        e_err_details(error.get("additionalDetails"))
        e_err_action(error.get("recommendedAction"))

        obj = _as_dict(get("initiatedBy"))
        kind = obj.get("initiatorType")
        e_init_type(obj.get("initiatingType") if kind is None else kind)
        e_init_name(obj.get("displayName"))
        obj = _as_dict(get("servicePrincipal"))
        e_sp_id(obj.get("id"))
        name = obj.get("displayName")
        e_sp_name(obj.get("name") if name is None else name)
        e_src_sys(_as_dict(get("sourceSystem")).get("displayName"))
        e_tgt_sys(_as_dict(get("targetSystem")).get("displayName"))
        obj = _as_dict(get("sourceIdentity"))
        e_src_id(obj.get("id"))
        e_src_name(obj.get("displayName"))
        e_src_type(obj.get("identityType"))
        obj = _as_dict(get("targetIdentity"))
        e_tgt_id(obj.get("id"))
        e_tgt_name(obj.get("displayName"))
        e_tgt_type(obj.get("identityType"))

        # Unknown fields in the order sent (a set difference would order them differently in every process).
        extra = None if known_fields(rec) else {k: v for k, v in rec.items() if k not in _KNOWN_EVENT_FIELDS}
        steps, extra = _listed(get("provisioningSteps"), "provisioningSteps", extra)
        out.step_counts.append(len(steps))
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
                for column, value in _lifted(details).items():
                    rows, values = sparse[column]
                    rows.append(step_row)
                    values.append(value)
            step_row += 1

        props, extra = _listed(get("modifiedProperties"), "modifiedProperties", extra)
        out.property_counts.append(len(props))
        for prop in props:
            if prop.__class__ is not dict:
                prop = {"newValue": prop}  # kept: what was sent becomes the new value
            pget = prop.get
            name = pget("displayName")
            p_name(pget("name") if name is None else name)
            p_old(pget("oldValue"))
            p_new(pget("newValue"))
        e_extra(_encode(extra) if extra else "")

    columns, sparse_arrays = out.arrays()
    return columns, sparse_arrays, step_row - first_step
