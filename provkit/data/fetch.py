"""Fetch an app's provisioning logs, job status, schema, assignments and audits from Graph into the store.

Each range still to fetch is one query, oldest entry first, read in pieces. A piece ends after a page whose last
entry is at or past a slice boundary (whole days by default; everything before the boundary has then arrived),
or after ``max_entries`` entries (at that last entry's time); it is written and its range recorded as covered in
one atomic manifest update. Entries stream from the pages into the tables, so memory holds one piece, not one
day of raw JSON (a day of an initial cycle can hold a hundred thousand entries).

The app's store folder is locked for the whole fetch (a second writer waits). A damaged events part found on the
way in is set aside with its batch (:meth:`provkit.data.store.AppStore.check`) and its range fetched again. After the
pieces, small parts are compacted once there are many.

Late arrivals: Graph writes a log entry some time after it happened, so the tail of a fetched range is recorded as
*unsettled* (the last ``lookback`` before the fetch's end) and asked for again by the next fetch; entries already
stored are dropped by id. Entries Graph returns dated outside the range asked for are not stored, only counted.

Under Graph's reporting throttle (5 calls per 10 s per app registration and tenant) the calls are the cost, so:
1,000 entries a page; one query per range, not one per slice (each slice would cost a short last page, which for a
quiet app is most of its calls); the log pages are requested by a thread of their own, ahead of the normalising
and writing, each next page's call sent as soon as the page before has arrived, before it is parsed
(:mod:`provkit.data.paging`); pandas and pyarrow load only when the first page is normalised, after the first
call has gone (:mod:`provkit.data.deferred`); every other read (job status, schema, assignments, group membership, directory audits) runs in a
side thread that starts once the first log page is in, so none delays it (what they read is written from the
fetch's own thread, which holds the store's writer lock); a piece is also committed while the throttle holds the
next log page back, so little is left to write after the last page; and every client of one identity shares one
pacer (:func:`provkit.data.pacing.shared_pacer`), so several fetches in a process (:func:`fetch_apps`, as
``provkit report`` does) stay under the limit together.

An interrupted fetch loses at most the piece it was reading, and the next fetch asks only for what is not covered
yet, plus the unsettled tail. Duplicate ids are dropped, so repeating a fetch changes nothing.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from provkit.data import tables
from provkit.data.fetchpages import _Cursor, _entry_time, _Prefetch
from provkit.data.graph import GraphClient, ResolvedApp, time_slices
from provkit.data.sources.graph import read_directory
from provkit.data.store import AppStore, Store, StoreError
from provkit.formatting import format_duration

log = logging.getLogger("provkit.data.fetch")

DEFAULT_SLICE = timedelta(days=1)  # commit granularity: an interrupted fetch loses at most about this much
# inference: no latency is documented for provisioning logs. The retired "Azure AD reporting latencies" page gave
# audit and sign-in logs 2 min (95th percentile) and 5 min (99th); the current "Log latency in Microsoft Entra ID"
# page names no figure and says delays in the underlying infrastructure delay the logs. Three hours covers the
# documented tail many times over, and hours-late entries seen in practice, at the cost of one short query.
DEFAULT_LOOKBACK = timedelta(hours=3)
DEFAULT_OVERLAP = DEFAULT_LOOKBACK  # the older name
DEFAULT_MAX_ENTRIES = 20_000  # entries read before a commit (a day of an initial cycle can hold 100,000)
IDLE_COMMIT_SECONDS = 3.0  # a piece is also committed when the next log call waits this long for the throttle
FIRST_WINDOW_SECONDS = 5.0  # the most the first piece's normalising waits for the first window's calls to go
FIRST_WINDOW_PAGES = 5  # the throttle's calls per window: pages read ahead before the first is normalised


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
    groups_read: int = 0  # assigned groups whose members were read from Graph (the others had not changed)
    groups_assigned: int = 0
    groups_patched: int = 0  # assigned groups updated from the delta query's member changes, without a read
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
            + (
                f"{self.groups_read} of {self.groups_assigned} assigned groups' members read"
                + (f" ({self.groups_patched} updated from Graph's delta)" if self.groups_patched else "")
                + ", "
                if self.groups_assigned
                else ""
            )
            + f"{self.throttle_waits} throttled (429), {self.waited_seconds:.1f} s waiting (pacing and retries), "
            f"{self.seconds:.1f} s in all"
        )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        return d


@dataclass
class FetchProgress:
    """Where a running fetch is, for progress bars: entries and pages so far, how far through the window the
    oldest-first stream has reached, and the time left that the throttle implies for the rest."""

    app: str
    start: datetime
    end: datetime
    entries: int = 0
    pages: int = 0
    pieces: int = 0
    reached: datetime | None = None  # the last entry's time: the stream is oldest first
    page_size: int = 1000
    seconds: float = 0.0
    seconds_left: float | None = None  # None until the rate of entries over time is known

    @property
    def rate(self) -> float:
        """Entries per second so far."""
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    @property
    def entries_expected(self) -> int | None:
        """The entries the whole window will hold, extrapolated from how far the stream has reached."""
        if self.reached is None or self.entries == 0:
            return None
        done = (self.reached - self.start) / (self.end - self.start)
        if done <= 0:
            return None
        return max(self.entries, round(self.entries / min(done, 1.0)))

    def line(self) -> str:
        """E.g. "12,000 of ~31,600 entries, 12 pages, 480 entries/s, about 40 s left under the throttle"."""
        expected = self.entries_expected
        text = f"{self.entries:,}" + (f" of ~{expected:,}" if expected else "") + " entries"
        text += f", {self.pages} page{'s' if self.pages != 1 else ''}, {self.rate:.0f} entries/s"
        if self.seconds_left is not None:
            text += f", about {format_duration(self.seconds_left)} left under the throttle"
        return text


def fetch_app(
    client: GraphClient,
    store: Store,
    app: str | ResolvedApp,
    *,
    start: datetime,
    end: datetime,
    tenant_id: str,
    slice_length: timedelta = DEFAULT_SLICE,
    overlap: timedelta | None = None,
    lookback: timedelta = DEFAULT_LOOKBACK,
    page_size: int | None = None,
    on_page: Callable[[int, int], None] | None = None,
    progress: Callable[[FetchProgress], None] | None = None,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> tuple[FetchSummary, AppStore]:
    """Fetch APP's data for [start, end) into ``store``; ``client`` is a :class:`provkit.data.graph.GraphClient`.

    ``page_size`` None asks for the client's page size (1,000 unless Graph refused it before). ``on_page(
    entries_in_page, slice_index)`` is called after each page; ``slice_index`` counts the pieces committed so
    far. ``progress(FetchProgress)`` is called after each page too, with the rate and the time left under the
    throttle. A piece is committed at each ``slice_length`` boundary inside the one query's stream of pages, and
    after ``max_entries`` entries, whichever comes first, which bounds both memory and what an interruption loses.
    ``lookback`` (``overlap`` is its older name) is how far back from its end a range counts as unsettled. The
    app's store folder is locked for the whole fetch: a second writer waits for it.
    """
    if overlap is not None:
        lookback = overlap
    began = time.monotonic()
    # APP may already be resolved (the command line resolves it first to say which object it found).
    resolved = client.resolve_app(app) if isinstance(app, str) else app
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
            progress,
            max_entries,
            began,
        )


def _fetch_locked(
    client: GraphClient,
    app_store: AppStore,
    resolved: ResolvedApp,
    start: datetime,
    end: datetime,
    slice_length: timedelta,
    lookback: timedelta,
    page_size: int | None,
    on_page: Callable[[int, int], None] | None,
    progress: Callable[[FetchProgress], None] | None,
    max_entries: int,
    began: float,
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

    gaps = app_store.gaps(start, end, lookback=lookback)
    side = _SideReads(
        client,
        sp_id,
        app_store.meta("groups"),
        app_store.meta("groups_read_at"),
        gaps,
        app_store.meta("groups_delta"),
    )
    if not gaps:
        side.start()
    state = FetchProgress(app=resolved.display_name, start=start, end=end)
    if page_size is not None:
        state.page_size = page_size
    try:
        for gap_start, gap_end in gaps:
            pages = _Prefetch(
                client.provisioning_pages(sp_id, gap_start, gap_end, page_size=page_size),
                after_first=side.start,
                first_depth=FIRST_WINDOW_PAGES,
            )
            cursor = _Cursor(
                gap_start,
                [b for _, b in time_slices(gap_start, gap_end, slice_length)[:-1]],
                idle=functools.partial(_idle, client, pages),
            )
            cursor.range_start, cursor.end = gap_start, gap_end
            watch = _Watch(client, state, began, on_page, progress, summary, side, app_store, resolved)
            if gap_start == gaps[0][0]:
                # The first window's calls go one after another, each when the page before arrives; normalising
                # (and loading pandas and pyarrow for it) beside them would slow their answers for the whole fetch
                # (later windows are paced from them). So it starts once they are out, in the throttle's wait.
                pages.wait_until(lambda: _throttle_wait(client) > 0, FIRST_WINDOW_SECONDS)
            try:
                while not cursor.done:
                    # The piece's entries stream into the tables page by page, each page normalised while the
                    # next is on its way, so after the last page only it is left to convert; raw pages do not
                    # pile up. The first call loads the converters (pandas, pyarrow) while the first pages are
                    # on their way.
                    piece = tables.events_from_pages(cursor.piece(pages, max_entries, summary, watch))
                    covered = (cursor.start, cursor.cut or gap_end)
                    summary.entries += cursor.read
                    summary.rejected += len(piece.rejects)
                    summary.reject_reasons.extend(
                        r for _, r in piece.rejects[: max(0, 20 - len(summary.reject_reasons))]
                    )
                    summary.outside += cursor.outside
                    result = app_store.write_events(piece, covered=covered, settled_before=end - lookback)
                    summary.new += result.new
                    summary.duplicates += result.duplicates
                    summary.slices += 1
                    state.pieces = summary.slices
                    cursor.start = covered[1]
            finally:
                pages.close()
    except BaseException:
        # What the side reads got is stored (the job snapshot first); they end at their next step.
        side.stop()
        side.store(app_store, summary, resolved)
        raise
    side.join()
    side.store(app_store, summary, resolved)
    if side.error is not None:
        raise side.error

    summary.compacted = sum(app_store.compact_if_needed().values())
    stats_after = _stats(client)
    summary.throttle_waits = stats_after[0] - stats_before[0]
    summary.waited_seconds = stats_after[1] - stats_before[1]
    summary.seconds = time.monotonic() - began
    app_store.record_fetch({**summary.as_dict(), "fetched_at": datetime.now(UTC).isoformat()})
    return summary, app_store


class _SideReads:
    """The reads a fetch makes besides the logs, in a thread of their own and in this order: job status (a
    snapshot per fetch keeps cycle history beyond Graph's single lastExecution), schema, assignments, directory
    facts (unthrottled calls), then the directory audits (throttled; the pacer is shared with the log pages, so
    together they stay under the limit). Each result waits in ``_ready`` until the fetch's thread, which holds
    the store's writer lock, stores it (:meth:`store`, after every page and at the end). ``error`` holds what
    stopped the reads, if anything.

    They start once the first log page is in (:meth:`start`, from :class:`_Prefetch`'s thread), so the first log
    call goes alone, on the connection the app's resolution left open: a call sent beside others, or on a new
    connection, reaches the service later than the pacer counted it (see :class:`provkit.data.pacing.AuditPacer`).
    The directory audits, the one throttled call among them, still go early: where it goes in the stream only
    moves one log page between windows, and the last page of a busy app cannot be foreseen from entry times
    (provisioning cycles come in bursts), so holding it for the last window's free slot is no help."""

    def __init__(
        self,
        client: GraphClient,
        sp_id: str,
        groups: object,
        groups_read_at: object,
        gaps: list[tuple[datetime, datetime]],
        groups_delta: object = None,
    ) -> None:
        self.error: BaseException | None = None
        self._ready: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._stopped = False
        self._start_lock = threading.Lock()
        self._started = False
        ready = self._ready

        def read() -> None:
            snapshot_time = datetime.now(UTC)
            jobs = client.list_jobs(sp_id)
            schema: tuple[str, object] | None = None
            if jobs:
                try:
                    schema = ("schema", client.get_schema(sp_id, jobs[0]["id"]))
                except Exception as exc:  # a schema we cannot read must not cost the logs
                    schema = ("schema_error", {"error": str(exc)})
            ready.put(("jobs", (snapshot_time, jobs, schema)))
            if self._stopped:
                return
            assignments = client.app_role_assignments(sp_id)
            ready.put(("assignments", assignments))
            found = read_directory(
                client,
                assignments,
                previous=groups if isinstance(groups, dict) else None,
                read_at=groups_read_at if isinstance(groups_read_at, dict) else None,
                delta=groups_delta,  # the deltaLinks the last fetch kept: only changed groups are read again
                stop=lambda: self._stopped,
            )
            if self._stopped:
                return
            ready.put(("directory", found))
            if gaps:  # audits of covered ranges were stored by the fetch that covered them
                ready.put(("audits", client.directory_audits(gaps[0][0], gaps[-1][1], sp_id=sp_id)))

        def run() -> None:
            try:
                read()
            except BaseException as exc:  # handed to the fetch's thread
                self.error = exc

        # A daemon: an interrupted fetch (Ctrl-C) does not wait for directory reads to end.
        self._thread = threading.Thread(target=run, name="provkit-side-reads", daemon=True)

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        """Begin the reads (once; later calls do nothing)."""
        with self._start_lock:
            if not self._started:
                self._started = True
                self._thread.start()

    def store(self, app_store: AppStore, summary: FetchSummary, resolved: ResolvedApp) -> None:
        """Write what has been read so far (from the thread that holds the store's writer lock)."""
        sp_id = resolved.service_principal_id
        while True:
            try:
                kind, value = self._ready.get_nowait()
            except queue.Empty:
                return
            if kind == "jobs":
                snapshot_time, jobs, schema = value
                if jobs:
                    frame = tables.jobs_from_records(
                        jobs,
                        snapshot_time=snapshot_time,
                        service_principal_id=sp_id,
                        service_principal_name=resolved.display_name,
                    )
                    app_store.write_jobs(frame)
                    summary.jobs = len(frame)
                if schema is not None:
                    app_store.write_meta(*schema)
                app_store.write_meta(
                    "service_principal",
                    {"id": sp_id, "appId": resolved.app_id, "displayName": resolved.display_name},
                )
                app_store.write_meta("jobs", jobs)
            elif kind == "assignments":
                app_store.write_meta("assignments", value)
            elif kind == "directory":
                app_store.write_meta("groups", value.groups)
                app_store.write_meta("groups_read_at", value.read_at)
                app_store.write_meta("users", value.users)
                app_store.write_meta("groups_delta", value.delta)
                summary.groups_read, summary.groups_assigned = len(value.reread), len(value.groups)
                summary.groups_patched = len(value.patched)
            elif kind == "audits":
                summary.audits_new = app_store.write_audits(value)

    def join(self) -> None:
        self.start()  # no log pages to wait for (nothing to fetch), or they never started them
        self._thread.join()

    def stop(self) -> None:
        """The fetch failed or was interrupted: let the side reads end at their next step, and wait for that
        (a read in flight finishes; the directory audits are not started)."""
        self._stopped = True
        if self._started:
            self._thread.join()


class _Watch:
    """After each page: stores what the side reads have got, then calls ``on_page`` and ``progress``, the
    latter with the time left that the throttle implies."""

    def __init__(
        self,
        client: GraphClient,
        state: FetchProgress,
        began: float,
        on_page: Callable[[int, int], None] | None,
        progress: Callable[[FetchProgress], None] | None,
        summary: FetchSummary,
        side: _SideReads,
        app_store: AppStore,
        resolved: ResolvedApp,
    ) -> None:
        self.client = client
        self.state = state
        self.began = began
        self.on_page = on_page
        self.progress = progress
        self.summary = summary
        self.side = side
        self.app_store = app_store
        self.resolved = resolved

    def __call__(self, values: list[Any]) -> None:
        self.side.store(self.app_store, self.summary, self.resolved)
        state = self.state
        state.pages += 1
        state.entries += len(values)
        if self.on_page:
            self.on_page(len(values), self.summary.slices)
        if self.progress is None:
            return
        if values:
            state.reached = _entry_time(values[-1]) or state.reached
        if len(values) > state.page_size or (state.pages == 1 and values):
            state.page_size = max(len(values), 1)  # what the server really sends (it may cap $top)
        state.seconds = time.monotonic() - self.began
        expected = state.entries_expected
        pacer = getattr(self.client, "pacer", None)
        if expected is None or pacer is None:
            state.seconds_left = None
        else:
            pages_left = -(-max(0, expected - state.entries) // state.page_size)
            state.seconds_left = pacer.seconds_for(pages_left)
        self.progress(state)


def _idle(client: object, pages: _Prefetch) -> bool:
    """Whether nothing more can arrive for a while: the throttle holds the next log call back at least
    :data:`IDLE_COMMIT_SECONDS`, no page waits to be read, and no throttled call is on its way (a backlog read
    after the first window's calls, or pages still coming, are not a pause to commit in)."""
    pacer = getattr(client, "pacer", None)
    return (
        _throttle_wait(client) >= IDLE_COMMIT_SECONDS
        and not pages.waiting()
        and not getattr(pacer, "in_flight", 0)
    )


def _throttle_wait(client: object) -> float:
    """Seconds before the client's pacer lets another throttled call go (0 without a pacer)."""
    pacer = getattr(client, "pacer", None)
    return 0.0 if pacer is None else float(pacer.seconds_for(1))


def _stats(client: object) -> tuple[int, float]:
    stats = getattr(client, "stats", None)
    if stats is None:
        return 0, 0.0
    return int(getattr(stats, "throttled", 0)), float(getattr(stats, "waited_seconds", 0.0))


# ---- several apps under one throttle budget -------------------------------------------------------------------
FETCH_WORKERS = 3  # concurrent fetches: enough to keep the shared budget busy while one normalises or writes


@dataclass
class FetchPlan:
    """The apps to fetch, in the order they start, with what each is expected to cost under the throttle.

    ``pages`` holds each app's expected log pages (from the entries per hour its earlier fetches found), None
    for an app never fetched (counted as one page). ``calls`` adds one directory-audits call per app with
    anything to fetch; ``seconds`` is the least time those calls take under the caller's pacer.
    """

    apps: list[ResolvedApp]
    pages: dict[str, int | None]
    calls: int
    seconds: float
    workers: int

    def line(self) -> str:
        """E.g. "Fetching 7 apps (3 at a time): about 180 throttled calls, about 6 min under Graph's
        reporting throttle (5 calls per 10 s); 2 never fetched, so at least that"."""
        unknown = sum(1 for p in self.pages.values() if p is None)
        text = (
            f"Fetching {len(self.apps)} app{'s' if len(self.apps) != 1 else ''} ({self.workers} at a time): about "
            f"{self.calls} throttled calls, about {format_duration(self.seconds)} under Graph's reporting throttle "
            "(5 calls per 10 s per app registration and tenant)"
        )
        if unknown:
            text += f"; {unknown} never fetched before, so at least that"
        return text


def plan_fetches(
    client: GraphClient,
    store: Store,
    apps: list[ResolvedApp],
    *,
    start: datetime,
    end: datetime,
    tenant_id: str,
    lookback: timedelta = DEFAULT_LOOKBACK,
    workers: int = FETCH_WORKERS,
) -> FetchPlan:
    """Order ``apps`` for :func:`fetch_apps` and estimate the fetch phase.

    Every app draws on one budget (the caller's pacer), so the total is set by the calls, not the order; what the
    order changes is the tail: the largest fetch starts first (longest first), so no long fetch starts last and
    runs alone. Apps never fetched, whose size is unknown, go first for the same reason.
    """
    page_size = getattr(client, "page_size", 1000)
    pages: dict[str, int | None] = {}
    for app in apps:
        app_store = store.app(tenant_id, app.service_principal_id)
        gaps = app_store.gaps(start, end, lookback=lookback)
        rate = _entries_per_second(app_store.manifest().get("fetches") or [])
        if not gaps:
            pages[app.service_principal_id] = 0
        elif rate is None:
            pages[app.service_principal_id] = None
        else:
            seconds = sum((b - a).total_seconds() for a, b in gaps)
            pages[app.service_principal_id] = max(len(gaps), -(-round(rate * seconds) // page_size))
    ordered = sorted(
        apps,
        key=lambda a: (pages[a.service_principal_id] is not None, -(pages[a.service_principal_id] or 0)),
    )
    calls = sum((p if p is not None else 1) + (1 if p != 0 else 0) for p in pages.values())
    pacer = getattr(client, "pacer", None)
    seconds = pacer.seconds_for(calls) if pacer is not None else 0.0
    return FetchPlan(ordered, pages, calls, seconds, max(1, min(workers, len(apps))))


def _entries_per_second(fetches: list[Any]) -> float | None:
    """Entries per second of window in an app's recorded fetches (None when none fetched anything)."""
    entries, seconds = 0, 0.0
    for f in fetches:
        try:
            span = (datetime.fromisoformat(f["end"]) - datetime.fromisoformat(f["start"])).total_seconds()
            count = int(f.get("entries") or 0)
        except (KeyError, TypeError, ValueError):
            continue
        if span > 0:
            entries, seconds = entries + count, seconds + span
    return entries / seconds if seconds > 0 else None


def fetch_apps(
    client: GraphClient,
    store: Store,
    plan: FetchPlan,
    *,
    start: datetime,
    end: datetime,
    tenant_id: str,
    on_done: Callable[[ResolvedApp, FetchSummary | None, BaseException | None], None] | None = None,
) -> dict[str, tuple[FetchSummary, AppStore] | BaseException]:
    """Fetch the plan's apps, ``plan.workers`` at a time in the plan's order, all through ``client`` (so one pacer
    keeps them together under the throttle). Returns, by service principal id, (summary, app store) or the error
    that stopped that app's fetch; ``on_done(app, summary, error)`` hears each as it ends."""
    results: dict[str, tuple[FetchSummary, AppStore] | BaseException] = {}

    def one(app: ResolvedApp) -> None:
        try:
            done = fetch_app(client, store, app, start=start, end=end, tenant_id=tenant_id)
        except Exception as exc:  # recorded for this app; the others go on
            results[app.service_principal_id] = exc
            if on_done:
                on_done(app, None, exc)
            return
        results[app.service_principal_id] = done
        if on_done:
            on_done(app, done[0], None)

    with ThreadPoolExecutor(max_workers=plan.workers, thread_name_prefix="provkit-fetch") as pool:
        list(pool.map(one, plan.apps))
    return results
