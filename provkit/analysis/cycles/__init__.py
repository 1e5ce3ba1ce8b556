"""Provisioning cycles rebuilt from the logs and job-status snapshots, and the timing questions they answer.

A cycle is one iteration of a synchronization job (reference section 3.1): the **initial** cycle evaluates every
object in scope and persists a watermark; **incremental** cycles then process only the changes since the
watermark, every ``schedule.interval`` (PT40M for most gallery apps). A restart, an attribute-mapping change or a
scoping change clears the watermark and the next cycle is initial again. A quarantined job is retried 6 h, 12 h
and 24 h after the first failure, then daily, and is disabled after 28 days.

What the evidence shows, and what this module makes of it:

- log entries carry ``cycleId``: each distinct id is an observed cycle, timed first to last entry (a lower bound);
- a job-status snapshot's ``lastExecution`` (and the two ``lastSuccessful...`` executions) give a cycle's exact
  ``timeBegan``/``timeEnded``; they are matched to logged cycles by time overlap, because the execution's
  ``activityIdentifier`` is not documented to equal the logs' ``cycleId``;
- an incremental cycle with no changes writes nothing, and quarantine attempts that fail on credentials write
  nothing either: such cycles are *inferred*, from the interval between observed cycles or from the retry
  schedule while the job is quarantined;
- directory audits tell why a cycle was initial (restart, attribute-mapping or scoping change).

Public functions: :func:`cycles_table`, :func:`summary`, :func:`initial_cycle_eta`, :func:`change_eta`,
:func:`quarantine_timeline`, :func:`format_cycles` and :func:`cycles_as_records`. They read an
:class:`~provkit.data.evidence.Evidence` (or the tables in it) and never fetch.

The modules, one job each: ``rules`` (documented facts, thresholds, the table's columns), ``values`` (small value
helpers), ``context`` (audits, snapshots, executions, quarantine episodes), ``observed`` (the per-cycleId pass
over the log entries), ``reconstruct`` (the cycles table), ``eta`` (the initial cycle's end), ``state`` (job
state, change ETA, quarantine timeline) and ``summaries`` (the summary and its terminal text).
"""

from __future__ import annotations

from provkit.analysis.cycles.eta import Eta, initial_cycle_eta, progress_observations
from provkit.analysis.cycles.reconstruct import cycles_as_records, cycles_table
from provkit.analysis.cycles.rules import CYCLE_COLUMNS
from provkit.analysis.cycles.state import ChangeEta, QuarantineTimeline, change_eta, quarantine_timeline
from provkit.analysis.cycles.summaries import CycleSummary, format_cycles, summary

__all__ = [
    "CYCLE_COLUMNS",
    "ChangeEta",
    "CycleSummary",
    "Eta",
    "QuarantineTimeline",
    "change_eta",
    "cycles_as_records",
    "cycles_table",
    "format_cycles",
    "initial_cycle_eta",
    "progress_observations",
    "quarantine_timeline",
    "summary",
]
