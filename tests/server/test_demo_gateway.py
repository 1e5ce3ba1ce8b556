"""The product reaches the simulated tenant only through its demo gateway (provkit.data.sources.demo), which finds
the simulator as a plugin through the ``provkit.demo`` entry point; without one, the demo says what to do."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest
import requests

from provkit.cli.main import main
from provkit.data.sources import demo as gateway
from provkit.errors import ConfigError
from provkit.sim.scenarios import SCENARIOS
from provkit.workbook.session import demo_tenant, simulated_tenant_ids

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture
def no_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if provkit were installed without its simulator: no entry point in the ``provkit.demo`` group."""
    gateway.find_simulator.cache_clear()
    monkeypatch.setattr(metadata, "entry_points", lambda **_: metadata.EntryPoints(()))
    yield
    gateway.find_simulator.cache_clear()


@pytest.fixture
def broken_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A ``provkit.demo`` entry point that names a module nobody installed."""
    point = metadata.EntryPoint(
        name="simulator", value="provkit_no_such_simulator", group=gateway.ENTRY_POINT_GROUP
    )
    gateway.find_simulator.cache_clear()
    monkeypatch.setattr(metadata, "entry_points", lambda **_: metadata.EntryPoints((point,)))
    yield
    gateway.find_simulator.cache_clear()


def test_the_simulator_is_declared_as_the_demo_plugin_and_the_install_registered_it() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert declared["project"]["entry-points"][gateway.ENTRY_POINT_GROUP] == {
        "simulator": "provkit.sim.plugin"
    }
    installed = {p.name: p.value for p in metadata.entry_points(group=gateway.ENTRY_POINT_GROUP)}
    assert installed == {"simulator": "provkit.sim.plugin"}, (
        "the installed metadata lacks the provkit.demo entry point: run 'make install' again"
    )


def test_a_demo_tenant_started_through_the_gateway_serves_graph_and_stops() -> None:
    demo = gateway.start_demo_tenant(
        users=120, days=2, now=NOW, scenarios=("healthy", "paused"), throttle=False
    )
    try:
        assert demo.tenant_id in gateway.simulated_tenant_ids([7])
        assert demo.present == NOW  # the end of the history it serves
        names = {sp["displayName"] for sp in demo.client.items("/servicePrincipals")}
        assert {"Salesforce", "Box"} <= names
        env = demo.env()
        assert env["PROVKIT_TENANT_ID"] == demo.tenant_id
        graph_url = env["PROVKIT_GRAPH_URL"]
    finally:
        demo.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(graph_url, timeout=5, verify=False)


def test_every_scenario_maps_to_the_app_the_demo_tenant_serves_for_it() -> None:
    for name, scenario in SCENARIOS.items():
        assert gateway.scenario_app(name) == scenario.app
    assert gateway.scenario_app("no-such-scenario") is None


def test_the_simulated_tenant_ids_follow_the_seed() -> None:
    seven, eight = gateway.simulated_tenant_ids([7]), gateway.simulated_tenant_ids([8])
    assert len(seven) == len(eight) == 1 and seven != eight
    assert simulated_tenant_ids({}) == seven  # the workbook's default seed
    assert simulated_tenant_ids({"PROVKIT_DEMO_SEED": "8"}) == seven | eight


@pytest.mark.usefixtures("no_simulator")
def test_without_a_simulator_the_demo_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        demo_tenant(users=60, days=1)
    text = str(caught.value)
    assert "not installed" in text and "provkit.demo" in text and "make install" in text
    assert main(["apps", "--demo"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("provkit: The simulated tenant (the demo) is not installed") and "What to do:" in err
    )
    assert "Traceback" not in err
    # Nothing stored can be recognised as simulated, and saying so is not an error.
    assert simulated_tenant_ids() == set()


@pytest.mark.usefixtures("broken_simulator")
def test_a_plugin_that_cannot_load_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        gateway.scenario_app("healthy")
    text = str(caught.value)
    assert (
        "provkit_no_such_simulator" in text
        and "could not be loaded" in text
        and "ModuleNotFoundError" in text
    )


def test_the_product_does_not_load_the_simulator_until_the_demo_is_asked_for() -> None:
    """Every product layer imported, an offline session described: no provkit.sim module loaded."""
    code = (
        "import sys\n"
        "import provkit.cli.commands, provkit.workbook.notebook, provkit.workbook.reports, provkit.workbook.session\n"
        "from provkit.workbook.session import check_source\n"
        "check_source('store')\n"
        "print(sorted(m for m in sys.modules if m.startswith('provkit.sim')))\n"
        "from provkit.data.sources import demo\n"
        "demo.scenario_app('healthy')\n"
        "print('provkit.sim.plugin' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split("\n")[:2] == ["[]", "True"], done.stdout + done.stderr
