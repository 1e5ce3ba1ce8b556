"""Reading files: the admin center's three CSV files joined on change id, Log Analytics CSV, and
:func:`read_files`, which detects each file's format and sends it to its reader.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from provkit.data.sources.files.formats import (
    _MAIN_INDEX,
    _PROPERTY_INDEX,
    _STEP_INDEX,
    ADMIN_CSV_COLUMNS,
    EXPECTED,
    FileLoad,
    Reject,
    _Bad,
    _Ctx,
    _norm,
    _Notes,
)
from provkit.data.sources.files.records import _from_log_analytics, _normalise_event, _properties, _steps
from provkit.data.sources.files.sniff import _load_text, _sniff, _Sniffed, _unreadable
from provkit.data.sources.files.walk import _FileReader, _set_path
from provkit.errors import InputError

# --- the three admin-center CSV files ----------------------------------------------------------------------------


def _read_admin_main(reader: _FileReader, sniffed: _Sniffed) -> list[dict[str, Any]]:
    paths = [_MAIN_INDEX.get(_norm(h)) for h in sniffed.header]
    if "activityDateTime" not in paths:
        raise _unreadable(
            reader.t.name,
            "a provisioning-log CSV without a date column (accepted: "
            + ", ".join(ADMIN_CSV_COLUMNS["activityDateTime"])
            + ")",
        )
    date_header = sniffed.header[paths.index("activityDateTime")]
    if "changeId" not in paths:
        reader.notes.add(reader.t.name, "no Change ID column: steps and modified properties cannot be joined")
    taken: set[str] = set()
    columns: list[tuple[str, str | None]] = []
    for header, path in zip(sniffed.header, paths, strict=True):
        if path is not None and path in taken:
            path = None  # a second spelling of the same field: keep it as an extra column
        if path is not None:
            taken.add(path)
        columns.append((header, path))
    events: list[dict[str, Any]] = []
    for line, row in reader.csv_rows(sniffed):
        if isinstance(row, str):
            reader.reject(line, row)
            continue
        cells = reader.cells(sniffed, row)
        if isinstance(cells, str):
            reader.reject(line, cells)
            continue

        def build(ctx: _Ctx, cells: dict[str, str] = cells) -> dict[str, Any]:
            record: dict[str, Any] = {"provisioningSteps": [], "modifiedProperties": []}
            for header, path in columns:
                value = cells[header]
                if path is None:
                    record[header] = value
                elif value.strip() != "":
                    _set_path(record, path, value.strip() if path != "activityDateTime" else value)
            if "activityDateTime" not in record:
                raise _Bad(f"'activityDateTime' missing (column '{date_header}' is empty)")
            return _normalise_event(record, ctx, time_label=f"'activityDateTime' (column '{date_header}')")

        event = reader.take(line, build)
        if event is not None:
            events.append(event)
    return events


@dataclass
class _Detail:
    file: str
    line: int
    change_id: str
    order: float
    item: dict[str, Any]


def _read_admin_details(reader: _FileReader, sniffed: _Sniffed, kind: str) -> list[_Detail]:
    index = _STEP_INDEX if kind == "steps" else _PROPERTY_INDEX
    paths = [index.get(_norm(h)) for h in sniffed.header]
    if "changeId" not in paths:
        raise _unreadable(
            reader.t.name,
            f"a {kind} file without a Change ID column, so its rows cannot be joined to events",
        )
    main_only = set(_MAIN_INDEX) - set(index)
    out: list[_Detail] = []
    for line, row in reader.csv_rows(sniffed):
        cells = row if isinstance(row, str) else reader.cells(sniffed, row)
        if isinstance(cells, str):
            reader.load.detail_rejects.append(Reject(reader.t.name, line, None, cells))
            reader.notes.add(reader.t.name, f"{kind} rows that cannot be read were not loaded", line)
            continue
        item: dict[str, Any] = {}
        change_id = ""
        order = float(len(out))
        for header, path in zip(sniffed.header, paths, strict=True):
            value = cells[header]
            if path == "changeId":
                change_id = value.strip()
            elif path == "_order":
                try:
                    order = float(value)
                except ValueError:
                    pass
            elif path is not None:
                item.setdefault(path, value if value != "" else None)
            elif _norm(header) not in main_only:
                item[header] = value  # unknown column: kept; columns repeating the event's fields are not
        if not change_id:
            reader.load.detail_rejects.append(Reject(reader.t.name, line, None, "row has no change id"))
            reader.notes.add(reader.t.name, f"{kind} rows without a change id were not loaded", line)
            continue
        ctx = _Ctx(reader.t.name, line, reader.notes)
        if kind == "steps":
            item = _steps([item], ctx)[0]
        else:
            item = _properties([item], ctx)[0]
        out.append(_Detail(reader.t.name, line, change_id, order, item))
    return out


def _join(
    events: dict[str, list[dict[str, Any]]], details: list[_Detail], key: str, load: FileLoad, notes: _Notes
) -> None:
    """Attach steps or properties to events by change id; unmatched rows become detail rejects."""
    details = sorted(details, key=lambda d: (d.file, d.change_id, d.order, d.line))
    for detail in details:
        targets = events.get(detail.change_id)
        if not targets:
            load.detail_rejects.append(
                Reject(detail.file, detail.line, None, f"change id {detail.change_id!r} matches no event")
            )
            notes.add(detail.file, "rows whose change id matches no event were not loaded", detail.line)
            continue
        for event in targets:
            event[key].append(dict(detail.item))


# --- reading everything ------------------------------------------------------------------------------------------


def read_files(
    paths: Sequence[Path | str], *, on_unreadable: Literal["raise", "report"] = "raise"
) -> FileLoad:
    """Every record in ``paths``, in any mix of formats; the admin-center CSV triplet is joined on change id.

    Unreadable files raise one InputError naming each of them (after all files were tried), or with
    ``on_unreadable="report"`` are listed in ``FileLoad.unreadable`` while the other files load.
    Steps and properties rows join events of any admin-center CSV main file given in the same call.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    if not paths:
        raise InputError(
            "No files were given; " + EXPECTED + ".", remedy="Pass one or more downloaded files."
        )
    load = FileLoad()
    notes = _Notes()
    failures: list[InputError] = []
    seen: set[Path] = set()
    csv_events: dict[str, list[dict[str, Any]]] = {}
    main_files: list[str] = []
    details: dict[str, list[_Detail]] = {"steps": [], "properties": []}
    for path in paths:
        name = str(path)
        resolved = Path(path).absolute()
        if resolved in seen:
            notes.add(name, "given twice; read once")
            continue
        seen.add(resolved)
        before = (len(load.records), len(load.rejects), len(load.detail_rejects), load.read)
        rows: list[_Detail] = []
        try:
            t = _load_text(path, notes)
            sniffed = _sniff(t)
            reader = _FileReader(t, load, notes)
            kind = {"admin-center-csv-steps": "steps", "admin-center-csv-properties": "properties"}.get(
                sniffed.format, ""
            )
            if sniffed.shape != "csv":
                reader.read_json(sniffed)
            elif sniffed.format == "log-analytics-csv":
                _read_la_csv(reader, sniffed)
            elif sniffed.format == "admin-center-csv":
                for event in _read_admin_main(reader, sniffed):
                    if event.get("changeId"):
                        csv_events.setdefault(event["changeId"], []).append(event)
                main_files.append(name)
            else:
                rows = _read_admin_details(reader, sniffed, kind)
                details[kind].extend(rows)
        except InputError as exc:
            # A file fails as a whole: take back anything it added, so counts stay honest.
            del load.records[before[0] :]
            del load.origins[before[0] :]
            del load.rejects[before[1] :]
            del load.detail_rejects[before[2] :]
            load.read = before[3]
            failures.append(exc)
            load.unreadable[name] = exc.message
            continue
        load.formats[name] = sniffed.format
        if kind and not rows and len(load.detail_rejects) == before[2]:
            notes.add(name, "holds no rows")
        elif not kind and load.read == before[3]:
            notes.add(name, "holds no provisioning events")
    kinds = set(load.formats.values())
    for kind, key, label in (
        ("steps", "provisioningSteps", "ProvisioningSteps"),
        ("properties", "modifiedProperties", "ModifiedProperties"),
    ):
        if details[kind] and not main_files:
            notes.add(
                details[kind][0].file,
                "no admin-center main CSV (ProvisioningLogs*.csv) was given, so these rows have no events to join",
            )
        if main_files and f"admin-center-csv-{kind}" not in kinds:
            for name in main_files:
                notes.add(name, f"no _{label} CSV file was given, so these events have no {kind}")
        _join(csv_events, details[kind], key, load, notes)
    if failures and on_unreadable == "raise":
        if len(failures) == 1:
            raise failures[0]
        raise InputError(
            f"{len(failures)} files cannot be read:\n" + "\n".join(f"- {f.message}" for f in failures),
            file=failures[0].file,
            remedy=failures[0].remedy,
            link=failures[0].link,
        )
    load.warnings = notes.render()
    return load


def _read_la_csv(reader: _FileReader, sniffed: _Sniffed) -> None:
    keys = [_norm(h) for h in sniffed.header]
    if "timegenerated" not in keys:
        raise _unreadable(reader.t.name, "a Log Analytics export without the TimeGenerated column")
    for line, row in reader.csv_rows(sniffed):
        cells = row if isinstance(row, str) else reader.cells(sniffed, row)
        if isinstance(cells, str):
            reader.reject(line, cells)
            continue
        reader.take(line, functools.partial(_from_log_analytics, cells))
