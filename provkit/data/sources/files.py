"""Provisioning logs saved to files, read into Graph-shaped provisioningObjectSummary records.

Formats are detected from the content (the file name only breaks ties); any of them may be gzip-compressed and
encoded as UTF-8 (with or without BOM) or UTF-16; other bytes are read as Windows-1252 with a warning.

============================  ==========================================================================
format name                   what the file is
============================  ==========================================================================
admin-center-json             the admin center's JSON download: an array of events, v1.0 or older names
admin-center-csv              the admin center's CSV download, main file: one row per event
admin-center-csv-steps        its ``_ProvisioningSteps`` file: one row per step, joined on change id
admin-center-csv-properties   its ``_ModifiedProperties`` file: one row per property, joined on change id
log-analytics-csv             an ``AADProvisioningLogs`` query exported as CSV
log-analytics-json            the same as JSON: an array of rows, or the query API's ``{"tables": [...]}``
graph-pages                   saved ``/auditLogs/provisioning`` responses (``{"value": [...]}``), or JSONL
                              with one page or one entry per line
============================  ==========================================================================

Every record comes out with v1.0 names (``provisioningAction``, ``provisioningStatusInfo.errorInformation``,
step ``details`` as a dict); values keep their original text (enum case is left to the tables layer) except
``activityDateTime``, which becomes ISO-8601 UTC. Unknown fields and columns are kept under their own name.
A record that cannot be read becomes a :class:`Reject` naming file and line; a file that cannot be read at all
raises :class:`~provkit.errors.InputError`. ``FileLoad.read == FileLoad.kept + len(FileLoad.rejects)``.

The admin center's CSV headers are not documented, so each field accepts the spellings in
:data:`ADMIN_CSV_COLUMNS`, :data:`ADMIN_CSV_STEP_COLUMNS` and :data:`ADMIN_CSV_PROPERTY_COLUMNS`; headers are
compared ignoring case, spaces and punctuation, and the dotted v1.0 path itself (``provisioningStatusInfo.status``,
as ``pandas.json_normalize`` writes it) is accepted too.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import functools
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from provkit.errors import InputError

__all__ = [
    "ADMIN_CSV_COLUMNS",
    "ADMIN_CSV_PROPERTY_COLUMNS",
    "ADMIN_CSV_STEP_COLUMNS",
    "FORMATS",
    "FileLoad",
    "Reject",
    "detect_format",
    "parse_timestamp",
    "read_files",
]

FORMATS = (
    "admin-center-json",
    "admin-center-csv",
    "admin-center-csv-steps",
    "admin-center-csv-properties",
    "log-analytics-csv",
    "log-analytics-json",
    "graph-pages",
)

DOWNLOAD_LINK = "https://learn.microsoft.com/entra/identity/monitoring-health/howto-download-logs"
EXPECTED = (
    "expected a provisioning-log download from the admin center (JSON, or the CSV files), a Log Analytics "
    "AADProvisioningLogs export (CSV or JSON), or saved Graph /auditLogs/provisioning pages (JSON or JSONL), "
    "optionally gzip-compressed"
)

# --- alias tables ------------------------------------------------------------------------------------------------
# v1.0 path -> header spellings seen or plausible in admin-center CSV downloads (the headers are not documented).

ADMIN_CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("ID", "Activity ID", "Log ID", "Event ID"),
    "activityDateTime": (
        "Date",
        "Activity Date",
        "Activity Date Time",
        "Date (UTC)",
        "Date Time",
        "Time",
        "Timestamp",
        "Time Generated",
    ),
    "changeId": ("Change ID",),
    "cycleId": ("Cycle ID",),
    "jobId": ("Job ID",),
    "tenantId": ("Tenant ID",),
    "durationInMilliseconds": ("Duration (ms)", "Duration", "Duration In Milliseconds", "Duration Ms"),
    "provisioningAction": ("Action", "Provisioning Action"),
    "provisioningStatusInfo.status": ("Status", "Provisioning Status", "Result", "Result Type"),
    "provisioningStatusInfo.errorInformation.errorCode": ("Error Code", "Result Signature"),
    "provisioningStatusInfo.errorInformation.reason": (
        "Reason",
        "Status Reason",
        "Error Reason",
        "Failure Reason",
        "Error Description",
        "Error Message",
        "Result Description",
    ),
    "provisioningStatusInfo.errorInformation.additionalDetails": ("Additional Details",),
    "provisioningStatusInfo.errorInformation.errorCategory": ("Error Category",),
    "provisioningStatusInfo.errorInformation.recommendedAction": ("Recommended Action", "Recommendation"),
    "sourceIdentity.id": ("Source Identity ID", "Source ID", "Source Object ID"),
    "sourceIdentity.displayName": (
        "Source Identity Name",
        "Source Identity Display Name",
        "Source Display Name",
        "Source Name",
        "Source Identity",
    ),
    "sourceIdentity.identityType": ("Source Identity Type", "Source Type", "Source Object Type"),
    "sourceIdentity.details": ("Source Identity Details",),
    "targetIdentity.id": ("Target Identity ID", "Target ID", "Target Object ID"),
    "targetIdentity.displayName": (
        "Target Identity Name",
        "Target Identity Display Name",
        "Target Display Name",
        "Target Name",
        "Target Identity",
    ),
    "targetIdentity.identityType": ("Target Identity Type", "Target Type", "Target Object Type"),
    "targetIdentity.details": ("Target Identity Details",),
    "sourceSystem.id": ("Source System ID",),
    "sourceSystem.displayName": ("Source System", "Source System Name", "Source System Display Name"),
    "sourceSystem.details": ("Source System Details",),
    "targetSystem.id": ("Target System ID",),
    "targetSystem.displayName": ("Target System", "Target System Name", "Target System Display Name"),
    "targetSystem.details": ("Target System Details",),
    "servicePrincipal.id": ("Service Principal ID", "Service Principal Object ID"),
    "servicePrincipal.displayName": (
        "Service Principal Name",
        "Service Principal Display Name",
        "Service Principal",
        "Application",
        "Application Name",
        "App Name",
    ),
    "initiatedBy.displayName": ("Initiated By", "Initiated By Name", "Initiator", "Initiator Name"),
    "initiatedBy.id": ("Initiated By ID", "Initiator ID"),
    "initiatedBy.initiatorType": ("Initiated By Type", "Initiator Type"),
}
"""Main CSV file: v1.0 path -> accepted header spellings (compared ignoring case, spaces and punctuation)."""

ADMIN_CSV_STEP_COLUMNS: dict[str, tuple[str, ...]] = {
    "changeId": ("Change ID",),
    "_order": ("Step Number", "Step No", "Step Order", "Step Index", "Step Sequence", "Order", "Sequence"),
    "name": ("Step Name", "Name", "Event Name"),
    "provisioningStepType": ("Step Type", "Type", "Provisioning Step Type"),
    "status": ("Step Status", "Status", "Result"),
    "description": ("Step Description", "Description"),
    "details": ("Details", "Step Details"),
}
"""``_ProvisioningSteps`` CSV file: step field -> accepted header spellings (``_order`` orders the steps)."""

ADMIN_CSV_PROPERTY_COLUMNS: dict[str, tuple[str, ...]] = {
    "changeId": ("Change ID",),
    "displayName": (
        "Property Name",
        "Modified Property Name",
        "Modified Property",
        "Property",
        "Attribute",
        "Attribute Name",
        "Display Name",
        "Name",
    ),
    "oldValue": ("Old Value", "Previous Value", "Old"),
    "newValue": ("New Value", "New", "Value"),
}
"""``_ModifiedProperties`` CSV file: property field -> accepted header spellings."""

# Log Analytics AADProvisioningLogs columns (reference section 5.2), keyed by normalised header.
_LA_SCALARS = {
    "id": "id",
    "timegenerated": "activityDateTime",
    "changeid": "changeId",
    "cycleid": "cycleId",
    "jobid": "jobId",
    "aadtenantid": "tenantId",
    "durationms": "durationInMilliseconds",
    "provisioningaction": "provisioningAction",
    "action": "provisioningAction",
    # TenantId in Log Analytics is the workspace, not the Entra tenant: kept apart so nobody mixes them up.
    "tenantid": "logAnalyticsWorkspaceId",
}
_LA_JSON = {
    "initiatedby": "initiatedBy",
    "modifiedproperties": "modifiedProperties",
    "provisioningstatusinfo": "provisioningStatusInfo",
    "provisioningsteps": "provisioningSteps",
    "serviceprincipal": "servicePrincipal",
    "sourceidentity": "sourceIdentity",
    "targetidentity": "targetIdentity",
    "targetsystem": "targetSystem",
    "sourcesystem": "sourceSystem",
}
_LA_STATUS = {"resulttype": "status", "resultsignature": "errorCode", "resultdescription": "reason"}
_LA_MARKERS = frozenset(
    {"resulttype", "resultsignature", "resultdescription", "aadtenantid", "operationname", "durationms"}
)
# Placeholders Log Analytics writes in ResultSignature when there is no error.
_NO_CODE = frozenset({"", "none", "null", "n/a", "-"})

_V1_FIELDS = (
    "id",
    "activityDateTime",
    "changeId",
    "cycleId",
    "durationInMilliseconds",
    "initiatedBy",
    "jobId",
    "modifiedProperties",
    "provisioningAction",
    "provisioningStatusInfo",
    "provisioningSteps",
    "servicePrincipal",
    "sourceIdentity",
    "targetIdentity",
    "sourceSystem",
    "targetSystem",
    "tenantId",
)
_TOP_ALIASES = {
    "action": "provisioningAction",
    "statusinfo": "provisioningStatusInfo",
    "durationms": "durationInMilliseconds",
    "steps": "provisioningSteps",
}
_ERROR_FIELDS = ("errorCode", "reason", "additionalDetails", "errorCategory", "recommendedAction")
_ERROR_KEYS = frozenset(f.lower() for f in _ERROR_FIELDS)


# --- public results ----------------------------------------------------------------------------------------------


@dataclass
class Reject:
    """A record that could not be read: where it is (``line`` 1-based, ``record`` its 1-based ordinal) and why."""

    file: str
    line: int | None
    record: int | None
    reason: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f", line {self.line}"
        if self.record is not None:
            where += f" (record {self.record})"
        return f"{where}: {self.reason}"


@dataclass
class FileLoad:
    """What :func:`read_files` read: Graph-shaped records, the records it could not read, and notes.

    ``read`` counts event records attempted, so ``read == kept + len(rejects)``. Rows of a CSV steps or
    properties file that attach to no event (orphan change id, unreadable row) are in ``detail_rejects``;
    files that could not be read at all (only with ``on_unreadable="report"``) are in ``unreadable``.
    ``origins[i]`` says where ``records[i]`` came from, as a Reject-shaped place whose reason is empty.
    """

    records: list[dict] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)
    read: int = 0
    warnings: list[str] = field(default_factory=list)
    detail_rejects: list[Reject] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    origins: list[Reject] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return len(self.records)


# --- internal plumbing -------------------------------------------------------------------------------------------


class _Bad(Exception):
    """A record cannot be read; the message is the reason shown to the user."""


class _Notes:
    """Warnings aggregated by (file, message) so a problem repeated on 10,000 rows is one line, with examples."""

    def __init__(self) -> None:
        self._lines: dict[tuple[str, str], list[int | None]] = {}

    def add(self, file: str, message: str, line: int | None = None) -> None:
        self._lines.setdefault((file, message), []).append(line)

    def render(self) -> list[str]:
        out = []
        for (file, message), lines in self._lines.items():
            known = sorted({n for n in lines if n is not None})
            text = f"{file}: {message}"
            if known:
                shown = ", ".join(str(n) for n in known[:5])
                more = f" and {len(known) - 5} more" if len(known) > 5 else ""
                text += f" (line{'s' if len(known) > 1 else ''} {shown}{more})"
            elif len(lines) > 1:
                text += f" ({len(lines)} times)"
            out.append(text)
        return out


@dataclass
class _Ctx:
    """Where a record is, for warnings about it."""

    file: str
    line: int | None
    notes: _Notes

    def warn(self, message: str) -> None:
        self.notes.add(self.file, message, self.line)


@dataclass
class _Text:
    """A decoded input file."""

    path: Path
    name: str  # the path as the user gave it
    inner_name: str  # file name without .gz, for role hints
    text: str
    truncated: bool  # the gzip stream ended early


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


@functools.lru_cache(maxsize=4096)
def _norm(header: str) -> str:
    """Header key: Log Analytics' ' [UTC]' suffix dropped, then lower case letters and digits only."""
    header = re.sub(r"\s*\[[^\]]*\]\s*$", "", header.strip().lstrip("\ufeff"))
    return re.sub(r"[^0-9a-z]", "", header.lower())


