"""A demo report as a new user opens it: every page double-clicked from disk (file://) draws all its charts,
logs no console error and requests nothing from outside the machine; it says where its evidence came from."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import LOCAL_PREFIXES, demo_environment

pytestmark = pytest.mark.slow

# Chromium's file:// origin is "null": a script with crossorigin/integrity or a module import is refused there.
REFUSED_ON_DISK = re.compile(
    r"crossorigin|integrity=|type=\"module\"|<script[^>]+src=\"https?:", re.IGNORECASE
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``provkit report --demo --all-apps`` (the command behind ``make demo``) on the small demo tenant;
    ``PROVKIT_BROWSER_REPORT=DIR`` checks an existing report folder instead (e.g. one made by ``make demo``)."""
    existing = os.environ.get("PROVKIT_BROWSER_REPORT")
    if existing:
        return Path(existing)
    out = tmp_path_factory.mktemp("report")
    command = [
        sys.executable,
        "-c",
        "import sys; from provkit.cli.main import main; sys.exit(main())",
        "report",
        "--demo",
        "--all-apps",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, env=demo_environment(), capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 3), done.stderr[-3000:]
    assert Path(done.stdout.strip().splitlines()[-1]) == out / "index.html"
    return out


def _plotly_outputs(notebook: Path) -> int:
    data = json.loads(notebook.read_text(encoding="utf-8"))
    return sum(
        1
        for cell in data["cells"]
        for output in cell.get("outputs", [])
        if "application/vnd.plotly.v1+json" in (output.get("data") or {})
    )


