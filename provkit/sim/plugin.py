"""What the product may ask of the simulator: the ``provkit.demo`` plugin.

The product never imports :mod:`provkit.sim`. Its demo source (:mod:`provkit.data.sources.demo`) finds this module
through the ``provkit.demo`` entry point (pyproject.toml's ``[project.entry-points."provkit.demo"]``) and calls
only the three functions below, so the simulator can change inside as it likes while these stay stable.
"""

from __future__ import annotations

from datetime import datetime

from provkit.sim import ids
from provkit.sim.embedded import DemoTenant
from provkit.sim.scenarios import SCENARIOS


def start_tenant(
    *,
    seed: int = 7,
    users: int = 6000,
    days: int = 7,
    now: datetime | None = None,
    scenarios: tuple[str, ...] | None = None,
    faults: str | None = None,
    throttle: bool | None = None,
    allow_writes: bool = False,
    admin: bool = False,
) -> DemoTenant:
    """A simulated tenant served in-process on a free port, with a client signed in to it (see DemoTenant)."""
    return DemoTenant(
        seed=seed,
        users=users,
        days=days,
        now=now,
        scenarios=scenarios,
        faults=faults,
        throttle=throttle,
        allow_writes=allow_writes,
        admin=admin,
    )


def tenant_id(seed: int) -> str:
    """The tenant id of the simulated tenant started with ``seed`` (the same for every run with that seed)."""
    return ids.IdCodec(seed).encode(*ids.TENANT_ID)


def scenario_app(scenario: str) -> str | None:
    """The display name of the app that plays ``scenario`` in the demo tenant, or None for an unknown scenario."""
    found = SCENARIOS.get(scenario)
    return found.app if found is not None else None
