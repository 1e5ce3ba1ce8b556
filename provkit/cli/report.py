"""The commands that write for people: ``provkit report`` (the notebooks run with papermill for one app, several
or all of them; see :mod:`provkit.workbook.reports`) and ``provkit postmortem`` (a Markdown write-up of one
incident window; see :mod:`provkit.workbook.postmortem`): their options, checked before anything runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from provkit.cli.options import add_workspace
from provkit.errors import ConfigError
from provkit.window import resolve_window

__all__ = ["add_postmortem_arguments", "add_report_arguments", "run_postmortem", "run_report"]


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``provkit report``."""
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--app", action="append", help="display name, appId or object id (repeat for several apps)"
    )
    target.add_argument("--all-apps", action="store_true", help="every app with a provisioning job")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--demo", action="store_true", help="use the simulated tenant (started in-process)")
    source.add_argument("--offline", action="store_true", help="read the local store only; no network")
    parser.add_argument(
        "--store", type=Path, help="store folder (default: $PROVKIT_STORE or the user data folder)"
    )
    add_workspace(parser, "in the report and its notebooks", fleet=True)
    parser.add_argument(
        "--demo-tenants",
        type=int,
        metavar="N",
        help="with --demo: simulate N tenants behind one server, each with its own Log Analytics workspace, and "
        "report on all of them as a fleet (one index row per tenant and app)",
    )
    parser.add_argument("--since", help="how far back, e.g. 7d, 36h (default 7d)")
    parser.add_argument("--start", help="window start, ISO-8601 (UTC unless an offset is given)")
    parser.add_argument("--end", help="window end, ISO-8601 (default now)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default reports)")
    parser.add_argument(
        "--fail-on",
        choices=("warning", "error"),
        help="exit with 3 when an app has findings of this severity or worse (for alerting)",
    )
    parser.add_argument(
        "--notebook",
        action="append",
        dest="notebooks",
        help="notebook to run, e.g. 00-triage or 07 (repeat; default 00 to 05)",
    )
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="write summary.json and the index without running notebooks (the quickest check for alerting)",
    )
    parser.add_argument("--notebooks-dir", type=Path, help="folder holding the workbook notebooks")
    parser.add_argument("--workers", type=int, default=2, help="notebooks run at once (default 2)")
    parser.add_argument(
        "--tenant-workers",
        type=int,
        metavar="N",
        help="fleet reports (several --workspace, or --demo-tenants): tenants reported at once, each in a process "
        "of its own with its own settings (default 2: with --workers 2, four queries at once, within Log "
        "Analytics' five concurrent queries per user; 1 runs them one after another)",
    )
    parser.add_argument("--show-input", action="store_true", help="keep the code cells in the HTML pages")


def run_report(args: argparse.Namespace) -> int:
    """``provkit report``: run, print progress to stderr and the index's path to stdout; the exit codes are
    :mod:`provkit.workbook.reports`'."""
    # Deferred on purpose (as every workbook import here): the report machinery brings pandas, the data layer
    # and the checks, seconds that `provkit --help` and the other commands should not pay.
    from provkit.data.auth import Settings
    from provkit.workbook.fleet import parse_workspaces
    from provkit.workbook.reports import EXIT_FINDINGS, build_report, exit_code

    if not (args.app or args.all_apps):
        raise ConfigError("Name the apps to report on.", remedy="Use --app APP (repeatable) or --all-apps.")
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1.")
    source = "store" if args.offline else ("demo" if args.demo else "graph")
    values = getattr(args, "workspace", None)
    if values and len(values) > 1 and "" in values and source != "demo":
        # --workspace without an id beside others: the default workspace is one of the fleet's
        default = (os.environ.get("PROVKIT_WORKSPACE_ID") or "").strip()
        if not default:
            raise ConfigError(
                "--workspace without an id needs PROVKIT_WORKSPACE_ID.",
                remedy="Give every workspace its id: --workspace ID (repeatable), or set PROVKIT_WORKSPACE_ID.",
            )
        values = [value or default for value in values]
    specs = parse_workspaces(values or [])
    demo_tenants = getattr(args, "demo_tenants", None)
    if demo_tenants is not None or len(specs) > 1 or any(spec.tenant_id for spec in specs):
        return _run_fleet(args, source, specs, demo_tenants)
    if getattr(args, "tenant_workers", None) is not None:
        raise ConfigError(
            "--tenant-workers is for fleet reports.",
            remedy="Report on several workspaces (--workspace A --workspace B) or simulated tenants "
            "(--demo --demo-tenants N), or drop --tenant-workers (--workers sets the notebooks run at once).",
        )
    workspace = None if values is None else (specs[0].workspace_id if specs else "")
    if workspace is not None and source == "store":
        raise ConfigError(
            "A Log Analytics workspace cannot be read offline.",
            remedy="Drop --offline to query the workspace, or drop --workspace to read the store.",
        )
    # Bad parameters stop the run before anything is fetched or written (exit 2), rather than failing per app.
    resolve_window(since=args.since, start=args.start, end=args.end)
    if source == "graph":
        Settings.from_env()  # the sign-in settings are complete (a clear message before anything runs)
    since = args.since or ("7d" if not (args.start or args.end) else None)
    started = time.monotonic()
    run = build_report(
        None if args.all_apps else args.app,
        out=args.out,
        source=source,
        since=since,
        start=args.start,
        end=args.end,
        store=args.store,
        notebooks=[] if args.summary_only else args.notebooks,
        notebooks_dir=args.notebooks_dir,
        workers=args.workers,
        hide_input=not args.show_input,
        fail_on=args.fail_on,
        log=lambda text: print(text, file=sys.stderr, flush=True),
        workspace=workspace,
    )
    code = exit_code(run.summary, args.fail_on)
    bad = [a["app"].get("display_name") for a in run.apps if a.get("bad_parameter")]
    if bad:
        code = 2  # a named app that does not resolve is a usage error (the other apps were still reported)
        print(f"provkit report: could not resolve {', '.join(map(repr, bad))}; exit code 2.", file=sys.stderr)
    print(
        f"Report {run.summary['run_id']}: {len(run.apps)} app(s), state {run.summary['state']}, "
        f"{time.monotonic() - started:.1f} s; written to {run.run_dir}",
        file=sys.stderr,
    )
    if code == EXIT_FINDINGS:
        print(f"Findings at or above --fail-on {args.fail_on}: exit code {code}.", file=sys.stderr)
    print(run.index.resolve())
    return code


