"""The simulated Entra tenant: directory, apps with their jobs, and their provisioning history.

``Tenant(seed=..., users=..., days=..., now=...)`` is deterministic: the same arguments give the same answers.
The server (:mod:`provkit.sim.server`) turns its methods into Graph responses; nothing here knows about HTTP.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from provkit.sim import ids
from provkit.sim.apps import LEAVERS, App, clause_passes, credential_error
from provkit.sim.directory import (
    GROUP_NAMES,
    NOT_SECURITY_ENABLED,
    Directory,
    Users,
)
from provkit.sim.entries import render_entry
from provkit.sim.history import (
    DAY,
    MINUTE,
    Cycle,
    Subject,
)
from provkit.sim.membership import Membership
from provkit.sim.scenarios import DEFAULT_SCENARIOS, SCENARIOS, SSO_ONLY_APPS, Control
from provkit.sim.schema import schema_json
from provkit.sim.timefmt import NEVER, format_seconds, format_ticks, to_ticks

# Re-exported: the apps, their subjects and the directory were defined here before they had modules of their own.
__all__ = [
    "GROUP_NAMES",
    "LEAVERS",
    "NOT_SECURITY_ENABLED",
    "App",
    "Directory",
    "Subject",
    "Tenant",
    "clause_passes",
    "credential_error",
]

DISABLED_INTERVAL = "P10675199DT2H48M5.4775807S"

_EXECUTION_COUNTERS = (
    "countEntitled",
    "countEntitledForProvisioning",
    "countEscrowed",
    "countEscrowedRaw",
    "countExported",
    "countExports",
    "countImported",
    "countImportedDeltas",
    "countImportedReferenceDeltas",
)


@dataclass
class Tenant:
    """A deterministic simulated tenant. Times are ticks (100 ns) since the epoch, UTC."""

    seed: int = 7
    users_count: int = 6000
    days: int = 7
    now: datetime | None = None
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    domain: str = "contoso.com"
    tenant_name: str = "Contoso"
    premium: bool = True  # False: no Entra ID P1/P2, the reporting endpoints answer the licence 403
    # True: /auditLogs/provisioning refuses (400) operators and orderings its v1.0 page does not document,
    # and /auditLogs/directoryAudits refuses "or"
    documented_queries_only: bool = False
    # Late entries: this share of log entries is written ``late_minutes`` after its activityDateTime (the real
    # service logs with a delay), so a query made before then does not see them. 0 by default.
    late_share: float = 0.0
    late_minutes: float = 0.0
    # How long a groups/delta token stays valid: seven days for directory objects (delta-query-overview.md,
    # "Token duration"); older tokens answer syncStateNotFound.
    delta_token_days: float = 7.0
    # False: GET /groups/delta answers 501 NotImplemented, as the delta-query overview shows for what it does not
    # support (a tenant or proxy where the delta query cannot be used)
    group_delta_offered: bool = True
    apps: list[App] = field(init=False)

    def __post_init__(self) -> None:
        if self.now is None:
            self.now = datetime.now(UTC).replace(microsecond=0)
        if self.now.tzinfo is None:
            self.now = self.now.replace(tzinfo=UTC)
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
        if self.users_count < 50:
            raise ValueError("the simulated tenant needs at least 50 users")
        if self.days < 1:
            raise ValueError("--days must be at least 1")
        self.codec = ids.IdCodec(self.seed)
        self.tenant_id = self.codec.encode(*ids.TENANT_ID)
        self.start_now_ticks = to_ticks(self.now)
        self.now_ticks = self.start_now_ticks
        self.window_start = self.now_ticks - self.days * DAY
        self.users = Users(self.seed, self.users_count, self.domain, self.codec, self.now)
        self.directory = Directory(self.users, self.codec, self.domain)
        # joiners and leavers after the start (the apps' history keeps the membership at the start)
        self.membership = Membership(self.directory, self.seed, self.start_now_ticks)
        self.apps = [App(self, i, SCENARIOS[name]) for i, name in enumerate(self.scenarios)]
        self.sso_apps = [
            (len(self.apps) + k, name) for k, name in enumerate(SSO_ONLY_APPS)
        ]  # (index, display name)
        self._lock = threading.Lock()

    # ---- late entries --------------------------------------------------------------------------------------
    def written(self, ticks: int, app: int, cycle: int, index: int) -> bool:
        """Whether the entry at ``ticks`` (app index, cycle number, entry index) has been written by now: always,
        unless it is one of the ``late_share`` entries, which appear ``late_minutes`` after their time."""
        if not self.late_share or ticks <= self.now_ticks - int(self.late_minutes * MINUTE):
            return True
        draw = ((app * 1_000_003 + cycle) * 1_000_033 + index) * 2_654_435_761 + self.seed
        return (draw % 1_000_000) / 1_000_000 >= self.late_share

    # ---- clock ---------------------------------------------------------------------------------------------
    def advance(self, minutes: float) -> None:
        """Move the simulated clock forward; later cycles become visible."""
        with self._lock:
            self.now_ticks += int(minutes * MINUTE)

    @property
    def now_text(self) -> str:
        return format_ticks(self.now_ticks)

    # ---- look-ups ------------------------------------------------------------------------------------------
    def app_by_sp(self, sp_id: str) -> App | None:
        for app in self.apps:
            if app.sp_id == sp_id:
                return app
        return None

    def app_by_app_id(self, app_id: str) -> App | None:
        for app in self.apps:
            if app.app_id == app_id:
                return app
        return None

    # ---- Graph JSON: directory -----------------------------------------------------------------------------
    def service_principals(self) -> list[dict]:
        out = [self._sp_json(a.index, a.sp_id, a.app_id, a.display_name, True) for a in self.apps]
        for index, name in self.sso_apps:
            sp_id = self.codec.encode(ids.SERVICE_PRINCIPAL, index)
            app_id = self.codec.encode(ids.APPLICATION, index)
            out.append(self._sp_json(index, sp_id, app_id, name, False))
        return out

    def service_principal(self, sp_id: str) -> dict | None:
        for sp in self.service_principals():
            if sp["id"] == sp_id:
                return sp
        return None

    def _sp_json(self, index: int, sp_id: str, app_id: str, name: str, provisioning: bool) -> dict:
        tags = ["WindowsAzureActiveDirectoryIntegratedApp"]
        return {
            "id": sp_id,
            "appId": app_id,
            "displayName": name,
            "appDisplayName": name,
            "servicePrincipalType": "Application",
            "accountEnabled": True,
            "appOwnerOrganizationId": self.tenant_id,
            "preferredSingleSignOnMode": "saml",
            "tags": tags,
            "appRoles": [
                {
                    "id": self.codec.encode(ids.MISC, index, 1),
                    "displayName": "User",
                    "value": None,
                    "allowedMemberTypes": ["User"],
                    "isEnabled": True,
                    "description": "User",
                }
            ],
        }

    def app_role_assigned_to(self, app: App) -> list[dict]:
        out = []
        role_id = self.codec.encode(ids.MISC, app.index, 1)
        created = format_seconds(app.origin - DAY)
        gone = app.timeline().unassigned
        for g in app.assigned_groups:
            if g.display_name in gone:
                continue
            out.append(self._assignment(app, "Group", g.id, g.display_name, role_id, created, g.index))
        for u in app.direct_users:
            user = self.users.get(u)
            out.append(self._assignment(app, "User", user.id, user.display_name, role_id, created, 1000 + u))
        return out

    def _assignment(
        self, app: App, ptype: str, pid: str, pname: str, role: str, created: str, k: int
    ) -> dict:
        return {
            "id": self.codec.encode(ids.ASSIGNMENT, app.index, 0, k).replace("-", "")[:43],
            "appRoleId": role,
            "createdDateTime": created,
            "principalDisplayName": pname,
            "principalId": pid,
            "principalType": ptype,
            "resourceDisplayName": app.display_name,
            "resourceId": app.sp_id,
        }

    # ---- Graph JSON: jobs ----------------------------------------------------------------------------------
    def jobs(self, app: App) -> list[dict]:
        return [self.job(app)]

    def job(self, app: App) -> dict:
        """The job as GET .../synchronization/jobs/{id} returns it, with the documented quirks: steady-state
        times "0001-01-01T00:00:00Z" until reached, a not-yet-run lastExecution before the first run,
        troubleshootingUrl "" or null, an error code "None" on some apps' runs."""
        tl = app.timeline()
        now = self.now_ticks
        sc = app.scenario
        if sc.created_only:
            return self._created_job(app)
        done = [c for c in tl.cycles if c.end <= now]
        running = next((c for c in tl.cycles if c.start <= now < c.end), None)

        def execution(c: Cycle | None) -> dict | None:
            if c is None:
                return None
            return {
                "activityIdentifier": self.codec.encode(ids.ACTIVITY, app.index, c.no),
                "countEntitled": c.entries - c.failures if c.mode != "attempt" else 0,
                "countEntitledForProvisioning": c.entries - c.failures if c.mode != "attempt" else 0,
                # reference failures (manager, members) are escrows too, but not counted toward quarantine
                "countEscrowed": c.failures - c.reference_failures,
                "countEscrowedRaw": c.failures + c.reference_escrows,
                "countExported": c.exported,
                "countExports": c.exported + c.failures,
                "countImported": c.entries,
                "countImportedDeltas": c.entries if c.kind == "incremental" else 0,
                "countImportedReferenceDeltas": 0,
                "state": c.state,
                "error": (
                    {"code": c.error_code, "message": c.error_message, "tenantActionable": True}
                    if c.error_code
                    # documented "no error": code "None" with an empty message; null on other apps (both
                    # accepted by the reader; which one a healthy run shows is an inference)
                    else (
                        {"code": "None", "message": "", "tenantActionable": False} if app.index % 2 else None
                    )
                ),
                "timeBegan": format_ticks(c.start),
                "timeEnded": format_ticks(c.end),
            }

        last = done[-1] if done else None
        # The documented job "just after start": a lastExecution that has not happened yet.
        not_yet = {
            "activityIdentifier": None,
            **{k: 0 for k in _EXECUTION_COUNTERS},
            "state": "Failed",
            "timeBegan": NEVER,
            "timeEnded": NEVER,
            "error": {"code": "None", "message": "", "tenantActionable": False},
        }
        last_ok = next((c for c in reversed(done) if c.state == "Succeeded"), None)
        last_exports = next((c for c in reversed(done) if c.state == "Succeeded" and c.exported > 0), None)
        steady = [c for c in done if c.state == "Succeeded" and not c.failures]
        successive = 0
        for c in reversed(done):
            if c.state != "Failed":
                break
            successive += 1
        if tl.disabled_at is not None:
            code, sched_state, interval = "Paused", "Disabled", DISABLED_INTERVAL
        elif tl.paused_at is not None:
            code, sched_state, interval = "Paused", "Paused", "PT40M"
        elif tl.quarantine is not None:
            code, sched_state, interval = "Quarantine", "Active", "PT40M"
        elif not done:
            code, sched_state, interval = "NotRun", "Active", "PT40M"
        else:
            code, sched_state, interval = "Active", "Active", "PT40M"
        progress = []
        if running is not None and running.entries:
            total_units = max(1, math.ceil(running.entries / 100))
            step = 20 * MINUTE
            t = running.start + step
            while t <= now:
                done_units = min(total_units, (running.entries_before(t) * total_units) // running.entries)
                progress.append(
                    {
                        "completedUnits": done_units,
                        "totalUnits": total_units,
                        "units": "Pages",
                        "progressObservationDateTime": format_ticks(t),
                    }
                )
                t += step
            progress = progress[-12:]
        q = tl.quarantine
        # A stopped job keeps a quarantine block with empty dates, as the documented get example of a paused job
        # shows it (synchronization-synchronizationjob-get.md): not a quarantine, and read as none.
        leftover = {
            "currentBegan": "",
            "nextAttempt": "",
            "reason": "EncounteredBaseEscrowThreshold",
            "seriesBegan": "",
            "seriesCount": 1,
            "error": {"code": "None", "message": "", "tenantActionable": False},
        }
        user_key = f"User to {sc.target_user_object}"
        synced = sum(c.exported for c in done if c.kind == "initial")
        entry_counts = [{"key": user_key, "value": synced}]
        if sc.provision_groups:
            entry_counts.append({"key": "Group to Group", "value": len(app.assigned_groups)})
        return {
            "id": app.job_id,
            "templateId": sc.template_id,
            "schedule": {"expiration": None, "interval": interval, "state": sched_state},
            "status": {
                "code": code,
                "countSuccessiveCompleteFailures": successive,
                "escrowsPruned": False,
                "steadyStateFirstAchievedTime": format_ticks(steady[0].end) if steady else NEVER,
                "steadyStateLastAchievedTime": format_ticks(steady[-1].end) if steady else NEVER,
                # documented both ways: "" on a job just started, null on others
                "troubleshootingUrl": "" if app.index % 2 else None,
                "synchronizedEntryCountByType": entry_counts,
                "progress": progress,
                "lastExecution": execution(last) if last is not None else not_yet,
                "lastSuccessfulExecution": execution(last_ok),
                "lastSuccessfulExecutionWithExports": execution(last_exports),
                "quarantine": (
                    {
                        "currentBegan": format_ticks(q.current_began),
                        "nextAttempt": format_ticks(q.next_attempt),
                        "reason": q.reason,
                        "seriesBegan": format_ticks(q.series_began),
                        "seriesCount": q.series_count,
                        "error": {"code": q.error_code, "message": q.error_message, "tenantActionable": True},
                    }
                    if q is not None
                    else (leftover if tl.paused_at is not None else None)
                ),
            },
            "synchronizationJobSettings": [
                {"name": "QuarantineTooManyDeletesThreshold", "value": str(sc.delete_threshold)},
                {"name": "AzureIngestionAttributeOptimization", "value": "False"},
            ],
        }

    def _created_job(self, app: App) -> dict:
        """The documented job just created (cross-tenant guide, step 8): schedule Disabled, code Paused, every
        execution null, steady-state times 0001-01-01, no progress, no synchronized entries."""
        return {
            "id": app.job_id,
            "templateId": app.scenario.template_id,
            "schedule": {"expiration": None, "interval": "PT40M", "state": "Disabled"},
            "status": {
                "code": "Paused",
                "countSuccessiveCompleteFailures": 0,
                "escrowsPruned": False,
                "lastExecution": None,
                "lastSuccessfulExecution": None,
                "lastSuccessfulExecutionWithExports": None,
                "progress": [],
                "quarantine": None,
                "steadyStateFirstAchievedTime": NEVER,
                "steadyStateLastAchievedTime": NEVER,
                "synchronizedEntryCountByType": [],
                "troubleshootingUrl": None,
            },
            "synchronizationJobSettings": [
                {"name": "AzureIngestionAttributeOptimization", "value": "False"},
                {"name": "LookaheadQueryEnabled", "value": "False"},
            ],
        }

    def schema(self, app: App) -> dict:
        return schema_json(self, app)

    # ---- directory audits ----------------------------------------------------------------------------------
    def directory_audits(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for app in self.apps:
            for k, audit in enumerate(app.timeline().audits):
                out.append(
                    {
                        "id": f"Sync_{self.codec.encode(ids.AUDIT, app.index, k)}",
                        "category": "ProvisioningManagement",
                        "correlationId": self.codec.encode(ids.AUDIT, app.index, k, 1),
                        "result": "success",
                        "resultReason": audit.reason,
                        "activityDisplayName": audit.activity,
                        "activityDateTime": format_ticks(audit.time),
                        "loggedByService": "Account Provisioning",
                        "operationType": "Update" if audit.activity != "Quarantine" else "Quarantine",
                        "initiatedBy": self._audit_actor(audit.actor),
                        "targetResources": [
                            {
                                "id": app.sp_id,
                                "displayName": app.display_name,
                                "type": "ServicePrincipal",
                                "userPrincipalName": None,
                                "modifiedProperties": [
                                    {"displayName": k2, "oldValue": None, "newValue": json.dumps(v)}
                                    for k2, v in audit.details.items()
                                ],
                            }
                        ],
                        "additionalDetails": [
                            {"key": "JobId", "value": app.job_id},
                            {"key": "Reason", "value": audit.reason},
                        ],
                    }
                )
            out.extend(self._object_audits(app))
        out.sort(key=lambda a: a["activityDateTime"], reverse=True)
        return out

    def _audit_actor(self, actor: object) -> dict:
        """initiatedBy of an audit: the provisioning service, the API caller (an app-only caller is an app),
        or the scenario's admin working in the portal."""
        if actor == "service":
            return {
                "app": {
                    "appId": None,
                    "displayName": "Azure AD Provisioning Service",
                    "servicePrincipalId": None,
                    "servicePrincipalName": None,
                },
                "user": None,
            }
        if isinstance(actor, dict):
            return actor
        return {
            "user": {
                "id": self.users.get(0).id,
                "displayName": None,
                "userPrincipalName": f"admin@{self.domain}",
                "ipAddress": "203.0.113.24",
            },
            "app": None,
        }

    # Per-object audits rendered for the newest cycle of each app: enough to show they exist (a real app logs
    # one per exported object, thousands a day), few enough to keep the audit list cheap to serve.
    OBJECT_AUDITS_PER_APP = 12

    def _object_audits(self, app: App) -> list[dict]:
        """ "Synchronization rule action" and "Export" audits for the first objects exported in the app's newest
        cycle, shaped like the documented examples (reference 1.8): ids ``Sync_<correlationId>_<5 letters>_<n>``,
        the result reason naming the user and the target."""
        cycles = [c for c in app.timeline().cycles if c.end <= self.now_ticks and c.entries]
        if not cycles:
            return []
        cycle = cycles[-1]
        out: list[dict] = []
        for i in range(min(cycle.entries, 200)):
            if len(out) >= self.OBJECT_AUDITS_PER_APP:
                break
            entry = render_entry(app, cycle, i)
            action = entry["provisioningAction"]
            if entry["provisioningStatusInfo"]["status"] != "success" or action not in ("create", "update"):
                continue
            kind = entry["sourceIdentity"]["identityType"]
            name = entry["targetIdentity"]["displayName"] or entry["sourceIdentity"]["displayName"]
            verb = "created" if action == "create" else "updated"
            correlation = self.codec.encode(ids.AUDIT, app.index, 1 << 20, i)
            for n, (activity, reason) in enumerate(
                (
                    (
                        "Synchronization rule action",
                        f"{kind} '{name}' will be {verb} in {app.scenario.app} ({kind} is active and assigned "
                        f"in Azure Active Directory, but no matching {kind} was found in {app.scenario.app})"
                        if action == "create"
                        else f"{kind} '{name}' will be {verb} in {app.scenario.app}",
                    ),
                    ("Export", f"{kind} '{name}' was {verb} in {app.scenario.app}"),
                )
            ):
                letters = "".join(chr(ord("a") + (i * 7 + n * 3 + k) % 26) for k in range(5))
                out.append(
                    {
                        "id": f"Sync_{correlation}_{letters}_{i * 2 + n}",
                        "category": "ProvisioningManagement",
                        "correlationId": correlation,
                        "result": "success",
                        "resultReason": reason,
                        "activityDisplayName": activity,
                        "activityDateTime": entry["activityDateTime"],
                        "loggedByService": "Account Provisioning",
                        "operationType": "Update",
                        "initiatedBy": self._audit_actor("service"),
                        "targetResources": [
                            {
                                "id": app.sp_id,
                                "displayName": app.display_name,
                                "type": "ServicePrincipal",
                                "userPrincipalName": None,
                                "modifiedProperties": [],
                            },
                            {
                                "id": entry["sourceIdentity"]["id"],
                                "displayName": entry["sourceIdentity"]["displayName"],
                                "type": kind,
                                "userPrincipalName": None,
                                "modifiedProperties": [],
                            },
                        ],
                        "additionalDetails": [{"key": "JobId", "value": app.job_id}],
                    }
                )
        return out

    # ---- state-changing actions (POST) ---------------------------------------------------------------------
    def control(self, app: App, action: str, body: dict | None = None, actor: object = None) -> None:
        """start, pause or restart a job at the current simulated time; ``actor`` is the audit's initiatedBy."""
        now = self.now_ticks
        if action == "pause":
            app.controls.append((now, Control("pause", actor=actor)))
        elif action == "start":
            app.controls.append((now, Control("resume", actor=actor)))
        elif action == "restart":
            app.controls.append((now, Control("reset", reason="restart", actor=actor)))
        else:
            raise ValueError(action)
        app.invalidate()


__all__ = ["Tenant", "App", "Subject", "clause_passes"]
