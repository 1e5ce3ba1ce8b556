"""Run every workbook notebook under nbval against a small simulated tenant with a fixed clock.

``pytest tests/notebooks`` (and so ``make test``) collects ``notebooks/*.ipynb`` through ``verdicts.json`` in this
folder: nbval's lax mode runs every cell, and checks the outputs of the cells marked ``# NBVAL_CHECK_OUTPUT``
(each notebook's verdict) against the texts in ``verdicts.json``. The notebooks themselves are stored without
outputs, so the expected verdicts live here, sanitized with ``sanitize.cfg`` (ids and times), which is also the
default for ``--nbval-sanitize-with``.

The kernels get a small, deterministic demo: ``PROVKIT_DEMO_USERS=300``, ``PROVKIT_DEMO_DAYS=3`` and
``PROVKIT_DEMO_NOW=2024-06-03T12:00:00Z``, set for the kernel only (the pytest process's environment is left
alone). Each notebook runs in a fresh temporary working folder (the postmortem writes beside it).

After a deliberate change to the checks or the demo, rewrite the expected verdicts with
``PROVKIT_UPDATE_VERDICTS=1 .venv/bin/pytest tests/notebooks`` and review the diff of ``verdicts.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest
from nbval.kernel import CURRENT_ENV_KERNEL_NAME, RunningKernel
from nbval.plugin import IPyNbCell, IPyNbFile, find_comment_markers, find_metadata_tags

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parents[1] / "notebooks"
VERDICTS = HERE / "verdicts.json"
SANITIZE = HERE / "sanitize.cfg"
KERNEL_ENV = {
    "PROVKIT_DEMO_USERS": "300",
    "PROVKIT_DEMO_DAYS": "3",
    "PROVKIT_DEMO_NOW": "2024-06-03T12:00:00Z",
    "PROVKIT_DEMO_THROTTLE": "0",
}
LIVE_SETTINGS = ("PROVKIT_TENANT_ID", "PROVKIT_CLIENT_ID", "PROVKIT_CLIENT_SECRET", "PROVKIT_CERT_PATH")
UPDATE = os.environ.get("PROVKIT_UPDATE_VERDICTS") == "1"
_recorded: dict[str, list[str]] = defaultdict(list)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path == VERDICTS:
        return Workbook.from_parent(parent, path=file_path)
    return None


def pytest_sessionfinish(session: pytest.Session) -> None:
    if UPDATE and _recorded:
        data = json.loads(VERDICTS.read_text(encoding="utf-8")) if VERDICTS.exists() else {}
        data.update(_recorded)
        VERDICTS.write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n", encoding="utf-8")


class Workbook(pytest.File):
    """Collects one nbval notebook per ``notebooks/*.ipynb``."""

    def collect(self):
        for path in sorted(NOTEBOOKS.glob("*.ipynb")):
            yield WorkbookNotebook.from_parent(self, path=path)


class WorkbookNotebook(IPyNbFile):
    """A notebook run in lax mode, its verdict cells compared with the expected texts in verdicts.json."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.compare_outputs = False  # lax: only the cells marked NBVAL_CHECK_OUTPUT are compared
        self.workdir: Path | None = None

    def collect(self):
        self.nb = nbformat.read(str(self.path), as_version=4)
        expected = json.loads(VERDICTS.read_text(encoding="utf-8")).get(self.path.stem, [])
        checked = 0
        number = 0
        for cell in self.nb.cells:
            if cell.cell_type != "code":
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                options = defaultdict(bool, find_metadata_tags(cell.metadata))
                options.update(dict(find_comment_markers(cell.source)))
            options.setdefault("check", False)
            if options["check"]:
                # nbval compares only cells that ran in the reference: give it the expected verdict as output.
                cell.execution_count = number + 1
                text = expected[checked] if checked < len(expected) else ""
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)] if text else []
                checked += 1
            yield VerdictCell.from_parent(
                self, name=f"Cell {number}", cell_num=number, cell=cell, options=options
            )
            number += 1

    def setup(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="provkit-nbval-")) / "notebooks"
        self.workdir.mkdir()
        saved = {name: os.environ.get(name) for name in (*KERNEL_ENV, *LIVE_SETTINGS)}
        os.environ.update(KERNEL_ENV)  # the kernel process copies the environment when it starts
        # The notebooks' empty source reads the simulated tenant only without the live settings.
        for name in LIVE_SETTINGS:
            os.environ.pop(name, None)
        try:
            self.kernel = RunningKernel(
                CURRENT_ENV_KERNEL_NAME,
                cwd=str(self.workdir),
                startup_timeout=self.config.option.nbval_kernel_startup_timeout,
            )
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        self.setup_sanitize_files()

    def get_sanitize_files(self) -> list[str]:
        return [self.config.option.nbval_sanitize_with or str(SANITIZE)]

    def teardown(self) -> None:
        super().teardown()
        if self.workdir is not None:
            shutil.rmtree(self.workdir.parent, ignore_errors=True)


class VerdictCell(IPyNbCell):
    """An nbval cell; with PROVKIT_UPDATE_VERDICTS=1 a checked cell records its output instead of comparing."""

    def compare_outputs(self, test, ref, skip_compare=None) -> bool:
        if not UPDATE:
            return super().compare_outputs(test, ref, skip_compare)
        texts = [o.get("text", "") for o in test if o.get("output_type") == "stream"]
        _recorded[self.parent.path.stem].append(self.sanitize("".join(texts)))
        return True


def sanitized(text: str) -> str:
    """``text`` through sanitize.cfg's patterns (used by the tests of the sanitizers themselves)."""
    patterns = re.findall(
        r"^regex: (.*)$\n^replace: (.*)$", SANITIZE.read_text(encoding="utf-8"), re.MULTILINE
    )
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    return text
