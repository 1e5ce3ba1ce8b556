"""provkit: an investigation workbook for Microsoft Entra ID application provisioning.

The package is built in layers; each imports only the layers below it (``lint-imports`` checks this in
``make test``):

    provkit.cli        the ``provkit`` command and its subcommands
    provkit.workbook   what people look at: notebook helpers, charts, reports, postmortems
    provkit.analysis   from evidence to answers: cycles, sync scope, trends, checks and findings
    provkit.data       getting and keeping evidence: sign-in, Graph, sources, tables, store, fetch, import
    provkit.errors, provkit.window, provkit.formatting   the vocabulary every layer shares

The simulated tenant (``provkit.sim``) stands apart: the product never imports it; the tests, the benchmarks
and the ``emulator`` and ``demo`` commands start it.

The public names are re-exported here, loaded on first use so that ``import provkit`` stays cheap:

    load_evidence(app, source="demo"|"graph"|"store", since="7d")  -> Loaded(evidence, fetch, resolved)
    cycles_table(evidence), cycle_summary(evidence)                 -> cycles and their summary
    run_checks(evidence)                                           -> findings with remedies
    explain(evidence, object)                                      -> one object's story
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from provkit._version import __version__
from provkit.errors import (
    AmbiguousAppError,
    CloudNotSupportedError,
    ConfigError,
    GraphError,
    GraphUnavailableError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    ProvkitError,
    ReadOnlyError,
    SignInError,
    StoreError,
    ThrottledError,
)

# name -> (module, attribute): imported when first asked for. The command line and the data layer do not pay
# for pandas-heavy analysis or plotly when they do not use them (a fetch starts about a second sooner).
_LAZY = {
    "CLOUDS": ("provkit.data.auth", "CLOUDS"),
    "Settings": ("provkit.data.auth", "Settings"),
    "sign_in": ("provkit.data.auth", "sign_in"),
    "Finding": ("provkit.analysis.checks", "Finding"),
    "explain": ("provkit.analysis.checks", "explain"),
    "format_findings": ("provkit.analysis.checks", "format_findings"),
    "run_checks": ("provkit.analysis.checks", "run_checks"),
    "cycles_table": ("provkit.analysis.cycles", "cycles_table"),
    "cycle_summary": ("provkit.analysis.cycles", "summary"),
    "Evidence": ("provkit.data.evidence", "Evidence"),
    "GraphClient": ("provkit.data.graph", "GraphClient"),
    "Store": ("provkit.data.store", "Store"),
    "Tables": ("provkit.data.tables", "Tables"),
    "events_from_records": ("provkit.data.tables", "events_from_records"),
    "jobs_from_records": ("provkit.data.tables", "jobs_from_records"),
    "load_evidence": ("provkit.workbook.session", "load_evidence"),
}

if _TYPE_CHECKING:
    from provkit.analysis.checks import Finding, explain, format_findings, run_checks
    from provkit.analysis.cycles import cycles_table
    from provkit.analysis.cycles import summary as cycle_summary
    from provkit.data.auth import CLOUDS, Settings, sign_in
    from provkit.data.evidence import Evidence
    from provkit.data.graph import GraphClient
    from provkit.data.store import Store
    from provkit.data.tables import Tables, events_from_records, jobs_from_records
    from provkit.workbook.session import load_evidence


def __getattr__(name: str) -> _Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'provkit' has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CLOUDS",
    "AmbiguousAppError",
    "CloudNotSupportedError",
    "ConfigError",
    "Evidence",
    "Finding",
    "GraphClient",
    "GraphError",
    "GraphUnavailableError",
    "InputError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProvkitError",
    "ReadOnlyError",
    "Settings",
    "SignInError",
    "Store",
    "StoreError",
    "Tables",
    "ThrottledError",
    "__version__",
    "cycle_summary",
    "cycles_table",
    "events_from_records",
    "explain",
    "format_findings",
    "jobs_from_records",
    "load_evidence",
    "run_checks",
    "sign_in",
]
