"""Reading a store back: one frame per table, each entry once, in time order, whatever order the parts were
written in; steps and properties read only when used."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from provkit.data.evidence import from_store
from provkit.data.store import Store
from provkit.data.tables import Tables
from provkit.sim.evidence import from_simulator
from provkit.sim.tenant import Tenant

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _week() -> tuple[Tenant, Tables]:
    tenant = Tenant(seed=7, users_count=300, days=2, now=NOW, scenarios=("skipped-users",))
    evidence = from_simulator(tenant, tenant.apps[0])
    return tenant, evidence.tables


def _piece(tables: Tables, rows: slice) -> Tables:
    events = tables.events.iloc[rows]
    keep = set(events["id"])
    return Tables(
        events=events.reset_index(drop=True),
        steps=tables.steps[tables.steps["event_id"].isin(keep)].reset_index(drop=True),
        properties=tables.properties[tables.properties["event_id"].isin(keep)].reset_index(drop=True),
    )


def test_parts_written_newest_first_read_back_in_time_order_each_entry_once(tmp_path: Path) -> None:
    tenant, tables = _week()
    n = len(tables.events)
    assert n > 100
    app_store = Store(tmp_path).app(tenant.tenant_id, tenant.apps[0].sp_id)
    # Newest third first, then the oldest, then the middle: out of order on disk.
    for rows in (slice(2 * n // 3, n), slice(0, n // 3), slice(n // 3, 2 * n // 3)):
        app_store.write_events(_piece(tables, rows))
    read = app_store.tables()
    expected = tables.events.sort_values("activity_time", kind="stable", ignore_index=True)
    assert list(read.events["id"]) == list(expected["id"])
    assert read.events["activity_time"].is_monotonic_increasing
    assert len(read.steps) == len(tables.steps) and len(read.properties) == len(tables.properties)
    pd.testing.assert_frame_equal(
        read.steps.sort_values(["event_id", "step_order"], ignore_index=True),
        tables.steps.sort_values(["event_id", "step_order"], ignore_index=True),
        check_dtype=False,
        check_categorical=False,
    )


def test_evidence_from_the_store_reads_steps_only_when_an_analysis_uses_them(tmp_path: Path) -> None:
    tenant, tables = _week()
    app_store = Store(tmp_path).app(tenant.tenant_id, tenant.apps[0].sp_id)
    app_store.write_events(tables)
    evidence = from_store(app_store)
    assert evidence.tables._loaded == {}  # nothing but the events read yet
    assert len(evidence.steps) == len(tables.steps) and "steps" in evidence.tables._loaded
    # A notebook may narrow the steps to a window: assignment works as on plain Tables.
    evidence.tables.steps = evidence.steps.iloc[:5]
    assert len(evidence.steps) == 5
    assert len(evidence.tables.properties) == len(tables.properties)


def test_an_entry_in_two_parts_is_read_once_with_its_steps_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, tables = _week()
    app_store = Store(tmp_path).app(tenant.tenant_id, tenant.apps[0].sp_id)
    app_store.write_events(_piece(tables, slice(0, 100)))
    # A second part overlapping the first, written past the store's duplicate check (as an older provkit could).
    monkeypatch.setattr(app_store, "stored_ids", lambda: set())
    app_store.write_events(_piece(tables, slice(50, 150)))
    read = app_store.tables()
    assert read.events["id"].is_unique and len(read.events) == 150
    assert read.events["activity_time"].is_monotonic_increasing
    assert not read.steps.duplicated(["event_id", "step_order"]).any()
    assert len(read.steps) == len(_piece(tables, slice(0, 150)).steps)


def test_the_steps_of_a_few_entries_are_read_without_the_rest(tmp_path: Path) -> None:
    tenant, tables = _week()
    app_store = Store(tmp_path).app(tenant.tenant_id, tenant.apps[0].sp_id)
    app_store.write_events(_piece(tables, slice(0, 60)))
    app_store.write_events(_piece(tables, slice(60, None)))
    evidence = from_store(app_store)
    ids = list(tables.events["id"].iloc[[3, 70, 71]])
    few = evidence.steps_of(ids)
    assert "steps" not in evidence.tables._loaded  # the whole table was not read
    expected = tables.steps[tables.steps["event_id"].isin(ids)]
    assert sorted(zip(few["event_id"], few["step_order"], strict=True)) == sorted(
        zip(expected["event_id"], expected["step_order"], strict=True)
    )
    assert evidence.steps_of([]).empty
    # Once the whole table is in memory, the same answer comes from it.
    assert len(evidence.steps) == len(tables.steps)
    assert len(evidence.steps_of(ids)) == len(few)
