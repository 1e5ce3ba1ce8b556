"""fetch_app against the simulated Graph server: exact first fetch, incremental refresh by watermark, idempotent
repeats, resume after an interrupted fetch, faults, and one job-status snapshot per fetch.

Each tenant is the same small simulated one (400 users, 3 days, two apps, a fixed clock). The tenant that moves
its clock forward is its own, so no test depends on another's order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
import requests

from provkit.data.fetch import DEFAULT_OVERLAP, FetchSummary, fetch_app
from provkit.data.graph import GraphClient, time_slices
from provkit.data.pacing import AuditPacer
from provkit.data.store import AppStore, Store
from provkit.sim.embedded import DemoTenant
from provkit.sim.faults import FaultPlan
from provkit.sim.timefmt import ticks_to_datetime

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
DAYS = 3
SCENARIOS = ("healthy", "skipped-users")
APP = "Zendesk"
FAULTS = "429=0.1,503=0.05,504=0.05,reset=0.02,truncate=0.02"
_WINDOW = re.compile(r"activityDateTime ge (\S+) and activityDateTime lt (\S+)")


def make_demo(**options: object) -> DemoTenant:
    return DemoTenant(users=400, days=DAYS, now=NOW, scenarios=SCENARIOS, throttle=False, **options)


@pytest.fixture(scope="module")
def clean() -> Iterator[DemoTenant]:
    demo = make_demo()
    yield demo
    demo.stop()


@pytest.fixture(scope="module")
def sp_id(clean: DemoTenant) -> str:
    return clean.client.resolve_app(APP).service_principal_id


@pytest.fixture(scope="module")
def reference(clean: DemoTenant, tmp_path_factory: pytest.TempPathFactory) -> AppStore:
    """An uninterrupted, fault-free fetch of the whole window, for comparisons."""
    summary, app_store = fetch(clean, Store(tmp_path_factory.mktemp("reference")))
    assert summary.new > 100
    return app_store


def now_of(demo: DemoTenant) -> datetime:
    return ticks_to_datetime(demo.tenant.now_ticks)


def fetch(demo: DemoTenant, store: Store, client: GraphClient | None = None, **options) -> tuple:
    options.setdefault("start", NOW - timedelta(days=DAYS))
    options.setdefault("end", now_of(demo))
    return fetch_app(client or demo.client, store, APP, tenant_id=demo.tenant_id, **options)


def server_ids(demo: DemoTenant, sp_id: str, start: datetime, end: datetime) -> list[str]:
    """The app's entries in [start, end) listed straight from the server with requests: one query, newest
    first, following nextLink (nothing of provkit's pager or slicing)."""
    session = requests.Session()
    session.verify = str(demo.server.ca_path)
    session.trust_env = False  # a REQUESTS_CA_BUNDLE in the environment would replace the server's CA
    headers = {"Authorization": f"Bearer {demo.client.tokens.token()}"}
    url: str | None = f"{demo.server.base_url}/v1.0/auditLogs/provisioning"
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    params: dict | None = {
        "$filter": f"servicePrincipal/id eq '{sp_id}' and activityDateTime ge {start.strftime(stamp)} "
        f"and activityDateTime lt {end.strftime(stamp)}",
        "$top": "1000",
    }
    ids: list[str] = []
    while url:
        response = session.get(url, params=params, headers=headers, timeout=30)
        response.raise_for_status()
        body = response.json()
        ids.extend(e["id"] for e in body["value"])
        url, params = body.get("@odata.nextLink"), None
    return ids


def stored_ids(app_store: AppStore) -> list[str]:
    return sorted(app_store.tables().events["id"])


def log_windows(demo: DemoTenant, since: int) -> list[tuple[datetime, datetime]]:
    """The time windows of the provisioning-log queries the server received after request number ``since``
    (first pages only: a nextLink repeats its query's filter)."""
    windows = []
    for record in demo.server.graph.requests[since:]:
        split = urlsplit(record.path)
        if not split.path.endswith("/auditLogs/provisioning"):
            continue
        query = parse_qs(split.query)
        if "$skiptoken" in query:
            continue
        match = _WINDOW.search(query["$filter"][0])
        assert match, query
        windows.append(tuple(datetime.fromisoformat(t.replace("Z", "+00:00")) for t in match.groups()))
    return windows


def settled(demo: DemoTenant) -> int:
    """The length of the server's request log once it stops growing (it logs a call after answering it)."""
    import time

    seen = -1
    while len(demo.server.graph.requests) != seen:
        seen = len(demo.server.graph.requests)
        time.sleep(0.05)
    return seen


def assert_same_content(a: AppStore, b: AppStore) -> None:
    ta, tb = a.tables(), b.tables()
    assert sorted(ta.events["id"]) == sorted(tb.events["id"])
    for name in ("events", "steps", "properties"):
        left, right = getattr(ta, name), getattr(tb, name)
        assert len(left) == len(right), name
        keys = list(left.columns)
        pd.testing.assert_frame_equal(
            left.sort_values(keys[:2], ignore_index=True),
            right[keys].sort_values(keys[:2], ignore_index=True),
            check_categorical=False,
        )


# ---- the first fetch -------------------------------------------------------------------------------------------
def test_first_fetch_stores_exactly_the_servers_entries_for_the_window(
    clean: DemoTenant, sp_id: str, reference: AppStore
) -> None:
    start, end = NOW - timedelta(days=DAYS), now_of(clean)
    expected = server_ids(clean, sp_id, start, end)
    assert len(expected) == len(set(expected)) > 100
    assert stored_ids(reference) == sorted(expected)

    events = reference.tables().events
    assert set(events["service_principal_id"]) == {sp_id}
    assert events["activity_time"].min() >= start and events["activity_time"].max() < end
    assert reference.covered() == [(start, end)]
    assert reference.manifest()["app"]["display_name"] == APP
    assert len(reference.jobs()) == 1
    assert reference.meta("schema")["synchronizationRules"]
    assert reference.meta("service_principal")["id"] == sp_id


def test_summary_counts_what_happened(clean: DemoTenant, tmp_path: Path) -> None:
    pages_seen: list[tuple[int, int]] = []
    summary, app_store = fetch(
        clean, Store(tmp_path), page_size=40, on_page=lambda n, s: pages_seen.append((n, s))
    )
    assert isinstance(summary, FetchSummary)
    # One query for the window, committed at each day boundary: full pages, no short page per day.
    assert summary.pages == len(pages_seen) == -(-summary.entries // 40)
    assert 1 < summary.slices <= len(time_slices(summary.start, summary.end, timedelta(days=1)))
    assert summary.entries == sum(n for n, _ in pages_seen) == summary.new == len(app_store.tables().events)
    assert (summary.duplicates, summary.rejected, summary.jobs) == (0, 0, 1)
    indexes = [s for _, s in pages_seen]
    assert indexes == sorted(indexes) and set(indexes) <= set(range(summary.slices))
    line = summary.line()
    assert line.startswith(f"{APP}: {summary.new} new entries, 0 duplicates dropped")
    assert f"{summary.pages} pages" in line and "s in all" in line
    assert app_store.manifest()["fetches"][-1]["new"] == summary.new


# ---- incremental refresh ---------------------------------------------------------------------------------------
def test_second_fetch_asks_only_for_what_is_new_and_a_repeat_adds_nothing(tmp_path: Path) -> None:
    with make_demo() as demo:
        sp = demo.client.resolve_app(APP).service_principal_id
        store = Store(tmp_path)
        start, first_end = NOW - timedelta(days=DAYS), now_of(demo)
        first, app_store = fetch(demo, store, start=start, end=first_end)
        assert first.new == len(server_ids(demo, sp, start, first_end))
        before = set(stored_ids(app_store))

        demo.tenant.advance(40)
        later = now_of(demo)
        assert later == first_end + timedelta(minutes=40)
        mark = settled(demo)
        second, app_store = fetch(demo, store, start=start, end=later)
        windows = log_windows(demo, mark)
        # Only the new 40 minutes, plus the overlap before the watermark for late arrivals.
        assert windows and min(a for a, _ in windows) == first_end - DEFAULT_OVERLAP
        assert max(b for _, b in windows) == later
        assert sum(((b - a) for a, b in windows), timedelta(0)) == DEFAULT_OVERLAP + timedelta(minutes=40)
        new_on_server = set(server_ids(demo, sp, first_end, later))
        assert new_on_server, "the simulated tenant logged nothing in 40 minutes; the test proves nothing"
        assert set(stored_ids(app_store)) - before == new_on_server
        assert second.new == len(new_on_server)
        assert second.duplicates == len(server_ids(demo, sp, first_end - DEFAULT_OVERLAP, first_end))
        assert second.entries == second.new + second.duplicates < first.entries / 10
        audit_windows = [
            r.path for r in demo.server.graph.requests[mark:] if "/auditLogs/directoryAudits" in r.path
        ]
        assert (
            len(audit_windows) == 1
            and (first_end - DEFAULT_OVERLAP).strftime("%Y-%m-%dT%H")
            in (parse_qs(urlsplit(audit_windows[0]).query)["$filter"][0])
        )

        mark = settled(demo)
        third, app_store = fetch(demo, store, start=start, end=later)
        assert log_windows(demo, mark) == [(later - DEFAULT_OVERLAP, later)]
        assert third.new == 0 and third.duplicates == len(
            server_ids(demo, sp, later - DEFAULT_OVERLAP, later)
        )
        assert stored_ids(app_store) == sorted(server_ids(demo, sp, start, later))
        assert app_store.covered() == [(start, later)]

        jobs = app_store.jobs()
        assert len(jobs) == 3  # one job-status snapshot per fetch
        assert jobs["snapshot_time"].is_monotonic_increasing and jobs["snapshot_time"].is_unique
        assert [f["new"] for f in app_store.manifest()["fetches"]] == [first.new, second.new, 0]


# ---- an interrupted fetch --------------------------------------------------------------------------------------
class Killed(BaseException):
    """Stands in for the process being killed (not an Exception, so nothing may swallow it)."""


def test_a_fetch_killed_midway_then_run_again_equals_an_uninterrupted_one(
    clean: DemoTenant, reference: AppStore, tmp_path: Path
) -> None:
    store = Store(tmp_path)
    pages_in_slice: dict[int, int] = {}

    def kill_in_third_slice(entries: int, slice_index: int) -> None:
        pages_in_slice[slice_index] = pages_in_slice.get(slice_index, 0) + 1
        if slice_index == 2 and pages_in_slice[2] == 2:
            raise Killed

    with pytest.raises(Killed):
        fetch(clean, store, page_size=10, on_page=kill_in_third_slice)
    partial = store.app(clean.tenant_id, reference.service_principal_id)
    start, end = NOW - timedelta(days=DAYS), now_of(clean)
    slices = time_slices(start, end, timedelta(days=1))
    assert partial.covered() == [(start, slices[1][1])]  # two whole days, not the one it died in
    some = stored_ids(partial)
    assert 0 < len(some) < len(stored_ids(reference))
    assert set(some) <= set(stored_ids(reference))
    covered_claims_hold(partial, reference)

    mark = settled(clean)
    summary, resumed = fetch(clean, store, page_size=10)
    # The rest of the window in one query, from an hour before where the killed fetch had got to.
    assert log_windows(clean, mark) == [(slices[1][1] - DEFAULT_OVERLAP, end)]
    assert summary.new == len(stored_ids(reference)) - len(some)
    assert_same_content(resumed, reference)
    assert resumed.covered() == [(start, end)]
    assert len(resumed.jobs()) == 2


def covered_claims_hold(partial: AppStore, reference: AppStore) -> None:
    """Every entry of a covered range is in the store: what the next fetch will not ask for again."""
    events = reference.tables().events
    stored = set(stored_ids(partial))
    for a, b in partial.covered():
        inside = events[(events["activity_time"] >= a) & (events["activity_time"] < b)]
        assert set(inside["id"]) <= stored, (a, b)


def test_a_busy_stretch_is_committed_every_max_entries(
    clean: DemoTenant, reference: AppStore, tmp_path: Path
) -> None:
    store = Store(tmp_path)
    pages: list[int] = []

    def kill_at_page_8(entries: int, slice_index: int) -> None:
        pages.append(slice_index)
        if len(pages) == 8:
            raise Killed

    with pytest.raises(Killed):
        fetch(clean, store, page_size=10, max_entries=30, on_page=kill_at_page_8)
    assert pages[:7] == [0, 0, 0, 1, 1, 1, 2]  # a commit after every 3 pages of 10, within the first day
    partial = store.app(clean.tenant_id, reference.service_principal_id)
    [(start, end)] = partial.covered()
    assert start == NOW - timedelta(days=DAYS) and end.minute + end.second > 0  # not a day boundary
    assert len(stored_ids(partial)) == 60
    covered_claims_hold(partial, reference)

    fetch(clean, store, page_size=10, max_entries=30)
    assert_same_content(partial, reference)


class UnorderedPages:
    """The real client, except that each page of log entries comes newest first, as if $orderby were ignored."""

    def __init__(self, client: GraphClient) -> None:
        self.client = client

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def provisioning_pages(self, *args, **kwargs) -> Iterator[dict]:
        for page in self.client.provisioning_pages(*args, **kwargs):
            yield {**page, "value": page["value"][::-1]}


def test_pages_out_of_order_are_committed_only_when_the_range_is_complete(
    clean: DemoTenant, reference: AppStore, tmp_path: Path
) -> None:
    store = Store(tmp_path)
    seen: list[int] = []

    def kill_at_page_12(entries: int, slice_index: int) -> None:
        seen.append(slice_index)
        if len(seen) == 12:
            raise Killed

    client = UnorderedPages(clean.client)
    with pytest.raises(Killed):
        fetch(clean, store, client=client, page_size=10, max_entries=30, on_page=kill_at_page_12)
    partial = store.app(clean.tenant_id, reference.service_principal_id)
    assert partial.covered() == [] and stored_ids(partial) == []  # nothing claimed it cannot prove
    summary, app_store = fetch(clean, store, client=client, page_size=10, max_entries=30)
    assert summary.slices == 1
    assert_same_content(app_store, reference)


# ---- faults ----------------------------------------------------------------------------------------------------
def test_through_429_503_504_resets_and_truncated_bodies_the_entries_are_the_same(
    reference: AppStore, tmp_path: Path
) -> None:
    with make_demo(faults=FAULTS) as faulty:
        # Same shares; seed 33 puts every kind of fault in the first 30 calls, never two in a row.
        faulty.server.graph.faults = FaultPlan.parse(FAULTS, seed=33)
        waits: list[float] = []  # the client's retry waits
        held: list[float] = []  # the pacer's: after a 429 it holds the other thread's audit calls too
        slept = [0.0]  # waits are asked for, not slept, so the test stays fast; the pacer's clock sees them

        def sleep(into: list[float]) -> Callable[[float], None]:
            def wait(seconds: float) -> None:
                into.append(seconds)
                slept[0] += seconds

            return wait

        # The server's throttle is off: the pacer only has the 429 faults' Retry-After to hold calls for.
        pacer = AuditPacer(1_000_000, 1.0, clock=lambda: time.monotonic() + slept[0], sleep=sleep(held))
        client = GraphClient(faulty.settings, faulty.client.tokens, pacer=pacer, sleep=sleep(waits))
        summary, app_store = fetch(faulty, Store(tmp_path), client=client, page_size=25)
        plan = faulty.server.graph.faults
        assert set(plan.injected) == {"429", "503", "504", "reset", "truncate"}, plan.injected
        assert_same_content(app_store, reference)
        assert summary.throttle_waits == plan.injected["429"]
        assert client.stats.retries == sum(plan.injected.values()) == len(waits)
        assert summary.waited_seconds == pytest.approx(sum(waits) + sum(held))
        assert len(app_store.jobs()) == 1


# ---- directory facts -------------------------------------------------------------------------------------------
def test_group_facts_match_the_server_and_a_huge_group_costs_a_capped_number_of_pages(
    clean: DemoTenant, sp_id: str, reference: AppStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provkit.data.sources import graph as graph_source

    groups = reference.meta("groups")
    assert groups, "the app has assigned groups"
    for gid, facts in groups.items():
        members = clean.client.get(f"/groups/{gid}/transitiveMembers", {"$top": "999"})["value"]
        users = sorted(m["id"] for m in members if m["@odata.type"].endswith("user"))
        assert sorted(facts["transitive"]) == users and facts["display_name"]

    monkeypatch.setattr(graph_source, "MAX_GROUP_MEMBERS", 5)
    mark = settled(clean)
    capped, _ = graph_source.directory_facts(clean.client, clean.client.app_role_assignments(sp_id))
    member_calls = [
        r for r in clean.server.graph.requests[mark:] if "embers" in r.path and "select" in r.path
    ]  # directory_facts' own calls (the listing above asked for no $select)
    assert all(len(g["direct"]) <= 5 and len(g["transitive"]) == 5 for g in capped.values())
    nested = sum(len(g["nested"]) for g in capped.values())
    assert len(member_calls) == 2 * len(capped) + nested  # one page per relation, not every member
    # Graph's largest member pages: a 15,000-member group costs 16 calls, not 150 at the default size.
    assert all(parse_qs(urlsplit(r.path).query).get("$top") == ["999"] for r in member_calls)


# ---- page size, progress, side reads, several apps -------------------------------------------------------------
def test_by_default_a_page_holds_1000_entries_and_a_refused_size_falls_back_without_losing_any(
    tmp_path: Path, reference: AppStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provkit.data import graph as graph_module
    from provkit.sim import server as sim_server

    with make_demo() as demo:
        mark = settled(demo)
        fetch(demo, Store(tmp_path / "a"))
        tops = {parse_qs(urlsplit(r.path).query).get("$top", ["?"])[0] for r in log_calls(demo, mark)}
        assert tops == {"1000"}

        # A Graph that refuses more than 500 a page (400 naming $top, as OData does for a bad $top).
        serve = sim_server.GraphApp.provisioning

        def capped(self, path, query):
            if int(query.get("$top") or 0) > 500:
                raise sim_server.HttpError(
                    400, "BadRequest", f"Invalid value '{query['$top']}' for $top query option."
                )
            return serve(self, path, query)

        monkeypatch.setattr(sim_server.GraphApp, "provisioning", capped)
        monkeypatch.setattr(graph_module, "_PAGE_SIZES", {})
        mark = settled(demo)
        summary, app_store = fetch(demo, Store(tmp_path / "b"))
        assert_same_content(app_store, reference)
        asked = [parse_qs(urlsplit(r.path).query).get("$top", ["?"])[0] for r in log_calls(demo, mark)]
        assert asked[:3] == ["1000", "999", "500"]  # the refused sizes cost one call each, before any entry
        assert demo.client.page_size == 500  # remembered: the next fetch asks 500 at once
        mark = settled(demo)
        fetch(demo, Store(tmp_path / "c"))
        assert parse_qs(urlsplit(log_calls(demo, mark)[0].path).query)["$top"] == ["500"]


def log_calls(demo: DemoTenant, since: int) -> list:
    settled(demo)
    return [
        r
        for r in demo.server.graph.requests[since:]
        if urlsplit(r.path).path.endswith("/auditLogs/provisioning")
    ]


def test_progress_reports_entries_pages_rate_and_the_time_left_under_the_throttle(
    clean: DemoTenant, tmp_path: Path
) -> None:
    from provkit.data.fetch import FetchProgress

    seen: list[tuple[int, int, int | None, float | None, str]] = []

    def progress(p: FetchProgress) -> None:
        seen.append((p.entries, p.pages, p.entries_expected, p.seconds_left, p.line()))

    # A pacer with Graph's 5 calls per window, the window shortened to 0.2 s so the test stays quick.
    client = GraphClient(clean.settings, clean.client.tokens, pacer=AuditPacer(5, 0.2))
    summary, _ = fetch(clean, Store(tmp_path), client=client, page_size=20, progress=progress)
    assert len(seen) == summary.pages > 5
    assert [s[0] for s in seen] == sorted(s[0] for s in seen) and seen[-1][0] == summary.entries
    assert [s[1] for s in seen] == list(range(1, summary.pages + 1))
    # Midway, the expected total is near the real one and some time is left; at the end nothing is.
    middle = seen[len(seen) // 2]
    assert middle[2] is not None and 0.5 * summary.entries <= middle[2] <= 1.5 * summary.entries
    assert middle[3] is not None and middle[3] > 0 and seen[-1][3] == pytest.approx(0, abs=0.5)
    assert "entries/s" in middle[4] and "left under the throttle" in middle[4]


def test_group_membership_is_read_once_then_reused_by_the_next_fetch(
    clean: DemoTenant, tmp_path: Path
) -> None:
    store = Store(tmp_path)
    mark = settled(clean)
    fetch(clean, store)
    first = [r for r in clean.server.graph.requests[settled(clean) and mark :] if "/groups/" in r.path]
    assert first, "the app has assigned groups, read by the first fetch"
    mark = settled(clean)
    _, app_store = fetch(clean, store)
    again = [r.path for r in clean.server.graph.requests[mark : settled(clean)] if "/groups/" in r.path]
    # the stored facts were kept, not re-read: the one call asks Graph's delta query whether they changed
    assert [p.split("?")[0] for p in again] == ["/v1.0/groups/delta"] and app_store.meta("groups"), again


def test_a_report_fetches_its_apps_first_through_one_budget_and_says_how_long(tmp_path: Path) -> None:
    from provkit.data.fetch import fetch_apps, plan_fetches

    with make_demo() as demo:
        apps = [demo.client.resolve_app(name) for name in ("Zendesk", "Salesforce")]
        store = Store(tmp_path)
        start, end = NOW - timedelta(days=DAYS), now_of(demo)
        plan = plan_fetches(demo.client, store, apps, start=start, end=end, tenant_id=demo.tenant_id)
        assert all(p is None for p in plan.pages.values())  # never fetched: size unknown, and said so
        assert "Fetching 2 apps" in plan.line() and "at least" in plan.line()
        results = fetch_apps(demo.client, store, plan, start=start, end=end, tenant_id=demo.tenant_id)
        assert all(isinstance(r, tuple) and r[0].new > 0 for r in results.values())
        # Fetched once, the next plan knows their sizes (in pages at 1,000 a page) from what they held.
        again = plan_fetches(
            demo.client, store, apps, start=start - timedelta(days=1), end=end, tenant_id=demo.tenant_id
        )
        assert all(p is not None and p >= 1 for p in again.pages.values()) and "at least" not in again.line()


# ---- what goes before the first log page, commits while the throttle waits, the pacer's first window ----------
def test_the_first_log_call_goes_alone_and_the_other_reads_follow_its_answer(
    clean: DemoTenant, tmp_path: Path
) -> None:
    mark = settled(clean)
    fetch(clean, Store(tmp_path))
    calls = [r for r in clean.server.graph.requests[mark : settled(clean)] if r.path.startswith("/v1.0/")]
    first_log = next(i for i, r in enumerate(calls) if "/auditLogs/provisioning" in r.path)
    side = [
        r
        for r in calls
        if re.search(r"/synchronization/|/appRoleAssignedTo|/groups/|/directoryAudits", r.path)
    ]
    assert side and all("/servicePrincipals?" in r.path for r in calls[:first_log])  # only the app's lookup
    # The job status, schema, assignments, groups and audits all arrive once the first log page has answered.
    assert calls[first_log].answered is not None
    assert min(r.time for r in side) >= calls[first_log].answered


def test_pieces_are_committed_while_the_throttle_holds_the_next_page_back(
    clean: DemoTenant, reference: AppStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provkit.data import fetch as fetch_module

    def run(folder: str, idle_seconds: float) -> tuple[FetchSummary, AppStore]:
        monkeypatch.setattr(fetch_module, "IDLE_COMMIT_SECONDS", idle_seconds)
        # Graph's rule shrunk to 3 calls per 0.3 s: after every third page the next one waits for the window.
        client = GraphClient(clean.settings, clean.client.tokens, pacer=AuditPacer(3, 0.3, margin=0.0))
        return fetch(clean, Store(tmp_path / folder), client=client, page_size=10)

    by_day, _ = run("by-day", 3600.0)  # no wait is that long: commits at day boundaries only
    summary, app_store = run("while-waiting", 0.1)
    assert by_day.slices <= DAYS + 1 and summary.pages == by_day.pages > 9  # a day a piece (and the tail)
    assert by_day.slices + 2 < summary.slices  # commits while the throttle holds pages back (3 a window here)
    assert_same_content(app_store, reference)
    assert app_store.covered() == reference.covered()


def server_entries(demo: DemoTenant, sp_id: str, start: datetime, end: datetime) -> list[dict]:
    """The app's raw entries in [start, end), straight from the server as :func:`server_ids` reads them."""
    session = requests.Session()
    session.verify = str(demo.server.ca_path)
    session.trust_env = False
    headers = {"Authorization": f"Bearer {demo.client.tokens.token()}"}
    url: str | None = f"{demo.server.base_url}/v1.0/auditLogs/provisioning"
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    params: dict | None = {
        "$filter": f"servicePrincipal/id eq '{sp_id}' and activityDateTime ge {start.strftime(stamp)} "
        f"and activityDateTime lt {end.strftime(stamp)}",
        "$top": "1000",
    }
    entries: list[dict] = []
    while url:
        response = session.get(url, params=params, headers=headers, timeout=30)
        response.raise_for_status()
        body = response.json()
        entries.extend(body["value"])
        url, params = body.get("@odata.nextLink"), None
    return entries


def test_pages_normalised_one_by_one_store_the_same_tables_as_one_conversion_of_all_the_entries(
    clean: DemoTenant, sp_id: str, reference: AppStore, tmp_path: Path
) -> None:
    from provkit.data.tables import events_from_records

    start, end = NOW - timedelta(days=DAYS), now_of(clean)
    # Each piece's pages are normalised as they arrive (10 entries a page here, several pages a piece).
    summary, app_store = fetch(clean, Store(tmp_path), page_size=10)
    whole = events_from_records(server_entries(clean, sp_id, start, end))
    assert summary.pages > 2 * summary.slices and summary.rejected == 0 and not whole.rejects
    stored = app_store.tables()
    for name in ("events", "steps", "properties"):
        left, right = getattr(stored, name), getattr(whole, name)
        keys = list(right.columns)
        assert list(left.columns) == keys, name
        pd.testing.assert_frame_equal(
            left.sort_values(keys[:2], ignore_index=True),
            right.sort_values(keys[:2], ignore_index=True),
            check_categorical=False,
        )
    # The same commits' ranges as the 1,000-entry fetch: the whole window covered, the same tail unsettled.
    for key in ("covered", "unsettled"):
        assert app_store.manifest()[key] == reference.manifest()[key], key


class BadEntries:
    """The real client, except that the third and fifth pages each carry one entry without an id."""

    def __init__(self, client: GraphClient) -> None:
        self.client = client

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def provisioning_pages(self, *args, **kwargs) -> Iterator[dict]:
        for number, page in enumerate(self.client.provisioning_pages(*args, **kwargs)):
            if number in (2, 4) and page["value"]:
                broken = {k: v for k, v in page["value"][0].items() if k != "id"}
                page = {**page, "value": [broken, *page["value"]]}
            yield page


def test_an_entry_without_an_id_on_a_later_page_is_rejected_and_the_rest_of_every_page_is_stored(
    clean: DemoTenant, reference: AppStore, tmp_path: Path
) -> None:
    summary, app_store = fetch(clean, Store(tmp_path), client=BadEntries(clean.client), page_size=10)
    assert summary.rejected == 2
    assert len(summary.reject_reasons) == 2 and all("id" in r for r in summary.reject_reasons)
    assert_same_content(app_store, reference)


def test_the_shared_pacer_counts_each_call_from_its_answer_or_a_margin_after_its_send_whichever_is_sooner(
    clean: DemoTenant,
) -> None:
    from provkit.data.pacing import shared_pacer

    assert shared_pacer(clean.settings).cold_calls == 5  # the pacer of every real client
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    pacer = AuditPacer(5, 10.0, cold_calls=5, clock=lambda: clock[0], sleep=sleep)  # margins of 0.25 s
    sent: list[float] = []
    for answer_time in [0.2, 0.9, 0.2, 0.2, 0.2] * 3:
        with pacer.slot():
            sent.append(clock[0])
            clock[0] += answer_time
    # The first window's calls count from their answers, the slow second one at most 0.5 s after its send ...
    assert sent[5] == pytest.approx(0.2 + 10.0) and sent[6] == pytest.approx(sent[1] + 0.5 + 10.0)
    # ... and later ones from their answers too, but at most 0.25 s after their send.
    assert sent[10] == pytest.approx(sent[5] + 0.2 + 10.0) and sent[11] == pytest.approx(
        sent[6] + 0.25 + 10.0
    )
    assert all(b - a >= 10.0 for a, b in zip(sent, sent[5:], strict=False))
    # Idle for a whole window, the pacer is cold again: its next call counts from its answer.
    clock[0] += 30.0
    with pacer.slot():
        restart = clock[0]
        clock[0] += 0.7
    for _ in range(5):
        with pacer.slot():
            clock[0] += 0.1
    assert clock[0] - 0.1 == pytest.approx(restart + 0.5 + 10.0, abs=0.01)


# ---- the next page's call sent before the page before is parsed (provkit.data.paging) -------------------------
class ScriptedFaults(FaultPlan):
    """The simulator's faults on chosen Graph calls only: ``{n: kind}`` for the n-th call (from 0) it receives."""

    def __init__(self, script: dict[int, str]) -> None:
        super().__init__(shares={"429": 1.0})
        self.script = script

    def next(self) -> str | None:
        with self._lock:
            n, self._counter = self._counter, self._counter + 1
            kind = self.script.get(n)
            if kind:
                self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind


def paged_ids(client: GraphClient, sp_id: str, page_size: int = 40) -> list[str]:
    start, end = NOW - timedelta(days=DAYS), NOW
    return [
        e["id"]
        for page in client.provisioning_pages(sp_id, start, end, page_size=page_size)
        for e in page["value"]
    ]


def test_the_next_log_page_is_asked_for_before_the_consumer_takes_the_page_before(
    clean: DemoTenant, sp_id: str
) -> None:
    mark = settled(clean)
    pages = clean.client.provisioning_pages(sp_id, NOW - timedelta(days=DAYS), NOW, page_size=40)
    first = next(pages)
    # The consumer holds page 1 and asks nothing more, yet the server receives the call its nextLink names.
    link = urlsplit(first["@odata.nextLink"])
    wanted = link.path + "?" + link.query
    deadline = time.monotonic() + 30
    while (
        not any(r.path == wanted for r in clean.server.graph.requests[mark:]) and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert [r.path for r in clean.server.graph.requests[mark:] if r.path == wanted] == [wanted]
    ids = [e["id"] for e in first["value"]] + [e["id"] for page in pages for e in page["value"]]
    # After the last page (no nextLink) nothing more is asked for: one call per page.
    assert len(log_calls(clean, mark)) == -(-len(ids) // 40)
    assert sorted(ids) == sorted(server_ids(clean, sp_id, NOW - timedelta(days=DAYS), NOW))
    assert len(ids) == len(set(ids)) > 200


def test_a_next_link_the_scan_gets_wrong_costs_a_call_and_loses_or_repeats_no_entry(
    tmp_path: Path, reference: AppStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provkit.sim import server as sim_server

    serve = sim_server.GraphApp.provisioning
    decoys: list[str] = []

    def misleading(self, path, query):
        page = serve(self, path, query)
        # A nested "@odata.nextLink" before "value", where Graph puts the real one: the raw-body scan takes it.
        # It leads back to the query's first page, so an answer taken from it would repeat entries. The last
        # page names one too, though it has no nextLink of its own.
        first = f"{self.base_url}/v1.0/auditLogs/provisioning?" + "&".join(
            f"{k}={v}" for k, v in query.items() if k != "$skiptoken"
        )
        decoys.append(first)
        return {"@odata.context": page["@odata.context"], "hint": {"@odata.nextLink": first}, **page}

    with make_demo() as demo:
        monkeypatch.setattr(sim_server.GraphApp, "provisioning", misleading)
        sp = demo.client.resolve_app(APP).service_principal_id
        mark = settled(demo)
        summary, app_store = fetch(demo, Store(tmp_path), page_size=40)
        calls = log_calls(demo, mark)
        assert_same_content(app_store, reference)
        assert summary.entries == summary.new == len(stored_ids(app_store))
        # Every page's scan went to the decoy; each such call was made and its answer dropped.
        assert len(calls) == 2 * summary.pages
        assert demo.client.stats.dropped_ahead >= summary.pages
        assert sorted(paged_ids(demo.client, sp)) == sorted(stored_ids(app_store))


def test_a_429_a_dropped_connection_and_a_truncated_body_on_calls_sent_ahead_lose_no_entry(
    clean: DemoTenant, sp_id: str
) -> None:
    expected = server_ids(clean, sp_id, NOW - timedelta(days=DAYS), NOW)
    waits: list[float] = []
    pacer = AuditPacer(1_000_000, 1.0)
    client = GraphClient(clean.settings, clean.client.tokens, pacer=pacer, sleep=waits.append)
    settled(clean)
    saved = clean.server.graph.faults
    # Calls 1, 3 and 5 are pages 2 to 4 sent ahead (call 2 is the retry of page 2; page 1 is call 0).
    clean.server.graph.faults = plan = ScriptedFaults({1: "429", 3: "reset", 5: "truncate"})
    try:
        ids = paged_ids(client, sp_id)
    finally:
        clean.server.graph.faults = saved
    assert plan.injected == {"429": 1, "reset": 1, "truncate": 1}
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    assert client.stats.throttled == 1 and client.stats.retries == 3 == len(waits)
    assert client.stats.sent_ahead >= 3 and client.stats.dropped_ahead == 0


# ---- what `provkit fetch` loads before its first log call ------------------------------------------------------
_FIRST_CALL_PROBE = """
import json, sys

seen = []


def hook(event, args):
    # The first request whose line names the provisioning logs: which heavy modules are loaded by then.
    if event == "http.client.send" and not seen and b"/auditLogs/provisioning" in bytes(args[1])[:4000]:
        seen.append(sorted(m for m in ("pandas", "pyarrow", "numpy", "provkit.analysis") if m in sys.modules))


sys.addaudithook(hook)
from provkit.cli.main import main

code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded_before_first_log_call": seen}), file=sys.stderr)
"""


def test_provkit_fetch_sends_its_first_log_call_before_loading_pandas_pyarrow_or_the_analysis(
    clean: DemoTenant, reference: AppStore, tmp_path: Path
) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, **clean.env()}
    start, end = NOW - timedelta(days=DAYS), NOW
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    args = ["fetch", "--app", APP, "--start", start.strftime(stamp), "--end", end.strftime(stamp)]
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL_PROBE, *args, "--store", str(tmp_path), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    probe = json.loads(done.stderr.strip().splitlines()[-1])
    assert probe["code"] == 0, done.stderr[-2000:]
    assert probe["loaded_before_first_log_call"] == [[]]
    summary = json.loads(done.stdout)
    assert summary["new"] == len(stored_ids(reference))
    assert_same_content(Store(tmp_path).app(clean.tenant_id, reference.service_principal_id), reference)


def test_the_command_ends_without_teardown_yet_flushes_its_output_stores_everything_and_exits_0(
    clean: DemoTenant, reference: AppStore, tmp_path: Path
) -> None:
    """`provkit fetch` run as the process skips the interpreter's teardown after its summary (os._exit): what it
    printed reaches a file (block-buffered, unlike a pipe) whole, the store is complete and unlocked, the exit
    status is 0; and a failing fetch still exits through the usual path with its message and status."""
    import json
    import os
    import subprocess
    import sys

    # An atexit hook, installed through sitecustomize, marks a teardown: the fast exit runs none.
    hooks, marker = tmp_path / "hooks", tmp_path / "teardown-ran"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        f"import atexit, pathlib\natexit.register(pathlib.Path({str(marker)!r}).touch)\n"
    )
    paths = [str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, **clean.env(), "PYTHONPATH": os.pathsep.join(paths)}
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    window = ["--start", (NOW - timedelta(days=DAYS)).strftime(stamp), "--end", NOW.strftime(stamp)]
    store = tmp_path / "store"
    command = [sys.executable, "-m", "provkit.cli.main", "fetch", "--app"]
    out = tmp_path / "summary.json"
    with out.open("w") as stdout:
        done = subprocess.run(
            [*command, APP, *window, "--store", str(store), "--json"],
            env=env,
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not marker.exists()  # no teardown ran, and yet:
    summary = json.loads(out.read_text())
    assert summary["new"] == len(stored_ids(reference))
    app_store = Store(store).app(clean.tenant_id, reference.service_principal_id)
    assert_same_content(app_store, reference)
    assert app_store.manifest()["fetches"][-1]["new"] == summary["new"]
    # The writer lock is free: a fetch in this process takes it at once and finds nothing new.
    again, _ = fetch(clean, Store(store))
    assert again.new == 0

    failed = subprocess.run(
        [*command, "No such app", *window, "--store", str(store)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode != 0 and "No such app" in failed.stderr
    assert marker.exists()  # the usual exit, teardown and all


def test_the_first_window_of_log_calls_goes_before_any_page_is_normalised(
    clean: DemoTenant, reference: AppStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provkit.data import fetch as fetch_module

    monkeypatch.setattr(
        fetch_module, "IDLE_COMMIT_SECONDS", 0.5
    )  # commits in the throttle's waits, as at 10 s
    # Graph's rule on a shorter clock: 5 calls per 2 s. Normalising the first page (and loading pandas and pyarrow
    # for it) waits until all five have gone, so it cannot slow their answers, from which later windows are paced.
    pacer = AuditPacer(5, 2.0, margin=0.0)
    client = GraphClient(clean.settings, clean.client.tokens, pacer=pacer)
    taken_at_first_page: list[int] = []

    def first_page(entries: int, slice_index: int) -> None:
        if not taken_at_first_page:
            taken_at_first_page.append(pacer.calls)

    summary, app_store = fetch(clean, Store(tmp_path), client=client, page_size=20, on_page=first_page)
    assert summary.pages > 6
    assert taken_at_first_page == [5]  # the window's five calls (log pages and the directory audits)
    # The pages read meanwhile are one piece, committed once read, not one commit per page of that backlog.
    windows = -(-(summary.pages + 1) // 5)
    assert summary.slices <= windows + DAYS
    assert_same_content(app_store, reference)
