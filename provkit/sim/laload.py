"""Loading the simulated workspace: the tenant's entries rendered in worker processes, their rows handed to DuckDB
as Arrow tables.

A 100,000-user tenant's month is about two million entries of ~3 KB of JSON each. What the load keeps per entry
is the small part: its key (app, cycle, index), time, ids and the columns of its outcome. The outcome is a
function of (object, cycle mode, cycle kind, no-op or not), so a worker renders one entry per distinct outcome and
reuses its columns for the others (a test checks every row against la_row(render_entry(...))). The large JSON
columns (``_LAZY``) are rendered when a query reads them, for the rows it reads.
"""

from __future__ import annotations

import functools
import multiprocessing
import resource
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from queue import Empty
from typing import Any

from provkit.sim.entries import cycle_id, entry_ids, render_outcome
from provkit.sim.laschema import _PER_ENTRY, _SHAPE, PROVISIONING_COLUMNS, _shape

_FORK_TENANT: Any = None  # the tenant a forked worker renders from
_MEMO: dict = {}  # outcome key -> _shape(entry), for the app being rendered (reset per app and per load)
_MEMO_APP: list[int] = [-1]

_STORED_COLUMNS: dict[str, str] = {
    "app": "SMALLINT",
    "cyc": "INTEGER",  # the cycle's position in the app's timeline
    "idx": "INTEGER",
    **{name: PROVISIONING_COLUMNS[name] for name in _PER_ENTRY + _SHAPE},
}


