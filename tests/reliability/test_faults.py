"""Faults: through 429s, 503s, 504s, connection resets, slow and truncated answers on a quarter of the requests, a
fetch stores exactly what a fault-free fetch stores; a fetch killed at random points (between pages, inside a
file write, between a part and the manifest) and run again leaves the store an uninterrupted fetch leaves.

Two servers serve the same simulated tenant (same seed, same clock), one clean and one faulty; each app is fetched
from both and the stores are compared (entries, steps, properties, covered ranges, metadata, audits, and the
raw part files, so a duplicate that a reader would hide still counts).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

import provkit.data.store.layout as store_module  # where the store writes its files
from provkit.data.fetch import fetch_app
from provkit.data.graph import GraphClient
from provkit.data.store import AppStore, Store
from provkit.sim.faults import KINDS
from provkit.sim.server import RunningServer

from .support import (
    APPS,
    DAYS,
    NOW,
    Sleeps,
    Tally,
    client_for,
    make_tenant,
    raw_event_ids,
    serve,
    settled,
    tenant_now,
)

pytestmark = pytest.mark.reliability

# 24% of Graph requests faulted, every kind well represented.
FAULTS = "429=0.06,503=0.04,504=0.04,reset=0.03,slow=0.03,truncate=0.04"
FAULT_SHARE = 0.24
SLOW_SECONDS = 1.0
PAGE_SIZE = 10  # small pages: more requests, more faults, more places to be killed
KILL_SEEDS = (11, 12, 13, 14, 15)


class Killed(BaseException):
    """Stands in for the process dying (not an Exception, so no handler in provkit may swallow it)."""


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = serve(make_tenant(), tmp_path_factory.mktemp("clean-server"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = serve(
        make_tenant(),
        tmp_path_factory.mktemp("faulty-server"),
        faults=FAULTS,
        seed=3,
        slow_seconds=SLOW_SECONDS,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clean_client(clean: RunningServer) -> GraphClient:
    return client_for(clean)


@pytest.fixture(scope="module")
def reference(
    clean: RunningServer, clean_client: GraphClient, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[AppStore, int, int]]:
    """Per app: an uninterrupted, fault-free fetch's store, its page count and its number of file writes."""
    out = {}
    root = tmp_path_factory.mktemp("reference")
    for app in APPS:
        counter = _CountingWrites()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(store_module, "_atomic_write_bytes", counter)
            summary, app_store = fetch(clean, clean_client, Store(root), app)
        assert summary.new > 100 and summary.rejected == 0, summary.line()
        out[app] = (app_store, summary.pages, counter.calls)
    return out


def fetch(server: RunningServer, client: GraphClient, store: Store, app: str, **options) -> tuple:
    return fetch_app(
        client,
        store,
        app,
        start=NOW - timedelta(days=DAYS),
        end=tenant_now(server),
        tenant_id=server.tenant.tenant_id,
        page_size=PAGE_SIZE,
        **options,
    )


class _CountingWrites:
    def __init__(self) -> None:
        self.calls = 0
        self.real = store_module._atomic_write_bytes

    def __call__(self, path: Path, data: bytes) -> None:
        self.calls += 1
        self.real(path, data)


# ---- comparing stores ------------------------------------------------------------------------------------------
def assert_same_store(got: AppStore, want: AppStore) -> None:
    """The same entries, steps, properties, covered ranges, metadata and audits; no duplicate in the raw parts;
    no file in the folder that the manifest does not account for."""
    raw = raw_event_ids(got)
    assert len(raw) == len(set(raw)), "a duplicate entry reached the store's part files"
    ta, tb = got.tables(), want.tables()
    assert sorted(ta.events["id"]) == sorted(tb.events["id"])
    for name, keys in (("events", ["id"]), ("steps", ["event_id", "step_order"]), ("properties", None)):
        left, right = getattr(ta, name), getattr(tb, name)
        assert len(left) == len(right), name
        keys = keys or list(left.columns)
        pd.testing.assert_frame_equal(
            left.sort_values(keys, ignore_index=True),
            right[list(left.columns)].sort_values(keys, ignore_index=True),
            check_categorical=False,
        )
    assert got.covered() == want.covered()
    assert audit_ids(got) == audit_ids(want)
    for name in ("schema", "assignments", "groups", "users", "service_principal", "jobs"):
        assert got.meta(name) == want.meta(name), name
    assert got.meta("schema_error") is None
    jobs = got.jobs()
    assert len(jobs) >= 1
    latest = jobs.drop(columns="snapshot_time").iloc[-1]
    expected = want.jobs().drop(columns="snapshot_time").iloc[-1]
    assert latest.astype(str).to_dict() == expected.astype(str).to_dict()
    assert stray_files(got) == []


def audit_ids(app_store: AppStore) -> list[str]:
    audits = app_store.audits()
    return sorted(audits["id"]) if len(audits) else []


