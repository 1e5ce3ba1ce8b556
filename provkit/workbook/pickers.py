"""The pickers a notebook shows when no parameter named the app or the object: ipywidgets dropdowns and a
searchable box. Picking a value rebinds the notebook variable, so the cells below use it when run again; a pick is
kept in the kernel (:data:`PICKS`): re-running the picker cell, or Run All, shows the picker again with the pick
selected. The app picker itself is :func:`provkit.workbook.notebook.pick_app`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import IPython.display
import ipywidgets as widgets
from IPython import get_ipython

from provkit.data.evidence import Evidence
from provkit.data.sources.graph import provisioning_apps
from provkit.data.store import Store
from provkit.workbook.target import Target

__all__ = ["PICKS", "WINDOWS", "app_choices", "bind", "pick_object", "show_pickers"]


def bind(name: str, value: Any) -> None:
    """Rebind ``name`` in the notebook's namespace (what the cells below read)."""
    shell = get_ipython()
    if shell is not None:
        shell.user_ns[name] = value


def app_choices(target: Target) -> list[dict]:
    """The apps a picker offers: those with a provisioning job in the tenant (offline: those in the store)."""
    if target.chosen_source == "store":
        rows = Store(target.store).apps()
        if target.tenant_id:
            rows = [r for r in rows if r["tenant_id"] == target.tenant_id.lower()]
        return [{**r, "status_code": "stored"} for r in rows]
    return provisioning_apps(target.read_client())


# What the pickers last chose in this kernel. It outlives the notebook's variables: re-running the picker cell or
# Run All (which resets ``app`` to the parameters cell's empty value) shows the pick again instead of losing it.
PICKS: dict[Any, Any] = {}
WINDOWS = ("1d", "3d", "7d", "14d", "30d")


def _object_label(row: Any, upn: str | None) -> str:
    name = row.source_name or row.source_id
    who = f"{name} <{upn}>" if upn and upn.lower() != str(name).lower() else str(name)
    return f"{who} ({row.source_type or '?'}, last {row.status})"


def pick_object(obj: str | None, evidence: Evidence, *, limit: int = 2000) -> str | None:
    """The user or group to explain: ``obj`` when a parameter named it, else a searchable picker over the objects
    in this app's logs, each shown with its display name and user principal name.

    Objects whose latest entry failed or was skipped come first (most recent first), then the others. The pick
    is kept per app: after the app changes, the picker offers the new app's objects (never the old app's pick).
    Returns the selected object's id, or None when the logs hold no object.
    """
    key = ("object_id", evidence.service_principal_id)
    picked_any = {v for k, v in PICKS.items() if isinstance(k, tuple) and k[0] == "object_id"}
    named = str(obj or "").strip()
    if named and named not in picked_any:
        return named
    events = evidence.events
    if events.empty:
        return None
    frame = events[
        ["source_id", "source_name", "source_type", "status", "activity_time", "reportable_identifier"]
    ].dropna(subset=["source_id"])
    latest = frame.sort_values("activity_time").groupby("source_id", sort=False).tail(1)
    upns = (
        frame.dropna(subset=["reportable_identifier"])
        .groupby("source_id")["reportable_identifier"]
        .last()
        .astype(str)
        .to_dict()
    )
    latest = latest.assign(problem=~latest["status"].astype(str).isin(["success"]))
    latest = latest.sort_values(["problem", "activity_time"], ascending=[False, False]).head(limit)
    labels: dict[str, str] = {}
    for r in latest.itertuples():
        upn = upns.get(r.source_id)
        label = _object_label(r, upn if upn and "@" in upn else None)
        if label in labels:  # two objects that look alike: the id tells them apart
            label = f"{label} [{r.source_id}]"
        labels[label] = r.source_id
    if not labels:
        return None
    ids = list(labels.values())
    picked = PICKS.get(key)
    value = str(picked) if picked in ids else ids[0]
    PICKS[key] = value
    _show_object_picker(labels, value, key)
    return value


def _show_object_picker(labels: dict[str, str], value: str, key: tuple) -> None:
    names = list(labels)
    current = next(label for label, oid in labels.items() if oid == value)
    search = widgets.Combobox(
        value=current,
        options=names,
        placeholder="type a name or UPN",
        description="Object",
        ensure_option=True,
        layout=widgets.Layout(width="95%"),
    )
    status = widgets.HTML(f"{len(names)} objects in the logs; type to search by name or UPN.")

    def changed(change: dict) -> None:
        chosen = labels.get(change["new"])
        if chosen is not None:
            PICKS[key] = chosen
            bind("object_id", chosen)

    search.observe(changed, names="value")
    hint = widgets.HTML("Pick, then run the cells below again (Run &#9656; Run Selected Cell and All Below).")
    IPython.display.display(widgets.VBox([search, status, hint]))


def show_pickers(specs: Sequence[tuple[str, str, list[tuple[str, str]], str]]) -> None:
    boxes = []
    for name, label, options, value in specs:
        dropdown = widgets.Dropdown(options=options, value=value, description=label)

        def changed(change: dict, name: str = name) -> None:
            PICKS[name] = change["new"]
            bind(name, change["new"])

        dropdown.observe(changed, names="value")
        boxes.append(dropdown)
    hint = widgets.HTML("Pick, then run the cells below again (Run &#9656; Run Selected Cell and All Below).")
    IPython.display.display(widgets.VBox([*boxes, hint]))
