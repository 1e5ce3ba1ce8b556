"""The apps of the simulated tenant: one service principal with one synchronization job per scenario.

An :class:`App` knows who its job evaluates (the subjects and what it makes of each), builds its cycle timeline
from the scenario's controls and the scheduled stories, and answers what each cycle's entries are about.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from provkit.sim import ids
from provkit.sim.directory import User
from provkit.sim.history import (
    DAY,
    HOUR,
    MINUTE,
    Cycle,
    Subject,
    Timeline,
    build_timeline,
)
from provkit.sim.scenarios import Control, Scenario
from provkit.sim.stories import apply_stories, story_users
from provkit.sim.timefmt import TICKS, to_ticks

if TYPE_CHECKING:
    from provkit.sim.tenant import Tenant

# Deprovisioning subjects of incremental cycles (see App.subject_for); hard deletes are scheduled stories.
LEAVERS = ("leaver-unassigned", "leaver-soft-deleted")


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
            eligible = [i for i in candidates if users.enabled[i]]
            take = iter(eligible)
            for _ in range(min(sc.direct_users, len(eligible))):
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

    def _manager_references(self, categories: dict[int, str]) -> None:
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