def _alias_index(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    index: dict[str, str] = {}
    for path, spellings in table.items():
        for spelling in (path, path.replace(".", " "), *spellings):
            index.setdefault(_norm(spelling), path)
    return index


_MAIN_INDEX = _alias_index(ADMIN_CSV_COLUMNS)
_STEP_INDEX = _alias_index(ADMIN_CSV_STEP_COLUMNS)
_PROPERTY_INDEX = _alias_index(ADMIN_CSV_PROPERTY_COLUMNS)
_STEP_ONLY = {
    _norm(h) for h in ("Step Name", "Step Type", "Step Status", "Step Description", "Step Details")
} | {_norm(h) for h in ADMIN_CSV_STEP_COLUMNS["_order"][:5]}
_PROPERTY_ONLY = {_norm(h) for h in ("Property Name", "Modified Property Name", "Modified Property")} | {
    _norm(h) for h in ("Old Value", "New Value", "Previous Value")
}


# --- reading bytes -----------------------------------------------------------------------------------------------

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "an Excel workbook or zip archive (save it as CSV, or unzip it first)"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) or Office document (save it as CSV)"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ", "an xz archive"),
)


def _unreadable(name: str, what: str, remedy: str | None = None, line: int | None = None) -> InputError:
    return InputError(
        f"{name}: {what}; {EXPECTED}.",
        file=name,
        line=line,
        remedy=remedy
        or "Download the provisioning logs again (Download > JSON or CSV) and pass those files.",
        link=DOWNLOAD_LINK,
    )


