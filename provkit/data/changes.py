"""The calls that reach beyond reading: validate the saved credentials, restart a job, provision on demand.

Read-only by default: each call takes ``allow_changes`` and, without it, sends nothing and returns a sentence
saying what it would have done. The Graph client comes from ``client``, a function called only once the call is
allowed, so a read-only caller never even signs in with write rights. The requests (the reference's endpoint
table, "restart", "validate credentials" and "provision on demand", from Microsoft Graph's synchronizationJob
pages):

- ``POST .../jobs/{jobId}/validateCredentials`` body ``{"useSavedCredentials": true}``: 204 when the saved
  credentials work. It changes nothing in the tenant, but it reaches the target app;
- ``POST .../jobs/{jobId}/restart`` body ``{"criteria": {"resetScope": "Watermark, Escrows, QuarantineState"}}``:
  204; the next cycle is an initial cycle;
- ``POST .../jobs/{jobId}/provisionOnDemand`` body ``{"parameters": [{"ruleId", "subjects"}]}`` (built and read
  by :mod:`provkit.data.ondemand`): it may create or change the object in the app.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from provkit.data.evidence import Evidence
from provkit.data.graph import GraphClient
from provkit.data.ondemand import format_on_demand, on_demand_request, read_on_demand
from provkit.errors import ConfigError

__all__ = [
    "RESTART_SCOPE",
    "ClientFactory",
    "credentials_validator",
    "job_path",
    "not_run",
    "provision_on_demand",
    "restart_job",
    "rule_id",
]

RESTART_SCOPE = "Watermark, Escrows, QuarantineState"

ClientFactory = Callable[[], GraphClient]
"""Builds the Graph client for one call; called only when the call is allowed (it may sign in)."""


def job_path(evidence: Evidence) -> str:
    """The Graph path of the app's provisioning job; a :class:`ConfigError` when the evidence knows no job."""
    job = evidence.job or {}
    if not job.get("id"):
        raise ConfigError(f"No provisioning job is known for {evidence.display_name}.")
    return f"/servicePrincipals/{evidence.service_principal_id}/synchronization/jobs/{job['id']}"


def not_run(what: str) -> str:
    """The sentence a call without ``allow_changes`` returns: what it would have done, and how to let it."""
    return f"Not run: this cell would {what}. Set allow_changes = True in the parameters cell to do it."


def credentials_validator(
    client: ClientFactory, evidence: Evidence, *, allow_changes: bool
) -> Callable[[], Any] | None:
    """The validateCredentials call for :func:`provkit.analysis.checks.run_checks`, or None without
    ``allow_changes`` (the notebook's ``validate_credentials``, the command's ``--validate-credentials``).

    The POST tests the saved credentials against the app: it changes nothing in the tenant, but it does reach
    the target, so it runs only when asked. Raises :class:`ConfigError` when the evidence knows no job.
    """
    if not allow_changes:
        return None
    path = job_path(evidence) + "/validateCredentials"
    graph = client()

    def validate() -> Any:
        return graph.post(path, json={"useSavedCredentials": True}, changes_tenant=False)

    return validate


def restart_job(client: ClientFactory, evidence: Evidence, *, allow_changes: bool) -> str:
    """Restart the job (clearing watermark, escrows and quarantine) when ``allow_changes``; say what happened.

    A restart makes the next cycle an initial cycle, which evaluates every object in scope again.
    """
    if not allow_changes:
        return not_run(f"restart {evidence.display_name}'s job (the next cycle would be an initial cycle)")
    path = job_path(evidence) + "/restart"
    client().post(path, json={"criteria": {"resetScope": RESTART_SCOPE}}, changes_tenant=True)
    return f"Restarted {evidence.display_name}'s job at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({RESTART_SCOPE})."


def provision_on_demand(
    client: ClientFactory,
    evidence: Evidence,
    object_id: str | None,
    *,
    allow_changes: bool,
    kind: str = "User",
    members: list[str] | tuple[str, ...] = (),
    name: str | None = None,
) -> str:
    """Provision one user, or one group with up to five members, on demand when ``allow_changes``; the
    service's answer with every step (:func:`provkit.data.ondemand.format_on_demand`).

    ``name`` is how the reader knows the object (default its id). Refuses, sending nothing, where the
    documentation says the job must be stopped first (OAuth apps) or the request is out of limits.
    """
    if not object_id:
        return "No object chosen."
    who = name or object_id
    groups = {
        str(a.get("principalId") or "").lower()
        for a in evidence.assignments
        if str(a.get("principalType") or "").lower() == "group"
    }
    try:
        body = on_demand_request(
            rule_id=rule_id(evidence),
            object_id=object_id,
            kind=kind,
            members=members,
            job=evidence.job,
            assigned_groups=groups if evidence.assignments else None,
            app=evidence.display_name,
        )
    except ConfigError as exc:
        return f"Not sent: {exc}"
    if not allow_changes:
        return not_run(f"provision {who} to {evidence.display_name} on demand (it may create or change it)")
    path = job_path(evidence) + "/provisionOnDemand"
    answer = client().post(path, json=body, changes_tenant=True) or {}
    # Either documented shape of the answer (provkit.data.ondemand says which pages document them), every step shown.
    text = format_on_demand(read_on_demand(answer))
    return text.replace("provisionOnDemand:", f"provisionOnDemand for {who}:", 1)


def rule_id(evidence: Evidence) -> str:
    """The id of the job's synchronization rule (the schema's first), which provisionOnDemand names."""
    rules = (evidence.schema or {}).get("synchronizationRules") or []
    if not rules or not rules[0].get("id"):
        raise ConfigError(
            f"The synchronization rule of {evidence.display_name}'s job is unknown (no schema in the evidence).",
            remedy="Fetch the app again from the tenant: the schema names the rule provisionOnDemand needs.",
        )
    return str(rules[0]["id"])
