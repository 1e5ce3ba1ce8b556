"""The ``provkit`` command: emulator, demo, apps, fetch, import, and the analysis commands.

Exit codes: 0 success; 1 a failure talking to the tenant or reading data; 2 bad usage or parameters (unknown
app, ambiguous name, unknown cloud, empty or reversed window); 130 interrupted. Errors print a short message with
what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from provkit._version import __version__
from provkit.errors import ConfigError, ProvkitError


def _add_source(parser: argparse.ArgumentParser, *, offline: bool = True) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--demo", action="store_true", help="use the simulated tenant (started in-process)")
    if offline:
        group.add_argument(
            "--offline",
            action="store_true",
            help="read the local store only (after fetch or import); no network",
        )
    parser.add_argument(
        "--store", type=Path, help="store folder (default: $PROVKIT_STORE or the user data folder)"
    )


def _add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace",
        nargs="?",
        const="",
        metavar="ID",
        help="read the logs from this Log Analytics workspace with KQL (default ID: $PROVKIT_WORKSPACE_ID; "
        "with --demo, the simulated tenant's workspace)",
    )


def _add_window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="how far back, e.g. 7d, 36h (default 7d)")
    parser.add_argument("--start", help="window start, ISO-8601 (UTC unless an offset is given)")
    parser.add_argument("--end", help="window end, ISO-8601 (default now)")


def _source(args: argparse.Namespace) -> str:
    if getattr(args, "offline", False):
        return "store"
    return "demo" if getattr(args, "demo", False) else "graph"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provkit",
        description="Investigate Microsoft Entra ID application provisioning: logs, cycles, findings, reports.",
        epilog="Settings come from PROVKIT_* environment variables (see the README); secrets only from there.",
    )
    parser.add_argument("--version", action="version", version=f"provkit {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="debug logging (Authorization headers are redacted)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from provkit.sim import cli as sim_cli

    emulator = sub.add_parser(
        "emulator",
        help="serve the simulated tenant (a local Graph-compatible server) on 127.0.0.1",
        description="Serve a simulated Entra tenant over HTTPS on 127.0.0.1: Graph v1.0 (provisioning logs, "
        "jobs, schema, directory) and the identity platform that msal signs in to.",
    )
    sim_cli.add_arguments(emulator)
    emulator.set_defaults(func=sim_cli.run)

    from provkit.sim import tour as demo

    demo_parser = sub.add_parser("demo", help="start the simulated tenant and show what it serves")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(func=demo.run)

    apps = sub.add_parser("apps", help="list the apps that have provisioning jobs, with ids and status")
    _add_source(apps)
    apps.add_argument("--json", action="store_true", help="print JSON instead of a table")
    apps.set_defaults(func=cmd_apps)

    fetch = sub.add_parser(
        "fetch",
        help="pull an app's provisioning logs and job status into the store (a second run fetches only new entries)",
    )
    fetch.add_argument("--app", required=True, help="display name, appId or service principal object id")
    _add_source(fetch, offline=False)
    _add_window(fetch)
    fetch.add_argument("--json", action="store_true", help="print the summary as JSON")
    fetch.set_defaults(func=cmd_fetch)

    fetch.add_argument(
        "--lookback",
        help="how far back from the last fetch's end to ask again for entries Graph logs late (default 3h)",
    )
    store_parser = sub.add_parser(
        "store",
        help="check, repair or compact the local store",
        description="Look after the local store: `check` reads every file and names damaged ones (`--repair` moves "
        "them aside and marks their time ranges for the next fetch); `compact` merges small parts.",
    )
    store_sub = store_parser.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    check = store_sub.add_parser(
        "check", help="read every file of the store; --repair sets damaged ones aside"
    )
    check.add_argument(
        "--repair", action="store_true", help="move damaged files aside and rebuild the manifest"
    )
    compact = store_sub.add_parser("compact", help="merge small parts into one (fetch does this on its own)")
    for p in (check, compact):
        p.add_argument("--app", help="one app (display name, appId or object id); default every app")
        p.add_argument(
            "--store", type=Path, help="store folder (default: $PROVKIT_STORE or the user data folder)"
        )
        p.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=cmd_store_check)
    compact.set_defaults(func=cmd_store_compact)

    imp = sub.add_parser(
        "import",
        help="load admin-center downloads, Log Analytics exports or saved Graph pages into the store",
    )
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imp.add_argument(
        "--store", type=Path, help="store folder (default: $PROVKIT_STORE or the user data folder)"
    )
    imp.add_argument("--app", help="app name to file records under when they carry no service principal")
    imp.add_argument("--json", action="store_true", help="print the counts as JSON")
    imp.set_defaults(func=cmd_import)

    for name, helptext, func in (
        ("cycles", "reconstruct the job's cycles: durations, initial vs incremental, ETAs", "cmd_cycles"),
        ("diagnose", "run the troubleshooting checks and print findings", "cmd_diagnose"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--app", required=True, help="display name, appId or service principal object id")
        _add_source(p)
        _add_workspace(p)
        _add_window(p)
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "diagnose":
            p.add_argument(
                "--validate-credentials",
                action="store_true",
                help="also call validateCredentials with the saved credentials (a POST; it changes nothing)",
            )
        p.set_defaults(func=_lazy(func))

    explain = sub.add_parser("explain", help="the story of one user or group across cycles, and what to do")
    explain.add_argument("--app", required=True, help="display name, appId or service principal object id")
    explain.add_argument("--object", required=True, help="user principal name, display name or object id")
    _add_source(explain)
    _add_workspace(explain)
    _add_window(explain)
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.set_defaults(func=_lazy("cmd_explain"))

    from provkit.workbook import postmortem, reports

    report = sub.add_parser(
        "report",
        help="run the notebooks for one, several or all apps: executed notebooks, HTML pages, summary.json, index",
    )
    reports.add_report_arguments(report)
    report.set_defaults(func=reports.run_report)

    pm = sub.add_parser("postmortem", help="write a Markdown postmortem for an app and a time window")
    postmortem.add_postmortem_arguments(pm)
    pm.set_defaults(func=postmortem.run_postmortem)
    return parser


def _lazy(name: str):
    def run(args: argparse.Namespace) -> int:
        from provkit.cli import commands

        return getattr(commands, name)(args)

    return run


# ---- commands ----------------------------------------------------------------------------------------------
def _client_for(args: argparse.Namespace):
    """(client, tenant_id, label) for the chosen source."""
    if getattr(args, "demo", False):
        from provkit.workbook.session import demo_tenant

        demo = demo_tenant()
        return demo.client, demo.tenant_id, "the simulated tenant"
    from provkit.data.auth import Settings
    from provkit.data.sources.graph import connect

    settings = Settings.from_env()
    return connect(settings), settings.tenant_id, settings.describe()


def cmd_apps(args: argparse.Namespace) -> int:
    if getattr(args, "offline", False):
        from provkit.data.store import Store

        rows = Store(args.store).apps()
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        if not rows:
            print(
                f"The store at {Store(args.store).root} holds no apps yet; run provkit fetch or provkit import."
            )
            return 0
        print(f"{'app':<28} {'service principal id':<38} {'covered (UTC)'}")
        for r in rows:
            span = f"{(r['covered_from'] or '')[:16]} .. {(r['covered_to'] or '')[:16]}"
            if r.get("problem"):
                span = "DAMAGED: " + r["problem"]
            print(f"{(r['display_name'] or '?'):<28} {r['service_principal_id']:<38} {span}")
        damaged = [r for r in rows if r.get("problem")]
        if damaged:
            print(
                f"\n{len(damaged)} app(s) could not be read; run `provkit store check --repair --store "
                f"{Store(args.store).root}`.",
                file=sys.stderr,
            )
        return 0
    from provkit.data.sources.graph import provisioning_apps

    client, _tenant, _label = _client_for(args)
    rows = provisioning_apps(client)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'app':<22} {'status':<11} {'schedule':<9} {'service principal id':<37} {'appId':<37} job id")
    for r in rows:
        print(
            f"{(r['display_name'] or '?'):<22} {(r['status_code'] or '?'):<11} {(r['schedule_state'] or ''):<9} "
            f"{r['service_principal_id']:<37} {(r['app_id'] or ''):<37} {r['job_id']}"
        )
    print(f"\n{len(rows)} app(s) with provisioning jobs.")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from provkit.data.fetch import fetch_app
    from provkit.data.store import Store
    from provkit.window import resolve_window
    from provkit.workbook.session import _progress_bar

    client, tenant_id, _label = _client_for(args)
    now = None
    if args.demo:
        from datetime import UTC, datetime

        from provkit.workbook.session import demo_store_root, demo_tenant

        now = datetime.fromtimestamp(demo_tenant().tenant.now_ticks / 10**7, tz=UTC)
        store = Store(args.store or demo_store_root())
    else:
        store = Store(args.store)
    window = resolve_window(since=args.since, start=args.start, end=args.end, now=now)
    options = {}
    if args.lookback:
        from provkit.window import parse_span

        options["lookback"] = parse_span(args.lookback)
    resolved = client.resolve_app(args.app)
    print(resolved.describe(), file=sys.stderr)
    bar = _progress_bar(resolved.display_name, stats=getattr(client, "stats", None))
    try:
        summary, app_store = fetch_app(
            client,
            store,
            resolved,
            start=window[0],
            end=window[1],
            tenant_id=tenant_id,
            progress=bar,
            **options,
        )
    finally:
        bar.close()
    if args.json:
        print(json.dumps({**summary.as_dict(), "store": str(app_store.path)}, indent=2))
    else:
        print(summary.line())
        print(f"Stored in {app_store.path}")
    return 0


def _app_stores(args: argparse.Namespace):
    """(store, the app folders named by --app, or all of them), damaged ones included."""
    from provkit.data.store import Store

    store = Store(args.store)
    if not args.app:
        return store, store.app_stores()
    wanted = args.app.strip().lower()
    paths = {
        r["path"]
        for r in store.apps(counts=False)
        if wanted
        in (r["service_principal_id"], (r["app_id"] or "").lower(), (r["display_name"] or "").lower())
    }
    if not paths:
        store.find(args.app)  # raises the usual "no app matching" message
    return store, [a for a in store.app_stores() if str(a.path) in paths]


def cmd_store_check(args: argparse.Namespace) -> int:
    store, app_stores = _app_stores(args)
    reports = [a.check(repair=args.repair) for a in app_stores]
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        if not reports:
            print(f"The store at {store.root} holds no apps.")
        for report in reports:
            print(report.text())
        damaged = [r for r in reports if not r.ok]
        if damaged:
            print(
                f"\n{len(damaged)} app(s) with damage. Run `provkit store check --repair --store {store.root}` to set "
                "the damaged files aside (nothing is deleted) and fetch the ranges they held again."
            )
        elif any(r.repaired for r in reports):
            print(
                "\nRepaired. Run `provkit fetch` for these apps to get the ranges marked as not covered again."
            )
    return 0 if all(r.ok for r in reports) else 1


def cmd_store_compact(args: argparse.Namespace) -> int:
    store, app_stores = _app_stores(args)
    results = []
    for app_store in app_stores:
        before = sum(len(v) for v in app_store.manifest()["parts"].values())
        merged = app_store.compact()
        after = sum(len(v) for v in app_store.manifest()["parts"].values())
        results.append(
            {"path": str(app_store.path), "parts_before": before, "parts_after": after, "merged": merged}
        )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['path']}: {r['parts_before']} part(s) -> {r['parts_after']}")
        if not results:
            print(f"The store at {store.root} holds no apps.")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from provkit.data.importer import import_files

    report = import_files(args.files, store=args.store, app=args.app)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.text())
    # Non-zero when nothing usable came in: every file unreadable, or every record rejected.
    return 0 if report.kept else 1


class _RedactSecrets(logging.Filter):
    """Debug output is for sharing: remove the client secret, bearer tokens and anything token-like from every
    record (provkit logs no headers, but libraries underneath may)."""

    def filter(self, record: logging.LogRecord) -> bool:
        import os

        from provkit.data.auth import redact

        text = record.getMessage()
        text = re.sub(
            r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(bearer\s+)?[^\s'\",}]+", r"\1[redacted]", text
        )
        record.msg = redact(text, known=(os.environ.get("PROVKIT_CLIENT_SECRET", ""),))
        record.args = ()
        return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its message
        return int(exc.code or 0)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(_RedactSecrets())
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ProvkitError as exc:
        print(f"provkit: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, (ConfigError, ValueError, LookupError)) else 1
    except KeyboardInterrupt:
        print("provkit: interrupted", file=sys.stderr)
        return 130
    finally:
        from provkit.workbook.session import _DEMO

        for demo in list(_DEMO.values()):
            demo.stop()
        _DEMO.clear()


if __name__ == "__main__":
    raise SystemExit(main())
