"""GraphClient against the local Graph-compatible server: paging, pacing, retries, typed errors, app resolution.

Most tests talk to the real simulated server over TLS, signed in with a real client secret. A few drive the client
through a scripted transport adapter (requests' own extension point) for answers the server never gives: an empty
page that still links onward, a Retry-After date, a foreign nextLink, a persistent 503.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from provkit.data.auth import CLOUDS, Settings, TokenProvider, sign_in
from provkit.data.graph import GraphClient, permission_for, time_slices
from provkit.data.pacing import AuditPacer
from provkit.errors import (
    AmbiguousAppError,
    CloudNotSupportedError,
    ConfigError,
    GraphError,
    GraphUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    ReadOnlyError,
    ThrottledError,
)
from provkit.sim.faults import FaultPlan
from provkit.sim.server import RunningServer, start_server
from provkit.sim.tenant import Tenant

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
START, END = NOW - timedelta(days=2), NOW
SECRET = "sim~graph-client-test-secret-0123456789"


def make_tenant() -> Tenant:
    return Tenant(seed=7, users_count=300, days=2, now=NOW, scenarios=("healthy", "skipped-users"))


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server(make_tenant(), throttle=False, client_secret=SECRET)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def settings(server: RunningServer) -> Settings:
    return Settings.from_env(server.env())


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> TokenProvider:
    return sign_in(settings, method="secret", secret=SECRET, cache_path=False)


class Recorder:
    """Stands in for time.sleep (records, does not wait) and for on_event."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def event(self, kind: str, **data: Any) -> None:
        self.events.append((kind, data))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def unpaced() -> AuditPacer:
    """For servers with the throttle off: no waiting between /auditLogs calls."""
    return AuditPacer(limit=10_000, per=1.0)


@pytest.fixture
def client(settings: Settings, tokens: TokenProvider) -> GraphClient:
    return GraphClient(settings, tokens, pacer=unpaced())


@pytest.fixture(scope="module")
def zendesk(settings: Settings, tokens: TokenProvider) -> str:
    return GraphClient(settings, tokens, pacer=unpaced()).resolve_app("Zendesk").service_principal_id


def fetch_ids(client: GraphClient, sp_id: str, page_size: int) -> list[str]:
    return [
        e["id"]
        for page in client.provisioning_pages(sp_id, START, END, page_size=page_size)
        for e in page["value"]
    ]


def settled(server: RunningServer) -> list[Any]:
    """The server's request log once no entry arrived for 50 ms (it logs a call after sending the answer)."""
    seen = -1
    while len(server.graph.requests) != seen:
        seen = len(server.graph.requests)
        time.sleep(0.05)
    return list(server.graph.requests)


def audit_calls(server: RunningServer, since: int = 0, expected: int = 0) -> list[Any]:
    """The server's log of /auditLogs calls after ``since``; waits briefly for ``expected`` of them, because the
    server appends a call to its log only after it has sent the answer."""
    deadline = time.monotonic() + 2.0
    while True:
        calls = [r for r in server.graph.requests[since:] if "/auditLogs/" in r.path]
        if len(calls) >= expected or time.monotonic() > deadline:
            return calls
        time.sleep(0.01)


# ------------------------------------------------------------------------------------------------ paging


def test_paged_fetch_returns_every_entry_once_in_time_order(client: GraphClient, zendesk: str) -> None:
    whole = fetch_ids(client, zendesk, page_size=1000)
    before = client.stats.pages
    paged = fetch_ids(client, zendesk, page_size=7)
    assert len(whole) > 100
    assert paged == whole and len(set(paged)) == len(paged)
    assert client.stats.pages - before == -(-len(whole) // 7)

    times = [
        e["activityDateTime"] for p in client.provisioning_pages(zendesk, START, END) for e in p["value"]
    ]
    assert (
        times == sorted(times) and START.isoformat()[:10] <= times[0][:10]
    )  # oldest first, inside the window


def test_time_slices_cover_the_window_on_shared_boundaries() -> None:
    start = datetime(2025, 3, 1, 4, 30, tzinfo=UTC)
    slices = time_slices(start, start + timedelta(days=1), timedelta(hours=6))
    assert slices[0] == (start, datetime(2025, 3, 1, 6, tzinfo=UTC))
    assert slices[-1][1] == start + timedelta(days=1)
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:], strict=False))
    assert [s[0].hour for s in slices[1:]] == [6, 12, 18, 0]
    assert time_slices(start, start) == []
    with pytest.raises(ConfigError, match="time zone"):
        time_slices(datetime(2025, 3, 1), datetime(2025, 3, 2))


