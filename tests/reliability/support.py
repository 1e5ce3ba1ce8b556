"""Shared pieces of the reliability suite: a small simulated tenant, a server for it, clients, CLI runs, scans."""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from provkit.cli import main as cli
from provkit.data.auth import Settings, sign_in
from provkit.data.graph import GraphClient
from provkit.data.pacing import AuditPacer
from provkit.data.store import AppStore, Store
from provkit.sim.faults import FaultPlan
from provkit.sim.server import RunningServer, start_server
from provkit.sim.tenant import Tenant
from provkit.sim.timefmt import ticks_to_datetime

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
    stores_damaged: int = (
        0  # stores the store tests damaged (files removed, garbled, cut; disk full; bad pages)
    )
    writers_raced: int = 0  # fetch processes started against a store another one was writing
    entries_checked: int = 0  # entries the store tests expected to find after the damage
    entries_lost: int = 0  # of those, entries the store did not hold in the end

    def line(self) -> str:
        return (
            f"reliability: {self.requests_faulted} requests faulted (of {self.requests_seen}), "
            f"{self.inputs_tried} inputs tried, {self.secrets_found} secrets found "
            f"(in {self.places_scanned} files, outputs and log lines), {self.writes_sent} writes sent "
            f"(of {self.requests_checked} requests checked), {self.stores_damaged} stores damaged, "
            f"{self.writers_raced} writers raced, {self.entries_lost} entries lost (of {self.entries_checked})"
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


# ---- a live session: the command line against the simulator as a live tenant ------------------------------------
SENTINEL = "SENTINEL~s3cret/Value+0123456789=xyz"  # '/', '+', '=' and '~' change when form- or URL-encoded
REPORT_APP = "Contoso SCIM App"


@dataclass
class CommandRun:
    """One command of the live session: what it printed and logged, and what the server received meanwhile."""

    label: str
    argv: list[str]
    code: int
    out: str
    err: str
    logs: list[str]  # formatted log records at DEBUG (in-process runs; a subprocess's are in ``err``)
    requests: list  # the simulator's RequestRecords that arrived during the run
    flagged: bool = False  # run with a flag allowing a call that changes nothing (validateCredentials)

    @property
    def text(self) -> str:
        return "\n".join([self.out, self.err, *self.logs])


@dataclass
class LiveSession:
    server: RunningServer
    home: Path
    env: dict[str, str]
    runs: list[CommandRun]
    jobs_before: dict[str, dict]
    jobs_after: dict[str, dict]

    def run(self, label: str) -> CommandRun:
        return next(r for r in self.runs if r.label == label)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def run_in_process(server: RunningServer, label: str, argv: list[str], env: dict[str, str]) -> CommandRun:
    """``provkit ARGV`` in this process with ``env`` set, output captured, every logger at DEBUG."""
    mark = settled(server)
    handler, root = _Records(), logging.getLogger()
    level = root.level
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("PROVKIT_")]:
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = cli.main(argv)
                except BaseException:  # noqa: BLE001 - what the user would have seen
                    err.write(traceback.format_exc())
                    code = -1
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
    return CommandRun(label, argv, code, out.getvalue(), err.getvalue(), handler.lines, _since(server, mark))


def run_subprocess(
    server: RunningServer, label: str, argv: list[str], env: dict[str, str], *, flagged: bool = False
) -> CommandRun:
    """``python -m provkit.cli.main ARGV`` (or ``python -c CODE ARGV`` when argv[0] is ``-c``) with ``env``."""
    mark = settled(server)
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROVKIT_")}
    command = (
        [sys.executable, *argv] if argv[0] == "-c" else [sys.executable, "-m", "provkit.cli.main", *argv]
    )
    done = subprocess.run(
        command, env={**base, **env}, capture_output=True, text=True, timeout=600, check=False
    )
    return CommandRun(
        label, argv, done.returncode, done.stdout, done.stderr, [], _since(server, mark), flagged
    )


