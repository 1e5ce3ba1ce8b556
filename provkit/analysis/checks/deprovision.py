"""Why is a leaver still in the app? Deprovisioning, read from each user's entries (reference 3.5).

The documented behaviour (how-provisioning-works, deprovisioning; skip-out-of-scope-deletions):
- a user soft-deleted in Entra ID (or disabled, unassigned, out of scope) is disabled in the app (SCIM: PATCH
  ``active`` false, driven by the ``IsSoftDeleted`` mapping);
- the user is deleted in the app only at the hard delete: 30 days after the soft delete, or when an admin
  purges it sooner;
- an object unassigned from the app is no longer managed: its later deletion sends nothing, so the account
  stays (disabled) in the app for good;
- with the secret ``SkipOutOfScopeDeletions`` "True", users going out of scope are not disabled at all.

Checks:
- ``deprovision.pending-hard-delete`` (info): disabled after a soft delete, not deleted yet; when the delete is due.
- ``deprovision.unassigned-never-deleted`` (warning): disabled when unassigned, then deleted in Entra ID; the
  service will never delete the account in the app.
- ``deprovision.skip-out-of-scope`` (info): users provisioned earlier, now skipped as out of scope while active,
  never disabled: the pattern of SkipOutOfScopeDeletions (Graph does not return the secret, so this is an
  inference from the logs).
- ``deprovision.soft-delete-not-mapped`` (warning): the schema's user mapping has no attribute fed by
  ``IsSoftDeleted``, so soft-deleted users are not disabled in the app.

:func:`deprovision_story` tells one user's story in words for ``explain``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from provkit.analysis.checks.facts import Facts, gather, is_false, is_true, step_details
from provkit.analysis.checks.finding import LINKS, SECTIONS, Finding, evidence_rows
from provkit.analysis.columns import flag, is_in, rows_where
from provkit.data.evidence import Evidence
from provkit.formatting import format_time

__all__ = [
    "CHECKS",
    "HARD_DELETE_AFTER",
    "Leaving",
    "deprovision_story",
    "first_leaver",
    "leavers_table",
    "leaving_events",
]

SECTION = SECTIONS["deprovisioning"]
HARD_DELETE_AFTER = pd.Timedelta(days=30)
_LINKS = [LINKS["deprovisioning"], LINKS["skip-out-of-scope"], LINKS["analyze-logs"]]


@dataclass(frozen=True)
class Leaving:
    """One deprovisioning event of one user: ``what`` is soft-deleted (disabled), unassigned (disabled),
    deleted, deleted-unmanaged (deleted in Entra ID after the unassignment: nothing sent) or out-of-scope-kept."""

    object_id: str
    name: str
    what: str
    time: pd.Timestamp
    change_id: str | None


def _import_source(facts: Facts, event_ids: set[str]) -> dict[str, dict[str, Any]]:
    """The source attributes the import step carried, by event id."""
    if not event_ids:
        return {}
    steps = facts.steps_of(event_ids)
    mine = steps[steps["step_type"].astype(object) == "import"]
    out: dict[str, dict[str, Any]] = {}
    for event_id, text in zip(mine["event_id"], mine["details"], strict=True):
        details = step_details(text)
        if details:
            out.setdefault(event_id, details)
    return out


def _lower(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].astype(object).fillna("").astype(str).str.lower()


def leaving_events(facts: Facts) -> pd.DataFrame:
    """Users' deprovisioning events, oldest first: object_id, name, what, time, change_id (see :class:`Leaving`)."""
    columns = ["object_id", "name", "what", "time", "change_id"]
    events = facts.events
    if events.empty:
        return pd.DataFrame(columns=columns)
    success = is_in(events, "status", ("success",))
    leaving = rows_where(
        events,
        is_in(events, "source_type", ("user", ""))
        & (
            (is_in(events, "action", ("disable", "delete")) & success)
            | (
                is_in(events, "status", ("skipped",))
                & is_in(events, "skip_reason", ("noteffectivelyentitled",))
            )
        ),
    )
    if leaving.empty:
        return pd.DataFrame(columns=columns)
    # The import step says whether the user was soft-deleted; only disables and unassigned skips need it.
    action = is_in(leaving, "action", ("disable",))
    unassigned = flag(leaving, "assigned", False) & ~is_in(leaving, "action", ("delete",))
    source = _import_source(facts, set(leaving["id"].iloc[np.flatnonzero(action | unassigned)]))
    rows = []
    for e in leaving.itertuples(index=False):
        details = source.get(e.id, {})
        soft = is_true(details.get("IsSoftDeleted"))
        act = str(e.action).lower()
        if act == "delete":
            what = "deleted"
        elif act == "disable":
            what = "soft-deleted" if soft else "unassigned"
        elif soft and is_false(e.assigned):
            what = "deleted-unmanaged"
        else:
            continue
        name = e.reportable_identifier if isinstance(e.reportable_identifier, str) else e.source_name
        rows.append([e.source_id, name, what, e.activity_time, e.change_id])
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def _by_user(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {oid: group for oid, group in table.groupby("object_id", sort=False)}


def pending_hard_delete(facts: Facts) -> list[Finding]:
    table = leaving_events(facts)
    if table.empty:
        return []
    rows = []
    for _oid, group in _by_user(table).items():
        whats = list(group["what"])
        if "soft-deleted" not in whats:
            continue
        soft = group[group["what"] == "soft-deleted"].iloc[-1]
        later = group[group["time"] > soft["time"]]
        if (later["what"] == "deleted").any():
            continue
        due = soft["time"] + HARD_DELETE_AFTER
        rows.append(
            {
                "object_id": soft["object_id"],
                "name": soft["name"],
                "disabled_at": soft["time"],
                "delete_due_by": due,
                "change_id": soft["change_id"],
            }
        )
    if not rows:
        return []
    frame = pd.DataFrame(rows).sort_values("delete_due_by", kind="stable")
    listed, omitted = evidence_rows(frame)
    first = format_time(frame["delete_due_by"].iloc[0])
    n = len(frame)
    return [
        Finding(
            check="deprovision.pending-hard-delete",
            section=SECTION,
            severity="info",
            title=f"{n:,} user{'s' if n != 1 else ''} deleted in Entra ID {'are' if n != 1 else 'is'} disabled "
            f"in the app and will be deleted there at the hard delete (the first by {first} at the latest)",
            evidence=listed,
            omitted=omitted,
            count=n,
            why="A soft delete disables the account in the app; the delete is sent only at the hard delete, 30 "
            "days after the soft delete or sooner when an admin purges the user. Restoring the user within the "
            "30 days enables the account again.",
            remedy="Nothing, if that is the policy. To delete sooner, permanently delete the users in Entra ID "
            "(Deleted users > Delete permanently); the next cycle sends the delete.",
            links=_LINKS,
        )
    ]


def unassigned_never_deleted(facts: Facts) -> list[Finding]:
    table = leaving_events(facts)
    if table.empty:
        return []
    rows = []
    for _oid, group in _by_user(table).items():
        gone = group[group["what"] == "deleted-unmanaged"]
        unassigned = group[group["what"] == "unassigned"]
        if gone.empty:
            continue
        row = {
            "object_id": gone["object_id"].iloc[0],
            "name": gone["name"].iloc[-1],
            "unassigned_at": unassigned["time"].iloc[0] if len(unassigned) else None,
            "deleted_in_entra_at": gone["time"].iloc[0],
            "change_id": gone["change_id"].iloc[-1],
        }
        rows.append(row)
    if not rows:
        return []
    frame = pd.DataFrame(rows)
    listed, omitted = evidence_rows(frame)
    n = len(frame)
    return [
        Finding(
            check="deprovision.unassigned-never-deleted",
            section=SECTION,
            severity="warning",
            title=f"{n:,} user{'s' if n != 1 else ''} unassigned from the app and later deleted in Entra ID: "
            "the account stays (disabled) in the app; the service will never delete it",
            evidence=listed,
            omitted=omitted,
            count=n,
            why="An object unassigned from the app is no longer managed by the service: it was disabled at the "
            "unassignment, and its later soft and hard deletes are skipped as not assigned, so no delete is sent.",
            remedy="Delete these accounts in the app by hand (or through its own tooling). To have leavers deleted "
            "by provisioning, delete (or disable) users in Entra ID before removing their assignment.",
            links=_LINKS,
        )
    ]


def skip_out_of_scope(facts: Facts) -> list[Finding]:
    latest = facts.latest
    events = facts.events
    if latest.empty:
        return []
    skipped = latest[
        (_lower(latest, "status") == "skipped")
        & (
            (_lower(latest, "skip_reason") == "noteffectivelyentitled")
            | latest["scoping_result"].map(is_false).astype(bool)
        )
        & ~latest["is_active"].map(is_false).astype(bool)
        & (latest["target_id"].astype(object).fillna("").astype(str) != "")
    ]
    if skipped.empty:
        return []
    ids = events["source_id"]
    theirs = ids.isin(set(skipped["source_id"])).to_numpy(dtype=bool)
    exported_rows = (
        theirs & is_in(events, "status", ("success",)) & is_in(events, "action", ("create", "update"))
    )
    exported = set(ids.iloc[np.flatnonzero(exported_rows)])
    left = set(
        ids.iloc[np.flatnonzero(theirs & is_in(events, "action", ("disable", "delete", "stageddelete")))]
    )
    kept = skipped[skipped["source_id"].isin(exported - left)]
    source = _import_source(facts, set(kept["id"]))
    kept = kept[[not is_true(source.get(i, {}).get("IsSoftDeleted")) for i in kept["id"]]]
    if kept.empty:
        return []
    rows = kept[
        ["source_id", "source_name", "reportable_identifier", "skip_reason", "activity_time", "change_id"]
    ]
    listed, omitted = evidence_rows(rows)
    n = len(kept)
    return [
        Finding(
            check="deprovision.skip-out-of-scope",
            section=SECTION,
            severity="info",
            title=f"{n:,} user{'s' if n != 1 else ''} provisioned earlier {'are' if n != 1 else 'is'} now out of "
            "scope yet still in the app and never disabled: SkipOutOfScopeDeletions is probably set",
            evidence=listed,
            omitted=omitted,
            count=n,
            why="Out-of-scope users are normally disabled in the app. With the synchronization secret "
            "SkipOutOfScopeDeletions set to True they are left as they are; Graph does not return the secret, "
            "so this is read from the logs (inference).",
            remedy="If leavers should be disabled, set SkipOutOfScopeDeletions to False (PUT .../synchronization/"
            "secrets with the full list of secrets) and restart; if keeping them is intended, nothing.",
            links=[LINKS["skip-out-of-scope"], LINKS["deprovisioning"]],
        )
    ]


def soft_delete_not_mapped(facts: Facts) -> list[Finding]:
    mappings = facts.mappings("User")
    if not mappings or facts.object_mapping("User") is None:
        return []
    if any("issoftdeleted" in (m.expression + " " + m.source).lower() for m in mappings):
        return []
    targets = ", ".join(
        sorted({m.target for m in mappings if m.target.lower() in ("active", "accountenabled")})
    )
    return [
        Finding(
            check="deprovision.soft-delete-not-mapped",
            section=SECTION,
            severity="warning",
            title="No user attribute mapping reads IsSoftDeleted: users deleted in Entra ID are not disabled "
            "in the app" + (f" ('{targets}' is mapped from something else)" if targets else ""),
            evidence=[{"object": "User", "mappings": len(mappings), "is_soft_deleted_mapped": False}],
            why="The disable the service sends for a soft-deleted user (SCIM: PATCH active false) comes from the "
            'mapping of IsSoftDeleted (usually Switch([IsSoftDeleted], , "False", "True", "True", "False") '
            "to active); without it only the hard delete, 30 days later, reaches the app.",
            remedy="Restore the default mapping of IsSoftDeleted to the app's active attribute (Attribute "
            "mappings > Restore default mappings, or add it); saving restarts provisioning.",
            links=[LINKS["deprovisioning"], LINKS["attributes"]],
        )
    ]


def deprovision_story(facts: Facts, object_id: str) -> str:
    """One user's deprovisioning in words ('' when the logs hold none)."""
    table = leaving_events(facts)
    if table.empty:
        return ""
    mine = table[table["object_id"].astype(str).str.lower() == str(object_id).lower()]
    if mine.empty:
        return ""
    parts = []
    soft_at = None
    gone = 0
    for row in mine.itertuples(index=False):
        when = format_time(row.time)
        if row.what == "soft-deleted":
            soft_at = row.time
            parts.append(f"deleted in Entra ID (soft delete) and disabled in the app on {when}")
        elif row.what == "unassigned":
            parts.append(
                f"unassigned from the app and disabled there on {when}; no longer managed after that"
            )
        elif row.what == "deleted":
            gap = f", {(row.time - soft_at).days} days after the soft delete" if soft_at is not None else ""
            parts.append(f"deleted in the app at the hard delete on {when}{gap}")
        elif row.what == "deleted-unmanaged":
            gone += 1
            which = "soft delete" if gone == 1 else "hard delete"
            parts.append(
                f"deleted in Entra ID ({which}) on {when}, skipped as not assigned: nothing sent to the app"
            )
    last = mine.iloc[-1]
    if last["what"] == "soft-deleted":
        parts.append(
            f"the delete is due at the hard delete, by {format_time(last['time'] + HARD_DELETE_AFTER)}"
        )
    elif last["what"] in ("unassigned", "deleted-unmanaged") and (mine["what"] == "unassigned").any():
        parts.append("the account stays disabled in the app: an unassigned user is never deleted there")
    return "; then ".join(parts)


def leavers_table(evidence: Evidence) -> pd.DataFrame:
    """For a notebook: each user who left the app (or started to) in the evidence, one row per user with how
    and when (disabled at, deleted at, deleted in Entra ID while unmanaged), newest first."""
    table = leaving_events(gather(evidence))
    if table.empty:
        return pd.DataFrame(columns=["name", "unassigned", "soft_deleted", "deleted", "deleted_unmanaged"])
    wide = table.pivot_table(index=["object_id", "name"], columns="what", values="time", aggfunc="min")
    wide = wide.reindex(columns=["unassigned", "soft-deleted", "deleted", "deleted-unmanaged"])
    wide.columns = ["unassigned", "soft_deleted", "deleted", "deleted_unmanaged"]
    latest = wide.max(axis=1)
    return (
        wide.assign(_latest=latest)
        .sort_values("_latest", ascending=False)
        .drop(columns="_latest")
        .reset_index(level="object_id", drop=True)
    )


def first_leaver(evidence: Evidence) -> str | None:
    """The object id of the user whose deprovisioning most needs a look: one never to be deleted, else one
    waiting for its hard delete, else any leaver (None without leavers)."""
    table = leaving_events(gather(evidence))
    for what in ("deleted-unmanaged", "soft-deleted", "unassigned", "deleted"):
        found = table[table["what"] == what]
        if len(found):
            return str(found["object_id"].iloc[-1])
    return None


CHECKS = (pending_hard_delete, unassigned_never_deleted, skip_out_of_scope, soft_delete_not_mapped)
