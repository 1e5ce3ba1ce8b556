"""Short texts the notebooks print: verdicts (the stable lines the notebook tests and alerts compare), the
initial cycle's ETA, when a change reaches the app, the job's state, and one object's story across cycles."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from provkit.analysis.checks import format_explanation
from provkit.analysis.checks.facts import short_time
from provkit.data.evidence import Evidence
from provkit.formatting import format_time

__all__ = [
    "change_eta_text",
    "cycles_verdict",
    "eta_text",
    "explain_verdict",
    "in_sections",
    "state_text",
    "story",
    "verdict",
]


def _time(value: Any) -> str:
    return format_time(value, missing="unknown")


def in_sections(findings: Iterable, sections: Iterable[str] | None) -> list:
    """The findings of the named check sections (the part of a check id before the dot); all when None."""
    wanted = tuple(sections) if sections else None
    return [f for f in findings if wanted is None or f.check.split(".", 1)[0] in wanted]


def verdict(evidence: Evidence, findings: Iterable, *, sections: Iterable[str] | None = None) -> str:
    """A short, stable verdict: the app, the worst severity, and each finding's check id and count.

    Titles (which carry times and wording) are left out on purpose: this is what a test or an alert compares.
    """
    chosen = in_sections(findings, sections)
    worst = max((f.rank for f in chosen), default=-1)
    label = {-1: "nothing to report", 0: "ok (information only)", 1: "WARNING", 2: "ERROR"}[worst]
    lines = [f"{evidence.display_name}: {label}"]
    for f in chosen:
        lines.append(f"  {f.severity:<7} {f.check}" + (f" ({f.count})" if f.count else ""))
    return "\n".join(lines)


def eta_text(eta) -> str:
    """The initial cycle's ETA (a :class:`provkit.analysis.cycles.Eta` or None) in a few lines."""
    if eta is None:
        return "No initial cycle is running: nothing to estimate."
    lines = [
        f"Initial cycle started {_time(eta.cycle_start)}.",
        f"  earliest {_time(eta.earliest)}  ({eta.earliest_method})",
        f"  likely   {_time(eta.likely)}  ({eta.likely_method})",
        f"  latest   {_time(eta.latest)}  ({eta.latest_method})",
        f"  objects in scope: {eta.objects_in_scope_source}",
    ]
    lines += [f"  note: {note}" for note in eta.notes]
    return "\n".join(lines)


def change_eta_text(eta) -> str:
    """When a change made now reaches the app (a :class:`provkit.analysis.cycles.ChangeEta`), in a few lines."""
    if eta.never:
        when = "not until someone acts"
    else:
        when = f"likely {_time(eta.likely)} (between {_time(eta.earliest)} and {_time(eta.latest)})"
        if eta.only_if_fixed:
            when += ", and only if the cause is fixed"
    return f"{eta.state}: {when}.\n{eta.explanation}\nBasis: {eta.basis}"


def state_text(result) -> str:
    """The job's state and its detail in one line (a :class:`provkit.analysis.cycles.CycleSummary`), without the
    repetition ``Reason (Reason)`` that a quarantine whose reason and error code agree would give."""
    detail = re.sub(r"\b(\w+) \(\1\)", r"\1", str(result.state_detail or ""))
    return f"{result.state}: {detail}" if detail else str(result.state)


def cycles_verdict(result) -> str:
    """The cycle summary (a :class:`provkit.analysis.cycles.CycleSummary`) as a short, stable verdict."""
    lines = [
        f"{result.app}: {result.state}",
        f"  cycles {result.cycles}: {result.initial_cycles} initial, {result.incremental_cycles} incremental, "
        f"{result.unknown_cycles} unknown; {result.inferred_cycles} inferred without entries",
    ]
    if result.initial_reason:
        lines.append(f"  latest initial cycle: {result.initial_reason}")
    if result.quarantine_reason:
        lines.append(f"  quarantine: {result.quarantine_reason}")
    return "\n".join(lines)


def explain_verdict(explanation) -> str:
    """One object's explanation as a short, stable verdict: who, the check that covers it, the assignment."""
    who = explanation.display_name or explanation.query
    check = explanation.check or "nothing wrong"
    return f"{who} ({explanation.kind or 'object'}): {check}; assignment: {explanation.assignment}"


def story(explanation) -> str:
    """One object's explanation (:func:`provkit.analysis.checks.explain`) as text that says everything once.

    Like :func:`provkit.analysis.checks.format_explanation`, but entries are numbered and a step that reads exactly as in
    an earlier entry (the service's long skip text, the same scoping result) is not printed again: the entry
    says which earlier entry it repeats.
    """
    head = format_explanation(explanation, steps=False).split("\nEntries (oldest first):")[0].rstrip()
    if not explanation.entries:
        return head
    lines = [head, "", "Entries (oldest first):"]
    if explanation.omitted:
        lines.append(f"  ({explanation.omitted} earlier entries not shown)")
    seen: dict[tuple, int] = {}
    for number, e in enumerate(explanation.entries, start=1):
        head_line = f"  [{number}] {short_time(e['time'])}  {e['action']:<8} {e['status']:<8}"
        code = e.get("error_code") or e.get("skip_reason")
        lines.append(head_line + (f"  {code}" if code else "") + f"  cycle {e['cycle_id']}")
        repeated: list[int] = []
        for step in e["steps"]:
            shown = {k: v for k, v in step["details"].items() if k != "ReportableIdentifier"}
            key = (
                step["name"],
                step["status"],
                step["description"],
                tuple(sorted(map(str, shown.items()))),
                tuple(step.get("scope_clauses", [])),
            )
            if key in seen:
                repeated.append(seen[key])
                continue
            seen[key] = number
            lines.append(f"      {step['name']} [{step['type']}] {step['status']}: {step['description']}")
            if shown:
                lines.append("        " + ", ".join(f"{k}={v}" for k, v in shown.items()))
            for clause in step.get("scope_clauses", []):
                lines.append(f"        scope: {clause}")
        if repeated:
            where = ", ".join(f"[{n}]" for n in sorted(set(repeated)))
            lines.append(f"      ... and {len(repeated)} step(s) exactly as in {where}")
    lines += [f"See: {link}" for link in explanation.links]
    return "\n".join(lines)
