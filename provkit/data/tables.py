"""Graph JSON to the four tidy tables: events, steps, properties and jobs.

Every source (live Graph, the simulated tenant, admin-centre downloads, Log Analytics exports) hands over
Graph-shaped ``provisioningObjectSummary`` dicts and ``synchronizationJob`` dicts; this module turns them
into typed DataFrames. The column names and dtypes below are a contract: downstream code (store, cycles,
checks, charts) relies on them and never looks at the raw JSON. The dtypes are in :data:`EVENT_COLUMNS`,
:data:`STEP_COLUMNS`, :data:`PROPERTY_COLUMNS` and :data:`JOB_COLUMNS` (name -> pandas dtype).

Conventions that hold for every table:

- ``str`` columns use pandas' default string dtype; a missing value is NA (``pd.isna`` is true).
- Times are ``datetime64[ns, UTC]``. Graph's seven fractional digits are kept (100 ns ticks). ``Z``,
  ``+hh:mm`` offsets, no fraction and date-only values are accepted; values without an offset are UTC.
  ``0001-01-01T00:00:00Z`` means "never" and becomes NaT, as does any time outside the range of
  nanosecond timestamps (1677-09-21 to 2262-04-11).
- Enum columns are ``category``. Their categories are the known values in a fixed order followed by any
  unknown values seen (sorted), so unknown values from a newer Graph are kept, never dropped. Values are
  matched case-insensitively; event and step enums are stored lower-cased, job enums in Graph's canonical
  casing (an unknown job value is kept as sent).
- Booleans are the nullable ``boolean`` dtype: NA when the field is absent. Strings such as ``"True"`` or
  ``"false"`` in any case are read as booleans.

events: one row per provisioning log entry

    id                        activity id (Graph ``id``); unique per entry
    activity_time             ``activityDateTime``
    tenant_id                 Entra tenant id
    job_id                    provisioning job id (same string as the job's ``id``)
    cycle_id                  id of the cycle (one job iteration)
    change_id                 id of the change within the cycle; the support reference, joins to steps
    action                    create, update, delete, disable, stageddelete, other (from
                              ``provisioningAction`` or the download's PascalCase ``action``)
    status                    success, failure, skipped, warning (``provisioningStatusInfo.status``)
    duration_ms               ``durationInMilliseconds`` (Int64)
    initiator_type            ``initiatedBy.initiatorType`` (user, application, system)
    initiator_name            ``initiatedBy.displayName``
    service_principal_id      object id of the app's service principal
    service_principal_name    its display name (``displayName`` or the older ``name``)
    source_system             ``sourceSystem.displayName``, e.g. "Azure Active Directory"
    target_system             ``targetSystem.displayName``
    source_id                 ``sourceIdentity.id``
    source_name               ``sourceIdentity.displayName``
    source_type               ``sourceIdentity.identityType`` (User, Group, a SCIM URN, ...)
    target_id                 ``targetIdentity.id`` (empty until the object exists in the target)
    target_name               ``targetIdentity.displayName``
    target_type               ``targetIdentity.identityType``
    error_code                ``errorInformation.errorCode`` (or the older ``errorInfo``)
    error_category            ``errorCategory`` as sent (failure, nonServiceFailure, ...)
    error_reason              ``reason``: what happened
    error_additional_details  ``additionalDetails``
    error_recommended_action  ``recommendedAction``
    skip_reason               first ``SkipReason`` found in the steps' details (NotEffectivelyEntitled,
                              RedundantExport, ScopingFilterEvaluatedFalse, any other value kept)
    reportable_identifier     first ``ReportableIdentifier`` in the steps (what the portal shows)
    scoping_result            "Scoping filter evaluation passed" (logs) or ``IsInProvisioningScope`` /
                              ``IsInProvisioningScopeDisplayName`` (on demand) from the steps (boolean)
    assigned                  "Assigned to the application" (logs) or "Assigned" (on demand) (boolean)
    is_active                 "Active in the source system" (logs) or ``IsActive`` (on demand) (boolean)
    effectively_entitled      ``IsEffectivelyEntitledForProvisioning`` from the steps (boolean)
    has_required_role         "User has the required role" from the steps (boolean)
                              (every scoping key is matched ignoring case, spaces and punctuation; the
                              spellings accepted are in :mod:`provkit.data.stepdetails`)
    failed_scope_filter       the name of the scoping filter that failed (from ``ScopeEvaluationResult``)
    failed_scope_clause       the first scoping clause that failed, e.g. ``department EQUALS 'Sales'``;
                              NA when no scoping filter was evaluated or a filter passed
    failed_scope_value        the source value that failed it ("(empty)" when the value was null); NA
                              when the log does not carry it (the documented key/boolean form does not)
    step_count                number of steps (Int16)
    extra                     JSON object of top-level fields this module does not map (new Graph fields,
                              or ``provisioningSteps`` / ``modifiedProperties`` that are not lists, kept as
                              sent); "" when there are none

steps: one row per provisioningStep, in the order Graph sent them

    event_id, change_id       the entry's ``id`` and ``changeId``
    step_order                0-based position in ``provisioningSteps`` (Int16)
    name                      e.g. EntryImport, EntrySynchronizationScoping, EntryExportUpdate
    step_type                 import, scoping, matching, processing, referenceresolution, export
    status                    success, failure, skipped, warning
    description               the human-readable sentence the portal shows
    details                   JSON object of the step's ``details`` ("{}" when empty). A step that is not
                              an object is kept as a row of NAs with ``{"value": <what was sent>}`` here
    skip_reason, reportable_identifier, scoping_result, assigned, is_active, effectively_entitled,
    has_required_role, failed_scope_filter, failed_scope_clause, failed_scope_value
                              as for events, from this step's details only (NA where it lacks them)

properties: one row per modifiedProperty

    event_id, change_id       the entry's ``id`` and ``changeId``
    name                      attribute name (``displayName``)
    old_value, new_value      as sent (strings; null is NA; non-strings become JSON text, booleans
                              "True"/"False" as Graph writes them). A property that is not an object
                              is kept with what was sent as ``new_value``

jobs: one row per synchronization job per status snapshot

    snapshot_time             when the status was read (given by the caller)
    service_principal_id      the service principal the job belongs to (given by the caller)
    service_principal_name    its display name (given by the caller; NA if not given)
    job_id                    job ``id``, e.g. ``scim.4a1b...``
    template_id               ``templateId``
    status_code               NotConfigured, NotRun, Active, Paused, Quarantine
    schedule_state            Active, Disabled, Paused
    schedule_interval         ``schedule.interval`` (timedelta64[ns]). ISO-8601 durations; years and
                              months count as 365 and 30 days. Intervals too long for timedelta64[ns]
                              (about 292 years) become NaT: Graph sends .NET TimeSpan.MaxValue
                              (``P10675199DT2H48M5.4775807S``) for new or disabled jobs, which have no schedule.
    schedule_expiration       ``schedule.expiration``
    count_successive_complete_failures   (Int64)
    escrows_pruned            (boolean)
    steady_state_first, steady_state_last   steady-state achieved times; NaT until it was reached
    last_execution_id         ``lastExecution.activityIdentifier`` (the portal's Activity ID)
    last_execution_state      Succeeded, Failed, EntryLevelErrors
    last_execution_began, last_execution_ended
    last_execution_error_code, last_execution_error_message
    last_execution_count_escrowed, _count_escrowed_raw, _count_exported, _count_exports, _count_imported,
    _count_imported_deltas, _count_imported_reference_deltas, _count_entitled,
    _count_entitled_for_provisioning   the run's counters (Int64; NA when there was no run)
    last_successful_id, _state, _began, _ended                 from ``lastSuccessfulExecution``
    last_successful_with_exports_id, _state, _began, _ended    from ``lastSuccessfulExecutionWithExports``
    quarantine_reason         EncounteredBaseEscrowThreshold, ..., TooManyDeletes, IngestionInterrupted
    quarantine_current_began, quarantine_next_attempt, quarantine_series_began
    quarantine_series_count   (Int64)
    quarantine_error_code, quarantine_error_message
    quarantine_tenant_actionable   (boolean)
    progress_completed, progress_total, progress_time, progress_units
                              the latest ``progress`` observation (by observation time)
    synchronized_entries      sum of ``synchronizedEntryCountByType`` (Int64; 0 when empty)
    settings                  JSON array of ``synchronizationJobSettings``
    troubleshooting_url       ``troubleshootingUrl``
    extra                     JSON object of job and status fields not mapped above ("status.<name>" for
                              the latter); "" when there are none

Malformed entries (not an object, no id, a missing or unparsable time) never abort a batch: the good rows
are kept and the bad ones are listed in :attr:`Tables.rejects`. :func:`jobs_from_records` lists rejected
jobs in ``DataFrame.attrs["rejects"]``.
"""

