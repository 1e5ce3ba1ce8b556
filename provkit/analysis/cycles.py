"""Provisioning cycles rebuilt from the logs and job-status snapshots, and the timing questions they answer.

A cycle is one iteration of a synchronization job (reference section 3.1): the **initial** cycle evaluates every
object in scope and persists a watermark; **incremental** cycles then process only the changes since the
watermark, every ``schedule.interval`` (PT40M for most gallery apps). A restart, an attribute-mapping change or a
scoping change clears the watermark and the next cycle is initial again. A quarantined job is retried 6 h, 12 h
and 24 h after the first failure, then daily, and is disabled after 28 days.

What the evidence shows, and what this module makes of it:

- log entries carry ``cycleId``: each distinct id is an observed cycle, timed first to last entry (a lower bound);
- a job-status snapshot's ``lastExecution`` (and the two ``lastSuccessful...`` executions) give a cycle's exact
  ``timeBegan``/``timeEnded``; they are matched to logged cycles by time overlap, because the execution's
  ``activityIdentifier`` is not documented to equal the logs' ``cycleId``;
- an incremental cycle with no changes writes nothing, and quarantine attempts that fail on credentials write
  nothing either: such cycles are *inferred*, from the interval between observed cycles or from the retry
  schedule while the job is quarantined;
- directory audits tell why a cycle was initial (restart, attribute-mapping or scoping change).

Public functions: :func:`cycles_table`, :func:`summary`, :func:`initial_cycle_eta`, :func:`change_eta`,
:func:`quarantine_timeline`, :func:`format_cycles` and :func:`cycles_as_records`. They read an
:class:`~provkit.data.evidence.Evidence` (or the tables in it) and never fetch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from provkit.analysis.syncscope import infer_sync_scope
from provkit.data.evidence import Evidence
from provkit.data.tables import ACTIONS, STATUSES, parse_graph_time

__all__ = [
    "ChangeEta",
    "CycleSummary",
    "Eta",
    "QuarantineTimeline",
    "change_eta",
    "cycles_as_records",
    "cycles_table",
    "format_cycles",
    "initial_cycle_eta",
    "progress_observations",
    "quarantine_timeline",
    "summary",
]

# Documented facts (reference sections 3.2 and 3.4).
DEFAULT_INTERVAL = pd.Timedelta(minutes=40)
RETRY_OFFSETS = (pd.Timedelta(hours=6), pd.Timedelta(hours=12), pd.Timedelta(hours=24))
RETRY_EVERY = pd.Timedelta(hours=24)
DISABLE_AFTER = pd.Timedelta(days=28)
SIZING_MINUTES_PER_OBJECT = (0.01, 0.08)
# "tend to be faster (within 10 minutes)"; "in most cases ... completes in 30 minutes".
DOCUMENTED_INCREMENTAL = (pd.Timedelta(minutes=10), pd.Timedelta(minutes=30))

# A scheduled quarantine attempt and a known cycle closer than this are the same run.
ATTEMPT_TOLERANCE = pd.Timedelta(minutes=30)
# Shape rule: an initial cycle evaluates close to the largest number of distinct objects seen, and far more than
# the median incremental cycle.
SHAPE_NEAR_MAX = 0.9
SHAPE_SMALL = 0.5
SHAPE_TIMES_MEDIAN = 5.0

ACTION_COLUMNS = {name: f"n_{name}" for name in ACTIONS}
STATUS_COLUMNS = {name: f"n_{name}" for name in STATUSES}

CYCLE_COLUMNS: dict[str, str] = {
    "job_id": "str",
    "cycle_id": "str",
    "activity_id": "str",
    "start": "datetime64[ns, UTC]",
    "end": "datetime64[ns, UTC]",
    "duration": "timedelta64[ns]",
    "duration_is_lower_bound": "bool",
    "timing_source": "str",
    "kind": "str",
    "kind_reason": "str",
    "entries": "int64",
    **dict.fromkeys(ACTION_COLUMNS.values(), "int64"),
    "n_unknown_action": "int64",
    **dict.fromkeys(STATUS_COLUMNS.values(), "int64"),
    "n_unknown_status": "int64",
    "distinct_objects": "int64",
    "reset_before": "bool",
    "reset_reason": "str",
    "inferred": "bool",
    "running": "bool",
    "quarantine_attempt": "bool",
    "state": "str",
}
"""Columns of :func:`cycles_table`, in order (name -> dtype).

- ``start``/``end``/``duration``: from the job status when an execution matched (``timing_source`` "job-status"),
  else the first and last log entry ("log-span", ``duration_is_lower_bound`` True; no duration for a single
  entry). Inferred cycles have a start from the interval ("interval") or the quarantine retry schedule
  ("retry-schedule") and no end.
- ``kind``: initial, incremental or unknown; ``kind_reason`` names the rule that decided.
- ``entries`` and the ``n_*`` counts: log entries by action and by status; values outside the documented
  enums are counted in ``n_unknown_action`` / ``n_unknown_status`` so the counts always add up to ``entries``.
- ``distinct_objects``: distinct source objects (``sourceIdentity.id``) evaluated.
- ``reset_before``/``reset_reason``: a watermark reset (restart, mapping-or-scope; attribute-mapping and
  scoping from older audit names) recorded in the
  directory audits between the previous cycle's start and this one's.
- ``inferred``: the cycle left no log entries (known from a snapshot, the interval or the retry schedule).
- ``running``: still running at the latest snapshot (its end is the last entry so far).
- ``quarantine_attempt``: started while the job was quarantined (a retry on the documented schedule).
- ``state``: the execution state from the job status (Succeeded, Failed, EntryLevelErrors) when known.
"""

# Directory audit activity -> (kind, reset reason). The documented Account Provisioning names
# (reference-audit-activities.md, reference 1.8) first; the older names after them are inference (kept so
# audits saved by earlier provkit versions still read). Per-object audits (Export, Import, Synchronization rule
# action, Process escrow, User Provisioning, Other) and settings updates are not cycle events.
_AUDIT_KINDS: dict[str, tuple[str, str]] = {
    "enable/restart provisioning configuration": ("reset", "restart"),
    "update attribute mappings or scope": ("reset", "mapping-or-scope"),
    "enable/start provisioning configuration": ("start", ""),
    "disable/pause provisioning configuration": ("pause", ""),
    "quarantine": ("quarantine", ""),
    "restart synchronization job": ("reset", "restart"),
    "restart provisioning": ("reset", "restart"),
    "update attribute mappings": ("reset", "attribute-mapping"),
    "update scoping filter": ("reset", "scoping"),
    "pause synchronization job": ("pause", ""),
    "disable synchronization job": ("disable", ""),
    "start synchronization job": ("start", ""),
}


def _audit_kind(record: dict, activity: str) -> tuple[str, str]:
    """(kind, reason) of one audit. "Disable/pause provisioning configuration" is an admin's stop (pause) or,
    initiated by the provisioning service itself, the disable after four weeks in quarantine (inference: the
    docs give the name, not who initiates the automatic disable)."""
    kind, reason = _AUDIT_KINDS.get(activity.lower(), ("other", ""))
    if activity.lower() == "disable/pause provisioning configuration":
        initiated = record.get("initiatedBy") if isinstance(record.get("initiatedBy"), dict) else {}
        app = initiated.get("app") if isinstance(initiated.get("app"), dict) else {}
        if not initiated.get("user") and "provisioning service" in str(app.get("displayName") or "").lower():
            return "disable", ""
    return kind, reason


_EXECUTION_PREFIXES = ("last_execution", "last_successful", "last_successful_with_exports")


# ---------------------------------------------------------------------------------------------------------
# Small helpers


def _ts(value: object) -> pd.Timestamp | Any:
    """A UTC Timestamp or NaT from a datetime, Timestamp, Graph text or missing value."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return pd.NaT
    if isinstance(value, pd.Timestamp | datetime):
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return parse_graph_time(value)


def _text(value: object) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value).strip()
    return text or None


def _same(value: object, expected: str) -> bool:
    text = _text(value)
    return text is not None and text.lower() == expected.lower()


def _job_key(value: object) -> str:
    """A job id as text, "" when missing (NA and NaN compare unequal to themselves)."""
    return _text(value) or ""


def _ns(series: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch (int64) of a UTC time column; NaT is the int64 minimum."""
    return series.to_numpy(dtype="datetime64[ns]").view("i8")


def _fmt_time(value: object) -> str:
    stamp = _ts(value)
    return "-" if pd.isna(stamp) else stamp.strftime("%Y-%m-%d %H:%M UTC")


def _fmt_duration(value: object) -> str:
    if value is None or pd.isna(value):
        return "-"
    seconds = pd.Timedelta(value).total_seconds()
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{minutes:.0f}m"
    hours, rest = divmod(round(minutes), 60)
    if hours < 48:
        return f"{hours}h{rest:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def _jsonable(value: Any) -> Any:
    """Plain JSON values: times as ISO-8601 UTC text, durations as seconds, missing values as None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, pd.DataFrame):
        return [_jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, timedelta | pd.Timedelta | np.timedelta64):
        return None if pd.isna(value) else pd.Timedelta(value).total_seconds()
    if isinstance(value, datetime | pd.Timestamp | np.datetime64):
        stamp = _ts(value)
        return None if pd.isna(stamp) else stamp.isoformat().replace("+00:00", "Z")
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


