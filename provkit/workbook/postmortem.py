"""Postmortem write-ups: one app, one incident window, as Markdown with static charts beside it.

The write-up has a timeline (job-status changes and facts, directory audits such as watermark resets and
quarantine, cycles compressed into runs), the findings with their evidence, the impact (objects that failed,
for how long, and the time provisioning stood still) and PNG charts. The charts are the workbook's plotly
figures redrawn with matplotlib (Agg) from the figures' own data, so the picture matches the notebook's without
a browser or kaleido.

``redact=True`` replaces user names and emails with pseudonyms such as ``user-3f9a``: a keyed hash (HMAC-SHA256)
of the user's object id (or of the text itself when no id is known), so a person keeps one pseudonym throughout
a write-up. The key is random per write-up unless ``PROVKIT_REDACT_KEY`` sets one (then pseudonyms are stable
across write-ups); the key is never written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import IPython.display
import pandas as pd

from provkit.analysis import cycles
from provkit.analysis.checks import run_checks
from provkit.data.evidence import Evidence
from provkit.formatting import as_timestamp, format_duration, format_time, slug
from provkit.workbook import charts
from provkit.workbook.session import describe_origin
from provkit.workbook.verdicts import state_text

__all__ = [
    "Redactor",
    "Written",
    "impact",
    "render_markdown",
    "save_static",
    "show",
    "timeline",
    "write_postmortem",
]

_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][\d:.]+)?(Z|[+-]\d{2}:?\d{2})?$")
_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_USER_FIELDS = ("displayName", "userPrincipalName", "mail", "mailNickname", "givenName", "surname")
MAX_IMPACT_ROWS = 25
MAX_EVIDENCE_ROWS = 5


# ---- redaction --------------------------------------------------------------------------------------------
class Redactor:
    """Replaces user names and emails with pseudonyms derived from a key (HMAC-SHA256, first hex digits).

    Register people with :meth:`add_user` (all their names map to one pseudonym), then call :meth:`apply` on
    text. Emails nobody registered still get a pseudonym of their own. Two inputs never share a pseudonym in
    one write-up: on a clash of the short form, more digits are used.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)
        self._names: dict[str, str] = {}  # lower-cased name -> pseudonym
        self._taken: dict[str, str] = {}  # pseudonym -> the identity it stands for

    def pseudonym(self, identity: str) -> str:
        """The pseudonym of an identity (an object id, or a name or email when no id is known)."""
        digest = hmac.new(self._key, identity.strip().lower().encode(), hashlib.sha256).hexdigest()
        for length in range(4, len(digest) + 1):
            candidate = f"user-{digest[:length]}"
            owner = self._taken.setdefault(candidate, identity.strip().lower())
            if owner == identity.strip().lower():
                return candidate
        raise AssertionError("unreachable: a full SHA-256 digest clashed")  # pragma: no cover

    def add_user(self, identity: str, names: Iterable[Any]) -> str:
        """Register one person: every non-empty name in ``names`` becomes the pseudonym of ``identity``."""
        alias = self.pseudonym(identity)
        for name in names:
            if isinstance(name, str) and len(name.strip()) >= 2:
                self._names.setdefault(name.strip().lower(), alias)
        return alias

    def apply(self, text: str) -> str:
        """``text`` with every registered name and every email address replaced."""
        if self._names:
            ordered = sorted(self._names, key=len, reverse=True)
            pattern = re.compile(
                r"(?<![\w@.-])(" + "|".join(re.escape(n) for n in ordered) + r")(?![\w@-])", re.IGNORECASE
            )
            text = pattern.sub(lambda m: self._names[m.group(1).lower()], text)
        return _EMAIL.sub(lambda m: self._names.get(m.group(0).lower()) or self.pseudonym(m.group(0)), text)

    @classmethod
    def for_evidence(cls, evidence: Evidence, key: bytes | None = None) -> Redactor:
        """A redactor that knows the evidence's users: directory objects and user-type objects in the logs."""
        redactor = cls(key)
        for user_id, user in (evidence.users or {}).items():
            redactor.add_user(str(user.get("id") or user_id), (user.get(f) for f in _USER_FIELDS))
        events = evidence.events
        if not events.empty:
            users = events[events["source_type"].astype(str).str.lower().str.contains("user", na=False)]
            columns = ["source_id", "source_name", "target_name", "reportable_identifier"]
            for row in users[columns].drop_duplicates().itertuples(index=False):
                identity = row.source_id if isinstance(row.source_id, str) else str(row.source_name)
                redactor.add_user(identity, (row.source_name, row.target_name, row.reportable_identifier))
        return redactor


