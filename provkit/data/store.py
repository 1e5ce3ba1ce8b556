"""The local store: provisioning logs, job-status snapshots and app metadata on disk, per tenant and app.

Layout under the store root (``PROVKIT_STORE``, default the user's data folder)::

    <tenant id>/<service principal id>/
        manifest.json             committed parts, covered time ranges, app name, fetch history
        events/part-*.parquet     one part per write (a fetched piece or an import); steps/ and properties/ alike
        jobs/part-*.parquet       job-status snapshots, one row per job per fetch
        audits/part-*.parquet     directory audits (watermark resets, quarantines), raw JSON kept
        meta/*.json               latest schema, app role assignments, service principal
        quarantine/               files set aside because they could not be read or placed (never deleted)
        journal.log               every step that moved or removed a file, one line each
        .lock                     held by the one process writing this folder

What the store guarantees:

- **Atomic commits.** A write puts its parts on disk (temporary file, fsync, rename), steps and properties first
  and the events part last, then replaces the manifest by rename. The events, steps and properties parts of one
  write share a file name (a *batch*), and each part carries its batch, covered range and app in its Parquet
  metadata, so the manifest can always be rebuilt from the parts.
- **Nothing is deleted that is not provably garbage.** A part the manifest does not list is adopted when its batch
  is complete (a crash between the part and the manifest), removed only when it is provably redundant (the
  temporary file of an interrupted write, the steps of a batch whose events part never landed, parts a finished
  compaction replaced), and otherwise moved to ``quarantine/``. A missing or unreadable manifest is set aside and
  rebuilt from the parts. Each of these steps is written to ``journal.log``.
- **One writer per app folder**, across processes (an OS file lock on ``.lock``, released by the system when its
  process dies, so a crash never leaves a stale lock). A second writer waits, saying so, up to
  ``PROVKIT_STORE_LOCK_TIMEOUT`` seconds (default 600), then stops with a clear message. Readers take no lock:
  they read the parts one committed manifest lists.
- **Damage is named, not fatal to others.** A part that cannot be read stops the command with its file name and
  ``provkit store check --repair``, which moves the damaged batch aside and marks its time range as not covered,
  so the next fetch gets it again (a fetch does this itself), and takes quarantined parts back once they are
  readable again. Other apps are unaffected.
- Reads drop duplicate ids, so fetching the same range twice is idempotent.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from provkit.data.tables import (
    EVENT_COLUMNS,
    JOB_COLUMNS,
    PROPERTY_COLUMNS,
    STEP_COLUMNS,
    Tables,
    empty_tables,
)
from provkit.errors import ConfigError, ProvkitError, StoreError

log = logging.getLogger("provkit.data.store")

MANIFEST = "manifest.json"
KINDS = ("events", "steps", "properties", "jobs", "audits")
LOG_KINDS = ("events", "steps", "properties")
LOCK_FILE = ".lock"
JOURNAL = "journal.log"
QUARANTINE = "quarantine"
LOCK_TIMEOUT = 600.0  # seconds a second writer waits (PROVKIT_STORE_LOCK_TIMEOUT overrides)
COMPACT_AT = 16  # a fetch compacts once a kind has more parts than this
SMALL_PART_ROWS = 200_000  # parts with fewer rows are merged by compaction; larger ones are left as they are
_META_KEY = b"provkit"
_GUIDISH = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_LOCKS: dict[Path, _FolderLock] = {}
_LOCKS_LOCK = threading.Lock()
_READ_ATTEMPTS = 5
T = TypeVar("T")


def _repair_remedy(root: Path) -> str:
    return (
        f"Run `provkit store check --repair --store {root}`: it moves damaged files aside (nothing is deleted) "
        "and marks their time ranges as not covered, so the next fetch gets them again. Other apps are not affected."
    )


# ---- the writer lock -------------------------------------------------------------------------------------------
try:  # POSIX
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def lock_timeout(environ: dict[str, str] | None = None) -> float:
    """Seconds a writer waits for another process's lock: ``PROVKIT_STORE_LOCK_TIMEOUT`` or 600."""
    text = ((os.environ if environ is None else environ).get("PROVKIT_STORE_LOCK_TIMEOUT") or "").strip()
    if not text:
        return LOCK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 10**7:
        raise ConfigError(
            f"PROVKIT_STORE_LOCK_TIMEOUT={text!r} is not a number of seconds.",
            remedy="Unset it for the default (600), or give seconds such as 1800.",
        )
    return value


class _FolderLock:
    """One writer per app folder: a thread lock within the process and an OS file lock across processes.

    Re-entrant in the thread that holds it. The OS lock (flock) goes with the process, so a killed writer never
    leaves a stale lock behind; the holder's pid is written into the file only to name it in messages.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> _FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        self._thread_lock.acquire()
        if self._depth == 0:
            try:
                self._fd = self._lock_across_processes()
            except BaseException:
                self._thread_lock.release()
                raise
        self._depth += 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            try:
                _unlock(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
        self._thread_lock.release()

    def _lock_across_processes(self) -> int:
        file = self.folder / LOCK_FILE
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"The store folder {self.folder} cannot be written: {exc.strerror or exc}.",
                remedy="Make the folder writable, or set PROVKIT_STORE (or --store) to a folder you can write to; "
                "offline commands still read it.",
            ) from None
        if not _try_lock(fd):
            timeout = lock_timeout()
            holder = _holder(fd)
            print(
                f"provkit: another provkit process{holder} is writing {self.folder}; waiting up to "
                f"{timeout:.0f} s for it to finish.",
                file=sys.stderr,
            )
            deadline = time.monotonic() + timeout
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreError(
                        f"Another provkit process{holder} kept writing {self.folder} for more than "
                        f"{timeout:.0f} s; nothing was written.",
                        remedy="Let it finish (a fetch or a report) and run again, or set "
                        "PROVKIT_STORE_LOCK_TIMEOUT to wait longer. A lock whose process died is released by the "
                        "system: there is no lock file to remove.",
                    )
                time.sleep(0.2)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except (OSError, AttributeError):  # (no pwrite on Windows)
            pass  # the pid is only for messages
        return fd


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except (OSError, AttributeError):
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def _folder_lock(path: Path) -> _FolderLock:
    """One lock per app folder and process, shared by every AppStore open on it."""
    key = path.resolve()
    with _LOCKS_LOCK:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = _FolderLock(path)
        return lock


# ---- files -----------------------------------------------------------------------------------------------------
def default_root(environ: dict[str, str] | None = None) -> Path:
    """``PROVKIT_STORE`` when set, otherwise the user's data folder for provkit."""
    env = os.environ if environ is None else environ
    if env.get("PROVKIT_STORE"):
        return Path(env["PROVKIT_STORE"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("provkit", appauthor=False)) / "store"


_WRITE_REMEDIES = {
    errno.ENOSPC: "The disk is full: free space (or point PROVKIT_STORE / --store at another disk) and run again.",
    errno.EROFS: "The file system is read-only: point PROVKIT_STORE (or --store) at a writable folder; offline "
    "commands still read this one.",
    errno.EACCES: "Make the folder writable for this user, or point PROVKIT_STORE (or --store) elsewhere.",
    errno.EPERM: "Make the folder writable for this user, or point PROVKIT_STORE (or --store) elsewhere.",
}


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename; a StoreError naming the path when
    the file system refuses (disk full, read-only, permissions). Nothing is half-written either way."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise StoreError(
            f"Cannot write {path}: {exc.strerror or exc}. Nothing already stored was changed.",
            remedy=_WRITE_REMEDIES.get(exc.errno or 0, "Check the folder and the disk, then run again."),
        ) from None
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _ranges(pairs: object) -> list[tuple[datetime, datetime]]:
    """ISO pairs as datetime ranges; ValueError when they are not."""
    if not isinstance(pairs, list):
        raise ValueError("not a list")
    out = []
    for pair in pairs:
        try:
            out.append((_parse(pair[0]), _parse(pair[1])))
        except (TypeError, ValueError, IndexError, KeyError, AttributeError):
            raise ValueError(f"{pair!r} is not a pair of ISO-8601 instants") from None
    return out


