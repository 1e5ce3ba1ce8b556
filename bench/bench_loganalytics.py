"""Benchmark: a tenant's provisioning history summarised through KQL in the simulated Log Analytics workspace,
against the Graph reporting API for the same window.

Builds the simulated tenant (``--users``, ``--days``; default 100,000 users and 30 days), serves it, and
measures, in the same run:

- load: the workspace's tables filled from the simulated history (``Workspace.load``: worker processes keep
  each entry's key, time, ids and outcome columns, rendering one entry per distinct outcome; the large JSON
  columns are rendered when a query reads them). Target: under a minute. The baseline, measured in the same
  run: rendering every entry, which the previous loader did before mapping each entry's JSON in DuckDB
  (CPU seconds of a 1% sample, scaled up). The tenant's history (its cycles) is built first and timed apart:
  Graph serves the same history.
- KQL: for every app, the per-cycle summary (:meth:`LogAnalytics.observed_cycles`) over the whole window,
  through HTTPS, msal sign-in and azure-monitor-query, as provkit runs it. Target: under two minutes in all;
  rows transferred at most 1% of the entries summarised.
- Graph, the baseline: the same window's cycles from the same entries as the Graph endpoint serves them
  (``evidence.from_simulator``: rendered in-process, no HTTP, so a lower bound on a real fetch), and the
  fetch time Graph's throttle alone imposes: pages of 1,000 entries at 5 requests per 10 s.
- agreement: cycles from Log Analytics vs Graph per app (count within one, same initial/incremental split).
- diagnose: for every app, ``provkit diagnose --workspace``'s load (``logs="findings"``: the counts the checks
  take over every entry summarised in KQL (objects by their latest state included), the entries of the objects
  a finding is about and the few the checks judge one by one: a healthy object's entries do not travel;
  job status, schema and directory facts from Graph) and the checks; rows and bytes transferred, as a share of
  the entries in the window. The baseline, measured in the same run: the entries-mode load (``logs="entries"``,
  every entry of the window, as diagnose read them before), on the ``--baseline-days`` up to the app's newest
  entry and scaled to the window by its entries (0: the whole window, and then the findings of both are
  compared).

Times are wall-clock (``time.perf_counter``) on a machine that may be shared: the load average is printed.

    python bench/bench_loganalytics.py --users 100000 --days 30
    python bench/bench_loganalytics.py --users 3000 --days 30 --baseline-days 0 --skip-graph
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from provkit.analysis import cycles
from provkit.analysis.checks import findings_json, run_checks
from provkit.analysis.checks.travel import judged_one_by_one
from provkit.data.auth import Settings
from provkit.data.sources.graph import connect
from provkit.data.sources.loganalytics import LogAnalytics, workspace_evidence
from provkit.data.tables import empty_tables, events_from_records
from provkit.sim.entries import render_entry
from provkit.sim.evidence import from_simulator
from provkit.sim.server import start_server
from provkit.sim.tenant import Tenant

GRAPH_PAGE = 1000  # entries per provisioning page at $top=1000 (reference 1.5)
GRAPH_RATE = (5, 10.0)  # requests per seconds, per app and tenant (reference 6.1)


def render_every_entry_cpu(tenant: Tenant, share: float = 0.01) -> float:
    """CPU seconds to render every entry of the window, from every 1/share-th entry rendered."""
    step = round(1 / share)
    done = 0
    started = time.process_time()
    for app in tenant.apps:
        for cycle in app.timeline().cycles:
            first = cycle.entries_before(tenant.window_start)
            for i in range(first, cycle.entries_before(tenant.now_ticks + 1), step):
                render_entry(app, cycle, i)
                done += 1
    return (time.process_time() - started) * step if done else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-graph", action="store_true", help="skip the in-process Graph baseline")
    parser.add_argument(
        "--baseline-days",
        type=float,
        default=1.0,
        help="days at the window's end the entries-mode baseline reads (scaled to the window); 0: all of it",
    )
    parser.add_argument("--skip-diagnose", action="store_true", help="skip the diagnose figures")
    args = parser.parse_args()

    began = time.perf_counter()
    tenant = Tenant(
        seed=args.seed, users_count=args.users, days=args.days, now=datetime.now(UTC).replace(microsecond=0)
    )
    print(
        f"tenant: {args.users:,} users, {args.days} days, {len(tenant.apps)} apps ({time.perf_counter() - began:.1f} s)"
    )
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")

    began = time.perf_counter()
    history = sum(len(app.timeline().cycles) for app in tenant.apps)
    print(
        f"history: {history:,} cycles in {time.perf_counter() - began:.1f} s (the tenant's, shared with Graph)"
    )
    every = render_every_entry_cpu(tenant)
    with start_server(tenant, throttle=False) as srv:
        workspace = srv.graph.workspace
        assert workspace is not None, "the simulated server serves a Log Analytics workspace"
        report = workspace.load()
        cores = os.cpu_count() or 1
        print(
            f"load: {report.entries:,} AADProvisioningLogs rows and {report.audits:,} AuditLogs rows in "
            f"{report.seconds:.1f} s with {report.workers} worker(s), {report.cpu_seconds:.1f} CPU s, "
            f"about {report.cpu_seconds / cores:.0f} s on an idle {cores}-core machine (target < 60 s)"
        )
        print(
            f"baseline: rendering every entry (the previous loader's first step) takes {every:.1f} CPU s, "
            f"about {every / cores:.0f} s on {cores} idle cores, before any JSON is mapped"
        )
        env = srv.env()
        la = LogAnalytics.connect(
            environ=env, method="secret", secret=env["PROVKIT_CLIENT_SECRET"], cache_path=False
        )
        window = (
            datetime.fromtimestamp(tenant.window_start / 10**7, tz=UTC),
            datetime.fromtimestamp(tenant.now_ticks / 10**7, tz=UTC),
        )
        print()
        header = f"{'app':<18} {'entries':>9} {'KQL s':>7} {'rows':>6} {'rows %':>7} {'KiB':>8} {'Graph floor':>11}"
        header += f" {'cycles LA/Graph':>16} {'init/incr LA':>13} {'init/incr Graph':>16}"
        print(header)
        total_entries = total_rows = 0
        total_kql = total_floor = 0.0
        agree = True
        for app in tenant.apps:
            entries = sum(
                c.entries_before(tenant.now_ticks + 1) - c.entries_before(tenant.window_start)
                for c in app.timeline().cycles
            )
            rows_before, bytes_before = la.transfer.rows, la.transfer.bytes
            t0 = time.perf_counter()
            observed = la.observed_cycles(app.sp_id, window)
            kql = time.perf_counter() - t0
            rows = la.transfer.rows - rows_before
            kib = (la.transfer.bytes - bytes_before) / 1024
            floor = math.ceil(max(1, math.ceil(entries / GRAPH_PAGE)) / GRAPH_RATE[0]) * GRAPH_RATE[1]
            total_entries, total_rows = total_entries + entries, total_rows + rows
            total_kql, total_floor = total_kql + kql, total_floor + floor
            la_split = graph_split = "-"
            counts = "-"
            if not args.skip_graph:
                graph = from_simulator(tenant, app)
                from_graph = cycles.cycles_table(graph)
                # the same evidence with no entries at all, only the per-cycle rows the KQL returned
                pushed = dataclasses.replace(graph, tables=empty_tables(), observed_cycles=observed)
                from_la = cycles.cycles_table(pushed)

                def split(table) -> str:
                    kinds = table["kind"].value_counts()
                    return f"{int(kinds.get('initial', 0))}/{int(kinds.get('incremental', 0))}"

                la_split, graph_split = split(from_la), split(from_graph)
                counts = f"{len(from_la)}/{len(from_graph)}"
                agree &= abs(len(from_la) - len(from_graph)) <= 1 and la_split == graph_split
            share = 100.0 * rows / entries if entries else 0.0
            print(
                f"{app.display_name[:18]:<18} {entries:>9,} {kql:>7.2f} {rows:>6,} {share:>6.2f}% {kib:>8.1f} "
                f"{floor:>10.0f}s {counts:>16} {la_split:>13} {graph_split:>16}"
            )
        print()
        share = 100.0 * total_rows / total_entries if total_entries else 0.0
        print(
            f"KQL summary of {total_entries:,} entries: {total_kql:.1f} s (target < 120 s); "
            f"Graph fetch of the same window at the throttle floor: {total_floor:,.0f} s ({total_floor / 60:.1f} min)"
        )
        print(f"rows transferred: {total_rows:,} = {share:.3f}% of the entries summarised (target <= 1%)")
        if not args.skip_graph:
            print(f"cycles agree (count within one, same initial/incremental split) for every app: {agree}")
        if not args.skip_diagnose:
            diagnose(tenant, env, la, window, args.baseline_days)
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def diagnose(tenant: Tenant, env: dict, la: LogAnalytics, window: tuple, baseline_days: float) -> None:
    """``diagnose --workspace`` per app (findings mode) beside the entries-mode load of the same run."""
    client = connect(
        Settings.from_env(env), secret=env["PROVKIT_CLIENT_SECRET"], method="secret", cache_path=False
    )
    spent = {"kql": 0.0}
    query = la.query

    def timed_query(kql: str, span: tuple[datetime, datetime] | None) -> Any:
        t0 = time.perf_counter()
        try:
            return query(kql, span)
        finally:
            spent["kql"] += time.perf_counter() - t0

    la.query = timed_query  # type: ignore[method-assign,assignment]
    span = f"{baseline_days:g} d up to the newest entry, scaled" if baseline_days else "whole window"
    print()
    print(
        f"diagnose --workspace (findings mode) beside the entries-mode load ({span}); load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    header = (
        f"{'app':<18} {'entries':>9} {'objects':>8} {'sent':>7} {'diag s':>7} {'KQL s':>6} {'queries':>7}"
    )
    header += f" {'rows':>7} {'narrow':>7} {'rows %':>7} {'KiB':>8}"
    header += f" {'findings':>8} {'| entries mode: s':>17} {'rows':>9} {'KiB':>10}"
    header += " same findings" if not baseline_days else ""
    print(header)
    totals: dict[str, float] = {
        "entries": 0,
        "rows": 0,
        "narrow": 0,
        "objects": 0,
        "sent": 0,
        "queries": 0,
        "kib": 0.0,
        "s": 0.0,
        "base_s": 0.0,
        "base_rows": 0.0,
        "base_kib": 0.0,
    }
    same_all = True
    for app in tenant.apps:
        entries = sum(
            c.entries_before(tenant.now_ticks + 1) - c.entries_before(tenant.window_start)
            for c in app.timeline().cycles
        )
        rows0, bytes0, kql0 = la.transfer.rows, la.transfer.bytes, spent["kql"]
        narrow0, queries0 = la.transfer.narrow_rows, la.transfer.queries
        t0 = time.perf_counter()
        evidence, _ = workspace_evidence(
            client,
            la,
            app.sp_id,
            window=window,
            tenant_id=tenant.tenant_id,
            mode="findings",
            judged=judged_one_by_one,  # as diagnose --workspace hands it over
        )
        findings = run_checks(evidence)
        seconds = time.perf_counter() - t0
        rows, kib = la.transfer.rows - rows0, (la.transfer.bytes - bytes0) / 1024
        narrow, queries = la.transfer.narrow_rows - narrow0, la.transfer.queries - queries0
        # Objects with entries in the window, and those any of whose entries travelled (the others: healthy).
        logs = evidence.log_summary
        objects = logs.objects if logs is not None else 0
        sent = int(evidence.events["source_id"].dropna().nunique()) if len(evidence.events) else 0
        kql = spent["kql"] - kql0
        # The baseline: every entry of (part of) the window, read and made into tables as entries mode does.
        rows0, bytes0 = la.transfer.rows, la.transfer.bytes
        t0 = time.perf_counter()
        newest = evidence.log_summary.last if evidence.log_summary is not None else None
        if baseline_days and newest is not None:
            # the days up to the app's newest entry (a quarantined app may have none in the window's last day)
            end = min(window[1], newest.to_pydatetime() + timedelta(microseconds=1))
            part = (max(window[0], end - timedelta(days=baseline_days)), end)
            tables = events_from_records(la.entries(app.sp_id, part))
            same = ""
        elif baseline_days:  # no entries: nothing to read
            tables, same = empty_tables(), ""
        else:
            every, _ = workspace_evidence(
                client, la, app.sp_id, window=window, tenant_id=tenant.tenant_id, mode="entries"
            )
            tables = every.tables
            same = str(findings_json(run_checks(every)) == findings_json(findings))
            same_all &= same == "True"
        base_s = time.perf_counter() - t0
        base_rows, base_kib = la.transfer.rows - rows0, (la.transfer.bytes - bytes0) / 1024
        read = len(tables.events)
        scale = entries / read if baseline_days and read else 1.0
        base_s, base_kib = base_s * scale, base_kib * scale
        base_rows = round(base_rows * scale)
        share = 100.0 * rows / entries if entries else 0.0
        print(
            f"{app.display_name[:18]:<18} {entries:>9,} {objects:>8,} {sent:>7,} {seconds:>7.1f} {kql:>6.1f} "
            f"{queries:>7} {rows:>7,} {narrow:>7,} {share:>6.1f}% "
            f"{kib:>8,.0f} {len(findings):>8} {base_s:>17.1f} {base_rows:>9,.0f} {base_kib:>10,.0f} {same}"
        )
        for key, value in (
            ("entries", entries),
            ("rows", rows),
            ("narrow", narrow),
            ("objects", objects),
            ("sent", sent),
            ("queries", queries),
            ("kib", kib),
            ("s", seconds),
        ):
            totals[key] += value
        totals["base_s"] += base_s
        totals["base_rows"] += base_rows
        totals["base_kib"] += base_kib
    share = 100.0 * totals["rows"] / totals["entries"] if totals["entries"] else 0.0
    print(
        f"diagnose of {len(tenant.apps)} apps ({totals['entries']:,} entries): {totals['s']:.1f} s, "
        f"{totals['queries']:,} queries, {totals['rows']:,} rows ({totals['narrow']:,} narrow) = {share:.2f}% of "
        f"the entries, entries of {totals['sent']:,} of {totals['objects']:,} objects, "
        f"{totals['kib'] / 1024:,.1f} MiB; "
        f"entries mode ({span}): {totals['base_s']:.1f} s, {totals['base_rows']:,.0f} rows, "
        f"{totals['base_kib'] / 1024:,.1f} MiB"
    )
    if not baseline_days:
        print(f"the same findings from both modes for every app: {same_all}")


if __name__ == "__main__":
    main()
