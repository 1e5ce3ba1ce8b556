"""A fleet report: the apps of several tenants, each read from its Log Analytics workspace, in one index.

``provkit report --workspace A --workspace B --all-apps`` reports on every workspace it is given. Each workspace
belongs to a tenant: given by the user (``--workspace ID=TENANT``), or read from the workspace's own rows, whose
``AADTenantId`` column is the Entra tenant that wrote them (the ``AADProvisioningLogs`` table reference:
"AADTenantId: Unique Azure AD tenant ID"; its ``TenantId`` column is the Log Analytics workspace id, not the
tenant). A workspace fed by several tenants gives a row per tenant and app.

Sign-in: one multi-tenant app registration (one ``PROVKIT_CLIENT_ID`` and its credential), consented in every
tenant, as a managed service provider has. Finding a workspace's tenant queries the workspace as the home tenant
(``PROVKIT_TENANT_ID``; with Azure Lighthouse the MSP's tenant may read its customers' workspaces); when the
home tenant cannot read a workspace, name its tenant with ``ID=TENANT``. Each tenant is then reported as
``provkit report --workspace ID`` would report it with ``PROVKIT_TENANT_ID`` set to that tenant: its apps and
configuration from that tenant's Graph, its logs from the workspace (signed in to that tenant), each tenant's
run in its own folder under ``OUT``, and ``OUT/index.html`` over them all (one row per tenant and app).

A tenant that fails (no consent for the app, a workspace without the tables, throttling, an unknown workspace)
gets a row saying so, with the error and its remedy, and the other tenants still run.

How tenants run: this process plans (each workspace's tenants: one KQL query per workspace not named as
``ID=TENANT``), then reports the tenants ``tenant_workers`` at a time. With one worker they run one after another
in this process, its environment set to each tenant's settings in turn. With more, each tenant runs in a child
process of its own (started with ``spawn``) whose environment is the shared settings plus that tenant's
``PROVKIT_TENANT_ID``, ``PROVKIT_WORKSPACE_ID`` and (a simulated tenant) ``PROVKIT_DEMO_SEED``: the sign-in
settings, the clients and the notebooks' kernels read them from the environment, so tenants running at once
cannot share one. The settings reach a child through its pipe, never its command line. A child sends its progress
lines to this process, which prints each whole, prefixed with the tenant, and its run (or its error) when it ends;
the index is written once, here, after every tenant. Ctrl+C stops the children: a run a child had not finished
has no ``summary.json``, so no index lists it. See :data:`DEFAULT_TENANT_WORKERS` for the default's reasons.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import re
import signal
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from provkit.data.auth import Settings
from provkit.data.sources import demo as demo_source
from provkit.data.sources.loganalytics import LogAnalytics
from provkit.errors import ConfigError, ProvkitError
from provkit.window import resolve_window
from provkit.workbook.catalog import short_error
from provkit.workbook.pages import write_index
from provkit.workbook.reports import ReportRun, build_report, write_failed_run
from provkit.workbook.session import simulated_tenant_ids

__all__ = [
    "DEFAULT_TENANT_WORKERS",
    "FleetRun",
    "WorkspaceSpec",
    "build_fleet_report",
    "demo_fleet",
    "parse_workspaces",
    "use_environment",
    "workspace_tenants",
]

_TENANT = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.-]*$")  # a tenant id (GUID) or a verified domain
# AADTenantId: "Unique Azure AD tenant ID" (Azure Monitor table reference for AADProvisioningLogs).
TENANT_QUERY = "AADProvisioningLogs | summarize Entries = count() by AADTenantId | order by Entries desc"

DEFAULT_TENANT_WORKERS = 2
"""Tenants ``provkit report`` reports at once. Azure Monitor documents the Log Analytics query API's "User query
throttling" limits (Azure Monitor service limits, "Log queries"): 5 concurrent queries per user (the others wait in
a queue and fail with 429 after 3 minutes there) and 200 queries per 30 seconds per user across all workspaces.
Each tenant's report runs ``workers`` notebooks at once (default 2), each querying its workspace: 2 tenants x 2
notebooks is 4 queries at once, within the 5 even when every tenant is read as one user (an MSP's identity through
Azure Lighthouse). The simulator's own 429 plays the rate limit (provkit.sim.loganalytics)."""
_STOP_WAIT = 10.0  # seconds a child gets to stop (after Ctrl+C, or after its run is in) before it is ended


