"""The tables' contract: column names and dtypes, the known enum values and how values are matched to
them, and the :class:`Tables` holder (the columns are described in :mod:`provkit.data.tables`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from provkit.data.stepdetails import (
    DETAIL_KEYS,
)

# pandas 3 made "str" the default string dtype (missing = NaN); under pandas 2 "str" would turn None into
# the text "None", so fall back to the nullable "string" dtype there.
# (Read from the installed version, without importing pandas: see provkit.data.deferred.)
STR = "str" if int(version("pandas").split(".")[0]) >= 3 else "string"
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
_Enums = dict[str, tuple[Sequence[str], Callable[[object], str | None]]]
_EVENT_ENUMS: _Enums = {
    "action": (ACTIONS, _lower_or_number(_ACTION_NUMBERS)),
    "status": (STATUSES, _lower_or_number(STATUSES)),
}
_STEP_ENUMS: _Enums = {
    "step_type": (STEP_TYPES, _lower_or_number(STEP_TYPES)),
    "status": (STATUSES, _lower_or_number(STATUSES)),
}
_JOB_ENUMS: _Enums = {
    "status_code": (JOB_STATUS_CODES, _canonical(JOB_STATUS_CODES)),
    "schedule_state": (SCHEDULE_STATES, _canonical(SCHEDULE_STATES)),
    "last_execution_state": (EXECUTION_STATES, _canonical(EXECUTION_STATES)),
    "last_successful_state": (EXECUTION_STATES, _canonical(EXECUTION_STATES)),
    "last_successful_with_exports_state": (EXECUTION_STATES, _canonical(EXECUTION_STATES)),
    "quarantine_reason": (QUARANTINE_REASONS, _canonical(QUARANTINE_REASONS)),
}


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


class LazyTables(Tables):
    """Tables whose events are at hand and whose steps and properties are read when an analysis first asks for
    them (:meth:`_read`), then kept; setting either replaces it. ``steps_of`` answers from the loaded steps when
    they are in memory (:meth:`_loaded_steps_of`); subclasses read fewer rows otherwise."""

    def __init__(self, events: pd.DataFrame, rejects: list[tuple[int, str]] | None = None) -> None:
        self.events = events
        self.rejects = list(rejects or [])
        self._loaded: dict[str, pd.DataFrame] = {}

    def _read(self, name: str) -> pd.DataFrame:
        """The whole ``steps`` or ``properties`` table."""
        raise NotImplementedError

    def _get(self, name: str) -> pd.DataFrame:
        if name not in self._loaded:
            self._loaded[name] = self._read(name)
        return self._loaded[name]

    def _loaded_steps_of(self, wanted: Iterable[str]) -> pd.DataFrame | None:
        """The steps of ``wanted`` from the steps already in memory; None when they are not loaded."""
        if "steps" not in self._loaded:
            return None
        steps = self._loaded["steps"]
        return steps[steps["event_id"].isin(set(wanted))].reset_index(drop=True)

    @property
    def steps(self) -> pd.DataFrame:
        return self._get("steps")

    @steps.setter
    def steps(self, value: pd.DataFrame) -> None:
        self._loaded["steps"] = value

    @property
    def properties(self) -> pd.DataFrame:
        return self._get("properties")

    @properties.setter
    def properties(self, value: pd.DataFrame) -> None:
        self._loaded["properties"] = value

    def __repr__(self) -> str:  # the dataclass's would read every step to count them
        return f"{type(self).__name__}(events={len(self.events)} rows, rejects={len(self.rejects)})"


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

# Step details keys lifted into columns (every accepted spelling is in provkit.data.stepdetails);
# ScopeEvaluationResult gives failed_scope_filter, failed_scope_clause and failed_scope_value.
_DETAIL_KEYS = tuple(DETAIL_KEYS)
_SCOPE_FAILURE_COLUMNS = ("failed_scope_filter", "failed_scope_clause", "failed_scope_value")
_DETAIL_COLUMNS = (*_DETAIL_KEYS, *_SCOPE_FAILURE_COLUMNS)
