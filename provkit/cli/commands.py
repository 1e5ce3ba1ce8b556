"""The analysis commands: ``provkit cycles``, ``diagnose`` and ``explain`` (they share loading and output)."""

from __future__ import annotations

import argparse
import json
import sys

from provkit.errors import ConfigError
from provkit.workbook.session import Loaded, load_evidence


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
        from provkit.analysis.checks.coverage import fetch_command

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
    from provkit.analysis import cycles

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
    from provkit.analysis.checks import findings_json, format_findings, run_checks

    validate = None
    if args.validate_credentials:
        loaded = _load(args, admin=True) if args.demo else _load(args)
        client = _client_of(args)
        evidence = loaded.evidence
        job = evidence.job or {}
        if job.get("id") and client is not None:
            from provkit.analysis.checks.credentials import saved_credentials_validator

            validate = saved_credentials_validator(client, evidence.service_principal_id, job["id"])

    else:
        evidence = _load(args).evidence
    findings = run_checks(evidence, validate_credentials=validate)
    print(findings_json(findings) if args.json else format_findings(findings))
    return 0


def _client_of(args: argparse.Namespace):
    if getattr(args, "offline", False):
        return None
    if args.demo:
        from provkit.workbook.session import demo_tenant

        return demo_tenant(admin=True).client
    from provkit.data.sources.graph import connect

    return connect()


def cmd_explain(args: argparse.Namespace) -> int:
    from provkit.analysis.checks.explain import explain, format_explanation

    evidence = _load(args, logs="object", object_ref=args.object).evidence
    result = explain(evidence, args.object)
    print(json.dumps(result.as_dict(), indent=2, default=str) if args.json else format_explanation(result))
    return 0 if result.object_id else 2  # an object the logs and directory facts do not know: a bad parameter
