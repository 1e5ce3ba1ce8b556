"""provkit: an investigation workbook for Microsoft Entra ID application provisioning.

The public names are re-exported here; the modules behind them are free to change shape.

    load_evidence(app, source="demo"|"graph"|"store", since="7d")  -> Loaded(evidence, fetch, resolved)
    cycles_table(evidence), cycle_summary(evidence)                 -> cycles and their summary
    run_checks(evidence)                                           -> findings with remedies
    explain(evidence, object)                                      -> one object's story
"""

from provkit.analysis.checks import Finding, explain, format_findings, run_checks
from provkit.analysis.cycles import cycles_table
from provkit.analysis.cycles import summary as cycle_summary
from provkit.data.auth import CLOUDS, Settings, sign_in
from provkit.data.evidence import Evidence
from provkit.data.graph import GraphClient
from provkit.data.store import Store
from provkit.data.tables import Tables, events_from_records, jobs_from_records
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
    ThrottledError,
)
from provkit.workbook.session import load_evidence

__version__ = "0.1.0"

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
