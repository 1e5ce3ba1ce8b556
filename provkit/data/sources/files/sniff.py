"""From bytes to text (gzip, UTF-8 with or without BOM, UTF-16, Windows-1252) and from text to a format:
content sniffing, the file name only breaking ties.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provkit.data.sources.files.formats import (
    _LA_JSON,
    _LA_MARKERS,
    _MAIN_INDEX,
    _PROPERTY_ONLY,
    _STEP_ONLY,
    DOWNLOAD_LINK,
    EXPECTED,
    _norm,
    _Notes,
    _Text,
)
from provkit.errors import InputError

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


def _is_la_row(obj: dict[str, Any]) -> bool:
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


def _unique_headers(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n, name in enumerate(header, 1):
        name = name or f"column {n}"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out
