"""Benchmark: peak memory of ``provkit cycles --offline`` and ``provkit diagnose --offline`` over a store that
holds a million log entries of one app, beside two baselines measured in the same run.

The store is built from the simulated tenant's own entries (``--users`` users, 7 days, the escrow-quarantine
app Dropbox Business): that week is rendered and normalised once, then written ``copies`` times, each copy a
week earlier with its own entry, change and cycle ids, until ``--entries`` entries are stored (steps and
modified properties included), with the app's job snapshot, schema, assignments, groups and audits.

Each command runs in a child process; its peak resident memory is the kernel's (``ru_maxrss`` from wait4):

- whole tables: the former offline path, every column of every part read as pandas frames, concatenated, then
  the same analysis (``cycles_table`` and ``summary``; ``run_checks``);
- all steps: the command itself, but every request for the steps of some entries reads the whole steps table
  first (what the checks did until they asked for the steps of the entries they explain);
- now: ``provkit cycles --offline`` and ``provkit diagnose --offline`` themselves.

    python bench/bench_memory.py                       # 1,000,000 entries (building the store takes minutes)
    python bench/bench_memory.py --entries 200000      # quicker
    python bench/bench_memory.py --store DIR --keep    # build once into DIR, reuse it next time
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
APP = "Dropbox Business"
SCENARIO = "escrow-quarantine"

# The former offline path, kept here as the baseline: every column of every part, pandas concat.
BEFORE = r"""
import sys
import pandas as pd
import pyarrow.parquet as pq
from provkit.analysis import cycles
from provkit.analysis.checks import run_checks
from provkit.data.evidence import from_store
from provkit.data.store import Store
from provkit.data.tables import EVENT_COLUMNS, PROPERTY_COLUMNS, STEP_COLUMNS, Tables

def read(app_store, kind, columns):
    frames = [pq.read_table(f).to_pandas() for f in app_store._part_files(kind)]
    df = pd.concat(frames, ignore_index=True)
    for col, dtype in columns.items():
        if col not in df.columns:
            df[col] = pd.Series(dtype=dtype, index=df.index)
        elif dtype == "category" and df[col].dtype != "category":
            df[col] = df[col].astype("category")
    return df

def tables(app_store, lazy=False):
    events = read(app_store, "events", EVENT_COLUMNS)
    events = events.drop_duplicates("id").sort_values("activity_time", kind="stable", ignore_index=True)
    steps = read(app_store, "steps", STEP_COLUMNS).drop_duplicates(["event_id", "step_order"], ignore_index=True)
    props = read(app_store, "properties", PROPERTY_COLUMNS).drop_duplicates(ignore_index=True)
    return Tables(events=events, steps=steps, properties=props)

command, root, app = sys.argv[1:4]
app_store = Store(root).find(app)
type(app_store).tables = tables  # the former whole-table read
evidence = from_store(app_store)
if command == "cycles":
    table = cycles.cycles_table(evidence)
    cycles.summary(evidence, table)
else:
    run_checks(evidence)
"""


# The checks as they were: the steps of a few entries taken from the whole steps table, read once.
ALL_STEPS = r"""
import sys
from provkit.cli.main import main
from provkit.data.evidence import Evidence

def steps_of(self, event_ids):
    steps = self.tables.steps  # the whole table (read once, then kept)
    return steps[steps["event_id"].isin(set(map(str, event_ids)))].reset_index(drop=True)

