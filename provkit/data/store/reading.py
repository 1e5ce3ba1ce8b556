"""Reading an app's parts as of one committed manifest: tables (the log tables read lazily), jobs, audits,
metadata, and the duplicate-free, sorted frames the analysis expects.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from provkit.data import tables as _tables
from provkit.data.deferred import deferred
from provkit.data.store.disk import _READ_ATTEMPTS, T, _regular, _repair_remedy, _unreadable
from provkit.data.store.layout import _AppFolder
from provkit.data.store.ranges import _iso
from provkit.data.tables import (
    EVENT_COLUMNS,
    JOB_COLUMNS,
    PROPERTY_COLUMNS,
    STEP_COLUMNS,
    LazyTables,
    Tables,
)
from provkit.errors import StoreError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:  # imported on first use: see provkit.data.deferred
    np = deferred("numpy")
    pd = deferred("pandas")
    pa = deferred("pyarrow")
    pc = deferred("pyarrow.compute")
    pq = deferred("pyarrow.parquet")


class _AppReader(_AppFolder):
    """Reads, as of one committed manifest; readers take no lock."""

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
            self._ids.update(cast("list[str]", table.column("id").to_pylist()))  # ids are never null
        self._ids_parts = parts
        return self._ids

    def _snapshot(self, read: Callable[[dict[str, Any]], T]) -> T:
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

    def _part_files(self, kind: str, data: dict[str, Any] | None = None) -> list[Path]:
        data = self.manifest() if data is None else data
        return [self.path / kind / name for name in data["parts"][kind]]

    def _read(
        self,
        kind: str,
        columns: dict[str, str] | None,
        data: dict[str, Any] | None = None,
        *,
        unique: str | None = None,
        order_by: str | None = None,
        filters: list[Any] | None = None,
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
        pa.set_memory_pool(_system_pool())
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

    def _tables(self, data: dict[str, Any]) -> Tables:
        if not data["parts"]["events"]:
            return _tables.empty_tables()
        return Tables(events=self._events(data), steps=self._steps(data), properties=self._properties(data))

    def _events(self, data: dict[str, Any]) -> pd.DataFrame:
        if not data["parts"]["events"]:
            return _tables.empty_tables().events
        return self._read("events", EVENT_COLUMNS, data, unique="id", order_by="activity_time")

    def _steps(self, data: dict[str, Any], filters: list[Any] | None = None) -> pd.DataFrame:
        steps = self._read("steps", STEP_COLUMNS, data, filters=filters)
        return _without_duplicates(steps, ["event_id", "step_order"])

    def _properties(self, data: dict[str, Any]) -> pd.DataFrame:
        return _without_duplicates(self._read("properties", PROPERTY_COLUMNS, data), None)

    def events(self) -> pd.DataFrame:
        return self.tables().events

    def _entry_span(self, data: dict[str, Any]) -> tuple[int, str | None, str | None]:
        """(entries, first activity time, last activity time) from the events parts' footers."""
        count, first, last = 0, None, None
        for file in self._part_files("events", data):
            try:
                _regular(file)
                meta = pq.ParquetFile(file).metadata
            except FileNotFoundError:
                raise
            except _unreadable() as exc:
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

    def audit_records(self) -> list[dict[str, Any]]:
        df = self.audits()
        return [json.loads(r) for r in df["raw"]] if len(df) else []


@functools.cache
def _system_pool() -> pa.MemoryPool:
    return pa.system_memory_pool()


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


def _first_of_each(column: pa.ChunkedArray[Any]) -> np.ndarray | None:
    """A mask keeping the first row of each value of ``column``; None when every value is already unique."""
    if pc.count_distinct(column, mode="all").as_py() == len(column):
        return None
    codes = pd.factorize(pd.Series(column.combine_chunks().to_numpy(zero_copy_only=False)))[0]
    first = np.zeros(len(codes), dtype=bool)
    first[np.unique(codes, return_index=True)[1]] = True
    return first


def _order_if_unsorted(column: pa.ChunkedArray[Any]) -> pa.Array[Any] | None:
    """Stable sort indices of ``column`` (nulls last); None when it is already in order."""
    values = column.combine_chunks()
    if column.null_count == 0 and (pa.types.is_timestamp(values.type) or pa.types.is_integer(values.type)):
        numbers = values.cast(pa.int64()).to_numpy()
        if len(numbers) < 2 or bool(np.all(numbers[1:] >= numbers[:-1])):
            return None
    return pc.array_sort_indices(values, order="ascending", null_placement="at_end")  # a stable sort


def _columnwise(table: pa.Table, change: Callable[[pa.ChunkedArray[Any]], pa.ChunkedArray[Any]]) -> pa.Table:
    """``change`` applied to each column in turn; each old column is released before the next is made, so the
    peak is the table plus one column, not two tables."""
    for i in range(table.num_columns):
        table = table.set_column(i, table.field(i), change(table.column(i)))
    return table


class _StoredTables(LazyTables):
    """Tables whose events are read now and whose steps and properties are read when first used, from the
    manifest the events came from (or the current one, should a compaction have removed those parts)."""

    def __init__(self, app_store: _AppReader, data: dict[str, Any]) -> None:
        super().__init__(app_store._events(data))
        self._app_store, self._data = app_store, data

    def _read(self, name: str) -> pd.DataFrame:
        read = self._app_store._steps if name == "steps" else self._app_store._properties
        try:
            return read(self._data)
        except FileNotFoundError:
            return self._app_store._snapshot(read)

    def steps_of(self, event_ids: Iterable[str]) -> pd.DataFrame:
        """The steps of the given entries only, read from the parts without reading the rest (when the whole
        steps table is not in memory already)."""
        wanted = sorted({str(i) for i in event_ids})
        loaded = self._loaded_steps_of(wanted)
        if loaded is not None:
            return loaded
        if not wanted:
            return self._app_store._read_empty(STEP_COLUMNS)
        store, data = self._app_store, self._data
        try:
            return store._steps(data, filters=[("event_id", "in", wanted)])
        except FileNotFoundError:
            return store._snapshot(lambda fresh: store._steps(fresh, filters=[("event_id", "in", wanted)]))