def _render_part(task: tuple[int, list[tuple[int, int, int, int]]]) -> Any:
    """The stored rows (an Arrow table in :data:`_STORED_COLUMNS` order) of (app index, cycle position, first,
    last) slices of the tenant's entries."""
    import pyarrow as pa  # deferred (also below): pyarrow and duckdb load only when a workspace is used

    _part, slices = task
    tenant = _FORK_TENANT
    columns: list[list] = [[] for _ in _STORED_COLUMNS]
    apps, cycles, indexes, micros, entry_id, change, cycle_ids = columns[:7]
    shape_columns = columns[7:]
    shapes: list[tuple] = []
    for app_index, cycle_pos, first, last in slices:
        app = tenant.apps[app_index]
        if _MEMO_APP[0] != app_index:  # outcome keys are per app: keep one app's at a time
            _MEMO.clear()
            _MEMO_APP[0] = app_index
        cycle = app.timeline().cycles[cycle_pos]
        if getattr(tenant, "late_share", 0):  # late entries reach the workspace when Graph has them
            written = tenant.written
            positions: Iterable[int] = [
                i for i in range(first, last) if written(cycle.entry_time(i), app_index, cycle.no, i)
            ]
        else:
            positions = range(first, last)
        this_cycle = cycle_id(app, cycle)
        mode, kind = cycle.mode, cycle.kind
        for i in positions:
            subject = app.subject_for(cycle, i)
            key = (subject, mode, kind, app.is_redundant(cycle, i))
            shape = _MEMO.get(key)
            if shape is None:
                shape = _MEMO[key] = _shape(render_outcome(app, cycle, i, subject))
            ids = entry_ids(app, cycle, i)
            apps.append(app_index)
            cycles.append(cycle_pos)
            indexes.append(i)
            micros.append(cycle.entry_time(i) // 10)  # 100 ns ticks -> microseconds, as Log Analytics keeps
            entry_id.append(ids[0])
            change.append(ids[1])
            cycle_ids.append(this_cycle)
            shapes.append(shape)
    for n, values in enumerate(zip(*shapes, strict=True) if shapes else [[] for _ in _SHAPE]):
        shape_columns[n].extend(values)
    types = {"SMALLINT": pa.int16(), "INTEGER": pa.int32(), "TIMESTAMP": pa.timestamp("us")}
    arrays = [
        pa.array(values, types.get(t, pa.string()))
        for values, t in zip(columns, _STORED_COLUMNS.values(), strict=True)
    ]
    return pa.Table.from_arrays(arrays, names=list(_STORED_COLUMNS))


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished child processes (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _slices(tenant: Any, per_part: int) -> list[list[tuple[int, int, int, int]]]:
    """The tenant's logged entries inside its window, cut into parts of about ``per_part`` entries."""
    parts: list[list[tuple[int, int, int, int]]] = [[]]
    size = 0
    for app_index, app in enumerate(tenant.apps):
        for pos, cycle in enumerate(app.timeline().cycles):
            first = cycle.entries_before(tenant.window_start)
            last = cycle.entries_before(tenant.now_ticks + 1)
            while first < last:
                take = min(last - first, per_part - size)
                parts[-1].append((app_index, pos, first, first + take))
                size += take
                first += take
                if size >= per_part:
                    parts.append([])
                    size = 0
    return [p for p in parts if p]


def _runs(parts: list[list[tuple[int, int, int, int]]], workers: int) -> list[list[tuple[int, list]]]:
    """The parts (in app order) cut into ``workers`` runs of about as many entries each, so that a worker
    renders whole apps (an app's outcomes repeat across its cycles: one rendering each per worker)."""
    sizes = [sum(last - first for _a, _c, first, last in part) for part in parts]
    share = sum(sizes) / workers
    runs: list[list[tuple[int, list]]] = [[] for _ in range(workers)]
    done = 0
    for n, (part, size) in enumerate(zip(parts, sizes, strict=True)):
        runs[min(workers - 1, int((done + size / 2) // share))].append((n, part))
        done += size
    return [run for run in runs if run]


def _work(run: list[tuple[int, list]], queue: Any) -> None:
    """A worker process: render its run's parts, one Arrow table per part on ``queue``, then None."""
    try:
        users = getattr(_FORK_TENANT, "users", None)
        if users is not None and hasattr(users, "_make"):
            # This process's copy of the tenant only: users are made once each (the tenant's own cache is
            # sized for serving pages; a load visits every user in every app's initial cycle).
            users.get = functools.lru_cache(maxsize=users.count)(users._make)
        for task in run:
            queue.put(_render_part(task))
        queue.put(None)
    except BaseException as exc:  # reported by the loading process, which stops the load
        queue.put(f"{type(exc).__name__}: {exc}"[:500])


def _in_workers(runs: list[list[tuple[int, list]]]) -> Iterable[Any]:
    """The parts' Arrow tables as worker processes (one per run, forked: they inherit the tenant as it is now,
    restarts and clock moves included) finish them; a worker's failure ends the load with its message."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue(
        maxsize=2 * len(runs)
    )  # bounded: rendered parts wait in the workers, not in memory here
    processes = [ctx.Process(target=_work, args=(run, queue), daemon=True) for run in runs]
    for process in processes:
        process.start()
    try:
        finished = 0
        while finished < len(processes):
            try:
                item = queue.get(timeout=5)
            except Empty:
                if any(p.exitcode not in (None, 0) for p in processes):
                    raise RuntimeError("a workspace loader process died") from None
                continue
            if item is None:
                finished += 1
            elif isinstance(item, str):
                raise RuntimeError(f"loading the workspace failed: {item}")
            else:
                yield item
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=10)


@dataclass
class LoadReport:
    """What a load put in the tables, its wall-clock ``seconds`` and the CPU seconds it used (this process and
    its worker processes), which a shared machine does not inflate as much as the wall clock."""

    entries: int
    audits: int
    seconds: float
    workers: int
    cpu_seconds: float = 0.0


def rendered_parts(tenant: Any, parts: list[list[tuple[int, int, int, int]]], workers: int) -> Iterator[Any]:
    """The parts' stored rows (Arrow tables) as they are rendered: by ``workers`` forked processes, or in this
    process when ``workers`` is 1."""
    global _FORK_TENANT

    _FORK_TENANT = tenant
    _MEMO.clear()
    _MEMO_APP[0] = -1
    try:
        if workers > 1:
            yield from _in_workers(_runs(parts, workers))
        else:
            for task in enumerate(parts):
                yield _render_part(task)
    finally:
        _FORK_TENANT = None
        _MEMO.clear()
