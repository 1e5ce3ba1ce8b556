"""The Arrow path: one C++ conversion per chunk of regular entries, then vectorised flattening. It must give
exactly what the Python row loop (:func:`provkit.data.tables.rows._normalise_chunk`) gives; any chunk it
cannot vouch for (odd shapes, odd types, rejects, unknown fields) goes through the loop instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from provkit.data.stepdetails import (
    detail_column,
    is_scope_evaluation_key,
)
from provkit.data.tables.convert import _NO_FAILURE, _buffer_view, _dictionary, _scope_failure
from provkit.data.tables.schema import _DETAIL_KEYS, _KNOWN_EVENT_FIELDS, _SCOPE_FAILURE_COLUMNS

# ---------------------------------------------------------------------------------------------------------
# The Arrow path: one C++ conversion per chunk of regular entries, then vectorised flattening. It must give
# exactly what _normalise_chunk gives; any chunk it cannot vouch for (odd shapes, odd types, rejects, unknown
# fields) goes through _normalise_chunk instead.

_S = pa.large_string()
_ERROR_TYPE = pa.struct(
    [(k, _S) for k in ("errorCode", "errorCategory", "reason", "additionalDetails", "recommendedAction")]
)
_STATUS_TYPE = pa.struct([("status", _S), ("errorInformation", _ERROR_TYPE), ("errorInfo", _ERROR_TYPE)])
_STEP_TYPE = pa.struct(
    [
        ("name", _S),
        ("provisioningStepType", _S),
        ("status", _S),
        ("description", _S),
        ("details", pa.map_(_S, _S)),
    ]
)
_PROPERTY_TYPE = pa.struct([("displayName", _S), ("name", _S), ("oldValue", _S), ("newValue", _S)])
_IDENTITY_TYPE = pa.struct([("id", _S), ("displayName", _S), ("identityType", _S)])
_ENTRY_TYPE = pa.struct(
    [
        *[(k, _S) for k in ("id", "activityDateTime", "tenantId", "jobId", "cycleId", "changeId")],
        ("provisioningAction", _S),
        ("action", _S),
        ("durationInMilliseconds", pa.int64()),
        ("provisioningStatusInfo", _STATUS_TYPE),
        ("statusInfo", _STATUS_TYPE),
        ("initiatedBy", pa.struct([("initiatorType", _S), ("initiatingType", _S), ("displayName", _S)])),
        ("servicePrincipal", pa.struct([("id", _S), ("displayName", _S), ("name", _S)])),
        ("sourceSystem", pa.struct([("displayName", _S)])),
        ("targetSystem", pa.struct([("displayName", _S)])),
        ("sourceIdentity", _IDENTITY_TYPE),
        ("targetIdentity", _IDENTITY_TYPE),
        ("provisioningSteps", pa.list_(_STEP_TYPE)),
        ("modifiedProperties", pa.list_(_PROPERTY_TYPE)),
    ]
)
_LIST_OR_NONE = (list, type(None))
# Characters json.dumps escapes as \u00XX or \n and the like; details holding them take the Python path.
_QUOTE = pa.scalar('"', _S)
_NOTHING = pa.scalar("", _S)
_COLON = pa.scalar('": ', _S)
_QUOTE_COLON_QUOTE = pa.scalar('": "', _S)
_COMMA = pa.scalar(", ", _S)
_OPEN = pa.scalar("{", _S)
_NULL = pa.scalar("null", _S)
_CLOSE = pa.scalar("}", _S)


class _Irregular(Exception):
    """A chunk the Arrow path does not vouch for."""


def _fields(array: pa.Array[Any]) -> dict[str, pa.Array[Any]]:
    """The children of a struct array by name, null where the struct itself is null (:class:`_Irregular` for
    any other array: then the Python path reads the chunk)."""
    if not isinstance(array, pa.StructArray):
        raise _Irregular
    return dict(zip((f.name for f in array.type), array.flatten(), strict=True))


def _lists(array: pa.Array[Any]) -> pa.ListArray[Any]:
    """``array`` as the list array it must be (:class:`_Irregular` otherwise)."""
    if not isinstance(array, pa.ListArray):
        raise _Irregular
    return array


def _maps(array: pa.Array[Any]) -> pa.MapArray[Any, Any]:
    """``array`` as the map array it must be (:class:`_Irregular` otherwise)."""
    if not isinstance(array, pa.MapArray):
        raise _Irregular
    return array


def _join(*parts: pa.Array[Any] | pa.ChunkedArray[Any] | pa.Scalar[Any]) -> pa.Array[Any]:
    """Element-wise concatenation of string arrays and scalars, the last part being the separator."""
    # The stubs want every part of one type; Arrow broadcasts the scalars, which is the point here.
    joined = pc.binary_join_element_wise(*parts)  # type: ignore[type-var]
    if not isinstance(joined, pa.Array):
        raise _Irregular
    return joined


def _pick(condition: pa.Array[Any], when_true: pa.Array[Any], otherwise: pa.Array[Any]) -> pa.Array[Any]:
    """``when_true`` where ``condition`` holds, else ``otherwise`` (skipped when ``otherwise`` is all null)."""
    if otherwise.null_count == len(otherwise):
        return when_true
    picked: pa.Array[Any] = pc.if_else(condition, when_true, otherwise)
    return picked


def _coalesce(first: pa.Array[Any], second: pa.Array[Any]) -> pa.Array[Any]:
    if second.null_count == len(second) or first.null_count == 0:
        return first
    coalesced: pa.Array[Any] = pc.coalesce(first, second)
    return coalesced


def _not_all_objects(
    records: list[dict[str, Any]], key: str, lists: pa.ListArray[Any], fields: dict[str, pa.Array[Any]]
) -> bool:
    """Whether some item of ``records[...][key]`` that Arrow read as an object with every field null is
    not a dict (Arrow reads an empty string so; the Python path keeps it as a malformed row)."""
    valid = None
    for values in fields.values():
        valid = values.is_valid() if valid is None else pc.or_(valid, values.is_valid())
    if valid is None or pc.all(valid).as_py() is not False:
        return False
    empty = np.flatnonzero(~valid.to_numpy(zero_copy_only=False))
    owners = pc.list_parent_indices(lists).to_numpy()[empty]
    starts = lists.offsets.to_numpy()[owners] - lists.offsets[0].as_py()
    return any(
        records[owner][key][item - start].__class__ is not dict
        for owner, item, start in zip(owners.tolist(), empty.tolist(), starts.tolist(), strict=True)
    )


def _arrow_chunk(
    chunk: list[tuple[int, object]], positions: list[int], first_step: int
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, pa.Array[Any]]], int]:
    """What :func:`_normalise_chunk` returns for ``chunk``, computed with Arrow kernels.

    Raises :class:`_Irregular` (or an Arrow or conversion error) when the chunk holds anything but
    regular entries: objects with a non-empty id, only known fields, lists (or null) for steps and
    properties, and strings, integers, objects and lists where the Python path expects them.
    """
    known_fields = _KNOWN_EVENT_FIELDS.issuperset
    records = []
    for _, rec in chunk:
        if (
            rec.__class__ is not dict
            or not known_fields(rec)
            or rec.get("provisioningSteps").__class__ not in _LIST_OR_NONE
            or rec.get("modifiedProperties").__class__ not in _LIST_OR_NONE
        ):
            raise _Irregular
        records.append(rec)
    entries = _fields(pa.array(records, type=_ENTRY_TYPE))
    ids = entries["id"]
    if ids.null_count or not pc.all(pc.not_equal(ids, _NOTHING)).as_py():
        raise _Irregular  # rejects: the Python path lists them
    n = len(ids)

    status_info = entries["provisioningStatusInfo"]
    info = _fields(_pick(status_info.is_valid(), status_info, entries["statusInfo"]))
    error_information = info["errorInformation"]
    error = _fields(_pick(error_information.is_valid(), error_information, info["errorInfo"]))
    initiator = _fields(entries["initiatedBy"])
    principal = _fields(entries["servicePrincipal"])
    source = _fields(entries["sourceIdentity"])
    target = _fields(entries["targetIdentity"])
    columns: dict[str, Any] = {
        "id": ids,
        "activity_time": entries["activityDateTime"],
        "tenant_id": entries["tenantId"],
        "job_id": entries["jobId"],
        "cycle_id": entries["cycleId"],
        "change_id": entries["changeId"],
        "action": _coalesce(entries["provisioningAction"], entries["action"]),
        "status": info["status"],
        "duration_ms": entries["durationInMilliseconds"],
        "initiator_type": _coalesce(initiator["initiatorType"], initiator["initiatingType"]),
        "initiator_name": initiator["displayName"],
        "service_principal_id": principal["id"],
        "service_principal_name": _coalesce(principal["displayName"], principal["name"]),
        "source_system": _fields(entries["sourceSystem"])["displayName"],
        "target_system": _fields(entries["targetSystem"])["displayName"],
        "source_id": source["id"],
        "source_name": source["displayName"],
        "source_type": source["identityType"],
        "target_id": target["id"],
        "target_name": target["displayName"],
        "target_type": target["identityType"],
        "error_code": error["errorCode"],
        "error_category": error["errorCategory"],
        "error_reason": error["reason"],
        "error_additional_details": error["additionalDetails"],
        "error_recommended_action": error["recommendedAction"],
        "extra": pa.array(np.full(n, "", dtype=object), type=_S),
    }

    step_lists = _lists(entries["provisioningSteps"])
    steps = pc.list_flatten(step_lists)
    prop_lists = _lists(entries["modifiedProperties"])
    props = pc.list_flatten(prop_lists)
    if steps.null_count or props.null_count:
        raise _Irregular  # a null step or property: the Python path keeps it as a malformed row
    step = _fields(steps)
    prop = _fields(props)
    if _not_all_objects(records, "provisioningSteps", step_lists, step) or _not_all_objects(
        records, "modifiedProperties", prop_lists, prop
    ):
        raise _Irregular
    columns |= {
        "step_name": step["name"],
        "step_step_type": step["provisioningStepType"],
        "step_status": step["status"],
        "step_description": step["description"],
        "property_name": _coalesce(prop["displayName"], prop["name"]),
        "property_old_value": prop["oldValue"],
        "property_new_value": prop["newValue"],
        "step_count": pc.list_value_length(step_lists).fill_null(0).to_numpy().astype(np.int64),
        "property_count": pc.list_value_length(prop_lists).fill_null(0).to_numpy().astype(np.int64),
    }
    sparse = _arrow_details(_maps(step["details"]), first_step)
    positions.extend(index for index, _ in chunk)
    return columns, sparse, len(steps)


def _arrow_details(
    details: pa.MapArray[Any, Any], first_step: int
) -> dict[str, tuple[np.ndarray, pa.Array[Any]]]:
    """The sparse step columns (details text and the lifted detail keys) from the steps' details maps.

    Raises :class:`_Irregular` when a key or value holds a control character (json.dumps escapes those).
    """
    n_steps = len(details)
    offsets = details.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    base = offsets[0]
    offsets = offsets - base
    keys = details.keys.slice(base, offsets[-1])
    values = details.items.slice(base, offsets[-1])
    if _has_control(keys) or _has_control(values):
        raise _Irregular
    # Details text: {"key": "value", ...} in the order sent.
    key_text = _escaped(keys)
    if values.null_count:
        pairs = _join(_QUOTE, key_text, _COLON, pc.fill_null(_quoted(_escaped(values)), _NULL), _NOTHING)
    else:
        pairs = _join(_QUOTE, key_text, _QUOTE_COLON_QUOTE, _escaped(values), _QUOTE, _NOTHING)
    lengths = np.diff(offsets)
    # Empty and missing details join to "" and so read "{}", as the Python path writes them.
    lists = pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), pairs)
    text = _join(_OPEN, pc.binary_join(lists, _COMMA), _CLOSE, _NOTHING)
    step_rows = np.arange(first_step, first_step + n_steps, dtype=np.int64)
    sparse: dict[str, tuple[np.ndarray, pa.Array[Any]]] = {"details": (step_rows, text)}

    owner = np.repeat(
        np.arange(first_step, first_step + n_steps, dtype=np.int64), lengths
    )  # step of each entry
    key_codes, distinct = _dictionary(keys)
    # Each spelling of a key, preferred spellings first; a step keeps the first spelling it has.
    spellings: dict[str, dict[int, list[int]]] = {}
    scope_codes = []
    for i, key in enumerate(distinct):
        found = detail_column(key)
        if found is not None:
            spellings.setdefault(found[0], {}).setdefault(found[1], []).append(i)
        elif is_scope_evaluation_key(key):
            scope_codes.append(i)
    owner_step = owner - first_step

    def first_in_step(mask: np.ndarray) -> np.ndarray:
        """``mask`` keeping only the first entry of each step (entries are in step order)."""
        steps_hit = owner_step[mask]
        keep = np.ones(len(steps_hit), dtype=bool)
        keep[1:] = steps_hit[1:] != steps_hit[:-1]
        out = np.zeros(len(mask), dtype=bool)
        out[np.flatnonzero(mask)[keep]] = True
        return out

    for name in _DETAIL_KEYS:
        mask = np.zeros(len(key_codes), dtype=bool)
        has = np.zeros(n_steps, dtype=bool)
        ranks = spellings.get(name, {})
        for rank in sorted(ranks):
            this = first_in_step(np.isin(key_codes, ranks[rank]) & ~has[owner_step])
            has[owner_step[this]] = True
            mask |= this
        sparse[name] = (owner[mask], values.filter(pa.array(mask)))
    mask = first_in_step(np.isin(key_codes, scope_codes))  # the first ScopeEvaluationResult of a step
    rows = owner[mask]
    codes, uniques = _dictionary(values.filter(pa.array(mask)))
    found_failures = [_scope_failure(u) for u in uniques] + [_NO_FAILURE]  # the last for code -1 (null)
    picks = pa.array(np.where(codes < 0, len(found_failures) - 1, codes), type=pa.int64())
    clauses = pa.array([f[1] for f in found_failures], type=_S).take(picks)
    failed = clauses.is_valid()
    rows = rows[failed.to_numpy(zero_copy_only=False)]
    for position, name in enumerate(_SCOPE_FAILURE_COLUMNS):
        column = pa.array([f[position] for f in found_failures], type=_S).take(picks).filter(failed)
        sparse[name] = (rows, column)
    return sparse


def _has_control(values: pa.Array[Any]) -> bool:
    """Whether any string in ``values`` (a slice of a large_string array) holds a byte below 0x20."""
    data = values.buffers()[2]
    if data is None or not len(values):
        return False
    offsets = _buffer_view(values.buffers()[1], np.int64, count=len(values) + 1, offset=values.offset * 8)
    raw = _buffer_view(data, np.uint8)[offsets[0] : offsets[-1]]
    return bool((raw < 0x20).any())


def _escaped(values: pa.Array[Any]) -> pa.Array[Any]:
    """``values`` with ``\\`` and ``"`` escaped as json.dumps does; only the strings holding them are touched
    (each distinct one once)."""
    needs = pc.or_(pc.match_substring(values, '"'), pc.match_substring(values, "\\"))
    if not pc.any(needs).as_py():
        return values
    codes, distinct = _dictionary(values.filter(needs))
    fixed = [v.replace("\\", "\\\\").replace('"', '\\"') for v in distinct]
    replaced: pa.Array[Any] = pc.replace_with_mask(
        values, needs, pa.array(fixed, type=_S).take(pa.array(codes))
    )
    return replaced


def _quoted(values: pa.Array[Any]) -> pa.Array[Any]:
    return _join(_QUOTE, values, _QUOTE, _NOTHING)