def _redact_key() -> bytes | None:
    text = os.environ.get("PROVKIT_REDACT_KEY", "")
    return text.encode() if text else None


# ---- timeline -------------------------------------------------------------------------------------------
_ts = as_timestamp


def _fmt(value: Any) -> str:
    return format_time(value, missing="unknown")


def _duration(delta: Any) -> str:
    return format_duration(delta, missing="unknown")


def _status_rows(evidence: Evidence) -> list[dict[str, Any]]:
    """Status changes between job-status snapshots, and the times the latest snapshot records."""
    rows: list[dict[str, Any]] = []
    jobs = evidence.jobs
    if jobs is None or jobs.empty:
        return rows
    previous = None
    for snap in jobs.sort_values("snapshot_time").itertuples():
        state = (str(snap.status_code), str(snap.schedule_state), str(snap.quarantine_reason))
        if state != previous:
            text = f"job status {snap.status_code} (schedule {snap.schedule_state})"
            if isinstance(snap.quarantine_reason, str) and snap.quarantine_reason:
                text += f", quarantined: {snap.quarantine_reason}"
            rows.append({"time": _ts(snap.snapshot_time), "kind": "status", "what": text + " (snapshot)"})
            previous = state
    latest = jobs.sort_values("snapshot_time").iloc[-1]
    facts = [
        ("steady_state_first", "steady state first achieved"),
        ("last_successful_ended", "last successful cycle ended"),
        ("quarantine_series_began", "quarantine series began"),
        ("quarantine_current_began", "current quarantine attempt began"),
        ("quarantine_next_attempt", "next quarantine attempt"),
    ]
    for column, text in facts:
        when = _ts(latest.get(column))
        if when is not None:
            kind = "scheduled" if column == "quarantine_next_attempt" else "status"
            rows.append({"time": when, "kind": kind, "what": text})
    began = _ts(latest.get("last_execution_began"))
    if began is not None:
        state = latest.get("last_execution_state")
        error = latest.get("last_execution_error_code")
        text = f"last execution began: {state}"
        if isinstance(error, str) and error:
            text += f" ({error})"
        rows.append({"time": began, "kind": "status", "what": text})
    return rows


def _audit_rows(evidence: Evidence) -> list[dict[str, Any]]:
    rows = []
    for audit in evidence.audits or []:
        when = _ts(audit.get("activityDateTime"))
        details = {d.get("key"): d.get("value") for d in audit.get("additionalDetails") or []}
        initiated = audit.get("initiatedBy") or {}
        who = (initiated.get("user") or {}).get("userPrincipalName") or (initiated.get("app") or {}).get(
            "displayName"
        )
        name = str(audit.get("activityDisplayName") or "directory audit")
        lowered = name.lower()
        kind = "audit"
        if any(word in lowered for word in ("restart", "attribute mapping", "scoping")):
            kind = "watermark reset"
        elif "quarantine" in lowered:
            kind = "quarantine"
        text = (
            name
            + (f" ({details['Reason']})" if details.get("Reason") else "")
            + (f" by {who}" if who else "")
        )
        rows.append({"time": when, "kind": kind, "what": text})
    return rows


