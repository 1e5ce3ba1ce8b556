"""The local store: provisioning logs, job-status snapshots and app metadata on disk, per tenant and app.

Layout under the store root (``PROVKIT_STORE``, default the user's data folder)::

    <tenant id>/<service principal id>/
        manifest.json             committed parts, covered time ranges, app name, fetch history
        events/part-*.parquet     one part per fetched slice (or import); steps/ and properties/ alike
        jobs/part-*.parquet       job-status snapshots, one row per job per fetch
        audits/part-*.parquet     directory audits (watermark resets, quarantines), raw JSON kept
        meta/*.json               latest schema, app role assignments, service principal

Writes are atomic: a part is written to a temporary file and renamed, then the manifest is replaced by rename.
A part that a crash left out of the manifest is ignored (and removed by the next write), so the store is always
readable and a repeated fetch completes it. Reads drop duplicate ids, so fetching the same range twice is
idempotent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from provkit.errors import ConfigError, ProvkitError
from provkit.tables import EVENT_COLUMNS, JOB_COLUMNS, PROPERTY_COLUMNS, STEP_COLUMNS, Tables, empty_tables

MANIFEST = "manifest.json"
KINDS = ("events", "steps", "properties", "jobs", "audits")
_GUIDISH = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()
_READ_ATTEMPTS = 5
T = TypeVar("T")


def _folder_lock(path: Path) -> threading.Lock:
    """One lock per app folder and process, shared by every AppStore open on it."""
    key = path.resolve()
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(key, threading.Lock())


class StoreError(ProvkitError):
    """The store on disk is unusable (a manifest that cannot be read, a folder that cannot be written)."""


def default_root(environ: dict[str, str] | None = None) -> Path:
    """``PROVKIT_STORE`` when set, otherwise the user's data folder for provkit."""
    env = os.environ if environ is None else environ
    if env.get("PROVKIT_STORE"):
        return Path(env["PROVKIT_STORE"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("provkit", appauthor=False)) / "store"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _manifest_problem(data: object) -> str | None:
    """What is wrong with a parsed manifest's shape, or None when it can be used."""
    if not isinstance(data, dict):
        return f"it holds a JSON {type(data).__name__}, not an object"
    parts = data.get("parts", {})
    if not isinstance(parts, dict):
        return "'parts' is not an object"
    for kind, names in parts.items():
        if not isinstance(names, list) or not all(isinstance(n, str) and _GUIDISH.match(n) for n in names):
            return f"'parts.{kind}' is not a list of part file names"
    covered = data.get("covered", [])
    if not isinstance(covered, list):
        return "'covered' is not a list"
    for pair in covered:
        try:
            _parse(pair[0]), _parse(pair[1])
        except (TypeError, ValueError, IndexError, KeyError, AttributeError):
            return f"'covered' holds {pair!r}, which is not a pair of ISO-8601 instants"
    if not isinstance(data.get("fetches", []), list) or not isinstance(data.get("app", {}), dict):
        return "'fetches' or 'app' has the wrong type"
    return None


def merge_ranges(ranges: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Union of half-open [start, end) ranges, sorted."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in sorted(ranges):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract_ranges(
    start: datetime, end: datetime, covered: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) not in ``covered``."""
    gaps = []
    cursor = start
    for c_start, c_end in merge_ranges(covered):
        if c_end <= cursor:
            continue
        if c_start >= end:
            break
        if c_start > cursor:
            gaps.append((cursor, min(c_start, end)))
        cursor = max(cursor, c_end)
        if cursor >= end:
            break
    if cursor < end:
        gaps.append((cursor, end))
    return gaps


@dataclass
class WriteResult:
    new: int
    duplicates: int


class AppStore:
    """One app's data in the store.

    Writes in one process are serialised (every AppStore on the same folder shares a lock); only one process
    may write an app's folder at a time. Readers, in any process, see the state of one committed manifest.
    """

    def __init__(self, path: Path, tenant_id: str, service_principal_id: str) -> None:
        self.path = path
        self.tenant_id = tenant_id
        self.service_principal_id = service_principal_id
        self._lock = _folder_lock(path)
        self._ids: set[str] | None = None
        self._ids_parts: list[str] = []  # the events parts ``_ids`` was read from

    # ---- manifest ------------------------------------------------------------------------------------------
    def manifest(self) -> dict:
        file = self.path / MANIFEST
        if not file.exists():
            return {
                "version": 1,
                "tenant_id": self.tenant_id,
                "service_principal_id": self.service_principal_id,
                "app": {},
                "parts": {k: [] for k in KINDS},
                "covered": [],
                "fetches": [],
            }
        remedy = "Move the folder aside and fetch again; the raw parts beside it are still Parquet files."
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"The store's manifest {file} cannot be read ({exc}).", remedy=remedy) from None
        problem = _manifest_problem(data)
        if problem:
            raise StoreError(f"The store's manifest {file} is damaged: {problem}.", remedy=remedy)
        for kind in KINDS:
            data.setdefault("parts", {}).setdefault(kind, [])
        data.setdefault("covered", [])
        data.setdefault("fetches", [])
        return data

    def _save_manifest(self, data: dict) -> None:
        _atomic_write_bytes(self.path / MANIFEST, json.dumps(data, indent=1, sort_keys=True).encode())

    # ---- writing -------------------------------------------------------------------------------------------
    def _write_part(self, kind: str, df: pd.DataFrame) -> str:
        folder = self.path / kind
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
        table = pa.Table.from_pandas(df, preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        _atomic_write_bytes(folder / name, sink.getvalue().to_pybytes())
        return name

    def stored_ids(self) -> set[str]:
        """Ids of every stored log entry (read from the id column only).

        Kept between calls and brought up to date from the manifest, so another AppStore's writes count too.
        """
        parts = list(self.manifest()["parts"]["events"])
        known = self._ids_parts
        if self._ids is None or parts[: len(known)] != known:
            self._ids, known = set(), []
        for name in parts[len(known) :]:
            table = pq.read_table(self.path / "events" / name, columns=["id"])
            self._ids.update(table.column("id").to_pylist())
        self._ids_parts = parts
        return self._ids

    def write_events(
        self, tables: Tables, *, covered: tuple[datetime, datetime] | None = None, source: str = "graph"
    ) -> WriteResult:
        """Add log tables, dropping entries whose id is already stored; optionally record a covered range."""
        with self._lock:
            self._remove_orphans()
            ids = self.stored_ids()
            events = tables.events
            if len(events):
                fresh = ~events["id"].isin(ids) & ~events["id"].duplicated()
                new_events = events[fresh]
            else:
                new_events = events
            duplicates = len(events) - len(new_events)
            data = self.manifest()
            if len(new_events):
                keep = set(new_events["id"])
                steps = (
                    tables.steps[tables.steps["event_id"].isin(keep)] if len(tables.steps) else tables.steps
                )
                props = (
                    tables.properties[tables.properties["event_id"].isin(keep)]
                    if len(tables.properties)
                    else tables.properties
                )
                data["parts"]["events"].append(self._write_part("events", new_events))
                if len(steps):
                    data["parts"]["steps"].append(self._write_part("steps", steps))
                if len(props):
                    data["parts"]["properties"].append(self._write_part("properties", props))
            if covered is not None:
                ranges = [(_parse(a), _parse(b)) for a, b in data["covered"]] + [covered]
                data["covered"] = [[_iso(a), _iso(b)] for a, b in merge_ranges(ranges)]
            if len(new_events) or covered is not None:
                self._save_manifest(data)
            if len(new_events):
                ids.update(new_events["id"].tolist())
                self._ids_parts = list(data["parts"]["events"])
            return WriteResult(new=len(new_events), duplicates=duplicates)

    def write_jobs(self, jobs: pd.DataFrame) -> None:
        if not len(jobs):
            return
        with self._lock:
            self._remove_orphans()
            data = self.manifest()
            data["parts"]["jobs"].append(self._write_part("jobs", jobs))
            self._save_manifest(data)

    def write_audits(self, audits: list[dict]) -> int:
        """Store directory audits not seen before; returns how many were new."""
        with self._lock:
            self._remove_orphans()
            known = set(self.audits()["id"]) if self.manifest()["parts"]["audits"] else set()
            fresh = [a for a in audits if a.get("id") and a["id"] not in known]
            if not fresh:
                return 0
            df = pd.DataFrame(
                {
                    "id": [a["id"] for a in fresh],
                    "activity_time": pd.to_datetime(
                        [a.get("activityDateTime") for a in fresh],
                        utc=True,
                        format="ISO8601",
                        errors="coerce",
                    ),
                    "activity": [a.get("activityDisplayName") for a in fresh],
                    "result_reason": [a.get("resultReason") for a in fresh],
                    "raw": [json.dumps(a, sort_keys=True) for a in fresh],
                }
            )
            data = self.manifest()
            data["parts"]["audits"].append(self._write_part("audits", df))
            self._save_manifest(data)
            return len(fresh)

    def write_meta(self, name: str, obj: object) -> None:
        if not _GUIDISH.match(name):
            raise ValueError(f"bad meta name {name!r}")
        with self._lock:  # under the lock, so removing a crash's temporary files never races a live write
            _atomic_write_bytes(self.path / "meta" / f"{name}.json", json.dumps(obj, indent=1).encode())

    def set_app(self, info: dict) -> None:
        with self._lock:
            data = self.manifest()
            data["app"] = {**data.get("app", {}), **info}
            self._save_manifest(data)

    def record_fetch(self, summary: dict) -> None:
        with self._lock:
            data = self.manifest()
            data["fetches"] = (data["fetches"] + [summary])[-200:]
            self._save_manifest(data)

    # ---- coverage ------------------------------------------------------------------------------------------
    def covered(self) -> list[tuple[datetime, datetime]]:
        return [(_parse(a), _parse(b)) for a, b in self.manifest()["covered"]]

    def watermark(self) -> datetime | None:
        """The end of the latest covered range: entries before it have been fetched."""
        covered = self.covered()
        return covered[-1][1] if covered else None

    def gaps(
        self, start: datetime, end: datetime, *, overlap: timedelta = timedelta(hours=1)
    ) -> list[tuple[datetime, datetime]]:
        """The ranges of [start, end) still to fetch. The last ``overlap`` before the watermark is fetched again,
        because Graph can record entries minutes to hours after they happened."""
        covered = self.covered()
        if covered and overlap:
            last_start, last_end = covered[-1]
            covered[-1] = (last_start, max(last_start, last_end - overlap))
        return subtract_ranges(_utc(start), _utc(end), covered)

    # ---- reading -------------------------------------------------------------------------------------------
    def _snapshot(self, read: Callable[[dict], T]) -> T:
        """``read(manifest)`` against one committed manifest. A compaction may delete the parts a manifest lists
        right after it was read; then the new manifest is read and ``read`` runs again."""
        for _ in range(_READ_ATTEMPTS):
            data = self.manifest()
            try:
                return read(data)
            except FileNotFoundError as exc:
                missing = exc.filename
                if self.manifest() == data:  # not a concurrent compaction: the part is really gone
                    break
        raise StoreError(
            f"The store at {self.path} lists a part that is missing on disk ({missing}).",
            remedy="Something removed files from the store folder. Move the folder aside and fetch again.",
        )

    def _part_files(self, kind: str, data: dict | None = None) -> list[Path]:
        data = self.manifest() if data is None else data
        return [self.path / kind / name for name in data["parts"][kind]]

    def _read(self, kind: str, columns: dict[str, str] | None, data: dict | None = None) -> pd.DataFrame:
        files = self._part_files(kind, data)
        frames = [pq.read_table(f).to_pandas() for f in files]
        frames = [f for f in frames if len(f)]
        if not frames:
            return self._read_empty(columns)
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if columns:
            for col, dtype in columns.items():
                if col not in df.columns:
                    df[col] = pd.Series(dtype=dtype, index=df.index)
                elif dtype == "category" and df[col].dtype != "category":
                    df[col] = df[col].astype("category")
        return df

    @staticmethod
    def _read_empty(columns: dict[str, str] | None) -> pd.DataFrame:
        if columns is None:
            return pd.DataFrame()
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})

    def tables(self) -> Tables:
        """Every stored log entry, each id once, in time order; events, steps and properties from one manifest."""
        return self._snapshot(self._tables)

    def _tables(self, data: dict) -> Tables:
        if not data["parts"]["events"]:
            return empty_tables()
        events = self._read("events", EVENT_COLUMNS, data)
        events = events.drop_duplicates("id").sort_values("activity_time", kind="stable", ignore_index=True)
        steps = self._read("steps", STEP_COLUMNS, data)
        props = self._read("properties", PROPERTY_COLUMNS, data)
        if len(steps):
            steps = steps.drop_duplicates(["event_id", "step_order"], ignore_index=True)
        if len(props):
            props = props.drop_duplicates(ignore_index=True)
        return Tables(events=events, steps=steps, properties=props)

    def events(self) -> pd.DataFrame:
        return self.tables().events

    def _entry_span(self, data: dict) -> tuple[int, str | None, str | None]:
        """(entries, first activity time, last activity time) from the events parts' footers."""
        count, first, last = 0, None, None
        for file in self._part_files("events", data):
            meta = pq.ParquetFile(file).metadata
            count += meta.num_rows
            column = meta.schema.to_arrow_schema().get_field_index("activity_time")
            for group in range(meta.num_row_groups) if column >= 0 else ():
                stats = meta.row_group(group).column(column).statistics
                if stats is not None and stats.has_min_max:
                    first = stats.min if first is None else min(first, stats.min)
                    last = stats.max if last is None else max(last, stats.max)
        return count, _iso(first) if first else None, _iso(last) if last else None

    def jobs(self) -> pd.DataFrame:
        """Every job-status snapshot, oldest first."""
        df = self._snapshot(lambda data: self._read("jobs", JOB_COLUMNS, data))
        if len(df):
            df = df.sort_values("snapshot_time", kind="stable", ignore_index=True)
        return df

    def audits(self) -> pd.DataFrame:
        df = self._snapshot(lambda data: self._read("audits", None, data))
        if len(df):
            df = df.drop_duplicates("id").sort_values("activity_time", ignore_index=True)
        return df

    def audit_records(self) -> list[dict]:
        df = self.audits()
        return [json.loads(r) for r in df["raw"]] if len(df) else []

    def meta(self, name: str) -> object | None:
        file = self.path / "meta" / f"{name}.json"
        if not file.exists():
            return None
        return json.loads(file.read_text(encoding="utf-8"))

    # ---- housekeeping --------------------------------------------------------------------------------------
    def remove_orphans(self) -> int:
        """Delete part files a crash left out of the manifest, and temporary files of interrupted writes; returns
        how many."""
        with self._lock:
            return self._remove_orphans()

    def _remove_orphans(self) -> int:
        data = self.manifest()
        removed = 0
        # A process killed inside an atomic write leaves its temporary file beside the manifest or a meta file.
        for folder in (self.path, self.path / "meta"):
            for file in folder.glob(".*.tmp") if folder.exists() else ():
                file.unlink(missing_ok=True)
                removed += 1
        for kind in KINDS:
            listed = set(data["parts"][kind])
            folder = self.path / kind
            if not folder.exists():
                continue
            for file in folder.iterdir():
                if file.name not in listed:
                    file.unlink(missing_ok=True)
                    removed += 1
        return removed

    def compact(self) -> None:
        """Rewrite each kind's parts as one part (atomic: the manifest switches to the new part in one rename)."""
        with self._lock:
            self._remove_orphans()
            data = self.manifest()
            read: dict[str, Tables] = {}

            def logs() -> Tables:  # read once, and only when a log kind has parts to merge
                if "logs" not in read:
                    read["logs"] = self._tables(data)
                return read["logs"]

            readers = {
                "events": lambda: logs().events,
                "steps": lambda: logs().steps,
                "properties": lambda: logs().properties,
                "jobs": lambda: self._read("jobs", JOB_COLUMNS, data),
                "audits": lambda: self._read("audits", None, data).drop_duplicates("id", ignore_index=True),
            }
            old: dict[str, list[str]] = {}
            for kind in KINDS:
                if len(data["parts"][kind]) <= 1:
                    continue
                df = readers[kind]()
                old[kind] = data["parts"][kind]
                data["parts"][kind] = [self._write_part(kind, df)] if len(df) else []
            if old:
                self._save_manifest(data)
                for kind, names in old.items():
                    for name in names:
                        (self.path / kind / name).unlink(missing_ok=True)


class Store:
    """The store root: one folder per tenant, one per app inside it."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root else default_root()

    def app(self, tenant_id: str, service_principal_id: str) -> AppStore:
        for part, label in ((tenant_id, "tenant id"), (service_principal_id, "service principal id")):
            if not _GUIDISH.match(part or ""):
                raise ConfigError(f"{label} {part!r} cannot name a store folder")
        path = self.root / tenant_id.lower() / service_principal_id.lower()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"The store folder {path} cannot be created: {exc.strerror}.",
                remedy="Set PROVKIT_STORE (or --store) to a folder you can write to.",
            ) from None
        store = AppStore(path, tenant_id.lower(), service_principal_id.lower())
        store.remove_orphans()
        return store

    def apps(self, *, counts: bool = True) -> list[dict]:
        """Every app in the store with what is known of it: tenant, ids, name, covered range (fetched windows;
        none for imports) and, with ``counts``, the number of entries and the times of the first and last
        (from the Parquet footers, not the data)."""
        out = []
        if not self.root.exists():
            return out
        for tenant_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for app_dir in sorted(p for p in tenant_dir.iterdir() if p.is_dir()):
                if not (app_dir / MANIFEST).exists():
                    continue
                store = AppStore(app_dir, tenant_dir.name, app_dir.name)
                data = store.manifest()
                covered = data["covered"]
                out.append(
                    {
                        "tenant_id": tenant_dir.name,
                        "service_principal_id": app_dir.name,
                        "display_name": data.get("app", {}).get("display_name"),
                        "app_id": data.get("app", {}).get("app_id"),
                        "covered_from": covered[0][0] if covered else None,
                        "covered_to": covered[-1][1] if covered else None,
                        "path": str(app_dir),
                    }
                )
                if counts:
                    entries, first, last = store._snapshot(store._entry_span)
                    out[-1].update(entries=entries, first_entry=first, last_entry=last)
        return out

    def find(self, app: str, tenant_id: str | None = None) -> AppStore:
        """Resolve APP (display name, appId or service principal id) among the stored apps, offline."""
        from provkit.errors import ConfigError as _ConfigError

        candidates = [
            a for a in self.apps(counts=False) if tenant_id is None or a["tenant_id"] == tenant_id.lower()
        ]
        wanted = app.strip().lower()
        exact = [a for a in candidates if wanted in (a["service_principal_id"], (a["app_id"] or "").lower())]
        if not exact:
            exact = [a for a in candidates if (a["display_name"] or "").lower() == wanted]
        if not exact:
            known = (
                ", ".join(sorted({a["display_name"] or a["service_principal_id"] for a in candidates}))
                or "none"
            )
            raise _ConfigError(
                f"No app matching {app!r} in the store at {self.root}.",
                remedy=f"Fetch or import it first. Apps in the store: {known}.",
            )
        if len(exact) > 1:
            listing = "; ".join(f"{a['display_name']} ({a['service_principal_id']})" for a in exact)
            raise _ConfigError(
                f"{app!r} matches several stored apps: {listing}.", remedy="Use the object id."
            )
        a = exact[0]
        return AppStore(Path(a["path"]), a["tenant_id"], a["service_principal_id"])

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