def _pairs(ranges: Iterable[tuple[datetime, datetime]]) -> list[list[str]]:
    return [[_iso(a), _iso(b)] for a, b in ranges]


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
    for key in ("covered", "unsettled"):
        try:
            _ranges(data.get(key, []))
        except ValueError as exc:
            return f"'{key}' holds {exc}"
    ranges = data.get("ranges", {})
    if not isinstance(ranges, dict):
        return "'ranges' is not an object"
    for name, pairs in ranges.items():
        try:
            _ranges(pairs)
        except ValueError as exc:
            return f"'ranges.{name}' holds {exc}"
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


def remove_ranges(
    ranges: list[tuple[datetime, datetime]], remove: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """``ranges`` with every range in ``remove`` cut out."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in merge_ranges(ranges):
        out.extend(subtract_ranges(start, end, remove))
    return out


def _regular(file: Path) -> None:
    """FileNotFoundError when ``file`` is gone, IsADirectoryError when it is not a regular file (pyarrow would
    read a folder as an empty dataset); one stat, so a part removed meanwhile is reported as gone."""
    if not stat.S_ISREG(os.stat(file).st_mode):
        raise IsADirectoryError(errno.EISDIR, "not a regular file", str(file))


def _part_meta(file: Path) -> dict | None:
    """The provkit metadata a part carries (batch, covered ranges, what it replaces), None for older parts.
    Raises what pyarrow raises for a file that is not readable Parquet."""
    _regular(file)
    schema = pq.read_schema(file)
    raw = (schema.metadata or {}).get(_META_KEY)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


_UNREADABLE = (OSError, pa.ArrowException, ValueError)


def _short(exc: BaseException) -> str:
    """The first line of an error, without pyarrow's repetition of the file name."""
    text = (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).strip().splitlines()
    line = re.sub(r"^Could not open Parquet input source '[^']*': ", "", text[0]) if text else ""
    return line[:200] or type(exc).__name__


def _span(events: pd.DataFrame) -> list[tuple[datetime, datetime]]:
    """[first, last] activity time of ``events`` as one half-open range ([] when there are none)."""
    if not len(events) or "activity_time" not in events:
        return []
    times = pd.to_datetime(events["activity_time"], utc=True).dropna()
    if not len(times):
        return []
    first, last = times.min().floor("us").to_pydatetime(), times.max().ceil("us").to_pydatetime()
    return [(first, last + timedelta(microseconds=1))]


@dataclass
class WriteResult:
    new: int
    duplicates: int


@dataclass
class CheckReport:
    """What ``provkit store check`` found in one app's folder and, with ``--repair``, did about it."""

    path: str
    app: str
    parts: int = 0
    problems: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    uncovered: list[tuple[datetime, datetime]] = field(default_factory=list)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems or self.repaired

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "app": self.app,
            "parts": self.parts,
            "problems": self.problems,
            "actions": self.actions,
            "uncovered": _pairs(self.uncovered),
            "repaired": self.repaired,
            "ok": self.ok,
        }

    def text(self) -> str:
        head = f"{self.app} ({self.path}): {self.parts} part(s) checked"
        if not self.problems:
            return "\n".join([head + ", no damage."] + [f"  repaired: {a}" for a in self.actions])
        lines = [head + f", {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        lines += [f"  repaired: {a}" for a in self.actions]
        if self.uncovered:
            spans = ", ".join(f"{a:%Y-%m-%d %H:%M}..{b:%Y-%m-%d %H:%M}" for a, b in self.uncovered)
            lines.append(f"  marked as not covered (the next fetch gets them again): {spans} UTC")
        return "\n".join(lines)


class AppStore:
    """One app's data in the store.

    Writers hold the app folder's lock (one writer across threads and processes); readers, in any process, see
    the state of one committed manifest. See the module docstring for what the store guarantees.
    """

    def __init__(self, path: Path, tenant_id: str, service_principal_id: str) -> None:
        self.path = path
        self.tenant_id = tenant_id
        self.service_principal_id = service_principal_id
        self._lock = _folder_lock(path)
        self._ids: set[str] | None = None
        self._ids_parts: list[str] = []  # the events parts ``_ids`` was read from

    @property
    def root(self) -> Path:
        return self.path.parent.parent

    @contextmanager
    def writing(self) -> Iterator[AppStore]:
        """Hold the app folder's writer lock for a sequence of writes (a whole fetch); re-entrant."""
        with self._lock:
            yield self

    # ---- manifest ------------------------------------------------------------------------------------------
    def _empty_manifest(self) -> dict:
        return {
            "version": 2,
            "tenant_id": self.tenant_id,
            "service_principal_id": self.service_principal_id,
            "app": {},
            "parts": {k: [] for k in KINDS},
            "covered": [],
            "unsettled": [],
            "ranges": {},
            "fetches": [],
        }

    def _load_manifest(self) -> tuple[dict | None, str | None]:
        """(manifest, None), (None, None) when there is none, or (None, what is wrong with it)."""
        file = self.path / MANIFEST
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise StoreError(
                f"The store's manifest {file} cannot be read: {exc.strerror or exc}.",
                remedy="Make the file readable for this user (it is the store's index; nothing else is wrong).",
            ) from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, f"it is not JSON ({_short(exc)})"
        problem = _manifest_problem(data)
        if problem:
            return None, problem
        for kind in KINDS:
            data.setdefault("parts", {}).setdefault(kind, [])
        for key in ("covered", "unsettled", "fetches"):
            data.setdefault(key, [])
        data.setdefault("ranges", {})
        data.setdefault("app", {})
        return data, None

    def manifest(self) -> dict:
        """The committed manifest. One that is missing while parts exist, or that cannot be parsed, is set aside
        and rebuilt from the parts (under the writer lock; in memory only when the folder cannot be written)."""
        data, problem = self._load_manifest()
        if data is not None:
            return data
        if problem is None and not self._has_parts():
            return self._empty_manifest()
        return self._recover(problem)

    def _save_manifest(self, data: dict) -> None:
        _atomic_write_bytes(self.path / MANIFEST, json.dumps(data, indent=1, sort_keys=True).encode())

    def _has_parts(self) -> bool:
        return any(self._files_on_disk(kind) for kind in KINDS)

    def _files_on_disk(self, kind: str) -> list[str]:
        folder = self.path / kind
        try:
            return sorted(
                p.name for p in folder.iterdir() if p.suffix == ".parquet" and not p.name.startswith(".")
            )
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _recover(self, problem: str | None) -> dict:
        try:
            self._lock.acquire()
        except StoreError:  # a folder we cannot write: rebuild for this reader only
            data, _ = self._rebuild(dry=True)
            log.warning(
                "The manifest of %s is %s; read from the parts, not saved.", self.path, problem or "missing"
            )
            return data
        try:
            data, again = self._load_manifest()  # another process may have rebuilt it meanwhile
            if data is not None:
                return data
            if again is None and not self._has_parts():
                return self._empty_manifest()
            file = self.path / MANIFEST
            if again is not None and file.exists():
                self._set_aside(file, f"the manifest is damaged: {again}")
            data, adopted = self._rebuild(dry=False)
            self._save_manifest(data)
            self._journal(
                f"rebuilt the manifest from {adopted} part(s) ({'it was ' + again if again else 'it was missing'}); "
                f"covered: {len(data['covered'])} range(s)"
            )
            return data
        finally:
            self._lock.release()

    def _rebuild(self, *, dry: bool) -> tuple[dict, int]:
        """A manifest made from the parts on disk: complete batches and jobs and audits parts are adopted with the
        covered ranges they carry; unreadable parts are moved aside and provable leftovers removed (not when
        ``dry``). Returns it and how many parts it lists."""
        data = self._empty_manifest()
        sp = self._read_meta_quietly("service_principal")
        if isinstance(sp, dict):
            data["app"] = {
                "display_name": sp.get("displayName"),
                "app_id": sp.get("appId"),
                "service_principal_id": sp.get("id") or self.service_principal_id,
            }
        metas: dict[tuple[str, str], dict | None] = {}
        for kind in KINDS:
            for name in self._files_on_disk(kind):
                try:
                    metas[(kind, name)] = _part_meta(self.path / kind / name)
                except _UNREADABLE as exc:
                    if not dry:
                        self._set_aside(self.path / kind / name, f"it cannot be read ({_short(exc)})")
        adopted = self._place(data, metas, listed=set(), dry=dry)
        return data, adopted

    def _place(
        self,
        data: dict,
        metas: dict[tuple[str, str], dict | None],
        *,
        listed: set[tuple[str, str]],
        dry: bool,
        listed_metas: dict[tuple[str, str], dict | None] | None = None,
    ) -> int:
        """Decide, for each readable part not in the manifest (``metas``: with their metadata), whether it is
        adopted into ``data``, removed as provably redundant, or moved aside; ``listed`` are the parts the
        manifest lists (with ``listed_metas``, their metadata). Returns how many parts were adopted."""
        known = {**(listed_metas or {}), **metas}
        replaced_by: dict[tuple[str, str], str] = {}
        for (kind, name), meta in known.items():
            for old in (meta or {}).get("replaces") or []:
                replaced_by[(kind, old)] = name
        present = set(known) | listed
        batches = {n for k, n in listed if k == "events"}
        adopted = 0
        newest_app: tuple[str, dict] | None = None
        for (kind, name), meta in sorted(metas.items(), key=lambda kv: (KINDS.index(kv[0][0]), kv[0][1])):
            file = self.path / kind / name
            if meta is None:
                if listed:  # an older part beside a working manifest: where it came from is unknown
                    if not dry:
                        self._set_aside(file, "the manifest does not list it and it carries no batch")
                    continue
                data["parts"][kind].append(name)  # rebuilding an older store: keep everything readable
                if kind == "events":
                    batches.add(name)
                adopted += 1
                continue
            replaces = meta.get("replaces") or []
            if replaces and any((kind, old) in listed for old in replaces):
                if not dry:
                    self._remove(
                        file, "an unfinished compaction's output; the parts it merged are still listed"
                    )
                continue
            replacer = replaced_by.get((kind, name))
            if replacer is not None and (
                (kind, replacer) in listed
                or (kind in ("jobs", "audits", "events") and (kind, replacer) in present)
                or ("events", replacer) in present
            ):
                if not dry:
                    self._remove(file, f"merged into {kind}/{replacer} by a finished compaction")
                continue
            if kind in ("steps", "properties") and name not in batches:
                if not dry:
                    self._remove(file, "its batch's events part never landed (an interrupted write)")
                continue
            data["parts"][kind].append(name)
            adopted += 1
            if kind == "events":
                batches.add(name)
                covered = _ranges(meta.get("covered") or [])
                lost = merge_ranges(covered + _ranges(meta.get("span") or []))
                if lost:
                    data["ranges"][name] = _pairs(lost)
                if covered:
                    merged = [(_parse(a), _parse(b)) for a, b in data["covered"]] + covered
                    data["covered"] = _pairs(merge_ranges(merged))
                if isinstance(meta.get("app"), dict) and (newest_app is None or name > newest_app[0]):
                    newest_app = (name, meta["app"])
        if newest_app and not any(data.get("app", {}).values()):
            data["app"] = dict(newest_app[1])
        return adopted

    def _tidy(self, data: dict) -> dict:
        """Under the lock: settle files the manifest does not account for (see :meth:`_place`) and remove the
        temporary files of interrupted writes. Returns the manifest, saved when it changed."""
        for folder in (self.path, self.path / "meta", *(self.path / k for k in KINDS)):
            try:
                temps = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
            except (FileNotFoundError, NotADirectoryError):
                continue
            for file in temps:
                self._remove(file, "the temporary file of an interrupted write", routine=True)
        listed = {(kind, n) for kind in KINDS for n in data["parts"][kind]}
        metas: dict[tuple[str, str], dict | None] = {}
        for kind in KINDS:
            for name in self._files_on_disk(kind):
                if (kind, name) in listed:
                    continue
                try:
                    metas[(kind, name)] = _part_meta(self.path / kind / name)
                except _UNREADABLE as exc:
                    self._set_aside(
                        self.path / kind / name,
                        f"the manifest does not list it and it cannot be read ({_short(exc)})",
                    )
        if not metas:
            return data
        listed_metas: dict[tuple[str, str], dict | None] = {}
        for kind, name in listed:  # what the committed parts replaced, to recognise a compaction's leftovers
            try:
                listed_metas[(kind, name)] = _part_meta(self.path / kind / name)
            except _UNREADABLE:
                pass  # damage in a listed part is for `provkit store check` to report
        before = {k: list(v) for k, v in data["parts"].items()}
        adopted = self._place(data, metas, listed=listed, dry=False, listed_metas=listed_metas)
        if adopted:
            self._save_manifest(data)
            added = [f"{k}/{n}" for k in KINDS for n in data["parts"][k] if n not in before[k]]
            self._journal(f"adopted {adopted} part(s) an interrupted write had completed: {', '.join(added)}")
        return data

    # ---- journal, quarantine ---------------------------------------------------------------------------------
    def _journal(self, text: str, *, routine: bool = False) -> None:
        """Append a line to the app's journal.log; recoveries are also logged as warnings (shown on the
        command line), routine steps (compaction, temporary files) at info level."""
        log.log(logging.INFO if routine else logging.WARNING, "store %s: %s", self.path, text)
        line = f"{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} pid {os.getpid()}: {text}\n"
        try:
            with open(self.path / JOURNAL, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError:
            pass  # a read-only store: the log line above is all there is

    def _set_aside(self, file: Path, reason: str) -> Path | None:
        """Move ``file`` into quarantine/ (same relative path, never overwriting); journal it."""
        rel = file.relative_to(self.path)
        target = self.path / QUARANTINE / rel
        if target.exists():
            target = target.with_name(f"{target.stem}.{uuid.uuid4().hex[:6]}{target.suffix}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("could not move %s aside: %s", file, exc)
            return None
        self._journal(f"moved {rel.as_posix()} to {target.relative_to(self.path).as_posix()}: {reason}")
        return target

    def _remove(self, file: Path, reason: str, *, routine: bool = False) -> None:
        try:
            file.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("could not remove %s: %s", file, exc)
            return
        self._journal(f"removed {file.relative_to(self.path).as_posix()}: {reason}", routine=routine)

    # ---- writing -------------------------------------------------------------------------------------------
    @staticmethod
    def _part_name() -> str:
        return f"part-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"

    def _write_part(
        self, kind: str, df: pd.DataFrame, name: str | None = None, meta: dict | None = None
    ) -> str:
        name = name or self._part_name()
        table = pa.Table.from_pandas(df, preserve_index=False)
        info = {"kind": kind, "batch": name, **(meta or {})}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(info)})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        _atomic_write_bytes(self.path / kind / name, sink.getvalue().to_pybytes())
        return name

    def _read_part(
        self, file: Path, columns: list[str] | None = None, filters: list | None = None
    ) -> pa.Table:
        try:
            _regular(file)
            return pq.read_table(file, columns=columns, filters=filters)
        except FileNotFoundError:
            raise
        except _UNREADABLE as exc:
            raise self._damaged(file, exc) from None

    def _damaged(self, file: Path, exc: BaseException) -> StoreError:
        return StoreError(
            f"The store file {file} cannot be read ({_short(exc)}).", remedy=_repair_remedy(self.root)
        )

    def stored_ids(self) -> set[str]:
        """Ids of every stored log entry (read from the id column only).

        Kept between calls and brought up to date from the manifest, so another AppStore's writes count too.
        """
        parts = list(self.manifest()["parts"]["events"])
        known = self._ids_parts
        if self._ids is None or parts[: len(known)] != known:
            self._ids, known = set(), []
        for name in parts[len(known) :]:
            file = self.path / "events" / name
            try:
                table = self._read_part(file, columns=["id"])
            except FileNotFoundError:
                raise self._damaged(file, FileNotFoundError("listed in the manifest but missing")) from None
            self._ids.update(table.column("id").to_pylist())
        self._ids_parts = parts
        return self._ids

    def write_events(
        self,
        tables: Tables,
        *,
        covered: tuple[datetime, datetime] | None = None,
        source: str = "graph",
        settled_before: datetime | None = None,
    ) -> WriteResult:
        """Add log tables, dropping entries whose id is already stored; optionally record a covered range.

        ``settled_before``: entries dated from then on may still arrive late (logs are written with a delay), so
        that tail of ``covered`` is recorded as unsettled and asked for again by the next fetch.
        """
        with self._lock:
            data = self._tidy(self.manifest())
            ids = self.stored_ids()
            events = tables.events
            if len(events):
                fresh = ~events["id"].isin(ids) & ~events["id"].duplicated()
                new_events = events[fresh]
            else:
                new_events = events
            duplicates = len(events) - len(new_events)
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
                # One batch: steps and properties first, the events part last (its presence completes the batch).
                name = self._part_name()
                meta = {
                    "covered": _pairs([covered]) if covered else [],
                    "span": _pairs(_span(new_events)),
                    "with": [k for k, df in (("steps", steps), ("properties", props)) if len(df)],
                    "source": source,
                    "app": data.get("app", {}),
                }
                if len(steps):
                    data["parts"]["steps"].append(self._write_part("steps", steps, name, meta))
                if len(props):
                    data["parts"]["properties"].append(self._write_part("properties", props, name, meta))
                data["parts"]["events"].append(self._write_part("events", new_events, name, meta))
                # What to fetch again should this part be lost: its range and every entry in it (a piece holds
                # the whole page that crossed its boundary, so entries can lie past the range it covers).
                lost = ([covered] if covered is not None else []) + _span(new_events)
                if lost:
                    data["ranges"][name] = _pairs(merge_ranges((_utc(a), _utc(b)) for a, b in lost))
            if covered is not None:
                start, end = _utc(covered[0]), _utc(covered[1])
                ranges = [(_parse(a), _parse(b)) for a, b in data["covered"]] + [(start, end)]
                data["covered"] = _pairs(merge_ranges(ranges))
                unsettled = remove_ranges(
                    [(_parse(a), _parse(b)) for a, b in data["unsettled"]], [(start, end)]
                )
                if settled_before is not None and _utc(settled_before) < end:
                    unsettled.append((max(start, _utc(settled_before)), end))
                data["unsettled"] = _pairs(merge_ranges(unsettled))
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
            data = self._tidy(self.manifest())
            data["parts"]["jobs"].append(self._write_part("jobs", jobs))
            self._save_manifest(data)

    def write_audits(self, audits: list[dict]) -> int:
        """Store directory audits not seen before; returns how many were new."""
        with self._lock:
            data = self._tidy(self.manifest())
            known = set(self.audits()["id"]) if data["parts"]["audits"] else set()
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

    def record_request(self, start: datetime, end: datetime) -> None:
        """Note the window a fetch is about to ask for (kept even when the fetch is interrupted): the end of the
        latest one is the store's "now" for offline analysis."""
        with self._lock:
            data = self.manifest()
            data["requested"] = _pairs([(start, end)])[0]
            self._save_manifest(data)

    def store_now(self) -> datetime | None:
        """The latest moment the store was asked to cover: the end of the last requested window or the watermark,
        whichever is later; None for a store of imports only."""
        data = self.manifest()
        candidates = [_parse(data["covered"][-1][1])] if data["covered"] else []
        requested = data.get("requested")
        if isinstance(requested, list) and len(requested) == 2:
            try:
                candidates.append(_parse(requested[1]))
            except (TypeError, ValueError):
                pass
        return max(candidates) if candidates else None

    def record_fetch(self, summary: dict) -> None:
        with self._lock:
            data = self.manifest()
            data["fetches"] = (data["fetches"] + [summary])[-200:]
            self._save_manifest(data)

    # ---- coverage ------------------------------------------------------------------------------------------
    def covered(self) -> list[tuple[datetime, datetime]]:
        return [(_parse(a), _parse(b)) for a, b in self.manifest()["covered"]]

    def unsettled(self) -> list[tuple[datetime, datetime]]:
        """Covered ranges recent enough at their fetch that entries may still have arrived late since."""
        return [(_parse(a), _parse(b)) for a, b in self.manifest()["unsettled"]]

    def watermark(self) -> datetime | None:
        """The end of the latest covered range: entries before it have been fetched."""
        covered = self.covered()
        return covered[-1][1] if covered else None

    def gaps(
        self,
        start: datetime,
        end: datetime,
        *,
        overlap: timedelta = timedelta(hours=1),
        lookback: timedelta | None = None,
    ) -> list[tuple[datetime, datetime]]:
        """The ranges of [start, end) still to fetch: what is not covered, the unsettled tails (see
        :meth:`write_events`), and the last ``lookback`` (alias ``overlap``) before the watermark, because Graph
        can record entries minutes to hours after they happened."""
        tail = overlap if lookback is None else lookback
        data = self.manifest()
        covered = [(_parse(a), _parse(b)) for a, b in data["covered"]]
        if covered and tail:
            last_start, last_end = covered[-1]
            covered[-1] = (last_start, max(last_start, last_end - tail))
        covered = remove_ranges(covered, [(_parse(a), _parse(b)) for a, b in data["unsettled"]])
        return subtract_ranges(_utc(start), _utc(end), covered)

    # ---- reading -------------------------------------------------------------------------------------------
    def _snapshot(self, read: Callable[[dict], T]) -> T:
        """``read(manifest)`` against one committed manifest. A compaction may delete the parts a manifest lists
        right after it was read; then the new manifest is read and ``read`` runs again."""
        missing = None
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
            remedy=_repair_remedy(self.root),
        )

    def _part_files(self, kind: str, data: dict | None = None) -> list[Path]:
        data = self.manifest() if data is None else data
        return [self.path / kind / name for name in data["parts"][kind]]

    def _read(
        self,
        kind: str,
        columns: dict[str, str] | None,
        data: dict | None = None,
        *,
        unique: str | None = None,
        order_by: str | None = None,
        filters: list | None = None,
    ) -> pd.DataFrame:
        """Every part of ``kind`` as one frame; with ``unique``, the first row of each value of that column; with
        ``order_by``, in that column's order (stable); ``filters`` (pyarrow's) keep only the rows they match.

        Memory: the parts are read as Arrow tables (the system allocator), deduplicated part by part, put in the
        order of their first value, joined without copying, and converted once, Arrow buffers released as they
        are converted; rows are moved (column by column) only when the joined parts are still out of order.
        Converting each part and concatenating frames, then sorting, held every column two or three times.
        """
        files = self._part_files(kind, data)
        pool = pa.default_memory_pool()
        pa.set_memory_pool(_SYSTEM_POOL)
        try:
            parts = [t for t in (self._read_part(f, filters=filters) for f in files) if t.num_rows]
            if not parts:
                return self._read_empty(columns)
            if unique is not None and all(unique in p.column_names for p in parts):
                keep = _first_of_each(pa.chunked_array([c for p in parts for c in p.column(unique).chunks]))
                if keep is not None:  # filtered part by part: small allocations, freed as they go
                    bounds = np.cumsum([0] + [p.num_rows for p in parts])
                    parts = [p.filter(keep[a:b]) for p, a, b in zip(parts, bounds, bounds[1:], strict=False)]
            if order_by is not None and all(order_by in p.column_names for p in parts):
                # Parts are time ranges (a fetch's pieces, an import): in the order of their first entry they are
                # usually in order already, and nothing needs moving.
                parts.sort(key=lambda p: _first_value(p, order_by))
            try:  # one conversion to pandas for all parts: many small parts convert many times faster so
                table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):  # parts of other shapes
                frames = [t.to_pandas() for t in parts]
                df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
                if order_by is not None and order_by in df.columns:
                    df = df.sort_values(order_by, kind="stable", ignore_index=True)
            else:
                del parts
                if order_by is not None and order_by in table.column_names:
                    order = _order_if_unsorted(table.column(order_by))
                    if order is not None:
                        table = _columnwise(table, lambda column: column.take(order))
                df = table.to_pandas(self_destruct=True, split_blocks=True)
                del table
        finally:
            pa.set_memory_pool(pool)
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

    def tables(self, *, lazy: bool = False) -> Tables:
        """Every stored log entry, each id once, in time order; events, steps and properties from one manifest.

        ``lazy``: steps and properties are read on first use (from the same manifest), so an analysis that never
        looks at them (cycles) never holds them; a million entries' steps are several million rows.
        """
        if lazy:
            return self._snapshot(lambda data: _StoredTables(self, data))
        return self._snapshot(self._tables)

    def _tables(self, data: dict) -> Tables:
        if not data["parts"]["events"]:
            return empty_tables()
        return Tables(events=self._events(data), steps=self._steps(data), properties=self._properties(data))

    def _events(self, data: dict) -> pd.DataFrame:
        if not data["parts"]["events"]:
            return empty_tables().events
        return self._read("events", EVENT_COLUMNS, data, unique="id", order_by="activity_time")

    def _steps(self, data: dict, filters: list | None = None) -> pd.DataFrame:
        steps = self._read("steps", STEP_COLUMNS, data, filters=filters)
        return _without_duplicates(steps, ["event_id", "step_order"])

    def _properties(self, data: dict) -> pd.DataFrame:
        return _without_duplicates(self._read("properties", PROPERTY_COLUMNS, data), None)

    def events(self) -> pd.DataFrame:
        return self.tables().events

    def _entry_span(self, data: dict) -> tuple[int, str | None, str | None]:
        """(entries, first activity time, last activity time) from the events parts' footers."""
        count, first, last = 0, None, None
        for file in self._part_files("events", data):
            try:
                _regular(file)
                meta = pq.ParquetFile(file).metadata
            except FileNotFoundError:
                raise
            except _UNREADABLE as exc:
                raise self._damaged(file, exc) from None
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
        """A metadata file's JSON, None when there is none; a StoreError naming the file when it is damaged."""
        file = self.path / "meta" / f"{name}.json"
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise StoreError(
                f"The store file {file} cannot be read ({_short(exc)}).",
                remedy=_repair_remedy(self.root) + " The next fetch writes a fresh copy of this file.",
            ) from None

    def _read_meta_quietly(self, name: str) -> object | None:
        try:
            return self.meta(name)
        except StoreError:
            return None

    # ---- housekeeping --------------------------------------------------------------------------------------
    def remove_orphans(self) -> int:
        """Settle what a crash left beside the manifest (see :meth:`tidy`); returns how many files that were.
        (The older name: nothing is removed any more that is not provably redundant.)"""
        with self._lock:
            listed = {(k, n) for k, names in self.manifest()["parts"].items() for n in names}
            before = sum(1 for k in KINDS for n in self._files_on_disk(k) if (k, n) not in listed)
            before += sum(
                1
                for folder in (self.path, self.path / "meta", *(self.path / k for k in KINDS))
                if folder.is_dir()
                for p in folder.iterdir()
                if p.name.startswith(".") and p.name.endswith(".tmp")
            )
            self.tidy()
            return before

    def tidy(self) -> dict:
        """Settle files a crash left beside the manifest (adopt, remove provable leftovers, move aside the rest);
        returns the manifest."""
        with self._lock:
            return self._tidy(self.manifest())

    def check(self, *, repair: bool = False) -> CheckReport:
        """Read every file of the app's folder in full; with ``repair``, move damaged ones aside, drop them from
        the manifest and mark the time ranges they held as not covered (the next fetch gets them again)."""
        loaded, problem = self._load_manifest()
        report = CheckReport(path=str(self.path), app=self.service_principal_id)
        if problem or (loaded is None and self._has_parts()):
            report.problems.append(
                f"{self.path / MANIFEST}: "
                + (f"damaged ({problem})" if problem else "missing while parts exist")
            )
        with self._lock if repair else _nothing():
            if repair:
                data = self._tidy(self.manifest())
                if report.problems:
                    report.actions.append("set the manifest aside and rebuilt it from the parts")
                back = self._readopt(data)
                if back:
                    report.actions.append(
                        f"took back {len(back)} part(s) from quarantine that are readable again and hold "
                        f"entries the store lacks: {', '.join(back)}"
                    )
            else:
                data = loaded if loaded is not None else self._rebuild(dry=True)[0]
            report.app = data.get("app", {}).get("display_name") or self.service_principal_id
            damaged: dict[str, list[str]] = {kind: [] for kind in KINDS}
            for kind in KINDS:
                for name in data["parts"][kind]:
                    file = self.path / kind / name
                    report.parts += 1
                    try:
                        self._read_part(file)
                    except FileNotFoundError:
                        damaged[kind].append(name)
                        report.problems.append(f"{file}: listed in the manifest but missing")
                    except StoreError as exc:
                        damaged[kind].append(name)
                        report.problems.append(exc.message)
            bad_meta = []
            folder = self.path / "meta"
            for file in sorted(folder.glob("*.json")) if folder.exists() else ():
                try:
                    json.loads(file.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, ValueError) as exc:
                    bad_meta.append(file)
                    report.problems.append(f"{file}: {_short(exc)}")
            if not repair or not (any(damaged.values()) or bad_meta):
                report.repaired = repair and bool(report.problems)
                return report
            # A damaged events, steps or properties part takes its whole batch aside: entries without their
            # steps would be taken for complete, and a refetch would drop them as already stored.
            batches = {n for kind in LOG_KINDS for n in damaged[kind]}
            uncover: list[tuple[datetime, datetime]] = []
            everything = False
            for name in sorted(batches):
                if name in data["ranges"]:
                    uncover.extend(_ranges(data["ranges"].pop(name)))
                elif name in data["parts"]["events"] or name in damaged["events"]:
                    everything = True  # an older part with no recorded range: refetch whatever was covered
                for kind in LOG_KINDS:
                    if name in data["parts"][kind]:
                        data["parts"][kind].remove(name)
                        why = "damaged" if name in damaged[kind] else "its batch has a damaged part"
                        self._set_aside(self.path / kind / name, why)
            for kind in ("jobs", "audits"):
                for name in damaged[kind]:
                    data["parts"][kind].remove(name)
                    self._set_aside(self.path / kind / name, "damaged")
            covered = [(_parse(a), _parse(b)) for a, b in data["covered"]]
            if everything:
                uncover = covered
            report.uncovered = merge_ranges(uncover)
            data["covered"] = _pairs(remove_ranges(covered, report.uncovered))
            self._save_manifest(data)
            self._ids = None
            for file in bad_meta:
                self._set_aside(file, "damaged; the next fetch writes it again")
            moved = sum(len(v) for v in damaged.values())
            report.actions.append(
                f"moved {moved} damaged part(s) and the rest of their batches to {self.path / QUARANTINE}"
                if moved
                else "nothing to move among the parts"
            )
            if bad_meta:
                report.actions.append(f"moved {len(bad_meta)} damaged metadata file(s) aside")
            report.repaired = True
            return report

    def _readopt(self, data: dict) -> list[str]:
        """Under the lock: move back from quarantine the events parts that are readable again (a permission fixed,
        a file restored) with the steps and properties of their batch, when they hold entries the store does
        not; returns their names. Saves the manifest when something came back."""
        folder = self.path / QUARANTINE / "events"
        if not folder.is_dir():
            return []
        back: list[str] = []
        for file in sorted(folder.glob("*.parquet")):
            name = file.name
            if name in data["parts"]["events"] or (self.path / "events" / name).exists():
                continue
            try:
                meta = _part_meta(file)
                ids = set(pq.read_table(file, columns=["id"]).column("id").to_pylist())
            except _UNREADABLE:
                continue  # still unreadable: it stays where it is
            if meta is None or meta.get("batch") != name:
                continue  # an older part, or one renamed by hand: where it belongs is unknown
            companions = {}
            for kind in ("steps", "properties"):
                candidate = self.path / QUARANTINE / kind / name
                if candidate.is_file():
                    companions[kind] = candidate
            if kind_missing := [k for k in meta.get("with", []) if k not in companions]:
                log.info(
                    "not taking back %s: its %s part is not in quarantine", name, ", ".join(kind_missing)
                )
                continue
            try:
                for candidate in companions.values():
                    pq.read_table(candidate, columns=[])
            except _UNREADABLE:
                continue
            if not ids - self.stored_ids():
                continue  # everything in it was fetched again meanwhile
            for kind, candidate in companions.items():
                os.replace(candidate, self.path / kind / name)
                data["parts"][kind].append(name)
            os.replace(file, self.path / "events" / name)
            data["parts"]["events"].append(name)
            covered = _ranges(meta.get("covered") or [])
            lost = merge_ranges(covered + _ranges(meta.get("span") or []))
            if lost:
                data["ranges"][name] = _pairs(lost)
            if covered:
                merged = [(_parse(a), _parse(b)) for a, b in data["covered"]] + covered
                data["covered"] = _pairs(merge_ranges(merged))
            back.append(name)
            self._journal(f"took back events/{name} (and its batch) from quarantine: readable again")
        if back:
            self._save_manifest(data)
        return back

    def compact(self, *, small_rows: int | None = None, min_parts: int = 2) -> dict[str, int]:
        """Merge parts: the events parts with fewer than ``small_rows`` rows (all when None) with their steps and
        properties into one batch, and each of jobs and audits into one part. Atomic: the new parts are written,
        then the manifest switches to them in one rename, then the merged parts are removed (a crash in between
        leaves files the next write recognises). Returns the number of parts merged per kind."""
        with self._lock:
            data = self._tidy(self.manifest())
            merged: dict[str, list[str]] = {}
            events = data["parts"]["events"]
            if small_rows is None:
                chosen = list(events)
            else:
                chosen = []
                for name in events:
                    file = self.path / "events" / name
                    try:
                        rows = pq.read_metadata(file).num_rows
                    except _UNREADABLE as exc:
                        raise self._damaged(file, exc) from None
                    if rows < small_rows:
                        chosen.append(name)
            if len(chosen) >= min_parts:
                chosen_set = set(chosen)
                batch = {
                    kind: [n for n in data["parts"][kind] if n in chosen_set or n not in set(events)]
                    for kind in LOG_KINDS
                }
                logs = self._tables({**data, "parts": {**data["parts"], **batch}})
                name = self._part_name()
                ranges = merge_ranges(r for n in chosen for r in _ranges(data["ranges"].get(n, [])))
                covered_now = [(_parse(a), _parse(b)) for a, b in data["covered"]]
                claimed = remove_ranges(ranges, remove_ranges(ranges, covered_now))  # ranges within coverage
                for kind, frame in (
                    ("steps", logs.steps),
                    ("properties", logs.properties),
                    ("events", logs.events),
                ):
                    if not batch[kind]:
                        continue
                    meta = {
                        "covered": _pairs(claimed),
                        "span": _pairs(ranges),
                        "replaces": batch[kind],
                        "app": data.get("app", {}),
                    }
                    keep = [n for n in data["parts"][kind] if n not in set(batch[kind])]
                    data["parts"][kind] = keep + (
                        [self._write_part(kind, frame, name, meta)] if len(frame) else []
                    )
                    merged[kind] = batch[kind]
                for n in chosen:
                    data["ranges"].pop(n, None)
                if ranges and "events" in merged and data["parts"]["events"][-1:] == [name]:
                    data["ranges"][name] = _pairs(ranges)
            for kind in ("jobs", "audits"):
                names = data["parts"][kind]
                if len(names) < min_parts:
                    continue
                if kind == "jobs":
                    frame = self._read("jobs", JOB_COLUMNS, data)
                else:
                    frame = self._read("audits", None, data).drop_duplicates("id", ignore_index=True)
                merged[kind] = list(names)
                data["parts"][kind] = (
                    [self._write_part(kind, frame, meta={"replaces": list(names)})] if len(frame) else []
                )
            if merged:
                self._save_manifest(data)
                self._ids = None
                for kind, names in merged.items():
                    for old in names:
                        (self.path / kind / old).unlink(missing_ok=True)
                self._journal(
                    routine=True,
                    text="compacted "
                    + ", ".join(f"{len(v)} {k} part(s)" for k, v in merged.items())
                    + " into one part each (their content is in the new parts)",
                )
            return {k: len(v) for k, v in merged.items()}

    def compact_if_needed(self) -> dict[str, int]:
        """Compact when a kind has more than :data:`COMPACT_AT` parts (called at the end of each fetch)."""
        data = self.manifest()
        if all(len(data["parts"][k]) <= COMPACT_AT for k in KINDS):
            return {}
        return self.compact(small_rows=SMALL_PART_ROWS)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


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
        return AppStore(path, tenant_id.lower(), service_principal_id.lower())

    def app_stores(self) -> list[AppStore]:
        """Every app folder in the store (one with a manifest or with parts), readable or not."""
        out = []
        if not self.root.exists():
            return out
        for tenant_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for app_dir in sorted(p for p in tenant_dir.iterdir() if p.is_dir()):
                store = AppStore(app_dir, tenant_dir.name, app_dir.name)
                if (app_dir / MANIFEST).exists() or store._has_parts():
                    out.append(store)
        return out

    def apps(self, *, counts: bool = True) -> list[dict]:
        """Every app in the store with what is known of it: tenant, ids, name, covered range (fetched windows;
        none for imports) and, with ``counts``, the number of entries and the times of the first and last
        (from the Parquet footers, not the data). An app whose files cannot be read is listed with ``problem``
        (what and which file) instead of stopping the others."""
        out = []
        for store in self.app_stores():
            row: dict = {
                "tenant_id": store.tenant_id,
                "service_principal_id": store.service_principal_id,
                "display_name": None,
                "app_id": None,
                "covered_from": None,
                "covered_to": None,
                "path": str(store.path),
            }
            out.append(row)
            try:
                data = store.manifest()
                covered = data["covered"]
                row.update(
                    display_name=data.get("app", {}).get("display_name"),
                    app_id=data.get("app", {}).get("app_id"),
                    covered_from=covered[0][0] if covered else None,
                    covered_to=covered[-1][1] if covered else None,
                )
                if counts:
                    entries, first, last = store._snapshot(store._entry_span)
                    row.update(entries=entries, first_entry=first, last_entry=last)
            except StoreError as exc:
                row["problem"] = exc.message
        return out

    def find(self, app: str, tenant_id: str | None = None) -> AppStore:
        """Resolve APP (display name, appId or service principal id) among the stored apps, offline."""
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
            raise ConfigError(
                f"No app matching {app!r} in the store at {self.root}.",
                remedy=f"Fetch or import it first. Apps in the store: {known}.",
            )
        if len(exact) > 1:
            listing = "; ".join(f"{a['display_name']} ({a['service_principal_id']})" for a in exact)
            raise ConfigError(f"{app!r} matches several stored apps: {listing}.", remedy="Use the object id.")
        a = exact[0]
        if a.get("problem"):
            raise StoreError(a["problem"], remedy=_repair_remedy(self.root))
        return AppStore(Path(a["path"]), a["tenant_id"], a["service_principal_id"])

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


