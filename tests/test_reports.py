"""``provkit report`` against the simulated tenant: the files of a run, summary.json for each scenario, the index
over runs, failures recorded without stopping the run, and the exit codes of ``--fail-on``."""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest

from provkit.cli.report import add_report_arguments, run_report
from provkit.workbook.execute import register_warm_engine
from provkit.workbook.reports import EXIT_FAILED, EXIT_FINDINGS, build_report, exit_code

DEMO_ENV = {"PROVKIT_DEMO_USERS": "300", "PROVKIT_DEMO_DAYS": "3", "PROVKIT_DEMO_NOW": "2024-06-03T12:00:00Z"}
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# What each demo scenario's app must show: state, and checks that must be among its findings of that severity.
SCENARIOS = {
    "Salesforce": ("ok", {}),
    "ServiceNow": ("ok", {"info": "start.initial-cycle-running"}),
    "Contoso SCIM App": ("error", {"error": "credentials.quarantined"}),
    "Zendesk": ("warning", {"warning": "skipped.nested-group-only"}),
    "Dropbox Business": ("error", {"error": "failures.by-code"}),
    "Box": ("warning", {"warning": "start.paused"}),
    "Atlassian Cloud": ("error", {"error": "start.disabled"}),
    "Fabrikam SCIM App": ("error", {"error": "failures.scim-incompatible"}),
    "Zoom": ("error", {"error": "quarantine.too-many-deletes"}),
    "Asana": ("warning", {"warning": "references.unresolved"}),
    "Google Workspace": ("warning", {"warning": "scope.switch-needs-restart", "info": "scope.sync-all"}),
    "Miro": ("warning", {"warning": "deprovision.unassigned-never-deleted"}),
    "Adobe Identity Management": ("warning", {"warning": "skipped.group-not-security-enabled"}),
    "Cisco Webex": ("warning", {"warning": "start.not-started"}),
}


@pytest.fixture(scope="module", autouse=True)
def small_demo():
    with pytest.MonkeyPatch.context() as mp:
        for name, value in DEMO_ENV.items():
            mp.setenv(name, value)
        mp.setenv("PROVKIT_CLIENT_SECRET", "not-for-notebooks-0123456789")
        yield


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def all_apps(out: Path):
    """One run over every demo app: summaries only (the notebooks are exercised by the runs below)."""
    return build_report(None, out=out, source="demo", since="3d", notebooks=[], workers=2)


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    return run_report(parser.parse_args(list(argv)))


def _by_name(summary: dict) -> dict[str, dict]:
    return {a["app"]["display_name"]: a for a in summary["apps"]}


def _latest(out: Path) -> dict:
    return json.loads(max(out.glob("*/summary.json"), key=lambda p: p.parent.name).read_text())


@pytest.fixture(scope="module")
def zendesk(all_apps, out: Path):
    """A second run, through the command line: Zendesk's triage and skipped-users notebooks, two workers."""
    code = _cli("--app", "Zendesk", "--demo", "--since", "3d", "--notebook", "00", "--notebook", "skipped-users",
                "--workers", "2", "--fail-on", "warning", "--out", str(out))  # fmt: skip
    summary = _latest(out)
    return code, summary, out / summary["run_id"] / summary["apps"][0]["folder"]


