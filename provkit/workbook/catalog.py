"""The workbook's notebooks: their names, the one that goes deeper into each check section, where they live,
and how a provkit error reads to a notebook's reader (:func:`short_error`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["NOTEBOOKS", "SECTION_NOTEBOOKS", "notebook_for", "notebooks_dir", "short_error"]

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


def notebook_for(check: str) -> str | None:
    """The notebook (name without .ipynb) that goes deeper into a check id such as ``skipped.scoping-filter``."""
    return SECTION_NOTEBOOKS.get(check.split(".", 1)[0])


def notebooks_dir() -> Path:
    """The folder holding the workbook's notebooks (beside the provkit package in a checkout)."""
    return Path(__file__).resolve().parents[2] / "notebooks"


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
