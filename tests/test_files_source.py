"""Reading downloaded provisioning logs: admin-center JSON and CSV, Log Analytics exports, saved Graph pages.

The fixtures come from tests/fixtures/files/make_fixtures.py, which writes each format from the same realistic
events; the tests compare what provkit reads back with those events, and run every malformed variant through
the reader with the expectations recorded in manifest.json.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

from provkit.data.sources.files import FileLoad, Reject, detect_format, parse_timestamp, read_files
from provkit.errors import InputError, ProvkitError

FIXTURES = Path(__file__).parent / "fixtures" / "files"
CASES = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
VALID = FIXTURES / "valid"
MALFORMED = FIXTURES / "malformed"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_fixtures", module)
    spec.loader.exec_module(module)
    return module


mf = _load_generator()


def _lower(value):
    return value.lower() if isinstance(value, str) else value


def essence(record: dict, *, seconds_only: bool = False) -> dict:
    """What an investigator reads off an entry, with enum case folded (the tables layer lower-cases)."""
    info = record.get("provisioningStatusInfo") or {}
    error = info.get("errorInformation") or {}
    stamp = record["activityDateTime"]
    return {
        "id": record["id"],
        "time": stamp[:19] if seconds_only else stamp,
        "changeId": record.get("changeId"),
        "action": _lower(record.get("provisioningAction")),
        "status": _lower(info.get("status")),
        "errorCode": error.get("errorCode"),
        "reason": error.get("reason"),
        "source": (record.get("sourceIdentity") or {}).get("displayName"),
        "steps": [
            (
                s["name"],
                _lower(s["provisioningStepType"]),
                _lower(s["status"]),
                s["description"],
                s["details"],
            )
            for s in record["provisioningSteps"]
        ],
        "properties": [
            (p["displayName"], p["oldValue"], p["newValue"]) for p in record["modifiedProperties"]
        ],
    }


def expected(
    indexes, *, seconds_only: bool = False, steps: bool = True, properties: bool = True
) -> list[dict]:
    out = []
    for i in indexes:
        e = essence(mf.event(i), seconds_only=seconds_only)
        if not steps:
            e["steps"] = []
        if not properties:
            e["properties"] = []
        out.append(e)
    return out


def read(*names: str, base: Path = VALID) -> FileLoad:
    return read_files([base / n for n in names])


# --- each valid format -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("admin-center.json", "admin-center-json"),
        ("admin-center-legacy.json", "admin-center-json"),
        ("admin-center.json.gz", "admin-center-json"),
        ("ProvisioningLogs_2024-03-10.csv", "admin-center-csv"),
        ("ProvisioningLogs_2024-03-10_ProvisioningSteps.csv", "admin-center-csv-steps"),
        ("ProvisioningLogs_2024-03-10_ModifiedProperties.csv", "admin-center-csv-properties"),
        ("la-export.csv", "log-analytics-csv"),
        ("la-export.json", "log-analytics-json"),
        ("la-query-api.json", "log-analytics-json"),
        ("graph-page-1.json", "graph-pages"),
        ("graph-pages.jsonl", "graph-pages"),
        ("graph-entries.jsonl", "graph-pages"),
    ],
)
def test_detects_each_format_from_its_content(name: str, fmt: str, tmp_path: Path) -> None:
    assert detect_format(VALID / name) == fmt
    # The content decides, not the extension: the same bytes under a meaningless name give the same answer
    # (file-name hints only break ties between the CSV companions, which keep their names here).
    if "Provisioning" not in name and "Modified" not in name:
        renamed = tmp_path / "download.dat"
        renamed.write_bytes((VALID / name).read_bytes())
        assert detect_format(renamed) == fmt


def test_admin_center_json_v1_is_read_as_sent() -> None:
    load = read("admin-center.json")
    assert (load.read, load.kept, load.rejects) == (12, 12, [])
    assert [essence(r) for r in load.records] == expected(range(12))
    conflict = load.records[4]
    assert conflict["provisioningStatusInfo"]["errorInformation"]["errorCategory"] == "nonServiceFailure"
    assert conflict["servicePrincipal"] == mf.SP
    assert conflict["targetSystem"]["details"]["ServicePrincipalId"] == mf.SP["id"]


def test_admin_center_json_older_names_become_v1_names() -> None:
    load = read("admin-center-legacy.json")
    assert load.kept == 8 and not load.rejects
    assert [essence(r) for r in load.records] == expected(range(8))
    first = load.records[0]
    assert "action" not in first and "statusInfo" not in first
    assert first["provisioningAction"] == "Create"  # the original text; the tables layer lower-cases
    failure = load.records[4]
    assert failure["provisioningStatusInfo"]["status"] == "Failure"
    assert failure["provisioningStatusInfo"]["errorInformation"]["errorCode"] == "EntryConflict"
    # step details arrived as [{"key": ..., "value": ...}] and are a dict now
    skip = load.records[2]["provisioningSteps"][-1]
    assert skip["details"] == {
        "SkipReason": "NotEffectivelyEntitled",
        "ReportableIdentifier": "DiegoS@contoso.com",
    }


def test_pascal_case_keys_are_matched() -> None:
    load = read("pascal-case-keys.json", base=MALFORMED)
    assert load.kept == 5
    assert [essence(r) for r in load.records] == expected(range(5))


def test_admin_center_csv_triplet_is_joined_on_change_id() -> None:
    names = [
        "ProvisioningLogs_2024-03-10.csv",
        "ProvisioningLogs_2024-03-10_ProvisioningSteps.csv",
        "ProvisioningLogs_2024-03-10_ModifiedProperties.csv",
    ]
    load = read(*names)
    assert (load.read, load.kept, load.rejects, load.detail_rejects) == (10, 10, [], [])
    assert [essence(r) for r in load.records] == expected(range(10))
    assert load.formats[str(VALID / names[1])] == "admin-center-csv-steps"
    # the steps file lists events in reverse order; steps still come out in Step Number order
    scoped_out = load.records[3]["provisioningSteps"]
    assert [s["name"] for s in scoped_out] == [
        "EntryImport",
        "EntrySynchronizationScoping",
        "EntrySynchronizationSkip",
    ]
    assert (
        json.loads(scoped_out[1]["details"]["ScopeEvaluationResult"])["scopingFilterGroups"][0]["result"]
        is False
    )
    # the order the user passes the files in does not matter
    shuffled = read(names[2], names[0], names[1])
    assert shuffled.records == load.records


def test_admin_center_csv_main_alone_says_steps_and_properties_are_missing() -> None:
    load = read("ProvisioningLogs_2024-03-10.csv")
    assert load.kept == 10
    assert all(r["provisioningSteps"] == [] and r["modifiedProperties"] == [] for r in load.records)
    assert any("no _ProvisioningSteps CSV file" in w for w in load.warnings)
    assert any("no _ModifiedProperties CSV file" in w for w in load.warnings)


def test_log_analytics_csv_json_strings_are_parsed() -> None:
    load = read("la-export.csv")
    assert load.kept == 8 and not load.rejects
    # the portal's CSV export keeps milliseconds only
    got = [essence(r, seconds_only=True) for r in load.records]
    assert got == expected(range(8), seconds_only=True)
    row = load.records[0]
    assert row["activityDateTime"] == "2024-03-10T16:10:00.123Z"
    assert row["tenantId"] == mf.TENANT  # AADTenantId
    assert row["logAnalyticsWorkspaceId"] != mf.TENANT  # TenantId is the workspace, kept apart
    assert row["servicePrincipal"] == {"id": mf.SP["id"], "displayName": mf.SP["displayName"]}
    assert row["sourceSystem"] == {"displayName": "Azure AD"}  # a plain string column
    assert row["CorrelationId"] and row["Type"] == "AADProvisioningLogs"  # unknown columns are kept
    # "None" in ResultSignature is Log Analytics' placeholder, not an error code
    assert row["provisioningStatusInfo"]["errorInformation"] is None


@pytest.mark.parametrize("name", ["la-export.json", "la-query-api.json"])
def test_log_analytics_json_rows_and_query_api_tables(name: str) -> None:
    load = read(name)
    assert load.kept == 6 and not load.rejects
    assert [essence(r) for r in load.records] == expected(range(6))


def test_saved_graph_pages_and_jsonl() -> None:
    pages = read("graph-page-1.json", "graph-page-2.json")
    assert [essence(r) for r in pages.records] == expected(range(10))
    assert [essence(r) for r in read("graph-pages.jsonl").records] == expected(range(12))
    assert [essence(r) for r in read("graph-entries.jsonl").records] == expected(range(7))


def test_gzip_compressed_download() -> None:
    load = read("admin-center.json.gz")
    assert [essence(r) for r in load.records] == expected(range(6))


# --- every malformed (and valid) fixture, with its recorded expectations --------------------------------------


def _case_id(case: dict) -> str:
    return case["name"]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_fixture_case(case: dict) -> None:
    paths = [FIXTURES / f for f in case["files"]]
    names = {str(p) for p in paths}
    if case.get("unreadable"):
        with pytest.raises(InputError) as caught:
            read_files(paths)
        error = caught.value
        assert error.file in names
        assert error.file in str(error) and "expected" in str(error)
        assert isinstance(error, ProvkitError) and isinstance(error, ValueError)
        return
    load = read_files(paths)  # any exception here fails the test: only InputError is allowed, and not here
    assert load.read == load.kept + len(load.rejects)
    assert load.formats[str(paths[0])] == case["format"]
    if "kept" in case:
        assert load.kept == case["kept"]
    if "min_kept" in case:
        assert load.kept >= case["min_kept"]
    assert len(load.rejects) == case.get("rejects", 0), [str(r) for r in load.rejects]
    assert len(load.detail_rejects) == case.get("detail_rejects", 0), [str(r) for r in load.detail_rejects]
    for reject in load.rejects + load.detail_rejects:
        assert reject.file in names
        assert reject.line is not None and reject.line >= 1
        assert str(reject).startswith(f"{reject.file}, line {reject.line}")
    if "reject_lines" in case:
        assert [r.line for r in load.rejects] == case["reject_lines"]
    if "reason" in case:
        assert all(case["reason"] in r.reason for r in load.rejects), [r.reason for r in load.rejects]
    if "warning" in case:
        assert any(case["warning"] in w for w in load.warnings), load.warnings
    assert all(any(w.startswith(n) for n in names) for w in load.warnings)
    for record in load.records:
        assert record["id"] and record["activityDateTime"].endswith("Z")


def test_there_are_at_least_thirty_malformed_inputs() -> None:
    assert sum(1 for c in CASES if c["files"][0].startswith("malformed/")) >= 30


def test_fixtures_are_reproducible(tmp_path: Path) -> None:
    mf.build(tmp_path)
    committed = sorted(
        p.relative_to(FIXTURES) for p in FIXTURES.rglob("*") if p.is_file() and p.suffix != ".py"
    )
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert made == committed
    for rel in made:
        assert (tmp_path / rel).read_bytes() == (FIXTURES / rel).read_bytes(), rel
    assert sum((FIXTURES / rel).stat().st_size for rel in made) < 1_000_000


# --- what the malformed variants must preserve ------------------------------------------------------------------


def test_truncated_json_keeps_the_records_before_the_cut() -> None:
    load = read("truncated-one-per-line.json", base=MALFORMED)
    assert [essence(r) for r in load.records] == expected(range(5))
    (reject,) = load.rejects
    assert (reject.line, reject.record) == (7, 6)
    assert "cut off" in reject.reason
    assert any("ends inside a record" in w for w in load.warnings)


def test_syntax_error_mid_array_skips_only_the_broken_record() -> None:
    load = read("syntax-error-mid-array.json", base=MALFORMED)
    assert [r["id"] for r in load.records] == [mf.event(i)["id"] for i in (0, 1, 2, 4, 5, 6, 7)]
    assert "Expecting ',' delimiter" in load.rejects[0].reason


def test_la_column_with_broken_json_names_column_line_and_position() -> None:
    load = read("la-bad-json-column.csv", base=MALFORMED)
    (reject,) = load.rejects
    assert reject.line == 3
    assert reject.reason.startswith("ProvisioningSteps is not valid JSON: Expecting ',' delimiter at char ")


def test_encodings_bom_utf16_and_cp1252() -> None:
    assert [essence(r) for r in read("bom-utf8.json", base=MALFORMED).records] == expected(range(5))
    assert [essence(r) for r in read("utf16-nobom.json", base=MALFORMED).records] == expected(range(5))
    assert [essence(r) for r in read("utf16-be.jsonl", base=MALFORMED).records] == expected(range(5))
    tab = read("utf16-tab.csv", base=MALFORMED)
    assert [essence(r) for r in tab.records] == expected(range(6), steps=False, properties=False)
    latin = read("cp1252.csv", base=MALFORMED)
    assert {r["sourceIdentity"]["displayName"] for r in latin.records} == {"José Müller"}
    assert any("Windows-1252" in w for w in latin.warnings)


def test_renamed_missing_and_extra_columns() -> None:
    renamed = read("renamed-columns.csv", base=MALFORMED)
    assert [essence(r) for r in renamed.records] == expected(range(8), steps=False, properties=False)
    assert (
        renamed.records[0]["servicePrincipal"] == mf.SP
    )  # "Application Name", "Service Principal Object ID"
    extra = read("extra-columns.csv", base=MALFORMED)
    assert {r["Ticket"] for r in extra.records} == {"INC0012345"}
    assert all(r["Correlation ID"] for r in extra.records)
    few = read("missing-optional-columns.csv", base=MALFORMED)
    assert [r["provisioningAction"] for r in few.records] == [mf.PLAN[i][0].capitalize() for i in range(6)]
    assert all(r["id"] == r["changeId"] for r in few.records)
    assert any("change id stands in" in w for w in few.warnings)


def test_unknown_enum_values_and_fields_are_kept() -> None:
    load = read("unknown-enums.json", base=MALFORMED)
    records = load.records
    assert records[0]["provisioningAction"] == "Reconcile"
    assert records[1]["provisioningStatusInfo"]["status"] == "partialSuccess"
    assert {s["provisioningStepType"] for s in records[2]["provisioningSteps"]} == {"Evaluation"}
    assert records[3]["initiatedBy"]["initiatorType"] == "workflow"
    assert records[4]["brandNewField"] == {"nested": [1, 2]}


def test_timestamps_in_other_forms_become_iso_utc() -> None:
    load = read("timestamps.csv", base=MALFORMED)
    assert [r["activityDateTime"] for r in load.records] == [
        "2024-03-10T16:15:21Z",
        "2024-03-10T16:15:21Z",
        "2024-03-10T16:15:21Z",
        "2024-03-10T15:15:21.123456Z",
        "2024-10-03T16:15:00Z",
        "2024-03-10T16:15:21Z",
        "2024-03-10T16:15:21Z",
    ]
    assert "'yesterday at noon' is not a date and time" in load.rejects[0].reason
    semicolons = read("semicolon-excel.csv", base=MALFORMED)  # Excel's sep=; line, day-first dotted dates
    assert [r["activityDateTime"][:10] for r in semicolons.records] == [f"2024-03-{10 + n}" for n in range(6)]


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("2024-03-10T16:15:21.1234567Z", "2024-03-10T16:15:21.1234567Z"),  # Graph's own form, untouched
        ("2024-03-10T16:15:21-05:00", "2024-03-10T21:15:21Z"),
        ("2024-03-10", "2024-03-10T00:00:00Z"),
        ("3/10/2024, 4:15:21.123 PM", "2024-03-10T16:15:21.123Z"),
        ("3/10/2024 12:05:00 AM", "2024-03-10T00:05:00Z"),
        ("25/3/2024 08:00", "2024-03-25T08:00:00Z"),
        (1710087321, "2024-03-10T16:15:21Z"),
        ("1710087321000", "2024-03-10T16:15:21Z"),
        ("/Date(1710087321000)/", "2024-03-10T16:15:21Z"),
    ],
)
def test_parse_timestamp_forms(value: object, iso: str) -> None:
    assert parse_timestamp(value) == iso


@pytest.mark.parametrize(
    "value",
    ["2024-02-30T00:00:00Z", "2024-03-10T24:00:00Z", "13/13/2024", "20240310", "", None, True, "soon"],
)
def test_parse_timestamp_refuses_what_is_not_a_time(value: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value)


def test_step_details_in_every_written_form() -> None:
    load = read("details_main.csv", "details_ProvisioningSteps.csv", base=MALFORMED)
    details = [s["details"] for s in load.records[0]["provisioningSteps"]]
    assert details == [
        {"SkipReason": "None"},
        {"IsActive": "True", "Assigned to the application": "True"},
        {"Details": "a sentence without keys"},
        {"ReportableIdentifier": "AdeleV"},
    ]


def test_orphan_steps_and_properties_are_reported() -> None:
    load = read(
        "ProvisioningLogs_orphans.csv",
        "ProvisioningLogs_orphans_ProvisioningSteps.csv",
        "ProvisioningLogs_orphans_ModifiedProperties.csv",
        base=MALFORMED,
    )
    assert [essence(r) for r in load.records] == expected(range(5))
    orphans = {(Path(r.file).name, r.line) for r in load.detail_rejects}

    def line_of(name: str, n: int) -> tuple[str, int]:  # where the orphan row is, counted in the file itself
        text = (MALFORMED / name).read_text(encoding="utf-8")
        return name, text[: text.index(mf.uid("nowhere", n))].count("\n") + 1

    steps_file = "ProvisioningLogs_orphans_ProvisioningSteps.csv"
    props_file = "ProvisioningLogs_orphans_ModifiedProperties.csv"
    assert orphans == {line_of(steps_file, 1), line_of(steps_file, 2), line_of(props_file, 3)}
    # steps before the orphan hold multi-line Details cells, so the line is not simply the row number
    assert line_of(steps_file, 1)[1] > 5
    assert all("matches no event" in r.reason for r in load.detail_rejects)


def test_steps_file_alone_reports_every_row() -> None:
    load = read("ProvisioningLogs_alone_ProvisioningSteps.csv", base=MALFORMED)
    assert load.kept == load.read == 0
    assert len(load.detail_rejects) == sum(len(mf.event(i)["provisioningSteps"]) for i in range(2))
    assert any("no admin-center main CSV" in w for w in load.warnings)


# --- large fields, generated here rather than committed ---------------------------------------------------------

BIG = 5 * 1024 * 1024


def test_five_megabyte_field_in_csv_and_json(tmp_path: Path) -> None:
    members = ",".join(f"user{n:07d}@contoso.com" for n in range(BIG // 24))
    e = mf.event(8)  # the group create
    e["modifiedProperties"] = [{"displayName": "members", "oldValue": None, "newValue": members}]
    la = tmp_path / "la-big.csv"
    la.write_text(mf.la_csv([mf.la_row(e), mf.la_row(mf.event(0))]), encoding="utf-8")
    main = tmp_path / "big.csv"
    main.write_text(mf.table(mf.MAIN_HEADER, [mf.main_row(e)]), encoding="utf-8")
    props = tmp_path / "big_ModifiedProperties.csv"
    props.write_text(mf.table(mf.PROP_HEADER, mf.prop_rows(e)), encoding="utf-8")
    page = tmp_path / "big.json.gz"
    page.write_bytes(gzip.compress(mf.minified(mf.page([e], False)).encode(), mtime=0))
    load = read_files([la, main, props, page])
    assert load.kept == 4 and not load.rejects
    values = [r["modifiedProperties"][0]["newValue"] for r in load.records if r["changeId"] == e["changeId"]]
    assert [len(v) for v in values] == [len(members)] * 3


# --- whole-file problems -----------------------------------------------------------------------------------------


def test_missing_file_and_folder_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found") as caught:
        read_files([tmp_path / "nope.json"])
    assert caught.value.file == str(tmp_path / "nope.json")
    with pytest.raises(InputError, match="is a folder"):
        read_files([tmp_path])
    with pytest.raises(InputError, match="No files were given"):
        read_files([])
    with pytest.raises(InputError, match="PNG"):
        detect_format(MALFORMED / "image.png")


def test_several_unreadable_files_are_named_together_or_reported() -> None:
    good = VALID / "admin-center.json"
    bad = [MALFORMED / "image.png", MALFORMED / "empty.json"]
    with pytest.raises(InputError) as caught:
        read_files([bad[0], good, bad[1]])
    assert "2 files cannot be read" in str(caught.value)
    assert all(str(p) in str(caught.value) for p in bad)
    load = read_files([bad[0], good, bad[1]], on_unreadable="report")
    assert load.kept == 12 and set(load.unreadable) == {str(p) for p in bad}
    assert load.read == load.kept + len(load.rejects)


def test_a_file_given_twice_is_read_once() -> None:
    load = read_files([VALID / "admin-center.json", VALID / "admin-center.json"])
    assert load.kept == 12
    assert any("given twice" in w for w in load.warnings)


@pytest.mark.reliability
def test_mutated_fixtures_never_raise_anything_but_input_error(tmp_path: Path) -> None:
    """Cut, flipped, inserted and deleted bytes in every fixture: each read ends in a load or an InputError."""
    rng = random.Random(20240310)
    sources = sorted(
        p
        for p in FIXTURES.rglob("*")
        if p.is_file() and p.suffix not in (".py",) and p.name != "manifest.json"
    )
    junk = [
        b",",
        b'"',
        b"{",
        b"}",
        b"[",
        b"]",
        b"\n",
        b"\r",
        b"\x00",
        b";",
        b"\xff",
        b"null",
        b'"activityDateTime":',
    ]
    outcomes = {"load": 0, "input-error": 0}
    for n in range(300):
        source = sources[n % len(sources)]
        data = bytearray(source.read_bytes())
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data) or 1)
            match rng.randrange(4):
                case 0:
                    del data[at:]
                case 1:
                    data[at : at + 1] = bytes([rng.randrange(256)])
                case 2:
                    data[at:at] = rng.choice(junk)
                case _:
                    del data[at : at + rng.randint(1, 40)]
        target = tmp_path / f"m{n}{''.join(source.suffixes)}"
        target.write_bytes(bytes(data))
        try:
            load = read_files([target])
        except InputError as exc:
            assert exc.file == str(target)
            outcomes["input-error"] += 1
            continue
        assert load.read == load.kept + len(load.rejects)
        assert all(r.file == str(target) and r.line for r in load.rejects)
        outcomes["load"] += 1
    assert outcomes["load"] > 100 and outcomes["input-error"] > 10


def test_reject_names_file_line_and_record() -> None:
    reject = Reject(file="x.csv", line=14, record=13, reason="'activityDateTime' missing")
    assert str(reject) == "x.csv, line 14 (record 13): 'activityDateTime' missing"


# --- into the tables ---------------------------------------------------------------------------------------------


def test_records_load_into_the_tables() -> None:
    tables = pytest.importorskip("provkit.data.tables")
    for case in CASES:
        if case.get("unreadable"):
            continue
        load = read_files([FIXTURES / f for f in case["files"]])
        result = tables.events_from_records(load.records)
        assert len(result.events) == load.kept, case["name"]
        assert not result.rejects, case["name"]
    triplet = read(
        "ProvisioningLogs_2024-03-10.csv",
        "ProvisioningLogs_2024-03-10_ProvisioningSteps.csv",
        "ProvisioningLogs_2024-03-10_ModifiedProperties.csv",
    )
    events = tables.events_from_records(triplet.records).events
    assert list(events["error_code"].dropna()) == [
        "EntryConflict",
        "SystemForCrossDomainIdentityManagementBadResponse",
    ]
    assert set(events["skip_reason"].dropna()) == {"NotEffectivelyEntitled", "NotInScope", "RedundantExport"}
    assert set(events["action"].astype(str)) == {"create", "update", "disable", "delete", "other"}
