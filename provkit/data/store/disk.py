"""The store folder's files: names and limits, the writer lock (one writer per app folder across processes),
the store root, and reading a part's own metadata.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import platformdirs

from provkit.data.deferred import deferred
from provkit.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:  # imported on first use: see provkit.data.deferred
    pa = deferred("pyarrow")
    pq = deferred("pyarrow.parquet")

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
if sys.platform == "win32":  # pragma: no cover - Windows
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

else:  # POSIX
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


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
    return Path(platformdirs.user_data_dir("provkit", appauthor=False)) / "store"


def _regular(file: Path) -> None:
    """FileNotFoundError when ``file`` is gone, IsADirectoryError when it is not a regular file (pyarrow would
    read a folder as an empty dataset); one stat, so a part removed meanwhile is reported as gone."""
    if not stat.S_ISREG(os.stat(file).st_mode):
        raise IsADirectoryError(errno.EISDIR, "not a regular file", str(file))


def _part_meta(file: Path) -> dict[str, Any] | None:
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


def _unreadable() -> tuple[type[BaseException], ...]:
    """What reading a damaged file raises, for ``except``: OSError, ValueError, and pyarrow's errors once pyarrow is
    loaded (none can be raised before; looked up when an exception is being matched, so the store imports
    without pyarrow)."""
    arrow = sys.modules.get("pyarrow")
    return (OSError, ValueError) if arrow is None else (OSError, arrow.ArrowException, ValueError)


def _short(exc: BaseException) -> str:
    """The first line of an error, without pyarrow's repetition of the file name."""
    text = (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).strip().splitlines()
    line = re.sub(r"^Could not open Parquet input source '[^']*': ", "", text[0]) if text else ""
    return line[:200] or type(exc).__name__
