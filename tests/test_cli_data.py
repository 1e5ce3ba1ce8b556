"""The data commands as a user runs them: ``provkit apps``, ``provkit fetch``, ``provkit import``.

Everything goes through ``provkit.cli.main.main`` with captured output. ``--demo`` starts the simulated tenant in the
process; PROVKIT_DEMO_USERS/PROVKIT_DEMO_DAYS keep it small here.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provkit.cli.main import main
from provkit.data.fetch import FetchProgress
from provkit.data.graph import GraphStats
from provkit.data.store import Store
from provkit.sim.scenarios import SCENARIOS, SSO_ONLY_APPS
from provkit.workbook.session import (
    FetchProgressBar,
    demo_size_from_env,
    demo_tenant,
    load_evidence,
    stop_demo_tenants,
)

FIXTURES = Path(__file__).parent / "fixtures" / "files"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SUMMARY = re.compile(
    r"^(?P<app>.+): (?P<new>\d+) new entries, (?P<dups>\d+) duplicates dropped, (?P<pages>\d+) pages in "
    r"(?P<slices>\d+) slices, (?P<jobs>\d+) job snapshot\(s\), "
    r"(?:(?P<groups_read>\d+) of \d+ assigned groups' members read(?: \(\d+ updated from Graph's delta\))?, )?"
    r"(?P<throttled>\d+) throttled \(429\), "
    r"[\d.]+ s waiting \(pacing and retries\), [\d.]+ s in all$"
)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small demo tenant, and none of the caller's PROVKIT_* settings."""
    for name in list(__import__("os").environ):
        if name.startswith("PROVKIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROVKIT_DEMO_USERS", "400")
    monkeypatch.setenv("PROVKIT_DEMO_DAYS", "3")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def fixture_case(name: str) -> dict:
    return next(case for case in MANIFEST if case["name"] == name)


# ---- apps ------------------------------------------------------------------------------------------------------
def test_apps_demo_json_lists_every_scenario_app_with_ids_and_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "apps", "--demo", "--json")
    assert code == 0
    rows = json.loads(out)
    by_name = {r["display_name"]: r for r in rows}
    assert set(by_name) == {s.app for s in SCENARIOS.values()}
    assert not set(SSO_ONLY_APPS) & set(by_name)  # single sign-on apps have no provisioning job
    for row in rows:
        assert GUID.match(row["service_principal_id"]) and GUID.match(row["app_id"]) and row["job_id"]
        assert row["status_code"] in ("NotConfigured", "NotRun", "Active", "Paused", "Quarantine")
    assert by_name["Salesforce"]["status_code"] == "Active"  # healthy
    assert by_name["Contoso SCIM App"]["status_code"] == "Quarantine"  # bad credentials
    assert by_name["Contoso SCIM App"]["quarantine_reason"]
    assert by_name["Box"]["status_code"] == "Paused"  # paused


def test_apps_demo_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "apps", "--demo")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["app", "status", "schedule", "service"]
    zendesk = next(line for line in lines if line.startswith("Zendesk "))
    assert "Active" in zendesk and GUID.search(zendesk.split()[3])
    assert f"{len(SCENARIOS)} app(s) with provisioning jobs." in out


def test_apps_offline_on_an_empty_store_says_what_to_do(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "apps", "--offline", "--store", str(tmp_path))
    assert code == 0 and "holds no apps yet" in out and "provkit fetch" in out


