"""The simulated tenant's Log Analytics workspace: its history in the ``AADProvisioningLogs`` and ``AuditLogs``
schemas, queried with real KQL.

The engine is ``duckdb-kql`` (KQL parsed and translated onto DuckDB): a query is evaluated, never matched
against strings provkit is known to send, and KQL the translator does not cover is refused as a real workspace
refuses bad KQL (400 ``BadArgumentError``). The tables are filled from the same simulated entries that the Graph
endpoints serve, rendered in worker processes (one per core) and loaded into DuckDB through Arrow
(:mod:`provkit.sim.laload`); the tables' columns and the row each entry becomes are in :mod:`provkit.sim.laschema`.

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
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from provkit.sim import laformat
from provkit.sim.authority import GraphAuthError
from provkit.sim.entries import render_entry
from provkit.sim.laformat import WorkspaceError, cell, fill_markers, la_type, parse_timespan, sql_text
from provkit.sim.laload import _STORED_COLUMNS, LoadReport, _cpu_seconds, _slices, rendered_parts
from provkit.sim.laschema import (
    _CONSTANT,
    _INDEX,
    _LAZY,
    _PER_APP,
    AUDIT_COLUMNS,
    AUDIT_TABLE,
    DYNAMIC_COLUMNS,
    PROVISIONING_COLUMNS,
    PROVISIONING_TABLE,
    audit_row,
    la_row,
)
from provkit.sim.timefmt import parse_instant

LOG_ANALYTICS_RESOURCE = "https://api.loganalytics.io"
# Documented service limits of the query API ("Log queries" limits of Azure Monitor): 500,000 records per result.
MAX_ROWS = 500_000
# inference: the per-user query rate limit is documented as 200 requests per 30 s; the 429 body's code
# ("ThrottledError") is not documented with an example, so clients should read the status, not the code.
THROTTLE_LIMIT = 200
THROTTLE_WINDOW = 30.0
_STORED = "stored_"  # the loaded rows; the tables a query sees are views over them, cut to its timespan


@dataclass
class Workspace:
    """One simulated workspace over a tenant's history. ``tables_present`` False plays a workspace that Entra's
    diagnostic settings do not feed (no AADProvisioningLogs, no AuditLogs)."""

    tenant: Any
    workspace_id: str
    tables_present: bool = True
    max_rows: int = MAX_ROWS
    workers: int | None = None
    part_entries: int | None = None  # entries per part a worker renders; by default 1/16 of a worker's share
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
        notices: list[str] = []
        if self.tables_present:
            self._register_lazy(con)
            entries, workers = self._load_provisioning(con, notices)
            audits = self._load_audits(con)
        report = LoadReport(
            entries, audits, time.perf_counter() - started, workers, _cpu_seconds() - cpu_before, notices
        )
        self._con, self._loaded_at, self.last_load = con, self._version(), report
        return report

    def _version(self) -> tuple:
        """What the tables were loaded from: the simulated clock and each app's controls (a restart, pause or
        start changes the history from then on), so a query after either sees the history anew."""
        return (self.tenant.now_ticks, tuple(len(getattr(app, "controls", ())) for app in self.tenant.apps))

    def _load_provisioning(self, con: Any, notices: list[str]) -> tuple[int, int]:
        tenant = self.tenant
        total = sum(
            c.entries_before(tenant.now_ticks + 1) - c.entries_before(tenant.window_start)
            for cycles in self._cycles
            for c in cycles
        )
        workers = self.workers or max(1, min(os.cpu_count() or 1, 8))
        if total < 20_000 and not self.workers:  # forking costs more than it saves
            workers = 1
        per_part = self.part_entries or max(5_000, -(-total // (workers * 16)) if total else 5_000)
        parts = _slices(tenant, per_part)
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

        for part in rendered_parts(tenant, parts, workers, notices):
            insert(part)
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
