"""Evidence straight from a simulated tenant, as a fetch of an app's whole window would give it.

For tests and benchmarks of the analysis: no server, no sign-in, identical content. It lives in the simulator so
that the product never imports the simulator (the data layer's :mod:`provkit.data.evidence` defines the
:class:`~provkit.data.evidence.Evidence` it returns).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from provkit.data.evidence import Evidence
from provkit.data.tables import events_from_records, jobs_from_records
from provkit.sim.directory import Group
from provkit.sim.entries import render_entry
from provkit.sim.tenant import App, Tenant


def from_simulator(tenant: Tenant, app: App, *, max_entries: int | None = None) -> Evidence:
    """Evidence straight from a simulated tenant's app, as a fetch of its whole window would give it.

    Meant for tests and benchmarks of the analysis: no server, no sign-in, identical content.
    """
    records = []
    for cycle in app.timeline().cycles:
        first = cycle.entries_before(tenant.window_start)
        last = cycle.entries_before(tenant.now_ticks + 1)
        for i in range(first, last):
            records.append(render_entry(app, cycle, i))
            if max_entries is not None and len(records) >= max_entries:
                break
    tables = events_from_records(records)
    now = datetime.fromtimestamp(tenant.now_ticks / 10**7, tz=UTC)
    job = tenant.job(app)
    jobs = jobs_from_records(
        [job], snapshot_time=now, service_principal_id=app.sp_id, service_principal_name=app.display_name
    )
    directory = tenant.directory
    groups = {}
    assignments = tenant.app_role_assigned_to(app)
    assigned = {a["principalId"] for a in assignments if a["principalType"] == "Group"}
    for g in app.assigned_groups:
        if g.id in assigned:  # as a fetch sees them: the groups the app's assignments name now
            groups[g.id] = group_facts(tenant, g)
    audits = [a for a in tenant.directory_audits() if a["targetResources"][0]["id"] == app.sp_id]
    users = {}
    for a in tenant.app_role_assigned_to(app):
        if a["principalType"] == "User":
            u = directory.user_by_id(a["principalId"])
            if u is not None:
                users[u.id] = u.graph()
    return Evidence(
        tenant_id=tenant.tenant_id,
        service_principal_id=app.sp_id,
        app_id=app.app_id,
        display_name=app.display_name,
        tables=tables,
        jobs=jobs,
        job=job,
        schema=tenant.schema(app),
        assignments=assignments,
        groups=groups,
        audits=audits,
        users=users,
        now=now,
        window=(datetime.fromtimestamp(tenant.window_start / 10**7, tz=UTC), now),
        source="simulator",
    )


def group_facts(tenant: Tenant, group: Group) -> dict[str, Any]:
    """A group as :attr:`Evidence.groups` describes it: names, flags, direct, transitive and nested members."""
    directory = tenant.directory
    users = tenant.users
    return {
        "display_name": group.display_name,
        "mail": group.mail,
        "security_enabled": group.security_enabled,
        "group_types": list(group.group_types),
        "direct": [users.get(u).id for u in group.user_members],
        "transitive": [users.get(u).id for u in directory.transitive_users(group)],
        "nested": [directory.groups[n].id for n in group.group_members],
        "nested_groups": [
            {
                "id": directory.groups[n].id,
                "display_name": directory.groups[n].display_name,
                "direct": [users.get(u).id for u in directory.groups[n].user_members],
            }
            for n in group.group_members
        ],
    }
