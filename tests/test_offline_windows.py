"""``--offline`` honours the window: every command that reads the store alone (``provkit cycles``, ``diagnose``,
``explain``, ``report``, ``postmortem``) analyses the window it was given, not everything the store holds, and
says which window that is.

The simulated tenant is served over HTTPS by the local Graph-compatible server, as a live tenant would be (the
PROVKIT_* settings point at it), with a fixed "now" so that two fetches see the same logs. A module-wide store
holds three days of one app (Zendesk: a cycle every 40 minutes, about 108 of them); each test reads a window of it
offline, and compares with the same window fetched straight from the simulator into a fresh store and with the
notebooks' loader over the same store.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from provkit.analysis import cycles
from provkit.analysis.checks import run_checks
from provkit.cli.main import main
from provkit.data.auth import Settings, sign_in
from provkit.data.graph import GraphClient
from provkit.data.store import Store
from provkit.errors import ConfigError
from provkit.sim.server import RunningServer, start_server
from provkit.sim.tenant import Tenant
from provkit.workbook.notebook import load as notebook_load

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)  # the simulated tenant's "now": its logs end here
DAYS = 3
APP = "Zendesk"  # the skipped-users scenario: an incremental cycle every 40 minutes, users skipped
SCENARIOS = ("healthy", "skipped-users", "bad-credentials")
# A past window inside the stored three days, and the last six hours (--since 6h).
PAST = (NOW - timedelta(hours=30), NOW - timedelta(hours=26))
LAST_6H = (NOW - timedelta(hours=6), NOW)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def window_args(window: tuple[datetime, datetime]) -> list[str]:
    return ["--start", iso(window[0]), "--end", iso(window[1])]


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Env:
    server: RunningServer
    home: Path
    settings: dict[str, str]

    @property
    def store(self) -> Path:
        """Three days of APP, fetched once for the module."""
        return self.home / "store"

    def run(self, *argv: str) -> Run:
        """``provkit ARGV`` in this process with the server's PROVKIT_* settings; a traceback fails the test."""
        out, err = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as mp:
            for name in [n for n in os.environ if n.startswith("PROVKIT_")]:
                mp.delenv(name)
            for name, value in self.settings.items():
                mp.setenv(name, value)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(argv))
        run = Run(code, out.getvalue(), err.getvalue())
        assert "Traceback" not in run.out + run.err, run.err
        assert run.code == 0, run.err
        return run

    def fresh_store(self, name: str) -> Path:
        """An empty store folder of its own (the same window fetched straight from the simulator)."""
        path = self.home / "fresh" / name
        path.mkdir(parents=True)
        return path

    def notebook(self, **window: str) -> object:
        """The notebooks' loader over the three-day store, offline (what the workbook shows)."""
        with pytest.MonkeyPatch.context() as mp:
            for name, value in self.settings.items():
                mp.setenv(name, value)
            return notebook_load(APP, source="store", store=str(self.store), **window)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tenant = Tenant(seed=7, users_count=400, days=DAYS, now=NOW, scenarios=SCENARIOS)
    server = start_server(tenant, throttle=False, state_dir=tmp_path_factory.mktemp("server"))
    home = tmp_path_factory.mktemp("home")
    settings = dict(server.env())
    settings["XDG_CACHE_HOME"] = str(home / "cache")
    settings["XDG_DATA_HOME"] = str(home / "data")
    try:
        here = Env(server, home, settings)
        here.run(
            "fetch", "--app", APP, *window_args((NOW - timedelta(days=DAYS), NOW)), "--store", str(here.store)
        )
        yield here
    finally:
        server.stop()


def cycle_rows(payload: str) -> list[tuple]:
    """(cycle id, start, kind, entries) of each cycle in ``provkit cycles --json``'s output."""
    return [(c["cycle_id"], c["start"], c["kind"], c["entries"]) for c in json.loads(payload)["cycles"]]


def table_rows(table: pd.DataFrame) -> list[tuple]:
    """The same columns from a cycles table (the notebooks' view), as the JSON output writes them."""
    records = cycles.cycles_as_records(table)
    return [(c["cycle_id"], c["start"], c["kind"], c["entries"]) for c in records]


