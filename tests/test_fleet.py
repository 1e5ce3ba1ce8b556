"""A fleet report (``provkit report`` over several Log Analytics workspaces): one index row per tenant and app,
each workspace's tenant read from its rows' AADTenantId or given as ID=TENANT, every tenant signed in to with the
same app, and a tenant that fails shown as a failed row while the others still run. Against one simulator serving
several tenants (provkit.sim.fleet), as the real services serve an MSP. Tenants run one after another
(``tenant_workers=1``) or several at once, each in a child process (the same rows, pages and summaries)."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provkit.cli.main import main
from provkit.cli.report import add_report_arguments, run_report
from provkit.errors import ConfigError
from provkit.sim.fleet import start_fleet
from provkit.sim.tenant import Tenant
from provkit.workbook.fleet import WorkspaceSpec, build_fleet_report, parse_workspaces

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = ((NOW - timedelta(days=2)).isoformat(), NOW.isoformat())  # the tenants' two days
UNKNOWN = "00000000-0000-4000-8000-00000000beef"
LIVE_SETTINGS = ("PROVKIT_TENANT_ID", "PROVKIT_CLIENT_ID", "PROVKIT_CLIENT_SECRET", "PROVKIT_CERT_PATH")
DEMO_ENV = {  # a small simulated fleet, its clock fixed
    "PROVKIT_DEMO_USERS": "300",
    "PROVKIT_DEMO_DAYS": "3",
    "PROVKIT_DEMO_NOW": "2024-06-03T12:00:00Z",
    "PROVKIT_DEMO_THROTTLE": "0",
}


@pytest.fixture(scope="module")
def fleet():
    """Four simulated tenants behind one server: two healthy, one whose workspace has no provisioning tables
    (seed 9), one that never consented to the app (seed 10)."""
    tenants = [Tenant(seed=seed, users_count=150, days=2, now=NOW) for seed in (7, 8, 9, 10)]
    running = start_fleet(
        tenants, throttle=False, without_diagnostic_settings=frozenset({2}), without_consent=frozenset({3})
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def report(fleet, tmp_path_factory):
    """The fleet reported into one folder: tenants 7 and 8 from their rows, 9 named explicitly, 10 from its rows
    (the home tenant may read its workspace), and a workspace nobody knows."""
    out = tmp_path_factory.mktemp("fleet")
    home, second, no_tables, no_consent = fleet.members
    specs = [
        WorkspaceSpec(home.workspace_id),
        WorkspaceSpec(second.workspace_id),
        WorkspaceSpec(no_tables.workspace_id, no_tables.tenant_id),
        WorkspaceSpec(no_consent.workspace_id),
        WorkspaceSpec(UNKNOWN),
    ]
    with pytest.MonkeyPatch.context() as mp:
        for name in LIVE_SETTINGS:
            mp.delenv(name, raising=False)
        mp.setenv(
            "XDG_CACHE_HOME", str(out.parent / "token-cache")
        )  # no token cached for another run's server
        run = build_fleet_report(
            None,
            specs,
            out=out,
            since=None,
            start=WINDOW[0],  # one fixed window for both runs: "2d" would move between them
            end=WINDOW[1],
            environ=fleet.env(),
            simulated={m.tenant_id: m.seed for m in fleet.members},
            notebooks=[],
        )
    return run


@pytest.fixture(scope="module")
def concurrent(fleet, tmp_path_factory):
    """The same fleet reported with two tenants at once (each in a child process), and its progress lines."""
    out = tmp_path_factory.mktemp("fleet-concurrent")
    home, second, no_tables, no_consent = fleet.members
    specs = [
        WorkspaceSpec(home.workspace_id),
        WorkspaceSpec(second.workspace_id),
        WorkspaceSpec(no_tables.workspace_id, no_tables.tenant_id),
        WorkspaceSpec(no_consent.workspace_id),
        WorkspaceSpec(UNKNOWN),
    ]
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        for name in LIVE_SETTINGS:
            mp.delenv(name, raising=False)
        mp.setenv("XDG_CACHE_HOME", str(out.parent / "token-cache-concurrent"))
        run = build_fleet_report(
            None,
            specs,
            out=out,
            since=None,
            start=WINDOW[0],  # one fixed window for both runs: "2d" would move between them
            end=WINDOW[1],
            environ=fleet.env(),
            simulated={m.tenant_id: m.seed for m in fleet.members},
            notebooks=[],
            tenant_workers=2,
            log=lines.append,
        )
        assert os.environ.get("PROVKIT_TENANT_ID") is None  # the children's settings stayed theirs
    return run, lines


_RUN_FOLDER = re.compile(r"\d{8}T\d{6}Z(?:-\d+)?")
_INSTANT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d| UTC)?")
_AGO = re.compile(r"\b\d+(?:\.\d+)? (?:s|sec|min|h|d|days?|hours?|minutes?) ago\b")
_CORRELATION = re.compile(r"correlation id [0-9a-f-]{36}", re.I)
_TIMES = {"run_id", "generated_at", "started_at", "finished_at", "seconds_to_load", "seconds", "id"}


def _minus_times(value):
    """A summary (or a page's text) without what differs from one run to the next: times, run ids, durations."""
    if isinstance(value, dict):
        return {k: _minus_times(v) for k, v in value.items() if k not in _TIMES}
    if isinstance(value, list):
        return [_minus_times(v) for v in value]
    if isinstance(value, str):
        value = _CORRELATION.sub("correlation id ID", _RUN_FOLDER.sub("RUN", value))  # one per request
        return _AGO.sub("AGO", _INSTANT.sub("TIME", value))
    return value


def _differences(a, b, path="") -> list[str]:
    """Where two summaries differ (paths to the differing values), for a readable failure."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for k in sorted(set(a) | set(b), key=str)
            for d in _differences(a.get(k), b.get(k), f"{path}/{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{path}/{i}")
        ]
    if a == b:
        return []
    if isinstance(a, str) and isinstance(b, str):
        same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        return [f"{path}: ...{a[max(0, same - 40) :]!r} != ...{b[max(0, same - 40) :]!r}"]
    return [f"{path}: {a!r} != {b!r}"]


def _by_tenant(fleet_run) -> dict:
    runs = {
        (r.summary["fleet"]["tenant_id"], r.summary["fleet"]["workspace"]): r.summary for r in fleet_run.runs
    }
    failed = {(f["fleet"]["tenant_id"], f["fleet"]["workspace"]): f for f in fleet_run.failures}
    return {key: _minus_times(summary) for key, summary in {**runs, **failed}.items()}


def test_two_tenants_at_once_write_the_same_rows_and_summaries_as_one_by_one(report, concurrent) -> None:
    fleet_run, _lines = concurrent
    assert len(fleet_run.runs) == len(report.runs) == 2
    assert len(fleet_run.failures) == len(report.failures) == 3
    differences = _differences(_by_tenant(fleet_run), _by_tenant(report))
    assert not differences, "\n".join(differences)
    assert [_minus_times(r) for r in _index_rows(fleet_run.out)] == [
        _minus_times(r) for r in _index_rows(report.out)
    ]
    for run in fleet_run.runs:  # every app's own summary.json too
        for app in run.apps:
            written = json.loads((run.run_dir / app["folder"] / "summary.json").read_text(encoding="utf-8"))
            assert written["app"]["tenant_id"] == run.summary["fleet"]["tenant_id"]
            assert written["workspace"] == run.summary["fleet"]["workspace"]


def test_the_tenants_ran_at_once_and_a_failing_tenant_is_one_row(fleet, concurrent) -> None:
    fleet_run, _lines = concurrent
    home, second, no_tables, no_consent = fleet.members
    spans = {}
    for run in fleet_run.runs:
        spans[run.summary["fleet"]["tenant_id"]] = (
            datetime.fromisoformat(run.summary["started_at"]),
            datetime.fromisoformat(run.summary["finished_at"]),
        )
    (home_start, home_end), (second_start, second_end) = spans[home.tenant_id], spans[second.tenant_id]
    assert home_start < second_end and second_start < home_end  # their runs overlap: both ran at once
    errors = {f["fleet"]["tenant_id"]: f["apps"][0]["errors"][0] for f in fleet_run.failures}
    assert "Diagnostic settings" in errors[no_tables.tenant_id]
    assert "AADSTS700016" in errors[no_consent.tenant_id]
    assert "The requested path does not exist" in errors[None]
    rows = _index_rows(fleet_run.out)
    assert sum(1 for row in rows if ">failed</span>" in row) == 3
    assert sum(1 for row in rows if f"<td>{second.tenant_id}</td>" in row) == 14


def test_progress_lines_are_whole_prefixed_with_their_tenant_and_hold_no_secret(fleet, concurrent) -> None:
    fleet_run, lines = concurrent
    home, second, no_tables, no_consent = fleet.members
    secret = fleet.env()["PROVKIT_CLIENT_SECRET"]
    assert not any(secret in line for line in lines)
    for member in (home, second):
        mine = [line for line in lines if line.startswith(f"[{member.tenant_id}] ")]
        assert any(line.endswith("entries") and "Zendesk: " in line for line in mine), mine
    # a failed tenant says why, under its own prefix
    assert any(
        line.startswith(f"[{no_consent.tenant_id}] failed: ") and "AADSTS700016" in line for line in lines
    )
    children = [line for line in lines if line.startswith("[")]
    assert all("\n" not in line for line in children)
    for written in fleet_run.out.rglob("*"):
        if written.is_file():
            assert secret not in written.read_text(encoding="utf-8", errors="replace"), written


_FINDING = re.compile(r'font-weight:bold">(\w+)</td><td style="[^"]*"><code>([^<]+)</code>')


def _pages(fleet, out: Path, tenant_workers: int) -> dict[str, str]:
    """Zendesk's triage page of the two healthy tenants, reported ``tenant_workers`` at a time: each page's text
    by its path under the run's folder, the run folder's name left out."""
    home, second, *_ = fleet.members
    with pytest.MonkeyPatch.context() as mp:
        for name in LIVE_SETTINGS:
            mp.delenv(name, raising=False)
        mp.setenv("XDG_CACHE_HOME", str(out.parent / f"token-cache-{out.name}"))
        run = build_fleet_report(
            ["Zendesk"],
            [WorkspaceSpec(home.workspace_id), WorkspaceSpec(second.workspace_id)],
            out=out,
            since="2d",
            environ=fleet.env(),
            simulated={m.tenant_id: m.seed for m in fleet.members},
            notebooks=["00-triage"],
            tenant_workers=tenant_workers,
        )
    assert not run.failures and len(run.runs) == 2
    pages = {}
    for page in out.glob("*/*/*.html"):
        tenant = json.loads((page.parent.parent / "summary.json").read_text(encoding="utf-8"))["fleet"][
            "tenant_id"
        ]
        pages[f"{tenant}/{page.parent.name}/{page.name}"] = page.read_text(encoding="utf-8")
    return pages


def test_two_tenants_at_once_write_the_same_pages_each_of_its_own_tenant(fleet, tmp_path: Path) -> None:
    one_by_one = _pages(fleet, tmp_path / "one", 1)
    at_once = _pages(fleet, tmp_path / "two", 2)
    assert sorted(at_once) == sorted(one_by_one) and len(at_once) == 2
    home, second, *_ = fleet.members
    for path, page in at_once.items():
        mine, other = (home, second) if path.startswith(home.tenant_id) else (second, home)
        assert mine.workspace_id in page and other.workspace_id not in page, path  # its banner: its workspace
        assert "SIMULATED" in page and "Traceback" not in page
        # the same findings (severity and check) as when the tenants ran one after another
        findings = _FINDING.findall(page)
        assert findings and findings == _FINDING.findall(one_by_one[path]), path


def test_a_demo_fleet_reports_its_tenants_at_once_through_the_command(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    for name in LIVE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in DEMO_ENV.items():
        monkeypatch.setenv(name, value)
    user_cache = tmp_path / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(user_cache))
    out = tmp_path / "out"
    code = main(
        [
            "report",
            "--demo",
            "--demo-tenants",
            "2",
            "--app",
            "Zendesk",
            "--summary-only",
            "--tenant-workers",
            "2",
        ]
        + ["--out", str(out)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert "Fleet report: 2 app(s) in 2 tenant(s) from 2 workspace(s), 0 failed" in captured.err
    assert re.findall(r"^\[([0-9a-f-]{36})\] started: ", captured.err, flags=re.M)[1:]  # two tenants started
    rows = _index_rows(out)
    assert len(rows) == 2 and all("<td>Zendesk</td>" in row for row in rows)
    assert len({re.search(r"<td>([0-9a-f-]{36})</td>", row).group(1) for row in rows}) == 2
    # the children's tokens went to the run's private cache, not the user's
    assert not user_cache.exists() or not any(p.is_file() for p in user_cache.rglob("*"))


def test_ctrl_c_stops_the_children_and_no_unfinished_run_is_listed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in LIVE_SETTINGS}
    env.update(DEMO_ENV, XDG_CACHE_HOME=str(tmp_path / "cache"))
    command = [sys.executable, "-c", "import sys; from provkit.cli.main import main; sys.exit(main())"]
    command += ["report", "--demo", "--demo-tenants", "2", "--app", "Zendesk", "--app", "Contoso SCIM App"]
    command += ["--notebook", "00", "--notebook", "01", "--tenant-workers", "2", "--out", str(out)]
    # its own session, as a terminal's foreground job: Ctrl+C reaches the whole process group
    child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen: list[str] = []
    analysed: set[str] = set()
    assert child.stderr is not None
    for line in child.stderr:  # until both tenants have an app analysed (their notebooks then start)
        seen.append(line)
        match = re.match(r"^\[([0-9a-f-]{36})\] (Zendesk|Contoso SCIM App): ", line)
        if match:
            analysed.add(match.group(1))
        if len(analysed) == 2:
            break
    assert len(analysed) == 2, "".join(seen)[-3000:]
    os.killpg(child.pid, signal.SIGINT)
    rest = child.stderr.read()
    assert child.wait(timeout=120) == 130, rest[-3000:]
    for _ in range(60):  # the children and their kernels end with it
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        pytest.fail("processes of the interrupted report are still running")
    folders = [p for p in out.iterdir() if p.is_dir()]
    unfinished = [p for p in folders if not (p / "summary.json").exists()]
    assert unfinished, "the tenants finished before Ctrl+C: nothing was interrupted"
    index = (out / "index.html").read_text(encoding="utf-8") if (out / "index.html").exists() else ""
    for folder in unfinished:
        assert folder.name not in index


def _index_rows(out: Path) -> list[str]:
    index = (out / "index.html").read_text(encoding="utf-8")
    return [line for line in index.split("<h2>Runs</h2>")[0].split("\n<tr>") if line.startswith("<td>")]


def test_one_row_per_tenant_and_app_with_its_workspace(fleet, report) -> None:
    home, second, *_ = fleet.members
    rows = _index_rows(report.out)
    apps = len(home_apps := [a for a in report.apps if a["app"].get("tenant_id") == home.tenant_id])
    assert apps == 14 and all(a["state"] != "failed" for a in home_apps)
    for member in (home, second):
        mine = [row for row in rows if f"<td>{member.tenant_id}</td>" in row]
        assert len(mine) == 14, member
        assert all(f"<td>Log Analytics workspace {member.workspace_id}</td>" in row for row in mine)
    # the tenant was read from the workspace's rows for these two, signed in to each with the same client id
    fleets = {run.summary["fleet"]["tenant_id"]: run.summary["fleet"] for run in report.runs}
    assert fleets[home.tenant_id]["tenant_from"] == fleets[second.tenant_id]["tenant_from"] == "AADTenantId"
    requests = [r for app in fleet.apps for r in app.requests if "/oauth2/v2.0/token" in r.path]
    assert {r.path.split("/")[1] for r in requests} >= {home.tenant_id, second.tenant_id}


def test_a_tenant_that_fails_is_one_row_with_its_error_and_the_rest_ran(fleet, report) -> None:
    _, _, no_tables, no_consent = fleet.members
    rows = _index_rows(report.out)
    failed = [row for row in rows if ">failed</span>" in row]
    assert len(failed) == 3, failed
    (tables,) = [row for row in failed if f"<td>{no_tables.tenant_id}</td>" in row]
    assert "no Entra provisioning logs" in tables and "Diagnostic settings" in tables
    (consent,) = [row for row in failed if f"<td>{no_consent.tenant_id}</td>" in row]
    assert "AADSTS700016" in consent
    (unknown,) = [row for row in failed if UNKNOWN in row]
    assert "The requested path does not exist" in unknown
    assert len(report.runs) == 2 and len(report.failures) == 3
    index = (report.out / "index.html").read_text(encoding="utf-8")
    assert "3 tenant(s) or workspace(s) could not be read" in index
    assert "SIMULATED tenants" in index


def test_every_link_of_the_index_opens_a_file_and_no_secret_is_written(fleet, report) -> None:
    index = (report.out / "index.html").read_text(encoding="utf-8")
    links = re.findall(r'<a href="([^"]+)">', index)
    assert len(links) >= 28 + 3
    for link in links:
        assert (report.out / link).is_file(), link
    secret = fleet.env()["PROVKIT_CLIENT_SECRET"]
    for written in report.out.rglob("*"):
        if written.is_file():
            assert secret not in written.read_text(encoding="utf-8", errors="replace"), written


def test_a_row_links_the_apps_summary_of_its_own_tenant(fleet, report) -> None:
    second = fleet.members[1]
    index = (report.out / "index.html").read_text(encoding="utf-8")
    (row,) = [
        r for r in _index_rows(report.out) if f"<td>{second.tenant_id}</td>" in r and "<td>Zendesk</td>" in r
    ]
    (link,) = re.findall(r'<a href="([^"]+summary.json)">', row)
    summary = json.loads((report.out / link).read_text(encoding="utf-8"))
    assert summary["app"]["tenant_id"] == second.tenant_id
    assert summary["workspace"] == second.workspace_id
    assert "SIMULATED" in summary["origin"] and second.workspace_id in summary["origin"]
    assert index.count("<td>Zendesk</td>") == 2


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["a1"], [WorkspaceSpec("a1")]),
        (
            ["a1=contoso.onmicrosoft.com", "b2"],
            [WorkspaceSpec("a1", "contoso.onmicrosoft.com"), WorkspaceSpec("b2")],
        ),
        (["a1", "A1=t1"], [WorkspaceSpec("A1", "t1")]),  # named twice: once, with its tenant
        (["", "a1"], [WorkspaceSpec("a1")]),  # --workspace without an id adds nothing
    ],
)
def test_workspace_values(values, expected) -> None:
    assert parse_workspaces(values) == expected


@pytest.mark.parametrize("value", ["=t1", "a1=", "a1=t 1", "a1=t1=t2"])
def test_a_malformed_workspace_value_says_what_to_write(value) -> None:
    with pytest.raises(ConfigError, match="is not ID or ID=TENANT"):
        parse_workspaces([value])


def test_conflicting_tenants_for_one_workspace_are_refused() -> None:
    with pytest.raises(ConfigError, match="given twice with different tenants"):
        parse_workspaces(["a1=t1", "a1=t2"])


def _report(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    return run_report(parser.parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--all-apps", "--offline", "--workspace", "a", "--workspace", "b"], "cannot be read offline"),
        (["--all-apps", "--demo-tenants", "2"], "needs --demo"),
        (["--all-apps", "--demo", "--workspace", "a", "--workspace", "b"], "--demo-tenants N"),
        (["--all-apps", "--demo", "--tenant-workers", "2"], "is for fleet reports"),
        (["--all-apps", "--workspace", "a", "--workspace", "b", "--tenant-workers", "0"], "at least 1"),
    ],
)
def test_fleet_options_that_cannot_work_are_refused_before_anything_runs(
    argv, message, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=message):
        _report(*argv, "--out", str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_workspace_without_an_id_beside_others_is_the_default_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PROVKIT_WORKSPACE_ID", raising=False)
    with pytest.raises(ConfigError, match="needs PROVKIT_WORKSPACE_ID"):
        _report("--all-apps", "--workspace", "--workspace", "b2", "--out", str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_one_definition_of_workspace_and_tenant_mapping_only_for_report(capsys) -> None:
    for command in ("cycles", "diagnose", "explain", "postmortem"):
        argv = [command, "--app", "x", "--workspace", "a1=t1"] + (
            ["--object", "o"] if command == "explain" else []
        )
        assert main(argv) == 2
        assert "ID=TENANT is for `provkit report`" in capsys.readouterr().err
    helps = {}
    for command in ("cycles", "diagnose", "explain", "report", "postmortem"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        helps[command] = re.search(r"--workspace \[(ID(?:\[=TENANT\])?)\]", text).group(1)
    assert helps.pop("report") == "ID[=TENANT]"
    assert set(helps.values()) == {"ID"}
