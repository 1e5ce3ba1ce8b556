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
import gc
import logging
import multiprocessing
import os
import queue
import resource
import signal
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import connection
from typing import Any

from provkit.sim.entries import cycle_id, entry_ids, render_outcome
from provkit.sim.laschema import _PER_ENTRY, _SHAPE, PROVISIONING_COLUMNS, _shape

_log = logging.getLogger(__name__)
_FORK_TENANT: Any = None  # the tenant a forked worker renders from
# Held by a load from start to end: a fleet's server loads each workspace on its first query, from the thread
# that serves it, and two loads at once would render from each other's tenant.
_LOADING = threading.Lock()
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


def _work(run: list[tuple[int, list]], pipe: Any) -> None:
    """A worker process: render its run's parts and send each as (part number, Arrow table) on ``pipe``, then
    None; a failure is sent as its text instead (the loading process then renders the parts left)."""
    try:
        users = getattr(_FORK_TENANT, "users", None)
        if users is not None and hasattr(users, "_make"):
            # This process's copy of the tenant only: users are made once each (the tenant's own cache is
            # sized for serving pages; a load visits every user in every app's initial cycle).
            users.get = functools.lru_cache(maxsize=users.count)(users._make)
        for task in run:
            _fault(task[0], pipe)
            pipe.send((task[0], _render_part(task)))
        pipe.send(None)
    except BaseException as exc:
        pipe.send(f"{type(exc).__name__}: {exc}"[:500])


# Test-only: what the worker about to render a part does first, by part number. "kill": SIGKILL to itself;
# "exit": os._exit(3); "cut": half a message on its pipe, then os._exit(3) (a worker dying mid-send); "hang":
# sleep for an hour; "raise": a RuntimeError; "collect": a full garbage collection (what made workers crash).
# Workers are forked, so a test sets it before the load and they inherit it.
_WORKER_FAULTS: dict[int, str] = {}
# A worker that sends nothing for this long is taken for stuck (a lock another thread held at fork time stays
# held in the fork) and stopped; its parts are rendered in the loading process.
STALL_SECONDS = 300.0


def _fault(part: int, pipe: Any) -> None:
    what = _WORKER_FAULTS.get(part)
    if what == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif what == "exit":
        os._exit(3)
    elif what == "cut":
        os.write(pipe.fileno(), struct.pack("!i", 1 << 20) + bytes(1024))
        os._exit(3)
    elif what == "hang":
        time.sleep(3600)
    elif what == "raise":
        raise RuntimeError(f"a test fault in part {part}")
    elif what == "collect":
        gc.collect()


def exit_text(exitcode: int | None) -> str:
    """How a process ended, in words: "exit code 3", "killed by signal 11 (SIGSEGV)"."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


@dataclass
class _Worker:
    number: int
    process: Any
    run: list[tuple[int, list]]
    last: float  # time.monotonic() of its last message (or of its start)
    sent: set[int] = field(default_factory=set)  # the part numbers it has sent


def _in_workers(runs: list[list[tuple[int, list]]], notices: list[str]) -> Iterator[Any]:
    """The parts' Arrow tables as worker processes (one per run, forked: they inherit the tenant as it is now,
    restarts and clock moves included) finish them, each part exactly once.

    A worker that dies (a signal, an exit code, a message cut short), fails or stalls for :data:`STALL_SECONDS`
    costs no rows: the parts it had not sent are rendered in this process (parts are deterministic), and
    ``notices`` gets a line naming how it ended. Each worker has its own pipe, so one dying mid-message cannot
    corrupt another's, and its end shows at once (end of file) rather than at a timeout."""
    ctx = multiprocessing.get_context("fork")
    workers: dict[Any, _Worker] = {}
    # The cause of the workers that died with SIGSEGV: a worker's garbage collector finalised objects the
    # loading process had left as garbage, among them DuckDB connections, and closing DuckDB in a forked
    # process crashes (its threads are not there). Frozen objects are never collected in the forks (the gc
    # module docs advise gc.freeze() right before fork, there to keep memory shared); the loading process
    # unfreezes them once the workers are started.
    gc.freeze()
    try:
        for number, run in enumerate(runs, 1):
            reader, writer = ctx.Pipe(duplex=False)
            process = ctx.Process(target=_work, args=(run, writer), daemon=True)
            process.start()
            writer.close()  # the worker's end only: its death closes the pipe
            workers[reader] = _Worker(number, process, run, time.monotonic())
    finally:
        gc.unfreeze()
    # A thread here reads the pipes, so that a worker never waits for this process's inserts; bounded:
    # rendered parts wait in the workers, not in memory here.
    out: queue.Queue = queue.Queue(maxsize=2 * len(runs))
    stop = threading.Event()
    reading = threading.Thread(
        target=_read, args=(workers, len(runs), out, stop, notices), name="laload-reader", daemon=True
    )
    reading.start()
    orphans: list[tuple[int, list]] = []
    try:
        while True:
            try:
                kind, value = out.get(timeout=0 if orphans else None)
            except queue.Empty:  # nothing from the workers just now: render a lost one's part meanwhile
                yield _render_part(orphans.pop(0))
                continue
            if kind == "rows":
                yield value
            elif kind == "lost":
                orphans.extend(value)
            elif kind == "error":
                raise value
            else:  # "done"
                break
        while orphans:
            yield _render_part(orphans.pop(0))
    finally:
        stop.set()
        reading.join(timeout=30)


