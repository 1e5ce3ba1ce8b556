"""Small helpers the workbook's notebooks call, so that their cells stay short.

- :func:`setup`: errors from provkit shown as a short message instead of a traceback; plotly figures rendered by
  JupyterLab itself (no script from a CDN; report pages get theirs from :mod:`provkit.workbook.reports`);
- :func:`load` and :func:`show_origin`: one app's evidence from the parameters cell's values (``source`` demo,
  graph or store; empty: the live tenant when ``PROVKIT_TENANT_ID`` is set, else the simulated one) and the
  banner saying which tenant and source it came from;
- :func:`pick_app` and :func:`pick_object`: ipywidgets pickers shown when no parameter named the app or object;
  picking a value rebinds the notebook variable, so the cells below use it when run again. A pick is kept in
  the kernel: re-running the picker cell, or Run All, shows the picker again with the pick selected;
- :func:`show_status`, :func:`show_findings`, :func:`verdict`: findings with a link to the notebook that goes
  deeper, and a short, stable verdict line per notebook (the line the notebook tests check);
- :func:`validator`, :func:`restart_job`, :func:`provision_on_demand`: the calls that touch the tenant, each
  doing nothing unless the notebook's flag (``validate_credentials``, ``allow_changes``) is set.

Nothing here holds a secret: sign-in settings other than the tenant id, client id and cloud come from the
``PROVKIT_*`` environment variables.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from provkit.data.evidence import Evidence
from provkit.data.sources import demo as demo_source
from provkit.errors import ConfigError, ProvkitError
from provkit.workbook.session import Loaded, check_source, load_evidence

__all__ = [
    "NOTEBOOKS",
    "SECTION_NOTEBOOKS",
    "change_eta_text",
    "credential_failures",
    "cycles_verdict",
    "demo_options_from_env",
    "eta_text",
    "explain_verdict",
    "findings_html",
    "first_skipped_user",
    "format_duration",
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
    "skip_reasons",
    "source_line",
    "state_text",
    "story",
    "status_row",
    "validator",
    "verdict",
    "watermark_resets",
]

NOTEBOOKS = (
    "00-triage",
    "01-is-provisioning-working",
    "02-service-does-not-start",
    "03-credentials",
    "04-skipped-users",
    "05-cycles-and-watermarks",
    "06-explain-an-object",
    "07-postmortem",
    "08-leavers-and-references",
)

# The notebook that goes deeper into each check section (the part of a check id before the dot).
SECTION_NOTEBOOKS = {
    "working": "01-is-provisioning-working",
    "failures": "01-is-provisioning-working",
    "start": "02-service-does-not-start",
    "credentials": "03-credentials",
    "skipped": "04-skipped-users",
    "quarantine": "05-cycles-and-watermarks",
    "scope": "08-leavers-and-references",
    "deprovision": "08-leavers-and-references",
    "references": "08-leavers-and-references",
}

_SEVERITY_COLOURS = {"error": "#b42318", "warning": "#b54708", "info": "#475467"}
_RESTART_SCOPE = "Watermark, Escrows, QuarantineState"


# ---- setup and errors -----------------------------------------------------------------------------------
# The command line's options, as a notebook reader knows them: parameters-cell variables.
_NOTEBOOK_WORDS = (
    ("(GraphClient.resolve_app, or --app)", "(the `app` parameter)"),
    ("--app", "`app` in the parameters cell"),
    ("--since", "`since`"),
    ("--start", "`start`"),
    ("--end", "`end`"),
    ("--store", "`store`"),
)


def short_error(exc: BaseException, *, in_notebook: bool = False) -> str:
    """A provkit error as the few lines a reader needs: what failed, what to do, where to read more.

    ``in_notebook`` words the remedy for a notebook reader (the parameters cell, not command-line options).
    """
    text = f"{type(exc).__name__}: {exc}"
    if in_notebook:
        for option, parameter in _NOTEBOOK_WORDS:
            text = text.replace(option, parameter)
    return text


def setup() -> None:
    """Prepare the running notebook: short messages for provkit errors, plotly output that also exports.

    Outside IPython (a plain script) this does nothing. The error still fails the cell (papermill and the
    report see it); only its display is shortened.
    """
    try:
        import plotly.io as pio

        # JupyterLab (and VS Code) render the mimetype with the plotly.js they ship: nothing is loaded from a CDN,
        # so charts draw offline. Report pages draw the same JSON with a local copy (provkit.workbook.reports).
        pio.renderers.default = "plotly_mimetype"
    except ImportError:  # pragma: no cover - plotly is a dependency
        pass
    # Error reasons and skip-reason meanings are sentences: show them whole, not cut at 50 characters.
    pd.set_option("display.max_colwidth", 400)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        return
    shell = get_ipython()
    if shell is None:
        return

    def handler(shell, etype, value, tb, tb_offset=None):  # noqa: ANN001 - IPython's signature
        lines = ["provkit could not do this:", short_error(value, in_notebook=True)]
        shell._showtraceback(etype, value, lines)
        return lines

    shell.set_custom_exc((ProvkitError,), handler)


# ---- loading ----------------------------------------------------------------------------------------------
def demo_options_from_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The simulated tenant's clock and seed from ``PROVKIT_DEMO_NOW`` and ``PROVKIT_DEMO_SEED``, where set.

    ``PROVKIT_DEMO_NOW`` is an ISO-8601 instant (UTC unless an offset is given): a fixed one makes the demo's
    findings the same on every run (the notebook tests use it). Its size comes from ``PROVKIT_DEMO_USERS`` and
    ``PROVKIT_DEMO_DAYS``, which :func:`provkit.workbook.session.demo_tenant` reads itself.
    """
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    text = (env.get("PROVKIT_DEMO_SEED") or "").strip()
    if text:
        if not text.isdigit():
            raise ConfigError(f"PROVKIT_DEMO_SEED must be a whole number, not {text!r}.")
        options["seed"] = int(text)
    text = (env.get("PROVKIT_DEMO_NOW") or "").strip()
    if text:
        from provkit.window import parse_instant

        options["now"] = parse_instant(text, name="PROVKIT_DEMO_NOW")
    return options