def stated_window(err: str) -> tuple[str, str]:
    """The window an offline command says it read, e.g. ``window 2025-03-01 10:00 to 2025-03-01 12:00 UTC``."""
    match = re.search(r"window (\d{4}-\d\d-\d\d \d\d:\d\d) to (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", err)
    assert match, f"no window stated in: {err!r}"
    return match.group(1), match.group(2)


def minutes(window: tuple[datetime, datetime]) -> tuple[str, str]:
    return f"{window[0]:%Y-%m-%d %H:%M}", f"{window[1]:%Y-%m-%d %H:%M}"


# ---- cycles -----------------------------------------------------------------------------------------------------
def test_the_store_holds_three_days_of_cycles(env: Env) -> None:
    """The premise: read offline without a window, the store gives every cycle of the three days."""
    run = env.run("cycles", "--offline", "--app", APP, "--store", str(env.store), "--json")
    everything = cycle_rows(run.out)
    assert len(everything) > 100  # one every 40 minutes over three days
    assert "the whole store" in run.err
    assert stated_window(run.err) == minutes((NOW - timedelta(days=DAYS), NOW))


@pytest.mark.parametrize(
    ("label", "argv", "window"),
    [
        ("since 6h", ["--since", "6h"], LAST_6H),
        ("start/end", window_args(PAST), PAST),
    ],
)
def test_cycles_offline_lists_the_cycles_of_the_window_only(
    env: Env, label: str, argv: list[str], window: tuple[datetime, datetime]
) -> None:
    offline = env.run("cycles", "--offline", "--app", APP, "--store", str(env.store), *argv, "--json")
    got = cycle_rows(offline.out)
    assert 3 <= len(got) <= 12, got  # a few cycles of 40 minutes, not the store's hundred
    assert stated_window(offline.err) == minutes(window)  # and it says which window it read
    # --since counts back from the end of what the store holds (the fetch's end), not from the clock.
    fresh = env.run(
        "cycles",
        "--app",
        APP,
        "--store",
        str(env.fresh_store(f"cycles-{label}")),
        *window_args(window),
        "--json",
    )
    assert got == cycle_rows(fresh.out)
    window_kw = {"since": "6h"} if label == "since 6h" else {"start": iso(PAST[0]), "end": iso(PAST[1])}
    loaded = env.notebook(**window_kw)
    assert table_rows(cycles.cycles_table(loaded.evidence)) == got
    for start in (row[1] for row in got if row[3]):  # cycles with entries begin inside the window
        assert window[0] <= datetime.fromisoformat(start) < window[1]


def test_a_fetch_into_a_store_holding_more_reads_its_window_only(env: Env, tmp_path: Path) -> None:
    """Online too: fetching a window into a store that already holds three days analyses that window, not the
    store (the fetch asks only for what is missing; the evidence is then read from the store)."""
    store = tmp_path / "store"
    shutil.copytree(env.store, store)
    online = env.run("cycles", "--app", APP, "--store", str(store), *window_args(PAST), "--json")
    offline = env.run(
        "cycles", "--offline", "--app", APP, "--store", str(env.store), *window_args(PAST), "--json"
    )
    assert cycle_rows(online.out) == cycle_rows(offline.out)
    assert 3 <= len(cycle_rows(online.out)) <= 12


def test_a_log_analytics_window_lists_its_cycles_only(env: Env) -> None:
    """The workspace answers for the window (the query's timespan); the job status read from Graph now must not
    add the cycles that ran since, so the cycles are those of the window, as offline."""
    workspace = env.run("cycles", "--app", APP, "--workspace", *window_args(PAST), "--json")
    offline = env.run(
        "cycles", "--offline", "--app", APP, "--store", str(env.store), *window_args(PAST), "--json"
    )
    # Log Analytics keeps times to the microsecond (Graph: 100 ns): compare them to the second.
    assert [(c, t[:19], k, n) for c, t, k, n in cycle_rows(workspace.out)] == [
        (c, t[:19], k, n) for c, t, k, n in cycle_rows(offline.out)
    ]
    assert 3 <= len(cycle_rows(workspace.out)) <= 12


# ---- diagnose ---------------------------------------------------------------------------------------------------
def finding_rows(payload: str) -> list[tuple]:
    return sorted((f["check"], f["severity"], f["count"], f["title"]) for f in json.loads(payload))


