"""Why is a user's manager, or a group's member, missing in the app? Unresolved references.

Check ``references.unresolved`` (warning): objects whose latest entry failed with
``UnableToResolveReferenceAttributeValue`` (or a step carrying it as SkipReason), split into manager references
and group-member references, each with the object it could not point at. Where that object was created in the
app *after* the failure, it came into scope later: per the known issues ("Manager isn't provisioned", "Member of
group not provisioned") the reference is not updated until provisioning is restarted, so the remedy is a
restart (or provisioning both objects on demand, manager first). Where it never was, it is not in scope: assign
it (or fix its own failure).

The job status counts reference failures apart: ``countEscrowedRaw`` includes them, ``countEscrowed`` does not
(reference failures do not count toward the quarantine thresholds); the finding shows both.

inference: the referenced object and the property are read from the reason text ("We were unable to assign X as
the manager of Y" in a public Q&A thread quoting the log) or the step's ``PropertyName``; both spellings are
accepted, and a reference failure without them is still counted.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from provkit.analysis.checks.catalog import lookup
from provkit.analysis.checks.facts import Facts, as_time, job_value, object_label, step_details
from provkit.analysis.checks.finding import LINKS, SECTIONS, Finding, evidence_rows
from provkit.formatting import format_time

__all__ = ["CHECKS", "reference_failures"]

SECTION = SECTIONS["references"]
CODE = "unabletoresolvereferenceattributevalue"
_REFERENCE = re.compile(
    r"unable to (?:assign|add|resolve)\s+'?(?P<other>[^'\s]+)'?\s+as\s+(?:the\s+|a\s+)?(?P<prop>manager|member)",
    re.IGNORECASE,
)
RESTARTS = ("enable/restart provisioning configuration",)


def _step_details_by_event(facts: Facts, event_ids: set[str]) -> dict[str, dict[str, Any]]:
    if not event_ids:
        return {}
    mine = facts.steps_of(event_ids)
    mine = mine[mine["details"].str.contains("PropertyName|UnableToResolveReference", regex=True, na=False)]
    out: dict[str, dict[str, Any]] = {}
    for event_id, text in zip(mine["event_id"], mine["details"], strict=True):
        out.setdefault(event_id, {}).update(step_details(text))
    return out


def reference_failures(facts: Facts) -> pd.DataFrame:
    """One row per object whose latest entry is an unresolved reference: object, property (manager or
    members), the referenced object, whether it was created in the app after the failure (came into scope
    later), and whether a restart followed that."""
    columns = ["object_id", "name", "type", "property", "references", "came_into_scope", "restarted", "time"]
    latest = facts.latest
    if latest.empty:
        return pd.DataFrame(columns=columns)
    codes = latest["error_code"].astype(object).fillna("")
    is_ref = codes.map({c: (lookup(c or None).base or c).lower() == CODE for c in codes.unique()}).astype(
        bool
    )
    skip = latest["skip_reason"].astype(object).fillna("").astype(str).str.lower() == CODE
    failed = latest[(is_ref | skip).to_numpy() & (latest["status"].astype(object) != "success").to_numpy()]
    if failed.empty:
        return pd.DataFrame(columns=columns)
    details = _step_details_by_event(facts, set(failed["id"]))
    events = facts.events
    created = events[
        (events["status"].astype(object) == "success")
        & events["action"].astype(object).isin(("create", "update"))
    ]
    names = (
        pd.concat(
            [created["reportable_identifier"], created["source_name"], created["target_name"]],
            ignore_index=True,
        )
        .astype(object)
        .fillna("")
        .astype(str)
        .str.lower()
    )
    times = pd.concat([created["activity_time"]] * 3, ignore_index=True)
    restarts = [
        t
        for t in (
            as_time(a.get("activityDateTime"))
            for a in facts.evidence.audits
            if isinstance(a, dict) and str(a.get("activityDisplayName") or "").lower() in RESTARTS
        )
        if t is not None
    ]
    rows = []
    for row in failed.itertuples(index=False):
        d = details.get(row.id, {})
        match = _REFERENCE.search(str(row.error_reason or "")) or _REFERENCE.search(
            str(d.get("Reason") or "")
        )
        prop = str(d.get("PropertyName") or (match.group("prop") if match else "") or "").lower()
        prop = (
            "manager"
            if prop.startswith("manager")
            else ("members" if prop.startswith("member") else "unknown")
        )
        other = match.group("other").strip(".'") if match else None
        came = None
        if other:
            later = times[(names == other.lower()).to_numpy() & (times > row.activity_time).to_numpy()]
            came = later.min() if len(later) else None
        rows.append(
            {
                "object_id": row.source_id,
                "name": object_label(row),
                "type": row.source_type,
                "property": prop,
                "references": other,
                "came_into_scope": came,
                "restarted": bool(came is not None and any(r > came for r in restarts)),
                "time": row.activity_time,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def unresolved(facts: Facts) -> list[Finding]:
    table = reference_failures(facts)
    if table.empty:
        return []
    managers = int((table["property"] == "manager").sum())
    members = int((table["property"] == "members").sum())
    other = len(table) - managers - members
    parts = []
    if managers:
        parts.append(f"{managers:,} manager reference{'s' if managers != 1 else ''}")
    if members:
        parts.append(f"{members:,} group member reference{'s' if members != 1 else ''}")
    if other:
        parts.append(f"{other:,} other")
    late = table[table["came_into_scope"].notna() & ~table["restarted"]]
    title = "Unresolved references: " + ", ".join(parts)
    if len(late):
        who = sorted({str(r) for r in late["references"].dropna()})
        title += (
            f"; {len(late):,} point at {', '.join(who[:3])}{'...' if len(who) > 3 else ''}, which came into "
            "scope later: restart provisioning"
        )
    raw = job_value(facts.job, "last_execution_count_escrowed_raw")
    counted = job_value(facts.job, "last_execution_count_escrowed")
    if raw is not None and counted is not None and int(raw) > int(counted):
        title += (
            f" (the last run holds {int(raw):,} escrows raw, {int(counted):,} counted toward quarantine: the "
            "difference is reference failures)"
        )
    evidence = table.assign(
        came_into_scope=table["came_into_scope"].map(lambda when: format_time(when, missing=""))
    )
    listed, omitted = evidence_rows(evidence)
    if raw is not None and counted is not None:
        listed.insert(
            0,
            {
                "field": "last run escrows",
                "countEscrowedRaw": int(raw),
                "countEscrowed": int(counted),
                "note": "raw includes reference failures; the quarantine thresholds count only the other",
            },
        )
    remedy = []
    if len(late):
        remedy.append(
            "The referenced objects are in the app now, but the service does not go back to the objects that "
            "point at them (known issues 'Manager isn't provisioned' and 'Member of group not provisioned'): "
            "restart provisioning, or provision the referenced object and then the referring one on demand."
        )
    if len(table) > len(late):
        remedy.append(
            "For the others, bring the referenced user into scope (assign them, or fix their own failure): a "
            "manager or member that is not provisioned cannot be referenced. Then restart, or provision both on "
            "demand, the referenced one first."
        )
    return [
        Finding(
            check="references.unresolved",
            section=SECTION,
            severity="warning",
            title=title,
            evidence=listed,
            omitted=omitted,
            count=len(table),
            why="A manager or a group member can be set in the app only once that user is provisioned there; "
            "reference failures are retried as escrows but, unlike other failures, do not count toward "
            "quarantine (only toward the 60,000 absolute cap).",
            remedy=" ".join(remedy),
            links=[LINKS["known-issues"], LINKS["on-demand"], LINKS["quarantine"]],
        )
    ]


CHECKS = (unresolved,)