_SYSTEM_POOL = pa.system_memory_pool()


def _without_duplicates(frame: pd.DataFrame, subset: list[str] | None) -> pd.DataFrame:
    """``frame.drop_duplicates(subset)``, without its copy of every column when there is nothing to drop (the
    usual case: the store drops entries it holds already when they are written)."""
    if not len(frame):
        return frame
    duplicated = frame.duplicated(subset)
    return frame[~duplicated].reset_index(drop=True) if duplicated.any() else frame


def _first_value(table: pa.Table, column: str) -> tuple[bool, object]:
    """A sort key for a part: its smallest ``column`` value (parts without one last)."""
    value = pc.min(table.column(column)).as_py()
    return (value is None, value if value is not None else 0)


def _first_of_each(column: pa.ChunkedArray) -> np.ndarray | None:
    """A mask keeping the first row of each value of ``column``; None when every value is already unique."""
    if pc.count_distinct(column, mode="all").as_py() == len(column):
        return None
    codes = pd.factorize(pd.Series(column.combine_chunks().to_numpy(zero_copy_only=False)))[0]
    first = np.zeros(len(codes), dtype=bool)
    first[np.unique(codes, return_index=True)[1]] = True
    return first


def _order_if_unsorted(column: pa.ChunkedArray) -> pa.Array | None:
    """Stable sort indices of ``column`` (nulls last); None when it is already in order."""
    values = column.combine_chunks()
    if column.null_count == 0 and (pa.types.is_timestamp(values.type) or pa.types.is_integer(values.type)):
        numbers = values.cast(pa.int64()).to_numpy()
        if len(numbers) < 2 or bool(np.all(numbers[1:] >= numbers[:-1])):
            return None
    return pc.array_sort_indices(values, order="ascending", null_placement="at_end")  # a stable sort


