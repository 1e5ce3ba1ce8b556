"""Read-only: by the simulator's request log, ``fetch``, ``cycles``, ``diagnose``, ``explain``, ``apps``,
``postmortem`` and ``report`` send only reads (GETs, and the sign-in's token POST, which changes nothing in the tenant). With
``--validate-credentials``, diagnose adds exactly one POST that changes nothing. The session signs in as the
registration that holds Synchronization.ReadWrite.All, so a write, had provkit sent one, would have succeeded.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from .support import CommandRun, LiveSession, Tally

pytestmark = pytest.mark.reliability

READ_ONLY_COMMANDS = ("apps", "fetch", "fetch-debug", "cycles", "cycles-json", "diagnose", "diagnose-json",
                      "explain", "postmortem", "report")  # fmt: skip


def changes_nothing(request) -> bool:
    """A GET, or the identity platform's token POST (it issues a token; the tenant stays as it was)."""
    path = urlsplit(request.path).path
    return request.method == "GET" or (request.method == "POST" and path.endswith("/oauth2/v2.0/token"))


def graph_calls(run: CommandRun) -> list:
    return [r for r in run.requests if r.path.startswith(("/v1.0", "/beta"))]


def test_commands_without_flags_send_only_reads(live: LiveSession, tally: Tally) -> None:
    writes = {}
    for run in live.runs:
        tally.requests_checked += len(run.requests)
        if not run.flagged:
            writes[run.label] = [f"{r.method} {r.path}" for r in run.requests if not changes_nothing(r)]
    tally.writes_sent += sum(len(w) for w in writes.values())
    assert {label: w for label, w in writes.items() if w} == {}
    for label in READ_ONLY_COMMANDS:  # each command really talked to the tenant
        run = live.run(label)
        assert run.code == 0 and len(graph_calls(run)) >= 3, (label, run.code, run.err[-2000:])


def test_validate_credentials_is_one_post_that_changes_nothing_and_only_with_its_flag(
    live: LiveSession, tally: Tally
) -> None:
    run = live.run("diagnose-validate")
    assert run.code == 0, run.err[-2000:]
    posts = [urlsplit(r.path).path for r in graph_calls(run) if not changes_nothing(r)]
    assert len(posts) == 1 and posts[0].endswith("/validateCredentials"), posts
    assert [r.method for r in graph_calls(run) if r.path == posts[0]] == ["POST"]
    unflagged = [r.path for run in live.runs if not run.flagged for r in run.requests]
    assert not any("validateCredentials" in path for path in unflagged)


def test_the_tenant_is_as_it_was(live: LiveSession) -> None:
    assert live.jobs_after == live.jobs_before


def test_the_session_could_have_written_had_provkit_tried(live: LiveSession) -> None:
    callers = {r.client_id for label in READ_ONLY_COMMANDS for r in graph_calls(live.run(label))}
    assert callers == {live.server.admin_client_id}
