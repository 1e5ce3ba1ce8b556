"""The simulated Entra tenant: directory, apps with their jobs, and their provisioning history.

``Tenant(seed=..., users=..., days=..., now=...)`` is deterministic: the same arguments give the same answers.
The server (:mod:`provkit.sim.server`) turns its methods into Graph responses; nothing here knows about HTTP.
"""

from __future__ import annotations

import json
import math
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from provkit.sim import ids
from provkit.sim.directory import DEPARTMENTS, EMEA, LOCATIONS, Group, User, Users
from provkit.sim.history import (
    DAY,
    HOUR,
    MINUTE,
    Cycle,
    Timeline,
    build_timeline,
)
from provkit.sim.scenarios import DEFAULT_SCENARIOS, SCENARIOS, SSO_ONLY_APPS, Control, Scenario
from provkit.sim.stories import apply_stories, story_users
from provkit.sim.timefmt import NEVER, TICKS, format_seconds, format_ticks, to_ticks

DISABLED_INTERVAL = "P10675199DT2H48M5.4775807S"
GROUP_NAMES = (
    "Sales",
    "Sales EMEA",
    "Marketing",
    "Engineering",
    "Finance",
    "Human Resources",
    "Support",
    "Support Tier 2",
    "Operations",
    "Legal",
    "Support Escalations",
    "Contractors",
    "Leavers",
    "Design Guild",
)
# Microsoft 365 groups that are not security-enabled (securityEnabled false, groupTypes ["Unified"]).
NOT_SECURITY_ENABLED = ("Design Guild",)


@dataclass(frozen=True)
class Subject:
    """An object an app's cycle evaluates, and what the app makes of it."""

    kind: str  # User | Group
    index: int
    category: str  # ok, not-assigned, nested-only, disabled, broken, scope-fail, matching-empty, ...


class Directory:
    """Users and groups with their memberships (user indexes, nested group indexes)."""

    def __init__(self, users: Users, codec: ids.IdCodec, domain: str) -> None:
        self.users = users
        self.codec = codec
        self.groups: list[Group] = []
        by_name: dict[str, Group] = {}
        for gi, name in enumerate(GROUP_NAMES):
            nickname = name.lower().replace(" ", "-")
            security_only = name in ("Support Escalations", "Leavers", "Contractors")
            unified = name in NOT_SECURITY_ENABLED
            group = Group(
                index=gi,
                id=codec.encode(ids.GROUP, 0, 0, gi),
                display_name=name,
                mail_nickname=nickname,
                mail=None if security_only else f"{nickname}@{domain}",
                mail_enabled=not security_only,
                security_enabled=not unified,
                description=f"{name} ({'security group' if security_only else 'Microsoft 365 group'})",
                group_types=("Unified",) if unified else (),
            )
            self.groups.append(group)
            by_name[name] = group
        self.by_name = by_name
        emea = {k for k, loc in enumerate(LOCATIONS) if loc[2] in EMEA}
        for i in range(users.count):
            if not users.enabled[i]:
                by_name["Leavers"].user_members.append(i)
                continue
            dept = DEPARTMENTS[users.dept[i]]
            if users.contractor[i]:
                by_name["Contractors"].user_members.append(i)
            if dept == "Sales" and users.location[i] in emea:
                by_name["Sales EMEA"].user_members.append(i)
            elif dept == "Support" and i % 4 == 0:
                by_name["Support Tier 2"].user_members.append(i)
            else:
                by_name[dept].user_members.append(i)
            if dept == "Support" and i % 7 == 1:
                by_name["Support Escalations"].user_members.append(i)
            if dept == "Marketing" and i % 3 == 2:
                by_name["Design Guild"].user_members.append(i)
        by_name["Sales"].group_members.append(by_name["Sales EMEA"].index)
        by_name["Support"].group_members.append(by_name["Support Tier 2"].index)

    def group_by_id(self, gid: str) -> Group | None:
        decoded = self.codec.decode(gid)
        if decoded and decoded[0] == ids.GROUP and decoded[3] < len(self.groups):
            return self.groups[decoded[3]]
        return None

    def user_by_id(self, uid: str) -> User | None:
        decoded = self.codec.decode(uid)
        if decoded and decoded[0] == ids.USER and decoded[3] < self.users.count:
            return self.users.get(decoded[3])
        return None

    def transitive_users(self, group: Group) -> list[int]:
        seen: set[int] = set()
        out: list[int] = []
        stack = [group]
        visited_groups: set[int] = set()
        while stack:
            g = stack.pop()
            if g.index in visited_groups:
                continue
            visited_groups.add(g.index)
            for u in g.user_members:
                if u not in seen:
                    seen.add(u)
                    out.append(u)
            stack.extend(self.groups[n] for n in g.group_members)
        return out


