"""Facts the checks share, derived once from an :class:`~provkit.data.evidence.Evidence`.

- the latest job-status snapshot (a row of the jobs table) and the raw job JSON;
- the scope ("sync all" or "sync assigned"), inferred from the logs (Graph does not return the setting),
  and the schema's matching attributes and mappings;
- how each user is assigned to the app: directly, as a direct member of an assigned group, or only through a
  group nested inside an assigned group;
- the latest log entry of each object (its current outcome).

Nothing here fetches; everything tolerates missing pieces (no schema, no job, no assignments).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC
from functools import cached_property
from typing import Any

import pandas as pd

from provkit.analysis.columns import latest_entries
from provkit.analysis.syncscope import SyncScope, sync_scope_of
from provkit.data.evidence import Evidence
from provkit.data.logsummary import LogSummary
from provkit.data.sources.loganalytics_findings import assigned_users
from provkit.data.tables import jobs_from_records
from provkit.formatting import ago, format_time

__all__ = [
    "Assignment",
    "Facts",
    "Mapping",
    "QUARANTINE_FIELDS",
    "ago",
    "as_time",
    "gather",
    "is_true",
    "short_time",
    "step_details",
]

# The job-status fields that describe a quarantine, in the order findings show them.
QUARANTINE_FIELDS = (
    "status_code",
    "quarantine_reason",
    "quarantine_series_began",
    "quarantine_current_began",
    "quarantine_next_attempt",
    "quarantine_series_count",
    "quarantine_error_code",
    "quarantine_error_message",
)


@dataclass(frozen=True)
class Mapping:
    """One attribute mapping: source attribute (or expression), target attribute, matching priority."""

    source: str
    expression: str
    target: str
    matching_priority: int
    default: str | None = None


@dataclass(frozen=True)
class Assignment:
    """How one user is assigned to the app.

    ``direct``: the user has an appRoleAssignment of their own; ``via_groups``: assigned groups the user is a
    direct member of; ``nested``: (nested group name or None, assigned group name) pairs through which the user
    is only a transitive member; ``since``: when the direct assignment was created (None if unknown).
    """

    direct: bool = False
    via_groups: tuple[str, ...] = ()
    nested: tuple[tuple[str | None, str], ...] = ()
    since: pd.Timestamp | None = None

    @property
    def effective(self) -> bool:
        """Assigned in a way the service honours (directly or as a direct group member)."""
        return self.direct or bool(self.via_groups)

    @property
    def any(self) -> bool:
        return self.effective or bool(self.nested)

    def words(self) -> str:
        """How the user is assigned, in words."""
        parts = []
        if self.direct:
            parts.append("assigned directly")
        if self.via_groups:
            parts.append("a member of assigned " + ", ".join(f"'{g}'" for g in self.via_groups))
        if not parts and self.nested:
            parts.append(nested_words(self.nested))
        return "; ".join(parts) if parts else "not assigned"


def nested_words(nested: Iterable[tuple[str | None, str]]) -> str:
    """'a member of 'Support Tier 2', which is nested inside assigned 'Support'' (one phrase per path)."""
    phrases = []
    for inner, outer in nested:
        if inner:
            phrases.append(f"a member of '{inner}', which is nested inside assigned '{outer}'")
        else:
            phrases.append(f"a member of a group nested inside assigned '{outer}'")
    return "; ".join(dict.fromkeys(phrases))


def object_label(row: Any) -> Any:
    """How a finding names an entry's object: its ReportableIdentifier when the log gives one, else the source name."""
    return row.reportable_identifier if isinstance(row.reportable_identifier, str) else row.source_name


def job_value(job: pd.Series | None, name: str) -> Any:
    """A field of a job-status row, or None when the row or field is missing or NA."""
    if job is None or name not in job.index:
        return None
    value = job[name]
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):
        return value


def is_true(value: Any) -> bool:
    """True for True and "True" (any case); False for anything else, NA included."""
    if value is None or value is pd.NA:
        return False
    if isinstance(value, str):
        return value.strip().lower() == "true"
    try:
        return bool(value) and not pd.isna(value)
    except (TypeError, ValueError):
        return False


def is_false(value: Any) -> bool:
    """True only for an explicit False ("False"); NA is neither true nor false."""
    if value is None or value is pd.NA:
        return False
    if isinstance(value, str):
        return value.strip().lower() == "false"
    try:
        return not pd.isna(value) and not bool(value)
    except (TypeError, ValueError):
        return False


