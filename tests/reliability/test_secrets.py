"""Secrets: the command line, run against the simulator as a live tenant whose client secret is a sentinel, leaves
neither the secret nor any token the simulator issued in any output file, notebook, HTML page, log line or error
message. The token cache is the one place tokens legitimately live: it is left out of the search (and must be
0600, hold no secret, and hold a token, which proves the search finds tokens where they are).
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from .support import REPORT_APP, SENTINEL, LiveSession, Tally, readable_text

pytestmark = pytest.mark.reliability

TOKEN_CACHE = "token-cache.json"


def needles(live: LiveSession) -> dict[str, str]:
    """What must not be found: the secret (raw, URL- and form-encoded, the wrong one tried too) and each issued
    token, whole and by its signature (a token cut short still leaks its payload and signature)."""
    found = {"client secret": SENTINEL}
    found["client secret (URL-encoded)"] = quote(SENTINEL, safe="")
    found["client secret (form-encoded)"] = quote_plus(SENTINEL)
    for i, token in enumerate(live.server.authority.issued_tokens()):
        found[f"token {i}"] = token
        parts = token.split(".")
        if len(parts) == 3 and len(parts[2]) >= 20:
            found[f"token {i} signature"] = parts[2]
            found[f"token {i} payload"] = parts[1]
    return found


def places(live: LiveSession) -> dict[str, str]:
    """Everything a user or a tool could read after the session, by name, except the token cache files."""
    out: dict[str, str] = {}
    for run in live.runs:
        out[f"{run.label}: stdout"] = run.out
        out[f"{run.label}: stderr"] = run.err
        for n, line in enumerate(run.logs):
            out[f"{run.label}: log line {n + 1}"] = line
        for n, line in enumerate(run.err.splitlines()):
            out[f"{run.label}: stderr line {n + 1}"] = line
    for path in sorted(live.home.rglob("*")):
        if path.is_file() and path.name != TOKEN_CACHE:
            out[str(path.relative_to(live.home))] = readable_text(path)
    return out


def test_no_secret_or_token_in_any_output_file_notebook_page_log_or_message(
    live: LiveSession, tally: Tally
) -> None:
    search = needles(live)
    assert any(k.startswith("token") for k in search), (
        "the simulator issued no token; the search proves nothing"
    )
    scanned = places(live)
    hits = [
        (where, what) for where, text in scanned.items() for what, value in search.items() if value in text
    ]
    tally.secrets_found += len(hits)
    tally.places_scanned += len(scanned)
    assert hits == []
    # What was searched really holds the session's outputs: notebooks, HTML pages, summaries, the store, logs.
    suffixes = {Path(name).suffix for name in scanned}
    assert {".ipynb", ".html", ".json", ".parquet", ".md"} <= suffixes, suffixes
    assert sum(len(r.logs) for r in live.runs) > 100


def test_the_report_wrote_notebooks_pages_and_summaries_to_search(live: LiveSession) -> None:
    run = live.run("report")
    assert run.code in (0, 3) and "Traceback" not in run.err, run.err[-3000:]
    reports = live.home / "reports"
    notebooks = list(reports.rglob("*.ipynb"))
    pages = list(reports.rglob("*.html"))
    assert len(notebooks) >= 6 and len(pages) >= 6, (notebooks, pages)
    assert list(reports.rglob("summary.json"))
    assert any(REPORT_APP in p.read_text(encoding="utf-8") for p in pages)


def test_token_cache_is_0600_holds_no_secret_and_holds_the_tokens_the_search_left_out(
    live: LiveSession,
) -> None:
    caches = sorted(live.home.rglob(TOKEN_CACHE))
    assert caches and caches[0].parent == live.home / "cache" / "provkit"
    for cache in caches:
        assert stat.S_IMODE(cache.stat().st_mode) == 0o600, cache
        assert stat.S_IMODE(cache.parent.stat().st_mode) & 0o077 == 0, cache.parent
        text = cache.read_text(encoding="utf-8")
        assert SENTINEL not in text and quote_plus(SENTINEL) not in text
    # The positive control: tokens are in the cache, and the search finds them there.
    text = caches[0].read_text(encoding="utf-8")
    assert any(token in text for token in live.server.authority.issued_tokens())


def test_debug_logging_shows_every_request_but_no_authorization_header_or_token(live: LiveSession) -> None:
    run = live.run("fetch-debug")
    assert run.code == 0, run.err[-2000:]
    debug = [line for line in run.err.splitlines() if line.startswith("DEBUG ")]
    graph_calls = [r for r in run.requests if r.path.startswith("/v1.0")]
    assert len(debug) >= len(graph_calls) > 5  # debugging is really on: at least a line per request
    assert not re.search(r"(?i)bearer\s+ey", run.err)
    for line in run.err.splitlines():
        if "authorization" in line.lower():
            assert "[redacted]" in line or "****" in line, line
    for run in live.runs:
        for line in run.logs:
            assert not re.search(r"(?i)bearer\s+ey", line), (run.label, line)


def test_failures_explain_themselves_without_the_secret(live: LiveSession) -> None:
    wrong = live.run("wrong-secret")
    assert wrong.code == 1 and "AADSTS7000215" in wrong.err and "Traceback" not in wrong.err, wrong.err
    denied = live.run("no-permission")
    assert denied.code == 1 and "AuditLog.Read.All" in denied.err and "Traceback" not in denied.err, (
        denied.err
    )
    unknown = live.run("unknown-app")
    assert unknown.code == 2 and "No Such App" in unknown.err, unknown.err
    for run in (wrong, denied, unknown):
        assert SENTINEL not in run.text and "SENTINEL" not in run.text
