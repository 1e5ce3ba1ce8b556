"""The findings pushdown of the loganalytics source: what ``diagnose`` needs from a workspace, in KQL.

A row travels only when a finding is about its object (an object a finding counts or lists, an entry it cites)
or a check judges it one by one with facts only Python has (the steps' details, the directory from Graph).
What the checks only count comes back as aggregates.

- :meth:`FindingsPushdown.summary`: the counts over every entry (a :class:`~provkit.data.logsummary.LogSummary`:
  entries by status and code, the last cycle, and every object counted by its latest entry's status and skip
  reason, the failing ones by error code) and the latest entries that are not healthy, whole. A healthy object
  (its latest entry a successful create or update, or a RedundantExport skip: :data:`_HEALTHY`) is only
  counted; of those, only the newest whose steps say the scope is "sync all" travels (the scope inference
  reads that text). A failing object travels when a check judges it one by one (the caller's rule,
  :data:`Judged`: reference failures, SCIM 400 refusals, required attributes missing) or when it is among
  the newest :data:`~provkit.data.sources.loganalytics_failures.EVIDENCE_ROWS` of its group by error code and
  HTTP status (the objects ``failures.by-code`` lists); the rest are counted (``failing_by_code``). Without a
  rule every failing object travels.
- :meth:`FindingsPushdown.entries_for_checks`: the older entries the checks filter for: deletes, disables,
  staged deletes, soft-deleted users' NotEffectivelyEntitled skips and each object's newest such skip (scope
  inference) and the previous export of each object now skipped. The failures since the newest success: grouped
  in KQL, provkit.data.sources.loganalytics_failures. A running initial cycle's entries stay in the workspace:
  its ETA reads the summary's ``last_cycle`` (its objects by the minute they were first logged).
- :meth:`FindingsPushdown.exports_for_checks`: the exports judged one by one: the newest one whose steps say
  "not assigned", the newest one of a user outside the assignments read from Graph (the exported users' ids
  travel packed, a row per day; the set difference is taken in Python, then one entry is fetched by id), and
  the exports of the objects reference failures point at, by name.
- :meth:`FindingsPushdown.latest_of_objects`: the latest entry of every object those name whose latest entry
  did not travel, so that no older entry passes for its current state.

An entry a check reads whole (its steps, its modified properties) travels whole; a successful export read only
for a few fields travels as a narrow row (:data:`NARROW`): a few columns and two values of its steps' details
extracted in KQL, put back into the events table by :func:`fill_narrow`.
:class:`~provkit.data.sources.loganalytics.LogAnalytics` runs them (its ``query``, ``_app_filter`` and
``_records``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from provkit.data.logsummary import RECENT, LastCycle, LogSummary
from provkit.data.sources.files.formats import _NO_CODE
from provkit.data.sources.loganalytics_failures import HELPERS, _quote, _when, newest_of_groups, status_kql

if TYPE_CHECKING:
    from provkit.data.sources.loganalytics import Transfer

# A check's rule for which failing objects travel whole: (error code, "" for none; the HTTP status its reason
# names, None for none) -> judged one by one (provkit.analysis.checks.travel.judged_one_by_one).
Judged = Callable[[str, int | None], bool]

__all__ = ["NARROW", "NARROW_KEYS", "FindingsPushdown", "Judged", "assigned_users", "fill_narrow"]

# Which of the entries the findings mode sends a check reads whole, and which only by a few fields. Read whole:
# every entry that is not a successful create or update (failures, skips, deletes: their steps give skip
# reasons, scoping, references and causes), and a successful export whose steps may say the sync scope is
# "sync all" (a step text the scope inference reads). The rest (the latest exports of objects whose older
# entries travel, the previous exports of skipped objects, a running cycle's exports) are read only for object
# id and name, action, status, time, cycle, change and target,
# and two values of their steps' details: "Assigned to the application" (the scope inference: an unassigned
# object exported) and the reportable identifier (references created later). Those travel as narrow rows
# (:data:`_NARROW_COLUMNS`), the two values extracted in KQL.
# inference: superset tests on the steps' JSON text. The parser (provkit.data.stepdetails) ignores case,
# spacing and punctuation in keys: an entry with any other key holding "assigned" set to false travels whole.
_ASSIGNED = 'extract(@\'(?i)"Assigned to the application"\\s*:\\s*"?(true|false)\', 1, ProvisioningSteps)'
# The step text the scope inference reads ("Scope sync all", provkit.analysis.syncscope), on the steps' JSON text.
_SCOPE_TEXT = "ProvisioningSteps matches regex @'(?i)\\bscope:?\\s+sync all\\b'"
_EXPORT = "ResultType =~ 'Success' and tolower(ProvisioningAction) in ('create', 'update')"
NARROW = (
    f"{_EXPORT}"
    f" and not({_SCOPE_TEXT})"
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

_SRC = "tostring(parse_json(SourceIdentity).Id)"
# The skip reason as provkit.data.tables lifts it: the first SkipReason of the steps' details. inference: on the
# steps' JSON text, with the key's case, spacing and punctuation free (as the parser reads it).
_SKIP = """tolower(extract(@'(?i)"skip[^a-z0-9"]*reason"\\s*:\\s*"([^"]*)"', 1, ProvisioningSteps))"""
# A healthy latest entry: a successful create or update, or a skip because the object already matches
# (RedundantExport). No check reads such an entry for a per-object judgement (the scope inference's exports
# and references' targets are sent by :meth:`FindingsPushdown.exports_for_checks`); the checks count them
# (LogSummary.objects_by_status, objects_by_skip_reason). inference: a RedundantExport skip passed scoping.
_HEALTHY = f"({_EXPORT}) or (status_ == 'skipped' and skip_ == 'redundantexport')"
# An export whose steps set a key naming "assigned" to false (the parser reads any spelling of "Assigned to the
# application"). inference: a superset test on the steps' JSON text; the checks read the flag from the steps.
_UNASSIGNED = """ProvisioningSteps matches regex @'(?i)"[^"]*assigned[^"]*"\\s*:\\s*"?false'"""
# The import step's IsSoftDeleted true (the key as provkit.analysis.checks.deprovision reads it; the value as
# is_true reads it).
_SOFT_DELETED = """ProvisioningSteps matches regex @'"IsSoftDeleted"\\s*:\\s*"?(?i:true)'"""
# A skip the scope inference does not count as "not assigned": the object inactive, or a scoping filter false.
# inference: the documented keys and the parser's spelling variants, on the steps' JSON text.
_RULED_OUT = (
    """ProvisioningSteps matches regex @'(?i)"(active ?in ?(the )?source( ?system)?|is ?active)"\\s*:\\s*"?false'"""
    """ or ProvisioningSteps matches regex"""
    """ @'(?i)"(scoping ?filters? ?evaluation ?pass(ed)?|is ?in ?(provisioning ?)?scope(display ?name)?)"\\s*:\\s*"?false'"""
)
# inference: the same pattern as provkit.analysis.checks.references._REFERENCE (the referenced object in a
# reason text); read over a record's whole JSON, a superset of its reason and its steps' Reason.
_REFERENCE = re.compile(
    r"unable to (?:assign|add|resolve)\s+'?(?P<other>[^'\s]+)'?\s+as\s+(?:the\s+|a\s+)?(?P<prop>manager|member)",
    re.IGNORECASE,
)
# inference: ids or names written into one query's text, in chunks of this many (the service's limit on a
# query's length is not in the reference; 400 ids are about 16 KB).
_PER_QUERY = 400


def _state(app: str) -> str:
    """KQL lets: ``latest_`` (each object's latest entry id, its source id and its entries) and ``state_``
    (those entries, with ``status_``, ``skip_`` and ``healthy_``)."""
    return f"""let latest_ = {app}
    | extend src_ = {_SRC}
    | where isnotempty(src_)
    | summarize arg_max(TimeGenerated, Id), entries_ = count() by src_
    | project Id, src_, entries_;
let state_ = {app}
    | join kind=inner latest_ on Id
    | extend status_ = tolower(ResultType)
    | extend skip_ = iff(status_ == 'skipped', {_SKIP}, '')
    | extend healthy_ = {_HEALTHY};
"""


def _source_id(record: dict[str, Any]) -> str:
    source = record.get("sourceIdentity")
    value = source.get("id") if isinstance(source, dict) else None
    return value if isinstance(value, str) else ""


def _in(values: list[str]) -> str:
    return "(" + ", ".join(_quote(v) for v in values) + ")"


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i : i + _PER_QUERY] for i in range(0, len(values), _PER_QUERY)]


# The record key that says an entry is its object's latest one (a running cycle's entries may be).
_LATEST = "_provkitLatest"


def _marked(frame: pd.DataFrame, convert: Any) -> list[dict[str, Any]]:
    """``convert(frame)``, each record whose row says ``latest_`` marked (:data:`_LATEST`)."""
    flags = frame.pop("latest_") if "latest_" in frame else None
    records: list[dict[str, Any]] = convert(frame)
    if flags is not None and len(records) == len(flags):  # a rejected row would shift the pairs
        for record, flag in zip(records, flags, strict=True):
            if flag is True or str(flag).lower() == "true":
                record[_LATEST] = True
    return records


def assigned_users(assignments: list[Any], groups: Mapping[str, Any]) -> set[str] | None:
    """Lower-cased ids of every user assigned to the app in any way (directly, or as a direct or transitive
    member of an assigned group), when that is known completely: the assignments read and every assigned
    group's members with them. None otherwise (a user may then be assigned through a group not read)."""
    if not assignments:
        return None
    users: set[str] = set()
    wanted: set[str] = set()
    for a in assignments:
        if not isinstance(a, dict):
            continue
        pid = str(a.get("principalId") or "").lower()
        kind = str(a.get("principalType") or "").lower()
        if kind == "user" and pid:
            users.add(pid)
        elif kind == "group" and pid:
            wanted.add(pid)
    if not wanted <= {str(g).lower() for g in groups}:
        return None
    for g in groups.values():
        if isinstance(g, dict):
            for key in ("direct", "transitive"):
                users.update(str(u).lower() for u in g.get(key) or [])
    return users


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
        self,
        sp_id: str,
        window: tuple[datetime, datetime],
        now: datetime,
        judged: Judged | None = None,
    ) -> tuple[LogSummary, list[dict[str, Any]]]:
        """What the checks count over every entry, summarised in KQL (:class:`LogSummary`), and the records of
        the latest entries that are not healthy (``arg_max``; their per-object counts go into the summary): of
        the failing objects, with ``judged``, only those of the groups it judges one by one and the newest of
        the others (:meth:`_latest_state`). A few rows per status and code, one per object that travels."""
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
        latest = self._latest_state(sp_id, window, judged) if len(groups) else ([], {}, {}, {}, {})
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
            objects_by_status=latest[2],
            objects_by_skip_reason=latest[3],
            failing_by_code=latest[4],
        )
        return summary, latest[0]

    def _latest_state(
        self, sp_id: str, window: tuple[datetime, datetime], judged: Judged | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, int], dict[str, int], dict[str, int], dict[str, int]]:
        """Objects counted by their latest entry's status and skip reason, and the failing ones by error code (a
        row per triple), and the latest entries that are not healthy (:data:`_HEALTHY`), whole, with their
        objects' entry counts; of the healthy ones only the newest whose steps say the scope (the scope
        inference reads that text in latest entries only).

        Which failing objects travel is the caller's (a check's) decision: without ``judged``, every one; with
        it, the failing objects are grouped by error code and the HTTP status their reason names
        (:func:`~provkit.data.sources.loganalytics_failures.status_kql`), and every object of a group
        ``judged(code, status)`` says a check judges one by one travels, of the other groups only the newest
        :data:`~provkit.data.sources.loganalytics_failures.EVIDENCE_ROWS` (``failures.by-code`` lists them and
        counts the rest from ``failing_by_code``)."""
        state = _state(self._app_filter(sp_id))
        counts = self.query(
            f"{state}state_\n| summarize objects_ = count() by status_,"
            " skip_ = iff(status_ == 'skipped', skip_, ''), code_ = iff(status_ == 'failure', ResultSignature, '')",
            window,
        )
        by_status: dict[str, int] = {}
        by_skip: dict[str, int] = {}
        by_code: dict[str, int] = {}
        for status, skip, code, n in zip(
            counts["status_"], counts["skip_"], counts["code_"], counts["objects_"], strict=True
        ):
            status, n = str(status or ""), int(n)
            by_status[status] = by_status.get(status, 0) + n
            if status == "skipped":
                by_skip[str(skip or "")] = by_skip.get(str(skip or ""), 0) + n
            if status == "failure":
                # ResultSignature holds a placeholder when there is no error (as the export reader reads it).
                name = "" if not isinstance(code, str) or code.strip().lower() in _NO_CODE else code
                by_code[name] = by_code.get(name, 0) + n
        # The steps tests read the latest entries' steps only (after the join).
        drop = "| project-away Id1, status_, skip_, healthy_"
        failing = judged is not None and by_status.get("failure", 0) > 0
        # With the rule, the failing objects travel by :meth:`_failing_latest` instead.
        others = " and status_ != 'failure'" if failing else ""
        whole = self.query(
            f"{state}state_\n| where not(healthy_){others}\n{drop}\n| order by TimeGenerated asc", window
        )
        frames = [whole]
        if failing:
            frames.append(self._failing_latest(state, window, judged))
        healthy = by_status.get("success", 0) + by_skip.get("redundantexport", 0)
        scope = (
            self.query(
                f"{state}state_\n| where healthy_ and {_SCOPE_TEXT}\n| top 1 by TimeGenerated desc\n{drop}",
                window,
            )
            if healthy  # no healthy object: nothing to look for (see _has_rows)
            else pd.DataFrame()
        )
        frames.append(scope)
        entries: dict[str, int] = {}
        records: list[dict[str, Any]] = []
        for frame in frames:
            if len(frame):
                entries.update(
                    {str(k): int(v) for k, v in zip(frame["src_"], frame["entries_"], strict=True)}
                )
                records.extend(self._records(frame.drop(columns=["src_", "entries_"], errors="ignore")))
        return records, entries, by_status, by_skip, by_code

    def _failing_latest(
        self, state: str, window: tuple[datetime, datetime], judged: Judged | None
    ) -> pd.DataFrame:
        """The latest entries of failing objects that travel (see :meth:`_latest_state`), oldest first, with
        ``src_`` and ``entries_``: a row per group by error code and HTTP status, then the rows."""
        failing = (
            f"state_\n| where status_ == 'failure'\n| project-away status_\n| extend {status_kql()}"
            f"\n| project-away {HELPERS}"
        )
        groups = self.query(
            f"{state}{failing}\n| summarize objects_ = count() by code_ = ResultSignature, status_", window
        )
        if not len(groups):
            return pd.DataFrame()
        lets, where = newest_of_groups(
            "failing_", zip(groups["code_"], groups["status_"], groups["objects_"], strict=True), judged
        )
        return self.query(
            f"""{state}let failing_ = materialize({failing});
{lets}
failing_
| where {where}
| project-away Id1, status_, skip_, healthy_
| order by TimeGenerated asc""",
            window,
        )

    def _has_rows(self, lets: str, table: str, window: tuple[datetime, datetime]) -> bool:
        """Whether the table a ``let`` names has rows (counted without reading any steps). A query that joins
        an empty table of ids and then tests the steps made the simulated workspace's engine read every entry's
        steps (tens of seconds); such a query is not sent then."""
        frame = self.query(f"{lets}{table}\n| count", window)
        return bool(len(frame)) and int(frame.iloc[0, 0]) > 0

    def latest_of_objects(
        self,
        sp_id: str,
        window: tuple[datetime, datetime],
        records: list[dict[str, Any]],
        summary: LogSummary,
    ) -> tuple[list[dict[str, Any]], LogSummary]:
        """The latest entries of the objects ``records`` name whose latest entry did not travel (it is healthy;
        the summary's ``entries_by_object`` names the objects whose latest entry did): without it, an older
        entry would pass for the object's current state. Narrow where :data:`NARROW` allows. Returns those
        records and the summary with their objects' entry counts."""
        have = set(summary.entries_by_object) | {_source_id(r) for r in records if r.get(_LATEST)}
        wanted = sorted({i for i in map(_source_id, records) if i and i not in have})
        held = {str(r.get("id")) for r in records}
        app = self._app_filter(sp_id)
        found: list[dict[str, Any]] = []
        counts = dict(summary.entries_by_object)
        for chunk in _chunks(wanted):
            # Their latest entries' ids and entry counts, packed in one row ("id count"); then only the entries
            # not held yet (a running cycle's entries may be some of them).
            packed = self.query(
                f"""{app}
| extend src_ = {_SRC}
| where src_ in {_in(chunk)}
| summarize arg_max(TimeGenerated, Id), entries_ = count() by src_
| summarize latest_ = make_list(strcat(src_, ' ', Id, ' ', tostring(entries_)))""",
                window,
            )
            missing: list[str] = []
            for cell in packed["latest_"] if len(packed) else []:
                for item in json.loads(cell) if isinstance(cell, str) else list(cell or []):
                    src, entry_id, n = str(item).rsplit(" ", 2)
                    counts[src] = int(n)
                    if entry_id not in held:
                        missing.append(entry_id)
            for ids in _chunks(missing):
                by_id = f"{app}\n| where Id in {_in(ids)}"
                found.extend(self._records(self.query(f"{by_id}\n| where not({NARROW})", window)))
                found.extend(
                    self._narrow_records(self.query(f"{by_id}\n| where {NARROW}\n{_NARROW_COLUMNS}", window))
                )
        return found, replace(summary, entries_by_object=counts)

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
        """The newest entry's cycle: its entries, failures, first and last times, and its objects by the minute
        of their first entry (the ETA of a running initial cycle reads them, so that the cycle's entries need
        not travel); no cycle: none. One query: the counts' row (``cycle`` set), then a row per minute."""
        app = self._app_filter(sp_id)
        kql = f"""let cycle_ = toscalar({app} | top 1 by TimeGenerated desc | project CycleId);
let mine_ = {app}
    | where isnotempty(cycle_) and CycleId == cycle_;
union
    (mine_
    | summarize entries = count(), failures = countif(ResultType =~ 'Failure'),
        first_ = min(TimeGenerated), last_ = max(TimeGenerated), cycle = take_any(CycleId)),
    (mine_
    | extend src_ = {_SRC}
    | where isnotempty(src_)
    | summarize seen_ = min(TimeGenerated) by src_
    | summarize objects = count() by minute_ = bin(seen_, 1m))"""
        frame = self.query(kql, window)
        counted = frame["cycle"].map(lambda c: isinstance(c, str) and bool(c)) if len(frame) else frame
        row = frame[counted].iloc[0] if len(frame) and counted.any() else None
        cycle_id = row["cycle"] if row is not None else None
        if row is None or not isinstance(cycle_id, str) or not int(row["entries"]):
            return LastCycle(None, 0, 0, pd.NaT, pd.NaT, ())  # the export reader reads "" as no cycle
        first, last = (pd.Timestamp(row[c]).tz_convert(UTC) for c in ("first_", "last_"))
        bins = frame[~counted]
        first_seen = sorted(
            (pd.Timestamp(m).tz_convert(UTC), int(n))
            for m, n in zip(bins["minute_"], bins["objects"], strict=True)
        )
        return LastCycle(cycle_id, int(row["entries"]), int(row["failures"]), first, last, tuple(first_seen))

    def entries_for_checks(
        self,
        sp_id: str,
        window: tuple[datetime, datetime],
    ) -> list[dict[str, Any]]:
        """The whole entries the checks read beyond each object's latest one (:meth:`summary` sends those), as
        Graph records:

        - the latest successful create or update of each object whose latest entry is a skip other than
          RedundantExport and StagedDelete (out-of-scope skips: was it provisioned before?);
        - every delete, disable and staged delete (deprovisioning, the deletion threshold);
        - the skips whose steps say NotEffectivelyEntitled and IsSoftDeleted (deprovisioning), and each object's
          newest NotEffectivelyEntitled skip whose steps do not say it is inactive or filtered out (the scope
          inference: "sync only assigned").

        A running initial cycle's entries do not travel: its ETA reads the summary's counts (:meth:`_last_cycle`).

        inference: an entry at the same instant as its object's latest one is taken for it (as ``arg_max``
        takes either) and not sent again.
        """
        app = self._app_filter(sp_id)
        newest = f"""let newest = {app}
    | extend src_ = {_SRC}
    | where isnotempty(src_)
    | summarize newest_ = max(TimeGenerated) by src_;
"""
        # With the latest entry's state, where a query needs it (the steps of the latest entries are read).
        stated = f"""{_state(app)}let newest = state_
    | project src_, newest_ = TimeGenerated, healthy_, skipped_ = status_ == 'skipped' and skip_ != 'stageddelete';
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
        exported = f"""{stated}let exported_ = {app}
    | extend src_ = tostring(parse_json(SourceIdentity).Id)
    | where isnotempty(src_) and ResultType =~ 'Success' and tolower(ProvisioningAction) in ('create', 'update')
    | summarize arg_max(TimeGenerated, Id) by src_
    | join kind=leftouter newest on src_
    | where isnull(newest_) or (TimeGenerated < newest_ and skipped_ and not(healthy_))
    | project Id;
