"""Fidelity of the simulated Graph server, as a Graph client sees it.

Sign-in goes through real msal; Graph calls go through plain ``requests``, so these tests check the server and not
provkit's own client. Expected log entries are enumerated straight from the tenant model and filtered with plain
Python predicates written here, independently of the server's OData engine and of its paging.
"""

from __future__ import annotations

import base64
import json
import operator
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msal
import pytest
import requests

from provkit.sim import ids
from provkit.sim.entries import render_entry
from provkit.sim.faults import KINDS, FaultPlan
from provkit.sim.server import MAX_TOP, RunningServer, Throttle, start_server
from provkit.sim.tenant import App, Tenant

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
SCENARIOS = ("healthy", "skipped-users", "bad-credentials")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
GRAPH_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
GRAPH_INSTANT = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?Z")
FAULT_SPEC = "429=0.15,503=0.1,504=0.1,reset=0.05,slow=0.05,truncate=0.05"

Entry = dict[str, Any]


def small_tenant(seed: int = 5) -> Tenant:
    return Tenant(seed=seed, users_count=400, days=3, now=NOW, scenarios=SCENARIOS)


def pinned_session(ca_path: Path) -> requests.Session:
    """A session that trusts only the simulator's CA (REQUESTS_CA_BUNDLE would otherwise override verify)."""
    session = requests.Session()
    session.verify = str(ca_path)
    session.trust_env = False
    return session


def sign_in(server: RunningServer, session: requests.Session, client_id: str, credential: Any) -> str:
    """An app-only access token from the simulator's authority, obtained by msal."""
    app = msal.ConfidentialClientApplication(
        client_id,
        authority=f"{server.base_url}/{server.tenant.tenant_id}",
        client_credential=credential,
        instance_discovery=False,
        http_client=session,
    )
    result = app.acquire_token_for_client(scopes=[f"{server.base_url}/.default"])
    assert "access_token" in result, result.get("error_description")
    return result["access_token"]


