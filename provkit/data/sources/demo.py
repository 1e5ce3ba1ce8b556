"""The demo source's gateway: the only way the product reaches the simulated tenant.

The simulator (``provkit.sim``) stands apart from the product: no product module imports it, and an import-linter
contract in pyproject.toml checks that. The product finds it at run time as a plugin instead: an entry point in
the group ``provkit.demo`` (the one named ``simulator`` when there are several) whose object offers

- ``start_tenant(**options)``: a simulated tenant served on 127.0.0.1, with a signed-in Graph client
  (:class:`DemoTenantHandle`); the options are ``seed``, ``users``, ``days``, ``now``, ``scenarios``, ``faults``,
  ``throttle``, ``allow_writes`` and ``admin``;
- ``tenant_id(seed)``: the tenant id the simulated tenant with that seed uses;
- ``scenario_app(scenario)``: the display name of the app that plays a demo scenario, or None;
- optionally ``start_fleet(**options)``: several simulated tenants behind one server (:class:`DemoFleetHandle`), for
  fleet reports; the options are ``seeds``, ``users``, ``days``, ``now``, ``scenarios``, ``throttle``,
  ``without_diagnostic_settings`` and ``without_consent`` (seeds).

provkit declares its own simulator as that plugin, so an installed provkit (``pip install``, or ``make install``
in a checkout) always has one. Without it, starting the demo raises :class:`~provkit.errors.ConfigError` saying
what to do, and :func:`simulated_tenant_ids` is empty (nothing is then recognised as simulated).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from importlib import metadata
from typing import Any, Protocol, cast

from provkit.data.graph import GraphClient
from provkit.errors import ConfigError

ENTRY_POINT_GROUP = "provkit.demo"
PREFERRED_NAME = "simulator"
REQUIRED = ("start_tenant", "tenant_id", "scenario_app")

_REINSTALL = (
    "Install provkit with its simulator: 'pip install provkit' (or, in a checkout, 'make install' or "
    "'pip install -e .'), which declares the plugin; or read a live tenant (set PROVKIT_TENANT_ID) or the store "
    "(--offline, source='store') instead of the demo."
)


class DemoTenantHandle(Protocol):
    """A running simulated tenant as the product uses it; ``stop()`` shuts its server down."""

    @property
    def client(self) -> GraphClient: ...

    @property
    def tenant_id(self) -> str: ...

    @property
    def present(self) -> datetime: ...  # the simulated now (UTC): where the tenant's history ends

    def env(self) -> dict[str, str]: ...  # the PROVKIT_* settings that point at its server (a local secret)

    @property
    def tenant(self) -> Any: ...  # the simulator's own tenant object (prefer ``present``)

    @property
    def server(self) -> Any: ...  # the simulator's own server object (prefer ``env()``)

    def stop(self) -> None: ...


class DemoFleetMember(Protocol):
    """One tenant of a simulated fleet."""

    @property
    def tenant_id(self) -> str: ...

    @property
    def workspace_id(self) -> str: ...

    @property
    def seed(self) -> int: ...


class DemoFleetHandle(Protocol):
    """Several simulated tenants behind one server; ``env()`` holds the settings they share (the first tenant and
    its workspace as defaults), ``members`` each tenant; ``stop()`` shuts the server down."""

    @property
    def members(self) -> Sequence[DemoFleetMember]: ...

    def env(self) -> dict[str, str]: ...

    def stop(self) -> None: ...


class Simulator(Protocol):
    """The plugin's side of the gateway (see the module docstring)."""

    def start_tenant(
        self,
        *,
        seed: int = ...,
        users: int = ...,
        days: int = ...,
        now: datetime | None = ...,
        scenarios: tuple[str, ...] | None = ...,
        faults: str | None = ...,
        throttle: bool | None = ...,
        allow_writes: bool = ...,
        admin: bool = ...,
    ) -> DemoTenantHandle: ...

    def tenant_id(self, seed: int) -> str: ...

    def scenario_app(self, scenario: str) -> str | None: ...


@functools.cache
def find_simulator() -> Simulator | None:
    """The installed simulator plugin, or None when no ``provkit.demo`` entry point is declared.

    Raises ConfigError when one is declared but cannot be loaded or lacks what the gateway calls.
    """
    points = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name != PREFERRED_NAME)
    if not points:
        return None
    point = points[0]
    try:
        plugin = point.load()
    except Exception as exc:  # a broken plugin is reported, whatever broke in it
        raise ConfigError(
            f"The simulated tenant's plugin {point.name} = {point.value!r} (entry point group "
            f"{ENTRY_POINT_GROUP!r}) could not be loaded: {type(exc).__name__}: {exc}.",
            remedy=_REINSTALL,
        ) from exc
    missing = [name for name in REQUIRED if not callable(getattr(plugin, name, None))]
    if missing:
        raise ConfigError(
            f"The simulated tenant's plugin {point.name} = {point.value!r} (entry point group "
            f"{ENTRY_POINT_GROUP!r}) lacks {', '.join(missing)}.",
            remedy=_REINSTALL,
        )
    return cast(Simulator, plugin)


def simulator() -> Simulator:
    """The installed simulator plugin; ConfigError with what to do when there is none."""
    plugin = find_simulator()
    if plugin is None:
        raise ConfigError(
            "The simulated tenant (the demo) is not installed: no plugin declares the entry point group "
            f"{ENTRY_POINT_GROUP!r}.",
            remedy=_REINSTALL,
        )
    return plugin


def start_demo_tenant(**options: Any) -> DemoTenantHandle:
    """A simulated tenant served in-process, with a signed-in client (options: see the module docstring)."""
    return simulator().start_tenant(**options)


def start_demo_fleet(**options: Any) -> DemoFleetHandle:
    """Several simulated tenants served by one server (options: see the module docstring); ConfigError when the
    installed simulator cannot play a fleet."""
    start = getattr(simulator(), "start_fleet", None)
    if not callable(start):
        raise ConfigError(
            "The installed simulated tenant cannot play several tenants (its plugin has no start_fleet).",
            remedy="Update provkit (its own simulator plays fleets), or report on one simulated tenant.",
        )
    return cast(DemoFleetHandle, start(**options))


def simulated_tenant_ids(seeds: Iterable[int]) -> set[str]:
    """The tenant ids simulated tenants with these seeds use; empty when no simulator is installed."""
    plugin = find_simulator()
    if plugin is None:
        return set()
    return {plugin.tenant_id(seed) for seed in seeds}


def scenario_app(scenario: str) -> str | None:
    """The display name of the app that plays ``scenario`` in the demo tenant, or None for an unknown one."""
    return simulator().scenario_app(scenario)
