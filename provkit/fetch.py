"""Fetch an app's provisioning logs, job status, schema, assignments and audits from Graph into the store.

A window is fetched slice by slice (oldest first, entries in ascending time within a slice); each finished slice
is written and recorded as covered in one atomic manifest update. An interrupted fetch therefore loses at most the
slice it was in, and the next fetch asks only for what is not covered yet, plus a short overlap before the
watermark for entries Graph records late. Duplicate ids are dropped, so repeating a fetch changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from provkit.graph import time_slices
from provkit.store import AppStore, Store
from provkit.tables import events_from_records, jobs_from_records

DEFAULT_SLICE = timedelta(days=1)  # each slice costs at least one throttled request
DEFAULT_OVERLAP = timedelta(hours=1)


@dataclass
class FetchSummary:
    """What one fetch did: the numbers the command line prints in its closing line."""

    app: str
    service_principal_id: str
    start: datetime
    end: datetime
    slices: int = 0
    pages: int = 0
    entries: int = 0
    new: int = 0
    duplicates: int = 0
    rejected: int = 0
    audits_new: int = 0
    jobs: int = 0
    throttle_waits: int = 0
    waited_seconds: float = 0.0
    seconds: float = 0.0
    reject_reasons: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.app}: {self.new} new entries, {self.duplicates} duplicates dropped"
            + (f", {self.rejected} rejected" if self.rejected else "")
            + f", {self.pages} pages in {self.slices} slices, {self.jobs} job snapshot(s), "
            f"{self.throttle_waits} throttled (429), {self.waited_seconds:.1f} s waiting (pacing and retries), "
            f"{self.seconds:.1f} s in all"
        )

    def as_dict(self) -> dict:
        d = asdict(self)
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        return d


def fetch_app(
    client,
    store: Store,
    app: str,
    *,
    start: datetime,
    end: datetime,
    tenant_id: str,
    slice_length: timedelta = DEFAULT_SLICE,
    overlap: timedelta = DEFAULT_OVERLAP,
    page_size: int = 500,
    on_page: Callable[[int, int], None] | None = None,
) -> tuple[FetchSummary, AppStore]:
    """Fetch APP's data for [start, end) into ``store``; ``client`` is a :class:`provkit.graph.GraphClient`.

    ``on_page(entries_in_page, slice_index)`` is called after each page, for progress bars.
    """
    began = time.monotonic()
    resolved = client.resolve_app(app)
    sp_id = resolved.service_principal_id
    app_store = store.app(tenant_id, sp_id)
    app_store.set_app(
        {"display_name": resolved.display_name, "app_id": resolved.app_id, "service_principal_id": sp_id}
    )
    summary = FetchSummary(app=resolved.display_name, service_principal_id=sp_id, start=start, end=end)
    stats_before = _stats(client)

    # Job status first: a snapshot per fetch keeps cycle history beyond Graph's single lastExecution.
    snapshot_time = datetime.now(UTC)
    jobs = client.list_jobs(sp_id)
    if jobs:
        frame = jobs_from_records(
            jobs,
            snapshot_time=snapshot_time,
            service_principal_id=sp_id,
            service_principal_name=resolved.display_name,
        )
        app_store.write_jobs(frame)
        summary.jobs = len(frame)
        job = jobs[0]
        try:
            app_store.write_meta("schema", client.get_schema(sp_id, job["id"]))
        except Exception as exc:  # a schema we cannot read must not cost the logs
            app_store.write_meta("schema_error", {"error": str(exc)})
    app_store.write_meta(
        "service_principal", {"id": sp_id, "appId": resolved.app_id, "displayName": resolved.display_name}
    )
    app_store.write_meta("jobs", jobs)
    assignments = client.app_role_assignments(sp_id)
    app_store.write_meta("assignments", assignments)
    from provkit.sources.graph import directory_facts

    groups, users = directory_facts(client, assignments)
    app_store.write_meta("groups", groups)
    app_store.write_meta("users", users)
    gaps = app_store.gaps(start, end, overlap=overlap)
    if gaps:  # audits of covered ranges were stored by the fetch that covered them
        audits = client.directory_audits(gaps[0][0], gaps[-1][1], sp_id=sp_id)
        summary.audits_new = app_store.write_audits(audits)

    for gap_start, gap_end in gaps:
        for slice_start, slice_end in time_slices(gap_start, gap_end, slice_length):
            records: list[dict] = []
            for page in client.provisioning_pages(sp_id, slice_start, slice_end, page_size=page_size):
                values = page.get("value", [])
                records.extend(values)
                summary.pages += 1
                if on_page:
                    on_page(len(values), summary.slices)
            tables = events_from_records(records)
            summary.entries += len(records)
            summary.rejected += len(tables.rejects)
            summary.reject_reasons.extend(r for _, r in tables.rejects[:20])
            result = app_store.write_events(tables, covered=(slice_start, slice_end))
            summary.new += result.new
            summary.duplicates += result.duplicates
            summary.slices += 1

    stats_after = _stats(client)
    summary.throttle_waits = stats_after[0] - stats_before[0]
    summary.waited_seconds = stats_after[1] - stats_before[1]
    summary.seconds = time.monotonic() - began
    app_store.record_fetch({**summary.as_dict(), "fetched_at": datetime.now(UTC).isoformat()})
    return summary, app_store


def _stats(client) -> tuple[int, float]:
    stats = getattr(client, "stats", None)
    if stats is None:
        return 0, 0.0
    return int(getattr(stats, "throttled", 0)), float(getattr(stats, "waited_seconds", 0.0))
