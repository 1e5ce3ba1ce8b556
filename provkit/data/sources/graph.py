"""The graph source: a live tenant (or the simulated one) through sign-in and the Graph client."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from provkit.data.auth import Settings, sign_in
from provkit.data.graph import GraphClient
from provkit.data.pacing import AuditPacer
from provkit.errors import ConfigError, GraphError

log = logging.getLogger("provkit.data.sources.graph")

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


# What a group's facts hold (see _read_group); a stored group lacking any of them is read again, since the checks
# read them all.
FACT_KEYS = (
    "display_name",
    "mail",
    "security_enabled",
    "group_types",
    "membership_rule_processing_state",
    "direct",
    "transitive",
    "nested",
    "nested_groups",
)
# Graph's answers to a deltaLink it no longer honours: an expired or unknown token is "a 40X-series error with error
# codes such as syncStateNotFound", a synchronization reset 410 Gone (delta-query-overview.md); inference: 400 and
# 404 to a link that worked before are taken the same way.
_TOKEN_REFUSED = (400, 404, 410)


@dataclass
class DirectoryRead:
    """What :func:`read_directory` found and did. ``groups`` and ``users`` are as :func:`directory_facts` returns
    them; ``read_at`` says when each group's facts were read (ISO); ``delta`` is the groups/delta state to store
    for the next fetch (None: the delta query was not usable this time); ``reread`` lists the assigned groups
    whose members were read from Graph now, ``patched`` those updated from the delta query's member changes
    without a read; ``notice`` is one line for the user when the delta query fell back."""

    groups: dict[str, dict[str, Any]]
    users: dict[str, dict[str, Any]]
    read_at: dict[str, str] = field(default_factory=dict)
    delta: dict[str, Any] | None = None
    reread: list[str] = field(default_factory=list)
    patched: list[str] = field(default_factory=list)
    notice: str | None = None


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

    Without the delta query: a group in ``previous`` (what an earlier read stored) read less than ``max_age`` ago
    by ``read_at`` (ISO times by group id, updated in place with the groups read now) keeps its facts.
    :func:`read_directory` is the fetch's way, which asks Graph which groups changed.
    """
    found = read_directory(
        client,
        assignments,
        previous=previous,
        read_at=read_at,
        use_delta=False,
        max_age=max_age,
        now=now,
        stop=stop,
    )
    if read_at is not None:
        read_at.update({g: found.read_at[g] for g in found.reread})
    return found.groups, found.users