@dataclass
class Live:
    """A running simulator, a pinned session and the reader registration's token."""

    server: RunningServer
    session: requests.Session
    token: str

    @property
    def tenant(self) -> Tenant:
        return self.server.tenant

    def url(self, path: str) -> str:
        return f"{self.server.base_url}/v1.0{path}"

    def get(
        self,
        path: str,
        params: dict[str, str] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        url = path if path.startswith("https://") else self.url(path)
        sent = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        return self.session.get(url, params=params, headers=sent, timeout=30)

    def post(self, path: str, body: dict | None = None, *, token: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return self.session.post(self.url(path), json=body, headers=headers, timeout=30)

    def advance(self, minutes: float) -> None:
        response = self.session.post(f"{self.server.base_url}/_sim/advance", params={"minutes": str(minutes)})
        assert response.status_code == 200

    def stop(self) -> None:
        self.session.close()
        self.server.stop()


def serve(tenant: Tenant, state_dir: Path, **options: Any) -> Live:
    """Start a simulator whose TLS and client certificates live in ``state_dir``, signed in as the reader."""
    server = start_server(tenant, port=0, state_dir=state_dir, **options)
    session = pinned_session(server.ca_path)
    return Live(server, session, sign_in(server, session, server.client_id, server.client_secret))


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """msal and requests must never leave the machine: refuse any connection that is not to loopback."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise OSError(f"test forbids connecting to {address[0]}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    running = serve(small_tenant(), tmp_path_factory.mktemp("live"), throttle=False)
    yield running
    running.stop()


# ------------------------------------------------------------------------------------ independent evaluation


def ticks_of(text: str) -> int:
    """100-ns ticks since the epoch of a Graph instant (``...:SS.fffffffZ``), parsed without provkit."""
    m = GRAPH_INSTANT.fullmatch(text)
    assert m is not None, f"not a Graph UTC instant: {text!r}"
    whole = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(whole.timestamp()) * 10_000_000 + int((m.group(2) or "").ljust(7, "0"))


def visible_entries(tenant: Tenant) -> list[Entry]:
    """Every entry inside the retention window, straight from the tenant model."""
    out = []
    for app in tenant.apps:
        for cycle in app.timeline().cycles:
            for i in range(cycle.entries):
                entry = render_entry(app, cycle, i)
                if tenant.window_start <= ticks_of(entry["activityDateTime"]) <= tenant.now_ticks:
                    out.append(entry)
    return out


@pytest.fixture(scope="module")
def all_entries(live: Live) -> list[Entry]:
    return visible_entries(live.tenant)


def app_named(tenant: Tenant, scenario: str) -> App:
    return next(a for a in tenant.apps if a.scenario.name == scenario)


@dataclass(frozen=True)
class Case:
    filter: str | None
    predicate: Callable[[Entry], bool]
    edges: tuple[str, str] | None = None  # the (lower, upper) instants of a time window


@pytest.fixture(scope="module")
def cases(live: Live, all_entries: list[Entry]) -> dict[str, Case]:
    tenant = live.tenant
    zendesk = app_named(tenant, "skipped-users")
    salesforce = app_named(tenant, "healthy")
    scim = app_named(tenant, "bad-credentials")
    by_time = sorted(all_entries, key=lambda e: ticks_of(e["activityDateTime"]))
    # Window edges are exact entry times (seven digits), so ge keeps one edge entry and lt drops the other.
    lower = by_time[len(by_time) // 4]["activityDateTime"]
    upper = by_time[(len(by_time) * 3) // 5]["activityDateTime"]
    lo, hi = ticks_of(lower), ticks_of(upper)
    cycle_sizes = Counter(e["cycleId"] for e in all_entries)
    busy_cycle = cycle_sizes.most_common(1)[0][0]

    def sp(e: Entry) -> str:
        return e["servicePrincipal"]["id"]

    def at(e: Entry) -> int:
        return ticks_of(e["activityDateTime"])

    return {
        "all": Case(None, lambda e: True),
        "one app": Case(f"servicePrincipal/id eq '{zendesk.sp_id}'", lambda e: sp(e) == zendesk.sp_id),
        "time window": Case(
            f"activityDateTime ge {lower} and activityDateTime lt {upper}",
            lambda e: lo <= at(e) < hi,
            (lower, upper),
        ),
        "failures": Case(
            "provisioningStatusInfo/status eq 'failure'",
            lambda e: e["provisioningStatusInfo"]["status"] == "failure",
        ),
        "job": Case(f"jobId eq '{scim.job_id}'", lambda e: e["jobId"] == scim.job_id),
        "cycle": Case(f"cycleId eq '{busy_cycle}'", lambda e: e["cycleId"] == busy_cycle),
        "two apps": Case(
            f"servicePrincipal/id eq '{salesforce.sp_id}' or servicePrincipal/id eq '{scim.sp_id}'",
            lambda e: sp(e) in (salesforce.sp_id, scim.sp_id),
        ),
        "name contains": Case(
            "contains(tolower(sourceIdentity/displayName), 'an')",
            lambda e: "an" in e["sourceIdentity"]["displayName"].lower(),
        ),
        "app since": Case(
            f"servicePrincipal/id eq '{zendesk.sp_id}' and activityDateTime ge {lower}",
            lambda e: sp(e) == zendesk.sp_id and at(e) >= lo,
        ),
    }


def crawl(live: Live, params: dict[str, str], *, limit: int = 2000) -> list[list[Entry]]:
    """Pages of /auditLogs/provisioning, following @odata.nextLink verbatim until it is absent."""
    response = live.get("/auditLogs/provisioning", params)
    pages = []
    for _ in range(limit):
        assert response.status_code == 200, response.text[:500]
        body = response.json()
        pages.append(body["value"])
        link = body.get("@odata.nextLink")
        if link is None:
            return pages
        query = parse_qs(urlsplit(link).query)
        assert link.startswith(live.url("/auditLogs/provisioning?"))
        assert {k: v for k, v in query.items() if k != "$skiptoken"} == {k: [v] for k, v in params.items()}
        response = live.get(link)
    raise AssertionError(f"more than {limit} pages")


# ------------------------------------------------------------------------------------------------ 1. paging


@pytest.mark.parametrize("top", [7, 50, 333, 1000])
@pytest.mark.parametrize(
    "name",
    ["all", "one app", "time window", "failures", "job", "cycle", "two apps", "name contains", "app since"],
)
def test_following_next_links_returns_every_matching_entry_once_in_order(
    live: Live, all_entries: list[Entry], cases: dict[str, Case], name: str, top: int
) -> None:
    case = cases[name]
    expected = {e["id"]: e for e in all_entries if case.predicate(e)}
    assert 0 < len(expected) <= len(all_entries)
    if name != "all":
        assert len(expected) < len(all_entries), "the filter must leave some entries out to prove anything"
    for order in (None, "activityDateTime asc", "activityDateTime desc"):
        params = {"$top": str(top)}
        if case.filter:
            params["$filter"] = case.filter
        if order:
            params["$orderby"] = order
        pages = crawl(live, params)
        assert all(len(page) <= top for page in pages)
        got = [e for page in pages for e in page]
        ids_seen = [e["id"] for e in got]
        assert len(ids_seen) == len(set(ids_seen)), f"{name}, {order}: an entry came back twice"
        assert set(ids_seen) == set(expected), f"{name}, {order}: not the independently evaluated set"
        assert {e["id"]: e for e in got} == expected  # and every entry whole, as the model renders it
        times = [ticks_of(e["activityDateTime"]) for e in got]
        ascending = order == "activityDateTime asc"
        assert times == sorted(times, reverse=not ascending), f"{name}: not in {order or 'the default'} order"


def test_window_edges_are_kept_by_ge_le_eq_and_dropped_by_gt_lt(
    live: Live, all_entries: list[Entry], cases: dict[str, Case]
) -> None:
    case = cases["time window"]
    assert case.filter is not None and case.edges is not None
    lower, upper = case.edges
    got = {
        e["activityDateTime"] for page in crawl(live, {"$top": "1000", "$filter": case.filter}) for e in page
    }
    assert lower in got and upper not in got
    comparisons = {
        "ge": operator.ge,
        "gt": operator.gt,
        "le": operator.le,
        "lt": operator.lt,
        "eq": operator.eq,
    }
    for edge in (lower, upper):
        for op, holds in comparisons.items():
            text = f"activityDateTime {op} {edge}"
            pages = crawl(live, {"$top": "1000", "$filter": text})
            expected = {
                e["id"] for e in all_entries if holds(ticks_of(e["activityDateTime"]), ticks_of(edge))
            }
            assert {e["id"] for page in pages for e in page} == expected, text


# ------------------------------------------------------------------------------ 2. look-ups and bad requests


def assert_graph_error(
    response: requests.Response, status: int, code: str, *, sent_id: str | None = None
) -> dict:
    """Graph's error body: code, message, innerError with request-id, client-request-id and date."""
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    inner = error["innerError"]
    assert inner["request-id"] == response.headers["request-id"]
    uuid.UUID(inner["request-id"])
    assert inner["client-request-id"] == response.headers["client-request-id"]
    if sent_id is not None:
        assert inner["client-request-id"] == sent_id
    assert GRAPH_DATE.fullmatch(inner["date"]), inner["date"]
    return error


def test_id_and_change_id_find_the_single_entry(live: Live, all_entries: list[Entry]) -> None:
    wanted = all_entries[len(all_entries) // 2]
    for prop in ("id", "changeId"):
        body = live.get("/auditLogs/provisioning", {"$filter": f"{prop} eq '{wanted[prop]}'"}).json()
        assert body["value"] == [wanted]
        assert "@odata.nextLink" not in body
    both = f"id eq '{wanted['id']}' or id eq '{all_entries[0]['id']}'"
    assert {e["id"] for e in live.get("/auditLogs/provisioning", {"$filter": both}).json()["value"]} == {
        wanted["id"],
        all_entries[0]["id"],
    }


@pytest.mark.parametrize(
    "unknown",
    [
        str(uuid.UUID(int=0x1234)),  # a GUID this tenant never issued
        "user",  # the id of a user: issued by the tenant, but not an entry
        "beyond",  # the coordinates of an entry past the end of its cycle
    ],
)
def test_an_unknown_id_gives_an_empty_page(live: Live, unknown: str) -> None:
    tenant = live.tenant
    if unknown == "user":
        unknown = tenant.users.get(3).id
    elif unknown == "beyond":
        cycle = tenant.apps[0].timeline().cycles[0]
        unknown = tenant.codec.encode(ids.ENTRY, 0, cycle.no, cycle.entries + 5)
    response = live.get("/auditLogs/provisioning", {"$filter": f"id eq '{unknown}'"})
    assert response.status_code == 200
    assert response.json()["value"] == [] and "@odata.nextLink" not in response.json()


def skiptoken_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["$skiptoken"][0]


def test_foreign_and_tampered_skiptokens_are_refused_with_graphs_error_body(
    live: Live, tmp_path: Path
) -> None:
    first = live.get("/auditLogs/provisioning", {"$top": "7"}).json()["@odata.nextLink"]
    token = skiptoken_of(first)
    audits = live.get("/auditLogs/directoryAudits", {"$top": "1"}).json()["@odata.nextLink"]
    other = serve(small_tenant(), tmp_path, throttle=False)  # the same tenant behind another server
    try:
        elsewhere = skiptoken_of(
            other.get("/auditLogs/provisioning", {"$top": "7"}).json()["@odata.nextLink"]
        )
    finally:
        other.stop()
    payload = token.split(".")[0]
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded["k"][0] -= 10_000_000  # one second earlier: a forged resume point
    forged = base64.urlsafe_b64encode(json.dumps(decoded).encode()).decode().rstrip("=")
    refused = {
        "another query's token": ({"$top": "7", "$filter": "provisioningAction eq 'create'"}, token),
        "another order's token": ({"$top": "7", "$orderby": "activityDateTime asc"}, token),
        "directoryAudits' token": ({"$top": "7"}, skiptoken_of(audits)),
        "another server's token": ({"$top": "7"}, elsewhere),
        "a cut token": ({"$top": "7"}, token[:-4]),
        "a forged resume point": ({"$top": "7"}, forged + token[len(payload) :]),
        "a flipped character": ({"$top": "7"}, token[:5] + ("A" if token[5] != "A" else "B") + token[6:]),
        "garbage": ({"$top": "7"}, "not-a-token"),
    }
    for what, (params, bad) in refused.items():
        sent_id = str(uuid.uuid4())
        response = live.get(
            "/auditLogs/provisioning", {**params, "$skiptoken": bad}, headers={"client-request-id": sent_id}
        )
        error = assert_graph_error(response, 400, "BadRequest", sent_id=sent_id)
        assert "$skiptoken" in error["message"], what
    # a provisioning token does not page directoryAudits either
    assert_graph_error(
        live.get("/auditLogs/directoryAudits", {"$top": "1", "$skiptoken": token}), 400, "BadRequest"
    )
    assert live.get(first).status_code == 200  # the genuine link still works


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"$count": "true"}, "$count"),
        ({"$filter": "nosuchProperty eq 'x'"}, "nosuchProperty"),
        ({"$filter": "jobId eq"}, "position"),
        ({"$filter": "activityDateTime ge '2026-11-19'"}, "activityDateTime"),
        ({"$filter": "jobId eq 'a' and"}, "position"),
        ({"$orderby": "jobId desc"}, "jobId"),
        ({"$top": "0"}, "$top"),
        ({"$top": "-3"}, "$top"),
        ({"$top": "many"}, "$top"),
    ],
)
def test_bad_query_options_get_400_naming_the_problem(live: Live, params: dict[str, str], named: str) -> None:
    sent_id = str(uuid.uuid4())
    response = live.get("/auditLogs/provisioning", params, headers={"client-request-id": sent_id})
    error = assert_graph_error(response, 400, "BadRequest", sent_id=sent_id)
    assert named in error["message"]


