"""The apps of the simulated tenant, one per troubleshooting scenario.

Each scenario is an app (a service principal with one synchronization job) whose configuration and timeline of
control events reproduce one situation from the troubleshooting guide. Times are offsets before the tenant's
``now``; a scenario's events that would fall before its own first cycle are dropped, so small ``--days`` values
still give a coherent story.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

H = timedelta(hours=1)
D = timedelta(days=1)


@dataclass(frozen=True)
class ScopingClause:
    attribute: str
    operator: str  # API operator names: EQUALS, NOT EQUALS, IS NOT NULL, ...
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Control:
    """A control event in an app's timeline: ``before`` now, or ``after_origin`` of the job's first cycle."""

    kind: str  # reset | credential-failure | mapping-breaks | pause | resume | disable | unassign | scope-to-assigned
    before: timedelta | None = None
    reason: str = ""  # for resets: restart, attribute-mapping, scoping; for unassign: the group's name
    actor: object = None  # who did it, for the audit: None for the scenario's admin, else the API caller


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str  # gallery app the service principal is named after
    template_id: str
    job_prefix: str
    target_user_object: str
    scope: str  # "assigned" or "all"
    groups: tuple[str, ...] = ()  # assigned groups (by display name)
    provision_groups: bool = False
    matching_attribute: str = "userPrincipalName"
    matching_target: str = "userName"
    group_matching_attribute: str = "displayName"
    required_attributes: tuple[tuple[str, str], ...] = ()  # (source, target) that the target requires
    scoping: tuple[ScopingClause, ...] = ()
    scoping_group_name: str = ""
    minutes_per_object: float = 0.03  # within the documented 0.01-0.08
    start_before: timedelta | None = None  # first cycle this long before now (default: window start)
    started_fraction: float | None = None  # initial cycle running: share done at now
    controls: tuple[Control, ...] = ()
    direct_users: int = 5
    connector: str = ""  # prefix of connector error codes ("" for SCIM apps)
    problems: tuple[str, ...] = field(default=())  # extra subjects: nested-only, disabled, broken, ...
    leavers_per_mille: int = 15  # share of incremental changes that are a user leaving the app
    delete_threshold: int = 500  # the job setting QuarantineTooManyDeletesThreshold
    created_only: bool = False  # the job was created and never started (the documented brand-new state)


SCIM_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def gallery(name: str, app: str, connector: str, *, template_id: str = "", **rest: Any) -> Scenario:
    """The scenario of a gallery app: job ids ``<connector>OutDelta.<hex>``, connector error codes prefixed with
    ``connector``, the template id ``connector`` in lower case unless named; ``rest`` as :class:`Scenario`."""
    rest.setdefault("target_user_object", "User")
    rest.setdefault("scope", "assigned")
    return Scenario(
        name=name,
        app=app,
        template_id=template_id or connector.lower(),
        job_prefix=f"{connector}OutDelta",
        connector=connector,
        **rest,
    )


def scim_app(name: str, app: str, **rest: Any) -> Scenario:
    """The scenario of a non-gallery SCIM app: template and job prefix ``scim``, the SCIM enterprise user as
    target, no connector error prefix; ``rest`` as :class:`Scenario`."""
    rest.setdefault("scope", "assigned")
    return Scenario(
        name=name, app=app, template_id="scim", job_prefix="scim", target_user_object=SCIM_USER, **rest
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        gallery(
            "healthy",
            "Salesforce",
            "Salesforce",
            groups=("Marketing", "Finance"),
            matching_target="Username",
            minutes_per_object=0.02,
            controls=(Control("reset", before=3 * D, reason="attribute-mapping"),),
        ),
        gallery(
            "initial-cycle-running",
            "ServiceNow",
            "ServiceNow",
            target_user_object="sys_user",
            scope="all",
            matching_target="user_name",
            minutes_per_object=0.05,
            started_fraction=0.35,
        ),
        scim_app(
            "bad-credentials",
            "Contoso SCIM App",
            groups=("Engineering",),
            controls=(Control("credential-failure", before=40 * H),),
        ),
        gallery(
            "skipped-users",
            "Zendesk",
            "Zendesk",
            groups=("Support", "Support Escalations"),
            provision_groups=True,
            matching_attribute="mail",
            matching_target="email",
            group_matching_attribute="mail",
            required_attributes=(("employeeId", "external_id"),),
            scoping=(
                ScopingClause("employeeType", "EQUALS", ("Employee",)),
                ScopingClause("department", "IS NOT NULL"),
            ),
            scoping_group_name="Employees with a department",
            minutes_per_object=0.04,
            controls=(Control("reset", before=36 * H, reason="scoping"),),
            problems=("nested-only", "disabled", "broken", "scope-fail", "conflict", "duplicate"),
        ),
        gallery(
            "escrow-quarantine",
            "Dropbox Business",
            "Dropbox",
            template_id="dropboxforbusiness",
            scope="all",
            matching_target="email",
            minutes_per_object=0.02,
            controls=(Control("mapping-breaks", before=30 * H, reason="attribute-mapping"),),
        ),
        gallery(
            "paused",
            "Box",
            "Box",
            groups=("Operations", "Legal"),
            controls=(
                Control("reset", before=4 * D, reason="restart"),
                Control("pause", before=20 * H),
            ),
        ),
        gallery(
            "disabled",
            "Atlassian Cloud",
            "Atlassian",
            target_user_object=SCIM_USER,
            groups=("Engineering",),
            minutes_per_object=0.025,
            start_before=33 * D,
            controls=(Control("credential-failure", before=30 * D),),
        ),
        # A non-gallery SCIM app whose endpoint refuses the Entra SCIM client's PATCH shapes: disables ("Replace"
        # with active "False" as a string) and group member removals answer 400.
        scim_app(
            "scim-patch-incompatible",
            "Fabrikam SCIM App",
            groups=("Operations",),
            provision_groups=True,
            problems=("scim-patch",),
            leavers_per_mille=120,
        ),
        # An admin unassigns a whole group; the next cycle would disable more users than the deletion threshold
        # allows, so the deletions are staged and the job is quarantined (TooManyDeletes).
        gallery(
            "deletion-threshold",
            "Zoom",
            "Zoom",
            groups=("Finance", "Human Resources"),
            minutes_per_object=0.02,
            controls=(Control("unassign", before=14 * H, reason="Finance"),),
            delete_threshold=10,
        ),
        # Managers and group members that are not in scope when the user or group is exported; some of the
        # managers come into scope later, which the service does not notice until a restart.
        gallery(
            "manager-references",
            "Asana",
            "Asana",
            target_user_object=SCIM_USER,
            groups=("Engineering", "Legal"),
            provision_groups=True,
            problems=("manager-references",),
        ),
        # "Sync all users and groups", and an admin who switched it to "Sync only assigned" without the restart
        # the known issue asks for: the logs keep showing unassigned users provisioned.
        gallery(
            "sync-all",
            "Google Workspace",
            "GoogleApps",
            template_id="gsuite",
            scope="all",
            matching_target="primaryEmail",
            minutes_per_object=0.015,
            controls=(Control("scope-to-assigned", before=30 * H),),
        ),
        # Leavers: soft deletes (disable), hard deletes days later (delete), unassigned users later deleted in
        # Entra ID (never deleted in the app).
        gallery(
            "deprovisioning",
            "Miro",
            "Miro",
            target_user_object=SCIM_USER,
            groups=("Marketing",),
            problems=("deprovisioning-stories",),
            leavers_per_mille=40,
        ),
        # One of the assigned groups is a Microsoft 365 group that is not security-enabled: its members are not
        # effectively entitled.
        gallery(
            "group-not-security-enabled",
            "Adobe Identity Management",
            "Adobe",
            template_id="adobeidentitymanagement",
            groups=("Legal", "Design Guild"),
        ),
        # A job created and never started: the documented brand-new state (cross-tenant guide, step 8).
        gallery("just-created", "Cisco Webex", "CiscoWebex", groups=("Sales",), created_only=True),
    )
}

DEFAULT_SCENARIOS = tuple(SCENARIOS)

# Service principals without provisioning: SSO-only apps (two share a name, for ambiguity) and the tools' own.
SSO_ONLY_APPS = ("Slack", "Slack", "Microsoft Teams Rooms", "GitHub Enterprise Cloud")
