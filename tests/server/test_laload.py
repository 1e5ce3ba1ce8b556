"""The simulated workspace's loader: a worker process that dies, fails or hangs costs no rows, and the load says
which worker ended and how.

Faults are injected with the loader's test-only hook (``laload._WORKER_FAULTS``: what the worker about to render
a part does first); the workers are real forked processes and the rows are read back from the workspace's
DuckDB tables.
"""

from __future__ import annotations

import gc
import threading
from datetime import UTC, datetime

import duckdb
import pytest

from provkit.sim import laload
from provkit.sim.loganalytics import Workspace
from provkit.sim.tenant import Tenant

NOW = datetime(2026, 12, 1, tzinfo=UTC)
WORKSPACE = "44444444-4444-4444-4444-444444444444"
PART = 100  # entries per part: about twenty parts, ten per worker


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return Tenant(seed=5, users_count=300, days=2, now=NOW)


@pytest.fixture(scope="module")
def clean_rows(tenant) -> list[tuple]:
    """Every stored row of a load in this process alone (no worker processes), in key order."""
    return stored_rows(Workspace(tenant, WORKSPACE, workers=1, part_entries=PART))


def stored_rows(workspace: Workspace) -> list[tuple]:
    con = workspace._connection()
    return con.execute("SELECT * FROM stored_AADProvisioningLogs ORDER BY app, cyc, idx").fetchall()


def last_part(rows: list[tuple]) -> int:
    return -(-len(rows) // PART) - 1


def faulty_load(tenant, monkeypatch, fault: str, part: int = 3) -> Workspace:
    monkeypatch.setitem(laload._WORKER_FAULTS, part, fault)
    workspace = Workspace(tenant, WORKSPACE, workers=2, part_entries=PART)
    workspace.load()
    return workspace


def test_the_test_load_has_parts_enough_for_every_worker(tenant, clean_rows) -> None:
    workspace = Workspace(tenant, WORKSPACE, workers=2, part_entries=PART)
    report = workspace.load()
    assert report.workers == 2 and report.notices == []
    assert (
        len(clean_rows) > 12 * PART
    )  # parts 0..12 at least: a fault in part 3 leaves a worker's later parts
    assert stored_rows(workspace) == clean_rows


@pytest.mark.parametrize(
    ("fault", "named"),
    [
        ("kill", "killed by signal 9 (SIGKILL)"),
        ("exit", "exit code 3"),
        ("cut", "exit code 3"),  # half a message on its pipe, then gone
        ("raise", "failed (RuntimeError: a test fault in part 3)"),
    ],
)
def test_a_worker_that_ends_early_costs_no_rows_and_is_named(
    tenant, clean_rows, monkeypatch, caplog, fault: str, named: str
) -> None:
    workspace = faulty_load(tenant, monkeypatch, fault)
    report = workspace.last_load
    assert report is not None
    rows = stored_rows(workspace)
    assert len(rows) == len(clean_rows) == report.entries  # every row exactly once ...
    assert rows == clean_rows  # ... and the same rows as a load without workers
    ids = [
        row[0]
        for row in workspace._connection().execute("SELECT Id FROM stored_AADProvisioningLogs").fetchall()
    ]
    assert len(set(ids)) == len(ids)
    assert len(report.notices) == 1, report.notices
    notice = report.notices[0]
    assert named in notice and "of 2" in notice and "rendered again in the loading process" in notice
    assert notice in caplog.text  # logged as well, for a server whose workspace loads on a query


def test_a_worker_that_hangs_is_stopped_and_its_parts_rendered(tenant, clean_rows, monkeypatch) -> None:
    monkeypatch.setattr(laload, "STALL_SECONDS", 3.0)
    workspace = faulty_load(tenant, monkeypatch, "hang")
    report = workspace.last_load
    assert report is not None
    assert stored_rows(workspace) == clean_rows
    assert (
        len(report.notices) == 1 and "was stopped: nothing sent for 3 s, after 3 of its" in report.notices[0]
    )


def test_both_workers_dying_still_loads_every_row(tenant, clean_rows, monkeypatch) -> None:
    monkeypatch.setitem(laload._WORKER_FAULTS, 0, "kill")  # the first worker's first part
    workspace = faulty_load(tenant, monkeypatch, "kill", part=last_part(clean_rows))  # the second's last
    report = workspace.last_load
    assert report is not None
    assert stored_rows(workspace) == clean_rows
    assert len(report.notices) == 2 and all("SIGKILL" in notice for notice in report.notices)


class _Holder:
    """Something that keeps a DuckDB connection and a reference to itself: garbage only a collection frees."""

    me: _Holder
    con: duckdb.DuckDBPyConnection


def test_duckdb_left_as_garbage_in_the_loading_process_does_not_crash_a_worker(
    tenant, clean_rows, monkeypatch
) -> None:
    """The cause of the workers that died with SIGSEGV in a full test run: a worker's garbage collection
    finalised a DuckDB connection the loading process had left in a reference cycle, and closing DuckDB in a
    forked process crashes. Here the garbage is made on purpose and each worker collects before its first
    part; the loader keeps objects that exist at fork time out of the workers' collections."""
    gc.disable()  # the garbage must still be there when the workers fork
    try:
        holder = _Holder()
        holder.me = holder
        holder.con = duckdb.connect()
        holder.con.execute("SELECT sum(range) FROM range(1000000)").fetchall()  # its threads started
        del holder
        monkeypatch.setitem(laload._WORKER_FAULTS, 0, "collect")
        workspace = faulty_load(tenant, monkeypatch, "collect", part=last_part(clean_rows))
    finally:
        gc.enable()
        gc.collect()
    report = workspace.last_load
    assert report is not None
    assert report.notices == []  # no worker died (without the fix: "killed by signal 11 (SIGSEGV)")
    assert stored_rows(workspace) == clean_rows


def _load(workspace: Workspace, failures: list[BaseException]) -> None:
    try:
        workspace.load()
    except BaseException as exc:  # shown by the test's assertion
        failures.append(exc)


def test_two_workspaces_loading_at_once_each_get_their_own_tenant(tenant, clean_rows) -> None:
    """A fleet's server loads each tenant's workspace on that workspace's first query, from whichever thread
    serves it: two loads at once must not render from each other's tenant."""
    other = Tenant(seed=6, users_count=300, days=2, now=NOW)
    other_rows = stored_rows(Workspace(other, WORKSPACE, workers=1, part_entries=PART))
    assert other_rows != clean_rows
    for workers in (1, 2):
        pair = [Workspace(tenant, WORKSPACE, workers=workers, part_entries=PART), Workspace(other, WORKSPACE)]
        pair[1].workers, pair[1].part_entries = workers, PART
        failures: list[BaseException] = []
        threads = [threading.Thread(target=_load, args=(w, failures)) for w in pair]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert failures == []
        assert stored_rows(pair[0]) == clean_rows and stored_rows(pair[1]) == other_rows, workers