@pytest.mark.parametrize(
    ("label", "argv", "window"), [("since 6h", ["--since", "6h"], LAST_6H), ("past", [], PAST)]
)
def test_diagnose_offline_reports_the_findings_of_the_window(
    env: Env, label: str, argv: list[str], window: tuple[datetime, datetime]
) -> None:
    argv = argv or window_args(window)
    offline = env.run("diagnose", "--offline", "--app", APP, "--store", str(env.store), *argv, "--json")
    everything = env.run("diagnose", "--offline", "--app", APP, "--store", str(env.store), "--json")
    assert stated_window(offline.err) == minutes(window)
    fresh = env.run(
        "diagnose",
        "--app",
        APP,
        "--store",
        str(env.fresh_store(f"diagnose-{label}")),
        *window_args(window),
        "--json",
    )
    got = finding_rows(offline.out)
    assert got == finding_rows(fresh.out)
    assert got != finding_rows(everything.out)  # counts over hours are not those of three days
    window_kw = {"since": "6h"} if label == "since 6h" else {"start": iso(PAST[0]), "end": iso(PAST[1])}
    in_notebook = run_checks(env.notebook(**window_kw).evidence)
    assert sorted((f.check, f.severity, f.count, f.title) for f in in_notebook) == got
    assert "store.coverage-gaps" not in {row[0] for row in got}  # the window lies inside what was fetched


# ---- explain ----------------------------------------------------------------------------------------------------
def test_explain_offline_tells_the_story_inside_the_window(env: Env) -> None:
    events = Store(env.store).find(APP).tables().events
    inside = (events["activity_time"] >= PAST[0]) & (events["activity_time"] < PAST[1])
    # A user with entries inside the window and outside it (the story must leave the latter out).
    both = set(events.loc[inside, "source_id"].dropna()) & set(events.loc[~inside, "source_id"].dropna())
    assert both, "no user has entries both inside and outside the past window"
    subject = sorted(both)[0]

    argv = ["explain", "--app", APP, "--object", subject, "--json"]
    offline = env.run(*argv, "--offline", "--store", str(env.store), *window_args(PAST))
    everything = json.loads(env.run(*argv, "--offline", "--store", str(env.store)).out)
    fresh = json.loads(env.run(*argv, "--store", str(env.fresh_store("explain")), *window_args(PAST)).out)
    assert stated_window(offline.err) == minutes(PAST)
    story = json.loads(offline.out)
    times = [datetime.fromisoformat(e["time"]) for e in story["entries"]]
    assert times and all(PAST[0] <= t < PAST[1] for t in times)
    assert [(e["time"], e["change_id"]) for e in story["entries"]] == [
        (e["time"], e["change_id"]) for e in fresh["entries"]
    ]
    assert (story["decision"], story["check"]) == (fresh["decision"], fresh["check"])
    outside = [e for e in everything["entries"] if not PAST[0] <= datetime.fromisoformat(e["time"]) < PAST[1]]
    assert outside  # read without a window, the story has entries the window leaves out


# ---- report and postmortem --------------------------------------------------------------------------------------
def test_report_offline_summarises_the_window(env: Env) -> None:
    out = env.home / "reports"
    env.run(
        "report", "--offline", "--app", APP, "--store", str(env.store), "--since", "6h", "--summary-only",
        "--out", str(out),
    )  # fmt: skip
    summary = json.loads(next(out.glob("*/summary.json")).read_text())
    app = summary["apps"][0]
    assert (app["window"]["start"], app["window"]["end"]) == (LAST_6H[0].isoformat(), LAST_6H[1].isoformat())
    offline = env.run(
        "cycles", "--offline", "--app", APP, "--store", str(env.store), "--since", "6h", "--json"
    )
    assert app["cycles"]["cycles"] == len(cycle_rows(offline.out))
    assert app["cycles"]["cycles"] < 10


def test_postmortem_offline_covers_the_incident_window(env: Env) -> None:
    out = env.home / "postmortems"
    run = env.run(
        "postmortem",
        "--offline",
        "--app",
        APP,
        "--store",
        str(env.store),
        *window_args(PAST),
        "--out",
        str(out),
    )
    assert stated_window(run.err) == minutes(PAST)
    text = Path(run.out.strip()).read_text(encoding="utf-8")
    assert f"{PAST[0]:%Y-%m-%d %H:%M}" in text and f"{PAST[1]:%Y-%m-%d %H:%M}" in text


