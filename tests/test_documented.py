"""Entries shaped exactly like Microsoft's documented examples, through `provkit import` and the analysis commands.

The fixtures and the doc each one comes from are in tests/fixtures/documented/README.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from provkit.cli.main import main

DOCUMENTED = Path(__file__).parent / "fixtures" / "documented"
FILES = {
    "graph-page.json": {"graph-page.json": "graph-pages"},
    "admin-center.json": {"admin-center.json": "admin-center-json"},
    "log-analytics.json": {"log-analytics.json": "log-analytics-json"},
    "admin-center CSV triplet": {
        "ProvisioningLogs.csv": "admin-center-csv",
        "ProvisioningLogs_ProvisioningSteps.csv": "admin-center-csv-steps",
        "ProvisioningLogs_ModifiedProperties.csv": "admin-center-csv-properties",
    },
}


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PROVKIT_"):
            monkeypatch.delenv(name)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out


@pytest.fixture(params=sorted(FILES))
def imported(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    files = FILES[request.param]
    code, out = run(capsys, "import", *(str(DOCUMENTED / f) for f in files), "--store", str(tmp_path))
    assert code == 0
    for name, form in files.items():
        assert f"{DOCUMENTED / name}: {form}" in out
    assert "Records read 9, kept 9, rejected 0" in out
    return tmp_path


def diagnose(capsys: pytest.CaptureFixture[str], store: Path) -> dict[str, dict]:
    code, out = run(capsys, "diagnose", "--app", "Fabrikam", "--offline", "--store", str(store), "--json")
    assert code in (0, 1)
    return {f["check"]: f for f in json.loads(out)}


def test_documented_scoping_skips_name_the_filter_clause_and_count(
    capsys: pytest.CaptureFixture[str], imported: Path
) -> None:
    found = diagnose(capsys, imported)
    scoping = found["skipped.scoping-filter"]
    assert scoping["count"] == 2
    assert "'Marketing department filter'" in scoping["title"]
    assert "department EQUALS 'Marketing' failed for 2" in scoping["title"]
    by_name = {row["name"]: row for row in scoping["evidence"]}
    assert set(by_name) == {"user5@fabrikam.com", "user6@fabrikam.com"}
    # The documented form has no source value: it comes from the import step's details.
    assert by_name["user5@fabrikam.com"]["value"] == "Sales"
    assert "department=Sales" in by_name["user5@fabrikam.com"]["source_values"]
    assert "IsSoftDeleted=False" in by_name["user5@fabrikam.com"]["source_values"]
    assert by_name["user6@fabrikam.com"]["value"] == "(empty)"
    assert by_name["user6@fabrikam.com"]["filter"] == "Marketing department filter"


def test_documented_entries_give_the_other_findings_with_the_scope_inferred(
    capsys: pytest.CaptureFixture[str], imported: Path
) -> None:
    found = diagnose(capsys, imported)
    # user7 (active, not excluded by a filter) skipped as not assigned: the logs show "sync assigned".
    not_assigned = found["skipped.not-assigned"]
    assert (
        not_assigned["severity"] == "info"
        and "'Sync only assigned users and groups'" in not_assigned["title"]
    )
    assert [r["name"] for r in not_assigned["evidence"]] == ["user7@fabrikam.com"]
    # ... so the filtered-out and disabled users are warnings, not "expected".
    assert found["skipped.scoping-filter"]["severity"] == "warning"
    disabled = found["skipped.disabled-in-source"]
    assert disabled["severity"] == "warning"
    assert [r["name"] for r in disabled["evidence"]] == ["user8@fabrikam.com"]
    assert "accountEnabled=False" in disabled["evidence"][0]["source_values"]
    conflict = found["failures.by-code"]
    assert "AzureActiveDirectoryEntryConflict" in conflict["title"] and conflict["count"] == 1
    assert not any(
        check.startswith("skipped.")
        for check in found
        if check not in ("skipped.scoping-filter", "skipped.not-assigned", "skipped.disabled-in-source")
    )


def test_documented_entries_through_cycles_and_explain(
    capsys: pytest.CaptureFixture[str], imported: Path
) -> None:
    code, out = run(capsys, "cycles", "--app", "Fabrikam", "--offline", "--store", str(imported), "--json")
    assert code == 0
    [cycle] = json.loads(out)["cycles"]
    assert (cycle["entries"], cycle["n_skipped"], cycle["n_failure"], cycle["distinct_objects"]) == (
        9,
        4,
        1,
        9,
    )
    code, out = run(
        capsys,
        "explain",
        "--app",
        "Fabrikam",
        "--object",
        "user6@fabrikam.com",
        "--offline",
        "--store",
        str(imported),
        "--json",
    )
    assert code == 0
    story = json.loads(out)
    assert story["check"] == "skipped.scoping-filter"
    assert "'Marketing department filter' clause department EQUALS 'Marketing' is false" in story["decision"]
    scoping = next(s for s in story["entries"][-1]["steps"] if s["type"] == "scoping")
    assert scoping["scope_clauses"] == [
        "Marketing department filter: department EQUALS 'Marketing': false",
        "Engineering filter: department EQUALS 'Engineering': false",
        "Engineering filter: accountEnabled EQUALS 'True': true",
    ]
    assert scoping["details"]["Scoping filter evaluation passed"] == "False"


# ---------------------------------------------------------------------------------------------------------
# The simulator's Graph answers and the same entries as a Log Analytics export give the same findings


def test_simulator_graph_answers_and_an_equivalent_export_give_the_same_findings(tmp_path: Path) -> None:
    import dataclasses
    import importlib.util
    from datetime import timedelta

    from provkit.analysis.checks import run_checks
    from provkit.data.sources.files import read_files
    from provkit.data.tables import events_from_records
    from provkit.sim.evidence import from_simulator
    from provkit.workbook.session import demo_tenant

    demo = demo_tenant(users=400, days=3)
    tenant = demo.tenant
    app = next(a for a in tenant.apps if a.scenario.name == "skipped-users")
    # What Graph answered over HTTP, saved as the pages a user would keep.
    end = datetime_of(tenant.now_ticks)
    pages = list(demo.client.provisioning_pages(app.sp_id, end - timedelta(days=30), end))
    entries = [e for page in pages for e in page["value"]]
    assert entries and any(
        "Scoping filter evaluation passed" in s["details"] for e in entries for s in e["provisioningSteps"]
    )
    # The same entries as a Log Analytics query answer (the derivation the documented fixtures use).
    spec = importlib.util.spec_from_file_location("make_derived", DOCUMENTED / "make_derived.py")
    derived = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(derived)
    rows = [derived.la_row(e) for e in entries]
    export = tmp_path / "AADProvisioningLogs.json"
    export.write_text(
        json.dumps(
            {
                "tables": [
                    {
                        "name": "PrimaryResult",
                        "columns": [{"name": h} for h in rows[0]],
                        "rows": [list(r.values()) for r in rows],
                    }
                ]
            }
        )
    )
    load = read_files([export])
    assert load.formats[str(export)] == "log-analytics-json" and not load.rejects

    base = from_simulator(tenant, app)  # the directory, schema and job, as a fetch would store them
    from_graph = dataclasses.replace(base, tables=events_from_records(entries))
    from_file = dataclasses.replace(base, tables=events_from_records(load.records))
    assert len(from_file.events) == len(from_graph.events) == len(entries)

    def summary(evidence):
        return [(f.check, f.severity, f.title, f.count, f.evidence) for f in run_checks(evidence)]

    graph_findings = summary(from_graph)
    assert {"skipped.scoping-filter", "skipped.disabled-in-source"} <= {f[0] for f in graph_findings}
    assert summary(from_file) == graph_findings


def datetime_of(ticks: int):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ticks / 10**7, tz=UTC)


# ---------------------------------------------------------------------------------------------------------
# Job-status quirks of the documented jobs: no bogus cycle, duration, run or finding


@pytest.mark.parametrize("name", list(json.loads((DOCUMENTED / "jobs.json").read_text())))
def test_documented_job_quirks_give_no_bogus_cycle_run_or_finding(name: str) -> None:
    from datetime import UTC, datetime

    from provkit.analysis import cycles
    from provkit.analysis.checks import run_checks
    from provkit.data.evidence import Evidence
    from provkit.data.tables import empty_tables, jobs_from_records

    job = json.loads((DOCUMENTED / "jobs.json").read_text())[name]
    now = datetime(2022, 12, 11, 1, 0, tzinfo=UTC)
    jobs = jobs_from_records([job], snapshot_time=now, service_principal_id="sp")
    row = jobs.iloc[0]
    for column in (
        "last_execution_state",
        "last_execution_began",
        "last_execution_ended",
        "last_execution_id",
        "last_execution_error_code",
        "steady_state_first",
        "steady_state_last",
        "troubleshooting_url",
        "quarantine_current_began",
        "quarantine_error_code",
        "progress_total",
        "schedule_interval",
    ):
        if column == "schedule_interval" and job["schedule"]["interval"] == "PT40M":
            assert row[column] == pd.Timedelta(minutes=40)
            continue
        assert pd.isna(row[column]), column
    evidence = Evidence(
        tenant_id="t",
        service_principal_id="sp",
        app_id=None,
        display_name="Fabrikam",
        tables=empty_tables(),
        jobs=jobs,
        job=job,
        now=now,
    )
    assert cycles.cycles_table(evidence).empty
    findings = run_checks(evidence)
    titles = " ".join(f.title for f in findings)
    assert "Failed" not in titles and "None" not in titles and "0001" not in titles
    assert {f.check for f in findings} <= {"start.not-started", "working.summary", "quarantine.active"}
    summary = next(f for f in findings if f.check == "working.summary")
    assert "no completed run yet" in summary.title
