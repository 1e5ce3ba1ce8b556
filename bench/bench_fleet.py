"""Time a fleet report (``provkit report --workspace A --workspace B ... --all-apps``) with its tenants one after
another and several at once, against a one-workspace baseline measured in the same run: the same report on the
first tenant's workspace alone.

    .venv/bin/python bench/bench_fleet.py [--tenants N] [--users N] [--days N] [--notebook 00] [--runs N]
                                          [--tenant-workers 1,2,3]

One simulator serves the N tenants (provkit.sim.fleet), each with its own Log Analytics workspace; every run signs
in as the same multi-tenant app through the same code a live fleet uses. Each workspace's tables are loaded before
the clock starts (that is the service's work, not the client's). A fleet run also finds each workspace's tenant
from its rows (one KQL query per workspace) and checks each tenant's workspace before its apps. Each run prints
seconds, apps, seconds per tenant, the fleet's time against N times the baseline, and the load average (1 min)
before it. ``--tenant-workers`` lists the settings timed (default ``1,2``: 1 is the tenants one after another in
this process, the behaviour before tenants ran at once; 2 is ``provkit report``'s default). Results go to
bench/results/fleet.json.

What the figure means: the simulator answers every Graph and KQL query in this process, on the same cores as the
tenants' children (the KQL on DuckDB), so the client's work and the service's compete for the CPU. A real fleet's
queries run on Azure's engine, and a tenant's report mostly waits on the network: it gains more from running
tenants at once than this figure shows. On a machine with 2 cores, shared with other work (say so when quoting
it: the load average is printed), the gain is bounded by those 2 cores, and each child's start (a fresh
interpreter importing pandas and the clients, ``spawn``) costs a few seconds that a sequential run pays once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LIVE_SETTINGS = ("PROVKIT_TENANT_ID", "PROVKIT_CLIENT_ID", "PROVKIT_CLIENT_SECRET", "PROVKIT_CERT_PATH")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=3, help="tenants in the fleet (default 3)")
    parser.add_argument("--users", type=int, default=2000, help="users per tenant (default 2000)")
    parser.add_argument("--days", type=int, default=7, help="days of history (default 7)")
    parser.add_argument("--since", default="7d", help="report window (default 7d)")
    parser.add_argument(
        "--notebook",
        action="append",
        help="notebooks to run too (default none: summaries only, as alerting does)",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs of each (default 1; every run printed)")
    parser.add_argument(
        "--tenant-workers",
        default="1,2",
        help="comma-separated tenant workers to time, e.g. 1,2,3 (default 1,2; 1 is the sequential baseline)",
    )
    args = parser.parse_args()
    try:
        settings = [int(n) for n in args.tenant_workers.split(",") if n.strip()]
    except ValueError:
        parser.error(
            f"--tenant-workers {args.tenant_workers!r} is not a comma-separated list of whole numbers."
        )
    if not settings or min(settings) < 1:
        parser.error("--tenant-workers needs whole numbers of at least 1, e.g. 1,2.")

    # Imported here, after sys.path points at this checkout (as bench_report does).
    from provkit.sim.fleet import start_fleet
    from provkit.sim.tenant import Tenant
    from provkit.workbook.fleet import WorkspaceSpec, build_fleet_report, use_environment
    from provkit.workbook.reports import build_report

    for name in LIVE_SETTINGS:
        os.environ.pop(name, None)
    now = datetime.now(UTC).replace(microsecond=0)
    print(f"Building {args.tenants} tenants of {args.users} users, {args.days} days...", flush=True)
    tenants = [
        Tenant(seed=7 + i, users_count=args.users, days=args.days, now=now) for i in range(args.tenants)
    ]
    fleet = start_fleet(tenants, throttle=False)
    results: dict = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()[0]},
        "tenant_workers": settings,
        "tenants": args.tenants,
        "users": args.users,
        "days": args.days,
        "notebooks": args.notebook or [],
        "baseline": [],
        "fleet": [],
    }
    try:
        began = time.perf_counter()
        for app in fleet.apps:
            assert app.workspace is not None
            app.workspace.load()
        print(f"Workspaces loaded in {time.perf_counter() - began:.1f} s (not counted)", flush=True)
        with tempfile.TemporaryDirectory(prefix="provkit-bench-fleet-") as tmp:
            env = {**fleet.env(), "XDG_CACHE_HOME": str(Path(tmp) / "tokens")}
            home = fleet.members[0]
            for n in range(args.runs):
                load = os.getloadavg()[0]
                began = time.perf_counter()
                with use_environment(env):
                    run = build_report(
                        None, out=Path(tmp) / f"one-{n}", source="graph", since=args.since,
                        notebooks=args.notebook or [], workspace=home.workspace_id,
                    )  # fmt: skip
                seconds = time.perf_counter() - began
                results["baseline"].append(
                    {"seconds": round(seconds, 1), "apps": len(run.apps), "load_before": round(load, 2)}
                )
                print(f"baseline: one workspace (tenant {home.tenant_id[:8]}), {len(run.apps)} apps: {seconds:7.1f} s "
                      f"(load {load:.2f} on {os.cpu_count()} cores before)", flush=True)  # fmt: skip
                base = results["baseline"][-1]["seconds"]
                for workers in settings:
                    load = os.getloadavg()[0]
                    began = time.perf_counter()
                    done = build_fleet_report(
                        None, [WorkspaceSpec(m.workspace_id) for m in fleet.members],
                        out=Path(tmp) / f"fleet-{n}-{workers}", since=args.since, environ=env,
                        notebooks=args.notebook or [], tenant_workers=workers,
                    )  # fmt: skip
                    seconds = time.perf_counter() - began
                    apps = len(done.apps)
                    results["fleet"].append(
                        {
                            "tenant_workers": workers,
                            "seconds": round(seconds, 1),
                            "apps": apps,
                            "failed": len(done.failures),
                            "tenants": len(done.runs),
                            "load_before": round(load, 2),
                        }
                    )
                    reported = max(len(done.runs), 1)
                    print(
                        f"fleet, {workers} tenant worker(s): {len(fleet.members)} workspaces, {len(done.runs)} "
                        f"tenants, {apps} apps: {seconds:7.1f} s = {seconds / reported:.1f} s per tenant, "
                        f"{seconds / (base * reported):.2f}x {reported} x the baseline; {len(done.failures)} failed "
                        f"(load {load:.2f} on {os.cpu_count()} cores before)",
                        flush=True,
                    )
    finally:
        fleet.stop()
    path = ROOT / "bench" / "results" / "fleet.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