# ---- fetch -----------------------------------------------------------------------------------------------------
def test_fetch_demo_prints_a_one_line_summary_then_apps_offline_lists_the_app(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "fetch", "--demo", "--app", "Zendesk", "--store", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    summary = SUMMARY.match(lines[0])
    assert summary, lines[0]
    assert summary["app"] == "Zendesk" and int(summary["new"]) > 100 and summary["dups"] == "0"
    assert summary["jobs"] == "1" and int(summary["slices"]) >= 1
    assert summary["groups_read"] == "2"  # a first fetch reads both assigned groups' members
    assert int(summary["pages"]) == -(-int(summary["new"]) // 1000)  # one query, full pages of 1000
    assert lines[1].startswith(f"Stored in {tmp_path}")
    assert "Resolved 'Zendesk' by display name to service principal" in err

    code, out, _ = run(capsys, "apps", "--offline", "--store", str(tmp_path), "--json")
    assert code == 0
    [row] = json.loads(out)
    assert row["display_name"] == "Zendesk" and row["entries"] == int(summary["new"])
    assert row["covered_from"] < row["covered_to"] and row["first_entry"] >= row["covered_from"]
    code, out, _ = run(capsys, "apps", "--offline", "--store", str(tmp_path))
    assert code == 0 and re.search(r"^Zendesk\s+[0-9a-f-]{36}\s+\d{4}-\d\d-\d\dT", out, re.M)

    evidence = load_evidence("Zendesk", source="store", store=tmp_path).evidence  # offline from here on
    assert len(evidence.events) == int(summary["new"]) and len(evidence.jobs) == 1 and evidence.schema


def test_fetch_json_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(
        capsys, "fetch", "--demo", "--app", "Salesforce", "--since", "1d", "--store", str(tmp_path), "--json"
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["app"] == "Salesforce" and summary["slices"] in (1, 2) and summary["duplicates"] == 0
    assert summary["end"] > summary["start"]
    assert Path(summary["store"]).is_dir() and summary["new"] == summary["entries"]


def test_fetch_shows_a_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, out = Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["fetch", "--demo", "--app", "Zendesk", "--store", str(tmp_path)]) == 0
    bar = terminal.getvalue()
    assert "fetching Zendesk: 0 entries" in bar  # drawn at once; a fetch this small ends before a redraw
    assert bar.endswith("\r")  # and cleared before the summary, which goes to stdout
    assert "new entries" in out.getvalue()


def test_progress_bar_counts_throttle_waits_of_this_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    stats = GraphStats(throttled=4, waited_seconds=30.0)  # from an earlier fetch with the same client
    bar = FetchProgressBar("Zendesk", stats=stats)
    start = datetime(2025, 3, 1, tzinfo=UTC)
    state = FetchProgress(app="Zendesk", start=start, end=start + timedelta(days=4))
    state.entries, state.pages, state.reached, state.seconds, state.seconds_left = 1000, 1, start, 2.0, None
    bar(state)
    stats.throttled, stats.waited_seconds = 6, 42.4
    # Half the window in 2,000 entries: about 4,000 expected; 2 more pages at 5 per 10 s, once the window frees.
    state.entries, state.pages, state.reached, state.seconds, state.seconds_left = (
        2000,
        2,
        start + timedelta(days=2),
        4.0,
        7.5,
    )
    bar(state)
    bar.bar.refresh()
    bar.close()
    text = terminal.getvalue()
    assert "2,000 of ~4,000 entries, 2 pages, 500 entries/s, about 8 s left under the throttle" in text
    assert "2 throttled (429)" in text  # this fetch's, not the client's earlier ones


# ---- bad parameters: exit 2 and a message, never a traceback ---------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fetch", "--demo", "--app", "No Such App"], "No service principal is named 'No Such App'"),
        (["fetch", "--demo", "--app", "Slack"], "2 service principals match 'Slack'"),
        (
            ["fetch", "--demo", "--app", "Zendesk", "--start", "2025-03-02", "--end", "2025-03-01"],
            "The window is empty or reversed",
        ),
        (["fetch", "--demo", "--app", "Zendesk", "--start", "2999-01-01"], "The window starts in the future"),
        (["fetch", "--demo", "--app", "Zendesk", "--since", "seven days"], "is not a time span"),
        (["fetch", "--demo", "--app", "Zendesk", "--since", "7d", "--start", "2025-03-01"], "not both"),
    ],
    ids=["unknown-app", "ambiguous-name", "start-after-end", "future", "bad-since", "since-and-start"],
)
def test_bad_fetch_parameters_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv, "--store", str(tmp_path))
    assert code == 2
    assert err.startswith("provkit: ") and message in err and "What to do:" in err
    assert "new entries" not in out
    assert Store(tmp_path).apps() == []  # nothing was fetched


def test_ambiguous_name_lists_the_candidates_with_their_ids(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "fetch", "--demo", "--app", "Slack")
    assert code == 2
    candidates = [line for line in err.splitlines() if line.strip().startswith("Slack: object id")]
    assert len(candidates) == 2 and all("no provisioning job" in c for c in candidates)


@pytest.mark.parametrize("argv", [["apps"], ["fetch", "--app", "Zendesk"]], ids=["apps", "fetch"])
def test_unknown_cloud_exits_2_naming_the_setting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setenv("PROVKIT_CLOUD", "mars")
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "PROVKIT_CLOUD='mars' is not a cloud provkit knows" in err and "usgov" in err


def test_demo_size_settings_are_checked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert demo_size_from_env({"PROVKIT_DEMO_USERS": "400", "PROVKIT_DEMO_DAYS": " 3 "}) == {
        "users": 400,
        "days": 3,
    }
    assert demo_size_from_env({}) == {}
    monkeypatch.setenv("PROVKIT_DEMO_USERS", "lots")
    code, _, err = run(capsys, "apps", "--demo")
    assert code == 2 and "PROVKIT_DEMO_USERS='lots'" in err


# ---- import ----------------------------------------------------------------------------------------------------
VALID_CASES = [
    "admin-json",
    "admin-json-gz",
    "admin-csv-triplet",
    "la-csv",
    "la-json-api",
    "graph-pages",
    "graph-entries-jsonl",
]