from __future__ import annotations

import gc
import itertools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from provkit.data.stepdetails import (
    DETAIL_KEYS,
    detail_column,
    is_scope_evaluation_key,
    parse_bool,
    scope_failure,
)

__all__ = [
    "ACTIONS",
    "EVENT_COLUMNS",
    "EXECUTION_STATES",
    "JOB_COLUMNS",
    "JOB_STATUS_CODES",
    "PROPERTY_COLUMNS",
    "QUARANTINE_REASONS",
    "SCHEDULE_STATES",
    "STATUSES",
    "STEP_COLUMNS",
    "STEP_TYPES",
    "Tables",
    "concat_tables",
    "empty_tables",
    "events_from_records",
    "jobs_from_records",
    "parse_graph_duration",
    "parse_graph_time",
    "parse_graph_times",
]

# pandas 3 made "str" the default string dtype (missing = NaN); under pandas 2 "str" would turn None into
# the text "None", so fall back to the nullable "string" dtype there.
STR = "str" if int(pd.__version__.split(".")[0]) >= 3 else "string"
TIME = "datetime64[ns, UTC]"
DURATION = "timedelta64[ns]"
CATEGORY = "category"
BOOL = "boolean"

# Known enum values, in display order. Event and step values are lower-case; job values canonical casing.
ACTIONS = ("create", "update", "delete", "disable", "stageddelete", "other")
STATUSES = ("success", "failure", "skipped", "warning")
STEP_TYPES = ("import", "scoping", "matching", "processing", "referenceresolution", "export")
JOB_STATUS_CODES = ("NotConfigured", "NotRun", "Active", "Paused", "Quarantine")
SCHEDULE_STATES = ("Active", "Disabled", "Paused")
EXECUTION_STATES = ("Succeeded", "Failed", "EntryLevelErrors")
QUARANTINE_REASONS = (
    "EncounteredBaseEscrowThreshold",
    "EncounteredTotalEscrowThreshold",
    "EncounteredEscrowProportionThreshold",
    "EncounteredQuarantineException",
    "Unknown",
    "QuarantinedOnDemand",
    "TooManyDeletes",
    "IngestionInterrupted",
)

