"""The findings pushdown of the loganalytics source: what ``diagnose`` needs from a workspace, in KQL.

:meth:`FindingsPushdown.summary` counts over every entry in KQL (a :class:`~provkit.data.logsummary.LogSummary`)
and sends each object's latest entry; :meth:`FindingsPushdown.entries_for_checks` only the entries the checks
filter for. An entry a check reads whole (its steps, its modified properties) travels whole; a healthy object's
successful export, read only for a few fields, travels as a narrow row (:data:`NARROW`): a few columns and two
values of its steps' details extracted in KQL, put back into the events table by :func:`fill_narrow`. :class:`~provkit.data.sources.loganalytics.LogAnalytics` runs them (its ``query``,
``_app_filter`` and ``_records``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from provkit.data.logsummary import RECENT, LastCycle, LogSummary
from provkit.data.sources.files.formats import _NO_CODE

if TYPE_CHECKING:
    from provkit.data.sources.loganalytics import Transfer

__all__ = ["NARROW", "NARROW_KEYS", "FindingsPushdown", "fill_narrow"]

# Which of the entries the findings mode sends (each object's latest one, each object's latest export) a check
# reads whole, and which only by a few fields. Read whole: every entry that is not a successful create or
# update (failures, skips, deletes: their steps give skip reasons, scoping, references and causes), and a
# successful export whose steps may say the sync scope is "sync all" (a step text the scope inference reads).
# The rest, most of them, are read only for object id and name, action, status, time, cycle, change and target,
# and two values of their steps' details: "Assigned to the application" (the scope inference: an unassigned
# object exported) and the reportable identifier (references created later). Those travel as narrow rows
# (:data:`_NARROW_COLUMNS`), the two values extracted in KQL.
# inference: superset tests on the steps' JSON text. The parser (provkit.data.stepdetails) ignores case,
# spacing and punctuation in keys: an entry with any other key holding "assigned" set to false travels whole.
_ASSIGNED = 'extract(@\'(?i)"Assigned to the application"\\s*:\\s*"?(true|false)\', 1, ProvisioningSteps)'
NARROW = (
    "ResultType =~ 'Success' and tolower(ProvisioningAction) in ('create', 'update')"
    " and not(ProvisioningSteps has 'sync')"
    f" and (tolower({_ASSIGNED}) == 'false' or not(ProvisioningSteps matches regex @'(?i)assigned[^,}}]*false'))"
)
# The columns a narrow row keeps (reference 5.2's AADProvisioningLogs columns), and the two values out of the
# steps' details. inference: an identifier with an escaped character is not extracted (the JSON string would
# need unescaping); its entry then carries none, as an entry whose steps lack one.
_NARROW_COLUMNS = (
    '| extend rid_ = extract(@\'"ReportableIdentifier"\\s*:\\s*"([^"\\\\]*)"\', 1, ProvisioningSteps),'
    f" assigned_ = {_ASSIGNED}\n"
    "| project TimeGenerated, Id, ChangeId, CycleId, JobId, ProvisioningAction, ResultType, ResultSignature,"
    " ResultDescription, DurationMs, SourceIdentity, TargetIdentity, ServicePrincipal, rid_, assigned_"
)
# The record keys a narrow record's step values travel under (not Graph properties), by events column.
NARROW_KEYS = {
    "reportable_identifier": "_provkitReportableIdentifier",
    "assigned": "_provkitAssigned",
}


def fill_narrow(events: pd.DataFrame, records: list[dict[str, Any]]) -> None:
    """Put the step values of narrow records (:data:`NARROW_KEYS`) into ``events`` (a narrow row has no steps
    to read them from), in place."""
    if events.empty or "id" not in events:
        return
    ids = events["id"].astype(str)
    for column, key in NARROW_KEYS.items():
        found = {str(r.get("id")): r[key] for r in records if r.get(key) is not None}
        if not found or column not in events:
            continue
        mine = ids.isin(found).to_numpy(dtype=bool)
        values = ids[mine].map(found)
        events.loc[mine, column] = values.astype(events[column].dtype).to_numpy()


def _quote(text: str) -> str:
    """A KQL string literal (single quotes; backslash and quote escaped)."""
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _when(moment: datetime) -> str:
    return f"datetime({moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')})"


class FindingsPushdown:
    """The queries behind the findings mode; mixed into LogAnalytics, which supplies the three below."""

    def query(self, kql: str, window: tuple[datetime, datetime] | None) -> pd.DataFrame:
        raise NotImplementedError

    @staticmethod
    def _app_filter(sp_id: str) -> str:
        raise NotImplementedError

    def _records(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        raise NotImplementedError

    transfer: Transfer

    def latest_per_object(self, sp_id: str, window: tuple[datetime, datetime]) -> list[dict[str, Any]]:
        """The latest entry of every object the app's entries name (by source id), as Graph records: each
        object's state as the checks read it, without the entries before it. inference: for two entries of one
        object at the same instant, arg_max keeps either."""
        kql = f"""{self._app_filter(sp_id)}