def _read(
    workers: dict[Any, _Worker], count: int, out: queue.Queue, stop: threading.Event, notices: list[str]
) -> None:
    """The reading thread: each worker's parts onto ``out`` as ("rows", table), the parts a lost worker had not
    sent as ("lost", tasks), then ("done", None); its own failure as ("error", exception)."""

    def put(item: tuple[str, Any]) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=1.0)
                return
            except queue.Full:
                continue

    def lost(pipe: Any, how: str) -> None:
        worker = workers.pop(pipe)
        pipe.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=10)
        left = [task for task in worker.run if task[0] not in worker.sent]
        notice = (
            f"workspace loader process {worker.number} of {count} (pid {worker.process.pid}) "
            f"{how or exit_text(worker.process.exitcode)}, after {len(worker.sent)} of its {len(worker.run)} "
            f"parts; {len(left)} part(s) rendered again in the loading process"
        )
        notices.append(notice)
        _log.warning("%s", notice)
        put(("lost", left))

    try:
        while workers and not stop.is_set():
            ready: list[Any] = connection.wait(list(workers), timeout=1.0)
            for pipe in ready:
                worker = workers[pipe]
                try:
                    item = pipe.recv()
                except (EOFError, OSError):  # the worker ended without finishing, or mid-message
                    worker.process.join(timeout=10)
                    lost(pipe, "")
                    continue
                worker.last = time.monotonic()
                if item is None:  # finished
                    workers.pop(pipe).process.join(timeout=10)
                    pipe.close()
                elif isinstance(item, str):
                    lost(pipe, f"failed ({item})")
                elif item[0] not in worker.sent:
                    worker.sent.add(item[0])
                    put(("rows", item[1]))
            now = time.monotonic()
            for pipe, worker in list(workers.items()):
                if now - worker.last > STALL_SECONDS:
                    lost(pipe, f"was stopped: nothing sent for {STALL_SECONDS:.0f} s")
        put(("done", None))
    except BaseException as exc:  # the loading process raises it
        put(("error", exc))
    finally:
        for pipe, worker in workers.items():
            pipe.close()
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join(timeout=10)


@dataclass
class LoadReport:
    """What a load put in the tables, its wall-clock ``seconds`` and the CPU seconds it used (this process and
    its worker processes), which a shared machine does not inflate as much as the wall clock."""

    entries: int
    audits: int
    seconds: float
    workers: int
    cpu_seconds: float = 0.0
    notices: list[str] = field(default_factory=list)  # worker processes that ended early, and what was done


def rendered_parts(
    tenant: Any, parts: list[list[tuple[int, int, int, int]]], workers: int, notices: list[str]
) -> Iterator[Any]:
    """The parts' stored rows (Arrow tables) as they are rendered, each part once: by ``workers`` forked
    processes, or in this process when ``workers`` is 1. A worker that ended early is named in ``notices``."""
    global _FORK_TENANT

    with _LOADING:  # one load at a time in a process: the tenant and the outcome memo are this module's
        _FORK_TENANT = tenant
        _MEMO.clear()
        _MEMO_APP[0] = -1
        try:
            if workers > 1:
                yield from _in_workers(_runs(parts, workers), notices)
            else:
                for task in enumerate(parts):
                    yield _render_part(task)
        finally:
            _FORK_TENANT = None
            _MEMO.clear()