def test_sliced_fetch_equals_one_fetch(client: GraphClient, zendesk: str) -> None:
    sliced = [
        e["id"]
        for a, b in time_slices(START, END, timedelta(hours=5))
        for page in client.provisioning_pages(zendesk, a, b, page_size=50)
        for e in page["value"]
    ]
    assert sliced == fetch_ids(client, zendesk, page_size=1000)


# ------------------------------------------------------------------------------------------------ faults


def test_retries_through_faults_give_the_same_entries_as_a_clean_fetch(
    client: GraphClient, tokens: TokenProvider, zendesk: str
) -> None:
    clean = fetch_ids(client, zendesk, page_size=1000)
    # Seed 23 puts every kind of fault in the first 35 calls, with at most 3 in a row (well within max_retries).
    plan = FaultPlan.parse("429=0.1,503=0.05,504=0.05,reset=0.05,truncate=0.05", seed=23)
    faulty = start_server(make_tenant(), throttle=False, client_secret=SECRET, faults=plan)
    try:
        settings = Settings.from_env(faulty.env())
        recorder = Recorder()
        flaky = GraphClient(
            settings,
            sign_in(settings, method="secret", secret=SECRET, cache_path=False),
            pacer=unpaced(),
            sleep=recorder.sleep,
            on_event=recorder.event,
        )
        assert fetch_ids(flaky, zendesk, page_size=5) == clean
        assert set(plan.injected) == {"429", "503", "504", "reset", "truncate"}, plan.injected
        assert flaky.stats.retries == sum(plan.injected.values())
        assert flaky.stats.throttled == plan.injected["429"]
        assert len(recorder.sleeps) == flaky.stats.retries and max(recorder.sleeps) <= 60
        assert recorder.kinds().count("throttle_wait") == plan.injected["429"]
        assert {"request", "page", "retry"} <= set(recorder.kinds())
    finally:
        faulty.stop()


def test_pacer_keeps_audit_calls_under_the_limit_so_the_throttle_is_not_hit(tokens: TokenProvider) -> None:
    # The server's window is shortened to 2 s (same rule, 5 calls per window) so the test takes seconds, not tens.
    throttled = start_server(make_tenant(), throttle=True, client_secret=SECRET)
    throttled.graph.throttle.window = 2.0
    try:
        settings = Settings.from_env(throttled.env())
        provider = sign_in(settings, method="secret", secret=SECRET, cache_path=False)
        sp = GraphClient(settings, provider, pacer=unpaced()).resolve_app("Zendesk").service_principal_id
        recorder = Recorder()
        paced = GraphClient(settings, provider, pacer=AuditPacer(5, 2.0), on_event=recorder.event)
        first = len(throttled.graph.requests)
        pages = list(paced.provisioning_pages(sp, START, END, page_size=12))
        calls = audit_calls(throttled, first, expected=len(pages))
        assert len(pages) == len(calls) > 10
        assert all(r.status == 200 for r in calls) and paced.stats.throttled == 0
        times = [r.time for r in calls]
        assert max(sum(1 for t in times if a <= t < a + 2.0) for a in times) <= 5
        assert "paced" in recorder.kinds() and paced.stats.waited_seconds > 0

        # Without the pacer the same fetch runs into the throttle at once.
        eager = GraphClient(settings, provider, pacer=unpaced(), max_retries=0)
        with pytest.raises(ThrottledError, match="5 requests per 10 seconds") as caught:
            list(eager.provisioning_pages(sp, START, END, page_size=12))
        assert caught.value.status == 429 and caught.value.retry_after and caught.value.retry_after >= 1
    finally:
        throttled.stop()


