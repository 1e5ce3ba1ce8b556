"""Why was an assigned user or group skipped? Each object's latest log entry, classified by cause.

Checks (one finding per cause that has objects):
- ``skipped.scoping-filter``: out of scope; the clause and the value that failed, per user.
- ``skipped.not-assigned`` (info): changes to users and groups not assigned to the app, evaluated and skipped
  (noise under "sync assigned").
- ``skipped.nested-group-only``: assigned only through a group nested inside an assigned group; the service
  does not follow nested groups.
- ``skipped.disabled-in-source``: the account is disabled in Entra ID (IsActive False).
- ``skipped.assignment-broken``: assigned (directly or as a direct group member) yet skipped as not
  effectively entitled ("Assigned to the application" False): a broken assignment record; or assigned with
  a role that does not entitle provisioning ("User has the required role" False).
- ``skipped.required-attribute-missing``: create failed because an attribute the target requires is empty.
- ``skipped.matching-attribute-empty``: the matching attribute is empty (ImportSkipped,
  EntryJoiningPropertyValueIsMissing).
- ``skipped.group-matching-id-empty``: an assigned group's matching attribute is empty.

The scope setting ("sync all" or "sync assigned") cannot be read from Graph; it is inferred from the logs
(:mod:`provkit.analysis.syncscope`). Under "sync all" out-of-scope skips (scoping, disabled) are expected and reported
as info; when the scope is unknown they stay warnings, and the finding says what each setting would mean.

The source values a skipped user had (the clause's attribute, ``accountEnabled``, ``IsSoftDeleted``) are read
from the import step's details (``EntryImportAdd`` / ``EntryImportUpdate`` / ``EntryImportDelete`` carry the
source attributes in the documented log example) and shown as evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd

from provkit.analysis.checks.catalog import lookup
from provkit.analysis.checks.facts import (
    Assignment,
    Facts,
    as_time,
    is_false,
    is_true,
    nested_words,
    step_details,
)
from provkit.analysis.checks.finding import LINKS, SECTIONS, Finding, evidence_rows
from provkit.formatting import text_or_none

__all__ = ["CAUSES", "CHECKS", "Cause", "classify", "skip_table", "skipped"]

SECTION = SECTIONS["skipped"]

SCOPING = "skipped.scoping-filter"
NOT_ASSIGNED = "skipped.not-assigned"
NESTED = "skipped.nested-group-only"
DISABLED = "skipped.disabled-in-source"
BROKEN = "skipped.assignment-broken"
REQUIRED = "skipped.required-attribute-missing"
MATCHING = "skipped.matching-attribute-empty"
GROUP_MATCHING = "skipped.group-matching-id-empty"
NOT_SECURITY = "skipped.group-not-security-enabled"
CAUSES = (SCOPING, NOT_ASSIGNED, NESTED, DISABLED, BROKEN, REQUIRED, MATCHING, GROUP_MATCHING, NOT_SECURITY)

_MATCHING_SKIPS = frozenset({"importskipped", "entryjoiningpropertyvalueismissing"})
_REQUIRED_CODES = frozenset({"mandatoryfieldsmissing", "missingvalues"})

REMEDIES = {
    SCOPING: "If these users should be provisioned, fix their attribute values in Entra ID (or at the source "
    "of authority), or change the scoping filter (clauses are ANDed, filters ORed; null values are always "
    "false). Saving a scoping change restarts provisioning with a full cycle.",
    NOT_ASSIGNED: "Nothing, if they are not meant to have the app. To provision one, assign the user (or a "
    "group they are a direct member of) to the app, or switch the scope to all users and groups.",
    NESTED: "Assign the nested group itself (or the users directly) to the app; the service provisions only "
    "the direct members of an assigned group and does not follow nested groups.",
    DISABLED: "Enable the account in Entra ID if the user should have the app; disabled users cannot be "
    "provisioned. If they are leavers, remove their assignments.",
    BROKEN: "Remove the user's assignment to the app and add it again (or remove them from the group and add "
    "them back); the service then sees a fresh assignment. Then use provision on demand to check one user.",
    REQUIRED: "Populate the source attribute for these users in Entra ID, or give the mapping a default value "
    "(used on create) or an expression that never yields null.",
    MATCHING: "Populate the matching attribute on these objects, or change the matching attribute (Mappings > "
    "the object > 'Match objects using this attribute') to one every object has and that is unique.",
    GROUP_MATCHING: "Give the group a value for its matching attribute (e.g. a mail alias or display name), or "
    "change the group mapping's matching attribute; neither the group nor its members are provisioned "
    "until then.",
    NOT_SECURITY: "Assign a security group instead (or set securityEnabled to true on the Microsoft 365 or "
    "distribution group, or assign the users directly). Group-based assignment is supported for security groups, "
    "and for Microsoft 365 and distribution groups only when their securityEnabled setting is true; removing and "
    "re-adding the same assignment does not help.",
}

WHY = {
    SCOPING: "A user who fails every scoping filter group is out of scope: never created, and disabled in the "
    "app if they were provisioned before (unless SkipOutOfScopeDeletions is set).",
    NOT_ASSIGNED: "Under 'Sync assigned users and groups' the service still evaluates changes to every "
    "object in the directory and logs a skip for those not assigned: noise, not a problem.",
    NESTED: "Only direct members of an assigned group are in scope; members of a group nested inside it are "
    "skipped as not assigned (NotEffectivelyEntitled).",
    DISABLED: "The service does not provision disabled accounts (IsActive False); they are skipped as not "
    "effectively entitled.",
    BROKEN: "The app's assignments list these users, yet the service evaluated them as not assigned: the "
    "guide calls this a problem with the user assignment record.",
    REQUIRED: "The target refuses to create the account without this value; the service retries every cycle "
    "and the user is never created.",
    MATCHING: "Without a matching value the service cannot look the object up in the target, so scoping, "
    "matching and export are not evaluated; every object needs a value for at least one matching attribute.",
    GROUP_MATCHING: "If a group's matching property is empty, neither the group nor its members are "
    "provisioned (per the troubleshooting guide).",
    NOT_SECURITY: "The assignment lists the group, but the group is not security-enabled, so its members are "
    "not effectively entitled (assign-user-or-group-access-portal: group-based assignment is supported for "
    "security groups, dynamic membership included, and for Microsoft 365 and distribution groups whose "
    "securityEnabled is true only).",
}

LINKS_BY_CAUSE = {
    SCOPING: [LINKS["scoping"], LINKS["no-users"]],
    NOT_ASSIGNED: [LINKS["no-users"], LINKS["known-issues"]],
    NESTED: [LINKS["no-users"], LINKS["how-it-works"]],
    DISABLED: [LINKS["no-users"], LINKS["how-it-works"]],
    BROKEN: [LINKS["no-users"], LINKS["on-demand"]],
    REQUIRED: [LINKS["attributes"], LINKS["analyze-logs"]],
    MATCHING: [LINKS["attributes"], LINKS["no-users"]],
    GROUP_MATCHING: [LINKS["no-users"], LINKS["attributes"]],
    NOT_SECURITY: [LINKS["assign-groups"], LINKS["group-app-role"], LINKS["no-users"]],
}

RECENT_ASSIGNMENT = pd.Timedelta(hours=2)


@dataclass(frozen=True)
class Cause:
    """Why one object's latest entry was skipped (or failed for a missing required value), in words.

    ``expected`` is True when the skip is normal for the configuration (out of scope under "sync all",
    unassigned under "sync assigned").
    """

    check: str
    words: str
    expected: bool = False
    attribute: str | None = None  # target attribute (required) or source matching attribute
    source_attribute: str | None = None
    clause: str | None = None
    value: str | None = None
    via: str | None = None
    filter: str | None = None


def _group_assignment(facts: Facts, object_id: str) -> Assignment:
    if object_id.lower() in facts.group_names:
        return Assignment(direct=True)
    return Assignment()


def _required_attribute(
    facts: Facts, details: dict[str, Any], reason: str | None
) -> tuple[str | None, str | None]:
    """(target attribute, source attribute) named by a required-attribute failure, from the step details
    (``MissingAttribute``) or the reason text, mapped through the schema."""
    mappings = facts.mappings("User")
    target = details.get("MissingAttribute") or details.get("MissingAttributes")
    if isinstance(target, list):
        target = ", ".join(map(str, target))
    if not target and reason:
        quoted = re.findall(r"'([^']+)'", reason)
        names = {m.target.lower(): m.target for m in mappings} | {
            m.source.lower(): m.target for m in mappings
        }
        target = next((names[q.lower()] for q in quoted if q.lower() in names), None)
    if not target:
        return None, None
    source = next(
        (m.source or m.expression for m in mappings if m.target.lower() == str(target).lower()), None
    )
    return str(target), source


def _matching_attribute(facts: Facts, kind: str, details: dict[str, Any]) -> tuple[str | None, str | None]:
    """(source matching attribute, target attribute) for users or groups."""
    matching = facts.matching(kind)
    named = details.get("MatchingAttribute")
    if named:
        target = next((m.target for m in matching if m.source.lower() == str(named).lower()), None)
        return str(named), target
    if matching:
        return matching[0].source or matching[0].expression, matching[0].target
    return None, None


def classify(row: Any, facts: Facts, details: dict[str, Any] | None = None) -> Cause | None:
    """The cause of one entry's skip (a row of the events table, as a namedtuple or Series), or None when it
    is not a skip this module explains (success, RedundantExport, other failures).

    ``details`` are the merged step details of the entry (only needed for required and matching causes).
    The order of the questions matters: a failure (required attribute), skips that are not this module's, a
    soft-deleted user (deprovisioning), the matching attribute, an assignment made after the entry, then the
    entitlement (disabled, role, not assigned) before the scoping filter.
    """
    details = details or {}
    status = (text_or_none(getattr(row, "status", None)) or "").lower()
    kind = (text_or_none(getattr(row, "source_type", None)) or "User").capitalize()
    skip = (text_or_none(getattr(row, "skip_reason", None)) or "").lower()
    code = text_or_none(getattr(row, "error_code", None))
    base = (lookup(code).base or code).lower() if code else ""
    if status == "failure":
        return _required_cause(row, facts, details, kind) if base in _REQUIRED_CODES else None
    if status != "skipped" or skip in ("redundantexport", "stageddelete"):
        return None  # no change needed; or a deletion held by the accidental-deletions threshold
    if is_true((details.get("_source") or {}).get("IsSoftDeleted")):
        return None  # a deleted user leaving the app: the deprovision.* checks tell that story
    if skip in _MATCHING_SKIPS or base in _MATCHING_SKIPS:
        return _matching_cause(facts, kind, details, code or skip)
    object_id = text_or_none(getattr(row, "source_id", None)) or ""
    assignment = _group_assignment(facts, object_id) if kind == "Group" else facts.assignment(object_id)
    when = as_time(getattr(row, "activity_time", None))
    if assignment.since is not None and when is not None and assignment.since > when:
        return None  # assigned after this entry: the next cycle evaluates the new assignment
    cause = _disabled_or_role_cause(row, facts, assignment, skip)
    if cause is not None:
        return cause
    assigned_flag = getattr(row, "assigned", None)
    scoping_false = is_false(getattr(row, "scoping_result", None))
    clause = text_or_none(getattr(row, "failed_scope_clause", None))
    not_entitled = is_false(assigned_flag) or (
        skip == "noteffectivelyentitled"
        and not scoping_false
        and clause is None
        and not is_true(assigned_flag)
    )
    if not_entitled and not facts.sync_all:
        return _unassigned_cause(facts, assignment, when)
    if scoping_false or clause is not None:
        return _scoping_cause(row, facts, clause, details)
    if not_entitled:
        return Cause(NOT_ASSIGNED, "skipped as not effectively entitled", expected=True)
    return None


def _required_cause(row: Any, facts: Facts, details: dict[str, Any], kind: str) -> Cause:
    """A create that failed because the target requires a value that is empty."""
    target, source = _required_attribute(facts, details, text_or_none(getattr(row, "error_reason", None)))
    what = f"'{target}'" if target else "a required attribute"
    src = f", mapped from '{source}'," if source else ""
    return Cause(
        REQUIRED,
        f"failed: the target requires {what}{src} which is empty for this {kind.lower()}",
        attribute=target,
        source_attribute=source,
    )


def _matching_cause(facts: Facts, kind: str, details: dict[str, Any], code: str) -> Cause:
    """A skip because the matching attribute is empty (for a group: neither it nor its members go)."""
    source, target = _matching_attribute(facts, kind, details)
    what = f"'{source}'" + (f" (matched to '{target}' in the app)" if target else "") if source else ""
    if kind == "Group":
        return Cause(
            GROUP_MATCHING,
            f"skipped: the group's matching attribute {what} is empty; neither the group nor its members are "
            "provisioned".replace("  ", " "),
            attribute=source,
        )
    return Cause(
        MATCHING,
        f"skipped: its matching attribute {what} is empty, so the service cannot look it up in the app "
        f"({code})".replace("  ", " "),
        attribute=source,
    )


def _disabled_or_role_cause(row: Any, facts: Facts, assignment: Assignment, skip: str) -> Cause | None:
    """Disabled in Entra ID (when that is why it is not provisioned), or assigned with a role that does not
    entitle provisioning; None for neither."""
    assigned_flag = getattr(row, "assigned", None)
    if is_false(getattr(row, "is_active", None)) and (
        facts.sync_all or is_true(assigned_flag) or assignment.effective
    ):
        return Cause(
            DISABLED,
            "skipped: the account is disabled in Entra ID (IsActive False); disabled accounts are not provisioned",
            expected=bool(facts.sync_all),
        )
    if (
        is_false(getattr(row, "has_required_role", None))
        and not is_false(assigned_flag)
        and skip == "noteffectivelyentitled"
    ):
        return Cause(
            BROKEN,
            "skipped as not effectively entitled: assigned, but 'User has the required role' is False: the "
            "assignment's app role does not entitle provisioning (such as Default Access)",
            via=assignment.words() if assignment.any else None,
        )
    return None


def _unassigned_cause(facts: Facts, assignment: Assignment, when: pd.Timestamp | None) -> Cause:
    """Skipped as not assigned under 'sync assigned': through groups that are not security-enabled, a broken
    assignment record, only a nested group, or simply not assigned."""
    unentitling = [g for g in assignment.via_groups if facts.group_not_security_enabled(g)]
    if unentitling and not assignment.direct and len(unentitling) == len(assignment.via_groups):
        names = ", ".join(f"'{g}'" for g in unentitling)
        return Cause(
            NOT_SECURITY,
            f"skipped as not effectively entitled: assigned only through {names}, a group that is not "
            "security-enabled (securityEnabled false)",
            via=assignment.words(),
        )
    if assignment.effective:
        via = assignment.words()
        return Cause(
            BROKEN,
            f"skipped as not assigned (NotEffectivelyEntitled, 'Assigned to the application' False), although "
            f"it is {via}: the assignment record is broken{_before_reassigning(facts, assignment, when)}",
            via=via,
        )
    if assignment.nested:
        via = nested_words(assignment.nested)
        return Cause(
            NESTED,
            f"skipped: not assigned to the app; it is {via}, and the service does not follow nested groups",
            via=via,
        )
    return Cause(
        NOT_ASSIGNED,
        "skipped: not assigned to the app (directly or as a direct member of an assigned group), so the "
        "service ignores it under 'Sync assigned users and groups'",
        expected=True,
    )


def _scoping_cause(row: Any, facts: Facts, clause: str | None, details: dict[str, Any]) -> Cause:
    """Out of scope: the filter, the clause that was false and the value it saw (from the import step when the
    entry does not give it)."""
    value = text_or_none(getattr(row, "failed_scope_value", None))
    if value is None and clause:
        value = _clause_value(clause, details)
    scope_filter = text_or_none(getattr(row, "failed_scope_filter", None))
    words = "skipped: out of scope: the scoping filter" + (f" '{scope_filter}'" if scope_filter else "")
    words += f" clause {clause} is false" if clause else " evaluated to false"
    if value and value != "(empty)":
        words += f" for its value '{value}'"
    elif value:
        words += " (the value is empty)"
    return Cause(
        SCOPING, words, expected=bool(facts.sync_all), clause=clause, value=value, filter=scope_filter
    )


def _before_reassigning(facts: Facts, assignment: Assignment, when: pd.Timestamp | None) -> str:
    """What to rule out before calling an assignment broken: a dynamic group whose membership may still be
    processing, an assignment made just before the entry ('' when neither applies)."""
    notes = []
    dynamic = [g for g in assignment.via_groups if facts.group_is_dynamic(g)]
    if dynamic:
        notes.append(
            f"{', '.join(repr(g) for g in dynamic)} is a dynamic group: its membership may still be processing"
        )
    if assignment.since is not None and when is not None and when - assignment.since < RECENT_ASSIGNMENT:
        minutes = max(0, int((when - assignment.since).total_seconds() // 60))
        notes.append(
            f"the assignment was made {minutes} min before this entry: the next cycle may still take it"
        )
    return f" (unless {'; or '.join(notes)})" if notes else ""


_SOURCE_EVIDENCE = ("accountEnabled", "IsSoftDeleted")


def _clause_value(clause: str, details: dict[str, Any]) -> str | None:
    """The source value of the clause's attribute from the import step's details ("(empty)" when empty)."""
    attribute = clause.split(" ", 1)[0].lower()
    source = details.get("_source") or {}
    for key, value in source.items():
        if isinstance(key, str) and key.lower() == attribute:
            return "(empty)" if value in (None, "") else str(value)
    return None


def _source_import_step(name: str) -> bool:
    """The import step that carries the source object's attributes: EntryImportAdd / Update / Delete in the
    documented log example, or EntryImport (the on-demand example's first step). A step named EntryImport of
    type matching is the read from the target and is not taken (the caller filters on the import type)."""
    return name.lower() in ("entryimportadd", "entryimportupdate", "entryimportdelete", "entryimport")


def _details_by_event(facts: Facts, event_ids: pd.Series) -> dict[str, dict[str, Any]]:
    """Merged step details (MissingAttribute, MatchingAttribute) of the given entries, and under "_source"
    the source attributes their import step carried (EntryImportAdd/Update/Delete details)."""
    if event_ids.empty:
        return {}
    mine = facts.steps_of(event_ids)
    wanted = mine[mine["details"].str.contains("MissingAttribute|MatchingAttribute", regex=True, na=False)]
    merged: dict[str, dict[str, Any]] = {}
    for event_id, text in zip(wanted["event_id"], wanted["details"], strict=True):
        merged.setdefault(event_id, {}).update(step_details(text))
    imports = mine[
        (mine["step_type"].astype(object) == "import")
        & mine["name"].fillna("").map(_source_import_step)
        & (mine["details"].fillna("{}") != "{}")
    ]
    for event_id, text in zip(imports["event_id"], imports["details"], strict=True):
        merged.setdefault(event_id, {}).setdefault("_source", step_details(text))
    return merged


def _source_words(details: dict[str, Any] | None, clause: str | None) -> str | None:
    """'department=Sales; accountEnabled=True; IsSoftDeleted=False' from the import step (None if absent)."""
    source = (details or {}).get("_source") or {}
    if not source:
        return None
    wanted = [clause.split(" ", 1)[0]] if clause else []
    wanted += [k for k in _SOURCE_EVIDENCE if k.lower() not in {w.lower() for w in wanted}]
    lowered = {str(k).lower(): (k, v) for k, v in source.items()}
    parts = []
    for name in wanted:
        found = lowered.get(name.lower())
        if found is not None:
            parts.append(f"{found[0]}={found[1] if found[1] not in (None, '') else '(empty)'}")
    return "; ".join(parts) or None


class _Row(NamedTuple):
    """One entry's columns as Python values, the ones :func:`classify` and :func:`skip_table` read."""

    id: Any
    status: Any
    action: Any
    source_type: Any
    source_id: Any
    source_name: Any
    reportable_identifier: Any
    skip_reason: Any
    error_code: Any
    error_reason: Any
    activity_time: Any
    change_id: Any
    assigned: Any
    is_active: Any
    has_required_role: Any
    scoping_result: Any
    failed_scope_filter: Any
    failed_scope_clause: Any
    failed_scope_value: Any


_ROW_FIELDS = _Row._fields


def _records(frame: pd.DataFrame) -> list[Any]:
    """Rows as light namedtuples (each column converted to Python objects once)."""
    columns = [
        frame[name].astype(object).tolist() if name in frame.columns else [None] * len(frame)
        for name in _ROW_FIELDS
    ]
    return [_Row(*values) for values in zip(*columns, strict=True)]


def skip_table(facts: Facts) -> pd.DataFrame:
    """One row per object whose latest entry is a skip (or a required-attribute failure) this module
    explains: object_id, type, name, cause (check id), expected, words, attribute, source_attribute, filter,
    clause, value, source_values (from the import step), via, time, error_code, change_id."""
    columns = [
        "object_id",
        "type",
        "name",
        "cause",
        "expected",
        "words",
        "attribute",
        "source_attribute",
        "filter",
        "clause",
        "value",
        "source_values",
        "via",
        "time",
        "error_code",
        "change_id",
    ]
    latest = facts.latest
    if latest.empty:
        return pd.DataFrame(columns=columns)
    # Only skips (other than RedundantExport) and required-attribute failures can have a cause here.
    codes = latest["error_code"]
    required = {c for c in codes.dropna().unique() if (lookup(c).base or "").lower() in _REQUIRED_CODES}
    skipped = (latest["status"] == "skipped") & (
        ~latest["skip_reason"].fillna("").str.lower().isin(("redundantexport", "stageddelete"))
    )
    candidates = latest[skipped | ((latest["status"] == "failure") & codes.isin(required))]
    details = _details_by_event(facts, candidates["id"])
    rows = []
    for row in _records(candidates):
        cause = classify(row, facts, details.get(row.id))
        if cause is None:
            continue
        name = text_or_none(row.reportable_identifier) or text_or_none(row.source_name) or row.source_id
        rows.append(
            {
                "object_id": row.source_id,
                "type": text_or_none(row.source_type) or "User",
                "name": name,
                "cause": cause.check,
                "expected": cause.expected,
                "words": cause.words,
                "attribute": cause.attribute,
                "source_attribute": cause.source_attribute,
                "filter": cause.filter,
                "clause": cause.clause,
                "value": cause.value,
                "source_values": _source_words(details.get(row.id), cause.clause),
                "via": cause.via,
                "time": row.activity_time,
                "error_code": text_or_none(row.error_code),
                "change_id": row.change_id,
            }
        )
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["cause", "name"], kind="stable").reset_index(drop=True)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _kinds(group: pd.DataFrame) -> str:
    users = int((group["type"].str.lower() == "user").sum())
    others = len(group) - users
    if others and users:
        return f"{_plural(users, 'user')} and {_plural(others, 'group')}"
    return _plural(users, "user") if users else _plural(others, "group")


