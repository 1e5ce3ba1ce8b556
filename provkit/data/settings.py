"""Where and as whom provkit signs in: the national clouds, and :class:`Settings` read from the ``PROVKIT_*``
environment and checked (tenant, client id, authority and Graph roots, CA bundle), with the HTTP session every
request goes through. Getting tokens is :mod:`provkit.data.auth`'s job.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import requests

from provkit._version import __version__
from provkit.errors import ConfigError
from provkit.formatting import GUID

Method = Literal["auto", "secret", "certificate", "device-code", "managed-identity"]
METHODS: tuple[str, ...] = ("auto", "secret", "certificate", "device-code", "managed-identity")

ENV_TENANT_ID = "PROVKIT_TENANT_ID"
ENV_CLIENT_ID = "PROVKIT_CLIENT_ID"
ENV_CLIENT_SECRET = "PROVKIT_CLIENT_SECRET"
ENV_CERT_PATH = "PROVKIT_CERT_PATH"
ENV_CLOUD = "PROVKIT_CLOUD"
ENV_AUTHORITY_URL = "PROVKIT_AUTHORITY_URL"
ENV_GRAPH_URL = "PROVKIT_GRAPH_URL"
ENV_CA_BUNDLE = "PROVKIT_CA_BUNDLE"
ENV_STORE = "PROVKIT_STORE"
MANAGED_IDENTITY_MARKERS = ("IDENTITY_ENDPOINT", "MSI_ENDPOINT")

DEFAULT_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds for every request made through make_session()
APP_PERMISSIONS = "AuditLog.Read.All, Directory.Read.All and Synchronization.Read.All"
_LINK_APP_ONLY = "https://learn.microsoft.com/en-us/graph/auth-v2-service"
_LINK_ERRORS = "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"
_LINK_CLOUDS = "https://learn.microsoft.com/en-us/graph/deployments"

_GUID = GUID  # the one object-id pattern (provkit.formatting)
_DOMAIN = re.compile(r"^(?=.{4,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_MULTI_TENANT = ("common", "organizations", "consumers")


# ------------------------------------------------------------------------------------------------ clouds


@dataclass(frozen=True)
class Cloud:
    """A Microsoft cloud: where tokens come from, where Graph lives, and whether provisioning logs exist there."""

    name: str
    authority_host: str
    graph_root: str
    provisioning_logs: bool


CLOUDS: dict[str, Cloud] = {
    cloud.name: cloud
    for cloud in (
        Cloud("global", "https://login.microsoftonline.com", "https://graph.microsoft.com", True),
        Cloud("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us", True),
        Cloud("usgov-dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us", True),
        # 21Vianet: Graph exists, the provisioning logs API does not.
        Cloud("china", "https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn", False),
    )
}


def get_cloud(name: str) -> Cloud:
    """Return the cloud called ``name`` (case-insensitive); raise ConfigError listing the valid names."""
    cloud = CLOUDS.get(name.strip().lower())
    if cloud is None:
        raise ConfigError(
            f"{ENV_CLOUD}={name.strip()!r} is not a cloud provkit knows; valid names: {', '.join(CLOUDS)}.",
            remedy="Use global for the worldwide cloud and for M365 GCC (not High), usgov for GCC High, "
            "usgov-dod for DoD, china for 21Vianet.",
            link=_LINK_CLOUDS,
        )
    return cloud


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Where to sign in and what to read, without the secret (see :func:`sign_in`).

    ``tenant_id`` is a GUID or a domain (``contoso.onmicrosoft.com``); ``client_id`` the app registration's
    Application (client) ID. ``authority_url`` and ``graph_url`` override the cloud's hosts (the local simulated
    tenant uses both), ``ca_bundle`` is the CA file that server's TLS certificate chains to. Values are checked on
    construction; a bad one raises ConfigError naming its environment variable.
    """

    tenant_id: str | None = None
    client_id: str | None = None
    cloud: Cloud = CLOUDS["global"]
    authority_url: str | None = None
    graph_url: str | None = None
    ca_bundle: Path | None = None
    cert_path: Path | None = None
    store: Path | None = None

    def __post_init__(self) -> None:
        if self.tenant_id is not None:
            _check_tenant(self.tenant_id)
        if self.client_id is not None and not _GUID.match(self.client_id):
            raise ConfigError(
                f"{ENV_CLIENT_ID} is not a GUID (value not shown, in case a secret was pasted there).",
                remedy="Use the Application (client) ID from the app registration's Overview page.",
                link=_LINK_APP_ONLY,
            )
        if self.authority_url is not None:
            object.__setattr__(
                self, "authority_url", _check_root(ENV_AUTHORITY_URL, self.authority_url, True)
            )
        if self.graph_url is not None:
            object.__setattr__(self, "graph_url", _check_root(ENV_GRAPH_URL, self.graph_url, False))
        for name, value in ((ENV_CA_BUNDLE, self.ca_bundle), (ENV_CERT_PATH, self.cert_path)):
            if value is not None and not Path(value).is_file():
                raise ConfigError(
                    f"{name} names {str(value)!r}, which is not a readable file.",
                    remedy=f"Point {name} at an existing PEM file, or unset it.",
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the ``PROVKIT_*`` variables (blank ones count as unset); raise ConfigError naming a bad one.

        ``environ`` defaults to ``os.environ``. ``PROVKIT_CLIENT_SECRET`` is deliberately not read here.
        """
        env = os.environ if environ is None else environ

        def value(name: str) -> str | None:
            text = env.get(name)
            if text is None:
                return None
            text = text.strip().strip('"').strip("'").strip()
            return text or None

        def path(name: str) -> Path | None:
            text = value(name)
            return Path(text).expanduser() if text else None

        cloud_name = value(ENV_CLOUD)
        return cls(
            tenant_id=value(ENV_TENANT_ID),
            client_id=value(ENV_CLIENT_ID),
            cloud=get_cloud(cloud_name) if cloud_name else CLOUDS["global"],
            authority_url=value(ENV_AUTHORITY_URL),
            graph_url=value(ENV_GRAPH_URL),
            ca_bundle=path(ENV_CA_BUNDLE),
            cert_path=path(ENV_CERT_PATH),
            store=path(ENV_STORE),
        )

    @property
    def graph_root(self) -> str:
        """Graph's root URL without a version: the override if set, else the cloud's."""
        return self.graph_url or self.cloud.graph_root

    @property
    def graph_api(self) -> str:
        """The v1.0 endpoint every Graph path is relative to."""
        return f"{self.graph_root}/v1.0"

    @property
    def scope(self) -> str:
        """The ``.default`` scope for Graph in this cloud (tokens are issued for ``graph_root``)."""
        return f"{self.graph_root}/.default"

    @property
    def authority(self) -> str:
        """The token authority, ``https://<host>/<tenant>``; raises ConfigError when no tenant is set."""
        if not self.tenant_id:
            raise ConfigError(
                f"{ENV_TENANT_ID} is not set.",
                remedy="Set it to your tenant ID (a GUID) or a verified domain such as contoso.onmicrosoft.com.",
                link=_LINK_APP_ONLY,
            )
        return f"{self.authority_url or self.cloud.authority_host}/{self.tenant_id}"

    def describe(self) -> str:
        """One line saying where provkit signs in and reads from; holds nothing secret."""
        parts = [
            f"tenant {self.tenant_id or '(not set)'}",
            f"client {self.client_id or '(not set)'}",
            f"cloud {self.cloud.name}",
            f"authority {_shown(self.authority_url or self.cloud.authority_host)}",
            f"Graph {self.graph_root}",
        ]
        if self.cert_path:
            parts.append(f"certificate {self.cert_path}")
        if self.ca_bundle:
            parts.append(f"CA bundle {self.ca_bundle}")
        if self.store:
            parts.append(f"store {self.store}")
        return ", ".join(parts)


def _check_tenant(tenant: str) -> None:
    if tenant.lower() in _MULTI_TENANT:
        raise ConfigError(
            f"{ENV_TENANT_ID}={tenant} names no tenant; app-only sign-in and provisioning logs need a specific one.",
            remedy="Use your tenant ID (a GUID) or a verified domain such as contoso.onmicrosoft.com.",
            link=_LINK_APP_ONLY,
        )
    if not (_GUID.match(tenant) or _DOMAIN.match(tenant)):
        raise ConfigError(
            f"{ENV_TENANT_ID} is neither a GUID nor a domain name (value not shown).",
            remedy="Use the Tenant ID from the Entra admin center's Overview page, or a verified domain such as "
            "contoso.onmicrosoft.com.",
            link=_LINK_APP_ONLY,
        )


def _check_root(name: str, url: str, https_only: bool) -> str:
    """Return ``url`` without a trailing slash when it is a bare scheme://host[:port] root, else raise."""
    url = url.rstrip("/")
    parts = urlsplit(url)
    schemes = ("https",) if https_only else ("https", "http")
    if parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"{name}={_shown(url)!r} is not a {' or '.join(schemes)} URL of a host.",
            remedy=f"Give the root only, such as {'https://login.microsoftonline.us' if https_only else 'https://graph.microsoft.us'}.",
            link=_LINK_CLOUDS,
        )
    if parts.path:
        what = (
            "the tenant (provkit adds PROVKIT_TENANT_ID)"
            if https_only
            else "the version (provkit adds /v1.0)"
        )
        raise ConfigError(
            f"{name}={_shown(url)!r} has a path; give the root without {what}.",
            remedy=f"Use {_shown(parts.scheme + '://' + parts.netloc)}",
            link=_LINK_CLOUDS,
        )
    return url


