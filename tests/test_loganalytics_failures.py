"""The failures after the newest success, summarised in KQL (diagnose --workspace, the findings mode).

A credential outage or an escrow quarantine fails every export: the workspace sends those failures as groups by
error code and HTTP status (counts, first and last times) and only the newest entries of each group whole; the
checks count from the groups and list from the entries, so their findings are those of every entry. Against the
simulated workspace (HTTPS, msal sign-in, KQL evaluated by its engine); a few tests on hand-built entries cover
what the simulator never writes (an error code the catalog does not know).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from provkit.analysis.checks import findings_json, run_checks
from provkit.analysis.checks.credentials import rejected_groups
from provkit.analysis.checks.facts import gather
from provkit.analysis.checks.finding import EVIDENCE_ROWS
from provkit.data.evidence import Evidence
from provkit.data.httpstatus import http_status
from provkit.data.logsummary import LogSummary
from provkit.data.sources import loganalytics_failures
from provkit.data.sources.loganalytics import LogAnalytics
from provkit.data.sources.loganalytics_failures import _quote, failures_since_success, status_kql
from provkit.data.tables import events_from_records
from provkit.workbook.session import demo_tenant, load_evidence

NOW = datetime(2026, 12, 1, tzinfo=UTC)

# Reason texts: the documented example of a failed entry (reference 1.8, provisioningObjectSummary: "Message:
# Contoso returned an error response with the HTTP status code 409. ..."), the wordings the catalog's tests
# read, the .NET texts of SCIM reasons, and texts that must give no status or the first one named.
REASONS = [
    "Message: Contoso returned an error response with the HTTP status code 409. ... a user or a group already "
    "exists with the same name ...",
    "Message: Contoso SCIM App returned an error response with the HTTP status code 401 (Unauthorized). The "
    "credentials used to connect to the application are not valid.",
    "Zendesk returned an error response with the HTTP status code 409.",
    "the SCIM endpoint returned HTTP 401 (Unauthorized).",
    "the API answered 401 Unauthorized.",
    "returned 404 Not Found for the filter query",
    "the app's endpoint said 403 (Forbidden)",
    "StatusCode: BadRequest Message: Processing of the HTTP request resulted in an exception.",
    "StatusCode: NotFound Message: the resource was not found",
    "statuscode=toomanyrequests",
    "The remote server returned an error: (401) Unauthorized.",
    "The remote server returned an error: (401) unauthorized.",
    "StatusCode: 403",
    "StatusCode: SomethingNew",
    "a value (12) Apples",
    "HTTP 200 then status code 503",
    "status code (404) and later HTTP 401",
    "HTTP 4011 is no status",
    "no status here",
    "back\\slash and HTTP status code 429",
    "",
]


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PROVKIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROVKIT_DEMO_USERS", "400")
    monkeypatch.setenv("PROVKIT_DEMO_DAYS", "3")


def connect(srv) -> LogAnalytics:
    env = srv.env()
    return LogAnalytics.connect(
        environ=env, method="secret", secret=env["PROVKIT_CLIENT_SECRET"], cache_path=False
    )


def both(scenario: str, since: str = "3d"):
    """The app of ``scenario``: its evidence from every entry of the workspace and from the findings mode."""
    app = next(a for a in demo_tenant().tenant.apps if a.scenario.name == scenario)
    every = load_evidence(app.sp_id, source="demo", since=since, progress=False, workspace="")
    pushed = load_evidence(
        app.sp_id, source="demo", since=since, progress=False, workspace="", logs="findings"
    )
    return app, every, pushed


def failed_after_success(evidence: Evidence) -> pd.DataFrame:
    """Every failed entry after the newest successful one, read from the entries (not the summary)."""
    events = evidence.events
    success = events.loc[events["status"] == "success", "activity_time"].max()
    failed = events[events["status"] == "failure"]
    return failed if pd.isna(success) else failed[failed["activity_time"] > success]


def test_the_kql_status_regex_reads_what_http_status_reads() -> None:
    """The workspace's engine reads the status of every reason text as provkit's parser does."""
    la = connect(demo_tenant().server)
    rows = "datatable(r:string)[" + ", ".join(_quote(t) for t in REASONS) + "]"
    frame = la.query(f"{rows}\n| extend {status_kql('r')}\n| project r, status_", None)
    read = {
        r: (int(s) if isinstance(s, str) and s else None)
        for r, s in zip(frame["r"], frame["status_"], strict=True)
    }
    read[""] = read.get("", read.get(None))  # an empty string may come back as null
    expected = {text: http_status(text) for text in REASONS}
    assert {t: read[t] for t in REASONS} == expected
    # Every pattern gives a status somewhere, and some texts give none.
    assert {200, 400, 401, 403, 404, 409, 429} <= {s for s in expected.values() if s}
    assert None in expected.values()


def test_the_evidence_rows_sent_are_the_rows_a_finding_lists() -> None:
    assert loganalytics_failures.EVIDENCE_ROWS == EVIDENCE_ROWS


def test_a_credential_outage_gives_the_same_finding_from_the_workspace_as_from_every_entry() -> None:
    _app, every, pushed = both("bad-credentials")
    expected = [f for f in run_checks(every.evidence) if f.check.startswith("credentials.")]
    found = [f for f in run_checks(pushed.evidence) if f.check.startswith("credentials.")]
    assert findings_json(found) == findings_json(expected)
    (rejected,) = [f for f in found if f.check == "credentials.target-rejected"]
    failures = failed_after_success(every.evidence)
    assert rejected.count == len(failures) > 0 and "HTTP 401" in rejected.title
    assert {r["change_id"] for r in rejected.evidence if r.get("change_id")} == set(failures["change_id"])
    groups = pushed.evidence.log_summary.failures_since_success
    assert groups == every.evidence.summarise_logs().failures_since_success
    assert [(g.status, g.entries) for g in groups] == [(401, len(failures))]
    assert pushed.transfer.rows < 300


def test_failures_before_the_newest_success_are_not_counted_and_do_not_travel() -> None:
    """Dropbox (escrow quarantine) at this size fails hundreds of exports, then exports succeed again."""
    _app, every, pushed = both("escrow-quarantine")
    events = every.evidence.events
    failed = events[events["status"] == "failure"]
    assert len(failed) > 2 * EVIDENCE_ROWS and failed_after_success(every.evidence).empty
    summary = pushed.evidence.log_summary
    assert summary.by_status["failure"] == len(failed)
    assert summary.failures_since_success == () == every.evidence.summarise_logs().failures_since_success
    assert not [f for f in run_checks(pushed.evidence) if f.check == "credentials.target-rejected"]
    # Of those failures only objects' latest entries travel (each object's state), and of the failing objects
    # only the newest EVIDENCE_ROWS (failures.by-code lists them and counts the rest in the summary).
    held = pushed.evidence.events
    latest = gather(every.evidence).latest
    failing = int((latest["status"] == "failure").sum())
    assert EVIDENCE_ROWS <= (held["status"] == "failure").sum() <= EVIDENCE_ROWS + 10 < failing
    assert sum(summary.failing_by_code.values()) == failing
    assert findings_json(run_checks(pushed.evidence)) == findings_json(run_checks(every.evidence))


@pytest.mark.slow
def test_an_escrow_quarantine_sends_each_groups_newest_entries_and_counts_the_rest(monkeypatch) -> None:
    """At 6,000 users the job is quarantined: every export after the newest success fails (over 20,000). The
    groups come back as a row each, and the newest entries of each group whole, whatever the check judges."""
    monkeypatch.setenv("PROVKIT_DEMO_USERS", "6000")
    monkeypatch.setenv("PROVKIT_DEMO_DAYS", "2")
    app, every, pushed = both("escrow-quarantine", since="2d")
    failures = failed_after_success(every.evidence)
    summary = pushed.evidence.log_summary
    groups = summary.failures_since_success
    assert groups == every.evidence.summarise_logs().failures_since_success
    assert sum(g.entries for g in groups) == len(failures) > 100 * EVIDENCE_ROWS
    assert findings_json(run_checks(pushed.evidence)) == findings_json(run_checks(every.evidence))
    # What the failures' query sends: the newest EVIDENCE_ROWS of each group (and any entry at the same
    # instant as the last of them), nothing more.
    la = connect(demo_tenant().server)
    counted, records = failures_since_success(
        la, app.sp_id, pushed.evidence.window, summary.last_by_status.get("success")
    )
    assert counted == groups
    statuses = failures["error_reason"].map(lambda r: http_status(r) or -1)
    expected: set[str] = set()
    for _key, group in failures.groupby([failures["error_code"].astype(object).fillna(""), statuses]):
        cut = group["activity_time"].nlargest(EVIDENCE_ROWS).min()
        expected |= set(group.loc[group["activity_time"] >= cut, "id"])
    assert {r["id"] for r in records} == expected
    assert la.transfer.rows == len(records) + len(groups) <= len(groups) * (EVIDENCE_ROWS + 5)


# ---- hand-built entries: what the simulator never writes -----------------------------------------------------


def record(n: int, *, status: str, minutes_ago: float, code: str | None = None, reason: str | None = None):
    """A provisioningObjectSummary in the documented shape (reference 1.8), with the fields the checks read."""
    when = NOW - timedelta(minutes=minutes_ago)
    return {
        "id": f"e{n}",
        "activityDateTime": when.isoformat().replace("+00:00", "Z"),
        "jobId": "acme.job",
        "cycleId": "c1",
        "changeId": f"ch{n}",
        "provisioningAction": "update",
        "sourceIdentity": {"id": f"u{n}", "displayName": f"User {n}", "identityType": "User"},
        "targetIdentity": {"id": "", "displayName": "", "identityType": "User"},
        "provisioningStatusInfo": {
            "status": status,
            "errorInformation": {"errorCode": code, "reason": reason} if code or reason else None,
        },
        "provisioningSteps": [],
    }


def evidence(records: list[dict]) -> Evidence:
    return Evidence(
        tenant_id="t",
        service_principal_id="sp",
        app_id=None,
        display_name="Acme",
        tables=events_from_records(records),
        jobs=None,
        job=None,
        schema=None,
        assignments=[],
        groups={},
        audits=[],
        users={},
        now=NOW,
    )


def test_an_unknown_code_whose_reason_names_401_counts_as_a_rejection_after_the_newest_success() -> None:
    said = "The remote server returned an error: (401) Unauthorized."
    entries = [
        record(1, status="failure", minutes_ago=300, code="AcmeGremlin", reason=said),  # before the success
        record(2, status="success", minutes_ago=200),
        *(
            record(n, status="failure", minutes_ago=100 - n, code="AcmeGremlin", reason=said)
            for n in range(3, 73)
        ),
        record(80, status="failure", minutes_ago=20, code="AcmeGremlin", reason="HTTP status code 409"),
        record(81, status="failure", minutes_ago=10, code="InvalidAnchor", reason="HTTP status code 404"),
    ]
    ev = evidence(entries)
    summary = ev.summarise_logs()
    assert [(g.code, g.status, g.entries) for g in summary.failures_since_success] == [
        ("AcmeGremlin", 401, 70),
        ("AcmeGremlin", 409, 1),
        ("InvalidAnchor", 404, 1),
    ]
    facts = gather(ev)
    assert [(g.code, g.status) for g in rejected_groups(facts)] == [("AcmeGremlin", 401)]
    (finding,) = [f for f in run_checks(ev) if f.check == "credentials.target-rejected"]
    assert finding.count == 70 and finding.omitted == 70 - EVIDENCE_ROWS
    assert "70 log entries since" in finding.title and "70 x AcmeGremlin; HTTP 401" in finding.title
    listed = [r["change_id"] for r in finding.evidence]
    assert listed == [f"ch{n}" for n in range(72, 72 - EVIDENCE_ROWS, -1)]  # the newest first


def test_the_summary_counts_what_the_entries_held_cannot_show() -> None:
    """The checks count from the summary: with only the newest entries held (as the findings mode sends), the
    finding is the one every entry gives."""
    said = "the app answered HTTP 403"
    entries = [
        record(n, status="failure", minutes_ago=200 - n, code="AcmeGremlin", reason=said)
        for n in range(1, 121)
    ]
    whole = evidence(entries)
    newest = evidence(entries[-EVIDENCE_ROWS:])
    held = dataclasses.replace(newest, log_summary=whole.summarise_logs())
    assert isinstance(held.log_summary, LogSummary)
    expected = [f for f in run_checks(whole) if f.check == "credentials.target-rejected"]
    found = [f for f in run_checks(held) if f.check == "credentials.target-rejected"]
    assert findings_json(found) == findings_json(expected) and expected[0].count == 120
