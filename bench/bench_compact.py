"""Benchmark: offline analysis of one app's store in thousands of small parts, before and after compaction.

A year of hourly incremental fetches leaves one small part per fetch (issue 16 measured 3,025 parts holding 9,074
entries). ``provkit fetch`` now compacts as it goes (more than ``COMPACT_AT`` parts of a kind), and
``provkit store compact`` merges on demand; this measures what that buys.

1. The simulated tenant's log entries for one app (rendered in-process, no server) are written into a fresh
   store in ``--parts`` consecutive slices, each with its covered range, as that many incremental fetches would
   (without the fetch's own compaction: this is the store an older provkit left behind).
2. Baseline: what ``provkit cycles --offline`` does, read the evidence from the store and reconstruct the
   cycles, timed (best of ``--repeat``).
3. ``AppStore.compact()``, timed.
4. The same analysis on the compacted store, timed; the events, steps and cycles must be identical.

    python bench/bench_compact.py                 # 3,025 parts
    python bench/bench_compact.py --parts 500     # quicker
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from provkit.analysis.cycles import cycles_table
from provkit.data.evidence import from_store
from provkit.data.store import Store
from provkit.data.tables import events_from_records
from provkit.sim.logquery import LogQuery
from provkit.sim.tenant import Tenant

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


def analyse(store: Store, sp_id: str, tenant_id: str) -> tuple[float, pd.DataFrame, int]:
    """(seconds, cycles table, entries) for reading the evidence and reconstructing the cycles once."""
    began = time.perf_counter()
    app_store = store.app(tenant_id, sp_id)
    evidence = from_store(app_store)
    table = cycles_table(evidence)
    return time.perf_counter() - began, table, len(evidence.events)


def best(repeat: int, store: Store, sp_id: str, tenant_id: str) -> tuple[float, pd.DataFrame, int]:
    runs = [analyse(store, sp_id, tenant_id) for _ in range(repeat)]
    return min(r[0] for r in runs), runs[-1][1], runs[-1][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=3025, help="incremental fetches (parts) to write")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    tenant = Tenant(seed=7, users_count=args.users, days=args.days, now=NOW, scenarios=("healthy",))
    app = tenant.apps[0]
    records = LogQuery(tenant, None, descending=False).page(10**7, None, scan_budget=10**8).items
    times = [r["activityDateTime"] for r in records]
    start, end = pd.Timestamp(times[0]).floor("h"), pd.Timestamp(times[-1]).ceil("h") + pd.Timedelta(hours=1)
    edges = pd.date_range(start, end, periods=args.parts + 1, tz="UTC").floor("us")
    root = Path(tempfile.mkdtemp(prefix="bench-compact-"))
    store = Store(root)
    app_store = store.app(tenant.tenant_id, app.sp_id)
    app_store.set_app({"display_name": app.display_name, "app_id": app.app_id})

    began = time.perf_counter()
    position = 0
    stamps = pd.to_datetime(pd.Series(times), utc=True, format="ISO8601")
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        upto = int((stamps < b).sum())
        chunk = records[position:upto]
        position = upto
        app_store.write_events(events_from_records(chunk), covered=(a.to_pydatetime(), b.to_pydatetime()))
    build = time.perf_counter() - began
    parts = len(app_store.manifest()["parts"]["events"])
    print(
        f"store: {len(records):,} entries of {app.display_name} in {parts:,} events parts "
        f"({args.parts:,} incremental writes, {build:.1f} s to write)"
    )

    before, table_before, entries = best(args.repeat, store, app.sp_id, tenant.tenant_id)
    began = time.perf_counter()
    merged = app_store.compact()
    compact_seconds = time.perf_counter() - began
    after, table_after, entries_after = best(args.repeat, store, app.sp_id, tenant.tenant_id)
    assert entries_after == entries == len({r["id"] for r in records})
    pd.testing.assert_frame_equal(table_before, table_after)
    print(f"compaction: {sum(merged.values()):,} parts merged in {compact_seconds:.2f} s")
    print(f"baseline  read + cycles, {parts:,} parts: {before:.3f} s (best of {args.repeat})")
    print(
        f"compacted read + cycles, {len(app_store.manifest()['parts']['events'])} part(s): {after:.3f} s "
        f"({before / after:.1f}x faster, same {entries:,} entries and {len(table_after)} cycles)"
    )


if __name__ == "__main__":
    main()
