"""Explain one object: the story of one user or group across cycles, what the service decided and why, and
what to do now.

``explain(evidence, "adele.vance@contoso.com")`` accepts a UPN (or mail), a display name or an object id.
A name that matches several objects raises :class:`~provkit.errors.ConfigError` listing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from provkit.analysis.checks.catalog import lookup
from provkit.analysis.checks.deprovision import deprovision_story
from provkit.analysis.checks.facts import (
    Assignment,
    Facts,
    gather,
    nested_words,
    step_details,
)
from provkit.analysis.checks.finding import LINKS, jsonable
from provkit.analysis.checks.skipped import LINKS_BY_CAUSE, REMEDIES, _source_import_step, classify
from provkit.data.evidence import Evidence
from provkit.data.stepdetails import is_scope_evaluation_key, scope_clauses
from provkit.errors import ConfigError
from provkit.formatting import ago, format_time, text_or_none

__all__ = ["Explanation", "explain", "format_explanation"]

MAX_ENTRIES = 50


@dataclass
class Explanation:
    """One object's story.

    ``entries`` are its log entries, oldest first (at most :data:`MAX_ENTRIES`, the latest ones;
    ``omitted`` counts the rest), each with its ``steps``; ``decision`` says in plain words what the service
    decided the last time and why; ``remedy`` what to do now; ``check`` the id of the check that covers the
    situation (None when nothing is wrong).
    """

    query: str
    object_id: str | None
    kind: str | None
    display_name: str | None
    identifier: str | None
    assignment: str
    decision: str
    remedy: str
    check: str | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    omitted: int = 0
    history: str = ""
    job_note: str = ""
    links: list[str] = field(default_factory=list)
    deprovisioning: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (times as ISO-8601 text)."""
        data: dict[str, Any] = jsonable(
            {
                "query": self.query,
                "object_id": self.object_id,
                "kind": self.kind,
                "display_name": self.display_name,
                "identifier": self.identifier,
                "assignment": self.assignment,
                "decision": self.decision,
                "remedy": self.remedy,
                "check": self.check,
                "history": self.history,
                "job_note": self.job_note,
                "deprovisioning": self.deprovisioning,
                "entries": self.entries,
                "entries_omitted": self.omitted,
                "links": self.links,
            }
        )
        return data


def _resolve(facts: Facts, query: str) -> tuple[str | None, dict[str, str]]:
    """(object id, {id: label}) for the query; raises ConfigError when it names several objects."""
    q = query.strip().lower()
    found: dict[str, str] = {}

    def add(object_id: Any, label: Any) -> None:
        oid = text_or_none(object_id)
        if oid:
            found.setdefault(oid.lower(), f"{text_or_none(label) or oid} ({oid})")

    events = facts.events
    if not events.empty:
        for column in ("source_id", "reportable_identifier", "source_name", "target_name"):
            hits = events[events[column].str.lower() == q]
            for oid, name in zip(hits["source_id"], hits["source_name"], strict=True):
                add(oid, name)
    for uid, user in facts.evidence.users.items():
        if isinstance(user, dict) and q in {
            str(v).lower()
            for v in (uid, user.get("userPrincipalName"), user.get("mail"), user.get("displayName"))
        }:
            add(uid, user.get("displayName"))
    for a in facts.evidence.assignments:
        if q in {str(a.get("principalId", "")).lower(), str(a.get("principalDisplayName", "")).lower()}:
            add(a.get("principalId"), a.get("principalDisplayName"))
    for gid, g in facts.evidence.groups.items():
        if isinstance(g, dict):
            if q in {gid.lower(), str(g.get("display_name", "")).lower(), str(g.get("mail", "")).lower()}:
                add(gid, g.get("display_name"))
            members = {str(u).lower() for u in (g.get("transitive") or [])} | {
                str(u).lower() for u in (g.get("direct") or [])
            }
            if q in members:
                add(q, None)
    if len(found) > 1:
        listed = "; ".join(sorted(found.values()))
        raise ConfigError(
            f"'{query}' matches {len(found)} objects: {listed}.",
            remedy="Pass the object id (or the user principal name) instead of the display name.",
        )
    if not found:
        return None, {}
    oid = next(iter(found))
    return oid, found


