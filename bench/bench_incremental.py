"""Benchmark: an incremental fetch (after 40 new minutes) against the first fetch of a large tenant.

The simulated Graph server runs in its own process (``provkit emulator``) with a 100,000-user tenant and 30
days of history (about a million log entries over its seven apps). Its reporting throttle is OFF: through
Graph's 5-requests-per-10-s limit the first fetch alone would take over half an hour of waiting, which measures
the throttle, not provkit (bench_fetch.py measures provkit under the throttle). The client is unpaced to match.

1. First fetch: every app with a provisioning job, the whole history, into an empty store (the baseline).
2. The simulated clock moves forward 40 minutes (``POST /_sim/advance``).
3. Second fetch: the same apps and window start, up to the new now; only what is new is asked for (plus the
   store's lookback before the watermark for late entries, three hours by default).

Reported for both: wall time, pages and requests, entries read, new entries and duplicates dropped; the
client's peak and current resident memory; the store's size on disk; and the time to read the store back.

    python bench/bench_incremental.py                            # 100,000 users, 30 days
    python bench/bench_incremental.py --users 20000 --days 7     # smaller, when the full size is too slow
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_fetch import Emulator, rss_mb

from provkit.data.fetch import FetchSummary, fetch_app
from provkit.data.graph import GraphClient
from provkit.data.sources.graph import provisioning_apps
from provkit.data.store import Store

NOW = "2025-03-01T12:00:00Z"


class CallTimes:
    """Wall time spent inside HTTP calls, by kind of call, measured around the client's session."""

    KINDS = ("log pages", "directory audits", "group members", "other Graph calls")

    def __init__(self, client: GraphClient) -> None:
        self.seconds = dict.fromkeys(self.KINDS, 0.0)
        self.calls = dict.fromkeys(self.KINDS, 0)
        send = client.session.request

        def timed(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            began = time.monotonic()
            try:
                return send(method, url, *args, **kwargs)
            finally:
                kind = self.kind(url)
                self.seconds[kind] += time.monotonic() - began
                self.calls[kind] += 1

        client.session.request = timed  # type: ignore[method-assign,assignment]

    @staticmethod
    def kind(url: str) -> str:
        if "/auditLogs/provisioning" in url:
            return "log pages"
        if "/auditLogs/directoryAudits" in url:
            return "directory audits"
        if "embers" in url and "/groups/" in url:
            return "group members"
        return "other Graph calls"

    def snapshot(self) -> tuple[dict[str, float], dict[str, int]]:
        return dict(self.seconds), dict(self.calls)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def fetch_all(
    client: GraphClient,
    store: Store,
    apps: list[dict],
    tenant_id: str,
    start: datetime,
    end: datetime,
    page_size: int,
) -> dict[str, float]:
    """Fetch every app in turn; returns the totals."""
    requests_before = client.stats.requests
    totals: dict[str, float] = {"entries": 0, "new": 0, "duplicates": 0, "pages": 0, "slices": 0}
    began = time.monotonic()
    for app in apps:
        summary: FetchSummary
        summary, _ = fetch_app(
            client,
            store,
            app["service_principal_id"],
            start=start,
            end=end,
            tenant_id=tenant_id,
            page_size=page_size,
        )
        for key in totals:
            totals[key] += getattr(summary, key)
        print(f"  {summary.line()}", flush=True)
    totals["seconds"] = time.monotonic() - began
    totals["requests"] = client.stats.requests - requests_before
    return totals


def time_split(before: tuple[dict, dict], after: tuple[dict, dict], wall: float) -> str:
    parts = []
    for kind in CallTimes.KINDS:
        seconds, calls = after[0][kind] - before[0][kind], after[1][kind] - before[1][kind]
        parts.append(f"{kind} {seconds:.1f} s ({calls} calls)")
    outside = wall - sum(after[0].values()) + sum(before[0].values())
    return ", ".join(parts) + f", outside HTTP calls (parsing, normalising, writing) {outside:.1f} s"


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--users", type=int, default=100_000, help="users in the simulated tenant (default 100000)"
    )
    parser.add_argument("--days", type=int, default=30, help="days of history, all fetched (default 30)")
    parser.add_argument("--minutes", type=float, default=40, help="how far the clock moves (default 40)")
    parser.add_argument("--page-size", type=int, default=1000, help="$top (default 1000)")
    args = parser.parse_args(argv)

    print(
        f"Simulated Graph in its own process, throttle OFF (client unpaced): {args.users} users, {args.days} days "
        f"ending {NOW}, every scenario app; page size {args.page_size}.",
        flush=True,
    )
    built = time.monotonic()
    with Emulator(
        ["--users", str(args.users), "--days", str(args.days), "--now", NOW, "--no-throttle"], timeout=900
    ) as emulator:
        print(f"emulator ready in {time.monotonic() - built:.1f} s", flush=True)
        client = emulator.client(paced=False)
        times = CallTimes(client)
        tenant_id = emulator.settings.tenant_id or ""
        apps = provisioning_apps(client)
        now = datetime.fromisoformat(NOW.replace("Z", "+00:00")).astimezone(UTC)
        start = now - timedelta(days=args.days)
        root = Path(tempfile.mkdtemp(prefix="provkit-bench-store-"))
        try:
            store = Store(root)
            rss_before = rss_mb()
            print(
                f"first fetch: {len(apps)} apps, {start:%Y-%m-%d %H:%M} .. {now:%Y-%m-%d %H:%M} UTC",
                flush=True,
            )
            mark = times.snapshot()
            first = fetch_all(client, store, apps, tenant_id, start, now, args.page_size)
            peak_first, rss_first = peak_rss_mb(), rss_mb()
            first_split = time_split(mark, times.snapshot(), first["seconds"])

            later_text = emulator.advance(args.minutes)
            later = now + timedelta(minutes=args.minutes)
            print(f"clock advanced {args.minutes:g} min to {later_text}", flush=True)
            print(f"second fetch: {start:%Y-%m-%d %H:%M} .. {later:%Y-%m-%d %H:%M} UTC", flush=True)
            mark = times.snapshot()
            second = fetch_all(client, store, apps, tenant_id, start, later, args.page_size)
            second_split = time_split(mark, times.snapshot(), second["seconds"])

            began = time.monotonic()
            stored = sum(len(store.find(a["service_principal_id"]).tables().events) for a in apps)
            read_seconds = time.monotonic() - began
            on_disk = folder_mb(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        server_peak = emulator.peak_rss_mb()

    print()
    print(f"{'':<24}{'first fetch':>14}{'second fetch':>14}{'second/first':>14}")
    for key, label, fmt in (
        ("seconds", "wall time (s)", "{:.1f}"),
        ("pages", "log pages", "{:.0f}"),
        ("requests", "Graph requests", "{:.0f}"),
        ("entries", "entries read", "{:.0f}"),
        ("new", "new entries stored", "{:.0f}"),
        ("duplicates", "duplicates dropped", "{:.0f}"),
    ):
        ratio = f"{second[key] / first[key]:.4f}" if first[key] else "-"
        print(f"{label:<24}{fmt.format(first[key]):>14}{fmt.format(second[key]):>14}{ratio:>14}")
    print(f"first fetch: {first['entries'] / first['seconds']:.0f} entries/s")
    print(f"first fetch time: {first_split}")
    print(f"second fetch time: {second_split}")
    print(
        f"client memory: {rss_before:.0f} MB before, peak {peak_first:.0f} MB during the first fetch, "
        f"{rss_first:.0f} MB after it; peak over the run {peak_rss_mb():.0f} MB"
    )
    print(
        f"emulator process peak memory: {server_peak:.0f} MB" if server_peak else "emulator memory: unknown"
    )
    print(f"store: {stored} entries, {on_disk:.0f} MB on disk; read back (all apps) in {read_seconds:.1f} s")
    print(f"speed-up of the incremental fetch: {first['seconds'] / second['seconds']:.0f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
