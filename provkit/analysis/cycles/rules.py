"""What the cycles rest on: the documented schedule and sizing facts, the thresholds of the shape rule,
the cycles table's columns, and which directory audits start, stop or reset cycles."""

from __future__ import annotations

from typing import Any

import pandas as pd

from provkit.data.tables import ACTIONS, STATUSES

# Documented facts (reference sections 3.2 and 3.4).
DEFAULT_INTERVAL = pd.Timedelta(minutes=40)
RETRY_OFFSETS = (pd.Timedelta(hours=6), pd.Timedelta(hours=12), pd.Timedelta(hours=24))
RETRY_EVERY = pd.Timedelta(hours=24)
DISABLE_AFTER = pd.Timedelta(days=28)
SIZING_MINUTES_PER_OBJECT = (0.01, 0.08)
# "tend to be faster (within 10 minutes)"; "in most cases ... completes in 30 minutes".
DOCUMENTED_INCREMENTAL = (pd.Timedelta(minutes=10), pd.Timedelta(minutes=30))

# A scheduled quarantine attempt and a known cycle closer than this are the same run.
ATTEMPT_TOLERANCE = pd.Timedelta(minutes=30)
# Shape rule: an initial cycle evaluates close to the largest number of distinct objects seen, and far more than
# the median incremental cycle.
SHAPE_NEAR_MAX = 0.9
SHAPE_SMALL = 0.5
SHAPE_TIMES_MEDIAN = 5.0

ACTION_COLUMNS = {name: f"n_{name}" for name in ACTIONS}
STATUS_COLUMNS = {name: f"n_{name}" for name in STATUSES}

CYCLE_COLUMNS: dict[str, str] = {
    "job_id": "str",
    "cycle_id": "str",
    "activity_id": "str",
    "start": "datetime64[ns, UTC]",
    "end": "datetime64[ns, UTC]",
    "duration": "timedelta64[ns]",
    "duration_is_lower_bound": "bool",
    "timing_source": "str",
    "kind": "str",
    "kind_reason": "str",
    "entries": "int64",
    **dict.fromkeys(ACTION_COLUMNS.values(), "int64"),
    "n_unknown_action": "int64",
    **dict.fromkeys(STATUS_COLUMNS.values(), "int64"),
    "n_unknown_status": "int64",
    "distinct_objects": "int64",
    "reset_before": "bool",
    "reset_reason": "str",
    "inferred": "bool",
    "running": "bool",
    "quarantine_attempt": "bool",
    "state": "str",
}
"""Columns of :func:`cycles_table`, in order (name -> dtype).

- ``start``/``end``/``duration``: from the job status when an execution matched (``timing_source`` "job-status"),
  else the first and last log entry ("log-span", ``duration_is_lower_bound`` True; no duration for a single
  entry). Inferred cycles have a start from the interval ("interval") or the quarantine retry schedule
  ("retry-schedule") and no end.
- ``kind``: initial, incremental or unknown; ``kind_reason`` names the rule that decided.
- ``entries`` and the ``n_*`` counts: log entries by action and by status; values outside the documented
  enums are counted in ``n_unknown_action`` / ``n_unknown_status`` so the counts always add up to ``entries``.
- ``distinct_objects``: distinct source objects (``sourceIdentity.id``) evaluated.
- ``reset_before``/``reset_reason``: a watermark reset (restart, mapping-or-scope; attribute-mapping and
  scoping from older audit names) recorded in the
  directory audits between the previous cycle's start and this one's.
- ``inferred``: the cycle left no log entries (known from a snapshot, the interval or the retry schedule).
- ``running``: still running at the latest snapshot (its end is the last entry so far).
- ``quarantine_attempt``: started while the job was quarantined (a retry on the documented schedule).
- ``state``: the execution state from the job status (Succeeded, Failed, EntryLevelErrors) when known.
"""

# Directory audit activity -> (kind, reset reason). The documented Account Provisioning names
# (reference-audit-activities.md, reference 1.8) first; the older names after them are inference (kept so
# audits saved by earlier provkit versions still read). Per-object audits (Export, Import, Synchronization rule
# action, Process escrow, User Provisioning, Other) and settings updates are not cycle events.
_AUDIT_KINDS: dict[str, tuple[str, str]] = {
    "enable/restart provisioning configuration": ("reset", "restart"),
    "update attribute mappings or scope": ("reset", "mapping-or-scope"),
    "enable/start provisioning configuration": ("start", ""),
    "disable/pause provisioning configuration": ("pause", ""),
    "quarantine": ("quarantine", ""),
    "restart synchronization job": ("reset", "restart"),
    "restart provisioning": ("reset", "restart"),
    "update attribute mappings": ("reset", "attribute-mapping"),
    "update scoping filter": ("reset", "scoping"),
    "pause synchronization job": ("pause", ""),
    "disable synchronization job": ("disable", ""),
    "start synchronization job": ("start", ""),
}


def audit_kind(record: dict[str, Any], activity: str) -> tuple[str, str]:
    """(kind, reason) of one audit. "Disable/pause provisioning configuration" is an admin's stop (pause) or,
    initiated by the provisioning service itself, the disable after four weeks in quarantine (inference: the
    docs give the name, not who initiates the automatic disable)."""
    kind, reason = _AUDIT_KINDS.get(activity.lower(), ("other", ""))
    if activity.lower() == "disable/pause provisioning configuration":
        by = record.get("initiatedBy")
        initiated: dict[str, Any] = by if isinstance(by, dict) else {}
        app: dict[str, Any] = initiated["app"] if isinstance(initiated.get("app"), dict) else {}
        if not initiated.get("user") and "provisioning service" in str(app.get("displayName") or "").lower():
            return "disable", ""
    return kind, reason


EXECUTION_PREFIXES = ("last_execution", "last_successful", "last_successful_with_exports")
