"""Group membership over simulated time: joiners and leavers after the tenant's start, so a delta query (and a
second fetch) has changes to find.

The directory's groups (:mod:`provkit.sim.directory`) hold the membership at the tenant's start (``start_now``);
the apps' subjects, stories and log entries are built from that and do not move. After it, groups gain and lose
direct members by the hour, drawn from (seed, group, hour) alone, so a tenant changes the same way whenever it is
asked; an administrator's change can also be made at the current time (:meth:`Membership.change`). The members,
transitiveMembers, memberOf and groups/delta answers read the membership at the tenant's clock through this class.

A drawn leaver is a member the group had at the start, a drawn joiner any enabled user: a draw that would change
nothing (the leaver already left, the joiner is already in) is skipped, so only real changes are recorded.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import threading
from collections.abc import Iterable

from provkit.sim.directory import Directory, Group
from provkit.sim.history import HOUR

# Groups that take part in the hourly churn: every group but the one that collects disabled accounts.
NO_CHURN = frozenset({"Leavers"})


class Membership:
    """Direct user members of every group at any time since ``start`` (ticks); nested groups do not change."""

    def __init__(self, directory: Directory, seed: int, start: int, *, churn: bool = True) -> None:
        self.directory = directory
        self.seed = seed
        self.start = start
        self.churn = churn
        self._lock = threading.RLock()
        self._base: dict[int, set[int]] = {}  # group index -> members at the start (built when first needed)
        self._added: dict[int, set[int]] = {}  # members now who were not at the start
        self._removed: dict[int, set[int]] = {}  # members at the start who are not now
        # (group, user) -> [(ticks, member after)], in time order: what changed when
        self._history: dict[int, dict[int, list[tuple[int, bool]]]] = {}
        self._changes: list[tuple[int, int, int]] = []  # (ticks, group, user) of every change, in time order
        self._pending: list[
            tuple[int, int, int, bool]
        ] = []  # drawn changes not yet due: (ticks, group, user, join)
        self._drawn_hours = 0  # hours after ``start`` whose changes have been drawn
        self._applied = start  # changes at or before this time are applied

    # ---- reading ---------------------------------------------------------------------------------------------
    def members(self, group: Group, now: int) -> list[int]:
        """The group's direct user members at ``now`` (not before the last time asked), in index order."""
        with self._lock:
            self._advance(now)
            added, removed = self._added.get(group.index), self._removed.get(group.index)
            if not added and not removed:
                return group.user_members
            keep = [u for u in group.user_members if u not in (removed or ())]
            for u in sorted(added or ()):
                bisect.insort(keep, u)
            return keep

    def members_at(self, group: Group, ticks: int) -> list[int]:
        """The group's direct user members at ``ticks`` (any time since the start), in index order."""
        with self._lock:
            self._advance(max(ticks, self._applied))
            history = self._history.get(group.index, {})
            if not history:
                return group.user_members
            base = self._base_of(group)
            out = set(group.user_members)
            for u, changes in history.items():
                member = u in base
                for when, after in changes:
                    if when > ticks:
                        break
                    member = after
                (out.add if member else out.discard)(u)
            return sorted(out)

    def transitive(self, group: Group, now: int) -> list[int]:
        """Users in the group or in groups nested in it, at ``now`` (each once)."""
        seen: set[int] = set()
        out: list[int] = []
        stack, visited = [group], set()
        while stack:
            g = stack.pop()
            if g.index in visited:
                continue
            visited.add(g.index)
            for u in self.members(g, now):
                if u not in seen:
                    seen.add(u)
                    out.append(u)
            stack.extend(self.directory.groups[n] for n in g.group_members)
        return out

    def changed(
        self, since: int, until: int, groups: Iterable[int] | None = None
    ) -> dict[int, dict[int, bool]]:
        """Net changes in (since, until]: group index -> {user index: member at ``until``}; a user who joined and
        left again in between is not listed, nor a group without net changes."""
        wanted = None if groups is None else set(groups)
        with self._lock:
            self._advance(max(until, self._applied))
            lo = bisect.bisect_right(self._changes, (since, 1 << 62, 1 << 62))
            touched: dict[int, set[int]] = {}
            for when, g, u in self._changes[lo:]:
                if when > until:
                    break
                if wanted is None or g in wanted:
                    touched.setdefault(g, set()).add(u)
            out: dict[int, dict[int, bool]] = {}
            for g, users in touched.items():
                base = self._base_of(self.directory.groups[g])
                net = {}
                for u in users:
                    before, after = self._member_at(g, u, since, base), self._member_at(g, u, until, base)
                    if before != after:
                        net[u] = after
                if net:
                    out[g] = net
            return out

    # ---- changing --------------------------------------------------------------------------------------------
    def change(self, group: Group, now: int, *, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        """An administrator adds and removes direct members at ``now`` (an add of a member, or a remove of a
        non-member, changes nothing)."""
        with self._lock:
            self._advance(now)
            for u in add:
                self._apply(now, group.index, u, True)
            for u in remove:
                self._apply(now, group.index, u, False)

    # ---- internals -------------------------------------------------------------------------------------------
    def _base_of(self, group: Group) -> set[int]:
        base = self._base.get(group.index)
        if base is None:
            base = self._base[group.index] = set(group.user_members)
        return base

    def _member_at(self, g: int, u: int, ticks: int, base: set[int]) -> bool:
        member = u in base
        for when, after in self._history.get(g, {}).get(u, ()):
            if when > ticks:
                break
            member = after
        return member

    def _apply(self, ticks: int, g: int, u: int, join: bool) -> None:
        group = self.directory.groups[g]
        base = self._base_of(group)
        added, removed = self._added.setdefault(g, set()), self._removed.setdefault(g, set())
        member = (u in base and u not in removed) or u in added
        if member == join:
            return
        if join:
            (removed.discard if u in base else added.add)(u)
        else:
            (removed.add if u in base else added.discard)(u)
        self._history.setdefault(g, {}).setdefault(u, []).append((ticks, join))
        bisect.insort(self._changes, (ticks, g, u))

    def _advance(self, now: int) -> None:
        """Draw the hours up to ``now`` and apply the drawn changes that are due."""
        if now <= self._applied:
            return
        if self.churn:
            hours = (now - self.start) // HOUR + 1
            while self._drawn_hours < hours:
                self._draw_hour(self._drawn_hours)
                self._drawn_hours += 1
            self._pending.sort()
        due = bisect.bisect_right(self._pending, (now, 1 << 62, 1 << 62, True))
        for ticks, g, u, join in self._pending[:due]:
            self._apply(ticks, g, u, join)
        del self._pending[:due]
        self._applied = now

    def _draw_hour(self, hour: int) -> None:
        users = self.directory.users
        for group in self.directory.groups:
            if group.display_name in NO_CHURN:
                continue
            key = f"provkit-membership:{self.seed}:{group.index}:{hour}".encode()
            rng = random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))
            # Larger groups change more often: about one hour in six for a small group, most hours for one of
            # several thousand members.
            if rng.random() >= min(0.9, 0.15 + len(group.user_members) / 8000):
                continue
            for _ in range(1 + rng.randrange(3)):
                when = self.start + hour * HOUR + 1 + rng.randrange(HOUR - 1)
                if group.user_members and rng.random() < 0.5:
                    leaver = group.user_members[rng.randrange(len(group.user_members))]
                    self._pending.append((when, group.index, leaver, False))
                else:
                    joiner = rng.randrange(users.count)
                    if users.enabled[joiner]:
                        self._pending.append((when, group.index, joiner, True))