_SCOPING_COLUMNS = {
    "skip_reason": STR,
    "reportable_identifier": STR,
    "scoping_result": BOOL,
    "assigned": BOOL,
    "is_active": BOOL,
    "effectively_entitled": BOOL,
    "has_required_role": BOOL,
    "failed_scope_filter": STR,
    "failed_scope_clause": STR,
    "failed_scope_value": STR,
}

EVENT_COLUMNS: dict[str, str] = {
    "id": STR,
    "activity_time": TIME,
    "tenant_id": STR,
    "job_id": STR,
    "cycle_id": STR,
    "change_id": STR,
    "action": CATEGORY,
    "status": CATEGORY,
    "duration_ms": "Int64",
    "initiator_type": STR,
    "initiator_name": STR,
    "service_principal_id": STR,
    "service_principal_name": STR,
    "source_system": STR,
    "target_system": STR,
    "source_id": STR,
    "source_name": STR,
    "source_type": STR,
    "target_id": STR,
    "target_name": STR,
    "target_type": STR,
    "error_code": STR,
    "error_category": STR,
    "error_reason": STR,
    "error_additional_details": STR,
    "error_recommended_action": STR,
    **_SCOPING_COLUMNS,
    "step_count": "Int16",
    "extra": STR,
}

STEP_COLUMNS: dict[str, str] = {
    "event_id": STR,
    "change_id": STR,
    "step_order": "Int16",
    "name": STR,
    "step_type": CATEGORY,
    "status": CATEGORY,
    "description": STR,
    "details": STR,
    **_SCOPING_COLUMNS,
}

PROPERTY_COLUMNS: dict[str, str] = {
    "event_id": STR,
    "change_id": STR,
    "name": STR,
    "old_value": STR,
    "new_value": STR,
}


def _execution_columns(prefix: str, *, full: bool) -> dict[str, str]:
    columns = {
        f"{prefix}_id": STR,
        f"{prefix}_state": CATEGORY,
        f"{prefix}_began": TIME,
        f"{prefix}_ended": TIME,
    }
    if full:
        columns |= {f"{prefix}_error_code": STR, f"{prefix}_error_message": STR}
        columns |= {f"{prefix}_{name}": "Int64" for name in _COUNTERS.values()}
    return columns


# Graph counter field -> column suffix, for lastExecution.
_COUNTERS = {
    "countEscrowed": "count_escrowed",
    "countEscrowedRaw": "count_escrowed_raw",
    "countExported": "count_exported",
    "countExports": "count_exports",
    "countImported": "count_imported",
    "countImportedDeltas": "count_imported_deltas",
    "countImportedReferenceDeltas": "count_imported_reference_deltas",
    "countEntitled": "count_entitled",
    "countEntitledForProvisioning": "count_entitled_for_provisioning",
}

JOB_COLUMNS: dict[str, str] = {
    "snapshot_time": TIME,
    "service_principal_id": STR,
    "service_principal_name": STR,
    "job_id": STR,
    "template_id": STR,
    "status_code": CATEGORY,
    "schedule_state": CATEGORY,
    "schedule_interval": DURATION,
    "schedule_expiration": TIME,
    "count_successive_complete_failures": "Int64",
    "escrows_pruned": BOOL,
    "steady_state_first": TIME,
    "steady_state_last": TIME,
    **_execution_columns("last_execution", full=True),
    **_execution_columns("last_successful", full=False),
    **_execution_columns("last_successful_with_exports", full=False),
    "quarantine_reason": CATEGORY,
    "quarantine_current_began": TIME,
    "quarantine_next_attempt": TIME,
    "quarantine_series_began": TIME,
    "quarantine_series_count": "Int64",
    "quarantine_error_code": STR,
    "quarantine_error_message": STR,
    "quarantine_tenant_actionable": BOOL,
    "progress_completed": "Int64",
    "progress_total": "Int64",
    "progress_time": TIME,
    "progress_units": STR,
    "synchronized_entries": "Int64",
    "settings": STR,
    "troubleshooting_url": STR,
    "extra": STR,
}


def _lower(value: object) -> str | None:
    text = str(value).strip().lower()
    return text or None


def _canonical(known: Sequence[str]) -> Callable[[object], str | None]:
    by_lower = {k.lower(): k for k in known}

    def canon(value: object) -> str | None:
        text = str(value).strip()
        return by_lower.get(text.lower(), text) or None

    return canon


# Category column -> (known values in order, canonicaliser), per table.
def _lower_or_number(members: Sequence[str]) -> Callable[[object], str | None]:
    """Lower-cased text, or the member a CSDL enum number stands for. inference: a public export (an SDK's
    serialisation) shows steps with numeric ``provisioning_step_type`` and ``status``; the numbers are the
    v1.0 CSDL's (reference 1.4)."""

    def canon(value: object) -> str | None:
        text = _lower(value)
        if text is not None and text.isdigit() and int(text) < len(members):
            return members[int(text)]
        return text

    return canon