class App:
    """One service principal with a synchronization job following one scenario."""

    def __init__(self, tenant: Tenant, index: int, scenario: Scenario) -> None:
        self.tenant = tenant
        self.index = index
        self.scenario = scenario
        codec = tenant.codec
        self.sp_id = codec.encode(ids.SERVICE_PRINCIPAL, index)
        self.app_id = codec.encode(ids.APPLICATION, index)
        tid_hex = tenant.tenant_id.replace("-", "")
        if scenario.template_id == "scim":
            self.job_id = f"scim.{tid_hex}.{codec.encode(ids.MISC, index, 7)}"
        else:
            self.job_id = f"{scenario.job_prefix}.{tid_hex}"
        self.display_name = scenario.app
        self.controls: list[tuple[int, Control]] = []
        self._lock = threading.Lock()
        self._timeline: Timeline | None = None
        self._timeline_now: int | None = None
        self._build_subjects()
        self.story_users = story_users(self)
        self.validate_ok = scenario.name not in ("bad-credentials", "disabled")

    # ---- scope ---------------------------------------------------------------------------------------------
    def _build_subjects(self) -> None:
        t = self.tenant
        sc = self.scenario
        directory = t.directory
        users = t.users
        self.assigned_groups = [directory.by_name[g] for g in sc.groups]
        self.direct_users: list[int] = []
        self.broken: set[int] = set()
        self.managers: dict[int, int] = {}  # user index -> manager's user index (manager-references)
        self.late_manager: int | None = None
        self.member_ref_groups: set[int] = set()
        subjects: list[Subject] = []
        categories: dict[int, str] = {}
        if sc.scope == "all":
            enabled = users.enabled
            for i in range(users.count):
                categories[i] = "ok" if enabled[i] else "disabled-expected"
        else:
            direct_members: set[int] = set()
            nested_only: set[int] = set()
            unentitled: set[int] = set()  # members of an assigned group that is not security-enabled
            for g in self.assigned_groups:
                if not g.security_enabled:
                    unentitled.update(g.user_members)
                    continue
                direct_members.update(g.user_members)
                for ng in g.group_members:
                    nested_only.update(directory.transitive_users(directory.groups[ng]))
            nested_only -= direct_members
            unentitled -= direct_members
            # Direct assignments: a few healthy users outside the groups, and the problem subjects.
            rng = random.Random(t.seed * 31 + self.index)
            pool = range(users.count) if users.count <= 5000 else rng.sample(range(users.count), 5000)
            candidates = [
                i for i in pool if i not in direct_members and i not in nested_only and i not in unentitled
            ]
            rng.shuffle(candidates)
            enabled = [i for i in candidates if users.enabled[i]]
            take = iter(enabled)
            for _ in range(min(sc.direct_users, len(enabled))):
                self.direct_users.append(next(take))
            if "disabled" in sc.problems:
                self.direct_users.extend([i for i in candidates if not users.enabled[i]][:3])
            if "broken" in sc.problems:
                chosen = [i for i in take][:3]
                self.broken.update(chosen)
                self.direct_users.extend(chosen)
            for i in sorted(direct_members) + self.direct_users:
                categories[i] = self._classify(users.get(i))
            if "nested-only" in sc.problems:
                for i in sorted(nested_only):
                    categories[i] = "nested-only"
            for i in sorted(unentitled):
                categories.setdefault(i, "group-not-security")
            # A few failures from the reference's catalog, on otherwise healthy users.
            ok = [i for i in sorted(categories) if categories[i] == "ok"]
            if "conflict" in sc.problems:
                for i in ok[:2]:
                    categories[i] = "conflict"
            if "duplicate" in sc.problems:
                for i in ok[2:3]:
                    categories[i] = "duplicate"
            if "manager-references" in sc.problems:
                self._manager_references(categories)
        for i in sorted(categories):
            subjects.append(Subject("User", i, categories[i]))
        if sc.provision_groups:
            for g in self.assigned_groups:
                value = g.mail if sc.group_matching_attribute == "mail" else g.display_name
                category = "ok" if value else "group-matching-empty"
                if g.index in self.member_ref_groups:
                    category = "member-ref"
                subjects.append(Subject("Group", g.index, category))
        self.subjects = subjects
        self.categories = categories
        self.in_scope = sum(1 for s in subjects if s.category in ("ok", "conflict", "duplicate"))
        if sc.name == "escrow-quarantine":
            # After the mapping change, 90% of users fail on the attribute the target does not have.
            self.broken_subjects = [s for s in subjects if s.category == "ok" and s.index % 10 != 0]
        else:
            self.broken_subjects = []

    def _manager_references(self, categories: dict[int, int | str]) -> None:
        """A manager who was not in scope yet (a future hire, disabled at first) and comes into scope later;
        users whose manager is that one, or a user never assigned; a group with that late member."""
        directory = self.tenant.directory
        last = self.assigned_groups[-1]
        late = next((i for i in last.user_members if categories.get(i) == "ok"), None)
        if late is None:
            return
        self.late_manager = late
        categories[late] = "late-manager"
        self.member_ref_groups.add(last.index)
        outsider = next(i for i in range(self.tenant.users.count) if i not in categories)
        first = self.assigned_groups[0]
        refs = [i for i in first.user_members if categories.get(i) == "ok"][:6]
        for k, i in enumerate(refs):
            categories[i] = "manager-ref"
            self.managers[i] = late if k < 4 else outsider
        del directory  # the directory is only read through the groups

    def _classify(self, u: User) -> str:
        sc = self.scenario
        if u.index in self.broken:
            return "broken"
        if not u.account_enabled:
            return "disabled"
        for clause in sc.scoping:
            if not clause_passes(clause.operator, u.attribute(clause.attribute), clause.values):
                return "scope-fail"
        if not u.attribute(sc.matching_attribute):
            return "matching-empty"
        for source, _target in sc.required_attributes:
            if not u.attribute(source):
                return "required-missing"
        return "ok"

    # ---- timeline ------------------------------------------------------------------------------------------
    def timeline(self) -> Timeline:
        now = self.tenant.now_ticks
        with self._lock:
            if self._timeline is None or self._timeline_now != now:
                self._timeline = self._build_timeline(now)
                self._timeline_now = now
            return self._timeline

    def invalidate(self) -> None:
        with self._lock:
            self._timeline = None

    @cached_property
    def origin(self) -> int:
        t = self.tenant
        sc = self.scenario
        rng = random.Random(t.seed * 17 + self.index)
        if sc.created_only:
            return t.now_ticks + 365 * DAY  # never started: no cycle before now
        if sc.started_fraction is not None:
            minutes = len(self.subjects) * sc.minutes_per_object
            return t.now_ticks - int(minutes * MINUTE * sc.started_fraction)
        if sc.start_before is not None:
            return t.now_ticks - to_ticks(datetime(1970, 1, 1, tzinfo=UTC) + sc.start_before)
        return t.window_start + (10 + rng.randrange(30)) * MINUTE

    def _build_timeline(self, now: int) -> Timeline:
        t = self.tenant
        sc = self.scenario
        controls: list[tuple[int, Control]] = []
        initial_end_guess = self.origin + int(len(self.subjects) * sc.minutes_per_object * MINUTE) + HOUR
        for c in sc.controls:
            assert c.before is not None
            when = t.start_now_ticks - int(c.before.total_seconds() * TICKS)
            if when > initial_end_guess:
                controls.append((when, c))
        controls.extend(self.controls)
        failures = len(self.broken_subjects)
        rate = 0.004 * max(self.in_scope, 1) + 0.6
        cred = credential_error(sc)
        timeline = build_timeline(
            seed=t.seed,
            app_index=self.index,
            origin=self.origin,
            now=now,
            window_start=t.window_start,
            controls=controls,
            scope_size=len(self.subjects),
            minutes_per_object=sc.minutes_per_object,
            change_rate=rate,
            broken_failures=failures,
            credential_error=cred,
            counts=self.cycle_counts,
        )
        return apply_stories(self, timeline)

    def unassign_controls(self) -> list[tuple[int, Control]]:
        """(time, control) of the scenario's group unassignments that fall after its first cycle."""
        t = self.tenant
        initial_end_guess = (
            self.origin + int(len(self.subjects) * self.scenario.minutes_per_object * MINUTE) + HOUR
        )
        out = []
        for c in self.scenario.controls:
            if c.kind == "unassign" and c.before is not None:
                when = t.start_now_ticks - int(c.before.total_seconds() * TICKS)
                if when > initial_end_guess:
                    out.append((when, c))
        return out

    FAILING = frozenset({"conflict", "required-missing", "duplicate", "manager-ref", "member-ref"})
    REFERENCE_FAILING = frozenset({"manager-ref", "member-ref"})
    LEAVING = frozenset({"leaver-unassigned", "leaver-soft-deleted"})
    SKIPPED = frozenset(
        {
            "not-assigned",
            "group-not-security",
            "nested-only",
            "disabled",
            "broken",
            "scope-fail",
            "disabled-expected",
            "matching-empty",
            "group-matching-empty",
            "late-manager",
            "gone-unassigned-deleted",
            "leaver-staged",
        }
    )

    def is_redundant(self, cycle: Cycle, i: int) -> bool:
        """Whether an in-scope object's entry is a no-op (RedundantExport) rather than an update."""
        if cycle.mode in ("initial-reset", "broken-initial"):
            return True
        if cycle.mode != "incremental":
            return False
        return (cycle.no * 2_654_435_761 + i * 40_503 + self.tenant.seed) % 100 < 12

    def entry_fails(self, cycle: Cycle, subject: Subject) -> bool:
        if cycle.mode in ("cred-fail", "escrow-retry"):
            return True
        if "scim-patch" in self.scenario.problems and (
            subject.category in self.LEAVING or (subject.kind == "Group" and cycle.kind == "incremental")
        ):
            return True  # the endpoint refuses the PATCH of a disable or of a member removal
        if cycle.mode == "broken-initial" and subject in self.broken_set:
            return True
        return subject.category in self.FAILING

    @cached_property
    def broken_set(self) -> frozenset[Subject]:
        return frozenset(self.broken_subjects)

    def cycle_counts(self, cycle: Cycle) -> tuple[int, int]:
        """(failures, exported) over the cycle's log entries."""
        failures = exported = 0
        if cycle.mode in ("initial-first", "initial-reset", "broken-initial"):
            for i, s in enumerate(self.subjects):
                if self.entry_fails(cycle, s):
                    failures += 1
                elif s.category not in self.SKIPPED and not self.is_redundant(cycle, i):
                    exported += 1
            return failures, exported
        if cycle.mode == "escrow-retry":
            return cycle.entries, 0
        for i in range(cycle.entries):
            s = self.subject_for(cycle, i)
            if self.entry_fails(cycle, s):
                failures += 1
            elif s.category in LEAVERS or s.category == "leaver-hard-deleted":
                exported += 1
            elif s.category not in self.SKIPPED and not self.is_redundant(cycle, i):
                exported += 1
        return failures, exported

    # ---- log entries ---------------------------------------------------------------------------------------
    def subject_for(self, cycle: Cycle, i: int) -> Subject:
        scheduled = cycle.entries - len(cycle.extra)
        if i >= scheduled:
            return cycle.extra[i - scheduled]
        if cycle.mode in ("initial-first", "initial-reset", "broken-initial"):
            return self.subjects[i]
        if cycle.mode == "escrow-retry":
            return self.broken_subjects[i]
        rng = random.Random((self.tenant.seed * 1_000_033 + self.index * 7_777 + cycle.no) * 65_537 + i)
        if self.scenario.scope == "assigned" and rng.random() < 0.15:
            # A change to someone outside the app's assignments: the service still evaluates and skips it.
            u = rng.randrange(self.tenant.users.count)
            if u not in self.categories:
                return Subject("User", u, "not-assigned")
        if self.groups_changing and rng.random() < 0.08:
            return self.groups_changing[rng.randrange(len(self.groups_changing))]
        pick = rng.randrange(len(self.subjects))
        subject = self.subjects[pick]
        while subject.kind == "User" and subject.index in self.story_users:
            # a user with a scheduled story changes only through it
            pick = (pick + 1) % len(self.subjects)
            subject = self.subjects[pick]
        leaving = (self.tenant.seed * 92_821 + self.index * 6_271 + cycle.no * 3_571 + i * 131) % 1000
        if (
            cycle.mode == "incremental"
            and subject.kind == "User"
            and subject.category == "ok"
            and leaving < self.scenario.leavers_per_mille
        ):
            # Deprovisioning (reference 3.5): a user unassigned or soft-deleted (disable). A hard delete
            # (delete) comes only after an earlier soft delete of the same user, so it is a scheduled story
            # (provkit.sim.stories), as are staged deletes (a cycle past the deletion threshold).
            kinds = LEAVERS if self.scenario.scope == "assigned" else LEAVERS[1:]
            return Subject("User", subject.index, kinds[leaving % len(kinds)])
        return subject

    @cached_property
    def groups_changing(self) -> list[Subject]:
        """Group subjects whose membership changes in incremental cycles often enough to be seen (the SCIM
        PATCH scenario's member removals)."""
        if "scim-patch" not in self.scenario.problems:
            return []
        return [s for s in self.subjects if s.kind == "Group" and s.category == "ok"]

    def visible_entries(self, cycle: Cycle) -> int:
        """Entries of ``cycle`` written by now (the window's start is :meth:`first_visible`)."""
        return cycle.entries_before(self.tenant.now_ticks + 1)

    def first_visible(self, cycle: Cycle) -> int:
        return cycle.entries_before(self.tenant.window_start)


