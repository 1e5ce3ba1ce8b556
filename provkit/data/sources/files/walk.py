"""Walking one decoded file record by record: JSON arrays, objects and JSONL read incrementally (a broken
element costs that record, not the file), and CSV rows with their line numbers.
"""

from __future__ import annotations

import bisect
import csv
import functools
import io
import json
import re
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from provkit.data.sources.files.formats import (
    _TOP_ALIASES,
    _V1_FIELDS,
    FileLoad,
    Reject,
    _Bad,
    _Ctx,
    _norm,
    _Notes,
    _show,
    _Text,
)
from provkit.data.sources.files.records import _from_log_analytics, _normalise_event
from provkit.data.sources.files.sniff import (
    _DECODER,
    _STREAMED,
    TOO_DEEP,
    _is_la_row,
    _skip,
    _Sniffed,
    _unreadable,
)

# --- JSON walking ------------------------------------------------------------------------------------------------


_EVENT_KEYS = frozenset(
    [f.lower() for f in _V1_FIELDS]
    + list(_TOP_ALIASES)
    + ["timegenerated", "resulttype", "provisioningsteps"]
)


class _Stop(Exception):
    """The rest of a JSON file cannot be read; already reported."""


class _Lines:
    """1-based line of a character offset."""

    def __init__(self, text: str) -> None:
        self._newlines = [m.start() for m in re.finditer("\n", text)]

    def __call__(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1


@dataclass
class _FileReader:
    """Reads one decoded file into the shared load; every record passes through :meth:`take`."""

    t: _Text
    load: FileLoad
    notes: _Notes
    count: int = 0

    @functools.cached_property
    def lines(self) -> _Lines:
        return _Lines(self.t.text)

    def take(self, line: int | None, build: Callable[[_Ctx], dict[str, Any]]) -> dict[str, Any] | None:
        self.count += 1
        self.load.read += 1
        ctx = _Ctx(self.t.name, line, self.notes)
        try:
            record = build(ctx)
        except _Bad as exc:
            self.load.rejects.append(Reject(self.t.name, line, self.count, str(exc)))
            return None
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
            # A shape nobody foresaw must not become a traceback: the record is rejected and named instead.
            reason = f"record has an unexpected shape ({type(exc).__name__}: {_show(str(exc), 120)})"
            self.load.rejects.append(Reject(self.t.name, line, self.count, reason))
            return None
        self.load.records.append(record)
        self.load.origins.append(Reject(self.t.name, line, self.count, ""))
        return record

    def reject(self, line: int | None, reason: str) -> None:
        self.count += 1
        self.load.read += 1
        self.load.rejects.append(Reject(self.t.name, line, self.count, reason))

    # JSON ------------------------------------------------------------------------------------------------------

    def json_item(self, pos: int, value: Any) -> None:
        """One element of a top-level array or a JSONL value: a page, a Log Analytics row or an event."""
        line = self.lines(pos)
        if (
            isinstance(value, dict)
            and isinstance(value.get("value"), list)
            and "activityDateTime" not in value
        ):
            for entry in value["value"]:
                self.take(line, functools.partial(self._entry, entry))
            return
        self.take(line, lambda ctx: self._entry(value, ctx))

    @staticmethod
    def _entry(value: Any, ctx: _Ctx) -> dict[str, Any]:
        if isinstance(value, dict) and _is_la_row(value):
            return _from_log_analytics(value, ctx)
        return _normalise_event(value, ctx)

    def walk_array(self, i: int, on_item: Callable[[int, Any], None], *, peers: bool = True) -> int:
        """Streams the array at ``i`` (``text[i] == '['``); returns the offset after it.

        A broken element is rejected with its line; if a later element that looks like its peers follows, reading
        resumes there, otherwise the rest of the file is given up (raises _Stop).
        """
        text = self.t.text
        i = _skip(text, i + 1)
        if text.startswith("]", i):
            return i + 1
        reference: AbstractSet[str] | None = _EVENT_KEYS if peers else None
        first = True
        while True:
            start = i
            if start >= len(text):
                self._cut_between(start)
            try:
                value, i = _DECODER.raw_decode(text, start)
            except json.JSONDecodeError as exc:
                i = self._broken_element(start, exc, reference if peers else None)
                continue
            except RecursionError:
                i = self._too_deep(start, reference if peers else None)
                continue
            if first and peers and isinstance(value, dict):
                reference = {str(k).lower() for k in value}
            first = False
            on_item(start, value)
            i = _skip(text, i)
            if text.startswith(",", i):
                i = _skip(text, i + 1)
            elif text.startswith("]", i):
                return i + 1
            elif i >= len(text):
                self._cut_between(i)
            else:
                self.notes.add(
                    self.t.name,
                    f"expected ',' or ']' but found {text[i]!r}; the rest is not read",
                    self.lines(i),
                )
                raise _Stop

    def _cut_between(self, pos: int) -> None:
        self.notes.add(
            self.t.name,
            "the JSON ends before its array closes (cut download?): the records before the cut were read",
            self.lines(pos),
        )
        raise _Stop

    def _broken_element(
        self, start: int, exc: json.JSONDecodeError, reference: AbstractSet[str] | None
    ) -> int:
        text = self.t.text
        resume = self._resync(start, reference) if reference is not None else None
        where = f"line {exc.lineno} column {exc.colno}"
        if resume is not None:
            self.reject(
                self.lines(start),
                f"not valid JSON ({exc.msg}: {where}); skipped to the next record on line {self.lines(resume)}",
            )
            return resume
        if not text.rstrip().endswith(("]", "}")):
            self.reject(self.lines(start), f"record cut off where the file ends ({exc.msg}: {where})")
            self.notes.add(self.t.name, "the file ends inside a record (cut download?)")
        else:
            self.reject(
                self.lines(start), f"not valid JSON ({exc.msg}: {where}); the rest of the file is not read"
            )
        raise _Stop

    def _too_deep(self, start: int, reference: AbstractSet[str] | None) -> int:
        """Rejects an element nested too deeply for the JSON parser; returns where reading resumes."""
        resume = self._resync(start, reference) if reference is not None else None
        if resume is not None:
            self.reject(
                self.lines(start), f"{TOO_DEEP}; skipped to the next record on line {self.lines(resume)}"
            )
            return resume
        self.reject(self.lines(start), f"{TOO_DEEP}; the rest of the file is not read")
        raise _Stop

    def _resync(self, start: int, reference: AbstractSet[str]) -> int | None:
        """Offset of the next array element after ``start`` whose keys mostly match ``reference``."""
        text = self.t.text
        need = 4 if reference is _EVENT_KEYS else max(2, len(reference) // 2)
        for tries, m in enumerate(re.finditer(r",\s*\{", text[start + 1 :])):
            if tries > 100_000:
                return None
            pos = start + 1 + m.end() - 1
            try:
                value, end = _DECODER.raw_decode(text, pos)
            except (json.JSONDecodeError, RecursionError):
                continue
            if not isinstance(value, dict) or len(reference & {str(k).lower() for k in value}) < need:
                continue
            after = _skip(text, end)
            if after >= len(text) or text[after] in ",]":
                return pos
        return None

    def walk_object(
        self, i: int, handlers: dict[str, Callable[[int, dict[str, Any]], int]]
    ) -> tuple[dict[str, Any], int]:
        """Reads the object at ``i``; members named in ``handlers`` are streamed by them (given their offset and the
        members read so far, they return the offset after the value). Returns (other members, end offset)."""
        text = self.t.text
        members: dict[str, Any] = {}
        i = _skip(text, i + 1)
        if text.startswith("}", i):
            return members, i + 1
        while True:
            try:
                key, i = _DECODER.raw_decode(text, i)
                i = _skip(text, i)
                if not isinstance(key, str) or not text.startswith(":", i):
                    raise json.JSONDecodeError("Expecting property name and ':'", text, i)
                i = _skip(text, i + 1)
                if key in handlers and text.startswith(("[", "{"), i):
                    i = handlers[key](i, members)
                    members[key] = _STREAMED
                else:
                    members[key], i = _DECODER.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                cut = exc.pos >= len(text.rstrip()) - 1 or not text.rstrip().endswith("}")
                what = "the JSON ends early (cut download?)" if cut else f"the JSON is broken ({exc.msg})"
                self.notes.add(self.t.name, f"{what}; the records before it were read", exc.lineno)
                raise _Stop from None
            except RecursionError:
                self.notes.add(self.t.name, f"{TOO_DEEP}; the records before it were read", self.lines(i))
                raise _Stop from None
            i = _skip(text, i)
            if text.startswith(",", i):
                i = _skip(text, i + 1)
            elif text.startswith("}", i):
                return members, i + 1
            else:
                self.notes.add(
                    self.t.name,
                    "the JSON ends early (cut download?); the records before it were read",
                    self.lines(i),
                )
                raise _Stop

    def read_json(self, sniffed: _Sniffed) -> None:
        """Reads a JSON or JSONL file; raises InputError when it is cut or broken before its first record."""
        if sniffed.shape == "jsonl":
            self._read_jsonl()
            return
        text = self.t.text
        pos = _skip(text, 0)
        try:
            while pos < len(text):
                if text[pos] == "[":
                    end = self.walk_array(pos, self.json_item)
                elif text[pos] == "{":
                    end = self._read_object(pos)
                else:
                    self.notes.add(self.t.name, "text after the end of the JSON was ignored", self.lines(pos))
                    break
                pos = _skip(text, end)
                if pos < len(text):  # two downloads pasted together: read the next one too
                    self.notes.add(
                        self.t.name, "holds more than one JSON document; all were read", self.lines(pos)
                    )
        except _Stop:
            if self.count == 0:
                raise _unreadable(
                    self.t.name, "the JSON is cut off or broken before its first record", line=self.lines(pos)
                ) from None

    def _read_object(self, start: int) -> int:
        def rows(pos: int, table: dict[str, Any]) -> int:
            # A column without a name (not seen, but possible) is named by position, as CSV headers are.
            columns = [
                str(c.get("name") or f"column {n}") if isinstance(c, dict) else str(c)
                for n, c in enumerate(table.get("columns") or [], 1)
            ]
            if not columns:
                raise _Bad("rows before columns")

            def on_row(at: int, row: Any) -> None:
                line = self.lines(at)
                if not isinstance(row, list) or len(row) != len(columns):
                    size = len(row) if isinstance(row, list) else "not a list"
                    self.reject(line, f"row has {size} values but the table has {len(columns)} columns")
                    return
                self.take(line, lambda ctx: _from_log_analytics(dict(zip(columns, row, strict=True)), ctx))

            return self.walk_array(pos, on_row, peers=False)

        def table(pos: int) -> int:
            _members, end = self.walk_object(pos, {"rows": rows})
            return end

        def tables(pos: int, _members: dict[str, Any]) -> int:
            return self._walk_array_of_objects(pos, table)

        def value(pos: int, _members: dict[str, Any]) -> int:
            return self.walk_array(pos, self.json_item)

        try:
            members, end = self.walk_object(start, {"value": value, "tables": tables})
        except _Bad:
            raise _unreadable(
                self.t.name, "a Log Analytics table whose rows come before its columns"
            ) from None
        if "value" not in members and "tables" not in members and self.count == 0:
            if "activityDateTime" in {k for k in members} or _is_la_row(members):
                self.json_item(start, members)  # a single saved entry
            else:
                raise _unreadable(self.t.name, "a JSON object with neither 'value' nor 'tables'")
        return end

    def _walk_array_of_objects(self, i: int, on_object: Callable[[int], int]) -> int:
        text = self.t.text
        i = _skip(text, i + 1)
        while not text.startswith("]", i):
            if not text.startswith("{", i):
                self.notes.add(self.t.name, "expected a table object; the rest is not read", self.lines(i))
                raise _Stop
            i = _skip(text, on_object(i))
            if text.startswith(",", i):
                i = _skip(text, i + 1)
            elif not text.startswith("]", i):
                self._cut_between(i)
        return i + 1

    def _read_jsonl(self) -> None:
        text = self.t.text
        pos = 0
        number = 0
        while pos < len(text):
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            number += 1
            line = text[pos:end].strip()
            if line:
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    cut = end >= len(text.rstrip()) and (self.t.truncated or not line.endswith("}"))
                    why = "cut off where the file ends" if cut else "not valid JSON"
                    self.reject(number, f"{why} ({exc.msg}: column {exc.colno})")
                except RecursionError:
                    self.reject(number, TOO_DEEP)
                else:
                    self.json_item(pos, value)
            pos = end + 1

    # CSV -------------------------------------------------------------------------------------------------------

    def csv_rows(self, sniffed: _Sniffed) -> Iterator[tuple[int, list[str] | str]]:
        """(first line, cells) per data row, or (line, reason) for a row the CSV parser could not read.

        Blank lines and repeated header rows are skipped (the latter with a warning); when a truncated gzip stream
        cut the file, its last row is reported as cut off."""
        _allow_large_fields()
        body = self.t.text[sniffed.body_start :]
        offset = sniffed.header_line - 1
        reader = csv.reader(io.StringIO(body, newline=""), delimiter=sniffed.delimiter)
        header_key = [_norm(h) for h in sniffed.raw_header]
        previous_end = 0
        pending: tuple[int, list[str] | str] | None = None
        is_header = True
        while True:
            stuck = False
            try:
                row: list[str] | str = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                row = f"the CSV parser stopped: {exc}"
                stuck = reader.line_num == previous_end
            start = previous_end + 1 + offset
            previous_end = reader.line_num
            if is_header:
                is_header = False
                if stuck:
                    break
                continue
            if isinstance(row, list):
                if not any(cell.strip() for cell in row):
                    continue
                if _norm(row[0]) == header_key[0] and [_norm(c) for c in row] == header_key:
                    self.notes.add(self.t.name, "repeated header row skipped", start)
                    continue
            if pending is not None:
                yield pending
            pending = (start, row)
            if stuck:
                break
        if pending is not None:
            if self.t.truncated and isinstance(pending[1], list):
                pending = (pending[0], "row cut off where the compressed file ends")
            yield pending

    def cells(self, sniffed: _Sniffed, row: list[str]) -> dict[str, str] | str:
        """Header -> cell for a row of the right width, else the reason it is not read."""
        width = len(sniffed.header)
        if len(row) > width and not any(c.strip() for c in row[width:]):
            row = row[:width]
        if len(row) != width:
            return f"row has {len(row)} fields but the header has {width}"
        return dict(zip(sniffed.header, row, strict=True))


def _allow_large_fields() -> None:
    # A modified property can hold a group's whole member list: accept fields far above csv's 128 KiB default.
    if csv.field_size_limit() < 1 << 30:
        csv.field_size_limit(1 << 30)


def _set_path(record: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = record
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value
