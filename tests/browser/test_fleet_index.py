"""A fleet report as an MSP opens it: ``provkit report --demo --demo-tenants 2 --workspace UNKNOWN`` (two simulated
tenants behind one simulator, each with its own workspace, and a workspace nobody knows) opened from disk in
Chromium: one row per tenant and app, each row's links leading to that tenant's pages, and the unknown workspace
as a failed row with its error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import LOCAL_PREFIXES, demo_environment

pytestmark = pytest.mark.slow

UNKNOWN = "00000000-0000-4000-8000-00000000beef"


@pytest.fixture(scope="module")
def fleet_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fleet")
    command = [
        sys.executable,
        "-c",
        "import sys; from provkit.cli.main import main; sys.exit(main())",
        "report",
        "--demo",
        "--demo-tenants",
        "2",
        "--workspace",
        UNKNOWN,
        "--app",
        "Zendesk",
        "--app",
        "Contoso SCIM App",
        "--notebook",
        "00",
        "--since",
        "3d",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, env=demo_environment(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stderr[-3000:]  # a workspace failed: exit 1, after the others ran
    assert Path(done.stdout.strip().splitlines()[-1]) == out / "index.html"
    assert "Fleet report: 4 app(s) in 2 tenant(s) from 3 workspace(s), 1 failed" in done.stderr
    return out


def _open(pages, path: Path):
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


def _rows(page) -> list[dict]:
    """The first table's rows as the reader sees them: cell texts and the links' addresses."""
    return page.eval_on_selector_all(
        "table:first-of-type tr:has(td)",
        """rows => rows.map(r => ({
            cells: [...r.querySelectorAll('td')].map(td => td.innerText.trim()),
            links: [...r.querySelectorAll('a[href]')].map(a => ({text: a.innerText, href: a.getAttribute('href')})),
        }))""",
    )


def test_the_fleet_index_shows_one_row_per_tenant_and_app_and_the_failed_workspace(
    fleet_report: Path, pages
) -> None:
    page, errors, outside = _open(pages, fleet_report / "index.html")
    rows = _rows(page)
    apps = [r for r in rows if r["cells"][3] != "failed"]
    failed = [r for r in rows if r["cells"][3] == "failed"]
    assert sorted(r["cells"][0] for r in apps) == ["Contoso SCIM App"] * 2 + ["Zendesk"] * 2
    tenants = {r["cells"][1] for r in apps}
    workspaces = {r["cells"][2] for r in apps}
    assert len(tenants) == 2 and len(workspaces) == 2  # each tenant from its own workspace
    assert all(w.startswith("Log Analytics workspace ") for w in workspaces)
    assert len({(r["cells"][0], r["cells"][1]) for r in apps}) == 4  # one row per tenant and app
    (unknown,) = failed
    assert unknown["cells"][2] == f"Log Analytics workspace {UNKNOWN}"
    assert "The requested path does not exist" in unknown["cells"][7]
    banner = page.locator(".provkit-banner").inner_text()
    assert "SIMULATED" in banner and "could not be read" in banner
    assert "covers 5 apps in 2 tenants and 3 Log Analytics workspaces" in banner
    assert not errors and not outside, (errors, outside)


def test_each_rows_triage_link_opens_that_tenants_page(fleet_report: Path, pages) -> None:
    index, _, _ = _open(pages, fleet_report / "index.html")
    rows = [r for r in _rows(index) if r["cells"][3] != "failed"]
    for row in rows:
        name, tenant, logs = row["cells"][:3]
        (triage,) = [link for link in row["links"] if link["text"] == "00-triage.html"]
        index.click(f"a[href='{triage['href']}']")
        index.wait_for_load_state("load")
        assert index.url == (fleet_report / triage["href"]).as_uri()
        banner = index.locator(".provkit-banner").first.inner_text()
        assert f"Evidence for {name} from {logs}" in banner, banner
        assert f"tenant {tenant}" in banner and "SIMULATED" in banner, banner
        index.go_back()
        index.wait_for_load_state("load")
    (failed,) = [r for r in _rows(index) if r["cells"][3] == "failed"]
    (summary,) = failed["links"]
    assert (fleet_report / summary["href"]).is_file()