def _graph_client(
    cloud: str | None, tenant_id: str | None, client_id: str | None, *, allow_writes: bool = False
):
    """A Graph client from ``PROVKIT_*``, with the notebook's non-secret settings taking precedence."""
    from provkit.data.auth import Settings
    from provkit.data.sources.graph import connect

    env = dict(os.environ)
    for name, value in (
        ("PROVKIT_CLOUD", cloud),
        ("PROVKIT_TENANT_ID", tenant_id),
        ("PROVKIT_CLIENT_ID", client_id),
    ):
        if value:
            env[name] = value
    return connect(Settings.from_env(env), allow_writes=allow_writes)


def _demo(allow_writes: bool = False):
    from provkit.workbook.session import demo_tenant

    options = demo_options_from_env()
    if allow_writes:
        options.update(admin=True, allow_writes=True)
    return demo_tenant(**options)


def load(
    app: str,
    *,
    source: str | None = None,
    since: str | None = "7d",
    start: str | None = None,
    end: str | None = None,
    store: str | None = None,
    cloud: str | None = None,
    tenant_id: str | None = None,
    client_id: str | None = None,
) -> Loaded:
    """One app's evidence for the window, from the parameters cell's values (``source`` empty: the live tenant
    when ``PROVKIT_TENANT_ID`` is set, else the simulated one).

    With ``source="store"`` nothing is fetched: the app is read from the store and cut to the window
    (``start``/``end``, or ``since`` before the end of what the store covers).
    """
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
        )
    client = None
    demo_options = None
    if source == "demo":
        demo_options = demo_options_from_env()
    elif cloud or tenant_id or client_id:
        client = _graph_client(cloud, tenant_id, client_id)
    return load_evidence(
        app,
        source=source,
        since=since,
        start=start,
        end=end,
        store=store or None,
        tenant_id=tenant_id or None,
        client=client,
        progress=source == "graph",
        demo_options=demo_options,
    )


# ---- where the evidence comes from ---------------------------------------------------------------------------
_ORIGIN_COLOURS = {"simulated": "#b54708", "live": "#175cd3", "stored": "#475467"}


def source_line(source: str | None) -> str:
    """One sentence saying which source the notebook reads, and why (the parameter or the environment)."""
    chosen = check_source(source)
    named = bool(source and str(source).strip())
    why = (
        f'source = "{chosen}" in the parameters cell'
        if named
        else (
            "PROVKIT_TENANT_ID is set"
            if chosen == "graph"
            else "source is empty and PROVKIT_TENANT_ID is not set"
        )
    )
    if chosen == "demo":
        what = (
            "the SIMULATED tenant (demo data, not your tenant). To read your tenant, set PROVKIT_TENANT_ID and "
            'its sign-in settings before starting Jupyter, or source = "graph"'
        )
    elif chosen == "graph":
        tenant = (os.environ.get("PROVKIT_TENANT_ID") or "").strip() or "(PROVKIT_TENANT_ID not set)"
        what = f"the LIVE tenant {tenant}"
    else:
        what = (
            "the local store only, offline (what provkit fetch, provkit import or a report's fetch put there)"
        )
    return f"Source: {what} ({why})."