def test_top_is_capped_at_1000(tmp_path: Path) -> None:
    """Graph documents no maximum page size for provisioning logs (reference 1.5); public scripts use up to 1000,
    and the simulator serves at most MAX_TOP = 1000 entries a page, with a nextLink for the rest."""
    assert MAX_TOP == 1000
    wide = serve(
        Tenant(seed=5, users_count=6000, days=1, now=NOW, scenarios=("healthy",)), tmp_path, throttle=False
    )
    try:
        pages = crawl(wide, {"$top": "5000"})
    finally:
        wide.stop()
    assert len(pages[0]) == MAX_TOP and len(pages) >= 2
    assert all(len(p) <= MAX_TOP for p in pages)


# ------------------------------------------------------------------------------------------------ 3. throttle


@pytest.mark.slow
def test_reporting_calls_are_throttled_at_five_per_ten_seconds_and_throttled_calls_count(
    tmp_path: Path,
) -> None:
    throttled = serve(small_tenant(), tmp_path, throttle=True)
    try:
        admin = sign_in(
            throttled.server,
            throttled.session,
            throttled.server.admin_client_id,
            throttled.server.client_secret,
        )
        logs = {"$top": "1"}
        burst = [throttled.get("/auditLogs/provisioning", logs) for _ in range(8)]
        burst_end = time.monotonic()
        assert [r.status_code for r in burst] == [200] * 5 + [429] * 3
        for response in burst[5:]:
            assert 1 <= int(response.headers["Retry-After"]) <= 10
            assert (
                "5 requests per 10 seconds" in assert_graph_error(response, 429, "TooManyRequests")["message"]
            )
        # the limit is per app and tenant, and only for the reporting APIs
        assert throttled.get("/auditLogs/provisioning", logs, token=admin).status_code == 200
        assert [throttled.get("/servicePrincipals").status_code for _ in range(8)] == [200] * 8

        time.sleep(max(0.0, burst_end + 1.5 - time.monotonic()))
        assert [throttled.get("/auditLogs/provisioning", logs).status_code for _ in range(5)] == [429] * 5
        # The burst has left the window; only the five refused calls are in it, and they count.
        time.sleep(max(0.0, burst_end + 10.05 - time.monotonic()))
        still = throttled.get("/auditLogs/provisioning", logs)
        assert still.status_code == 429
        time.sleep(int(still.headers["Retry-After"]))
        assert throttled.get("/auditLogs/provisioning", logs).status_code == 200
    finally:
        throttled.stop()


