"""The banner that says where evidence came from, for each kind of source a reader may have in front of them."""

from __future__ import annotations

from datetime import UTC, datetime

from provkit.data.evidence import Evidence
from provkit.workbook.notebook import banner_html
from provkit.workbook.session import describe_origin, simulated_tenant_ids

LIVE = "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
WINDOW = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC))


def _evidence(tenant: str, source: str) -> Evidence:
    return Evidence(
        tenant_id=tenant,
        service_principal_id="sp",
        app_id=None,
        display_name="Zendesk",
        window=WINDOW,
        source=source,
    )


def test_each_source_is_named_with_its_tenant_and_window() -> None:
    simulated = sorted(simulated_tenant_ids())[0]
    cases = {
        ("demo", simulated, "demo"): "the SIMULATED tenant (demo data",
        ("graph", LIVE, "graph"): f"the LIVE tenant {LIVE}, fetched just now",
        ("graph", LIVE, "store"): "a copy of the LIVE tenant kept in the store at /data/store",
        ("graph", simulated, "store"): "a copy of the SIMULATED tenant (demo data) kept in the store",
        ("import", LIVE, "store"): "an IMPORT of downloaded logs in the store at /data/store",
    }
    for (recorded, tenant, read), expected in cases.items():
        text = describe_origin(_evidence(tenant, recorded), source=read, store="/data/store")
        assert expected in text, text
        assert tenant in text and "2026-11-01 00:00 to 2026-11-08 00:00 UTC" in text
        assert text.startswith("Evidence for Zendesk from ")


def test_a_workspace_is_named_and_graph_credited_with_the_job_status() -> None:
    simulated = sorted(simulated_tenant_ids())[0]
    text = describe_origin(_evidence(simulated, "loganalytics"), source="demo", workspace="ws-1234")
    assert text.startswith("Evidence for Zendesk from Log Analytics workspace ws-1234 ")
    assert "job status and schema from Graph of the SIMULATED tenant" in text and simulated in text
    live = describe_origin(_evidence(LIVE, "loganalytics"), source="graph", workspace="ws-1234")
    assert f"from Graph of the LIVE tenant {LIVE}" in live and "2026-11-01 00:00 to 2026-11-08" in live
    assert "workspace" not in describe_origin(_evidence(LIVE, "graph"), source="graph")


def test_banner_colour_tells_simulated_from_live() -> None:
    simulated = describe_origin(_evidence(sorted(simulated_tenant_ids())[0], "demo"), source="demo")
    live = describe_origin(_evidence(LIVE, "graph"), source="graph")
    assert "#b54708" in banner_html(simulated) and "#175cd3" in banner_html(live)
    assert "<script" not in banner_html("<script>alert(1)</script>")  # text, never markup
