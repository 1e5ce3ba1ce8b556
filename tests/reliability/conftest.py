"""The suite's tally: what the tests observed (server request logs, inputs fed, files and lines scanned), printed
as one line at the end of the run, e.g. ``reliability: 412 requests faulted, 87 inputs tried, 0 secrets found,
0 writes sent``. Every number is added by a test from its own observations; none is a constant.
"""

from __future__ import annotations

import pytest

from .support import Tally

_TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    return _TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    t = _TALLY
    if t.requests_seen or t.inputs_tried or t.places_scanned or t.requests_checked:
        terminalreporter.write_line(t.line())