"""
        export_ids = f"{exported}{app}\n| join kind=inner exported_ on Id"
        exports = f"{export_ids}\n| where not({NARROW})\n| project-away Id1"
        narrow_exports = f"{export_ids}\n| where {NARROW}\n{_NARROW_COLUMNS}"
        # has: a superset of the skips whose step details carry SkipReason NotEffectivelyEntitled (the checks read
        # the reason from the steps and keep only those). A query of its own, read after the join: under an "or"
        # with the actions, or before the join, an engine may read the steps of more entries.
        # Of those, the deprovisioning checks read the ones whose import step says IsSoftDeleted (a user deleted
        # in Entra ID after the unassignment: the key as the check reads it); the scope inference the newest
        # one of an active object that no scoping filter excluded, so each object's newest one not ruled out by
        # its steps travels (inference: an object's older skips are not judged otherwise than its newest one).
        # One query: the older skips' steps read once (ids first, then those entries).
        older = f"""{newest}let older_ = {app}
    | where ResultType =~ 'Skipped'
    | extend src_ = {_SRC}
    | join kind=leftouter newest on src_
    | where isnull(newest_) or TimeGenerated < newest_;
"""
        not_entitled = f"""{older}let skips_ = older_
    | where ProvisioningSteps has 'NotEffectivelyEntitled'
    | extend soft_ = {_SOFT_DELETED}, out_ = {_RULED_OUT}
    | project TimeGenerated, Id, src_, soft_, out_;
