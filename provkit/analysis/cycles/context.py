"""What the evidence says about cycles besides the logs: directory audits, job-status snapshots, the executions
they report, the schedule interval and quarantine episodes, gathered once in a ``Context``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from provkit.analysis.cycles.rules import (
    DEFAULT_INTERVAL,
    DISABLE_AFTER,
    EXECUTION_PREFIXES,
    RETRY_EVERY,
    RETRY_OFFSETS,
    audit_kind,
)
from provkit.analysis.cycles.values import as_utc
from provkit.data.evidence import Evidence
from provkit.formatting import text_or_none


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
        activity = text_or_none(record.get("activityDisplayName"), strip=True) or ""
        kind, reason = audit_kind(record, activity)
        time = as_utc(record.get("activityDateTime"))
        if kind == "other" or pd.isna(time):
            continue
        rows.append(
            {
                "time": time,
                "kind": kind,
                "reason": reason or (text_or_none(record.get("resultReason"), strip=True) or ""),
                "activity": activity,
            }
        )
    frame = pd.DataFrame(rows, columns=["time", "kind", "reason", "activity"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True).astype("datetime64[ns, UTC]")
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def snapshots_of(evidence: Evidence) -> pd.DataFrame:
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
    for prefix in EXECUTION_PREFIXES:
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
                    "series_began": as_utc(began),
                    "reason": text_or_none(last["quarantine_reason"], strip=True),
                    "error_code": text_or_none(last["quarantine_error_code"], strip=True),
                    "error_message": text_or_none(last["quarantine_error_message"], strip=True),
                    "current_began": as_utc(last["quarantine_current_began"]),
                    "next_attempt": as_utc(last["quarantine_next_attempt"]),
                    "series_count": int(count.max()) if len(count) else None,
                    "last_seen": as_utc(last["snapshot_time"]),
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
                    candidates.append((as_utc(lifted["snapshot_time"].iloc[0]), "lifted (a later snapshot)"))
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


def attempt_times(series_began: pd.Timestamp) -> list[pd.Timestamp]:
    """The documented retry schedule: 6 h, 12 h, 24 h after the first failure, then daily, until day 28."""
    offsets = list(RETRY_OFFSETS)
    day = 2
    while pd.Timedelta(days=day) < DISABLE_AFTER:
        offsets.append(RETRY_EVERY * day)
        day += 1
    return [series_began + offset for offset in offsets]


@dataclass
class Context:
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
    def of(cls, evidence: Evidence) -> Context:
        now = as_utc(evidence.now)
        audits = _audits(evidence)
        snapshots = snapshots_of(evidence)
        events = evidence.events
        first_event = events["activity_time"].min() if len(events) else pd.NaT
        last_event = events["activity_time"].max() if len(events) else pd.NaT
        pushed = getattr(evidence, "observed_cycles", None)
        if pushed is not None and len(pushed[0]):
            first_event = min(x for x in (first_event, pushed[0]["first"].min()) if not pd.isna(x))
            last_event = max(x for x in (last_event, pushed[0]["last"].max()) if not pd.isna(x))
        if evidence.window is not None:
            window_start = as_utc(evidence.window[0])
        else:
            window_start = first_event
        horizon_candidates = [t for t in (last_event,) if not pd.isna(t)]
        if not snapshots.empty:
            horizon_candidates.append(as_utc(snapshots["snapshot_time"].max()))
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