def _since(server: RunningServer, mark: int) -> list:
    return list(server.graph.requests[mark : settled(server)])


def cli_has(command: str) -> bool:
    """Whether ``provkit COMMAND`` exists (``report`` and ``postmortem`` are being added)."""
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return command in subparsers.choices


_REPORT_WITHOUT_CLI = (
    "import argparse, sys\n"
    "from provkit.workbook import reports\n"
    "parser = argparse.ArgumentParser(prog='provkit report')\n"
    "reports.add_report_arguments(parser)\n"
    "sys.exit(reports.run_report(parser.parse_args(sys.argv[1:])))\n"
)


def report_argv(*args: str) -> list[str]:
    """argv for ``provkit report ARGS`` in a subprocess; through reports.run_report until the CLI has it."""
    return ["report", *args] if cli_has("report") else ["-c", _REPORT_WITHOUT_CLI, *args]


def job_states(server: RunningServer) -> dict[str, dict]:
    """Each provisioning app's job as the simulator serves it (what a write would change)."""
    tenant = server.tenant
    return {app.display_name: json.loads(json.dumps(tenant.job(app))) for app in tenant.apps}


def live_session(server: RunningServer, home: Path) -> LiveSession:
    """Every command a user runs against a live tenant, signed in with the read-write registration (so a write,
    if provkit sent one, would succeed and show), with a persistent token cache in ``home``."""
    env = live_env(server, home, client_id=server.admin_client_id)
    before = job_states(server)
    runs: list[CommandRun] = []

    def local(label: str, *argv: str) -> None:
        runs.append(run_in_process(server, label, list(argv), env))

    local("apps", "apps")
    local("fetch", "fetch", "--app", "Zendesk", "--since", "3d")
    local("cycles", "cycles", "--app", "Zendesk", "--since", "3d")
    local("cycles-json", "cycles", "--app", "Salesforce", "--json", "--since", "3d")
    local("diagnose", "diagnose", "--app", REPORT_APP, "--since", "3d")
    local("diagnose-json", "diagnose", "--app", "Zendesk", "--json", "--since", "3d")
    events = Store(home / "store").find("Zendesk").tables().events
    subject = str(events.loc[events["source_id"].notna(), "source_id"].iloc[0])
    local("explain", "explain", "--app", "Zendesk", "--object", subject, "--since", "3d")
    local(
        "postmortem", "postmortem", "--app", REPORT_APP, "--since", "2d", "--out", str(home / "postmortems")
    )
    runs.append(
        run_subprocess(
            server, "fetch-debug", ["--debug", "fetch", "--app", "Salesforce", "--since", "3d"], env
        )
    )
    runs.append(
        run_subprocess(
            server,
            "report",
            report_argv("--app", REPORT_APP, "--since", "3d", "--out", str(home / "reports")),
            env,
        )
    )
    runs.append(
        run_subprocess(
            server,
            "diagnose-validate",
            ["diagnose", "--app", REPORT_APP, "--since", "3d", "--validate-credentials"],
            env,
            flagged=True,
        )
    )
    # Failures whose messages must not carry the secret either: a wrong secret (its own token cache, or msal
    # would answer from the cache without asking), an app without the audit-log permission, an unknown app.
    wrong = {**env, "PROVKIT_CLIENT_SECRET": "WRONG" + SENTINEL, "XDG_CACHE_HOME": str(home / "cache-wrong")}
    runs.append(run_in_process(server, "wrong-secret", ["fetch", "--app", "Zendesk", "--since", "1d"], wrong))
    restricted = {**env, "PROVKIT_CLIENT_ID": server.restricted_client_id}
    runs.append(
        run_in_process(server, "no-permission", ["fetch", "--app", "Zendesk", "--since", "1d"], restricted)
    )
    local("unknown-app", "diagnose", "--app", "No Such App", "--since", "1d")
    return LiveSession(server, home, env, runs, before, job_states(server))