def _origin_kind(text: str) -> str:
    if "SIMULATED" in text:
        return "simulated"
    return "stored" if ("read offline" in text) else "live"


def banner_html(text: str) -> str:
    """The evidence banner as HTML: a coloured strip (amber for simulated data, blue for a live tenant, grey
    for a stored copy or an import)."""
    colour = _ORIGIN_COLOURS[_origin_kind(text)]
    return (
        f'<div class="provkit-banner" style="border-left:6px solid {colour};background:#f9fafb;'
        'padding:6px 10px;margin:4px 0;color:#101828;font-family:system-ui,sans-serif;font-size:14px">'
        f"{html.escape(text)}</div>"
    )


def show_origin(loaded: Loaded) -> None:
    """Display the banner saying which tenant and source the evidence came from, and how the app resolved."""
    from IPython.display import display

    text = loaded.origin()
    display(_Rich(f"{text}\n{loaded.resolved}", banner_html(text) + f"<p>{html.escape(loaded.resolved)}</p>"))


# ---- pickers --------------------------------------------------------------------------------------------
def _bind(name: str, value: Any) -> None:
    """Rebind ``name`` in the notebook's namespace (what the cells below read)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell.user_ns[name] = value


def _app_choices(source: str, store: str | None, tenant_id: str | None, cloud, client_id) -> list[dict]:
    if source == "store":
        from provkit.data.store import Store

        rows = Store(store).apps()
        if tenant_id:
            rows = [r for r in rows if r["tenant_id"] == tenant_id.lower()]
        return [{**r, "status_code": "stored"} for r in rows]
    from provkit.data.sources.graph import provisioning_apps

    client = _demo().client if source == "demo" else _graph_client(cloud, tenant_id, client_id)
    return provisioning_apps(client)


# What the pickers last chose in this kernel. It outlives the notebook's variables: re-running the picker cell or
# Run All (which resets ``app`` to the parameters cell's empty value) shows the pick again instead of losing it.
_PICKS: dict[Any, Any] = {}
_WINDOWS = ("1d", "3d", "7d", "14d", "30d")


def pick_app(
    app: str | None,
    *,
    source: str | None = None,
    since: str | None = "7d",
    store: str | None = None,
    cloud: str | None = None,
    tenant_id: str | None = None,
    client_id: str | None = None,
    demo_scenario: str | None = None,
) -> tuple[str, str | None]:
    """The app and window to investigate: ``(app, since)``.

    When a parameter named the app, that app and ``since`` are returned and no picker is shown. Otherwise (``app``
    empty, or the value a picker set) it shows which source it reads, lists the apps with provisioning jobs and
    shows two dropdowns (app and window). The preselected app is the last pick in this kernel, else (for the demo)
    the app of ``demo_scenario``, the scenario this notebook is about. Changing a dropdown rebinds ``app`` and
    ``since`` in the notebook, so run the cells below again to look at the new choice.
    """
    from IPython.display import display

    named = str(app or "").strip()
    if named and named != _PICKS.get("app"):
        display(_Rich(source_line(source), f"<p>{html.escape(source_line(source))}</p>"))
        return named, since
    chosen_source = check_source(source)
    choices = _app_choices(chosen_source, store, tenant_id, cloud, client_id)
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
    value = _PICKS.get("app") if _PICKS.get("app") in ids else default
    window = _PICKS.get("since") or since or "7d"
    _PICKS.update(app=value, since=window)
    options = [
        (f"{c['display_name']} ({c.get('status_code') or '?'})", c["service_principal_id"]) for c in choices
    ]
    windows = [(f"last {w}", w) for w in dict.fromkeys([*_WINDOWS, window])]
    display(_Rich(source_line(source), f"<p>{html.escape(source_line(source))}</p>"))
    _show_pickers([("app", "App", options, value), ("since", "Window", windows, window)])
    return value, window


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
    picked_any = {v for k, v in _PICKS.items() if isinstance(k, tuple) and k[0] == "object_id"}
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
    value = _PICKS.get(key) if _PICKS.get(key) in ids else ids[0]
    _PICKS[key] = value
    _show_object_picker(labels, value, key)
    return value


def _show_object_picker(labels: dict[str, str], value: str, key: tuple) -> None:
    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError:  # pragma: no cover - both are dependencies
        return
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
            _PICKS[key] = chosen
            _bind("object_id", chosen)

    search.observe(changed, names="value")
    hint = widgets.HTML("Pick, then run the cells below again (Run &#9656; Run Selected Cell and All Below).")
    display(widgets.VBox([search, status, hint]))


def _show_pickers(specs: Sequence[tuple[str, str, list[tuple[str, str]], str]]) -> None:
    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError:  # pragma: no cover - both are dependencies
        return
    boxes = []
    for name, label, options, value in specs:
        dropdown = widgets.Dropdown(options=options, value=value, description=label)

        def changed(change: dict, name: str = name) -> None:
            _PICKS[name] = change["new"]
            _bind(name, change["new"])

        dropdown.observe(changed, names="value")
        boxes.append(dropdown)
    hint = widgets.HTML("Pick, then run the cells below again (Run &#9656; Run Selected Cell and All Below).")
    display(widgets.VBox([*boxes, hint]))


# ---- status, findings and verdicts ------------------------------------------------------------------------
def status_row(evidence: Evidence) -> dict[str, Any]:
    """The job's state in one row: status code, schedule, last execution, quarantine, entries in the window."""
    job = evidence.job or {}
    status = job.get("status") or {}
    last = status.get("lastExecution") or {}
    quarantine = status.get("quarantine") or {}
    window = evidence.window
    return {
        "app": evidence.display_name,
        "status": status.get("code"),
        "schedule": (job.get("schedule") or {}).get("state"),
        "last_execution": last.get("state"),
        "last_ended": last.get("timeEnded"),
        "quarantine": quarantine.get("reason"),
        "entries": len(evidence.events),
        "window": f"{window[0]:%Y-%m-%d %H:%M} .. {window[1]:%Y-%m-%d %H:%M} UTC" if window else None,
    }


