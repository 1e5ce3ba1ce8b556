"""Benchmark: offline analysis of a window of a large store, against the whole store (what ``--offline`` read before).

``provkit cycles --offline --since 2h`` used to analyse every entry the store held; it now reads the store, cuts
the evidence to the window (:func:`provkit.data.evidence.stored_evidence`) and analyses that. This measures both
on the same store, in the same run:

1. The simulated tenant's log entries for one app (rendered in-process, no server) are written into a fresh store
   as one fetch of ``--days`` days would leave them (covered range and requested window recorded).
2. Baseline: the whole store read offline, its cycles reconstructed and the checks run (best of ``--repeat``).
3. The window (``--since``, counted back from the store's end) read the same way: entries, cycles and findings
   of the window only; the steps are read for the window's entries alone.

    python bench/bench_windows.py                   # 20,000 users, 30 days, --since 2h
    python bench/bench_windows.py --since 1d --days 7
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime

import pandas as pd

from provkit.analysis.checks import run_checks
from provkit.analysis.cycles import cycles_table
from provkit.data.evidence import stored_evidence
from provkit.data.store import AppStore, Store
from provkit.data.tables import events_from_records
from provkit.sim.logquery import LogQuery
from provkit.sim.tenant import Tenant

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


def analyse(app_store: AppStore, since: str | None) -> tuple[float, int, int, int]:
    """(seconds, entries, cycles, findings) for reading the evidence offline, cycles and checks, once."""
    began = time.perf_counter()
    evidence = stored_evidence(app_store, since=since)
    table = cycles_table(evidence)
    findings = run_checks(evidence)
    return time.perf_counter() - began, len(evidence.events), len(table), len(findings)


def best(repeat: int, app_store: AppStore, since: str | None) -> tuple[float, int, int, int]:
    runs = [analyse(app_store, since) for _ in range(repeat)]
    return min(r[0] for r in runs), *runs[-1][1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--scenario", default="healthy")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--since", default="2h", help="the window, counted back from the store's end")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    tenant = Tenant(seed=7, users_count=args.users, days=args.days, now=NOW, scenarios=(args.scenario,))
    app = tenant.apps[0]
    records = LogQuery(tenant, None, descending=False).page(10**7, None, scan_budget=10**8).items
    store = Store(tempfile.mkdtemp(prefix="bench-windows-"))
    app_store = store.app(tenant.tenant_id, app.sp_id)
    app_store.set_app({"display_name": app.display_name, "app_id": app.app_id})
    start = datetime.fromtimestamp(tenant.window_start / 10**7, tz=UTC)
    app_store.record_request(start, NOW)
    began = time.perf_counter()
    app_store.write_events(events_from_records(records), covered=(start, NOW))
    print(f"store: {len(records):,} entries of {app.display_name} over {args.days} days, written in "
          f"{time.perf_counter() - began:.1f} s")  # fmt: skip

    whole = best(args.repeat, app_store, None)
    window = best(args.repeat, app_store, args.since)
    for label, (seconds, entries, cycles, findings) in (
        ("whole store (before)", whole),
        (f"--since {args.since} (now)", window),
    ):
        print(
            f"{label:<22} {seconds:7.2f} s  {entries:>9,} entries  {cycles:>5} cycles  {findings:>3} findings"
        )
    print(f"the window costs {window[0] / whole[0]:.0%} of the whole store's time (best of {args.repeat})")
    assert window[1] < whole[1] and pd.notna(window[0])


if __name__ == "__main__":
    main()