| extend src_ = tostring(parse_json(SourceIdentity).Id)
| where isnotempty(src_)
| summarize arg_max(TimeGenerated, *) by src_
| project-away src_
| order by TimeGenerated asc"""
        return self._records(self.query(kql, window))

    def summary(
        self, sp_id: str, window: tuple[datetime, datetime], now: datetime
    ) -> tuple[LogSummary, list[dict[str, Any]]]:
        """What the checks count over every entry, summarised in KQL (:class:`LogSummary`), and the records of
        each object's latest entry (``arg_max``; their per-object counts go into the summary). A few rows per
        status and code, one per object."""
        since = pd.Timestamp(now).tz_convert(UTC) - RECENT
        # One row per status, error code and target type: counts, recent counts, first and last times.
        kql = f"""{self._app_filter(sp_id)}
| summarize entries = count(), recent = countif(TimeGenerated >= {_when(since)}),
    first_ = min(TimeGenerated), last_ = max(TimeGenerated)
    by status = tolower(ResultType), code = ResultSignature,
       ttype = tostring(parse_json(TargetIdentity).identityType)"""
        groups = self.query(kql, window)
        for column in ("entries", "recent"):
            groups[column] = pd.to_numeric(groups[column]).fillna(0).astype("int64")
        for column in ("first_", "last_"):
            groups[column] = pd.to_datetime(groups[column], utc=True)
        # ResultSignature holds a placeholder when there is no error (as the export reader reads it).
        groups["code"] = [
            "" if c is None or str(c).strip().lower() in _NO_CODE else str(c) for c in groups["code"]
        ]
        by_status = groups.groupby("status")["entries"].sum()
        recent = groups.groupby("status")["recent"].sum()
        failed = groups[groups["status"] == "failure"].groupby("code")["entries"].sum()
        # no entries: no latest ones (and an empty id set can make the engine read every entry's steps)
        latest = self._latest_with_counts(sp_id, window) if len(groups) else ([], {})
        summary = LogSummary(
            entries=int(groups["entries"].sum()),
            first=groups["first_"].min() if len(groups) else None,
            last=groups["last_"].max() if len(groups) else None,
            by_status={str(k): int(v) for k, v in by_status.items() if int(v)},
            last_by_status={str(k): v for k, v in groups.groupby("status")["last_"].max().items()},
            recent_since=since,
            recent_by_status={str(k): int(v) for k, v in recent.items() if int(v)},
            failures_by_code={str(k): int(v) for k, v in failed.items() if int(v)},
            error_codes=frozenset(c for c in groups["code"] if c),
            target_types=frozenset(str(t) for t in groups["ttype"] if isinstance(t, str) and t),
            last_cycle=self._last_cycle(sp_id, window) if len(groups) else None,
            entries_by_object=latest[1],
            window=window,
        )
        return summary, latest[0]

    def _latest_with_counts(
        self, sp_id: str, window: tuple[datetime, datetime]
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Each object's latest entry, as records (whole, or narrow where :data:`NARROW` allows), and the
        entries per object."""
        app = self._app_filter(sp_id)
        # The latest entries' ids first, then those entries by id: a test on the steps then reads the steps of
        # those entries only (after arg_max(*), an engine may read every entry's).
        latest = f"""let ids_ = {app}
    | extend src_ = tostring(parse_json(SourceIdentity).Id)
    | where isnotempty(src_)
    | summarize arg_max(TimeGenerated, Id), entries_ = count() by src_
    | project Id, src_, entries_;
{app}
| join kind=inner ids_ on Id"""
        whole = self.query(
            f"{latest}\n| where not({NARROW})\n| project-away Id1\n| order by TimeGenerated asc", window
        )
        narrow = self.query(
            f"{latest}\n| where {NARROW}\n{_NARROW_COLUMNS}, src_, entries_\n| order by TimeGenerated asc",
            window,
        )
        counts: dict[str, int] = {}
        for frame in (whole, narrow):
            if len(frame):
                counts.update({str(k): int(v) for k, v in zip(frame["src_"], frame["entries_"], strict=True)})
        records = self._records(whole.drop(columns=["src_", "entries_"], errors="ignore"))
        records.extend(self._narrow_records(narrow.drop(columns=["src_", "entries_"], errors="ignore")))
        return records, counts

    def _narrow_records(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Narrow rows as records: no steps and no modified properties; the step values extracted in KQL ride
        along under :data:`NARROW_KEYS` (see :func:`fill_narrow`)."""
        self.transfer.narrow_rows += len(frame)
        rids = frame.pop("rid_") if "rid_" in frame else pd.Series([None] * len(frame), dtype=object)
        assigned = (
            frame.pop("assigned_") if "assigned_" in frame else pd.Series([None] * len(frame), dtype=object)
        )
        records = self._records(frame)
        if len(records) == len(frame):  # a rejected row would shift the pairs: then no step values
            for record, rid, flag in zip(records, rids, assigned, strict=True):
                if isinstance(rid, str) and rid:
                    record[NARROW_KEYS["reportable_identifier"]] = rid
                if isinstance(flag, str) and flag.lower() in ("true", "false"):
                    record[NARROW_KEYS["assigned"]] = flag.lower() == "true"
        return records

    def _last_cycle(self, sp_id: str, window: tuple[datetime, datetime]) -> LastCycle:
        """The newest entry's cycle: its entries, failures, first and last times (no cycle: none)."""
        app = self._app_filter(sp_id)
        kql = f"""let cycle_ = toscalar({app} | top 1 by TimeGenerated desc | project CycleId);
{app}
| where isnotempty(cycle_) and CycleId == cycle_
| summarize entries = count(), failures = countif(ResultType =~ 'Failure'),
    first_ = min(TimeGenerated), last_ = max(TimeGenerated), cycle = take_any(CycleId)"""
        frame = self.query(kql, window)
        row = frame.iloc[0] if len(frame) else None
        cycle_id = row["cycle"] if row is not None else None
        if row is None or not isinstance(cycle_id, str) or not cycle_id or not int(row["entries"]):
            return LastCycle(None, 0, 0, pd.NaT, pd.NaT)  # the export reader reads "" as no cycle
        first, last = (pd.Timestamp(row[c]).tz_convert(UTC) for c in ("first_", "last_"))
        return LastCycle(cycle_id, int(row["entries"]), int(row["failures"]), first, last)

    def entries_for_checks(
        self,
        sp_id: str,
        window: tuple[datetime, datetime],
        *,
        last_cycle: LastCycle | None = None,
    ) -> list[dict[str, Any]]:
        """The whole entries the checks read beyond each object's latest one (:meth:`summary` sends those), as
        Graph records:

        - each object's latest successful create or update (scope inference, out-of-scope skips, references
          created later);
        - every delete, disable and staged delete, and every skip whose steps say NotEffectivelyEntitled
          (deprovisioning, the deletion threshold, scope inference);
        - with ``last_cycle``, that cycle's entries (the ETA of a running initial cycle).

        inference: an entry at the same instant as its object's latest one is taken for it (as ``arg_max``
        takes either) and not sent again.
        """
        app = self._app_filter(sp_id)
        newest = f"""let newest = {app}
    | extend src_ = tostring(parse_json(SourceIdentity).Id)
    | where isnotempty(src_)
    | summarize newest_ = max(TimeGenerated) by src_;
"""

        def beyond_latest(filters: str, then: str = "") -> str:
            return f"""{newest}{app}
| extend src_ = tostring(parse_json(SourceIdentity).Id)
{filters}
| join kind=leftouter newest on src_
| where isnull(newest_) or TimeGenerated < newest_{then}
| project-away src_, src_1, newest_"""

        # The exports: whole where a check reads their steps, narrow for the rest (as for the latest entries);
        # their ids first, then the entries by id (the steps test reads only theirs).
        export_ids = f"""let exported_ = {app}
    | extend src_ = tostring(parse_json(SourceIdentity).Id)
    | where isnotempty(src_) and ResultType =~ 'Success' and tolower(ProvisioningAction) in ('create', 'update')
    | summarize arg_max(TimeGenerated, Id) by src_
    | join kind=leftouter newest on src_
    | where isnull(newest_) or TimeGenerated < newest_
    | project Id;
{app}
| join kind=inner exported_ on Id"""
        exports = f"{newest}{export_ids}\n| where not({NARROW})\n| project-away Id1"
        narrow_exports = f"{newest}{export_ids}\n| where {NARROW}\n{_NARROW_COLUMNS}"
        # has: a superset of the skips whose step details carry SkipReason NotEffectivelyEntitled (the checks read
        # the reason from the steps and keep only those). A query of its own, read after the join: under an "or"
        # with the actions, or before the join, an engine may read the steps of more entries.
        not_entitled = beyond_latest(
            "| where ResultType =~ 'Skipped'", "\n| where ProvisioningSteps has 'NotEffectivelyEntitled'"
        )
        # One query for the filters on small columns (each entry read once). The failures after the newest
        # success: provkit.data.sources.loganalytics_failures (grouped, the newest of each group whole).
        wanted = ["tolower(ProvisioningAction) in ('delete', 'disable', 'stageddelete')"]
        filtered = beyond_latest("| where " + "\n    or ".join(wanted))
        whole = [exports, filtered, not_entitled]
        narrow = [narrow_exports]
        if last_cycle is not None and last_cycle.cycle_id:
            # The running cycle's entries are read for object and time only (the ETA's objects seen): narrow
            # where NARROW allows, whole otherwise (as every other entry); ids first, as for the exports.
            cycle_ids = f"""let cycle_ = {app}
    | where CycleId == {_quote(last_cycle.cycle_id)}
    | extend src_ = tostring(parse_json(SourceIdentity).Id)
    | join kind=leftouter newest on src_
    | where isnull(newest_) or TimeGenerated < newest_
    | project Id;
{app}
| join kind=inner cycle_ on Id"""
            whole.append(f"{newest}{cycle_ids}\n| where not({NARROW})\n| project-away Id1")
            narrow.append(f"{newest}{cycle_ids}\n| where {NARROW}\n{_NARROW_COLUMNS}")
        records: list[dict[str, Any]] = []
        # Whole records first: an entry sent both ways is kept whole (the caller keeps the first of an id).
        for kql in whole:
            records.extend(self._records(self.query(kql, window)))
        for kql in narrow:
            records.extend(self._narrow_records(self.query(kql, window)))
        return records