def _gunzip(raw: bytes, name: str) -> tuple[bytes, bool]:
    """Bytes of every gzip member; True when the stream ends early (a cut download)."""
    out = []
    data = raw
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out.append(inflater.decompress(data))
        except zlib.error as exc:
            if out:  # garbage after a complete member: keep what was read
                break
            raise _unreadable(name, f"it looks gzip-compressed but cannot be decompressed ({exc})") from None
        if not inflater.eof:
            return b"".join(out), True
        data = inflater.unused_data.lstrip(b"\x00")
    return b"".join(out), False


def _looks_utf16(raw: bytes) -> str | None:
    sample = raw[:400]
    if len(sample) < 8:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def _decode(raw: bytes, name: str, notes: _Notes) -> str:
    """Text of ``raw``: UTF-8 (BOM or not), UTF-16 (BOM or a run of NULs), UTF-32 (BOM), else cp1252 with a
    warning."""
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE starts both
        try:
            return raw.decode("utf-32")
        except UnicodeDecodeError:
            notes.add(name, "UTF-32 text with broken characters; they were replaced with U+FFFD")
            return raw.decode("utf-32", errors="replace")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[3:]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _decode_utf16(raw, "utf-16", name, notes)
    else:
        guess = _looks_utf16(raw)
        if guess:
            return _decode_utf16(raw, guess, name, notes)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        notes.add(
            name,
            f"not valid UTF-8 (first bad byte on line {line}); read as Windows-1252: check names with accents",
        )
        return raw.decode("cp1252", errors="replace")


