"""One record to a Graph-shaped provisioningObjectSummary with v1.0 names: timestamps in any of the
spellings seen, renamed fields, nested values given as JSON text, and Log Analytics rows.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from provkit.data.sources.files.formats import (
    _ERROR_FIELDS,
    _ERROR_KEYS,
    _LA_JSON,
    _LA_SCALARS,
    _LA_STATUS,
    _NO_CODE,
    _TOP_ALIASES,
    _V1_FIELDS,
    _Bad,
    _Ctx,
    _norm,
    _show,
)
from provkit.data.sources.files.sniff import _MISSING, _loads

# --- timestamps --------------------------------------------------------------------------------------------------

_ISO = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?",
    re.I,
)
_DMY = re.compile(
    r"(\d{1,2})([/.])(\d{1,2})[/.](\d{4}),?(?:\s+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*([AP]\.?M\.?)?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?",
    re.I,
)
_DOTNET = re.compile(r"/?Date\((-?\d+)([+-]\d{4})?\)/?")
_EPOCH = re.compile(r"-?\d+(?:\.\d+)?")
_FLOOR = datetime(1990, 1, 1, tzinfo=UTC).timestamp()
_CEIL = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
# Graph's own form, passed through unchanged (days past the 28th go the long way, to check the month's length).
_ISO_UTC = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?Z"
)


def _zone(text: str | None) -> timezone:
    if not text or text.upper() in ("Z", "UTC", "GMT"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _fraction(digits: str | None) -> int:
    return int((digits or "0")[:6].ljust(6, "0"))


def _format(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_timestamp(value: Any, ctx: _Ctx | None = None) -> str:
    """``value`` as ISO-8601 UTC (``2024-03-10T16:15:21Z``); raises ValueError when it is not a date and time.

    Accepts ISO forms (``T`` or a space, any fraction, Z or an offset; no zone means UTC, as downloads are),
    ``3/10/2024 4:15:21 PM`` (month first unless the first number is over 12), ``10.03.2024 16:15:21`` (day
    first), epoch seconds or milliseconds, and .NET's ``/Date(1710087321000)/``. Graph's own form passes as is.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError("not a date and time")
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    text = str(value).strip()
    if _ISO_UTC.fullmatch(text):
        return text
    m = _ISO.fullmatch(text)
    if m:
        year, month, day, hour, minute, second, frac, zone = m.groups()
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            _fraction(frac),
        )
        return _format(moment.replace(tzinfo=_zone(zone)))
    m = _DMY.fullmatch(text)
    if m:
        first, sep, second_, year, hour, minute, second, frac, ampm, zone = m.groups()
        a, b = int(first), int(second_)
        if sep == ".":
            day, month = a, b
        elif a > 12 >= b:
            day, month = a, b
        else:
            month, day = a, b
            if ctx is not None and a != b and b <= 12:
                ctx.notes.add(ctx.file, "dates like 3/10/2024 were read month first (US order)")
        h = int(hour or 0)
        if ampm:
            if not 1 <= h <= 12:
                raise ValueError("hour out of range for AM/PM")
            h = h % 12 + (12 if ampm.upper().startswith("P") else 0)
        moment = datetime(int(year), month, day, h, int(minute or 0), int(second or 0), _fraction(frac))
        return _format(moment.replace(tzinfo=_zone(zone)))
    m = _DOTNET.fullmatch(text)
    if m:
        return _from_epoch(int(m.group(1)) / 1000.0)
    if _EPOCH.fullmatch(text):
        return _from_epoch(float(text))
    raise ValueError("not a date and time")


def _from_epoch(number: float) -> str:
    for scale in (1.0, 1000.0, 1_000_000.0):
        seconds = number / scale
        if _FLOOR <= seconds < _CEIL:
            return _format(datetime.fromtimestamp(seconds, tz=UTC))
    raise ValueError("a number that is not a plausible epoch time")