def _cycle_rows(cycle_table: pd.DataFrame) -> list[dict[str, Any]]:
    """Initial cycles and quarantine retries one by one; runs of incremental cycles as one row each."""
    rows: list[dict[str, Any]] = []
    run: list[Any] = []

    def close_run() -> None:
        if not run:
            return
        failures = sum(1 for c in run if c.n_failure > 0)
        entries = sum(int(c.entries) for c in run)
        durations = pd.Series([c.duration for c in run if not pd.isna(c.duration)], dtype="timedelta64[ns]")
        median = _duration(durations.median()) if len(durations) else "unknown"
        text = (
            f"{len(run)} incremental cycle(s) until {_fmt(run[-1].start)}: {entries} entries, "
            f"{failures} with failures, median duration {median}"
        )
        rows.append({"time": _ts(run[0].start), "kind": "cycles", "what": text})
        run.clear()

    for c in cycle_table.itertuples():
        if c.kind == "initial" or c.quarantine_attempt:
            close_run()
            label = "initial cycle" if c.kind == "initial" else "quarantine retry"
            text = f"{label}: {c.entries} entries, {c.n_failure} failed"
            if not pd.isna(c.duration):
                text += f", {'at least ' if c.duration_is_lower_bound else ''}{_duration(c.duration)}"
            if c.running:
                text += " (still running)"
            if c.kind == "initial" and c.kind_reason:
                text += f"; {c.kind_reason}"
            if isinstance(c.state, str) and c.state and c.state != "None":
                text += f"; {c.state}"
            rows.append({"time": _ts(c.start), "kind": label, "what": text})
        else:
            run.append(c)
    close_run()
    return rows


