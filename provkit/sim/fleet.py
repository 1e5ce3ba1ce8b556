"""Several simulated tenants behind one server, as a managed service provider meets them: one identity platform,
one Graph and one Log Analytics query endpoint for every tenant, each tenant with its own history and workspace.

The real services are shared by every tenant: sign-in names the tenant in its path
(``{authority}/{tenant}/oauth2/v2.0/token``), Graph serves the tenant the bearer token was issued in, and the Log
Analytics query API serves the workspace named in its path (``POST /v1/workspaces/{id}/query``). So one server plays
them all here, and the settings it writes (``env()``) are as true for every tenant as for the first: the URLs, the
client id and its secret are the same for all (one multi-tenant app registration, consented in each tenant, as an
MSP's is); only ``PROVKIT_TENANT_ID`` and ``PROVKIT_WORKSPACE_ID`` differ by tenant, and :meth:`RunningFleet.members`
lists them.

What the router decides (see :class:`_FleetHandler`):

- sign-in requests go to the tenant named in the path (an unknown one to the first tenant, which answers the
  identity platform's "tenant not found");
- Graph requests go to the tenant of the bearer token's ``tid`` claim (the token is then verified by that tenant);
- a Log Analytics query goes to the workspace named in the path, for a token of the workspace's own tenant or of
  the first tenant. inference: the first tenant plays the MSP's home tenant with Azure Lighthouse delegation over
  its customers' workspaces, so a home-tenant token may read every workspace of the fleet (not documented with an
  example; Lighthouse's docs describe the access, not the wire). An unknown workspace id answers 404
  ``PathNotFoundError`` "The requested path does not exist" (the message the Log Analytics API returns for a
  nonexistent workspace id, as the Azure SDK's maintainers quote it: Azure/azure-sdk-for-python issue 32798).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from provkit.sim.certs import make_client_certificate
from provkit.sim.faults import FaultPlan
from provkit.sim.handler import RequestHandler, ThreadedTLSServer
from provkit.sim.loganalytics import Workspace
from provkit.sim.routes import GraphApp
from provkit.sim.server import listen, registrations_for, serve_in_thread, tenant_app, write_private_lines
from provkit.sim.tenant import Tenant

__all__ = ["FleetMember", "RunningFleet", "start_fleet"]


def _token_tenant(authorization: str | None) -> str | None:
    """The ``tid`` claim of a bearer token, unverified (only to pick the tenant that then verifies it)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        return None
    tid = payload.get("tid") if isinstance(payload, dict) else None
    return str(tid).lower() if tid else None


class _FleetHandler(RequestHandler):
    """The request handler of a fleet: picks the tenant a request is for, then answers as that tenant's server."""

    tenants: dict[str, GraphApp]  # tenant id -> its Graph, authority and workspace
    workspaces: dict[str, GraphApp]  # workspace id -> the tenant that owns it
    home: GraphApp  # the first tenant

    def _dispatch(self, method: str) -> None:
        self.app = self._route()
        super()._dispatch(method)

    def _route(self) -> GraphApp:
        parts = [p for p in urlsplit(self.path).path.split("/") if p]
        if parts and parts[0] not in ("v1.0", "beta", "v1", "_sim"):
            # sign-in: /{tenant}/oauth2/v2.0/token, /{tenant}/v2.0/.well-known/openid-configuration, ...
            return self.tenants.get(parts[0].lower(), self.home)
        if parts and parts[0] == "_sim":
            return self.tenants.get(self.headers.get("x-provkit-tenant", "").lower(), self.home)
        return self.tenants.get(_token_tenant(self.headers.get("Authorization")) or "", self.home)

    def _log_analytics(
        self, workspace: Workspace, method: str, parts: list[str], raw_body: bytes
    ) -> tuple[int, dict, dict]:
        owner = self.workspaces.get(parts[2].lower()) if len(parts) > 2 else None
        if owner is not None and self.app is not owner and self.app is not self.home:
            self.app = owner  # a token of a third tenant: the owner's authority refuses it
        # Unknown workspace: the token's tenant answers (404 once the token is verified).
        target = owner.workspace if owner is not None and owner.workspace is not None else workspace
        return super()._log_analytics(target, method, parts, raw_body)


@dataclass(frozen=True)
class FleetMember:
    """One tenant of a fleet: its id, its workspace's id and whether its diagnostic settings feed the workspace
    and the MSP's app is consented in it."""

    tenant_id: str
    workspace_id: str
    seed: int
    diagnostic_settings: bool = True
    consented: bool = True