def as_time(value: Any) -> pd.Timestamp | None:
    """A UTC timestamp, or None for missing values."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    ts = pd.Timestamp(value)
    return ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)


def short_time(when: Any) -> str:
    """'2026-11-20 11:50 UTC' ('' when missing): :func:`provkit.formatting.format_time`, for callers outside the
    checks that still import it from here."""
    return format_time(when, missing="")


def step_details(text: Any) -> dict[str, Any]:
    """A step's ``details`` JSON as a dict ({} when empty or unreadable)."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _object_mappings(schema: dict[str, Any] | None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(rule, objectMapping) pairs of the schema."""
    out = []
    for rule in (schema or {}).get("synchronizationRules") or []:
        if isinstance(rule, dict):
            for om in rule.get("objectMappings") or []:
                if isinstance(om, dict):
                    out.append((rule, om))
    return out


@dataclass
class Facts:
    """Derived facts about one app; build with :func:`gather`."""

    evidence: Evidence
    job: pd.Series | None
    sync_all: bool | None
    assignments: dict[str, Assignment] = field(default_factory=dict)
    group_names: dict[str, str] = field(default_factory=dict)
    scope: SyncScope = field(default_factory=lambda: SyncScope("unknown"))

    @property
    def now(self) -> pd.Timestamp:
        return pd.Timestamp(self.evidence.now).tz_convert(UTC)

    @property
    def events(self) -> pd.DataFrame:
        """The entries the evidence holds: every entry of the window, or, when a source summarised the logs
        itself, those of the objects a finding is about (each with its latest entry) and those the checks filter
        for. Counts over every entry and every object come from :attr:`logs`."""
        return self.evidence.tables.events

    @cached_property
    def logs(self) -> LogSummary:
        """The counts over every entry of the window (the source's own, or computed from ``events``)."""
        return self.evidence.summarise_logs()

    def steps_of(self, event_ids: Iterable[str]) -> pd.DataFrame:
        """The steps of the given entries only (from the store, only their rows are read): the checks never hold
        the whole steps table, several million rows for a million entries. Entries that are all objects' latest
        ones are served from :attr:`latest_steps`, read once."""
        wanted = {str(i) for i in event_ids}
        if wanted <= self._latest_ids:
            steps = self.latest_steps
            return steps[steps["event_id"].isin(wanted)].reset_index(drop=True)
        return self.evidence.steps_of(wanted)

    @cached_property
    def latest_steps(self) -> pd.DataFrame:
        """The steps of each object's latest entry (the sync scope and the skip causes read them)."""
        return self.evidence.steps_of(self.latest["id"] if len(self.latest) else [])

    @cached_property
    def _latest_ids(self) -> set[str]:
        return set(map(str, self.latest["id"])) if len(self.latest) else set()

    @property
    def sync_assigned(self) -> bool | None:
        """True or False when the logs settle the scope; None when it is unknown."""
        return None if self.sync_all is None else not self.sync_all

    @property
    def has_assignment_facts(self) -> bool:
        return bool(self.evidence.assignments) or bool(self.evidence.groups)

    def assignment(self, user_id: Any) -> Assignment:
        if not isinstance(user_id, str):
            return Assignment()
        return self.assignments.get(user_id.lower(), Assignment())

    @cached_property
    def groups_by_name(self) -> dict[str, dict[str, Any]]:
        """Assigned groups' facts (``evidence.groups`` values) by display name, lower-cased."""
        out = {}
        for gid, g in self.evidence.groups.items():
            if isinstance(g, dict):
                name = str(g.get("display_name") or self.group_names.get(str(gid).lower()) or gid)
                out[name.lower()] = g
        return out

    def group_not_security_enabled(self, name: str) -> bool:
        """True only when the group's facts say securityEnabled is false (unknown counts as enabled)."""
        g = self.groups_by_name.get(name.lower()) or {}
        return g.get("security_enabled") is False or is_false(g.get("security_enabled"))

    def group_is_dynamic(self, name: str) -> bool:
        g = self.groups_by_name.get(name.lower()) or {}
        return any(str(t).lower() == "dynamicmembership" for t in g.get("group_types") or [])

    # ---- schema ---------------------------------------------------------------------------------------------
    def object_mapping(self, source_object: str) -> dict[str, Any] | None:
        """The first enabled object mapping whose source object is ``source_object`` (User, Group)."""
        fallback = None
        for _rule, om in _object_mappings(self.evidence.schema):
            if str(om.get("sourceObjectName", "")).lower() == source_object.lower():
                if om.get("enabled", True):
                    return om
                fallback = fallback or om
        return fallback

    def mappings(self, source_object: str) -> list[Mapping]:
        om = self.object_mapping(source_object) or {}
        out = []
        for m in om.get("attributeMappings") or []:
            if not isinstance(m, dict):
                continue
            given = m.get("source")
            source: dict[str, Any] = given if isinstance(given, dict) else {}
            try:
                priority = int(m.get("matchingPriority") or 0)
            except (TypeError, ValueError):
                priority = 0
            out.append(
                Mapping(
                    source=str(source.get("name") or ""),
                    expression=str(source.get("expression") or source.get("name") or ""),
                    target=str(m.get("targetAttributeName") or ""),
                    matching_priority=priority,
                    default=m.get("defaultValue"),
                )
            )
        return out

    def matching(self, source_object: str) -> list[Mapping]:
        """Matching attributes, in the order the engine tries them (lowest positive priority first)."""
        found = [m for m in self.mappings(source_object) if m.matching_priority > 0]
        return sorted(found, key=lambda m: m.matching_priority)

    def groups_provisioned(self) -> bool:
        om = self.object_mapping("Group")
        return bool(om and om.get("enabled", True))

    def scoping_groups(self, source_object: str = "User") -> list[dict[str, Any]]:
        om = self.object_mapping(source_object) or {}
        given = om.get("scope")
        scope: dict[str, Any] = given if isinstance(given, dict) else {}
        return [g for g in scope.get("groups") or [] if isinstance(g, dict)]

    # ---- logs -----------------------------------------------------------------------------------------------
    @cached_property
    def latest(self) -> pd.DataFrame:
        """The latest log entry of each source object the evidence holds (by activity time), indexed by
        position; the objects by their latest state over every object are counted in :attr:`logs`."""
        return latest_entries(self.events)

    def user_record(self, user_id: Any) -> dict[str, Any] | None:
        if not isinstance(user_id, str):
            return None
        return self.evidence.users.get(user_id) or self._users_lower.get(user_id.lower())

    @cached_property
    def _users_lower(self) -> dict[str, dict[str, Any]]:
        return {k.lower(): v for k, v in self.evidence.users.items()}


