"""Graph JSON to the tidy tables: what a user of events, steps, properties and jobs relies on."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from provkit.data import tables
from provkit.data.tables import (
    EVENT_COLUMNS,
    JOB_COLUMNS,
    PROPERTY_COLUMNS,
    STEP_COLUMNS,
    concat_tables,
    empty_tables,
    events_from_records,
    jobs_from_records,
    parse_graph_duration,
    parse_graph_time,
    parse_graph_times,
)


def scope_evaluation(*groups: dict[str, Any]) -> str:
    return json.dumps({"scopingFilterGroups": list(groups)})


def clause(attribute: str, operator: str, targets: list[str], value: Any, result: bool) -> dict[str, Any]:
    return {
        "sourceOperandName": attribute,
        "operatorName": operator,
        "targetOperand": targets,
        "sourceValue": value,
        "result": result,
    }


SALES_ONLY_FAILED = scope_evaluation(
    {
        "name": "Sales only",
        "result": False,
        "clauses": [clause("department", "EQUALS", ["Sales"], "Marketing", False)],
    }
)


def entry(**overrides: Any) -> dict[str, Any]:
    """The failure example of the Graph reference (section 1.6), plus a scoping and a skip step."""
    record: dict[str, Any] = {
        "id": "gc532ff9-r265-ec76-861e-42e2970a8218",
        "activityDateTime": "2019-06-24T20:53:08Z",
        "tenantId": "7928d5b5-7442-4a97-ne2d-66f9j9972ecn",
        "jobId": "ContosoOutDelta.7928d5b574424a97ne2d66f9j9972ecn",
        "cycleId": "44576n58-v14b-70fj-8404-3d22tt46ed93",
        "changeId": "eaad2f8b-e6e3-409b-83bd-e4e2e57177d5",
        "provisioningAction": "create",
        "durationInMilliseconds": 2785,
        "sourceSystem": {"id": "0404601d", "displayName": "Azure Active Directory", "details": {}},
        "targetSystem": {
            "id": "cd22f60b",
            "displayName": "Contoso",
            "details": {"ApplicationId": "f2764360"},
        },
        "initiatedBy": {"id": "", "displayName": "Azure AD Provisioning Service", "initiatorType": "system"},
        "servicePrincipal": {"id": "chc46a42", "displayName": "Contoso"},
        "sourceIdentity": {
            "id": "5e6c9rae",
            "displayName": "Self-service Pilot",
            "identityType": "Group",
            "details": {},
        },
        "targetIdentity": {"id": "", "displayName": "", "identityType": "Group", "details": {}},
        "provisioningStatusInfo": {
            "status": "failure",
            "errorInformation": {
                "errorCode": "ContosoEntryConflict",
                "reason": "Contoso returned an error response with the HTTP status code 409.",
                "additionalDetails": None,
                "errorCategory": "nonServiceFailure",
                "recommendedAction": None,
            },
        },
        "provisioningSteps": [
            {
                "name": "EntryImportAdd",
                "provisioningStepType": "import",
                "status": "success",
                "description": "Received Group 'Self-service Pilot' change of type (Add) from Azure Active Directory",
                "details": {},
            },
            {
                "name": "EntrySynchronizationAdd",
                "provisioningStepType": "matching",
                "status": "success",
                "description": "Group 'Self-service Pilot' will be created in Contoso",
                "details": {},
            },
            {
                "name": "EntryExportAdd",
                "provisioningStepType": "export",
                "status": "failure",
                "description": "Failed to create Group 'Self-service Pilot' in Contoso",
                "details": {"ReportableIdentifier": "Self-service Pilot"},
            },
        ],
        "modifiedProperties": [
            {"displayName": "objectId", "oldValue": None, "newValue": "5e0c9eae"},
            {"displayName": "displayName", "oldValue": None, "newValue": "Self-service Pilot"},
            {"displayName": "mailEnabled", "oldValue": None, "newValue": "False"},
        ],
    }
    record.update(overrides)
    return record


def skipped_entry(
    record_id: str = "skip-1", *, evaluation: Any = SALES_ONLY_FAILED, **details: Any
) -> dict[str, Any]:
    scoping = {
        "IsActive": "True",
        "Assigned to the application": "False",
        "IsEffectivelyEntitledForProvisioning": "False",
        "IsInProvisioningScope": "True",
        "ScopeEvaluationResult": evaluation,
    } | details
    return entry(
        id=record_id,
        changeId=f"change-{record_id}",
        provisioningAction="other",
        provisioningStatusInfo={"status": "skipped"},
        modifiedProperties=[],
        provisioningSteps=[
            {"name": "EntryImport", "provisioningStepType": "import", "status": "success", "details": {}},
            {
                "name": "EntrySynchronizationScoping",
                "provisioningStepType": "scoping",
                "status": "skipped",
                "details": scoping,
            },
            {
                "name": "EntrySynchronizationSkip",
                "provisioningStepType": "export",
                "status": "skipped",
                "details": {
                    "SkipReason": "NotEffectivelyEntitled",
                    "ReportableIdentifier": "adele@contoso.com",
                },
            },
        ],
    )


# --- times and durations -----------------------------------------------------------------------------


def test_seven_fractional_digits_are_kept_to_the_100ns_tick() -> None:
    t = events_from_records([entry(activityDateTime="2024-03-10T16:17:24.7488681Z")])
    assert t.events["activity_time"].dtype == "datetime64[ns, UTC]"
    assert t.events["activity_time"][0] == pd.Timestamp("2024-03-10T16:17:24.748868100Z")
    assert parse_graph_time("2024-03-10T16:17:24.7488681Z").nanosecond == 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-10T16:17:24Z", "2024-03-10T16:17:24Z"),
        ("2024-03-10T16:17:24+00:00", "2024-03-10T16:17:24Z"),
        ("2024-03-10T18:17:24.5+02:00", "2024-03-10T16:17:24.5Z"),
        ("2024-03-10T16:17:24", "2024-03-10T16:17:24Z"),
        ("2024-03-10", "2024-03-10T00:00:00Z"),
        ("2024-03-10t16:17:24z", "2024-03-10T16:17:24Z"),
    ],
)
def test_time_formats_all_become_utc(text: str, expected: str) -> None:
    want = pd.Timestamp(expected)
    assert parse_graph_time(text) == want
    assert parse_graph_times([text, "2024-03-10T16:17:24.1234567Z"])[0] == want  # the fallback path
    assert parse_graph_times([text])[0] == want


@pytest.mark.parametrize("never", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:00", "", None, "soon"])
def test_never_empty_and_garbage_times_are_nat(never: str | None) -> None:
    assert parse_graph_time(never) is pd.NaT
    parsed = parse_graph_times(pd.Series([never, "2024-03-10T16:17:24Z"], index=[7, 8]))
    assert parsed.dtype == "datetime64[ns, UTC]"
    assert list(parsed.index) == [7, 8]
    assert pd.isna(parsed[7]) and parsed[8] == pd.Timestamp("2024-03-10T16:17:24Z")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT40M", pd.Timedelta(minutes=40)),
        ("PT20M", pd.Timedelta(minutes=20)),
        ("P1DT2H", pd.Timedelta(days=1, hours=2)),
        ("PT0.5S", pd.Timedelta(milliseconds=500)),
        ("-PT1M", pd.Timedelta(minutes=-1)),
    ],
)
def test_iso_durations(text: str, expected: pd.Timedelta) -> None:
    assert parse_graph_duration(text) == expected


@pytest.mark.parametrize("text", ["P10675199DT2H48M5.4775807S", "P", "PT", "40 minutes", None])
def test_timespan_max_and_bad_durations_are_nat_not_an_overflow(text: str | None) -> None:
    assert parse_graph_duration(text) is pd.NaT


# --- events -------------------------------------------------------------------------------------------


def test_reference_example_flattens_to_one_event_with_its_steps_and_properties() -> None:
    t = events_from_records([entry()])
    assert (len(t.events), len(t.steps), len(t.properties), t.rejects) == (1, 3, 3, [])
    event = t.events.iloc[0]
    assert event["action"] == "create" and event["status"] == "failure"
    assert event["duration_ms"] == 2785 and event["step_count"] == 3
    assert (event["service_principal_id"], event["service_principal_name"]) == ("chc46a42", "Contoso")
    assert (event["source_system"], event["target_system"]) == ("Azure Active Directory", "Contoso")
    assert (event["source_name"], event["source_type"], event["target_id"]) == (
        "Self-service Pilot",
        "Group",
        "",
    )
    assert (event["initiator_type"], event["initiator_name"]) == ("system", "Azure AD Provisioning Service")
    assert event["error_code"] == "ContosoEntryConflict"
    assert event["error_category"] == "nonServiceFailure"
    assert pd.isna(event["error_recommended_action"])
    assert event["reportable_identifier"] == "Self-service Pilot"
    assert pd.isna(event["skip_reason"]) and pd.isna(event["scoping_result"])
    assert event["extra"] == ""
    assert list(t.steps["step_order"]) == [0, 1, 2]
    assert list(t.steps["step_type"]) == ["import", "matching", "export"]
    assert set(t.steps["change_id"]) == {"eaad2f8b-e6e3-409b-83bd-e4e2e57177d5"}
    assert list(t.steps["details"]) == ["{}", "{}", '{"ReportableIdentifier": "Self-service Pilot"}']
    assert t.properties["old_value"].isna().all()
    assert list(t.properties["new_value"]) == ["5e0c9eae", "Self-service Pilot", "False"]


def test_columns_and_dtypes_follow_the_contract_for_data_and_for_empty_input() -> None:
    data = events_from_records([entry(), skipped_entry()])
    empty = events_from_records([])
    for frame, spec in (
        (data.events, EVENT_COLUMNS),
        (data.steps, STEP_COLUMNS),
        (data.properties, PROPERTY_COLUMNS),
    ):
        assert list(frame.columns) == list(spec)
    for got, want in zip(
        (empty.events, empty.steps, empty.properties), (data.events, data.steps, data.properties), strict=True
    ):
        assert len(got) == 0
        assert got.dtypes.equals(want.dtypes)
    assert empty_tables().events.dtypes.equals(data.events.dtypes)
    assert data.events["activity_time"].dtype == "datetime64[ns, UTC]"
    assert data.events["scoping_result"].dtype == "boolean"
    assert data.steps["step_order"].dtype == "Int16"


def test_every_column_is_documented_in_the_module_docstring() -> None:
    doc = tables.__doc__ or ""
    for name in [*EVENT_COLUMNS, *STEP_COLUMNS, *PROPERTY_COLUMNS, *JOB_COLUMNS]:
        suffix = name.removeprefix("last_execution").removeprefix("last_successful_with_exports")
        suffix = suffix.removeprefix("last_successful")
        assert name in doc or suffix in doc, name


def test_pascalcase_action_from_a_download_is_read_and_lower_cased() -> None:
    record = entry(action="StagedDelete")
    del record["provisioningAction"]
    t = events_from_records([record, entry(id="both", action="Create", provisioningAction="update")])
    assert list(t.events["action"]) == ["stageddelete", "update"]
    assert t.events["extra"].eq("").all()  # `action` is mapped, not an unknown field


@pytest.mark.parametrize("value", ["stagedDelete", "STAGEDDELETE", " StagedDelete "])
def test_enum_values_are_matched_regardless_of_case(value: str) -> None:
    t = events_from_records([entry(provisioningAction=value, provisioningStatusInfo={"status": "Skipped"})])
    assert t.events["action"][0] == "stageddelete"
    assert t.events["status"][0] == "skipped"
    assert t.events["action"].cat.categories[0] == "create"  # known values first


def test_unknown_enum_values_are_kept_lower_cased_not_dropped() -> None:
    steps = [{"name": "EntryTransform", "provisioningStepType": "Transformation", "status": "Deferred"}]
    record = entry(
        provisioningAction="Reticulate", provisioningStatusInfo={"status": "Pending"}, provisioningSteps=steps
    )
    t = events_from_records([record, entry(id="known")])
    assert list(t.events["action"]) == ["reticulate", "create"]
    assert t.events["status"][0] == "pending"
    assert "reticulate" in t.events["action"].cat.categories
    assert (t.steps["step_type"][0], t.steps["status"][0]) == ("transformation", "deferred")


def test_unknown_top_level_fields_are_kept_in_extra() -> None:
    new = {"correlationId": "abc", "newThing": {"nested": [1, 2]}}
    t = events_from_records([entry(**new), entry(id="plain")])
    assert json.loads(t.events["extra"][0]) == new
    assert t.events["extra"][1] == ""


def test_extra_text_keeps_the_order_sent_so_the_same_input_gives_the_same_text_in_every_run() -> None:
    # Before, the unknown fields were collected through a set: their order (and so the stored text) changed with
    # the process's string hashing, so two fetches of one entry wrote different `extra` values.
    new = {f"field{letter}": n for n, letter in enumerate("hgfedcba")}
    t = events_from_records([entry(**new)])
    assert t.events["extra"][0] == json.dumps(new)
    job = copy.deepcopy(EXAMPLE_JOB)
    job |= {f"jobField{letter}": n for n, letter in enumerate("zyxw")}
    job["status"] |= {f"statusField{letter}": n for n, letter in enumerate("dcba")}
    text = job_frame(job)["extra"][0]
    assert list(json.loads(text)) == [f"jobField{c}" for c in "zyxw"] + [
        f"status.statusField{c}" for c in "dcba"
    ]


def test_error_information_and_the_older_error_info_are_both_read() -> None:
    error = {
        "errorCode": "SalesforceInvalidCredentials",
        "reason": "bad",
        "recommendedAction": "re-authorise",
    }
    t = events_from_records(
        [
            entry(id="new", provisioningStatusInfo={"status": "failure", "errorInformation": error}),
            entry(id="old", provisioningStatusInfo={"status": "failure", "errorInfo": error}),
            entry(id="none", provisioningStatusInfo={"status": "success", "errorInformation": None}),
        ]
    )
    assert list(t.events["error_code"][:2]) == ["SalesforceInvalidCredentials"] * 2
    assert list(t.events["error_recommended_action"][:2]) == ["re-authorise"] * 2
    assert pd.isna(t.events["error_code"][2])


def test_skip_reason_and_scoping_details_are_lifted_onto_the_event() -> None:
    t = events_from_records([skipped_entry()])
    event = t.events.iloc[0]
    assert event["skip_reason"] == "NotEffectivelyEntitled"
    assert event["reportable_identifier"] == "adele@contoso.com"
    assert (event["is_active"], event["assigned"], event["effectively_entitled"]) == (True, False, False)
    assert event["scoping_result"] == True  # noqa: E712 (a nullable boolean: numpy bool, not True)
    assert event["failed_scope_clause"] == "department EQUALS 'Sales'"
    assert event["failed_scope_value"] == "Marketing"
    # On the steps table each value sits on the step that carried it.
    steps = t.steps.set_index("name")
    assert steps.loc["EntrySynchronizationSkip", "skip_reason"] == "NotEffectivelyEntitled"
    assert pd.isna(steps.loc["EntrySynchronizationScoping", "skip_reason"])
    assert steps.loc["EntrySynchronizationScoping", "failed_scope_clause"] == "department EQUALS 'Sales'"
    assert pd.isna(steps.loc["EntryImport", "assigned"])


def test_a_null_detail_does_not_hide_a_later_value() -> None:
    record = skipped_entry()
    record["provisioningSteps"][0]["details"] = {"SkipReason": None, "ReportableIdentifier": "first"}
    t = events_from_records([record])
    assert t.events["skip_reason"][0] == "NotEffectivelyEntitled"
    assert t.events["reportable_identifier"][0] == "first"
    assert list(t.steps["skip_reason"].isna()) == [True, True, False]


def test_other_skip_reasons_are_kept_as_sent() -> None:
    record = skipped_entry()
    record["provisioningSteps"][2]["details"]["SkipReason"] = "SomeFutureReason"
    assert events_from_records([record]).events["skip_reason"][0] == "SomeFutureReason"


def test_scope_evaluation_with_several_values_a_null_source_and_odd_boolean_casing() -> None:
    evaluation = scope_evaluation(
        {
            "name": "EMEA sales",
            "result": "FALSE",
            "clauses": [
                clause("country", "IN", ["DE", "FR"], "DE", True),
                clause("department", "EQUALS", ["Sales", "Pre-sales"], None, False),
            ],
        }
    )
    t = events_from_records(
        [
            skipped_entry(
                evaluation=evaluation, IsActive="true", IsInProvisioningScope="FALSE", Assigned="TRUE"
            )
        ]
    )
    event = t.events.iloc[0]
    assert event["failed_scope_clause"] == "department EQUALS 'Sales, Pre-sales'"
    assert event["failed_scope_value"] == "(empty)"
    assert event["scoping_result"] == False  # noqa: E712
    assert event["is_active"] == True  # noqa: E712


def test_no_failed_clause_when_a_filter_group_passed_or_there_is_no_filter() -> None:
    passed = scope_evaluation(
        {
            "name": "Sales",
            "result": False,
            "clauses": [clause("department", "EQUALS", ["Sales"], "HR", False)],
        },
        {"name": "HR", "result": True, "clauses": [clause("department", "EQUALS", ["HR"], "HR", True)]},
    )
    as_object = json.loads(SALES_ONLY_FAILED)  # a source that already parsed the JSON string
    t = events_from_records(
        [
            skipped_entry("a", evaluation=passed),
            skipped_entry("b", evaluation="{}"),
            skipped_entry("c", evaluation=as_object),
        ]
    )
    assert t.events["failed_scope_clause"][:2].isna().all()
    assert t.events["failed_scope_clause"][2] == "department EQUALS 'Sales'"


def test_assigned_is_read_from_either_key() -> None:
    record = skipped_entry()
    details = record["provisioningSteps"][1]["details"]
    del details["Assigned to the application"]
    details["Assigned"] = "True"
    assert events_from_records([record]).events["assigned"][0] == True  # noqa: E712


def test_details_column_is_the_json_of_the_details_dict() -> None:
    odd = {"Quote": 'say "hi"', "Unicode": "Zoë ✓", "Number": 3, "List": ["a"], "Nothing": None}
    record = entry(
        provisioningSteps=[{"name": "X", "details": odd}, {"name": "Y", "details": {"A": "1", "B": "2"}}]
    )
    details = events_from_records([record, copy.deepcopy(record) | {"id": "second"}]).steps["details"]
    assert json.loads(details[0]) == odd and json.loads(details[2]) == odd
    assert details[1] == json.dumps({"A": "1", "B": "2"}, ensure_ascii=False) == details[3]


def test_modified_property_values_stay_text_and_null_stays_missing() -> None:
    props = [
        {"displayName": "accountEnabled", "oldValue": True, "newValue": False},
        {"displayName": "manager", "oldValue": None, "newValue": {"id": "m1"}},
        {"name": "legacyName", "oldValue": "a", "newValue": "b"},
    ]
    t = events_from_records([entry(modifiedProperties=props)])
    assert list(t.properties["name"]) == ["accountEnabled", "manager", "legacyName"]
    assert list(t.properties["new_value"]) == ["False", '{"id": "m1"}', "b"]
    assert t.properties["old_value"][0] == "True" and pd.isna(t.properties["old_value"][1])


def test_malformed_records_are_rejected_and_the_good_ones_kept() -> None:
    bad_time = entry(id="bad-time", activityDateTime="yesterday")
    no_time = entry(id="no-time")
    del no_time["activityDateTime"]
    records = [
        entry(id="good-1"),
        "not a record",
        {"activityDateTime": "2024-01-01T00:00:00Z"},
        bad_time,
        no_time,
        entry(id="good-2"),
    ]
    t = events_from_records(iter(records))  # any iterable, read once
    assert list(t.events["id"]) == ["good-1", "good-2"]
    assert [position for position, _ in t.rejects] == [1, 2, 3, 4]
    reasons = dict(t.rejects)
    assert "str" in reasons[1] and "id" in reasons[2]
    assert "yesterday" in reasons[3] and "missing activityDateTime" in reasons[4]
    # The steps and properties of rejected entries go with them.
    assert set(t.steps["event_id"]) == set(t.properties["event_id"]) == {"good-1", "good-2"}
    assert len(t.steps) == 6 and len(t.properties) == 6


def test_a_batch_of_only_bad_records_gives_typed_empty_tables() -> None:
    t = events_from_records([5, {"x": 1}, {"id": "a"}])
    assert [position for position, _ in t.rejects] == [0, 1, 2]
    assert t.events.empty and t.steps.empty and t.properties.empty
    assert t.events.dtypes.equals(empty_tables().events.dtypes)


def test_malformed_nested_values_are_kept_not_dropped() -> None:
    record = entry(
        provisioningSteps=[
            {"name": "EntryImport"},
            "garbled step",
            {"name": "S", "details": '{"SkipReason": "X"}'},
        ],
        modifiedProperties="not a list",
    )
    t = events_from_records([record])
    assert len(t.steps) == 3
    assert json.loads(t.steps["details"][1]) == {"value": "garbled step"}
    assert t.events["skip_reason"][0] == "X"  # details sent as JSON text are read
    assert json.loads(t.events["extra"][0]) == {"modifiedProperties": "not a list"}
    assert len(t.properties) == 0


def test_nested_objects_sent_as_json_text_are_read() -> None:
    record = entry(
        servicePrincipal=json.dumps({"id": "sp1", "name": "Old name field"}),
        provisioningStatusInfo=json.dumps({"status": "Success"}),
        provisioningSteps=json.dumps([{"name": "EntryImport", "provisioningStepType": "Import"}]),
    )
    t = events_from_records([record])
    assert (t.events["service_principal_id"][0], t.events["service_principal_name"][0]) == (
        "sp1",
        "Old name field",
    )
    assert t.events["status"][0] == "success"
    assert list(t.steps["step_type"]) == ["import"]


def test_results_do_not_depend_on_how_the_input_is_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [skipped_entry(f"s{i}") if i % 2 else entry(id=f"e{i}", changeId=f"c{i}") for i in range(7)]
    records.insert(3, entry(id="bad", activityDateTime="nope"))
    whole = events_from_records(records)
    monkeypatch.setattr(tables.events, "_CHUNK", 2)
    chunked = events_from_records(records)
    pd.testing.assert_frame_equal(whole.events, chunked.events)
    pd.testing.assert_frame_equal(whole.steps, chunked.steps)
    pd.testing.assert_frame_equal(whole.properties, chunked.properties)
    assert whole.rejects == chunked.rejects == [(3, "unparsable activityDateTime 'nope'")]


def test_concat_keeps_dtypes_and_unknown_categories_from_every_part() -> None:
    a = events_from_records([entry(provisioningAction="Reticulate")])
    b = events_from_records([skipped_entry()])
    both = concat_tables([a, empty_tables(), b])
    assert list(both.events["action"]) == ["reticulate", "other"]
    assert both.events.dtypes.equals(a.events.dtypes)
    assert isinstance(both.steps["step_type"].dtype, pd.CategoricalDtype)
    assert len(both.steps) == len(a.steps) + len(b.steps)
    assert concat_tables([]).events.empty


# --- jobs ---------------------------------------------------------------------------------------------

EXAMPLE_JOB: dict[str, Any] = {
    "id": "scim.4a1b2c3d4e5f40718293a4b5c6d7e8f9.0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    "templateId": "scim",
    "schedule": {"expiration": None, "interval": "PT40M", "state": "Active"},
    "status": {
        "code": "Quarantine",
        "countSuccessiveCompleteFailures": 3,
        "escrowsPruned": False,
        "steadyStateFirstAchievedTime": "2024-03-01T10:12:05.7360238Z",
        "steadyStateLastAchievedTime": "2024-03-09T16:17:24.7957721Z",
        "troubleshootingUrl": None,
        "synchronizedEntryCountByType": [
            {"key": "User to urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "value": 1520}
        ],
        "progress": [],
        "lastExecution": {
            "activityIdentifier": "2dea06a7-2960-420d-931e-f6c807ebda24",
            "countEntitled": 0,
            "countEntitledForProvisioning": 0,
            "countEscrowed": 15,
            "countEscrowedRaw": 15,
            "countExported": 0,
            "countExports": 0,
            "countImported": 0,
            "countImportedDeltas": 0,
            "countImportedReferenceDeltas": 0,
            "state": "Failed",
            "error": {
                "code": "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",
                "message": "...",
                "tenantActionable": True,
            },
            "timeBegan": "2024-03-10T16:15:21.116098Z",
            "timeEnded": "2024-03-10T16:17:24.7488681Z",
        },
        "lastSuccessfulExecution": None,
        "lastSuccessfulExecutionWithExports": {
            "activityIdentifier": "...",
            "countExported": 5,
            "state": "Succeeded",
            "timeBegan": "2024-03-09T15:40:00Z",
            "timeEnded": "2024-03-09T15:42:10Z",
        },
        "quarantine": {
            "currentBegan": "2024-03-10T16:17:25Z",
            "nextAttempt": "2024-03-10T22:17:25Z",
            "reason": "EncounteredQuarantineException",
            "seriesBegan": "2024-03-10T16:17:25Z",
            "seriesCount": 1,
            "error": {
                "code": "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",
                "message": "...",
                "tenantActionable": True,
            },
        },
    },
    "synchronizationJobSettings": [{"name": "QuarantineTooManyDeletesThreshold", "value": "500"}],
}
SNAPSHOT = datetime(2024, 3, 10, 17, 0, tzinfo=UTC)


def job_frame(*jobs: Any) -> pd.DataFrame:
    return jobs_from_records(
        jobs, snapshot_time=SNAPSHOT, service_principal_id="sp-1", service_principal_name="Contoso"
    )


def test_reference_job_with_quarantine() -> None:
    frame = job_frame(EXAMPLE_JOB)
    assert list(frame.columns) == list(JOB_COLUMNS)
    job = frame.iloc[0]
    assert (job["snapshot_time"], job["service_principal_id"], job["service_principal_name"]) == (
        pd.Timestamp(SNAPSHOT),
        "sp-1",
        "Contoso",
    )
    assert (job["template_id"], job["status_code"], job["schedule_state"]) == ("scim", "Quarantine", "Active")
    assert job["schedule_interval"] == pd.Timedelta(minutes=40)
    assert pd.isna(job["schedule_expiration"])
    assert job["count_successive_complete_failures"] == 3 and job["escrows_pruned"] == False  # noqa: E712
    assert job["steady_state_last"] == pd.Timestamp("2024-03-09T16:17:24.7957721Z")
    assert job["last_execution_state"] == "Failed"
    assert job["last_execution_ended"] == pd.Timestamp("2024-03-10T16:17:24.7488681Z")
    assert job["last_execution_count_escrowed"] == 15 and job["last_execution_count_exported"] == 0
    assert (
        job["last_execution_error_code"]
        == "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable"
    )
    assert pd.isna(job["last_successful_id"]) and pd.isna(job["last_successful_began"])
    assert job["last_successful_with_exports_state"] == "Succeeded"
    assert job["last_successful_with_exports_ended"] == pd.Timestamp("2024-03-09T15:42:10Z")
    assert job["quarantine_reason"] == "EncounteredQuarantineException"
    assert job["quarantine_next_attempt"] == pd.Timestamp("2024-03-10T22:17:25Z")
    assert job["quarantine_series_count"] == 1 and job["quarantine_tenant_actionable"] == True  # noqa: E712
    assert job["synchronized_entries"] == 1520
    assert json.loads(job["settings"]) == EXAMPLE_JOB["synchronizationJobSettings"]
    assert pd.isna(job["progress_completed"]) and pd.isna(job["troubleshooting_url"])
    assert job["extra"] == ""


def test_new_job_never_steady_and_timespan_max_interval() -> None:
    job = copy.deepcopy(EXAMPLE_JOB)
    job["schedule"] = {"expiration": None, "interval": "P10675199DT2H48M5.4775807S", "state": "disabled"}
    status = job["status"]
    status.update(code="notconfigured", steadyStateFirstAchievedTime="0001-01-01T00:00:00Z", quarantine=None)
    status["steadyStateLastAchievedTime"] = "0001-01-01T00:00:00Z"
    status["progress"] = [
        {
            "completedUnits": 3,
            "totalUnits": 10,
            "progressObservationDateTime": "2024-03-10T16:10:00Z",
            "units": "pages",
        },
        {
            "completedUnits": 2,
            "totalUnits": 10,
            "progressObservationDateTime": "2024-03-10T16:00:00Z",
            "units": "pages",
        },
    ]
    row = job_frame(job).iloc[0]
    assert pd.isna(row["schedule_interval"])  # beyond timedelta64[ns]: no schedule
    assert (row["status_code"], row["schedule_state"]) == ("NotConfigured", "Disabled")  # canonical casing
    assert pd.isna(row["steady_state_first"]) and pd.isna(row["steady_state_last"])
    assert pd.isna(row["quarantine_reason"]) and pd.isna(row["quarantine_tenant_actionable"])
    assert (row["progress_completed"], row["progress_total"]) == (3, 10)  # the latest observation
    assert row["progress_time"] == pd.Timestamp("2024-03-10T16:10:00Z")


def test_unknown_job_values_and_fields_are_kept_and_bad_jobs_listed() -> None:
    job = copy.deepcopy(EXAMPLE_JOB)
    job["status"]["code"] = "Hibernating"
    job["status"]["newCounter"] = 4
    job["bulkUpload"] = {"state": "x"}
    frame = job_frame(job, ["not", "a", "job"], {"templateId": "no id"}, EXAMPLE_JOB)
    assert list(frame["status_code"]) == ["Hibernating", "Quarantine"]
    assert json.loads(frame["extra"][0]) == {"bulkUpload": {"state": "x"}, "status.newCounter": 4}
    assert [position for position, _ in frame.attrs["rejects"]] == [1, 2]


def test_no_jobs_gives_an_empty_frame_with_every_column() -> None:
    frame = job_frame()
    assert list(frame.columns) == list(JOB_COLUMNS) and frame.empty
    assert frame["schedule_interval"].dtype == "timedelta64[ns]"
    assert frame["snapshot_time"].dtype == "datetime64[ns, UTC]"


# ---------------------------------------------------------------------------------------------------------
# The documented shapes (reference 1.8): log keys, on-demand keys, ScopeEvaluationResult as filter.clause: bool

DOCUMENTED_LOG_SCOPING = {
    # cross-tenant synchronization "configure with Graph", step 12 (a page of provisioning logs)
    "Active in the source system": "True",
    "Assigned to the application": "True",
    "User has the required role": "True",
    "Scoping filter evaluation passed": "False",
    "ScopeEvaluationResult": "{\"Marketing department filter.department EQUALS 'Marketing'\":false}",
}


def documented_skip(record_id: str, **details: Any) -> dict[str, Any]:
    record = skipped_entry(record_id)
    record["provisioningSteps"][0] = {
        "name": "EntryImportAdd",
        "provisioningStepType": "import",
        "status": "success",
        "description": "Received User 'ann@contoso.com' change of type (Add) from Azure Active Directory",
        "details": {"department": "Sales", "accountEnabled": "True", "IsSoftDeleted": "False"},
    }
    record["provisioningSteps"][1]["provisioningStepType"] = "scoping"
    record["provisioningSteps"][1]["details"] = dict(DOCUMENTED_LOG_SCOPING) | details
    return record


def test_documented_log_keys_fill_the_scoping_columns() -> None:
    event = events_from_records([documented_skip("doc-1")]).events.iloc[0]
    assert event["is_active"] == True  # noqa: E712
    assert event["assigned"] == True  # noqa: E712
    assert event["has_required_role"] == True  # noqa: E712
    assert event["scoping_result"] == False  # noqa: E712
    assert event["failed_scope_filter"] == "Marketing department filter"
    assert event["failed_scope_clause"] == "department EQUALS 'Marketing'"
    assert pd.isna(event["failed_scope_value"])  # the documented form does not carry the value


def test_scoping_keys_are_read_whatever_their_case_and_spacing() -> None:
    record = documented_skip("doc-2")
    details = record["provisioningSteps"][1]["details"]
    details.clear()
    details.update(
        {
            "active in the source system": "false",
            "Assigned_to_the_Application": "TRUE",
            "scopeEvaluationResult": "{}",
            "isinprovisioningscopedisplayname": "True",
        }
    )
    event = events_from_records([record]).events.iloc[0]
    assert event["is_active"] == False  # noqa: E712
    assert event["assigned"] == True  # noqa: E712
    assert event["scoping_result"] == True  # noqa: E712
    assert pd.isna(event["failed_scope_clause"])


def test_documented_on_demand_keys_fill_the_same_columns() -> None:
    # provisionOnDemand example: IsActive, Assigned, IsEffectivelyEntitledForProvisioning,
    # IsInProvisioningScopeDisplayName ("True"), ScopeEvaluationResult "{}"
    record = skipped_entry("od-1")
    record["provisioningSteps"][1]["details"] = {
        "IsActive": "True",
        "Assigned": "False",
        "IsEffectivelyEntitledForProvisioning": "False",
        "IsInProvisioningScopeDisplayName": "True",
        "ScopeEvaluationResult": "{}",
    }
    event = events_from_records([record]).events.iloc[0]
    assert (event["is_active"], event["assigned"], event["effectively_entitled"]) == (True, False, False)
    assert event["scoping_result"] == True  # noqa: E712
    assert pd.isna(event["failed_scope_clause"])


@pytest.mark.parametrize(
    ("evaluation", "expected"),
    [
        # several clauses of one filter: the first false one
        (
            {"Sales EU.department EQUALS 'Sales'": True, "Sales EU.country EQUALS 'DE'": False},
            ("Sales EU", "country EQUALS 'DE'"),
        ),
        # several filters, all failed: the first failing clause of the first filter
        (
            {"A.department EQUALS 'Sales'": False, "B.jobTitle EQUALS 'Engineer'": False},
            ("A", "department EQUALS 'Sales'"),
        ),
        # one filter passed: in scope
        ({"A.department EQUALS 'Sales'": False, "B.jobTitle EQUALS 'Engineer'": True}, (None, None)),
        # no filter
        ({}, (None, None)),
        # a filter name with dots, an operator without a value, booleans as text
        ({"v1.2 filter.employeeId IS NOT NULL": "False"}, ("v1.2 filter", "employeeId IS NOT NULL")),
    ],
)
def test_documented_scope_evaluation_forms(evaluation: dict[str, Any], expected: tuple) -> None:
    text = json.dumps(evaluation)
    for shape in (text, json.dumps(text), evaluation):  # a string, a string inside a string, an object
        event = events_from_records([documented_skip("doc-3", ScopeEvaluationResult=shape)]).events.iloc[0]
        got = tuple(
            None if pd.isna(event[c]) else event[c] for c in ("failed_scope_filter", "failed_scope_clause")
        )
        assert got == expected, shape


def test_structured_scope_evaluation_still_names_filter_and_value() -> None:
    event = events_from_records([skipped_entry("s-1")]).events.iloc[0]
    assert event["failed_scope_filter"] == "Sales only"
    assert event["failed_scope_clause"] == "department EQUALS 'Sales'"
    assert event["failed_scope_value"] == "Marketing"


def test_import_steps_and_enums_in_either_case_are_kept() -> None:
    record = documented_skip("doc-4")
    record["provisioningSteps"][0]["provisioningStepType"] = "Import"
    record["provisioningSteps"][0]["status"] = "Success"
    record["provisioningSteps"].insert(
        1,
        {
            "name": "EntryImportObjectNotFound",
            "provisioningStepType": "IMPORT",
            "status": "success",
            "description": "Could not find the User in Contoso",
            "details": {},
        },
    )
    steps = events_from_records([record]).steps
    assert list(steps["name"][:2]) == ["EntryImportAdd", "EntryImportObjectNotFound"]
    assert list(steps["step_type"][:3]) == ["import", "import", "scoping"]
    assert steps["status"][0] == "success"
    assert json.loads(steps["details"][0])["department"] == "Sales"


def test_numeric_enum_values_are_the_csdl_members() -> None:
    # inference: an SDK's export writes enums as their CSDL numbers
    record = documented_skip("num-1")
    record["provisioningAction"] = 0
    record["provisioningStatusInfo"] = {"status": 2}
    for step, (kind, status) in zip(record["provisioningSteps"], ((0, 0), (1, 2), (5, 2)), strict=True):
        step["provisioningStepType"], step["status"] = kind, status
    t = events_from_records([record])
    assert (t.events["action"][0], t.events["status"][0]) == ("other", "skipped")
    assert list(t.steps["step_type"]) == ["import", "scoping", "export"]
    assert list(t.steps["status"]) == ["success", "skipped", "skipped"]
    assert t.events["failed_scope_clause"][0] == "department EQUALS 'Marketing'"
