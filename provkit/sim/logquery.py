"""Answering ``GET /auditLogs/provisioning`` over the simulated history without materialising it.

Entries are addressed by a position key ``(ticks, app, cycle, index)``; the merged stream of every app's entries
is ordered by that key (ascending or descending). A page resumes strictly after the key carried in the opaque
``$skiptoken``, so paging is stateless, and filters on app, job, cycle, change id, id and time prune whole apps and
cycles before any entry is rendered.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from provkit.sim import ids
from provkit.sim.entries import render_entry
from provkit.sim.tenant import App, Tenant
from provkit.sim.timefmt import to_ticks

Key = tuple[int, int, int, int]  # (ticks, app index, cycle no, entry index)

FILTERABLE = (
    "id",
    "tenantId",
    "jobId",
    "changeId",
    "cycleId",
    "activityDateTime",
    "durationInMilliseconds",
    "provisioningAction",
    "provisioningStatusInfo/status",
    "provisioningStatusInfo/errorInformation/errorCode",
    "servicePrincipal/id",
    "servicePrincipal/displayName",
    "sourceSystem/displayName",
    "targetSystem/displayName",
    "sourceIdentity/id",
    "sourceIdentity/displayName",
    "sourceIdentity/identityType",
    "targetIdentity/id",
    "targetIdentity/displayName",
    "targetIdentity/identityType",
    "initiatedBy/displayName",
)
ENUMS = ("provisioningAction", "provisioningStatusInfo/status")
DATETIMES = ("activityDateTime",)


@dataclass
class Page:
    items: list[dict]
    last_key: Key | None  # where the next page resumes; None when the stream is exhausted
    scanned: int


class LogQuery:
    """One query: a compiled filter (or None), the order, and the pruning it allows."""

    def __init__(self, tenant: Tenant, flt, descending: bool = True) -> None:  # flt: provkit.sim.odata.Filter
        self.tenant = tenant
        self.filter = flt
        self.descending = descending
        self.lower: int | None = None
        self.upper: int | None = None
        self.apps: list[App] = list(tenant.apps)
        self.cycles: dict[int, set[int]] | None = None  # app index -> allowed cycle numbers
        self.exact: set[Key] | None = None  # exact (app, cycle, index) positions (ticks left 0)
        if flt is not None:
            self._prune(flt)

    def _prune(self, flt) -> None:
        tenant = self.tenant
        lo, hi = flt.bounds("activityDateTime")
        if lo is not None:
            self.lower = to_ticks(lo) if isinstance(lo, datetime) else int(lo)
        if hi is not None:
            self.upper = to_ticks(hi) if isinstance(hi, datetime) else int(hi)
        sp = flt.equalities("servicePrincipal/id")
        if sp is not None:
            self.apps = [a for a in self.apps if a.sp_id in sp]
        jobs = flt.equalities("jobId")
        if jobs is not None:
            self.apps = [a for a in self.apps if a.job_id in jobs]
        for path, kind in (("id", ids.ENTRY), ("changeId", ids.CHANGE)):
            values = flt.equalities(path)
            if values is not None:
                exact: set[Key] = set()
                for v in values:
                    d = tenant.codec.decode(v)
                    if d and d[0] == kind:
                        exact.add((0, d[1], d[2], d[3]))
                self.exact = exact if self.exact is None else self.exact & exact
        cycles = flt.equalities("cycleId")
        if cycles is not None:
            allowed: dict[int, set[int]] = {}
            for v in cycles:
                d = tenant.codec.decode(v)
                if d and d[0] == ids.CYCLE:
                    allowed.setdefault(d[1], set()).add(d[2])
            self.cycles = allowed

    def _app_stream(self, app: App, after: Key | None) -> Iterator[Key]:
        """Positions of one app's visible entries in query order, strictly after ``after``."""
        tenant = self.tenant
        tl = app.timeline()
        lower = tenant.window_start if self.lower is None else max(self.lower, tenant.window_start)
        upper = tenant.now_ticks if self.upper is None else min(self.upper, tenant.now_ticks)
        if lower > upper:
            return
        allowed = None if self.cycles is None else self.cycles.get(app.index, set())
        indexes = tl.cycles_between(lower, upper)
        order = reversed(indexes) if self.descending else iter(indexes)
        a = app.index
        for ci in order:
            cycle = tl.cycles[ci]
            if allowed is not None and cycle.no not in allowed:
                continue
            first = cycle.entries_before(lower)
            last = cycle.entries_before(upper + 1)  # exclusive
            if first >= last:
                continue
            if after is not None:
                if self.descending:
                    last = _cut_desc(cycle, a, first, last, after)
                else:
                    first = max(first, _cut_asc(cycle, a, first, last, after))
                if first >= last:
                    continue
            if not tenant.late_share:  # the usual case: every entry up to now is written
                positions = range(last - 1, first - 1, -1) if self.descending else range(first, last)
                for i in positions:
                    yield (cycle.entry_time(i), a, cycle.no, i)
                continue
            written = tenant.written
            if self.descending:
                for i in range(last - 1, first - 1, -1):
                    t = cycle.entry_time(i)
                    if written(t, a, cycle.no, i):
                        yield (t, a, cycle.no, i)
            else:
                for i in range(first, last):
                    t = cycle.entry_time(i)
                    if written(t, a, cycle.no, i):
                        yield (t, a, cycle.no, i)

    def page(self, top: int, after: Key | None, scan_budget: int = 20_000) -> Page:
        tenant = self.tenant
        flt = self.filter
        items: list[dict] = []
        scanned = 0
        if self.exact is not None:
            keys = []
            for _, a, c, i in self.exact:
                if a >= len(tenant.apps) or tenant.apps[a] not in self.apps:
                    continue
                app = tenant.apps[a]
                tl = app.timeline()
                if c >= len(tl.cycles):
                    continue
                cycle = tl.cycles[c]
                if i >= cycle.entries:
                    continue
                t = cycle.entry_time(i)
                if tenant.window_start <= t <= tenant.now_ticks and tenant.written(t, a, c, i):
                    keys.append((t, a, c, i))
            keys.sort(reverse=self.descending)
            if after is not None:
                keys = [k for k in keys if (k < after if self.descending else k > after)]
            stream: Iterator[Key] = iter(keys)
        else:
            streams = [self._app_stream(app, after) for app in self.apps]
            if self.descending:
                stream = heapq.merge(*streams, reverse=True)
            else:
                stream = heapq.merge(*streams)
        last: Key | None = None
        for key in stream:
            scanned += 1
            _, a, c, i = key
            app = tenant.apps[a]
            entry = render_entry(app, app.timeline().cycles[c], i)
            last = key
            if flt is None or flt.matches(entry):
                items.append(entry)
                if len(items) >= top:
                    break
            if scanned >= scan_budget:
                break
        else:
            last = None  # the stream is exhausted: no next page
        return Page(items, last, scanned)


def _cut_desc(cycle, a: int, first: int, last: int, after: Key) -> int:
    """Exclusive upper index so that every key (t_i, a, no, i) < after."""
    lo, hi = first, last
    while lo < hi:
        mid = (lo + hi) // 2
        if (cycle.entry_time(mid), a, cycle.no, mid) < after:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _cut_asc(cycle, a: int, first: int, last: int, after: Key) -> int:
    """First index whose key is > after."""
    lo, hi = first, last
    while lo < hi:
        mid = (lo + hi) // 2
        if (cycle.entry_time(mid), a, cycle.no, mid) <= after:
            lo = mid + 1
        else:
            hi = mid
    return lo