def clause_passes(operator: str, value: str | None, values: tuple[str, ...]) -> bool:
    """Evaluate one scoping clause the way the service does: null or empty values evaluate false."""
    op = operator.upper().replace("_", " ")
    if op == "IS NULL":
        return not value
    if op == "IS NOT NULL":
        return bool(value)
    if not value:
        return False
    if op == "EQUALS":
        return value in values
    if op == "NOT EQUALS":
        return value not in values
    if op == "IS TRUE":
        return value.lower() == "true"
    if op == "IS FALSE":
        return value.lower() == "false"
    return False


def credential_error(sc: Scenario) -> tuple[str, str]:
    if sc.template_id == "scim":
        return (
            "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",
            "We were unable to validate the credentials: the SCIM endpoint returned HTTP 401 (Unauthorized). "
            "Check that the Tenant URL is correct and that the Secret Token is valid and not expired.",
        )
    return (
        f"{sc.connector}InvalidCredentials",
        f"Your {sc.app} credentials are invalid: the API answered 401 Unauthorized. "
        "Reauthorize the connection in the Provisioning blade and test the connection.",
    )


# Deprovisioning subjects of incremental cycles (see App.subject_for); hard deletes are scheduled stories.
LEAVERS = ("leaver-unassigned", "leaver-soft-deleted")

