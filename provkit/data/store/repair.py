"""Checking and repairing an app folder (``provkit store check --repair``) and compacting small parts."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from provkit.data.deferred import deferred
from provkit.data.store.disk import (
    COMPACT_AT,
    KINDS,
    LOG_KINDS,
    MANIFEST,
    QUARANTINE,
    SMALL_PART_ROWS,
    _part_meta,
    _short,
    _unreadable,
)
from provkit.data.store.layout import record_part_ranges
from provkit.data.store.ranges import _pairs, _parse, _ranges, merge_ranges, remove_ranges
from provkit.data.store.reading import _AppReader
from provkit.data.tables import (
    JOB_COLUMNS,
)
from provkit.errors import StoreError

if TYPE_CHECKING:
    import pyarrow.parquet as pq
else:  # imported on first use: see provkit.data.deferred
    pq = deferred("pyarrow.parquet")

log = logging.getLogger("provkit.data.store")


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

    def as_dict(self) -> dict[str, Any]:
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


@contextmanager
def _nothing() -> Iterator[None]:
    yield


class _AppRepair(_AppReader):
    """Check, repair, tidy and compaction; each step that moves or removes a file is journalled."""

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

    def tidy(self) -> dict[str, Any]:
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

    def _readopt(self, data: dict[str, Any]) -> list[str]:
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
            except _unreadable():
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
            except _unreadable():
                continue
            if not ids - self.stored_ids():
                continue  # everything in it was fetched again meanwhile
            for kind, candidate in companions.items():
                os.replace(candidate, self.path / kind / name)
                data["parts"][kind].append(name)
            os.replace(file, self.path / "events" / name)
            data["parts"]["events"].append(name)
            record_part_ranges(data, name, meta)
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
                    except _unreadable() as exc:
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