# CSDL member order: provisioningAction other=0, create=1, delete=2, disable=3, update=4, stagedDelete=5;
# provisioningResult success=0 ... warning=3; provisioningStepType import=0 ... export=5.
_ACTION_NUMBERS = ("other", "create", "delete", "disable", "update", "stageddelete")
_EVENT_ENUMS = {
    "action": (ACTIONS, _lower_or_number(_ACTION_NUMBERS)),
    "status": (STATUSES, _lower_or_number(STATUSES)),
}
_STEP_ENUMS = {
    "step_type": (STEP_TYPES, _lower_or_number(STEP_TYPES)),
    "status": (STATUSES, _lower_or_number(STATUSES)),
}
_JOB_ENUMS = {
    "status_code": (JOB_STATUS_CODES, _canonical(JOB_STATUS_CODES)),
    "schedule_state": (SCHEDULE_STATES, _canonical(SCHEDULE_STATES)),
    "last_execution_state": (EXECUTION_STATES, _canonical(EXECUTION_STATES)),
    "last_successful_state": (EXECUTION_STATES, _canonical(EXECUTION_STATES)),
    "last_successful_with_exports_state": (EXECUTION_STATES, _canonical(EXECUTION_STATES)),
    "quarantine_reason": (QUARANTINE_REASONS, _canonical(QUARANTINE_REASONS)),
}
_Enums = dict[str, tuple[Sequence[str], Callable[[object], str | None]]]


@dataclass
class Tables:
    """The three log tables from one batch of provisioning log entries.

    ``rejects`` lists the entries that could not be used, as (position in the input, reason); every other
    entry has exactly one row in ``events``.
    """

    events: pd.DataFrame
    steps: pd.DataFrame
    properties: pd.DataFrame
    rejects: list[tuple[int, str]] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"Tables(events={len(self.events)} rows, steps={len(self.steps)} rows, "
            f"properties={len(self.properties)} rows, rejects={len(self.rejects)})"
        )


# ---------------------------------------------------------------------------------------------------------
# Times and durations

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


def _times_from_text(text: pa.Array | pa.ChunkedArray) -> np.ndarray:
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
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
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


# ---------------------------------------------------------------------------------------------------------
# Column conversion. Raw values become Arrow arrays as soon as they are collected (while still in the CPU
# cache); typing (times, enums, booleans) then runs vectorised over whole columns.

_EMPTY: dict[str, Any] = {}
_Column = Any  # raw values (list), Arrow array, numpy array or pandas extension array


def _object_array(values: Iterable[object]) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values
    items = values if isinstance(values, list) else list(values)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _text(value: object) -> str | None:
    """Text for a value that should be a string but is not: booleans as Graph writes them, others as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value != value:
        return None  # NaN: a missing value from a pandas-based source
    if isinstance(value, datetime):
        return value.isoformat()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _strings(values: Iterable[object]) -> pa.Array:
    """An Arrow string array (None and NaN are null); values that are not strings become text. A lone surrogate
    (JSON may spell one, "\\ud800"; UTF-8 cannot hold it) becomes U+FFFD, so one odd character costs no record."""
    try:
        return pa.array(values, type=pa.large_string())
    except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError):
        texts = [_text(v) for v in values]
    try:
        return pa.array(texts, type=pa.large_string())
    except UnicodeEncodeError:
        return pa.array(
            [None if t is None else _LONE_SURROGATE.sub("\ufffd", t) for t in texts], type=pa.large_string()
        )


def _integers(values: Iterable[object]) -> pa.Array:
    """An Arrow int64 array; numeric text and integral floats are accepted, anything else is null."""
    try:
        return pa.array(values, type=pa.int64())
    except (pa.ArrowTypeError, pa.ArrowInvalid, OverflowError):
        # Python ints beyond float's range would stop pandas' conversion; beyond int64 they are null anyway.
        values = [None if type(v) is int and abs(v) >= 2**62 else v for v in values]
        numbers = pd.to_numeric(pd.Series(_object_array(values), dtype=object), errors="coerce").astype(float)
        numbers = numbers.where(np.isfinite(numbers) & (numbers.abs() < 2.0**62)).round()
        return pa.array(numbers, from_pandas=True).cast(pa.int64())


def _dictionary(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[Any]]:
    """(codes with -1 for null, distinct values) of an Arrow array."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    return encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), encoded.dictionary.to_pylist()


def _categorical(
    codes: np.ndarray, uniques: list[Any], known: Sequence[str], canon: Callable[[object], str | None]
) -> pd.Categorical:
    canonical = [canon(u) for u in uniques]
    known_set = set(known)
    categories = list(known) + sorted({c for c in canonical if c is not None and c not in known_set})
    position = {c: i for i, c in enumerate(categories)}
    # The extra trailing -1 maps code -1 (missing) to -1.
    mapping = np.array([-1 if c is None else position[c] for c in canonical] + [-1], dtype=np.int32)
    return pd.Categorical.from_codes(mapping[codes], categories=pd.Index(categories, dtype=STR))


def _booleans(codes: np.ndarray, uniques: list[Any]) -> pd.arrays.BooleanArray:
    parsed = [parse_bool(u) for u in uniques]
    truth = np.array([p is True for p in parsed] + [False], dtype=bool)
    missing = np.array([p is None for p in parsed] + [True], dtype=bool)
    return pd.arrays.BooleanArray(truth[codes], missing[codes])


