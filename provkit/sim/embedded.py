"""The demo source: the simulated tenant served in-process on a free port, used through the graph source.

Everything downstream runs exactly the code a live tenant gets: msal sign-in against the local authority, the
Graph client, paging, retries. Only the server is local.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

from provkit.data.auth import Settings
from provkit.data.graph import GraphClient
from provkit.data.pacing import AuditPacer
from provkit.data.sources.graph import connect
from provkit.sim.faults import FaultPlan
from provkit.sim.scenarios import SCENARIOS
from provkit.sim.server import RunningServer, start_server
from provkit.sim.tenant import Tenant
from provkit.sim.timefmt import ticks_to_datetime


@dataclass
class DemoTenant:
    """A running simulated tenant and a signed-in client for it. Use as a context manager, or call stop()."""

    seed: int = 7
    users: int = 6000
    days: int = 7
    now: datetime | None = None
    scenarios: tuple[str, ...] | None = None
    faults: str | None = None
    throttle: bool | None = None
    allow_writes: bool = False
    admin: bool = False  # sign in as the registration that holds Synchronization.ReadWrite.All
    server: RunningServer | None = field(init=False, default=None)
    client: GraphClient = field(init=False)
    settings: Settings | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.throttle is None:
            # Graph's 5-per-10-s throttle makes a full demo slow; turn it on with PROVKIT_DEMO_THROTTLE=1.
            self.throttle = os.environ.get("PROVKIT_DEMO_THROTTLE", "0") == "1"
        tenant = Tenant(
            seed=self.seed,
            users_count=self.users,
            days=self.days,
            now=self.now or datetime.now(UTC).replace(microsecond=0),
            scenarios=tuple(self.scenarios or SCENARIOS),
        )
        plan = FaultPlan.parse(self.faults, seed=self.seed) if self.faults else None
        self.server = server = start_server(tenant, port=0, faults=plan, throttle=self.throttle)
        env = server.env()
        if self.admin:
            env["PROVKIT_CLIENT_ID"] = server.admin_client_id
        self.settings = Settings.from_env(env)
        self.client = connect(
            self.settings,
            secret=env["PROVKIT_CLIENT_SECRET"],
            method="secret",
            cache_path=False,
            allow_writes=self.allow_writes,
            # The pacer keeps a client under Graph's throttle; an unthrottled local server needs none.
            pacer=None if self.throttle else AuditPacer(limit=1_000_000, per=1.0),
        )

    @property
    def running(self) -> RunningServer:
        """The server; RuntimeError once stopped."""
        if self.server is None:
            raise RuntimeError("this demo tenant was stopped")
        return self.server

    @property
    def tenant(self) -> Tenant:
        return self.running.tenant

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    @property
    def present(self) -> datetime:
        """The simulated present (UTC): the end of the history the tenant serves."""
        return ticks_to_datetime(self.tenant.now_ticks)

    def env(self) -> dict[str, str]:
        """The PROVKIT_* settings that point provkit at this tenant's server (its local secret included)."""
        return self.running.env()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> DemoTenant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
