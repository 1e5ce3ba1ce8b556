"""Which provisioning scope is the app on, and did a change of it take effect?

Checks:
- ``scope.sync-all`` (info): the scope is "Sync all users and groups", with the log evidence that shows it, or it
  is unknown although there are log entries (Graph does not return the setting, reference 1.8), with what would
  settle it. Nothing under "Sync only assigned" (``skipped.not-assigned`` already says so) or without logs.
- ``scope.switch-needs-restart`` (warning): an audit shows the scope switched to "Sync only assigned"
  (activity "Update provisioning setting or credentials" naming ``SyncAll`` false) and no restart followed. The
  known-issues page: after changing the scope from Sync All to Sync Assigned, restart so the change takes effect.
  When the logs after the switch still show unassigned objects provisioned, the finding says so.

inference: the audit's modified property for the scope is read as ``SyncAll`` (the secret's documented key) with
the new value "False" (any case, quoted or not); the documentation names the activity only.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from provkit.analysis.checks.facts import Facts, as_time
from provkit.analysis.checks.finding import LINKS, SECTIONS, Finding
from provkit.analysis.columns import rows_where
from provkit.analysis.syncscope import infer_sync_scope
from provkit.formatting import format_time

__all__ = ["CHECKS", "scope_switches"]

SECTION = SECTIONS["scope"]
SETTINGS = "update provisioning setting or credentials"
RESTARTS = ("enable/restart provisioning configuration",)


def _value(text: Any) -> str:
    if text is None:
        return ""
    value = str(text).strip()
    try:
        loaded = json.loads(value)
        value = str(loaded) if not isinstance(loaded, str) else loaded
    except ValueError:
        pass
    return value.strip().strip('"').lower()


def _sync_all_change(audit: dict[str, Any]) -> str | None:
    """'false' or 'true' when the audit changes the SyncAll setting, else None."""
    for resource in audit.get("targetResources") or []:
        for prop in (resource or {}).get("modifiedProperties") or []:
            if str((prop or {}).get("displayName") or "").replace(" ", "").lower() == "syncall":
                return _value(prop.get("newValue"))
    for item in audit.get("additionalDetails") or []:
        if str((item or {}).get("key") or "").replace(" ", "").lower() == "syncall":
            return _value(item.get("value"))
    return None


def scope_switches(audits: list[dict[str, Any]]) -> list[tuple[pd.Timestamp, str, bool]]:
    """(time, new SyncAll value, restarted after it) for each scope change in the audits, oldest first."""
    changes, restarts = [], []
    for audit in audits:
        if not isinstance(audit, dict):
            continue
        activity = str(audit.get("activityDisplayName") or "").lower()
        when = as_time(audit.get("activityDateTime"))
        if when is None:
            continue
        if activity in RESTARTS:
            restarts.append(when)
        elif activity == SETTINGS:
            value = _sync_all_change(audit)
            if value in ("true", "false"):
                changes.append((when, value))
    changes.sort()
    return [(when, value, any(r > when for r in restarts)) for when, value in changes]


def sync_all(facts: Facts) -> list[Finding]:
    scope = facts.scope
    if scope.value == "assigned" or (scope.value != "all" and not facts.logs.entries):
        return []  # under "assigned" skipped.not-assigned says it; with no logs there is nothing to read
    if scope.value == "all":
        title = f"Scope inferred as 'Sync all users and groups': {scope.because}"
        why = (
            "Graph does not return the scope setting; the logs show it. Under 'Sync all' every user and group "
            "in the directory is evaluated; out-of-scope skips (disabled accounts, scoping filters) are expected."
        )
        remedy = (
            "Nothing, if every user should get the app. To limit it, switch to 'Sync only assigned users and "
            "groups' and restart provisioning (the known issue: the switch takes effect only after a restart)."
        )
    else:
        title = "Scope unknown: Graph does not return it and these logs do not settle it"
        why = (
            "The scope is read from what the service did: an unassigned object provisioned means 'Sync all', an "
            "active unassigned object skipped as not assigned means 'Sync only assigned'. Neither is in the logs."
        )
        remedy = (
            "Look at Provisioning > Settings > Scope in the admin centre, or fetch a longer window; findings "
            "about skipped objects are worded for both settings until then."
        )
    return [
        Finding(
            check="scope.sync-all",
            section=SECTION,
            severity="info",
            title=title,
            evidence=[{"field": "scope", "value": scope.value, "because": scope.because or None}],
            why=why,
            remedy=remedy,
            links=[LINKS["no-users"], LINKS["known-issues"]],
        )
    ]


def switch_needs_restart(facts: Facts) -> list[Finding]:
    switches = [s for s in scope_switches(facts.evidence.audits) if s[1] == "false"]
    if not switches:
        return []
    when, _value_, restarted = switches[-1]
    if restarted:
        return []
    events = facts.events
    after = (
        rows_where(events, (events["activity_time"] > when).to_numpy(dtype=bool))
        if not events.empty
        else events
    )
    still = infer_sync_scope(after, None, None) if not after.empty else None
    title = f"The scope was switched to 'Sync only assigned' on {format_time(when)} and provisioning was not restarted"
    evidence: list[dict[str, Any]] = [{"time": when, "change": "SyncAll -> False", "restart_after": False}]
    if still is not None and still.value == "all":
        title += ": the logs since still show 'Sync all' at work"
        evidence.append(
            {"time": None, "change": "logs since the switch", "restart_after": None, "note": still.because}
        )
    return [
        Finding(
            check="scope.switch-needs-restart",
            section=SECTION,
            severity="warning",
            title=title,
            evidence=evidence,
            why="A known issue: after changing the scope from 'Sync All' to 'Sync Assigned', the change takes "
            "effect only after a restart; until then unassigned users keep being provisioned.",
            remedy="Restart provisioning (Provisioning > Restart provisioning, or POST .../jobs/{id}/restart). "
            "The restart runs an initial cycle; users no longer in scope are then disabled in the app (unless "
            "SkipOutOfScopeDeletions is set), so review who is assigned first.",
            links=[LINKS["known-issues"], LINKS["no-users"]],
        )
    ]


CHECKS = (sync_all, switch_needs_restart)
