"""What the data and analysis commands do: ``provkit apps``, ``fetch``, ``store check|compact``, ``import``,
``cycles``, ``diagnose`` and ``explain``.

:mod:`provkit.cli.main` loads this module when one of them runs (not for ``--help``, ``emulator`` or ``demo``):
it brings the data layer, pandas and pyarrow.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from provkit.analysis import cycles
from provkit.analysis.checks import findings_json, format_findings, run_checks
from provkit.analysis.checks.coverage import fetch_command
from provkit.analysis.checks.explain import explain, format_explanation
from provkit.cli.fetching import cmd_fetch  # noqa: F401 - the command moved there (it imports less); kept here
from provkit.data import changes
from provkit.data.auth import Settings
from provkit.data.importer import import_files
from provkit.data.sources.graph import connect, provisioning_apps
from provkit.data.store import Store
from provkit.errors import ConfigError
from provkit.workbook.session import Loaded, demo_tenant, load_evidence


def _load(
    args: argparse.Namespace, logs: str = "entries", object_ref: str | None = None, **demo_options
) -> Loaded:
    if args.since and (args.start or args.end):  # load_evidence would silently prefer --start/--end
        raise ConfigError("Give either --since or --start/--end, not both.")
    source = (
        "store" if getattr(args, "offline", False) else ("demo" if getattr(args, "demo", False) else "graph")
    )
    loaded = load_evidence(
        args.app,
        source=source,
        # Offline, no window given means the whole store (and no claim about what it covers).
        since=args.since or ("7d" if not (args.start or args.end or source == "store") else None),
        start=args.start,
        end=args.end,
        store=args.store,
        demo_options=demo_options or None,
        workspace=getattr(args, "workspace", None),
        logs=logs,
        object_ref=object_ref,
    )
    print(loaded.resolved, file=sys.stderr)
    if loaded.fetch is not None:
        print(loaded.fetch.line(), file=sys.stderr)
    gaps = loaded.evidence.coverage_gaps
    if gaps:
        spans = ", ".join(f"{a:%Y-%m-%d %H:%M}..{b:%Y-%m-%d %H:%M}" for a, b in gaps[:5])
        more = f" and {len(gaps) - 5} more" if len(gaps) > 5 else ""
        evidence = loaded.evidence
        print(
            f"Not in the store: {spans}{more} UTC (no fetch covered these ranges of the window; findings "
            f"cannot show what happened in them). Fill them with: "
            f"{fetch_command(evidence.app_id or evidence.service_principal_id, gaps)}",
            file=sys.stderr,
        )
    return loaded


def cmd_cycles(args: argparse.Namespace) -> int:
    # From a workspace, the cycles are summarised in KQL: only per-cycle rows travel.
    evidence = _load(args, logs="cycles").evidence
    table = cycles.cycles_table(evidence)
    result = cycles.summary(evidence, table)
    if args.json:
        print(json.dumps({"summary": result.as_dict(), "cycles": cycles.cycles_as_records(table)}, indent=2))
    else:
        print(cycles.format_cycles(table, result))
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    validate = None
    # From a workspace, what the checks count over every entry is summarised in KQL; only each object's latest
    # entry and the entries the checks filter for travel.
    if args.validate_credentials:
        evidence = (
            _load(args, logs="findings", admin=True) if args.demo else _load(args, logs="findings")
        ).evidence
        # Offline there is no tenant to ask; without a job there is nothing to validate (the checks say so).
        if not getattr(args, "offline", False) and (evidence.job or {}).get("id"):
            # --validate-credentials is the flag that allows this one POST (it changes nothing in the tenant).
            validate = changes.credentials_validator(lambda: _client_of(args), evidence, allow_changes=True)
    else:
        evidence = _load(args, logs="findings").evidence
    findings = run_checks(evidence, validate_credentials=validate)
    print(findings_json(findings) if args.json else format_findings(findings))
    return 0


def _client_of(args: argparse.Namespace) -> Any:
    """A client for the tenant the command reads (the simulated one signed in as its admin for --demo)."""
    if args.demo:
        return demo_tenant(admin=True).client
    return connect()


def cmd_explain(args: argparse.Namespace) -> int:
    evidence = _load(args, logs="object", object_ref=args.object).evidence
    result = explain(evidence, args.object)
    print(json.dumps(result.as_dict(), indent=2, default=str) if args.json else format_explanation(result))
    return 0 if result.object_id else 2  # an object the logs and directory facts do not know: a bad parameter


def _client_for(args: argparse.Namespace):
    """(client, tenant_id, label) for the chosen source."""
    if getattr(args, "demo", False):
        demo = demo_tenant()
        return demo.client, demo.tenant_id, "the simulated tenant"
    settings = Settings.from_env()
    return connect(settings), settings.tenant_id, settings.describe()


def cmd_apps(args: argparse.Namespace) -> int:
    if getattr(args, "offline", False):
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


def _app_stores(args: argparse.Namespace):
    """(store, the app folders named by --app, or all of them), damaged ones included."""
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
    report = import_files(args.files, store=args.store, app=args.app)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.text())
    # Non-zero when nothing usable came in: every file unreadable, or every record rejected.
    return 0 if report.kept else 1
