"""The HTML a notebook shows and a report page carries comes from autoescaped templates: text from a tenant (a
display name, an error reason, a finding's evidence) shows as text and can never add markup or script; the
findings table keeps its shape (a link to the notebook that goes deeper, details with evidence) and its rows."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from provkit.analysis.checks import Finding
from provkit.workbook import notebook as nb
from provkit.workbook.pages import write_index

HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


class Tags(HTMLParser):
    """The start tags of a page, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Tags:
    parser = Tags()
    parser.feed(page)
    return parser


def test_findings_from_a_hostile_tenant_show_as_text_and_keep_their_table() -> None:
    findings = [
        Finding(
            check="skipped.scoping-filter",
            section="skipped",
            severity="warning",
            title=f"User {HOSTILE} skipped",
            evidence=[{"user": HOSTILE, "reason": "out of scope"}] * 7,
            why="Because <b>scope</b>.",
            remedy="Fix & retry.",
            links=['https://learn.microsoft.com/x?a=1&b="2"'],
        ),
        Finding(
            check="credentials.quarantined", section="credentials", severity="error", title="Quarantined"
        ),
    ]
    page = nb.findings_html(findings, rows=5, here="04-skipped-users")
    seen = parse(page)
    assert (
        "script" not in seen.tags and "img" not in seen.tags and "b" in seen.tags
    )  # only the table's own tags
    text = "".join(seen.text)
    assert f"User {HOSTILE} skipped" in text and "Because <b>scope</b>." in text and "Fix & retry." in text
    assert (
        seen.tags.count("tr") == 3 + 1 + 5
    )  # the table: a header, two findings; the evidence: a header, 5 of 7
    assert "... and 2 more" in text
    assert "(this notebook)" in text  # 04 goes deeper into skipped.*: no link to the page being read
    assert '<a href="03-credentials.ipynb">03-credentials</a>' in page  # report pages rewrite these links
    assert 'href="https://learn.microsoft.com/x?a=1&amp;b=&#34;2&#34;"' in page
    assert nb.findings_html([]) == "<p>No findings.</p>"


def test_the_banner_says_where_evidence_came_from_as_text() -> None:
    banner = nb.banner_html(f"Evidence for {HOSTILE} from the SIMULATED tenant")
    seen = parse(banner)
    assert seen.tags == ["div"] and "border-left:6px solid #b54708" in banner  # amber: simulated
    assert "".join(seen.text) == f"Evidence for {HOSTILE} from the SIMULATED tenant"
    assert "#475467" in nb.banner_html("a copy of the LIVE tenant kept in the local store, read offline")


def test_the_report_index_shows_a_hostile_app_name_and_error_as_text(tmp_path: Path) -> None:
    run = tmp_path / "20240603T120000Z"
    run.mkdir()
    app = {
        "app": {"display_name": HOSTILE, "service_principal_id": "sp", "tenant_id": "t"},
        "state": "failed",
        "folder": "app",
        "counts": {"error": 0, "warning": 0, "info": 0},
        "errors": [f"ConfigError: no app named {HOSTILE}"],
        "notebooks": [],
    }
    summary = {"generated_at": "2024-06-03T12:00:00", "state": "failed", "source": "demo", "apps": [app]}
    (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    page = write_index(tmp_path).read_text(encoding="utf-8")
    seen = parse(page)
    assert "script" not in seen.tags and "img" not in seen.tags
    text = "".join(seen.text)
    assert HOSTILE in text and f"ConfigError: no app named {HOSTILE}" in text
    assert "SIMULATED" in text and "1 failed" in text