def _durations(values: Iterable[object]) -> np.ndarray:
    nat = np.iinfo(np.int64).min
    ns = [_duration_ns(v) for v in values]
    return np.array([nat if v is None else v for v in ns], dtype=np.int64).view("m8[ns]")


def _spread(part: pa.Array, rows: np.ndarray, n: int, picks: np.ndarray | None = None) -> pa.Array:
    """A length-``n`` string array holding ``part[picks]`` (or all of ``part``) at ``rows``, null elsewhere.

    ``rows`` (and ``picks``) must be strictly increasing. The result reuses ``part``'s character buffer
    and builds only new offsets and a validity bitmap, which is much cheaper than a take().
    """
    if picks is not None:
        part = part.take(pa.array(picks, type=pa.int64()))
    if isinstance(part, pa.ChunkedArray):
        part = part.combine_chunks()
    if len(rows) == 0:
        return pa.nulls(n, pa.large_string())
    part = part.cast(pa.large_string())
    _, offsets_buffer, data_buffer = part.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64, count=len(part) + 1, offset=part.offset * 8)
    lengths = np.zeros(n, dtype=np.int64)
    lengths[rows] = np.diff(offsets)
    new_offsets = np.empty(n + 1, dtype=np.int64)
    new_offsets[0] = offsets[0]
    np.cumsum(lengths, out=new_offsets[1:])
    new_offsets[1:] += offsets[0]
    valid = np.zeros(n, dtype=bool)
    valid[rows] = part.is_valid().to_numpy(zero_copy_only=False)
    validity = pa.array(valid).buffers()[1]
    return pa.Array.from_buffers(pa.large_string(), n, [validity, pa.py_buffer(new_offsets), data_buffer])


def _first_per_group(groups: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group, position) of the first valid position in each group; ``groups`` must be non-decreasing."""
    positions = np.flatnonzero(valid)
    found = groups[positions]
    first = np.ones(len(found), dtype=bool)
    first[1:] = found[1:] != found[:-1]
    return found[first], positions[first]


def _column(
    values: _Column, dtype: str, enum: tuple[Sequence[str], Callable[[object], str | None]] | None
) -> Any:
    """The typed array for one column from raw values (a list) or from Arrow / numpy chunks combined."""
    if isinstance(values, list):
        if dtype == TIME:
            return parse_graph_times(values).array
        if dtype == DURATION:
            return _durations(values)
        values = _strings(values) if dtype in (STR, CATEGORY, BOOL) else _integers(values)
    if isinstance(values, np.ndarray):
        return pd.array(values, dtype=dtype)
    if dtype == STR:
        return pd.array(values, dtype=STR)
    if dtype == TIME:
        return _utc_series(_times_from_text(values)).array
    if dtype == CATEGORY:
        assert enum is not None, "category column without known values"
        return _categorical(*_dictionary(values), *enum)
    if dtype == BOOL:
        return _booleans(*_dictionary(values))
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    missing = values.is_null().to_numpy(zero_copy_only=False)
    numbers = values.fill_null(0).to_numpy(zero_copy_only=False)
    return pd.arrays.IntegerArray(numbers.astype(pd.api.types.pandas_dtype(dtype).numpy_dtype), missing)


def _frame(data: dict[str, _Column], spec: dict[str, str], enums: _Enums, prefix: str = "") -> pd.DataFrame:
    """One typed DataFrame, in ``spec`` order, from raw value lists or ready arrays of equal length
    found in ``data`` under ``prefix + column name``."""
    columns = {name: _column(data[prefix + name], dtype, enums.get(name)) for name, dtype in spec.items()}
    return pd.DataFrame(columns, copy=False)


def _combine(chunks: list[Any]) -> _Column:
    """One column from its per-chunk Arrow or numpy arrays."""
    if not chunks:
        return []
    if isinstance(chunks[0], np.ndarray):
        return np.concatenate(chunks)
    return pa.chunked_array(chunks, type=chunks[0].type)


# ---------------------------------------------------------------------------------------------------------
# Nested values that are not the expected shape (kept off the common path)


def _as_dict(value: object) -> dict[str, Any]:
    """A nested object that is not a dict: JSON text is parsed (Log Analytics style), anything else is empty."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return _EMPTY
        return parsed if isinstance(parsed, dict) else _EMPTY
    return _EMPTY


def _as_list(value: object) -> list[Any] | None:
    """A nested list that is not a list: JSON text is parsed; None means absent; anything else is None."""
    if value is None:
        return []
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, list) else None
    return None


def _details_dict(value: object) -> dict[str, Any]:
    """Step details that are not a dict: JSON text is parsed, anything else is kept under "value"."""
    parsed = _as_dict(value)
    return {"value": value} if parsed is _EMPTY else parsed


def _ci_get(mapping: dict[str, Any], key: str) -> Any:
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == lowered:
            return v
    return None


_NO_FAILURE: tuple[str | None, str | None, str | None] = (None, None, None)


def _scope_failure(evaluation: object) -> tuple[str | None, str | None, str | None]:
    """(filter name, failed clause, its source value) from a ScopeEvaluationResult, or three Nones.

    Either shape is read (see :mod:`provkit.data.stepdetails`); the source value is only in the structured one.
    """
    failure = scope_failure(evaluation)
    if failure is None:
        return _NO_FAILURE
    return failure.filter, failure.clause, failure.value


