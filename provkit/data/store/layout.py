"""One app's folder on disk: the manifest and its recovery from the parts, atomic file writes, the journal,
setting files aside, and writing and reading one part.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from provkit.data.deferred import deferred
from provkit.data.store.disk import (
    _META_KEY,
    JOURNAL,
    KINDS,
    MANIFEST,
    QUARANTINE,
    _folder_lock,
    _part_meta,
    _regular,
    _repair_remedy,
    _short,
    _unreadable,
)
from provkit.data.store.ranges import _manifest_problem, _pairs, _parse, _ranges, merge_ranges
from provkit.errors import StoreError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
else:  # imported on first use: see provkit.data.deferred
    pd = deferred("pandas")
    pa = deferred("pyarrow")
    pq = deferred("pyarrow.parquet")

log = logging.getLogger("provkit.data.store")

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


class _AppFolder:
    """One app's folder: the manifest (loaded, recovered, rebuilt from the parts), placing and setting aside
    files, the journal, and writing and reading one part. :class:`~provkit.data.store.AppStore` builds on it."""

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
    def writing(self) -> Iterator[Self]:
        """Hold the app folder's writer lock for a sequence of writes (a whole fetch); re-entrant."""
        with self._lock:
            yield self

    # ---- manifest ------------------------------------------------------------------------------------------
    def _empty_manifest(self) -> dict[str, Any]:
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

    def _load_manifest(self) -> tuple[dict[str, Any] | None, str | None]:
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

    def manifest(self) -> dict[str, Any]:
        """The committed manifest. One that is missing while parts exist, or that cannot be parsed, is set aside
        and rebuilt from the parts (under the writer lock; in memory only when the folder cannot be written)."""
        data, problem = self._load_manifest()
        if data is not None:
            return data
        if problem is None and not self._has_parts():
            return self._empty_manifest()
        return self._recover(problem)

    def _write_bytes(self, path: Path, data: bytes) -> None:
        """Every file the store writes goes through here: temporary file, fsync, rename."""
        _atomic_write_bytes(path, data)

    def _save_manifest(self, data: dict[str, Any]) -> None:
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

    def _recover(self, problem: str | None) -> dict[str, Any]:
        try:
            self._lock.acquire()
        except StoreError:  # a folder we cannot write: rebuild for this reader only
            data, _ = self._rebuild(dry=True)
            log.warning(
                "The manifest of %s is %s; read from the parts, not saved.", self.path, problem or "missing"
            )
            return data
        try:
            loaded, again = self._load_manifest()  # another process may have rebuilt it meanwhile
            if loaded is not None:
                return loaded
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

    def _rebuild(self, *, dry: bool) -> tuple[dict[str, Any], int]:
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
        metas: dict[tuple[str, str], dict[str, Any] | None] = {}
        for kind in KINDS:
            for name in self._files_on_disk(kind):
                try:
                    metas[(kind, name)] = _part_meta(self.path / kind / name)
                except _unreadable() as exc:
                    if not dry:
                        self._set_aside(self.path / kind / name, f"it cannot be read ({_short(exc)})")
        adopted = self._place(data, metas, listed=set(), dry=dry)
        return data, adopted

    def _place(
        self,
        data: dict[str, Any],
        metas: dict[tuple[str, str], dict[str, Any] | None],
        *,
        listed: set[tuple[str, str]],
        dry: bool,
        listed_metas: dict[tuple[str, str], dict[str, Any] | None] | None = None,
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
        newest_app: tuple[str, dict[str, Any]] | None = None
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
                record_part_ranges(data, name, meta)
                if isinstance(meta.get("app"), dict) and (newest_app is None or name > newest_app[0]):
                    newest_app = (name, meta["app"])
        if newest_app and not any(data.get("app", {}).values()):
            data["app"] = dict(newest_app[1])
        return adopted

    def _tidy(self, data: dict[str, Any]) -> dict[str, Any]:
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
        metas: dict[tuple[str, str], dict[str, Any] | None] = {}
        for kind in KINDS:
            for name in self._files_on_disk(kind):
                if (kind, name) in listed:
                    continue
                try:
                    metas[(kind, name)] = _part_meta(self.path / kind / name)
                except _unreadable() as exc:
                    self._set_aside(
                        self.path / kind / name,
                        f"the manifest does not list it and it cannot be read ({_short(exc)})",
                    )
        if not metas:
            return data
        listed_metas: dict[tuple[str, str], dict[str, Any] | None] = {}
        for kind, name in listed:  # what the committed parts replaced, to recognise a compaction's leftovers
            try:
                listed_metas[(kind, name)] = _part_meta(self.path / kind / name)
            except _unreadable():
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
        self, kind: str, df: pd.DataFrame, name: str | None = None, meta: dict[str, Any] | None = None
    ) -> str:
        name = name or self._part_name()
        table = pa.Table.from_pandas(df, preserve_index=False)
        info = {"kind": kind, "batch": name, **(meta or {})}
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), _META_KEY: json.dumps(info).encode()}
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        _atomic_write_bytes(self.path / kind / name, sink.getvalue().to_pybytes())
        return name

    def _read_part(
        self, file: Path, columns: list[str] | None = None, filters: list[Any] | None = None
    ) -> pa.Table:
        try:
            _regular(file)
            return pq.read_table(file, columns=columns, filters=filters)
        except FileNotFoundError:
            raise
        except _unreadable() as exc:
            raise self._damaged(file, exc) from None

    def meta(self, name: str) -> object | None:
        """A metadata file's JSON, None when there is none; a StoreError naming the file when it is damaged."""
        file = self.path / "meta" / f"{name}.json"
        try:
            value: object = json.loads(file.read_text(encoding="utf-8"))
            return value
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

    def _damaged(self, file: Path, exc: BaseException) -> StoreError:
        return StoreError(
            f"The store file {file} cannot be read ({_short(exc)}).", remedy=_repair_remedy(self.root)
        )


def record_part_ranges(data: dict[str, Any], name: str, meta: dict[str, Any]) -> None:
    """An events part adopted back into the manifest ``data`` from its own metadata: the time it covered joins
    the covered ranges, and its entries' range is recorded as the part's, so dropping it later re-opens it."""
    covered = _ranges(meta.get("covered") or [])
    lost = merge_ranges(covered + _ranges(meta.get("span") or []))
    if lost:
        data["ranges"][name] = _pairs(lost)
    if covered:
        merged = [(_parse(a), _parse(b)) for a, b in data["covered"]] + covered
        data["covered"] = _pairs(merge_ranges(merged))