def test_retry_after_is_long_enough_when_calls_are_spread_over_the_window() -> None:
    """Waiting exactly the advertised time lets the next call through, also when the calls in the window are
    spread out (the refused call itself counts, so the wait runs to the expiry of the limit-th newest call)."""
    throttle = Throttle(limit=5, window=1.0)
    for _ in range(5):
        assert throttle.check("reader") is None
        time.sleep(0.1)
    wait = throttle.check("reader")
    assert wait is not None and wait > 0
    time.sleep(wait)
    assert throttle.check("reader") is None


# -------------------------------------------------------------------------------------------------- 4. faults


@pytest.mark.reliability
def test_injected_faults_look_like_graphs_failures_and_follow_the_seed(tmp_path: Path) -> None:
    plan = FaultPlan.parse(FAULT_SPEC, seed=3, slow_seconds=0.2)
    tenant = small_tenant()
    total = len(visible_entries(tenant))
    faulty = serve(tenant, tmp_path, throttle=False, faults=plan)
    seen: Counter[str] = Counter()
    sent_at: dict[str, float] = {}
    try:
        for n in range(120):
            path = f"/v1.0/auditLogs/provisioning?$top={n + 1}"  # a distinct path per request, to find it in the log
            sent_at[path] = time.time()
            try:
                response = faulty.session.get(
                    faulty.server.base_url + path,
                    headers={"Authorization": f"Bearer {faulty.token}"},
                    timeout=30,
                )
            except requests.ConnectionError:
                seen["reset"] += 1
                continue
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert_graph_error(response, 429, "TooManyRequests")
                seen["429"] += 1
            elif response.status_code in (503, 504):
                code = "ServiceUnavailable" if response.status_code == 503 else "GatewayTimeout"
                assert_graph_error(response, response.status_code, code)
                seen[str(response.status_code)] += 1
            else:
                assert response.status_code == 200
                try:
                    assert len(response.json()["value"]) == min(n + 1, total)
                except ValueError:
                    assert response.text.startswith('{"@odata.context"')
                    seen["truncate"] += 1
        log = faulty.session.get(faulty.server.base_url + "/_sim/requests").json()["value"]
    finally:
        faulty.stop()
    faults = {r["path"]: r["fault"] for r in log if r["path"].startswith("/v1.0/")}  # sign-in draws no fault
    assert set(faults) == set(sent_at)
    slow = [r for r in log if r["fault"] == "slow"]
    assert slow and all(r["status"] == 200 for r in slow)
    for record in slow:  # by the server's own log, answered at least slow_seconds after it arrived
        assert record["answered"] - record["time"] >= 0.2
    seen["slow"] = len(slow)
    assert set(seen) == set(KINDS), f"not every kind of fault was seen: {dict(seen)}"
    assert dict(seen) == plan.injected
    # The same seed and request order give the same faults: a fresh plan replays the server's sequence.
    in_order = [faults[f"/v1.0/auditLogs/provisioning?$top={n + 1}"] for n in range(120)]
    replay = FaultPlan.parse(FAULT_SPEC, seed=3)
    assert [replay.next() for _ in range(120)] == in_order
    again = FaultPlan.parse(FAULT_SPEC, seed=3)
    other_seed = FaultPlan.parse(FAULT_SPEC, seed=4)
    assert [again.next() for _ in range(120)] == in_order != [other_seed.next() for _ in range(120)]


