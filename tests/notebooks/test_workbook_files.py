"""The workbook's notebooks as files: stored clean, one parameters cell without secrets, short runbook cells,
tenant-changing cells behind their flags; and the sanitizers the verdict checks rely on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from provkit.workbook.notebook import NOTEBOOKS

from .conftest import NOTEBOOKS as FOLDER
from .conftest import VERDICTS, sanitized

PATHS = sorted(FOLDER.glob("*.ipynb"))
ALLOWED_PARAMETERS = {
    "app",
    "since",
    "start",
    "end",
    "source",
    "store",
    "cloud",
    "tenant_id",
    "client_id",
    "workspace",
    "object_id",
    "allow_changes",
    "validate_credentials",
    "out",
    "redact",
}


def _code(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def _parameters(nb: nbformat.NotebookNode) -> dict[str, str]:
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    found = {}
    for line in cell.source.splitlines():
        match = re.match(r"^(\w+)\s*=\s*([^#]*)", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def test_every_workbook_notebook_is_present() -> None:
    assert [p.stem for p in PATHS] == list(NOTEBOOKS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_stored_without_outputs_or_execution_counts(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in _code(nb):
        assert cell.outputs == [], f"{path.name}: a cell has outputs"
        assert cell.execution_count is None, f"{path.name}: a cell has an execution count"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_one_parameters_cell_with_safe_defaults(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    params = _parameters(nb)
    assert set(params) <= ALLOWED_PARAMETERS, set(params) - ALLOWED_PARAMETERS
    assert {"app", "since", "source", "store", "cloud", "tenant_id", "client_id", "workspace"} <= set(params)
    # Empty: the live tenant when PROVKIT_TENANT_ID is set, the simulated one otherwise (said in the output).
    assert params["source"] == '""'
    assert not any(re.search("secret|password|token|cert", name) for name in params)
    for flag in ("allow_changes", "validate_credentials"):
        if flag in params:
            assert params[flag] == "False", f"{path.name}: {flag} must default to False"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_reads_like_a_runbook(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for before, cell in zip(nb.cells, nb.cells[1:], strict=False):
        if cell.cell_type == "code":
            assert before.cell_type == "markdown", f"{path.name}: code cell without a sentence before it"
            if "parameters" not in cell.metadata.get("tags", []):
                assert len(cell.source.splitlines()) <= 10, f"{path.name}: a cell longer than ten lines"
    checked = [c for c in _code(nb) if "# NBVAL_CHECK_OUTPUT" in c.source]
    assert len(checked) == 1, f"{path.name}: one verdict cell"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_tenant_changing_cells_are_marked_and_guarded(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        for call, flag in (
            ("restart_job(", "allow_changes"),
            ("provision_on_demand(", "allow_changes"),
            ("validator(", "validate_credentials"),
        ):
            if call in cell.source:
                assert flag in cell.source, f"{path.name}: {call} without {flag}"
                assert flag in _parameters(nb)
                assert "**This cell" in cells[i - 1].source, f"{path.name}: {call} cell not marked"


def test_expected_verdicts_cover_every_notebook_and_are_sanitized() -> None:
    verdicts = json.loads(VERDICTS.read_text(encoding="utf-8"))
    assert set(verdicts) == set(NOTEBOOKS)
    for texts in verdicts.values():
        assert texts and all(texts)
        for text in texts:
            assert sanitized(text) == text


def test_sanitizers_replace_ids_and_times() -> None:
    text = (
        "Resolved 'aee13b02-314c-8622-fcd2-9eb2140c8c93' at 2024-06-03T12:00:05.1234567Z, "
        "started 2024-06-03 11:54 UTC (5 min ago), 26.4 days left, took 34 s"
    )
    out = sanitized(text)
    assert "aee13b02" not in out and "2024" not in out and "5 min" not in out and "34 s" not in out
    assert out.count("GUID") == 1 and out.count("TIME") == 2
    assert sanitized(out) == out
