"""Scheduled reports: the workbook's notebooks run with papermill for one app, several or all of them.

A report run fetches each app once (``provkit.workbook.session.load_evidence``) into a store, then runs the notebooks
against that store offline (``source="store"``), two at a time in a small process pool. For each app it writes,
under ``OUT/<run id>/<app>/``:

- the executed notebooks (``00-triage.ipynb``, ...), each a record of its parameters, outputs and errors;
- standalone HTML pages of them (inputs hidden unless asked otherwise), linking to each other, each opening with
  a banner that says which tenant and source the evidence came from. The pages draw their charts with one copy
  of plotly.js in the run folder (``OUT/<run id>/plotly.min.js``, loaded by a plain ``<script src>``) and load
  nothing else: they work opened from disk (file://), over http and offline, with no request to a CDN;
- ``summary.json``: status, findings by severity with their check ids, cycle statistics, the notebooks' outcome.

``OUT/<run id>/summary.json`` gathers the apps of the run, and ``OUT/index.html`` shows every app's latest state
and its trend across all earlier runs in ``OUT``. ``--fail-on warning|error`` turns findings into an exit code
for alerting.

Exit codes of ``provkit report``: 0 done (and nothing at or above ``--fail-on``); 1 an app could not be read or
a notebook failed; 2 bad usage; 3 findings at or above ``--fail-on``.

Secrets never reach a notebook: its parameters carry ids, times and the store's path, and the notebooks run in
kernels whose environment has no ``PROVKIT_CLIENT_SECRET``.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provkit._version import __version__
from provkit.errors import ConfigError, ProvkitError

__all__ = [
    "DEFAULT_NOTEBOOKS",
    "EXIT_FAILED",
    "EXIT_FINDINGS",
    "ReportRun",
    "add_report_arguments",
    "build_report",
    "execute_notebook",
    "exit_code",
    "export_html",
    "run_report",
    "write_index",
]

DEFAULT_NOTEBOOKS = (
    "00-triage",
    "01-is-provisioning-working",
    "02-service-does-not-start",
    "03-credentials",
    "04-skipped-users",
    "05-cycles-and-watermarks",
)
"""Notebooks a report runs unless told otherwise (06 needs an object, 07 is ``provkit postmortem``)."""

SEVERITY_RANK = {"ok": 0, "info": 0, "warning": 1, "error": 2}
EXIT_FAILED = 1
EXIT_FINDINGS = 3
CELL_TIMEOUT = 600  # seconds a single cell may run before the notebook counts as failed
_SECRET_VARIABLES = ("PROVKIT_CLIENT_SECRET",)
_NOTEBOOK_ANCHOR = re.compile(r'<a href="(\d\d-[a-z0-9-]+)\.ipynb"([^>]*)>(.*?)</a>', re.DOTALL)


# ---- one notebook -------------------------------------------------------------------------------------
def _kernel_manager_class() -> type:
    """A kernel manager that starts ipykernel with this very Python, whatever kernelspecs are installed."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisPythonSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> Any:
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict()
            )

    class ThisPythonKernel(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_specs(self) -> KernelSpecManager:
            return ThisPythonSpecs(parent=self)

    return ThisPythonKernel


# One kernel per process, reused from notebook to notebook: starting a kernel and importing pandas, plotly and
# provkit costs seconds, the analysis of a stored app well under one. Before each notebook the kernel's
# namespace is reset (a new session: variables and execution counts start over; imported modules stay).
_WARM: dict[str, Any] = {}
WARM_ENGINE = "provkit-warm-kernel"


def _warm_kernel(cwd: str) -> Any:
    """This process's kernel, started on first use and reset (fresh namespace, working folder ``cwd``)."""
    from jupyter_core.utils import run_sync

    km = _WARM.get("km")
    if km is not None and not run_sync(km.is_alive)():
        _WARM.clear()
        km = None
    if km is None:
        import multiprocessing.util

        km = _kernel_manager_class()(kernel_name="python3")
        # The kernel's own stderr carries only start-up chatter; errors in cells reach us through the protocol.
        run_sync(km.start_kernel)(cwd=cwd, stderr=subprocess.DEVNULL)
        _WARM["km"] = km
        # Worker processes end without atexit handlers; multiprocessing finalizers still run.
        multiprocessing.util.Finalize(None, _stop_warm_kernel, exitpriority=10)
        return km
    client = km.client()
    client.start_channels()
    try:
        run_sync(client.wait_for_ready)(timeout=60)
        code = f"import os; os.chdir({cwd!r}); get_ipython().reset(new_session=True, aggressive=False)"
        reply = run_sync(client.execute_interactive)(code, timeout=60, output_hook=lambda _msg: None)
        if reply["content"].get("status") != "ok":
            raise RuntimeError(f"resetting the kernel failed: {reply['content'].get('evalue')}")
    finally:
        client.stop_channels()
    return km


def _stop_warm_kernel() -> None:
    km = _WARM.pop("km", None)
    if km is not None:
        from jupyter_core.utils import run_sync

        run_sync(km.shutdown_kernel)(now=True)


def _register_warm_engine() -> None:
    """Register papermill's engine for the warm kernel (once per process)."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    if WARM_ENGINE in papermill_engines._engines:
        return

    class WarmKernelEngine(NBClientEngine):
        """papermill's nbclient engine, run in this process's warm kernel instead of a new one."""

        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: int = 60,
            execution_timeout: int | None = None,
            **kwargs: Any,
        ) -> Any:
            import logging

            client = PapermillNotebookClient(
                nb_man,
                km=_warm_kernel(os.getcwd()),  # papermill has moved into the task's cwd
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logging.getLogger("papermill"),
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            try:
                return client.execute()
            finally:
                if client.kc is not None:
                    client.kc.stop_channels()

    papermill_engines.register(WARM_ENGINE, WarmKernelEngine)


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
    import nbformat
    from nbconvert import HTMLExporter

    from provkit.workbook.notebook import banner_html

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


_RUN_NAME = re.compile(r"^\d{8}T\d{6}Z")
_PLOTLY_MIME = "application/vnd.plotly.v1+json"
_PAGE_TEMPLATE_NAME = "provkit-page.html.j2"
# nbconvert's lab page without what it would fetch from CDNs: require.js (nothing on these pages needs it),
# an empty icon (no favicon.ico request, a 404 when served over http),
# MathJax (no formulas), mermaid (no diagrams) and the widget manager (report pages have no pickers). The head
# gets one classic script tag for the local plotly.js: no type="module", crossorigin or integrity, which
# Chromium refuses for file:// pages.
_PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}
<link rel="icon" href="data:,">
{%- if resources.provkit_plotly -%}
<script src="{{ resources.provkit_plotly }}" charset="utf-8"></script>
{%- endif -%}
{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block body_header -%}
{{ super() }}
{{ resources.provkit_banner }}
{%- endblock body_header -%}
"""


def _page_loader() -> Any:
    import jinja2

    return jinja2.DictLoader({_PAGE_TEMPLATE_NAME: _PAGE_TEMPLATE})


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
    height = layout.get("height") if isinstance(layout.get("height"), int | float) else 450
    # "<" escaped as \u003c: the JSON stays valid and cannot close the script element.
    payload = json.dumps(
        {"data": figure.get("data") or [], "layout": layout, "config": figure.get("config") or {}},
        separators=(",", ":"),
    ).replace("<", "\\u003c")
    return (
        f'<div id="{element_id}" class="provkit-chart" style="width:100%;height:{int(height)}px"></div>\n'
        "<script>(function () {\n"
        f"  var figure = {payload};\n"
        f'  var element = document.getElementById("{element_id}");\n'
        "  if (!window.Plotly) {\n"
        '    element.textContent = "This chart needs plotly.min.js, which should sit in the report\'s run folder "'
        ' + "beside the app folders; copy it back to see the charts.";\n'
        "    return;\n"
        "  }\n"
        "  var config = Object.assign({responsive: true, displaylogo: false}, figure.config);\n"
        "  Plotly.newPlot(element, figure.data, figure.layout, config);\n"
        "})();</script>"
    )


def _local_plotly(html_path: Path) -> str:
    """The relative address of plotly.js for a page at ``html_path``, copying the plotly package's
    ``plotly.min.js`` (about 4.6 MB) once per run folder: one copy serves every app's pages."""
    import plotly

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


def execute_notebook(task: dict[str, Any]) -> dict[str, Any]:
    """Run one notebook with papermill and export its HTML page; never raises.

    ``task``: input, output (paths), parameters (dict), hide_input (bool), title (str), banner (str: where the
    evidence came from, shown at the top of the page). Returns the task's
    name, app, status ("ok" or "failed"), seconds, the written files (relative names) and, on failure, a
    short error naming the cell.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    for name in _SECRET_VARIABLES:  # the kernel reads the store offline: it needs no secret
        os.environ.pop(name, None)
    source, output = Path(task["input"]), Path(task["output"])
    began = time.monotonic()
    result: dict[str, Any] = {
        "name": source.stem,
        "app": task.get("app"),
        "status": "ok",
        "ipynb": output.name,
        "html": None,
        "error": None,
    }
    warm = task.get("warm", True)
    engine: dict[str, Any] = {"kernel_manager_class": _kernel_manager_class()}
    if warm:
        _register_warm_engine()
        engine = {"engine_name": WARM_ENGINE}
    try:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=task["parameters"],
            kernel_name="python3",
            language="python",
            progress_bar=False,
            cwd=str(output.parent),
            execution_timeout=CELL_TIMEOUT,
            **engine,
        )
    except PapermillExecutionError as exc:
        result["status"] = "failed"
        line = next(
            (t.strip() for t in str(exc.source).splitlines() if t.strip() and not t.startswith("#")), ""
        )
        result["error"] = f"cell In [{exc.exec_count}] `{line[:80]}`: {exc.ename}: {_first_lines(exc.evalue)}"
    except Exception as exc:  # a kernel that died or never started; the report goes on with the others
        result["status"] = "failed"
        result["error"] = f"{type(exc).__name__}: {_first_lines(str(exc))}"
    if output.exists():
        try:
            html_path = export_html(
                output,
                output.with_suffix(".html"),
                hide_input=task.get("hide_input", True),
                title=task.get("title"),
                siblings=task.get("siblings"),
                banner=task.get("banner"),
            )
            result["html"] = html_path.name
        except Exception as exc:
            result["error"] = (result["error"] or "") + f" (HTML export failed: {type(exc).__name__}: {exc})"
    result["seconds"] = round(time.monotonic() - began, 2)
    return result


def _first_lines(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in str(text).strip().splitlines()[:lines] if line.strip())


# ---- the run ------------------------------------------------------------------------------------------
@dataclass
class ReportRun:
    """What a report run wrote: its folder, the run summary (as written to summary.json) and the index."""

    run_dir: Path
    summary: dict[str, Any]
    index: Path
    apps: list[dict[str, Any]] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-") or "app"


def _resolve_notebooks(names: Sequence[str] | None, folder: Path) -> list[Path]:
    """Notebook files for names such as ``00-triage``, ``00`` or ``triage`` (None: DEFAULT_NOTEBOOKS; an
    empty list: none, for a summaries-only run)."""
    wanted = list(DEFAULT_NOTEBOOKS if names is None else names)
    if not wanted:
        return []
    available = sorted(folder.glob("[0-9][0-9]-*.ipynb"))
    if not available:
        raise ConfigError(
            f"No workbook notebooks in {folder}.",
            remedy="Run provkit from a checkout of the repository, or pass --notebooks-dir DIR.",
        )
    chosen = []
    for name in wanted:
        key = name.removesuffix(".ipynb").lower()
        match = [p for p in available if p.stem == key or p.stem.startswith(key + "-") or p.stem[3:] == key]
        if len(match) != 1:
            raise ConfigError(
                f"No single notebook matches {name!r}.",
                remedy="Use one of: " + ", ".join(p.stem for p in available) + ".",
            )
        if match[0] not in chosen:
            chosen.append(match[0])
    return chosen


def _new_run_dir(out: Path) -> tuple[str, Path]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id, n = stamp, 1
    while (out / run_id).exists():
        n += 1
        run_id = f"{stamp}-{n}"
    path = out / run_id
    path.mkdir(parents=True)
    return run_id, path


def _findings_by_severity(findings: list) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {"error": [], "warning": [], "info": []}
    for f in findings:
        grouped[f.severity].append({"check": f.check, "title": f.title, "count": f.count})
    return grouped


def app_summary(evidence: Any, findings: list, cycle_summary: Any) -> dict[str, Any]:
    """The analysis part of an app's summary.json: status, findings by severity, cycle statistics."""
    from provkit.workbook.notebook import status_row

    grouped = _findings_by_severity(findings)
    counts = {severity: len(items) for severity, items in grouped.items()}
    state = "error" if counts["error"] else ("warning" if counts["warning"] else "ok")
    job = status_row(evidence)
    job.pop("app", None)
    return {
        "app": {
            "display_name": evidence.display_name,
            "service_principal_id": evidence.service_principal_id,
            "app_id": evidence.app_id,
            "tenant_id": evidence.tenant_id,
        },
        "state": state,
        "job": job,
        "counts": counts,
        "checks": {severity: sorted({f["check"] for f in items}) for severity, items in grouped.items()},
        "findings": grouped,
        "cycles": cycle_summary.as_dict(),
    }


class _Fetcher:
    """Reads each app's evidence once, from the tenant (into the store) or from the store alone."""

    def __init__(self, source: str, store: Path | None) -> None:
        from provkit.workbook.session import check_source

        self.source = check_source(source)
        self._tmp: tempfile.TemporaryDirectory | None = None
        if store is None and self.source == "demo":
            self._tmp = tempfile.TemporaryDirectory(prefix="provkit-report-store-")
            store = Path(self._tmp.name)
        if store is None:
            from provkit.data.store import default_root

            store = default_root()
        self.store = Path(store)
        self._client = None
        self._fetched: dict[str, Any] = {}  # app name -> Loaded, from the fetch phase

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.source == "demo":
                from provkit.workbook.notebook import demo_options_from_env
                from provkit.workbook.session import demo_tenant

                self._client = demo_tenant(**demo_options_from_env()).client
            else:
                from provkit.data.sources.graph import connect

                self._client = connect()
        return self._client

    def apps(self) -> list[str]:
        """Every app with a provisioning job (offline: every app in the store), as service principal ids."""
        if self.source == "store":
            from provkit.data.store import Store

            return [a["service_principal_id"] for a in Store(self.store).apps()]
        from provkit.data.sources.graph import provisioning_apps

        return list(dict.fromkeys(a["service_principal_id"] for a in provisioning_apps(self.client)))

    def fetch_all(
        self,
        apps: Sequence[str],
        *,
        since: str | None,
        start: str | None,
        end: str | None,
        say: Callable[[str], None],
    ) -> None:
        """The fetch phase of a report on several apps: every app fetched before any is analysed, several at a
        time through one client (one pacer), in the order :func:`provkit.data.fetch.plan_fetches` gives, after saying
        how long it should take. An app that cannot be resolved or fetched is left to :meth:`load`, which
        reports it as before."""
        if self.source == "store" or len(apps) < 2:
            return
        from provkit.data.fetch import fetch_apps, plan_fetches
        from provkit.workbook.notebook import demo_options_from_env
        from provkit.workbook.session import fetch_target, loaded_after_fetch

        client, tenant_id, store, window = fetch_target(
            self.source,
            since=since if not (start or end) else None,
            start=start,
            end=end,
            store=self.store,
            client=self.client,
            demo_options=demo_options_from_env() if self.source == "demo" else None,
        )
        resolved = {}
        for name in apps:
            try:
                resolved[name] = client.resolve_app(name)
            except ProvkitError:
                continue  # load() reports it
        targets = list({r.service_principal_id: r for r in resolved.values()}.values())
        if not targets:
            return
        plan = plan_fetches(client, store, targets, start=window[0], end=window[1], tenant_id=tenant_id or "")
        say(plan.line())
        began = time.monotonic()

        def done(app: Any, summary: Any, error: BaseException | None) -> None:
            say(f"  fetched {summary.line()}" if summary is not None else f"  {app.display_name}: {error}")

        results = fetch_apps(
            client, store, plan, start=window[0], end=window[1], tenant_id=tenant_id or "", on_done=done
        )
        say(f"Fetch phase: {time.monotonic() - began:.0f} s (estimated {plan.seconds:.0f} s)")
        for name, app in resolved.items():
            result = results.get(app.service_principal_id)
            if isinstance(result, tuple):
                summary, app_store = result
                self._fetched[name] = loaded_after_fetch(
                    summary, app_store, window, self.source, app.describe()
                )

    def load(self, app: str, *, since: str | None, start: str | None, end: str | None) -> Any:
        from provkit.workbook.notebook import demo_options_from_env, load
        from provkit.workbook.session import load_evidence

        if app in self._fetched:  # fetched in the fetch phase
            return self._fetched.pop(app)
        if self.source == "store":
            return load(app, source="store", since=since, start=start, end=end, store=str(self.store))
        return load_evidence(
            app,
            source=self.source,
            since=since if not (start or end) else None,
            start=start,
            end=end,
            store=self.store,
            client=self.client if self.source == "graph" else None,
            progress=False,
            demo_options=demo_options_from_env() if self.source == "demo" else None,
        )

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def build_report(
    apps: Sequence[str] | None,
    *,
    out: Path,
    source: str = "graph",
    since: str | None = "7d",
    start: str | None = None,
    end: str | None = None,
    store: Path | None = None,
    notebooks: Sequence[str] | None = None,
    notebooks_dir: Path | None = None,
    workers: int = 2,
    hide_input: bool = True,
    fail_on: str | None = None,
    warm_kernels: bool = True,
    log: Callable[[str], None] | None = None,
) -> ReportRun:
    """Run a report for ``apps`` (None: every app with a provisioning job) and write it under ``out``.

    Each app is fetched once; its notebooks then read the store offline. An app that cannot be read, or a
    notebook that fails, is recorded in the summaries and the report goes on. ``warm_kernels`` reuses one
    kernel per worker (reset between notebooks) instead of starting one per notebook. Returns what was written.
    """
    from provkit.workbook.notebook import notebooks_dir as default_notebooks_dir

    say = log or (lambda _text: None)
    out = Path(out)
    sources = _resolve_notebooks(notebooks, notebooks_dir or default_notebooks_dir())
    fetcher = _Fetcher(source, store)
    try:
        names = list(apps) if apps else fetcher.apps()
        if not names:
            raise ConfigError(
                "No app to report on.", remedy="Name apps with --app, or check the tenant's apps."
            )
        fetcher.fetch_all(names, since=since, start=start, end=end, say=say)
        run_id, run_dir = _new_run_dir(out)
        generated = datetime.now(UTC).isoformat()
        entries, tasks = [], []
        used_slugs: set[str] = set()
        for name in names:
            entry, app_tasks = _prepare_app(
                fetcher, name, run_dir, used_slugs, sources, since, start, end, hide_input, say
            )
            entry.update(run_id=run_id, generated_at=generated, source=fetcher.source)
            entries.append(entry)
            tasks.extend(dict(task, warm=warm_kernels) for task in app_tasks)
        results = _run_tasks(tasks, workers, say)
        for entry in entries:
            entry["notebooks"] = [r for r in results if r["app"] == entry["folder"]]
            entry["notebooks_failed"] = sum(1 for r in entry["notebooks"] if r["status"] != "ok")
            if entry["state"] != "failed" and entry["notebooks_failed"]:
                entry["errors"] = [f"{r['name']}: {r['error']}" for r in entry["notebooks"] if r["error"]]
            _write_json(run_dir / entry["folder"] / "summary.json", entry)
        summary = {
            "provkit_version": __version__,
            "run_id": run_id,
            "generated_at": generated,
            "source": fetcher.source,
            "window": {"since": since if not (start or end) else None, "start": start, "end": end},
            "fail_on": fail_on,
            "notebooks": [p.stem for p in sources],
            "state": _worst(e["state"] for e in entries),
            "apps": entries,
        }
        _write_json(run_dir / "summary.json", summary)
        index = write_index(out)
        return ReportRun(run_dir, summary, index, entries)
    finally:
        fetcher.close()


def _prepare_app(
    fetcher: _Fetcher,
    name: str,
    run_dir: Path,
    used_slugs: set[str],
    sources: list[Path],
    since: str | None,
    start: str | None,
    end: str | None,
    hide_input: bool,
    say: Callable[[str], None],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fetch one app, analyse it, and plan its notebook runs; a failure becomes a 'failed' entry."""
    from provkit.analysis import cycles
    from provkit.analysis.checks import run_checks
    from provkit.workbook.notebook import short_error

    began = time.monotonic()
    try:
        loaded = fetcher.load(name, since=since, start=start, end=end)
        evidence = loaded.evidence
        table = cycles.cycles_table(evidence)
        entry = app_summary(evidence, run_checks(evidence), cycles.summary(evidence, table))
    except ProvkitError as exc:
        folder = _unique(_slug(name), used_slugs)
        (run_dir / folder).mkdir(parents=True)
        say(f"{name}: could not be read: {exc}")  # the message with its remedy and link
        return {
            "app": {"display_name": name},
            "folder": folder,
            "state": "failed",
            "errors": [short_error(exc)],
            # An unknown or ambiguous name, a bad window: the caller's parameters, not the tenant, are at fault.
            "bad_parameter": isinstance(exc, ConfigError | LookupError),
            "notebooks": [],
        }, []
    folder = _unique(_slug(evidence.display_name), used_slugs)
    app_dir = run_dir / folder
    app_dir.mkdir(parents=True)
    window = evidence.window or (evidence.now, evidence.now)
    from provkit.workbook.session import describe_origin

    origin = describe_origin(evidence, source=fetcher.source, when=datetime.now(UTC))
    entry.update(
        origin=origin,
        folder=folder,
        window={"start": window[0].isoformat(), "end": window[1].isoformat()},
        fetch=loaded.fetch.as_dict() if loaded.fetch is not None else None,
        seconds_to_load=round(time.monotonic() - began, 2),
        errors=[],
    )
    say(
        f"{evidence.display_name}: {entry['state']} ({entry['counts']['error']} errors, "
        f"{entry['counts']['warning']} warnings), {len(evidence.events)} entries"
    )
    parameters = {
        "app": evidence.service_principal_id,
        "since": None,
        "start": window[0].isoformat(),
        "end": window[1].isoformat(),
        "source": "store",
        "store": str(fetcher.store.resolve()),
        "tenant_id": evidence.tenant_id,
    }
    tasks = []
    for source in sources:
        params = dict(parameters)
        if source.stem.startswith("07-"):
            params["out"] = str((app_dir / "postmortem").resolve())
        tasks.append(
            {
                "input": str(source.resolve()),
                "output": str((app_dir / source.name).resolve()),
                "parameters": params,
                "hide_input": hide_input,
                "title": f"{evidence.display_name}: {source.stem}",
                "siblings": [p.stem for p in sources],
                "banner": origin,
                "app": folder,
            }
        )
    return entry, tasks


def _unique(slug: str, used: set[str]) -> str:
    candidate, n = slug, 1
    while candidate in used:
        n += 1
        candidate = f"{slug}-{n}"
    used.add(candidate)
    return candidate


def _run_tasks(tasks: list[dict[str, Any]], workers: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Execute notebook tasks, ``workers`` at a time in worker processes (1: in this process, one by one)."""
    results: list[dict[str, Any]] = []
    if not tasks:
        return results
    if workers <= 1:
        try:
            for task in tasks:
                results.append(execute_notebook(task))
                _say_result(results[-1], say)
        finally:
            _stop_warm_kernel()
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: this process may hold threads (the demo tenant's server, the Graph client's pool).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(execute_notebook, task) for task in tasks]
        try:
            for future in as_completed(futures):
                results.append(future.result())
                _say_result(results[-1], say)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    order = {(t["app"], Path(t["input"]).stem): i for i, t in enumerate(tasks)}
    return sorted(results, key=lambda r: order[(r["app"], r["name"])])


def _say_result(result: dict[str, Any], say: Callable[[str], None]) -> None:
    text = f"  {result['app']}/{result['name']}: {result['status']} ({result['seconds']:.1f} s)"
    if result["error"]:
        text += f": {result['error']}"
    say(text)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)


