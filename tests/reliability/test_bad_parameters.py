"""Bad parameters: an unknown app, an ambiguous name, an unknown cloud, empty or reversed windows, dates in the
future, spans and instants that do not parse. Every command that takes them answers with a clear message (what
was wrong, in the user's own words) and exit code 2, never a traceback, against the simulator as a live tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provkit.sim.server import RunningServer

from .support import AMBIGUOUS, live_env, make_tenant, run_cli, serve

pytestmark = pytest.mark.reliability

UNKNOWN_GUID = "00000000-1111-2222-3333-444444444444"

# (case id, extra arguments, environment changes, what the message must say: what was wrong, then the remedy)
CASES = [
    ("unknown-app", ["--app", "No Such App"], {}, ["'No Such App'", "Enterprise applications"]),
    ("unknown-app-id", ["--app", UNKNOWN_GUID], {}, [UNKNOWN_GUID, "object id or appId"]),
    ("ambiguous-name", ["--app", AMBIGUOUS], {}, [f"2 service principals match '{AMBIGUOUS}'", "object id"]),
    ("unknown-cloud", ["--app", "Zendesk"], {"PROVKIT_CLOUD": "mars"}, ["PROVKIT_CLOUD='mars'", "usgov"]),
    ("empty-span", ["--app", "Zendesk", "--since", "0d"], {}, ["'0d'", "empty"]),
    ("empty-window", ["--app", "Zendesk", "--start", "2025-03-01T10:00Z", "--end", "2025-03-01T10:00Z"], {},
     ["empty or reversed", "2025-03-01 10:00"]),
    ("reversed-window", ["--app", "Zendesk", "--start", "2025-03-02", "--end", "2025-03-01"], {},
     ["empty or reversed", "Swap --start and --end"]),
    ("future-start", ["--app", "Zendesk", "--start", "2099-01-01"], {}, ["future", "2099-01-01"]),
    ("future-window", ["--app", "Zendesk", "--start", "2099-01-01", "--end", "2099-01-02"], {},
     ["future", "2099-01-01"]),
    ("span-unreadable", ["--app", "Zendesk", "--since", "7x"], {}, ["'7x' is not a time span", "7d"]),
    ("instant-unreadable", ["--app", "Zendesk", "--start", "yesterday"], {}, ["'yesterday'", "ISO-8601"]),
    ("span-and-window", ["--app", "Zendesk", "--since", "7d", "--start", "2025-03-01"], {},
     ["either --since or --start/--end"]),
]  # fmt: skip
COMMANDS = ["fetch", "cycles", "diagnose", "explain", "report"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = serve(make_tenant(now=None), tmp_path_factory.mktemp("parameters-server"))
    yield running
    running.stop()


@pytest.fixture
def env(server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = live_env(server, tmp_path)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PROVKIT_CERT_PATH", raising=False)
    return values


def argv_for(command: str, args: list[str], out: Path) -> list[str]:
    if command == "explain":
        return [command, *args, "--object", "someone@contoso.com"]
    if command == "report":  # one notebook: should the parameters slip through, the run stays short
        return [command, *args, "--out", str(out), "--notebook", "00-triage"]
    return [command, *args]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("args", "changes", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_parameters_get_a_clear_message_and_exit_code_2(
    command: str,
    args: list[str],
    changes: dict[str, str],
    says: list[str],
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in changes.items():
        monkeypatch.setenv(name, value)
    run = run_cli(argv_for(command, args, tmp_path / "reports"), capsys)
    assert "Traceback" not in run.text
    assert run.code == 2, run.text
    if command != "report":  # a report names an app it cannot resolve, reports the others, then exits 2
        first = run.err.strip().splitlines()[0] if run.err.strip() else ""
        assert first.startswith("provkit: "), run.text  # one short message, not a dump
    # says[0] is what was wrong; the rest the remedy, which a report's per-app line leaves out (noted)
    for text in says if command != "report" else says[:1]:
        assert text in run.err, (text, run.err)
    assert not list(tmp_path.rglob("*.ipynb")), "a report ran despite the bad parameters"


@pytest.mark.parametrize("command", ["cycles", "diagnose", "explain"])
def test_offline_an_app_not_in_the_store_is_exit_code_2(
    command: str, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_cli(argv_for(command, ["--app", "No Such App", "--offline"], tmp_path), capsys)
    assert run.code == 2 and "Traceback" not in run.text, run.text
    assert "No app matching 'No Such App' in the store" in run.err and "Fetch or import it first" in run.err


def test_apps_with_an_unknown_cloud_is_exit_code_2(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROVKIT_CLOUD", "mars")
    run = run_cli(["apps"], capsys)
    assert run.code == 2 and "PROVKIT_CLOUD='mars' is not a cloud" in run.err and "Traceback" not in run.text