def read_directory(
    client: GraphClient,
    assignments: list[dict[str, Any]],
    *,
    previous: dict[str, dict[str, Any]] | None = None,
    read_at: dict[str, str] | None = None,
    delta: object = None,
    use_delta: bool = True,
    max_age: timedelta = GROUP_FACTS_MAX_AGE,
    now: datetime | None = None,
    stop: Callable[[], bool] | None = None,
) -> DirectoryRead:
    """The directory facts of :func:`directory_facts`, reading members only of the assigned groups that need it.

    ``previous``, ``read_at`` and ``delta`` are what an earlier fetch stored (``groups``, ``groups_read_at`` and
    ``groups_delta`` meta). With ``use_delta``, the stored deltaLinks of Graph's groups/delta query say which
    groups changed since that fetch, and how: an assigned group whose members (or whose nested groups' members)
    changed is updated from those changes without reading its members, or read again where that would not be
    exact (groups nested deeper than one level, a nested group added or removed, capped member lists); the
    others keep their facts. Groups never read or stored incomplete are read. Without a stored delta state every
    group is read, after deltaLinks from now on were obtained (one call per 50 groups), so the next fetch knows.
    A deltaLink Graph no longer honours (expired: syncStateNotFound) has its groups read in full; a delta query
    refused outright (no permission, not offered) falls back to keeping facts read less than ``max_age`` ago.
    Both say so in ``notice`` (and the log). ``stop()`` true ends the reads early; what was read is returned.
    """
    now = now or datetime.now(UTC)
    stopped = stop or (lambda: False)
    stored = previous or {}
    stored_at = read_at or {}
    assigned = list(dict.fromkeys(a["principalId"] for a in assignments if a.get("principalType") == "Group"))
    users: dict[str, dict[str, Any]] = {}
    for a in assignments:
        if a.get("principalType") == "User" and len(users) < MAX_USERS and not stopped():
            try:
                users[a["principalId"]] = client.get_user(a["principalId"])
            except GraphError:
                continue
    result = DirectoryRead(groups={}, users=users)
    notices: list[str] = []

    def kept(gid: str) -> dict[str, Any] | None:
        facts = stored.get(gid)
        return facts if isinstance(facts, dict) and all(k in facts for k in FACT_KEYS) else None

    tracker = _DeltaTracker(client, delta, notices) if use_delta and assigned else None
    changed: set[str] | None = None  # tracked ids the delta names, with their assigned groups; None: unknown
    unchanged: set[str] | None = None  # tracked ids the delta says did not change
    if tracker is not None:
        try:
            changed = tracker.follow()
            if changed is not None:
                unchanged = tracker.followed - changed
            # Links for the groups not tracked yet are taken before their members are read, so a change made
            # while they are read shows in the next fetch's delta.
            tracker.cover({w for g in assigned for w in tracker.watched(g, kept(g))})
        except _DeltaRefused as exc:
            tracker, changed, unchanged = None, None, None
            notices.append(
                f"Graph refused the group delta query ({exc}); group membership read in the last "
                f"{_hours(max_age)} is reused and older membership read again."
            )
    for gid in assigned:
        if stopped():
            break
        facts = kept(gid)
        if facts is not None and (
            (unchanged is not None and gid.lower() in unchanged)
            or (tracker is None and _fresh(stored_at.get(gid), now, max_age))
        ):
            result.groups[gid] = facts
            if isinstance(stored_at.get(gid), str):
                result.read_at[gid] = stored_at[gid]
            continue
        patched = (
            tracker.patched(gid, facts)
            if facts is not None and tracker is not None and changed is not None
            else None
        )
        if patched is not None:  # the delta's member changes applied: no member read
            result.groups[gid] = patched
            result.read_at[gid] = now.isoformat()
            result.patched.append(gid)
            continue
        facts, nested = _read_group(client, gid)
        result.groups[gid] = facts
        result.read_at[gid] = now.isoformat()
        result.reread.append(gid)
        if tracker is not None:
            tracker.found(gid, nested)
    if tracker is not None and not stopped():
        try:
            # One link per 50 tracked groups from now on, also covering the groups first seen nested in a group
            # read now; the links this fetch began with are followed once more, and a group they name (changed
            # while it was read) is read again.
            for gid in tracker.settle(result.groups):
                if gid in result.groups and not stopped():
                    result.groups[gid], nested = _read_group(client, gid)
                    tracker.found(gid, nested)
                    if gid not in result.reread:
                        result.reread.append(gid)
            result.delta = tracker.state(result.groups)
        except _DeltaRefused as exc:
            notices.append(
                f"Graph refused the group delta query ({exc}); the next fetch reads membership again."
            )
    result.notice = " ".join(notices) or None
    if result.notice:
        log.warning("provkit: %s", result.notice)
    return result


class _DeltaRefused(Exception):
    """The groups/delta query cannot be used in this tenant (the message names Graph's status and code)."""