# ---------------------------------------------------------------------------------------------------- 5. auth


def test_certificate_sign_in_gives_a_token_graph_accepts(live: Live) -> None:
    pem = live.server.cert_path.read_bytes().split(b"-----BEGIN CERTIFICATE-----")[0].decode()
    credential = {"private_key": pem, "thumbprint": live.server.cert_thumbprint}
    token = sign_in(live.server, pinned_session(live.server.ca_path), live.server.client_id, credential)
    assert live.get("/servicePrincipals", token=token).status_code == 200


def test_missing_garbage_foreign_and_expired_tokens_get_401(tmp_path: Path) -> None:
    first = serve(small_tenant(), tmp_path / "first", throttle=False, token_lifetime=1)
    second = serve(small_tenant(), tmp_path / "second", throttle=False)
    try:
        url = first.url("/auditLogs/provisioning")
        bare = first.session.get(url)
        assert_graph_error(bare, 401, "InvalidAuthenticationToken")
        assert bare.headers["WWW-Authenticate"].startswith("Bearer")
        for header in ("Bearer garbage", "Bearer a.b.c", "Basic dXNlcjpwYXNz", f"Bearer {second.token}"):
            response = first.session.get(url, headers={"Authorization": header})
            error = assert_graph_error(response, 401, "InvalidAuthenticationToken")
            assert "garbage" not in error["message"] and second.token not in error["message"]
        time.sleep(2)  # the token lived one second
        error = assert_graph_error(first.get("/auditLogs/provisioning"), 401, "InvalidAuthenticationToken")
        assert "expired" in error["message"]
    finally:
        first.stop()
        second.stop()