# ----------------------------------------------------------------------------------------------- session


class _Session(requests.Session):
    """A Session whose requests time out by default (msal passes none, and requests has no session-wide one)."""

    default_timeout: tuple[float, float] = DEFAULT_TIMEOUT

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


def make_session(settings: Settings) -> requests.Session:
    """A requests Session for msal and Graph: provkit's User-Agent, default timeouts, and the CA bundle if set.

    With ``ca_bundle`` set, ``trust_env`` is turned off. While it is on, requests lets REQUESTS_CA_BUNDLE (or
    CURL_CA_BUNDLE) override ``Session.verify``: ``merge_environment_settings`` turns each request's
    ``verify=None`` into the environment's bundle, and a per-request value beats the session's. Machines that set
    those variables would then refuse the local server's certificate. Turning ``trust_env`` off also ignores proxy
    variables and .netrc, which is what a loopback server wants.
    """
    session = _Session()
    session.headers["User-Agent"] = f"provkit/{__version__}"
    if settings.ca_bundle is not None:
        session.verify = str(settings.ca_bundle)
        session.trust_env = False
    return session


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _shown(url: str) -> str:
    """A URL fit for messages: credentials written into it (``https://user:password@host``) are removed."""
    return _USERINFO.sub("[redacted]@", url)