def _decode_utf16(raw: bytes, encoding: str, name: str, notes: _Notes) -> str:
    if len(raw) % 2:
        notes.add(name, "UTF-16 text with an odd number of bytes: the last byte was cut off")
        raw = raw[:-1]
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        notes.add(name, "UTF-16 text with broken characters; they were replaced with U+FFFD")
        text = raw.decode(encoding, errors="replace")
    return text.lstrip("\ufeff")


def _load_text(path: Path | str, notes: _Notes) -> _Text:
    """Decoded text of one file; raises InputError for missing, empty or non-text files."""
    name = str(path)
    path = Path(path)
    if path.is_dir():
        raise _unreadable(name, "is a folder, not a file", remedy="Pass the files inside it.")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _unreadable(name, "file not found", remedy="Check the path and the file name.") from None
    except OSError as exc:
        raise _unreadable(name, f"cannot be opened ({exc.strerror or exc})") from None
    inner = path.name
    truncated = compressed = False
    if raw.startswith(b"\x1f\x8b"):
        compressed = True
        raw, truncated = _gunzip(raw, name)
        if inner.lower().endswith(".gz"):
            inner = inner[:-3]
        if truncated:
            notes.add(
                name, "the gzip stream ends early (cut download?): only the part before the cut was read"
            )
    for magic, what in _MAGIC:
        if raw.startswith(magic):
            raise _unreadable(name, f"this is {what}, not text")
    if not raw.strip():
        raise _unreadable(name, "the file is empty" + (" after decompression" if compressed else ""))
    text = _decode(raw, name, notes)
    if not text.strip():
        raise _unreadable(name, "the file holds only blank text")
    if "\x00" in text[:65536]:
        raise _unreadable(name, "this is a binary file (it contains NUL bytes), not text")
    return _Text(path=path, name=name, inner_name=inner, text=text, truncated=truncated)


# --- format detection --------------------------------------------------------------------------------------------


@dataclass
class _Sniffed:
    format: str
    shape: str  # array | object | jsonl | stream | csv
    delimiter: str = ","
    header: list[str] = field(default_factory=list)
    raw_header: list[str] = field(default_factory=list)
    header_line: int = 1
    body_start: int = 0  # offset of the header line in the text


_WS = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()


def _skip(text: str, i: int) -> int:
    return _WS.match(text, i).end()  # type: ignore[union-attr]


def _is_la_row(obj: dict) -> bool:
    keys = {_norm(k) for k in obj}
    return "timegenerated" in keys or len(keys & _LA_MARKERS) >= 2


def _json_kind(obj: Any) -> str:
    if isinstance(obj, dict):
        if isinstance(obj.get("tables"), list):
            return "log-analytics-json"
        if isinstance(obj.get("value"), list):
            return "graph-pages"
        if _is_la_row(obj):
            return "log-analytics-json"
    return "admin-center-json"


def _first_lines(text: str, count: int) -> Iterator[tuple[int, str]]:
    start = 0
    seen = 0
    while start < len(text) and seen < count:
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end].strip()
        if line:
            seen += 1
            yield start, line
        start = end + 1


def _loads(line: str) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return _MISSING


_MISSING: Any = object()
TOO_DEEP = "nested too deeply to read (arrays or objects hundreds of levels inside each other)"
_STREAMED: Any = object()  # stands for a member whose value was streamed, not kept


def _sniff(t: _Text) -> _Sniffed:
    text = t.text
    i = _skip(text, 0)
    head = text[i : i + 65536]
    if head.startswith("["):
        try:
            first, _ = _DECODER.raw_decode(text, _skip(text, i + 1))
            kind = _json_kind(first)
        except (ValueError, RecursionError):
            kind = (
                "log-analytics-json" if re.search(r'"TimeGenerated"\s*:', head, re.I) else "admin-center-json"
            )
        return _Sniffed(kind, "array")
    if head.startswith("{"):
        lines = list(_first_lines(text, 3))
        first = _loads(lines[0][1])
        if first is not _MISSING and len(lines) > 1:
            return _Sniffed(
                "graph-pages" if _json_kind(first) != "log-analytics-json" else _json_kind(first), "jsonl"
            )
        if first is _MISSING and len(lines) > 1 and lines[0][1] != "{":
            second = _loads(lines[1][1])
            if isinstance(second, dict):
                kind = _json_kind(second)
                return _Sniffed(
                    "log-analytics-json" if kind == "log-analytics-json" else "graph-pages", "jsonl"
                )
        value_at = re.search(r'"value"\s*:\s*\[', head)
        tables_at = re.search(r'"tables"\s*:\s*\[', head)
        if tables_at and (not value_at or tables_at.start() < value_at.start()):
            return _Sniffed("log-analytics-json", "object")
        if value_at:
            return _Sniffed("graph-pages", "object")
        if re.search(r'"TimeGenerated"\s*:', head, re.I):
            return _Sniffed("log-analytics-json", "object")
        if re.search(r'"(activityDateTime|changeId|provisioningSteps)"\s*:', head, re.I):
            return _Sniffed("graph-pages", "object")
        if not text.rstrip().endswith("}"):
            raise _unreadable(t.name, "the JSON is cut off before its first record (cut download?)")
        raise _unreadable(
            t.name, "a JSON object with neither 'value' (a Graph page) nor 'tables' (a Log Analytics result)"
        )
    if head.startswith("<"):
        raise _unreadable(
            t.name,
            "this is an HTML or XML page (a sign-in or error page saved instead of the download?)",
        )
    return _sniff_csv(t, i)