def test_a_registration_without_auditlog_read_all_is_denied_logs_but_reads_the_directory(live: Live) -> None:
    server = live.server
    restricted = sign_in(server, live.session, server.restricted_client_id, server.client_secret)
    for path in ("/auditLogs/provisioning", "/auditLogs/directoryAudits"):
        error = assert_graph_error(
            live.get(path, token=restricted), 403, "Authentication_MSGraphPermissionMissing"
        )
        assert "AuditLog.Read.All" in error["message"]
    assert live.get("/servicePrincipals", token=restricted).status_code == 200


# ----------------------------------------------------------------------------------------------- 6. directory


def test_service_principals_by_filter_key_and_id(live: Live) -> None:
    zendesk = app_named(live.tenant, "skipped-users")
    all_sps = live.get("/servicePrincipals").json()["value"]
    assert {sp["displayName"] for sp in all_sps} >= {a.display_name for a in live.tenant.apps}
    by_name = live.get("/servicePrincipals", {"$filter": "displayName eq 'Zendesk'"}).json()["value"]
    assert [(sp["id"], sp["appId"]) for sp in by_name] == [(zendesk.sp_id, zendesk.app_id)]
    by_app_id = live.get("/servicePrincipals", {"$filter": f"appId eq '{zendesk.app_id}'"}).json()["value"]
    assert by_app_id == by_name
    starting = live.get("/servicePrincipals", {"$filter": "startswith(displayName, 'S')"}).json()["value"]
    assert {sp["id"] for sp in starting} == {sp["id"] for sp in all_sps if sp["displayName"].startswith("S")}
    assert len(starting) >= 2
    assert live.get(f"/servicePrincipals(appId='{zendesk.app_id}')").json() == by_name[0]
    assert live.get(f"/servicePrincipals/{zendesk.sp_id}").json() == by_name[0]
    missing = str(uuid.UUID(int=42))
    for path in (f"/servicePrincipals/{missing}", f"/servicePrincipals(appId='{missing}')"):
        error = assert_graph_error(live.get(path), 404, "Request_ResourceNotFound")
        assert missing in error["message"]


def test_jobs_and_schema(live: Live) -> None:
    tenant = live.tenant
    codes = {}
    for app in tenant.apps:
        base = f"/servicePrincipals/{app.sp_id}/synchronization/jobs"
        jobs = live.get(base).json()["value"]
        assert [j["id"] for j in jobs] == [app.job_id]
        job = live.get(f"{base}/{app.job_id}").json()
        assert job == jobs[0]
        codes[app.scenario.name] = job["status"]["code"]
        schema = live.get(f"{base}/{app.job_id}/schema").json()
        mappings = [m for rule in schema["synchronizationRules"] for m in rule["objectMappings"]]
        matching = [a for m in mappings for a in m["attributeMappings"] if a["matchingPriority"] > 0]
        assert matching, f"{app.display_name}: no matching attribute"
        if app.display_name == "Zendesk":
            users = next(m for m in mappings if m["sourceObjectName"] == "User")
            assert users["scope"]["groups"] and all(g["clauses"] for g in users["scope"]["groups"])
    assert codes == {"healthy": "Active", "skipped-users": "Active", "bad-credentials": "Quarantine"}
    missing = live.get(f"/servicePrincipals/{tenant.apps[0].sp_id}/synchronization/jobs/NoSuchJob.0")
    assert missing.status_code == 404


def list_all(live: Live, path: str, params: dict[str, str] | None = None) -> list[dict]:
    response = live.get(path, params)
    items: list[dict] = []
    for _ in range(100):
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["value"])
        if "@odata.nextLink" not in body:
            return items
        response = live.get(body["@odata.nextLink"])
    raise AssertionError("too many pages")