def _rows(group: pd.DataFrame, keep: tuple[str, ...]) -> pd.DataFrame:
    return group[["object_id", "name", "type", *keep, "time", "change_id"]].sort_values(
        ["name"], kind="stable"
    )


def _finding(
    cause: str, severity: str, title: str, rows: pd.DataFrame, facts: Facts, count: int, note: str = ""
) -> Finding:
    listed, omitted = evidence_rows(rows)
    return Finding(
        check=cause,
        section=SECTION,
        severity=severity,
        title=title,
        evidence=listed,
        omitted=omitted,
        count=count,
        why=WHY[cause] + (f" {note}" if note else ""),
        remedy=REMEDIES[cause],
        links=LINKS_BY_CAUSE[cause],
    )


def _confirm(facts: Facts, frame: pd.DataFrame, column: str) -> pd.Series:
    """For users whose Graph object is in the evidence: the current value of the attribute in ``column``
    ("" when empty); NA when unknown."""
    values = []
    for object_id, attribute in zip(frame["object_id"], frame[column], strict=True):
        record = facts.user_record(object_id)
        if record is None or not attribute:
            values.append(pd.NA)
        else:
            values.append(str(record.get(attribute) or ""))
    return pd.Series(values, index=frame.index, dtype=object)


def _group_matching_from_directory(facts: Facts) -> list[dict[str, Any]]:
    """Assigned groups whose matching attribute (displayName or mail) is empty, when groups are provisioned."""
    if not facts.groups_provisioned():
        return []
    matching = facts.matching("Group")
    if not matching:
        return []
    attribute = matching[0].source
    key = {"displayname": "display_name", "mail": "mail"}.get(attribute.lower())
    if key is None:
        return []
    out = []
    for gid, g in facts.evidence.groups.items():
        if isinstance(g, dict) and not g.get(key):
            out.append(
                {
                    "object_id": gid,
                    "name": g.get("display_name") or facts.group_names.get(gid.lower()) or gid,
                    "type": "Group",
                    "attribute": attribute,
                    "members": len(g.get("direct") or []),
                    "seen_in": "assigned groups",
                }
            )
    return out


