"""The ``provkit`` command: emulator, demo, apps, fetch, import, and the analysis commands.

Exit codes: 0 success; 1 a failure talking to the tenant or reading data; 2 bad usage or parameters (unknown
app, ambiguous name, unknown cloud, empty or reversed window); 130 interrupted. Errors print a short message with
what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from provkit._version import __version__
from provkit.cli.options import add_workspace
from provkit.cli.report import add_postmortem_arguments, add_report_arguments, run_postmortem, run_report
from provkit.errors import ConfigError, ProvkitError
from provkit.sim import cli as sim_cli
from provkit.sim import tour as demo


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

    emulator = sub.add_parser(
        "emulator",
        help="serve the simulated tenant (a local Graph-compatible server) on 127.0.0.1",
        description="Serve a simulated Entra tenant over HTTPS on 127.0.0.1: Graph v1.0 (provisioning logs, "
        "jobs, schema, directory) and the identity platform that msal signs in to.",
    )
    sim_cli.add_arguments(emulator)
    emulator.set_defaults(func=sim_cli.run)

    demo_parser = sub.add_parser("demo", help="start the simulated tenant and show what it serves")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(func=demo.run)

    apps = sub.add_parser("apps", help="list the apps that have provisioning jobs, with ids and status")
    _add_source(apps)
    apps.add_argument("--json", action="store_true", help="print JSON instead of a table")
    apps.set_defaults(func=_lazy("cmd_apps"))

    fetch = sub.add_parser(
        "fetch",
        help="pull an app's provisioning logs and job status into the store (a second run fetches only new entries)",
    )
    fetch.add_argument("--app", required=True, help="display name, appId or service principal object id")
    _add_source(fetch, offline=False)
    _add_window(fetch)
    fetch.add_argument("--json", action="store_true", help="print the summary as JSON")
    fetch.set_defaults(func=_lazy("cmd_fetch", "fetching"))

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
    check.set_defaults(func=_lazy("cmd_store_check"))
    compact.set_defaults(func=_lazy("cmd_store_compact"))

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
    imp.set_defaults(func=_lazy("cmd_import"))

    for name, helptext, func in (
        ("cycles", "reconstruct the job's cycles: durations, initial vs incremental, ETAs", "cmd_cycles"),
        ("diagnose", "run the troubleshooting checks and print findings", "cmd_diagnose"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--app", required=True, help="display name, appId or service principal object id")
        _add_source(p)
        add_workspace(p)
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
    add_workspace(explain)
    _add_window(explain)
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.set_defaults(func=_lazy("cmd_explain"))

    report = sub.add_parser(
        "report",
        help="run the notebooks for one, several or all apps: executed notebooks, HTML pages, summary.json, index",
    )
    add_report_arguments(report)
    report.set_defaults(func=run_report)

    pm = sub.add_parser("postmortem", help="write a Markdown postmortem for an app and a time window")
    add_postmortem_arguments(pm)
    pm.set_defaults(func=run_postmortem)
    return parser


def _lazy(name: str, module: str = "commands") -> Callable[[argparse.Namespace], int]:
    """The command ``name`` of :mod:`provkit.cli.commands` (or of ``provkit.cli.<module>``), imported when it runs."""

    def run(args: argparse.Namespace) -> int:
        # Deferred on purpose: the commands bring the data layer (pandas, pyarrow), seconds that `provkit --help`,
        # `emulator` and `demo` should not pay. `fetch` has a module of its own that loads them after its first
        # log call (provkit.cli.fetching).
        commands = importlib.import_module(f"provkit.cli.{module}")
        return getattr(commands, name)(args)

    return run


class _RedactSecrets(logging.Filter):
    """Debug output is for sharing: remove the client secret, bearer tokens and anything token-like from every
    record (provkit logs no headers, but libraries underneath may)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from provkit.data.auth import redact  # deferred on purpose: msal and cryptography, for --debug only

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
        # A simulated tenant can only have started if the session module was loaded: import nothing to find out.
        session = sys.modules.get("provkit.workbook.session")
        if session is not None:
            session.stop_demo_tenants()


if __name__ == "__main__":
    raise SystemExit(main())
