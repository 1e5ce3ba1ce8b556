"""GET /groups/delta on the simulated server, against the documented shapes (group-delta.md,
delta-query-groups.md, delta-query-overview.md), and group membership that changes over simulated time.

The tenant has 6,000 users so that Engineering (about 1,500 members) spreads over several delta pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from provkit.errors import GraphError
from provkit.sim.embedded import DemoTenant
from provkit.sim.groupdelta import MEMBERS_PER_PAGE

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def demo() -> Iterator[DemoTenant]:
    with DemoTenant(users=6000, days=1, now=NOW, scenarios=("healthy",), throttle=False) as running:
        yield running


def id_filter(*ids: str) -> str:
    return " or ".join(f"id eq '{i}'" for i in ids)


def round_pages(demo: DemoTenant, first: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every page of one delta round, following nextLinks until a deltaLink."""
    pages = [demo.client.get(first, params)]
    while "@odata.nextLink" in pages[-1]:
        assert "@odata.deltaLink" not in pages[-1]
        pages.append(demo.client.get(pages[-1]["@odata.nextLink"]))
    assert pages[-1]["@odata.deltaLink"]
    return pages


def merged(pages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group id -> its members@delta entries, merged over the pages (a group may repeat on several)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for page in pages:
        for group in page["value"]:
            out.setdefault(group["id"], []).extend(group.get("members@delta", []))
    return out


def members(demo: DemoTenant, gid: str) -> set[str]:
    return {m["id"] for m in demo.client.items(f"/groups/{gid}/members", {"$top": "999"})}


def test_a_first_round_lists_the_filtered_groups_members_over_pages_and_ends_with_a_delta_link(
    demo: DemoTenant,
) -> None:
    directory = demo.tenant.directory
    engineering, sales = directory.by_name["Engineering"], directory.by_name["Sales"]
    pages = round_pages(
        demo,
        "/groups/delta",
        {"$filter": id_filter(engineering.id, sales.id), "$select": "displayName,members"},
    )
    assert len(pages) > 1  # Engineering's members do not fit one page
    assert all(len(g.get("members@delta", [])) <= MEMBERS_PER_PAGE for p in pages for g in p["value"])
    got = merged(pages)
    assert set(got) == {engineering.id, sales.id}
    for gid in got:
        assert {m["id"] for m in got[gid]} == members(demo, gid)
        assert all(set(m) == {"@odata.type", "id"} for m in got[gid])  # only the id of a member
    # Sales EMEA is nested in Sales: a member of type group
    assert {"@odata.type": "#microsoft.graph.group", "id": directory.by_name["Sales EMEA"].id} in got[
        sales.id
    ]
    first = pages[0]["value"][0]
    assert set(first) == {"id", "displayName", "members@delta"}  # only what $select asked, and the id
    # the links carry the state token only: the query lives in it
    for link in [p.get("@odata.nextLink") or p["@odata.deltaLink"] for p in pages]:
        assert set(parse_qs(urlsplit(link).query)) <= {"$skiptoken", "$deltatoken"}


def test_a_delta_link_lists_only_changed_groups_with_removed_members_marked(demo: DemoTenant) -> None:
    tenant = demo.tenant
    tenant.membership.churn = False
    marketing, finance = tenant.directory.by_name["Marketing"], tenant.directory.by_name["Finance"]
    latest = demo.client.get(
        "/groups/delta",
        {
            "$filter": id_filter(marketing.id, finance.id),
            "$select": "displayName,members",
            "$deltatoken": "latest",
        },
    )
    assert latest["value"] == [] and "$deltatoken=" in latest["@odata.deltaLink"]
    unchanged = demo.client.get(latest["@odata.deltaLink"])
    assert unchanged["value"] == [] and unchanged["@odata.deltaLink"]

    before = tenant.membership.members(marketing, tenant.now_ticks)
    leaver = before[0]
    joiner = next(u for u in range(6000) if u not in before and tenant.users.enabled[u])
    tenant.advance(10)
    tenant.membership.change(marketing, tenant.now_ticks, add=[joiner], remove=[leaver])
    leaver_id, joiner_id = tenant.users.get(leaver).id, tenant.users.get(joiner).id

    pages = round_pages(demo, unchanged["@odata.deltaLink"])
    got = merged(pages)
    assert list(got) == [marketing.id]  # Finance did not change
    assert {"@odata.type": "#microsoft.graph.user", "id": joiner_id} in got[marketing.id]
    assert {
        "@odata.type": "#microsoft.graph.user",
        "id": leaver_id,
        "@removed": {"reason": "deleted"},
    } in got[marketing.id]
    assert len(got[marketing.id]) == 2
    # the members relation says the same
    now = members(demo, marketing.id)
    assert joiner_id in now and leaver_id not in now
    assert leaver_id not in {m["id"] for m in demo.client.items(f"/groups/{marketing.id}/transitiveMembers")}
    assert marketing.id not in {g["id"] for g in demo.client.items(f"/users/{leaver_id}/memberOf")}
    # and the round's deltaLink starts after the change
    assert demo.client.get(pages[-1]["@odata.deltaLink"])["value"] == []


def test_membership_changes_by_the_hour_after_the_start_and_the_same_way_every_time(demo: DemoTenant) -> None:
    tenant = demo.tenant
    start = tenant.now_ticks
    engineering = tenant.directory.by_name["Engineering"]
    assert tenant.membership.members(engineering, start) == engineering.user_members  # the apps' membership
    tenant.advance(6 * 60)
    changed = tenant.membership.changed(start, tenant.now_ticks)
    assert len(changed) >= 3 and all(changed.values())
    again = DemoTenant(users=6000, days=1, now=NOW, scenarios=("healthy",), throttle=False)
    try:
        again.tenant.advance(6 * 60)
        assert again.tenant.membership.changed(start, again.tenant.now_ticks) == changed
    finally:
        again.stop()


def test_expired_and_unknown_tokens_answer_sync_state_not_found(demo: DemoTenant) -> None:
    tenant = demo.tenant
    gid = tenant.directory.by_name["Legal"].id
    link = demo.client.get("/groups/delta", {"$filter": id_filter(gid), "$deltatoken": "latest"})[
        "@odata.deltaLink"
    ]
    tenant.advance(7 * 24 * 60 + 1)  # delta tokens of directory objects last seven days
    for url in (link, "/groups/delta?$deltatoken=not-a-token-this-server-issued"):
        with pytest.raises(GraphError) as caught:
            demo.client.get(url)
        assert (caught.value.status, caught.value.code) == (410, "syncStateNotFound")


@pytest.mark.parametrize(
    "params",
    [
        {"$filter": id_filter(*[f"00000000-0000-0000-0000-{k:012d}" for k in range(51)])},  # over 50 objects
        {"$filter": "displayName eq 'Legal'"},  # only id eq is supported
        {"$top": "10"},
        {"$expand": "members"},
        {"$select": "displayName,nosuchproperty"},
    ],
)
def test_queries_the_docs_do_not_support_are_refused(demo: DemoTenant, params: dict[str, str]) -> None:
    with pytest.raises(GraphError) as caught:
        demo.client.get("/groups/delta", params)
    assert caught.value.status == 400