def show_status(evidence: Evidence) -> None:
    """Display :func:`status_row` as a one-row table (the window is in the banner above it)."""
    from IPython.display import display

    row = status_row(evidence)
    row.pop("window", None)
    display(pd.DataFrame([row]).set_index("app"))


def show_table(frame: pd.DataFrame, *, empty: str) -> None:
    """Display ``frame``, or the sentence ``empty`` when it has no rows (a bare header row says nothing)."""
    from IPython.display import display

    display(frame if len(frame) else _Rich(empty, f"<p>{html.escape(empty)}</p>"))


def notebook_for(check: str) -> str | None:
    """The notebook (name without .ipynb) that goes deeper into a check id such as ``skipped.scoping-filter``."""
    return SECTION_NOTEBOOKS.get(check.split(".", 1)[0])


def _sections(findings: Iterable, sections: Iterable[str] | None) -> list:
    wanted = tuple(sections) if sections else None
    return [f for f in findings if wanted is None or f.check.split(".", 1)[0] in wanted]


# JupyterLab right-aligns table cells; findings read left to right, and long ids wrap instead of widening.
_CELL = "text-align:left;vertical-align:top;overflow-wrap:anywhere;"


def findings_html(findings: Iterable, *, deeper: bool = True, rows: int = 5, here: str | None = None) -> str:
    """Findings as an HTML table (severity, check, link to the deeper notebook, title with details below).

    The table keeps to the width of the output area: columns have fixed shares, long words wrap, and the
    evidence inside *details* scrolls sideways on its own. ``here`` (the current notebook's name) leaves out
    links that would point to the notebook being read.
    """
    items = list(findings)
    if not items:
        return "<p>No findings.</p>"
    head = (
        '<colgroup><col style="width:6em"><col style="width:22%">'
        + ('<col style="width:13em">' if deeper else "")
        + "<col></colgroup>"
        + f'<tr><th style="{_CELL}">severity</th><th style="{_CELL}">check</th>'
        + (f'<th style="{_CELL}">go deeper</th>' if deeper else "")
        + f'<th style="{_CELL}">finding</th></tr>'
    )
    body = []
    for f in items:
        colour = _SEVERITY_COLOURS.get(f.severity, "#475467")
        target = notebook_for(f.check)
        if not deeper:
            link = ""
        elif target and target == here:
            link = f'<td style="{_CELL}">(this notebook)</td>'
        elif target:
            link = f'<td style="{_CELL}"><a href="{target}.ipynb">{target}</a></td>'
        else:
            link = f'<td style="{_CELL}"></td>'
        details = _finding_details(f, rows)
        body.append(
            f'<tr><td style="{_CELL}color:{colour};font-weight:bold">{f.severity}</td>'
            f'<td style="{_CELL}"><code>{html.escape(f.check)}</code></td>{link}'
            f'<td style="{_CELL}">{html.escape(f.title)}{details}</td></tr>'
        )
    return (
        '<table class="provkit-findings" style="text-align:left;table-layout:fixed;width:100%;max-width:100%">'
        f"{head}{''.join(body)}</table>"
    )