def timeline(evidence: Evidence, cycle_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """What happened, in time order: status changes and facts, audits, cycles (compressed), quarantine.

    Columns: time (UTC), kind, what. Only rows inside ``evidence.window`` are kept, and the ``scheduled`` ones
    after it (the next quarantine attempt, the date the job is disabled if nothing changes).
    """
    if cycle_table is None:
        cycle_table = cycles.cycles_table(evidence)
    rows = _status_rows(evidence) + _audit_rows(evidence) + _cycle_rows(cycle_table)
    quarantine = cycles.quarantine_timeline(evidence, cycle_table)
    for episode in quarantine.episodes.itertuples():
        if _ts(episode.ended) is not None:
            text = f"quarantine ended ({episode.ended_by or 'reason unknown'})"
            rows.append({"time": _ts(episode.ended), "kind": "quarantine", "what": text})
        if _ts(episode.disable_at) is not None:
            if quarantine.disabled:
                row = {"kind": "quarantine", "what": "job disabled after 28 days in quarantine"}
            else:
                row = {"kind": "scheduled", "what": "job disabled if the cause is not fixed"}
            rows.append({"time": _ts(episode.disable_at), **row})
    frame = pd.DataFrame(rows, columns=["time", "kind", "what"])
    frame = frame[frame["time"].notna()]
    if evidence.window is not None:
        start, end = (pd.Timestamp(t) for t in evidence.window)
        inside = (frame["time"] >= start) & (frame["time"] <= end)
        frame = frame[inside | ((frame["kind"] == "scheduled") & (frame["time"] > end))]
    frame = frame.astype({"time": "datetime64[ns, UTC]"})
    return frame.sort_values("time", kind="stable").drop_duplicates().reset_index(drop=True)


# ---- impact ---------------------------------------------------------------------------------------------
@dataclass
class Impact:
    """Who was affected and for how long.

    ``objects``: one row per object that failed in the window (name, type, first and last failure, recovered
    at, failing for, still failing, the latest error code), longest first. ``stopped``: spans in which no change
    reached the app (quarantine episodes) as (start, end, why).
    """

    objects: pd.DataFrame
    stopped: list[tuple[pd.Timestamp, pd.Timestamp, str]] = field(default_factory=list)
    skipped: int = 0  # objects in warning/error skip findings

    @property
    def failed(self) -> int:
        return len(self.objects)

    @property
    def still_failing(self) -> int:
        return int(self.objects["still_failing"].sum()) if len(self.objects) else 0


def impact(evidence: Evidence, findings: Iterable | None = None) -> Impact:
    """The impact in the evidence's window (see :class:`Impact`); ``findings`` add the skipped-object count."""

    events = evidence.events
    end = pd.Timestamp(evidence.window[1]) if evidence.window else pd.Timestamp(evidence.now)
    columns = [
        "object",
        "type",
        "first_failure",
        "last_failure",
        "recovered_at",
        "failing_for",
        "still_failing",
        "error_code",
    ]
    rows = []
    if not events.empty:
        frame = events.dropna(subset=["source_id"]).sort_values("activity_time")
        status = frame["status"].astype(str)
        failed_ids = set(frame.loc[status == "failure", "source_id"])
        for object_id, entries in frame[frame["source_id"].isin(failed_ids)].groupby("source_id", sort=False):
            st = entries["status"].astype(str)
            failures = entries[st == "failure"]
            first, last = failures["activity_time"].iloc[0], failures["activity_time"].iloc[-1]
            later_ok = entries[(entries["activity_time"] > last) & (st == "success")]
            recovered = later_ok["activity_time"].iloc[0] if len(later_ok) else pd.NaT
            rows.append(
                {
                    "object": entries["source_name"].dropna().iloc[-1]
                    if entries["source_name"].notna().any()
                    else object_id,
                    "type": entries["source_type"].iloc[-1],
                    "first_failure": first,
                    "last_failure": last,
                    "recovered_at": recovered,
                    "failing_for": (recovered if not pd.isna(recovered) else end) - first,
                    "still_failing": bool(pd.isna(recovered)),
                    "error_code": failures["error_code"].iloc[-1],
                }
            )
    objects = pd.DataFrame(rows, columns=columns)
    if len(objects):
        objects = objects.sort_values(["failing_for", "object"], ascending=[False, True]).reset_index(
            drop=True
        )
    stopped = []
    for episode in cycles.quarantine_timeline(evidence).episodes.itertuples():
        began = _ts(episode.series_began)
        ended = _ts(episode.ended) or end
        if began is not None:
            stopped.append((began, ended, f"quarantine ({episode.reason or 'reason unknown'})"))
    skipped = sum(
        f.count
        for f in findings or ()
        if f.check.startswith("skipped.") and f.severity in ("warning", "error")
    )
    return Impact(objects=objects, stopped=stopped, skipped=skipped)


# ---- static charts ----------------------------------------------------------------------------------------
_SYMBOL_MARKERS = {"circle": "o", "circle-open": "o", "star": "*", "square": "s", "diamond": "D"}


def save_static(figure: Any, path: Path) -> Path:
    """Draw a plotly figure's traces with matplotlib (Agg) and save it as PNG at ``path``.

    Handles what the workbook's charts use: scatter (markers, lines), bars (stacked, horizontal), histograms,
    log axes, vertical lines and rectangles, and the figure and axis titles. Other trace types are skipped.
    """
    # Deferred on purpose: matplotlib takes a second or two to import, and only a write-up's charts need it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = figure.layout
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=100)
    try:
        stacked: dict[Any, float] = {}
        for trace in figure.data:
            _draw_trace(ax, trace, layout, stacked)
        for shape in layout.shapes or ():
            _draw_shape(ax, shape)
        title = layout.title.text if layout.title and layout.title.text else ""
        # Plotly titles may carry a subtitle line (<br><sup>...</sup>): plain text for matplotlib.
        title = re.sub(r"<[^>]+>", "", re.sub(r"<br\s*/?>", "\n", title))
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel(layout.xaxis.title.text or "")
        ax.set_ylabel(layout.yaxis.title.text or "")
        if layout.yaxis.type == "log":
            ax.set_yscale("log")
        notes = [a.text for a in layout.annotations or () if a.text and a.xref == "paper"]
        if notes and not figure.data:
            ax.text(
                0.5, 0.5, "; ".join(notes), ha="center", va="center", transform=ax.transAxes, color="#666"
            )
        if any(t.name for t in figure.data):
            ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _xy(values: Any) -> list:
    if values is None:
        return []
    out = list(values)
    if out and all(isinstance(v, str) and _ISO_TIME.match(v) for v in out):
        return list(pd.to_datetime(out, utc=True, format="ISO8601"))
    return out


