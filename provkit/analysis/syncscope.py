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
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

__all__ = ["SyncScope", "infer_sync_scope"]

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


def _flag(frame: pd.DataFrame, column: str, value: bool) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(False, index=frame.index)
    return (frame[column] == value).fillna(False).astype(bool)


def _lower(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series("", index=frame.index)
    return frame[column].astype(object).where(frame[column].notna(), "").astype(str).str.lower()


def infer_sync_scope(
    events: pd.DataFrame, steps: pd.DataFrame | None = None, assigned_users: set[str] | None = None
) -> SyncScope:
    """The scope shown by the logs (events and, optionally, steps tables); "unknown" when they do not tell.

    ``assigned_users``: lower-cased ids of every user assigned to the app in any way (direct, or as a member of
    an assigned group, nested included), when the caller knows them all; None when it does not.
    """
    candidates: list[tuple[pd.Timestamp, str, str]] = []
    if events is not None and len(events):
        status, action = _lower(events, "status"), _lower(events, "action")
        unassigned = _flag(events, "assigned", False)
        if assigned_users is not None and "source_id" in events.columns:
            users = _lower(events, "source_type").isin(("user", ""))
            ids = _lower(events, "source_id")
            # A user disabled, deleted or staged for deletion later was unassigned since (under "sync all" an
            # unassignment changes nothing): its earlier exports say nothing about the scope.
            left = set(ids[_lower(events, "action").isin(("disable", "delete", "stageddelete"))])
            outside = ~ids.isin(assigned_users) & ~ids.isin(left) & users
            unassigned = unassigned | outside
        exported = unassigned & (status == "success") & action.isin(("create", "update"))
        if exported.any():
            row = events[exported].sort_values("activity_time").iloc[-1]
            candidates.append(
                (
                    row["activity_time"],
                    ALL,
                    f"'{row.get('source_name') or row.get('source_id')}' was {action[exported].iloc[-1]}d in "
                    "the app although 'Assigned to the application' was False",
                )
            )
        not_failed_scope = ~_flag(events, "scoping_result", False)
        if "failed_scope_clause" in events.columns:
            not_failed_scope &= events["failed_scope_clause"].isna()
        skipped = (
            unassigned
            & (status == "skipped")
            & (_lower(events, "skip_reason") == "noteffectivelyentitled")
            & ~_flag(events, "is_active", False)
            & not_failed_scope
        )
        if skipped.any():
            row = events[skipped].sort_values("activity_time").iloc[-1]
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
                times = events.set_index("id")["activity_time"]
                ids = steps.loc[said_all, "event_id"]
                found = times.reindex(ids).dropna()
                when = found.max() if len(found) else pd.NaT
            candidates.append((when, ALL, "a step says the scope is 'sync all'"))
    if not candidates:
        return SyncScope(UNKNOWN)
    latest = max(candidates, key=lambda c: pd.Timestamp.min.tz_localize("UTC") if pd.isna(c[0]) else c[0])
    return SyncScope(latest[1], latest[2])