def _finding_details(f, rows: int) -> str:
    parts = []
    if f.why:
        parts.append(f"<p><b>Why it matters:</b> {html.escape(f.why)}</p>")
    if f.remedy:
        parts.append(f"<p><b>What to do:</b> {html.escape(f.remedy)}</p>")
    if f.evidence:
        frame = pd.DataFrame(f.evidence[:rows])
        more = len(f.evidence) - rows + f.omitted if len(f.evidence) > rows else f.omitted
        table = frame.to_html(index=False, na_rep="", border=0)
        parts.append(f'<div class="provkit-evidence" style="overflow-x:auto;max-width:100%">{table}</div>')
        if more > 0:
            parts.append(f"<p>... and {more} more</p>")
    for link in f.links:
        parts.append(f'<p><a href="{html.escape(link)}">{html.escape(link)}</a></p>')
    if not parts:
        return ""
    return f"<details><summary>details</summary>{''.join(parts)}</details>"


class _Rich:
    """An object that shows as HTML in Jupyter and as text elsewhere."""

    def __init__(self, text: str, html_text: str) -> None:
        self.text, self.html_text = text, html_text

    def _repr_html_(self) -> str:
        return self.html_text

    def __repr__(self) -> str:
        return self.text


def show_findings(
    findings: Iterable,
    *,
    sections: Iterable[str] | None = None,
    deeper: bool = True,
    here: str | None = None,
) -> None:
    """Display findings (optionally only some sections) with links to the notebook that goes deeper (none to
    ``here``, the notebook being read)."""
    from IPython.display import display

    from provkit.analysis.checks import format_findings

    chosen = _sections(findings, sections)
    display(_Rich(format_findings(chosen), findings_html(chosen, deeper=deeper, here=here)))


def verdict(evidence: Evidence, findings: Iterable, *, sections: Iterable[str] | None = None) -> str:
    """A short, stable verdict: the app, the worst severity, and each finding's check id and count.

    Titles (which carry times and wording) are left out on purpose: this is what a test or an alert compares.
    """
    chosen = _sections(findings, sections)
    worst = max((f.rank for f in chosen), default=-1)
    label = {-1: "nothing to report", 0: "ok (information only)", 1: "WARNING", 2: "ERROR"}[worst]
    lines = [f"{evidence.display_name}: {label}"]
    for f in chosen:
        lines.append(f"  {f.severity:<7} {f.check}" + (f" ({f.count})" if f.count else ""))
    return "\n".join(lines)


