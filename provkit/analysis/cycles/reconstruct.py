"""The cycles table: observed cycles timed by the job status, cycles inferred from the interval and the
quarantine retry schedule, watermark resets, running cycles, and the initial/incremental classification."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from provkit.analysis.cycles.context import Context, attempt_times
from provkit.analysis.cycles.observed import observed_cycles
from provkit.analysis.cycles.rules import (
    ACTION_COLUMNS,
    ATTEMPT_TOLERANCE,
    CYCLE_COLUMNS,
    SHAPE_NEAR_MAX,
    SHAPE_SMALL,
    SHAPE_TIMES_MEDIAN,
    STATUS_COLUMNS,
)
from provkit.analysis.cycles.values import job_key, jsonable, ns_of, same_text
from provkit.data.evidence import Evidence
from provkit.errors import ConfigError
from provkit.formatting import format_time, text_or_none


def _match_executions(observed: pd.DataFrame, ctx: Context) -> pd.DataFrame:
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
        first_ns = ns_of(frame["first"]) if len(frame) else np.array([], dtype=np.int64)
        last_ns = ns_of(frame["last"]) if len(frame) else np.array([], dtype=np.int64)
        began_ns = ns_of(executions["began"])
        ended_ns = ns_of(executions["ended"])
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
            frame.at[c, "activity_id"] = text_or_none(execution["activity_id"], strip=True)
            frame.at[c, "state"] = text_or_none(execution["state"], strip=True)
    extra = []
    for e in unmatched:
        execution = executions.iloc[e]
        if not pd.isna(ctx.window_start) and execution["began"] < ctx.window_start:
            continue  # before the logs we have: its entries are simply not in the evidence
        extra.append(
            {
                "job_id": text_or_none(execution["job_id"], strip=True),
                "cycle_id": None,
                "activity_id": text_or_none(execution["activity_id"], strip=True),
                "start": execution["began"],
                "end": execution["ended"],
                "timing_source": "job-status",
                "state": text_or_none(execution["state"], strip=True),
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


def _episode_spans(ctx: Context, job_id: object) -> list[tuple[pd.Timestamp, pd.Timestamp, pd.Series]]:
    spans = []
    for _, episode in ctx.episodes.iterrows():
        if job_key(episode["job_id"]) and job_key(job_id) and job_key(episode["job_id"]) != job_key(job_id):
            continue
        end = episode["ended"] if not pd.isna(episode["ended"]) else ctx.horizon
        spans.append((episode["series_began"], end, episode))
    return spans


def _infer_attempts(known: pd.DataFrame, ctx: Context, job_id: object) -> list[dict[str, Any]]:
    """Quarantine retries on the documented schedule that no known cycle accounts for."""
    rows = []
    starts = known["start"].dropna().sort_values().to_numpy(dtype="datetime64[ns]")
    tolerance = ATTEMPT_TOLERANCE.to_timedelta64()
    lower = ctx.window_start
    for began, end, _episode in _episode_spans(ctx, job_id):
        for when in attempt_times(began):
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


def _blockers(ctx: Context, job_id: object) -> list[tuple[pd.Timestamp, pd.Timestamp | None, str]]:
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


def _infer_interval(known: pd.DataFrame, ctx: Context, job_id: object) -> list[dict[str, Any]]:
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


def _add_inferred(frame: pd.DataFrame, ctx: Context) -> pd.DataFrame:
    keys = [job_key(j) for j in frame["job_id"].tolist()]
    job_ids = list(dict.fromkeys(keys))
    if not ctx.snapshots.empty:
        job_ids.extend(
            k for k in dict.fromkeys(map(job_key, ctx.snapshots["job_id"].tolist())) if k not in job_ids
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
    starts = ns_of(frame["start"])
    for audit in resets.itertuples():
        i = int(np.searchsorted(starts, audit.time.value, side="left"))
        if i >= len(frame):
            continue
        frame.at[i, "reset_before"] = True
        previous = frame.at[i, "reset_reason"]
        if audit.reason not in previous.split(","):
            frame.at[i, "reset_reason"] = f"{previous},{audit.reason}" if previous else audit.reason


def _mark_running(frame: pd.DataFrame, ctx: Context) -> None:
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


def _classify(frame: pd.DataFrame, ctx: Context) -> None:
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
    keys = [job_key(j) for j in frame["job_id"].tolist()]
    for job_id in dict.fromkeys(keys):
        mine = [i for i in range(n) if keys[i] == job_id and not inferred[i]]
        latest = ctx.latest(job_id or None)
        if not mine or latest is None or kinds[mine[0]] != "unknown":
            continue
        earliest = mine[0]
        steady_first = latest.get("steady_state_first", pd.NaT)
        if same_text(latest.get("status_code"), "NotRun"):
            kinds[earliest] = "initial"
            reasons[earliest] = "first run: the job status is NotRun (its first cycle has not completed)"
        elif not pd.isna(steady_first) and starts[earliest] < steady_first:
            # Vetoed when the cycle is clearly small next to the others (the window may have cut the job's
            # real first cycle off): the shape rule decides then.
            if distinct[earliest] >= SHAPE_SMALL * distinct[mine].max():
                kinds[earliest] = "initial"
                reasons[earliest] = (
                    "first cycle of the job: it began before steady state was first achieved "
                    f"({format_time(steady_first)})"
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
    ctx = Context.of(evidence)
    # A source that summarised the entries itself (Log Analytics, in KQL) hands over the same per-cycle rows.
    pushed = getattr(evidence, "observed_cycles", None)
    if pushed is None and getattr(evidence, "log_summary", None) is not None:
        raise ConfigError(
            "This evidence holds only the log entries the checks read (its source summarised the others), not "
            "every entry: its cycles cannot be reconstructed from them.",
            remedy='Load it with logs="cycles" or logs="summary" for cycles.',
        )
    observed, without_cycle = pushed if pushed is not None else observed_cycles(evidence.events)
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
    return jsonable(cycles)