def _worst(states: Any) -> str:
    order = {"ok": 0, "warning": 1, "error": 2, "failed": 3}
    worst = max(states, key=lambda s: order.get(s, 0), default="ok")
    return worst


def exit_code(summary: dict[str, Any], fail_on: str | None) -> int:
    """The exit code of a report run: EXIT_FAILED when an app or notebook failed, EXIT_FINDINGS when an app's
    findings reach ``fail_on`` ("warning" or "error"), else 0."""
    apps = summary.get("apps") or []
    if any(a.get("state") == "failed" or a.get("notebooks_failed") for a in apps):
        return EXIT_FAILED
    if fail_on:
        threshold = SEVERITY_RANK[fail_on]
        if any(SEVERITY_RANK.get(a.get("state"), 0) >= threshold for a in apps if a.get("state") != "ok"):
            return EXIT_FINDINGS
    return 0


# ---- the index over all runs ------------------------------------------------------------------------------
_STATE_COLOURS = {"ok": "#12b76a", "warning": "#f79009", "error": "#d92d20", "failed": "#667085"}
_TREND_RUNS = 30


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
    history: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for run in runs:
        for app in run["apps"]:
            key = (app.get("app") or {}).get("service_principal_id") or (app.get("app") or {}).get(
                "display_name"
            )
            history.setdefault(str(key), []).append((run, app))
    rows = []
    for _key, items in sorted(history.items(), key=lambda kv: _app_name(kv[1][-1][1]).lower()):
        rows.append(_index_row(items))
    run_rows = [_run_row(run) for run in reversed(runs)]
    from provkit.workbook.notebook import banner_html

    page = _INDEX_TEMPLATE.format(
        banner=banner_html(_index_origin(runs[-1])) if runs else "",
        generated=html.escape(datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        runs=len(runs),
        app_rows="\n".join(rows) or '<tr><td colspan="6">No runs yet.</td></tr>',
        run_rows="\n".join(run_rows),
    )
    path = Path(out) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _index_origin(run: dict[str, Any]) -> str:
    """The latest run's source in one line, for the index's banner."""
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
    return f"Latest run {run['_folder']}: evidence from {what}{tenant}. Each page says where its evidence came from."


def _app_name(app: dict[str, Any]) -> str:
    return str((app.get("app") or {}).get("display_name") or "?")


def _badge(state: str) -> str:
    colour = _STATE_COLOURS.get(state, "#667085")
    return f'<span class="badge" style="background:{colour}">{html.escape(state)}</span>'


def _index_row(items: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    run, app = items[-1]
    counts = app.get("counts") or {}
    job = app.get("job") or {}
    folder = f"{run['_folder']}/{app.get('folder', '')}"
    triage = next((n["html"] for n in app.get("notebooks") or [] if n.get("html")), None)
    links = [f'<a href="{html.escape(folder)}/summary.json">summary</a>']
    if triage:
        links.insert(0, f'<a href="{html.escape(folder)}/{html.escape(triage)}">{html.escape(triage)}</a>')
    checks = (app.get("checks") or {}).get("error", []) + (app.get("checks") or {}).get("warning", [])
    detail = ", ".join(checks[:6]) + (" ..." if len(checks) > 6 else "")
    if app.get("state") == "failed" or app.get("errors"):
        detail = "; ".join(app.get("errors") or []) or detail
    trend = "".join(
        f'<span class="tick" style="background:{_STATE_COLOURS.get(a.get("state"), "#667085")}" '
        f'title="{html.escape(str(r.get("generated_at", ""))[:16])}: {html.escape(str(a.get("state")))}, '
        f'{(a.get("counts") or {}).get("error", 0)} errors, {(a.get("counts") or {}).get("warning", 0)} warnings">'
        "</span>"
        for r, a in items[-_TREND_RUNS:]
    )
    status = " / ".join(str(job.get(k)) for k in ("status", "schedule") if job.get(k))
    return (
        f"<tr><td>{html.escape(_app_name(app))}</td><td>{_badge(str(app.get('state')))}</td>"
        f"<td>{counts.get('error', 0)} / {counts.get('warning', 0)} / {counts.get('info', 0)}</td>"
        f"<td>{html.escape(status)}</td><td class='trend'>{trend}</td>"
        f"<td>{html.escape(detail)}<br>{' &middot; '.join(links)}</td></tr>"
    )


def _run_row(run: dict[str, Any]) -> str:
    states = [a.get("state") for a in run["apps"]]
    summary = ", ".join(
        f"{states.count(s)} {s}" for s in ("error", "warning", "ok", "failed") if states.count(s)
    )
    return (
        f'<tr><td><a href="{html.escape(run["_folder"])}/summary.json">{html.escape(run["_folder"])}</a></td>'
        f"<td>{_badge(str(run.get('state')))}</td><td>{len(run['apps'])} app(s): {html.escape(summary)}</td>"
        f"<td>{html.escape(str(run.get('source')))}</td></tr>"
    )


_INDEX_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>provkit reports</title><link rel="icon" href="data:,">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #101828; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border-bottom: 1px solid #eaecf0; padding: 6px 10px; text-align: left; vertical-align: top; }}
.badge {{ color: white; border-radius: 4px; padding: 1px 6px; font-size: 90%; }}
.tick {{ display: inline-block; width: 8px; height: 18px; margin-right: 2px; border-radius: 2px; }}
.trend {{ white-space: nowrap; }}
</style></head>
<body>
<h1>Provisioning reports</h1>
{banner}
<p>Generated {generated} from {runs} run(s) in this folder. Each row is an app's latest run; the trend shows its
state in up to 30 runs, oldest first (hover for the time and counts).</p>
<table>
<tr><th>app</th><th>state</th><th>errors / warnings / info</th><th>job</th><th>trend</th><th>checks and pages</th></tr>
{app_rows}
</table>
<h2>Runs</h2>
<table>
<tr><th>run</th><th>state</th><th>apps</th><th>source</th></tr>
{run_rows}
</table>
</body></html>
"""


# ---- command line -----------------------------------------------------------------------------------------
def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``provkit report``."""
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--app", action="append", help="display name, appId or object id (repeat for several apps)"
    )
    target.add_argument("--all-apps", action="store_true", help="every app with a provisioning job")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--demo", action="store_true", help="use the simulated tenant (started in-process)")
    source.add_argument("--offline", action="store_true", help="read the local store only; no network")
    parser.add_argument(
        "--store", type=Path, help="store folder (default: $PROVKIT_STORE or the user data folder)"
    )
    parser.add_argument("--since", help="how far back, e.g. 7d, 36h (default 7d)")
    parser.add_argument("--start", help="window start, ISO-8601 (UTC unless an offset is given)")
    parser.add_argument("--end", help="window end, ISO-8601 (default now)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default reports)")
    parser.add_argument(
        "--fail-on",
        choices=("warning", "error"),
        help=f"exit with {EXIT_FINDINGS} when an app has findings of this severity or worse (for alerting)",
    )
    parser.add_argument(
        "--notebook",
        action="append",
        dest="notebooks",
        help="notebook to run, e.g. 00-triage or 07 (repeat; default 00 to 05)",
    )
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="write summary.json and the index without running notebooks (the quickest check for alerting)",
    )
    parser.add_argument("--notebooks-dir", type=Path, help="folder holding the workbook notebooks")
    parser.add_argument("--workers", type=int, default=2, help="notebooks run at once (default 2)")
    parser.add_argument("--show-input", action="store_true", help="keep the code cells in the HTML pages")


