"""Benchmark: ``provkit fetch`` as users run it, under Graph's reporting throttle, against the throttle-bound
rate and the official Graph SDK's page iterator on the same window, in the same run.

The simulated Graph server runs in its own process (``provkit emulator``, the default tenant: 6,000 users, 7
days, one app per scenario) with the throttle ON: 5 requests per 10 s per app and tenant on ``/auditLogs``,
throttled calls counted too, 429 with Retry-After, as Graph documents. One busy app (Dropbox Business) is fetched
over the whole 7 days (``--days``; at least 30,000 entries), three ways:

- the throttle-bound rate: the window's entries over the floor time for 1,000-entry pages, the first five
  requests free: ``entries / ((ceil(entries / 1000) - 5) x 2 s)``; no client can do better;
- provkit: the ``provkit fetch --app APP --start S --end E --store DIR --json`` command itself, in a child
  process with the emulator's ``PROVKIT_*`` settings, its defaults untouched, timed from launch to exit
  (start-up, sign-in, app resolution, job snapshot, schema, assignments, group facts, audits, log pages,
  Parquet writes);
- the SDK: msgraph-sdk's ``client.audit_logs.provisioning.get`` with ``$top=1000`` and the same filter, then
  ``msgraph_core.PageIterator.iterate``, with the SDK's default middleware (its RetryHandler honours
  Retry-After on 429). Installed with the ``bench`` extra (``pip install -e .[bench]``). It turns every entry
  into models, tens of milliseconds each (``Entity.get_field_deserializers`` runs thousands of imports per
  entry), so it is stopped after ``--sdk-seconds`` and its rate is the entries over that time;
- the SDK's paging alone (a stand-in, and the only SDK figure when msgraph-sdk is missing): ``$top=1000``,
  follow nextLink, on 429 sleep Retry-After and retry, as its retry handler does, without the model parsing;
  it runs to the end.

The runs are 12 s apart so that none starts inside another's throttle window. ``--runs N`` runs the command N
times (the SDK once: it alone takes minutes) and prints every run's figures, not the best, each with the
machine's load average before and after it (the cores are shared, and load moves the figures). For each run, the server's request log shows
where the time went: launch to the first throttled call (start-up, sign-in, app resolution), first to last
throttled call (against the least the throttle allows for that many calls), and the last answer to exit
(normalising and writing the last piece, closing); and the tightest span of 6 consecutive throttled calls, in
the first window and after it (>= 10 s means the server never saw more than 5 in a window).

    python bench/bench_fetch.py              # 6,000 users, 7 days: 32,532 entries (about 6 minutes)
    python bench/bench_fetch.py --runs 3     # the command three times, the SDK once (about 9 minutes)
    python bench/bench_fetch.py --skip-sdk   # provkit only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from provkit.data.auth import Settings
from provkit.data.graph import GraphClient
from provkit.data.pacing import AuditPacer
from provkit.data.sources.graph import connect

NOW = "2025-03-01T12:00:00Z"
APP = "Dropbox Business"
PAGE = 1000  # the page size the throttle-bound rate assumes
THROTTLE_LIMIT, THROTTLE_WINDOW = 5, 10.0


# ---- the emulator in its own process (bench_incremental uses this too) -----------------------------------------
class Emulator:
    """``provkit emulator`` started with ``args`` in a child process; ``env`` holds the settings it wrote."""

    def __init__(self, args: Sequence[str], *, timeout: float = 300) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="provkit-bench-"))
        env_file = self.folder / "emulator.env"
        command = [sys.executable, "-m", "provkit.cli.main", "emulator", "--env-file", str(env_file), *args]
        self.log = open(self.folder / "emulator.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not env_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the emulator did not start:\n{(self.folder / 'emulator.log').read_text()}")
            time.sleep(0.2)
        self.env: dict[str, str] = {}
        for line in env_file.read_text().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                self.env[key] = value
        self.settings = Settings.from_env(self.env)
        self.base_url = self.env["PROVKIT_GRAPH_URL"]

    def client(self, *, paced: bool = True) -> GraphClient:
        """A signed-in GraphClient; ``paced=False`` for a server whose throttle is off (nothing to pace)."""
        return connect(
            self.settings,
            secret=self.env["PROVKIT_CLIENT_SECRET"],
            method="secret",
            cache_path=False,
            pacer=None if paced else AuditPacer(limit=1_000_000, per=1.0),
        )

    def session(self) -> requests.Session:
        session = requests.Session()
        session.verify = self.env["PROVKIT_CA_BUNDLE"]
        session.trust_env = False  # a REQUESTS_CA_BUNDLE in the environment would replace the server's CA
        return session

    def advance(self, minutes: float) -> str:
        """Move the simulated clock forward; returns the new simulated now."""
        answer = self.session().post(
            f"{self.base_url}/_sim/advance", params={"minutes": str(minutes)}, timeout=60
        )
        answer.raise_for_status()
        return answer.json()["now"]

    def peak_rss_mb(self) -> float | None:
        """The emulator's peak resident memory in MB (Linux), or None where unknown."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_average() -> str:
    """The machine's 1-minute load average, as uptime prints it ("?" where unknown): the bench shares its cores."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def odata_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the SDK ---------------------------------------------------------------------------------------------------
def log_filter(sp_id: str, start: datetime, end: datetime) -> str:
    return (
        f"servicePrincipal/id eq '{sp_id}' and activityDateTime ge {odata_time(start)} "
        f"and activityDateTime lt {odata_time(end)}"
    )


def sdk_page_iterator(
    emulator: Emulator, token: str, sp_id: str, start: datetime, end: datetime, max_seconds: float
) -> dict[str, float]:
    """msgraph-sdk's provisioning list request ($top=1000) and PageIterator over the entries, default middleware,
    stopped (its callback returns False) after ``max_seconds``: its rate is the entries over that time.

    Raises ImportError when msgraph-sdk is not installed.
    """
    import httpx
    from kiota_abstractions.authentication import (
        AccessTokenProvider,
        AllowedHostsValidator,
        BaseBearerTokenAuthenticationProvider,
    )
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.audit_logs.provisioning.provisioning_request_builder import (
        ProvisioningRequestBuilder,
    )
    from msgraph.graph_request_adapter import options
    from msgraph_core import GraphClientFactory, PageIterator

    host = urlsplit(emulator.base_url).hostname or ""

    class Token(AccessTokenProvider):
        async def get_authorization_token(self, uri, additional_authentication_context=None) -> str:
            return token

        def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
            return AllowedHostsValidator([host])

    async def run() -> dict[str, float]:
        # The SDK's own client with its default middleware (retry, redirect, ...); only TLS trust and the
        # base URL point it at the local server.
        http = httpx.AsyncClient(verify=emulator.env["PROVKIT_CA_BUNDLE"], trust_env=False, timeout=120)
        http = GraphClientFactory.create_with_default_middleware(client=http, options=options)
        adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(Token()), http)
        adapter.base_url = f"{emulator.base_url}/v1.0"
        client = GraphServiceClient(request_adapter=adapter)
        query = ProvisioningRequestBuilder.ProvisioningRequestBuilderGetQueryParameters(
            filter=log_filter(sp_id, start, end), top=PAGE
        )
        began = time.monotonic()
        first = await client.audit_logs.provisioning.get(RequestConfiguration(query_parameters=query))
        entries = 0

        def count(_item: object) -> bool:
            nonlocal entries
            entries += 1
            return time.monotonic() - began < max_seconds

        iterator = PageIterator(first, adapter)
        await iterator.iterate(count)
        seconds = time.monotonic() - began
        await http.aclose()
        page = iterator.current_page
        finished = not page.odata_next_link and iterator.pause_index >= len(page.value or [])
        return {"entries": entries, "seconds": seconds, "finished": finished}

    return asyncio.run(run())


def stand_in_pager(
    emulator: Emulator, token: str, sp_id: str, start: datetime, end: datetime
) -> dict[str, float]:
    """The SDK's behaviour without the SDK: $top=1000, follow nextLink, on 429 sleep Retry-After and retry."""
    session = emulator.session()
    headers = {"Authorization": f"Bearer {token}"}
    url: str | None = f"{emulator.base_url}/v1.0/auditLogs/provisioning"
    params: dict[str, str] | None = {"$filter": log_filter(sp_id, start, end), "$top": str(PAGE)}
    entries = 0
    began = time.monotonic()
    while url:
        answer = session.get(url, params=params, headers=headers, timeout=120)
        if answer.status_code == 429:
            time.sleep(float(answer.headers.get("Retry-After", "1")))
            continue
        answer.raise_for_status()
        body = answer.json()
        entries += len(body["value"])
        url, params = body.get("@odata.nextLink"), None
    return {"entries": entries, "seconds": time.monotonic() - began, "finished": True}