# --- normalising one event ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _names(canonical: tuple[str, ...]) -> tuple[frozenset[str], dict[str, str]]:
    return frozenset(canonical), {name.lower(): name for name in canonical}


def _rename(
    obj: dict[str, Any], canonical: tuple[str, ...], aliases: dict[str, str] | None = None
) -> dict[str, Any]:
    """A copy of ``obj`` with keys matched case-insensitively to ``canonical`` names, then ``aliases`` (lower-case
    key -> canonical) when that name is still free. Other keys are kept as they are."""
    exact, wanted = _names(canonical)
    if exact.issuperset(obj):  # already v1.0-shaped: the common case, kept cheap
        return dict(obj)
    out: dict[str, Any] = {}
    later: list[tuple[str, Any]] = []
    for key, value in obj.items():
        name = wanted.get(key.lower()) if isinstance(key, str) else None
        if name is not None and name not in out:
            out[name] = value
        else:
            later.append((key, value))
    for key, value in later:
        name = (aliases or {}).get(key.lower()) if isinstance(key, str) else None
        if name is not None and out.get(name) is None:
            out[name] = value
        else:
            out.setdefault(key, value)
    return out


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        parsed = _loads(value)
        return value if parsed is _MISSING else parsed
    return value


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


_KEY_VALUE = re.compile(r"([A-Za-z][\w .\-/()]{0,79}?)\s*[:=]\s*(.*)", re.S)


def _details(value: Any, ctx: _Ctx, where: str) -> dict[str, Any]:
    """A detailsInfo bag as a dict: from a dict, a list of key/value pairs, JSON text or ``Key: value`` lines."""
    value = _maybe_json(value)
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            pair = _rename(item, ("key", "value"), {"name": "key"}) if isinstance(item, dict) else None
            if not pair or "key" not in pair:
                ctx.warn(f"{where} is a list that is not key/value pairs; kept as text under 'Details'")
                return {"Details": _as_text(value)}
            out[str(pair["key"])] = pair.get("value")
        return out
    text = str(value).strip()
    if not text:
        return {}
    parts = [p for p in re.split(r"\r?\n|;\s*", text) if p.strip()]
    matches = [_KEY_VALUE.fullmatch(p.strip()) for p in parts]
    if matches and all(matches):
        return {m.group(1).strip(): m.group(2).strip() for m in matches if m}
    return {"Details": text}


def _object(
    value: Any, ctx: _Ctx, where: str, keys: tuple[str, ...], aliases: dict[str, str], text_key: str
) -> Any:
    value = _maybe_json(value)
    if value is None:
        return None
    if isinstance(value, str):
        return {text_key: value} if value.strip() else None
    if isinstance(value, dict):
        out = _rename(value, keys, aliases)
        if "details" in keys and "details" in out:
            out["details"] = _details(out["details"], ctx, f"{where}.details")
        return out
    if isinstance(value, list):
        ctx.warn(f"{where} is a list where an object was expected; kept as text under 'displayName'")
        return {text_key: _as_text(value)}
    return {text_key: str(value)}


_IDENTITY = ("id", "displayName", "identityType", "details")
_SYSTEM = ("id", "displayName", "details")


def _status_info(value: Any, ctx: _Ctx) -> dict[str, Any] | None:
    value = _maybe_json(value)
    if value is None:
        return None
    if not isinstance(value, dict):
        return {"status": _as_text(value), "errorInformation": None}
    out = _rename(value, ("status", "errorInformation"), {"errorinfo": "errorInformation"})
    error = _maybe_json(out.get("errorInformation"))
    if isinstance(error, str):
        error = {"reason": error}
    elif error is not None and not isinstance(error, dict):
        error = {"reason": _as_text(error)}
    if isinstance(error, dict):
        error = _rename(error, _ERROR_FIELDS, {"errordescription": "reason", "code": "errorCode"})
    # Older shapes (beta statusDetails) carried the error fields on statusInfo itself.
    flat = {k: out.pop(k) for k in [k for k in out if k.lower() in _ERROR_KEYS]}
    if flat:
        flat = _rename(flat, _ERROR_FIELDS)
        error = {**flat, **{k: v for k, v in (error or {}).items() if v is not None}}
    out["errorInformation"] = error
    return out