def _draw_trace(ax: Any, trace: Any, layout: Any, stacked: dict[Any, float]) -> None:
    colour = None
    marker = getattr(trace, "marker", None)
    if marker is not None and isinstance(marker.color, str):
        colour = marker.color
    name = trace.name or None
    if trace.type == "scatter":
        x, y = _xy(trace.x), _xy(trace.y)
        mode = trace.mode or "markers"
        if "lines" in mode:
            line = trace.line
            width = (line.width or 1.5) if line else 1.5
            style = "--" if line is not None and line.dash in ("dash", "dot") else "-"
            ax.plot(
                x,
                y,
                style,
                color=(line.color if line and line.color else colour),
                lw=min(width, 10),
                label=name,
            )
        if "markers" in mode:
            symbol = (marker.symbol if marker is not None else None) or "circle"
            hollow = str(symbol).endswith("-open")
            ax.scatter(
                x,
                y,
                s=18,
                marker=_SYMBOL_MARKERS.get(str(symbol), "o"),
                facecolors="none" if hollow else colour,
                edgecolors=colour,
                label=None if "lines" in mode else name,
            )
    elif trace.type == "bar":
        x, y = _xy(trace.x), _xy(trace.y)
        if trace.orientation == "h":
            ax.barh(y, x, color=colour, label=name)
        else:
            base = [stacked.get(k, 0.0) for k in x] if layout.barmode == "stack" else None
            ax.bar(x, y, bottom=base, color=colour, label=name, width=0.8 if not _is_time(x) else 0.8)
            if layout.barmode == "stack":
                for k, v in zip(x, y, strict=False):
                    stacked[k] = stacked.get(k, 0.0) + float(v)
    elif trace.type == "histogram":
        values = [v for v in _xy(trace.x) if v is not None]
        if values:
            ax.hist(values, bins=trace.nbinsx or 30, color=colour, label=name)


def _is_time(values: list) -> bool:
    return bool(values) and isinstance(values[0], datetime | pd.Timestamp)


def _draw_shape(ax: Any, shape: Any) -> None:
    x0, x1 = (
        _xy([shape.x0])[0] if shape.x0 is not None else None,
        _xy([shape.x1])[0] if shape.x1 is not None else None,
    )
    colour = (shape.line.color if shape.line and shape.line.color else None) or shape.fillcolor or "#333"
    if shape.type == "line" and x0 is not None and shape.x0 == shape.x1 and shape.yref == "paper":
        ax.axvline(x0, color=colour, ls=":" if shape.line and shape.line.dash else "-", lw=1)
    elif shape.type == "rect" and x0 is not None and x1 is not None:
        ax.axvspan(x0, x1, color=shape.fillcolor or colour, alpha=shape.opacity or 0.15, lw=0)


# ---- the write-up ---------------------------------------------------------------------------------------
@dataclass
class Written:
    """A written postmortem: the Markdown file, the chart images beside it, and what went into it."""

    markdown: Path
    images: list[Path]
    timeline: pd.DataFrame
    findings: list
    impact: Impact
    redacted: bool

    def verdict(self) -> str:
        """The write-up in numbers, stable across runs of the same evidence (no paths, no times)."""
        counts = {s: sum(1 for f in self.findings if f.severity == s) for s in ("error", "warning", "info")}
        kinds = self.timeline["kind"].value_counts()
        lines = [
            f"timeline: {len(self.timeline)} events ("
            + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            + ")",
            f"findings: {counts['error']} error, {counts['warning']} warning, {counts['info']} info",
            f"impact: {self.impact.failed} objects failed, {self.impact.still_failing} still failing at the end, "
            f"{self.impact.skipped} skipped; provisioning stood still in {len(self.impact.stopped)} span(s)",
            f"charts: {', '.join(p.name for p in self.images)}",
            f"redacted: {'yes' if self.redacted else 'no'}",
        ]
        return "\n".join(lines)


