"""Shared pieces of the reliability suite: a small simulated tenant, a server for it, clients, CLI runs, scans."""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from provkit import cli
from provkit.auth import Settings, sign_in
from provkit.graph import AuditPacer, GraphClient
from provkit.sim.faults import FaultPlan
from provkit.sim.server import RunningServer, start_server
from provkit.sim.tenant import Tenant
from provkit.sim.timefmt import ticks_to_datetime
from provkit.store import AppStore

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
DAYS = 3
SCENARIOS = ("healthy", "skipped-users", "bad-credentials")
APPS = ("Salesforce", "Zendesk", "Contoso SCIM App")  # one per scenario, in that order
AMBIGUOUS = "Slack"  # two single sign-on apps of the simulated tenant share this name


@dataclass
class Tally:
    requests_faulted: int = 0  # Graph requests the simulator answered with an injected fault
    requests_seen: int = 0  # Graph requests in the logs of the fault tests' servers
    inputs_tried: int = 0  # malformed inputs fed to ``provkit import``
    secrets_found: int = 0  # sentinel secret or issued token found outside the token cache
    places_scanned: int = 0  # files, outputs, messages and log lines searched for them
    writes_sent: int = 0  # requests that change the tenant, sent without an explicit flag
    requests_checked: int = 0  # requests in the logs of the read-only tests

    def line(self) -> str:
        return (
            f"reliability: {self.requests_faulted} requests faulted (of {self.requests_seen}), "
            f"{self.inputs_tried} inputs tried, {self.secrets_found} secrets found "
            f"(in {self.places_scanned} files, outputs and log lines), {self.writes_sent} writes sent "
            f"(of {self.requests_checked} requests checked)"
        )


def make_tenant(now: datetime | None = NOW) -> Tenant:
    """The suite's tenant: 400 users, 3 days, three apps. A fixed ``now`` makes two tenants serve the same logs."""
    return Tenant(
        seed=7,
        users_count=400,
        days=DAYS,
        now=now or datetime.now(UTC).replace(microsecond=0),
        scenarios=SCENARIOS,
    )


def serve(
    tenant: Tenant,
    state_dir: Path,
    *,
    faults: str | None = None,
    seed: int = 0,
    slow_seconds: float = 1.5,
    secret: str | None = None,
) -> RunningServer:
    plan = FaultPlan.parse(faults, seed=seed, slow_seconds=slow_seconds) if faults else None
    return start_server(tenant, faults=plan, throttle=False, state_dir=state_dir, client_secret=secret)


def tenant_now(server: RunningServer) -> datetime:
    return ticks_to_datetime(server.tenant.now_ticks)


@dataclass
class Sleeps:
    """Stands in for time.sleep in retrying clients: records each wait, sleeps none (the server's Retry-After
    and the backoff are honoured in intent, not in wall time)."""

    waits: list[float]

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client_for(
    server: RunningServer,
    *,
    sleep: Callable[[float], None] | None = None,
    timeout: tuple[float, float] = (10, 120),
) -> GraphClient:
    """A read-only client signed in with the server's secret, tokens in memory, no pacing (no throttle here)."""
    env = server.env()
    settings = Settings.from_env(env)
    tokens = sign_in(settings, method="secret", secret=env["PROVKIT_CLIENT_SECRET"], cache_path=False)
    return GraphClient(
        settings,
        tokens,
        pacer=AuditPacer(limit=1_000_000, per=1.0),
        sleep=sleep or time.sleep,
        timeout=timeout,
    )


def settled(server: RunningServer) -> int:
    """The request log's length once it stops growing (a request is logged on arrival, answered later)."""
    seen = -1
    while len(server.graph.requests) != seen or any(r.answered is None for r in server.graph.requests[-20:]):
        seen = len(server.graph.requests)
        time.sleep(0.05)
    return seen


def live_env(server: RunningServer, home: Path, *, client_id: str | None = None) -> dict[str, str]:
    """Environment that makes the command line treat ``server`` as a live tenant (not --demo): the PROVKIT_*
    settings, a store and a token cache (through XDG_CACHE_HOME) inside ``home``."""
    env = server.env()
    if client_id:
        env["PROVKIT_CLIENT_ID"] = client_id
    env["PROVKIT_STORE"] = str(home / "store")
    env["XDG_CACHE_HOME"] = str(home / "cache")
    env["XDG_DATA_HOME"] = str(home / "data")
    return env


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Run:
    """``provkit ARGV`` in this process; an exception escaping main() fails the test (the user would have seen
    a traceback)."""
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return Run(code, out, err)


def readable_text(path: Path) -> str:
    """What a person or a tool could read out of a file: Parquet tables rendered as text, gzip unpacked, other
    files decoded leniently (compressed bytes would hide a token from a plain byte search)."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        buffer = io.StringIO()
        table.to_pandas().to_csv(buffer)
        return buffer.getvalue() + str(table.schema.metadata or {})
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", "replace")


def raw_event_ids(app_store: AppStore) -> list[str]:
    """Every id in the events parts the manifest lists, read straight from the Parquet files (no dedupe)."""
    ids: list[str] = []
    for name in app_store.manifest()["parts"]["events"]:
        ids.extend(pq.read_table(app_store.path / "events" / name, columns=["id"]).column("id").to_pylist())
    return ids
