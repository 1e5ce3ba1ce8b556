"""The Arrow path of events_from_records gives exactly what the Python path gives."""

from __future__ import annotations

import json
import random
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from provkit.data import tables
from provkit.data.tables import Tables, events_from_records

UPNS = ("ann@contoso.com", 'o"neil@contoso.com', "back\\slash@contoso.com", "zoë@contoso.com", "")
SCOPE = json.dumps(
    {
        "scopingFilterGroups": [
            {
                "name": "Sales only",
                "result": False,
                "clauses": [
                    {
                        "sourceOperandName": "department",
                        "operatorName": "EQUALS",
                        "targetOperand": ["Sales"],
                        "sourceValue": None,
                        "result": False,
                    }
                ],
            }
        ]
    }
)


# The documented form (cross-tenant sync "configure with Graph", step 12): filter.attribute OPERATOR 'value'.
DOCUMENTED_SCOPE = json.dumps(
    {
        "Marketing department filter.department EQUALS 'Marketing'": False,
        "Marketing department filter.accountEnabled IS TRUE": True,
        "Everyone in Sales.department EQUALS 'Sales'": False,
    }
)


def maybe(rng: random.Random, value: Any, p_none: float = 0.15) -> Any:
    return None if rng.random() < p_none else value


def details(rng: random.Random) -> dict[str, Any] | None:
    kind = rng.randrange(11)
    upn = rng.choice(UPNS)
    if kind == 0:
        return None
    if kind == 1:
        return {}
    if kind == 2:
        return {
            "SkipReason": rng.choice(("NotEffectivelyEntitled", "RedundantExport", "Brand new")),
            "ReportableIdentifier": upn,
        }
    if kind == 3:
        return {
            "IsActive": rng.choice(("True", "false", "yes", "maybe")),
            "Assigned to the application": rng.choice(("True", "False")),
            "IsEffectivelyEntitledForProvisioning": maybe(rng, "True"),
            "IsInProvisioningScope": "False",
            "ScopeEvaluationResult": rng.choice((SCOPE, "{}", "not json", None)),
        }
    if kind == 4:
        return {"Assigned": rng.choice(("True", "False"))}  # the older spelling
    if kind == 5:
        return {"Assigned": "True", "Assigned to the application": "False"}
    if kind == 9:  # the documented log keys, in varied casing
        return {
            rng.choice(("Active in the source system", "active in the Source System")): rng.choice(
                ("True", "False")
            ),
            "Assigned to the application": rng.choice(("True", "False")),
            "User has the required role": maybe(rng, "True"),
            "Scoping filter evaluation passed": rng.choice(("True", "False")),
            "ScopeEvaluationResult": rng.choice(
                (DOCUMENTED_SCOPE, json.dumps(DOCUMENTED_SCOPE), "{}", "{\"A.b EQUALS 'c'\":true}")
            ),
        }
    if kind == 10:  # the provisionOnDemand keys, with an older spelling beside a newer one
        return {
            "IsActive": "True",
            "isactive": "False",
            "Assigned": rng.choice(("True", "False")),
            "IsEffectivelyEntitledForProvisioning": "True",
            "IsInProvisioningScopeDisplayName": rng.choice(("True", "False")),
            "IsInProvisioningScope": "True",
            "ScopeEvaluationResult": "{}",
        }
    if kind == 6:
        return {"Some new key": maybe(rng, 'a "quoted" \\ value'), "ReportableIdentifier": upn}
    return {"ReportableIdentifier": upn}


def step(rng: random.Random) -> dict[str, Any]:
    out = {
        "name": maybe(rng, rng.choice(("EntryImport", "EntrySynchronizationScoping", "EntryExportUpdate"))),
        "provisioningStepType": maybe(rng, rng.choice(("import", "Scoping", "EXPORT", "quantumLeap"))),
        "status": maybe(rng, rng.choice(("success", "Failure", "skipped", "warning", "Pending"))),
        "description": maybe(rng, "Retrieved User 'ann' from Azure Active Directory"),
        "details": details(rng),
    }
    if rng.random() < 0.1:
        del out["details"]
    return out