def test_a_run_writes_summaries_and_the_index(all_apps, out: Path) -> None:
    run = all_apps
    assert run.summary["notebooks"] == []
    assert sorted(_by_name(run.summary)) == sorted(SCENARIOS)
    for app in run.apps:
        written = json.loads((run.run_dir / app["folder"] / "summary.json").read_text())
        assert written == json.loads(json.dumps(app, default=str))
    assert json.loads((run.run_dir / "summary.json").read_text())["run_id"] == run.run_dir.name
    assert run.index == out / "index.html"
    index = run.index.read_text(encoding="utf-8")
    for name, (state, _) in SCENARIOS.items():
        row = next(line for line in index.splitlines() if line.startswith(f"<tr><td>{name}<"))
        assert f">{state}</span>" in row


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_summary_of_each_scenario(all_apps, name: str) -> None:
    state, must = SCENARIOS[name]
    app = _by_name(all_apps.summary)[name]
    assert app["state"] == state
    assert app["counts"] == {s: len(app["findings"][s]) for s in ("error", "warning", "info")}
    for severity, check in must.items():
        assert check in app["checks"][severity]
        assert check in [f["check"] for f in app["findings"][severity]]
    never_started = name == "Cisco Webex"  # the just-created job: no cycle yet
    assert app["cycles"]["app"] == name and app["cycles"]["cycles"] >= (0 if never_started else 1)
    assert app["job"]["status"] and app["window"]["end"].startswith("2024-06-03T12:00")


def test_fail_on_exit_codes_of_the_run(all_apps) -> None:
    assert exit_code(all_apps.summary, None) == 0
    assert exit_code(all_apps.summary, "error") == EXIT_FINDINGS
    assert exit_code(all_apps.summary, "warning") == EXIT_FINDINGS


def test_notebook_run_writes_executed_notebooks_pages_and_summary(zendesk) -> None:
    code, summary, folder = zendesk
    assert code == EXIT_FINDINGS  # Zendesk has warnings, and --fail-on warning
    assert exit_code(summary, "error") == 0  # ... but no errors
    app = summary["apps"][0]
    assert [(n["name"], n["status"], n["error"]) for n in app["notebooks"]] == [
        ("00-triage", "ok", None),
        ("04-skipped-users", "ok", None),
    ]
    for name in ("00-triage", "04-skipped-users"):
        assert (folder / f"{name}.ipynb").is_file() and (folder / f"{name}.html").is_file()
    assert json.loads((folder / "summary.json").read_text())["notebooks"] == app["notebooks"]


def test_notebooks_read_the_store_with_no_secret_in_their_parameters(zendesk) -> None:
    _code, summary, folder = zendesk
    executed = nbformat.read(folder / "00-triage.ipynb", as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'source = "store"' in injected.source
    assert f'app = "{summary["apps"][0]["app"]["service_principal_id"]}"' in injected.source
    assert "not-for-notebooks" not in json.dumps(executed)
    assert not any(o.get("output_type") == "error" for c in executed.cells for o in c.get("outputs", []))
    counts = [c.execution_count for c in executed.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))  # a fresh session, though the kernel was reused


def test_html_pages_hide_the_code_and_link_to_each_other(zendesk) -> None:
    _code, _summary, folder = zendesk
    page = (folder / "00-triage.html").read_text(encoding="utf-8")
    assert "Zendesk: WARNING" in page and "skipped.nested-group-only" in page
    assert "Triage: start here" in page
    assert "nb.verdict(" not in page and "run_checks(evidence)" not in page
    assert 'href="04-skipped-users.html"' in page  # run in this report: its page
    # Not run in this report: its name in plain text, not a link that would lead nowhere on disk.
    assert "05-cycles-and-watermarks.ipynb" not in page and "05-cycles-and-watermarks" in page
    # Where the evidence came from, before anything else on the page.
    body = page.split("<main>", 1)[1]
    assert body.lstrip().startswith('<div class="provkit-banner"') and "SIMULATED tenant" in body[:600]


def test_index_shows_the_trend_across_runs(zendesk, out: Path, capsys) -> None:
    assert _cli("--app", "Salesforce", "--demo", "--since", "3d", "--summary-only", "--fail-on", "warning",
                "--out", str(out)) == 0  # fmt: skip
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert Path(printed) == (out / "index.html").resolve()
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "3 run(s)" in index
    apps_table = index.split("<h2>Runs</h2>")[0]
    assert apps_table.count("<tr><td>") == len(SCENARIOS)  # one row per app: its latest state
    rows = {
        line.split("<")[2].split(">")[1]: line
        for line in apps_table.splitlines()
        if line.startswith("<tr><td>")
    }
    assert rows["Zendesk"].count('class="tick"') == 2 and rows["Salesforce"].count('class="tick"') == 2
    assert rows["Box"].count('class="tick"') == 1
    assert 'href="' + _latest(out)["run_id"] in rows["Salesforce"]


