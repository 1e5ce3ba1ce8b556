"""Benchmark: paging /auditLogs/provisioning from the simulated Graph server, against a "load everything" server.

The simulator never holds the provisioning logs: each page is rendered on demand from (app, cycle, index) and
resumes after the position key its ``$skiptoken`` carries. This measures, in one run:

- the tenant's build time (directory, scenarios and every app's cycle timeline);
- pages per second for 1,000-entry pages over HTTPS, throttle off, one sequential client that signs in with msal,
  follows ``@odata.nextLink`` verbatim and parses each page (server and client share this process);
- the in-process cost of producing the same pages (``LogQuery.page``: merge, render, no HTTP);
- the baseline: a server that loaded every entry into memory still has to serialise each page; ``json.dumps``
  of the same pages held in a list gives its best case per page. Its start-up (rendering every entry once) and
  its memory (entries held as dicts) are extrapolated from the pages measured, and the output says so;
- peak RSS of this process (``resource.getrusage`` ru_maxrss) after each phase.

    python bench/bench_server.py                      # --users 100000 --days 30, 100 pages
    python bench/bench_server.py --users 20000 --days 7 --pages 50
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import msal
import requests

from provkit.sim.logquery import LogQuery
from provkit.sim.server import MAX_TOP, start_server
from provkit.sim.tenant import Tenant

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc); the peak where /proc is missing."""
    gc.collect()
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_mb()
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_tenant(users: int, days: int, seed: int) -> tuple[Tenant, float, int]:
    """The tenant with every timeline built, the seconds it took, and the entries inside the window."""
    started = time.perf_counter()
    tenant = Tenant(seed=seed, users_count=users, days=days, now=NOW)
    for app in tenant.apps:
        app.timeline()
    elapsed = time.perf_counter() - started
    visible = sum(
        c.entries_before(tenant.now_ticks + 1) - c.entries_before(tenant.window_start)
        for app in tenant.apps
        for c in app.timeline().cycles
    )
    return tenant, elapsed, visible


def page_over_https(tenant: Tenant, pages: int) -> tuple[list[float], float, int, int]:
    """Seconds per page, the seconds of those spent parsing JSON in the client, and the entries and bytes
    received, for ``pages`` pages of MAX_TOP entries."""
    server = start_server(tenant, port=0, throttle=False)
    session = requests.Session()
    session.verify = str(server.ca_path)
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override verify
    try:
        app = msal.ConfidentialClientApplication(
            server.client_id,
            authority=f"{server.base_url}/{tenant.tenant_id}",
            client_credential=server.client_secret,
            instance_discovery=False,
            http_client=session,
        )
        token = app.acquire_token_for_client(scopes=[f"{server.base_url}/.default"])["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        url: str | None = f"{server.base_url}/v1.0/auditLogs/provisioning?$top={MAX_TOP}"
        times: list[float] = []
        parsing = 0.0
        entries = received = 0
        while url and len(times) < pages:
            started = time.perf_counter()
            response = session.get(url, headers=headers, timeout=120)
            response.raise_for_status()
            answered = time.perf_counter()
            body = response.json()
            times.append(time.perf_counter() - started)
            parsing += time.perf_counter() - answered
            entries += len(body["value"])
            received += len(response.content)
            url = body.get("@odata.nextLink")
        return times, parsing, entries, received
    finally:
        session.close()
        server.stop()


def render_in_process(tenant: Tenant, pages: int) -> tuple[list[list[dict]], float]:
    """The same first pages (newest first), rendered by the server's query code without HTTP, and the time."""
    query = LogQuery(tenant, None, descending=True)
    held: list[list[dict]] = []
    after = None
    started = time.perf_counter()
    for _ in range(pages):
        page = query.page(MAX_TOP, after)
        held.append(page.items)
        after = page.last_key
        if after is None:
            break
    return held, time.perf_counter() - started


def dump_pages(held: list[list[dict]]) -> list[float]:
    times = []
    for items in held:
        started = time.perf_counter()
        json.dumps(
            {"@odata.context": "$metadata#auditLogs/provisioning", "value": items}, separators=(",", ":")
        )
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000, help="users in the tenant (default 100000)")
    parser.add_argument("--days", type=int, default=30, help="days of history (default 30)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pages", type=int, default=100, help="pages to fetch over HTTPS (default 100)")
    parser.add_argument(
        "--baseline-pages", type=int, default=50, help="pages held in memory for the baseline (default 50)"
    )
    args = parser.parse_args(argv)

    print(
        f"Building a tenant of {args.users} users and {args.days} days (seed {args.seed})...", file=sys.stderr
    )
    tenant, build_s, visible = build_tenant(args.users, args.days, args.seed)
    rss_built = peak_rss_mb()
    total_pages = -(-visible // MAX_TOP)

    print(f"Fetching {args.pages} pages of {MAX_TOP} over HTTPS...", file=sys.stderr)
    times, parsing, entries, received = page_over_https(tenant, args.pages)
    http_s = sum(times)
    rss_served = peak_rss_mb()

    print(f"Rendering and holding {args.baseline_pages} pages in memory for the baseline...", file=sys.stderr)
    rss_before_held = current_rss_mb()
    held, render_s = render_in_process(tenant, args.baseline_pages)
    held_mb = max(0.0, current_rss_mb() - rss_before_held)
    rss_held = peak_rss_mb()
    dumps = dump_pages(held)
    held_entries = sum(len(p) for p in held)
    per_entry_mb = held_mb / max(1, held_entries)
    render_per_entry = render_s / max(1, held_entries)

    rows = [
        ("tenant", f"{len(tenant.apps)} apps, {visible:,} log entries in the window ({total_pages:,} pages)"),
        ("tenant build (directory + timelines)", f"{build_s:.2f} s"),
        ("", ""),
        ("simulator over HTTPS, sequential client", f"{len(times)} pages, {entries:,} entries"),
        ("  pages per second", f"{len(times) / http_s:.1f}"),
        ("  ms per page: median / max", f"{statistics.median(times) * 1e3:.0f} / {max(times) * 1e3:.0f}"),
        ("  entries per second", f"{entries / http_s:,.0f}"),
        ("  ms per page parsing JSON in the client", f"{parsing / len(times) * 1e3:.0f}"),
        ("  KiB per page", f"{received / len(times) / 1024:,.0f}"),
        (
            "  the same pages rendered in-process, no HTTP",
            f"{len(held) / render_s:.1f} pages/s (LogQuery.page)",
        ),
        (
            "  time for every page in the window",
            f"{total_pages / (len(times) / http_s):,.0f} s (extrapolated)",
        ),
        ("", ""),
        ("baseline: load everything, then serve", f"{len(held)} pages held as dicts"),
        ("  json.dumps, pages per second", f"{len(dumps) / sum(dumps):.1f}"),
        ("  start-up: render every entry once", f"{render_per_entry * visible:,.0f} s (extrapolated)"),
        (
            "  memory to hold the pages measured",
            f"{held_mb:,.0f} MiB ({per_entry_mb * 2**20:,.0f} bytes per entry)",
        ),
        ("  memory to hold every entry", f"{per_entry_mb * visible:,.0f} MiB (extrapolated)"),
        ("", ""),
        ("peak RSS after the build", f"{rss_built:,.0f} MiB"),
        ("peak RSS after paging over HTTPS", f"{rss_served:,.0f} MiB"),
        ("peak RSS holding the baseline's pages", f"{rss_held:,.0f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\nbench_server: /auditLogs/provisioning, $top={MAX_TOP}, throttle off")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}" if name else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
