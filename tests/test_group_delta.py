"""A fetch reads group membership again only for the assigned groups whose members changed, as Graph's delta query
(groups/delta on the simulated server) names them: the stored facts then equal a full read, a removed member is
gone, an expired delta token makes the groups read in full, and a tenant that refuses the delta query keeps the
membership read in the last 12 h.

Each test has its own small simulated tenant (400 users, one day, Zendesk: the groups Support, with Support Tier 2
nested in it, and Support Escalations), since they move its clock or change its groups.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provkit.data.fetch import FetchSummary, fetch_app
from provkit.data.sources.graph import directory_facts
from provkit.data.store import AppStore, Store
from provkit.sim.embedded import DemoTenant
from provkit.sim.timefmt import ticks_to_datetime

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
APP = "Zendesk"


@pytest.fixture
def demo() -> Iterator[DemoTenant]:
    with DemoTenant(users=400, days=1, now=NOW, scenarios=("skipped-users",), throttle=False) as running:
        yield running


def fetch(demo: DemoTenant, store: Store) -> tuple[FetchSummary, AppStore]:
    end = ticks_to_datetime(demo.tenant.now_ticks)
    return fetch_app(
        demo.client, store, APP, start=NOW - timedelta(days=1), end=end, tenant_id=demo.tenant_id
    )


def settled(demo: DemoTenant) -> int:
    """The server's request count once it stops growing (it logs a call after answering it)."""
    seen = -1
    while len(demo.server.graph.requests) != seen:
        seen = len(demo.server.graph.requests)
        time.sleep(0.05)
    return seen


def member_reads(demo: DemoTenant, since: int) -> set[str]:
    """The groups whose members the client read after request number ``since`` (by group id)."""
    out = set()
    for r in demo.server.graph.requests[since : settled(demo)]:
        parts = r.path.split("?")[0].split("/")
        if len(parts) == 5 and parts[2] == "groups" and parts[4] in ("members", "transitiveMembers"):
            out.add(parts[3])
    return out


def full_read(demo: DemoTenant, app_store: AppStore) -> dict[str, Any]:
    """The assigned groups' facts read from scratch (no stored facts, no delta query)."""
    assignments = demo.client.app_role_assignments(app_store.meta("service_principal")["id"])  # type: ignore[index]
    groups, _ = directory_facts(demo.client, assignments)
    return groups


def group(demo: DemoTenant, name: str):
    return demo.tenant.directory.by_name[name]


def test_a_change_in_a_nested_group_updates_its_parent_without_reading_members(
    demo: DemoTenant, tmp_path: Path
) -> None:
    demo.tenant.membership.churn = False  # only the change made here
    store = Store(tmp_path)
    first, app_store = fetch(demo, store)
    assert first.groups_assigned == first.groups_read == 2
    assert "2 of 2 assigned groups' members read" in first.line()
    assert app_store.meta("groups_delta")["links"]  # type: ignore[index]

    tier2 = group(demo, "Support Tier 2")  # nested in Support: Support's transitive members change
    leaver = demo.tenant.membership.members(tier2, demo.tenant.now_ticks)[0]
    demo.tenant.advance(5)
    demo.tenant.membership.change(tier2, demo.tenant.now_ticks, remove=[leaver])
    demo.tenant.advance(30)
    mark = settled(demo)
    second, app_store = fetch(demo, store)

    assert member_reads(demo, mark) == set()
    assert (second.groups_read, second.groups_patched, second.groups_assigned) == (0, 1, 2)
    assert "0 of 2 assigned groups' members read (1 updated from Graph's delta)" in second.line()
    stored = app_store.meta("groups")
    assert stored == full_read(demo, app_store)
    leaver_id = demo.tenant.users.get(leaver).id
    support = stored[group(demo, "Support").id]  # type: ignore[index]
    assert leaver_id not in support["transitive"] and leaver_id not in support["nested_groups"][0]["direct"]


def test_a_group_stored_without_a_fact_a_check_reads_is_read_again(demo: DemoTenant, tmp_path: Path) -> None:
    demo.tenant.membership.churn = False
    store = Store(tmp_path)
    _, app_store = fetch(demo, store)
    groups = app_store.meta("groups")
    escalations = group(demo, "Support Escalations").id
    del groups[escalations]["nested_groups"]  # type: ignore[index]  # as an older provkit stored it
    app_store.write_meta("groups", groups)
    mark = settled(demo)
    summary, app_store = fetch(demo, store)
    assert member_reads(demo, mark) == {escalations} and summary.groups_read == 1
    assert app_store.meta("groups") == full_read(demo, app_store)


