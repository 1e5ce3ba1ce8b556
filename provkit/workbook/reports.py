"""Scheduled reports: the workbook's notebooks run with papermill for one app, several or all of them.

A report run fetches each app once (``provkit.workbook.session.load_evidence``) into a store, then runs the notebooks
against that store offline (``source="store"``), two at a time in a small process pool. For each app it writes,
under ``OUT/<run id>/<app>/``:

- the executed notebooks (``00-triage.ipynb``, ...), each a record of its parameters, outputs and errors;
- standalone HTML pages of them (inputs hidden unless asked otherwise), linking to each other, each opening with
  a banner that says which tenant and source the evidence came from. The pages draw their charts with one copy
  of plotly.js in the run folder (``OUT/<run id>/plotly.min.js``, loaded by a plain ``<script src>``) and load
  nothing else: they work opened from disk (file://), over http and offline, with no request to a CDN;
- ``summary.json``: status, findings by severity with their check ids, cycle statistics, the notebooks' outcome.

``OUT/<run id>/summary.json`` gathers the apps of the run, and ``OUT/index.html`` shows every app's latest state
and its trend across all earlier runs in ``OUT``. ``--fail-on warning|error`` turns findings into an exit code
for alerting.

Exit codes of ``provkit report``: 0 done (and nothing at or above ``--fail-on``); 1 an app could not be read or
a notebook failed; 2 bad usage; 3 findings at or above ``--fail-on``.

With a Log Analytics workspace (``--workspace``) nothing goes through the store: each app's logs are queried from
the workspace with KQL (the configuration from Graph), and so are its notebooks' (their ``workspace`` parameter);
summary.json records the workspace and what it sent, the index its tenant and workspace per app. Runs of several
tenants (or workspaces) written to one ``OUT`` make a fleet index: one row per tenant and app;
:mod:`provkit.workbook.fleet` makes such runs from several workspaces in one command, one run per tenant.

Secrets never reach a notebook: its parameters carry ids, times and the store's path, and the notebooks run in
kernels whose environment has no ``PROVKIT_CLIENT_SECRET``; except the notebooks of a live tenant's workspace,
which sign in themselves: their kernel keeps the variable in its environment (never in a parameter or output).

This module plans and runs a report and offers its command-line options; :mod:`provkit.workbook.execute` runs one
notebook in a warm kernel, :mod:`provkit.workbook.pages` writes the HTML pages and the index.
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provkit._version import __version__
from provkit.analysis import cycles
from provkit.analysis.checks import run_checks
from provkit.data.fetch import fetch_apps, plan_fetches
from provkit.data.graph import GraphClient
from provkit.data.sources.graph import connect, provisioning_apps
from provkit.data.store import Store, default_root
from provkit.errors import ConfigError, ProvkitError
from provkit.formatting import slug
from provkit.workbook.catalog import notebooks_dir as default_notebooks_dir
from provkit.workbook.catalog import short_error
from provkit.workbook.execute import execute_notebook, stop_warm_kernel
from provkit.workbook.pages import export_html, write_index
from provkit.workbook.session import (
    check_source,
    demo_options_from_env,
    demo_tenant,
    describe_origin,
    fetch_target,
    load_evidence,
    loaded_after_fetch,
)
from provkit.workbook.target import Target
from provkit.workbook.views import status_row

__all__ = [
    "DEFAULT_NOTEBOOKS",
    "EXIT_FAILED",
    "EXIT_FINDINGS",
    "ReportRun",
    "app_summary",
    "build_report",
    "execute_notebook",
    "exit_code",
    "export_html",
    "write_failed_run",
    "write_index",
]

DEFAULT_NOTEBOOKS = (
    "00-triage",
    "01-is-provisioning-working",
    "02-service-does-not-start",
    "03-credentials",
    "04-skipped-users",
    "05-cycles-and-watermarks",
)
"""Notebooks a report runs unless told otherwise (06 needs an object, 07 is ``provkit postmortem``)."""

SEVERITY_RANK = {"ok": 0, "info": 0, "warning": 1, "error": 2}
EXIT_FAILED = 1
EXIT_FINDINGS = 3


# ---- the run ------------------------------------------------------------------------------------------
@dataclass
class ReportRun:
    """What a report run wrote: its folder, the run summary (as written to summary.json) and the index."""

    run_dir: Path
    summary: dict[str, Any]
    index: Path
    apps: list[dict[str, Any]] = field(default_factory=list)


def _resolve_notebooks(names: Sequence[str] | None, folder: Path) -> list[Path]:
    """Notebook files for names such as ``00-triage``, ``00`` or ``triage`` (None: DEFAULT_NOTEBOOKS; an
    empty list: none, for a summaries-only run)."""
    wanted = list(DEFAULT_NOTEBOOKS if names is None else names)
    if not wanted:
        return []
    available = sorted(folder.glob("[0-9][0-9]-*.ipynb"))
    if not available:
        raise ConfigError(
            f"No workbook notebooks in {folder}.",
            remedy="Run provkit from a checkout of the repository, or pass --notebooks-dir DIR.",
        )
    chosen = []
    for name in wanted:
        key = name.removesuffix(".ipynb").lower()
        match = [p for p in available if p.stem == key or p.stem.startswith(key + "-") or p.stem[3:] == key]
        if len(match) != 1:
            raise ConfigError(
                f"No single notebook matches {name!r}.",
                remedy="Use one of: " + ", ".join(p.stem for p in available) + ".",
            )
        if match[0] not in chosen:
            chosen.append(match[0])
    return chosen


def _new_run_dir(out: Path) -> tuple[str, Path]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    run_id, n = stamp, 1
    while True:  # claimed by mkdir itself: the tenants of a fleet start runs in OUT at once
        try:
            (out / run_id).mkdir()
            return run_id, out / run_id
        except FileExistsError:
            n += 1
            run_id = f"{stamp}-{n}"


def _findings_by_severity(findings: list) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {"error": [], "warning": [], "info": []}
    for f in findings:
        grouped[f.severity].append({"check": f.check, "title": f.title, "count": f.count})
    return grouped


def app_summary(evidence: Any, findings: list, cycle_summary: Any) -> dict[str, Any]:
    """The analysis part of an app's summary.json: status, findings by severity, cycle statistics."""
    grouped = _findings_by_severity(findings)
    counts = {severity: len(items) for severity, items in grouped.items()}
    state = "error" if counts["error"] else ("warning" if counts["warning"] else "ok")
    job = status_row(evidence)
    job.pop("app", None)
    return {
        "app": {
            "display_name": evidence.display_name,
            "service_principal_id": evidence.service_principal_id,
            "app_id": evidence.app_id,
            "tenant_id": evidence.tenant_id,
        },
        "state": state,
        "job": job,
        "counts": counts,
        "checks": {severity: sorted({f["check"] for f in items}) for severity, items in grouped.items()},
        "findings": grouped,
        "cycles": cycle_summary.as_dict(),
    }


