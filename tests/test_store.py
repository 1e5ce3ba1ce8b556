"""The on-disk store: atomic writes, dedupe by id, covered ranges and gaps, compaction, concurrent readers.

Log entries come from the simulated tenant's history, rendered in-process (no server): the same JSON Graph
returns, normalised by provkit.data.tables like a fetch would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from provkit.data.store import AppStore, Store, StoreError
from provkit.data.tables import Tables, events_from_records, jobs_from_records
from provkit.errors import ConfigError
from provkit.sim.logquery import LogQuery
from provkit.sim.tenant import Tenant

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
TENANT = "tenant-a"
SP = "sp-1"
H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """Every provisioning log entry of a small simulated tenant, oldest first (a few hundred)."""
    tenant = Tenant(seed=7, users_count=200, days=2, now=NOW, scenarios=("healthy", "skipped-users"))
    page = LogQuery(tenant, None, descending=False).page(100_000, None)
    assert page.last_key is None and len(page.items) > 200
    return page.items


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def open_app(root: Path) -> AppStore:
    return Store(root).app(TENANT, SP)


def ids_of(app: AppStore) -> list[str]:
    return sorted(app.tables().events["id"])


def part_files(app: AppStore, kind: str) -> set[str]:
    folder = app.path / kind
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def assert_tables_equal(a: Tables, b: Tables) -> None:
    """Same content regardless of row order."""
    for name, keys in (("events", ["id"]), ("steps", ["event_id", "step_order"]), ("properties", None)):
        left, right = getattr(a, name), getattr(b, name)
        keys = keys or list(left.columns)
        left = left.sort_values(keys, ignore_index=True)
        right = right.sort_values(keys, ignore_index=True)[list(left.columns)]
        pd.testing.assert_frame_equal(left, right, check_categorical=False)


# ---- dedupe ----------------------------------------------------------------------------------------------------
def test_overlapping_writes_keep_each_entry_once(root: Path, records: list[dict]) -> None:
    app = open_app(root)
    half = len(records) // 2
    first = app.write_events(events_from_records(records[: half + 20]))
    second = app.write_events(events_from_records(records[half:]))
    assert (first.new, first.duplicates) == (half + 20, 0)
    assert (second.new, second.duplicates) == (len(records) - half - 20, 20)

    whole = events_from_records(records)
    stored = open_app(root).tables()
    assert ids_of(open_app(root)) == sorted(r["id"] for r in records)
    assert len(stored.steps) == len(whole.steps) and len(stored.properties) == len(whole.properties)
    assert_tables_equal(stored, whole)
    assert stored.events["activity_time"].is_monotonic_increasing


def test_writing_the_same_entries_again_changes_nothing(root: Path, records: list[dict]) -> None:
    app = open_app(root)
    tables = events_from_records(records)
    app.write_events(tables, covered=(NOW - 2 * D, NOW))
    before = app.tables()
    again = open_app(root).write_events(tables, covered=(NOW - 2 * D, NOW))
    assert (again.new, again.duplicates) == (0, len(records))
    assert len(app.manifest()["parts"]["events"]) == 1  # nothing new, no new part
    assert_tables_equal(app.tables(), before)


def test_duplicates_inside_one_batch_are_dropped(root: Path, records: list[dict]) -> None:
    app = open_app(root)
    result = app.write_events(events_from_records(records[:10] + records[:10]))
    assert (result.new, result.duplicates) == (10, 10)
    assert len(app.tables().events) == 10


def test_a_second_store_object_sees_the_first_ones_writes(root: Path, records: list[dict]) -> None:
    """Two AppStore objects on one folder (a notebook and a command in one process): ids stay exact."""
    a, b = open_app(root), open_app(root)
    b.write_events(events_from_records(records[:5]))  # b has now read the stored ids
    a.write_events(events_from_records(records[5:50]))
    result = b.write_events(events_from_records(records[:60]))
    assert (result.new, result.duplicates) == (10, 50)
    assert len(open_app(root).tables().events) == 60


# ---- atomic writes ---------------------------------------------------------------------------------------------
def _crash_on(monkeypatch: pytest.MonkeyPatch, crash_kind: str) -> None:
    """The next ``_write_part`` of ``crash_kind`` puts its file on disk, then the process dies."""
    real = AppStore._write_part

    def crash_after_writing(self: AppStore, kind: str, df: pd.DataFrame, *args, **kwargs) -> str:
        name = real(self, kind, df, *args, **kwargs)  # the part file is on disk...
        if kind == crash_kind:
            raise KeyboardInterrupt("killed before the manifest")  # ...and the manifest never names it
        return name

    monkeypatch.setattr(AppStore, "_write_part", crash_after_writing)


def test_a_crash_before_the_events_part_leaves_the_store_readable_and_the_leftovers_are_removed(
    root: Path, records: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_app(root)
    app.write_events(events_from_records(records[:100]), covered=(NOW - 2 * D, NOW - D))
    before = app.tables()
    covered_before = app.covered()

    _crash_on(monkeypatch, "steps")
    with pytest.raises(KeyboardInterrupt):
        app.write_events(events_from_records(records[100:]), covered=(NOW - D, NOW))
    monkeypatch.undo()

    orphans = part_files(app, "steps") - set(app.manifest()["parts"]["steps"])
    assert len(orphans) == 1  # the crash really left a file behind
    for reader in (app, AppStore(app.path, TENANT, SP)):  # the same object, and a fresh reader
        assert_tables_equal(reader.tables(), before)
        assert reader.covered() == covered_before

    result = app.write_events(events_from_records(records), covered=(NOW - D, NOW))  # the next fetch
    assert result.new == len(records) - 100
    for kind in ("events", "steps", "properties"):
        assert part_files(app, kind) == set(app.manifest()["parts"][kind]), kind
    assert ids_of(app) == sorted(r["id"] for r in records)
    assert app.covered() == [(NOW - 2 * D, NOW)]
    journal = (app.path / "journal.log").read_text()
    assert f"removed steps/{orphans.pop()}" in journal and "never landed" in journal


def test_a_crash_after_the_events_part_is_adopted_with_its_range_by_the_next_write(
    root: Path, records: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_app(root)
    app.write_events(events_from_records(records[:100]), covered=(NOW - 2 * D, NOW - D))
    _crash_on(monkeypatch, "events")
    with pytest.raises(KeyboardInterrupt):
        app.write_events(events_from_records(records[100:]), covered=(NOW - D, NOW))
    monkeypatch.undo()
    assert len(app.tables().events) == 100  # not committed: readers do not see it

    result = app.write_events(events_from_records(records[:10]), covered=(NOW - 2 * D, NOW - D))
    assert result.new == 0
    assert ids_of(app) == sorted(r["id"] for r in records)  # the completed batch was adopted, not lost
    assert_tables_equal(app.tables(), events_from_records(records))
    assert app.covered() == [(NOW - 2 * D, NOW)]
    assert "adopted 3 part(s)" in (app.path / "journal.log").read_text()


def test_a_stray_file_is_moved_aside_not_deleted(root: Path, records: list[dict]) -> None:
    app = open_app(root)
    app.write_events(events_from_records(records[:10]))
    stray = app.path / "events" / "part-stray.parquet"
    stray.write_bytes(b"half a parquet file")
    assert len(app.tables().events) == 10  # never listed, never read
    open_app(root).write_events(events_from_records(records[10:20]))
    assert not stray.exists()
    assert (app.path / "quarantine" / "events" / "part-stray.parquet").read_bytes() == b"half a parquet file"
    assert len(app.tables().events) == 20


def test_manifest_is_replaced_whole(root: Path, records: list[dict]) -> None:
    app = open_app(root)
    app.write_events(events_from_records(records[:10]), covered=(NOW - D, NOW))
    leftovers = [p.name for p in app.path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    json.loads((app.path / "manifest.json").read_text())  # complete JSON on disk


# ---- covered ranges, watermark and gaps ------------------------------------------------------------------------
def test_covered_ranges_merge_and_survive_reopening(root: Path) -> None:
    app = open_app(root)
    empty = events_from_records([])
    assert app.watermark() is None
    assert app.gaps(NOW - 3 * D, NOW) == [(NOW - 3 * D, NOW)]
    app.write_events(empty, covered=(NOW - 3 * D, NOW - 2 * D))
    app.write_events(empty, covered=(NOW - D, NOW))
    app.write_events(empty, covered=(NOW - 2 * D, NOW - 2 * D + 6 * H))
    again = open_app(root)
    assert again.covered() == [(NOW - 3 * D, NOW - 2 * D + 6 * H), (NOW - D, NOW)]
    assert again.watermark() == NOW


def test_gaps_are_what_is_not_covered_plus_an_overlap_before_the_watermark(root: Path) -> None:
    app = open_app(root)
    empty = events_from_records([])
    app.write_events(empty, covered=(NOW - 3 * D, NOW - 2 * D))
    app.write_events(empty, covered=(NOW - D, NOW))
    window = (NOW - 4 * D, NOW + 40 * timedelta(minutes=1))
    assert app.gaps(*window, overlap=timedelta(0)) == [
        (NOW - 4 * D, NOW - 3 * D),
        (NOW - 2 * D, NOW - D),
        (NOW, window[1]),
    ]
    # Late arrivals: the last hour before the watermark is asked for again; older covered ranges are not.
    assert app.gaps(*window, overlap=H) == [
        (NOW - 4 * D, NOW - 3 * D),
        (NOW - 2 * D, NOW - D),
        (NOW - H, window[1]),
    ]
    assert app.gaps(NOW - D, NOW, overlap=timedelta(0)) == []
    assert app.gaps(NOW - D, NOW, overlap=H) == [(NOW - H, NOW)]
    assert app.gaps(NOW - 3 * D, NOW - 2 * D, overlap=H) == []  # an old window, fully covered
    # An instant in another time zone means the same moment.
    two_pm_at_plus_2 = datetime(2025, 3, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    assert app.gaps(NOW - H, two_pm_at_plus_2, overlap=timedelta(0)) == []


def test_covered_range_is_recorded_even_when_the_slice_was_empty(root: Path) -> None:
    app = open_app(root)
    app.write_events(events_from_records([]), covered=(NOW - H, NOW))
    assert app.gaps(NOW - H, NOW, overlap=timedelta(0)) == []
    assert app.tables().events.empty


# ---- compaction ------------------------------------------------------------------------------------------------
def test_compaction_keeps_content_and_leaves_one_part_per_kind(root: Path, records: list[dict]) -> None:
    app = open_app(root)
    for i in range(0, len(records), 40):
        app.write_events(events_from_records(records[i : i + 50]), covered=(NOW - 2 * D, NOW))
    job = {"id": "job-1", "templateId": "scim", "status": {"code": "Active"}, "schedule": {"state": "Active"}}
    for hour in range(3):
        app.write_jobs(jobs_from_records([job], snapshot_time=NOW + hour * H, service_principal_id=SP))
    audit = {"id": "a1", "activityDateTime": "2025-03-01T10:00:00Z", "activityDisplayName": "Restart"}
    app.write_audits([audit])
    app.write_audits([audit, {**audit, "id": "a2"}])
    before, jobs, audits = app.tables(), app.jobs(), app.audits()
    assert len(app.manifest()["parts"]["events"]) > 3 and len(jobs) == 3 and len(audits) == 2

    app.compact()
    data = app.manifest()
    for kind in ("events", "steps", "properties", "jobs", "audits"):
        assert len(data["parts"][kind]) == 1, kind
        assert part_files(app, kind) == set(data["parts"][kind]), kind  # the old parts are gone
    after = open_app(root)
    assert_tables_equal(after.tables(), before)
    pd.testing.assert_frame_equal(after.jobs(), jobs)
    assert sorted(after.audits()["id"]) == ["a1", "a2"]
    assert after.covered() == [(NOW - 2 * D, NOW)]
    assert after.write_events(events_from_records(records)).new == 0  # dedupe still knows every id


# ---- concurrent readers ----------------------------------------------------------------------------------------
def test_readers_during_writes_and_compaction_see_one_committed_state(
    root: Path, records: list[dict]
) -> None:
    """Readers (separate objects, as another process would be) never see steps without their events, a count
    that no commit produced, or an error, while a writer appends and compacts."""
    batches = [records[i : i + 15] for i in range(0, len(records), 15)]
    allowed_counts = {0}
    for n in range(1, len(batches) + 1):
        allowed_counts.add(len({r["id"] for b in batches[:n] for r in b}))
    writer = open_app(root)
    done = threading.Event()
    problems: list[str] = []
    reads = [0]

    def read_loop() -> None:
        reader = AppStore(writer.path, TENANT, SP)
        while not done.is_set():
            try:
                tables = reader.tables()
            except Exception as exc:  # noqa: BLE001 - any error is what this test looks for
                problems.append(f"{type(exc).__name__}: {exc}")
                return
            reads[0] += 1
            events = set(tables.events["id"])
            if len(events) not in allowed_counts:
                problems.append(f"{len(events)} events: no commit had that many")
            orphan_steps = set(tables.steps["event_id"]) - events
            if orphan_steps:
                problems.append(f"{len(orphan_steps)} steps' events missing")

    threads = [threading.Thread(target=read_loop) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i, batch in enumerate(batches):
            writer.write_events(events_from_records(batch), covered=(NOW - 2 * D, NOW))
            if i % 4 == 3:
                writer.compact()
    finally:
        done.set()
        for t in threads:
            t.join()
    assert problems == []
    assert reads[0] > len(batches)  # the readers really ran alongside
    assert ids_of(writer) == sorted(r["id"] for r in records)


# ---- damage ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content",
    [
        b'{"version": 1, "parts": {"events": ["part-1.parq',  # cut off mid-write by another tool
        b"",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'{"parts": {"events": "part-1.parquet"}}',
        b'{"parts": {"events": ["../../etc/passwd"]}}',
        b'{"covered": [["yesterday", "today"]]}',
    ],
    ids=["truncated", "empty", "binary", "list", "parts-not-list", "path-escape", "bad-covered"],
)
def test_a_damaged_manifest_is_set_aside_and_rebuilt_from_the_parts(
    root: Path, records: list[dict], content: bytes
) -> None:
    app = open_app(root)
    app.set_app({"display_name": "Salesforce"})
    app.write_events(events_from_records(records[:5]), covered=(NOW - D, NOW))
    app.write_events(events_from_records(records[5:9]), covered=(NOW - 2 * D, NOW - D))
    want = app.tables()
    (app.path / "manifest.json").write_bytes(content)
    reader = AppStore(app.path, TENANT, SP)
    assert_tables_equal(reader.tables(), want)
    assert reader.covered() == [(NOW - 2 * D, NOW)]
    assert (app.path / "quarantine" / "manifest.json").read_bytes() == content  # kept, not deleted
    assert "rebuilt the manifest from 6 part(s)" in (app.path / "journal.log").read_text()
    assert [a["display_name"] for a in Store(root).apps()] == ["Salesforce"]
    assert open_app(root).write_events(events_from_records(records[:9])).new == 0


def test_a_part_deleted_behind_the_stores_back_is_reported_not_skipped(
    root: Path, records: list[dict]
) -> None:
    app = open_app(root)
    app.write_events(events_from_records(records[:5]))
    app.write_events(events_from_records(records[5:10]))
    name = app.manifest()["parts"]["events"][0]
    (app.path / "events" / name).unlink()
    with pytest.raises(StoreError, match="missing on disk"):
        app.tables()


def test_names_that_cannot_be_folders_are_refused(root: Path) -> None:
    with pytest.raises(ConfigError):
        Store(root).app("../elsewhere", SP)
    with pytest.raises(ConfigError):
        Store(root).app(TENANT, "")


def test_find_resolves_stored_apps_offline(root: Path, records: list[dict]) -> None:
    app = open_app(root)
    app.set_app({"display_name": "Salesforce", "app_id": "app-guid-1", "service_principal_id": SP})
    app.write_events(events_from_records(records[:3]))
    store = Store(root)
    for name in ("Salesforce", "salesforce", "app-guid-1", SP):
        assert store.find(name).path == app.path
    with pytest.raises(ConfigError, match="No app matching"):
        store.find("Zendesk")
    listed = store.apps()
    assert [(a["display_name"], a["service_principal_id"]) for a in listed] == [("Salesforce", SP)]


# ---- one writer across processes -------------------------------------------------------------------------------
def test_a_second_process_waits_for_the_writer_then_gives_up_with_a_clear_message(
    root: Path, records: list[dict], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    app = open_app(root)
    app.write_events(events_from_records(records[:5]))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from provkit.data.store import Store\n"
            f"app = Store({str(root)!r}).app({TENANT!r}, {SP!r})\n"
            "with app.writing():\n    print('holding', flush=True); sys.stdin.readline()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("PROVKIT_STORE_LOCK_TIMEOUT", "0.5")
        with pytest.raises(StoreError, match="kept writing") as caught:
            open_app(root).write_events(events_from_records(records[5:10]))
        assert f"pid {holder.pid}" in str(caught.value)
        assert "waiting up to" in capsys.readouterr().err
        assert len(open_app(root).tables().events) == 5  # readers take no lock; nothing was half-written
    finally:
        holder.communicate("done\n", timeout=30)
    assert open_app(root).write_events(events_from_records(records[5:10])).new == 5  # released on exit


def test_a_writer_killed_while_holding_the_lock_leaves_no_stale_lock(
    root: Path, records: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    open_app(root).write_events(events_from_records(records[:5]))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from provkit.data.store import Store\n"
            f"app = Store({str(root)!r}).app({TENANT!r}, {SP!r})\n"
            "with app.writing():\n    print('holding', flush=True); time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    holder.kill()  # SIGKILL: no cleanup runs
    holder.wait(timeout=30)
    assert (open_app(root).path / ".lock").exists()  # the file stays...
    monkeypatch.setenv("PROVKIT_STORE_LOCK_TIMEOUT", "0")
    assert open_app(root).write_events(events_from_records(records[5:10])).new == 5  # ...the lock does not


# ---- compaction interrupted ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "when", ["before the manifest", "before removing the merged parts", "and the manifest is lost"]
)
def test_an_interrupted_compaction_leaves_no_duplicate_and_no_stray_file(
    root: Path, records: list[dict], monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    app = open_app(root)
    for i in range(0, 200, 20):
        app.write_events(events_from_records(records[i : i + 20]), covered=(NOW - 2 * D, NOW))
    want = app.tables()
    if when == "before the manifest":

        def die(self: AppStore, data: dict) -> None:
            raise KeyboardInterrupt("killed")

        monkeypatch.setattr(AppStore, "_save_manifest", die)
    else:  # killed after the manifest switched, before every merged part was removed
        real_unlink = Path.unlink

        def die(self: Path, missing_ok: bool = False) -> None:
            if "part-" in self.name and self.parent.name == "events":
                raise KeyboardInterrupt("killed")
            real_unlink(self, missing_ok=missing_ok)

        monkeypatch.setattr(Path, "unlink", die)
    with pytest.raises(KeyboardInterrupt):
        app.compact()
    monkeypatch.undo()
    if when == "and the manifest is lost":  # rebuilt from the parts: merged and merging parts both on disk
        (app.path / "manifest.json").unlink()

    again = open_app(root)
    again.write_events(events_from_records(records[:200]))  # the next write settles the leftovers
    assert_tables_equal(again.tables(), want)
    ids = []
    for name in again.manifest()["parts"]["events"]:
        ids += pq.read_table(again.path / "events" / name, columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 200  # no entry twice in the parts
    for kind in ("events", "steps", "properties"):
        assert part_files(again, kind) == set(again.manifest()["parts"][kind]), kind


def test_a_damaged_audits_part_is_named_and_set_aside_by_repair(root: Path) -> None:
    app = open_app(root)
    audit = {"id": "a1", "activityDateTime": "2025-03-01T10:00:00Z", "activityDisplayName": "Restart"}
    app.write_audits([audit])
    app.write_audits([{**audit, "id": "a2"}])
    part = app.path / "audits" / app.manifest()["parts"]["audits"][0]
    part.write_bytes(b"not parquet")
    with pytest.raises(StoreError, match=str(part)):
        app.audits()
    report = app.check()
    assert not report.ok and str(part) in report.text()
    assert app.check(repair=True).ok
    assert list(app.audits()["id"]) == ["a2"]
    assert (app.path / "quarantine" / "audits" / part.name).read_bytes() == b"not parquet"
    assert app.check().ok
