"""Entries shaped exactly like Microsoft's documented examples, through `provkit import` and the analysis commands.

The fixtures and the doc each one comes from are in tests/fixtures/documented/README.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provkit.cli import main

DOCUMENTED = Path(__file__).parent / "fixtures" / "documented"
FILES = {
    "graph-page.json": "graph-pages",
    "admin-center.json": "admin-center-json",
    "log-analytics.json": "log-analytics-json",
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
    name = request.param
    code, out = run(capsys, "import", str(DOCUMENTED / name), "--store", str(tmp_path))
    assert code == 0
    assert f"{DOCUMENTED / name}: {FILES[name]}" in out
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