def test_a_member_removed_from_an_assigned_group_disappears_and_a_joiner_appears(
    demo: DemoTenant, tmp_path: Path
) -> None:
    demo.tenant.membership.churn = False
    store = Store(tmp_path)
    fetch(demo, store)
    escalations = group(demo, "Support Escalations")
    members = demo.tenant.membership.members(escalations, demo.tenant.now_ticks)
    leaver = members[0]
    joiner = next(u for u in range(400) if u not in members and demo.tenant.users.enabled[u])
    demo.tenant.advance(5)
    demo.tenant.membership.change(escalations, demo.tenant.now_ticks, add=[joiner], remove=[leaver])
    demo.tenant.advance(5)
    mark = settled(demo)
    summary, app_store = fetch(demo, store)

    # no nested groups: the delta's member changes are applied to the stored facts, nothing is read
    assert member_reads(demo, mark) == set()
    assert (summary.groups_read, summary.groups_patched) == (0, 1)
    assert "0 of 2 assigned groups' members read (1 updated from Graph's delta)" in summary.line()
    facts = app_store.meta("groups")[escalations.id]  # type: ignore[index]
    users = demo.tenant.users
    assert users.get(leaver).id not in facts["direct"] and users.get(leaver).id not in facts["transitive"]
    assert users.get(joiner).id in facts["direct"]
    assert app_store.meta("groups") == full_read(demo, app_store)


def test_over_hours_of_churn_each_fetch_updates_exactly_the_groups_the_server_changed(
    demo: DemoTenant, tmp_path: Path
) -> None:
    tenant = demo.tenant
    store = Store(tmp_path)
    fetch(demo, store)
    assigned = [group(demo, "Support"), group(demo, "Support Escalations")]
    seen_patched = seen_kept = 0
    for _ in range(4):
        since = tenant.now_ticks
        tenant.advance(150)
        changed = set(tenant.membership.changed(since, tenant.now_ticks))
        touched = {g.id for g in assigned if g.index in changed or any(n in changed for n in g.group_members)}
        mark = settled(demo)
        summary, app_store = fetch(demo, store)
        # the changed groups are updated from the delta's member changes: no member is read
        assert member_reads(demo, mark) == set()
        assert (summary.groups_read, summary.groups_patched) == (0, len(touched))
        assert app_store.meta("groups") == full_read(demo, app_store)
        seen_patched += len(touched)
        seen_kept += len(assigned) - len(touched)
    assert seen_patched and seen_kept  # the hours held both (the seed's draws)


def test_an_expired_delta_token_reads_the_groups_in_full_with_a_notice(
    demo: DemoTenant, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    demo.tenant.membership.churn = False
    store = Store(tmp_path)
    fetch(demo, store)
    demo.tenant.delta_token_days = 1 / 24  # the token lives an hour here (seven days on Graph)
    demo.tenant.advance(120)
    mark = settled(demo)
    with caplog.at_level(logging.WARNING, logger="provkit.data.sources.graph"):
        summary, app_store = fetch(demo, store)
    assert summary.groups_read == 2 and len(member_reads(demo, mark)) == 3  # with the nested Support Tier 2
    notices = [r.getMessage() for r in caplog.records if "delta token" in r.getMessage()]
    assert len(notices) == 1 and "syncStateNotFound" in notices[0] and "\n" not in notices[0]
    assert app_store.meta("groups") == full_read(demo, app_store)
    # a new token was taken: the fetch after reads nothing again
    mark = settled(demo)
    summary, _ = fetch(demo, store)
    assert summary.groups_read == 0 and member_reads(demo, mark) == set()


def test_where_the_delta_query_is_refused_membership_read_in_the_last_12_h_is_kept(
    demo: DemoTenant, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    demo.tenant.group_delta_offered = False
    store = Store(tmp_path)
    with caplog.at_level(logging.WARNING, logger="provkit.data.sources.graph"):
        first, app_store = fetch(demo, store)
    assert first.groups_read == 2 and app_store.meta("groups_delta") is None
    assert any("refused the group delta query" in r.getMessage() for r in caplog.records)
    demo.tenant.advance(60)
    mark = settled(demo)
    second, _ = fetch(demo, store)
    assert second.groups_read == 0 and member_reads(demo, mark) == set()  # kept: read an hour ago
    # the 12 h are counted on the machine's clock, so the stored read time is moved back instead of waiting
    read_at = {g: (datetime.now(UTC) - timedelta(hours=13)).isoformat() for g in app_store.meta("groups")}  # type: ignore[union-attr]
    app_store.write_meta("groups_read_at", read_at)
    third, _ = fetch(demo, store)
    assert third.groups_read == 2


@pytest.mark.parametrize(
    "state",
    [
        {"links": [{"ids": "not a list", "link": 5}], "watch": []},  # mangled: as if there were none
        "garbage",
        {"links": [{"ids": ["x"], "link": "https://elsewhere.example/v1.0/groups/delta?$deltatoken=1"}]},
    ],
)
def test_a_mangled_or_foreign_delta_state_reads_the_groups_in_full_and_is_replaced(
    demo: DemoTenant, tmp_path: Path, state: object
) -> None:
    store = Store(tmp_path)
    _, app_store = fetch(demo, store)
    app_store.write_meta("groups_delta", state)
    summary, app_store = fetch(demo, store)
    assert summary.groups_read == 2  # nothing said what changed: read, and nothing sent to another host
    assert app_store.meta("groups") == full_read(demo, app_store)
    links = app_store.meta("groups_delta")["links"]  # type: ignore[index]
    assert links and all(entry["link"].startswith(demo.server.base_url) for entry in links)