@dataclass(frozen=True)
class WorkspaceSpec:
    """A workspace of a fleet, and its tenant when the user named it (``ID=TENANT``)."""

    workspace_id: str
    tenant_id: str | None = None

    def __str__(self) -> str:
        return f"{self.workspace_id}={self.tenant_id}" if self.tenant_id else self.workspace_id


def parse_workspaces(values: Sequence[str]) -> list[WorkspaceSpec]:
    """``--workspace`` values (``ID`` or ``ID=TENANT``) as specs, in order, each workspace once; empty values
    (``--workspace`` without an id) are left out. ConfigError naming the value for a malformed one."""
    specs: dict[str, WorkspaceSpec] = {}
    for raw in values:
        text = (raw or "").strip()
        if not text:
            continue
        workspace, sep, tenant = (part.strip() for part in text.partition("="))
        if not workspace or (sep and not tenant) or (tenant and not _TENANT.match(tenant)):
            raise ConfigError(
                f"--workspace {text!r} is not ID or ID=TENANT.",
                remedy="Give the workspace ID (a GUID, on the workspace's Overview page), optionally followed by "
                "=TENANT (the Entra tenant id or domain whose logs it holds), e.g. --workspace "
                "1b2c...=contoso.onmicrosoft.com.",
            )
        key = workspace.lower()
        if key in specs and specs[key].tenant_id and tenant and specs[key].tenant_id != tenant:
            raise ConfigError(
                f"--workspace {workspace} is given twice with different tenants.",
                remedy="Name each workspace once (a workspace fed by several tenants needs no tenant: its rows "
                "name them).",
            )
        if key not in specs or tenant:
            specs[key] = WorkspaceSpec(workspace, tenant or None)
    return list(specs.values())


@dataclass
class FleetRun:
    """What a fleet report wrote: each tenant's run, the failed ones, and the index over them."""

    out: Path
    index: Path
    runs: list[ReportRun] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def apps(self) -> list[dict[str, Any]]:
        """Every row of the fleet: each tenant's apps, then the failures."""
        rows = [app for run in self.runs for app in run.summary["apps"]]
        return rows + [f["apps"][0] for f in self.failures]