class _DeltaTracker:
    """The groups/delta state of one app's assigned groups: deltaLinks (each for at most 50 group ids) and which
    assigned group each tracked id belongs to (the group itself and the groups nested in it, at any depth)."""

    def __init__(self, client: GraphClient, state: object, notices: list[str]) -> None:
        self.client = client
        self.notices = notices
        self.links: list[dict[str, Any]] = []
        self.parents: dict[str, set[str]] = {}  # tracked id (lower-cased) -> assigned group ids
        self.known = False  # whether a stored state said what changed
        self.followed: set[str] = set()  # the ids whose changes the stored links told (others are read)
        self.details: dict[str, dict[str, Any]] = {}  # tracked id -> what the delta said changed
        if isinstance(state, dict):
            for entry in state.get("links") or []:
                if (
                    isinstance(entry, dict)
                    and isinstance(entry.get("link"), str)
                    and isinstance(entry.get("ids"), list)
                ):
                    self.links.append({"ids": [str(i).lower() for i in entry["ids"]], "link": entry["link"]})
            watch = state.get("watch")
            for wid, parents in (watch or {}).items() if isinstance(watch, dict) else ():
                if isinstance(parents, list):
                    self.parents[str(wid).lower()] = {str(p) for p in parents}
            self.known = bool(self.links)
        self._found: dict[str, set[str]] = {}  # assigned group -> ids nested in it, from a read made now

    def follow(self) -> set[str] | None:
        """Follow every stored deltaLink; the assigned groups (lower-cased) to read again, or None without a
        stored state. A link Graph no longer honours is dropped and everything it tracked counts as changed."""
        if not self.known:
            return None
        changed, self.links = self._follow(self.links)
        self.followed = {i for entry in self.links for i in entry["ids"]}
        out: set[str] = set()
        for wid in changed:
            out.add(wid)
            out.update(p.lower() for p in self.parents.get(wid, ()))
        return out

    def _follow(self, links: list[dict[str, Any]]) -> tuple[set[str], list[dict[str, Any]]]:
        """The ids the ``links`` name as changed, and the links to keep (each replaced by its round's new one)."""
        changed: set[str] = set()
        kept: list[dict[str, Any]] = []
        for entry in links:
            try:
                names, link = self.client.group_delta_changes(entry["link"])
            except ConfigError:
                # a link on another Graph host than the one signed in to now (the settings changed): not asked,
                # its groups are read in full
                changed.update(entry["ids"])
                continue
            except GraphError as exc:
                if exc.status in _TOKEN_REFUSED or str(exc.code or "").lower() == "syncstatenotfound":
                    self.notices.append(
                        f"Graph no longer honours the stored group delta token ({exc.status} {exc.code}); "
                        f"the groups it tracked are read in full."
                    )
                    changed.update(entry["ids"])
                    continue
                raise _DeltaRefused(f"{exc.status} {exc.code}") from exc
            changed.update(names)
            for gid, change in names.items():
                _merge_change(self.details.setdefault(gid, _no_change()), change)
            kept.append({"ids": entry["ids"], "link": link})
        return changed, kept

    def settle(self, groups: dict[str, dict[str, Any]]) -> list[str]:
        """Make the links track exactly the ids ``groups`` need, 50 to a link. When they do not already, new
        links from now on are taken first and the old ones followed once more (so a change made while the groups
        were read is not lost); returns the assigned groups those name, to read again."""
        watch = self._watch(groups)
        if {i for entry in self.links for i in entry["ids"]} == set(watch) and len(self.links) == -(
            -len(watch) // self.client.GROUP_DELTA_MAX_IDS
        ):
            return []
        old, self.links = self.links, []
        self.cover(set(watch))
        changed, _ = self._follow(old)
        return sorted({gid for wid in changed for gid in watch.get(wid, ())})

    def _watch(self, groups: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
        """Tracked id (lower-cased) -> the assigned groups it belongs to."""
        parents: dict[str, list[str]] = {}
        for gid, facts in groups.items():
            for wid in sorted(self.watched(gid, facts)):
                parents.setdefault(wid, []).append(gid)
        return parents

    def patched(self, gid: str, facts: dict[str, Any]) -> dict[str, Any] | None:
        """``facts`` with the delta's member changes applied (the group's own and its nested groups'; its
        transitive members then are its direct ones and its nested groups'), or None when only a read is exact:
        groups nested deeper than one level, a nested group added or removed, the group gone, stored members
        capped, or a change the delta gave no details of (an expired link)."""
        key = gid.lower()
        nested = [str(n).lower() for n in facts["nested"]]
        stored_nested = {
            str(g.get("id", "")).lower(): g for g in facts["nested_groups"] if isinstance(g, dict)
        }
        tracked = {key, *nested}
        if (
            self.watched(gid, facts) != tracked  # deeper nesting: a read is exact
            or not tracked <= self.followed
            or set(stored_nested) != set(nested)
            or len(facts["direct"]) >= MAX_GROUP_MEMBERS
            or len(facts["transitive"]) >= MAX_GROUP_MEMBERS
        ):
            return None
        # what the rounds said of each tracked id
        changes = {t: self.details[t] for t in tracked if t in self.details}
        if not changes or any(c["groups"] or c["removed_group"] for c in changes.values()):
            return None
        if any(len(g.get("direct") or []) >= MAX_GROUP_MEMBERS for g in stored_nested.values()):
            return None
        out = {**facts, "direct": _apply(facts["direct"], changes.get(key))}
        inner = []
        for g in facts["nested_groups"]:
            change = changes.get(str(g.get("id", "")).lower())
            updated = {**g, "direct": _apply(g.get("direct") or [], change)}
            if change is not None and "displayName" in change["properties"]:
                updated["display_name"] = change["properties"]["displayName"]
            inner.append(updated)
        out["nested_groups"] = inner
        users = {str(u).lower(): u for u in out["direct"]}
        for g in inner:
            users.update({str(u).lower(): u for u in g["direct"]})
        out["transitive"] = sorted(users.values())
        props = (changes.get(key) or {}).get("properties") or {}
        for fact, name in _TRACKED_PROPERTIES:
            if name in props:
                out[fact] = props[name] if name != "groupTypes" else props[name] or []
        return out

    def watched(self, gid: str, facts: dict[str, Any] | None) -> set[str]:
        """The ids to track for assigned group ``gid`` (lower-cased): itself, the groups nested in it as read
        now, or else as stored (the tracked state, then its facts' direct nested groups)."""
        out = {gid.lower()}
        if gid in self._found:
            return out | self._found[gid]
        out.update(w for w, parents in self.parents.items() if gid in parents)
        if facts is not None:
            out.update(str(n).lower() for n in facts.get("nested") or [])
        return out

    def found(self, gid: str, nested: set[str]) -> None:
        self._found[gid] = {n.lower() for n in nested}

    def cover(self, ids: set[str]) -> None:
        """deltaLinks from now on for the ids no link tracks yet, 50 to a link."""
        covered = {i for entry in self.links for i in entry["ids"]}
        missing = sorted(ids - covered)
        size = self.client.GROUP_DELTA_MAX_IDS
        for k in range(0, len(missing), size):
            chunk = missing[k : k + size]
            try:
                link = self.client.group_delta_link(chunk)
            except GraphError as exc:
                raise _DeltaRefused(f"{exc.status} {exc.code}") from exc
            self.links.append({"ids": chunk, "link": link})

    def state(self, groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """What to store: the links, and which assigned groups each tracked id belongs to."""
        return {"links": self.links, "watch": self._watch(groups)}


# fact -> the group property the delta query tracks for it (GraphClient.GROUP_DELTA_SELECT)
_TRACKED_PROPERTIES = (
    ("display_name", "displayName"),
    ("mail", "mail"),
    ("security_enabled", "securityEnabled"),
    ("group_types", "groupTypes"),
)


def _apply(ids: list[str], change: dict[str, Any] | None) -> list[str]:
    """``ids`` with a delta's removed members taken out and its added ones put in, sorted."""
    if change is None:
        return sorted(ids)
    removed = {str(i).lower() for i in change["removed"]}
    kept = {str(i).lower(): i for i in ids if str(i).lower() not in removed}
    for i in change["added"]:
        kept.setdefault(str(i).lower(), str(i))
    return sorted(kept.values())


def _no_change() -> dict[str, Any]:
    return {"added": [], "removed": [], "groups": False, "removed_group": False, "properties": {}}


def _merge_change(into: dict[str, Any], change: dict[str, Any]) -> None:
    """Add a later round's change of one group to an earlier one's (a member added then removed ends removed)."""
    for kind, other in (("added", "removed"), ("removed", "added")):
        ids = {str(i).lower() for i in change[kind]}
        into[other] = [i for i in into[other] if str(i).lower() not in ids]
        into[kind] = into[kind] + list(change[kind])
    into["groups"] = into["groups"] or change["groups"]
    into["removed_group"] = into["removed_group"] or change["removed_group"]
    into["properties"].update(change["properties"])


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} h"


def _fresh(when: object, now: datetime, max_age: timedelta) -> bool:
    """Whether an ISO time ``when`` lies less than ``max_age`` before ``now``."""
    if not isinstance(when, str):
        return False
    try:
        read = datetime.fromisoformat(when)
    except ValueError:
        return False
    return read.tzinfo is not None and timedelta(0) <= now - read < max_age


def _read_group(client: GraphClient, gid: str) -> tuple[dict[str, Any], set[str]]:
    """One assigned group's facts, read from Graph, and the ids of every group nested in it (at any depth, from
    its transitive members) for the delta query to track."""
    direct: list[str] = []
    nested: list[str] = []
    for m in _members(client, gid, "members"):
        kind = m.get("@odata.type", "")
        (nested if kind.endswith("group") else direct).append(m["id"])
        if len(direct) >= MAX_GROUP_MEMBERS:
            break
    transitive: list[str] = []
    nested_all = set(nested)
    for m in _members(client, gid, "transitiveMembers"):
        if m.get("@odata.type", "").endswith("group"):
            nested_all.add(m["id"])
        elif len(transitive) < MAX_GROUP_MEMBERS:
            transitive.append(m["id"])
        else:
            break
    group = client.get(f"/groups/{quote(gid, safe='')}")
    nested_groups = []
    for nid in nested[:50]:
        inner = client.get(f"/groups/{quote(nid, safe='')}")
        members: list[str] = []  # bounded like the assigned group's own members, in pages of 999
        for m in _members(client, nid, "members"):
            if not m.get("@odata.type", "").endswith("group"):
                members.append(m["id"])
                if len(members) >= MAX_GROUP_MEMBERS:
                    break
        nested_groups.append(
            {
                "id": nid,
                "display_name": inner.get("displayName"),
                "direct": sorted(members[:MAX_GROUP_MEMBERS]),
            }
        )
    facts = {
        "display_name": group.get("displayName"),
        "mail": group.get("mail"),
        # only security-enabled groups entitle their members (NotEffectivelyEntitled otherwise)
        "security_enabled": group.get("securityEnabled"),
        "group_types": group.get("groupTypes") or [],
        "membership_rule_processing_state": group.get("membershipRuleProcessingState"),
        # sorted: membership is a set (Graph gives no order), and a group updated from the delta query then holds
        # the same lists as a read
        "direct": sorted(direct[:MAX_GROUP_MEMBERS]),
        "transitive": sorted(transitive),
        "nested": sorted(nested),
        "nested_groups": nested_groups,
    }
    return facts, nested_all
