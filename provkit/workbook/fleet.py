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
"""

from __future__ import annotations

import contextlib
import os
import re
import time
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
    **report: Any,
) -> FleetRun:
    """Report on ``apps`` (None: every app) of every tenant of the workspaces ``specs`` into ``out``.

    ``environ`` (default ``os.environ``) holds the shared sign-in settings; ``simulated`` maps the tenant ids of
    simulated tenants to their seeds (their pages then say SIMULATED). ``report`` passes on to
    :func:`provkit.workbook.reports.build_report` (notebooks, workers, fail_on, ...). Returns what was written.
    """
    say = log or (lambda _text: None)
    if not specs:
        raise ConfigError("A fleet report needs at least one workspace.", remedy="Pass --workspace ID.")
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
    plan: list[tuple[WorkspaceSpec, str, str]] = []  # (workspace, tenant, how the tenant was known)
    for spec in specs:
        try:
            with use_environment(env):
                tenants = workspace_tenants(spec, window, env)
        except ProvkitError as exc:
            say(f"Workspace {spec.workspace_id}: {exc}")
            result.failures.append(_failed(out, spec.workspace_id, spec.tenant_id, exc, fleet_id, simulated))
            continue
        how = "given" if spec.tenant_id else "AADTenantId"
        plan.extend((spec, tenant, how) for tenant in tenants)
    say(
        f"Fleet: {len(plan)} tenant-workspace pair(s) to report"
        + "".join(f"\n  {s.workspace_id}: tenant {t} ({how})" for s, t, how in plan)
    )
    for spec, tenant, how in plan:
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
        say(f"Tenant {tenant}, workspace {spec.workspace_id}:")
        try:
            with use_environment({**env, **overlay}):
                # Signed in to this tenant, the workspace answers and holds the tables: else one row says why,
                # rather than one per app.
                LogAnalytics.connect(spec.workspace_id, environ={**env, **overlay}).check_tables(window)
                run = build_report(
                    apps,
                    out=out,
                    source="graph",
                    since=since,
                    start=start,
                    end=end,
                    workspace=spec.workspace_id,
                    fleet=fleet,
                    log=log,
                    **report,
                )
        except ProvkitError as exc:
            say(f"Tenant {tenant}, workspace {spec.workspace_id}: {exc}")
            result.failures.append(_failed(out, spec.workspace_id, tenant, exc, fleet_id, simulated, how))
            continue
        result.runs.append(run)
    result.index = write_index(Path(out))
    result.seconds = time.monotonic() - began
    return result


def _failed(
    out: Path,
    workspace: str,
    tenant: str | None,
    exc: ProvkitError,
    fleet_id: str,
    simulated: Mapping[str, int],
    how: str | None = None,
) -> dict[str, Any]:
    """The run summary of a tenant (or workspace) that could not be reported, written under ``out``."""
    fleet = {
        "id": fleet_id,
        "tenant_id": tenant,
        "workspace": workspace,
        "tenant_from": how or ("given" if tenant else None),
        "simulated": bool(tenant and tenant.lower() in simulated),
    }
    return write_failed_run(Path(out), short_error(exc), fleet=fleet)


def demo_fleet(tenants: int, *, options: Mapping[str, Any] | None = None) -> Any:
    """A simulated fleet of ``tenants`` tenants behind one server (seeds from ``PROVKIT_DEMO_SEED`` or 7 on, its
    clock from ``PROVKIT_DEMO_NOW``, size from ``PROVKIT_DEMO_USERS``/``_DAYS``), each with its own workspace.
    The caller stops it (``stop()``)."""
    if tenants < 1:
        raise ConfigError("--demo-tenants must be at least 1.")
    opts = dict(options or {})
    first = int(opts.pop("seed", 7))
    return demo_source.start_demo_fleet(seeds=[first + i for i in range(tenants)], **opts)
