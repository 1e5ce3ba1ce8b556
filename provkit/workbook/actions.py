"""The notebook cells that reach beyond reading, as thin wrappers over :mod:`provkit.data.changes`.

Each does nothing unless the notebook's flag is set (``validate_credentials`` for validateCredentials,
``allow_changes`` for a restart or a provisioning on demand) and says so; the client is built from the notebook's
:class:`~provkit.workbook.target.Target` only when the call is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provkit.data import changes
from provkit.data.evidence import Evidence
from provkit.workbook.target import Target
from provkit.workbook.views import object_name

__all__ = ["provision_on_demand", "restart_job", "validator"]


def validator(
    evidence: Evidence, validate_credentials: bool, target: Target | None = None
) -> Callable[[], Any] | None:
    """The validateCredentials call for ``run_checks``, or None when ``validate_credentials`` is False.

    The POST tests the saved credentials against the app (it changes nothing, but it does reach the target), so
    it runs only when the notebook's ``validate_credentials`` parameter is True.
    """
    where = target or Target()
    return changes.credentials_validator(
        lambda: where.change_client(allow_writes=False), evidence, allow_changes=validate_credentials
    )


def restart_job(evidence: Evidence, allow_changes: bool, target: Target | None = None) -> str:
    """Restart the job (clearing watermark, escrows and quarantine) when ``allow_changes``; say what happened.

    A restart makes the next cycle an initial cycle, which evaluates every object in scope again.
    """
    where = target or Target()
    return changes.restart_job(
        lambda: where.change_client(allow_writes=True), evidence, allow_changes=allow_changes
    )


def provision_on_demand(
    evidence: Evidence,
    object_id: str | None,
    allow_changes: bool,
    target: Target | None = None,
    *,
    kind: str = "User",
    members: list[str] | tuple[str, ...] = (),
) -> str:
    """Provision one user, or one group with up to five members, on demand when ``allow_changes``; the
    service's answer with every step, naming the object as the logs know it (``Name <upn>``). Refuses, sending
    nothing, where the documentation says the job must be stopped first (OAuth apps) or the request is out of
    limits."""
    where = target or Target()
    return changes.provision_on_demand(
        lambda: where.change_client(allow_writes=True),
        evidence,
        object_id,
        allow_changes=allow_changes,
        kind=kind,
        members=members,
        name=object_name(evidence, object_id) if object_id else None,
    )