def _scope_summary(details: dict[str, Any]) -> list[str]:
    """One line per evaluated scoping clause, from either ScopeEvaluationResult shape."""
    raw = next((v for k, v in details.items() if is_scope_evaluation_key(k)), None)
    out = []
    for clause in scope_clauses(raw) or []:
        named = f"{clause.filter}: " if clause.filter else ""
        result = {True: "true", False: "false"}.get(clause.result, "unknown")  # type: ignore[arg-type]
        value = f" (value {clause.source_value!r})" if clause.has_source_value else ""
        out.append(f"{named}{clause.text or '(filter)'}: {result}{value}")
    return out


def _steps(facts: Facts, event_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    if not event_ids:
        return {}
    mine = facts.steps_of(event_ids).sort_values(["event_id", "step_order"], kind="stable")
    out: dict[str, list[dict[str, Any]]] = {}
    for s in mine.itertuples(index=False):
        details = step_details(s.details)
        scope = _scope_summary(details)
        key = {k: v for k, v in details.items() if not is_scope_evaluation_key(k)}
        step: dict[str, Any] = {
            "name": text_or_none(s.name),
            "type": text_or_none(s.step_type),
            "status": text_or_none(s.status),
            "description": text_or_none(s.description),
            "details": key,
        }
        if scope:
            step["scope_clauses"] = scope
        out.setdefault(s.event_id, []).append(step)
    return out


def _job_note(facts: Facts) -> str:
    job = facts.job
    if job is None:
        return ""

    def value(name: str) -> Any:
        return text_or_none(job[name]) if name in job.index else None

    code, schedule = (value("status_code") or "").lower(), (value("schedule_state") or "").lower()
    if schedule == "disabled":
        return "The job is disabled: nothing reaches the app until it is started again."
    if code == "paused" or schedule == "paused":
        return "The job is paused: nothing reaches the app until it is started again."
    if code == "quarantine":
        return (
            f"The job is quarantined ({value('quarantine_reason')}): it runs at most once a day until the cause "
            "is fixed."
        )
    if code == "notrun":
        return "The initial cycle has not finished: objects later in the order have not been processed yet."
    return ""


def _assignment_for(facts: Facts, object_id: str, kind: str | None) -> Assignment:
    if (kind or "").lower() == "group" or object_id in facts.group_names:
        return Assignment(direct=object_id in facts.group_names)
    return facts.assignment(object_id)


def _decide(facts: Facts, latest: Any, details: dict[str, Any]) -> tuple[str, str, str | None, list[str]]:
    """(decision, remedy, check id, links) from the object's latest entry."""
    when = f"{format_time(latest.activity_time)} ({ago(latest.activity_time, facts.now)})"
    status = text_or_none(latest.status)
    action = text_or_none(latest.action) or "other"
    skip = text_or_none(latest.skip_reason)
    cause = classify(latest, facts, details)
    if cause is not None:
        remedy = REMEDIES[cause.check]
        if cause.expected:
            remedy = "Nothing, if this is intended. " + remedy
        return f"Last evaluated {when}: {cause.words}.", remedy, cause.check, LINKS_BY_CAUSE[cause.check]
    if status == "success":
        verb = {
            "create": "created in",
            "update": "updated in",
            "delete": "deleted from",
            "disable": "disabled in",
        }
        done = verb.get(action, "processed for")
        return f"Last evaluated {when}: {done} the app successfully.", "Nothing to do.", None, []
    if status == "skipped" and (skip or "").lower() == "redundantexport":
        return (
            f"Last evaluated {when}: no change needed; source and target already match (RedundantExport).",
            "Nothing to do.",
            None,
            [],
        )
    code = text_or_none(latest.error_code) or skip
    reason = text_or_none(latest.error_reason)
    entry = lookup(code, reason)
    if status == "failure":
        retry = (
            "The service retries it by itself."
            if entry.retried
            else "The service retries it each cycle, but it keeps failing until the cause is fixed."
        )
        said = f' The service said: "{reason[:300]}"' if reason and entry.known else ""
        return (
            f"Last evaluated {when}: {action} failed with {entry.label}: {entry.meaning}{said} {retry}",
            entry.fix,
            "failures.by-code",
            [entry.link],
        )
    return (
        f"Last evaluated {when}: {status} ({entry.label}): {entry.meaning}",
        entry.fix,
        None,
        [entry.link],
    )


def _history(entries: pd.DataFrame) -> str:
    counts = entries["status"].value_counts()
    parts = [f"{int(n)} {s}" for s, n in counts.items() if n]
    cycles = entries["cycle_id"].nunique()
    first, last = entries["activity_time"].min(), entries["activity_time"].max()
    return (
        f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} in {cycles} cycle{'s' if cycles != 1 else ''} "
        f"from {format_time(first)} to {format_time(last)}: " + ", ".join(parts)
    )