# ---- imports ------------------------------------------------------------------------------------------------
def saved_pages(env: Env, path: Path) -> Path:
    """The three days of APP's provisioning logs as Graph pages saved to a file (one page a line), as an admin
    saves them from Graph Explorer or a script, for ``provkit import``."""
    settings = Settings.from_env(env.settings)
    tokens = sign_in(
        settings, method="secret", secret=env.settings["PROVKIT_CLIENT_SECRET"], cache_path=False
    )
    client = GraphClient(settings, tokens)
    sp_id = client.resolve_app(APP).service_principal_id
    pages = client.provisioning_pages(sp_id, NOW - timedelta(days=DAYS), NOW, page_size=100)
    path.write_text("".join(json.dumps(page) + "\n" for page in pages), encoding="utf-8")
    return path


def test_imported_logs_are_cut_to_the_window_counted_back_from_their_newest_entry(env: Env) -> None:
    """A store of imports has no fetch to say when it ends: ``--since`` counts back from its newest entry (not
    from the clock, which would leave nothing), and the entries are those of that window."""
    imported = env.home / "imported"
    env.run("import", str(saved_pages(env, env.home / "pages.jsonl")), "--store", str(imported))
    events = Store(env.store).find(APP).tables().events
    newest = events["activity_time"].max()

    loaded = notebook_load(APP, source="store", store=str(imported), since="6h")
    start, end = (pd.Timestamp(t) for t in loaded.evidence.window)
    assert end - start == timedelta(hours=6) and timedelta(0) < end - newest <= timedelta(milliseconds=1)
    expected = events[(events["activity_time"] >= start) & (events["activity_time"] < end)]
    assert 0 < len(expected) < len(events) / 5
    assert sorted(loaded.evidence.events["id"]) == sorted(expected["id"])
    assert loaded.evidence.coverage_gaps is None  # an import says nothing about what time it covers

    run = env.run("cycles", "--offline", "--app", APP, "--store", str(imported), "--since", "6h", "--json")
    assert stated_window(run.err) == minutes((start.to_pydatetime(), end.to_pydatetime()))
    # An import holds no job status: only the cycles its entries name.
    assert {row[0] for row in cycle_rows(run.out) if row[0]} == set(expected["cycle_id"].dropna())


# ---- the data layer: Evidence.cut -------------------------------------------------------------------------------
def test_a_window_past_the_last_fetch_shows_as_not_covered(env: Env) -> None:
    """An explicit window reaching past the store's end is taken as given: the missing time is named, not
    silently empty."""
    later = (NOW - timedelta(hours=1), NOW + timedelta(hours=2))
    loaded = env.notebook(start=iso(later[0]), end=iso(later[1]))
    assert loaded.evidence.coverage_gaps == [(NOW, later[1])]
    findings = run_checks(loaded.evidence)
    assert "store.coverage-gaps" in {f.check for f in findings}


def test_cut_keeps_job_status_and_reads_steps_of_the_window_only(env: Env) -> None:
    whole = env.notebook()
    evidence = whole.evidence
    cut = evidence.cut(PAST)
    assert cut is not evidence and len(evidence.events) > len(cut.events) > 0  # the original is left as it is
    assert cut.window == PAST and cut.now == PAST[1]
    assert cut.job == evidence.job  # the job status is kept
    ids = set(cut.events["id"])
    assert set(cut.steps["event_id"]) <= ids and set(cut.steps["event_id"])  # steps of the window's entries
    assert set(cut.tables.properties["event_id"]) <= ids
    some = list(evidence.events["id"])  # entries inside and outside the window
    assert set(cut.steps_of(some)["event_id"]) == set(cut.steps["event_id"])
    assert all(PAST[0] <= pd.Timestamp(a["activityDateTime"]) < PAST[1] for a in cut.audits)
    # Snapshots taken after a window that ends before the store's end describe a later state.
    assert cut.jobs is not None and (cut.jobs["snapshot_time"] <= pd.Timestamp(PAST[1])).all()
    assert evidence.cut(LAST_6H).jobs is not None and len(evidence.cut(LAST_6H).jobs) == len(evidence.jobs)
    with pytest.raises(ConfigError, match="empty or reversed"):
        evidence.cut((PAST[1], PAST[0]))
