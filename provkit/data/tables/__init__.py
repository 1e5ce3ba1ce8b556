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

The modules of this package, each with one job: :mod:`~provkit.data.tables.schema` (the columns and enums
above), :mod:`~provkit.data.tables.times` (Graph times and durations), :mod:`~provkit.data.tables.convert`
(raw values to typed columns), :mod:`~provkit.data.tables.events` (log entries to the three log tables),
:mod:`~provkit.data.tables.rows` (the Python row loop that reads any shape), :mod:`~provkit.data.tables.arrow`
(the same for regular entries, with Arrow kernels) and
:mod:`~provkit.data.tables.jobs` (job-status snapshots). Import the public names from here.
"""

import importlib
from typing import TYPE_CHECKING, Any

from provkit.data.tables.schema import (
    ACTIONS,
    EVENT_COLUMNS,
    EXECUTION_STATES,
    JOB_COLUMNS,
    JOB_STATUS_CODES,
    PROPERTY_COLUMNS,
    QUARANTINE_REASONS,
    SCHEDULE_STATES,
    STATUSES,
    STEP_COLUMNS,
    STEP_TYPES,
    LazyTables,
    Tables,
)

if TYPE_CHECKING:
    from provkit.data.tables.events import (
        concat_tables,
        empty_tables,
        events_from_pages,
        events_from_records,
    )
    from provkit.data.tables.jobs import jobs_from_records
    from provkit.data.tables.times import parse_graph_duration, parse_graph_time, parse_graph_times

# The converters need pandas, pyarrow and numpy, which take most of a second to import; the columns and the
# Tables holders above need none. So the converters' modules load when one is first asked for (PEP 562), and
# `provkit fetch` sends its first log call before they do (see provkit.data.deferred).
_DEFERRED = {
    "concat_tables": "events",
    "empty_tables": "events",
    "events_from_pages": "events",
    "events_from_records": "events",
    "jobs_from_records": "jobs",
    "parse_graph_duration": "times",
    "parse_graph_time": "times",
    "parse_graph_times": "times",
}


def __getattr__(name: str) -> Any:
    module = _DEFERRED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


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
    "LazyTables",
    "Tables",
    "concat_tables",
    "empty_tables",
    "events_from_pages",
    "events_from_records",
    "jobs_from_records",
    "parse_graph_duration",
    "parse_graph_time",
    "parse_graph_times",
]
