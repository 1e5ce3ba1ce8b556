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

import functools
import json
import multiprocessing
import os
import re
import resource
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from queue import Empty
from typing import Any

from provkit.sim import laformat
from provkit.sim.authority import GraphAuthError
from provkit.sim.entries import cycle_id, entry_ids, render_entry, render_outcome
from provkit.sim.laformat import WorkspaceError, cell, dumps, fill_markers, la_type, parse_timespan, sql_text
from provkit.sim.timefmt import parse_instant

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


_dumps = dumps

# Where the workspace keeps each AADProvisioningLogs column (the tables a query sees are views that put them
# together, in PROVISIONING_COLUMNS order):
_CONSTANT = {
    "SourceSystem": "Azure AD",
    "OperationName": "Provisioning activity",
    "OperationVersion": "1.0",
    "Category": "ProvisioningLogs",
    "Type": PROVISIONING_TABLE,
}
_PER_APP = ("AADTenantId", "InitiatedBy", "JobId", "ServicePrincipal", "TargetSystem")  # one row per app
_PER_ENTRY = ("TimeGenerated", "Id", "ChangeId", "CycleId")  # one row per entry, with the (app, cycle, i) key
_SHAPE = (  # per entry too, taken from the entry's outcome (see _shape)
    "ResultType",
    "ResultSignature",
    "ResultDescription",
    "ProvisioningAction",
    "SourceIdentity",
    "TargetIdentity",
)
# Rendered only for the rows a query reads (a DuckDB function of the key): the bulk of an entry's JSON.
_LAZY = ("DurationMs", "ProvisioningStatusInfo", "ProvisioningSteps", "ModifiedProperties")
_INDEX = {name: n for n, name in enumerate(PROVISIONING_COLUMNS)}


def _cap_text(value: Any) -> str:
    text = str(value or "")
    return text[:1].upper() + text[1:]


def _shape(entry: dict) -> tuple:
    """The columns of an entry's row that follow from what happened to its object (the same for every entry
    with the same outcome): ResultType, ResultSignature, ResultDescription, ProvisioningAction, SourceIdentity,
    TargetIdentity (the order of :data:`_SHAPE`)."""
    info = entry.get("provisioningStatusInfo") or {}
    error = info.get("errorInformation") or {}
    source = entry.get("sourceIdentity") or {}
    return (
        _cap_text(info.get("status")),
        error.get("errorCode") or "None",
        error.get("reason") or "",
        _cap_text(entry.get("provisioningAction")),
        _dumps(
            {
                "Id": source.get("id"),
                "Name": source.get("displayName"),
                "identityType": source.get("identityType"),
                "details": source.get("details") or {},
            }
        ),
        _dumps(entry.get("targetIdentity")),
    )


def la_row(entry: dict) -> tuple:
    """One AADProvisioningLogs row (in :data:`PROVISIONING_COLUMNS` order) for a Graph provisioning entry.

    Column meanings from reference 5.2: ResultType is the status (Success/Failure/Skipped), ResultSignature the
    error code, ResultDescription the reason, TenantId the workspace. inference: the JSON columns' key spelling
    (``ServicePrincipal.Id``/``.Name``, ``SourceIdentity.Id``/``.identityType``/``.details``) follows the docs'
    sample queries; the other JSON columns keep Graph's shapes. ``None`` stands for an absent error code.
    """
    info = entry.get("provisioningStatusInfo") or {}
    error = info.get("errorInformation") or {}
    sp = entry.get("servicePrincipal") or {}
    values = dict(zip(_SHAPE, _shape(entry), strict=True))
    values.update(_CONSTANT)
    values.update(
        TenantId=None,  # the workspace id, set at load
        TimeGenerated=entry["activityDateTime"],
        DurationMs=entry.get("durationInMilliseconds"),
        AADTenantId=entry.get("tenantId"),
        ChangeId=entry.get("changeId"),
        CycleId=entry.get("cycleId"),
        Id=entry.get("id"),
        InitiatedBy=_dumps(entry.get("initiatedBy")),
        JobId=entry.get("jobId"),
        ModifiedProperties=_dumps(entry.get("modifiedProperties") or []),
        ProvisioningStatusInfo=_dumps(
            {"status": str(info.get("status") or ""), "errorInformation": error or None}
        ),
        ProvisioningSteps=_dumps(entry.get("provisioningSteps") or []),
        ServicePrincipal=_dumps({"Id": sp.get("id"), "Name": sp.get("displayName")}),
        TargetSystem=_dumps(entry.get("targetSystem")),
    )
    return tuple(values[name] for name in PROVISIONING_COLUMNS)


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
# Loading: entries rendered in worker processes, their rows handed to DuckDB as Arrow tables
#
# A 100,000-user tenant's month is about two million entries of ~3 KB of JSON each. What the load keeps per
# entry is the small part: its key (app, cycle, index), time, ids and the columns of its outcome. The outcome is
# a function of (object, cycle mode, cycle kind, no-op or not), so a worker renders one entry per distinct
# outcome and reuses its columns for the others (a test checks every row against la_row(render_entry(...))).
# The large JSON columns (_LAZY) are rendered when a query reads them, for the rows it reads.