def skipped(facts: Facts) -> list[Finding]:
    """All ``skipped.*`` findings."""
    table = skip_table(facts)
    findings: list[Finding] = []
    by_cause = {cause: group for cause, group in table.groupby("cause", sort=False)}
    sync_all = bool(facts.sync_all)
    unknown = facts.sync_all is None
    scope_words = facts.scope.words
    both_ways = (
        " The scope setting is not returned by Graph and these logs do not settle it: under 'Sync all users "
        "and groups' this is expected; under 'Sync only assigned' these objects are assigned and should be "
        "provisioned."
    )

    group = by_cause.get(SCOPING)
    if group is not None:
        configured = [str(g.get("name") or "") for g in facts.scoping_groups()]
        keys = group["filter"].fillna("") + "\x00" + group["clause"].fillna("(clause not in the log)")
        named_filters = {f for f in group["filter"].dropna() if f}
        single = (
            next(iter(named_filters)) if len(named_filters) == 1 and group["filter"].notna().all() else None
        )
        parts = []
        for key, n in keys.value_counts().items():
            scope_filter, clause = key.split("\x00", 1)
            values = group.loc[keys == key, "value"].dropna()
            example = (
                f", e.g. value '{values.iloc[0]}'"
                if len(values) and values.iloc[0] != "(empty)"
                else (", value empty" if len(values) else "")
            )
            named = f"'{scope_filter}': " if scope_filter and single is None else ""
            parts.append(f"{named}{clause} failed for {n:,}{example}")
        filters = sorted({f for f in group["filter"].dropna() if f})
        if not filters and len(configured) == 1 and configured[0]:
            filters = configured
        name = f" '{filters[0]}'" if len(filters) == 1 else (f"s ({len(filters)})" if filters else "")
        title = f"{_kinds(group)} skipped by the scoping filter{name}: " + "; ".join(parts)
        severity = "info" if sync_all else "warning"
        if sync_all:
            title += f" (expected under {scope_words})"
        keep = ("filter", "clause", "value", "source_values")
        findings.append(
            _finding(
                SCOPING, severity, title, _rows(group, keep), facts, len(group), both_ways if unknown else ""
            )
        )

    group = by_cause.get(NOT_ASSIGNED)
    if group is not None:
        entries = facts.logs.entries_of(group["object_id"]) if facts.logs.entries else len(group)
        title = (
            f"{_plural(entries, 'change')} to {_kinds(group)} not assigned to the app were evaluated and skipped"
            f" (expected under {scope_words if not unknown else chr(39) + 'Sync only assigned' + chr(39)})"
        )
        findings.append(_finding(NOT_ASSIGNED, "info", title, _rows(group, ()), facts, len(group)))

    group = by_cause.get(NESTED)
    if group is not None:
        paths = group["via"].value_counts()
        title = f"{_kinds(group)} assigned only through a nested group ({paths.index[0]}"
        title += f"; {len(paths) - 1} more paths)" if len(paths) > 1 else ")"
        title += ": the service does not follow nested groups"
        findings.append(_finding(NESTED, "warning", title, _rows(group, ("via",)), facts, len(group)))

    group = by_cause.get(DISABLED)
    if group is not None:
        severity = "info" if sync_all else "warning"
        title = f"{_kinds(group)} disabled in Entra ID (IsActive False) skipped"
        title += (
            f" (expected under {scope_words})"
            if sync_all
            else ": assigned but not provisioned while disabled"
        )
        findings.append(
            _finding(
                DISABLED,
                severity,
                title,
                _rows(group, ("source_values",)),
                facts,
                len(group),
                both_ways if unknown else "",
            )
        )

    group = by_cause.get(BROKEN)
    if group is not None:
        role = group["words"].str.contains("required role", regex=False)
        reasons = []
        if (~role).any():
            reasons.append(f"{int((~role).sum()):,} with 'Assigned to the application' False")
        if role.any():
            reasons.append(f"{int(role.sum()):,} with 'User has the required role' False")
        title = (
            f"{_kinds(group)} assigned to the app yet skipped as not effectively entitled "
            f"(NotEffectivelyEntitled: {'; '.join(reasons)})"
        )
        finding = _finding(BROKEN, "warning", title, _rows(group, ("via", "words")), facts, len(group))
        caveats = group["words"].str.contains("(unless ", regex=False)
        if caveats.any():
            finding.remedy = (
                f"First rule out the {int(caveats.sum()):,} with a caveat in the evidence: a dynamic group whose "
                "membership is still processing, or an assignment made minutes before (wait one cycle, about 40 "
                "minutes). Then: " + finding.remedy
            )
        findings.append(finding)

    group = by_cause.get(NOT_SECURITY)
    if group is not None:
        groups = sorted({g for words in group["words"] for g in re.findall(r"'([^']+)', a group", words)})
        title = (
            f"{_kinds(group)} skipped as not effectively entitled: assigned only through "
            f"{', '.join(repr(g) for g in groups) or 'a group'} that is not security-enabled"
        )
        findings.append(_finding(NOT_SECURITY, "warning", title, _rows(group, ("via",)), facts, len(group)))

    group = by_cause.get(REQUIRED)
    if group is not None:
        group = group.assign(current_value=_confirm(facts, group, "source_attribute"))
        attrs = group["attribute"].fillna("(not named in the log)").value_counts()
        parts = []
        for target, n in attrs.items():
            sources = group.loc[
                group["attribute"].fillna("(not named in the log)") == target, "source_attribute"
            ]
            source = sources.dropna()
            parts.append(
                f"'{target}'" + (f" (from '{source.iloc[0]}')" if len(source) else "") + f" for {n:,}"
            )
        title = f"{_kinds(group)} cannot be created: a required attribute is empty: " + "; ".join(parts)
        findings.append(
            _finding(
                REQUIRED,
                "warning",
                title,
                _rows(group, ("attribute", "source_attribute", "current_value", "error_code")),
                facts,
                len(group),
            )
        )

    group = by_cause.get(MATCHING)
    if group is not None:
        group = group.assign(current_value=_confirm(facts, group, "attribute"))
        matching = facts.matching("User")
        order = ", ".join(f"'{m.source}' (priority {m.matching_priority}, to '{m.target}')" for m in matching)
        attrs = group["attribute"].dropna().unique()
        named = ", ".join(f"'{a}'" for a in attrs) if len(attrs) else "(not named)"
        codes = ", ".join(sorted(group["error_code"].dropna().unique()))
        title = f"{_kinds(group)} skipped because the matching attribute {named} is empty" + (
            f" ({codes})" if codes else ""
        )
        note = f"Matching attributes in the schema, in the order tried: {order}." if order else ""
        findings.append(
            _finding(
                MATCHING,
                "warning",
                title,
                _rows(group, ("attribute", "current_value", "error_code")),
                facts,
                len(group),
                note,
            )
        )

    logged = by_cause.get(GROUP_MATCHING)
    rows = [] if logged is None else _rows(logged, ("attribute",)).assign(seen_in="logs").to_dict("records")
    seen = {str(r["object_id"]).lower() for r in rows}
    rows += [r for r in _group_matching_from_directory(facts) if r["object_id"].lower() not in seen]
    if rows:
        names = ", ".join(f"'{r['name']}'" for r in rows[:5])
        attrs = ", ".join(sorted({str(r.get("attribute")) for r in rows if r.get("attribute")}))
        title = (
            f"{_plural(len(rows), 'group')} skipped because the group matching attribute "
            f"{attrs and repr(attrs) or ''} is empty: {names}"
        ).replace("  ", " ")
        findings.append(_finding(GROUP_MATCHING, "warning", title, pd.DataFrame(rows), facts, len(rows)))
    return findings


CHECKS = (skipped,)
