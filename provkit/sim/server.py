"""A local, TLS-speaking server that plays Microsoft Graph (v1.0 subset) and the identity platform.

It serves a :class:`~provkit.sim.tenant.Tenant`: the provisioning logs, directory audits, service principals,
app role assignments, users, groups and synchronization jobs that provkit reads, plus the POST actions
(validateCredentials, provisionOnDemand, start, pause, restart). It answers with Graph's error bodies and
headers, throttles ``/auditLogs`` at 5 requests per 10 s per calling app and tenant (429 with Retry-After), and
injects faults on demand. Nothing here reaches out to the network.

This module is its lifecycle: :func:`start_server` makes the TLS material and the app registrations, starts the
server (in a thread by default) and returns a :class:`RunningServer`, whose ``env()`` points provkit at it and
whose ``stop()`` shuts it down. The Graph routes are in :mod:`provkit.sim.routes`, the HTTP plumbing (handler,
errors, throttle, faults, ``/_sim/`` endpoints for tests) in :mod:`provkit.sim.handler`, the provisionOnDemand
answers in :mod:`provkit.sim.ondemand`.
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from provkit.sim import ids
from provkit.sim.authority import Authority, Registration
from provkit.sim.certs import make_client_certificate, make_tls_material
from provkit.sim.faults import FaultPlan
from provkit.sim.handler import (
    THROTTLE_LIMIT,
    THROTTLE_WINDOW,
    HttpError,
    RequestHandler,
    RequestRecord,
    ThreadedTLSServer,
    Throttle,
)
from provkit.sim.loganalytics import LOG_ANALYTICS_RESOURCE, Workspace, workspace_id_for
from provkit.sim.loganalytics import THROTTLE_LIMIT as LA_THROTTLE_LIMIT
from provkit.sim.loganalytics import THROTTLE_WINDOW as LA_THROTTLE_WINDOW
from provkit.sim.routes import DEFAULT_TOP, MAX_TOP, GraphApp
from provkit.sim.tenant import Tenant

__all__ = [
    "DEFAULT_TOP",
    "MAX_TOP",
    "THROTTLE_LIMIT",
    "THROTTLE_WINDOW",
    "GraphApp",
    "HttpError",
    "RequestRecord",
    "RunningServer",
    "Throttle",
    "listen",
    "registrations_for",
    "serve_in_thread",
    "start_server",
    "tenant_app",
]


@dataclass
class RunningServer:
    """A started simulator: where it listens and how to talk to it."""

    base_url: str
    port: int
    tenant: Tenant
    graph: GraphApp
    authority: Authority
    ca_path: Path
    client_id: str
    client_secret: str = field(repr=False)
    cert_path: Path
    cert_thumbprint: str
    restricted_client_id: str
    device_client_id: str
    admin_client_id: str
    state_dir: Path
    _httpd: ThreadedTLSServer = field(repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _owns_state_dir: bool = field(default=False, repr=False)

    def env(self) -> dict[str, str]:
        """The PROVKIT_* settings that point provkit at this server (the secret included: it is a local one)."""
        return {
            "PROVKIT_TENANT_ID": self.tenant.tenant_id,
            "PROVKIT_CLIENT_ID": self.client_id,
            "PROVKIT_CLIENT_SECRET": self.client_secret,
            "PROVKIT_CLOUD": "global",
            "PROVKIT_AUTHORITY_URL": self.base_url,
            "PROVKIT_GRAPH_URL": self.base_url,
            "PROVKIT_CA_BUNDLE": str(self.ca_path),
            "PROVKIT_LOGANALYTICS_URL": self.base_url,
            "PROVKIT_WORKSPACE_ID": self.workspace.workspace_id,
        }

    @property
    def workspace(self) -> Workspace:
        """The simulated Log Analytics workspace (:func:`start_server` always serves one)."""
        if self.graph.workspace is None:
            raise RuntimeError("this server serves no Log Analytics workspace")
        return self.graph.workspace

    def write_env_file(self, path: Path) -> None:
        lines = [f"{k}={v}" for k, v in self.env().items()]
        lines.append(f"# certificate sign-in instead of the secret: PROVKIT_CERT_PATH={self.cert_path}")
        write_private_lines(path, lines)

    def stop(self) -> None:
        """Stop serving; remove the TLS and certificate files when the folder was a temporary one."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_private_lines(path: Path, lines: list[str]) -> None:
    """Write ``lines`` to ``path`` with mode 0600 (an env file holds the local secret), replacing it atomically."""
    tmp = Path(str(path) + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def registrations_for(
    tenant: Tenant, cert_pem: bytes, secret: str
) -> tuple[list[Registration], dict[str, str]]:
    """The app registrations a simulated tenant knows (the reader first), and their client ids by role
    ("reader", "restricted", "device", "admin")."""
    codec = tenant.codec
    client_ids = {
        "reader": codec.encode(ids.APPLICATION, 900),
        "restricted": codec.encode(ids.APPLICATION, 901),
        "device": codec.encode(ids.APPLICATION, 902),
        "admin": codec.encode(ids.APPLICATION, 903),
    }
    all_read = frozenset(
        {"AuditLog.Read.All", "Directory.Read.All", "Synchronization.Read.All", "Application.Read.All"}
    )
    registrations = [
        Registration(
            client_id=client_ids["reader"],
            display_name="provkit reader",
            secret=secret,
            secret_expires=None,
            certificate_pem=cert_pem,
            app_roles=all_read,
            public_client=False,
            delegated_scopes=frozenset(),
        ),
        Registration(
            client_id=client_ids["restricted"],
            display_name="provkit without audit log access",
            secret=secret,
            secret_expires=None,
            certificate_pem=None,
            app_roles=frozenset({"Directory.Read.All", "Synchronization.Read.All", "Application.Read.All"}),
            public_client=False,
            delegated_scopes=frozenset(),
        ),
        Registration(
            client_id=client_ids["admin"],
            display_name="provkit operator (read-write)",
            secret=secret,
            secret_expires=None,
            certificate_pem=None,
            app_roles=all_read | {"Synchronization.ReadWrite.All"},
            public_client=False,
            delegated_scopes=frozenset(),
        ),
        Registration(
            client_id=client_ids["device"],
            display_name="provkit device sign-in",
            secret=None,
            secret_expires=None,
            certificate_pem=None,
            app_roles=frozenset(),
            public_client=True,
            delegated_scopes=all_read,
        ),
    ]
    return registrations, client_ids


def tenant_app(
    tenant: Tenant,
    registrations: list[Registration],
    base_url: str,
    *,
    faults: FaultPlan | None,
    throttle: bool,
    token_lifetime: int,
    workspace_tables: bool,
) -> GraphApp:
    """One tenant's Graph, identity platform and Log Analytics workspace, as served at ``base_url``."""
    authority = _make_authority(base_url, tenant.tenant_id, registrations, token_lifetime)
    graph = GraphApp(tenant, authority, faults or FaultPlan(), Throttle(enabled=throttle), base_url)
    graph.workspace = Workspace(tenant, workspace_id_for(tenant.tenant_id), tables_present=workspace_tables)
    graph.la_throttle = Throttle(limit=LA_THROTTLE_LIMIT, window=LA_THROTTLE_WINDOW, enabled=throttle)
    return graph


def listen(port: int, state: Path) -> tuple[ThreadedTLSServer, Path]:
    """A TLS server bound on 127.0.0.1 (``port=0``: a free port), its CA written under ``state``."""
    tls = make_tls_material(state)
    httpd = ThreadedTLSServer(("127.0.0.1", port), RequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_path, tls.key_path)
    httpd.tls_context = context
    return httpd, Path(tls.ca_path)


def serve_in_thread(httpd: ThreadedTLSServer) -> threading.Thread:
    thread = threading.Thread(target=httpd.serve_forever, name="provkit-sim", daemon=True)
    thread.start()
    return thread


def start_server(
    tenant: Tenant,
    *,
    port: int = 0,
    faults: FaultPlan | None = None,
    throttle: bool = True,
    state_dir: Path | None = None,
    client_secret: str | None = None,
    token_lifetime: int = 3600,
    background: bool = True,
    workspace_tables: bool = True,
) -> RunningServer:
    """Start the simulator on 127.0.0.1 (``port=0`` picks a free port); in a thread unless ``background=False``.

    It also serves a Log Analytics workspace over the same history (loaded on its first query);
    ``workspace_tables=False`` plays one that Entra's diagnostic settings do not feed.
    """
    state = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="provkit-sim-"))
    state.mkdir(parents=True, exist_ok=True)
    httpd, ca_path = listen(port, state)
    cert_path, thumbprint = make_client_certificate(state, "provkit-reader")
    secret = client_secret or base64.urlsafe_b64encode(os.urandom(30)).decode()
    registrations, client_ids = registrations_for(tenant, cert_path.read_bytes(), secret)
    actual_port = httpd.server_address[1]
    base_url = f"https://127.0.0.1:{actual_port}"
    graph = tenant_app(
        tenant,
        registrations,
        base_url,
        faults=faults,
        throttle=throttle,
        token_lifetime=token_lifetime,
        workspace_tables=workspace_tables,
    )
    httpd.RequestHandlerClass = type("Handler", (RequestHandler,), {"app": graph})
    server = RunningServer(
        base_url=base_url,
        port=actual_port,
        tenant=tenant,
        graph=graph,
        authority=graph.authority,
        ca_path=ca_path,
        client_id=client_ids["reader"],
        client_secret=secret,
        cert_path=cert_path,
        cert_thumbprint=thumbprint,
        restricted_client_id=client_ids["restricted"],
        device_client_id=client_ids["device"],
        admin_client_id=client_ids["admin"],
        state_dir=state,
        _httpd=httpd,
        _owns_state_dir=state_dir is None,
    )
    if background:
        server._thread = serve_in_thread(httpd)
    return server


def _make_authority(
    base_url: str, tenant_id: str, registrations: list[Registration], lifetime: int
) -> Authority:
    return Authority(
        issuer_base=base_url,
        tenant_id=tenant_id,
        registrations=registrations,
        graph_root=base_url,
        access_token_lifetime=lifetime,
        auto_approve_device_after_polls=1,
        tenant_domains=["contoso.onmicrosoft.com", "contoso.com"],
        other_resources=[LOG_ANALYTICS_RESOURCE],
    )