def test_failures_are_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(NOTEBOOKS / "00-triage.ipynb", notebooks)
    broken = nbformat.v4.new_notebook()
    broken.cells = [
        nbformat.v4.new_markdown_cell("# Broken"),
        nbformat.v4.new_code_cell('app = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "from provkit.errors import ConfigError\nraise ConfigError('no such thing')"
        ),
    ]
    nbformat.write(broken, notebooks / "01-broken.ipynb")
    run = build_report(
        ["Salesforce", "No Such App"],
        out=tmp_path / "out",
        source="demo",
        since="3d",
        notebooks=["00", "01"],
        notebooks_dir=notebooks,
        workers=1,
    )
    apps = _by_name(run.summary)
    salesforce, missing = apps["Salesforce"], apps["No Such App"]
    assert [n["status"] for n in salesforce["notebooks"]] == ["ok", "failed"]
    failed = salesforce["notebooks"][1]
    assert (
        failed["error"] == "cell In [3] `from provkit.errors import ConfigError`: ConfigError: no such thing"
    )
    assert (run.run_dir / salesforce["folder"] / "01-broken.html").is_file()  # the failure is readable too
    assert salesforce["notebooks_failed"] == 1
    assert missing["state"] == "failed" and "No Such App" in missing["errors"][0]
    assert exit_code(run.summary, None) == EXIT_FAILED


def test_the_warm_kernel_engine_is_registered_through_papermills_registry() -> None:
    from papermill.engines import papermill_engines

    name = register_warm_engine()
    assert register_warm_engine() == name == "provkit-warm-kernel"  # once per process
    engine = papermill_engines.get_engine(name)
    assert engine.__name__ == "WarmKernelEngine" and hasattr(engine, "execute_managed_notebook")


def _verdict(notebook: Path) -> str:
    """The text the notebook's verdict cell printed."""
    executed = nbformat.read(notebook, as_version=4)
    cell = next(c for c in executed.cells if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source)
    return "".join(o.get("text", "") for o in cell.outputs)