def _steps(value: Any, ctx: _Ctx) -> list[dict[str, Any]]:
    value = _maybe_json(value)
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        ctx.warn("provisioningSteps is not a list; kept as one step's description")
        value = [{"description": _as_text(value)}]
    steps = []
    for n, step in enumerate(value, 1):
        step = _maybe_json(step)
        if not isinstance(step, dict):
            ctx.warn(f"step {n} is not an object; kept as its description")
            step = {"description": _as_text(step)}
        out = _rename(
            step,
            ("name", "provisioningStepType", "status", "description", "details"),
            {
                "steptype": "provisioningStepType",
                "type": "provisioningStepType",
                "stepname": "name",
                # inference: snake_case as an SDK's export writes it
                "provisioning_step_type": "provisioningStepType",
                "step_type": "provisioningStepType",
            },
        )
        out["details"] = _details(out.get("details"), ctx, f"step {n} details")
        steps.append(out)
    return steps


def _properties(value: Any, ctx: _Ctx) -> list[dict[str, Any]]:
    value = _maybe_json(value)
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        ctx.warn("modifiedProperties is not a list; kept as one property's new value")
        value = [{"newValue": _as_text(value)}]
    out = []
    for n, prop in enumerate(value, 1):
        prop = _maybe_json(prop)
        if not isinstance(prop, dict):
            ctx.warn(f"modified property {n} is not an object; kept as its new value")
            prop = {"newValue": prop}
        prop = _rename(
            prop,
            ("displayName", "oldValue", "newValue"),
            {"name": "displayName", "propertyname": "displayName"},
        )
        for key in ("displayName", "oldValue", "newValue"):
            prop[key] = _as_text(prop.get(key))
        out.append(prop)
    return out


def _duration(value: Any, ctx: _Ctx) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        ctx.warn(f"durationInMilliseconds {_show(value)} is not a number; left empty")
        return None


def _normalise_event(raw: Any, ctx: _Ctx, *, time_label: str = "'activityDateTime'") -> dict[str, Any]:
    """One provisioningObjectSummary with v1.0 names from an event in v1.0, older or PascalCase shape.

    Raises _Bad when it is not an object, has no readable ``activityDateTime`` (the one non-nullable field), or
    has neither ``id`` nor ``changeId``; a missing ``id`` is filled from ``changeId``, with a warning.
    """
    if not isinstance(raw, dict):
        kinds = {list: "a list", str: "a string", type(None): "null", bool: "true or false", int: "a number"}
        kind = kinds.get(type(raw), "a number" if isinstance(raw, float) else f"a {type(raw).__name__}")
        raise _Bad(f"not a JSON object (found {kind})")
    event = _rename(raw, _V1_FIELDS, _TOP_ALIASES)
    if "activityDateTime" not in event:
        raise _Bad(f"{time_label} missing")
    stamp = event["activityDateTime"]
    if stamp is None or (isinstance(stamp, str) and not stamp.strip()):
        raise _Bad(f"{time_label} is empty")
    try:
        event["activityDateTime"] = parse_timestamp(stamp, ctx)
    except (ValueError, OverflowError):
        raise _Bad(f"{time_label} {_show(stamp)} is not a date and time") from None
    for key in ("id", "changeId", "cycleId", "jobId", "tenantId", "provisioningAction"):
        if key in event:
            text = _as_text(event[key])
            event[key] = text.strip() if isinstance(text, str) else text
    if not event.get("id"):
        # The tables need a key; a download without activity ids still has the change id, unique per entry.
        if not event.get("changeId"):
            raise _Bad("no 'id' and no 'changeId': the entry cannot be identified")
        event["id"] = event["changeId"]
        ctx.warn("entries without an activity id: their change id stands in as 'id'")
    if "durationInMilliseconds" in event:
        event["durationInMilliseconds"] = _duration(event["durationInMilliseconds"], ctx)
    event["provisioningStatusInfo"] = _status_info(event.get("provisioningStatusInfo"), ctx)
    event["provisioningSteps"] = _steps(event.get("provisioningSteps"), ctx)
    event["modifiedProperties"] = _properties(event.get("modifiedProperties"), ctx)
    for key in ("sourceIdentity", "targetIdentity"):
        if key in event:
            event[key] = _object(
                event[key],
                ctx,
                key,
                _IDENTITY,
                {"type": "identityType", "name": "displayName"},
                "displayName",
            )
    for key in ("sourceSystem", "targetSystem"):
        if key in event:
            event[key] = _object(event[key], ctx, key, _SYSTEM, {"name": "displayName"}, "displayName")
    if "servicePrincipal" in event:
        event["servicePrincipal"] = _object(
            event["servicePrincipal"],
            ctx,
            "servicePrincipal",
            ("id", "displayName"),
            {"name": "displayName"},
            "displayName",
        )
    if "initiatedBy" in event:
        event["initiatedBy"] = _object(
            event["initiatedBy"],
            ctx,
            "initiatedBy",
            ("id", "displayName", "initiatorType"),
            {"initiatingtype": "initiatorType", "type": "initiatorType"},
            "displayName",
        )
    return event


