"""Benchmark: provkit's fetch under Graph's reporting throttle, against the throttle-bound limit and a plain pager.

The simulated Graph server runs in its own process (``provkit emulator``) with the throttle ON: 5 requests per
10 s per app and tenant on ``/auditLogs``, throttled calls counted too, 429 with Retry-After, as Graph documents.
One app (Dropbox Business, every user in scope) is fetched over the whole history, three ways in one run:

- the limit: ``page size x 0.5 pages per second``, the most any client can get through the throttle;
- provkit: ``fetch_app`` with the default client (AuditPacer: at most 5 calls in any 10 s), the whole fetch
  timed: app resolution, job snapshot, schema, assignments, group facts, audits, log slices and Parquet writes;
- baseline: a plain sequential pager, what SDK page iterators do: one query for the window, follow
  ``@odata.nextLink``, and on 429 sleep Retry-After and retry. It only pages the logs. It runs twice: with the
  same page size as provkit (``$top=1000``), to the end; and with SDK defaults (no ``$top``, so the server's
  default page of 100), stopped after ``--sdk-default-seconds`` (its rate is the entries over that time).

The runs are 12 s apart so that none starts inside another's throttle window.

    python bench/bench_fetch.py                # 12,000 users, 7 days: about 65 pages of 1,000 (6 minutes)
    python bench/bench_fetch.py --users 20000  # more pages
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from provkit.auth import Settings
from provkit.fetch import fetch_app
from provkit.graph import AuditPacer, GraphClient
from provkit.sources.graph import connect
from provkit.store import Store

NOW = "2025-03-01T12:00:00Z"
APP = "Dropbox Business"
SCENARIO = "escrow-quarantine"
THROTTLE_PAGES_PER_SECOND = 0.5  # 5 requests per 10 s


# ---- the emulator in its own process (bench_incremental uses this too) -----------------------------------------
class Emulator:
    """``provkit emulator`` started with ``args`` in a child process; ``env`` holds the settings it wrote."""

    def __init__(self, args: Sequence[str], *, timeout: float = 300) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="provkit-bench-"))
        env_file = self.folder / "emulator.env"
        command = [sys.executable, "-m", "provkit.cli", "emulator", "--env-file", str(env_file), *args]
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


def odata_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the baseline ----------------------------------------------------------------------------------------------
def plain_pager(
    emulator: Emulator,
    token: str,
    sp_id: str,
    start: datetime,
    end: datetime,
    top: int,
    max_seconds: float | None = None,
) -> dict[str, float]:
    """Page the app's entries the way an SDK page iterator does: follow nextLink, sleep Retry-After on 429.

    ``top`` 0 leaves ``$top`` out. Stops after ``max_seconds`` when given; the rate stays entries over seconds.
    """
    session = emulator.session()
    headers = {"Authorization": f"Bearer {token}"}
    url: str | None = f"{emulator.base_url}/v1.0/auditLogs/provisioning"
    params: dict[str, str] | None = {
        "$filter": f"servicePrincipal/id eq '{sp_id}' and activityDateTime ge {odata_time(start)} "
        f"and activityDateTime lt {odata_time(end)}"
    }
    if top:
        params["$top"] = str(top)
    entries = pages = throttled = 0
    slept = 0.0
    began = time.monotonic()
    while url and (max_seconds is None or time.monotonic() - began < max_seconds):
        answer = session.get(url, params=params, headers=headers, timeout=120)
        if answer.status_code == 429:
            throttled += 1
            wait = float(answer.headers.get("Retry-After", "1"))
            slept += wait
            time.sleep(wait)
            continue
        answer.raise_for_status()
        body = answer.json()
        entries += len(body["value"])
        pages += 1
        url, params = body.get("@odata.nextLink"), None
    return {
        "entries": entries,
        "pages": pages,
        "requests": pages + throttled,
        "throttled": throttled,
        "slept": slept,
        "seconds": time.monotonic() - began,
        "finished": url is None,
    }


# ---- the run ---------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=12_000, help="users in the tenant (default 12000)")
    parser.add_argument("--days", type=int, default=7, help="days of history, all fetched (default 7)")
    parser.add_argument("--page-size", type=int, default=1000, help="$top of provkit and the first pager")
    parser.add_argument(
        "--sdk-default-seconds",
        type=float,
        default=60,
        help="how long the pager with SDK defaults (no $top) runs (default 60; 0 skips it)",
    )
    parser.add_argument("--skip-baseline", action="store_true", help="run provkit only")
    args = parser.parse_args(argv)
    limit = args.page_size * THROTTLE_PAGES_PER_SECOND

    print(
        f"Simulated Graph in its own process, throttle ON (5 requests / 10 s on /auditLogs): {args.users} users, "
        f"{args.days} days, app {APP!r}; page size {args.page_size}.",
        flush=True,
    )
    with Emulator(
        ["--users", str(args.users), "--days", str(args.days), "--now", NOW, "--scenario", SCENARIO]
    ) as emulator:
        end = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
        start = end - timedelta(days=args.days)
        client = emulator.client()
        root = Path(tempfile.mkdtemp(prefix="provkit-bench-store-"))
        try:
            began = time.monotonic()
            summary, _ = fetch_app(
                client,
                Store(root),
                APP,
                start=start,
                end=end,
                tenant_id=emulator.settings.tenant_id or "",
                page_size=args.page_size,
            )
            seconds = time.monotonic() - began
        finally:
            shutil.rmtree(root, ignore_errors=True)
        ours = summary.entries / seconds
        audit_calls = summary.pages + 1  # the log pages and one directory-audits page
        print(
            f"provkit fetch_app: {summary.entries} entries, {summary.pages} pages in {summary.slices} slices "
            f"(+1 audits call), {seconds:.1f} s (of which {summary.waited_seconds:.1f} s pacing), "
            f"{summary.throttle_waits} throttled (429)",
            flush=True,
        )
        baselines: list[tuple[str, dict[str, float]]] = []
        if not args.skip_baseline:
            runs = [(f"baseline pager, $top={args.page_size}", args.page_size, None)]
            if args.sdk_default_seconds:
                runs.append(("baseline pager, SDK defaults", 0, args.sdk_default_seconds))
            for label, top, cap in runs:
                time.sleep(12)  # let earlier calls leave the server's 10-s window
                token = client.tokens.token()
                base = plain_pager(emulator, token, summary.service_principal_id, start, end, top, cap)
                baselines.append((label, base))
                print(
                    f"{label}: {base['entries']} entries, {base['pages']} pages, {base['requests']} requests, "
                    f"{base['throttled']} throttled (429), {base['slept']:.0f} s sleeping on Retry-After, "
                    f"{base['seconds']:.1f} s" + ("" if base["finished"] else " (stopped there)"),
                    flush=True,
                )
    print()
    print(f"{'':<40}{'entries/s':>10}{'of limit':>10}{'provkit is':>12}")
    print(f"{'throttle-bound limit':<40}{limit:>10.0f}{'100%':>10}")
    print(f"{'provkit fetch_app (whole fetch)':<40}{ours:>10.0f}{ours / limit:>10.0%}")
    for label, base in baselines:
        rate = base["entries"] / base["seconds"]
        print(f"{label + ' (logs only)':<40}{rate:>10.0f}{rate / limit:>10.0%}{ours / rate:>11.2f}x")
    print(
        f"(limit = page size {args.page_size} x {THROTTLE_PAGES_PER_SECOND} pages/s; provkit made {audit_calls} "
        f"throttled-API calls, which at 5 per 10 s need about {max(0, audit_calls - 5) * 2:.0f} s)"
    )
    print(f"target: provkit >= 90% of the limit: {'met' if ours >= 0.9 * limit else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