let kept_ = union
    (skips_ | where soft_ | project Id),
    (skips_ | where not(out_) | summarize arg_max(TimeGenerated, Id) by src_ | project Id)
    | distinct Id;
{app}
| join kind=inner kept_ on Id
| project-away Id1"""
        # One query for the filters on small columns (each entry read once). The failures after the newest
        # success: provkit.data.sources.loganalytics_failures (grouped, the newest of each group whole).
        wanted = ["tolower(ProvisioningAction) in ('delete', 'disable', 'stageddelete')"]
        filtered = beyond_latest("| where " + "\n    or ".join(wanted))
        any_exports = self._has_rows(exported, "exported_", window)
        whole = [exports] if any_exports else []
        whole += [filtered, not_entitled] if self._has_rows(older, "older_", window) else [filtered]
        narrow = [narrow_exports] if any_exports else []
        records: list[dict[str, Any]] = []
        # Whole records first: an entry sent both ways is kept whole (the caller keeps the first of an id).
        for kql in whole:
            records.extend(_marked(self.query(kql, window), self._records))
        for kql in narrow:
            records.extend(_marked(self.query(kql, window), self._narrow_records))
        return records

    def exports_for_checks(
        self,
        sp_id: str,
        window: tuple[datetime, datetime],
        records: list[dict[str, Any]],
        assigned: set[str] | None,
    ) -> list[dict[str, Any]]:
        """The few exports (successful creates and updates) the checks judge one by one, whole, whatever their
        object's state:

        - the newest export whose steps say the object was not assigned, among each object's newest export (the
          scope inference: "sync all");
        - with ``assigned`` (every assigned user, lower-cased ids, from Graph: :func:`assigned_users`), the newest
          export of a user outside it who is not disabled or deleted in ``records`` (the scope inference's other
          "sync all"): the exported users' ids travel packed (a row per day of their newest export), the set
          difference is taken here, and that one export is fetched by id;
        - the exports of the objects that the reference failures in ``records`` point at, by name (references:
          "came into scope later"): each such object's first export after the earliest of those failures and its
          newest.
        """
        app = self._app_filter(sp_id)
        # Among each object's newest export (ids first: the steps test reads only theirs). inference: an object's
        # newest export says whether it is assigned (before this, the findings mode sent each object's latest
        # export and entry, and the scope inference read those).
        ids = f"""let ids_ = {app}
    | where {_EXPORT}
    | extend src_ = {_SRC}
    | summarize arg_max(TimeGenerated, Id) by src_
    | project Id;
