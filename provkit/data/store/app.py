"""The store's public classes: :class:`AppStore` (one app's data: writes and coverage, on top of reading and
repair) and :class:`Store` (the root, one folder per tenant and app).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provkit.data.deferred import deferred
from provkit.data.store.disk import _GUIDISH, MANIFEST, _repair_remedy, default_root
from provkit.data.store.ranges import (
    _pairs,
    _parse,
    _span,
    _utc,
    merge_ranges,
    remove_ranges,
    subtract_ranges,
)
from provkit.data.store.repair import _AppRepair
from provkit.data.tables import (
    Tables,
)
from provkit.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import pandas as pd
else:  # imported on first use: see provkit.data.deferred
    pd = deferred("pandas")


@dataclass
class WriteResult:
    new: int
    duplicates: int


class AppStore(_AppRepair):
    """One app's data in the store.

    Writers hold the app folder's lock (one writer across threads and processes); readers, in any process, see
    the state of one committed manifest. See the module docstring for what the store guarantees.
    """

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

    def write_audits(self, audits: list[dict[str, Any]]) -> int:
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
            self._write_bytes(self.path / "meta" / f"{name}.json", json.dumps(obj, indent=1).encode())

    def set_app(self, info: dict[str, Any]) -> None:
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

    def record_fetch(self, summary: dict[str, Any]) -> None:
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
        out: list[AppStore] = []
        if not self.root.exists():
            return out
        for tenant_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for app_dir in sorted(p for p in tenant_dir.iterdir() if p.is_dir()):
                store = AppStore(app_dir, tenant_dir.name, app_dir.name)
                if (app_dir / MANIFEST).exists() or store._has_parts():
                    out.append(store)
        return out

    def apps(self, *, counts: bool = True) -> list[dict[str, Any]]:
        """Every app in the store with what is known of it: tenant, ids, name, covered range (fetched windows;
        none for imports) and, with ``counts``, the number of entries and the times of the first and last
        (from the Parquet footers, not the data). An app whose files cannot be read is listed with ``problem``
        (what and which file) instead of stopping the others."""
        out = []
        for store in self.app_stores():
            row: dict[str, Any] = {
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