def _columnwise(table: pa.Table, change: Callable[[pa.ChunkedArray], pa.ChunkedArray]) -> pa.Table:
    """``change`` applied to each column in turn; each old column is released before the next is made, so the
    peak is the table plus one column, not two tables."""
    for i in range(table.num_columns):
        table = table.set_column(i, table.field(i), change(table.column(i)))
    return table


class _StoredTables(Tables):
    """Tables whose events are read now and whose steps and properties are read when first used, from the
    manifest the events came from (or the current one, should a compaction have removed those parts)."""

    def __init__(self, app_store: AppStore, data: dict) -> None:
        self.events = app_store._events(data)
        self.rejects = []
        self._app_store, self._data = app_store, data
        self._loaded: dict[str, pd.DataFrame] = {}

    def _get(self, name: str) -> pd.DataFrame:
        if name not in self._loaded:
            read = self._app_store._steps if name == "steps" else self._app_store._properties
            try:
                self._loaded[name] = read(self._data)
            except FileNotFoundError:
                self._loaded[name] = self._app_store._snapshot(read)
        return self._loaded[name]

    def steps_of(self, event_ids: Iterable[str]) -> pd.DataFrame:
        """The steps of the given entries only, read from the parts without reading the rest (when the whole
        steps table is not in memory already)."""
        wanted = sorted({str(i) for i in event_ids})
        if "steps" in self._loaded:
            steps = self._loaded["steps"]
            return steps[steps["event_id"].isin(wanted)].reset_index(drop=True)
        if not wanted:
            return self._app_store._read_empty(STEP_COLUMNS)
        store, data = self._app_store, self._data
        try:
            return store._steps(data, filters=[("event_id", "in", wanted)])
        except FileNotFoundError:
            return store._snapshot(lambda fresh: store._steps(fresh, filters=[("event_id", "in", wanted)]))

    @property  # type: ignore[override]
    def steps(self) -> pd.DataFrame:
        return self._get("steps")

    @steps.setter
    def steps(self, value: pd.DataFrame) -> None:
        self._loaded["steps"] = value

    @property  # type: ignore[override]
    def properties(self) -> pd.DataFrame:
        return self._get("properties")

    @properties.setter
    def properties(self, value: pd.DataFrame) -> None:
        self._loaded["properties"] = value