def _wait_for_charts(page, expected: int, timeout: int = 15_000) -> None:
    """Wait until ``expected`` charts have drawn; on a timeout return anyway (the caller reports what is missing,
    page by page, rather than stopping at the first page)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "n => document.querySelectorAll('.provkit-chart').length === n && "
            "[...document.querySelectorAll('.provkit-chart')].every(c => c.querySelector('.main-svg'))",
            arg=expected,
            timeout=timeout,
        )
    except PlaywrightTimeout:
        pass


def _open(pages, path: Path) -> tuple[object, list[str], list[str]]:
    """Open ``path`` from disk; returns the page, its console errors (and page errors), and every request that
    would have left the machine (those are refused)."""
    page = pages.new(path.name)
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))

    def route(r) -> None:
        if r.request.url.startswith(LOCAL_PREFIXES):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri(), wait_until="load")
    return page, errors, outside


def test_every_report_page_draws_its_charts_from_disk(report: Path, pages) -> None:
    run = next(p for p in report.iterdir() if p.is_dir())
    html_pages = sorted(run.glob("*/*.html"))
    assert len(html_pages) >= 6 * 7, [p.name for p in html_pages]  # six notebooks for each of seven apps
    assert (run / "plotly.min.js").exists()
    problems: list[str] = []
    drawn_total = 0
    for path in html_pages:
        before = len(problems)
        text = path.read_text(encoding="utf-8")
        if REFUSED_ON_DISK.search(text):
            problems.append(f"{path.parent.name}/{path.name}: {REFUSED_ON_DISK.search(text).group(0)!r}")
        expected = _plotly_outputs(path.with_suffix(".ipynb"))
        page, errors, outside = _open(pages, path)
        if expected:
            _wait_for_charts(page, expected)
        charts = page.locator(".provkit-chart").count()
        drawn = page.locator(".provkit-chart.js-plotly-plot").count()
        drawn_total += drawn
        banner = (
            page.locator(".provkit-banner").first.inner_text()
            if page.locator(".provkit-banner").count()
            else ""
        )
        where = f"{path.parent.name}/{path.name}"
        if charts != expected or drawn != expected:
            problems.append(
                f"{where}: {expected} charts in the notebook, {charts} on the page, {drawn} drawn"
            )
        if "SIMULATED" not in banner:
            problems.append(f"{where}: no banner naming the simulated tenant ({banner!r})")
        problems += [f"{where}: {e}" for e in errors]
        problems += [f"{where}: request leaving the machine: {u}" for u in outside]
        # Relative links (to sibling pages, the index, plotly.min.js) must lead somewhere on disk.
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"):
            if re.match(r"^[a-z]+:|^#", href):
                continue
            if not (path.parent / href.split("#")[0]).exists():
                problems.append(f"{where}: dead link {href!r}")
            if href == path.name:
                problems.append(f"{where}: a link to the page itself")
        if len(problems) > before:  # keep what the reader would have seen, before the page goes
            pages.snapshot(page, f"report-{path.parent.name}-{path.stem}")
        page.context.close()
    assert not problems, "\n".join(problems[:40])
    assert drawn_total >= 7 * 6  # at least one chart per notebook and app on average


def test_index_from_disk_names_the_source_and_links_the_pages(report: Path, pages) -> None:
    page, errors, outside = _open(pages, report / "index.html")
    assert page.locator(".provkit-banner").count() == 1, "no banner saying where the evidence came from"
    assert "SIMULATED" in page.locator(".provkit-banner").inner_text()
    links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    assert any(href.endswith("00-triage.html") for href in links)
    for href in links:
        assert (report / href).exists(), href
    assert not errors and not outside, (errors, outside)


def test_charts_and_findings_fit_the_page(report: Path, pages) -> None:
    """The defects a reader saw: legends over the x-axis title, log-axis labels without units, and a findings
    table that grows wider than the page when its details are opened."""
    run = next(p for p in report.iterdir() if p.is_dir())
    page, errors, _ = _open(pages, run / "contoso-scim-app" / "05-cycles-and-watermarks.html")
    _wait_for_charts(page, _plotly_outputs(run / "contoso-scim-app" / "05-cycles-and-watermarks.ipynb"))
    assert page.locator(".provkit-chart.js-plotly-plot").count() > 0, errors
    overlaps = page.evaluate(
        """() => [...document.querySelectorAll('.provkit-chart')].flatMap(chart => {
            const legend = chart.querySelector('.legend'), title = chart.querySelector('.xtitle');
            if (!legend || !title) return [];
            const a = legend.getBoundingClientRect(), b = title.getBoundingClientRect();
            const apart = a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top;
            return apart ? [] : [chart.id];
        })"""
    )
    assert overlaps == [], f"legend over the x-axis title in {overlaps}"
    log_labels = page.evaluate(
        """() => [...document.querySelectorAll('.provkit-chart')]
            .filter(c => c._fullLayout && c._fullLayout.yaxis.type === 'log')
            .flatMap(c => [...c.querySelectorAll('.ytick text')].map(t => t.textContent))"""
    )
    assert log_labels and all(re.search(r"\d (s|min|h|d)$", t) for t in log_labels), log_labels

    page, errors, _ = _open(pages, run / "zendesk" / "00-triage.html")
    page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    too_wide = page.evaluate(
        """() => [...document.querySelectorAll('table.provkit-findings')].filter(t => {
            const area = t.closest('.jp-OutputArea-output') || t.parentElement;
            return t.getBoundingClientRect().width > area.getBoundingClientRect().width + 1;
        }).length"""
    )
    assert too_wide == 0
    deeper = page.eval_on_selector_all(
        "table.provkit-findings a[href$='.html']", "els => els.map(e => e.getBoundingClientRect().right)"
    )
    assert deeper and max(deeper) <= page.viewport_size["width"], deeper
    assert not errors, errors


def test_report_pages_over_http(report: Path, pages) -> None:
    """The same pages served over http (a share or a CI artefact viewer) draw their charts too."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(report))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run = next(p for p in report.iterdir() if p.is_dir())
        for name in ("contoso-scim-app/05-cycles-and-watermarks", "zendesk/00-triage"):
            page = pages.new(name)
            errors: list[str] = []
            page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/{run.name}/{name}.html")
            expected = _plotly_outputs(run / f"{name}.ipynb")
            _wait_for_charts(page, expected)
            assert page.locator(".provkit-chart.js-plotly-plot").count() == expected > 0, errors
            assert not errors, errors
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def workspace_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``provkit report --demo --workspace`` over five weeks of a simulated tenant: the cycles notebook, its
    logs read from the simulated Log Analytics workspace, long enough for every trend chart."""
    out = tmp_path_factory.mktemp("workspace-report")
    env = {**demo_environment(), "PROVKIT_DEMO_DAYS": "35"}
    command = [sys.executable, "-c", "import sys; from provkit.cli.main import main; sys.exit(main())",
               "report", "--demo", "--workspace", "--app", "Zendesk", "--since", "35d", "--notebook", "05",
               "--workers", "1", "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 3), done.stderr[-3000:]
    return out


def test_a_workspace_reports_trend_charts_draw_from_disk(workspace_report: Path, pages) -> None:
    (path,) = workspace_report.glob("*/zendesk/05-cycles-and-watermarks.html")
    expected = _plotly_outputs(path.with_suffix(".ipynb"))
    page, errors, outside = _open(pages, path)
    _wait_for_charts(page, expected)
    titles = page.eval_on_selector_all(
        ".provkit-chart.js-plotly-plot .gtitle", "els => els.map(e => e.textContent)"
    )
    assert page.locator(".provkit-chart.js-plotly-plot").count() == expected == len(titles)
    for wanted in ("Initial-cycle durations over time", "Incremental cycles by week", "Failed provisioning"):
        assert any(t.startswith(wanted) for t in titles), (wanted, titles)
    banner = page.locator(".provkit-banner").first.inner_text()
    assert "Log Analytics workspace" in banner and "SIMULATED" in banner
    assert "Not drawn" not in page.inner_text("body")
    assert not errors and not outside, (errors, outside)
    page.context.close()