Evidence.steps_of = steps_of
sys.exit(main(sys.argv[1:]))
"""


def build_store(root: Path, entries: int, users: int) -> None:
    """A store holding ``entries`` entries of one app (see the module docstring)."""
    from provkit.data.store import Store
    from provkit.data.tables import Tables
    from provkit.sim.evidence import from_simulator
    from provkit.sim.tenant import Tenant

    tenant = Tenant(seed=7, users_count=users, days=7, now=NOW, scenarios=(SCENARIO,))
    app = next(a for a in tenant.apps if a.display_name == APP)
    evidence = from_simulator(tenant, app)
    week = evidence.tables
    app_store = Store(root).app(evidence.tenant_id, evidence.service_principal_id)
    app_store.set_app(
        {
            "display_name": APP,
            "app_id": evidence.app_id,
            "service_principal_id": evidence.service_principal_id,
        }
    )
    app_store.write_jobs(evidence.jobs)
    app_store.write_meta("jobs", [evidence.job])
    app_store.write_meta("schema", evidence.schema)
    app_store.write_meta("assignments", evidence.assignments)
    app_store.write_meta("groups", evidence.groups)
    app_store.write_meta("users", evidence.users)
    app_store.write_audits(evidence.audits)
    copies = -(-entries // len(week.events))
    print(f"  one week holds {len(week.events):,} entries; writing {copies} weeks", flush=True)

    def renamed(column: pd.Series, k: int) -> pd.Series:
        return f"{k:08x}" + column.str.slice(8)

    written = 0
    for k in range(copies):
        take = min(len(week.events), entries - written)
        events = week.events.iloc[:take].copy()
        keep = set(events["id"])
        steps = week.steps[week.steps["event_id"].isin(keep)].copy()
        props = week.properties[week.properties["event_id"].isin(keep)].copy()
        shift = pd.Timedelta(days=7 * k)
        events["activity_time"] = events["activity_time"] - shift
        for frame, columns in ((events, ("id", "change_id", "cycle_id")), (steps, ("event_id", "change_id"))):
            for column in columns:
                frame[column] = renamed(frame[column], k)
        for column in ("event_id", "change_id"):
            props[column] = renamed(props[column], k)
        app_store.write_events(Tables(events=events, steps=steps, properties=props))
        written += take
    print(f"  {written:,} entries stored", flush=True)


def peak_rss_mb(command: list[str]) -> tuple[float, float, int]:
    """Run ``command``; (its peak RSS in MB, seconds, exit code)."""
    began = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - began
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(child.stderr.read().decode()[-2000:] if child.stderr else "", file=sys.stderr)
    return usage.ru_maxrss / 1024, seconds, code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries of the app (default 1000000)")
    parser.add_argument(
        "--users", type=int, default=6000, help="users in the simulated tenant (default 6000)"
    )
    parser.add_argument("--store", type=Path, help="build the store here (or reuse one built there)")
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    args = parser.parse_args(argv)

    root = args.store or Path(tempfile.mkdtemp(prefix="provkit-bench-memory-"))
    try:
        if not any(root.glob("*/*/manifest.json")):
            print(f"Building a store of {args.entries:,} entries of {APP!r}...", flush=True)
            began = time.monotonic()
            build_store(root, args.entries, args.users)
            print(f"  built in {time.monotonic() - began:.0f} s", flush=True)
        python = sys.executable
        rows = []
        for command in ("cycles", "diagnose"):
            options = [command, "--offline", "--app", APP, "--store", str(root)]
            whole = peak_rss_mb([python, "-c", BEFORE, command, str(root), APP])
            all_steps = peak_rss_mb([python, "-c", ALL_STEPS, *options])
            now = peak_rss_mb([python, "-m", "provkit.cli.main", *options])
            rows.append((command, whole, all_steps, now))
            print(
                f"  {command}: whole tables {whole[0]:,.0f} MB ({whole[1]:.1f} s), all steps {all_steps[0]:,.0f} MB "
                f"({all_steps[1]:.1f} s), now {now[0]:,.0f} MB ({now[1]:.1f} s)",
                flush=True,
            )
        print()
        print(
            f"{'peak RSS, ' + format(args.entries, ',') + ' entries of one app':<46}"
            f"{'whole tables':>14}{'all steps':>12}{'now':>10}"
        )
        for command, *runs in rows:
            label = f"provkit {command} --offline"
            failed = "" if all(run[2] == 0 for run in runs) else " (a run failed)"
            print(
                f"{label:<46}"
                + "".join(f"{run[0]:>{w - 2},.0f}MB" for run, w in zip(runs, (14, 12, 10), strict=True))
                + failed
            )
        worst = max(now[0] for _, _, _, now in rows)
        print(f"target: now < 1,500 MB: {'met' if worst < 1500 else 'NOT met'} ({worst:,.0f} MB at most)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