def explain(evidence: Evidence, object: str) -> Explanation:  # noqa: A002 - the brief's name for it
    """The story of one user or group (by UPN or mail, display name or object id) in the evidence."""
    facts = gather(evidence)
    object_id, _found = _resolve(facts, object)
    note = _job_note(facts)
    if object_id is None:
        return Explanation(
            query=object,
            object_id=None,
            kind=None,
            display_name=None,
            identifier=None,
            assignment="not among the app's assignments or the members of its assigned groups",
            decision=f"Nothing in the evidence matches '{object}': no log entry in the window, no assignment and no "
            "membership of an assigned group.",
            remedy="Check the spelling (a UPN or object id is safest). If the object exists, it is not assigned to "
            "the app and has not changed in the window; assign it (directly or through a group it is a direct "
            "member of) and use provision on demand to see what happens.",
            job_note=note,
            links=[LINKS["no-users"], LINKS["on-demand"]],
        )
    events = facts.events
    mine = events[events["source_id"].str.lower() == object_id] if not events.empty else events
    mine = mine.sort_values("activity_time", kind="stable")
    kind = text_or_none(mine["source_type"].iloc[-1]) if len(mine) else None
    user = facts.user_record(object_id)
    group = next((g for gid, g in evidence.groups.items() if gid.lower() == object_id), None)
    if kind is None:
        kind = "Group" if group is not None else "User"
    display = (
        (text_or_none(mine["source_name"].iloc[-1]) if len(mine) else None)
        or (user or {}).get("displayName")
        or (group or {}).get("display_name")
    )
    identifier = (
        (
            text_or_none(mine["reportable_identifier"].dropna().iloc[-1])
            if mine["reportable_identifier"].notna().any()
            else None
        )
        if len(mine)
        else None
    ) or (user or {}).get("userPrincipalName")
    real_id = text_or_none(mine["source_id"].iloc[-1]) if len(mine) else (user or {}).get("id") or object_id
    assignment = _assignment_for(facts, object_id, kind)
    assignment_words = assignment.words()
    if not len(mine):
        if assignment.effective:
            decision = (
                f"No log entry for it in the window, although it is {assignment_words}: the service logs an object "
                "only when it (or its assignment) changes, or in an initial cycle."
            )
            remedy = (
                "Use provision on demand to process it now and see each step; or wait for the next change."
            )
            check = None
        elif assignment.nested:
            decision = (
                f"No log entry for it in the window. It is {nested_words(assignment.nested)}, and the service "
                "does not follow nested groups: it would be skipped as not assigned."
            )
            remedy = REMEDIES["skipped.nested-group-only"]
            check = "skipped.nested-group-only"
        else:
            decision = "No log entry for it in the window, and it is not assigned to the app."
            remedy = REMEDIES["skipped.not-assigned"]
            check = None
        return Explanation(
            query=object,
            object_id=real_id,
            kind=kind,
            display_name=display,
            identifier=identifier,
            assignment=assignment_words,
            decision=decision,
            remedy=remedy,
            check=check,
            job_note=note,
            links=[LINKS["no-users"], LINKS["on-demand"]],
        )
    shown = mine.tail(MAX_ENTRIES)
    steps = _steps(facts, list(shown["id"]))
    entries = []
    for e in shown.itertuples(index=False):
        entries.append(
            {
                "time": e.activity_time,
                "cycle_id": e.cycle_id,
                "change_id": e.change_id,
                "action": text_or_none(e.action),
                "status": text_or_none(e.status),
                "error_code": text_or_none(e.error_code),
                "error_reason": text_or_none(e.error_reason),
                "skip_reason": text_or_none(e.skip_reason),
                "steps": steps.get(e.id, []),
            }
        )
    latest = shown.iloc[-1]
    merged: dict[str, Any] = {}
    for step in steps.get(latest["id"], []):
        merged.update(step["details"])
        name = str(step.get("name") or "")
        if step.get("type") == "import" and _source_import_step(name) and step["details"]:
            merged.setdefault("_source", step["details"])  # the source attributes the import step carried
    decision, remedy, check, links = _decide(facts, _Row(latest), merged)
    story = deprovision_story(facts, real_id or object_id)
    if story:
        decision, remedy, check, links = _deprovision_decision(
            facts, latest, merged, story, decision, remedy, check, links
        )
    return Explanation(
        query=object,
        object_id=real_id,
        kind=kind,
        display_name=display,
        identifier=identifier,
        assignment=assignment_words,
        decision=decision,
        remedy=remedy,
        check=check,
        entries=entries,
        omitted=len(mine) - len(shown),
        history=_history(mine),
        job_note=note,
        links=list(dict.fromkeys([*links, LINKS["analyze-logs"]])),
        deprovisioning=story,
    )


