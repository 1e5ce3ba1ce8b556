"""GraphClient: the one way provkit talks to Microsoft Graph (a live tenant or the local simulated one).

It pages by following ``@odata.nextLink`` verbatim, paces ``/auditLogs`` calls under Graph's reporting limit
(5 requests per 10 s per app and tenant), retries 429 (honouring Retry-After), 502/503/504, dropped connections
and truncated bodies with capped exponential backoff and full jitter, renews the token once after a 401, and turns
error answers into typed errors that say what to do (:mod:`provkit.errors`). It is read-only unless built with
``allow_writes=True``. That plumbing is in :mod:`provkit.data.graph_http`.

This module holds the reads the workbook needs on top of it: resolving an app by name, appId or object id, synchronization jobs and
their schema, app role assignments, users and groups, directory audits, and provisioning logs by time slice.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from provkit.data.graph_http import (
    ID_HINT,
    LINK_APP_OBJECTS,
    LINK_PROVISIONING_LOGS,
    GraphStats,
    _GraphHttp,
    permission_for,
)
from provkit.data.settings import _GUID
from provkit.errors import (
    AmbiguousAppError,
    CloudNotSupportedError,
    ConfigError,
    GraphError,
    NotFoundError,
)

__all__ = [
    "GraphClient",
    "GraphStats",
    "ResolvedApp",
    "permission_for",
    "time_slices",
]

log = logging.getLogger("provkit.data.graph")

MAX_RESUMES = 3  # times a provisioning query resumes after its paging token stopped working, without progress
_MAX_CANDIDATES = 10
# inference: no documented default or maximum $top for /auditLogs/provisioning (reference 1.5 and 1.8); public
# scripts use 500, 999 and 1000, and pages of up to 1,000 are reported. Refused sizes fall back in this order.
MAX_PAGE_SIZE = 1000
_PAGE_SIZE_FALLBACKS = (999, 500, 100)
_PAGE_SIZES: dict[str, int] = {}  # Graph root -> the $top last accepted after a refusal, for this process
_TOP_WORD = re.compile(r"(?<![a-z])top(?![a-z])", re.IGNORECASE)


@dataclass(frozen=True)
class ResolvedApp:
    """An app the user named, resolved to its service principal; ``matched_by`` says how it was found."""

    service_principal_id: str
    app_id: str
    display_name: str
    matched_by: str  # "object id", "appId", "display name" or "display name prefix"
    query: str = ""

    def describe(self) -> str:
        """One line, e.g. "Resolved 'Zendesk' by display name to service principal <id> (appId <id>)"."""
        text = (
            f"Resolved '{self.query or self.display_name}' by {self.matched_by} to service principal "
            f"{self.service_principal_id} (appId {self.app_id})"
        )
        if self.query and self.query != self.display_name:
            text += f", named '{self.display_name}'"
        return text


def time_slices(
    start: datetime, end: datetime, slice: timedelta = timedelta(hours=6)
) -> list[tuple[datetime, datetime]]:
    """Cut [start, end) into consecutive half-open slices of at most ``slice``, in time order.

    Inner boundaries fall on whole multiples of ``slice`` since 1970-01-01 UTC, so runs over overlapping windows
    share boundaries (a resumed fetch finds the same slices); the first and last slices may be shorter.
    Times must be timezone-aware; they are returned in UTC. An empty window gives an empty list.
    """
    if slice <= timedelta(0):
        raise ConfigError(f"time_slices needs a positive slice, got {slice}.")
    start, end = _utc(start, "start"), _utc(end, "end")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    slices: list[tuple[datetime, datetime]] = []
    cursor = start
    while cursor < end:
        boundary = epoch + ((cursor - epoch) // slice + 1) * slice
        upper = min(boundary, end)
        slices.append((cursor, upper))
        cursor = upper
    return slices


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(
            f"{name} ({value.isoformat()}) has no time zone; provkit will not guess one.",
            remedy="Pass a timezone-aware datetime, e.g. datetime(2025, 3, 1, tzinfo=UTC).",
        )
    return value.astimezone(UTC)


def _odata_datetime(value: datetime) -> str:
    """An OData datetime literal in UTC (unquoted), with microseconds only when there are some."""
    value = _utc(value, "time")
    # strftime does not zero-pad years before 1000 on every platform; OData wants four digits.
    text = f"{value.year:04d}-" + value.strftime("%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def _entry_instant(entry: Any) -> datetime | None:
    """An entry's activityDateTime to the microsecond (rounded down; Graph may give 100-ns ticks), or None."""
    text = entry.get("activityDateTime") if isinstance(entry, dict) else None
    if not isinstance(text, str):
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    try:
        value = datetime.fromisoformat(base + "." + (fraction or "0")[:6].ljust(6, "0") + _zone(zone))
    except ValueError:
        return None
    return value.astimezone(UTC)


