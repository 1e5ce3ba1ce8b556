"""Fetch an app's provisioning logs, job status, schema, assignments and audits from Graph into the store.

Each range still to fetch is one query, oldest entry first, read in pieces. A piece ends after a page whose last
entry is at or past a slice boundary (whole days by default; everything before the boundary has then arrived),
or after ``max_entries`` entries (at that last entry's time); it is written and its range recorded as covered in
one atomic manifest update. Entries stream from the pages into the tables, so memory holds one piece, not one
day of raw JSON (a day of an initial cycle can hold a hundred thousand entries).

The app's store folder is locked for the whole fetch (a second writer waits). A damaged events part found on the
way in is set aside with its batch (:meth:`provkit.store.AppStore.check`) and its range fetched again. After the
pieces, small parts are compacted once there are many.

Late arrivals: Graph writes a log entry some time after it happened, so the tail of a fetched range is recorded as
*unsettled* (the last ``lookback`` before the fetch's end) and asked for again by the next fetch; entries already
stored are dropped by id. Entries Graph returns dated outside the range asked for are not stored, only counted.

One query per range, not one per slice, matters under Graph's throttle (5 calls per 10 s): each slice would cost
a short last page, which for a quiet app is most of its calls. An interrupted fetch loses at most the piece it
was reading, and the next fetch asks only for what is not covered yet, plus a short overlap before the watermark
for entries Graph records late. Duplicate ids are dropped, so repeating a fetch changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd

from provkit.graph import ResolvedApp, time_slices
from provkit.store import AppStore, Store, StoreError
from provkit.tables import events_from_records, jobs_from_records, parse_graph_time

log = logging.getLogger("provkit.fetch")

DEFAULT_SLICE = timedelta(days=1)  # commit granularity: an interrupted fetch loses at most about this much
# inference: no latency is documented for provisioning logs. The retired "Azure AD reporting latencies" page gave
# audit and sign-in logs 2 min (95th percentile) and 5 min (99th); the current "Log latency in Microsoft Entra ID"
# page names no figure and says delays in the underlying infrastructure delay the logs. Three hours covers the
# documented tail many times over, and hours-late entries seen in practice, at the cost of one short query.
DEFAULT_LOOKBACK = timedelta(hours=3)
DEFAULT_OVERLAP = DEFAULT_LOOKBACK  # the older name
DEFAULT_MAX_ENTRIES = 20_000  # entries read before a commit (a day of an initial cycle can hold 100,000)


@dataclass
class FetchSummary:
    """What one fetch did: the numbers the command line prints in its closing line."""

    app: str
    service_principal_id: str
    start: datetime
    end: datetime
    slices: int = 0
    pages: int = 0
    entries: int = 0
    new: int = 0
    duplicates: int = 0
    rejected: int = 0
    repaired: int = 0  # damaged store files set aside before fetching (their ranges are fetched again)
    outside: int = 0  # entries Graph returned dated outside the range asked for: counted, not stored
    compacted: int = 0  # parts merged by the compaction at the end of the fetch
    audits_new: int = 0
    jobs: int = 0
    throttle_waits: int = 0
    waited_seconds: float = 0.0
    seconds: float = 0.0
    reject_reasons: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.app}: {self.new} new entries, {self.duplicates} duplicates dropped"
            + (f", {self.rejected} rejected" if self.rejected else "")
            + (f", {self.outside} dated outside the window (not stored)" if self.outside else "")
            + (
                f", {self.repaired} damaged store file(s) set aside and fetched again"
                if self.repaired
                else ""
            )
            + f", {self.pages} pages in {self.slices} slices, {self.jobs} job snapshot(s), "
            f"{self.throttle_waits} throttled (429), {self.waited_seconds:.1f} s waiting (pacing and retries), "
            f"{self.seconds:.1f} s in all"
        )

    def as_dict(self) -> dict:
        d = asdict(self)
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        return d


def fetch_app(
    client,
    store: Store,
    app: str | ResolvedApp,
    *,
    start: datetime,
    end: datetime,
    tenant_id: str,
    slice_length: timedelta = DEFAULT_SLICE,
    overlap: timedelta | None = None,
    lookback: timedelta = DEFAULT_LOOKBACK,
    page_size: int = 500,
    on_page: Callable[[int, int], None] | None = None,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> tuple[FetchSummary, AppStore]:
    """Fetch APP's data for [start, end) into ``store``; ``client`` is a :class:`provkit.graph.GraphClient`.

    ``on_page(entries_in_page, slice_index)`` is called after each page, for progress bars; ``slice_index``
    counts the pieces committed so far. A piece is committed at each ``slice_length`` boundary, and after
    ``max_entries`` entries, whichever comes first, which bounds both memory and what an interruption loses.
    ``lookback`` (``overlap`` is its older name) is how far back from its end a range counts as unsettled. The
    app's store folder is locked for the whole fetch: a second writer waits for it.
    """
    if overlap is not None:
        lookback = overlap
    began = time.monotonic()
    # APP may already be resolved (the command line resolves it first to say which object it found).
    resolved = app if hasattr(app, "service_principal_id") else client.resolve_app(app)
    sp_id = resolved.service_principal_id
    app_store = store.app(tenant_id, sp_id)
    with app_store.writing():
        return _fetch_locked(
            client,
            app_store,
            resolved,
            start,
            end,
            slice_length,
            lookback,
            page_size,
            on_page,
            max_entries,
            began,
        )


def _fetch_locked(
    client, app_store, resolved, start, end, slice_length, lookback, page_size, on_page, max_entries, began
) -> tuple[FetchSummary, AppStore]:
    sp_id = resolved.service_principal_id
    app_store.set_app(
        {"display_name": resolved.display_name, "app_id": resolved.app_id, "service_principal_id": sp_id}
    )
    app_store.record_request(start, end)
    summary = FetchSummary(app=resolved.display_name, service_principal_id=sp_id, start=start, end=end)
    try:
        app_store.stored_ids()  # reads every events part's ids: damage shows here, before anything is fetched
    except StoreError as damage:
        # A fetch is a writer and fetches the lost ranges right away: set the damaged batches aside (nothing is
        # deleted; `provkit store check --repair` takes them back once readable) and go on.
        report = app_store.check(repair=True)
        summary.repaired = len(report.problems)
        log.warning("%s\nprovkit: %s", damage.message, "; ".join(report.actions))
    stats_before = _stats(client)

    # Job status first: a snapshot per fetch keeps cycle history beyond Graph's single lastExecution.
    snapshot_time = datetime.now(UTC)
    jobs = client.list_jobs(sp_id)
    if jobs:
        frame = jobs_from_records(
            jobs,
            snapshot_time=snapshot_time,
            service_principal_id=sp_id,
            service_principal_name=resolved.display_name,
        )
        app_store.write_jobs(frame)
        summary.jobs = len(frame)
        job = jobs[0]
        try:
            app_store.write_meta("schema", client.get_schema(sp_id, job["id"]))
        except Exception as exc:  # a schema we cannot read must not cost the logs
            app_store.write_meta("schema_error", {"error": str(exc)})
    app_store.write_meta(
        "service_principal", {"id": sp_id, "appId": resolved.app_id, "displayName": resolved.display_name}
    )
    app_store.write_meta("jobs", jobs)
    assignments = client.app_role_assignments(sp_id)
    app_store.write_meta("assignments", assignments)
    from provkit.sources.graph import directory_facts

    groups, users = directory_facts(client, assignments)
    app_store.write_meta("groups", groups)
    app_store.write_meta("users", users)
    gaps = app_store.gaps(start, end, lookback=lookback)
    if gaps:  # audits of covered ranges were stored by the fetch that covered them
        audits = client.directory_audits(gaps[0][0], gaps[-1][1], sp_id=sp_id)
        summary.audits_new = app_store.write_audits(audits)

    for gap_start, gap_end in gaps:
        pages = iter(client.provisioning_pages(sp_id, gap_start, gap_end, page_size=page_size))
        cursor = _Cursor(gap_start, [b for _, b in time_slices(gap_start, gap_end, slice_length)[:-1]])
        cursor.range_start, cursor.end = gap_start, gap_end
        while not cursor.done:
            # The piece's entries stream into the tables page by page; raw pages do not pile up.
            tables = events_from_records(cursor.piece(pages, max_entries, summary, on_page))
            covered = (cursor.start, cursor.cut or gap_end)
            summary.entries += cursor.read
            summary.rejected += len(tables.rejects)
            summary.reject_reasons.extend(
                r for _, r in tables.rejects[: max(0, 20 - len(summary.reject_reasons))]
            )
            summary.outside += cursor.outside
            result = app_store.write_events(tables, covered=covered, settled_before=end - lookback)
            summary.new += result.new
            summary.duplicates += result.duplicates
            summary.slices += 1
            cursor.start = covered[1]

    summary.compacted = sum(app_store.compact_if_needed().values())
    stats_after = _stats(client)
    summary.throttle_waits = stats_after[0] - stats_before[0]
    summary.waited_seconds = stats_after[1] - stats_before[1]
    summary.seconds = time.monotonic() - began
    app_store.record_fetch({**summary.as_dict(), "fetched_at": datetime.now(UTC).isoformat()})
    return summary, app_store


class _Cursor:
    """Where one query's pages are cut into pieces that can be committed: after a page whose last entry is at or
    past a slice boundary (everything before the boundary has arrived), or, once ``max_entries`` were read, at
    that last entry's time (ties with it may follow on the next page, so it is excluded)."""

    def __init__(self, start: datetime, boundaries: list[datetime]) -> None:
        self.start = start
        self.boundaries = boundaries
        self.cut: datetime | None = None  # where the piece just read ends; None: at the end of the range
        self.read = 0
        self.outside = 0  # entries of the piece dated outside [start, end): dropped
        self.range_start = start
        self.end: datetime | None = None
        self.done = False
        self._ordered = True
        self._previous: datetime | None = None

    def piece(
        self,
        pages: Iterator[dict],
        max_entries: int,
        summary: FetchSummary,
        on_page: Callable[[int, int], None] | None,
    ) -> Iterator[dict]:
        """Yield the entries of the next piece; afterwards ``cut``, ``read`` and ``done`` describe it."""
        self.cut, self.read, self.outside = None, 0, 0
        for page in pages:
            values = page.get("value") or []
            summary.pages += 1
            if on_page:
                on_page(len(values), summary.slices)
            for entry in values:
                when = _entry_time(entry)
                if when is not None and self.end is not None and not (self.range_start <= when < self.end):
                    self.outside += 1  # Graph answered with an entry the filter excludes: not this range's
                    continue
                yield entry
            self.read += len(values)
            if values and self._ordered:
                cut = self._cut_after(values, max_entries)
                if cut is not None:
                    self.cut = cut
                    return
        self.done = True

    def _cut_after(self, values: list, max_entries: int) -> datetime | None:
        first, last = _entry_time(values[0]), _entry_time(values[-1])
        if (
            first is None
            or last is None
            or last < first
            or (self._previous is not None and first < self._previous)
        ):
            self._ordered = False  # the order cannot be trusted: commit only once the range is complete
            return None
        self._previous = last
        passed = [b for b in self.boundaries if self.start < b <= last]
        if passed:
            return passed[-1]
        if self.read >= max_entries and last > self.start:
            return last
        return None


def _entry_time(entry: object) -> datetime | None:
    """A log entry's activityDateTime as an aware datetime, or None when missing or unreadable."""
    value = parse_graph_time(entry.get("activityDateTime")) if isinstance(entry, dict) else None
    # Graph counts 100-ns ticks; rounding down to microseconds only ever covers less, never more.
    return None if value is None or pd.isna(value) else value.floor("us").to_pydatetime()


def _stats(client) -> tuple[int, float]:
    stats = getattr(client, "stats", None)
    if stats is None:
        return 0, 0.0
    return int(getattr(stats, "throttled", 0)), float(getattr(stats, "waited_seconds", 0.0))