def stray_files(app_store: AppStore) -> list[str]:
    """Files in the app's folder that are neither the manifest, a listed part nor a metadata file."""
    manifest = app_store.manifest()
    listed = {f"{kind}/{name}" for kind, names in manifest["parts"].items() for name in names}
    stray = []
    for path in sorted(app_store.path.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(app_store.path).as_posix()
        if rel in ("manifest.json", ".lock", "journal.log") or rel in listed:
            continue
        if rel.startswith("meta/") and rel.endswith(".json") and not path.name.startswith("."):
            continue
        stray.append(rel)
    return stray


# ---- faults ----------------------------------------------------------------------------------------------------
def graph_requests(server: RunningServer, since: int = 0) -> list:
    return [r for r in server.graph.requests[since:] if r.path.startswith(("/v1.0", "/beta"))]


def test_through_injected_faults_a_fetch_stores_exactly_the_fault_free_entries(
    faulty: RunningServer,
    reference: dict[str, tuple[AppStore, int, int]],
    tmp_path: Path,
    tally: Tally,
) -> None:
    waits: list[float] = []
    patient = client_for(faulty, sleep=Sleeps(waits))
    # Shorter read timeout than a slow answer takes: slow answers become timeouts, and timeouts are retried.
    hasty = client_for(faulty, sleep=Sleeps(waits), timeout=(10, SLOW_SECONDS / 2))
    faults_by_app: dict[str, Counter] = {}
    for app, client in zip(APPS, (patient, patient, hasty), strict=True):
        mark, retries_before = settled(faulty), client.stats.retries
        summary, app_store = fetch(faulty, client, Store(tmp_path / app), app)
        log = graph_requests(faulty, mark)
        settled(faulty)
        faults = Counter(r.fault for r in log if r.fault)
        faults_by_app[app] = faults
        want, _, _ = reference[app]
        assert_same_store(app_store, want)
        assert summary.new == len(want.tables().events) and summary.rejected == 0
        # Every fault but a merely slow answer (when the client waits for it) cost exactly one retry.
        retried = sum(faults.values()) - (faults["slow"] if client is patient else 0)
        assert client.stats.retries - retries_before == retried, (app, faults)

    log = graph_requests(faulty)
    faulted = [r for r in log if r.fault]
    tally.requests_faulted += len(faulted)
    tally.requests_seen += len(log)
    kinds = Counter(r.fault for r in faulted)
    assert set(kinds) == set(KINDS), kinds  # 429, 503, 504, reset, slow and truncate all happened
    assert len(faulted) / len(log) >= 0.20, (len(faulted), len(log))
    assert faults_by_app["Contoso SCIM App"]["slow"] >= 1, "no slow answer met the short read timeout"
    # 429 and 503 carry Retry-After: 1, which the client asked to wait instead of its own backoff.
    assert waits.count(1.0) >= kinds["429"] + kinds["503"]


# ---- kills -----------------------------------------------------------------------------------------------------
class _KillingWrites:
    """Replaces the store's atomic file write; the ``at``-th call dies either after writing the temporary file
    (which a killed process leaves behind) or after the rename (the file is in place, nothing after it ran)."""

    def __init__(self, at: int, after_rename: bool) -> None:
        self.at = at
        self.after_rename = after_rename
        self.calls = 0
        self.real = store_module._atomic_write_bytes

    def __call__(self, path: Path, data: bytes) -> None:
        self.calls += 1
        if self.calls != self.at:
            self.real(path, data)
            return
        if self.after_rename:
            self.real(path, data)
            raise Killed(f"killed after replacing {path.name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, _tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data[: max(1, len(data) // 2)])
        raise Killed(f"killed while writing {path.name}")


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_a_fetch_killed_at_random_points_and_run_again_equals_an_uninterrupted_one(
    seed: int,
    clean: RunningServer,
    clean_client: GraphClient,
    reference: dict[str, tuple[AppStore, int, int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(seed)
    app = APPS[seed % len(APPS)]
    want, pages, writes = reference[app]
    store = Store(tmp_path)
    kills: list[str] = []
    for _ in range(rng.randint(2, 4)):
        if rng.random() < 0.5:
            after = rng.randint(1, pages)
            seen = [0]

            def die_after_pages(
                entries: int, slice_index: int, after: int = after, seen: list = seen
            ) -> None:
                seen[0] += 1
                if seen[0] == after:
                    raise Killed(f"killed after page {after}")

            how, options = f"after page {after}", {"on_page": die_after_pages}
        else:
            killer = _KillingWrites(rng.randint(1, writes), after_rename=rng.random() < 0.5)
            monkeypatch.setattr(store_module, "_atomic_write_bytes", killer)
            how = f"in write {killer.at} ({'after' if killer.after_rename else 'before'} the rename)"
            options = {}
        try:
            fetch(clean, clean_client, store, app, **options)
            kills.append(f"{how}: finished first")  # the kill point lay beyond what was left to fetch
        except Killed:
            kills.append(how)
        finally:
            monkeypatch.undo()
        # Whatever the kill left, the store reads as some committed state: never more than the whole fetch.
        sp_id = want.service_principal_id
        partial = store.app(clean.tenant.tenant_id, sp_id)
        assert set(partial.tables().events["id"]) <= set(want.tables().events["id"]), kills

    summary, resumed = fetch(clean, clean_client, store, app)
    assert summary.rejected == 0
    assert "finished first" not in kills[0], kills  # the first kill always lands inside a fresh fetch
    assert_same_store(resumed, want)
    # One job-status snapshot per fetch that got that far; each the same job.
    assert 1 <= len(resumed.jobs()) <= len(kills) + 1
    assert json.dumps(resumed.manifest()["app"], sort_keys=True) == json.dumps(
        want.manifest()["app"], sort_keys=True
    )
