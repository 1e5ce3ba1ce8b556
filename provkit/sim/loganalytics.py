"""The simulated tenant's Log Analytics workspace: its history in the ``AADProvisioningLogs`` and ``AuditLogs``
schemas, queried with real KQL.

The engine is ``duckdb-kql`` (KQL parsed and translated onto DuckDB): a query is evaluated, never matched
against strings provkit is known to send, and KQL the translator does not cover is refused as a real workspace
refuses bad KQL (400 ``BadArgumentError``). The tables are filled from the same simulated entries that the Graph
endpoints serve, rendered in worker processes (one per core) and loaded into DuckDB through Arrow.

Answers follow the Log Analytics query API (``POST /v1/workspaces/{id}/query``):

- success: ``{"tables": [{"name": "PrimaryResult", "columns": [{"name", "type"}], "rows": [[...]]}]}``
  (response-format page of the Log Analytics API docs);
- fatal errors: ``{"error": {"message", "code", "correlationId", "innererror": {"code", "message"}}}`` with
  ``BadArgumentError``/``SyntaxError`` for bad KQL (errors page of the Log Analytics API docs);
- a result over the row limit: 200 with the first rows and an ``error`` of code ``PartialError`` (response-format
  page: "If a non-fatal error occurs ... an error property ... with the code PartialError").
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

LOG_ANALYTICS_RESOURCE = "https://api.loganalytics.io"
PROVISIONING_TABLE = "AADProvisioningLogs"
AUDIT_TABLE = "AuditLogs"
# Documented service limits of the query API ("Log queries" limits of Azure Monitor): 500,000 records per result.
MAX_ROWS = 500_000
# inference: the per-user query rate limit is documented as 200 requests per 30 s; the 429 body's code
# ("ThrottledError") is not documented with an example, so clients should read the status, not the code.
THROTTLE_LIMIT = 200
THROTTLE_WINDOW = 30.0

# Column order and types of AADProvisioningLogs (reference 5.2, from the table reference).
PROVISIONING_COLUMNS: dict[str, str] = {
    "TenantId": "VARCHAR",
    "SourceSystem": "VARCHAR",
    "TimeGenerated": "TIMESTAMP",
    "OperationName": "VARCHAR",
    "OperationVersion": "VARCHAR",
    "Category": "VARCHAR",
    "ResultType": "VARCHAR",
    "ResultSignature": "VARCHAR",
    "ResultDescription": "VARCHAR",
    "DurationMs": "BIGINT",
    "AADTenantId": "VARCHAR",
    "ChangeId": "VARCHAR",
    "CycleId": "VARCHAR",
    "Id": "VARCHAR",
    "InitiatedBy": "VARCHAR",
    "JobId": "VARCHAR",
    "ModifiedProperties": "VARCHAR",
    "ProvisioningAction": "VARCHAR",
    "ProvisioningStatusInfo": "VARCHAR",
    "ProvisioningSteps": "VARCHAR",
    "ServicePrincipal": "VARCHAR",
    "SourceIdentity": "VARCHAR",
    "TargetIdentity": "VARCHAR",
    "TargetSystem": "VARCHAR",
    "Type": "VARCHAR",
}
# AuditLogs (Azure Monitor table reference); the dynamic columns hold JSON text.
AUDIT_COLUMNS: dict[str, str] = {
    "TenantId": "VARCHAR",
    "SourceSystem": "VARCHAR",
    "TimeGenerated": "TIMESTAMP",
    "OperationName": "VARCHAR",
    "OperationVersion": "VARCHAR",
    "Category": "VARCHAR",
    "ResultType": "VARCHAR",
    "ResultSignature": "VARCHAR",
    "ResultDescription": "VARCHAR",
    "DurationMs": "BIGINT",
    "CorrelationId": "VARCHAR",
    "Resource": "VARCHAR",
    "Level": "VARCHAR",
    "AdditionalDetails": "VARCHAR",
    "Id": "VARCHAR",
    "InitiatedBy": "VARCHAR",
    "LoggedByService": "VARCHAR",
    "Result": "VARCHAR",
    "ResultReason": "VARCHAR",
    "TargetResources": "VARCHAR",
    "AADTenantId": "VARCHAR",
    "ActivityDisplayName": "VARCHAR",
    "ActivityDateTime": "TIMESTAMP",
    "AADOperationType": "VARCHAR",
    "Type": "VARCHAR",
}
_STORED = "stored_"  # the loaded rows; the tables a query sees are views over them, cut to its timespan
DYNAMIC_COLUMNS = {
    "InitiatedBy",
    "ModifiedProperties",
    "ProvisioningStatusInfo",
    "ProvisioningSteps",
    "ServicePrincipal",
    "SourceIdentity",
    "TargetIdentity",
    "TargetSystem",
    "AdditionalDetails",
    "TargetResources",
}


class WorkspaceError(Exception):
    """A query the workspace refuses: HTTP status, the OneAPI error ``code`` and ``innererror``."""

    def __init__(self, status: int, code: str, message: str, inner: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner

    def body(self) -> dict:
        error: dict[str, Any] = {
            "message": self.message,
            "code": self.code,
            "correlationId": str(uuid.uuid4()),
        }
        if self.inner:
            error["innererror"] = self.inner
        return {"error": error}


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def la_row(entry: dict) -> tuple:
    """One AADProvisioningLogs row (in :data:`PROVISIONING_COLUMNS` order) for a Graph provisioning entry.

    Column meanings from reference 5.2: ResultType is the status (Success/Failure/Skipped), ResultSignature the
    error code, ResultDescription the reason, TenantId the workspace. inference: the JSON columns' key spelling
    (``ServicePrincipal.Id``/``.Name``, ``SourceIdentity.Id``/``.identityType``/``.details``) follows the docs'
    sample queries; the other JSON columns keep Graph's shapes. ``None`` stands for an absent error code.
    """
    info = entry.get("provisioningStatusInfo") or {}
    error = info.get("errorInformation") or {}
    status = str(info.get("status") or "")
    source = entry.get("sourceIdentity") or {}
    sp = entry.get("servicePrincipal") or {}
    return (
        None,  # TenantId: the workspace id, set at load
        "Azure AD",
        entry["activityDateTime"],
        "Provisioning activity",
        "1.0",
        "ProvisioningLogs",
        status[:1].upper() + status[1:],
        error.get("errorCode") or "None",
        error.get("reason") or "",
        entry.get("durationInMilliseconds"),
        entry.get("tenantId"),
        entry.get("changeId"),
        entry.get("cycleId"),
        entry.get("id"),
        _dumps(entry.get("initiatedBy")),
        entry.get("jobId"),
        _dumps(entry.get("modifiedProperties") or []),
        str(entry.get("provisioningAction") or "")[:1].upper()
        + str(entry.get("provisioningAction") or "")[1:],
        _dumps({"status": status, "errorInformation": error or None}),
        _dumps(entry.get("provisioningSteps") or []),
        _dumps({"Id": sp.get("id"), "Name": sp.get("displayName")}),
        _dumps(
            {
                "Id": source.get("id"),
                "Name": source.get("displayName"),
                "identityType": source.get("identityType"),
                "details": source.get("details") or {},
            }
        ),
        _dumps(entry.get("targetIdentity")),
        _dumps(entry.get("targetSystem")),
        PROVISIONING_TABLE,
    )


def audit_row(audit: dict) -> tuple:
    """One AuditLogs row (in :data:`AUDIT_COLUMNS` order) for a Graph directoryAudit.

    inference: the mapping (OperationName = activityDisplayName, Result = result, ResultReason = resultReason,
    AdditionalDetails/InitiatedBy/TargetResources as JSON text) follows the table reference's column names.
    """
    return (
        None,
        "Azure AD",
        audit["activityDateTime"],
        audit.get("activityDisplayName"),
        "1.0",
        audit.get("category"),
        "0" if str(audit.get("result", "")).lower() == "success" else "1",
        "None",
        "",
        0,
        audit.get("correlationId"),
        "Microsoft.aadiam",
        "4",
        _dumps(audit.get("additionalDetails") or []),
        audit.get("id"),
        _dumps(audit.get("initiatedBy")),
        audit.get("loggedByService"),
        audit.get("result"),
        audit.get("resultReason"),
        _dumps(audit.get("targetResources") or []),
        None,
        audit.get("activityDisplayName"),
        audit["activityDateTime"],
        audit.get("operationType"),
        AUDIT_TABLE,
    )


# ---------------------------------------------------------------------------------------------------------
# Loading: entries rendered in worker processes, written as Parquet, read by DuckDB


_FORK_TENANT: Any = None  # the tenant a forked worker renders from


def _render_part(task: tuple[int, list[tuple[int, int, int, int]], str]) -> tuple[int, str]:
    """Render (app index, cycle position, first, last) slices into one Parquet file of Graph entries as JSON
    text (one ``json.dumps`` per entry; DuckDB maps them to the table's columns, see :data:`_FROM_ENTRY`);
    returns the row count and the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from provkit.sim.entries import render_entry

    part, slices, folder = task
    tenant = _FORK_TENANT
    texts: list[str] = []
    for app_index, cycle_pos, first, last in slices:
        app = tenant.apps[app_index]
        cycle = app.timeline().cycles[cycle_pos]
        if getattr(
            tenant, "late_share", 0
        ):  # late entries reach the workspace when Graph has them, not before
            written = tenant.written
            positions = [
                i for i in range(first, last) if written(cycle.entry_time(i), app_index, cycle.no, i)
            ]
        else:
            positions = range(first, last)
        texts.extend(_dumps(render_entry(app, cycle, i)) for i in positions)
    table = pa.Table.from_arrays([pa.array(texts, pa.string())], names=["entry"])
    path = os.path.join(folder, f"part-{part:04d}.parquet")
    pq.write_table(table, path, compression="none")
    return len(texts), path


def _cap(expr: str) -> str:
    return f"(upper(left({expr}, 1)) || substr({expr}, 2))"


# The mapping of :func:`la_row`, in SQL over the entry's JSON, parsed once by ``json_transform`` into the struct
# below (DuckDB's JSON functions run in C++ on every core; the same mapping in Python costs nearly as much as
# rendering the entry). A test checks that both agree, column by column.
_ENTRY_STRUCT = {
    "id": "VARCHAR",
    "activityDateTime": "VARCHAR",
    "tenantId": "VARCHAR",
    "jobId": "VARCHAR",
    "cycleId": "VARCHAR",
    "changeId": "VARCHAR",
    "provisioningAction": "VARCHAR",
    "durationInMilliseconds": "BIGINT",
    "initiatedBy": "JSON",
    "servicePrincipal": {"id": "VARCHAR", "displayName": "VARCHAR"},
    "targetSystem": "JSON",
    "sourceIdentity": {
        "id": "VARCHAR",
        "displayName": "VARCHAR",
        "identityType": "VARCHAR",
        "details": "JSON",
    },
    "targetIdentity": "JSON",
    "provisioningStatusInfo": {"status": "VARCHAR", "errorInformation": "JSON"},
    "provisioningSteps": "JSON",
    "modifiedProperties": "JSON",
}
_ERROR = "x.provisioningStatusInfo.errorInformation"
_FROM_ENTRY = {
    "TenantId": "?",
    "SourceSystem": "'Azure AD'",
    "TimeGenerated": "CAST(rtrim(left(x.activityDateTime, 26), 'Z') AS TIMESTAMP)",
    "OperationName": "'Provisioning activity'",
    "OperationVersion": "'1.0'",
    "Category": "'ProvisioningLogs'",
    "ResultType": _cap("coalesce(x.provisioningStatusInfo.status, '')"),
    "ResultSignature": f"coalesce(nullif({_ERROR}->>'$.errorCode', ''), 'None')",
    "ResultDescription": f"coalesce({_ERROR}->>'$.reason', '')",
    "DurationMs": "x.durationInMilliseconds",
    "AADTenantId": "x.tenantId",
    "ChangeId": "x.changeId",
    "CycleId": "x.cycleId",
    "Id": "x.id",
    "InitiatedBy": "CAST(coalesce(x.initiatedBy, 'null'::JSON) AS VARCHAR)",
    "JobId": "x.jobId",
    "ModifiedProperties": "CAST(coalesce(x.modifiedProperties, '[]'::JSON) AS VARCHAR)",
    "ProvisioningAction": _cap("coalesce(x.provisioningAction, '')"),
    "ProvisioningStatusInfo": "CAST(json_object('status', coalesce(x.provisioningStatusInfo.status, ''), "
    f"'errorInformation', CASE WHEN json_type({_ERROR}) = 'OBJECT' AND CAST({_ERROR} AS VARCHAR) <> '{{}}' "
    f"THEN {_ERROR} END) AS VARCHAR)",
    "ProvisioningSteps": "CAST(coalesce(x.provisioningSteps, '[]'::JSON) AS VARCHAR)",
    "ServicePrincipal": "CAST(json_object('Id', x.servicePrincipal.id, 'Name', x.servicePrincipal.displayName) AS VARCHAR)",
    "SourceIdentity": "CAST(json_object('Id', x.sourceIdentity.id, 'Name', x.sourceIdentity.displayName, "
    "'identityType', x.sourceIdentity.identityType, "
    "'details', coalesce(x.sourceIdentity.details, '{}'::JSON)) AS VARCHAR)",
    "TargetIdentity": "CAST(coalesce(x.targetIdentity, 'null'::JSON) AS VARCHAR)",
    "TargetSystem": "CAST(coalesce(x.targetSystem, 'null'::JSON) AS VARCHAR)",
    "Type": f"'{PROVISIONING_TABLE}'",
}


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished child processes (user + system)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _slices(tenant: Any, per_part: int) -> list[list[tuple[int, int, int, int]]]:
    """The tenant's logged entries inside its window, cut into parts of about ``per_part`` entries."""
    parts: list[list[tuple[int, int, int, int]]] = [[]]
    size = 0
    for app_index, app in enumerate(tenant.apps):
        for pos, cycle in enumerate(app.timeline().cycles):
            first = cycle.entries_before(tenant.window_start)
            last = cycle.entries_before(tenant.now_ticks + 1)
            while first < last:
                take = min(last - first, per_part - size)
                parts[-1].append((app_index, pos, first, first + take))
                size += take
                first += take
                if size >= per_part:
                    parts.append([])
                    size = 0
    return [p for p in parts if p]


@dataclass
class LoadReport:
    """What a load put in the tables, its wall-clock ``seconds`` and the CPU seconds it used (this process and
    its worker processes), which a shared machine does not inflate as much as the wall clock."""

    entries: int
    audits: int
    seconds: float
    workers: int
    cpu_seconds: float = 0.0


@dataclass
class Workspace:
    """One simulated workspace over a tenant's history. ``tables_present`` False plays a workspace that Entra's
    diagnostic settings do not feed (no AADProvisioningLogs, no AuditLogs)."""

    tenant: Any
    workspace_id: str
    tables_present: bool = True
    max_rows: int = MAX_ROWS
    workers: int | None = None
    last_load: LoadReport | None = None
    _con: Any = field(default=None, repr=False)
    _loaded_at: tuple | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- loading ------------------------------------------------------------------------------------------------
    def load(self) -> LoadReport:
        """(Re)build the tables from the tenant's current history; returns what was loaded and how long it took."""
        import duckdb_kql

        started = time.perf_counter()
        cpu_before = _cpu_seconds()
        con = duckdb_kql.connect()
        entries = audits = 0
        workers = 0
        if self.tables_present:
            entries, workers = self._load_provisioning(con)
            audits = self._load_audits(con)
        report = LoadReport(
            entries, audits, time.perf_counter() - started, workers, _cpu_seconds() - cpu_before
        )
        self._con, self._loaded_at, self.last_load = con, self._version(), report
        return report

    def _version(self) -> tuple:
        """What the tables were loaded from: the simulated clock and each app's controls (a restart, pause or
        start changes the history from then on), so a query after either sees the history anew."""
        return (self.tenant.now_ticks, tuple(len(getattr(app, "controls", ())) for app in self.tenant.apps))

    def _load_provisioning(self, con: Any) -> tuple[int, int]:
        global _FORK_TENANT
        folder = tempfile.mkdtemp(prefix="provkit-la-")
        try:
            total = sum(
                c.entries_before(self.tenant.now_ticks + 1) - c.entries_before(self.tenant.window_start)
                for a in self.tenant.apps
                for c in a.timeline().cycles
            )
            workers = self.workers or max(1, min(os.cpu_count() or 1, 8))
            if total < 20_000 and not self.workers:  # forking costs more than it saves
                workers = 1
            parts = _slices(self.tenant, max(5_000, -(-total // (workers * 8)) if total else 5_000))
            tasks = [(n, s, folder) for n, s in enumerate(parts)]
            columns = ", ".join(f'"{n}" {t}' for n, t in PROVISIONING_COLUMNS.items())
            con.execute(f"CREATE TABLE {_STORED}{PROVISIONING_TABLE} ({columns})")
            select = ", ".join(f'{expr} AS "{name}"' for name, expr in _FROM_ENTRY.items())
            spec = json.dumps(_ENTRY_STRUCT)
            written = 0

            def insert(result: tuple[int, str]) -> None:
                # Each part goes into DuckDB as soon as it is rendered, while the workers render the next.
                nonlocal written
                count, path = result
                written += count
                con.execute(
                    f"INSERT INTO {_STORED}{PROVISIONING_TABLE} SELECT {select} "
                    "FROM (SELECT json_transform(entry, ?) AS x FROM read_parquet(?))",
                    [self.workspace_id, spec, path],
                )
                os.unlink(path)

            _FORK_TENANT = self.tenant
            try:
                if workers > 1:
                    # fork: the workers inherit the tenant as it is now (restarts and clock moves included).
                    ctx = multiprocessing.get_context("fork")
                    with ctx.Pool(workers) as pool:
                        for result in pool.imap_unordered(_render_part, tasks):
                            insert(result)
                else:
                    for task in tasks:
                        insert(_render_part(task))
            finally:
                _FORK_TENANT = None
            return written, workers
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _load_audits(self, con: Any) -> int:
        from provkit.sim.timefmt import parse_instant

        stamps = [i for i, t in enumerate(AUDIT_COLUMNS.values()) if t == "TIMESTAMP"]
        rows = []
        for audit in self.tenant.directory_audits():
            row = [self.workspace_id, *audit_row(audit)[1:]]
            for i in stamps:
                row[i] = parse_instant(row[i]).astimezone(UTC).replace(tzinfo=None)
            rows.append(row)
        columns = ", ".join(f'"{n}" {t}' for n, t in AUDIT_COLUMNS.items())
        con.execute(f"CREATE TABLE {_STORED}{AUDIT_TABLE} ({columns})")
        if rows:
            marks = ", ".join("?" for _ in AUDIT_COLUMNS)
            con.executemany(f"INSERT INTO {_STORED}{AUDIT_TABLE} VALUES ({marks})", rows)
        return len(rows)

    def _connection(self) -> Any:
        with self._lock:
            if self._con is None or self._loaded_at != self._version():
                self.load()
            return self._con

    # -- querying -----------------------------------------------------------------------------------------------
    def query(self, body: Any) -> dict:
        """Answer a query API body ``{"query", "timespan"}``; raises WorkspaceError for a refused query."""
        import duckdb
        import duckdb_kql
        from duckdb_kql.errors import KqlError, KqlSyntaxError

        if not isinstance(body, dict) or not isinstance(body.get("query"), str) or not body["query"].strip():
            raise WorkspaceError(
                400,
                "BadArgumentError",
                "The request had some invalid properties",
                {"code": "QueryValidationError", "message": "The 'query' property is required."},
            )
        window = parse_timespan(body.get("timespan"), self.tenant.now_ticks)
        con = self._connection()
        text = body["query"]
        with self._lock:
            try:
                self._scope(window, con)
                relation = duckdb_kql.query(con, text)
                names = list(relation.columns)
                types = [_la_type(str(t)) for t in relation.types]
                rows = relation.limit(self.max_rows + 1).fetchall()
            except KqlSyntaxError as exc:
                raise WorkspaceError(
                    400,
                    "BadArgumentError",
                    "The request had some invalid properties",
                    {
                        "code": "SyntaxError",
                        "message": f"A recognition error occurred in the query. {str(exc).split(' expecting ')[0]}",
                    },
                ) from None
            except (KqlError, duckdb.CatalogException, duckdb.BinderException) as exc:
                missing = re.search(r"Table with name (\w+) does not exist", str(exc))
                message = (
                    f"'{missing.group(1)}' operator: Failed to resolve table or column expression named "
                    f"'{missing.group(1)}'"
                    if missing
                    else str(exc).splitlines()[0]
                )
                # inference: the semantic error's nesting (BadArgumentError > SemanticError) as community
                # reports of a missing table show it; the message names the table.
                raise WorkspaceError(
                    400,
                    "BadArgumentError",
                    "The request had some invalid properties",
                    {
                        "code": "SemanticError",
                        "message": "A semantic error occurred.",
                        "innererror": {"code": "SEM0100", "message": message},
                    },
                ) from None
            except duckdb.Error as exc:
                raise WorkspaceError(
                    400,
                    "BadArgumentError",
                    "The request had some invalid properties",
                    {"code": "SemanticError", "message": str(exc).splitlines()[0]},
                ) from None
        answer: dict[str, Any] = {
            "tables": [
                {
                    "name": "PrimaryResult",
                    "columns": [{"name": n, "type": t} for n, t in zip(names, types, strict=True)],
                    "rows": [
                        [_cell(v, t) for v, t in zip(row, types, strict=True)]
                        for row in rows[: self.max_rows]
                    ],
                }
            ]
        }
        if len(rows) > self.max_rows:
            answer["error"] = {
                "code": "PartialError",
                "message": "There were some errors when processing your query.",
                "details": [
                    {
                        "code": "EngineError",
                        "message": "Something went wrong processing your query on the server.",
                        "innererror": {
                            "code": "-2133196797",
                            "message": f"Query result set has exceeded the internal record count limit "
                            f"{self.max_rows} (E_QUERY_RESULT_SET_TOO_LARGE).",
                            "severity": 2,
                            "severityName": "Error",
                        },
                    }
                ],
            }
        return answer

    def _scope(self, window: tuple[datetime, datetime] | None, con: Any) -> None:
        """Apply the request's timespan to every table, as the service does: each table is a view over the
        stored rows whose TimeGenerated falls in the window (all rows without a timespan)."""
        where = ""
        if window is not None:
            start, end = (w.astimezone(UTC).replace(tzinfo=None) for w in window)
            where = f" WHERE TimeGenerated >= TIMESTAMP '{start.isoformat()}' AND TimeGenerated < TIMESTAMP '{end.isoformat()}'"
        if self.tables_present:
            for table in (PROVISIONING_TABLE, AUDIT_TABLE):
                con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {_STORED}{table}{where}")


def _la_type(duck_type: str) -> str:
    t = duck_type.upper()
    if t.startswith("TIMESTAMP") or t == "DATE":
        return "datetime"
    if t in ("BIGINT", "HUGEINT", "UBIGINT"):
        return "long"
    if t in ("INTEGER", "SMALLINT", "TINYINT", "UINTEGER", "USMALLINT", "UTINYINT"):
        return "int"
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return "real"
    if t == "BOOLEAN":
        return "bool"
    if t == "INTERVAL":
        return "timespan"
    if t in ("JSON",) or t.endswith("[]") or t.startswith(("STRUCT", "MAP", "LIST")):
        return "dynamic"
    return "string"


def _cell(value: Any, la_type: str) -> Any:
    if value is None:
        return None
    if la_type == "datetime" and isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if la_type == "timespan" and isinstance(value, timedelta):
        seconds = value.total_seconds()
        hours, rest = divmod(abs(seconds), 3600)
        minutes, secs = divmod(rest, 60)
        return f"{'-' if seconds < 0 else ''}{int(hours):02d}:{int(minutes):02d}:{secs:09.6f}"
    if la_type == "dynamic" and not isinstance(value, str):
        return _dumps(value)
    if la_type == "real" and not isinstance(value, float):
        return float(value)
    return value


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE)


def _duration(text: str) -> timedelta | None:
    m = _DURATION.match(text.strip())
    if not m or not any(m.groups()):
        return None
    days, hours, minutes, seconds = m.groups()
    return timedelta(
        days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0), seconds=float(seconds or 0)
    )


def _instant(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_timespan(value: Any, now_ticks: int) -> tuple[datetime, datetime] | None:
    """The ISO 8601 ``timespan`` of a query body (``PT1H``, ``start/end``, ``start/PT1H``) as (start, end);
    None when absent. The simulated clock is "now" for a bare duration."""
    if value in (None, ""):
        return None
    now = datetime.fromtimestamp(now_ticks / 10**7, tz=UTC)
    text = str(value)
    if "/" in text:
        left, right = text.split("/", 1)
        start = _instant(left)
        end = _instant(right)
        if start is not None and end is None:
            span = _duration(right)
            end = start + span if span is not None else None
        elif start is None and end is not None:
            span = _duration(left)
            start = end - span if span is not None else None
        if start is not None and end is not None:
            return start, end
    else:
        span = _duration(text)
        if span is not None:
            return now - span, now
    raise WorkspaceError(
        400,
        "BadArgumentError",
        "The request had some invalid properties",
        {"code": "QueryValidationError", "message": f"Invalid timespan '{text[:80]}'."},
    )


def load_seconds(tenant: Any, workspace_id: str = "00000000-0000-0000-0000-000000000000") -> LoadReport:
    """Build a workspace over ``tenant`` once and return the load report (for the bench)."""
    return Workspace(tenant, workspace_id).load()


def iter_tables() -> Iterable[str]:
    return (PROVISIONING_TABLE, AUDIT_TABLE)


__all__ = [
    "AUDIT_TABLE",
    "DYNAMIC_COLUMNS",
    "PROVISIONING_COLUMNS",
    "LOG_ANALYTICS_RESOURCE",
    "PROVISIONING_TABLE",
    "LoadReport",
    "Workspace",
    "WorkspaceError",
    "audit_row",
    "la_row",
    "parse_timespan",
]


# ---------------------------------------------------------------------------------------------------------
# The HTTP side: POST /v1/workspaces/{id}/query


def workspace_id_for(tenant_id: str) -> str:
    """The simulated workspace's id: a GUID fixed by the tenant's."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"provkit-sim-workspace/{tenant_id}"))


def handle_request(
    workspace: Workspace,
    authority: Any,
    throttle: Any,
    method: str,
    parts: list[str],
    authorization: str | None,
    raw_body: bytes,
) -> tuple[int, dict, dict[str, str]]:
    """Answer one Log Analytics API request: (status, JSON body, extra headers).

    Error bodies from the errors page of the Log Analytics API docs: 401 ``AuthenticationFailed`` without a
    token, 403 ``InvalidAuthenticationToken`` for a bad one, 403 ``InvalidAuthenticationTokenAudience`` for a
    token issued for another resource, 403 ``InsufficientAccessError`` > ``UnauthorizedClient`` for a caller
    without read access to the workspace. inference: an unknown workspace answers 404 ``PathNotFoundError``.
    """
    from provkit.sim.authority import GraphAuthError

    try:
        if len(parts) != 4 or parts[3] != "query":
            raise WorkspaceError(
                404, "PathNotFoundError", f"The requested path does not exist: /{'/'.join(parts)}"
            )
        if method not in ("POST", "GET"):
            raise WorkspaceError(
                405, "MethodNotAllowed", f"The HTTP method '{method}' is not supported here."
            )
        if not (authorization or "").strip():
            raise WorkspaceError(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        try:
            principal = authority.verify_bearer(authorization, audience=LOG_ANALYTICS_RESOURCE)
        except GraphAuthError as exc:
            if "audience" in exc.message.lower():
                raise WorkspaceError(
                    403,
                    "InvalidAuthenticationTokenAudience",
                    "The access token has been obtained from wrong audience or resource. It should exactly match "
                    f"(including forward slash) with one of the allowed audiences '{LOG_ANALYTICS_RESOURCE}'.",
                ) from None
            raise WorkspaceError(403, "InvalidAuthenticationToken", "The access token is invalid.") from None
        if parts[2].lower() != workspace.workspace_id.lower():
            raise WorkspaceError(
                404,
                "PathNotFoundError",
                f"The requested path does not exist: workspace '{parts[2][:80]}' was not found.",
            )
        # inference: the sim grants workspace read (Log Analytics Reader) to the registrations that may read
        # the Entra reporting logs.
        if not principal.has_permission("AuditLog.Read.All"):
            raise WorkspaceError(
                403,
                "InsufficientAccessError",
                "The provided credentials have insufficient access to perform the requested operation",
                {
                    "code": "UnauthorizedClient",
                    "message": "The service principal does not have sufficient permissions to access this "
                    f"resource: {workspace.workspace_id}",
                },
            )
        wait = throttle.check(f"la:{principal.client_id}") if throttle is not None else None
        if wait is not None:
            return (
                429,
                WorkspaceError(
                    429, "ThrottledError", "Too many requests. Please retry after some time."
                ).body(),
                {"Retry-After": str(max(1, int(wait + 0.999)))},
            )
        try:
            body = json.loads(raw_body) if raw_body else None
        except json.JSONDecodeError:
            raise WorkspaceError(400, "BadArgumentError", "The request body is not valid JSON.") from None
        return 200, workspace.query(body), {}
    except WorkspaceError as exc:
        return exc.status, exc.body(), {}
