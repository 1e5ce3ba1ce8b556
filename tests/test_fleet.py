"""A fleet report (``provkit report`` over several Log Analytics workspaces): one index row per tenant and app,
each workspace's tenant read from its rows' AADTenantId or given as ID=TENANT, every tenant signed in to with the
same app, and a tenant that fails shown as a failed row while the others still run. Against one simulator serving
several tenants (provkit.sim.fleet), as the real services serve an MSP."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provkit.cli.main import main
from provkit.cli.report import add_report_arguments, run_report
from provkit.errors import ConfigError
from provkit.sim.fleet import start_fleet
from provkit.sim.tenant import Tenant
from provkit.workbook.fleet import WorkspaceSpec, build_fleet_report, parse_workspaces

NOW = datetime.now(UTC).replace(microsecond=0)
UNKNOWN = "00000000-0000-4000-8000-00000000beef"
LIVE_SETTINGS = ("PROVKIT_TENANT_ID", "PROVKIT_CLIENT_ID", "PROVKIT_CLIENT_SECRET", "PROVKIT_CERT_PATH")


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
            since="2d",
            environ=fleet.env(),
            simulated={m.tenant_id: m.seed for m in fleet.members},
            notebooks=[],
        )
    return run


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
