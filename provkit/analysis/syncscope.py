"""The app's provisioning scope ("Sync all users and groups" or "Sync only assigned"), inferred from the logs.

The scope is the synchronization secret ``SyncAll``: Graph lets an admin write it (PUT .../synchronization/
secrets) but no documented call reads it back, and the schema's rule metadata does not hold it (reference
1.8). So it is read from what the service did:

- "all": an object the service saw as not assigned ("Assigned to the application" False) was created or
  updated in the app; or, when the app's assignments are known completely, a user with no assignment at all
  (not direct, not through any assigned group) was; or a step says the scope is "sync all" (the on-demand view's "Scope sync all" text,
  inference: its exact wording in the JSON is not documented).
- "assigned": an active object that no scoping filter excluded was skipped as not assigned
  (NotEffectivelyEntitled with "Assigned to the application" False): under "sync all" it would have been
  provisioned.

When both kinds of evidence exist, the latest wins (an admin may have changed the setting). When neither
does, the scope is unknown, and callers must word their findings for both cases.

:func:`sync_scope_of` reads an evidence's events and, for the step text, only the steps of each object's latest
entry: every step of a million entries is about five million rows, gigabytes in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from provkit.analysis.columns import flag, is_in, last_position, latest_entries, lowered_codes
from provkit.data.evidence import Evidence

__all__ = ["SyncScope", "infer_sync_scope", "sync_scope_of"]

ALL = "all"
ASSIGNED = "assigned"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class SyncScope:
    """``value`` is "all", "assigned" or "unknown"; ``because`` says which log evidence settled it."""

    value: str
    because: str = ""

    @property
    def sync_all(self) -> bool | None:
        """True, False, or None when unknown."""
        return {ALL: True, ASSIGNED: False}.get(self.value)

    @property
    def words(self) -> str:
        """How a finding names the setting."""
        if self.value == ALL:
            return "'Sync all users and groups'"
        if self.value == ASSIGNED:
            return "'Sync only assigned users and groups'"
        return "an unknown scope setting (Graph does not return it and the logs do not settle it)"


def infer_sync_scope(
    events: pd.DataFrame, steps: pd.DataFrame | None = None, assigned_users: set[str] | None = None
) -> SyncScope:
    """The scope shown by the logs (events and, optionally, steps tables); "unknown" when they do not tell.

    ``assigned_users``: lower-cased ids of every user assigned to the app in any way (direct, or as a member of
    an assigned group, nested included), when the caller knows them all; None when it does not.
    """
    candidates: list[tuple[pd.Timestamp, str, str]] = []
    if events is not None and len(events):
        unassigned = flag(events, "assigned", False)
        if assigned_users is not None and "source_id" in events.columns:
            users = is_in(events, "source_type", ("user", ""))
            codes, ids = lowered_codes(events["source_id"])
            # A user disabled, deleted or staged for deletion later was unassigned since (under "sync all" an
            # unassignment changes nothing): its earlier exports say nothing about the scope.
            left = set(ids[codes[is_in(events, "action", ("disable", "delete", "stageddelete"))]])
            outside = np.fromiter((i not in assigned_users and i not in left for i in ids), dtype=bool)
            unassigned = unassigned | (outside[codes] & users)
        exported = (
            unassigned & is_in(events, "status", ("success",)) & is_in(events, "action", ("create", "update"))
        )
        found = last_position(events, exported)
        if found is not None:
            row = events.iloc[found]
            candidates.append(
                (
                    row["activity_time"],
                    ALL,
                    f"'{row.get('source_name') or row.get('source_id')}' was {str(row['action']).lower()}d in "
                    "the app although 'Assigned to the application' was False",
                )
            )
        not_failed_scope = ~flag(events, "scoping_result", False)
        if "failed_scope_clause" in events.columns:
            not_failed_scope &= events["failed_scope_clause"].isna().to_numpy(dtype=bool)
        skipped = (
            unassigned
            & is_in(events, "status", ("skipped",))
            & is_in(events, "skip_reason", ("noteffectivelyentitled",))
            & ~flag(events, "is_active", False)
            & not_failed_scope
        )
        found = last_position(events, skipped)
        if found is not None:
            row = events.iloc[found]
            candidates.append(
                (
                    row["activity_time"],
                    ASSIGNED,
                    f"'{row.get('source_name') or row.get('source_id')}', active and not excluded by a scoping "
                    "filter, was skipped as not assigned",
                )
            )
    if steps is not None and len(steps) and "description" in steps.columns:
        said = steps["description"].astype(object).where(steps["description"].notna(), "").astype(str)
        # "Scope sync all" / "Scope: Sync all", not the skip text's advice "update provisioning scope to
        # 'Sync all users and groups'".
        said_all = said.str.contains(r"\bscope:?\s+sync all\b", case=False, regex=True)
        if said_all.any():
            when = pd.NaT
            if events is not None and len(events) and "event_id" in steps.columns:
                saying = set(steps.loc[said_all, "event_id"].dropna())
                found = events.loc[events["id"].isin(saying), "activity_time"].dropna()
                when = found.max() if len(found) else pd.NaT
            candidates.append((when, ALL, "a step says the scope is 'sync all'"))
    if not candidates:
        return SyncScope(UNKNOWN)
    latest = max(candidates, key=lambda c: pd.Timestamp.min.tz_localize("UTC") if pd.isna(c[0]) else c[0])
    return SyncScope(latest[1], latest[2])


def sync_scope_of(
    evidence: Evidence,
    assigned_users: set[str] | None = None,
    latest: pd.DataFrame | None = None,
    latest_steps: pd.DataFrame | None = None,
) -> SyncScope:
    """:func:`infer_sync_scope` over the evidence's events and the steps of each object's latest entry
    (``latest``, from :func:`latest_entries` when not given; ``latest_steps`` when the caller has read them). A step that says "scope sync all" is looked for in
    those steps only: the setting applies to every entry, so an object's latest entry says it as well as any, and
    reading every step would hold several million rows."""
    events = evidence.events
    if latest is None:
        latest = latest_entries(events)
    if latest_steps is None and len(latest):
        latest_steps = evidence.steps_of(latest["id"])
    return infer_sync_scope(events, latest_steps, assigned_users)
