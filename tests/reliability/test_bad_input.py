"""Bad input: every malformed file of the fixture corpus, and more made here (nesting deeper than the JSON parser
goes, lone surrogates, numbers and dates beyond what the tables hold, fields of megabytes, UTF-32, a folder, a
zip, a PDF...), imported with ``provkit import`` as a user would.

For each input: no traceback; the output names every file given, and each rejected record by file and line;
``read == kept + rejected`` (nothing silently dropped); the good records are in the store; the counts are those
the fixture manifest (or the case below) promises.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provkit.data.store import Store

from .support import Tally, run_cli

pytestmark = pytest.mark.reliability

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "files"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
MALFORMED = [c for c in MANIFEST if any(f.startswith("malformed/") for f in c["files"])]
_COUNTS = re.compile(
    r"Records read (\d+), kept (\d+), rejected (\d+); (\d+) new in the store, (\d+) already there"
)


def _good() -> list[dict]:
    return json.loads((FIXTURES / "valid" / "admin-center.json").read_text(encoding="utf-8"))


def _array(records: list[str]) -> str:
    """A JSON array with one record per line (record k on line k + 1)."""
    return "[\n" + ",\n".join(records) + "\n]\n"


def _with(record: dict, **changes: object) -> str:
    return json.dumps({**record, **changes})


def _deep(record: dict, depth: int = 100_000) -> str:
    text = json.dumps(record)
    return text[:-1] + ', "extensionData": ' + "[" * depth + "]" * depth + "}"


@dataclass
class Case:
    """A malformed input made by ``build`` in a folder; the expectations as in the fixture manifest."""

    name: str
    build: Callable[[Path], list[Path]]
    kept: int = 0
    rejects: int = 0
    reject_lines: list[int] = field(default_factory=list)
    reason: str = ""
    warning: str = ""
    unreadable: bool = False
    check: Callable[[Store], None] | None = None


def _write(name: str, data: str | bytes) -> Callable[[Path], list[Path]]:
    def build(folder: Path) -> list[Path]:
        path = folder / name
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return [path]

    return build


def _big_csv_field(folder: Path) -> list[Path]:
    """The admin center's CSV download with a 2 MB Source Identity Name (the csv module's default cap is 128 KB)."""
    rows = list(csv.reader(io.StringIO((FIXTURES / "valid" / "ProvisioningLogs_2024-03-10.csv").read_text())))
    rows[3][rows[0].index("Source Identity Name")] = "N" * 2_000_000
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    path = folder / "ProvisioningLogs_big-field.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    return [path]


def _folder(folder: Path) -> list[Path]:
    path = folder / "downloads"
    path.mkdir()
    return [path]


def _zip(folder: Path) -> list[Path]:
    path = folder / "provisioning-logs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ProvisioningLogs.json", json.dumps(_good()))
    return [path]


def _stored_values(store: Store, column: str) -> list:
    values = []
    for app in store.apps(counts=False):
        values.extend(store.find(app["service_principal_id"]).tables().events[column].tolist())
    return values


def _surrogate_kept(store: Store) -> None:
    assert "Ren\ufffde Vance" in _stored_values(store, "source_name")


def _unknown_enums_kept(store: Store) -> None:
    assert "teleport" in {str(v).lower() for v in _stored_values(store, "action")}


def _big_field_kept(store: Store) -> None:
    assert max(len(str(v)) for v in _stored_values(store, "source_name")) == 2_000_000


def _cases() -> list[Case]:
    g = _good()
    g0, g1, g2 = (json.dumps(r) for r in g[:3])
    nulls = dict.fromkeys(g[1], None)
    return [
        Case("json-nested-100000-deep", _write("deep.json", _array([g0, _deep(g[1]), g2])), 2, 1, [3],
             "nested too deeply"),
        Case("jsonl-nested-100000-deep",
             _write("deep.jsonl", "\n".join([g0, _deep(g[1]), g2]) + "\n"), 2, 1, [2], "nested too deeply"),
        Case("lone-surrogate", _write("surrogate.json", _array([g0, g1.replace(
            json.dumps(g[1]["sourceIdentity"]["displayName"]), '"Ren\\ud800e Vance"')])), 2,
             check=_surrogate_kept),
        Case("numbers-beyond-int64", _write("numbers.json", _array([
            g0, _with(g[1], durationInMilliseconds=1e308), _with(g[2], durationInMilliseconds=10**30)])), 3),
        Case("date-beyond-the-tables", _write("year-9999.json", _array([
            g0, g1, _with(g[2], activityDateTime="9999-12-31T23:59:59Z")])), 2, 1, [4], "activityDateTime"),
        Case("field-of-8-megabytes", _write("big-field.json", _array([g0, _with(
            g[1], modifiedProperties=[{"displayName": "notes", "oldValue": "a" * 8_000_000, "newValue": "b"}])])),
             2),
        Case("csv-field-of-2-megabytes", _big_csv_field, 10, check=_big_field_kept),
        Case("invalid-utf8-mid-file", _write("latin.json", _array([g0, g1, g2]).encode().replace(
            b'"displayName"', b'"displayName\xe9"', 1)), 3, warning="Windows-1252"),
        Case("utf-32-with-bom", _write("utf32.json", codecs.BOM_UTF32_LE + _array([g0, g1, g2]).encode(
            "utf-32-le")), 3),
        Case("duplicate-ids-in-one-file", _write("dups.json", _array([g0, g1, g1, g2])), 4),
        Case("unknown-enum-values", _write("enums.json", _array([
            g0, _with(g[1], provisioningAction="teleport", provisioningStatusInfo={"status": "Maybe"})])), 2,
             check=_unknown_enums_kept),
        Case("id-is-an-object", _write("id-object.json", _array([g0, _with(g[1], id={"a": 1}), g2])), 3),
        Case("every-field-null", _write("all-null.json", _array([g0, json.dumps(nulls), g2])), 2, 1, [3]),
        Case("a-folder", _folder, unreadable=True, reason="folder"),
        Case("missing-file", lambda folder: [folder / "no-such-download.json"], unreadable=True,
             reason="not found"),
        Case("zip-archive", _zip, unreadable=True, reason="zip"),
        Case("pdf-document", _write("report.pdf", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n"),
             unreadable=True, reason="PDF"),
        Case("json-scalar", _write("scalar.json", '"provisioning logs"'), unreadable=True),
    ]  # fmt: skip


GENERATED = _cases()


@dataclass
class Expect:
    kept: int | None
    rejects: int | None
    reject_lines: list[int]
    reason: str
    warning: str
    unreadable: bool
    min_kept: int = 0


def _expect_fixture(case: dict) -> Expect:
    return Expect(
        kept=case.get("kept"),
        rejects=case.get("rejects"),
        reject_lines=case.get("reject_lines", []),
        reason=case.get("reason", ""),
        warning=case.get("warning", ""),
        unreadable=case.get("unreadable", False),
        min_kept=case.get("min_kept", 0),
    )


def check_import(paths: list[Path], expect: Expect, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --app files records that name no service principal, so every readable record can reach the store.
    run = run_cli(["import", *map(str, paths), "--store", str(root), "--app", "Imported downloads"], capsys)
    assert "Traceback" not in run.text and run.code in (0, 1), run.text
    counts = _COUNTS.search(run.out)
    assert counts, run.text
    read, kept, rejected, new, already = map(int, counts.groups())
    assert read == kept + rejected, "a record was dropped without being counted as rejected"
    for path in paths:
        assert f"{path}: " in run.out, f"{path} is not named"
    if expect.unreadable:
        assert f"{paths[0]}: NOT READ: " in run.out and kept == 0, run.out
    if expect.kept is not None:
        assert kept == expect.kept, run.out
    assert kept >= expect.min_kept
    if expect.rejects is not None:
        assert rejected == expect.rejects, run.out
    for line in expect.reject_lines:
        assert f"rejected: {paths[0]}, line {line}" in run.out, run.out
    assert expect.reason in run.out and expect.warning in run.out, run.out
    store = Store(root)
    stored = sum(len(store.find(a["service_principal_id"]).tables().events) for a in store.apps(counts=False))
    assert stored == new and new + already == kept  # the good records are in the store


@pytest.mark.parametrize("case", MALFORMED, ids=[c["name"] for c in MALFORMED])
def test_each_malformed_fixture_is_reported_by_file_and_record_and_good_records_are_kept(
    case: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    tally.inputs_tried += 1
    check_import([FIXTURES / f for f in case["files"]], _expect_fixture(case), tmp_path / "store", capsys)


@pytest.mark.parametrize("case", GENERATED, ids=[c.name for c in GENERATED])
def test_each_generated_bad_input_is_reported_by_file_and_record_and_good_records_are_kept(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    tally.inputs_tried += 1
    paths = case.build(tmp_path)
    expect = Expect(case.kept, case.rejects, case.reject_lines, case.reason, case.warning, case.unreadable)
    check_import(paths, expect, tmp_path / "store", capsys)
    if case.check:
        case.check(Store(tmp_path / "store"))


def test_the_corpus_is_at_least_thirty_inputs_of_every_required_kind() -> None:
    names = " ".join([c["name"] for c in MALFORMED] + [c.name for c in GENERATED])
    for kind in (
        "truncated",
        "bom",
        "utf16",
        "cp1252",
        "missing",
        "extra-columns",
        "renamed-columns",
        "unknown-enum",
        "nulls-everywhere",
        "megabytes",
        "timestamps",
        "png",
        "xlsx",
        "empty",
    ):
        assert kind in names, kind
    assert len(MALFORMED) + len(GENERATED) >= 30