def test_a_report_from_a_workspace_reads_it_in_the_notebooks_and_says_so(zendesk, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    assert _cli("--app", "Zendesk", "--demo", "--workspace", "--since", "3d", "--notebook", "00",
                "--workers", "1", "--out", str(out)) == 0  # fmt: skip
    summary = _latest(out)
    (workspace,) = summary["workspaces"]
    app = summary["apps"][0]
    assert app["workspace"] == workspace and app["state"] == "warning"
    assert app["transfer"]["queries"] > 0 and app["transfer"]["rows"] > 0
    assert [(n["name"], n["status"]) for n in app["notebooks"]] == [("00-triage", "ok")]
    folder = out / summary["run_id"] / app["folder"]
    executed = nbformat.read(folder / "00-triage.ipynb", as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f'workspace = "{workspace}"' in injected.source and 'source = "demo"' in injected.source
    shown = json.dumps(executed)
    assert f"Evidence for Zendesk from Log Analytics workspace {workspace}" in shown
    assert "job status and schema from Graph of the SIMULATED tenant" in shown
    assert "not-for-notebooks" not in shown
    # the same findings as the report read through Graph (the zendesk fixture's run of the same notebook)
    _code, _summary, graph_folder = zendesk
    assert _verdict(folder / "00-triage.ipynb") == _verdict(graph_folder / "00-triage.ipynb") != ""
    page = (folder / "00-triage.html").read_text(encoding="utf-8")
    assert f"Log Analytics workspace {workspace}" in page
    index = (out / "index.html").read_text(encoding="utf-8")
    row = next(line for line in index.splitlines() if line.startswith("<tr><td>Zendesk</td>"))
    assert f"<td>Log Analytics workspace {workspace}</td>" in row and app["app"]["tenant_id"] in row
    assert f"demo, workspace {workspace}" in index.split("<h2>Runs</h2>")[1]


def test_a_workspace_cannot_be_read_offline(tmp_path: Path) -> None:
    from provkit.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot be read offline"):
        _cli("--app", "Zendesk", "--offline", "--workspace", "--out", str(tmp_path))
    assert not (tmp_path / "index.html").exists()


def test_a_live_tenants_report_from_its_workspace_signs_in_from_the_kernel(tmp_path: Path) -> None:
    """Against the local server as a live tenant (client secret sign-in): the notebooks query the workspace
    themselves, so their kernel keeps the sign-in settings of the environment; the secret never reaches a
    notebook, a page or a summary."""
    from provkit.sim.server import start_server
    from provkit.sim.tenant import Tenant
    from provkit.workbook.session import stop_demo_tenants

    out = tmp_path / "reports"
    tenant = Tenant(seed=11, users_count=200, days=2, now=datetime(2026, 12, 1, tzinfo=UTC))
    with start_server(tenant, throttle=False) as srv, pytest.MonkeyPatch.context() as mp:
        for name, value in srv.env().items():
            mp.setenv(name, value)
        mp.setenv("PROVKIT_STORE", str(tmp_path / "store"))
        mp.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no token cached for another run's server
        code = _cli("--app", "Zendesk", "--workspace", "--start", "2026-11-29T00:00:00Z", "--end",
                    "2026-12-01T00:00:00Z", "--notebook", "00", "--workers", "1", "--out", str(out))  # fmt: skip
        secret = srv.env()["PROVKIT_CLIENT_SECRET"]
    stop_demo_tenants()
    summary = _latest(out)
    app = summary["apps"][0]
    assert summary["source"] == "graph" and app["workspace"] == srv.workspace.workspace_id
    assert [(n["name"], n["status"], n["error"]) for n in app["notebooks"]] == [("00-triage", "ok", None)]
    assert code in (0, EXIT_FINDINGS)
    folder = out / summary["run_id"] / app["folder"]
    for written in (*folder.iterdir(), out / "index.html"):
        assert secret not in written.read_text(encoding="utf-8"), written.name
    assert f"Log Analytics workspace {app['workspace']}" in (folder / "00-triage.html").read_text("utf-8")


def test_a_fleet_index_has_one_row_per_tenant_and_app_across_workspaces(tmp_path: Path) -> None:
    """Two tenants' workspaces (two simulated tenants, by seed) reported into one folder: the index lists every
    app of both, each with its tenant and workspace, and says it covers both tenants."""
    out = tmp_path / "fleet"
    seen: dict[str, str] = {}
    for seed in ("7", "8"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PROVKIT_DEMO_SEED", seed)
            assert _cli("--all-apps", "--demo", "--workspace", "--since", "3d", "--summary-only",
                        "--out", str(out)) in (0, EXIT_FINDINGS)  # fmt: skip
        summary = _latest(out)
        (workspace,) = summary["workspaces"]
        assert all(a["workspace"] == workspace for a in summary["apps"])
        seen[summary["apps"][0]["app"]["tenant_id"]] = workspace
    assert len(seen) == 2 and len(set(seen.values())) == 2
    index = (out / "index.html").read_text(encoding="utf-8")
    rows = [line for line in index.split("<h2>Runs</h2>")[0].splitlines() if line.startswith("<tr><td>")]
    assert len(rows) == 2 * len(SCENARIOS)
    for tenant, workspace in seen.items():
        mine = [row for row in rows if f"<td>{tenant}</td>" in row]
        assert len(mine) == len(SCENARIOS)
        assert all(f"<td>Log Analytics workspace {workspace}</td>" in row for row in mine)
    assert f"covers {2 * len(SCENARIOS)} apps in 2 tenants and 2 Log Analytics workspaces" in index