_FORK_TENANT: Any = None  # the tenant a forked worker renders from
_MEMO: dict = {}  # outcome key -> _shape(entry), for the app being rendered (reset per app and per load)
_MEMO_APP: list[int] = [-1]

_STORED_COLUMNS: dict[str, str] = {
    "app": "SMALLINT",
    "cyc": "INTEGER",  # the cycle's position in the app's timeline
    "idx": "INTEGER",
    **{name: PROVISIONING_COLUMNS[name] for name in _PER_ENTRY + _SHAPE},
}


def _render_part(task: tuple[int, list[tuple[int, int, int, int]]]) -> Any:
    """The stored rows (an Arrow table in :data:`_STORED_COLUMNS` order) of (app index, cycle position, first,
    last) slices of the tenant's entries."""
    import pyarrow as pa  # deferred (also below): pyarrow and duckdb load only when a workspace is used

    _part, slices = task
    tenant = _FORK_TENANT
    columns: list[list] = [[] for _ in _STORED_COLUMNS]
    apps, cycles, indexes, micros, entry_id, change, cycle_ids = columns[:7]
    shape_columns = columns[7:]
    shapes: list[tuple] = []
    for app_index, cycle_pos, first, last in slices:
        app = tenant.apps[app_index]
        if _MEMO_APP[0] != app_index:  # outcome keys are per app: keep one app's at a time
            _MEMO.clear()
            _MEMO_APP[0] = app_index
        cycle = app.timeline().cycles[cycle_pos]
        if getattr(tenant, "late_share", 0):  # late entries reach the workspace when Graph has them
            written = tenant.written
            positions: Iterable[int] = [
                i for i in range(first, last) if written(cycle.entry_time(i), app_index, cycle.no, i)
            ]
        else:
            positions = range(first, last)
        this_cycle = cycle_id(app, cycle)
        mode, kind = cycle.mode, cycle.kind
        for i in positions:
            subject = app.subject_for(cycle, i)
            key = (subject, mode, kind, app.is_redundant(cycle, i))
            shape = _MEMO.get(key)
            if shape is None:
                shape = _MEMO[key] = _shape(render_outcome(app, cycle, i, subject))
            ids = entry_ids(app, cycle, i)
            apps.append(app_index)
            cycles.append(cycle_pos)
            indexes.append(i)
            micros.append(cycle.entry_time(i) // 10)  # 100 ns ticks -> microseconds, as Log Analytics keeps
            entry_id.append(ids[0])
            change.append(ids[1])
            cycle_ids.append(this_cycle)
            shapes.append(shape)
    for n, values in enumerate(zip(*shapes, strict=True) if shapes else [[] for _ in _SHAPE]):
        shape_columns[n].extend(values)
    types = {"SMALLINT": pa.int16(), "INTEGER": pa.int32(), "TIMESTAMP": pa.timestamp("us")}
    arrays = [
        pa.array(values, types.get(t, pa.string()))
        for values, t in zip(columns, _STORED_COLUMNS.values(), strict=True)
    ]
    return pa.Table.from_arrays(arrays, names=list(_STORED_COLUMNS))


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished child processes (user + system)."""
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


def _runs(parts: list[list[tuple[int, int, int, int]]], workers: int) -> list[list[tuple[int, list]]]:
    """The parts (in app order) cut into ``workers`` runs of about as many entries each, so that a worker
    renders whole apps (an app's outcomes repeat across its cycles: one rendering each per worker)."""
    sizes = [sum(last - first for _a, _c, first, last in part) for part in parts]
    share = sum(sizes) / workers
    runs: list[list[tuple[int, list]]] = [[] for _ in range(workers)]
    done = 0
    for n, (part, size) in enumerate(zip(parts, sizes, strict=True)):
        runs[min(workers - 1, int((done + size / 2) // share))].append((n, part))
        done += size
    return [run for run in runs if run]


def _work(run: list[tuple[int, list]], queue: Any) -> None:
    """A worker process: render its run's parts, one Arrow table per part on ``queue``, then None."""
    try:
        users = getattr(_FORK_TENANT, "users", None)
        if users is not None and hasattr(users, "_make"):
            # This process's copy of the tenant only: users are made once each (the tenant's own cache is
            # sized for serving pages; a load visits every user in every app's initial cycle).
            users.get = functools.lru_cache(maxsize=users.count)(users._make)
        for task in run:
            queue.put(_render_part(task))
        queue.put(None)
    except BaseException as exc:  # reported by the loading process, which stops the load
        queue.put(f"{type(exc).__name__}: {exc}"[:500])


def _in_workers(runs: list[list[tuple[int, list]]]) -> Iterable[Any]:
    """The parts' Arrow tables as worker processes (one per run, forked: they inherit the tenant as it is now,
    restarts and clock moves included) finish them; a worker's failure ends the load with its message."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue(
        maxsize=2 * len(runs)
    )  # bounded: rendered parts wait in the workers, not in memory here
    processes = [ctx.Process(target=_work, args=(run, queue), daemon=True) for run in runs]
    for process in processes:
        process.start()
    try:
        finished = 0
        while finished < len(processes):
            try:
                item = queue.get(timeout=5)
            except Empty:
                if any(p.exitcode not in (None, 0) for p in processes):
                    raise RuntimeError("a workspace loader process died") from None
                continue
            if item is None:
                finished += 1
            elif isinstance(item, str):
                raise RuntimeError(f"loading the workspace failed: {item}")
            else:
                yield item
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=10)


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
    _cycles: list = field(default_factory=list, repr=False)  # each app's cycles as loaded
    _rendered: dict = field(default_factory=dict, repr=False)  # (app, cycle position, index) -> la_row
    _per_app: dict = field(default_factory=dict, repr=False)  # column -> value by app index

    # -- loading ------------------------------------------------------------------------------------------------
    def load(self) -> LoadReport:
        """(Re)build the tables from the tenant's current history; returns what was loaded and how long it took."""
        import duckdb_kql  # deferred: duckdb loads only when a workspace is used

        started = time.perf_counter()
        cpu_before = _cpu_seconds()
        con = duckdb_kql.connect()
        self._cycles = [app.timeline().cycles for app in self.tenant.apps]
        self._rendered.clear()
        entries = audits = 0
        workers = 0
        if self.tables_present:
            self._register_lazy(con)
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

        tenant = self.tenant
        total = sum(
            c.entries_before(tenant.now_ticks + 1) - c.entries_before(tenant.window_start)
            for cycles in self._cycles
            for c in cycles
        )
        workers = self.workers or max(1, min(os.cpu_count() or 1, 8))
        if total < 20_000 and not self.workers:  # forking costs more than it saves
            workers = 1
        parts = _slices(tenant, max(5_000, -(-total // (workers * 16)) if total else 5_000))
        stored = f"{_STORED}{PROVISIONING_TABLE}"
        con.execute(f"CREATE TABLE {stored} ({', '.join(f'{n} {t}' for n, t in _STORED_COLUMNS.items())})")
        # The per-app columns, from the app's first entry (they are the same in every entry of the app); the
        # view picks them from a list by the row's app (no join: filters reach the stored rows first).
        self._per_app = {name: [] for name in _PER_APP}
        for app_index, cycles in enumerate(self._cycles):
            first = next((c for c in cycles if c.entries), None)
            row = la_row(render_entry(tenant.apps[app_index], first, 0)) if first else None
            for name in _PER_APP:
                self._per_app[name].append(row[_INDEX[name]] if row else None)
        written = 0

        def insert(part: Any) -> None:
            # Each part goes into DuckDB as soon as it is rendered, while the workers render the next.
            nonlocal written
            written += part.num_rows
            con.register("part_rows", part)
            con.execute(f"INSERT INTO {stored} SELECT * FROM part_rows")
            con.unregister("part_rows")

        _FORK_TENANT = tenant
        _MEMO.clear()
        _MEMO_APP[0] = -1
        try:
            if workers > 1:
                for part in _in_workers(_runs(parts, workers)):
                    insert(part)
            else:
                for task in enumerate(parts):
                    insert(_render_part(task))
        finally:
            _FORK_TENANT = None
            _MEMO.clear()
        return written, workers

    def _register_lazy(self, con: Any) -> None:
        """The DuckDB functions that render the :data:`_LAZY` columns of the rows a query reads."""
        import pyarrow as pa  # deferred, as above

        def column(name: str, arrow_type: Any) -> Any:
            at = _INDEX[name]

            def values(app: Any, cyc: Any, idx: Any) -> Any:
                keys = zip(app.to_pylist(), cyc.to_pylist(), idx.to_pylist(), strict=True)
                return pa.array([self._row(*key)[at] for key in keys], arrow_type)

            return values

        for name in _LAZY:
            duck = PROVISIONING_COLUMNS[name]
            arrow_type = pa.int64() if duck == "BIGINT" else pa.string()
            con.create_function(
                f"la_{name.lower()}",
                column(name, arrow_type),
                ["SMALLINT", "INTEGER", "INTEGER"],
                duck,
                type="arrow",
                side_effects=False,
            )

    def _row(self, app_index: int, cycle_pos: int, i: int) -> tuple:
        """la_row of one entry, kept for the other lazy columns of the same row (a query reading several)."""

        key = (app_index, cycle_pos, i)
        row = self._rendered.get(key)
        if row is None:
            if len(self._rendered) > 50_000:
                self._rendered.clear()
            app = self.tenant.apps[app_index]
            row = self._rendered[key] = la_row(render_entry(app, self._cycles[app_index][cycle_pos], i))
        return row

    def _load_audits(self, con: Any) -> int:
        import pyarrow as pa  # deferred, as above

        stamps = {name for name, t in AUDIT_COLUMNS.items() if t == "TIMESTAMP"}
        rows = [[self.workspace_id, *audit_row(audit)[1:]] for audit in self.tenant.directory_audits()]
        arrays: list[Any] = []
        for n, (name, duck) in enumerate(AUDIT_COLUMNS.items()):
            values = [row[n] for row in rows]
            if name in stamps:
                values = [parse_instant(v).astimezone(UTC).replace(tzinfo=None) for v in values]
                arrays.append(pa.array(values, pa.timestamp("us")))
            else:
                arrays.append(pa.array(values, pa.int64() if duck == "BIGINT" else pa.string()))
        audits = pa.Table.from_arrays(arrays, names=list(AUDIT_COLUMNS))
        con.register("audit_rows", audits)
        con.execute(f"CREATE TABLE {_STORED}{AUDIT_TABLE} AS SELECT * FROM audit_rows")
        con.unregister("audit_rows")
        return len(rows)

    def _connection(self) -> Any:
        with self._lock:
            if self._con is None or self._loaded_at != self._version():
                self.load()
            return self._con

    # -- querying -----------------------------------------------------------------------------------------------
    def query(self, body: Any) -> dict:
        """Answer a query API body ``{"query", "timespan"}``; raises WorkspaceError for a refused query."""
        import duckdb  # deferred: only when a workspace is queried
        import duckdb_kql  # deferred: duckdb loads only when a workspace is used
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
                markers = laformat.passes_through(text, _LAZY)
                self._scope(window, con, markers=markers)
                relation = duckdb_kql.query(con, text)
                names = list(relation.columns)
                types = [la_type(str(t)) for t in relation.types]
                rows = relation.limit(self.max_rows + 1).fetchall()
                if markers:
                    rows = fill_markers(
                        rows, names, _LAZY, lambda column, key: self._row(*key)[_INDEX[column]]
                    )
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
                        [cell(v, t) for v, t in zip(row, types, strict=True)] for row in rows[: self.max_rows]
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

    def _scope(self, window: tuple[datetime, datetime] | None, con: Any, markers: bool = False) -> None:
        """Apply the request's timespan to every table, as the service does: each table is a view over the
        stored rows whose TimeGenerated falls in the window (all rows without a timespan). With ``markers``
        the lazy columns hold markers, filled in by :meth:`_fill`."""
        where = ""
        if window is not None:
            start, end = (w.astimezone(UTC).replace(tzinfo=None) for w in window)
            where = f" WHERE TimeGenerated >= TIMESTAMP '{start.isoformat()}' AND TimeGenerated < TIMESTAMP '{end.isoformat()}'"
        if not self.tables_present:
            return
        con.execute(f"CREATE OR REPLACE VIEW {AUDIT_TABLE} AS SELECT * FROM {_STORED}{AUDIT_TABLE}{where}")
        columns = []
        for name in PROVISIONING_COLUMNS:
            if name == "TenantId":
                columns.append(f"'{self.workspace_id}' AS TenantId")
            elif name in _CONSTANT:
                columns.append(f"'{_CONSTANT[name]}' AS {name}")
            elif name in _PER_APP:
                values = ", ".join(sql_text(v) for v in self._per_app.get(name, []))
                columns.append(f"[{values}][s.app + 1] AS {name}" if values else f"NULL::VARCHAR AS {name}")
            elif name in _LAZY and markers:
                columns.append(laformat.marker_sql(name, PROVISIONING_COLUMNS[name]))
            elif name in _LAZY:
                columns.append(f"la_{name.lower()}(s.app, s.cyc, s.idx) AS {name}")
            else:
                columns.append(f"s.{name}")
        con.execute(
            f"CREATE OR REPLACE VIEW {PROVISIONING_TABLE} AS SELECT {', '.join(columns)} "
            f"FROM {_STORED}{PROVISIONING_TABLE} s{where}"
        )


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
    without read access to the workspace. An unknown workspace id: "The requested path does not exist" with code
    ``PathNotFoundError`` (Azure/azure-sdk-for-python issue 32798; inference: the status, 404)."""

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
                "The requested path does not exist",
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