def test_app_role_assignments_name_groups_and_direct_users(live: Live) -> None:
    tenant = live.tenant
    zendesk = app_named(tenant, "skipped-users")
    assigned = list_all(live, f"/servicePrincipals/{zendesk.sp_id}/appRoleAssignedTo", {"$top": "3"})
    groups = {a["principalId"] for a in assigned if a["principalType"] == "Group"}
    users = {a["principalId"] for a in assigned if a["principalType"] == "User"}
    assert groups == {tenant.directory.by_name[name].id for name in zendesk.scenario.groups}
    assert users == {tenant.users.get(i).id for i in zendesk.direct_users} and users
    assert len(assigned) == len(groups) + len(users)
    assert all(a["resourceId"] == zendesk.sp_id for a in assigned)


def test_direct_members_leave_out_nested_groups_users_and_transitive_members_include_them(live: Live) -> None:
    directory = live.tenant.directory
    support, tier2 = directory.by_name["Support"], directory.by_name["Support Tier 2"]
    tier2_users = {
        m["id"] for m in list_all(live, f"/groups/{tier2.id}/members") if "user" in m["@odata.type"]
    }
    assert tier2_users
    direct = list_all(live, f"/groups/{support.id}/members")
    transitive = list_all(live, f"/groups/{support.id}/transitiveMembers")
    direct_users = {m["id"] for m in direct if m["@odata.type"] == "#microsoft.graph.user"}
    transitive_users = {m["id"] for m in transitive if m["@odata.type"] == "#microsoft.graph.user"}
    assert tier2.id in {m["id"] for m in direct if m["@odata.type"] == "#microsoft.graph.group"}
    assert not direct_users & tier2_users
    assert transitive_users == direct_users | tier2_users
    assert len({m["id"] for m in transitive}) == len(transitive)


def test_users_by_id_and_by_user_principal_name(live: Live) -> None:
    user = live.tenant.users.get(7)
    by_id = live.get(f"/users/{user.id}").json()
    assert by_id["userPrincipalName"] == user.user_principal_name and by_id["id"] == user.id
    assert live.get(f"/users/{user.user_principal_name}").json() == by_id
    assert_graph_error(live.get("/users/nobody@contoso.com"), 404, "Request_ResourceNotFound")