def _split_header(text: str, start: int, delimiter: str, name: str) -> list[str]:
    """The header row starting at ``start``, parsed the way the body will be."""
    try:
        return next(csv.reader(io.StringIO(text[start : start + 1_000_000], newline=""), delimiter=delimiter))
    except (csv.Error, StopIteration) as exc:
        raise _unreadable(name, f"a CSV file whose header row cannot be read ({exc})") from None


def _sniff_csv(t: _Text, start: int) -> _Sniffed:
    text = t.text
    header_line = text.count("\n", 0, start) + 1
    end = text.find("\n", start)
    first = text[start : len(text) if end < 0 else end].strip()
    delimiter = ""
    sep = re.fullmatch(r'"?sep=(.)"?', first)
    if sep:  # Excel's delimiter hint line
        delimiter = sep.group(1)
        start = _skip(text, end + 1) if end >= 0 else len(text)
        header_line = text.count("\n", 0, start) + 1
        end = text.find("\n", start)
        first = text[start : len(text) if end < 0 else end].strip()
    if not delimiter:
        counts = {d: _count_outside_quotes(first, d) for d in (",", ";", "\t", "|")}
        delimiter = max(counts, key=lambda d: counts[d])
        if counts[delimiter] == 0:
            raise _unreadable(
                t.name, "this is neither JSON nor a CSV table (its first line has no delimiters)"
            )
    header = [h.strip().lstrip("\ufeff") for h in _split_header(text, start, delimiter, t.name)]
    keys = {_norm(h) for h in header}
    inner = t.inner_name.lower()
    sniffed = _Sniffed("", "csv", delimiter, _unique_headers(header), header, header_line, start)
    if (
        "timegenerated" in keys
        and len(keys & (_LA_MARKERS | set(_LA_JSON))) >= 1
        or len(keys & _LA_MARKERS) >= 2
    ):
        sniffed.format = "log-analytics-csv"
        return sniffed
    step_columns, property_columns = keys & _STEP_ONLY, keys & _PROPERTY_ONLY
    main = {_MAIN_INDEX[k] for k in keys if k in _MAIN_INDEX}
    # The companions' generic headers (Name, Type, Status) need the file name's hint; a dated file is a main file.
    undated = "activityDateTime" not in main
    if step_columns and len(step_columns) >= len(property_columns):
        sniffed.format = "admin-center-csv-steps"
    elif property_columns:
        sniffed.format = "admin-center-csv-properties"
    elif "provisioningsteps" in inner and undated:
        sniffed.format = "admin-center-csv-steps"
    elif "modifiedproperties" in inner and undated:
        sniffed.format = "admin-center-csv-properties"
    elif len(main) >= 2:
        sniffed.format = "admin-center-csv"
    else:
        shown = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
        raise _unreadable(t.name, f"a table whose columns are not provisioning-log columns (found: {shown})")
    return sniffed


def _count_outside_quotes(line: str, char: str) -> int:
    return sum(part.count(char) for part in line.split('"')[0::2])


def detect_format(path: Path | str) -> str:
    """The format name of one file (see the module docstring); raises InputError for anything else."""
    return _sniff(_load_text(path, _Notes())).format


# --- timestamps --------------------------------------------------------------------------------------------------

_ISO = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?",
    re.I,
)
_DMY = re.compile(
    r"(\d{1,2})([/.])(\d{1,2})[/.](\d{4}),?(?:\s+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*([AP]\.?M\.?)?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?",
    re.I,
)
_DOTNET = re.compile(r"/?Date\((-?\d+)([+-]\d{4})?\)/?")
_EPOCH = re.compile(r"-?\d+(?:\.\d+)?")
_FLOOR = datetime(1990, 1, 1, tzinfo=UTC).timestamp()
_CEIL = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
# Graph's own form, passed through unchanged (days past the 28th go the long way, to check the month's length).
_ISO_UTC = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?Z"
)