_encode = json.JSONEncoder(check_circular=False, ensure_ascii=False, default=str).encode
_encode_string = json.encoder.encode_basestring  # the C version; same output as _encode for a str


def _details_encoder() -> Callable[[dict[str, Any]], str]:
    """A function giving the JSON text of a details dict, exactly as ``json.dumps`` writes it.

    Details are small flat dicts of strings. One-key dicts are written directly; the multi-key ones
    (scoping results) repeat a lot, so their text is cached by content. Anything unusual goes through the
    full encoder.
    """
    cache: dict[tuple[Any, ...], str] = {}
    quote = _encode_string
    encode = _encode

    def encode_details(details: dict[str, Any]) -> str:
        try:
            if len(details) == 1:
                ((key, value),) = details.items()
                return "{" + quote(key) + ": " + quote(value) + "}"
            items = tuple(details.items())
            text = cache.get(items)
            if text is None:
                text = "{" + ", ".join([quote(k) + ": " + quote(v) for k, v in items]) + "}"
                if len(cache) < 10_000:
                    cache[items] = text
            return text
        except TypeError:  # a key or value that is not a string, or an unhashable value
            return encode(details)

    return encode_details


# ---------------------------------------------------------------------------------------------------------
# Provisioning log entries

_KNOWN_EVENT_FIELDS = frozenset(
    {
        "id",
        "activityDateTime",
        "tenantId",
        "jobId",
        "cycleId",
        "changeId",
        "provisioningAction",
        "action",
        "provisioningStatusInfo",
        "statusInfo",
        "durationInMilliseconds",
        "initiatedBy",
        "servicePrincipal",
        "sourceSystem",
        "targetSystem",
        "sourceIdentity",
        "targetIdentity",
        "provisioningSteps",
        "modifiedProperties",
    }
)
# Event columns filled directly by the row loop; the others come from the steps.
_EVENT_LOOP_COLUMNS = tuple(
    name for name in EVENT_COLUMNS if name not in _SCOPING_COLUMNS and name != "step_count"
)
_EVENT_INT_COLUMNS = frozenset({"duration_ms"})
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
    sparse_chunks: dict[str, tuple[list[np.ndarray], list[pa.Array]]] = {}
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
    sparse_chunks: dict[str, tuple[list[np.ndarray], list[pa.Array]]],
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

    def sparse(name: str) -> tuple[np.ndarray, pa.Array]:
        row_chunks, value_chunks = sparse_chunks.get(name, ([], []))
        rows = np.concatenate(row_chunks) if row_chunks else np.zeros(0, dtype=np.int64)
        return rows, pa.chunked_array(value_chunks, type=pa.large_string()).combine_chunks()

    row_chunks, value_chunks = sparse_chunks.get("details", ([], []))
    if sum(len(rows) for rows in row_chunks) == n_steps:  # every step has its text (the Arrow path)
        details: Any = pa.chunked_array(value_chunks, type=pa.large_string())
    else:
        details = _spread(*reversed(sparse("details")), n_steps)
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


# Step details keys lifted into columns (every accepted spelling is in provkit.data.stepdetails);
# ScopeEvaluationResult gives failed_scope_filter, failed_scope_clause and failed_scope_value.
_DETAIL_KEYS = tuple(DETAIL_KEYS)
_SCOPE_FAILURE_COLUMNS = ("failed_scope_filter", "failed_scope_clause", "failed_scope_value")
_DETAIL_COLUMNS = (*_DETAIL_KEYS, *_SCOPE_FAILURE_COLUMNS)


def _normalise_chunk(
    chunk: list[tuple[int, object]],
    positions: list[int],
    rejects: list[tuple[int, str]],
    first_step: int,
    encode_details: Callable[[dict[str, Any]], str],
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, pa.Array]], int]:
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
    details_row, details_text = (values.append for values in sparse["details"])
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


# ---------------------------------------------------------------------------------------------------------
# The Arrow path: one C++ conversion per chunk of regular entries, then vectorised flattening. It must give
# exactly what _normalise_chunk gives; any chunk it cannot vouch for (odd shapes, odd types, rejects, unknown
# fields) goes through _normalise_chunk instead.

_USE_ARROW = True
# Entries converted at a time on the Arrow path: large enough to amortise the per-kernel calls.
_ARROW_CHUNK = 8192
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
_CLOSE = pa.scalar("}", _S)


class _Irregular(Exception):
    """A chunk the Arrow path does not vouch for."""


def _fields(array: pa.StructArray) -> dict[str, pa.Array]:
    """The children of a struct array by name, null where the struct itself is null."""
    return dict(zip((f.name for f in array.type), array.flatten(), strict=True))


def _pick(condition: pa.Array, when_true: pa.Array, otherwise: pa.Array) -> pa.Array:
    """``when_true`` where ``condition`` holds, else ``otherwise`` (skipped when ``otherwise`` is all null)."""
    if otherwise.null_count == len(otherwise):
        return when_true
    return pc.if_else(condition, when_true, otherwise)


def _coalesce(first: pa.Array, second: pa.Array) -> pa.Array:
    if second.null_count == len(second) or first.null_count == 0:
        return first
    return pc.coalesce(first, second)