def _json_column(header: str, value: Any, *, plain_ok: bool = False) -> Any:
    """A Log Analytics dynamic column: parsed JSON text, or the object itself; raises _Bad for broken JSON."""
    if value is None or isinstance(value, dict | list):
        return value
    text = str(value).strip()
    if not text:
        return None
    if plain_ok and text[:1] not in ("{", "["):
        return {"displayName": text}
    try:
        return json.loads(text)
    except ValueError as exc:
        message = f"{exc.msg} at char {exc.pos}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise _Bad(f"{header} is not valid JSON: {message}") from None


def _from_log_analytics(row: dict[str, Any], ctx: _Ctx) -> dict[str, Any]:
    """A v1.0 record from one AADProvisioningLogs row (CSV cells or JSON values); raises _Bad when unreadable."""
    record: dict[str, Any] = {}
    status: dict[str, Any] = {}
    time_label = "'TimeGenerated'"
    for header, value in row.items():
        key = _norm(str(header))
        if key in _LA_SCALARS and _LA_SCALARS[key] not in record:
            record[_LA_SCALARS[key]] = value
            if key == "timegenerated":
                time_label = f"'{header}'"
        elif key in _LA_JSON and _LA_JSON[key] not in record:
            record[_LA_JSON[key]] = _json_column(
                str(header), value, plain_ok=key in ("sourcesystem", "targetsystem")
            )
        elif key in _LA_STATUS:
            status[_LA_STATUS[key]] = value
        else:
            record[str(header)] = value
    for key, value in list(record.items()):
        if isinstance(value, str) and value == "" and key not in ("activityDateTime",):
            record[key] = None
    event = _normalise_event(record, ctx, time_label=time_label)
    info = event.get("provisioningStatusInfo") or {"status": None, "errorInformation": None}
    if info.get("status") in (None, "") and status.get("status") not in (None, ""):
        info["status"] = str(status["status"])
    code, reason = status.get("errorCode"), status.get("reason")
    code = None if code is None or str(code).strip().lower() in _NO_CODE else str(code)
    reason = None if reason is None or str(reason).strip() == "" else str(reason)
    if code or reason:
        error = info.get("errorInformation") or {}
        if code and not error.get("errorCode"):
            error["errorCode"] = code
        if reason and not error.get("reason"):
            error["reason"] = reason
        info["errorInformation"] = error
    event["provisioningStatusInfo"] = info
    return event
