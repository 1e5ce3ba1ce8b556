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

The modules of this package: :mod:`~provkit.data.store.disk` (file names, the writer lock, the root),
:mod:`~provkit.data.store.ranges` (covered time ranges), :mod:`~provkit.data.store.layout` (one app folder:
manifest, recovery, atomic writes, journal), :mod:`~provkit.data.store.reading` (tables as of one manifest),
:mod:`~provkit.data.store.repair` (check, repair, compaction) and :mod:`~provkit.data.store.app` (the public
:class:`AppStore` and :class:`Store`). Import the public names from here.
"""

from provkit.data.store.app import AppStore, Store, WriteResult
from provkit.data.store.disk import (
    COMPACT_AT,
    JOURNAL,
    KINDS,
    LOCK_FILE,
    LOCK_TIMEOUT,
    LOG_KINDS,
    MANIFEST,
    QUARANTINE,
    SMALL_PART_ROWS,
    default_root,
    lock_timeout,
)
from provkit.data.store.ranges import merge_ranges, remove_ranges, subtract_ranges
from provkit.data.store.repair import CheckReport
from provkit.errors import StoreError

__all__ = [
    "COMPACT_AT",
    "JOURNAL",
    "KINDS",
    "LOCK_FILE",
    "LOCK_TIMEOUT",
    "LOG_KINDS",
    "MANIFEST",
    "QUARANTINE",
    "SMALL_PART_ROWS",
    "AppStore",
    "CheckReport",
    "Store",
    "StoreError",
    "WriteResult",
    "default_root",
    "lock_timeout",
    "merge_ranges",
    "remove_ranges",
    "subtract_ranges",
]