class _Fetcher:
    """Reads each app's evidence once, from the tenant (into the store) or from the store alone."""

    def __init__(self, source: str, store: Path | None, workspace: str | None = None) -> None:
        self.source = check_source(source)
        # The Log Analytics workspace the logs are read from ("" its default: $PROVKIT_WORKSPACE_ID, or the
        # simulated tenant's); None: the Graph reporting API, or the store.
        self.workspace = workspace
        if workspace is not None and self.source == "store":
            raise ConfigError(
                "A Log Analytics workspace cannot be read offline.",
                remedy="Drop --offline to query the workspace, or drop --workspace to read the store.",
            )
        self._tmp: tempfile.TemporaryDirectory | None = None
        if store is None and self.source == "demo":
            self._tmp = tempfile.TemporaryDirectory(prefix="provkit-report-store-")
            store = Path(self._tmp.name)
        if store is None:
            store = default_root()
        self.store = Path(store)
        self._client: GraphClient | None = None
        self._fetched: dict[str, Any] = {}  # app name -> Loaded, from the fetch phase

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.source == "demo":
                self._client = demo_tenant(**demo_options_from_env()).client
            else:
                self._client = connect()
        return self._client

    def apps(self) -> list[str]:
        """Every app with a provisioning job (offline: every app in the store), as service principal ids."""
        if self.source == "store":
            return [a["service_principal_id"] for a in Store(self.store).apps()]
        return list(dict.fromkeys(a["service_principal_id"] for a in provisioning_apps(self.client)))

    def fetch_all(
        self,
        apps: Sequence[str],
        *,
        since: str | None,
        start: str | None,
        end: str | None,
        say: Callable[[str], None],
    ) -> None:
        """The fetch phase of a report on several apps: every app fetched before any is analysed, several at a
        time through one client (one pacer), in the order :func:`provkit.data.fetch.plan_fetches` gives, after saying
        how long it should take. An app that cannot be resolved or fetched is left to :meth:`load`, which
        reports it as before."""
        if self.source == "store" or self.workspace is not None or len(apps) < 2:
            return  # a workspace is queried per app: nothing to fetch into the store
        client, tenant_id, store, window = fetch_target(
            self.source,
            since=since if not (start or end) else None,
            start=start,
            end=end,
            store=self.store,
            client=self.client,
            demo_options=demo_options_from_env() if self.source == "demo" else None,
        )
        resolved = {}
        for name in apps:
            try:
                resolved[name] = client.resolve_app(name)
            except ProvkitError:
                continue  # load() reports it
        targets = list({r.service_principal_id: r for r in resolved.values()}.values())
        if not targets:
            return
        plan = plan_fetches(client, store, targets, start=window[0], end=window[1], tenant_id=tenant_id or "")
        say(plan.line())
        began = time.monotonic()

        def done(app: Any, summary: Any, error: BaseException | None) -> None:
            say(f"  fetched {summary.line()}" if summary is not None else f"  {app.display_name}: {error}")

        results = fetch_apps(
            client, store, plan, start=window[0], end=window[1], tenant_id=tenant_id or "", on_done=done
        )
        say(f"Fetch phase: {time.monotonic() - began:.0f} s (estimated {plan.seconds:.0f} s)")
        for name, app in resolved.items():
            result = results.get(app.service_principal_id)
            if isinstance(result, tuple):
                summary, app_store = result
                self._fetched[name] = loaded_after_fetch(
                    summary, app_store, window, self.source, app.describe()
                )

    def load(self, app: str, *, since: str | None, start: str | None, end: str | None) -> Any:
        # Deferred on purpose: the notebook helpers import IPython and ipywidgets, which only an offline report
        # needs here (and every provkit command imports this module to offer the report's options).
        from provkit.workbook.notebook import load

        if app in self._fetched:  # fetched in the fetch phase
            return self._fetched.pop(app)
        if self.source == "store":
            return load(app, Target("store", str(self.store)), since=since, start=start, end=end)
        return load_evidence(
            app,
            source=self.source,
            since=since if not (start or end) else None,
            start=start,
            end=end,
            store=self.store,
            client=self.client if self.source == "graph" else None,
            progress=False,
            demo_options=demo_options_from_env() if self.source == "demo" else None,
            workspace=self.workspace,
            logs="summary",  # from a workspace: counts and cycles summarised in KQL, the entries checks read
        )

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def build_report(
    apps: Sequence[str] | None,
    *,
    out: Path,
    source: str = "graph",
    since: str | None = "7d",
    start: str | None = None,
    end: str | None = None,
    store: Path | None = None,
    notebooks: Sequence[str] | None = None,
    notebooks_dir: Path | None = None,
    workers: int = 2,
    hide_input: bool = True,
    fail_on: str | None = None,
    warm_kernels: bool = True,
    log: Callable[[str], None] | None = None,
    workspace: str | None = None,
    fleet: dict[str, Any] | None = None,
) -> ReportRun:
    """Run a report for ``apps`` (None: every app with a provisioning job) and write it under ``out``.

    Each app is fetched once; its notebooks then read the store offline. An app that cannot be read, or a
    notebook that fails, is recorded in the summaries and the report goes on. ``warm_kernels`` reuses one
    kernel per worker (reset between notebooks) instead of starting one per notebook. Returns what was written.

    With ``workspace`` (a Log Analytics workspace id; "" its default) each app's logs are queried from the
    workspace with KQL, and so are the notebooks' (their ``workspace`` parameter): nothing goes through the store.
    ``fleet`` (from :mod:`provkit.workbook.fleet`: this run is one tenant of a fleet report) is recorded in the
    run's summary.json, for the index.
    """
    say = log or (lambda _text: None)
    out = Path(out)
    started = datetime.now(UTC).isoformat()
    sources = _resolve_notebooks(notebooks, notebooks_dir or default_notebooks_dir())
    fetcher = _Fetcher(source, store, workspace)
    try:
        names = list(apps) if apps else fetcher.apps()
        if not names:
            raise ConfigError(
                "No app to report on.", remedy="Name apps with --app, or check the tenant's apps."
            )
        fetcher.fetch_all(names, since=since, start=start, end=end, say=say)
        run_id, run_dir = _new_run_dir(out)
        generated = datetime.now(UTC).isoformat()
        entries: list[dict[str, Any]] = []
        tasks: list[dict[str, Any]] = []
        used_slugs: set[str] = set()
        for name in names:
            entry, app_tasks = _prepare_app(
                fetcher, name, run_dir, used_slugs, sources, since, start, end, hide_input, say
            )
            entry.update(run_id=run_id, generated_at=generated, source=fetcher.source)
            entries.append(entry)
            tasks.extend(dict(task, warm=warm_kernels) for task in app_tasks)
        results = _run_tasks(tasks, workers, say)
        for entry in entries:
            entry["notebooks"] = [r for r in results if r["app"] == entry["folder"]]
            entry["notebooks_failed"] = sum(1 for r in entry["notebooks"] if r["status"] != "ok")
            if entry["state"] != "failed" and entry["notebooks_failed"]:
                entry["errors"] = [f"{r['name']}: {r['error']}" for r in entry["notebooks"] if r["error"]]
            _write_json(run_dir / entry["folder"] / "summary.json", entry)
        summary = {
            "provkit_version": __version__,
            "run_id": run_id,
            "generated_at": generated,
            "source": fetcher.source,
            "workspaces": sorted({e["workspace"] for e in entries if e.get("workspace")}),
            "window": {"since": since if not (start or end) else None, "start": start, "end": end},
            "fail_on": fail_on,
            "notebooks": [p.stem for p in sources],
            "state": _worst(e["state"] for e in entries),
            "apps": entries,
            "started_at": started,
            "finished_at": datetime.now(UTC).isoformat(),
        }
        if fleet is not None:
            summary["fleet"] = fleet
        _write_json(run_dir / "summary.json", summary)
        index = write_index(out)
        return ReportRun(run_dir, summary, index, entries)
    finally:
        fetcher.close()