def _zone(text: str | None) -> timezone:
    if not text or text.upper() in ("Z", "UTC", "GMT"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _fraction(digits: str | None) -> int:
    return int((digits or "0")[:6].ljust(6, "0"))


def _format(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_timestamp(value: Any, ctx: _Ctx | None = None) -> str:
    """``value`` as ISO-8601 UTC (``2024-03-10T16:15:21Z``); raises ValueError when it is not a date and time.

    Accepts ISO forms (``T`` or a space, any fraction, Z or an offset; no zone means UTC, as downloads are),
    ``3/10/2024 4:15:21 PM`` (month first unless the first number is over 12), ``10.03.2024 16:15:21`` (day
    first), epoch seconds or milliseconds, and .NET's ``/Date(1710087321000)/``. Graph's own form passes as is.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError("not a date and time")
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    text = str(value).strip()
    if _ISO_UTC.fullmatch(text):
        return text
    m = _ISO.fullmatch(text)
    if m:
        year, month, day, hour, minute, second, frac, zone = m.groups()
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            _fraction(frac),
        )
        return _format(moment.replace(tzinfo=_zone(zone)))
    m = _DMY.fullmatch(text)
    if m:
        first, sep, second_, year, hour, minute, second, frac, ampm, zone = m.groups()
        a, b = int(first), int(second_)
        if sep == ".":
            day, month = a, b
        elif a > 12 >= b:
            day, month = a, b
        else:
            month, day = a, b
            if ctx is not None and a != b and b <= 12:
                ctx.notes.add(ctx.file, "dates like 3/10/2024 were read month first (US order)")
        h = int(hour or 0)
        if ampm:
            if not 1 <= h <= 12:
                raise ValueError("hour out of range for AM/PM")
            h = h % 12 + (12 if ampm.upper().startswith("P") else 0)
        moment = datetime(int(year), month, day, h, int(minute or 0), int(second or 0), _fraction(frac))
        return _format(moment.replace(tzinfo=_zone(zone)))
    m = _DOTNET.fullmatch(text)
    if m:
        return _from_epoch(int(m.group(1)) / 1000.0)
    if _EPOCH.fullmatch(text):
        return _from_epoch(float(text))
    raise ValueError("not a date and time")


def _from_epoch(number: float) -> str:
    for scale in (1.0, 1000.0, 1_000_000.0):
        seconds = number / scale
        if _FLOOR <= seconds < _CEIL:
            return _format(datetime.fromtimestamp(seconds, tz=UTC))
    raise ValueError("a number that is not a plausible epoch time")


# --- normalising one event ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _names(canonical: tuple[str, ...]) -> tuple[frozenset[str], dict[str, str]]:
    return frozenset(canonical), {name.lower(): name for name in canonical}


def _rename(obj: dict, canonical: tuple[str, ...], aliases: dict[str, str] | None = None) -> dict:
    """A copy of ``obj`` with keys matched case-insensitively to ``canonical`` names, then ``aliases`` (lower-case
    key -> canonical) when that name is still free. Other keys are kept as they are."""
    exact, wanted = _names(canonical)
    if exact.issuperset(obj):  # already v1.0-shaped: the common case, kept cheap
        return dict(obj)
    out: dict = {}
    later: list[tuple[str, Any]] = []
    for key, value in obj.items():
        name = wanted.get(key.lower()) if isinstance(key, str) else None
        if name is not None and name not in out:
            out[name] = value
        else:
            later.append((key, value))
    for key, value in later:
        name = (aliases or {}).get(key.lower()) if isinstance(key, str) else None
        if name is not None and out.get(name) is None:
            out[name] = value
        else:
            out.setdefault(key, value)
    return out


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        parsed = _loads(value)
        return value if parsed is _MISSING else parsed
    return value


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


_KEY_VALUE = re.compile(r"([A-Za-z][\w .\-/()]{0,79}?)\s*[:=]\s*(.*)", re.S)


def _details(value: Any, ctx: _Ctx, where: str) -> dict:
    """A detailsInfo bag as a dict: from a dict, a list of key/value pairs, JSON text or ``Key: value`` lines."""
    value = _maybe_json(value)
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        out: dict = {}
        for item in value:
            pair = _rename(item, ("key", "value"), {"name": "key"}) if isinstance(item, dict) else None
            if not pair or "key" not in pair:
                ctx.warn(f"{where} is a list that is not key/value pairs; kept as text under 'Details'")
                return {"Details": _as_text(value)}
            out[str(pair["key"])] = pair.get("value")
        return out
    text = str(value).strip()
    if not text:
        return {}
    parts = [p for p in re.split(r"\r?\n|;\s*", text) if p.strip()]
    matches = [_KEY_VALUE.fullmatch(p.strip()) for p in parts]
    if matches and all(matches):
        return {m.group(1).strip(): m.group(2).strip() for m in matches if m}
    return {"Details": text}


def _object(
    value: Any, ctx: _Ctx, where: str, keys: tuple[str, ...], aliases: dict[str, str], text_key: str
) -> Any:
    value = _maybe_json(value)
    if value is None:
        return None
    if isinstance(value, str):
        return {text_key: value} if value.strip() else None
    if isinstance(value, dict):
        out = _rename(value, keys, aliases)
        if "details" in keys and "details" in out:
            out["details"] = _details(out["details"], ctx, f"{where}.details")
        return out
    if isinstance(value, list):
        ctx.warn(f"{where} is a list where an object was expected; kept as text under 'displayName'")
        return {text_key: _as_text(value)}
    return {text_key: str(value)}


_IDENTITY = ("id", "displayName", "identityType", "details")
_SYSTEM = ("id", "displayName", "details")


def _status_info(value: Any, ctx: _Ctx) -> dict | None:
    value = _maybe_json(value)
    if value is None:
        return None
    if not isinstance(value, dict):
        return {"status": _as_text(value), "errorInformation": None}
    out = _rename(value, ("status", "errorInformation"), {"errorinfo": "errorInformation"})
    error = _maybe_json(out.get("errorInformation"))
    if isinstance(error, str):
        error = {"reason": error}
    elif error is not None and not isinstance(error, dict):
        error = {"reason": _as_text(error)}
    if isinstance(error, dict):
        error = _rename(error, _ERROR_FIELDS, {"errordescription": "reason", "code": "errorCode"})
    # Older shapes (beta statusDetails) carried the error fields on statusInfo itself.
    flat = {k: out.pop(k) for k in [k for k in out if k.lower() in _ERROR_KEYS]}
    if flat:
        flat = _rename(flat, _ERROR_FIELDS)
        error = {**flat, **{k: v for k, v in (error or {}).items() if v is not None}}
    out["errorInformation"] = error
    return out


def _steps(value: Any, ctx: _Ctx) -> list[dict]:
    value = _maybe_json(value)
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        ctx.warn("provisioningSteps is not a list; kept as one step's description")
        value = [{"description": _as_text(value)}]
    steps = []
    for n, step in enumerate(value, 1):
        step = _maybe_json(step)
        if not isinstance(step, dict):
            ctx.warn(f"step {n} is not an object; kept as its description")
            step = {"description": _as_text(step)}
        out = _rename(
            step,
            ("name", "provisioningStepType", "status", "description", "details"),
            {
                "steptype": "provisioningStepType",
                "type": "provisioningStepType",
                "stepname": "name",
                # inference: snake_case as an SDK's export writes it
                "provisioning_step_type": "provisioningStepType",
                "step_type": "provisioningStepType",
            },
        )
        out["details"] = _details(out.get("details"), ctx, f"step {n} details")
        steps.append(out)
    return steps


def _properties(value: Any, ctx: _Ctx) -> list[dict]:
    value = _maybe_json(value)
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        ctx.warn("modifiedProperties is not a list; kept as one property's new value")
        value = [{"newValue": _as_text(value)}]
    out = []
    for n, prop in enumerate(value, 1):
        prop = _maybe_json(prop)
        if not isinstance(prop, dict):
            ctx.warn(f"modified property {n} is not an object; kept as its new value")
            prop = {"newValue": prop}
        prop = _rename(
            prop,
            ("displayName", "oldValue", "newValue"),
            {"name": "displayName", "propertyname": "displayName"},
        )
        for key in ("displayName", "oldValue", "newValue"):
            prop[key] = _as_text(prop.get(key))
        out.append(prop)
    return out


def _duration(value: Any, ctx: _Ctx) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        ctx.warn(f"durationInMilliseconds {_show(value)} is not a number; left empty")
        return None


def _normalise_event(raw: Any, ctx: _Ctx, *, time_label: str = "'activityDateTime'") -> dict:
    """One provisioningObjectSummary with v1.0 names from an event in v1.0, older or PascalCase shape.

    Raises _Bad when it is not an object, has no readable ``activityDateTime`` (the one non-nullable field), or
    has neither ``id`` nor ``changeId``; a missing ``id`` is filled from ``changeId``, with a warning.
    """
    if not isinstance(raw, dict):
        kinds = {list: "a list", str: "a string", type(None): "null", bool: "true or false", int: "a number"}
        kind = kinds.get(type(raw), "a number" if isinstance(raw, float) else f"a {type(raw).__name__}")
        raise _Bad(f"not a JSON object (found {kind})")
    event = _rename(raw, _V1_FIELDS, _TOP_ALIASES)
    if "activityDateTime" not in event:
        raise _Bad(f"{time_label} missing")
    stamp = event["activityDateTime"]
    if stamp is None or (isinstance(stamp, str) and not stamp.strip()):
        raise _Bad(f"{time_label} is empty")
    try:
        event["activityDateTime"] = parse_timestamp(stamp, ctx)
    except (ValueError, OverflowError):
        raise _Bad(f"{time_label} {_show(stamp)} is not a date and time") from None
    for key in ("id", "changeId", "cycleId", "jobId", "tenantId", "provisioningAction"):
        if key in event:
            text = _as_text(event[key])
            event[key] = text.strip() if isinstance(text, str) else text
    if not event.get("id"):
        # The tables need a key; a download without activity ids still has the change id, unique per entry.
        if not event.get("changeId"):
            raise _Bad("no 'id' and no 'changeId': the entry cannot be identified")
        event["id"] = event["changeId"]
        ctx.warn("entries without an activity id: their change id stands in as 'id'")
    if "durationInMilliseconds" in event:
        event["durationInMilliseconds"] = _duration(event["durationInMilliseconds"], ctx)
    event["provisioningStatusInfo"] = _status_info(event.get("provisioningStatusInfo"), ctx)
    event["provisioningSteps"] = _steps(event.get("provisioningSteps"), ctx)
    event["modifiedProperties"] = _properties(event.get("modifiedProperties"), ctx)
    for key in ("sourceIdentity", "targetIdentity"):
        if key in event:
            event[key] = _object(
                event[key],
                ctx,
                key,
                _IDENTITY,
                {"type": "identityType", "name": "displayName"},
                "displayName",
            )
    for key in ("sourceSystem", "targetSystem"):
        if key in event:
            event[key] = _object(event[key], ctx, key, _SYSTEM, {"name": "displayName"}, "displayName")
    if "servicePrincipal" in event:
        event["servicePrincipal"] = _object(
            event["servicePrincipal"],
            ctx,
            "servicePrincipal",
            ("id", "displayName"),
            {"name": "displayName"},
            "displayName",
        )
    if "initiatedBy" in event:
        event["initiatedBy"] = _object(
            event["initiatedBy"],
            ctx,
            "initiatedBy",
            ("id", "displayName", "initiatorType"),
            {"initiatingtype": "initiatorType", "type": "initiatorType"},
            "displayName",
        )
    return event


def _json_column(header: str, value: Any, *, plain_ok: bool = False) -> Any:
    """A Log Analytics dynamic column: parsed JSON text, or the object itself; raises _Bad for broken JSON."""
    if value is None or isinstance(value, dict | list):
        return value
    text = str(value).strip()
    if not text:
        return None
    if plain_ok and text[:1] not in ("{", "["):
        return {"displayName": text}
    try:
        return json.loads(text)
    except ValueError as exc:
        message = f"{exc.msg} at char {exc.pos}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise _Bad(f"{header} is not valid JSON: {message}") from None


def _from_log_analytics(row: dict, ctx: _Ctx) -> dict:
    """A v1.0 record from one AADProvisioningLogs row (CSV cells or JSON values); raises _Bad when unreadable."""
    record: dict = {}
    status: dict[str, Any] = {}
    time_label = "'TimeGenerated'"
    for header, value in row.items():
        key = _norm(str(header))
        if key in _LA_SCALARS and _LA_SCALARS[key] not in record:
            record[_LA_SCALARS[key]] = value
            if key == "timegenerated":
                time_label = f"'{header}'"
        elif key in _LA_JSON and _LA_JSON[key] not in record:
            record[_LA_JSON[key]] = _json_column(
                str(header), value, plain_ok=key in ("sourcesystem", "targetsystem")
            )
        elif key in _LA_STATUS:
            status[_LA_STATUS[key]] = value
        else:
            record[str(header)] = value
    for key, value in list(record.items()):
        if isinstance(value, str) and value == "" and key not in ("activityDateTime",):
            record[key] = None
    event = _normalise_event(record, ctx, time_label=time_label)
    info = event.get("provisioningStatusInfo") or {"status": None, "errorInformation": None}
    if info.get("status") in (None, "") and status.get("status") not in (None, ""):
        info["status"] = str(status["status"])
    code, reason = status.get("errorCode"), status.get("reason")
    code = None if code is None or str(code).strip().lower() in _NO_CODE else str(code)
    reason = None if reason is None or str(reason).strip() == "" else str(reason)
    if code or reason:
        error = info.get("errorInformation") or {}
        if code and not error.get("errorCode"):
            error["errorCode"] = code
        if reason and not error.get("reason"):
            error["reason"] = reason
        info["errorInformation"] = error
    event["provisioningStatusInfo"] = info
    return event


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

    def take(self, line: int | None, build: Callable[[_Ctx], dict]) -> dict | None:
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
                self.take(line, lambda ctx, e=entry: self._entry(e, ctx))
            return
        self.take(line, lambda ctx: self._entry(value, ctx))

    @staticmethod
    def _entry(value: Any, ctx: _Ctx) -> dict:
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

    def walk_object(self, i: int, handlers: dict[str, Callable[[int, dict], int]]) -> tuple[dict, int]:
        """Reads the object at ``i``; members named in ``handlers`` are streamed by them (given their offset and the
        members read so far, they return the offset after the value). Returns (other members, end offset)."""
        text = self.t.text
        members: dict = {}
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
        def rows(pos: int, table: dict) -> int:
            columns = [c.get("name") if isinstance(c, dict) else str(c) for c in table.get("columns") or []]
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

        def tables(pos: int, _members: dict) -> int:
            return self._walk_array_of_objects(pos, table)

        def value(pos: int, _members: dict) -> int:
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


def _unique_headers(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n, name in enumerate(header, 1):
        name = name or f"column {n}"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _set_path(record: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node = record
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


# --- the three admin-center CSV files ----------------------------------------------------------------------------


def _read_admin_main(reader: _FileReader, sniffed: _Sniffed) -> list[dict]:
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
    events: list[dict] = []
    for line, row in reader.csv_rows(sniffed):
        if isinstance(row, str):
            reader.reject(line, row)
            continue
        cells = reader.cells(sniffed, row)
        if isinstance(cells, str):
            reader.reject(line, cells)
            continue

        def build(ctx: _Ctx, cells: dict[str, str] = cells) -> dict:
            record: dict = {"provisioningSteps": [], "modifiedProperties": []}
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
    item: dict


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
        item: dict = {}
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
    events: dict[str, list[dict]], details: list[_Detail], key: str, load: FileLoad, notes: _Notes
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
    csv_events: dict[str, list[dict]] = {}
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
        reader.take(line, lambda ctx, cells=cells: _from_log_analytics(cells, ctx))
