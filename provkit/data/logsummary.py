"""What the checks count over every log entry of a window, as one small value: :class:`LogSummary`.

Most checks read a few entries (the latest ones of the objects a finding is about, the entries a finding cites);
a few count over all of them (entries by status, failed entries by error code, the latest cycle's size, the
failures since the newest success by code and HTTP status, objects by the state of their latest entry). A
source that summarises in its own engine (Log Analytics, in KQL) hands those counts over as a
:class:`LogSummary` and sends only the entries the checks read, so a healthy object's entries need not travel;
otherwise :meth:`LogSummary.from_events` computes the same counts from the entries, so the checks run the same
code on both (:meth:`provkit.data.evidence.Evidence.summarise_logs`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from provkit.data.httpstatus import http_status

__all__ = ["RECENT", "FailureGroup", "LastCycle", "LogSummary"]

# The "recent" span of the working summary: the failure rate of the last 24 hours.
RECENT = timedelta(hours=24)
_MINUTE = pd.Timedelta(minutes=1)  # LastCycle.first_seen's bins


@dataclass(frozen=True)
class FailureGroup:
    """Failed entries after the newest successful one that share an error code ("" for none) and the HTTP
    status their reason names (:func:`~provkit.data.httpstatus.http_status`; None when it names none): how
    many, and the first and last entry times."""

    code: str
    status: int | None
    entries: int
    first: pd.Timestamp
    last: pd.Timestamp


@dataclass(frozen=True)
class LastCycle:
    """The cycle of the newest entry: its id (None when that entry has none), its entries, their failures, and
    the first and last entry times (NaT when no entry carries the id).

    ``first_seen``: the cycle's source objects (with an id) by the minute of their first entry in the cycle,
    as ``(minute, new objects)`` pairs, oldest first, each object counted once, in its first minute (a few
    thousand pairs for a cycle of days); None when the source did not count them. The ETA of a running
    initial cycle reads the objects logged so far and by a progress observation's time from it
    (:func:`provkit.analysis.cycles.initial_cycle_eta`), so that cycle's entries need not travel.
    """

    cycle_id: str | None
    entries: int
    failures: int
    first: Any
    last: Any
    first_seen: tuple[tuple[pd.Timestamp, int], ...] | None = None

    @property
    def objects(self) -> int | None:
        """The cycle's distinct source objects (None when ``first_seen`` is unknown)."""
        return None if self.first_seen is None else sum(n for _, n in self.first_seen)

    def objects_by(self, moment: Any) -> int | None:
        """The objects first logged by ``moment`` (None when unknown): every object when ``moment`` is at or
        after the cycle's newest entry, else those whose first-seen minute ended by then. Exact then and when
        ``moment`` falls on a minute's start; otherwise it leaves out the objects first logged in the minute
        of ``moment`` before it."""
        if self.first_seen is None:
            return None
        at = _utc(pd.Timestamp(moment))
        if not pd.isna(self.last) and at >= _utc(pd.Timestamp(self.last)):
            return self.objects
        return sum(n for minute, n in self.first_seen if minute + _MINUTE <= at)


class _ObjectCounts(Mapping[str, int]):
    """Entries per source object id, counted from the entries when first read (one pass over a column)."""

    def __init__(self, events: pd.DataFrame) -> None:
        self._events = events

    @cached_property
    def _counts(self) -> dict[str, int]:
        if self._events.empty or "source_id" not in self._events:
            return {}
        counts = self._events["source_id"].value_counts()
        return {str(k): int(v) for k, v in counts.items() if int(v)}

    def __getitem__(self, key: str) -> int:
        return self._counts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)


class _LatestCounts(Mapping[str, int]):
    """Source objects by a column of their latest entry (lower case; for ``skip_reason``, skipped objects
    only; for ``error_code``, failed objects only and the codes as written, "" for none), counted from the
    entries when first read. The latest entry of an object is the one
    :func:`provkit.analysis.columns.latest_entries` picks: the newest, and among entries at the same time the
    last one."""

    def __init__(self, events: pd.DataFrame, column: str) -> None:
        self._events = events
        self._column = column

    @cached_property
    def _counts(self) -> dict[str, int]:
        events = self._events
        if events.empty or "source_id" not in events or self._column not in events:
            return {}
        ids = events["source_id"]
        present = (ids.notna() & (ids.astype(object) != "")).to_numpy(dtype=bool)
        mine = events.loc[
            present, list(dict.fromkeys(["source_id", "activity_time", "status", self._column]))
        ]
        # A stable sort by time keeps the order of entries at the same time: the last of an object is its latest.
        latest = mine.sort_values("activity_time", kind="stable").drop_duplicates("source_id", keep="last")
        if self._column == "error_code":
            values = latest["error_code"].astype(object).fillna("").astype(str)
            values = values[(_lowered(latest["status"]) == "failure").to_numpy(dtype=bool)]
        else:
            values = _lowered(latest[self._column])
        if self._column not in ("status", "error_code"):
            values = values[(_lowered(latest["status"]) == "skipped").to_numpy(dtype=bool)]
        return {str(k): int(v) for k, v in values.value_counts().items() if int(v)}

    def __getitem__(self, key: str) -> int:
        return self._counts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)


