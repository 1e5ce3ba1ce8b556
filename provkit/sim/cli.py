"""``provkit emulator``: serve the simulated tenant on 127.0.0.1 until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from provkit.sim.faults import FaultPlan
from provkit.sim.scenarios import SCENARIOS
from provkit.sim.timefmt import parse_instant


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: a free port)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated tenant (default 7)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"serve only this scenario's app (repeatable); default: one app per scenario ({', '.join(SCENARIOS)})",
    )
    parser.add_argument("--users", type=int, default=6000, help="users in the tenant (default 6000)")
    parser.add_argument("--days", type=int, default=7, help="days of history, ending now (default 7)")
    parser.add_argument(
        "--now",
        help="end of the history as an ISO-8601 instant, for reproducible runs (default: the moment it starts)",
    )
    parser.add_argument(
        "--faults",
        help="shares of requests to fault, e.g. 429=0.1,503=0.05,504=0.05,reset=0.02,slow=0.05,truncate=0.02",
    )
    parser.add_argument(
        "--no-throttle", action="store_true", help="turn off the 5-per-10-s /auditLogs throttle"
    )
    parser.add_argument(
        "--env-file", type=Path, help="write the PROVKIT_* settings here once ready (mode 0600)"
    )
    parser.add_argument("--state-dir", type=Path, help="where the TLS and client certificates are written")
    parser.add_argument(
        "--late-entries",
        metavar="SHARE,MINUTES",
        help="write this share of log entries that many minutes after their time, as the service's logging "
        "delay does (e.g. 0.2,120; default none)",
    )
    parser.add_argument(
        "--no-diagnostic-settings",
        action="store_true",
        help="serve a Log Analytics workspace that Entra does not send its logs to (no AADProvisioningLogs)",
    )
    parser.add_argument(
        "--tenants",
        type=int,
        default=1,
        metavar="N",
        help="serve N tenants (seeds SEED..SEED+N-1) from this one server, each with its own workspace, as the "
        "real services serve an MSP; the env file holds the shared settings and lists each WORKSPACE=TENANT",
    )


def parse_late(text: str | None) -> tuple[float, float]:
    """``0.2,120`` -> (0.2, 120.0); (0, 0) when not given; ValueError with the reason otherwise."""
    if not text:
        return 0.0, 0.0
    share, _, minutes = text.partition(",")
    try:
        late = float(share), float(minutes)
    except ValueError:
        raise ValueError(f"{text!r} is not SHARE,MINUTES such as 0.2,120") from None
    if not (0 <= late[0] <= 1 and 0 <= late[1] < 10**6):
        raise ValueError(f"{text!r}: the share must be between 0 and 1 and the minutes at least 0")
    return late


def parse_now(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        return parse_instant(text)
    except ValueError:
        raise SystemExit(  # noqa: B904 - the parse error adds nothing for the user
            f"provkit emulator: --now {text!r} is not an ISO-8601 instant (e.g. 2024-03-10T16:00:00Z)"
        )


def run(args: argparse.Namespace) -> int:
    # Deferred: every provkit command imports this module to build its parser; the server (TLS, tokens, the
    # tenant, Log Analytics) loads only when the emulator runs.
    from provkit.sim.server import start_server
    from provkit.sim.tenant import Tenant

    try:
        faults = FaultPlan.parse(args.faults, seed=args.seed)
    except ValueError as exc:
        print(f"provkit emulator: --faults: {exc}", file=sys.stderr)
        return 2
    try:
        late_share, late_minutes = parse_late(getattr(args, "late_entries", None))
    except ValueError as exc:
        print(f"provkit emulator: --late-entries: {exc}", file=sys.stderr)
        return 2
    if args.users < 50 or args.days < 1:
        print("provkit emulator: --users must be at least 50 and --days at least 1", file=sys.stderr)
        return 2
    now = parse_now(args.now)
    scenarios = tuple(args.scenario) if args.scenario else tuple(SCENARIOS)
    if getattr(args, "tenants", 1) != 1:
        return _run_fleet(args, faults, now, scenarios)
    print(
        f"Building the simulated tenant (seed {args.seed}, {args.users} users, {args.days} days)...",
        file=sys.stderr,
    )
    tenant = Tenant(
        seed=args.seed,
        users_count=args.users,
        days=args.days,
        now=now,
        scenarios=scenarios,
        late_share=late_share,
        late_minutes=late_minutes,
    )
    server = start_server(
        tenant,
        port=args.port,
        faults=faults,
        throttle=not args.no_throttle,
        state_dir=args.state_dir,
        background=True,
        workspace_tables=not getattr(args, "no_diagnostic_settings", False),
    )
    if args.env_file:
        server.write_env_file(args.env_file)
    print(
        f"Serving Microsoft Graph and the identity platform for tenant {tenant.tenant_id} at {server.base_url}"
    )
    print(f"  apps: {', '.join(a.display_name + ' (' + a.scenario.name + ')' for a in tenant.apps)}")
    print(f"  history: {args.days} days ending {tenant.now_text}; trust {server.ca_path}")
    print(f"  Log Analytics workspace {server.workspace.workspace_id} at {server.base_url}/v1")
    if args.env_file:
        print(f"  settings written to {args.env_file}")
    if faults.active:
        print(f"  faults: {args.faults}")
    _serve_until_stopped()
    server.stop()
    return 0


def _run_fleet(args: argparse.Namespace, faults: FaultPlan, now: datetime, scenarios: tuple[str, ...]) -> int:
    """``provkit emulator --tenants N``: several tenants behind one server (see :mod:`provkit.sim.fleet`)."""
    from provkit.sim.fleet import start_fleet  # deferred, as in run()
    from provkit.sim.tenant import Tenant

    if args.tenants < 1:
        print("provkit emulator: --tenants must be at least 1", file=sys.stderr)
        return 2
    seeds = [args.seed + i for i in range(args.tenants)]
    print(f"Building {args.tenants} simulated tenants (seeds {seeds[0]}-{seeds[-1]})...", file=sys.stderr)
    tenants = [
        Tenant(seed=s, users_count=args.users, days=args.days, now=now, scenarios=scenarios) for s in seeds
    ]
    no_tables = (
        frozenset(range(len(seeds))) if getattr(args, "no_diagnostic_settings", False) else frozenset()
    )
    fleet = start_fleet(
        tenants,
        port=args.port,
        faults=faults,
        throttle=not args.no_throttle,
        state_dir=args.state_dir,
        without_diagnostic_settings=no_tables,
    )
    if args.env_file:
        fleet.write_env_file(args.env_file)
    print(f"Serving {args.tenants} tenants (Graph, identity platform, Log Analytics) at {fleet.base_url}")
    for member in fleet.members:
        print(f"  tenant {member.tenant_id} (seed {member.seed}): workspace {member.workspace_id}")
    print(f"  client id {fleet.client_id} in every tenant; trust {fleet.ca_path}")
    if args.env_file:
        print(f"  settings written to {args.env_file}")
    _serve_until_stopped()
    fleet.stop()
    return 0


def _serve_until_stopped() -> None:
    """Wait until Ctrl+C or SIGTERM (the servers run in their own threads)."""
    print("Press Ctrl+C to stop.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
