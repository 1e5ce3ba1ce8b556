"""Benchmark: provkit.analysis.cycles.cycles_table on a million log entries, against a per-cycle Python loop.

Builds a synthetic events table directly as a DataFrame with the events columns and dtypes that matter to the
cycles (``cycle_id``, ``job_id``, ``activity_time``, ``action``, ``status``, ``source_id``, plus ``id``,
``change_id`` and ``error_code`` so the frame has realistic width): ``--cycles`` cycles every 40 minutes, a few
of them initial cycles that evaluate every object in scope, the rest incremental cycles of a few hundred
changes, ``--entries`` entries in all. One job-status snapshot and a watermark-reset audit go with it, so the
whole of ``cycles_table`` runs (matching, inference, resets, classification).

Measured, each in the same run and on the same frame:

- provkit: ``cycles_table(evidence)`` (vectorised: factorised ids, bincounts, sorted reductions).
- baseline: the natural notebook way, ``for cycle_id, group in events.groupby("cycle_id")`` computing the
  same per-cycle figures (first/last time, counts by action and status, distinct objects) in Python, then a
  DataFrame. It does less than provkit (no job-status matching, no inference, no classification).

Time is wall-clock (``time.perf_counter``), best of ``--repeat``. Peak memory is ``tracemalloc``'s peak of
Python and NumPy allocations made during one call (traced separately, since tracing slows the call down);
it excludes the input frame, which exists before the call.

    python bench/bench_cycles.py --entries 1000000 --cycles 1000
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from provkit.analysis.cycles import cycles_table
from provkit.data.evidence import Evidence
from provkit.data.tables import ACTIONS, EVENT_COLUMNS, STATUSES, Tables, empty_tables, jobs_from_records

START = datetime(2026, 1, 1, tzinfo=UTC)
INTERVAL = timedelta(minutes=40)


def synthetic_events(entries: int, cycles: int, *, seed: int = 1) -> pd.DataFrame:
    """``entries`` log entries spread over ``cycles`` cycles, ~60% of them in a handful of initial cycles."""
    rng = np.random.default_rng(seed)
    initial_every = max(cycles // 8, 1)
    is_initial = np.arange(cycles) % initial_every == 0
    n_initial = int(is_initial.sum())
    in_scope = int(entries * 0.6 / n_initial)
    incremental_total = entries - in_scope * n_initial
    weights = rng.gamma(2.0, 1.0, cycles - n_initial)
    sizes_incremental = np.floor(weights / weights.sum() * incremental_total).astype(np.int64)
    sizes_incremental[: incremental_total - int(sizes_incremental.sum())] += 1
    sizes = np.empty(cycles, dtype=np.int64)
    sizes[is_initial] = in_scope
    sizes[~is_initial] = sizes_incremental
    cycle_of = np.repeat(np.arange(cycles), sizes)
    position = np.arange(entries) - np.repeat(np.cumsum(sizes) - sizes, sizes)

    # Cycle starts: every interval, pushed back when an initial cycle runs long (0.02 min per object).
    durations_ns = np.where(is_initial, sizes * 1.2e9, 20e9 + sizes * 0.5e9).astype(np.int64)
    starts = np.empty(cycles, dtype=np.int64)
    t = pd.Timestamp(START).value
    for c in range(cycles):
        starts[c] = t
        t = max(t + int(INTERVAL.total_seconds() * 1e9), t + durations_ns[c] + 60_000_000_000)
    offsets = (position + 0.5) / sizes[cycle_of] * durations_ns[cycle_of]
    times = starts[cycle_of] + offsets.astype(np.int64)

    cycle_ids = np.array([f"{c:08x}-5a1e-4c1e-9e1c-{c * 7919:012x}" for c in range(cycles)], dtype=object)
    objects = max(in_scope, 1)
    source = np.where(is_initial[cycle_of], position, rng.integers(0, objects, entries))
    source_ids = np.array([f"{u:08x}-0000-4000-8000-{u:012x}" for u in range(objects)], dtype=object)
    action_p = [0.05, 0.7, 0.01, 0.04, 0.0, 0.2]
    status_p = [0.8, 0.05, 0.14, 0.01]
    frame = pd.DataFrame(
        {
            "id": pd.array([f"e{i:011d}" for i in range(entries)], dtype="str"),
            "activity_time": pd.to_datetime(times, utc=True).astype("datetime64[ns, UTC]"),
            "job_id": pd.array(
                np.full(entries, "scim.bench0000000000000000000000000001", dtype=object), dtype="str"
            ),
            "cycle_id": pd.array(cycle_ids[cycle_of], dtype="str"),
            "change_id": pd.array([f"c{i:011d}" for i in range(entries)], dtype="str"),
            "action": pd.Categorical.from_codes(rng.choice(len(ACTIONS), entries, p=action_p), ACTIONS),
            "status": pd.Categorical.from_codes(rng.choice(len(STATUSES), entries, p=status_p), STATUSES),
            "source_id": pd.array(source_ids[source], dtype="str"),
        }
    )
    failed = frame["status"] == "failure"
    code = pd.Series("SystemForCrossDomainIdentityManagementBadResponse", index=frame.index, dtype="str")
    frame["error_code"] = code.where(failed)
    return frame


def evidence_for(events: pd.DataFrame) -> Evidence:
    last = (
        events.groupby("cycle_id", sort=False)["activity_time"]
        .agg(["min", "max"])
        .sort_values("min")
        .iloc[-1]
    )
    now = (last["max"] + pd.Timedelta(minutes=5)).floor("s")
    job = {
        "id": str(events["job_id"].iloc[0]),
        "templateId": "scim",
        "schedule": {"interval": "PT40M", "state": "Active"},
        "status": {
            "code": "Active",
            "steadyStateFirstAchievedTime": (
                events["activity_time"].min() + pd.Timedelta(hours=3)
            ).isoformat(),
            "lastExecution": {
                "activityIdentifier": "bench",
                "state": "Succeeded",
                "timeBegan": (last["min"] - pd.Timedelta(seconds=5)).isoformat(),
                "timeEnded": (last["max"] + pd.Timedelta(seconds=5)).isoformat(),
            },
        },
    }
    jobs = jobs_from_records([job], snapshot_time=now.to_pydatetime(), service_principal_id="sp-bench")
    reset = (
        events["activity_time"].min() + (events["activity_time"].max() - events["activity_time"].min()) / 2
    )
    audits = [
        {
            "activityDisplayName": "Update attribute mappings",
            "activityDateTime": reset.isoformat(),
            "targetResources": [{"id": "sp-bench"}],
        }
    ]
    tables = empty_tables()
    return Evidence(
        tenant_id="bench",
        service_principal_id="sp-bench",
        app_id=None,
        display_name="bench",
        tables=Tables(events, tables.steps, tables.properties),
        jobs=jobs,
        audits=audits,
        now=now.to_pydatetime(),
        window=(events["activity_time"].min().floor("s").to_pydatetime(), now.to_pydatetime()),
    )


def baseline(events: pd.DataFrame) -> pd.DataFrame:
    """Per-cycle figures the way a notebook would compute them: a Python loop over groupby groups."""
    rows = []
    for cycle_id, group in events.groupby("cycle_id", sort=False, observed=True):
        row = {
            "cycle_id": cycle_id,
            "job_id": group["job_id"].iloc[0],
            "start": group["activity_time"].min(),
            "end": group["activity_time"].max(),
            "entries": len(group),
            "distinct_objects": group["source_id"].nunique(),
        }
        for name, count in group["action"].value_counts().items():
            row[f"n_{name}"] = int(count)
        for name, count in group["status"].value_counts().items():
            row[f"n_{name}"] = int(count)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["duration"] = frame["end"] - frame["start"]
    return frame.sort_values("start").reset_index(drop=True)


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - began)
    return best, result


def _peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--cycles", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    began = time.perf_counter()
    events = synthetic_events(args.entries, args.cycles)
    evidence = evidence_for(events)
    missing = [
        name
        for name in ("cycle_id", "activity_time", "action", "status", "source_id")
        if name not in EVENT_COLUMNS
    ]
    assert not missing, missing
    print(
        f"{len(events):,} entries in {events['cycle_id'].nunique():,} cycles "
        f"(built in {time.perf_counter() - began:.1f}s, frame {events.memory_usage(deep=True).sum() / 2**20:.0f} MiB)"
    )

    seconds, table = _timed(lambda: cycles_table(evidence), args.repeat)
    peak = _peak(lambda: cycles_table(evidence))
    kinds = table["kind"].value_counts().to_dict()
    print(
        f"provkit cycles_table   {seconds:7.2f} s  peak {peak / 2**20:7.1f} MiB (tracemalloc)  "
        f"{len(table):,} rows {kinds}"
    )
    if not args.no_baseline:
        base_seconds, base = _timed(lambda: baseline(events), 1)
        base_peak = _peak(lambda: baseline(events))
        print(
            f"baseline groupby loop  {base_seconds:7.2f} s  peak {base_peak / 2**20:7.1f} MiB (tracemalloc)  "
            f"{len(base):,} rows  ({base_seconds / seconds:.1f}x provkit's time)"
        )
        logged = table[~table["inferred"]].set_index("cycle_id")
        check = base.set_index("cycle_id")
        same = (logged.loc[check.index, "entries"] == check["entries"]).all() and (
            logged.loc[check.index, "distinct_objects"] == check["distinct_objects"]
        ).all()
        print(f"per-cycle entries and distinct objects agree with the baseline: {bool(same)}")


if __name__ == "__main__":
    main()