def _run_fleet(args: argparse.Namespace, source: str, specs: list[Any], demo_tenants: int | None) -> int:
    """``provkit report`` over several workspaces (or simulated tenants): one run per tenant, ``--tenant-workers``
    tenants at once (each in a child process), one index."""
    # Deferred on purpose, as in run_report.
    from provkit.workbook.fleet import DEFAULT_TENANT_WORKERS, WorkspaceSpec, build_fleet_report, demo_fleet
    from provkit.workbook.reports import EXIT_FAILED, EXIT_FINDINGS, exit_code
    from provkit.workbook.session import demo_options_from_env, demo_size_from_env

    if source == "store":
        raise ConfigError(
            "A Log Analytics workspace cannot be read offline.",
            remedy="Drop --offline to query the workspaces, or drop --workspace to read the store.",
        )
    if demo_tenants is not None and source != "demo":
        raise ConfigError("--demo-tenants plays simulated tenants: it needs --demo.", remedy="Add --demo.")
    if source == "demo" and demo_tenants is None:
        raise ConfigError(
            "With --demo, a fleet is several simulated tenants: say how many.",
            remedy="Add --demo-tenants N (each simulated tenant has its own workspace; --workspace ID adds others).",
        )
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1.")
    tenant_workers = getattr(args, "tenant_workers", None)
    tenant_workers = DEFAULT_TENANT_WORKERS if tenant_workers is None else tenant_workers
    if tenant_workers < 1:
        raise ConfigError(
            "--tenant-workers must be at least 1.", remedy="Use 1 to report tenants one by one."
        )
    resolve_window(since=args.since, start=args.start, end=args.end)
    since = args.since or ("7d" if not (args.start or args.end) else None)
    start, end = args.start, args.end
    started = time.monotonic()
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    report = {
        "notebooks": [] if args.summary_only else args.notebooks,
        "notebooks_dir": args.notebooks_dir,
        "workers": args.workers,
        "hide_input": not args.show_input,
        "fail_on": args.fail_on,
    }
    apps = None if args.all_apps else args.app
    demo = None
    cache: tempfile.TemporaryDirectory[str] | None = None
    try:
        environ = None
        simulated: dict[str, int] = {}
        if source == "demo":
            options = {**demo_size_from_env(), **demo_options_from_env()}
            demo = demo_fleet(demo_tenants or 0, options=options)
            # The simulated tenants' tokens stay out of the user's token cache (msal keys a cache by host, not
            # port: a cache shared with another run's simulator would hand out tokens it cannot verify).
            cache = tempfile.TemporaryDirectory(prefix="provkit-fleet-tokens-")
            environ = {**os.environ, **demo.env(), "XDG_CACHE_HOME": cache.name}
            simulated = {m.tenant_id: m.seed for m in demo.members}
            known = {spec.workspace_id.lower() for spec in specs}
            specs = [
                WorkspaceSpec(m.workspace_id) for m in demo.members if m.workspace_id.lower() not in known
            ] + [*specs]
            if options.get("now") is not None and not (start or end):
                # The simulated history ends at PROVKIT_DEMO_NOW: count the window back from there.
                window = resolve_window(since=since, now=options["now"])
                since, start, end = None, window[0].isoformat(), window[1].isoformat()
        fleet = build_fleet_report(
            apps,
            specs,
            out=args.out,
            since=since,
            start=start,
            end=end,
            environ=environ,
            simulated=simulated,
            log=say,
            tenant_workers=tenant_workers,
            **report,
        )
    finally:
        if demo is not None:
            demo.stop()
        if cache is not None:
            cache.cleanup()
    codes = [exit_code(run.summary, args.fail_on) for run in fleet.runs]
    code = (
        EXIT_FAILED
        if fleet.failures or EXIT_FAILED in codes
        else (EXIT_FINDINGS if EXIT_FINDINGS in codes else 0)
    )
    bad = [a["app"].get("display_name") for run in fleet.runs for a in run.apps if a.get("bad_parameter")]
    if bad:
        code = 2
        print(f"provkit report: could not resolve {', '.join(map(repr, bad))}; exit code 2.", file=sys.stderr)
    tenants = {(run.summary.get("fleet") or {}).get("tenant_id") for run in fleet.runs}
    print(
        f"Fleet report: {len(fleet.apps) - len(fleet.failures)} app(s) in {len(tenants)} tenant(s) from "
        f"{len(specs)} workspace(s), {len(fleet.failures)} failed; {time.monotonic() - started:.1f} s; "
        f"written to {fleet.out}",
        file=sys.stderr,
    )
    if code == EXIT_FINDINGS:
        print(f"Findings at or above --fail-on {args.fail_on}: exit code {code}.", file=sys.stderr)
    print(fleet.index.resolve())
    return code