@contextlib.contextmanager
def use_environment(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set for the duration (the sign-in settings of one tenant of the fleet: this
    process's clients and the notebooks' kernels read them from the environment)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def workspace_tenants(
    spec: WorkspaceSpec,
    window: tuple[datetime, datetime],
    environ: Mapping[str, str],
) -> list[str]:
    """The Entra tenants whose provisioning logs ``spec``'s workspace holds in ``window``, most entries first
    (the tenant the user named, without a query). Queries the workspace signed in to the home tenant."""
    if spec.tenant_id:
        return [spec.tenant_id]
    la = LogAnalytics.connect(spec.workspace_id, environ=environ)
    frame = la.query(TENANT_QUERY, window)
    tenants = [str(t) for t in frame.get("AADTenantId", []) if str(t or "").strip()]
    if not tenants:
        raise ConfigError(
            f"Workspace {spec.workspace_id} holds no provisioning logs in the window, so its tenant cannot be read "
            "from its rows (their AADTenantId column).",
            remedy=f"Name the tenant: --workspace {spec.workspace_id}=TENANT, or widen the window (--since).",
        )
    return tenants


@dataclass(frozen=True)
class _Tenant:
    """One tenant of a fleet's plan: its workspace, how its tenant was known, the settings it runs with and the
    ``fleet`` record its run summary keeps."""

    workspace: str
    tenant: str
    how: str
    overlay: dict[str, str]
    fleet: dict[str, Any]
    label: str  # what its progress lines start with when tenants run at once


def build_fleet_report(
    apps: Sequence[str] | None,
    specs: Sequence[WorkspaceSpec],
    *,
    out: Path,
    since: str | None = "7d",
    start: str | None = None,
    end: str | None = None,
    environ: Mapping[str, str] | None = None,
    simulated: Mapping[str, int] | None = None,
    log: Callable[[str], None] | None = None,
    tenant_workers: int = 1,
    **report: Any,
) -> FleetRun:
    """Report on ``apps`` (None: every app) of every tenant of the workspaces ``specs`` into ``out``.

    ``environ`` (default ``os.environ``) holds the shared sign-in settings; ``simulated`` maps the tenant ids of
    simulated tenants to their seeds (their pages then say SIMULATED). ``report`` passes on to
    :func:`provkit.workbook.reports.build_report` (notebooks, workers, fail_on, ...). Returns what was written.

    ``tenant_workers`` tenants run at once: 1 (the default here; ``provkit report`` defaults to
    :data:`DEFAULT_TENANT_WORKERS`) runs them one after another in this process; more runs each tenant in a child
    process with its own environment (see the module's docstring), its progress lines prefixed with the tenant.
    Either way a tenant that fails is one failed row, the runs and failures come back in the plan's order, and
    the index is written once at the end. Ctrl+C (KeyboardInterrupt) stops the children and is raised again.
    """
    say = log or (lambda _text: None)
    if not specs:
        raise ConfigError("A fleet report needs at least one workspace.", remedy="Pass --workspace ID.")
    if tenant_workers < 1:
        raise ConfigError("--tenant-workers must be at least 1.")
    began = time.monotonic()
    env = dict(os.environ if environ is None else environ)
    Settings.from_env(env)  # the shared sign-in settings are complete (a clear message before anything runs)
    home = (env.get("PROVKIT_TENANT_ID") or "").strip()
    simulated = {k.lower(): v for k, v in (simulated or {}).items()}
    window = resolve_window(since=since if not (start or end) else None, start=start, end=end)
    fleet_id = uuid.uuid4().hex[:12]
    # The tenants the pages call simulated (PROVKIT_DEMO_SEED's and the default seed's), for the index's banner.
    known_simulated = simulated_tenant_ids()
    result = FleetRun(Path(out), Path(out) / "index.html")
    pairs: list[tuple[WorkspaceSpec, str, str]] = []  # (workspace, tenant, how the tenant was known)
    for spec in specs:
        try:
            with use_environment(env):
                tenants = workspace_tenants(spec, window, env)
        except ProvkitError as exc:
            say(f"Workspace {spec.workspace_id}: {exc}")
            result.failures.append(
                _failed(out, spec.workspace_id, spec.tenant_id, short_error(exc), fleet_id, simulated)
            )
            continue
        how = "given" if spec.tenant_id else "AADTenantId"
        pairs.extend((spec, tenant, how) for tenant in tenants)
    say(
        f"Fleet: {len(pairs)} tenant-workspace pair(s) to report"
        + "".join(f"\n  {s.workspace_id}: tenant {t} ({how})" for s, t, how in pairs)
    )
    repeated = {
        t.lower() for _s, t, _h in pairs if sum(1 for _s2, t2, _h2 in pairs if t2.lower() == t.lower()) > 1
    }
    plan: list[_Tenant] = []
    for spec, tenant, how in pairs:
        overlay = {"PROVKIT_TENANT_ID": tenant, "PROVKIT_WORKSPACE_ID": spec.workspace_id}
        # A simulated tenant is recognised by its seed (banners say SIMULATED); a live one has none.
        seed = simulated.get(tenant.lower())
        if seed is not None:
            overlay["PROVKIT_DEMO_SEED"] = str(seed)
        fleet = {
            "id": fleet_id,
            "tenant_id": tenant,
            "workspace": spec.workspace_id,
            "tenant_from": how,
            "home_tenant": home,
            "simulated": seed is not None or tenant.lower() in known_simulated,
        }
        label = f"{tenant} {spec.workspace_id}" if tenant.lower() in repeated else tenant
        plan.append(_Tenant(spec.workspace_id, tenant, how, overlay, fleet, label))
    job: dict[str, Any] = {
        "apps": list(apps) if apps else None,
        "window": window,
        "since": since,
        "start": start,
        "end": end,
        "out": Path(out),
        "report": dict(report),
    }
    finished: dict[int, ReportRun | dict[str, Any]] = {}

    def finish(number: int, outcome: ReportRun | str) -> None:
        """A tenant's run, or its failed run written as soon as it failed (an error's text)."""
        planned = plan[number]
        finished[number] = (
            outcome
            if isinstance(outcome, ReportRun)
            else _failed(out, planned.workspace, planned.tenant, outcome, fleet_id, simulated, planned.how)
        )

    if tenant_workers == 1 or len(plan) <= 1:
        for number, planned in enumerate(plan):
            finish(number, _run_here(planned, env, job, say, log))
    else:
        _run_children(plan, env, job, min(tenant_workers, len(plan)), say, finish)
    for number in range(len(plan)):  # in the plan's order, however they finished
        outcome = finished[number]
        if isinstance(outcome, ReportRun):
            result.runs.append(outcome)
        else:
            result.failures.append(outcome)
    result.index = write_index(Path(out))
    result.seconds = time.monotonic() - began
    return result


def _report_tenant(
    tenant: _Tenant, env: Mapping[str, str], job: Mapping[str, Any], log: Callable[[str], None] | None
) -> ReportRun:
    """One tenant's run, with the environment already set to its settings (``env``)."""
    # Signed in to this tenant, the workspace answers and holds the tables: else one row says why, rather than
    # one per app.
    LogAnalytics.connect(tenant.workspace, environ=env).check_tables(job["window"])
    return build_report(
        job["apps"],
        out=job["out"],
        source="graph",
        since=job["since"],
        start=job["start"],
        end=job["end"],
        workspace=tenant.workspace,
        fleet=dict(tenant.fleet),
        log=log,
        **job["report"],
    )


def _run_here(
    tenant: _Tenant,
    env: Mapping[str, str],
    job: Mapping[str, Any],
    say: Callable[[str], None],
    log: Callable[[str], None] | None,
) -> ReportRun | str:
    """One tenant run in this process (tenants one after another): its run, or its error for the failed row."""
    say(f"Tenant {tenant.tenant}, workspace {tenant.workspace}:")
    settings = {**env, **tenant.overlay}
    try:
        with use_environment(settings):
            return _report_tenant(tenant, settings, job, log)
    except ProvkitError as exc:
        say(f"Tenant {tenant.tenant}, workspace {tenant.workspace}: {exc}")
        return short_error(exc)


def _tenant_process(
    number: int, tenant: _Tenant, env: dict[str, str], job: dict[str, Any], channel: Any
) -> None:
    """A child process's work: one tenant's run, its settings set in this process's environment first. Sends
    ``("log", number, text)`` lines, then ``("run", number, ReportRun)`` or ``("failed", number, error)``."""
    os.environ.update(
        env
    )  # this tenant's settings, read by the clients and inherited by the notebooks' kernels
    try:
        run = _report_tenant(tenant, env, job, lambda text: channel.put(("log", number, text)))
    except ProvkitError as exc:
        channel.put(("log", number, str(exc)))
        channel.put(("failed", number, short_error(exc)))
    except KeyboardInterrupt:
        channel.put(("log", number, "interrupted"))
    except Exception as exc:  # noqa: BLE001 - a defect in one tenant's run is its row; the others go on
        channel.put(("log", number, traceback.format_exc().rstrip()))
        channel.put(("failed", number, f"unexpected error: {type(exc).__name__}: {exc}"))
    else:
        channel.put(("run", number, run))


def _run_children(
    plan: Sequence[_Tenant],
    env: Mapping[str, str],
    job: Mapping[str, Any],
    workers: int,
    say: Callable[[str], None],
    finish: Callable[[int, ReportRun | str], None],
) -> None:
    """The tenants of ``plan``, ``workers`` at a time, each in a child process; ``finish(number, run or error)``
    as each ends."""
    # spawn, not fork: this process holds threads (a simulator's server, the clients' pools), and each child
    # starts clean, reading its settings from the environment it is given.
    context = multiprocessing.get_context("spawn")
    channel = context.Queue()
    waiting = list(enumerate(plan))
    running: dict[int, Any] = {}
    ended: dict[int, float] = {}  # tenant number -> when its run or error came in

    def handle(message: tuple[str, int, Any]) -> None:
        kind, number, value = message
        if kind == "log":
            for line in str(value).splitlines():
                say(f"[{plan[number].label}] {line}")
        else:
            ended[number] = time.monotonic()
            finish(number, value)
            if kind == "run":
                say(
                    f"[{plan[number].label}] done: {len(value.apps)} app(s), state {value.summary.get('state')}"
                )
            if kind == "failed":  # its whole message came line by line before this
                say(f"[{plan[number].label}] failed: {str(value).splitlines()[0] if value else value}")

    try:
        while waiting or running:
            while waiting and len(running) < workers:
                number, tenant = waiting.pop(0)
                say(f"[{tenant.label}] started: workspace {tenant.workspace}")
                settings = {**env, **tenant.overlay}
                child = context.Process(
                    target=_tenant_process,
                    args=(number, tenant, settings, dict(job), channel),
                    name=f"provkit-fleet-{number}",
                )
                child.start()
                running[number] = child
            try:
                handle(channel.get(timeout=0.5))
            except queue.Empty:
                pass
            for number, child in list(running.items()):
                if number in ended:
                    child.join(0.2)  # its run is in: it is ending
                    if child.is_alive() and time.monotonic() - ended[number] > _STOP_WAIT:
                        child.terminate()  # still alive long after (a thread it left behind)
                        child.join(5.0)
                    if not child.is_alive():
                        del running[number]
                elif not child.is_alive():
                    _drain(channel, handle)  # what it sent before it ended
                    if number not in ended:
                        error = (
                            f"The tenant's report process ended unexpectedly (exit code {child.exitcode})."
                        )
                        say(f"[{plan[number].label}] failed: {error}")
                        ended[number] = time.monotonic()
                        finish(number, error)
                    del running[number]
    except KeyboardInterrupt:
        say(f"Interrupted: stopping {len(running)} tenant run(s); their runs are left unfinished.")
        _stop(list(running.values()))
        raise
    finally:
        channel.close()


def _drain(channel: Any, handle: Callable[[tuple[str, int, Any]], None]) -> None:
    """Every message already in ``channel``."""
    while True:
        try:
            handle(channel.get(timeout=0.2))
        except queue.Empty:
            return


def _stop(children: list[Any]) -> None:
    """Stop the children after Ctrl+C: a terminal's Ctrl+C reached them too, so give them time to stop their
    notebooks' kernels; else interrupt them, then end them."""
    deadline = time.monotonic() + 2.0
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
    alive = [child for child in children if child.is_alive()]
    for child in alive:
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGINT)
    deadline = time.monotonic() + _STOP_WAIT
    for child in alive:
        child.join(max(0.0, deadline - time.monotonic()))
    for child in alive:
        if child.is_alive():
            child.terminate()
            child.join(5.0)
        if child.is_alive():
            child.kill()
            child.join()


