"""Does the app's SCIM endpoint refuse the requests the Entra SCIM client sends?

Check: ``failures.scim-incompatible``: objects whose latest entry failed with HTTP 400 (``...BadRequest``, or a
reason text naming status 400) on a SCIM app, split by what was refused: a disable (PATCH ``active`` false), a
group member removal (PATCH ``Remove`` with a path filter on ``members``), a boolean sent as a string, or
another request. The advice depends on the kind of job (reference 4.3 and the SCIM compatibility page):

- a non-gallery SCIM job (``scim.`` job id, template ``scim``): the documented flag ``aadOptscim062020`` on the
  Tenant URL turns on spec-compliant PATCH (lower-case ops, boolean ``active``, member removal by value); check
  the endpoint with the SCIM validator. The flag does not apply to provisioning on demand.
- a ``customappsso`` job (the older non-gallery job): the compatibility page's upgrade is a new ``scim`` job
  (create it from the ``scim`` template with the same mappings); the flag does not change the old job.
- a gallery app: the endpoint is the vendor's; report it to them.

A 400 from a gallery app that is not SCIM (e.g. a Salesforce API error) is not this situation and is left to
``failures.by-code``.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from provkit.analysis.checks.catalog import http_status, lookup
from provkit.analysis.checks.facts import Facts, job_value, object_label
from provkit.analysis.checks.finding import LINKS, SECTIONS, Finding, evidence_rows

__all__ = ["CHECKS", "job_kind", "scim_refusals"]

CHECK = "failures.scim-incompatible"
SECTION = SECTIONS["scim"]
_SCIM_PREFIX = "systemforcrossdomainidentitymanagement"
_BOOL_STRING = re.compile(r"(?:expects?|expected) a boolean|string \\?\"(?:true|false)\\?\"", re.IGNORECASE)
_MEMBER_PATH = re.compile(r"members\[value eq", re.IGNORECASE)


def job_kind(facts: Facts) -> str:
    """'scim' (non-gallery SCIM job), 'customappsso' (the older non-gallery job), 'gallery' or 'unknown'."""
    job = facts.evidence.job or {}
    template = str(job.get("templateId") or job_value(facts.job, "template_id") or "").lower()
    job_id = str(job.get("id") or job_value(facts.job, "job_id") or "").lower()
    if template == "scim" or job_id.startswith("scim."):
        return "scim"
    if template == "customappsso" or job_id.startswith("customappsso."):
        return "customappsso"
    return "gallery" if template or job_id else "unknown"


def _is_scim_app(facts: Facts) -> bool:
    if job_kind(facts) in ("scim", "customappsso"):
        return True
    # Over every entry's distinct target types and error codes (the log summary's).
    logs = facts.logs
    return any(t.lower().startswith("urn:ietf:params:scim") for t in logs.target_types) or any(
        c.lower().startswith(_SCIM_PREFIX) for c in logs.error_codes
    )


def _refused(row: Any, properties: dict[str, list[tuple[str, str]]]) -> str:
    """What the endpoint refused, in words."""
    reason = str(row.error_reason or "")
    props = properties.get(row.id, [])
    names = {n.lower() for n, _ in props}
    if str(row.action).lower() == "disable" or any(
        n.lower() in ("active", "accountenabled") and str(v).lower() == "false" for n, v in props
    ):
        what = "disable (PATCH active false)"
    elif "members" in names or _MEMBER_PATH.search(reason):
        what = "group member removal (PATCH Remove with a members path filter)"
    else:
        what = f"{str(row.action or 'other').lower()} (another request)"
    if _BOOL_STRING.search(reason):
        what += ", with a boolean sent as a string"
    return what


def scim_refusals(facts: Facts) -> pd.DataFrame:
    """Objects whose latest entry is a 400 refusal from a SCIM endpoint: object, what was refused, code, time."""
    latest = facts.latest
    columns = ["object_id", "name", "type", "refused", "error_code", "time", "change_id"]
    if latest.empty:
        return pd.DataFrame(columns=columns)
    failed = latest[latest["status"] == "failure"]
    if failed.empty or not _is_scim_app(facts):
        return pd.DataFrame(columns=columns)
    codes = failed["error_code"].astype(object).fillna("")
    bad = codes.map({c: lookup(c or None).base == "BadRequest" for c in codes.unique()}).astype(bool)
    reasons = failed["error_reason"].astype(object).fillna("")
    said = reasons.map({r: http_status(r) == 400 for r in reasons.unique()}).astype(bool)
    refused = failed[(bad | said).to_numpy()]
    if refused.empty:
        return pd.DataFrame(columns=columns)
    props = facts.evidence.tables.properties
    by_event: dict[str, list[tuple[str, str]]] = {}
    if not props.empty:
        mine = props[props["event_id"].isin(set(refused["id"]))]
        for event_id, name, new in zip(mine["event_id"], mine["name"], mine["new_value"], strict=True):
            by_event.setdefault(event_id, []).append((str(name), str(new)))
    rows = []
    for row in refused.itertuples(index=False):
        rows.append(
            {
                "object_id": row.source_id,
                "name": object_label(row),
                "type": row.source_type,
                "refused": _refused(row, by_event),
                "error_code": row.error_code,
                "time": row.activity_time,
                "change_id": row.change_id,
            }
        )
    return pd.DataFrame(rows, columns=columns).sort_values(["refused", "name"], kind="stable")


ADVICE = {
    "scim": "This is a non-gallery SCIM job: append the documented feature flag aadOptscim062020 to the Tenant URL "
    "(e.g. https://scim.example.com/scim?aadOptscim062020) to get spec-compliant PATCH (lower-case ops, a boolean "
    "active, member removal by value), Test Connection, save, and restart; or make the endpoint accept the "
    "Entra SCIM client's requests. Check the endpoint with the SCIM validator. The flag does not apply to "
    "provisioning on demand.",
    "customappsso": "This is an older customappsso job, which the PATCH flag does not change: create a new job "
    "from the 'scim' template (POST .../synchronization/jobs with templateId 'scim'), copy the mappings, and "
    "remove the old job, as the SCIM compatibility page describes; then check the endpoint with the SCIM "
    "validator.",
    "gallery": "This is a gallery app: its SCIM endpoint belongs to the vendor. Send them the failing request "
    "and response from the log entries; nothing in the provisioning configuration changes the PATCH shape.",
    "unknown": "If this is a non-gallery SCIM app, append the feature flag aadOptscim062020 to the Tenant URL "
    "(spec-compliant PATCH); an older customappsso job needs a new 'scim' job instead; a gallery app's endpoint "
    "is the vendor's to fix.",
}


def scim_incompatible(facts: Facts) -> list[Finding]:
    table = scim_refusals(facts)
    if table.empty:
        return []
    kinds = table["refused"].str.split(",", n=1).str[0].value_counts()
    parts = []
    for what, n in kinds.items():
        noun, rest = what.split(" (", 1)
        parts.append(f"{n:,} {noun}{'s' if n != 1 else ''} ({rest}")
    strings = int(table["refused"].str.contains("boolean sent as a string", regex=False).sum())
    title = f"The SCIM endpoint refuses requests with HTTP 400 for {len(table):,} objects: " + "; ".join(
        parts
    )
    if strings:
        title += f" ({strings:,} with a boolean sent as a string)"
    kind = job_kind(facts)
    listed, omitted = evidence_rows(table)
    return [
        Finding(
            check=CHECK,
            section=SECTION,
            severity="error",
            title=title,
            evidence=listed,
            omitted=omitted,
            count=len(table),
            why="The Entra SCIM client's default PATCH ('Replace' in capitals, active as the string \"False\", "
            "member removal through a path filter) is not what every SCIM 2.0 endpoint accepts; each refused "
            "disable leaves an account active in the app, and each refused removal leaves a member in a group.",
            remedy=ADVICE[kind],
            links=[LINKS["scim-compatibility"], LINKS["scim-validator"], LINKS["scim"]],
        )
    ]


CHECKS = (scim_incompatible,)
