"""The loganalytics source: an app's provisioning history read from a Log Analytics workspace with KQL.

Organisations that stream Entra's logs through diagnostic settings keep them in the ``AADProvisioningLogs`` and
``AuditLogs`` tables for up to two years. This source queries them with ``azure-monitor-query``'s
``LogsQueryClient``, signed in with provkit's own msal sign-in (the same ``PROVKIT_*`` settings and clouds; the
token is for the Log Analytics API, ``https://api.loganalytics.io/.default`` in the global cloud).

The heavy work is pushed down as KQL: cycles (:meth:`LogAnalytics.observed_cycles`), failures by code and skip
reasons come back as aggregates, and an object's entries (:meth:`LogAnalytics.object_entries`) as only that
object's rows. For the checks (``diagnose``), :meth:`LogAnalytics.summary` counts over every entry in KQL (a
:class:`~provkit.data.logsummary.LogSummary`, objects by their latest state included) and sends the latest
entries that are not healthy, and :meth:`LogAnalytics.entries_for_checks` and
:meth:`LogAnalytics.exports_for_checks` only the entries the checks filter for or judge one by one: a healthy
object's entries stay in the workspace (provkit.data.sources.loganalytics_findings). :meth:`LogAnalytics.entries`
pulls every entry, a day at a time. Every query counts the rows and bytes it transferred
(:attr:`LogAnalytics.transfer`).

A result cut short by the service (``PartialError``, e.g. over 500,000 rows) or a query that timed out raises
:class:`PartialResultError`; nothing is silently truncated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from provkit.data.auth import Settings, make_session, sign_in
from provkit.data.evidence import Evidence
from provkit.data.sources import files
from provkit.data.sources.graph import directory_facts
from provkit.data.sources.loganalytics_failures import _quote, _when, failures_since_success
from provkit.data.sources.loganalytics_findings import (
    FindingsPushdown,
    Judged,
    assigned_users,
    fill_narrow,
)
from provkit.data.tables import events_from_records, jobs_from_records
from provkit.errors import ConfigError, ProvkitError

ENV_LOGANALYTICS_URL = "PROVKIT_LOGANALYTICS_URL"
ENV_WORKSPACE_ID = "PROVKIT_WORKSPACE_ID"
# The Log Analytics API's root (and token resource) per cloud, as the azure-monitor-query docs list them.
# inference: the DoD cloud shares the US Government endpoint.
LOG_ANALYTICS_ROOTS = {
    "global": "https://api.loganalytics.io",
    "usgov": "https://api.loganalytics.us",
    "usgov-dod": "https://api.loganalytics.us",
    "china": "https://api.loganalytics.azure.cn",
}
_LINK_DIAGNOSTICS = (
    "https://learn.microsoft.com/en-us/entra/identity/app-provisioning/application-provisioning-log-analytics"
)
_LINK_LIMITS = "https://learn.microsoft.com/en-us/azure/azure-monitor/service-limits#log-queries-and-language"

# What cycles.py counts per cycle (tables.ACTIONS and tables.STATUSES, lower case).
_ACTIONS = ("create", "update", "delete", "disable", "stageddelete", "other")
_STATUSES = ("success", "failure", "skipped", "warning")


class LogAnalyticsError(ProvkitError):
    """The workspace refused a query or could not be reached (status, code and the service's message)."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.status, self.code = status, code


class DiagnosticSettingsError(LogAnalyticsError):
    """The workspace has no AADProvisioningLogs (or AuditLogs) table: Entra does not send its logs there."""


class PartialResultError(LogAnalyticsError):
    """The service answered part of a result (row or size limit, or a timeout): never used as if whole."""

    def __init__(self, message: str, *, rows: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.rows = rows


@dataclass
class Transfer:
    """What the workspace sent: queries run, rows and bytes (JSON bodies as received)."""

    queries: int = 0
    rows: int = 0
    bytes: int = 0
    narrow_rows: int = 0  # of ``rows``: narrow rows (a few columns of an entry; the findings mode's)

    def line(self) -> str:
        narrow = f" ({self.narrow_rows:,} of them narrow)" if self.narrow_rows else ""
        return f"{self.queries} KQL queries, {self.rows:,} rows{narrow}, {self.bytes / 1024:,.1f} KiB transferred"


class _MsalCredential:
    """An azure-core TokenCredential over provkit's TokenProvider (msal), for the Log Analytics resource."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken  # deferred: azure-core loads only with a workspace

        token = self._provider.token()
        expires = self._provider.expires_at or (datetime.now(UTC).timestamp() + 300)
        return AccessToken(token, int(expires))

    def __repr__(self) -> str:
        return "_MsalCredential(<token withheld>)"


@dataclass
class LogAnalytics(FindingsPushdown):
    """A workspace to query; build one with :meth:`connect`. ``client`` is a ``LogsQueryClient``."""

    workspace_id: str
    client: Any
    endpoint: str
    transfer: Transfer = field(default_factory=Transfer)
    server_timeout: int = 600
    rejects: list[str] = field(default_factory=list)
    _checked: bool = field(default=False, repr=False)

    @classmethod
    def connect(
        cls,
        workspace_id: str | None = None,
        *,
        settings: Any = None,
        secret: str | None = None,
        method: str = "auto",
        environ: Mapping[str, str] | None = None,
        cache_path: Any = None,
    ) -> LogAnalytics:
        """Sign in (as provkit signs in to Graph) and return the workspace ``workspace_id``
        (default ``PROVKIT_WORKSPACE_ID``) at ``PROVKIT_LOGANALYTICS_URL`` or the cloud's Log Analytics root."""
        # deferred: the Azure SDK loads only when a workspace is used
        from azure.core.pipeline.transport import RequestsTransport
        from azure.monitor.query import LogsQueryClient

        env = os.environ if environ is None else environ
        settings = settings or Settings.from_env(env)
        workspace_id = (workspace_id or env.get(ENV_WORKSPACE_ID) or "").strip()
        if not workspace_id:
            raise ConfigError(
                "No Log Analytics workspace given.",
                remedy=f"Pass --workspace with the workspace ID (a GUID, on the workspace's Overview page) or set "
                f"{ENV_WORKSPACE_ID}.",
                link=_LINK_DIAGNOSTICS,
            )
        resource = LOG_ANALYTICS_ROOTS[settings.cloud.name]
        endpoint = (env.get(ENV_LOGANALYTICS_URL) or "").strip().rstrip("/") or resource
        session = make_session(settings)
        provider = sign_in(
            settings,
            method=method,
            secret=secret,
            session=session,
            environ=env,
            resource=resource,
            cache_path=cache_path,
        )
        client = LogsQueryClient(
            _MsalCredential(provider),
            endpoint=endpoint,
            audience=resource,
            # azure-core passes its own verify on every request; the CA bundle (local server) must go here.
            transport=RequestsTransport(
                session=session,
                session_owner=False,
                connection_verify=str(settings.ca_bundle) if settings.ca_bundle else True,
            ),
        )
        return cls(workspace_id=workspace_id, client=client, endpoint=endpoint)

    # -- one query ------------------------------------------------------------------------------------------
    def query(self, kql: str, window: tuple[datetime, datetime] | None) -> pd.DataFrame:
        """Run ``kql`` over ``window`` (the request's timespan); return the primary table as a DataFrame.

        Raises DiagnosticSettingsError when the tables are missing, PartialResultError for a partial answer and
        LogAnalyticsError for any other refusal.
        """
        # deferred, as in connect
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
        from azure.monitor.query import LogsQueryStatus

        received = {"bytes": 0}

        def count_bytes(response: Any) -> None:
            try:
                received["bytes"] += len(response.http_response.body() or b"")
            except Exception:  # a body that cannot be measured counts as nothing, not as a failure
                pass

        try:
            result = self.client.query_workspace(
                self.workspace_id,
                kql,
                timespan=window,
                server_timeout=self.server_timeout,
                raw_response_hook=count_bytes,
            )
        except HttpResponseError as exc:
            raise self._refusal(exc) from None
        except ClientAuthenticationError as exc:
            raise LogAnalyticsError(
                f"Signing in to Log Analytics failed: {str(exc).splitlines()[0][:300]}",
                remedy="Check PROVKIT_TENANT_ID, PROVKIT_CLIENT_ID and the credential.",
            ) from None
        except ServiceRequestError as exc:
            raise LogAnalyticsError(
                f"Could not reach Log Analytics at {self.endpoint}: {str(exc).splitlines()[0][:200]}",
                remedy=f"Check {ENV_LOGANALYTICS_URL} and the network.",
            ) from None
        self.transfer.queries += 1
        self.transfer.bytes += received["bytes"]
        if result.status == LogsQueryStatus.PARTIAL:
            tables = result.partial_data or []
            rows = len(tables[0].rows) if tables else 0
            self.transfer.rows += rows
            error = result.partial_error
            detail = getattr(error, "message", "") or ""
            for inner in getattr(error, "details", None) or []:
                inner_error = inner.get("innererror") if isinstance(inner, dict) else None
                if inner_error and inner_error.get("message"):
                    detail = inner_error["message"]
            raise PartialResultError(
                f"Log Analytics returned a partial result ({rows:,} rows): {detail[:300]}",
                rows=rows,
                remedy="Narrow the window (--since / --start --end) or let provkit summarise in KQL; "
                "the partial rows were not used.",
                link=_LINK_LIMITS,
            )
        table = result.tables[0]
        self.transfer.rows += len(table.rows)
        return pd.DataFrame([list(r) for r in table.rows], columns=list(table.columns))

    def _refusal(self, exc: Any) -> LogAnalyticsError:
        status = getattr(exc, "status_code", None)
        body: dict[str, Any] = {}
        try:
            body = json.loads(exc.response.text()) if exc.response is not None else {}
        except Exception:  # not JSON: keep the SDK's message
            body = {}
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code") or "")
        inner = error.get("innererror") or {}
        messages = [str(error.get("message") or exc.message or "")]
        while isinstance(inner, dict) and inner:
            if inner.get("message"):
                messages.append(str(inner["message"]))
            inner = inner.get("innererror") or {}
        text = " / ".join(m for m in messages if m)[:500]
        if "failed to resolve table" in text.lower() and (
            "aadprovisioninglogs" in text.lower() or "auditlogs" in text.lower()
        ):
            return DiagnosticSettingsError(
                f"Workspace {self.workspace_id} has no Entra provisioning logs ({text}).",
                status=status,
                code=code,
                remedy="In Entra ID > Monitoring & health > Diagnostic settings, add a setting that sends the "
                "ProvisioningLogs and AuditLogs categories to this workspace (needs Security Administrator); "
                "entries appear from then on, not before.",
                link=_LINK_DIAGNOSTICS,
            )
        if status == 404:
            return LogAnalyticsError(
                f"Log Analytics does not know workspace {self.workspace_id}: {text}",
                status=status,
                code=code,
                remedy="Use the workspace ID (a GUID on the workspace's Overview page), not its name or resource id.",
            )
        if status in (401, 403):
            return LogAnalyticsError(
                f"Log Analytics refused the query ({status} {code}): {text}",
                status=status,
                code=code,
                remedy="Give the app the Log Analytics Reader role on the workspace (or its resource group).",
                link=_LINK_DIAGNOSTICS,
            )
        if status == 429:
            return LogAnalyticsError(
                f"Log Analytics throttled the queries (429): {text}",
                status=status,
                code=code,
                remedy="Wait a minute and run again; query fewer apps or workspaces at once.",
                link=_LINK_LIMITS,
            )
        if status in (504,) or "timeout" in text.lower():
            return PartialResultError(
                f"The query timed out in Log Analytics: {text}",
                rows=0,
                status=status,
                code=code,
                remedy="Narrow the window (--since / --start --end).",
                link=_LINK_LIMITS,
            )
        return LogAnalyticsError(
            f"Log Analytics refused the query ({status} {code}): {text}", status=status, code=code
        )

    def check_tables(self, window: tuple[datetime, datetime] | None = None) -> None:
        """Raise DiagnosticSettingsError unless the workspace holds AADProvisioningLogs (checked once)."""
        if not self._checked:
            self.query("AADProvisioningLogs | take 1 | project TimeGenerated", window)
            self._checked = True

    # -- pushdown -------------------------------------------------------------------------------------------
    @staticmethod
    def _app_filter(sp_id: str) -> str:
        # ServicePrincipal is a JSON string column (reference 5.2): parse_json(...).Id is the object id.
        return f"AADProvisioningLogs | where tostring(parse_json(ServicePrincipal).Id) =~ {_quote(sp_id)}"

    def observed_cycles(self, sp_id: str, window: tuple[datetime, datetime]) -> tuple[pd.DataFrame, int]:
        """One row per CycleId for the app, summarised in KQL, in the columns cycles.py builds from entries
        (job_id, cycle_id, first, last, entries, n_<action>..., n_<status>..., distinct_objects); and the
        number of entries without a CycleId."""
        actions = ", ".join(f"n_{a}=countif(a == {_quote(a)})" for a in _ACTIONS)
        statuses = ", ".join(f"n_{s}=countif(s == {_quote(s)})" for s in _STATUSES)
        known_a = ", ".join(_quote(a) for a in _ACTIONS)
        known_s = ", ".join(_quote(s) for s in _STATUSES)
        kql = f"""
let base = {self._app_filter(sp_id)}
    | extend a = tolower(ProvisioningAction), s = tolower(ResultType),
             src = tostring(parse_json(SourceIdentity).Id);
let objects = base | where isnotempty(CycleId) and isnotempty(src)
    | summarize by JobId, CycleId, src
    | summarize distinct_objects = count() by JobId, CycleId;
base
| where isnotempty(CycleId)
| summarize first = min(TimeGenerated), last = max(TimeGenerated), entries = count(), {actions},
    n_unknown_action = countif(a !in ({known_a})), {statuses}, n_unknown_status = countif(s !in ({known_s}))
    by JobId, CycleId
| join kind=leftouter objects on JobId, CycleId
| project-away JobId1, CycleId1
| union (base | where isempty(CycleId) | summarize entries = count() | extend CycleId = '', JobId = '')
"""
        frame = self.query(kql.replace("first =", "first_ =").replace("last =", "last_ ="), window)
        without = frame[frame["CycleId"].fillna("") == ""]
        without_cycle = int(without["entries"].fillna(0).sum()) if len(without) else 0
        frame = frame[frame["CycleId"].fillna("") != ""].copy()
        frame = frame.rename(
            columns={"JobId": "job_id", "CycleId": "cycle_id", "first_": "first", "last_": "last"}
        )
        for column in ("first", "last"):
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[ns, UTC]")
        counts = [f"n_{a}" for a in _ACTIONS] + ["n_unknown_action"] + [f"n_{s}" for s in _STATUSES]
        for column in ["entries", *counts, "n_unknown_status", "distinct_objects"]:
            frame[column] = pd.to_numeric(frame[column]).fillna(0).astype("int64")
        columns = [
            "job_id",
            "cycle_id",
            "first",
            "last",
            "entries",
            *counts,
            "n_unknown_status",
            "distinct_objects",
        ]
        frame = frame[columns].astype({"job_id": "str", "cycle_id": "str"})
        return frame.sort_values(["first", "cycle_id"], kind="stable").reset_index(drop=True), without_cycle

    def failures_by_code(self, sp_id: str, window: tuple[datetime, datetime]) -> pd.DataFrame:
        """Failed entries by error code (ResultSignature): code, entries, objects, first and last seen."""
        kql = f"""{self._app_filter(sp_id)}
| where ResultType =~ 'Failure'
| summarize entries = count(), objects = dcount(tostring(parse_json(SourceIdentity).Id)),
    first_seen = min(TimeGenerated), last_seen = max(TimeGenerated) by code = ResultSignature
| order by entries desc"""
        return self.query(kql, window)

    def failures_by_day(self, sp_id: str, window: tuple[datetime, datetime]) -> pd.DataFrame:
        """Failed entries by UTC day and error code: day, code, entries (as :func:`provkit.analysis.trends.failures_by_day`
        computes them from entries)."""
        kql = f"""{self._app_filter(sp_id)}
| where ResultType =~ 'Failure'
| summarize entries = count() by day = bin(TimeGenerated, 1d), code = ResultSignature
| order by day asc, code asc"""
        frame = self.query(kql, window)
        if len(frame):
            frame["day"] = pd.to_datetime(frame["day"], utc=True).astype("datetime64[ns, UTC]")
            frame["entries"] = frame["entries"].astype("int64")
        return frame

    def skip_reasons(self, sp_id: str, window: tuple[datetime, datetime]) -> pd.DataFrame:
        """Skipped entries by the SkipReason their steps carry: reason, entries, objects."""
        kql = f"""{self._app_filter(sp_id)}
| where ResultType =~ 'Skipped'
| mv-expand step = parse_json(ProvisioningSteps)
| extend reason = tostring(step.details.SkipReason)
| where isnotempty(reason)
| summarize entries = count(), objects = dcount(tostring(parse_json(SourceIdentity).Id)) by reason
| order by entries desc"""
        return self.query(kql, window)

    def status_counts(
        self, sp_id: str, window: tuple[datetime, datetime], recent_since: datetime
    ) -> pd.DataFrame:
        """Entries by status (lower case): entries, those at or after ``recent_since``, first and last time. What
        the working summary counts over every entry, as one row per status."""
        kql = f"""{self._app_filter(sp_id)}
| summarize entries = count(), recent = countif(TimeGenerated >= {_when(recent_since)}),
    first_ = min(TimeGenerated), last_ = max(TimeGenerated) by status = tolower(ResultType)
| order by status asc"""
        frame = self.query(kql, window)
        for column in ("first_", "last_"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[ns, UTC]")
        return frame.rename(columns={"first_": "first", "last_": "last"})

    def cited_entries(
        self, sp_id: str, change_ids: list[str], window: tuple[datetime, datetime], *, per_query: int = 200
    ) -> list[dict[str, Any]]:
        """The app's entries with these change ids (the entries findings cite), as Graph records; ``per_query``
        ids per query keep each query short."""
        wanted = sorted({str(c) for c in change_ids if c})
        records: list[dict[str, Any]] = []
        for at in range(0, len(wanted), per_query):
            ids = ", ".join(_quote(c) for c in wanted[at : at + per_query])
            kql = f"""{self._app_filter(sp_id)}
| where ChangeId in ({ids})
| order by TimeGenerated asc"""
            records.extend(self._records(self.query(kql, window)))
        return records

    def object_entries(
        self, sp_id: str, object_id: str, window: tuple[datetime, datetime]
    ) -> list[dict[str, Any]]:
        """The app's entries about one object (source or target id, UPN or display name; any case), as Graph
        records."""
        q = _quote(object_id)
        # An id matches the identity columns exactly; a UPN or display name is looked for in the identities
        # and the import step (contains: case-insensitive), and explain keeps the entries that really match.
        kql = f"""{self._app_filter(sp_id)}
| where tostring(parse_json(SourceIdentity).Id) =~ {q} or tostring(parse_json(TargetIdentity).id) =~ {q}
    or SourceIdentity contains {q} or TargetIdentity contains {q}
| order by TimeGenerated asc"""
        return self._records(self.query(kql, window))

    def audits(self, sp_id: str, window: tuple[datetime, datetime]) -> list[dict[str, Any]]:
        """The provisioning service's directory audits about the app, from AuditLogs, as Graph directoryAudit
        records (for windows older than Graph's 30 days).

        inference: the AuditLogs columns map to directoryAudit properties by name (ActivityDisplayName,
        ActivityDateTime, Result, ResultReason, LoggedByService, AADOperationType, CorrelationId, and the JSON
        columns InitiatedBy, TargetResources, AdditionalDetails).
        """
        kql = f"""AuditLogs
| where LoggedByService =~ 'Account Provisioning' and TargetResources contains {_quote(sp_id)}
| project Id, ActivityDateTime, ActivityDisplayName, Category, CorrelationId, Result, ResultReason,
    LoggedByService, AADOperationType, InitiatedBy, TargetResources, AdditionalDetails
| order by ActivityDateTime desc"""
        frame = self.query(kql, window)
        records = []
        for row in frame.to_dict(orient="records"):
            when = row.get("ActivityDateTime")
            if isinstance(when, datetime):
                when = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            record = {
                "id": row.get("Id"),
                "category": row.get("Category"),
                "correlationId": row.get("CorrelationId"),
                "result": row.get("Result"),
                "resultReason": row.get("ResultReason"),
                "activityDisplayName": row.get("ActivityDisplayName"),
                "activityDateTime": when,
                "loggedByService": row.get("LoggedByService"),
                "operationType": row.get("AADOperationType"),
            }
            try:
                for key, column in (
                    ("initiatedBy", "InitiatedBy"),
                    ("targetResources", "TargetResources"),
                    ("additionalDetails", "AdditionalDetails"),
                ):
                    value = row.get(column)
                    record[key] = json.loads(value) if isinstance(value, str) and value.strip() else value
            except ValueError as exc:
                self.rejects.append(f"AuditLogs row Id={row.get('Id')!r}: a JSON column is not JSON ({exc})")
                continue
            targets = record.get("targetResources") or []
            if any(isinstance(t, dict) and str(t.get("id", "")).lower() == sp_id.lower() for t in targets):
                records.append(record)
        return records

    def entries(
        self, sp_id: str, window: tuple[datetime, datetime], *, slice_length: timedelta = timedelta(days=1)
    ) -> list[dict[str, Any]]:
        """Every entry of the app in ``window`` as Graph records, one query per ``slice_length`` (each under the
        service's row limit for up to 500,000 entries a day)."""
        records: list[dict[str, Any]] = []
        start, end = window
        while start < end:
            stop = min(end, start + slice_length)
            kql = f"""{self._app_filter(sp_id)}
| where TimeGenerated >= {_when(start)} and TimeGenerated < {_when(stop)}"""
            records.extend(self._records(self.query(kql, (start, stop))))
            start = stop
        return records

    def _records(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Rows of AADProvisioningLogs as v1.0 records, through the reader of Log Analytics exports; a row it
        cannot read is kept in :attr:`rejects` (row id and reason), never dropped silently."""

        notes = files._Notes()
        records = []
        for n, row in enumerate(frame.to_dict(orient="records"), start=1):
            value = row.get("TimeGenerated")
            if isinstance(value, datetime):
                row["TimeGenerated"] = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            ctx = files._Ctx(f"workspace {self.workspace_id}", n, notes)
            try:
                records.append(files._from_log_analytics(row, ctx))
            except files._Bad as exc:
                self.rejects.append(f"AADProvisioningLogs row Id={row.get('Id')!r}: {exc}")
        return records


# ---------------------------------------------------------------------------------------------------------
# Evidence: configuration from Graph, logs from the workspace

MODES = ("cycles", "entries", "findings", "summary", "object")


def workspace_evidence(
    client: Any,
    workspace: LogAnalytics,
    app: Any,
    *,
    window: tuple[datetime, datetime],
    tenant_id: str | None,
    mode: str = "entries",
    object_ref: str | None = None,
    judged: Judged | None = None,
) -> Any:
    """An :class:`~provkit.data.evidence.Evidence` whose logs and directory audits come from ``workspace`` and whose
    configuration (job status, schema, assignments, groups, users) comes from Graph through ``client``.

    ``mode`` says how much of the logs travels: "cycles" pulls per-cycle aggregates only (and the entries of
    failures; enough for cycles and their timing), "object" the entries about ``object_ref`` only (for explain),
    "findings" what the checks read: the counts over every entry summarised in KQL (``log_summary``: objects by
    their latest entry's state included), the entries of the objects a finding is about (each with its latest
    entry) and the few the checks filter for or judge one by one with the directory facts read from Graph first
    (:meth:`LogAnalytics.summary`, :meth:`LogAnalytics.entries_for_checks`, :meth:`LogAnalytics.exports_for_checks`,
    :meth:`LogAnalytics.latest_of_objects`; the failures after the newest success as groups by code and HTTP
    status with each group's newest entries, provkit.data.sources.loganalytics_failures; with the per-cycle
    aggregates of "cycles" and that cycle's entries while the initial cycle runs, for its ETA): a healthy
    object's entries do not travel; "summary" those and the per-cycle aggregates always (a report's summary:
    findings and cycles); "entries" every entry of the window (the same findings as "findings").

    ``judged`` (findings and summary modes) is the checks' rule for which failing objects they judge one by one
    (:func:`provkit.analysis.checks.travel.judged_one_by_one`, handed over by the caller: the data layer does not
    import the checks): those travel whole; of the other failing objects only each group's newest (by error
    code and HTTP status; ``failures.by-code`` counts the rest from the summary's ``failing_by_code``).
    Without it every failing object's latest entry travels.
    """

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    resolved = app if hasattr(app, "service_principal_id") else client.resolve_app(app)
    sp_id = resolved.service_principal_id
    workspace.check_tables(window)
    snapshot_time = datetime.now(UTC)
    jobs = client.list_jobs(sp_id)
    jobs_frame = None
    schema = None
    if jobs:
        jobs_frame = jobs_from_records(
            jobs,
            snapshot_time=snapshot_time,
            service_principal_id=sp_id,
            service_principal_name=resolved.display_name,
        )
        try:
            schema = client.get_schema(sp_id, jobs[0]["id"])
        except Exception:  # a schema we cannot read must not cost the logs (as in fetch)
            schema = None
    assignments = client.app_role_assignments(sp_id)
    groups, users = directory_facts(client, assignments)
    # The workspace keeps the audits as long as the logs (Graph: 30 days).
    audits = workspace.audits(sp_id, window)
    observed = None
    summary = None
    records: list[dict[str, Any]] = []
    if mode in ("findings", "summary"):
        # The ETA of a running initial cycle reads the cycles and the summary's objects of the newest cycle;
        # the job status code is NotRun until the first run completes (synchronizationStatusCode, reference
        # section 2). A report's summary reads the cycles too.
        running = str(((jobs[0].get("status") or {}).get("code") if jobs else "") or "").lower() == "notrun"
        if running or mode == "summary":
            observed = workspace.observed_cycles(sp_id, window)
        summary, records = workspace.summary(sp_id, window, window[1], judged)
        seen = {r.get("id") for r in records}
        # Every entry an object's latest one (with an object id): nothing beyond them to look for. (The ETA of a
        # running initial cycle reads the summary's counts of that cycle's objects, not its entries.)
        beyond = summary.entries > summary.objects
        extra = workspace.entries_for_checks(sp_id, window) if beyond else []
        # The failures after the newest success: grouped in KQL, the newest of each group whole.
        success, failure = (summary.last_by_status.get(s) for s in ("success", "failure"))
        if failure is not None and (success is None or failure > success):
            grouped, failed = failures_since_success(workspace, sp_id, window, success)
            summary = replace(summary, failures_since_success=grouped)
            extra += failed
        extra += workspace.exports_for_checks(
            sp_id, window, records + extra, assigned_users(assignments, groups)
        )
        for record in extra:
            if record.get("id") not in seen:
                seen.add(record.get("id"))
                records.append(record)
        # The latest entries of the objects those name (a healthy latest entry travels only then).
        latest, summary = workspace.latest_of_objects(sp_id, window, records, summary)
        for record in latest:
            if record.get("id") not in seen:
                seen.add(record.get("id"))
                records.append(record)
    elif mode == "cycles":
        observed = workspace.observed_cycles(sp_id, window)
    elif mode == "object":
        records = workspace.object_entries(sp_id, object_ref or "", window)
    else:
        records = workspace.entries(sp_id, window)
    tables = events_from_records(records)
    fill_narrow(tables.events, records)  # the narrow rows' (findings mode)
    evidence = Evidence(
        tenant_id=tenant_id or "",
        service_principal_id=sp_id,
        app_id=resolved.app_id,
        display_name=resolved.display_name,
        tables=tables,
        jobs=jobs_frame,
        job=jobs[0] if jobs else None,
        schema=schema,
        assignments=assignments,
        groups=groups,
        audits=audits,
        users=users,
        now=window[1],
        window=window,
        source="loganalytics",
        observed_cycles=observed,
        log_summary=summary,
    )
    return evidence, resolved


__all__ = [
    "ENV_LOGANALYTICS_URL",
    "ENV_WORKSPACE_ID",
    "DiagnosticSettingsError",
    "LogAnalytics",
    "LogAnalyticsError",
    "PartialResultError",
    "Transfer",
    "workspace_evidence",
]