"""
        if not self._has_rows(ids, "ids_", window):
            return []  # no export: nothing to judge
        found = self._records(
            self.query(
                f"""{ids}{app}
| join kind=inner ids_ on Id
| where {_UNASSIGNED}
| top 1 by TimeGenerated desc
| project-away Id1""",
                window,
            )
        )
        if assigned is not None:
            found.extend(self._newest_outsider_export(sp_id, window, assigned, records))
        found.extend(self._reference_targets(sp_id, window, records))
        return found

    def _newest_outsider_export(
        self, sp_id: str, window: tuple[datetime, datetime], assigned: set[str], records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        app = self._app_filter(sp_id)
        # Users disabled, deleted or staged for deletion (every such entry travels): their exports say nothing
        # about the scope (provkit.analysis.syncscope).
        left = {
            _source_id(r).lower()
            for r in records
            if str(r.get("provisioningAction") or "").lower() in ("disable", "delete", "stageddelete")
        }
        # inference: a day's ids in one row (make_list); 20,000 ids are about 800 KB.
        days = self.query(
            f"""{app}
| where {_EXPORT}
| extend src_ = tolower({_SRC}), type_ = tolower(tostring(parse_json(SourceIdentity).identityType))
| where isnotempty(src_) and type_ in ('user', '')
| summarize last_ = max(TimeGenerated) by src_
| summarize ids_ = make_list(src_) by day_ = bin(last_, 1d)
| order by day_ desc""",
            window,
        )
        for packed in days["ids_"] if len(days) else []:
            ids = json.loads(packed) if isinstance(packed, str) else list(packed or [])
            outside = sorted({str(i) for i in ids} - assigned - left)
            if not outside:
                continue
            newest: list[dict[str, Any]] = []
            for chunk in _chunks(outside):
                frame = self.query(
                    f"""{app}