@dataclass(frozen=True)
class LogSummary:
    """Counts over every entry of a window.

    - ``entries``, ``first`` / ``last`` (entry times; None without entries);
    - ``by_status``: entries by status (lower case; statuses with entries only), ``last_by_status`` the newest
      entry time of each, ``recent_by_status`` the entries at or after ``recent_since``;
    - ``failures_by_code``: failed entries by error code ("" for none);
    - ``error_codes`` (every code any entry carries) and ``target_types`` (every target identity type);
    - ``last_cycle``: the newest entry's cycle (:class:`LastCycle`), None without entries;
    - ``entries_by_object``: entries per source object id (pushed down: at least of every object whose entries
      travel);
    - ``window``: the window summarised, when the source says (a pushed-down summary always does);
    - ``failures_since_success``: the failed entries newer than the newest successful one (every failed entry
      when none succeeded), grouped by error code and HTTP status (:class:`FailureGroup`, sorted by code and
      status): what a credential outage or an escrow quarantine looks like, counted without its entries;
    - ``objects_by_status``: source objects by the status of their latest entry (lower case; the latest as
      :func:`provkit.analysis.columns.latest_entries` picks it), ``objects_by_skip_reason`` those whose latest
      entry is a skip, by its skip reason (lower case, "" for none): what the checks count over every object's
      current state, so that a healthy object's latest entry need not travel;
    - ``failing_by_code``: source objects whose latest entry is a failure, by its error code (as written, ""
      for none): what ``failures.by-code`` counts, so that only the failing objects a finding lists (and those
      a check judges one by one) need travel.
    """

    entries: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    by_status: dict[str, int]
    last_by_status: dict[str, pd.Timestamp]
    recent_since: pd.Timestamp
    recent_by_status: dict[str, int]
    failures_by_code: dict[str, int]
    error_codes: frozenset[str]
    target_types: frozenset[str]
    last_cycle: LastCycle | None
    entries_by_object: Mapping[str, int] = field(default_factory=dict)
    window: tuple[datetime, datetime] | None = None
    failures_since_success: tuple[FailureGroup, ...] = ()
    # Objects by their latest entry's state (engineer A's block).
    objects_by_status: Mapping[str, int] = field(default_factory=dict)
    objects_by_skip_reason: Mapping[str, int] = field(default_factory=dict)
    # Failing objects by their latest entry's error code (engineer D's block).
    failing_by_code: Mapping[str, int] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        """Source objects with an entry in the window."""
        return sum(self.objects_by_status.values())

    @property
    def recent(self) -> int:
        """Entries at or after ``recent_since``."""
        return sum(self.recent_by_status.values())

    def entries_of(self, object_ids: Iterable[Any]) -> int:
        """How many entries name one of these source object ids."""
        return sum(self.entries_by_object.get(str(i), 0) for i in set(object_ids))

    @classmethod
    def from_events(
        cls, events: pd.DataFrame, now: datetime, window: tuple[datetime, datetime] | None = None
    ) -> LogSummary:
        """The summary of an events table (see :mod:`provkit.data.tables`); ``now`` sets ``recent_since``."""
        since = _utc(pd.Timestamp(now)) - RECENT
        if events.empty:
            return cls(0, None, None, {}, {}, since, {}, {}, frozenset(), frozenset(), None, {}, window)
        times = events["activity_time"]
        status = _lowered(events["status"])
        by_status = {str(s): int(n) for s, n in status.value_counts().items() if int(n)}
        last_by_status = {str(s): pd.Timestamp(t) for s, t in times.groupby(status).max().items()}
        recent = (times >= since).to_numpy(dtype=bool)
        recent_by_status = {str(s): int(n) for s, n in status[recent].value_counts().items() if int(n)}
        failed = (events["status"] == "failure").fillna(False).to_numpy(dtype=bool)
        codes = events["error_code"][failed].astype(object).fillna("").value_counts()
        failures_by_code = {str(c): int(n) for c, n in codes.items() if int(n)}
        return cls(
            entries=len(events),
            first=pd.Timestamp(times.min()),
            last=pd.Timestamp(times.max()),
            by_status=by_status,
            last_by_status=last_by_status,
            recent_since=since,
            recent_by_status=recent_by_status,
            failures_by_code=failures_by_code,
            error_codes=_distinct(events, "error_code"),
            target_types=_distinct(events, "target_type"),
            last_cycle=_last_cycle(events),
            entries_by_object=_ObjectCounts(events),
            window=window,
            failures_since_success=_failures_since_success(events, failed, last_by_status.get("success")),
            objects_by_status=_LatestCounts(events, "status"),
            objects_by_skip_reason=_LatestCounts(events, "skip_reason"),
            failing_by_code=_LatestCounts(events, "error_code"),
        )