# ---------------------------------------------------------------------------------------------------------
# What the evidence says besides the logs: audits, snapshots, executions, quarantine episodes


def _audits(evidence: Evidence) -> pd.DataFrame:
    """Directory audits that matter to cycles: time, kind (reset, quarantine, pause, disable, start), reason."""
    rows = []
    for record in evidence.audits or []:
        if not isinstance(record, dict):
            continue
        targets = record.get("targetResources") or []
        target = targets[0].get("id") if targets and isinstance(targets[0], dict) else None
        if target and evidence.service_principal_id and target != evidence.service_principal_id:
            continue
        activity = _text(record.get("activityDisplayName")) or ""
        kind, reason = _audit_kind(record, activity)
        time = _ts(record.get("activityDateTime"))
        if kind == "other" or pd.isna(time):
            continue
        rows.append(
            {
                "time": time,
                "kind": kind,
                "reason": reason or (_text(record.get("resultReason")) or ""),
                "activity": activity,
            }
        )
    frame = pd.DataFrame(rows, columns=["time", "kind", "reason", "activity"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True).astype("datetime64[ns, UTC]")
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def _snapshots(evidence: Evidence) -> pd.DataFrame:
    jobs = evidence.jobs
    if jobs is None or len(jobs) == 0:
        return pd.DataFrame()
    return jobs.sort_values("snapshot_time", kind="stable").reset_index(drop=True)


def _executions(snapshots: pd.DataFrame) -> pd.DataFrame:
    """Every distinct execution the snapshots report: job_id, activity_id, began, ended, state."""
    columns = ["job_id", "activity_id", "began", "ended", "state", "snapshot_time"]
    if snapshots.empty:
        return pd.DataFrame(columns=columns)
    parts = []
    for prefix in _EXECUTION_PREFIXES:
        if f"{prefix}_began" not in snapshots:
            continue
        part = pd.DataFrame(
            {
                "job_id": snapshots["job_id"].astype(object),
                "activity_id": snapshots[f"{prefix}_id"].astype(object),
                "began": snapshots[f"{prefix}_began"],
                "ended": snapshots[f"{prefix}_ended"],
                "state": snapshots[f"{prefix}_state"].astype(object),
                "snapshot_time": snapshots["snapshot_time"],
            }
        )
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[frame["began"].notna() & frame["ended"].notna() & (frame["ended"] >= frame["began"])]
    # The latest snapshot's view of an execution wins (its state can only be more final).
    frame = frame.sort_values("snapshot_time", kind="stable").drop_duplicates(
        ["job_id", "began"], keep="last"
    )
    return frame.sort_values("began", kind="stable").reset_index(drop=True)


def _interval(snapshots: pd.DataFrame) -> tuple[pd.Timedelta, str]:
    if not snapshots.empty and "schedule_interval" in snapshots:
        known = snapshots["schedule_interval"].dropna()
        known = known[(known > pd.Timedelta(0)) & (known < pd.Timedelta(days=2))]
        if len(known):
            return pd.Timedelta(known.iloc[-1]), "job status schedule.interval"
    return DEFAULT_INTERVAL, "documented typical interval (PT40M); the job status did not give one"


def _episodes(snapshots: pd.DataFrame, audits: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Quarantine episodes from the job status (``status.quarantine``) and from Quarantine audits.

    One row per episode: job_id, series_began, reason, error_code, error_message, current_began,
    next_attempt, series_count, ended (NaT while it lasts), ended_by, disable_at (seriesBegan + 28 days) and
    source ("job-status", "audit" or both).
    """
    columns = [
        "job_id",
        "series_began",
        "reason",
        "error_code",
        "error_message",
        "current_began",
        "next_attempt",
        "series_count",
        "ended",
        "ended_by",
        "disable_at",
        "source",
    ]
    episodes: list[dict[str, Any]] = []
    if not snapshots.empty and "quarantine_series_began" in snapshots:
        quarantined = snapshots[snapshots["quarantine_series_began"].notna()]
        for (job_id, began), rows in quarantined.groupby(["job_id", "quarantine_series_began"], sort=True):
            last = rows.iloc[-1]
            count = rows["quarantine_series_count"].dropna()
            episodes.append(
                {
                    "job_id": job_id,
                    "series_began": _ts(began),
                    "reason": _text(last["quarantine_reason"]),
                    "error_code": _text(last["quarantine_error_code"]),
                    "error_message": _text(last["quarantine_error_message"]),
                    "current_began": _ts(last["quarantine_current_began"]),
                    "next_attempt": _ts(last["quarantine_next_attempt"]),
                    "series_count": int(count.max()) if len(count) else None,
                    "last_seen": _ts(last["snapshot_time"]),
                    "source": "job-status",
                }
            )
    for audit in audits[audits["kind"] == "quarantine"].itertuples():
        same = [e for e in episodes if abs(e["series_began"] - audit.time) <= pd.Timedelta(minutes=10)]
        if same:
            same[0]["source"] = "job-status+audit"
            continue
        # A later Quarantine audit inside an episode is an update (the reason changed), not a new series.
        inside = [e for e in episodes if e["series_began"] <= audit.time <= e["series_began"] + DISABLE_AFTER]
        if inside:
            continue
        episodes.append(
            {
                "job_id": None,
                "series_began": audit.time,
                "reason": audit.reason or None,
                "error_code": None,
                "error_message": None,
                "current_began": audit.time,
                "next_attempt": pd.NaT,
                "series_count": None,
                "last_seen": audit.time,
                "source": "audit",
            }
        )
    episodes.sort(key=lambda e: e["series_began"])
    enders = audits[audits["kind"].isin(["reset", "start", "disable"])]
    for k, episode in enumerate(episodes):
        began = episode["series_began"]
        episode["disable_at"] = began + DISABLE_AFTER
        candidates: list[tuple[pd.Timestamp, str]] = [(began + DISABLE_AFTER, "disabled after 28 days")]
        for audit in enders[enders["time"] > began].itertuples():
            if audit.kind == "reset" and audit.reason != "restart":
                continue  # a mapping or scoping change restarts provisioning, but the doc ties lifting to restart
            label = {"reset": "restart", "start": "start", "disable": "disabled"}[audit.kind]
            candidates.append((audit.time, label))
            break
        if not snapshots.empty:
            later = snapshots[snapshots["snapshot_time"] > episode["last_seen"]]
            if episode["job_id"] is not None:
                later = later[later["job_id"] == episode["job_id"]]
            if "quarantine_series_began" in later:
                lifted = later[later["quarantine_series_began"] != began]
                if len(lifted) and episode["source"] != "audit":
                    candidates.append((_ts(lifted["snapshot_time"].iloc[0]), "lifted (a later snapshot)"))
        if k + 1 < len(episodes):
            candidates.append((episodes[k + 1]["series_began"], "a new quarantine series"))
        end, ended_by = min(candidates, key=lambda c: c[0])
        if end > now:
            end, ended_by = pd.NaT, ""
        episode["ended"], episode["ended_by"] = end, ended_by
    frame = pd.DataFrame(episodes, columns=columns)
    for name in ("series_began", "current_began", "next_attempt", "ended", "disable_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[ns, UTC]")
    return frame


def _attempt_times(series_began: pd.Timestamp) -> list[pd.Timestamp]:
    """The documented retry schedule: 6 h, 12 h, 24 h after the first failure, then daily, until day 28."""
    offsets = list(RETRY_OFFSETS)
    day = 2
    while pd.Timedelta(days=day) < DISABLE_AFTER:
        offsets.append(RETRY_EVERY * day)
        day += 1
    return [series_began + offset for offset in offsets]


@dataclass
class _Context:
    now: pd.Timestamp
    window_start: pd.Timestamp | Any
    horizon: pd.Timestamp
    audits: pd.DataFrame
    snapshots: pd.DataFrame
    executions: pd.DataFrame
    interval: pd.Timedelta
    interval_source: str
    episodes: pd.DataFrame

    @classmethod
    def of(cls, evidence: Evidence) -> _Context:
        now = _ts(evidence.now)
        audits = _audits(evidence)
        snapshots = _snapshots(evidence)
        events = evidence.events
        first_event = events["activity_time"].min() if len(events) else pd.NaT
        last_event = events["activity_time"].max() if len(events) else pd.NaT
        pushed = getattr(evidence, "observed_cycles", None)
        if pushed is not None and len(pushed[0]):
            first_event = min(x for x in (first_event, pushed[0]["first"].min()) if not pd.isna(x))
            last_event = max(x for x in (last_event, pushed[0]["last"].max()) if not pd.isna(x))
        if evidence.window is not None:
            window_start = _ts(evidence.window[0])
        else:
            window_start = first_event
        horizon_candidates = [t for t in (last_event,) if not pd.isna(t)]
        if not snapshots.empty:
            horizon_candidates.append(_ts(snapshots["snapshot_time"].max()))
        horizon = max(horizon_candidates) if horizon_candidates else now
        interval, interval_source = _interval(snapshots)
        return cls(
            now=now,
            window_start=window_start,
            horizon=min(horizon, now) if not pd.isna(now) else horizon,
            audits=audits,
            snapshots=snapshots,
            executions=_executions(snapshots),
            interval=interval,
            interval_source=interval_source,
            episodes=_episodes(snapshots, audits, now),
        )

    def latest(self, job_id: str | None = None) -> pd.Series | None:
        frame = self.snapshots
        if frame.empty:
            return None
        if job_id is not None and (frame["job_id"] == job_id).any():
            frame = frame[frame["job_id"] == job_id]
        return frame.iloc[-1]


# ---------------------------------------------------------------------------------------------------------
# Observed cycles: one vectorised pass over the log entries


def _lut(categories: pd.Index, known: dict[str, str]) -> np.ndarray:
    """Map category codes (with -1 for NA as the last slot) to column positions; unknown -> last column."""
    names = list(known)
    unknown = len(names)
    lut = np.full(len(categories) + 1, unknown, dtype=np.int64)
    for code, value in enumerate(categories):
        text = str(value).strip().lower()
        if text in known:
            lut[code] = names.index(text)
    return lut


def _category_codes(series: pd.Series) -> tuple[np.ndarray, pd.Index]:
    if not isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype("category")
    return series.cat.codes.to_numpy(), series.cat.categories


def _observed_cycles(events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per cycleId in the log entries, and the number of entries that carry no cycleId.

    Vectorised: factorised ids, then bincounts and sorted reductions (no Python loop per entry).
    """
    count_columns = [
        *ACTION_COLUMNS.values(),
        "n_unknown_action",
        *STATUS_COLUMNS.values(),
        "n_unknown_status",
    ]
    columns = ["job_id", "cycle_id", "first", "last", "entries", *count_columns, "distinct_objects"]
    if len(events) == 0:
        return pd.DataFrame(columns=columns), 0
    codes, cycle_ids = pd.factorize(events["cycle_id"])
    keep = codes >= 0
    without_cycle = int((~keep).sum())
    k = len(cycle_ids)
    if k == 0:
        return pd.DataFrame(columns=columns), without_cycle
    times = _ns(events["activity_time"])
    job_codes, job_ids = pd.factorize(events["job_id"])
    action_codes, action_categories = _category_codes(events["action"])
    status_codes, status_categories = _category_codes(events["status"])
    source_codes, source_ids = pd.factorize(events["source_id"])
    if without_cycle:
        codes, times, job_codes = codes[keep], times[keep], job_codes[keep]
        action_codes, status_codes, source_codes = action_codes[keep], status_codes[keep], source_codes[keep]

    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    sorted_times = times[order]
    first = np.minimum.reduceat(sorted_times, starts)
    last = np.maximum.reduceat(sorted_times, starts)
    entries = np.bincount(codes, minlength=k)
    job_of = job_codes[order][starts]

    def counts(value_codes: np.ndarray, categories: pd.Index, known: dict[str, str]) -> np.ndarray:
        lut = _lut(categories, known)
        slot = lut[value_codes]  # code -1 (NA) indexes the last slot: unknown
        width = len(known) + 1
        return np.bincount(codes * width + slot, minlength=k * width).reshape(k, width)

    by_action = counts(action_codes, action_categories, ACTION_COLUMNS)
    by_status = counts(status_codes, status_categories, STATUS_COLUMNS)

    # Distinct (cycle, object) pairs: sort the combined key and keep the first of each run (a sort is
    # faster here than NumPy's hash-based unique).
    has_source = source_codes >= 0
    span = np.int64(len(source_ids) + 1)
    pairs = np.sort(codes[has_source].astype(np.int64) * span + source_codes[has_source])
    firsts = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] if len(pairs) else pairs
    distinct = np.bincount(firsts // span, minlength=k)

    frame = pd.DataFrame(
        {
            "job_id": pd.array(
                [None if j < 0 else job_ids[j] for j in job_of.tolist()], dtype=CYCLE_COLUMNS["job_id"]
            ),
            "cycle_id": pd.array(np.asarray(cycle_ids, dtype=object), dtype="str"),
            "first": pd.to_datetime(first, utc=True).astype("datetime64[ns, UTC]"),
            "last": pd.to_datetime(last, utc=True).astype("datetime64[ns, UTC]"),
            "entries": entries.astype(np.int64),
        }
    )
    for i, name in enumerate([*ACTION_COLUMNS.values(), "n_unknown_action"]):
        frame[name] = by_action[:, i]
    for i, name in enumerate([*STATUS_COLUMNS.values(), "n_unknown_status"]):
        frame[name] = by_status[:, i]
    frame["distinct_objects"] = distinct.astype(np.int64)
    return frame.sort_values("first", kind="stable").reset_index(drop=True), without_cycle


# ---------------------------------------------------------------------------------------------------------
# Assembling the table


def _match_executions(observed: pd.DataFrame, ctx: _Context) -> pd.DataFrame:
    """Observed cycles with job-status timing where an execution overlaps their log span, plus executions
    inside the window that no logged cycle overlaps (cycles that left no log entries)."""
    frame = observed.copy()
    frame["start"] = frame["first"]
    frame["end"] = frame["last"]
    frame["timing_source"] = "log-span"
    frame["activity_id"] = None
    frame["state"] = None
    frame["inferred"] = False
    for name in ("first", "last", "start", "end"):
        frame[name] = frame[name].astype("datetime64[ns, UTC]")
    executions = ctx.executions
    unmatched: list[int] = []
    if len(executions):
        first_ns = _ns(frame["first"]) if len(frame) else np.array([], dtype=np.int64)
        last_ns = _ns(frame["last"]) if len(frame) else np.array([], dtype=np.int64)
        began_ns = _ns(executions["began"])
        ended_ns = _ns(executions["ended"])
        # frame is sorted by first entry: the candidate is the last cycle whose first entry is at or before
        # the execution's end; it matches when its last entry is at or after the execution's start.
        candidate = np.searchsorted(first_ns, ended_ns, side="right") - 1
        for e, c in enumerate(candidate.tolist()):
            execution = executions.iloc[e]
            ok = c >= 0 and last_ns[c] >= began_ns[e]
            if ok:
                job = frame.at[c, "job_id"]
                ok = pd.isna(job) or pd.isna(execution["job_id"]) or job == execution["job_id"]
            if not ok:
                unmatched.append(e)
                continue
            frame.at[c, "start"] = execution["began"]
            frame.at[c, "end"] = execution["ended"]
            frame.at[c, "timing_source"] = "job-status"
            frame.at[c, "activity_id"] = _text(execution["activity_id"])
            frame.at[c, "state"] = _text(execution["state"])
    extra = []
    for e in unmatched:
        execution = executions.iloc[e]
        if not pd.isna(ctx.window_start) and execution["began"] < ctx.window_start:
            continue  # before the logs we have: its entries are simply not in the evidence
        extra.append(
            {
                "job_id": _text(execution["job_id"]),
                "cycle_id": None,
                "activity_id": _text(execution["activity_id"]),
                "start": execution["began"],
                "end": execution["ended"],
                "timing_source": "job-status",
                "state": _text(execution["state"]),
                "inferred": True,
            }
        )
    if extra:
        frame = pd.concat([frame, _blank_rows(extra)], ignore_index=True)
    return frame


def _blank_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows for cycles without log entries: zero counts, no first/last entry."""
    frame = pd.DataFrame(rows)
    for name in ["entries", *ACTION_COLUMNS.values(), "n_unknown_action", *STATUS_COLUMNS.values()]:
        frame[name] = 0
    frame["n_unknown_status"] = 0
    frame["distinct_objects"] = 0
    frame["first"] = pd.NaT
    frame["last"] = pd.NaT
    for name in ("start", "end", "first", "last"):
        if name in frame:
            frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[ns, UTC]")
    return frame


def _episode_spans(ctx: _Context, job_id: object) -> list[tuple[pd.Timestamp, pd.Timestamp, pd.Series]]:
    spans = []
    for _, episode in ctx.episodes.iterrows():
        if (
            _job_key(episode["job_id"])
            and _job_key(job_id)
            and _job_key(episode["job_id"]) != _job_key(job_id)
        ):
            continue
        end = episode["ended"] if not pd.isna(episode["ended"]) else ctx.horizon
        spans.append((episode["series_began"], end, episode))
    return spans


def _infer_attempts(known: pd.DataFrame, ctx: _Context, job_id: object) -> list[dict[str, Any]]:
    """Quarantine retries on the documented schedule that no known cycle accounts for."""
    rows = []
    starts = known["start"].dropna().sort_values().to_numpy(dtype="datetime64[ns]")
    tolerance = ATTEMPT_TOLERANCE.to_timedelta64()
    lower = ctx.window_start
    for began, end, _episode in _episode_spans(ctx, job_id):
        for when in _attempt_times(began):
            if when > end or when > ctx.horizon:
                break
            if not pd.isna(lower) and when < lower:
                continue
            point = when.tz_convert(None).to_datetime64()
            i = np.searchsorted(starts, point)
            near = (i < len(starts) and starts[i] - point <= tolerance) or (
                i > 0 and point - starts[i - 1] <= tolerance
            )
            if not near:
                rows.append(
                    {
                        "job_id": job_id or None,
                        "start": when,
                        "end": pd.NaT,
                        "timing_source": "retry-schedule",
                    }
                )
    return rows


def _blockers(ctx: _Context, job_id: object) -> list[tuple[pd.Timestamp, pd.Timestamp | None, str]]:
    """Spans in which the job does not run on its interval: quarantine episodes (retry schedule instead),
    and paused or disabled periods (until a start or restart). (from, to or None when open, why)."""
    spans: list[tuple[pd.Timestamp, pd.Timestamp | None, str]] = [
        (began, end, "quarantine") for began, end, _ in _episode_spans(ctx, job_id)
    ]
    audits = ctx.audits
    for audit in audits[audits["kind"].isin(["pause", "disable"])].itertuples():
        resumes = audits[(audits["time"] > audit.time) & audits["kind"].isin(["start", "reset"])]
        spans.append((audit.time, resumes["time"].iloc[0] if len(resumes) else None, audit.kind))
    return spans


def _infer_interval(known: pd.DataFrame, ctx: _Context, job_id: object) -> list[dict[str, Any]]:
    """Empty incremental cycles between two known cycles, one per missed interval.

    The cadence restarts at a watermark reset or a start (the next cycle follows promptly), stops while the job
    is paused, disabled or quarantined, and the cycles of a gap are spaced evenly so drift does not add up.
    """
    interval = ctx.interval
    blockers = _blockers(ctx, job_id)
    restarts = ctx.audits[ctx.audits["kind"].isin(["reset", "start"])]["time"].tolist()
    ordered = known.sort_values("start", kind="stable")
    starts = ordered["start"].tolist()
    ends = ordered["end"].tolist()
    rows: list[dict[str, Any]] = []

    def blocked(when: pd.Timestamp) -> bool:
        return any(a <= when and (b is None or when < b) for a, b, _ in blockers)

    for i in range(len(starts) - 1):
        a_start, a_end, b_start = starts[i], ends[i], starts[i + 1]
        if pd.isna(a_start) or pd.isna(b_start):
            continue
        if b_start - a_start < 1.5 * interval:
            continue
        cursor = a_start + interval
        if not pd.isna(a_end):
            cursor = max(cursor, a_end)
        # Break points inside the gap: resets and starts restart the cadence; blockers stop it.
        points = sorted(
            [(t, "restart") for t in restarts if a_start < t < b_start]
            + [(a, "block") for a, _, _ in blockers if a_start < a < b_start]
            + [(b, "unblock") for _, b, _ in blockers if b is not None and a_start < b < b_start]
        )
        segments: list[tuple[pd.Timestamp, pd.Timestamp, bool]] = []  # (from, to, ends at the next cycle)
        position: pd.Timestamp | None = cursor
        for when, what in points:
            if position is not None and when > position:
                segments.append((position, when, False))
            position = when if what in ("restart", "unblock") else None
        if position is not None:
            segments.append((position, b_start, True))
        for seg_from, seg_to, to_cycle in segments:
            if to_cycle:
                n = int(math.floor((seg_to - seg_from) / interval + 0.5))
                step = (seg_to - seg_from) / n if n else interval
                times = [seg_from + step * k for k in range(n)]
            else:
                # Up to a stop: a cycle due just before it (within a quarter interval) is taken as not run;
                # typically the previous cycle is the one that caused the stop (a quarantine at its end).
                room = seg_to - seg_from - min(interval / 4, pd.Timedelta(minutes=10))
                n = int(math.ceil(room / interval)) if room > pd.Timedelta(0) else 0
                times = [seg_from + interval * k for k in range(n)]
            for when in times:
                if seg_from <= when < seg_to and not blocked(when):
                    rows.append(
                        {"job_id": job_id or None, "start": when, "end": pd.NaT, "timing_source": "interval"}
                    )
    return rows


def _add_inferred(frame: pd.DataFrame, ctx: _Context) -> pd.DataFrame:
    keys = [_job_key(j) for j in frame["job_id"].tolist()]
    job_ids = list(dict.fromkeys(keys))
    if not ctx.snapshots.empty:
        job_ids.extend(
            k for k in dict.fromkeys(map(_job_key, ctx.snapshots["job_id"].tolist())) if k not in job_ids
        )
    if len(job_ids) > 1 and "" in job_ids:
        job_ids.remove("")  # entries without a job id belong to the job(s) the snapshots name
    job_ids = job_ids or [""]
    extra: list[dict[str, Any]] = []
    for job_id in job_ids:
        mine = frame if len(job_ids) == 1 else frame[[k == job_id for k in keys]]
        attempts = _infer_attempts(mine, ctx, job_id)
        known = (
            pd.concat([mine[["start", "end"]], _blank_rows(attempts)[["start", "end"]]]) if attempts else mine
        )
        extra.extend(attempts)
        extra.extend(_infer_interval(known[["start", "end"]], ctx, job_id))
    if extra:
        rows = _blank_rows(extra)
        rows["inferred"] = True
        frame = pd.concat([frame, rows], ignore_index=True)
    return frame.sort_values("start", kind="stable").reset_index(drop=True)


def _assign_resets(frame: pd.DataFrame, audits: pd.DataFrame) -> None:
    """Each watermark-reset audit marks the first cycle that started at or after it."""
    frame["reset_before"] = False
    frame["reset_reason"] = ""
    resets = audits[audits["kind"] == "reset"]
    if frame.empty or resets.empty:
        return
    starts = _ns(frame["start"])
    for audit in resets.itertuples():
        i = int(np.searchsorted(starts, audit.time.value, side="left"))
        if i >= len(frame):
            continue
        frame.at[i, "reset_before"] = True
        previous = frame.at[i, "reset_reason"]
        if audit.reason not in previous.split(","):
            frame.at[i, "reset_reason"] = f"{previous},{audit.reason}" if previous else audit.reason


def _mark_running(frame: pd.DataFrame, ctx: _Context) -> None:
    """A logged cycle without job-status timing is running when a snapshot taken after its first entry still
    reports an earlier execution as the last one (or none)."""
    frame["running"] = False
    if frame.empty or ctx.snapshots.empty:
        return
    for job_id, rows in frame[~frame["inferred"]].groupby("job_id", dropna=False, sort=False):
        last = rows.index[-1]
        if frame.at[last, "timing_source"] != "log-span":
            continue
        latest = ctx.latest(None if pd.isna(job_id) else job_id)
        if latest is None or latest["snapshot_time"] < frame.at[last, "first"]:
            continue
        ended = latest["last_execution_ended"]
        if pd.isna(ended) or ended < frame.at[last, "first"]:
            frame.at[last, "running"] = True


def _classify(frame: pd.DataFrame, ctx: _Context) -> None:
    """Initial vs incremental: documented signals first, then the cycle's shape."""
    n = len(frame)
    kinds = ["unknown"] * n
    reasons = [""] * n
    quarantine = [False] * n
    starts = frame["start"].tolist()
    inferred = frame["inferred"].to_numpy(dtype=bool)
    reset_before = frame["reset_before"].to_numpy(dtype=bool)
    reset_reason = frame["reset_reason"].tolist()
    distinct = frame["distinct_objects"].to_numpy(dtype=np.int64)
    for began, end, episode in _episode_spans(ctx, None):
        text = f"quarantine retry ({episode['reason'] or 'quarantined'}): retries re-run the failed changes"
        for i in np.flatnonzero((frame["start"] > began) & (frame["start"] <= end) & ~reset_before):
            quarantine[i], kinds[i], reasons[i] = True, "incremental", text
    for i in np.flatnonzero(reset_before):
        kinds[i] = "initial"
        reasons[i] = f"watermark reset before it ({reset_reason[i]}, directory audit)"
    for i in np.flatnonzero(inferred & ~reset_before):
        if kinds[i] == "unknown":
            kinds[i] = "incremental"
            reasons[i] = (
                "no log entries: an initial cycle logs every object in scope, an empty incremental nothing"
            )
    keys = [_job_key(j) for j in frame["job_id"].tolist()]
    for job_id in dict.fromkeys(keys):
        mine = [i for i in range(n) if keys[i] == job_id and not inferred[i]]
        latest = ctx.latest(job_id or None)
        if not mine or latest is None or kinds[mine[0]] != "unknown":
            continue
        earliest = mine[0]
        steady_first = latest.get("steady_state_first", pd.NaT)
        if _same(latest.get("status_code"), "NotRun"):
            kinds[earliest] = "initial"
            reasons[earliest] = "first run: the job status is NotRun (its first cycle has not completed)"
        elif not pd.isna(steady_first) and starts[earliest] < steady_first:
            # Vetoed when the cycle is clearly small next to the others (the window may have cut the job's
            # real first cycle off): the shape rule decides then.
            if distinct[earliest] >= SHAPE_SMALL * distinct[mine].max():
                kinds[earliest] = "initial"
                reasons[earliest] = (
                    "first cycle of the job: it began before steady state was first achieved "
                    f"({_fmt_time(steady_first)})"
                )
    logged = np.flatnonzero(~inferred & (frame["entries"].to_numpy() > 0)).tolist()
    _classify_by_shape(distinct, logged, kinds, reasons)
    frame["kind"] = kinds
    frame["kind_reason"] = reasons
    frame["quarantine_attempt"] = quarantine


def _classify_by_shape(distinct: np.ndarray, logged: list[int], kinds: list[str], reasons: list[str]) -> None:
    """Every object in scope evaluated: close to the largest distinct-object count seen and far above the median
    incremental cycle -> initial; well below the largest or near the median -> incremental."""
    if not logged:
        return
    largest = int(distinct[logged].max())
    small = [int(distinct[i]) for i in logged if distinct[i] < SHAPE_SMALL * largest]
    decided_incremental = [int(distinct[i]) for i in logged if kinds[i] == "incremental"]
    reference = small or decided_incremental
    median = float(np.median(reference)) if reference else None
    for i in logged:
        if kinds[i] != "unknown":
            continue
        d = int(distinct[i])
        if len(logged) < 2:
            reasons[i] = "a single logged cycle and no documented signal: nothing to compare its shape with"
            continue
        if median is None:
            reasons[i] = f"every logged cycle evaluated about as many objects ({d} of at most {largest})"
            continue
        times_median = d / max(median, 1.0)
        if d >= SHAPE_NEAR_MAX * largest and times_median >= SHAPE_TIMES_MEDIAN:
            kinds[i] = "initial"
            reasons[i] = (
                f"shape: evaluated {d} objects, {d / largest:.0%} of the largest cycle and "
                f"{times_median:.0f}x the median incremental ({median:g})"
            )
        elif d < SHAPE_SMALL * largest or times_median < SHAPE_TIMES_MEDIAN:
            kinds[i] = "incremental"
            reasons[i] = f"shape: evaluated {d} objects, {d / largest:.0%} of the largest cycle ({largest})"
        else:
            reasons[i] = f"shape unclear: {d} objects, {d / largest:.0%} of the largest cycle ({largest})"


def cycles_table(evidence: Evidence) -> pd.DataFrame:
    """One row per cycle of the app's job(s), oldest first; columns as in :data:`CYCLE_COLUMNS`.

    Assumes the events cover ``evidence.window`` (cycles are inferred only inside it) and that the jobs table
    holds every snapshot kept (more snapshots give more cycles exact job-status timing). ``attrs`` holds
    ``interval``, ``interval_source`` and ``entries_without_cycle`` (entries with no cycleId, counted, not
    placed in a cycle).
    """
    ctx = _Context.of(evidence)
    # A source that summarised the entries itself (Log Analytics, in KQL) hands over the same per-cycle rows.
    pushed = getattr(evidence, "observed_cycles", None)
    observed, without_cycle = pushed if pushed is not None else _observed_cycles(evidence.events)
    frame = _match_executions(observed, ctx)
    frame = _add_inferred(frame, ctx)
    _assign_resets(frame, ctx.audits)
    _mark_running(frame, ctx)
    _classify(frame, ctx)
    frame["duration"] = frame["end"] - frame["start"]
    log_span = (frame["timing_source"] == "log-span").to_numpy()
    frame["duration_is_lower_bound"] = log_span
    # A single entry spans nothing: its cycle's duration is unknown, not zero.
    frame.loc[log_span & (frame["entries"].to_numpy() < 2), "duration"] = pd.NaT
    out = pd.DataFrame({name: frame[name] for name in CYCLE_COLUMNS})
    for name, dtype in CYCLE_COLUMNS.items():
        if dtype == "str":
            out[name] = out[name].astype(object).where(out[name].notna(), None).astype("str")
        elif dtype == "int64":
            out[name] = out[name].fillna(0).astype("int64")
        else:
            out[name] = out[name].astype(dtype)
    out.attrs = {
        "interval": ctx.interval,
        "interval_source": ctx.interval_source,
        "entries_without_cycle": without_cycle,
    }
    return out


def cycles_as_records(cycles: pd.DataFrame) -> list[dict[str, Any]]:
    """The cycles table as JSON-ready dicts (times ISO-8601 UTC, durations in seconds, missing as None)."""
    return _jsonable(cycles)


# ---------------------------------------------------------------------------------------------------------
# Initial-cycle ETA


@dataclass
class Eta:
    """When the running initial cycle will end: a range and the method behind each bound.

    ``earliest``/``likely``/``latest`` come from the job's progress observations when there are any
    (``progress`` method: a linear fit for ``likely``, the fastest and slowest observed rates for the bounds),
    else from the log entries so far and the documented sizing. ``sizing_earliest``/``sizing_latest`` are
    always the documented 0.01-0.08 minutes per object in scope, counted from the cycle's start.
    """

    cycle_start: datetime | None
    earliest: datetime | None
    likely: datetime | None
    latest: datetime | None
    earliest_method: str
    likely_method: str
    latest_method: str
    sizing_earliest: datetime | None
    sizing_latest: datetime | None
    objects_in_scope: tuple[int, int] | None
    objects_in_scope_source: str
    observations: int
    completed: int | None
    total: int | None
    units: str | None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(self)


def _progress_observations(evidence: Evidence, snapshots: pd.DataFrame) -> pd.DataFrame:
    """Every progress observation known: the latest job JSON's list plus each snapshot's latest one."""
    rows = []
    status = (evidence.job or {}).get("status") if isinstance(evidence.job, dict) else None
    for item in (status or {}).get("progress") or []:
        if not isinstance(item, dict):
            continue
        rows.append(
            {
                "time": _ts(item.get("progressObservationDateTime")),
                "completed": item.get("completedUnits"),
                "total": item.get("totalUnits"),
                "units": _text(item.get("units")),
            }
        )
    if not snapshots.empty and "progress_time" in snapshots:
        for row in snapshots[snapshots["progress_time"].notna()].itertuples():
            rows.append(
                {
                    "time": _ts(row.progress_time),
                    "completed": row.progress_completed,
                    "total": row.progress_total,
                    "units": _text(row.progress_units),
                }
            )
    frame = pd.DataFrame(rows, columns=["time", "completed", "total", "units"])
    frame = frame[frame["time"].notna()]
    frame["completed"] = pd.to_numeric(frame["completed"], errors="coerce")
    frame["total"] = pd.to_numeric(frame["total"], errors="coerce")
    frame = frame[(frame["total"] > 0) & frame["completed"].notna()]
    frame = frame.drop_duplicates("time").sort_values("time", kind="stable").reset_index(drop=True)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def progress_observations(evidence: Evidence) -> pd.DataFrame:
    """The job's progress observations (time, completed, total, units), oldest first, without duplicates:
    the latest job JSON's whole list plus the latest observation kept in each job-status snapshot."""
    return _progress_observations(evidence, _snapshots(evidence))


def _assigned_count(evidence: Evidence) -> int | None:
    """The documented sizing count: assigned users + groups + group members (direct members only)."""
    if not evidence.assignments:
        return None
    users = groups = members = 0
    for assignment in evidence.assignments:
        kind = _text(assignment.get("principalType")) or ""
        if kind.lower() == "user":
            users += 1
        elif kind.lower() == "group":
            groups += 1
            facts = evidence.groups.get(assignment.get("principalId")) or {}
            members += len(facts.get("direct") or [])
    return users + groups + members


def _running_initial(cycles: pd.DataFrame) -> pd.Series | None:
    running = cycles[cycles["running"] & (cycles["kind"] == "initial")]
    return None if running.empty else running.iloc[-1]


def initial_cycle_eta(evidence: Evidence, cycles: pd.DataFrame | None = None) -> Eta | None:
    """When the initial cycle that is running now will end, or None when no initial cycle is running.

    Assumes ``completedUnits`` counts whole units (pages) done, so the true share lies in [c, c+1) / total, and
    that the rate so far continues. The cycle's start is its first log entry (or the first observation).
    """
    if cycles is None:
        cycles = cycles_table(evidence)
    ctx = _Context.of(evidence)
    cycle = _running_initial(cycles)
    observations = _progress_observations(evidence, ctx.snapshots)
    latest = ctx.latest()
    if cycle is None:
        if latest is None or not _same(latest.get("status_code"), "NotRun") or observations.empty:
            return None
        start = observations["time"].iloc[0]
        cycle_id = None
    else:
        start = cycle["start"]
        cycle_id = cycle["cycle_id"]
    observations = observations[observations["time"] >= start]
    notes: list[str] = []
    still_running_at = ctx.horizon

    # Objects in scope.
    scope: tuple[int, int] | None = None
    scope_source = "unknown"
    # The scope setting is not readable from Graph: the logs may settle it (provkit.analysis.syncscope).
    sync_all = infer_sync_scope(evidence.events, evidence.tables.steps).sync_all
    assigned = _assigned_count(evidence) if sync_all is not True else None
    events = evidence.events
    mine = events[events["cycle_id"] == cycle_id] if cycle_id is not None and len(events) else events.iloc[:0]
    if assigned:
        scope, scope_source = (assigned, assigned), "assignments (users + groups + group members)"
        if sync_all is None:
            scope_source += (
                " if the scope is 'Sync only assigned' (unknown; under 'Sync all' every user and group)"
            )
    elif len(observations) and len(mine):
        obs = observations.iloc[-1]
        c, total = int(obs["completed"]), int(obs["total"])
        seen = int(mine.loc[mine["activity_time"] <= obs["time"], "source_id"].nunique())
        if c > 0 and seen > 0:
            low = math.floor(seen * total / min(c + 1, total))
            high = math.ceil(seen * total / c)
            scope = (low, high)
            scope_source = f"{seen} distinct objects logged by {_fmt_time(obs['time'])} / completed share {c}-{c + 1} of {total}"
    if scope is None and len(mine):
        seen = int(mine["source_id"].nunique())
        scope, scope_source = (
            (seen, seen),
            f"at least the {seen} distinct objects logged so far (a lower bound)",
        )
        notes.append(
            "objects in scope unknown: sizing uses the objects logged so far, so it is a lower bound"
        )

    sizing_earliest = sizing_latest = None
    if scope is not None:
        sizing_earliest = start + pd.Timedelta(minutes=SIZING_MINUTES_PER_OBJECT[0] * scope[0])
        sizing_latest = start + pd.Timedelta(minutes=SIZING_MINUTES_PER_OBJECT[1] * scope[1])

    earliest = likely = latest_end = None
    methods = ["", "", ""]
    completed = total = None
    units = None
    if len(observations):
        last = observations.iloc[-1]
        completed, total, units = int(last["completed"]), int(last["total"]), last["units"]
        minutes = ((observations["time"] - start).dt.total_seconds() / 60).to_numpy()
        done = observations["completed"].to_numpy(dtype=float)
        t_last, c_last = float(minutes[-1]), float(done[-1])
        if c_last >= total:
            notes.append("the last observation shows every unit completed: the cycle is finishing")
            earliest = likely = latest_end = max(last["time"], still_running_at)
            methods = ["progress (complete)"] * 3
        elif t_last > 0:
            # Rates: overall so far (with the unit rounding) and between consecutive observations.
            rates = [c_last / t_last, (c_last + 1) / t_last]
            gaps = np.diff(minutes)
            steps = np.diff(done)
            rates += [s / g for s, g in zip(steps.tolist(), gaps.tolist(), strict=True) if g > 0]
            positive = [r for r in rates if r > 0]
            remaining = total - c_last
            if positive:
                fastest, slowest = max(positive), min(positive)
                earliest = last["time"] + pd.Timedelta(minutes=max(remaining - 1, 0) / fastest)
                latest_end = last["time"] + pd.Timedelta(minutes=remaining / slowest)
                methods[0] = f"progress: fastest observed rate ({fastest:.3g} {units or 'units'}/min)"
                methods[2] = f"progress: slowest observed rate ({slowest:.3g} {units or 'units'}/min)"
            # Linear fit through the start (0 done) and the observations (mid-unit, as c is rounded down).
            xs = np.r_[0.0, minutes]
            ys = np.r_[0.0, np.minimum(done + 0.5, total)]
            slope, intercept = np.polyfit(xs, ys, 1) if len(xs) > 2 else (ys[-1] / xs[-1], 0.0)
            if slope > 0:
                likely = start + pd.Timedelta(minutes=(total - intercept) / slope)
                methods[1] = f"progress: linear fit of {len(observations)} observation(s)"
        else:
            notes.append("the only progress observation is at the cycle's start: no rate yet")
    if likely is None and scope is not None and len(mine) > 1:
        span = (mine["activity_time"].max() - start).total_seconds() / 60
        seen = int(mine["source_id"].nunique())
        if span > 0 and seen > 0:
            middle = (scope[0] + scope[1]) / 2
            likely = start + pd.Timedelta(minutes=span * middle / seen)
            methods[1] = f"log rate: {seen / span:.3g} objects/min so far, {middle:.0f} objects in scope"
    if earliest is None and sizing_earliest is not None:
        earliest, methods[0] = sizing_earliest, "sizing: 0.01 min per object in scope"
    if latest_end is None and sizing_latest is not None:
        latest_end, methods[2] = sizing_latest, "sizing: 0.08 min per object in scope"
    if likely is None and earliest is not None and latest_end is not None:
        likely, methods[1] = earliest + (latest_end - earliest) / 2, "middle of the range"
    # The cycle was still running at the latest snapshot: it cannot end before that.
    if earliest is not None and earliest < still_running_at:
        notes.append(
            f"earliest moved to the latest snapshot ({_fmt_time(still_running_at)}): still running then"
        )
        earliest = still_running_at
    if likely is not None and likely < still_running_at:
        notes.append(
            f"likely moved to the latest snapshot ({_fmt_time(still_running_at)}): still running then"
        )
        likely = still_running_at
    if latest_end is not None and earliest is not None and latest_end < earliest:
        latest_end = earliest
    return Eta(
        cycle_start=start,
        earliest=earliest,
        likely=likely,
        latest=latest_end,
        earliest_method=methods[0] or "none",
        likely_method=methods[1] or "none",
        latest_method=methods[2] or "none",
        sizing_earliest=sizing_earliest,
        sizing_latest=sizing_latest,
        objects_in_scope=scope,
        objects_in_scope_source=scope_source,
        observations=len(observations),
        completed=completed,
        total=total,
        units=units,
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------------------
# Job state, change ETA, quarantine timeline


def _job_state(latest: pd.Series | None, cycles: pd.DataFrame) -> tuple[str, str]:
    """(state, detail) from the latest job status: Active, Running initial cycle, Quarantine, Paused,
    Disabled, NotRun, NotConfigured, Unknown (no snapshot), or an unknown status code as sent."""
    if latest is None:
        return "Unknown", "no job-status snapshot (logs only): the job's state is not known"
    code = _text(latest.get("status_code")) or ""
    if _same(latest.get("schedule_state"), "Disabled"):
        return "Disabled", f"schedule state Disabled (status code {code or 'not given'})"
    if code.lower() == "quarantine":
        reason = _text(latest.get("quarantine_reason")) or "reason not given"
        error = _text(latest.get("quarantine_error_code"))
        # The escrow quarantine records the same text as reason and error code: say it once.
        return "Quarantine", reason + (f" ({error})" if error and error.lower() != reason.lower() else "")
    if code.lower() == "paused" or _same(latest.get("schedule_state"), "Paused"):
        return "Paused", "paused (usually by an admin); start resumes where it stopped"
    if code.lower() == "notconfigured":
        return "NotConfigured", "provisioning was never configured or run"
    if _running_initial(cycles) is not None:
        return "Running initial cycle", "the initial cycle is running: every object in scope is evaluated"
    if code.lower() == "notrun":
        return "NotRun", "configured, but its first run has not completed"
    if code.lower() == "active":
        return "Active", "running periodically"
    return code or "Unknown", "status code not documented: kept as sent"


@dataclass
class ChangeEta:
    """When a change made now in Entra ID reaches the app, and under what condition.

    ``never`` is True when nothing will run until someone acts (paused, disabled, not configured);
    ``only_if_fixed`` is True when the next run is a quarantine retry that succeeds only if the cause is fixed.
    """

    state: str
    earliest: datetime | None
    likely: datetime | None
    latest: datetime | None
    never: bool
    only_if_fixed: bool
    basis: str
    explanation: str

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(self)


def _incremental_durations(cycles: pd.DataFrame) -> pd.Series:
    mask = (
        (cycles["kind"] == "incremental")
        & ~cycles["running"]
        & ~cycles["quarantine_attempt"]
        & cycles["duration"].notna()
    )
    return cycles.loc[mask, "duration"]


def _incremental_stats(cycles: pd.DataFrame) -> tuple[pd.Timedelta, pd.Timedelta, str]:
    durations = _incremental_durations(cycles)
    if len(durations) >= 3:
        return (
            durations.quantile(0.5),
            durations.quantile(0.9),
            f"p50/p90 of {len(durations)} recent incremental cycles",
        )
    return DOCUMENTED_INCREMENTAL[0], DOCUMENTED_INCREMENTAL[1], "documented incremental duration (10-30 min)"


def change_eta(evidence: Evidence, cycles: pd.DataFrame | None = None) -> ChangeEta:
    """When will a change made now (``evidence.now``) reach the app?

    Active: the next cycle on the interval, plus the recent incremental duration (p50 likely, p90 latest).
    Running initial cycle: after it ends, by the first incremental cycle. Quarantine: the next attempt, which
    succeeds only if the cause is fixed. Paused, disabled, not configured: never until someone starts the job.
    """
    if cycles is None:
        cycles = cycles_table(evidence)
    ctx = _Context.of(evidence)
    now = ctx.now
    latest = ctx.latest()
    state, detail = _job_state(latest, cycles)
    p50, p90, basis = _incremental_stats(cycles)
    interval = ctx.interval
    if state in ("Paused", "Disabled", "NotConfigured"):
        what = {
            "Paused": "The job is paused: no change reaches the app until it is started again (start resumes "
            "where it stopped; the current cycle, if any, ran to completion).",
            "Disabled": "The job is disabled: nothing reaches the app until it is started again. "
            + (
                "It was disabled after four weeks in quarantine: fix the cause first, then restart."
                if latest is not None and not pd.isna(latest.get("quarantine_series_began"))
                else "Start it (or restart it to clear the watermark)."
            ),
            "NotConfigured": "Provisioning is not configured: nothing reaches the app until it is configured "
            "and started.",
        }[state]
        return ChangeEta(state, None, None, None, True, False, detail, what)
    if state == "Quarantine":
        next_attempt = latest.get("quarantine_next_attempt") if latest is not None else pd.NaT
        if (pd.isna(next_attempt) or next_attempt < now) and len(ctx.episodes):
            # Not given, or already past at ``now`` (an older snapshot): the documented schedule's next slot.
            upcoming = [t for t in _attempt_times(ctx.episodes["series_began"].iloc[-1]) if t > now]
            next_attempt = upcoming[0] if upcoming else next_attempt
        if pd.isna(next_attempt):
            return ChangeEta(
                state,
                None,
                None,
                None,
                False,
                True,
                detail,
                "The job is quarantined and the next attempt is not known. A change reaches the app only "
                "after the cause is fixed and the job is restarted.",
            )
        start = max(_ts(next_attempt), now)
        attempts = cycles.loc[cycles["quarantine_attempt"] & ~cycles["running"], "duration"].dropna()
        if len(attempts):
            # A retry re-runs the failed changes: earlier retries say how long that takes.
            p50, p90 = attempts.quantile(0.5), attempts.quantile(0.9)
            basis = f"p50/p90 of {len(attempts)} earlier quarantine retries"
        return ChangeEta(
            state,
            start,
            start + p50,
            start + p90,
            False,
            True,
            f"next quarantine attempt + {basis}",
            f"The job is quarantined ({detail}). The next attempt is at {_fmt_time(start)}; the change reaches "
            "the app then only if the cause is fixed. Otherwise retries continue daily and the job is disabled "
            "28 days after the series began. Fixing the cause and restarting runs an initial cycle now.",
        )
    if state == "Running initial cycle":
        eta = initial_cycle_eta(evidence, cycles)
        if eta is None or eta.likely is None:
            return ChangeEta(
                state,
                None,
                None,
                None,
                False,
                False,
                detail,
                "The initial cycle is running and its end cannot be estimated yet; the change reaches the app "
                "in the first incremental cycle after it ends.",
            )
        earliest = eta.earliest or eta.likely
        latest_end = (eta.latest or eta.likely) + interval + p90
        return ChangeEta(
            state,
            earliest,
            eta.likely + p50,
            latest_end,
            False,
            False,
            f"initial-cycle ETA ({eta.likely_method}) + {basis}",
            f"The initial cycle is running (likely to end {_fmt_time(eta.likely)}); the change reaches the app "
            "in the first incremental cycle after it, unless the initial cycle reaches the object first.",
        )
    if state == "NotRun":
        return ChangeEta(
            state,
            None,
            None,
            None,
            False,
            False,
            detail,
            "The job's first cycle has not run yet; the change reaches the app in the first (initial) cycle.",
        )
    # Active (or an unknown state): the next cycle on the interval.
    known = cycles[cycles["start"].notna()]
    if len(known):
        last = known.iloc[-1]
        next_start = last["start"] + interval
        if not pd.isna(last["end"]):
            next_start = max(next_start, last["end"])
        if next_start < now:
            missed = math.ceil((now - next_start) / interval)
            next_start = next_start + interval * missed
        how = f"the last cycle started {_fmt_time(last['start'])}; interval {_fmt_duration(interval)}"
        earliest, likely, latest_end = next_start, next_start + p50, next_start + p90
    else:
        how = f"no cycle seen: the next starts within one interval ({_fmt_duration(interval)})"
        earliest, likely, latest_end = now, now + interval / 2 + p50, now + interval + p90
    pending = ctx.audits[(ctx.audits["kind"] == "reset") & (ctx.audits["time"] > _last_start(cycles))]
    text = f"The job is active: the next cycle starts about {_fmt_time(earliest)} ({how}) and picks up the change."
    if len(pending):
        text += " A watermark reset is pending: the next cycle is an initial cycle and will take longer."
    return ChangeEta(state, earliest, likely, latest_end, False, False, f"next cycle start + {basis}", text)


def _last_start(cycles: pd.DataFrame) -> pd.Timestamp:
    starts = cycles["start"].dropna()
    return starts.iloc[-1] if len(starts) else pd.Timestamp.min.tz_localize("UTC")


@dataclass
class QuarantineTimeline:
    """Quarantine episodes and their documented retry schedule.

    ``episodes``: one row per series (series_began, reason, error_code, error_message, current_began,
    next_attempt, series_count, ended, ended_by, disable_at, source). ``attempts``: the retry schedule of each
    episode (series_began, attempt, time, passed, observed: a cycle was seen within 30 minutes of it).
    ``next_attempt`` and ``disable_at`` describe the current episode (None when the job is not quarantined).
    """

    quarantined: bool
    reason: str | None
    error_code: str | None
    error_message: str | None
    series_began: datetime | None
    next_attempt: datetime | None
    disable_at: datetime | None
    disabled: bool
    episodes: pd.DataFrame
    attempts: pd.DataFrame

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(self)


def quarantine_timeline(evidence: Evidence, cycles: pd.DataFrame | None = None) -> QuarantineTimeline:
    """Quarantine episodes, their retry schedules (6 h, 12 h, 24 h, then daily), the next attempt and the date
    the job is (or will be) disabled if nothing changes: seriesBegan + 28 days."""
    if cycles is None:
        cycles = cycles_table(evidence)
    ctx = _Context.of(evidence)
    episodes = ctx.episodes
    seen = cycles[cycles["timing_source"] != "retry-schedule"]
    starts = seen["start"].dropna().to_numpy(dtype="datetime64[ns]")
    tolerance = ATTEMPT_TOLERANCE.to_timedelta64()
    rows = []
    for episode in episodes.itertuples():
        for k, when in enumerate(_attempt_times(episode.series_began), start=1):
            if not pd.isna(episode.ended) and when > episode.ended:
                break
            point = when.tz_convert(None).to_datetime64()
            observed = bool(len(starts)) and bool(np.min(np.abs(starts - point)) <= tolerance)
            rows.append(
                {
                    "series_began": episode.series_began,
                    "attempt": k,
                    "time": when,
                    "passed": when <= ctx.now,
                    "observed": observed,
                }
            )
    attempts = pd.DataFrame(rows, columns=["series_began", "attempt", "time", "passed", "observed"])
    latest = ctx.latest()
    state, _ = _job_state(latest, cycles)
    current = episodes[episodes["ended"].isna()] if len(episodes) else episodes
    disabled = state == "Disabled"
    if disabled and len(episodes):
        last_episode = episodes.iloc[-1]
        reason, code, message = (
            last_episode["reason"],
            last_episode["error_code"],
            last_episode["error_message"],
        )
        return QuarantineTimeline(
            False,
            reason,
            code,
            message,
            last_episode["series_began"],
            None,
            last_episode["ended"] if not pd.isna(last_episode["ended"]) else last_episode["disable_at"],
            True,
            episodes,
            attempts,
        )
    if state == "Quarantine" and len(current):
        episode = current.iloc[-1]
        next_attempt = episode["next_attempt"]
        if pd.isna(next_attempt) or next_attempt < ctx.now:
            upcoming = [t for t in _attempt_times(episode["series_began"]) if t > ctx.now]
            next_attempt = upcoming[0] if upcoming else pd.NaT
        return QuarantineTimeline(
            True,
            episode["reason"],
            episode["error_code"],
            episode["error_message"],
            episode["series_began"],
            None if pd.isna(next_attempt) else next_attempt,
            episode["disable_at"],
            False,
            episodes,
            attempts,
        )
    return QuarantineTimeline(False, None, None, None, None, None, None, disabled, episodes, attempts)


# ---------------------------------------------------------------------------------------------------------
# Summary and text


@dataclass
class CycleSummary:
    """What the cycles say, in a few numbers. ``as_dict()`` gives JSON values (durations in seconds)."""

    app: str
    job_id: str | None
    state: str
    state_detail: str
    quarantine_reason: str | None
    interval: timedelta | None
    interval_source: str
    cycles: int
    logged_cycles: int
    inferred_cycles: int
    initial_cycles: int
    incremental_cycles: int
    unknown_cycles: int
    initial_start: datetime | None
    initial_duration: timedelta | None
    initial_duration_is_lower_bound: bool
    initial_reason: str | None
    incremental_p50: timedelta | None
    incremental_p90: timedelta | None
    incremental_max: timedelta | None
    incremental_basis: str
    last_cycle_start: datetime | None
    initial_eta: Eta | None
    change_eta: ChangeEta | None
    entries_without_cycle: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(self)


def summary(evidence: Evidence, cycles: pd.DataFrame | None = None) -> CycleSummary:
    """The cycle summary of one app: state, initial duration, incremental p50/p90/max, ETAs.

    The initial duration is the latest complete initial cycle's (a lower bound when only its log span is
    known); incremental percentiles use non-inferred, finished incremental cycles outside quarantine.
    """
    if cycles is None:
        cycles = cycles_table(evidence)
    ctx = _Context.of(evidence)
    latest = ctx.latest()
    state, detail = _job_state(latest, cycles)
    notes: list[str] = []
    initial = cycles[(cycles["kind"] == "initial") & ~cycles["running"]]
    last_initial = initial.iloc[-1] if len(initial) else None
    durations = _incremental_durations(cycles)
    incremental = cycles[cycles["kind"] == "incremental"]
    measured = incremental.loc[durations.index]
    bounds = int(measured["duration_is_lower_bound"].sum())
    if len(durations):
        basis = f"{len(durations)} incremental cycles: {len(durations) - bounds} timed by the job status"
        if bounds:
            basis += f", {bounds} by their log span (lower bounds)"
    else:
        basis = "no finished incremental cycle with a known duration"
    if bounds and bounds == len(durations):
        notes.append("incremental durations are log spans (first to last entry): the real cycles are longer")
    if state == "Running initial cycle" and last_initial is None:
        notes.append("no initial cycle has completed yet")
    without = int(cycles.attrs.get("entries_without_cycle", 0))
    if without:
        notes.append(f"{without} log entries have no cycleId and are not placed in a cycle")
    pending = ctx.audits[(ctx.audits["kind"] == "reset") & (ctx.audits["time"] > _last_start(cycles))]
    for audit in pending.itertuples():
        notes.append(
            f"watermark reset ({audit.reason}) at {_fmt_time(audit.time)}: the next cycle is initial"
        )
    eta = initial_cycle_eta(evidence, cycles) if state in ("Running initial cycle", "NotRun") else None
    starts = cycles["start"].dropna()
    return CycleSummary(
        app=evidence.display_name,
        job_id=_text(latest["job_id"]) if latest is not None else _first_text(cycles["job_id"]),
        state=state,
        state_detail=detail,
        quarantine_reason=_text(latest.get("quarantine_reason")) if latest is not None else None,
        interval=ctx.interval,
        interval_source=ctx.interval_source,
        cycles=len(cycles),
        logged_cycles=int((~cycles["inferred"]).sum()),
        inferred_cycles=int(cycles["inferred"].sum()),
        initial_cycles=int((cycles["kind"] == "initial").sum()),
        incremental_cycles=len(incremental),
        unknown_cycles=int((cycles["kind"] == "unknown").sum()),
        initial_start=None if last_initial is None else last_initial["start"],
        initial_duration=None if last_initial is None else last_initial["duration"],
        initial_duration_is_lower_bound=bool(
            last_initial is not None and last_initial["duration_is_lower_bound"]
        ),
        initial_reason=None if last_initial is None else last_initial["kind_reason"],
        incremental_p50=durations.quantile(0.5) if len(durations) else None,
        incremental_p90=durations.quantile(0.9) if len(durations) else None,
        incremental_max=durations.max() if len(durations) else None,
        incremental_basis=basis,
        last_cycle_start=starts.iloc[-1] if len(starts) else None,
        initial_eta=eta,
        change_eta=change_eta(evidence, cycles),
        entries_without_cycle=without,
        notes=notes,
    )


def _first_text(series: pd.Series) -> str | None:
    known = series.dropna()
    return _text(known.iloc[0]) if len(known) else None


def format_cycles(cycles: pd.DataFrame, result: CycleSummary, *, last: int = 20) -> str:
    """The summary lines and the latest ``last`` cycles as a fixed-width table for a terminal."""
    lines = [f"{result.app} ({result.job_id or 'job id unknown'})"]
    lines.append(f"  state              {result.state}: {result.state_detail}")
    initial = _fmt_duration(result.initial_duration)
    if result.initial_duration is not None and result.initial_duration_is_lower_bound:
        initial = ">= " + initial
    started = f" (started {_fmt_time(result.initial_start)})" if result.initial_start is not None else ""
    lines.append(f"  initial cycle      {initial}{started}")
    lines.append(
        f"  incremental        p50 {_fmt_duration(result.incremental_p50)}, p90 "
        f"{_fmt_duration(result.incremental_p90)}, max {_fmt_duration(result.incremental_max)} "
        f"({result.incremental_basis})"
    )
    lines.append(
        f"  cycles             {result.cycles} ({result.logged_cycles} logged, {result.inferred_cycles} inferred; "
        f"{result.initial_cycles} initial), interval {_fmt_duration(result.interval)}"
    )
    eta = result.initial_eta
    if eta is not None:
        lines.append(
            f"  initial cycle ETA  {_fmt_time(eta.likely)} (range {_fmt_time(eta.earliest)} to "
            f"{_fmt_time(eta.latest)}; sizing {_fmt_time(eta.sizing_earliest)} to {_fmt_time(eta.sizing_latest)})"
        )
    change = result.change_eta
    if change is not None:
        if change.never:
            lines.append(f"  a change made now  never, until the job is started ({change.state})")
        elif change.likely is not None:
            condition = " if the cause is fixed" if change.only_if_fixed else ""
            lines.append(
                f"  a change made now  reaches the app about {_fmt_time(change.likely)}{condition} "
                f"(between {_fmt_time(change.earliest)} and {_fmt_time(change.latest)})"
            )
        else:
            lines.append(f"  a change made now  {change.explanation}")
    lines.extend(f"  note: {note}" for note in result.notes)
    lines.append("")
    header = (
        f"{'start (UTC)':<17} {'duration':>9} {'kind':<11} {'entries':>7} {'failed':>6} {'objects':>7}  notes"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for row in cycles.tail(last).itertuples():
        start = "-" if pd.isna(row.start) else row.start.strftime("%Y-%m-%d %H:%M")
        duration = _fmt_duration(row.duration)
        if row.duration_is_lower_bound and duration != "-":
            duration = ">=" + duration
        notes = []
        if row.reset_before:
            notes.append(f"reset: {row.reset_reason}")
        if row.inferred:
            notes.append(f"inferred ({row.timing_source})")
        if row.quarantine_attempt:
            notes.append("quarantine retry")
        if row.running:
            notes.append("running")
        if row.kind == "unknown":
            notes.append(row.kind_reason)
        lines.append(
            f"{start:<17} {duration:>9} {row.kind:<11} {row.entries:>7} {row.n_failure:>6} "
            f"{row.distinct_objects:>7}  {'; '.join(notes)}"
        )
    if len(cycles) > last:
        lines.append(f"({len(cycles) - last} earlier cycles not shown)")
    return "\n".join(lines)
