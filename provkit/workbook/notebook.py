"""The helpers the workbook's notebooks call (``from provkit.workbook import notebook as nb``), so that their
cells stay short. This module is the notebooks' one import; the helpers live by job in the modules beside it:

- :func:`target`, :func:`load`, :func:`pick_app`: the parameters cell's connection values as one
  :class:`~provkit.workbook.target.Target`, one app's evidence from it, and the app picker shown when no parameter
  named the app (``source`` demo, graph or store; empty: the live tenant when ``PROVKIT_TENANT_ID`` is set, else
  the simulated one);
- :mod:`~provkit.workbook.display`: :func:`setup` (short messages for provkit errors, plotly output that also
  exports), the banner saying which tenant and source the evidence came from, tables, findings with a link to
  the notebook that goes deeper;
- :mod:`~provkit.workbook.pickers`: the object picker (:func:`pick_object`) and the widgets;
- :mod:`~provkit.workbook.views` and :mod:`~provkit.workbook.verdicts`: tables and texts about the evidence,
  and the short, stable verdict line per notebook (the line the notebook tests check);
- :mod:`~provkit.workbook.actions`: :func:`validator`, :func:`restart_job`, :func:`provision_on_demand`, the
  calls that reach the tenant, each doing nothing unless the notebook's flag (``validate_credentials``,
  ``allow_changes``) is set.

Nothing here holds a secret: sign-in settings other than the tenant id, client id and cloud come from the
``PROVKIT_*`` environment variables.
"""

from __future__ import annotations

from pathlib import Path

import IPython.display

from provkit.data.sources import demo as demo_source
from provkit.errors import ConfigError
from provkit.workbook import pickers
from provkit.workbook.actions import provision_on_demand, restart_job, validator
from provkit.workbook.catalog import NOTEBOOKS, SECTION_NOTEBOOKS, notebook_for, notebooks_dir
from provkit.workbook.display import (
    setup,
    short_error,
    show_findings,
    show_origin,
    show_status,
    show_table,
    show_trends,
    source_line,
)
from provkit.workbook.pickers import WINDOWS, app_choices, pick_object, show_pickers
from provkit.workbook.render import Rich, banner_html, findings_html, paragraphs_html
from provkit.workbook.session import Loaded, check_source, demo_options_from_env, load_evidence
from provkit.workbook.target import Target
from provkit.workbook.verdicts import (
    change_eta_text,
    cycles_verdict,
    eta_text,
    explain_verdict,
    state_text,
    story,
    verdict,
)
from provkit.workbook.views import (
    SKIP_MEANINGS,
    credential_failures,
    first_skipped_user,
    latest_failures,
    object_name,
    skip_reasons,
    status_row,
    watermark_resets,
)

__all__ = [
    "NOTEBOOKS",
    "SECTION_NOTEBOOKS",
    "SKIP_MEANINGS",
    "Target",
    "banner_html",
    "change_eta_text",
    "credential_failures",
    "cycles_verdict",
    "demo_options_from_env",
    "eta_text",
    "explain_verdict",
    "findings_html",
    "first_skipped_user",
    "latest_failures",
    "load",
    "notebook_for",
    "notebooks_dir",
    "object_name",
    "pick_app",
    "pick_object",
    "provision_on_demand",
    "restart_job",
    "setup",
    "short_error",
    "show_findings",
    "show_origin",
    "show_status",
    "show_table",
    "show_trends",
    "skip_reasons",
    "source_line",
    "state_text",
    "status_row",
    "story",
    "target",
    "validator",
    "verdict",
    "watermark_resets",
]


def target(
    source: str | None = None,
    store: str | Path | None = None,
    cloud: str | None = None,
    tenant_id: str | None = None,
    client_id: str | None = None,
    workspace: str | None = None,
) -> Target:
    """The parameters cell's connection values as one :class:`Target` (empty values: not set); ``workspace`` a
    Log Analytics workspace id to read the logs from."""
    return Target(source, str(store) if store is not None else None, cloud, tenant_id, client_id, workspace)


