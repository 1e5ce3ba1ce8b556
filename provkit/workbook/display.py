"""What the notebook cells display: the evidence's origin, the job's state, tables, findings, short errors.

:func:`setup` prepares a running notebook (provkit errors as a short message instead of a traceback; plotly
figures rendered by JupyterLab itself, no script from a CDN). HTML comes from :mod:`provkit.workbook.render`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import IPython.display
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from IPython import get_ipython

from provkit.analysis.checks import format_findings
from provkit.data.evidence import Evidence
from provkit.errors import ProvkitError
from provkit.workbook import charts
from provkit.workbook.catalog import short_error
from provkit.workbook.render import Rich, banner_html, findings_html, paragraphs_html
from provkit.workbook.session import Loaded, check_source
from provkit.workbook.verdicts import in_sections
from provkit.workbook.views import status_row, trend_gaps, trends_text

__all__ = [
    "setup",
    "short_error",
    "show_findings",
    "show_origin",
    "show_status",
    "show_table",
    "show_trends",
    "source_line",
]


def setup() -> None:
    """Prepare the running notebook: short messages for provkit errors, plotly output that also exports.

    Outside IPython (a plain script) this does nothing. The error still fails the cell (papermill and the
    report see it); only its display is shortened.
    """
    # JupyterLab (and VS Code) render the mimetype with the plotly.js they ship: nothing is loaded from a CDN,
    # so charts draw offline. Report pages draw the same JSON with a local copy (provkit.workbook.pages).
    pio.renderers.default = "plotly_mimetype"
    # Error reasons and skip-reason meanings are sentences: show them whole, not cut at 50 characters.
    pd.set_option("display.max_colwidth", 400)
    shell = get_ipython()
    if shell is None:
        return

    def handler(shell, etype, value, tb, tb_offset=None):  # noqa: ANN001 - IPython's signature
        lines = ["provkit could not do this:", short_error(value, in_notebook=True)]
        shell._showtraceback(etype, value, lines)
        return lines

    shell.set_custom_exc((ProvkitError,), handler)


def source_line(source: str | None, workspace: str | None = None) -> str:
    """One sentence saying which source the notebook reads, and why (the parameter or the environment); with
    ``workspace``, that the logs come from that Log Analytics workspace."""
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
    if workspace and chosen != "store":
        what += (
            f"; the provisioning logs from Log Analytics workspace {workspace}, queried with KQL "
            "(workspace in the parameters cell)"
        )
    return f"Source: {what} ({why})."


def show_origin(loaded: Loaded) -> None:
    """Display the banner saying which tenant and source the evidence came from, and how the app resolved."""
    text = loaded.origin()
    IPython.display.display(
        Rich(f"{text}\n{loaded.resolved}", banner_html(text) + paragraphs_html(loaded.resolved))
    )


def show_status(evidence: Evidence) -> None:
    """Display :func:`status_row` as a one-row table (the window is in the banner above it)."""
    row = status_row(evidence)
    row.pop("window", None)
    IPython.display.display(pd.DataFrame([row]).set_index("app"))


def show_table(frame: pd.DataFrame, *, empty: str) -> None:
    """Display ``frame``, or the sentence ``empty`` when it has no rows (a bare header row says nothing)."""
    IPython.display.display(frame if len(frame) else Rich(empty, paragraphs_html(empty)))


def show_findings(
    findings: Iterable,
    *,
    sections: Iterable[str] | None = None,
    deeper: bool = True,
    here: str | None = None,
) -> None:
    """Display findings (optionally only some sections) with links to the notebook that goes deeper (none to
    ``here``, the notebook being read)."""
    chosen = in_sections(findings, sections)
    IPython.display.display(Rich(format_findings(chosen), findings_html(chosen, deeper=deeper, here=here)))


def show_trends(loaded: Loaded, cycle_table: pd.DataFrame) -> None:
    """Display the trend charts the window holds enough for (initial-cycle durations over time, incremental
    p50/p90 by week, failures by code by day: from the workspace when the logs came from one), after a sentence
    saying what is missing for the others."""
    evidence = loaded.evidence
    gaps = trend_gaps(evidence, cycle_table)
    text = trends_text(evidence, gaps)
    IPython.display.display(Rich(text, paragraphs_html(text)))
    figures: dict[str, go.Figure] = {}
    if gaps["initial"] is None:
        figures["initial"] = charts.initial_durations(cycle_table)
    if gaps["weekly"] is None:
        figures["weekly"] = charts.incremental_by_week(cycle_table)
    if gaps["failures"] is None:
        figures["failures"] = charts.failures_by_day(loaded.failures_by_day())
    for figure in figures.values():
        figure.show()
