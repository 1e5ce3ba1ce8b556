"""Is the evidence complete? Ranges of the analysed window that the store holds no fetched logs for.

Checks:
- ``store.coverage-gaps`` (warning): the window asked for is only partly covered by fetches (an interrupted
  fetch, a damaged part set aside by ``provkit store check --repair``, a window never fetched). Every other
  finding is computed from the entries the store holds, so failures inside a missing range cannot show; the
  evidence lists the missing ranges and the remedy is the fetch that fills them.
"""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta

from provkit.analysis.checks.facts import Facts
from provkit.analysis.checks.finding import LINKS, SECTIONS, Finding

__all__ = ["CHECKS", "coverage_gaps", "fetch_command"]

SECTION = SECTIONS["working"]


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 1)


def _instant(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def fetch_command(app: str, gaps: list[tuple[datetime, datetime]]) -> str:
    """The ``provkit fetch`` that fills ``gaps`` (fetch asks only for what is not covered in its window)."""
    return (
        f"provkit fetch --app {shlex.quote(app)} --start {_instant(gaps[0][0])} "
        f"--end {_instant(gaps[-1][1] + timedelta(seconds=1) if gaps[-1][1].microsecond else gaps[-1][1])}"
    )


def coverage_gaps(facts: Facts) -> list[Finding]:
    """``store.coverage-gaps``: one warning when fetched coverage of the analysed window has holes."""
    evidence = facts.evidence
    gaps = evidence.coverage_gaps
    window = evidence.window or evidence.coverage_window
    if not gaps or window is None:  # gaps are only known within a window
        return []
    missing = sum((b - a for a, b in gaps), timedelta(0))
    span = window[1] - window[0]
    share = missing / span if span else 1.0
    app = evidence.app_id or evidence.service_principal_id
    rows = [{"from": a, "to": b, "hours": _hours(b - a)} for a, b in gaps]
    return [
        Finding(
            check="store.coverage-gaps",
            section=SECTION,
            severity="warning",
            title=(
                f"The store holds no fetched logs for {len(gaps)} range(s) of the window: {_hours(missing)} h of "
                f"{_hours(span)} h ({share:.0%}) missing"
            ),
            evidence=rows,
            why="Every other finding is computed from the entries the store holds. Failures, skips and cycles in "
            "the missing ranges cannot show, so a quiet result here does not mean a quiet job.",
            remedy=f"Fetch the missing ranges (only what is missing is asked for): {fetch_command(app, gaps)}",
            links=[LINKS["analyze-logs"]],
            count=len(gaps),
        )
    ]


CHECKS = (coverage_gaps,)