def add_postmortem_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``provkit postmortem``."""
    parser.add_argument("--app", required=True, help="display name, appId or service principal object id")
    parser.add_argument("--start", help="incident window start, ISO-8601 (UTC unless an offset is given)")
    parser.add_argument("--end", help="incident window end, ISO-8601 (default now)")
    parser.add_argument("--since", help="instead of --start/--end: how far back from now, e.g. 2d")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--demo", action="store_true", help="use the simulated tenant (started in-process)")
    source.add_argument("--offline", action="store_true", help="read the local store only; no network")
    parser.add_argument(
        "--store", type=Path, help="store folder (default: $PROVKIT_STORE or the user data folder)"
    )
    add_workspace(parser, "for the incident window (beyond Graph's 30 days)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("reports/postmortems"),
        help="output folder (default reports/postmortems)",
    )
    parser.add_argument(
        "--redact",
        action="store_true",
        help="replace user names and emails with pseudonyms (user-3f9a); PROVKIT_REDACT_KEY keeps them stable",
    )


def run_postmortem(args: argparse.Namespace) -> int:
    """``provkit postmortem``: load the window's evidence, write the write-up, print its path. Returns 0."""
    if not (args.start or args.end or args.since):
        raise ConfigError(
            "A postmortem needs the incident window.",
            remedy="Pass --start and --end (ISO-8601), or --since (e.g. 2d).",
        )
    from provkit.workbook.notebook import load
    from provkit.workbook.postmortem import write_postmortem
    from provkit.workbook.target import Target

    source = "store" if args.offline else ("demo" if args.demo else "graph")
    where = Target(source, args.store, workspace=_workspace_id(args, source))
    loaded = load(args.app, where, since=args.since, start=args.start, end=args.end)
    print(loaded.resolved, file=sys.stderr)
    written = write_postmortem(loaded.evidence, args.out, redact=args.redact, origin=loaded.origin())
    print(written.verdict(), file=sys.stderr)
    print(written.markdown)
    return 0


def _workspace_id(args: argparse.Namespace, source: str) -> str | None:
    """The workspace a command reads (``--workspace`` without an id: $PROVKIT_WORKSPACE_ID, or the simulated
    tenant's with ``--demo``), None without the option."""
    workspace = getattr(args, "workspace", None)
    if workspace is None:
        return None
    if workspace:
        return str(workspace)
    if source == "demo":
        # Deferred on purpose, as the workbook imports above: the simulated tenant's workspace id.
        from provkit.workbook.session import demo_options_from_env, demo_tenant

        return str(demo_tenant(**demo_options_from_env()).server.env()["PROVKIT_WORKSPACE_ID"])
    value = (os.environ.get("PROVKIT_WORKSPACE_ID") or "").strip()
    if not value:
        raise ConfigError(
            "--workspace without an id needs PROVKIT_WORKSPACE_ID.",
            remedy="Pass --workspace ID (the workspace's id, a GUID) or set PROVKIT_WORKSPACE_ID.",
        )
    return value
