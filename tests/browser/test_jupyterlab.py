"""The workbook in JupyterLab, as an engineer uses it: 00-triage runs every cell without an error, says which
tenant it reads, shows its pickers as widgets and draws its chart; picking another app and running the cells
below changes the findings, and the pickers are still there (with the pick) after the re-run."""

from __future__ import annotations

import os
import re
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
    """JupyterLab on 127.0.0.1 with a token, serving a copy of the workbook; yields the URL of a notebook with
    ``{name}`` in place of its name."""
    root = tmp_path_factory.mktemp("lab")
    work = root / "notebooks"
    shutil.copytree(NOTEBOOKS, work)
    port, token = _free_port(), secrets.token_hex(16)
    env = demo_environment()
    for name in ("JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "JUPYTER_RUNTIME_DIR"):
        env[name] = str(root / name.lower())
    # No "get notified about Jupyter news?" toast over the outputs in failure screenshots (and no news fetch).
    settings = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}', encoding="utf-8")
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
        yield f"{base}/lab/workspaces/{{name}}/tree/{{name}}.ipynb?reset&token={token}"
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
    url = lab.format(name="00-triage")
    outside: list[str] = []

    def route(r) -> None:  # the machine is offline: nothing may be fetched from elsewhere (plotly's CDN was)
        if r.request.url.startswith(LOCAL_PREFIXES):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(url)
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

    # The chart's legend keeps clear of the x-axis title, its log axis says units, and the findings table
    # stays inside the output area with every finding's details open (the "go deeper" column visible).
    chart = page.locator(".jp-OutputArea .js-plotly-plot").first
    clear = chart.evaluate(
        """c => { const a = c.querySelector('.legend').getBoundingClientRect();
                  const b = c.querySelector('.xtitle').getBoundingClientRect();
                  return a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top; }"""
    )
    assert clear, "the legend overlaps the x-axis title"
    ticks = chart.evaluate("c => [...c.querySelectorAll('.ytick text')].map(t => t.textContent)")
    assert ticks and all(re.search(r"\d (s|min|h|d)$", t) for t in ticks), ticks
    page.evaluate("() => document.querySelectorAll('.jp-OutputArea details').forEach(d => d.open = true)")
    widths = page.evaluate(
        """() => [...document.querySelectorAll('table.provkit-findings')].map(t => [
            t.getBoundingClientRect().right,
            t.closest('.jp-OutputArea-output').getBoundingClientRect().right])"""
    )
    assert widths and all(right <= area + 1 for right, area in widths), widths

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


def _story(state: dict) -> str:
    """The output of 06's story cell (the one that prints the decision)."""
    return next(text for text in state["text"] if "\nDecision: " in text)


def _run_below(page, marker: str) -> None:
    """Select the code cell whose output contains ``marker`` and run it and all below."""
    page.evaluate(
        """(marker) => {
            const panel = window.jupyterapp.shell.currentWidget;
            panel.content.activeCellIndex = panel.content.widgets.findIndex(c => c.model.type === 'code' &&
                c.model.outputs.toJSON().some(o => JSON.stringify(o).includes(marker)));
            return window.jupyterapp.commands.execute('notebook:run-all-below');
        }""",
        marker,
    )


def test_explain_object_picker_is_searchable_and_follows_the_app(lab: str, pages) -> None:
    page = pages.new("06-explain-an-object")
    page.goto(lab.format(name="06-explain-an-object"))
    idle = f"() => {{ const s = ({_STATE})(); return s !== null && s.kernel === 'idle'; }}"
    page.wait_for_function(idle, timeout=120_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    last = len(page.evaluate(_STATE)["counts"]) - 1
    state = _wait_until_run(page, cell=last, after=None)
    assert state["errors"] == [], state["errors"]

    # The object picker is a search box over display names with UPNs.
    search = page.locator(".jp-OutputArea .widget-text input[list]")
    search.wait_for(timeout=30_000)
    labels = search.evaluate("i => [...i.list.options].map(o => o.value)")
    assert len(labels) > 50 and sum("@" in label for label in labels) > len(labels) / 2
    story = _story(state)
    assert story.startswith(("User ", "Group ")), story[:200]
    target = next(label for label in labels if "<" in label and label != search.input_value())
    upn = target.split("<", 1)[1].split(">", 1)[0]
    search.fill(target)  # what choosing the suggestion for a typed UPN enters
    search.press("Enter")
    before = state["counts"][last]
    _run_below(page, "objects in the logs; type to search")
    state = _wait_until_run(page, cell=last, after=before)
    assert state["errors"] == [], state["errors"]
    assert upn in _story(state).splitlines()[0] and _story(state) != story

    # Another app, then run the app picker's cell and all below: the object picker offers the new app's
    # objects, and the story is about one of them (not the previous app's object).
    app_picker = page.locator(".jp-OutputArea .widget-dropdown select").first
    options = app_picker.evaluate("s => [...s.options].map(o => [o.value, o.textContent])")
    other = next(label for value, label in options if label.startswith("Salesforce"))
    app_picker.select_option(label=other)
    before = state["counts"][last]
    _run_below(page, "Source:")
    state = _wait_until_run(page, cell=last, after=before)
    assert state["errors"] == [], state["errors"]
    assert "Evidence for Salesforce" in "".join(state["text"])
    assert upn not in _story(state), "the previous app's object was explained against the new app"
    assert "not found" not in _story(state).lower()[:300]