@pytest.mark.parametrize("name", VALID_CASES)
def test_import_prints_records_read_kept_rejected_and_analysis_works_offline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    case = fixture_case(name)
    files = [str(FIXTURES / f) for f in case["files"]]
    code, out, _ = run(capsys, "import", *files, "--store", str(tmp_path))
    assert code == 0
    kept = case["kept"]
    assert f"Records read {kept}, kept {kept}, rejected 0; {kept} new in the store, 0 already there." in out
    assert f"{FIXTURES / case['files'][0]}: {case['format']}" in out

    code, again, _ = run(capsys, "import", *files, "--store", str(tmp_path))  # idempotent
    assert code == 0 and f"0 new in the store, {kept} already there" in again

    code, listing, _ = run(capsys, "apps", "--offline", "--store", str(tmp_path), "--json")
    [app] = json.loads(listing)
    assert app["entries"] == kept and app["first_entry"] <= app["last_entry"]
    evidence = load_evidence(app["service_principal_id"], source="store", store=tmp_path).evidence
    assert len(evidence.events) == kept and evidence.events["activity_time"].notna().all()


def test_import_all_valid_files_at_once_counts_every_record(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    files = sorted(str(p) for p in (FIXTURES / "valid").iterdir())
    code, out, _ = run(capsys, "import", *files, "--store", str(tmp_path), "--json")
    assert code == 0
    report = json.loads(out)
    one_each = {tuple(c["files"]) for c in MANIFEST if all(f.startswith("valid/") for f in c["files"])}
    # Cases that reuse another case's files (the CSV main file alone, the triplet in another order) count once.
    expected = sum(
        c["kept"]
        for c in MANIFEST
        if tuple(c["files"]) in one_each and c["name"] not in ("admin-csv-main-only", "admin-csv-any-order")
    )
    assert report["read"] == report["kept"] == expected and report["rejected"] == 0
    assert report["new"] + report["duplicates"] == expected and report["unreadable"] == {}


def test_import_of_a_cut_off_file_keeps_the_good_records_and_names_the_bad_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    case = fixture_case("truncated-pretty")
    path = FIXTURES / case["files"][0]
    code, out, _ = run(capsys, "import", str(path), "--store", str(tmp_path))
    assert code == 0
    kept, rejected = case["kept"], case["rejects"]
    assert f"Records read {kept + rejected}, kept {kept}, rejected {rejected};" in out
    assert f"rejected: {path}, line {case['reject_lines'][0]}" in out


@pytest.mark.parametrize("name", ["binary.csv", "signin.html", "empty.json", "does-not-exist.json"])
def test_import_of_an_unreadable_file_says_why(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    path = FIXTURES / "malformed" / name
    code, out, err = run(capsys, "import", str(path), "--store", str(tmp_path))
    assert f"{path}: NOT READ: " in out and "expected a provisioning-log download" in out
    assert "Records read 0, kept 0, rejected 0" in out and code == 1
    assert Store(tmp_path).apps() == []


def test_import_of_only_unreadable_files_exits_non_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, _ = run(capsys, "import", str(FIXTURES / "malformed" / "binary.csv"), "--store", str(tmp_path))
    assert code == 1


def test_import_without_files_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "import")
    assert code == 2 and "FILE" in err


# ---- the command itself ----------------------------------------------------------------------------------------
def test_the_command_line_stops_the_simulated_tenants_it_started(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "apps", "--demo")
    assert code == 0 and "app(s) with provisioning jobs" in out
    assert stop_demo_tenants() == 0  # `provkit` stopped its simulated tenant on the way out
    demo = demo_tenant()
    assert demo_tenant() is demo  # one per process and set of arguments...
    assert stop_demo_tenants() == 1
    assert demo_tenant() is not demo  # ...until stopped: the next one is a new tenant
    assert stop_demo_tenants() == 1


def test_building_the_command_imports_no_data_layer() -> None:
    # `provkit --help`, `emulator` and `demo` should start at once: pandas, pyarrow, IPython and papermill come
    # only with the commands that use them.
    code = (
        "import sys; from provkit.cli.main import build_parser; build_parser(); "
        "print([m for m in ('pandas', 'pyarrow', 'IPython', 'papermill', 'provkit.data.store') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_diagnose_from_a_workspace_sends_counts_and_few_entries_and_finds_what_graph_finds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    app = next(a for a in demo_tenant().tenant.apps if a.scenario.name == "escrow-quarantine").display_name
    argv = ["diagnose", "--demo", "--app", app, "--since", "3d", "--json"]
    code, out, err = run(capsys, *argv, "--workspace")
    assert code == 0
    pushed = json.loads(out)
    code, out, _ = run(capsys, *argv, "--store", str(tmp_path / "store"))
    assert code == 0
    graph = json.loads(out)

    def seen(findings: list[dict]) -> list[tuple]:
        return [(f["check"], f["severity"], f["title"], f["count"], f["remedy"]) for f in findings]

    assert seen(pushed) == seen(graph) and len(graph) > 2
    # stderr names the workspace and what travelled: fewer rows than the window's entries
    sent = re.search(r"Log Analytics workspace \S+: (\d+) KQL queries, ([\d,]+) rows", err)
    assert sent is not None, err
    summary = next(f for f in graph if f["check"] == "working.summary")
    entries = int(re.search(r"([\d,]+) log entries over", summary["title"]).group(1).replace(",", ""))
    rows = int(sent.group(2).replace(",", ""))
    # healthy objects' entries stay in the workspace: what travels is about the failing objects
    assert rows < 0.4 * entries, (rows, entries)
