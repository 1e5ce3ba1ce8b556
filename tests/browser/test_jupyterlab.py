"""The workbook in JupyterLab, as an engineer uses it: 00-triage runs every cell without an error, says which
tenant it reads, shows its pickers as widgets and draws its chart; picking another app and running the cells
below changes the findings, and the pickers are still there (with the pick) after the re-run."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import LOCAL_PREFIXES, demo_environment

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
RUN_TIMEOUT_MS = 300_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """JupyterLab on 127.0.0.1 with a token, serving a copy of the workbook; yields the URL of 00-triage."""
    root = tmp_path_factory.mktemp("lab")
    work = root / "notebooks"
    shutil.copytree(NOTEBOOKS, work)
    port, token = _free_port(), secrets.token_hex(16)
    env = demo_environment()
    for name in ("JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "JUPYTER_RUNTIME_DIR"):
        env[name] = str(root / name.lower())
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={work}",
        "--expose-app-in-browser",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = (root / "jupyterlab.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start:\n" + (root / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        # A workspace of its own, reset: only this notebook open, whatever an earlier session left.
        yield f"{base}/lab/workspaces/provkit-test/tree/00-triage.ipynb?reset&token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


# The notebook panel's state, read through JupyterLab's own application object.
_STATE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    if (!panel || !panel.content || !panel.sessionContext) return null;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    const cells = panel.content.widgets.filter(c => c.model.type === 'code');
    const errors = [];
    cells.forEach((c, i) => {
        for (const o of c.model.outputs.toJSON()) {
            if (o.output_type === 'error') errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
        }
    });
    return {
        kernel: kernel ? kernel.status : null,
        counts: cells.map(c => c.model.executionCount),
        running: cells.some(c => c.model.executionState === 'running'),
        errors,
        text: cells.map(c => c.model.outputs.toJSON().map(o =>
            o.text || (o.data && (o.data['text/plain'] || '')) || '').join('')),
    };
}"""


def _wait_until_run(page, *, cell: int, after: int | None) -> dict:
    """Wait until code cell ``cell`` has run (its count above ``after``) and the kernel is idle, or a cell
    failed; returns the panel's state."""
    page.wait_for_function(
        f"""([cell, after]) => {{
            const s = ({_STATE})();
            if (!s) return false;
            if (s.errors.length) return true;
            const count = s.counts[cell];
            return s.kernel === 'idle' && !s.running && count !== null && (after === null || count > after);
        }}""",
        arg=[cell, after],
        timeout=RUN_TIMEOUT_MS,
        polling=500,
    )
    return page.evaluate(_STATE)


def test_triage_runs_picks_another_app_and_draws(lab: str, pages) -> None:
    page = pages.new("00-triage")
    outside: list[str] = []

    def route(r) -> None:  # the machine is offline: nothing may be fetched from elsewhere (plotly's CDN was)
        if r.request.url.startswith(LOCAL_PREFIXES):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(lab)
    idle = f"() => {{ const s = ({_STATE})(); return s !== null && s.kernel === 'idle'; }}"
    page.wait_for_function(idle, timeout=120_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    last = len(page.evaluate(_STATE)["counts"]) - 1
    state = _wait_until_run(page, cell=last, after=None)
    assert state["errors"] == [], state["errors"]
    first_verdict = state["text"][last]
    assert "Source: the SIMULATED tenant" in "".join(state["text"])
    assert "SIMULATED" in page.locator(".provkit-banner").first.inner_text()

    # The pickers render as widgets (not as their text), and the chart draws.
    dropdowns = page.locator(".jp-OutputArea .widget-dropdown select")
    dropdowns.first.wait_for(timeout=30_000)
    assert dropdowns.count() == 2
    page.locator(".jp-OutputArea .js-plotly-plot .main-svg").first.wait_for(timeout=30_000)

    # Pick another app, then run the picker cell and all below (what the notebook tells the reader to do).
    app_picker = dropdowns.first
    current = app_picker.input_value()
    options = app_picker.evaluate("s => [...s.options].map(o => [o.value, o.textContent])")
    other_label = next(label for value, label in options if value != current and label.startswith("Zendesk"))
    app_picker.select_option(label=other_label)
    before = state["counts"][last]
    page.evaluate(
        """() => {
            const panel = window.jupyterapp.shell.currentWidget;
            const cells = panel.content.widgets;
            panel.content.activeCellIndex = cells.findIndex(c => c.model.type === 'code' &&
                c.model.outputs.toJSON().some(o => (o.text || (o.data && o.data['text/plain']) || '')
                    .includes('Source:')));
            return window.jupyterapp.commands.execute('notebook:run-all-below');
        }"""
    )
    state = _wait_until_run(page, cell=last, after=before)
    assert state["errors"] == [], state["errors"]
    second_verdict = state["text"][last]
    assert second_verdict != first_verdict
    assert second_verdict.startswith("Zendesk:"), second_verdict
    # The pickers survived the re-run, still showing the pick, and the chart drew again.
    app_picker = page.locator(".jp-OutputArea .widget-dropdown select").first
    app_picker.wait_for(timeout=30_000)
    assert app_picker.evaluate("s => s.options[s.selectedIndex].textContent") == other_label
    page.locator(".jp-OutputArea .js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    assert outside == [], outside
