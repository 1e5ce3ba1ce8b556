"""Evidence: everything the analysis of one app needs, gathered once, from any source.

Analysis functions (cycles, checks, explain) take an :class:`Evidence` and never fetch. It is built from the
store (after a fetch or an import); tests build it straight from the simulated tenant (no HTTP in between) with
the simulator's ``provkit.sim.evidence.from_simulator``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from provkit.data.tables import Tables, empty_tables


@dataclass
class Evidence:
    """One app's logs, job-status snapshots, configuration and directory facts.

    - ``tables``: events, steps and properties (see :mod:`provkit.data.tables`).
    - ``jobs``: job-status snapshots, oldest first (one row per job per snapshot).
    - ``job``: the latest job JSON as Graph returned it, or None when unknown (e.g. imported files only).
    - ``schema``: the job's synchronization schema JSON, or None.
    - ``assignments``: the app's appRoleAssignedTo entries (principalType User or Group, principalId).
    - ``groups``: for each assigned group id, ``{"display_name", "mail", "security_enabled", "group_types",
      "membership_rule_processing_state" (dynamic groups), "direct": [user ids],
      "transitive": [user ids], "nested": [group ids], "nested_groups": [{"id", "display_name",
      "direct": [user ids]}]}``.
    - ``audits``: directory audits about this app (restarts, mapping and scoping changes, quarantine).
    - ``users``: known user objects by id (the ones the checks needed to look at), Graph JSON.
    - ``now``: the moment the evidence describes (the fetch time, or the simulated now).
    - ``observed_cycles``: per-cycle counts a source summarised itself (Log Analytics, in KQL) as
      ``(frame, entries_without_cycle)``; cycles use them instead of summarising ``events``, which may then
      hold only some entries.
    """

    tenant_id: str
    service_principal_id: str
    app_id: str | None
    display_name: str
    tables: Tables = field(default_factory=empty_tables)
    jobs: pd.DataFrame | None = None
    job: dict | None = None
    schema: dict | None = None
    assignments: list[dict] = field(default_factory=list)
    groups: dict[str, dict] = field(default_factory=dict)
    audits: list[dict] = field(default_factory=list)
    users: dict[str, dict] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    window: tuple[datetime, datetime] | None = None
    source: str = "graph"
    # The time ranges fetches covered (None: unknown, e.g. imports only or the simulator), and the window asked
    # for where ``window`` is not set (offline commands); see ``coverage_gaps``.
    covered: list[tuple[datetime, datetime]] | None = None
    coverage_window: tuple[datetime, datetime] | None = None
    observed_cycles: tuple[pd.DataFrame, int] | None = None

    @property
    def coverage_gaps(self) -> list[tuple[datetime, datetime]] | None:
        """The ranges of the analysed window (``window``, else ``coverage_window``) that no fetch covered; None
        when either is unknown."""
        window = self.window or self.coverage_window
        if window is None or not self.covered:
            return None
        from provkit.data.store import subtract_ranges

        return subtract_ranges(window[0], window[1], self.covered)

    @property
    def events(self) -> pd.DataFrame:
        return self.tables.events

    @property
    def steps(self) -> pd.DataFrame:
        return self.tables.steps

    def steps_of(self, event_ids) -> pd.DataFrame:
        """The steps of the given entries. From the store this reads only their rows, where ``steps`` reads all
        of them (a million entries have about five million steps: over a gigabyte); analyses that need the steps
        of a few entries should ask for those."""
        steps_of = getattr(self.tables, "steps_of", None)
        if steps_of is not None:
            return steps_of(event_ids)
        steps = self.tables.steps
        return steps[steps["event_id"].isin(set(event_ids))].reset_index(drop=True)


def from_store(
    app_store, *, now: datetime | None = None, coverage: tuple[datetime, datetime] | None = None
) -> Evidence:
    """Evidence from one app's folder in the store (works offline). With ``coverage`` (the window asked for),
    ``coverage_gaps`` lists the ranges of it that no fetch covered."""
    manifest = app_store.manifest()
    info = manifest.get("app", {})
    jobs = app_store.jobs()
    job_list = app_store.meta("jobs") or []
    fetches = manifest.get("fetches") or []
    when = now
    if when is None and fetches:
        when = datetime.fromisoformat(fetches[-1]["fetched_at"])
    evidence = Evidence(
        tenant_id=app_store.tenant_id,
        service_principal_id=app_store.service_principal_id,
        app_id=info.get("app_id"),
        display_name=info.get("display_name") or app_store.service_principal_id,
        tables=app_store.tables(lazy=True),  # steps and properties read if an analysis uses them
        jobs=jobs,
        job=job_list[0] if job_list else None,
        schema=app_store.meta("schema"),
        assignments=app_store.meta("assignments") or [],
        groups=app_store.meta("groups") or {},
        audits=app_store.audit_records(),
        users=app_store.meta("users") or {},
        now=when or datetime.now(UTC),
        source=info.get("source", "graph"),
    )
    evidence.covered = app_store.covered() or None
    evidence.coverage_window = coverage
    return evidence