| where {_EXPORT}
| where tolower({_SRC}) in {_in(chunk)}
| top 1 by TimeGenerated desc""",
                    window,
                )
                newest.extend(self._records(frame))
            newest.sort(key=lambda r: str(r.get("activityDateTime") or ""))
            return newest[-1:]
        return []

    def _reference_targets(
        self, sp_id: str, window: tuple[datetime, datetime], records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        names: set[str] = set()
        since: str | None = None
        for record in records:
            said = {m.group("other").strip(".'\\\"").lower() for m in _REFERENCE.finditer(json.dumps(record))}
            said.discard("")
            if said:
                names |= said
                when = str(record.get("activityDateTime") or "")
                since = when if since is None or when < since else since
        if not names or since is None:
            return []
        app = self._app_filter(sp_id)
        start = pd.Timestamp(since).tz_convert(UTC)
        found: list[dict[str, Any]] = []
        rid = """tolower(extract(@'"ReportableIdentifier"\\s*:\\s*"([^"\\\\]*)"', 1, ProvisioningSteps))"""
        for chunk in _chunks(sorted(names)):
            # By the identities' names, or by the reportable identifier of each object's newest export (ids
            # first: the steps test reads only those entries' steps).
            matched = f"""let newest_ = {app}
    | where {_EXPORT}
    | extend src_ = {_SRC}
    | summarize arg_max(TimeGenerated, Id) by src_
    | project Id;
let named_ = union
    ({app}
    | where {_EXPORT}
    | where tolower(tostring(parse_json(SourceIdentity).DisplayName)) in {_in(chunk)}
        or tolower(tostring(parse_json(TargetIdentity).DisplayName)) in {_in(chunk)}
    | project src_ = {_SRC}),
    ({app}
    | join kind=inner newest_ on Id
    | where {rid} in {_in(chunk)}
    | project src_ = {_SRC})
    | distinct src_;
let exports_ = {app}
    | where {_EXPORT}
    | extend src_ = {_SRC}
    | join kind=inner named_ on src_;
let ids_ = union
    (exports_ | where TimeGenerated >= {_when(start)} | summarize arg_min(TimeGenerated, Id) by src_),
    (exports_ | summarize arg_max(TimeGenerated, Id) by src_)
    | distinct Id;
{app}
| join kind=inner ids_ on Id
| project-away Id1"""
            found.extend(self._records(self.query(matched, window)))
        return found