def _failed(
    out: Path,
    workspace: str,
    tenant: str | None,
    error: str,
    fleet_id: str,
    simulated: Mapping[str, int],
    how: str | None = None,
) -> dict[str, Any]:
    """The run summary of a tenant (or workspace) that could not be reported (``error``), written under ``out``."""
    fleet = {
        "id": fleet_id,
        "tenant_id": tenant,
        "workspace": workspace,
        "tenant_from": how or ("given" if tenant else None),
        "simulated": bool(tenant and tenant.lower() in simulated),
    }
    return write_failed_run(Path(out), error, fleet=fleet)


def demo_fleet(tenants: int, *, options: Mapping[str, Any] | None = None) -> Any:
    """A simulated fleet of ``tenants`` tenants behind one server (seeds from ``PROVKIT_DEMO_SEED`` or 7 on, its
    clock from ``PROVKIT_DEMO_NOW``, size from ``PROVKIT_DEMO_USERS``/``_DAYS``), each with its own workspace.
    The caller stops it (``stop()``)."""
    if tenants < 1:
        raise ConfigError("--demo-tenants must be at least 1.")
    opts = dict(options or {})
    first = int(opts.pop("seed", 7))
    return demo_source.start_demo_fleet(seeds=[first + i for i in range(tenants)], **opts)
