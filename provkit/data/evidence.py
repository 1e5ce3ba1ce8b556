"""Evidence: everything the analysis of one app needs, gathered once, from any source.

Analysis functions (cycles, checks, explain) take an :class:`Evidence` and never fetch. It is built from the
store (after a fetch or an import); tests build it straight from the simulated tenant (no HTTP in between) with
the simulator's ``provkit.sim.evidence.from_simulator``.

Windows are applied here, once, for every source: :meth:`Evidence.cut` limits evidence to a window (log entries,
their steps and properties, directory audits; the job status kept), :func:`stored_evidence` reads a stored app for a
``since`` / ``start`` / ``end`` window offline (a ``since`` window counts back from the end of what the store holds,
not from the clock), and a fetch's evidence is cut to the window it was fetched for, since the store may hold more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from provkit.data.logsummary import LogSummary
from provkit.data.store import AppStore, subtract_ranges
from provkit.data.tables import LazyTables, Tables, empty_tables
from provkit.errors import ConfigError
from provkit.formatting import as_timestamp
from provkit.window import resolve_window


@dataclass
class Evidence:
    """One app's logs, job-status snapshots, configuration and directory facts.

    - ``tables``: events, steps and properties (see :mod:`provkit.data.tables`).
    - ``jobs``: job-status snapshots, oldest first (one row per job per snapshot).
    - ``job``: the latest job JSON as Graph returned it, or None when unknown (e.g. imported files only).
    - ``schema``: the job's synchronization schema JSON, or None.
    - ``assignments``: the app's appRoleAssignedTo entries (principalType User or Group, principalId).
    - ``groups``: for each assigned group id, ``{"display_name", "mail", "security_enabled", "group_types",
      "membership_rule_processing_state" (dynamic groups), "direct": [user ids],
      "transitive": [user ids], "nested": [group ids], "nested_groups": [{"id", "display_name",
      "direct": [user ids]}]}``.
    - ``audits``: directory audits about this app (restarts, mapping and scoping changes, quarantine).
    - ``users``: known user objects by id (the ones the checks needed to look at), Graph JSON.
    - ``now``: the moment the evidence describes (the fetch time, or the simulated now).
    - ``observed_cycles``: per-cycle counts a source summarised itself (Log Analytics, in KQL) as
      ``(frame, entries_without_cycle)``; cycles use them instead of summarising ``events``, which may then
      hold only some entries.
    - ``log_summary``: the counts over every entry of the window that a source computed itself (Log Analytics,
      in KQL); ``events`` then holds only the entries the checks read (each object's latest entry and those
      the checks filter for), not every entry. Read the counts with :meth:`summarise_logs`, which computes them
      from ``events`` when no source did.
    """

    tenant_id: str
    service_principal_id: str
    app_id: str | None
    display_name: str
    tables: Tables = field(default_factory=empty_tables)
    jobs: pd.DataFrame | None = None
    job: dict[str, Any] | None = None
    schema: dict[str, Any] | None = None
    assignments: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    audits: list[dict[str, Any]] = field(default_factory=list)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    window: tuple[datetime, datetime] | None = None
    source: str = "graph"
    # The time ranges fetches covered (None: unknown, e.g. imports only or the simulator), and the window asked
    # for where ``window`` is not set (offline commands); see ``coverage_gaps``.
    covered: list[tuple[datetime, datetime]] | None = None
    coverage_window: tuple[datetime, datetime] | None = None
    observed_cycles: tuple[pd.DataFrame, int] | None = None
    log_summary: LogSummary | None = None

    def summarise_logs(self) -> LogSummary:
        """The counts over every entry of the window: the source's own (``log_summary``), else computed from
        ``events`` (see :class:`~provkit.data.logsummary.LogSummary`)."""
        if self.log_summary is not None:
            return self.log_summary
        return LogSummary.from_events(self.events, self.now, self.window)

    @property
    def entry_count(self) -> int:
        """How many log entries the window holds (``log_summary``'s count when the source summarised them;
        ``events`` may then hold fewer)."""
        return self.log_summary.entries if self.log_summary is not None else len(self.events)

    @property
    def coverage_gaps(self) -> list[tuple[datetime, datetime]] | None:
        """The ranges of the analysed window (``window``, else ``coverage_window``) that no fetch covered; None
        when either is unknown."""
        window = self.window or self.coverage_window
        if window is None or not self.covered:
            return None
        return subtract_ranges(window[0], window[1], self.covered)

    @property
    def events(self) -> pd.DataFrame:
        return self.tables.events

    @property
    def steps(self) -> pd.DataFrame:
        return self.tables.steps

    def steps_of(self, event_ids: Iterable[str]) -> pd.DataFrame:
        """The steps of the given entries. From the store this reads only their rows, where ``steps`` reads all
        of them (a million entries have about five million steps: over a gigabyte); analyses that need the steps
        of a few entries should ask for those."""
        steps_of = getattr(self.tables, "steps_of", None)
        if steps_of is not None:
            return steps_of(event_ids)
        steps = self.tables.steps
        return steps[steps["event_id"].isin(set(event_ids))].reset_index(drop=True)

    def cut(
        self,
        window: tuple[datetime, datetime] | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Evidence:
        """This evidence limited to the window [start, end): a new Evidence (this one is left as it is).

        The window is ``window`` (as :func:`provkit.window.resolve_window` returns it) or ``start`` / ``end``; a
        side not given is this evidence's own (its window's, else its first entry's start; its ``now``).

        - Cut to the window: the log entries (events, and the steps and properties of the entries kept; steps and
          properties read from the store stay unread until an analysis uses them), the directory audits, and the
          per-cycle counts a source summarised itself (the cycles that overlap the window, with their counts).
        - Kept: the job status (``job``) and the job-status snapshots, except those that describe a later state:
          taken after the window's end and reporting an execution, quarantine or progress from then on (a
          fetch's snapshot is stamped with its clock, a little past the end of the window it asked for, and of a
          simulated tenant far from it; what the snapshot reports tells). The configuration and directory facts
          (schema, assignments, groups, users) describe the present: kept.
        - ``window`` (and ``coverage_window``) become the cut's, so ``coverage_gaps`` names what no fetch covered
          of it; ``now`` becomes the window's end when that is earlier.
        - A source's own counts (``log_summary``) are kept for a window that holds the one they count; a
          narrower cut raises ConfigError (they cannot be cut: load the evidence for that window instead).
        """
        w_start, w_end = self._bounds(window, start, end)
        if w_start >= w_end:
            raise ConfigError(
                f"The window is empty or reversed: {w_start:%Y-%m-%d %H:%M} to {w_end:%Y-%m-%d %H:%M} UTC.",
                remedy="Give a start before the end.",
            )
        counted = self.log_summary.window if self.log_summary is not None else None
        if self.log_summary is not None and (
            counted is None or _utc(counted[0]) < w_start or _utc(counted[1]) > w_end
        ):
            raise ConfigError(
                "This evidence holds counts summarised by its source for its own window and only some of its "
                "entries: it cannot be cut to a narrower window.",
                remedy="Load the evidence for the narrower window instead (--since / --start --end).",
            )
        now = _utc(self.now)
        lo, hi = pd.Timestamp(w_start), pd.Timestamp(w_end)
        tables = self.tables
        times = tables.events["activity_time"]
        keep = ((times >= lo) & (times < hi)).to_numpy()
        if not keep.all():
            tables = _WindowTables(tables, tables.events[keep].reset_index(drop=True))
        jobs = self.jobs
        if jobs is not None and len(jobs) and "snapshot_time" in jobs:
            later = _later_snapshots(jobs, hi)
            if later.any():
                jobs = jobs[~later].reset_index(drop=True)
        observed = self.observed_cycles
        if observed is not None and len(observed[0]):
            frame = observed[0]
            overlaps = ((frame["last"] >= lo) & (frame["first"] < hi)).to_numpy()
            observed = (frame[overlaps].reset_index(drop=True), observed[1])
        return dataclasses.replace(
            self,
            tables=tables,
            jobs=jobs,
            audits=[a for a in self.audits if _in_window(a.get("activityDateTime"), lo, hi)],
            now=min(now, w_end),
            window=(w_start, w_end),
            coverage_window=(w_start, w_end),
            observed_cycles=observed,
        )

    def _bounds(
        self, window: tuple[datetime, datetime] | None, start: datetime | None, end: datetime | None
    ) -> tuple[datetime, datetime]:
        if window is not None:
            if start is not None or end is not None:
                raise ConfigError("Give either a window or start/end, not both.")
            start, end = window
        if start is None:
            if self.window is not None:
                start = self.window[0]
            elif len(self.events):
                start = pd.Timestamp(self.events["activity_time"].min()).to_pydatetime()
            else:
                start = _utc(end if end is not None else self.now)
        return _utc(start), _utc(end if end is not None else self.now)


class _WindowTables(LazyTables):
    """The entries of a window and the steps and properties of those entries only, taken from ``base`` when an
    analysis first asks for them (lazy stored tables stay lazy; ``steps_of`` reads only the entries it names)."""

    def __init__(self, base: Tables, events: pd.DataFrame) -> None:
        super().__init__(events, base.rejects)  # rejects: input problems, not bound to a time
        self._base = base
        self._ids = events["id"]

    def _read(self, name: str) -> pd.DataFrame:
        frame = self._base.steps if name == "steps" else self._base.properties
        return frame[frame["event_id"].isin(self._ids)].reset_index(drop=True)

    def steps_of(self, event_ids: Iterable[str]) -> pd.DataFrame:
        """The steps of those of ``event_ids`` that are in the window."""
        wanted = set(self._ids[self._ids.isin({str(i) for i in event_ids})])
        loaded = self._loaded_steps_of(wanted)
        if loaded is not None:
            return loaded
        steps_of = getattr(self._base, "steps_of", None)
        if steps_of is not None:
            result: pd.DataFrame = steps_of(wanted)
            return result
        steps = self._base.steps
        return steps[steps["event_id"].isin(wanted)].reset_index(drop=True)


def _utc(moment: datetime) -> datetime:
    """An aware UTC datetime (naive values are UTC, as on the command line)."""
    if isinstance(moment, pd.Timestamp):
        moment = moment.to_pydatetime()
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _later_snapshots(jobs: pd.DataFrame, end: pd.Timestamp) -> npt.NDArray[np.bool_]:
    """Which job-status snapshots describe a state after ``end``: taken after it, and reporting an execution,
    a quarantine, progress or a steady state that began or ended at or after it."""
    taken: npt.NDArray[np.bool_] = (jobs["snapshot_time"] > end).to_numpy(dtype=bool, na_value=False)
    reported = [
        c
        for c in jobs.columns
        if c.endswith(("_began", "_ended")) or c in ("progress_time", "steady_state_last")
    ]
    if not taken.any() or not reported:
        return np.zeros(len(jobs), dtype=bool)
    times = jobs[reported].apply(lambda column: pd.to_datetime(column, utc=True))
    reports_later: npt.NDArray[np.bool_] = (times >= end).any(axis=1).to_numpy(dtype=bool)
    later: npt.NDArray[np.bool_] = np.logical_and(taken, reports_later)
    return later


def _in_window(value: object, lo: pd.Timestamp, hi: pd.Timestamp) -> bool:
    """Whether a directory audit's ``activityDateTime`` lies in [lo, hi); an unreadable time is kept (it cannot be
    placed outside, and nothing is dropped without a reason)."""
    when = as_timestamp(value)
    return when is None or lo <= when < hi


def from_store(
    app_store: AppStore, *, now: datetime | None = None, coverage: tuple[datetime, datetime] | None = None
) -> Evidence:
    """Evidence from one app's folder in the store (works offline). With ``coverage`` (the window asked for),
    ``coverage_gaps`` lists the ranges of it that no fetch covered."""
    manifest = app_store.manifest()
    info = manifest.get("app", {})
    jobs = app_store.jobs()
    # The meta files hold Graph JSON as fetch wrote it (provkit.data.fetch).
    job_list = cast(list[dict[str, Any]], app_store.meta("jobs") or [])
    fetches = manifest.get("fetches") or []
    when = now
    if when is None and fetches:
        when = datetime.fromisoformat(fetches[-1]["fetched_at"])
    evidence = Evidence(
        tenant_id=app_store.tenant_id,
        service_principal_id=app_store.service_principal_id,
        app_id=info.get("app_id"),
        display_name=info.get("display_name") or app_store.service_principal_id,
        tables=app_store.tables(lazy=True),  # steps and properties read if an analysis uses them
        jobs=jobs,
        job=job_list[0] if job_list else None,
        schema=cast(dict[str, Any] | None, app_store.meta("schema")),
        assignments=cast(list[dict[str, Any]], app_store.meta("assignments") or []),
        groups=cast(dict[str, dict[str, Any]], app_store.meta("groups") or {}),
        audits=app_store.audit_records(),
        users=cast(dict[str, dict[str, Any]], app_store.meta("users") or {}),
        now=when or datetime.now(UTC),
        source=info.get("source", "graph"),
    )
    evidence.covered = app_store.covered() or None
    evidence.coverage_window = coverage
    return evidence


def stored_evidence(
    app_store: AppStore,
    *,
    since: str | None = None,
    start: str | None = None,
    end: str | None = None,
    clock: datetime | None = None,
) -> Evidence:
    """One stored app's evidence for a window, read offline and cut to it (:meth:`Evidence.cut`).

    - ``since`` (``2h``, ``7d``) counts back from the end of what the store holds, not from the clock, so a store
      read later tells the same story: the store's "now" (:meth:`AppStore.store_now`, the end of the latest
      window a fetch asked for, kept even when that fetch was interrupted, so the time after the last complete
      fetch shows as not covered in ``coverage_gaps`` rather than silently empty); for a store of imports only,
      just after its newest entry.
    - ``start`` / ``end`` are taken as given (``end`` defaults to ``clock``, default now): days the store lacks
      show as not covered.
    - None of them: the whole store, with its window from the first covered moment to its end when fetches
      covered it (imports only: no window).

    Raises ConfigError for both ``since`` and ``start``/``end``, and for empty, reversed or future windows.
    """
    stored_now = app_store.store_now()
    evidence = from_store(app_store, now=stored_now)
    if not (since or start or end):
        if evidence.covered and stored_now is not None:
            evidence.window = (evidence.covered[0][0], max(stored_now, evidence.covered[-1][1]))
        return evidence
    if since and not (start or end):
        store_end = stored_now or _after_newest(evidence.events)
        if store_end is None:  # an empty store: nothing to count back from but the clock
            store_end = _utc(clock or datetime.now(UTC))
        window = resolve_window(since=since, now=store_end)
    else:
        window = resolve_window(since=since, start=start, end=end, now=clock)
    return evidence.cut(window)


def _after_newest(events: pd.DataFrame) -> datetime | None:
    """Just after the newest entry (a window's end is excluded), None when there are none."""
    if not len(events):
        return None
    newest = pd.Timestamp(events["activity_time"].max())
    return _utc(newest.ceil("us").to_pydatetime() + timedelta(microseconds=1))


def describe_window(evidence: Evidence, *, since: str | None = None) -> str:
    """Which window evidence covers, in words for a command's output: ``window 2025-03-01 06:00 to 2025-03-01
    12:00 UTC (the last 6h of what the store holds)``; ``the whole store, window ...`` when none was asked for."""
    window = evidence.window
    if window is None:
        return "every stored entry (no fetch recorded which time the store covers)"
    span = f"window {_utc(window[0]):%Y-%m-%d %H:%M} to {_utc(window[1]):%Y-%m-%d %H:%M} UTC"
    if evidence.coverage_window is None:
        return f"the whole store, {span}"
    return f"{span} (the last {since} of what the store holds)" if since else span


def fetched_evidence(app_store: AppStore, window: tuple[datetime, datetime]) -> Evidence:
    """The evidence of an app just fetched into ``app_store`` for ``window``: the store may hold more than the
    window (earlier fetches), so it is cut to it; ``now`` is the window's end."""
    return from_store(app_store, now=window[1]).cut(window)
