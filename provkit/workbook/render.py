"""HTML for people, from the Jinja2 templates in ``provkit/workbook/templates/`` (autoescaped: a display name,
an error text or a finding's evidence can never inject markup into a notebook output or a report page).

- :func:`banner_html`: the strip that says where evidence came from (notebooks, report pages, the index);
- :func:`findings_html`: findings as a table with links to the notebook that goes deeper;
- :func:`paragraphs_html`: sentences as paragraphs; :class:`Rich`: an output that is HTML in Jupyter, text
  elsewhere;
- :func:`render`: any template by name (the report index, a chart, ...); :func:`template_source`: a template's
  text, for nbconvert, which renders the report page's template itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from provkit.workbook.catalog import notebook_for

__all__ = [
    "Rich",
    "banner_html",
    "findings_html",
    "paragraphs_html",
    "render",
    "template_source",
]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("provkit.workbook", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

SEVERITY_COLOURS = {"error": "#b42318", "warning": "#b54708", "info": "#475467"}
_ORIGIN_COLOURS = {"simulated": "#b54708", "live": "#175cd3", "stored": "#475467"}


def render(name: str, **context: Any) -> str:
    """The template ``name`` (e.g. ``index.html``) rendered with ``context``; values are escaped unless they
    are :class:`markupsafe.Markup` (HTML this module or pandas already built safely)."""
    return _ENV.get_template(name).render(**context)


def template_source(name: str) -> str:
    """The text of the template ``name``, as shipped in the package."""
    return resources.files("provkit.workbook").joinpath("templates", name).read_text(encoding="utf-8")


def _origin_kind(text: str) -> str:
    if "SIMULATED" in text:
        return "simulated"
    return "stored" if ("read offline" in text) else "live"


def banner_html(text: str) -> Markup:
    """The evidence banner as HTML: a coloured strip (amber for simulated data, blue for a live tenant, grey
    for a stored copy or an import)."""
    return Markup(render("banner.html", text=text, colour=_ORIGIN_COLOURS[_origin_kind(text)]))


def paragraphs_html(*texts: str) -> Markup:
    """Each text as an HTML paragraph."""
    return Markup(render("paragraphs.html", texts=texts))


def _finding_row(f: Any, rows: int) -> dict[str, Any]:
    evidence = None
    more = 0
    if f.evidence:
        frame = pd.DataFrame(f.evidence[:rows])
        more = len(f.evidence) - rows + f.omitted if len(f.evidence) > rows else f.omitted
        # pandas escapes the cells itself (to_html's escape=True).
        evidence = Markup(frame.to_html(index=False, na_rep="", border=0))
    return {
        "severity": f.severity,
        "colour": SEVERITY_COLOURS.get(f.severity, "#475467"),
        "check": f.check,
        "target": notebook_for(f.check),
        "title": f.title,
        "why": f.why,
        "remedy": f.remedy,
        "evidence": evidence,
        "more": more,
        "links": list(f.links),
    }


def findings_html(
    findings: Iterable[Any], *, deeper: bool = True, rows: int = 5, here: str | None = None
) -> Markup:
    """Findings as an HTML table (severity, check, link to the deeper notebook, title with details below).

    The table keeps to the width of the
    output area: columns have fixed shares, long words wrap, and the evidence inside *details* scrolls sideways
    on its own. ``here`` (the current notebook's name) leaves out links that would point to the notebook being
    read; at most ``rows`` rows of each finding's evidence are shown.
    """
    items = [_finding_row(f, rows) for f in findings]
    return Markup(render("findings.html", rows=items, deeper=deeper, here=here))


class Rich:
    """An object that shows as HTML in Jupyter and as text elsewhere."""

    def __init__(self, text: str, html_text: str) -> None:
        self.text, self.html_text = text, html_text

    def _repr_html_(self) -> str:
        return self.html_text

    def __repr__(self) -> str:
        return self.text
