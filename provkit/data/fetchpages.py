"""One query's log pages for a fetch (:mod:`provkit.data.fetch`): requested by a thread of their own ahead of
their reader (:class:`_Prefetch`), and cut into pieces that can be committed (:class:`_Cursor`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from provkit.data import tables
from provkit.data.deferred import deferred

if TYPE_CHECKING:
    import pandas as pd

    from provkit.data.fetch import FetchSummary
else:  # imported on first use: the first log call goes before pandas loads (provkit.data.deferred)
    pd = deferred("pandas")

BOUNDARY_WAIT_PAGES = 5  # under the throttle, a boundary's commit waits this many pages for such a wait


class _Prefetch:
    """The pages of one query, requested by a thread of their own up to ``depth`` pages ahead of their reader, so
    Graph's answer time overlaps normalising and writing the page before (both would otherwise add to every
    page); ``first_depth`` before the reader has taken a page (a whole throttle window: see :meth:`wait_until`).
    Errors reach the reader in order; :meth:`close` stops the thread after its call in flight. ``after_first``
    is called in that thread once the first page is in (or the pages ended or failed)."""

    def __init__(
        self,
        pages: Iterator[dict[str, Any]],
        depth: int = 2,
        after_first: Callable[[], None] | None = None,
        first_depth: int | None = None,
    ) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()  # bounded by _put
        self._depth = depth
        self._first_depth = max(depth, first_depth or depth)
        self._taken = False  # the reader has taken a page
        self._room = threading.Event()  # the reader took an item: there may be room now
        self._stop = threading.Event()
        self._ended = threading.Event()  # the pages ended or failed (the last item is queued or being queued)
        self._after_first = after_first
        self._thread = threading.Thread(
            target=self._run, args=(pages,), name="provkit-log-pages", daemon=True
        )
        self._thread.start()

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            self._room.clear()
            if self._queue.qsize() < (self._depth if self._taken else self._first_depth):
                self._queue.put(item)
                return True
            self._room.wait(0.2)
        return False

    def _run(self, pages: Iterator[dict[str, Any]]) -> None:
        try:
            for page in pages:
                self._first_in()
                if not self._put(("page", page)):
                    return
            self._ended.set()
            self._put(("end", None))
        except BaseException as exc:  # handed to the reader, in order
            self._ended.set()
            self._put(("error", exc))
        finally:
            self._ended.set()
            self._first_in()

    def _first_in(self) -> None:
        if self._after_first is not None:
            after, self._after_first = self._after_first, None
            after()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        kind, item = self._queue.get()
        self._taken = True
        self._room.set()
        if kind == "page":
            page: dict[str, Any] = item
            return page
        self._queue.put((kind, item))  # every later call sees the end (or the error) too
        if kind == "end":
            raise StopIteration
        raise item

    def wait_until(self, busy: Callable[[], bool], seconds: float) -> None:
        """Wait (at most ``seconds``) until ``busy()`` (the throttle holds the next call back), ``first_depth``
        pages wait for the reader, or the pages ended or failed: the reader has nothing to gain by starting sooner,
        and its work would slow the calls still going."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (
            busy() or self._queue.qsize() >= self._first_depth or self._ended.is_set()
        ):
            time.sleep(0.01)

    def waiting(self) -> int:
        """Pages read and waiting for the reader."""
        return self._queue.qsize()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _Cursor:
    """Where one query's pages are cut into pieces that can be committed: after a page whose last entry is at or
    past a slice boundary (everything before the boundary has arrived), or, once ``max_entries`` were read or
    while ``idle()`` (the next log call waits for the throttle), at that last entry's time (ties with it may
    follow on the next page, so it is excluded).

    The idle cut writes what has been read while the throttle holds the next page back, so the piece left for
    after the last page, whose writing adds to the fetch's time, is only what came in since the last wait (for
    a busy app, one window's pages instead of up to a day's). Once the throttle has held a page back, a passed
    boundary waits up to :data:`BOUNDARY_WAIT_PAGES` pages for the next such moment instead of adding a commit
    of its own, so a throttled fetch writes about one part per window, not one per window and one per day."""

    def __init__(
        self, start: datetime, boundaries: list[datetime], idle: Callable[[], bool] | None = None
    ) -> None:
        self.start = start
        self.boundaries = boundaries
        self.idle = idle
        self.cut: datetime | None = None  # where the piece just read ends; None: at the end of the range
        self.read = 0
        self.outside = 0  # entries of the piece dated outside [start, end): dropped
        self.range_start = start
        self.end: datetime | None = None
        self.done = False
        self.paced = False  # the throttle has held a page back in this range
        self._ordered = True
        self._previous: datetime | None = None
        self._past_boundary = 0  # pages of this piece read since it passed a boundary

    def piece(
        self,
        pages: Iterator[dict[str, Any]],
        max_entries: int,
        summary: FetchSummary,
        watch: Callable[[list[Any]], None],
    ) -> Iterator[list[Any]]:
        """Yield the entries of the next piece, a page at a time (so each page can be normalised while the next
        is on its way: :func:`provkit.data.tables.events_from_pages`); afterwards ``cut``, ``read`` and ``done``
        describe it."""
        self.cut, self.read, self.outside, self._past_boundary = None, 0, 0, 0
        for page in pages:
            values = page.get("value") or []
            summary.pages += 1
            watch(values)
            kept = []
            for entry in values:
                when = _entry_time(entry)
                if when is not None and self.end is not None and not (self.range_start <= when < self.end):
                    self.outside += 1  # Graph answered with an entry the filter excludes: not this range's
                    continue
                kept.append(entry)
            yield kept
            self.read += len(values)
            if values and self._ordered:
                cut = self._cut_after(values, max_entries)
                if cut is not None:
                    self.cut = cut
                    return
        self.done = True

    def _cut_after(self, values: list[Any], max_entries: int) -> datetime | None:
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
        self._past_boundary += 1 if passed else 0
        if self.idle is not None and self.idle():
            self.paced = True
            if last > self.start:
                return last
        if passed and (not self.paced or self._past_boundary > BOUNDARY_WAIT_PAGES):
            return passed[-1]
        if self.read >= max_entries and last > self.start:
            return last
        return None


def _entry_time(entry: object) -> datetime | None:
    """A log entry's activityDateTime as an aware datetime, or None when missing or unreadable."""
    value = tables.parse_graph_time(entry.get("activityDateTime")) if isinstance(entry, dict) else None
    # Graph counts 100-ns ticks; rounding down to microseconds only ever covers less, never more.
    return None if value is None or pd.isna(value) else value.floor("us").to_pydatetime()