def load(
    app: str,
    target: Target | None = None,
    *,
    source: str | None = None,
    since: str | None = "7d",
    start: str | None = None,
    end: str | None = None,
    store: str | None = None,
    cloud: str | None = None,
    tenant_id: str | None = None,
    client_id: str | None = None,
    logs: str = "entries",
) -> Loaded:
    """One app's evidence for the window, from the notebook's :class:`Target` (``source`` empty: the live tenant
    when ``PROVKIT_TENANT_ID`` is set, else the simulated one). Without a target, the keyword values make one.
    With the target's ``workspace`` the logs are queried from that Log Analytics workspace (every entry of the
    window, so the checks read what they read from Graph; ``logs="cycles"``: per-cycle aggregates only, for the
    cycles notebook) and the configuration from the tenant.

    With ``source="store"`` nothing is fetched: the app is read from the store and cut to the window
    (``start``/``end``, or ``since`` before the end of what the store covers).
    """
    where = target or Target(source, store, cloud, tenant_id, client_id)
    source, store, cloud, tenant_id, client_id = (
        where.source,
        where.store,
        where.cloud,
        where.tenant_id,
        where.client_id,
    )
    source = check_source(source)
    since = since or None
    start, end = start or None, end or None
    if start or end:
        since = None
    if source == "store":  # cut to the window by the data layer (provkit.data.evidence.stored_evidence)
        return load_evidence(
            app,
            source="store",
            since=since,
            start=start,
            end=end,
            store=store or None,
            tenant_id=tenant_id or None,
            workspace=where.workspace,  # a workspace cannot be read offline: load_evidence says so
        )
    client = None
    demo_options = None
    if source == "demo":
        demo_options = demo_options_from_env()
    elif cloud or tenant_id or client_id:
        client = where.graph_client()
    return load_evidence(
        app,
        source=source,
        since=since,
        start=start,
        end=end,
        store=store or None,
        tenant_id=tenant_id or None,
        client=client,
        progress=source == "graph" and not where.workspace,
        demo_options=demo_options,
        workspace=where.workspace,
        logs=logs,
    )


def pick_app(
    app: str | None,
    target: Target | None = None,
    *,
    since: str | None = "7d",
    demo_scenario: str | None = None,
) -> tuple[str, str | None]:
    """The app and window to investigate: ``(app, since)``.

    When a parameter named the app, that app and ``since`` are returned and no picker is shown. Otherwise (``app``
    empty, or the value a picker set) it shows which source it reads, lists the apps with provisioning jobs and
    shows two dropdowns (app and window). The preselected app is the last pick in this kernel, else (for the demo)
    the app of ``demo_scenario``, the scenario this notebook is about. Changing a dropdown rebinds ``app`` and
    ``since`` in the notebook, so run the cells below again to look at the new choice.
    """
    where = target or Target()
    source = where.source
    named = str(app or "").strip()
    if named and named != pickers.PICKS.get("app"):
        IPython.display.display(
            Rich(source_line(source, where.workspace), paragraphs_html(source_line(source, where.workspace)))
        )
        return named, since
    chosen_source = where.chosen_source
    choices = app_choices(where)
    if not choices:
        raise ConfigError(
            "No app with a provisioning job was found.",
            remedy="Check the tenant (or the store), or name the app in the parameters cell.",
        )
    ids = [c["service_principal_id"] for c in choices]
    default = choices[0]["service_principal_id"]
    if chosen_source == "demo" and demo_scenario:
        wanted = demo_source.scenario_app(demo_scenario)
        default = next((c["service_principal_id"] for c in choices if c["display_name"] == wanted), default)
    picked = pickers.PICKS.get("app")
    value = str(picked) if picked in ids else str(default)
    window = str(pickers.PICKS.get("since") or since or "7d")
    pickers.PICKS.update(app=value, since=window)
    options = [
        (f"{c['display_name']} ({c.get('status_code') or '?'})", c["service_principal_id"]) for c in choices
    ]
    windows = [(f"last {w}", w) for w in dict.fromkeys([*WINDOWS, window])]
    IPython.display.display(
        Rich(source_line(source, where.workspace), paragraphs_html(source_line(source, where.workspace)))
    )
    show_pickers([("app", "App", options, value), ("since", "Window", windows, window)])
    return value, window