def test_directory_audits_page_and_filter_by_time(live: Live) -> None:
    expected = live.tenant.directory_audits()
    assert len(expected) >= 2
    paged = list_all(live, "/auditLogs/directoryAudits", {"$top": "1"})
    assert [a["id"] for a in paged] == [a["id"] for a in expected]
    times = [ticks_of(a["activityDateTime"]) for a in paged]
    assert times == sorted(times, reverse=True)
    since = expected[len(expected) // 2]["activityDateTime"]
    recent = list_all(live, "/auditLogs/directoryAudits", {"$filter": f"activityDateTime ge {since}"})
    assert {a["id"] for a in recent} == {
        a["id"] for a in expected if ticks_of(a["activityDateTime"]) >= ticks_of(since)
    }
    assert 0 < len(recent) < len(expected)


# ------------------------------------------------------------------------------------------- 7. POST actions


def test_job_actions_change_the_state_as_the_service_would(tmp_path: Path) -> None:
    acting = serve(small_tenant(), tmp_path, throttle=False)
    try:
        server, tenant = acting.server, acting.tenant
        operator = sign_in(server, acting.session, server.admin_client_id, server.client_secret)
        salesforce, scim = app_named(tenant, "healthy"), app_named(tenant, "bad-credentials")

        def job_path(app: App, action: str = "") -> str:
            return f"/servicePrincipals/{app.sp_id}/synchronization/jobs/{app.job_id}" + action

        def status() -> tuple[str, str]:
            job = acting.get(job_path(salesforce)).json()
            return job["status"]["code"], job["schedule"]["state"]

        # the default reader registration lacks Synchronization.ReadWrite.All
        for action in ("/validateCredentials", "/pause", "/start", "/restart"):
            assert_graph_error(
                acting.post(job_path(salesforce, action), {}), 403, "Authorization_RequestDenied"
            )
        assert status() == ("Active", "Active")

        check = {"useSavedCredentials": True}
        ok = acting.post(job_path(salesforce, "/validateCredentials"), check, token=operator)
        assert ok.status_code == 204 and ok.content == b""
        refused = acting.post(job_path(scim, "/validateCredentials"), check, token=operator)
        assert refused.status_code == 400 and "401" in refused.json()["error"]["message"]

        assert acting.post(job_path(salesforce, "/pause"), token=operator).status_code == 204
        assert status() == ("Paused", "Paused")
        acting.advance(1)
        assert acting.post(job_path(salesforce, "/start"), token=operator).status_code == 204
        assert status() == ("Active", "Active")

        before = {c.no for c in salesforce.timeline().cycles}
        reset = {"criteria": {"resetScope": "Watermark, Escrows, QuarantineState"}}
        assert acting.post(job_path(salesforce, "/restart"), reset, token=operator).status_code == 204
        acting.advance(5)
        newest = salesforce.timeline().cycles[-1]
        assert newest.no not in before and newest.kind == "initial" and newest.reset_reason == "restart"
        # what a Graph client sees: the newest entries belong to a new cycle that imports every object as an Add
        latest = acting.get(
            "/auditLogs/provisioning", {"$top": "3", "$filter": f"jobId eq '{salesforce.job_id}'"}
        ).json()["value"]
        assert latest and {e["cycleId"] for e in latest} == {
            tenant.codec.encode(ids.CYCLE, salesforce.index, newest.no)
        }
        assert all("(Add)" in e["provisioningSteps"][0]["description"] for e in latest)
        audits = acting.get("/auditLogs/directoryAudits").json()["value"][:3]
        restart = next(
            a for a in audits if a["activityDisplayName"] == "Enable/restart provisioning configuration"
        )
        # the caller is the actor: an app-only caller is an app, not a made-up admin
        assert restart["initiatedBy"]["user"] is None
        assert restart["initiatedBy"]["app"]["appId"] == server.admin_client_id
        # resetScope is validated as Graph's enum of flags
        bad = acting.post(
            job_path(salesforce, "/restart"), {"criteria": {"resetScope": "Everything"}}, token=operator
        )
        assert_graph_error(bad, 400, "BadRequest")
    finally:
        acting.stop()


# ------------------------------------------------------------------------------------------------ 8. emulator


def emulator_command() -> list[str]:
    script = Path(sys.executable).with_name("provkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "provkit.cli.main"]


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {key: value for key, value in pairs}


def job_json_via(settings: dict[str, str]) -> list[dict]:
    """Every job of the emulated tenant, read the way a user pointed at the env file would."""
    session = pinned_session(Path(settings["PROVKIT_CA_BUNDLE"]))
    try:
        app = msal.ConfidentialClientApplication(
            settings["PROVKIT_CLIENT_ID"],
            authority=f"{settings['PROVKIT_AUTHORITY_URL']}/{settings['PROVKIT_TENANT_ID']}",
            client_credential=settings["PROVKIT_CLIENT_SECRET"],
            instance_discovery=False,
            http_client=session,
        )
        token = app.acquire_token_for_client(scopes=[f"{settings['PROVKIT_GRAPH_URL']}/.default"])[
            "access_token"
        ]
        headers = {"Authorization": f"Bearer {token}"}
        graph = f"{settings['PROVKIT_GRAPH_URL']}/v1.0"
        jobs = []
        for sp in session.get(f"{graph}/servicePrincipals", headers=headers, timeout=30).json()["value"]:
            url = f"{graph}/servicePrincipals/{sp['id']}/synchronization/jobs"
            jobs.extend(session.get(url, headers=headers, timeout=30).json()["value"])
        return jobs
    finally:
        session.close()


def test_emulator_writes_its_settings_when_ready_serves_deterministically_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    runs = []
    for k in range(2):
        env_file = tmp_path / f"run{k}" / "provkit.env"
        env_file.parent.mkdir()
        command = [
            *emulator_command(),
            "emulator",
            "--port",
            "0",
            "--seed",
            "5",
            "--env-file",
            str(env_file),
            "--state-dir",
            str(env_file.parent / "state"),
            "--now",
            "2026-11-20T12:00:00Z",
            "--users",
            "300",
            "--days",
            "2",
            "--scenario",
            "healthy",
        ]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runs.append((process, env_file))
    try:
        settings = []
        for process, env_file in runs:
            deadline = time.monotonic() + 60
            while not env_file.exists():
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the env file never appeared"
                time.sleep(0.1)
            assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
            values = read_env_file(env_file)
            for key in ("TENANT_ID", "CLIENT_ID", "CLIENT_SECRET", "AUTHORITY_URL", "GRAPH_URL", "CA_BUNDLE"):
                assert values.get(f"PROVKIT_{key}"), key
            settings.append(values)
        first, second = (job_json_via(values) for values in settings)  # served as soon as the file exists
        assert len(first) == 1 and first[0]["status"]["code"] == "Active"
        assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
        assert settings[0]["PROVKIT_GRAPH_URL"] != settings[1]["PROVKIT_GRAPH_URL"]
        for process, _ in runs:
            process.send_signal(signal.SIGTERM)
        for process, _ in runs:
            assert process.wait(timeout=15) == 0
            out, err = process.communicate()
            assert settings[0]["PROVKIT_CLIENT_SECRET"] not in out + err
    finally:
        for process, _ in runs:
            if process.poll() is None:
                process.kill()
                process.wait()
