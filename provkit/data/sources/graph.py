"""The graph source: a live tenant (or the simulated one) through sign-in and the Graph client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from provkit.data.auth import Settings, sign_in
from provkit.data.graph import GraphClient
from provkit.data.pacing import AuditPacer
from provkit.errors import GraphError

MAX_GROUP_MEMBERS = 50_000
MAX_USERS = 500
# A group's membership read by a fetch is reused by the fetches of the next hours rather than read again.
GROUP_FACTS_MAX_AGE = timedelta(hours=12)


def connect(
    settings: Settings | None = None,
    *,
    secret: str | Callable[[], str] | None = None,
    method: str = "auto",
    allow_writes: bool = False,
    on_event: Callable[..., None] | None = None,
    cache_path: Any = None,
    device_code_prompt: Callable[[str], None] | None = None,
    pacer: AuditPacer | None = None,
) -> GraphClient:
    """Sign in with the PROVKIT_* settings and return a read-only Graph client (unless ``allow_writes``)."""
    settings = settings or Settings.from_env()
    tokens = sign_in(
        settings, method=method, secret=secret, cache_path=cache_path, device_code_prompt=device_code_prompt
    )
    return GraphClient(settings, tokens, on_event=on_event, allow_writes=allow_writes, pacer=pacer)


def provisioning_apps(client: GraphClient) -> list[dict[str, Any]]:
    """Service principals that have a synchronization job, with each job's id and status code."""
    apps = []
    for sp in client.items("/servicePrincipals", {"$top": "999"}):
        try:
            jobs = client.list_jobs(sp["id"])
        except GraphError as exc:
            if getattr(exc, "status", None) in (400, 404):
                continue
            raise
        for job in jobs:
            status = job.get("status") or {}
            apps.append(
                {
                    "display_name": sp.get("displayName"),
                    "service_principal_id": sp["id"],
                    "app_id": sp.get("appId"),
                    "job_id": job.get("id"),
                    "template_id": job.get("templateId"),
                    "status_code": status.get("code"),
                    "schedule_state": (job.get("schedule") or {}).get("state"),
                    "quarantine_reason": (status.get("quarantine") or {}).get("reason"),
                    "last_execution_state": (status.get("lastExecution") or {}).get("state"),
                }
            )
    apps.sort(key=lambda a: ((a["display_name"] or "").lower(), a["service_principal_id"]))
    return apps


def _members(client: GraphClient, group_id: str, relation: str) -> Iterator[dict[str, Any]]:
    """A group's members, read lazily in pages of 999 (Graph's largest for members), ids and types only."""
    return client.items(f"/groups/{quote(group_id, safe='')}/{relation}", {"$top": "999", "$select": "id"})


def directory_facts(
    client: GraphClient,
    assignments: list[dict[str, Any]],
    *,
    previous: dict[str, dict[str, Any]] | None = None,
    read_at: dict[str, str] | None = None,
    max_age: timedelta = GROUP_FACTS_MAX_AGE,
    now: datetime | None = None,
    stop: Callable[[], bool] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """For the app's assigned groups: direct and transitive members and nested groups; for directly assigned
    users: their user objects. Bounded, so a huge group costs a capped number of pages.

    ``previous`` is what an earlier fetch stored (``groups`` meta) and ``read_at`` when it read each group (ISO
    times, by group id): a group read less than ``max_age`` ago keeps those facts instead of being read again,
    since membership reads are the bulk of a fetch's unthrottled calls (244 groups at 100,000 users).
    ``read_at`` is updated in place with the groups read now. ``stop()`` true
    ends the reads early (the fetch they serve failed); what was read is returned.
    """
    now = now or datetime.now(UTC)
    groups: dict[str, dict[str, Any]] = {}
    users: dict[str, dict[str, Any]] = {}
    for a in assignments:
        if stop is not None and stop():
            break
        if a.get("principalType") == "Group":
            gid = a["principalId"]
            kept = (previous or {}).get(gid)
            if isinstance(kept, dict) and _fresh((read_at or {}).get(gid), now, max_age):
                groups[gid] = kept
            else:
                groups[gid] = _group_facts(client, gid)
                if read_at is not None:
                    read_at[gid] = now.isoformat()
        elif a.get("principalType") == "User" and len(users) < MAX_USERS:
            try:
                users[a["principalId"]] = client.get_user(a["principalId"])
            except GraphError:
                continue
    return groups, users


def _fresh(when: object, now: datetime, max_age: timedelta) -> bool:
    """Whether an ISO time ``when`` lies less than ``max_age`` before ``now``."""
    if not isinstance(when, str):
        return False
    try:
        read = datetime.fromisoformat(when)
    except ValueError:
        return False
    return read.tzinfo is not None and timedelta(0) <= now - read < max_age


def _group_facts(client: GraphClient, gid: str) -> dict[str, Any]:
    """One assigned group's facts, read from Graph."""
    direct: list[str] = []
    nested: list[str] = []
    for m in _members(client, gid, "members"):
        kind = m.get("@odata.type", "")
        (nested if kind.endswith("group") else direct).append(m["id"])
        if len(direct) >= MAX_GROUP_MEMBERS:
            break
    transitive = []
    for m in _members(client, gid, "transitiveMembers"):
        if not m.get("@odata.type", "").endswith("group"):
            transitive.append(m["id"])
            if len(transitive) >= MAX_GROUP_MEMBERS:
                break
    group = client.get(f"/groups/{gid}")
    nested_groups = []
    for nid in nested[:50]:
        inner = client.get(f"/groups/{nid}")
        members = [
            m["id"]
            for m in client.group_members(nid, transitive=False)
            if not m.get("@odata.type", "").endswith("group")
        ]
        nested_groups.append(
            {
                "id": nid,
                "display_name": inner.get("displayName"),
                "direct": members[:MAX_GROUP_MEMBERS],
            }
        )
    return {
        "display_name": group.get("displayName"),
        "mail": group.get("mail"),
        # only security-enabled groups entitle their members (NotEffectivelyEntitled otherwise)
        "security_enabled": group.get("securityEnabled"),
        "group_types": group.get("groupTypes") or [],
        "membership_rule_processing_state": group.get("membershipRuleProcessingState"),
        "direct": direct[:MAX_GROUP_MEMBERS],
        "transitive": transitive,
        "nested": nested,
        "nested_groups": nested_groups,
    }