class FakeTime:
    """A clock that only moves when slept on, and by exactly as much."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_pacer_counts_each_call_when_it_is_sent_like_the_service() -> None:
    fake = FakeTime()
    pacer = AuditPacer(5, 10.0, margin=0.1, clock=fake.clock, sleep=fake.sleep)
    starts: list[float] = []
    for _ in range(12):
        with pacer.slot():
            starts.append(fake.now)
            fake.now += 0.5  # the call takes half a second; the service counted it when it arrived
    assert starts[:5] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert starts[5] == pytest.approx(10.1)  # the first call (sent at 0) left the window, plus the margin
    assert all(later - earlier >= 10.0 for earlier, later in zip(starts, starts[5:], strict=False))
    assert len(starts) == 12 and starts[10] == pytest.approx(20.2)  # 5 calls per 10.1 s, not per 10.5 s


def test_pacer_after_a_429_holds_every_call_until_retry_after_and_widens_its_margin() -> None:
    fake = FakeTime()
    pacer = AuditPacer(5, 10.0, margin=0.1, clock=fake.clock, sleep=fake.sleep)
    with pacer.slot():
        pass
    pacer.throttled(7.0)  # another tool with the same identity used the budget: the service said wait 7 s
    assert pacer.wait_for_slot() == pytest.approx(7.0)
    assert pacer.margin > 0.1 and pacer.throttled_calls == 1


def test_one_pacer_per_caller_identity(
    server: RunningServer, settings: Settings, tokens: TokenProvider
) -> None:
    from provkit.data.pacing import shared_pacer

    first, second = GraphClient(settings, tokens), GraphClient(settings, tokens)
    assert first.pacer is second.pacer is shared_pacer(settings)
    other_app = Settings.from_env({**server.env(), "PROVKIT_CLIENT_ID": server.restricted_client_id})
    assert shared_pacer(other_app) is not first.pacer
    # An injected clock (tests) gets a private pacer on that clock.
    fake = FakeTime()
    assert GraphClient(settings, tokens, clock=fake.clock, sleep=fake.sleep).pacer is not first.pacer


# -------------------------------------------------------------------------------------------- typed errors


def test_missing_audit_log_permission_is_named(server: RunningServer, settings: Settings) -> None:
    restricted = Settings.from_env({**server.env(), "PROVKIT_CLIENT_ID": server.restricted_client_id})
    provider = sign_in(restricted, method="secret", secret=SECRET, cache_path=False)
    client = GraphClient(restricted, provider, pacer=unpaced())
    with pytest.raises(PermissionDeniedError) as caught:
        client.get("/auditLogs/provisioning")
    error = caught.value
    assert isinstance(error, PermissionError) and error.status == 403
    assert error.permission is not None and error.permission.startswith("AuditLog.Read.All")
    assert "AuditLog.Read.All" in str(error) and "admin consent" in str(error)
    assert error.request_id and f"request-id {error.request_id}" in str(error)


def test_tenant_changing_post_needs_allow_writes_and_sends_nothing(
    server: RunningServer, client: GraphClient, zendesk: str
) -> None:
    job = client.list_jobs(zendesk)[0]["id"]
    restart = f"/servicePrincipals/{zendesk}/synchronization/jobs/{job}/restart"
    before = len(settled(server))
    with pytest.raises(ReadOnlyError, match="allow_writes=True") as caught:
        client.post(restart, {"criteria": {"resetScope": "Watermark"}}, changes_tenant=True)
    assert isinstance(caught.value, ConfigError)
    assert len(settled(server)) == before

    # With the flag, and an app that holds Synchronization.ReadWrite.All, the change goes through (on a server of
    # its own, so the shared tenant is not changed under the other tests).
    writable = start_server(make_tenant(), throttle=False, client_secret=SECRET)
    try:
        env = {**writable.env(), "PROVKIT_CLIENT_ID": writable.admin_client_id}
        operator = Settings.from_env(env)
        provider = sign_in(operator, method="secret", secret=SECRET, cache_path=False)
        writer = GraphClient(operator, provider, allow_writes=True)
        assert writer.post(restart, {"criteria": {"resetScope": "Watermark"}}, changes_tenant=True) is None
        assert [(r.method, r.status) for r in settled(writable) if r.path.endswith("/restart")] == [
            ("POST", 204)
        ]
    finally:
        writable.stop()

    # A call that changes nothing is not gated here; the reader app lacks the write permission it needs, though.
    with pytest.raises(PermissionDeniedError, match="Synchronization.ReadWrite.All"):
        client.post(
            f"/servicePrincipals/{zendesk}/synchronization/jobs/{job}/validateCredentials",
            {"useSavedCredentials": True},
            changes_tenant=False,
        )


def test_not_found_explains_object_id_versus_app_id(client: GraphClient) -> None:
    stranger = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(NotFoundError) as caught:
        client.list_jobs(stranger)
    assert isinstance(caught.value, LookupError) and caught.value.status == 404
    assert "object id" in str(caught.value) and "appId" in str(caught.value)
    with pytest.raises(NotFoundError, match="object id or appId"):
        client.resolve_app(stranger)


def test_china_is_refused_before_any_request(
    server: RunningServer, tokens: TokenProvider, zendesk: str
) -> None:
    china = Settings.from_env({**server.env(), "PROVKIT_CLOUD": "china"})
    assert china.cloud is CLOUDS["china"]
    before = len(settled(server))
    with pytest.raises(CloudNotSupportedError, match="china"):
        GraphClient(china, tokens).provisioning_pages(zendesk, START, END)
    assert len(settled(server)) == before


# -------------------------------------------------------------------------------------------- resolution


def test_app_resolves_by_name_prefix_app_id_and_object_id(client: GraphClient) -> None:
    by_name = client.resolve_app("Zendesk")
    assert by_name.matched_by == "display name" and by_name.display_name == "Zendesk"
    assert by_name.describe() == (
        f"Resolved 'Zendesk' by display name to service principal {by_name.service_principal_id} "
        f"(appId {by_name.app_id})"
    )
    assert by_name.service_principal_id != by_name.app_id
    by_app_id = client.resolve_app(by_name.app_id)
    by_object_id = client.resolve_app(by_name.service_principal_id)
    assert (by_app_id.matched_by, by_object_id.matched_by) == ("appId", "object id")
    assert by_app_id.service_principal_id == by_object_id.service_principal_id == by_name.service_principal_id
    prefix = client.resolve_app("Sales")
    assert (prefix.display_name, prefix.matched_by) == ("Salesforce", "display name prefix")
    with pytest.raises(NotFoundError, match="No service principal is named 'Nonexistent App'"):
        client.resolve_app("Nonexistent App")
    with pytest.raises(NotFoundError):
        client.resolve_app(
            "O'Brien's app"
        )  # the quote is escaped, so Graph answers rather than failing to parse


def test_ambiguous_name_lists_every_candidate(client: GraphClient) -> None:
    with pytest.raises(AmbiguousAppError) as caught:
        client.resolve_app("Slack")
    candidates = caught.value.candidates
    assert len(candidates) == 2 and isinstance(caught.value, ConfigError)
    assert len({c["service_principal_id"] for c in candidates}) == 2
    for candidate in candidates:
        assert candidate["display_name"] == "Slack" and candidate["has_provisioning_job"] is False
        assert str(candidate["service_principal_id"]) in str(caught.value)
        assert str(candidate["app_id"]) in str(caught.value)


def test_directory_reads_return_what_the_tenant_holds(client: GraphClient, zendesk: str) -> None:
    job = client.get_job(zendesk, client.list_jobs(zendesk)[0]["id"])
    assert job["status"]["code"] and client.get_schema(zendesk, job["id"])["directories"]
    assignments = client.app_role_assignments(zendesk)
    group = next(a for a in assignments if a["principalType"] == "Group")
    direct, nested = (
        client.group_members(group["principalId"]),
        client.group_members(group["principalId"], True),
    )
    assert len(nested) >= len(direct) > 0
    user = next(m for m in nested if m["@odata.type"] == "#microsoft.graph.user")
    assert client.get_user(user["userPrincipalName"])["id"] == user["id"]
    assert group["principalId"] in {g["id"] for g in client.user_member_of(user["id"], transitive=True)}
    audits = client.directory_audits(START, END, zendesk)
    assert audits and all(any(t["id"] == zendesk for t in a["targetResources"]) for a in audits)
    assert len(client.directory_audits(START, END)) >= len(audits)


def test_permission_names_per_path() -> None:
    assert permission_for("/servicePrincipals/x/synchronization/jobs") == "Synchronization.Read.All"
    assert permission_for("/servicePrincipals/x/synchronization/jobs/j/restart", "POST").endswith(
        "ReadWrite.All"
    )
    assert permission_for("/servicePrincipals/x") == "Application.Read.All"
    assert permission_for("/groups/g/members") == permission_for("/users/u") == "Directory.Read.All"


# ----------------------------------------------------------------------------------------------- logging


def test_debug_logs_name_calls_but_never_the_token(
    client: GraphClient, tokens: TokenProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "urllib3.connectionpool", "provkit", "msal"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    client.get("/servicePrincipals", {"$filter": "displayName eq 'Zendesk'"})
    text = caplog.text
    assert "GET https://" in text and "request-id" in text and "%24filter=displayName" in text
    assert "urllib3" in {r.name.split(".")[0] for r in caplog.records}
    assert tokens.token() not in text and "Bearer" not in text and "Authorization" not in text
    assert SECRET not in text


# ------------------------------------------------------------------------- scripted transport (edge cases)


Reply = tuple[int, dict[str, str], Any]  # status, headers, JSON body or raw bytes or an exception to raise


class Scripted(BaseAdapter):
    """A transport that answers from a script and records what was sent."""

    def __init__(self, replies: list[Reply] | Callable[[requests.PreparedRequest], Reply]) -> None:
        super().__init__()
        self.replies = replies
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        status, headers, body = self.replies(request) if callable(self.replies) else self.replies.pop(0)
        if isinstance(body, Exception):
            raise body
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict({"request-id": f"req-{len(self.sent)}", **headers})
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


GRAPH = "https://graph.test"


def scripted_client(
    tokens: TokenProvider, replies: Any, recorder: Recorder, **kwargs: Any
) -> tuple[GraphClient, Scripted]:
    adapter = Scripted(replies)
    session = requests.Session()
    session.mount(GRAPH, adapter)
    settings = Settings(tenant_id="contoso.onmicrosoft.com", graph_url=GRAPH)
    kwargs.setdefault("pacer", unpaced())
    client = GraphClient(
        settings, tokens, session=session, sleep=recorder.sleep, on_event=recorder.event, **kwargs
    )
    return client, adapter


def test_empty_page_with_a_next_link_is_followed(tokens: TokenProvider) -> None:
    replies: list[Reply] = [
        (200, {}, {"value": [{"id": "a"}], "@odata.nextLink": f"{GRAPH}/v1.0/things?$skiptoken=1"}),
        (200, {}, {"value": [], "@odata.nextLink": f"{GRAPH}/v1.0/things?$skiptoken=2"}),
        (200, {}, {"value": [{"id": "b"}, {"id": "c"}]}),
    ]
    client, adapter = scripted_client(tokens, replies, Recorder())
    assert [i["id"] for i in client.items("/things", {"$top": "2"})] == ["a", "b", "c"]
    assert adapter.sent[1].url == f"{GRAPH}/v1.0/things?$skiptoken=1"  # followed verbatim, no params re-added


def test_next_link_to_another_host_is_refused(tokens: TokenProvider) -> None:
    replies: list[Reply] = [(200, {}, {"value": [], "@odata.nextLink": "https://evil.test/v1.0/things?x=1"})]
    client, adapter = scripted_client(tokens, replies, Recorder())
    with pytest.raises(ConfigError, match="Refusing to send the Graph token to 'evil.test'"):
        list(client.pages("/things"))
    assert len(adapter.sent) == 1


def test_retry_after_seconds_and_dates_are_honoured(tokens: TokenProvider) -> None:
    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    replies: list[Reply] = [
        (429, {"Retry-After": "7"}, {"error": {"code": "TooManyRequests", "message": "slow down"}}),
        (429, {"Retry-After": later}, {"error": {"code": "TooManyRequests", "message": "slow down"}}),
        (200, {}, {"ok": True}),
    ]
    recorder = Recorder()
    client, _ = scripted_client(tokens, replies, recorder)
    assert client.get("/x") == {"ok": True}
    assert recorder.sleeps[0] == 7.0 and 20 < recorder.sleeps[1] <= 30
    assert [d["seconds"] for k, d in recorder.events if k == "throttle_wait"] == recorder.sleeps
    assert client.stats.throttled == 2 and client.stats.retries == 2


def test_a_wait_beyond_the_budget_gives_up_at_once(tokens: TokenProvider) -> None:
    replies: list[Reply] = [
        (429, {"Retry-After": "900"}, {"error": {"code": "TooManyRequests", "message": "no"}})
    ]
    recorder = Recorder()
    client, _ = scripted_client(tokens, replies, recorder, retry_budget_seconds=300)
    with pytest.raises(ThrottledError) as caught:
        client.get("/auditLogs/provisioning")
    assert recorder.sleeps == [] and caught.value.retry_after == 900
    assert "throttling-limits" in str(caught.value)


def test_persistent_503_backs_off_with_full_jitter_then_gives_up(tokens: TokenProvider) -> None:
    recorder = Recorder()
    unavailable: Reply = (503, {}, {"error": {"code": "ServiceUnavailable", "message": "busy"}})
    client, adapter = scripted_client(tokens, lambda request: unavailable, recorder, max_retries=5)
    with pytest.raises(GraphUnavailableError, match="HTTP 503") as caught:
        client.get("/servicePrincipals")
    assert len(adapter.sent) == 6 and len(recorder.sleeps) == 5
    assert all(0 <= s <= min(60.0, 2.0**k) for k, s in enumerate(recorder.sleeps))
    assert caught.value.status == 503 and "Run again later" in str(caught.value)


def test_truncated_body_and_dropped_connection_are_retried_for_reads_only(tokens: TokenProvider) -> None:
    replies: list[Reply] = [
        (200, {}, b'{"value": [{"id": "a"'),
        (200, {}, requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")),
        (200, {}, {"value": [{"id": "a"}]}),
    ]
    client, adapter = scripted_client(tokens, replies, Recorder())
    assert client.get("/things") == {"value": [{"id": "a"}]} and len(adapter.sent) == 3

    dropped: list[Reply] = [(0, {}, requests.ConnectionError("reset by peer"))]
    writer, adapter = scripted_client(tokens, dropped, Recorder(), allow_writes=True)
    with pytest.raises(GraphUnavailableError, match="may or may not have been made"):
        writer.post("/servicePrincipals/x/synchronization/jobs/j/restart", {}, changes_tenant=True)
    assert len(adapter.sent) == 1


def test_a_refused_token_is_renewed_once(tokens: TokenProvider) -> None:
    expired: Reply = (401, {}, {"error": {"code": "InvalidAuthenticationToken", "message": "expired"}})
    client, adapter = scripted_client(tokens, [expired, (200, {}, {"ok": 1})], Recorder())
    before = tokens.acquisitions
    assert client.get("/x") == {"ok": 1}
    first, second = (r.headers["Authorization"] for r in adapter.sent)
    assert first != second and tokens.acquisitions == before + 1

    client, adapter = scripted_client(tokens, lambda request: expired, Recorder())
    with pytest.raises(GraphError, match="refused the access token twice") as caught:
        client.get("/x")
    assert caught.value.status == 401 and len(adapter.sent) == 2


def test_the_pacer_says_how_long_more_calls_need_in_rounds_of_five() -> None:
    fake = FakeTime()
    pacer = AuditPacer(5, 10.0, margin=0.0, clock=fake.clock, sleep=fake.sleep)
    assert pacer.seconds_for(5) == 0  # an idle budget: five go at once
    assert pacer.seconds_for(6) == pytest.approx(10.0) and pacer.seconds_for(23) == pytest.approx(40.0)
    for _ in range(5):
        pacer.wait_for_slot()
    fake.now = 4.0
    estimate = pacer.seconds_for(6)
    assert estimate == pytest.approx(16.0)  # the window frees 6 s from now; five then, the sixth 10 s later
    for _ in range(6):
        pacer.wait_for_slot()
    assert fake.now - 4.0 == pytest.approx(estimate)  # and that is how long the pacer made them wait
