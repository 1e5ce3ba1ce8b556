"""Scheduled changes to single objects, woven into an app's cycles after its timeline is built.

A random change in an incremental cycle has no memory; some stories need one:
- deprovisioning (reference 3.5): a user soft-deleted in Entra ID is disabled in the app, and deleted there only
  at the hard delete, up to 30 days later (sooner when an admin purges the recycle bin); a user unassigned first
  is disabled then, and its later deletion sends nothing (the object is no longer managed);
- a manager who comes into scope after the users that reference it (the "Manager isn't provisioned" known issue);
- a group unassigned at once, whose disables pass the deletion threshold: the deletions are staged
  (provisioningAction stagedDelete) and the job is quarantined with the reason TooManyDeletes
  (accidental-deletions documentation).

Each story is a list of (time, Subject); a change lands in the first cycle that starts after it, appended to that
cycle's entries (``Cycle.extra``). Times are fractions of the tenant's window, so any ``--days`` keeps every story
whole and after the first cycle.
"""

from __future__ import annotations

from provkit.sim.history import MINUTE, QUARANTINE, RETRY_OFFSETS, Audit, Quarantine, Subject, Timeline

__all__ = ["apply_stories", "story_users"]

# (category, fraction of the window before now), per user of each deprovisioning story.
DEPROVISIONING = {
    # soft delete, then a hard delete before the 30 days are up (an admin purged the recycle bin)
    "soft-then-hard": (("leaver-soft-deleted", 0.70), ("leaver-hard-deleted", 0.30)),
    # soft delete only: the delete is still to come
    "soft-pending": (("leaver-soft-deleted", 0.45),),
    # unassigned (disabled), then soft- and hard-deleted in Entra ID: no longer managed, never deleted
    "unassigned-then-deleted": (
        ("leaver-unassigned", 0.85),
        ("gone-unassigned-deleted", 0.60),
        ("gone-unassigned-deleted", 0.15),
    ),
}
STORY_USERS = {"soft-then-hard": 2, "soft-pending": 3, "unassigned-then-deleted": 2}
LATE_MANAGER_AT = 0.40  # the late manager comes into scope this share of the window before now


def story_users(app) -> dict[int, str]:
    """User index -> story name for the app's scheduled stories (users kept out of random changes)."""
    sc = app.scenario
    out: dict[int, str] = {}
    if "deprovisioning-stories" in sc.problems:
        ok = [s.index for s in app.subjects if s.kind == "User" and s.category == "ok"]
        pick = iter(reversed(ok))
        for story, n in STORY_USERS.items():
            for _ in range(n):
                index = next(pick, None)
                if index is not None:
                    out[index] = story
    if "manager-references" in sc.problems:
        for s in app.subjects:
            if s.kind == "User" and s.category in ("manager-ref", "late-manager"):
                out[s.index] = s.category
    return out


def _scheduled(app, timeline: Timeline) -> list[tuple[int, Subject]]:
    tenant = app.tenant
    now = tenant.start_now_ticks
    span = now - tenant.window_start
    events: list[tuple[int, Subject]] = []
    for index, story in story_users(app).items():
        if story in DEPROVISIONING:
            for k, (category, fraction) in enumerate(DEPROVISIONING[story]):
                # a few minutes apart, so two users of a story are not one change
                when = now - int(fraction * span) + (index % 7) * 3 * MINUTE + k
                events.append((when, Subject("User", index, category)))
        elif story == "late-manager":
            events.append(
                (now - int(LATE_MANAGER_AT * span), Subject("User", index, "late-manager-in-scope"))
            )
    for when, control in app.unassign_controls():
        group = tenant.directory.by_name.get(control.reason)
        if group is None:
            continue
        for u in group.user_members:
            if app.categories.get(u) == "ok":
                events.append((when + 1, Subject("User", u, "leaver-unassigned")))
    return sorted(events, key=lambda e: (e[0], e[1].index))


def apply_stories(app, timeline: Timeline) -> Timeline:
    """The timeline with the app's scheduled changes appended to the cycles after them; a cycle whose
    disables and deletes pass the deletion threshold stages them and quarantines the job (TooManyDeletes)."""
    cycles = timeline.cycles
    held = 0
    for c in cycles:
        if c.mode in ("initial-first", "initial-reset", "broken-initial"):
            c.reference_failures = sum(1 for s in app.subjects if s.category in app.REFERENCE_FAILING)
            held = c.reference_failures
        elif c.mode == "incremental":
            # inference: unresolved references stay escrowed (retried) and show in countEscrowedRaw only;
            # the docs say reference failures do not count toward the quarantine thresholds.
            c.reference_escrows = held
    events = _scheduled(app, timeline)
    unassigned = {c.reason for when, c in app.unassign_controls() if when <= app.tenant.now_ticks}
    timeline.unassigned = unassigned
    if not events:
        return timeline
    eligible = [c for c in cycles if c.mode in ("incremental", "initial-reset")]
    k = 0
    for when, subject in events:
        while k < len(eligible) and eligible[k].start < when:
            k += 1
        if k == len(eligible):
            break  # after the last cycle so far: not yet processed
        eligible[k].extra.append(subject)
    threshold = app.scenario.delete_threshold
    for c in cycles:
        if not c.extra:
            continue
        leaving = [s for s in c.extra if s.category in ("leaver-unassigned", "leaver-soft-deleted")]
        if len(leaving) > threshold:
            c.extra = [Subject(s.kind, s.index, "leaver-staged") if s in leaving else s for s in c.extra]
            c.entries += len(c.extra)
            _recount(app, c)
            staged = len(leaving)
            # inference: the quarantine error's wording (the docs give the reason TooManyDeletes only)
            timeline.quarantine = Quarantine(
                reason="TooManyDeletes",
                series_began=c.end,
                current_began=c.end,
                next_attempt=c.end + RETRY_OFFSETS[2],  # inference: a daily re-evaluation
                series_count=1,
                error_code="TooManyDeletes",
                error_message=(
                    f"{staged} deletions in one cycle exceed the accidental-deletion threshold of {threshold}; "
                    "the deletions are staged until an administrator allows or rejects them."
                ),
            )
            if app.tenant.window_start <= c.end <= app.tenant.now_ticks:
                timeline.audits.append(Audit(c.end, QUARANTINE, "TooManyDeletes", actor="service"))
                timeline.audits.sort(key=lambda a: a.time)
            # A job quarantined for too many deletes waits for an admin: no cycle runs after it.
            del cycles[c.no + 1 :]
            timeline.starts = [x.start for x in cycles]
            break
        c.entries += len(c.extra)
        _recount(app, c)
    return timeline


def _recount(app, cycle) -> None:
    """The cycle's failures, exports and state with its scheduled entries counted in."""
    for s in cycle.extra:
        if app.entry_fails(cycle, s):
            cycle.failures += 1
        elif s.category in ("leaver-unassigned", "leaver-soft-deleted", "leaver-hard-deleted"):
            cycle.exported += 1
        elif s.category == "late-manager-in-scope":
            cycle.exported += 1
    if cycle.failures and cycle.state == "Succeeded":
        cycle.state = "EntryLevelErrors"