def _job_row(evidence: Evidence) -> pd.Series | None:
    jobs = evidence.jobs
    if jobs is None or jobs.empty:
        if evidence.job:
            jobs = jobs_from_records(
                [evidence.job], snapshot_time=evidence.now, service_principal_id=evidence.service_principal_id
            )
        if jobs is None or jobs.empty:
            return None
    if evidence.job and "job_id" in jobs.columns:
        mine = jobs[jobs["job_id"] == evidence.job.get("id")]
        if not mine.empty:
            jobs = mine
    return jobs.sort_values("snapshot_time", kind="stable").iloc[-1]


def _assignments(evidence: Evidence) -> tuple[dict[str, Assignment], dict[str, str]]:
    direct: dict[str, pd.Timestamp | None] = {}
    group_names: dict[str, str] = {}
    for a in evidence.assignments:
        if not isinstance(a, dict):
            continue
        pid = str(a.get("principalId") or "").lower()
        kind = str(a.get("principalType") or "").lower()
        if kind == "user" and pid:
            direct[pid] = as_time(a.get("createdDateTime"))
        elif kind == "group" and pid:
            group_names[pid] = str(a.get("principalDisplayName") or pid)
    via: dict[str, list[str]] = {}
    nested: dict[str, list[tuple[str | None, str]]] = {}
    for gid, g in evidence.groups.items():
        if not isinstance(g, dict):
            continue
        name = str(g.get("display_name") or group_names.get(gid.lower()) or gid)
        group_names.setdefault(gid.lower(), name)
        members = {str(u).lower() for u in g.get("direct") or []}
        for u in members:
            via.setdefault(u, []).append(name)
        # Optional detail: the nested groups themselves ({"id", "display_name", "direct"}), to name them.
        inner_of: dict[str, str] = {}
        for inner in g.get("nested_groups") or []:
            if isinstance(inner, dict):
                for u in inner.get("direct") or []:
                    inner_of.setdefault(str(u).lower(), str(inner.get("display_name") or inner.get("id")))
        for u in g.get("transitive") or []:
            u = str(u).lower()
            if u not in members:
                nested.setdefault(u, []).append((inner_of.get(u), name))
    out: dict[str, Assignment] = {}
    for u in set(direct) | set(via) | set(nested):
        out[u] = Assignment(
            direct=u in direct,
            via_groups=tuple(via.get(u, ())),
            nested=tuple(nested.get(u, ())),
            since=direct.get(u),
        )
    return out, group_names


def _all_assigned(evidence: Evidence) -> set[str] | None:
    """Every user assigned in any way, when that is known completely (:func:`assigned_users`, which the
    workspace's findings pushdown reads too): None when a user may be assigned through a group not read."""
    return assigned_users(evidence.assignments, evidence.groups)


def gather(evidence: Evidence) -> Facts:
    """The facts the checks need, computed once."""
    assignments, group_names = _assignments(evidence)
    facts = Facts(
        evidence=evidence,
        job=_job_row(evidence),
        sync_all=None,
        assignments=assignments,
        group_names=group_names,
    )
    facts.scope = sync_scope_of(evidence, _all_assigned(evidence), facts.latest, facts.latest_steps)
    facts.sync_all = facts.scope.sync_all
    return facts
