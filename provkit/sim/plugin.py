"""What the product may ask of the simulator: the ``provkit.demo`` plugin.

The product never imports :mod:`provkit.sim`. Its demo source (:mod:`provkit.data.sources.demo`) finds this module
through the ``provkit.demo`` entry point (pyproject.toml's ``[project.entry-points."provkit.demo"]``) and calls
only the functions below, so the simulator can change inside as it likes while these stay stable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime

from provkit.sim import ids
from provkit.sim.embedded import DemoTenant
from provkit.sim.fleet import RunningFleet
from provkit.sim.fleet import start_fleet as _start_fleet
from provkit.sim.scenarios import SCENARIOS
from provkit.sim.tenant import Tenant


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


def start_fleet(
    *,
    seeds: Iterable[int] = (7, 8),
    users: int = 6000,
    days: int = 7,
    now: datetime | None = None,
    scenarios: tuple[str, ...] | None = None,
    throttle: bool | None = None,
    without_diagnostic_settings: Iterable[int] = (),
    without_consent: Iterable[int] = (),
) -> RunningFleet:
    """Several simulated tenants (one per seed, the first the home tenant) served by one server on a free port,
    each with its own Log Analytics workspace; its ``env()`` holds the settings every tenant shares and its
    ``members`` each tenant's id, workspace id and seed. The seeds in ``without_diagnostic_settings`` get a
    workspace without the provisioning tables, those in ``without_consent`` no consent for the app."""
    seeds = list(dict.fromkeys(seeds))
    if throttle is None:  # as DemoTenant: Graph's throttle only with PROVKIT_DEMO_THROTTLE=1
        throttle = os.environ.get("PROVKIT_DEMO_THROTTLE", "0") == "1"
    moment = now or datetime.now(UTC).replace(microsecond=0)
    tenants = [
        Tenant(seed=seed, users_count=users, days=days, now=moment, scenarios=tuple(scenarios or SCENARIOS))
        for seed in seeds
    ]
    no_tables, no_consent = set(without_diagnostic_settings), set(without_consent)
    return _start_fleet(
        tenants,
        throttle=throttle,
        without_diagnostic_settings=frozenset(i for i, seed in enumerate(seeds) if seed in no_tables),
        without_consent=frozenset(i for i, seed in enumerate(seeds) if seed in no_consent),
    )


def tenant_id(seed: int) -> str:
    """The tenant id of the simulated tenant started with ``seed`` (the same for every run with that seed)."""
    return ids.IdCodec(seed).encode(*ids.TENANT_ID)


def scenario_app(scenario: str) -> str | None:
    """The display name of the app that plays ``scenario`` in the demo tenant, or None for an unknown scenario."""
    found = SCENARIOS.get(scenario)
    return found.app if found is not None else None
