"""The suite's tally: what the tests observed (server request logs, inputs fed, files and lines scanned), printed
as one line at the end of the run, e.g. ``reliability: 412 requests faulted, 87 inputs tried, 0 secrets found,
0 writes sent, 9 stores damaged, 6 writers raced, 0 entries lost``. Every number is added by a test from its own observations; none is a constant.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support import SENTINEL, LiveSession, Tally, live_session, make_tenant, serve

_TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    return _TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    t = _TALLY
    if t.requests_seen or t.inputs_tried or t.places_scanned or t.requests_checked or t.stores_damaged:
        terminalreporter.write_line(t.line())


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSession]:
    """The command line run against the simulator as a live tenant with a sentinel client secret (once per run:
    the secrets and read-only tests read the same outputs, files, logs and request log)."""
    server = serve(make_tenant(now=None), tmp_path_factory.mktemp("live-server"), secret=SENTINEL)
    try:
        yield live_session(server, tmp_path_factory.mktemp("live-home"))
    finally:
        server.stop()
