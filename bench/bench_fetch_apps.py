"""Benchmark: the fetch phase of ``provkit report --all-apps`` under Graph's throttle: every app with a
provisioning job fetched through one client (one pacer), in the plan's order, three at a time, against the same
apps fetched one after another, in the same run, with the plan's estimate printed before each.

The simulated Graph server runs in its own process with the throttle ON (5 requests per 10 s on /auditLogs).
Each way fetches the whole history into a fresh store; they run 12 s apart so that neither starts inside the
other's throttle window. A second round fetches the next simulated 6 hours into the first store, when the plan
knows each app's entries per hour from the first round, to show the estimate with known sizes.

    python bench/bench_fetch_apps.py                  # 3,000 users, 3 days (about 4 minutes)
    python bench/bench_fetch_apps.py --users 6000 --days 7
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench_fetch import NOW, Emulator

from provkit.data.fetch import FETCH_WORKERS, fetch_apps, plan_fetches
from provkit.data.sources.graph import provisioning_apps
from provkit.data.store import Store


def run(client, root: Path, apps, start: datetime, end: datetime, tenant_id: str, workers: int) -> dict:
    store = Store(root)
    plan = plan_fetches(client, store, apps, start=start, end=end, tenant_id=tenant_id, workers=workers)
    print(f"  plan: {plan.line()}", flush=True)
    requests_before = client.stats.requests
    began = time.monotonic()
    results = fetch_apps(client, store, plan, start=start, end=end, tenant_id=tenant_id)
    seconds = time.monotonic() - began
    failed = [k for k, v in results.items() if not isinstance(v, tuple)]
    entries = sum(v[0].entries for v in results.values() if isinstance(v, tuple))
    pages = sum(v[0].pages for v in results.values() if isinstance(v, tuple))
    print(
        f"  {len(apps)} apps, {workers} at a time: {entries} entries, {pages} log pages, "
        f"{client.stats.requests - requests_before} requests, {seconds:.1f} s (plan said {plan.seconds:.0f} s)"
        + (f"; {len(failed)} failed" if failed else ""),
        flush=True,
    )
    return {"seconds": seconds, "estimate": plan.seconds, "entries": entries, "pages": pages}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=3000, help="users in the tenant (default 3000)")
    parser.add_argument("--days", type=int, default=3, help="days of history, all fetched (default 3)")
    args = parser.parse_args(argv)
    print(
        f"Simulated Graph in its own process, throttle ON: {args.users} users, {args.days} days, every app with "
        "a provisioning job.",
        flush=True,
    )
    with Emulator(["--users", str(args.users), "--days", str(args.days), "--now", NOW]) as emulator:
        client = emulator.client()
        tenant_id = emulator.settings.tenant_id or ""
        end = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
        start = end - timedelta(days=args.days)
        apps: list[Any] = []
        for row in provisioning_apps(client):
            if row["service_principal_id"] not in {a.service_principal_id for a in apps}:
                apps.append(client.resolve_app(row["service_principal_id"]))
        roots = [Path(tempfile.mkdtemp(prefix="provkit-bench-apps-")) for _ in range(2)]
        try:
            print("one client, the plan's order, concurrent:", flush=True)
            together = run(client, roots[0], apps, start, end, tenant_id, FETCH_WORKERS)
            time.sleep(12)
            print("one client, the same apps one after another:", flush=True)
            alone = run(client, roots[1], apps, start, end, tenant_id, 1)
            time.sleep(12)
            later = datetime.fromisoformat(emulator.advance(360).replace("Z", "+00:00"))
            print("6 simulated hours later, the first store again (sizes known now):", flush=True)
            again = run(client, roots[0], apps, start, later, tenant_id, FETCH_WORKERS)
        finally:
            for root in roots:
                shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"{'':<44}{'seconds':>9}{'estimate':>10}")
    print(
        f"{'concurrent, plan order (report --all-apps)':<44}{together['seconds']:>9.1f}{together['estimate']:>10.0f}"
    )
    print(f"{'one after another':<44}{alone['seconds']:>9.1f}{alone['estimate']:>10.0f}")
    print(f"{'incremental, 6 h later (sizes known)':<44}{again['seconds']:>9.1f}{again['estimate']:>10.0f}")
    print(f"concurrent is {alone['seconds'] / together['seconds']:.2f}x one after another")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