def _deprovision_decision(
    facts: Facts,
    latest: pd.Series,
    merged: dict[str, Any],
    story: str,
    decision: str,
    remedy: str,
    check: str | None,
    links: list[str],
) -> tuple[str, str, str | None, list[str]]:
    """The decision for a user whose latest entry is part of leaving the app (reference 3.5)."""
    when = f"{format_time(latest['activity_time'])} ({ago(latest['activity_time'], facts.now)})"
    soft = str((merged.get("_source") or {}).get("IsSoftDeleted", "")).lower() == "true"
    action = str(text_or_none(latest["action"]) or "").lower()
    status = str(text_or_none(latest["status"]) or "").lower()
    deprovision_links = [LINKS["deprovisioning"], LINKS["skip-out-of-scope"]]
    if status == "skipped" and soft:
        if "unassigned from the app" in story:
            return (
                f"Last evaluated {when}: deleted in Entra ID after it was unassigned from the app, so the service "
                "no longer manages it and sent nothing (see Deprovisioning).",
                "Delete the account in the app by hand if it must go; the service will never delete it.",
                "deprovision.unassigned-never-deleted",
                deprovision_links,
            )
        return (
            f"Last evaluated {when}: deleted in Entra ID (see Deprovisioning).",
            "Nothing, unless the account must go sooner: permanently delete the user in Entra ID.",
            None,
            deprovision_links,
        )
    if status == "success" and action in ("disable", "delete"):
        pending = action == "disable" and soft
        return (
            f"{decision} (see Deprovisioning)",
            "Nothing to do; the delete follows at the hard delete (up to 30 days after the soft delete), unless "
            "the user is restored."
            if pending
            else remedy,
            "deprovision.pending-hard-delete" if pending else check,
            deprovision_links,
        )
    return decision, remedy, check, links


class _Row:
    """Attribute access over a Series (what :func:`classify` reads)."""

    def __init__(self, series: pd.Series) -> None:
        self._series = series

    def __getattr__(self, name: str) -> Any:
        return self._series.get(name)


def format_explanation(expl: Explanation, *, steps: bool = True) -> str:
    """A readable text: who, how assigned, the decision and what to do, then each entry with its steps."""
    who = expl.display_name or expl.query
    shown_id = expl.identifier if expl.identifier and expl.identifier != who else None
    lines = [f"{expl.kind or 'Object'} {who}" + (f" <{shown_id}>" if shown_id else "")]
    if expl.object_id:
        lines.append(f"  id: {expl.object_id}")
    lines.append(f"  assignment: {expl.assignment}")
    if expl.history:
        lines.append(f"  history: {expl.history}")
    lines += ["", f"Decision: {expl.decision}"]
    if expl.job_note:
        lines.append(f"Job: {expl.job_note}")
    if expl.deprovisioning:
        lines.append(f"Deprovisioning: {expl.deprovisioning}")
    lines.append(f"What to do: {expl.remedy}")
    if expl.check:
        lines.append(f"Check: {expl.check}")
    if expl.entries:
        lines += ["", "Entries (oldest first):"]
        if expl.omitted:
            lines.append(f"  ({expl.omitted} earlier entries not shown)")
        for e in expl.entries:
            head = f"  {format_time(e['time'])}  {e['action']:<8} {e['status']:<8} cycle {e['cycle_id']}"
            if e.get("error_code"):
                head += f"  {e['error_code']}"
            elif e.get("skip_reason"):
                head += f"  {e['skip_reason']}"
            lines.append(head)
            if not steps:
                continue
            for s in e["steps"]:
                lines.append(f"      {s['name']} [{s['type']}] {s['status']}: {s['description']}")
                shown = {k: v for k, v in s["details"].items() if k != "ReportableIdentifier"}
                if shown:
                    lines.append("        " + ", ".join(f"{k}={v}" for k, v in shown.items()))
                for clause in s.get("scope_clauses", []):
                    lines.append(f"        scope: {clause}")
    for link in expl.links:
        lines.append(f"See: {link}")
    return "\n".join(lines)
