"""The apps of the simulated tenant, one per troubleshooting scenario.

Each scenario is an app (a service principal with one synchronization job) whose configuration and timeline of
control events reproduce one situation from the troubleshooting guide. Times are offsets before the tenant's
``now``; a scenario's events that would fall before its own first cycle are dropped, so small ``--days`` values
still give a coherent story.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

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

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="healthy",
            app="Salesforce",
            template_id="salesforce",
            job_prefix="SalesforceOutDelta",
            target_user_object="User",
            scope="assigned",
            groups=("Marketing", "Finance"),
            matching_target="Username",
            minutes_per_object=0.02,
            controls=(Control("reset", before=3 * D, reason="attribute-mapping"),),
            connector="Salesforce",
        ),
        Scenario(
            name="initial-cycle-running",
            app="ServiceNow",
            template_id="servicenow",
            job_prefix="ServiceNowOutDelta",
            target_user_object="sys_user",
            scope="all",
            matching_target="user_name",
            minutes_per_object=0.05,
            started_fraction=0.35,
            connector="ServiceNow",
        ),
        Scenario(
            name="bad-credentials",
            app="Contoso SCIM App",
            template_id="scim",
            job_prefix="scim",
            target_user_object=SCIM_USER,
            scope="assigned",
            groups=("Engineering",),
            minutes_per_object=0.03,
            controls=(Control("credential-failure", before=40 * H),),
        ),
        Scenario(
            name="skipped-users",
            app="Zendesk",
            template_id="zendesk",
            job_prefix="ZendeskOutDelta",
            target_user_object="User",
            scope="assigned",
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
            connector="Zendesk",
            problems=("nested-only", "disabled", "broken", "scope-fail", "conflict", "duplicate"),
        ),
        Scenario(
            name="escrow-quarantine",
            app="Dropbox Business",
            template_id="dropboxforbusiness",
            job_prefix="DropboxOutDelta",
            target_user_object="User",
            scope="all",
            matching_target="email",
            minutes_per_object=0.02,
            controls=(Control("mapping-breaks", before=30 * H, reason="attribute-mapping"),),
            connector="Dropbox",
        ),
        Scenario(
            name="paused",
            app="Box",
            template_id="box",
            job_prefix="BoxOutDelta",
            target_user_object="User",
            scope="assigned",
            groups=("Operations", "Legal"),
            minutes_per_object=0.03,
            controls=(
                Control("reset", before=4 * D, reason="restart"),
                Control("pause", before=20 * H),
            ),
            connector="Box",
        ),
        Scenario(
            name="disabled",
            app="Atlassian Cloud",
            template_id="atlassian",
            job_prefix="AtlassianOutDelta",
            target_user_object=SCIM_USER,
            scope="assigned",
            groups=("Engineering",),
            minutes_per_object=0.025,
            start_before=33 * D,
            controls=(Control("credential-failure", before=30 * D),),
            connector="Atlassian",
        ),
        Scenario(
            # A non-gallery SCIM app whose endpoint refuses the Entra SCIM client's PATCH shapes: disables
            # ("Replace" with active "False" as a string) and group member removals answer 400.
            name="scim-patch-incompatible",
            app="Fabrikam SCIM App",
            template_id="scim",
            job_prefix="scim",
            target_user_object=SCIM_USER,
            scope="assigned",
            groups=("Operations",),
            provision_groups=True,
            minutes_per_object=0.03,
            problems=("scim-patch",),
            leavers_per_mille=120,
        ),
        Scenario(
            # An admin unassigns a whole group; the next cycle would disable more users than the deletion
            # threshold allows, so the deletions are staged and the job is quarantined (TooManyDeletes).
            name="deletion-threshold",
            app="Zoom",
            template_id="zoom",
            job_prefix="ZoomOutDelta",
            target_user_object="User",
            scope="assigned",
            groups=("Finance", "Human Resources"),
            minutes_per_object=0.02,
            controls=(Control("unassign", before=14 * H, reason="Finance"),),
            connector="Zoom",
            delete_threshold=10,
        ),
        Scenario(
            # Managers and group members that are not in scope when the user or group is exported; some of
            # the managers come into scope later, which the service does not notice until a restart.
            name="manager-references",
            app="Asana",
            template_id="asana",
            job_prefix="AsanaOutDelta",
            target_user_object=SCIM_USER,
            scope="assigned",
            groups=("Engineering", "Legal"),
            provision_groups=True,
            minutes_per_object=0.03,
            connector="Asana",
            problems=("manager-references",),
        ),
        Scenario(
            # "Sync all users and groups", and an admin who switched it to "Sync only assigned" without the
            # restart the known issue asks for: the logs keep showing unassigned users provisioned.
            name="sync-all",
            app="Google Workspace",
            template_id="gsuite",
            job_prefix="GoogleAppsOutDelta",
            target_user_object="User",
            scope="all",
            matching_target="primaryEmail",
            minutes_per_object=0.015,
            controls=(Control("scope-to-assigned", before=30 * H),),
            connector="GoogleApps",
        ),
        Scenario(
            # Leavers: soft deletes (disable), hard deletes days later (delete), unassigned users later deleted
            # in Entra ID (never deleted in the app).
            name="deprovisioning",
            app="Miro",
            template_id="miro",
            job_prefix="MiroOutDelta",
            target_user_object=SCIM_USER,
            scope="assigned",
            groups=("Marketing",),
            minutes_per_object=0.03,
            connector="Miro",
            problems=("deprovisioning-stories",),
            leavers_per_mille=40,
        ),
        Scenario(
            # One of the assigned groups is a Microsoft 365 group that is not security-enabled: its members are
            # not effectively entitled.
            name="group-not-security-enabled",
            app="Adobe Identity Management",
            template_id="adobeidentitymanagement",
            job_prefix="AdobeOutDelta",
            target_user_object="User",
            scope="assigned",
            groups=("Legal", "Design Guild"),
            minutes_per_object=0.03,
            connector="Adobe",
        ),
        Scenario(
            # A job created and never started: the documented brand-new state (cross-tenant guide, step 8).
            name="just-created",
            app="Cisco Webex",
            template_id="ciscowebex",
            job_prefix="CiscoWebexOutDelta",
            target_user_object="User",
            scope="assigned",
            groups=("Sales",),
            connector="CiscoWebex",
            created_only=True,
        ),
    )
}

DEFAULT_SCENARIOS = tuple(SCENARIOS)

# Service principals without provisioning: SSO-only apps (two share a name, for ambiguity) and the tools' own.
SSO_ONLY_APPS = ("Slack", "Slack", "Microsoft Teams Rooms", "GitHub Enterprise Cloud")
