"""The notebooks' pickers and story, driven as a reader drives them (through the widgets), against the small
simulated tenant: a pick survives re-running the picker cell and Run All, an app named in the parameters cell
wins, the object picker shows display names with UPNs and follows app changes, and a story says each of the
service's long texts once."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from provkit.analysis.checks import explain
from provkit.formatting import format_duration
from provkit.workbook import notebook as nb
from provkit.workbook import pickers

from .conftest import KERNEL_ENV, LIVE_SETTINGS


@pytest.fixture(scope="module", autouse=True)
def small_demo() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in (*KERNEL_ENV, *LIVE_SETTINGS)}
    os.environ.update(KERNEL_ENV)
    for name in LIVE_SETTINGS:
        os.environ.pop(name, None)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> list:
    """What the notebook would display (IPython's display), newest last; the picks start empty."""
    import IPython.display

    items: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **_kw: items.extend(objs))
    monkeypatch.setattr(pickers, "PICKS", {})
    return items


def _widgets(items: list) -> list:
    import ipywidgets

    box = next(i for i in reversed(items) if isinstance(i, ipywidgets.VBox))
    return list(box.children)


def test_app_pick_survives_rerun_and_run_all(shown: list) -> None:
    app, since = nb.pick_app("", since="7d", demo_scenario="skipped-users")
    assert "SIMULATED tenant" in repr(shown[0])  # the source is said before anything else
    app_box, window_box = _widgets(shown)[:2]
    assert app_box.value == app and since == "7d"
    other = next(value for label, value in app_box.options if value != app and label.startswith("Salesforce"))
    app_box.value = other  # the reader picks another app...
    window_box.value = "3d"
    # ...and runs the picker cell again: `app` now holds the pick, and the picker is shown again with it.
    shown.clear()
    assert nb.pick_app(other, since="3d", demo_scenario="skipped-users") == (other, "3d")
    assert _widgets(shown)[0].value == other
    # Run All resets `app` and `since` to the parameters cell's values: the pick stays.
    shown.clear()
    assert nb.pick_app("", since="7d", demo_scenario="skipped-users") == (other, "3d")
    # An app named in the parameters cell wins, and no picker is shown.
    shown.clear()
    assert nb.pick_app("Zendesk", since="7d") == ("Zendesk", "7d")
    assert not any(type(i).__name__ == "VBox" for i in shown)


def test_object_picker_is_searchable_with_upns_and_follows_the_app(shown: list) -> None:
    zendesk = nb.load("Zendesk", source="demo", since="7d").evidence
    salesforce = nb.load("Salesforce", source="demo", since="7d").evidence
    first = nb.pick_object("", zendesk)
    combo = _widgets(shown)[0]
    assert type(combo).__name__ == "Combobox" and combo.ensure_option
    labels = list(combo.options)
    assert len(labels) == len(set(labels)) > 50  # every object, each label distinct
    assert sum("@" in label and "<" in label for label in labels) > len(labels) / 2  # names with UPNs
    upn_label = next(label for label in labels if "<" in label and label != combo.value)
    combo.value = upn_label  # picked by typing part of the UPN (the widget rebinds object_id in the notebook)
    picked = nb.pick_object("", zendesk)  # Run All: object_id is empty again, the pick stays
    assert picked != first and _widgets(shown)[0].value == upn_label
    shown.clear()
    assert nb.pick_object(picked, zendesk) == picked  # re-running the cell shows the picker with the pick
    assert _widgets(shown)[0].value == upn_label
    # The app changes: the previous app's pick is not carried over to an app whose logs do not hold it.
    shown.clear()
    for_salesforce = nb.pick_object(picked, salesforce)
    assert for_salesforce != picked
    assert for_salesforce in set(salesforce.events["source_id"].astype(str))
    # An object named in the parameters cell wins.
    assert nb.pick_object("someone@contoso.com", salesforce) == "someone@contoso.com"


def test_story_says_the_long_skip_text_once() -> None:
    evidence = nb.load("Zendesk", source="demo", since="7d").evidence
    explanation = explain(evidence, nb.first_skipped_user(evidence))
    assert len(explanation.entries) >= 3
    text = nb.story(explanation)
    assert text.count("will be skipped due to the following reasons") == 1
    assert text.count("exactly as in [1]") >= 2
    assert len(text.splitlines()) < 40
    message = nb.provision_on_demand(evidence, explanation.object_id, False)
    assert explanation.display_name in message and explanation.object_id not in message


def test_default_source_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from provkit.workbook.session import default_source

    monkeypatch.delenv("PROVKIT_TENANT_ID", raising=False)
    assert default_source() == "demo"
    assert "SIMULATED tenant" in nb.source_line("") and "PROVKIT_TENANT_ID is not set" in nb.source_line("")
    monkeypatch.setenv("PROVKIT_TENANT_ID", "11111111-2222-3333-4444-555555555555")
    assert default_source() == "graph"
    line = nb.source_line(None)
    assert "LIVE tenant 11111111-2222-3333-4444-555555555555" in line and "PROVKIT_TENANT_ID is set" in line
    assert "SIMULATED" in nb.source_line("demo") and 'source = "demo"' in nb.source_line("demo")
    with_workspace = nb.source_line("demo", "ws-1")
    assert "SIMULATED" in with_workspace and "logs from Log Analytics workspace ws-1" in with_workspace
    assert "workspace" not in nb.source_line("demo", None)


def test_smaller_defects_read_right() -> None:
    from provkit.analysis import cycles
    from provkit.errors import ConfigError
    from provkit.workbook import charts

    evidence = nb.load("Contoso SCIM App", source="demo", since="7d").evidence
    table = cycles.cycles_table(evidence)
    summary = cycles.summary(evidence, table)
    # The histogram's count and the verdict's count of incremental cycles agree.
    title = charts.incremental_distribution(table).layout.title.text
    assert f"of {summary.incremental_cycles} incremental cycles" in title
    # Durations read as durations, not "0 days 01:01:11.476655".
    assert format_duration(__import__("pandas").Timedelta(seconds=3671.4)) == "1 h 01 min"
    resets = nb.watermark_resets(table)
    assert all("days" not in str(v) for v in resets["duration"])
    # A reason said twice is said once.
    assert nb.state_text(type("S", (), {"state": "Quarantine", "state_detail": "Escrow (Escrow)"})()) == (
        "Quarantine: Escrow"
    )
    # In a notebook, remedies speak of the parameters cell, not of command-line options.
    text = nb.short_error(ConfigError("No app.", remedy="Pass --app APP or --since 7d."), in_notebook=True)
    assert "--" not in text and "`app` in the parameters cell" in text
    # Every skip reason the demo logs is explained, RedundantExport included.
    reasons = nb.skip_reasons(nb.load("Zendesk", source="demo", since="7d").evidence)
    assert "RedundantExport" in set(reasons["skip_reason"]) and all(reasons["meaning"])


def test_provision_on_demand_names_the_user_and_reads_the_answer() -> None:
    evidence = nb.load("Zendesk", source="demo", since="7d").evidence
    user = nb.first_skipped_user(evidence)
    message = nb.provision_on_demand(evidence, user, True, nb.target("demo"))  # the simulated tenant only
    assert message.startswith(f"provisionOnDemand for {nb.object_name(evidence, user)}: ")
    assert "@" in message and user not in message
    assert message.split(": ", 1)[1].split()[0] in ("Success", "Skipped", "Failure")