def _failures_since_success(
    events: pd.DataFrame, failed: np.ndarray, newest_success: pd.Timestamp | None
) -> tuple[FailureGroup, ...]:
    """The failed entries after ``newest_success`` (all of them without one) grouped by error code and the HTTP
    status of their reason. Columnar: the status is read once per distinct reason."""
    times = events["activity_time"].to_numpy(dtype="datetime64[ns]")  # UTC, as every events table holds
    mine = failed
    if newest_success is not None and not pd.isna(newest_success):
        mine = failed & (times > _utc(pd.Timestamp(newest_success)).tz_localize(None).to_datetime64())
    if not mine.any():
        return ()
    picked = np.flatnonzero(mine)
    codes = events["error_code"].iloc[picked].astype(object).fillna("").astype(str).to_numpy()
    reasons, distinct = pd.factorize(events["error_reason"].iloc[picked])
    known = [http_status(r if isinstance(r, str) else None) for r in distinct]
    statuses = np.asarray([-1 if s is None else s for s in known] + [-1], dtype=np.int64)[reasons]
    frame = pd.DataFrame({"code": codes, "status": statuses, "time": times[picked]})
    groups = frame.groupby(["code", "status"], sort=True)["time"].agg(["size", "min", "max"])
    return tuple(
        FailureGroup(
            str(code),
            None if int(status) < 0 else int(status),
            int(n),
            _utc(pd.Timestamp(a)),
            _utc(pd.Timestamp(b)),
        )
        for (code, status), n, a, b in zip(
            groups.index, groups["size"], groups["min"], groups["max"], strict=True
        )
    )


def _utc(moment: pd.Timestamp) -> pd.Timestamp:
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def _lowered(series: pd.Series) -> pd.Series:
    """Each value as lower-case text ("" when missing), decided once per distinct value."""
    codes, uniques = pd.factorize(series)
    values = np.asarray([str(v).lower() for v in uniques] + [""], dtype=object)
    return pd.Series(values[codes], index=series.index, dtype=object)  # code -1 (missing) takes the last, ""


def _distinct(events: pd.DataFrame, column: str) -> frozenset[str]:
    if column not in events:
        return frozenset()
    return frozenset(str(v) for v in pd.unique(events[column].dropna()))


def _last_cycle(events: pd.DataFrame) -> LastCycle:
    """The cycle of the newest entry (the first of them when several share the newest time)."""
    cycle_id = events.loc[events["activity_time"].idxmax(), "cycle_id"]
    mine = (events["cycle_id"] == cycle_id).fillna(False).to_numpy(dtype=bool)
    failed = (_lowered(events["status"]) == "failure").to_numpy(dtype=bool)
    times = events["activity_time"][mine]
    known = None if cycle_id is None or pd.isna(cycle_id) else str(cycle_id)
    return LastCycle(
        known,
        int(mine.sum()),
        int((mine & failed).sum()),
        times.min(),
        times.max(),
        _first_seen(events["source_id"][mine], times) if known is not None else (),
    )


def _first_seen(ids: pd.Series, times: pd.Series) -> tuple[tuple[pd.Timestamp, int], ...]:
    """Objects (with an id) by the minute of their first entry: ``(minute, new objects)``, oldest first."""
    present = (ids.notna() & (ids.astype(object) != "")).to_numpy(dtype=bool)
    if not present.any():
        return ()
    firsts = times[present].groupby(ids[present].astype(str)).min()
    minutes = pd.to_datetime(firsts, utc=True).dt.floor("min").value_counts().sort_index()
    return tuple((_utc(pd.Timestamp(m)), int(n)) for m, n in minutes.items())
