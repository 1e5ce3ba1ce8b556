"""Postmortem write-ups against the simulated tenant: the Markdown's timeline, findings and impact, the PNG
charts beside it, redaction with stable pseudonyms, and ``provkit postmortem``'s command-line path."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import plotly.graph_objects as go
import pytest

from provkit.cli.report import add_postmortem_arguments, run_postmortem
from provkit.errors import ConfigError
from provkit.workbook.notebook import load
from provkit.workbook.postmortem import Redactor, save_static, write_postmortem

DEMO_ENV = {"PROVKIT_DEMO_USERS": "300", "PROVKIT_DEMO_DAYS": "3", "PROVKIT_DEMO_NOW": "2024-06-03T12:00:00Z"}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def small_demo():
    with pytest.MonkeyPatch.context() as mp:
        for name, value in DEMO_ENV.items():
            mp.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def contoso():
    """Contoso SCIM App: quarantined for credentials 40 hours before the simulated now."""
    return load("Contoso SCIM App", source="demo", since="3d").evidence


@pytest.fixture(scope="module")
def zendesk():
    """Zendesk: users skipped for many reasons, a few failing exports."""
    return load("Zendesk", source="demo", since="3d").evidence


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_quarantine_incident_write_up(contoso, tmp_path: Path) -> None:
    written = write_postmortem(contoso, tmp_path)
    text = written.markdown.read_text(encoding="utf-8")
    assert written.markdown.name == "postmortem.md"
    assert written.markdown.parent.parent == tmp_path
    assert text.startswith(
        "# Postmortem: Contoso SCIM App provisioning, 2024-05-31 12:00 UTC to 2024-06-03 12:00 UTC"
    )

    timeline = _section(text, "Timeline")
    assert "| 2024-06-01 20:24 UTC | quarantine | Quarantine (EncounteredQuarantineException)" in timeline
    assert "quarantine retry" in timeline and "initial cycle" in timeline
    assert "Update provisioning setting or credentials (credential-change) by admin@contoso.com" in timeline
    times = re.findall(r"^\| (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", timeline, re.MULTILINE)
    assert times == sorted(times) and len(times) == len(written.timeline)
    # Only the scheduled rows (next attempt, disable date) lie after the window.
    late = written.timeline[written.timeline["time"] > contoso.window[1]]
    assert set(late["kind"]) == {"scheduled"}

    impact = _section(text, "Impact")
    assert "No change reached the app from 2024-06-01 20:24 UTC to 2024-06-03 12:00 UTC (1 d 15 h)" in impact
    assert written.impact.failed == 1 and written.impact.still_failing == 1

    findings = _section(text, "Findings")
    assert "Check `credentials.quarantined`" in findings and "**What to do.**" in findings
    assert [f.check for f in written.findings if f.severity == "error"] == [
        "credentials.quarantined",
        "credentials.target-rejected",
        "quarantine.active",
    ]
    assert [p.name for p in written.images] == [
        "cycles.png",
        "entries-per-day.png",
        "error-codes.png",
        "quarantine.png",
    ]
    for image in written.images:
        assert image.parent == written.markdown.parent
        assert image.read_bytes()[:8] == PNG and image.stat().st_size > 5000
        assert f"]({image.name})" in _section(text, "Charts")


def test_healthy_window_has_no_quarantine_chart_or_stop(tmp_path: Path) -> None:
    evidence = load("Salesforce", source="demo", since="3d").evidence
    written = write_postmortem(evidence, tmp_path)
    assert "quarantine.png" not in [p.name for p in written.images]
    assert written.impact.stopped == []
    assert "No object failed in the window." in written.markdown.read_text(encoding="utf-8")


def _people(evidence) -> set[str]:
    names = set()
    for user in evidence.users.values():
        names |= {user.get(k) for k in ("displayName", "userPrincipalName", "mail") if user.get(k)}
    users = evidence.events[evidence.events["source_type"] == "User"]
    names |= set(users["source_name"].dropna()) | set(users["target_name"].dropna())
    return {n for n in names if n}


def test_redacted_write_up_names_nobody(zendesk, tmp_path: Path) -> None:
    plain = write_postmortem(zendesk, tmp_path / "plain").markdown.read_text(encoding="utf-8")
    redacted = write_postmortem(zendesk, tmp_path / "redacted", redact=True, key=b"k1").markdown.read_text(
        encoding="utf-8"
    )
    people = _people(zendesk)
    assert any(name in plain for name in people), (
        "the plain write-up names users (else this test proves nothing)"
    )
    leaked = [name for name in people if name in redacted]
    assert leaked == []
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", redacted), "an email address survived"
    assert re.search(r"\buser-[0-9a-f]{4,}\b", redacted)
    # Everything else is kept: the findings, the structure, the group names.
    assert redacted.count("\n## ") == plain.count("\n## ")
    assert "skipped.nested-group-only" in redacted and "Support" in redacted


def test_pseudonyms_are_stable_within_and_across_write_ups_with_one_key(zendesk) -> None:
    user = next(u for u in zendesk.users.values() if u.get("mail"))
    text = (
        f"{user['displayName']} ({user['userPrincipalName']}) wrote to {user['mail']}; {user['displayName']}."
    )
    first = Redactor.for_evidence(zendesk, b"key").apply(text)
    pseudonyms = re.findall(r"user-[0-9a-f]+", first)
    assert len(pseudonyms) == 4 and len(set(pseudonyms)) == 1, first
    assert Redactor.for_evidence(zendesk, b"key").apply(text) == first
    assert Redactor.for_evidence(zendesk, b"other key").apply(text) != first


def test_pseudonyms_never_collide() -> None:
    redactor = Redactor(b"fixed")
    seen: dict[str, str] = {}
    for i in range(2000):  # enough for a clash of four hex digits (birthday bound ~ 300)
        identity = f"person-{i}"
        seen[identity] = redactor.pseudonym(identity)
    assert len(set(seen.values())) == len(seen)
    assert any(len(p) > len("user-0000") for p in seen.values()), "no clash happened, so none was resolved"
    assert redactor.pseudonym("person-7") == seen["person-7"]
    assert (
        redactor.apply("mail unknown@example.org now")
        == f"mail {redactor.pseudonym('unknown@example.org')} now"
    )


def test_static_image_draws_the_plotly_figure_data(tmp_path: Path) -> None:
    figure = go.Figure(go.Bar(x=["2024-06-01", "2024-06-02"], y=[3, 5], name="success"))
    figure.add_trace(go.Scatter(x=["2024-06-01", "2024-06-02"], y=[1, 2], mode="markers", name="p"))
    figure.add_vline(x="2024-06-01T12:00:00Z", line_dash="dot")
    figure.update_layout(title={"text": "t"}, barmode="stack", yaxis_type="log")
    path = save_static(figure, tmp_path / "x.png")
    assert path.read_bytes()[:8] == PNG


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_postmortem_arguments(parser)
    return parser.parse_args(list(argv))


def test_command_writes_the_redacted_write_up_and_prints_its_path(tmp_path: Path, capsys) -> None:
    code = run_postmortem(
        _args(
            "--app",
            "Zendesk",
            "--demo",
            "--start",
            "2024-06-01",
            "--end",
            "2024-06-03T12:00",
            "--redact",
            "--out",
            str(tmp_path),
        )
    )
    out = capsys.readouterr()
    assert code == 0
    path = Path(out.out.strip().splitlines()[-1])
    assert path.is_file() and path.parent.parent == tmp_path
    assert path.parent.name == "zendesk-20240601T0000-20240603T1200"
    assert "redacted: yes" in out.err


def test_command_needs_a_window(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="incident window"):
        run_postmortem(_args("--app", "Zendesk", "--demo", "--out", str(tmp_path)))
