"""A report's HTML: a standalone page per executed notebook, and ``OUT/index.html`` over every run.

Pages open with a banner that says which tenant and source the evidence came from, link to each other, and
draw their charts with one copy of plotly.js in the run folder (``OUT/<run id>/plotly.min.js``, loaded by a plain
``<script src>``); they load nothing else, so they work opened from disk (file://), over http and offline, with
no request to a CDN. The HTML comes from the Jinja2 templates in ``provkit/workbook/templates/`` (autoescaped).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import plotly
from markupsafe import Markup

from provkit.formatting import format_time
from provkit.workbook.render import banner_html, render, template_source

__all__ = ["export_html", "write_index"]


_RUN_NAME = re.compile(r"^\d{8}T\d{6}Z")
_PLOTLY_MIME = "application/vnd.plotly.v1+json"
_NOTEBOOK_ANCHOR = re.compile(r'<a href="(\d\d-[a-z0-9-]+)\.ipynb"([^>]*)>(.*?)</a>', re.DOTALL)
# nbconvert renders the page itself, from its lab template extended by templates/report-page.html.
_PAGE_TEMPLATE_NAME = "provkit-page.html.j2"
_STATE_COLOURS = {"ok": "#12b76a", "warning": "#f79009", "error": "#d92d20", "failed": "#667085"}
_TREND_RUNS = 30


def export_html(
    notebook_path: Path,
    html_path: Path,
    *,
    hide_input: bool = True,
    title: str | None = None,
    siblings: Sequence[str] | None = None,
    banner: str | None = None,
) -> Path:
    """Write a standalone HTML page of an executed notebook; links to ``siblings`` (notebook names without
    .ipynb, default: the notebooks beside it) point to their HTML pages instead.

    ``hide_input`` leaves the code out (nbconvert's ``--no-input``): the headings, prose and outputs remain.
    ``banner`` (one line: where the evidence came from) opens the page. Charts are drawn from the notebook's plotly
    JSON with a local copy of plotly.js (see :func:`_draw_charts_locally`); the page loads no script, font or
    style from the network (no require.js, MathJax, mermaid or widget manager from a CDN).
    """
    # Deferred on purpose: nbformat and nbconvert take seconds to import; only a report that ran notebooks needs them.
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(notebook_path, as_version=4)
    charts = _draw_charts_locally(notebook)
    script = _local_plotly(html_path) if charts else None
    exporter = HTMLExporter(
        exclude_input=hide_input,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        extra_loaders=[_page_loader()],
        template_file=_PAGE_TEMPLATE_NAME,
    )
    body, _ = exporter.from_notebook_node(
        notebook,
        resources={
            "metadata": {"name": title or notebook_path.stem},
            "provkit_plotly": script,
            "provkit_banner": banner_html(banner) if banner else "",
        },
    )
    pages = set(siblings) if siblings is not None else {p.stem for p in notebook_path.parent.glob("*.ipynb")}
    # Links to the pages of this report go to their HTML; a link to a notebook the report did not run (06, 07)
    # would be a dead end on disk, so it becomes its name in plain text.
    body = _NOTEBOOK_ANCHOR.sub(
        lambda m: (
            f'<a href="{m.group(1)}.html"{m.group(2)}>{m.group(3)}</a>'
            if m.group(1) in pages
            else f'<span class="provkit-not-in-report" title="not part of this report">{m.group(3)}</span>'
        ),
        body,
    )
    html_path.write_text(body, encoding="utf-8")
    return html_path


def _page_loader() -> jinja2.BaseLoader:
    return jinja2.DictLoader({_PAGE_TEMPLATE_NAME: template_source("report-page.html")})


def _draw_charts_locally(notebook: Any) -> int:
    """Give every plotly output an HTML part that draws it with the page's local plotly.js; returns how many.

    The notebooks display figures as plotly's JSON mimetype only (JupyterLab draws it itself); an HTML part a
    renderer may have added (plotly.js from its CDN, require.js) is replaced.
    """
    count = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data") or {}
            figure = data.get(_PLOTLY_MIME)
            if not isinstance(figure, dict):
                continue
            count += 1
            data["text/html"] = _chart_html(figure, f"provkit-chart-{count}")
    return count


def _chart_html(figure: dict[str, Any], element_id: str) -> str:
    layout = figure.get("layout") or {}
    height = layout.get("height")
    if not isinstance(height, int | float):
        height = 450
    # "<" escaped as \u003c: the JSON stays valid and cannot close the script element.
    payload = json.dumps(
        {"data": figure.get("data") or [], "layout": layout, "config": figure.get("config") or {}},
        separators=(",", ":"),
    ).replace("<", "\\u003c")
    return render("chart.html", element_id=element_id, height=int(height), figure=Markup(payload))


def _local_plotly(html_path: Path) -> str:
    """The relative address of plotly.js for a page at ``html_path``, copying the plotly package's
    ``plotly.min.js`` (about 4.6 MB) once per run folder: one copy serves every app's pages."""
    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    # Report pages live in <out>/<run>/<app>/: one copy per run serves every app's pages.
    parent = html_path.parent
    run_dir = parent.parent if _RUN_NAME.match(parent.parent.name) else parent
    target = run_dir / "plotly.min.js"
    if not target.exists():
        tmp = target.with_name(f".plotly.min.js.{os.getpid()}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)  # two workers exporting at once must not see half a file
    return os.path.relpath(target, parent).replace(os.sep, "/")


# ---- the index over all runs ------------------------------------------------------------------------------
def _read_runs(out: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(out.glob("*/summary.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a damaged or foreign file must not break the index
        if isinstance(data, dict) and isinstance(data.get("apps"), list):
            data["_folder"] = path.parent.name
            runs.append(data)
    runs.sort(key=lambda r: (str(r.get("generated_at")), r["_folder"]))
    return runs


def write_index(out: Path) -> Path:
    """Write ``out/index.html``: each app's latest state and its trend over every run in ``out``."""
    runs = _read_runs(Path(out))
    history: dict[tuple[str, ...], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for run in runs:
        for app in run["apps"]:
            history.setdefault(_row_key(run, app), []).append((run, app))
    apps = [
        _index_app(items)
        for _key, items in sorted(
            history.items(), key=lambda kv: (_tenant_of(*kv[1][-1]).lower(), _app_name(kv[1][-1][1]).lower())
        )
    ]
    page = render(
        "index.html",
        banner=banner_html(_index_origin(runs) + _fleet_line(apps)) if runs else "",
        generated=format_time(datetime.now(UTC)),
        runs=[_index_run(run) for run in reversed(runs)],
        trend_runs=_TREND_RUNS,
        apps=apps,
        colours=_STATE_COLOURS,
    )
    path = Path(out) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".index.html.{os.getpid()}.tmp")
    tmp.write_text(page + "\n", encoding="utf-8")
    tmp.replace(path)  # the tenants of a fleet run at once write it too: never half a page
    return path


def _tenant_of(run: dict[str, Any], app: dict[str, Any]) -> str:
    """The tenant of an index row: the app's, else the one its fleet run was for (a tenant that failed)."""
    return str((app.get("app") or {}).get("tenant_id") or (run.get("fleet") or {}).get("tenant_id") or "")


def _row_key(run: dict[str, Any], app: dict[str, Any]) -> tuple[str, ...]:
    """What makes an index row: the tenant and the app (its service principal id, or its name when it could
    not be read); a tenant or workspace of a fleet that failed as a whole is a row of its own."""
    ident = app.get("app") or {}
    tenant = _tenant_of(run, app).lower()
    if ident.get("service_principal_id"):
        return (tenant, str(ident["service_principal_id"]).lower())
    return (tenant, str(app.get("workspace") or ""), str(ident.get("display_name") or ""))


def _fleet_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of the latest fleet report (one per tenant), or just the latest run when it was no fleet's."""
    latest = runs[-1]
    fleet_id = (latest.get("fleet") or {}).get("id")
    if not fleet_id:
        return [latest]
    return [r for r in runs if (r.get("fleet") or {}).get("id") == fleet_id]


def _index_origin(runs: list[dict[str, Any]]) -> str:
    """The latest run's (or latest fleet report's) source in one line, for the index's banner."""
    fleet_runs = _fleet_runs(runs)
    run = fleet_runs[-1]
    if len(fleet_runs) > 1 or run.get("fleet"):
        return _fleet_origin(fleet_runs)
    tenants = sorted(
        {str((a.get("app") or {}).get("tenant_id")) for a in run["apps"] if a.get("app")} - {"None"}
    )
    source = str(run.get("source"))
    what = {
        "demo": "the SIMULATED tenant (demo data, not a real tenant)",
        "graph": "the LIVE tenant",
        "store": "the local store, read offline",
    }.get(source, source)
    tenant = f", tenant {', '.join(tenants)}" if tenants else ""
    workspaces = run.get("workspaces") or []
    if workspaces:
        what = (
            f"Log Analytics workspace {', '.join(map(str, workspaces))} (the provisioning logs, queried with KQL; "
            f"job status and schema from Graph of {what})"
        )
    return f"Latest run {run['_folder']}: evidence from {what}{tenant}. Each page says where its evidence came from."


def _fleet_origin(runs: list[dict[str, Any]]) -> str:
    """The latest fleet report in one line: its tenants and workspaces, where the logs and the configuration came
    from, and how each workspace's tenant was known."""
    fleets = [r.get("fleet") or {} for r in runs]
    tenants = sorted({str(f.get("tenant_id")) for f in fleets if f.get("tenant_id")})
    workspaces = sorted({str(f.get("workspace")) for f in fleets if f.get("workspace")})
    failed = [
        f
        for r, f in zip(runs, fleets, strict=True)
        if r.get("state") == "failed" and r["apps"][0].get("folder") == ""
    ]
    kind = (
        "the SIMULATED tenants (demo data, not real tenants)"
        if fleets and all(f.get("simulated") for f in fleets if f.get("tenant_id"))
        else "each LIVE tenant"
    )
    read = [f for f in fleets if f.get("tenant_from") == "AADTenantId"]
    how = (
        f"; the tenant of {len({f.get('workspace') for f in read})} workspace(s) read from their rows' AADTenantId"
        if read
        else ""
    )
    text = (
        f"Latest fleet report ({len(runs)} run(s) from {runs[0]['_folder']}): provisioning logs from "
        f"{len(workspaces)} Log Analytics workspace(s) ({', '.join(workspaces)}), queried with KQL; job status and "
        f"schema from Graph of {kind}: {', '.join(tenants) or 'none'}{how}."
    )
    if failed:
        text += f" {len(failed)} tenant(s) or workspace(s) could not be read: see the failed rows."
    return text + " Each page says where its evidence came from."


def _fleet_line(apps: list[dict[str, Any]]) -> str:
    """For an index whose rows span several tenants (runs of a fleet written to one folder), a sentence saying
    so: each row's tenant and logs column tell them apart."""
    tenants = {a["tenant"] for a in apps if a["tenant"]}
    if len(tenants) < 2:
        return ""
    workspaces = {a["logs"] for a in apps if a["logs"].startswith("Log Analytics workspace")}
    where = f" and {len(workspaces)} Log Analytics workspaces" if workspaces else ""
    return f" The table covers {len(apps)} apps in {len(tenants)} tenants{where}, one row per tenant and app."


_LOGS_FROM = {"demo": "Graph (simulated tenant)", "graph": "Graph", "store": "the store"}


def _logs_from(run: dict[str, Any], app: dict[str, Any]) -> str:
    """Where an app's logs came from, for its index row: the workspace it was queried from, else the source."""
    if app.get("workspace"):
        return f"Log Analytics workspace {app['workspace']}"
    source = str(run.get("source"))
    return _LOGS_FROM.get(source, source)


def _app_name(app: dict[str, Any]) -> str:
    return str((app.get("app") or {}).get("display_name") or "?")


def _index_app(items: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """One row of the index: an app's latest run, its links and its trend over the last runs."""
    run, app = items[-1]
    counts = app.get("counts") or {}
    job = app.get("job") or {}
    folder = "/".join(part for part in (run["_folder"], app.get("folder") or "") if part)
    triage = next((n["html"] for n in app.get("notebooks") or [] if n.get("html")), None)
    links = [{"href": f"{folder}/summary.json", "text": "summary"}]
    if triage:
        links.insert(0, {"href": f"{folder}/{triage}", "text": triage})
    checks = (app.get("checks") or {}).get("error", []) + (app.get("checks") or {}).get("warning", [])
    detail = ", ".join(checks[:6]) + (" ..." if len(checks) > 6 else "")
    if app.get("state") == "failed" or app.get("errors"):
        detail = "; ".join(app.get("errors") or []) or detail
    trend = [
        {
            "state": str(a.get("state")),
            "when": str(r.get("generated_at", ""))[:16],
            "errors": (a.get("counts") or {}).get("error", 0),
            "warnings": (a.get("counts") or {}).get("warning", 0),
        }
        for r, a in items[-_TREND_RUNS:]
    ]
    return {
        "name": _app_name(app),
        "tenant": _tenant_of(run, app),
        "logs": _logs_from(run, app),
        "state": str(app.get("state")),
        "errors": counts.get("error", 0),
        "warnings": counts.get("warning", 0),
        "infos": counts.get("info", 0),
        "status": " / ".join(str(job.get(k)) for k in ("status", "schedule") if job.get(k)),
        "trend": trend,
        "detail": detail,
        "links": links,
    }


def _index_run(run: dict[str, Any]) -> dict[str, Any]:
    """One row of the index's list of runs."""
    states = [a.get("state") for a in run["apps"]]
    summary = ", ".join(
        f"{states.count(s)} {s}" for s in ("error", "warning", "ok", "failed") if states.count(s)
    )
    return {
        "folder": run["_folder"],
        "state": str(run.get("state")),
        "apps": len(run["apps"]),
        "summary": summary,
        "source": str(run.get("source")) + "".join(f", workspace {w}" for w in run.get("workspaces") or []),
    }