def write_failed_run(out: Path, error: str, *, fleet: dict[str, Any]) -> dict[str, Any]:
    """A run folder under ``out`` for a tenant of a fleet that could not be reported at all (sign-in refused, a
    workspace without the tables or unknown): its summary.json holds one failed row for every app of that tenant,
    with ``error``, so the index shows it. Returns the summary."""
    run_id, run_dir = _new_run_dir(Path(out))
    generated = datetime.now(UTC).isoformat()
    entry = {
        "app": {"display_name": "(every app)", "tenant_id": fleet.get("tenant_id")},
        "folder": "",
        "state": "failed",
        "errors": [error],
        "notebooks": [],
        "workspace": fleet.get("workspace"),
        "run_id": run_id,
        "generated_at": generated,
        "source": "graph",
    }
    summary = {
        "provkit_version": __version__,
        "run_id": run_id,
        "generated_at": generated,
        "source": "graph",
        "workspaces": [fleet["workspace"]] if fleet.get("workspace") else [],
        "state": "failed",
        "apps": [entry],
        "fleet": fleet,
    }
    _write_json(run_dir / "summary.json", summary)
    return summary


def _prepare_app(
    fetcher: _Fetcher,
    name: str,
    run_dir: Path,
    used_slugs: set[str],
    sources: list[Path],
    since: str | None,
    start: str | None,
    end: str | None,
    hide_input: bool,
    say: Callable[[str], None],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fetch one app, analyse it, and plan its notebook runs; a failure becomes a 'failed' entry."""
    began = time.monotonic()
    try:
        loaded = fetcher.load(name, since=since, start=start, end=end)
        evidence = loaded.evidence
        table = cycles.cycles_table(evidence)
        entry = app_summary(evidence, run_checks(evidence), cycles.summary(evidence, table))
    except ProvkitError as exc:
        folder = _unique(slug(name), used_slugs)
        (run_dir / folder).mkdir(parents=True)
        say(f"{name}: could not be read: {exc}")  # the message with its remedy and link
        return {
            "app": {"display_name": name},
            "folder": folder,
            "state": "failed",
            "errors": [short_error(exc)],
            # An unknown or ambiguous name, a bad window: the caller's parameters, not the tenant, are at fault.
            "bad_parameter": isinstance(exc, ConfigError | LookupError),
            "notebooks": [],
        }, []
    folder = _unique(slug(evidence.display_name), used_slugs)
    app_dir = run_dir / folder
    app_dir.mkdir(parents=True)
    window = evidence.window or (evidence.now, evidence.now)
    workspace = getattr(loaded, "workspace", None)
    origin = describe_origin(evidence, source=fetcher.source, when=datetime.now(UTC), workspace=workspace)
    entry.update(
        origin=origin,
        folder=folder,
        window={"start": window[0].isoformat(), "end": window[1].isoformat()},
        fetch=loaded.fetch.as_dict() if loaded.fetch is not None else None,
        seconds_to_load=round(time.monotonic() - began, 2),
        errors=[],
        workspace=workspace,
        transfer=_transfer(loaded),
    )
    say(
        f"{evidence.display_name}: {entry['state']} ({entry['counts']['error']} errors, "
        f"{entry['counts']['warning']} warnings), {evidence.entry_count} entries"
    )
    parameters = {
        "app": evidence.service_principal_id,
        "since": None,
        "start": window[0].isoformat(),
        "end": window[1].isoformat(),
        "source": "store",
        "store": str(fetcher.store.resolve()),
        "tenant_id": evidence.tenant_id,
    }
    if workspace:  # the notebooks query the workspace too (the tenant's configuration from Graph)
        parameters.update(source=fetcher.source, store=None, workspace=workspace)
    tasks = []
    for source in sources:
        params = dict(parameters)
        if source.stem.startswith("07-"):
            params["out"] = str((app_dir / "postmortem").resolve())
        tasks.append(
            {
                "input": str(source.resolve()),
                "output": str((app_dir / source.name).resolve()),
                "parameters": params,
                "hide_input": hide_input,
                "title": f"{evidence.display_name}: {source.stem}",
                "siblings": [p.stem for p in sources],
                "banner": origin,
                "app": folder,
            }
        )
    return entry, tasks


def _transfer(loaded: Any) -> dict[str, Any] | None:
    """What a Log Analytics workspace sent for this app (queries, rows, bytes), or None."""
    transfer = getattr(loaded, "transfer", None)
    if transfer is None:
        return None
    return {
        name: getattr(transfer, name)
        for name in ("queries", "rows", "bytes")
        if isinstance(getattr(transfer, name, None), int)
    }


def _unique(slug: str, used: set[str]) -> str:
    candidate, n = slug, 1
    while candidate in used:
        n += 1
        candidate = f"{slug}-{n}"
    used.add(candidate)
    return candidate


def _run_tasks(tasks: list[dict[str, Any]], workers: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Execute notebook tasks, ``workers`` at a time in worker processes (1: in this process, one by one)."""
    results: list[dict[str, Any]] = []
    if not tasks:
        return results
    if workers <= 1:
        try:
            for task in tasks:
                results.append(execute_notebook(task))
                _say_result(results[-1], say)
        finally:
            stop_warm_kernel()
        return results
    # spawn, not fork: this process may hold threads (the demo tenant's server, the Graph client's pool).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(execute_notebook, task) for task in tasks]
        try:
            for future in as_completed(futures):
                results.append(future.result())
                _say_result(results[-1], say)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    order = {(t["app"], Path(t["input"]).stem): i for i, t in enumerate(tasks)}
    return sorted(results, key=lambda r: order[(r["app"], r["name"])])


def _say_result(result: dict[str, Any], say: Callable[[str], None]) -> None:
    text = f"  {result['app']}/{result['name']}: {result['status']} ({result['seconds']:.1f} s)"
    if result["error"]:
        text += f": {result['error']}"
    say(text)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)


def _worst(states: Any) -> str:
    order = {"ok": 0, "warning": 1, "error": 2, "failed": 3}
    worst = max(states, key=lambda s: order.get(s, 0), default="ok")
    return worst


def exit_code(summary: dict[str, Any], fail_on: str | None) -> int:
    """The exit code of a report run: EXIT_FAILED when an app or notebook failed, EXIT_FINDINGS when an app's
    findings reach ``fail_on`` ("warning" or "error"), else 0."""
    apps = summary.get("apps") or []
    if any(a.get("state") == "failed" or a.get("notebooks_failed") for a in apps):
        return EXIT_FAILED
    if fail_on:
        threshold = SEVERITY_RANK[fail_on]
        if any(SEVERITY_RANK.get(a.get("state"), 0) >= threshold for a in apps if a.get("state") != "ok"):
            return EXIT_FINDINGS
    return 0