def _not_all_objects(
    records: list[dict[str, Any]], key: str, lists: pa.ListArray, fields: dict[str, pa.Array]
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
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, pa.Array]], int]:
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
    if ids.null_count or not pc.all(pc.not_equal(ids, "")).as_py():
        raise _Irregular  # rejects: the Python path lists them
    n = len(ids)

    status_info = entries["provisioningStatusInfo"]
    info = _fields(_pick(status_info.is_valid(), status_info, entries["statusInfo"]))
    error = info["errorInformation"]
    error = _fields(_pick(error.is_valid(), error, info["errorInfo"]))
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

    step_lists = entries["provisioningSteps"]
    steps = pc.list_flatten(step_lists)
    prop_lists = entries["modifiedProperties"]
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
    sparse = _arrow_details(step["details"], first_step)
    positions.extend(index for index, _ in chunk)
    return columns, sparse, len(steps)


def _arrow_details(details: pa.MapArray, first_step: int) -> dict[str, tuple[np.ndarray, pa.Array]]:
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
        pairs = pc.binary_join_element_wise(
            _QUOTE, key_text, _COLON, pc.fill_null(_quoted(_escaped(values)), "null"), _NOTHING
        )
    else:
        pairs = pc.binary_join_element_wise(
            _QUOTE, key_text, _QUOTE_COLON_QUOTE, _escaped(values), _QUOTE, _NOTHING
        )
    lengths = np.diff(offsets)
    # Empty and missing details join to "" and so read "{}", as the Python path writes them.
    lists = pa.ListArray.from_arrays(pa.array(offsets, type=pa.int64()).cast(pa.int32()), pairs)
    text = pc.binary_join_element_wise(_OPEN, pc.binary_join(lists, _COMMA), _CLOSE, _NOTHING)
    step_rows = np.arange(first_step, first_step + n_steps, dtype=np.int64)
    sparse: dict[str, tuple[np.ndarray, pa.Array]] = {"details": (step_rows, text)}

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
    picks = pa.array(np.where(codes < 0, len(found_failures) - 1, codes))
    clauses = pa.array([f[1] for f in found_failures], type=_S).take(picks)
    failed = clauses.is_valid()
    rows = rows[failed.to_numpy(zero_copy_only=False)]
    for position, name in enumerate(_SCOPE_FAILURE_COLUMNS):
        column = pa.array([f[position] for f in found_failures], type=_S).take(picks).filter(failed)
        sparse[name] = (rows, column)
    return sparse


def _has_control(values: pa.Array) -> bool:
    """Whether any string in ``values`` (a slice of a large_string array) holds a byte below 0x20."""
    data = values.buffers()[2]
    if data is None or not len(values):
        return False
    offsets = np.frombuffer(
        values.buffers()[1], dtype=np.int64, count=len(values) + 1, offset=values.offset * 8
    )
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return bool((raw < 0x20).any())


def _escaped(values: pa.Array) -> pa.Array:
    """``values`` with ``\\`` and ``"`` escaped as json.dumps does; only the strings holding them are touched
    (each distinct one once)."""
    needs = pc.or_(pc.match_substring(values, '"'), pc.match_substring(values, "\\"))
    if not pc.any(needs).as_py():
        return values
    codes, distinct = _dictionary(values.filter(needs))
    fixed = [v.replace("\\", "\\\\").replace('"', '\\"') for v in distinct]
    return pc.replace_with_mask(values, needs, pa.array(fixed, type=_S).take(pa.array(codes)))