def _time(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "unknown"
    return f"{pd.Timestamp(value).tz_convert('UTC'):%Y-%m-%d %H:%M} UTC"


def eta_text(eta) -> str:
    """The initial cycle's ETA (a :class:`provkit.analysis.cycles.Eta` or None) in a few lines."""
    if eta is None:
        return "No initial cycle is running: nothing to estimate."
    lines = [
        f"Initial cycle started {_time(eta.cycle_start)}.",
        f"  earliest {_time(eta.earliest)}  ({eta.earliest_method})",
        f"  likely   {_time(eta.likely)}  ({eta.likely_method})",
        f"  latest   {_time(eta.latest)}  ({eta.latest_method})",
        f"  objects in scope: {eta.objects_in_scope_source}",
    ]
    lines += [f"  note: {note}" for note in eta.notes]
    return "\n".join(lines)


def change_eta_text(eta) -> str:
    """When a change made now reaches the app (a :class:`provkit.analysis.cycles.ChangeEta`), in a few lines."""
    if eta.never:
        when = "not until someone acts"
    else:
        when = f"likely {_time(eta.likely)} (between {_time(eta.earliest)} and {_time(eta.latest)})"
        if eta.only_if_fixed:
            when += ", and only if the cause is fixed"
    return f"{eta.state}: {when}.\n{eta.explanation}\nBasis: {eta.basis}"


def state_text(result) -> str:
    """The job's state and its detail in one line (a :class:`provkit.analysis.cycles.CycleSummary`), without the
    repetition ``Reason (Reason)`` that a quarantine whose reason and error code agree would give."""
    detail = re.sub(r"\b(\w+) \(\1\)", r"\1", str(result.state_detail or ""))
    return f"{result.state}: {detail}" if detail else str(result.state)


def cycles_verdict(result) -> str:
    """The cycle summary (a :class:`provkit.analysis.cycles.CycleSummary`) as a short, stable verdict."""
    lines = [
        f"{result.app}: {result.state}",
        f"  cycles {result.cycles}: {result.initial_cycles} initial, {result.incremental_cycles} incremental, "
        f"{result.unknown_cycles} unknown; {result.inferred_cycles} inferred without entries",
    ]
    if result.initial_reason:
        lines.append(f"  latest initial cycle: {result.initial_reason}")
    if result.quarantine_reason:
        lines.append(f"  quarantine: {result.quarantine_reason}")
    return "\n".join(lines)


def explain_verdict(explanation) -> str:
    """One object's explanation as a short, stable verdict: who, the check that covers it, the assignment."""
    who = explanation.display_name or explanation.query
    check = explanation.check or "nothing wrong"
    return f"{who} ({explanation.kind or 'object'}): {check}; assignment: {explanation.assignment}"


def story(explanation) -> str:
    """One object's explanation (:func:`provkit.analysis.checks.explain`) as text that says everything once.

    Like :func:`provkit.analysis.checks.format_explanation`, but entries are numbered and a step that reads exactly as in
    an earlier entry (the service's long skip text, the same scoping result) is not printed again: the entry
    says which earlier entry it repeats.
    """
    from provkit.analysis.checks import format_explanation
    from provkit.analysis.checks.facts import short_time

    head = format_explanation(explanation, steps=False).split("\nEntries (oldest first):")[0].rstrip()
    if not explanation.entries:
        return head
    lines = [head, "", "Entries (oldest first):"]
    if explanation.omitted:
        lines.append(f"  ({explanation.omitted} earlier entries not shown)")
    seen: dict[tuple, int] = {}
    for number, e in enumerate(explanation.entries, start=1):
        head_line = f"  [{number}] {short_time(e['time'])}  {e['action']:<8} {e['status']:<8}"
        code = e.get("error_code") or e.get("skip_reason")
        lines.append(head_line + (f"  {code}" if code else "") + f"  cycle {e['cycle_id']}")
        repeated: list[int] = []
        for step in e["steps"]:
            shown = {k: v for k, v in step["details"].items() if k != "ReportableIdentifier"}
            key = (
                step["name"],
                step["status"],
                step["description"],
                tuple(sorted(map(str, shown.items()))),
                tuple(step.get("scope_clauses", [])),
            )
            if key in seen:
                repeated.append(seen[key])
                continue
            seen[key] = number
            lines.append(f"      {step['name']} [{step['type']}] {step['status']}: {step['description']}")
            if shown:
                lines.append("        " + ", ".join(f"{k}={v}" for k, v in shown.items()))
            for clause in step.get("scope_clauses", []):
                lines.append(f"        scope: {clause}")
        if repeated:
            where = ", ".join(f"[{n}]" for n in sorted(set(repeated)))
            lines.append(f"      ... and {len(repeated)} step(s) exactly as in {where}")
    lines += [f"See: {link}" for link in explanation.links]
    return "\n".join(lines)


_FAILURE_COLUMNS = [
    "activity_time",
    "source_name",
    "action",
    "error_code",
    "error_reason",
    "change_id",
]


def latest_failures(evidence: Evidence, n: int = 10) -> pd.DataFrame:
    """The ``n`` most recent failed entries: time, object, action, error code and reason, change id."""
    events = evidence.events
    failed = events[events["status"].astype(str) == "failure"]
    return (
        failed.sort_values("activity_time", ascending=False).head(n)[_FAILURE_COLUMNS].reset_index(drop=True)
    )


def credential_failures(evidence: Evidence, n: int = 20) -> pd.DataFrame:
    """Failed entries whose error says the app refused the credentials, latest first (at most ``n``)."""
    from provkit.analysis.checks.credentials import rejected_entries
    from provkit.analysis.checks.facts import gather

    rejected = rejected_entries(gather(evidence))
    if rejected.empty:
        return pd.DataFrame(columns=_FAILURE_COLUMNS)
    return (
        rejected.sort_values("activity_time", ascending=False)
        .head(n)[_FAILURE_COLUMNS]
        .reset_index(drop=True)
    )


# What each logged skip reason means and whether it needs anyone, from Microsoft's troubleshooting guide and
# provisioning-logs how-to (skip reasons and error codes; the RedundantExport text is provisionOnDemand's
# documented answer: "The state of the user in both the source and target systems already match.").
SKIP_MEANINGS = {
    "redundantexport": "Nothing to do: the app already holds the same values, so no change was sent. Not an error.",
    "noteffectivelyentitled": (
        "Not assigned as far as the service can tell (no direct assignment, a nested group, a broken assignment, "
        "a disabled account) or, as the service words it, out of scope: see the findings below."
    ),
    "entryjoiningpropertyvalueismissing": (
        "The matching attribute is empty on the user or group: fill it in, or fix the matching attribute."
    ),
    "importskipped": (
        "The user lacks the matching property, so scoping, matching and export could not be evaluated."
    ),
    "entrysynchronizationskipped": "Out of scope, or already in the app with no change required.",
}


def skip_reasons(evidence: Evidence) -> pd.DataFrame:
    """Skipped entries and distinct objects per logged skip reason, most objects first, with what each reason
    means (``meaning``; empty for a reason the guide does not describe)."""
    events = evidence.events
    skipped = events[events["status"].astype(str) == "skipped"]
    if skipped.empty:
        return pd.DataFrame(columns=["skip_reason", "entries", "objects", "meaning"])
    reason = skipped["skip_reason"].astype(object).where(skipped["skip_reason"].notna(), "(none logged)")
    table = skipped.assign(skip_reason=reason).groupby("skip_reason", dropna=False)
    out = pd.DataFrame({"entries": table.size(), "objects": table["source_id"].nunique()})
    out = out.sort_values(["objects", "entries"], ascending=False).reset_index()
    out["meaning"] = [SKIP_MEANINGS.get(str(r).lower(), "") for r in out["skip_reason"]]
    return out


def first_skipped_user(evidence: Evidence) -> str | None:
    """The object id of the user most recently skipped, or None."""
    events = evidence.events
    skipped = events[(events["status"].astype(str) == "skipped") & events["source_id"].notna()]
    users = skipped[skipped["source_type"].astype(str).str.lower().str.contains("user")]
    if users.empty:
        return None
    return str(users.sort_values("activity_time").iloc[-1]["source_id"])


def format_duration(value: Any) -> str:
    """A duration as a reader says it: ``45 s``, ``12 min``, ``1 h 01 min``, ``2 d 3 h``; empty when unknown."""
    if value is None or (not isinstance(value, pd.Timedelta) and pd.isna(value)):
        return ""
    delta = pd.Timedelta(value)
    if pd.isna(delta):
        return ""
    seconds = int(round(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def watermark_resets(cycle_table: pd.DataFrame) -> pd.DataFrame:
    """The cycles that followed a watermark reset: start (UTC), kind, reason, duration (``1 h 01 min``; a ``≥``
    marks a lower bound from the log span) and entries."""
    columns = ["start", "kind", "reset_reason", "duration", "entries", "kind_reason"]
    resets = cycle_table[cycle_table["reset_before"]].reset_index(drop=True)
    out = resets[columns].copy()
    out["start"] = [_time(v) for v in resets["start"]]
    bound = resets.get("duration_is_lower_bound", pd.Series(False, index=resets.index)).fillna(False)
    out["duration"] = [
        ("≥ " if is_bound and text else "") + text
        for text, is_bound in zip((format_duration(v) for v in resets["duration"]), bound, strict=True)
    ]
    return out


# ---- calls that touch the tenant --------------------------------------------------------------------------
def _write_client(source: str | None, cloud=None, tenant_id=None, client_id=None, *, allow_writes: bool):
    source = check_source(source)
    if source == "store":
        raise ConfigError(
            "This notebook reads the store offline: there is no tenant to call.",
            remedy="Set source = 'graph' (or 'demo') in the parameters cell to call the tenant.",
        )
    if source == "demo":
        return _demo(allow_writes=True).client
    return _graph_client(cloud, tenant_id, client_id, allow_writes=allow_writes)


def _job_path(evidence: Evidence) -> str:
    job = evidence.job or {}
    if not job.get("id"):
        raise ConfigError(f"No provisioning job is known for {evidence.display_name}.")
    return f"/servicePrincipals/{evidence.service_principal_id}/synchronization/jobs/{job['id']}"


def validator(
    evidence: Evidence,
    validate_credentials: bool,
    *,
    source: str | None = None,
    store: str | None = None,
    cloud: str | None = None,
    tenant_id: str | None = None,
    client_id: str | None = None,
) -> Callable[[], Any] | None:
    """The validateCredentials call for ``run_checks``, or None when ``validate_credentials`` is False.

    The POST tests the saved credentials against the app (it changes nothing, but it does reach the target), so
    it runs only when the notebook's ``validate_credentials`` parameter is True.
    """
    if not validate_credentials:
        return None
    from provkit.analysis.checks.credentials import saved_credentials_validator

    client = _write_client(source, cloud, tenant_id, client_id, allow_writes=False)
    _job_path(evidence)  # says clearly when no job is known
    return saved_credentials_validator(client, evidence.service_principal_id, evidence.job["id"])


def _not_run(what: str) -> str:
    return f"Not run: this cell would {what}. Set allow_changes = True in the parameters cell to do it."


def restart_job(
    evidence: Evidence,
    allow_changes: bool,
    *,
    source: str | None = None,
    store: str | None = None,
    cloud: str | None = None,
    tenant_id: str | None = None,
    client_id: str | None = None,
) -> str:
    """Restart the job (clearing watermark, escrows and quarantine) when ``allow_changes``; say what happened.

    A restart makes the next cycle an initial cycle, which evaluates every object in scope again.
    """
    if not allow_changes:
        return _not_run(f"restart {evidence.display_name}'s job (the next cycle would be an initial cycle)")
    client = _write_client(source, cloud, tenant_id, client_id, allow_writes=True)
    client.post(
        _job_path(evidence) + "/restart",
        json={"criteria": {"resetScope": _RESTART_SCOPE}},
        changes_tenant=True,
    )
    return f"Restarted {evidence.display_name}'s job at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({_RESTART_SCOPE})."


def provision_on_demand(
    evidence: Evidence,
    object_id: str | None,
    allow_changes: bool,
    *,
    kind: str = "User",
    members: list[str] | tuple[str, ...] = (),
    source: str | None = None,
    store: str | None = None,
    cloud: str | None = None,
    tenant_id: str | None = None,
    client_id: str | None = None,
) -> str:
    """Provision one user, or one group with up to five members, on demand when ``allow_changes``; the
    service's answer with every step (:func:`provkit.data.ondemand.format_on_demand`). Refuses, sending nothing,
    where the documentation says the job must be stopped first (OAuth apps) or the request is out of limits."""
    from provkit.data.ondemand import format_on_demand, on_demand_request, read_on_demand

    if not object_id:
        return "No object chosen."
    who = object_name(evidence, object_id)
    groups = {
        str(a.get("principalId") or "").lower()
        for a in evidence.assignments
        if str(a.get("principalType") or "").lower() == "group"
    }
    try:
        body = on_demand_request(
            rule_id=_rule_id(evidence),
            object_id=object_id,
            kind=kind,
            members=members,
            job=evidence.job,
            assigned_groups=groups if evidence.assignments else None,
            app=evidence.display_name,
        )
    except ConfigError as exc:
        return f"Not sent: {exc}"
    if not allow_changes:
        return _not_run(f"provision {who} to {evidence.display_name} on demand (it may create or change it)")
    client = _write_client(source, cloud, tenant_id, client_id, allow_writes=True)
    answer = client.post(_job_path(evidence) + "/provisionOnDemand", json=body, changes_tenant=True) or {}
    # Either documented shape of the answer (provkit.data.ondemand says which pages document them), every step shown.
    text = format_on_demand(read_on_demand(answer))
    return text.replace("provisionOnDemand:", f"provisionOnDemand for {who}:", 1)


def object_name(evidence: Evidence, object_id: str) -> str:
    """An object as a reader knows it: ``Name <upn>`` from its log entries, else its id."""
    events = evidence.events
    rows = events[events["source_id"].astype(str) == str(object_id)]
    if rows.empty:
        return str(object_id)
    last = rows.sort_values("activity_time").iloc[-1]
    name = last["source_name"] if pd.notna(last["source_name"]) else None
    upn = last["reportable_identifier"] if pd.notna(last["reportable_identifier"]) else None
    if name and upn and "@" in str(upn) and str(upn).lower() != str(name).lower():
        return f"{name} <{upn}>"
    return str(name or upn or object_id)


def _rule_id(evidence: Evidence) -> str:
    rules = (evidence.schema or {}).get("synchronizationRules") or []
    if not rules or not rules[0].get("id"):
        raise ConfigError(
            f"The synchronization rule of {evidence.display_name}'s job is unknown (no schema in the evidence).",
            remedy="Fetch the app again from the tenant: the schema names the rule provisionOnDemand needs.",
        )
    return str(rules[0]["id"])


def notebooks_dir() -> Path:
    """The folder holding the workbook's notebooks (beside the provkit package in a checkout)."""
    return Path(__file__).resolve().parents[2] / "notebooks"