# ---- provkit fetch, the command -------------------------------------------------------------------------------
def run_fetch_command(
    emulator: Emulator, start: datetime, end: datetime, store: Path
) -> tuple[dict, float, float, float]:
    """``provkit fetch`` in a child process with the emulator's settings: its JSON summary, wall seconds, and the
    wall-clock times of its launch and exit."""
    env = {**os.environ, **emulator.env}
    command = [
        sys.executable,
        "-m",
        "provkit.cli.main",
        "fetch",
        "--app",
        APP,
        "--start",
        odata_time(start),
        "--end",
        odata_time(end),
        "--store",
        str(store),
        "--json",
    ]
    launched, began = time.time(), time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"provkit fetch failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout), seconds, launched, launched + seconds


def timeline(emulator: Emulator, since: float, launched: float, exited: float) -> dict[str, Any] | None:
    """From the server's request log, the /auditLogs calls that arrived after ``since`` (wall-clock time): how
    many, their 429s, when the first arrived and the last was answered (seconds from ``launched``), and the
    tightest span of ``limit + 1`` consecutive arrivals, overall and from the second window on (>= the window
    means the server never saw more than ``limit`` in a window)."""
    answer = emulator.session().get(f"{emulator.base_url}/_sim/requests", timeout=60)
    if answer.status_code != 200:
        return None
    calls = sorted(
        (r["time"], r["status"], r.get("answered") or r["time"])
        for r in answer.json()["value"]
        if "/auditLogs/" in (r.get("path") or "") and r["time"] >= since
    )
    times = [t for t, _, _ in calls]
    if len(times) <= THROTTLE_LIMIT:
        return None
    spans = [b - a for a, b in zip(times, times[THROTTLE_LIMIT:], strict=False)]
    return {
        "calls": len(calls),
        "throttled": sum(1 for _, status, _ in calls if status == 429),
        "tightest": min(spans),
        "tightest_first": min(spans[:THROTTLE_LIMIT]),
        "tightest_later": min(spans[THROTTLE_LIMIT:] or spans),
        "first_call": times[0] - launched,
        "last_answer": max(a for _, _, a in calls) - launched,
        "exit": exited - launched,
        "first_to_last": times[-1] - times[0],
        # Where first-to-last goes: each window's first arrival after the one before (10 s at best), and the
        # last window's chain (its calls after its first).
        "window_steps": [
            b - a
            for a, b in zip(times[::THROTTLE_LIMIT], times[THROTTLE_LIMIT::THROTTLE_LIMIT], strict=False)
        ],
        "first_window_chain": times[min(THROTTLE_LIMIT, len(times)) - 1] - times[0],
        "last_window_chain": times[-1] - times[(len(times) - 1) // THROTTLE_LIMIT * THROTTLE_LIMIT],
    }


def throttle_bound_seconds(entries: int) -> float:
    """The least time any client needs for ``entries`` in 1,000-entry pages: the first five calls are free."""
    pages = math.ceil(entries / PAGE)
    return max(0, pages - THROTTLE_LIMIT) * THROTTLE_WINDOW / THROTTLE_LIMIT


# ---- the run ---------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=6000, help="users in the tenant (default 6000)")
    parser.add_argument("--days", type=int, default=7, help="days of history, all fetched (default 7)")
    parser.add_argument("--skip-sdk", action="store_true", help="run provkit fetch only")
    parser.add_argument(
        "--sdk-seconds",
        type=float,
        default=150,
        help="stop the SDK's iterator after this long (default 150; it parses each entry into models, tens of "
        "ms each, so the whole window takes many minutes); its rate is entries over time",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="run provkit fetch this many times, 12 s apart (default 1)"
    )
    args = parser.parse_args(argv)

    print(
        f"Simulated Graph in its own process, throttle ON (5 requests / 10 s on /auditLogs): {args.users} users, "
        f"{args.days} days, app {APP!r}.",
        flush=True,
    )
    ours: list[tuple[float, dict, dict[str, Any] | None]] = []
    with Emulator(["--users", str(args.users), "--days", str(args.days), "--now", NOW]) as emulator:
        end = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
        start = end - timedelta(days=args.days)
        for run in range(max(1, args.runs)):
            if run:
                time.sleep(12)  # let the calls of the run before leave the server's 10-s window
            root = Path(tempfile.mkdtemp(prefix="provkit-bench-store-"))
            load_before = load_average()
            try:
                summary, seconds, launched, exited = run_fetch_command(emulator, start, end, root)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            spans = timeline(emulator, launched - 0.5, launched, exited)
            ours.append((seconds, summary, spans))
            print(
                f"provkit fetch run {run + 1} (the command, defaults): {summary['entries']} entries, "
                f"{summary['pages']} pages, {summary['slices']} commits, {summary['throttle_waits']} throttled "
                f"(429); {seconds:.1f} s from launch to exit ({summary['seconds']:.1f} s inside fetch_app); "
                f"load average (1 min) {load_before} before, {load_average()} after",
                flush=True,
            )
            if spans:
                least = (spans["calls"] - 1) // THROTTLE_LIMIT * THROTTLE_WINDOW
                print(
                    f"  where the time went: launch to first throttled call {spans['first_call']:.1f} s; first to "
                    f"last of its {spans['calls']} throttled calls {spans['first_to_last']:.1f} s (the throttle's "
                    f"least {least:.0f} s); last answer to exit {spans['exit'] - spans['last_answer']:.1f} s",
                    flush=True,
                )
                steps = ", ".join(f"{step:.2f}" for step in spans["window_steps"])
                print(
                    f"  first to last = each window's first arrival after the one before ({steps} s; 10 s at "
                    f"best) + the last window's chain {spans['last_window_chain']:.2f} s (the first window's: "
                    f"{spans['first_window_chain']:.2f} s)",
                    flush=True,
                )
                print(
                    f"  the server saw {spans['throttled']} answered 429; tightest span of 6 consecutive throttled "
                    f"calls {spans['tightest']:.3f} s (first window {spans['tightest_first']:.3f} s, later "
                    f"{spans['tightest_later']:.3f} s; the limit needs >= {THROTTLE_WINDOW:.0f} s)",
                    flush=True,
                )
        entries = int(ours[0][1]["entries"])
        if entries < 30_000:
            print(f"note: the window holds {entries} entries, fewer than the 30,000 the goal asks for")
        runs: list[tuple[str, dict[str, float]]] = []
        if not args.skip_sdk:
            sp_id = ours[0][1]["service_principal_id"]
            try:
                import msgraph  # noqa: F401
            except ImportError as exc:
                print(
                    f"msgraph-sdk is not installed ({exc.name}): only the stand-in runs. Install the bench extra "
                    "(pip install -e .[bench]) for the SDK itself.",
                    flush=True,
                )
            else:
                time.sleep(12)  # let earlier calls leave the server's 10-s window
                token = emulator.client().tokens.token()
                load_before = load_average()
                sdk = sdk_page_iterator(emulator, token, sp_id, start, end, args.sdk_seconds)
                runs.append(("msgraph-sdk PageIterator, $top=1000", sdk))
                print(
                    f"msgraph-sdk PageIterator: {sdk['entries']} entries in {sdk['seconds']:.1f} s"
                    + ("" if sdk["finished"] else " (stopped there)")
                    + f"; load average {load_before} before, {load_average()} after",
                    flush=True,
                )
            time.sleep(12)
            token = emulator.client().tokens.token()
            load_before = load_average()
            pager = stand_in_pager(emulator, token, sp_id, start, end)
            runs.append(("stand-in: SDK paging, no model parsing", pager))
            print(
                f"stand-in pager ($top=1000, nextLink, Retry-After on 429: the SDK's paging and retry behaviour "
                f"without its model parsing): {pager['entries']} entries in {pager['seconds']:.1f} s; load "
                f"average {load_before} before, {load_average()} after",
                flush=True,
            )

    floor = throttle_bound_seconds(entries)
    bound = entries / floor if floor else float("inf")
    print()
    print(f"{'':<44}{'seconds':>9}{'entries/s':>11}{'of bound':>10}")
    print(f"{'throttle-bound (1,000-entry pages)':<44}{floor:>9.1f}{bound:>11.0f}{'100%':>10}")
    rates = []
    for number, (seconds, summary, _) in enumerate(ours, 1):
        rate = int(summary["entries"]) / seconds
        rates.append(rate)
        label = f"provkit fetch run {number} (launch to exit)"
        print(f"{label:<44}{seconds:>9.1f}{rate:>11.0f}{rate / bound:>10.0%}")
    for label, run_figures in runs:
        rate = run_figures["entries"] / run_figures["seconds"]
        print(f"{label:<44}{run_figures['seconds']:>9.1f}{rate:>11.0f}{rate / bound:>10.0%}")
    for label, run_figures in runs:
        rate = run_figures["entries"] / run_figures["seconds"]
        ratios = ", ".join(f"{ours_rate / rate:.2f}x" for ours_rate in rates)
        met = sum(1 for ours_rate in rates if ours_rate >= 2 * rate)
        print(f"provkit is {ratios} the {label} (target >= 2x: met in {met} of {len(rates)})")
    spans = ours[0][2]
    calls = int(spans["calls"]) if spans else math.ceil(entries / PAGE) + 1
    exact = (calls - 1) // THROTTLE_LIMIT * THROTTLE_WINDOW
    print(
        f"(provkit's {calls} throttled calls need at least {exact:.0f} s at 5 per 10 s, bursts of five; the bound "
        f"above spreads 1,000-entry pages evenly, so a client with no start-up, no latency and no margin reaches "
        f"{floor / exact:.0%})"
    )
    shares = ", ".join(f"{rate / bound:.0%}" for rate in rates)
    met = sum(1 for rate in rates if rate >= 0.9 * bound)
    print(f"provkit is {shares} of the throttle-bound rate (target >= 90%: met in {met} of {len(rates)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