def _zone(zone: str | None) -> str:
    return "+00:00" if zone in (None, "Z") else zone


def _odata_string(text: str) -> str:
    """A quoted OData string literal: single quotes doubled."""
    return "'" + text.replace("'", "''") + "'"


def _segment(value: str) -> str:
    """One URL path segment (ids, user principal names with #EXT#) percent-encoded."""
    return quote(value, safe="@")


# ------------------------------------------------------------------------------------------------ client


class GraphClient(_GraphHttp):
    """Microsoft Graph v1.0 for one tenant, through ``tokens``; read-only unless ``allow_writes``.

    ``timeout`` is (connect, read) seconds per request. A call is retried at most ``max_retries`` times and
    gives up once waiting again would pass ``retry_budget_seconds`` since it began. ``pacer`` paces
    ``/auditLogs`` calls (default: 5 per 10 s, the process's :func:`shared_pacer` for this tenant and client id,
    or a private one on an injected ``clock`` and ``sleep``). ``on_event(kind, **data)`` hears
    "request", "page", "retry", "throttle_wait" and "paced"; ``stats`` counts the same.
    """

    # -------------------------------------------------------------------------------- app resolution

    def resolve_app(self, app: str) -> ResolvedApp:
        """Find the service principal ``app`` names: an object id, an appId, an exact name or a name prefix.

        A GUID is tried as the service principal object id, then as the appId. A name is matched exactly
        (``displayName eq``), then by prefix ignoring case. Raises NotFoundError, or AmbiguousAppError
        listing the candidates when several match.
        """
        text = app.strip()
        if not text:
            raise ConfigError("No app given.", remedy="Pass the app's display name, appId or object id.")
        if _GUID.match(text):
            with contextlib.suppress(NotFoundError):
                return self._resolved(self.get(f"/servicePrincipals/{_segment(text)}"), "object id", text)
            try:
                found = self.get(f"/servicePrincipals(appId={_odata_string(text)})")
            except NotFoundError:
                raise NotFoundError(
                    f"No service principal has the object id or appId {text}.",
                    status=404,
                    code="Request_ResourceNotFound",
                    remedy=ID_HINT + " An app registration's object id does not work: use the Enterprise "
                    "applications entry.",
                    link=LINK_APP_OBJECTS,
                ) from None
            return self._resolved(found, "appId", text)
        select = {"$select": "id,appId,displayName"}
        exact = list(
            self.items("/servicePrincipals", {"$filter": f"displayName eq {_odata_string(text)}", **select})
        )
        if len(exact) == 1:
            return self._resolved(exact[0], "display name", text)
        if len(exact) > 1:
            raise self._ambiguous(text, exact)
        wanted = text.casefold()
        prefixed = [
            sp
            for sp in self.items(
                "/servicePrincipals", {"$filter": f"startswith(displayName,{_odata_string(text)})", **select}
            )
            if str(sp.get("displayName", "")).casefold().startswith(wanted)
        ]
        same = [sp for sp in prefixed if str(sp.get("displayName", "")).casefold() == wanted]
        if len(same) == 1:
            return self._resolved(same[0], "display name", text)
        if len(prefixed) == 1:
            return self._resolved(prefixed[0], "display name prefix", text)
        if len(prefixed) > 1:
            raise self._ambiguous(text, same or prefixed)
        raise NotFoundError(
            f"No service principal is named {text!r} or has a name starting with it.",
            status=404,
            remedy="Check the name under Enterprise applications (names are matched exactly, then by prefix); "
            + ID_HINT,
            link=LINK_APP_OBJECTS,
        )

    @staticmethod
    def _resolved(sp: Mapping[str, Any], matched_by: str, query: str) -> ResolvedApp:
        resolved = ResolvedApp(
            service_principal_id=str(sp.get("id", "")),
            app_id=str(sp.get("appId", "")),
            display_name=str(sp.get("displayName", "")),
            matched_by=matched_by,
            query=query,
        )
        log.info("%s", resolved.describe())
        return resolved

    def _ambiguous(self, text: str, matches: list[dict[str, Any]]) -> AmbiguousAppError:
        candidates: list[dict[str, object]] = []
        for sp in matches[:_MAX_CANDIDATES]:
            try:
                has_job: bool | None = bool(self.list_jobs(str(sp.get("id", ""))))
            except GraphError:
                has_job = None  # not allowed to read synchronization, or the app has none
            candidates.append(
                {
                    "display_name": sp.get("displayName"),
                    "service_principal_id": sp.get("id"),
                    "app_id": sp.get("appId"),
                    "has_provisioning_job": has_job,
                }
            )
        job_text = {
            True: "has a provisioning job",
            False: "no provisioning job",
            None: "provisioning unknown",
        }
        lines = [
            f"  {c['display_name']}: object id {c['service_principal_id']}, appId {c['app_id']}, "
            f"{job_text[c['has_provisioning_job']]}"  # type: ignore[index]
            for c in candidates
        ]
        more = f"\n  ... and {len(matches) - _MAX_CANDIDATES} more" if len(matches) > _MAX_CANDIDATES else ""
        return AmbiguousAppError(
            f"{len(matches)} service principals match {text!r}:\n" + "\n".join(lines) + more,
            candidates=candidates,
            remedy="Pass the object id or appId of the one you mean instead of the name.",
            link=LINK_APP_OBJECTS,
        )

    # ------------------------------------------------------------------------------------ the reads

    def list_jobs(self, sp_id: str) -> list[dict[str, Any]]:
        """The synchronization (provisioning) jobs of a service principal; empty when it has none."""
        return list(self.items(f"/servicePrincipals/{_segment(sp_id)}/synchronization/jobs"))

    def get_job(self, sp_id: str, job_id: str) -> dict[str, Any]:
        """One synchronization job with its status (code, lastExecution, quarantine, progress...)."""
        return self.get(f"/servicePrincipals/{_segment(sp_id)}/synchronization/jobs/{_segment(job_id)}")

    def get_schema(self, sp_id: str, job_id: str) -> dict[str, Any]:
        """A job's synchronization schema: directories, object mappings, scoping filters, matching attributes."""
        return self.get(
            f"/servicePrincipals/{_segment(sp_id)}/synchronization/jobs/{_segment(job_id)}/schema"
        )

    def app_role_assignments(self, sp_id: str) -> list[dict[str, Any]]:
        """The users and groups assigned to the app (``appRoleAssignedTo``), direct assignments only."""
        return list(self.items(f"/servicePrincipals/{_segment(sp_id)}/appRoleAssignedTo"))

    def get_user(self, id_or_upn: str) -> dict[str, Any]:
        """A user by object id or user principal name (guests' ``#EXT#`` names are encoded)."""
        return self.get(f"/users/{_segment(id_or_upn)}")

    def group_members(self, group_id: str, transitive: bool = False) -> list[dict[str, Any]]:
        """A group's members (users and groups); ``transitive`` includes members of nested groups."""
        relation = "transitiveMembers" if transitive else "members"
        return list(self.items(f"/groups/{_segment(group_id)}/{relation}"))

    # Graph's delta query for groups (graph-docs-contrib api-reference/v1.0/api/group-delta.md and
    # concepts/delta-query-overview.md): $select=members tracks membership changes, the other properties named are
    # tracked too; $filter takes only "id eq '...'" joined by "or", at most 50 objects; $deltatoken=latest ("sync
    # from now") answers a deltaLink without the groups' state; pages end with an @odata.deltaLink to keep.
    GROUP_DELTA_MAX_IDS = 50
    GROUP_DELTA_SELECT = "displayName,mail,securityEnabled,groupTypes,members"

    def group_delta_link(self, group_ids: Sequence[str]) -> str:
        """A groups/delta deltaLink from now on for ``group_ids`` (1 to 50): one call, nothing of the groups read.

        A 400 to ``$deltatoken=latest`` (inference: the docs show it without ``$filter``, not with it) reads a
        first round instead, every page of the groups' current state, and keeps only its deltaLink.
        """
        if not 1 <= len(group_ids) <= self.GROUP_DELTA_MAX_IDS:
            raise ConfigError(
                f"A groups/delta query tracks 1 to {self.GROUP_DELTA_MAX_IDS} groups, not {len(group_ids)}."
            )
        params = {
            "$filter": " or ".join(f"id eq {_odata_string(g)}" for g in group_ids),
            "$select": self.GROUP_DELTA_SELECT,
        }
        try:
            return self._group_delta_round("/groups/delta", {**params, "$deltatoken": "latest"})[1]
        except GraphError as exc:
            if exc.status != 400:
                raise
            log.info(
                "Graph refused $deltatoken=latest with a filter (%s); reading a first delta round", exc.code
            )
        return self._group_delta_round("/groups/delta", params)[1]

    def group_delta_changes(self, delta_link: str) -> tuple[dict[str, dict[str, Any]], str]:
        """What changed since ``delta_link`` was issued, by group id (lower-cased), and the deltaLink to keep.

        Each group's entry: ``added`` and ``removed`` member ids (users and other objects), ``groups`` true when
        a member that is a group was added or removed, ``removed_group`` true when the group itself is gone, and
        ``properties``, the group's tracked properties as the round gave them. A group on several pages (its
        members spread over them, delta-query-groups.md) is merged; a removed member carries ``@removed``
        (``{"reason": "deleted"}`` in the docs' example; any reason counts).
        """
        return self._group_delta_round(delta_link, None)

    def _group_delta_round(
        self, path: str, params: Mapping[str, str] | None
    ) -> tuple[dict[str, dict[str, Any]], str]:
        """Follow one delta round to its end: the groups it names with their changes, and its closing deltaLink."""
        changed: dict[str, dict[str, Any]] = {}
        link: object = None
        for page in self.pages(path, params):
            for item in page["value"]:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    continue
                entry = changed.setdefault(
                    item["id"].lower(),
                    {"added": [], "removed": [], "groups": False, "removed_group": False, "properties": {}},
                )
                entry["removed_group"] = entry["removed_group"] or "@removed" in item
                entry["properties"].update(
                    {k: v for k, v in item.items() if not k.startswith("@") and "@" not in k and k != "id"}
                )
                members = item.get("members@delta")
                for member in members if isinstance(members, list) else []:
                    if not isinstance(member, dict) or not isinstance(member.get("id"), str):
                        continue
                    if str(member.get("@odata.type", "")).lower().endswith("group"):
                        entry["groups"] = True
                    entry["removed" if "@removed" in member else "added"].append(member["id"])
            link = page.get("@odata.deltaLink") or link
        if not isinstance(link, str) or not link:
            raise GraphError(
                "Graph ended a groups/delta round without an @odata.deltaLink; the changes it listed are not used.",
                method="GET",
                url="/groups/delta",
                remedy="Run again; group membership is then read in full.",
            )
        return changed, link

    def user_member_of(self, user_id: str, transitive: bool = False) -> list[dict[str, Any]]:
        """The groups a user is in; ``transitive`` includes groups reached through nesting."""
        relation = "transitiveMemberOf" if transitive else "memberOf"
        return list(self.items(f"/users/{_segment(user_id)}/{relation}"))

    # The documented Account Provisioning activities that matter to cycles, quarantine and postmortems
    # (reference 1.8). Per-object records ("Export", "Import", "Synchronization rule action", "Process escrow",
    # "User Provisioning", "Other") can run to thousands a day: they are filtered out at the query.
    AUDIT_ACTIVITIES = (
        "Enable/restart provisioning configuration",
        "Enable/start provisioning configuration",
        "Disable/pause provisioning configuration",
        "Update attribute mappings or scope",
        "Update provisioning setting or credentials",
        "Quarantine",
        "Add provisioning configuration",
        "Delete provisioning configuration",
    )

    def directory_audits(
        self, start: datetime, end: datetime, sp_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Provisioning service audit records in [start, end) of the :attr:`AUDIT_ACTIVITIES`; with ``sp_id``,
        only those about that app, newest first as Graph sends them.

        Graph filters on time, ``loggedByService`` and ``activityDisplayName``; the target service principal is
        matched here, because ``targetResources`` cannot be filtered server-side. If Graph refuses the ``or`` of
        activity names (400; inference: the docs show single ``eq`` filters only), one query per activity is
        made instead, and remembered for the session.
        """
        base = (
            f"activityDateTime ge {_odata_datetime(start)} and activityDateTime lt {_odata_datetime(end)} "
            "and loggedByService eq 'Account Provisioning'"
        )
        names = " or ".join(f"activityDisplayName eq {_odata_string(a)}" for a in self.AUDIT_ACTIVITIES)
        audits: list[dict[str, Any]] = []
        if not getattr(self, "_audits_one_activity_per_query", False):
            try:
                audits = list(self.items("/auditLogs/directoryAudits", {"$filter": f"{base} and ({names})"}))
            except GraphError as exc:
                if exc.status != 400:
                    raise
                self._audits_one_activity_per_query = True
                log.info(
                    "Graph refused an 'or' of audit activity names (%s); one query per activity", exc.code
                )
        if getattr(self, "_audits_one_activity_per_query", False):
            seen: set[object] = set()
            for activity in self.AUDIT_ACTIVITIES:
                flt = f"{base} and activityDisplayName eq {_odata_string(activity)}"
                for audit in self.items("/auditLogs/directoryAudits", {"$filter": flt}):
                    if audit.get("id") not in seen:
                        seen.add(audit.get("id"))
                        audits.append(audit)
            audits.sort(key=lambda a: str(a.get("activityDateTime") or ""), reverse=True)
        if sp_id is None:
            return audits
        return [a for a in audits if any(t.get("id") == sp_id for t in a.get("targetResources") or [])]

    def provisioning_pages(
        self, sp_id: str, start: datetime, end: datetime, *, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the pages of provisioning log entries of one app in [start, end), oldest first.

        Oldest first (``$orderby=activityDateTime asc``): an interrupted fetch then holds a clean prefix of the
        window, so it can resume from the last entry's time instead of starting over. One query for the whole
        window: each extra query costs a throttled call (see :mod:`provkit.data.fetch`). Raises
        CloudNotSupportedError, before any request, in clouds without the provisioning logs API (China).
        ``page_size`` None asks :attr:`page_size` (1,000 by default, the size public scripts use; fewer pages is
        what counts under the throttle).
        """
        if not self.settings.cloud.provisioning_logs:
            raise CloudNotSupportedError(
                f"The provisioning logs API is not available in the {self.settings.cloud.name} cloud.",
                remedy="Use the admin center's Download (provkit import) or a Log Analytics export of "
                "AADProvisioningLogs where available; job status still works through Graph.",
                link=LINK_PROVISIONING_LOGS,
            )
        if not _GUID.match(sp_id):
            raise ConfigError(
                f"{sp_id!r} is not a service principal object id.",
                remedy="Resolve the app first (GraphClient.resolve_app) and pass its service_principal_id.",
                link=LINK_APP_OBJECTS,
            )
        if page_size is not None and not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}.")
        return self._provisioning_pages(
            sp_id, _utc(start, "start"), _utc(end, "end"), page_size or self.page_size
        )

    @property
    def page_size(self) -> int:
        """The ``$top`` asked of the logs by default: 1,000, or less once Graph refused that in this process."""
        return _PAGE_SIZES.get(self.settings.graph_root, MAX_PAGE_SIZE)

    # How provisioning_pages queries, most to least preferred. The v1.0 page documents eq, contains, gt and lt
    # for $filter and shows $orderby only with desc; ge and "asc" work today (inference from use), so a 400 to
    # them steps down: gt on the instant just before the window start, then no $orderby (sorted here).
    _PROVISIONING_QUERIES = ("ge+orderby", "gt+orderby", "gt")

    @staticmethod
    def _provisioning_params(
        sp_id: str, start: datetime, end: datetime, page_size: int, mode: str
    ) -> dict[str, str]:
        after = (
            f"activityDateTime ge {_odata_datetime(start)}"
            if mode.startswith("ge")
            else f"activityDateTime gt {_odata_datetime(start - timedelta(microseconds=1))}"
        )
        flt = f"servicePrincipal/id eq {_odata_string(sp_id)} and {after} and activityDateTime lt {_odata_datetime(end)}"
        params = {"$filter": flt, "$top": str(page_size)}
        if mode.endswith("orderby"):
            params["$orderby"] = "activityDateTime asc"
        return params

    def _provisioning_pages(
        self, sp_id: str, start: datetime, end: datetime, page_size: int
    ) -> Iterator[dict[str, Any]]:
        """The pages of one provisioning query, oldest entry first.

        A 400 to the query itself (before any page) naming ``$top`` asks the next smaller page size (a capped page,
        fewer entries than asked with a nextLink, needs nothing: the link carries on and no entry is lost); any
        other 400 steps down to the next of :data:`_PROVISIONING_QUERIES`; both are remembered for the process.
        When a next-page link stops working part-way (an expired ``$skiptoken``, a restarted server: 400 or 404),
        the query is asked again from the last entry's time and the entries already yielded at that instant are
        left out, so each entry comes once; at most :data:`MAX_RESUMES` times in a row without a new entry."""
        modes = self._PROVISIONING_QUERIES
        resume_from = start
        at_resume: set[str] = set()  # ids already yielded whose time is ``resume_from``
        resumes = 0
        while True:
            mode = getattr(self, "_provisioning_query", modes[0])
            pages = self.pages(
                "/auditLogs/provisioning", self._provisioning_params(sp_id, resume_from, end, page_size, mode)
            )
            last: datetime | None = None
            last_ids: set[str] = set()
            pages_read = 0
            unplaced = False  # an entry without a readable time: where the query stands is unknown
            try:
                if not mode.endswith("orderby"):
                    yield from self._sorted_pages(pages, resume_from, at_resume, page_size)
                    return
                for page in pages:
                    pages_read += 1
                    values = page["value"]
                    if at_resume:
                        values = [v for v in values if not (isinstance(v, dict) and v.get("id") in at_resume)]
                    for entry in values:
                        when = _entry_instant(entry)
                        if when is None:
                            unplaced = True
                        elif when != last:
                            last, last_ids = when, {str(entry.get("id"))}
                        else:
                            last_ids.add(str(entry.get("id")))
                    if values:
                        resumes = 0
                    yield {**page, "value": values} if at_resume else page
                return
            except GraphError as exc:
                smaller = [size for size in _PAGE_SIZE_FALLBACKS if size < page_size]
                if exc.status == 400 and pages_read == 0 and smaller and _TOP_WORD.search(str(exc)):
                    # inference: no documented error for a $top above the endpoint's maximum; a 400 whose message
                    # names it is taken for one ("Invalid value '...' for $top query option.", "The limit of
                    # '999' for Top query has been exceeded.").
                    log.info(
                        "Graph refused $top=%d on the provisioning logs; asking %d", page_size, smaller[0]
                    )
                    page_size = _PAGE_SIZES[self.settings.graph_root] = smaller[0]
                    continue
                if exc.status == 400 and pages_read == 0 and mode != modes[-1]:
                    self._provisioning_query = modes[modes.index(mode) + 1]  # remembered for the session
                    log.warning(
                        "Graph refused the provisioning-log query (%s); retrying as %r",
                        exc.code,
                        self._provisioning_query,
                    )
                    continue
                if exc.status not in (400, 404) or pages_read == 0 or unplaced or resumes >= MAX_RESUMES:
                    raise
                resumes += 1
                if last is not None:
                    if last == resume_from:
                        at_resume |= last_ids
                    else:
                        resume_from, at_resume = last, last_ids
                self._emit("resume", reason=exc.message, since=resume_from)
                log.info(
                    "paging of provisioning logs broke off (%s); resuming from %s", exc.status, resume_from
                )

    @staticmethod
    def _sorted_pages(
        pages: Iterator[dict[str, Any]], start: datetime, seen: set[str], page_size: int
    ) -> Iterator[dict[str, Any]]:
        """Without $orderby the order is Graph's: collect the window and hand it over oldest first."""
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        entries = [v for page in pages for v in page["value"]]
        entries = [
            e
            for e in entries
            if (_entry_instant(e) or epoch) >= start and not (isinstance(e, dict) and e.get("id") in seen)
        ]
        entries.sort(key=lambda e: _entry_instant(e) or epoch)
        for i in range(0, len(entries), page_size):
            yield {"value": entries[i : i + page_size]}