@dataclass
class RunningFleet:
    """A started fleet: one server for several tenants (the first is the MSP's home tenant)."""

    base_url: str
    port: int
    apps: list[GraphApp]
    members: list[FleetMember]
    ca_path: Path
    client_id: str
    client_secret: str = field(repr=False)
    state_dir: Path
    _httpd: ThreadedTLSServer = field(repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _owns_state_dir: bool = field(default=False, repr=False)

    @property
    def tenants(self) -> list[Tenant]:
        return [app.tenant for app in self.apps]

    def env(self) -> dict[str, str]:
        """The PROVKIT_* settings for the fleet: shared by every tenant, with the first tenant and its workspace
        as the defaults (the secret included: it is a local one)."""
        home = self.members[0]
        return {
            "PROVKIT_TENANT_ID": home.tenant_id,
            "PROVKIT_CLIENT_ID": self.client_id,
            "PROVKIT_CLIENT_SECRET": self.client_secret,
            "PROVKIT_CLOUD": "global",
            "PROVKIT_AUTHORITY_URL": self.base_url,
            "PROVKIT_GRAPH_URL": self.base_url,
            "PROVKIT_CA_BUNDLE": str(self.ca_path),
            "PROVKIT_LOGANALYTICS_URL": self.base_url,
            "PROVKIT_WORKSPACE_ID": home.workspace_id,
        }

    def env_lines(self) -> list[str]:
        """The env file's lines: the settings, then each tenant and its workspace as comments."""
        lines = [f"{k}={v}" for k, v in self.env().items()]
        lines.append(
            "# the fleet: every tenant signs in with the client id above; --workspace WORKSPACE=TENANT"
        )
        lines.extend(f"# {m.workspace_id}={m.tenant_id}" for m in self.members)
        return lines

    def write_env_file(self, path: Path) -> None:
        """Write :meth:`env_lines` to ``path`` (mode 0600: it holds the local secret), replacing it atomically."""
        write_private_lines(path, self.env_lines())

    def stop(self) -> None:
        """Stop serving every tenant; remove the TLS files when the folder was a temporary one."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> RunningFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_fleet(
    tenants: list[Tenant],
    *,
    port: int = 0,
    faults: FaultPlan | None = None,
    throttle: bool = True,
    state_dir: Path | None = None,
    token_lifetime: int = 3600,
    without_diagnostic_settings: frozenset[int] = frozenset(),
    without_consent: frozenset[int] = frozenset(),
) -> RunningFleet:
    """Serve ``tenants`` (at least one; distinct seeds) from one server on 127.0.0.1, in a thread.

    The first tenant is the home tenant; the app registration (client id, secret, certificate) is the first
    tenant's, registered in every tenant except those whose index is in ``without_consent``. A tenant whose index
    is in ``without_diagnostic_settings`` has a workspace without the provisioning tables.
    """
    if not tenants:
        raise ValueError("a fleet needs at least one tenant")
    if len({t.tenant_id for t in tenants}) != len(tenants):
        raise ValueError("the tenants of a fleet need distinct seeds")
    state = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="provkit-fleet-"))
    state.mkdir(parents=True, exist_ok=True)
    httpd, ca_path = listen(port, state)
    cert_path, _thumbprint = make_client_certificate(state, "provkit-reader")
    secret = base64.urlsafe_b64encode(os.urandom(30)).decode()
    base_url = f"https://127.0.0.1:{httpd.server_address[1]}"
    home_registrations, client_ids = registrations_for(tenants[0], cert_path.read_bytes(), secret)
    apps: list[GraphApp] = []
    members: list[FleetMember] = []
    for index, tenant in enumerate(tenants):
        consented = index not in without_consent
        registrations = home_registrations if consented else home_registrations[1:]
        tables = index not in without_diagnostic_settings
        app = tenant_app(
            tenant,
            list(registrations),
            base_url,
            faults=faults,
            throttle=throttle,
            token_lifetime=token_lifetime,
            workspace_tables=tables,
        )
        apps.append(app)
        assert app.workspace is not None
        members.append(
            FleetMember(tenant.tenant_id, app.workspace.workspace_id, tenant.seed, tables, consented)
        )
    handler = type(
        "FleetHandler",
        (_FleetHandler,),
        {
            "app": apps[0],
            "home": apps[0],
            "tenants": {app.tenant.tenant_id.lower(): app for app in apps},
            "workspaces": {m.workspace_id.lower(): app for m, app in zip(members, apps, strict=True)},
        },
    )
    httpd.RequestHandlerClass = handler
    return RunningFleet(
        base_url=base_url,
        port=httpd.server_address[1],
        apps=apps,
        members=members,
        ca_path=ca_path,
        client_id=client_ids["reader"],
        client_secret=secret,
        state_dir=state,
        _httpd=httpd,
        _thread=serve_in_thread(httpd),
        _owns_state_dir=state_dir is None,
    )