def _md_cell(value: Any) -> str:
    if isinstance(value, pd.Timestamp | datetime):
        return _fmt(value)
    if isinstance(value, pd.Timedelta):
        return _duration(value)
    if value is None or (not isinstance(value, str | list | dict) and pd.isna(value)):
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_md_cell(row.get(c)) for c in columns) + " |")
    return lines


def render_markdown(
    evidence: Evidence,
    events: pd.DataFrame,
    findings: list,
    damage: Impact,
    images: list[tuple[str, Path]],
    cycle_summary: Any,
    *,
    origin: str | None = None,
) -> str:
    """The write-up as Markdown (not yet redacted); ``images`` are (caption, file) pairs beside it; ``origin``
    (where the evidence came from) is quoted at the top."""
    start, end = evidence.window or (None, evidence.now)
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    out = [
        f"# Postmortem: {evidence.display_name} provisioning, {_fmt(start)} to {_fmt(end)}",
        "",
        *([f"> **Source.** {origin}", ""] if origin else []),
        f"- App: {evidence.display_name} (service principal {evidence.service_principal_id}, "
        f"appId {evidence.app_id or 'unknown'})",
        f"- Window: {_fmt(start)} to {_fmt(end)}; {len(evidence.events)} log entries",
        f"- State at the end: {state_text(cycle_summary)}",
        f"- Findings: {counts['error']} error, {counts['warning']} warning, {counts['info']} information",
        f"- Written {format_time(datetime.now(UTC))} by provkit",
        "",
        "## Summary",
        "",
        _summary_paragraph(evidence, findings, damage),
        "",
        "## Timeline",
        "",
        "Times in UTC. Status rows come from job-status snapshots and the times they record; runs of incremental "
        "cycles are compressed into one row.",
        "",
        *_md_table(events.to_dict("records"), ["time", "kind", "what"]),
        "",
        "## Impact",
        "",
    ]
    out += _impact_lines(damage)
    out += ["", "## Findings", ""]
    if not findings:
        out.append("No findings.")
    for f in findings:
        out += [f"### {f.severity.upper()}: {f.title}", "", f"Check `{f.check}` ({f.section})."]
        if f.why:
            out += ["", f"**Why it matters.** {f.why}"]
        if f.remedy:
            out += ["", f"**What to do.** {f.remedy}"]
        if f.evidence:
            rows = f.evidence[:MAX_EVIDENCE_ROWS]
            columns = list(dict.fromkeys(k for row in rows for k in row))
            more = len(f.evidence) - len(rows) + f.omitted
            out += ["", "Evidence:", "", *_md_table(rows, columns)]
            if more > 0:
                out.append(f"\n... and {more} more.")
        if f.links:
            out += ["", "See: " + ", ".join(f"<{link}>" for link in f.links)]
        out.append("")
    out += ["## Charts", ""]
    for caption, file in images:
        out += [f"![{caption}]({file.name})", ""]
    out += [
        "## Follow-up",
        "",
        "- [ ] Cause fixed and confirmed in the next cycle's log entries",
        "- [ ] Affected objects provisioned (or provisioned on demand)",
        "- [ ] Alerting: `provkit report --fail-on error` on a schedule",
        "",
    ]
    return "\n".join(out)


def _summary_paragraph(evidence: Evidence, findings: list, damage: Impact) -> str:
    worst = [f for f in findings if f.severity == "error"] or [f for f in findings if f.severity == "warning"]
    text = []
    if worst:
        text.append("The main problem: " + worst[0].title + ".")
    else:
        text.append("No check found an error or warning in this window.")
    if damage.stopped:
        total = sum(((b - a) for a, b, _ in damage.stopped), pd.Timedelta(0))
        text.append(f"Provisioning stood still for {_duration(total)} ({damage.stopped[0][2]}).")
    if damage.failed:
        text.append(
            f"{damage.failed} object(s) failed at least once; {damage.still_failing} were still failing at the end "
            f"of the window."
        )
    if damage.skipped:
        text.append(f"{damage.skipped} assigned object(s) were skipped for a reason worth fixing.")
    return " ".join(text)