_EXECUTION_COUNTERS = (
    "countEntitled",
    "countEntitledForProvisioning",
    "countEscrowed",
    "countEscrowedRaw",
    "countExported",
    "countExports",
    "countImported",
    "countImportedDeltas",
    "countImportedReferenceDeltas",
)


@dataclass
class Tenant:
    """A deterministic simulated tenant. Times are ticks (100 ns) since the epoch, UTC."""

    seed: int = 7
    users_count: int = 6000
    days: int = 7
    now: datetime | None = None
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    domain: str = "contoso.com"
    tenant_name: str = "Contoso"
    premium: bool = True  # False: no Entra ID P1/P2, the reporting endpoints answer the licence 403
    # True: /auditLogs/provisioning refuses (400) operators and orderings its v1.0 page does not document,
    # and /auditLogs/directoryAudits refuses "or"
    documented_queries_only: bool = False
    # Late entries: this share of log entries is written ``late_minutes`` after its activityDateTime (the real
    # service logs with a delay), so a query made before then does not see them. 0 by default.
    late_share: float = 0.0
    late_minutes: float = 0.0
    apps: list[App] = field(init=False)

    def __post_init__(self) -> None:
        if self.now is None:
            self.now = datetime.now(UTC).replace(microsecond=0)
        if self.now.tzinfo is None:
            self.now = self.now.replace(tzinfo=UTC)
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
        if self.users_count < 50:
            raise ValueError("the simulated tenant needs at least 50 users")
        if self.days < 1:
            raise ValueError("--days must be at least 1")
        self.codec = ids.IdCodec(self.seed)
        self.tenant_id = self.codec.encode(*ids.TENANT_ID)
        self.start_now_ticks = to_ticks(self.now)
        self.now_ticks = self.start_now_ticks
        self.window_start = self.now_ticks - self.days * DAY
        self.users = Users(self.seed, self.users_count, self.domain, self.codec, self.now)
        self.directory = Directory(self.users, self.codec, self.domain)
        self.apps = [App(self, i, SCENARIOS[name]) for i, name in enumerate(self.scenarios)]
        self.sso_apps = [
            (len(self.apps) + k, name) for k, name in enumerate(SSO_ONLY_APPS)
        ]  # (index, display name)
        self._lock = threading.Lock()

    # ---- late entries --------------------------------------------------------------------------------------
    def written(self, ticks: int, app: int, cycle: int, index: int) -> bool:
        """Whether the entry at ``ticks`` (app index, cycle number, entry index) has been written by now: always,
        unless it is one of the ``late_share`` entries, which appear ``late_minutes`` after their time."""
        if not self.late_share or ticks <= self.now_ticks - int(self.late_minutes * MINUTE):
            return True
        draw = ((app * 1_000_003 + cycle) * 1_000_033 + index) * 2_654_435_761 + self.seed
        return (draw % 1_000_000) / 1_000_000 >= self.late_share

    # ---- clock ---------------------------------------------------------------------------------------------
    def advance(self, minutes: float) -> None:
        """Move the simulated clock forward; later cycles become visible."""
        with self._lock:
            self.now_ticks += int(minutes * MINUTE)

    @property
    def now_text(self) -> str:
        return format_ticks(self.now_ticks)

    # ---- look-ups ------------------------------------------------------------------------------------------
    def app_by_sp(self, sp_id: str) -> App | None:
        for app in self.apps:
            if app.sp_id == sp_id:
                return app
        return None

    def app_by_app_id(self, app_id: str) -> App | None:
        for app in self.apps:
            if app.app_id == app_id:
                return app
        return None

    # ---- Graph JSON: directory -----------------------------------------------------------------------------
    def service_principals(self) -> list[dict]:
        out = [self._sp_json(a.index, a.sp_id, a.app_id, a.display_name, True) for a in self.apps]
        for index, name in self.sso_apps:
            sp_id = self.codec.encode(ids.SERVICE_PRINCIPAL, index)
            app_id = self.codec.encode(ids.APPLICATION, index)
            out.append(self._sp_json(index, sp_id, app_id, name, False))
        return out

    def service_principal(self, sp_id: str) -> dict | None:
        for sp in self.service_principals():
            if sp["id"] == sp_id:
                return sp
        return None

    def _sp_json(self, index: int, sp_id: str, app_id: str, name: str, provisioning: bool) -> dict:
        tags = ["WindowsAzureActiveDirectoryIntegratedApp"]
        return {
            "id": sp_id,
            "appId": app_id,
            "displayName": name,
            "appDisplayName": name,
            "servicePrincipalType": "Application",
            "accountEnabled": True,
            "appOwnerOrganizationId": self.tenant_id,
            "preferredSingleSignOnMode": "saml",
            "tags": tags,
            "appRoles": [
                {
                    "id": self.codec.encode(ids.MISC, index, 1),
                    "displayName": "User",
                    "value": None,
                    "allowedMemberTypes": ["User"],
                    "isEnabled": True,
                    "description": "User",
                }
            ],
        }

    def app_role_assigned_to(self, app: App) -> list[dict]:
        out = []
        role_id = self.codec.encode(ids.MISC, app.index, 1)
        created = format_seconds(app.origin - DAY)
        gone = app.timeline().unassigned
        for g in app.assigned_groups:
            if g.display_name in gone:
                continue
            out.append(self._assignment(app, "Group", g.id, g.display_name, role_id, created, g.index))
        for u in app.direct_users:
            user = self.users.get(u)
            out.append(self._assignment(app, "User", user.id, user.display_name, role_id, created, 1000 + u))
        return out

    def _assignment(
        self, app: App, ptype: str, pid: str, pname: str, role: str, created: str, k: int
    ) -> dict:
        return {
            "id": self.codec.encode(ids.ASSIGNMENT, app.index, 0, k).replace("-", "")[:43],
            "appRoleId": role,
            "createdDateTime": created,
            "principalDisplayName": pname,
            "principalId": pid,
            "principalType": ptype,
            "resourceDisplayName": app.display_name,
            "resourceId": app.sp_id,
        }

    # ---- Graph JSON: jobs ----------------------------------------------------------------------------------
    def jobs(self, app: App) -> list[dict]:
        return [self.job(app)]

    def job(self, app: App) -> dict:
        """The job as GET .../synchronization/jobs/{id} returns it, with the documented quirks: steady-state
        times "0001-01-01T00:00:00Z" until reached, a not-yet-run lastExecution before the first run,
        troubleshootingUrl "" or null, an error code "None" on some apps' runs."""
        tl = app.timeline()
        now = self.now_ticks
        sc = app.scenario
        if sc.created_only:
            return self._created_job(app)
        done = [c for c in tl.cycles if c.end <= now]
        running = next((c for c in tl.cycles if c.start <= now < c.end), None)

        def execution(c: Cycle | None) -> dict | None:
            if c is None:
                return None
            return {
                "activityIdentifier": self.codec.encode(ids.ACTIVITY, app.index, c.no),
                "countEntitled": c.entries - c.failures if c.mode != "attempt" else 0,
                "countEntitledForProvisioning": c.entries - c.failures if c.mode != "attempt" else 0,
                # reference failures (manager, members) are escrows too, but not counted toward quarantine
                "countEscrowed": c.failures - c.reference_failures,
                "countEscrowedRaw": c.failures + c.reference_escrows,
                "countExported": c.exported,
                "countExports": c.exported + c.failures,
                "countImported": c.entries,
                "countImportedDeltas": c.entries if c.kind == "incremental" else 0,
                "countImportedReferenceDeltas": 0,
                "state": c.state,
                "error": (
                    {"code": c.error_code, "message": c.error_message, "tenantActionable": True}
                    if c.error_code
                    # documented "no error": code "None" with an empty message; null on other apps (both
                    # accepted by the reader; which one a healthy run shows is an inference)
                    else (
                        {"code": "None", "message": "", "tenantActionable": False} if app.index % 2 else None
                    )
                ),
                "timeBegan": format_ticks(c.start),
                "timeEnded": format_ticks(c.end),
            }

        last = done[-1] if done else None
        # The documented job "just after start": a lastExecution that has not happened yet.
        not_yet = {
            "activityIdentifier": None,
            **{k: 0 for k in _EXECUTION_COUNTERS},
            "state": "Failed",
            "timeBegan": NEVER,
            "timeEnded": NEVER,
            "error": {"code": "None", "message": "", "tenantActionable": False},
        }
        last_ok = next((c for c in reversed(done) if c.state == "Succeeded"), None)
        last_exports = next((c for c in reversed(done) if c.state == "Succeeded" and c.exported > 0), None)
        steady = [c for c in done if c.state == "Succeeded" and not c.failures]
        successive = 0
        for c in reversed(done):
            if c.state != "Failed":
                break
            successive += 1
        if tl.disabled_at is not None:
            code, sched_state, interval = "Paused", "Disabled", DISABLED_INTERVAL
        elif tl.paused_at is not None:
            code, sched_state, interval = "Paused", "Paused", "PT40M"
        elif tl.quarantine is not None:
            code, sched_state, interval = "Quarantine", "Active", "PT40M"
        elif not done:
            code, sched_state, interval = "NotRun", "Active", "PT40M"
        else:
            code, sched_state, interval = "Active", "Active", "PT40M"
        progress = []
        if running is not None and running.entries:
            total_units = max(1, math.ceil(running.entries / 100))
            step = 20 * MINUTE
            t = running.start + step
            while t <= now:
                done_units = min(total_units, (running.entries_before(t) * total_units) // running.entries)
                progress.append(
                    {
                        "completedUnits": done_units,
                        "totalUnits": total_units,
                        "units": "Pages",
                        "progressObservationDateTime": format_ticks(t),
                    }
                )
                t += step
            progress = progress[-12:]
        q = tl.quarantine
        # A stopped job keeps a quarantine block with empty dates, as the documented get example of a paused job
        # shows it (synchronization-synchronizationjob-get.md): not a quarantine, and read as none.
        leftover = {
            "currentBegan": "",
            "nextAttempt": "",
            "reason": "EncounteredBaseEscrowThreshold",
            "seriesBegan": "",
            "seriesCount": 1,
            "error": {"code": "None", "message": "", "tenantActionable": False},
        }
        user_key = f"User to {sc.target_user_object}"
        synced = sum(c.exported for c in done if c.kind == "initial")
        entry_counts = [{"key": user_key, "value": synced}]
        if sc.provision_groups:
            entry_counts.append({"key": "Group to Group", "value": len(app.assigned_groups)})
        return {
            "id": app.job_id,
            "templateId": sc.template_id,
            "schedule": {"expiration": None, "interval": interval, "state": sched_state},
            "status": {
                "code": code,
                "countSuccessiveCompleteFailures": successive,
                "escrowsPruned": False,
                "steadyStateFirstAchievedTime": format_ticks(steady[0].end) if steady else NEVER,
                "steadyStateLastAchievedTime": format_ticks(steady[-1].end) if steady else NEVER,
                # documented both ways: "" on a job just started, null on others
                "troubleshootingUrl": "" if app.index % 2 else None,
                "synchronizedEntryCountByType": entry_counts,
                "progress": progress,
                "lastExecution": execution(last) if last is not None else not_yet,
                "lastSuccessfulExecution": execution(last_ok),
                "lastSuccessfulExecutionWithExports": execution(last_exports),
                "quarantine": (
                    {
                        "currentBegan": format_ticks(q.current_began),
                        "nextAttempt": format_ticks(q.next_attempt),
                        "reason": q.reason,
                        "seriesBegan": format_ticks(q.series_began),
                        "seriesCount": q.series_count,
                        "error": {"code": q.error_code, "message": q.error_message, "tenantActionable": True},
                    }
                    if q is not None
                    else (leftover if tl.paused_at is not None else None)
                ),
            },
            "synchronizationJobSettings": [
                {"name": "QuarantineTooManyDeletesThreshold", "value": str(sc.delete_threshold)},
                {"name": "AzureIngestionAttributeOptimization", "value": "False"},
            ],
        }

    def _created_job(self, app: App) -> dict:
        """The documented job just created (cross-tenant guide, step 8): schedule Disabled, code Paused, every
        execution null, steady-state times 0001-01-01, no progress, no synchronized entries."""
        return {
            "id": app.job_id,
            "templateId": app.scenario.template_id,
            "schedule": {"expiration": None, "interval": "PT40M", "state": "Disabled"},
            "status": {
                "code": "Paused",
                "countSuccessiveCompleteFailures": 0,
                "escrowsPruned": False,
                "lastExecution": None,
                "lastSuccessfulExecution": None,
                "lastSuccessfulExecutionWithExports": None,
                "progress": [],
                "quarantine": None,
                "steadyStateFirstAchievedTime": NEVER,
                "steadyStateLastAchievedTime": NEVER,
                "synchronizedEntryCountByType": [],
                "troubleshootingUrl": None,
            },
            "synchronizationJobSettings": [
                {"name": "AzureIngestionAttributeOptimization", "value": "False"},
                {"name": "LookaheadQueryEnabled", "value": "False"},
            ],
        }

    def schema(self, app: App) -> dict:
        from provkit.sim.schema import schema_json

        return schema_json(self, app)

    # ---- directory audits ----------------------------------------------------------------------------------
    def directory_audits(self) -> list[dict]:
        out = []
        for app in self.apps:
            for k, audit in enumerate(app.timeline().audits):
                out.append(
                    {
                        "id": f"Sync_{self.codec.encode(ids.AUDIT, app.index, k)}",
                        "category": "ProvisioningManagement",
                        "correlationId": self.codec.encode(ids.AUDIT, app.index, k, 1),
                        "result": "success",
                        "resultReason": audit.reason,
                        "activityDisplayName": audit.activity,
                        "activityDateTime": format_ticks(audit.time),
                        "loggedByService": "Account Provisioning",
                        "operationType": "Update" if audit.activity != "Quarantine" else "Quarantine",
                        "initiatedBy": self._audit_actor(audit.actor),
                        "targetResources": [
                            {
                                "id": app.sp_id,
                                "displayName": app.display_name,
                                "type": "ServicePrincipal",
                                "userPrincipalName": None,
                                "modifiedProperties": [
                                    {"displayName": k2, "oldValue": None, "newValue": json.dumps(v)}
                                    for k2, v in audit.details.items()
                                ],
                            }
                        ],
                        "additionalDetails": [
                            {"key": "JobId", "value": app.job_id},
                            {"key": "Reason", "value": audit.reason},
                        ],
                    }
                )
            out.extend(self._object_audits(app))
        out.sort(key=lambda a: a["activityDateTime"], reverse=True)
        return out

    def _audit_actor(self, actor: object) -> dict:
        """initiatedBy of an audit: the provisioning service, the API caller (an app-only caller is an app),
        or the scenario's admin working in the portal."""
        if actor == "service":
            return {
                "app": {
                    "appId": None,
                    "displayName": "Azure AD Provisioning Service",
                    "servicePrincipalId": None,
                    "servicePrincipalName": None,
                },
                "user": None,
            }
        if isinstance(actor, dict):
            return actor
        return {
            "user": {
                "id": self.users.get(0).id,
                "displayName": None,
                "userPrincipalName": f"admin@{self.domain}",
                "ipAddress": "203.0.113.24",
            },
            "app": None,
        }

    # Per-object audits rendered for the newest cycle of each app: enough to show they exist (a real app logs
    # one per exported object, thousands a day), few enough to keep the audit list cheap to serve.
    OBJECT_AUDITS_PER_APP = 12

    def _object_audits(self, app: App) -> list[dict]:
        """ "Synchronization rule action" and "Export" audits for the first objects exported in the app's newest
        cycle, shaped like the documented examples (reference 1.8): ids ``Sync_<correlationId>_<5 letters>_<n>``,
        the result reason naming the user and the target."""
        from provkit.sim.entries import render_entry

        cycles = [c for c in app.timeline().cycles if c.end <= self.now_ticks and c.entries]
        if not cycles:
            return []
        cycle = cycles[-1]
        out: list[dict] = []
        for i in range(min(cycle.entries, 200)):
            if len(out) >= self.OBJECT_AUDITS_PER_APP:
                break
            entry = render_entry(app, cycle, i)
            action = entry["provisioningAction"]
            if entry["provisioningStatusInfo"]["status"] != "success" or action not in ("create", "update"):
                continue
            kind = entry["sourceIdentity"]["identityType"]
            name = entry["targetIdentity"]["displayName"] or entry["sourceIdentity"]["displayName"]
            verb = "created" if action == "create" else "updated"
            correlation = self.codec.encode(ids.AUDIT, app.index, 1 << 20, i)
            for n, (activity, reason) in enumerate(
                (
                    (
                        "Synchronization rule action",
                        f"{kind} '{name}' will be {verb} in {app.scenario.app} ({kind} is active and assigned "
                        f"in Azure Active Directory, but no matching {kind} was found in {app.scenario.app})"
                        if action == "create"
                        else f"{kind} '{name}' will be {verb} in {app.scenario.app}",
                    ),
                    ("Export", f"{kind} '{name}' was {verb} in {app.scenario.app}"),
                )
            ):
                letters = "".join(chr(ord("a") + (i * 7 + n * 3 + k) % 26) for k in range(5))
                out.append(
                    {
                        "id": f"Sync_{correlation}_{letters}_{i * 2 + n}",
                        "category": "ProvisioningManagement",
                        "correlationId": correlation,
                        "result": "success",
                        "resultReason": reason,
                        "activityDisplayName": activity,
                        "activityDateTime": entry["activityDateTime"],
                        "loggedByService": "Account Provisioning",
                        "operationType": "Update",
                        "initiatedBy": self._audit_actor("service"),
                        "targetResources": [
                            {
                                "id": app.sp_id,
                                "displayName": app.display_name,
                                "type": "ServicePrincipal",
                                "userPrincipalName": None,
                                "modifiedProperties": [],
                            },
                            {
                                "id": entry["sourceIdentity"]["id"],
                                "displayName": entry["sourceIdentity"]["displayName"],
                                "type": kind,
                                "userPrincipalName": None,
                                "modifiedProperties": [],
                            },
                        ],
                        "additionalDetails": [{"key": "JobId", "value": app.job_id}],
                    }
                )
        return out

    # ---- state-changing actions (POST) ---------------------------------------------------------------------
    def control(self, app: App, action: str, body: dict | None = None, actor: object = None) -> None:
        """start, pause or restart a job at the current simulated time; ``actor`` is the audit's initiatedBy."""
        now = self.now_ticks
        if action == "pause":
            app.controls.append((now, Control("pause", actor=actor)))
        elif action == "start":
            app.controls.append((now, Control("resume", actor=actor)))
        elif action == "restart":
            app.controls.append((now, Control("reset", reason="restart", actor=actor)))
        else:
            raise ValueError(action)
        app.invalidate()


__all__ = ["Tenant", "App", "Subject", "clause_passes"]