def run_report(args: argparse.Namespace) -> int:
    """``provkit report``: run, print progress to stderr and the index's path to stdout; see the exit codes."""
    if not (args.app or args.all_apps):
        raise ConfigError("Name the apps to report on.", remedy="Use --app APP (repeatable) or --all-apps.")
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1.")
    source = "store" if args.offline else ("demo" if args.demo else "graph")
    # Bad parameters stop the run before anything is fetched or written (exit 2), rather than failing per app.
    from provkit.window import resolve_window

    resolve_window(since=args.since, start=args.start, end=args.end)
    if source == "graph":
        from provkit.data.auth import Settings

        Settings.from_env()
    since = args.since or ("7d" if not (args.start or args.end) else None)
    started = time.monotonic()
    run = build_report(
        None if args.all_apps else args.app,
        out=args.out,
        source=source,
        since=since,
        start=args.start,
        end=args.end,
        store=args.store,
        notebooks=[] if args.summary_only else args.notebooks,
        notebooks_dir=args.notebooks_dir,
        workers=args.workers,
        hide_input=not args.show_input,
        fail_on=args.fail_on,
        log=lambda text: print(text, file=sys.stderr, flush=True),
    )
    code = exit_code(run.summary, args.fail_on)
    bad = [a["app"].get("display_name") for a in run.apps if a.get("bad_parameter")]
    if bad:
        code = 2  # a named app that does not resolve is a usage error (the other apps were still reported)
        print(f"provkit report: could not resolve {', '.join(map(repr, bad))}; exit code 2.", file=sys.stderr)
    print(
        f"Report {run.summary['run_id']}: {len(run.apps)} app(s), state {run.summary['state']}, "
        f"{time.monotonic() - started:.1f} s; written to {run.run_dir}",
        file=sys.stderr,
    )
    if code == EXIT_FINDINGS:
        print(f"Findings at or above --fail-on {args.fail_on}: exit code {code}.", file=sys.stderr)
    print(run.index.resolve())
    return code


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - `python -m provkit.workbook.reports`
    parser = argparse.ArgumentParser(prog="provkit report", description=__doc__.splitlines()[0])
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_report(args)
    except ProvkitError as exc:
        print(f"provkit: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    finally:
        from provkit.workbook.session import _DEMO

        for demo in list(_DEMO.values()):
            demo.stop()
        _DEMO.clear()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