def _impact_lines(damage: Impact) -> list[str]:
    lines = []
    for began, ended, why in damage.stopped:
        lines.append(
            f"- No change reached the app from {_fmt(began)} to {_fmt(ended)} ({_duration(ended - began)}): {why}."
        )
    if damage.failed:
        longest = damage.objects["failing_for"].max()
        median = damage.objects["failing_for"].median()
        lines.append(
            f"- {damage.failed} object(s) failed at least once; {damage.still_failing} still failing at the end. "
            f"Failing for: median {_duration(median)}, longest {_duration(longest)}."
        )
    else:
        lines.append("- No object failed in the window.")
    if damage.skipped:
        lines.append(f"- {damage.skipped} assigned object(s) skipped (see the skipped.* findings).")
    if damage.failed:
        shown = damage.objects.head(MAX_IMPACT_ROWS).to_dict("records")
        lines += ["", *_md_table(shown, list(damage.objects.columns))]
        if damage.failed > MAX_IMPACT_ROWS:
            lines.append(f"\n... and {damage.failed - MAX_IMPACT_ROWS} more.")
    return lines


def _charts(evidence: Evidence, cycle_table: pd.DataFrame) -> list[tuple[str, str, Any]]:
    figures = [
        ("cycles", "Cycle durations", charts.cycle_durations(cycle_table)),
        (
            "entries-per-day",
            "Log entries per day by status",
            charts.events_per_day(evidence.events, by="status"),
        ),
        ("error-codes", "Top error codes", charts.top_error_codes(evidence.events)),
    ]
    if cycle_table["quarantine_attempt"].any() or (evidence.job or {}).get("status", {}).get("quarantine"):
        figures.append(
            ("quarantine", "Quarantine episodes", charts.quarantine_timeline(evidence, cycle_table))
        )
    return figures


def write_postmortem(
    evidence: Evidence,
    out: str | Path,
    *,
    redact: bool = False,
    key: bytes | None = None,
    origin: str | None = None,
) -> Written:
    """Write ``postmortem.md`` and its PNG charts into ``out/<app>-<start>-<end>/``; return what was written.

    The window is ``evidence.window`` (load the evidence for the incident's window). With ``redact`` every user
    name and email in the text is replaced by a pseudonym (see :class:`Redactor`). ``origin`` says where the
    evidence came from (``Loaded.origin()``; default: :func:`provkit.workbook.session.describe_origin` of the evidence);
    it opens the write-up. The charts are PNG files beside the Markdown, linked by relative paths: the folder
    reads the same opened from disk, in a repository or offline.
    """
    cycle_table = cycles.cycles_table(evidence)
    cycle_summary = cycles.summary(evidence, cycle_table)
    findings = run_checks(evidence)
    events = timeline(evidence, cycle_table)
    damage = impact(evidence, findings)
    start, end = evidence.window or (evidence.now, evidence.now)
    folder = Path(out) / f"{slug(evidence.display_name)}-{_ts(start):%Y%m%dT%H%M}-{_ts(end):%Y%m%dT%H%M}"
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for name, caption, figure in _charts(evidence, cycle_table):
        images.append((caption, save_static(figure, folder / f"{name}.png")))
    text = render_markdown(
        evidence, events, findings, damage, images, cycle_summary, origin=origin or describe_origin(evidence)
    )
    if redact:
        text = Redactor.for_evidence(evidence, key or _redact_key()).apply(text)
    path = folder / "postmortem.md"
    path.write_text(text, encoding="utf-8")
    return Written(path, [p for _, p in images], events, findings, damage, redact)


def show(written: Written) -> None:
    """Display a written postmortem in a notebook: the Markdown, with its charts inline."""
    text = written.markdown.read_text(encoding="utf-8")
    body, _, _ = text.partition("## Charts")
    IPython.display.display(IPython.display.Markdown(body))
    for image in written.images:
        IPython.display.display(IPython.display.Image(filename=str(image)))