def _quoted(values: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(_QUOTE, values, _QUOTE, _NOTHING)


def _chunk_columns(
    chunk: list[tuple[int, object]],
    positions: list[int],
    rejects: list[tuple[int, str]],
    first_step: int,
    encode_details: Callable[[dict[str, Any]], str],
) -> Iterable[tuple[dict[str, Any], dict[str, tuple[np.ndarray, pa.Array]], int]]:
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


# ---------------------------------------------------------------------------------------------------------
# Synchronization jobs

_KNOWN_JOB_FIELDS = frozenset({"id", "templateId", "schedule", "status", "synchronizationJobSettings"})
_KNOWN_STATUS_FIELDS = frozenset(
    {
        "code",
        "countSuccessiveCompleteFailures",
        "escrowsPruned",
        "steadyStateFirstAchievedTime",
        "steadyStateLastAchievedTime",
        "troubleshootingUrl",
        "synchronizedEntryCountByType",
        "progress",
        "lastExecution",
        "lastSuccessfulExecution",
        "lastSuccessfulExecutionWithExports",
        "quarantine",
    }
)


def _never(value: object) -> bool:
    """A time that says "never": missing, empty, or .NET's DateTime.MinValue (0001-01-01)."""
    return value in (None, "") or (isinstance(value, str) and value.startswith("0001-01-01"))


def _execution(row: dict[str, Any], prefix: str, execution: object, *, full: bool) -> None:
    run = _as_dict(execution)
    # The documented job "just after start": a lastExecution that has not happened yet (state Failed, both
    # times 0001-01-01, activityIdentifier null, error code "None"). It is no run: no state, no error.
    not_run = _never(run.get("timeBegan")) and _never(run.get("timeEnded"))
    row[f"{prefix}_id"] = run.get("activityIdentifier") or None
    row[f"{prefix}_state"] = None if not_run else run.get("state")
    row[f"{prefix}_began"] = run.get("timeBegan")
    row[f"{prefix}_ended"] = run.get("timeEnded")
    if full:
        error = _as_dict(run.get("error"))
        code = error.get("code")
        # error.code "None" with an empty message is the documented "no error"
        no_error = not_run or (isinstance(code, str) and code.strip().lower() in ("", "none"))
        row[f"{prefix}_error_code"] = None if no_error else code
        row[f"{prefix}_error_message"] = None if no_error else (error.get("message") or None)
        for key, suffix in _COUNTERS.items():
            row[f"{prefix}_{suffix}"] = run.get(key)


def _latest_progress(progress: object) -> dict[str, Any]:
    observations = [p for p in (progress if isinstance(progress, list) else []) if isinstance(p, dict)]
    if not observations:
        return _EMPTY

    def observed(p: dict[str, Any]) -> pd.Timestamp:
        ts = parse_graph_time(p.get("progressObservationDateTime"))
        return _NS_MIN if ts is pd.NaT else ts

    return max(observations, key=observed)


def _entry_total(counts: object) -> int:
    total = 0
    for item in counts if isinstance(counts, list) else []:
        value = item.get("value") if isinstance(item, dict) else None
        try:
            total += int(value) if value is not None else 0
        except (TypeError, ValueError):
            continue
    return total


def _job_row(job: dict[str, Any]) -> dict[str, Any]:
    schedule = _as_dict(job.get("schedule"))
    status = _as_dict(job.get("status"))
    quarantine = _as_dict(status.get("quarantine"))
    quarantine_error = _as_dict(quarantine.get("error"))
    progress = _latest_progress(status.get("progress"))
    settings = job.get("synchronizationJobSettings")
    extra = {k: job[k] for k in job.keys() - _KNOWN_JOB_FIELDS}
    extra |= {f"status.{k}": status[k] for k in status.keys() - _KNOWN_STATUS_FIELDS}
    row: dict[str, Any] = {
        "job_id": job.get("id"),
        "template_id": job.get("templateId"),
        "status_code": status.get("code"),
        "schedule_state": schedule.get("state"),
        "schedule_interval": schedule.get("interval"),
        "schedule_expiration": schedule.get("expiration"),
        "count_successive_complete_failures": status.get("countSuccessiveCompleteFailures"),
        "escrows_pruned": status.get("escrowsPruned"),
        "steady_state_first": status.get("steadyStateFirstAchievedTime"),
        "steady_state_last": status.get("steadyStateLastAchievedTime"),
        "quarantine_reason": quarantine.get("reason") or None,
        # "" for a date is documented in quarantine examples: no date
        "quarantine_current_began": quarantine.get("currentBegan") or None,
        "quarantine_next_attempt": quarantine.get("nextAttempt") or None,
        "quarantine_series_began": quarantine.get("seriesBegan") or None,
        "quarantine_series_count": quarantine.get("seriesCount"),
        "quarantine_error_code": None
        if str(quarantine_error.get("code") or "").strip().lower() in ("", "none")
        else quarantine_error.get("code"),
        "quarantine_error_message": quarantine_error.get("message") or None,
        "quarantine_tenant_actionable": quarantine_error.get("tenantActionable"),
        "progress_completed": progress.get("completedUnits"),
        "progress_total": progress.get("totalUnits"),
        "progress_time": progress.get("progressObservationDateTime"),
        "progress_units": progress.get("units"),
        "synchronized_entries": _entry_total(status.get("synchronizedEntryCountByType")),
        "settings": None if settings is None else _encode(settings),
        "troubleshooting_url": status.get("troubleshootingUrl") or None,  # "" and null both mean none
        "extra": _encode(extra) if extra else "",
    }
    _execution(row, "last_execution", status.get("lastExecution"), full=True)
    _execution(row, "last_successful", status.get("lastSuccessfulExecution"), full=False)
    _execution(
        row, "last_successful_with_exports", status.get("lastSuccessfulExecutionWithExports"), full=False
    )
    return row


def jobs_from_records(
    jobs: Iterable[object],
    *,
    snapshot_time: datetime,
    service_principal_id: str,
    service_principal_name: str | None = None,
) -> pd.DataFrame:
    """One row per synchronizationJob dict, stamped with the snapshot time and its service principal.

    ``snapshot_time`` should be timezone-aware (a naive value is taken as UTC). Jobs that are not objects
    or have no ``id`` are left out and listed in ``frame.attrs["rejects"]`` as (position, reason).
    """
    snapshot = parse_graph_time(snapshot_time)
    data: dict[str, list[Any]] = {name: [] for name in JOB_COLUMNS}
    rejects: list[tuple[int, str]] = []
    for index, job in enumerate(jobs):
        if not isinstance(job, dict):
            rejects.append((index, f"not a JSON object (got {type(job).__name__})"))
            continue
        if not job.get("id"):
            rejects.append((index, "missing id"))
            continue
        row = _job_row(job)
        row["snapshot_time"] = snapshot
        row["service_principal_id"] = service_principal_id
        row["service_principal_name"] = service_principal_name
        for name, values in data.items():
            values.append(row[name])
    frame = _frame(data, JOB_COLUMNS, _JOB_ENUMS)
    frame.attrs["rejects"] = rejects
    return frame