def regular(rng: random.Random, i: int) -> dict[str, Any]:
    """A well-formed entry with the variety real logs have: nulls, old field names, unknown enum values."""
    error = {
        "errorCode": "SystemForCrossDomainIdentityManagementServiceIncompatible",
        "errorCategory": "nonServiceFailure",
        "reason": 'HTTP 409: "conflict"',
        "additionalDetails": None,
        "recommendedAction": maybe(rng, "Retry"),
    }
    info: dict[str, Any] = {"status": maybe(rng, rng.choice(("success", "FAILURE", "skipped", "mystery")))}
    if rng.random() < 0.3:
        info["errorInformation" if rng.random() < 0.7 else "errorInfo"] = maybe(rng, error)
    entry: dict[str, Any] = {
        "id": f"e{i}",
        "activityDateTime": rng.choice(
            ("2024-03-01T10:00:00.1234567Z", "2024-03-01T10:00:00Z", "2024-03-01T12:00:00+02:00")
        ),
        "tenantId": maybe(rng, "t1"),
        "jobId": maybe(rng, "scim.1"),
        "cycleId": maybe(rng, f"c{i // 50}"),
        "changeId": maybe(rng, f"ch{i}", 0.05),
        "durationInMilliseconds": maybe(rng, rng.randrange(5000)),
        "initiatedBy": maybe(
            rng, {"displayName": "Azure AD Provisioning Service", "initiatorType": "system"}
        ),
        "servicePrincipal": maybe(rng, {"id": "sp1", "displayName": "Contoso SCIM"}),
        "sourceSystem": maybe(rng, {"id": "x", "displayName": "Azure Active Directory", "details": {}}),
        "targetSystem": maybe(rng, {"displayName": "Contoso SCIM", "details": {"ServicePrincipalId": "sp1"}}),
        "sourceIdentity": maybe(rng, {"id": f"u{i}", "displayName": "Ann", "identityType": "User"}),
        "targetIdentity": maybe(rng, {"id": "", "displayName": "", "identityType": "urn:scim:User"}),
    }
    if rng.random() < 0.9:
        entry["provisioningStatusInfo"] = maybe(rng, info, 0.05)
    else:
        entry["statusInfo"] = info
    if rng.random() < 0.2:
        entry["initiatedBy"] = {"displayName": "Admin", "initiatingType": "user"}
        entry["servicePrincipal"] = {"id": "sp2", "name": "Old name field"}
    action = rng.choice(("create", "Update", "DELETE", "other", "Reticulate", None))
    entry["provisioningAction" if rng.random() < 0.8 else "action"] = action
    if rng.random() < 0.9:
        entry["provisioningSteps"] = maybe(rng, [step(rng) for _ in range(rng.randrange(7))], 0.1)
    if rng.random() < 0.9:
        entry["modifiedProperties"] = [
            {
                "displayName" if rng.random() < 0.9 else "name": rng.choice(("mail", "department", None)),
                "oldValue": maybe(rng, "old", 0.4),
                "newValue": maybe(rng, rng.choice(("new", "Zoë", '"q"'))),
            }
            for _ in range(rng.randrange(4))
        ]
    return entry


def irregular(rng: random.Random, i: int, kind: int | None = None) -> object:
    """Entries the Python path handles (all but kind 2, a bad time, which both paths reject the same way):
    rejects, odd shapes and types, unknown fields."""
    entry = regular(rng, i)
    kind = rng.randrange(10) if kind is None else kind
    if kind == 0:
        return ["not", "an", "object"]
    if kind == 1:
        entry["id"] = ""
    elif kind == 2:
        entry["activityDateTime"] = "nope"
    elif kind == 3:
        entry["brandNewField"] = {"x": 1}
    elif kind == 4:
        entry["provisioningSteps"] = json.dumps([step(rng)])
    elif kind == 5:
        entry["provisioningSteps"] = [{"details": {"nested": {"a": 1}, "flag": True}}]
    elif kind == 6:
        entry["provisioningSteps"] = ["not a step", None]
    elif kind == 7:
        entry["modifiedProperties"] = [{"displayName": "active", "oldValue": False, "newValue": True}]
    elif kind == 8:
        entry["provisioningSteps"] = [{"details": {"ReportableIdentifier": "line\nbreak"}}]
    else:
        entry["durationInMilliseconds"] = "1200"
    return entry


def both_paths(records: list[object], monkeypatch: pytest.MonkeyPatch) -> tuple[Tables, Tables, int]:
    """(Arrow path tables, Python path tables, chunks the Arrow path took)."""
    taken = 0
    arrow_chunk = tables.events._arrow_chunk

    def counting(*args: Any) -> Any:
        nonlocal taken
        result = arrow_chunk(*args)
        taken += 1
        return result

    monkeypatch.setattr(tables.events, "_arrow_chunk", counting)
    fast = events_from_records(records)
    monkeypatch.setattr(tables.events, "_USE_ARROW", False)
    slow = events_from_records(records)
    monkeypatch.setattr(tables.events, "_USE_ARROW", True)
    return fast, slow, taken


def assert_same(fast: Tables, slow: Tables) -> None:
    pd.testing.assert_frame_equal(fast.events, slow.events)
    pd.testing.assert_frame_equal(fast.steps, slow.steps)
    pd.testing.assert_frame_equal(fast.properties, slow.properties)
    assert fast.rejects == slow.rejects


def test_regular_entries_take_the_arrow_path_and_match_the_python_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(7)
    records: list[object] = [regular(rng, i) for i in range(3000)]
    monkeypatch.setattr(tables.events, "_ARROW_CHUNK", 500)
    fast, slow, taken = both_paths(records, monkeypatch)
    assert taken == 6  # every chunk
    assert_same(fast, slow)
    assert len(fast.events) == 3000
    # The variety is really there.
    assert "reticulate" in set(fast.events["action"].dropna())
    assert fast.steps["details"].str.contains('\\"', regex=False).any()
    assert fast.events["failed_scope_clause"].notna().any()
    assert fast.steps["assigned"].notna().any()


def test_irregular_entries_fall_back_chunk_by_chunk_with_identical_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(11)
    records = [irregular(rng, i) if rng.random() < 0.02 else regular(rng, i) for i in range(3000)]
    monkeypatch.setattr(tables.events, "_ARROW_CHUNK", 40)
    fast, slow, taken = both_paths(records, monkeypatch)
    assert 0 < taken < 75  # some chunks on each path
    assert fast.rejects
    assert (fast.events["extra"] != "").any()
    assert_same(fast, slow)


def test_each_kind_of_irregular_entry_alone_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    for kind in range(10):
        records = [regular(rng, 1000 + j) for j in range(5)] + [irregular(rng, kind, kind)]
        fast, slow, taken = both_paths(records, monkeypatch)
        assert taken == (1 if kind == 2 else 0), kind
        assert_same(fast, slow)


def test_the_default_memory_pool_is_restored() -> None:
    before = pa.default_memory_pool().backend_name
    events_from_records([regular(random.Random(1), 0)])
    assert pa.default_memory_pool().backend_name == before
