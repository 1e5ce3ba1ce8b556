"""The simulated identity platform, driven by real msal over TLS, and the bearer checks Graph requests pass.

A throwaway HTTPS server in this file routes discovery, keys, token and devicecode to an :class:`Authority`, so
every sign-in below is msal's own code path. msal must not reach Microsoft: an autouse fixture fails any socket
opened to anything but loopback.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from provkit.sim.authority import Authority, GraphAuthError, Principal, Registration
from provkit.sim.certs import (
    TlsMaterial,
    certificate_pem_of,
    make_client_certificate,
    make_tls_material,
    sha256_thumbprint_of,
    thumbprint_of,
)

TENANT = "0c7b1f8e-7d3a-4c39-9a57-2f1d6c0e5b11"
DOMAIN = "contoso.onmicrosoft.com"
GRAPH = "https://graph.microsoft.com"
DEFAULT = [f"{GRAPH}/.default"]
SECRET_APP = "6f1e2d3c-0b1a-4f5e-8d7c-6b5a4f3e2d1c"
EXPIRED_APP = "7a2b3c4d-5e6f-4a1b-9c8d-7e6f5a4b3c2d"
CERT_APP = "8b3c4d5e-6f7a-4b2c-8d9e-0f1a2b3c4d5e"
PUBLIC_APP = "9c4d5e6f-7a8b-4c3d-9e0f-1a2b3c4d5e6f"
SECRET = "sim~Q8w.secret-value-0123456789abcdefgh"  # what a user would paste as PROVKIT_CLIENT_SECRET
APP_ROLES = frozenset({"AuditLog.Read.All", "Directory.Read.All", "Synchronization.ReadWrite.All"})
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Clock:
    """Wall time plus an offset the test moves forward, so lifetimes expire without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Env:
    base: str
    tls: TlsMaterial
    cert_pem: bytes  # key + certificate, as in PROVKIT_CERT_PATH
    cert_thumbprint: str
    other_cert_pem: bytes  # a certificate not registered on any app
    clock: Clock
    authority: Authority
    forms: list[dict[str, str]]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        tenant, rest = self._route()
        authority: Authority = self.server.authority  # type: ignore[attr-defined]
        if rest == "v2.0/.well-known/openid-configuration":
            self._reply(*authority.openid_configuration(tenant))
        elif rest == "discovery/v2.0/keys":
            self._reply(*authority.jwks())
        else:
            self._reply(404, {"error": "not_found"}, {})

    def do_POST(self) -> None:  # noqa: N802
        tenant, rest = self._route()
        authority: Authority = self.server.authority  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        form = {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}
        correlation_id = self.headers.get("client-request-id")
        self.server.forms.append(form)  # type: ignore[attr-defined]
        if rest == "oauth2/v2.0/token":
            self._reply(*authority.token(tenant, form, correlation_id=correlation_id))
        elif rest == "oauth2/v2.0/devicecode":
            self._reply(*authority.device_code(tenant, form, correlation_id=correlation_id))
        else:
            self._reply(404, {"error": "not_found"}, {})

    def _route(self) -> tuple[str, str]:
        tenant, _, rest = urlsplit(self.path).path.lstrip("/").partition("/")
        return tenant, rest

    def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep test output clean; the request line holds nothing secret, but nobody needs it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadingHTTPServer, TlsMaterial]]:
    tls = make_tls_material(tmp_path_factory.mktemp("tls"))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.forms = []  # type: ignore[attr-defined]  # token and devicecode bodies, for tests that inspect msal
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_path, tls.key_path)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, tls
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str, bytes, rsa.RSAPrivateKey]:
    directory = tmp_path_factory.mktemp("certs")
    path, thumbprint = make_client_certificate(directory, "provkit-reader")
    other, _ = make_client_certificate(directory, "someone else")
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return path.read_bytes(), thumbprint, other.read_bytes(), signing_key


@pytest.fixture
def env(server: tuple[ThreadingHTTPServer, TlsMaterial], credentials: tuple[Any, ...]) -> Env:
    """A fresh authority (own clock, own device codes) behind the shared server."""
    httpd, tls = server
    cert_pem, thumbprint, other_pem, signing_key = credentials
    base = f"https://127.0.0.1:{httpd.server_address[1]}"
    clock = Clock()
    now = clock()
    authority = Authority(
        base,
        TENANT,
        [
            Registration(
                SECRET_APP, "provkit reader", secret=SECRET, secret_expires=now + 86400, app_roles=APP_ROLES
            ),
            Registration(
                EXPIRED_APP, "provkit old", secret=SECRET, secret_expires=now - 60, app_roles=APP_ROLES
            ),
            Registration(
                CERT_APP, "provkit cert", certificate_pem=certificate_pem_of(cert_pem), app_roles=APP_ROLES
            ),
            Registration(
                PUBLIC_APP,
                "provkit workbook",
                public_client=True,
                delegated_scopes=frozenset({"AuditLog.Read.All", "Directory.Read.All"}),
            ),
        ],
        clock,
        signing_key,
        tenant_domains=[DOMAIN],
        device_code_interval=1,
        auto_approve_device_after_polls=1,
        auto_approve_user=f"investigator@{DOMAIN}",
    )
    httpd.authority = authority  # type: ignore[attr-defined]
    httpd.forms.clear()  # type: ignore[attr-defined]
    return Env(base, tls, cert_pem, thumbprint, other_pem, clock, authority, httpd.forms)  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail, and remember, any name lookup or connection to a host other than loopback."""
    foreign: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOOPBACK:
            foreign.append(str(host))
            raise OSError(f"test forbids resolving {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            foreign.append(str(address[0]))
            raise OSError(f"test forbids connecting to {address[0]}")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield foreign
    assert foreign == [], f"something tried to reach {foreign}"


def pinned_session(ca_path: Path) -> requests.Session:
    """A session that trusts exactly ``ca_path``.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override ``Session.verify`` whenever ``trust_env`` is true:
    ``merge_environment_settings`` turns the per-request ``verify=None`` into the environment's bundle, and a
    per-request value beats the session's. msal's own ``verify=`` kwarg only sets ``Session.verify``, so it loses
    too. ``trust_env = False`` makes ``Session.verify`` authoritative; it also drops environment proxies, .netrc
    and NO_PROXY handling, which is what loopback wants (an HTTPS_PROXY without NO_PROXY would otherwise send
    127.0.0.1 traffic to the proxy).
    """
    session = requests.Session()
    session.verify = str(ca_path)
    session.trust_env = False
    return session


def confidential(env: Env, client_id: str, credential: Any) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=f"{env.base}/{TENANT}",
        http_client=pinned_session(env.tls.ca_path),
        instance_discovery=False,
    )


def public(env: Env, client_id: str) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        client_id,
        authority=f"{env.base}/{TENANT}",
        http_client=pinned_session(env.tls.ca_path),
        instance_discovery=False,
    )


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


# ------------------------------------------------------------------------------------------------ TLS material


def test_tls_material_names_loopback_keeps_keys_private_and_is_valid_now(env: Env) -> None:
    server_cert = x509.load_pem_x509_certificate(env.tls.cert_path.read_bytes())
    names = server_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    now = time.time()
    assert server_cert.not_valid_before_utc.timestamp() < now - 3000
    assert server_cert.not_valid_after_utc.timestamp() > now + 2 * 86400
    assert stat.S_IMODE(env.tls.key_path.stat().st_mode) == 0o600
    client_path = next(env.tls.ca_path.parent.parent.glob("certs*/provkit-reader.pem"))
    assert stat.S_IMODE(client_path.stat().st_mode) == 0o600
    # the CA's key is never written, so only the server certificate's key exists beside it
    assert sorted(p.name for p in env.tls.ca_path.parent.iterdir()) == [
        "ca.pem",
        "server-key.pem",
        "server.pem",
    ]


def test_thumbprints_match_what_msal_computes_for_the_same_certificate(env: Env) -> None:
    from msal.application import _extract_cert_and_thumbprints

    sha256, sha1, _ = _extract_cert_and_thumbprints(x509.load_pem_x509_certificate(env.cert_pem))
    assert thumbprint_of(env.cert_pem) == env.cert_thumbprint == sha1.upper()
    assert sha256_thumbprint_of(env.cert_pem) == sha256.upper()
    assert b"PRIVATE KEY" in env.cert_pem and b"PRIVATE KEY" not in certificate_pem_of(env.cert_pem)


def test_requests_ca_bundle_overrides_session_verify_unless_trust_env_is_off(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    certifi = requests.certs.where()  # a bundle that does not hold our throwaway CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi)
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi)
    url = f"{env.base}/{TENANT}/discovery/v2.0/keys"
    naive = requests.Session()
    naive.verify = str(env.tls.ca_path)
    with pytest.raises(requests.exceptions.SSLError):
        naive.get(url, timeout=5)
    assert pinned_session(env.tls.ca_path).get(url, timeout=5).status_code == 200


# --------------------------------------------------------------------------------------- client credentials


def test_secret_sign_in_gives_an_app_token_graph_accepts_and_msal_caches(env: Env) -> None:
    app = confidential(env, SECRET_APP, SECRET)
    result = app.acquire_token_for_client(scopes=DEFAULT)
    assert "access_token" in result, result.get("error_description")
    assert result["token_source"] == "identity_provider"
    assert app.acquire_token_for_client(scopes=DEFAULT)["token_source"] == "cache"

    claims = claims_of(result["access_token"])
    assert claims["aud"] == GRAPH and claims["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert claims["tid"] == TENANT and claims["appid"] == SECRET_APP and "scp" not in claims
    principal = env.authority.verify_bearer(f"Bearer {result['access_token']}")
    assert principal.app_only and principal.client_id == SECRET_APP and principal.roles == APP_ROLES
    assert principal.has_permission("Synchronization.Read.All")  # implied by ReadWrite
    assert not principal.has_permission("Application.Read.All")
    assert result["access_token"] in env.authority.issued_tokens()


def test_tenant_domain_is_accepted_as_the_authority(env: Env) -> None:
    app = msal.ConfidentialClientApplication(
        SECRET_APP,
        client_credential=SECRET,
        authority=f"{env.base}/{DOMAIN}",
        http_client=pinned_session(env.tls.ca_path),
        instance_discovery=False,
    )
    assert "access_token" in app.acquire_token_for_client(scopes=DEFAULT)


@pytest.mark.parametrize("style", ["sha1 thumbprint", "public certificate (sha256)"])
def test_certificate_sign_in_with_either_thumbprint_style(env: Env, style: str) -> None:
    key_pem = env.cert_pem.split(b"-----BEGIN CERTIFICATE-----")[0].decode()
    if style == "sha1 thumbprint":  # msal signs RS256 with an x5t header
        credential = {"private_key": key_pem, "thumbprint": env.cert_thumbprint}
    else:  # msal signs PS256 with an x5t#S256 header
        credential = {"private_key": key_pem, "public_certificate": certificate_pem_of(env.cert_pem).decode()}
    result = confidential(env, CERT_APP, credential).acquire_token_for_client(scopes=DEFAULT)
    assert "access_token" in result, result.get("error_description")
    sent = jwt.get_unverified_header(env.forms[-1]["client_assertion"])
    assert (sent["alg"], "x5t" in sent, "x5t#S256" in sent) == (
        ("RS256", True, False) if style == "sha1 thumbprint" else ("PS256", False, True)
    )
    principal = env.authority.verify_bearer(f"Bearer {result['access_token']}")
    assert principal.client_id == CERT_APP and claims_of(result["access_token"])["appidacr"] == "2"


@pytest.mark.parametrize(
    ("client_id", "secret", "code", "error"),
    [
        (EXPIRED_APP, SECRET, 7000222, "invalid_client"),
        (SECRET_APP, SECRET[:-1] + "X", 7000215, "invalid_client"),
        ("00000000-1111-2222-3333-444444444444", SECRET, 700016, "unauthorized_client"),
    ],
    ids=["expired secret", "wrong secret", "unknown app"],
)
def test_refused_secret_names_the_aadsts_code_and_not_the_secret(
    env: Env, client_id: str, secret: str, code: int, error: str
) -> None:
    result = confidential(env, client_id, secret).acquire_token_for_client(scopes=DEFAULT)
    assert result["error"] == error and result["error_codes"] == [code]
    assert result["error_description"].startswith(f"AADSTS{code}: ")
    assert "Trace ID:" in result["error_description"] and result["correlation_id"]
    assert secret not in json.dumps(result) and SECRET not in json.dumps(result)


@pytest.mark.parametrize("forgery", ["unregistered certificate", "registered thumbprint, other key"])
def test_wrong_certificate_is_refused_with_700027(env: Env, forgery: str) -> None:
    other_key = env.other_cert_pem.split(b"-----BEGIN CERTIFICATE-----")[0].decode()
    thumbprint = (
        thumbprint_of(env.other_cert_pem) if forgery.startswith("unregistered") else env.cert_thumbprint
    )
    result = confidential(
        env, CERT_APP, {"private_key": other_key, "thumbprint": thumbprint}
    ).acquire_token_for_client(scopes=DEFAULT)
    assert result["error"] == "invalid_client" and result["error_codes"] == [700027]
    assert "BEGIN" not in json.dumps(result)
    if forgery.startswith("unregistered"):  # Entra names the thumbprint the client used, so users can compare
        assert f"Thumbprint of key used by client: '{thumbprint}'" in result["error_description"]
    else:
        assert "failed signature validation" in result["error_description"]


def test_app_only_scope_must_be_dot_default_and_the_tenant_must_exist(env: Env) -> None:
    result = confidential(env, SECRET_APP, SECRET).acquire_token_for_client(
        scopes=[f"{GRAPH}/AuditLog.Read.All"]
    )
    assert result["error"] == "invalid_scope" and result["error_codes"] == [1002012]

    status, body, _ = env.authority.openid_configuration("fabrikam.onmicrosoft.com")
    assert status == 400 and body["error"] == "invalid_tenant" and body["error_codes"] == [90002]
    assert body["error_description"].startswith("AADSTS90002: Tenant 'fabrikam.onmicrosoft.com' not found.")
    assert {"timestamp", "trace_id", "correlation_id"} <= body.keys()
    with pytest.raises(ValueError, match="double check your tenant name"):  # msal drops the body
        msal.ConfidentialClientApplication(
            SECRET_APP,
            client_credential=SECRET,
            authority=f"{env.base}/fabrikam.onmicrosoft.com",
            http_client=pinned_session(env.tls.ca_path),
            instance_discovery=False,
        )


# ---------------------------------------------------------------------------------------------- device code


def test_device_code_sign_in_yields_a_delegated_token_and_refreshes_through_msal(env: Env) -> None:
    app = public(env, PUBLIC_APP)
    scopes = [f"{GRAPH}/AuditLog.Read.All", f"{GRAPH}/Directory.Read.All"]
    flow = app.initiate_device_flow(scopes=scopes)
    assert flow["message"] == (
        "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code "
        f"{flow['user_code']} to authenticate."
    )
    result = app.acquire_token_by_device_flow(flow)  # first poll is pending, the second is approved
    assert "access_token" in result, result.get("error_description")
    principal = env.authority.verify_bearer(f"Bearer {result['access_token']}")
    assert principal.user == f"investigator@{DOMAIN}" and principal.roles == frozenset()
    assert principal.scopes == {"AuditLog.Read.All", "Directory.Read.All"}
    assert principal.has_permission("AuditLog.Read.All") and not principal.has_permission(
        "Synchronization.Read.All"
    )

    (account,) = app.get_accounts()
    assert account["username"] == f"investigator@{DOMAIN}"
    refreshed = app.acquire_token_silent(scopes, account=account, force_refresh=True)  # refresh_token grant
    assert refreshed and refreshed["access_token"] != result["access_token"]
    assert env.authority.verify_bearer(f"Bearer {refreshed['access_token']}").user == account["username"]
    assert {result["refresh_token"], refreshed["access_token"]} <= set(env.authority.issued_tokens())


def test_device_code_waits_for_the_named_user_and_refuses_confidential_apps(env: Env) -> None:
    authority = Authority(
        env.base,
        TENANT,
        [
            Registration(
                PUBLIC_APP, "workbook", public_client=True, delegated_scopes=frozenset({"AuditLog.Read.All"})
            ),
            Registration(SECRET_APP, "reader", secret=SECRET, app_roles=APP_ROLES),
        ],
        env.clock,
    )
    form = {"client_id": PUBLIC_APP, "scope": f"{GRAPH}/AuditLog.Read.All offline_access openid profile"}
    _, flow, _ = authority.device_code(TENANT, form)
    redeem = {"client_id": PUBLIC_APP, "grant_type": "urn:ietf:params:oauth:grant-type:device_code"}
    redeem["device_code"] = flow["device_code"]
    for _ in range(3):
        status, body, _ = authority.token(TENANT, redeem)
        assert (status, body["error"], body["error_codes"]) == (400, "authorization_pending", [70016])
    authority.approve_device_code(flow["user_code"].lower(), "alex@contoso.onmicrosoft.com")
    status, body, _ = authority.token(TENANT, redeem)
    assert (
        status == 200
        and authority.verify_bearer(f"Bearer {body['access_token']}").user == "alex@contoso.onmicrosoft.com"
    )
    assert authority.token(TENANT, redeem)[1]["error"] == "invalid_grant"  # a device code is redeemed once

    _, flow, _ = authority.device_code(TENANT, {**form, "client_id": SECRET_APP})
    authority.approve_device_code(flow["user_code"], "alex@contoso.onmicrosoft.com")
    status, body, _ = authority.token(
        TENANT, {**redeem, "client_id": SECRET_APP, "device_code": flow["device_code"]}
    )
    assert (status, body["error"], body["error_codes"]) == (401, "invalid_client", [7000218])


def test_device_code_through_msal_for_a_confidential_app_fails_with_7000218(env: Env) -> None:
    app = public(env, SECRET_APP)
    flow = app.initiate_device_flow(scopes=[f"{GRAPH}/AuditLog.Read.All"])
    result = app.acquire_token_by_device_flow(flow)
    assert result["error_codes"] == [7000218]


# -------------------------------------------------------------------------------------------- bearer checks


def test_expired_token_is_refused_like_graph_does(env: Env) -> None:
    token = confidential(env, SECRET_APP, SECRET).acquire_token_for_client(scopes=DEFAULT)["access_token"]
    env.authority.verify_bearer(f"Bearer {token}")
    env.clock.offset += 3600
    with pytest.raises(GraphAuthError) as caught:
        env.authority.verify_bearer(f"Bearer {token}")
    assert (caught.value.status, caught.value.code) == (401, "InvalidAuthenticationToken")
    assert caught.value.message == "Lifetime validation failed, the token is expired."


def test_short_lifetime_is_honoured(env: Env) -> None:
    authority = Authority(
        env.base, TENANT, [Registration(SECRET_APP, "r", secret=SECRET)], env.clock, access_token_lifetime=30
    )
    _, body, _ = authority.token(
        TENANT,
        {
            "grant_type": "client_credentials",
            "client_id": SECRET_APP,
            "client_secret": SECRET,
            "scope": "00000003-0000-0000-c000-000000000000/.default",
        },
    )
    assert body["expires_in"] == 30
    env.clock.offset += 29
    assert authority.verify_bearer(f"Bearer {body['access_token']}").roles == frozenset()
    env.clock.offset += 1
    with pytest.raises(GraphAuthError, match="expired"):
        authority.verify_bearer(f"Bearer {body['access_token']}")


def test_bad_bearer_headers_get_graphs_401_messages_without_the_token(env: Env) -> None:
    token = confidential(env, SECRET_APP, SECRET).acquire_token_for_client(scopes=DEFAULT)["access_token"]
    header, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    stranger = Authority(env.base, TENANT, [Registration(SECRET_APP, "r", secret=SECRET)], env.clock)
    foreign = stranger.token(
        TENANT,
        {
            "grant_type": "client_credentials",
            "client_id": SECRET_APP,
            "client_secret": SECRET,
            "scope": DEFAULT[0],
        },
    )[1]["access_token"]
    cases = {
        None: "Access token is empty.",
        "Bearer ": "Access token is empty.",
        "Bearer not-a-jwt": "IDX14100: JWT is not well formed, there are no dots (.)",
        f"Bearer {header}.{payload}": "IDX14100: JWT is not well formed",
        "Bearer e30.e30.e30x": "IDX14102",
        f"Bearer {header}.{payload}.{flipped}": "Invalid signature",
        f"Bearer {foreign}": "Invalid signature",
        f"Basic {token}": "Access token validation failure",
    }
    for value, message in cases.items():
        with pytest.raises(GraphAuthError) as caught:
            env.authority.verify_bearer(value)
        assert caught.value.status == 401 and caught.value.code == "InvalidAuthenticationToken"
        assert caught.value.message.startswith(message) or message in caught.value.message
        assert payload not in str(caught.value) and "WWW-Authenticate" in caught.value.headers


def test_jwks_verifies_issued_tokens_and_reprs_hide_secrets(env: Env) -> None:
    token = confidential(env, SECRET_APP, SECRET).acquire_token_for_client(scopes=DEFAULT)["access_token"]
    status, keys, _ = env.authority.jwks()
    (jwk,) = keys["keys"]
    assert status == 200 and jwk["kid"] == jwt.get_unverified_header(token)["kid"]
    public_key = jwt.PyJWK(jwk).key
    assert jwt.decode(token, public_key, algorithms=["RS256"], audience=GRAPH)["appid"] == SECRET_APP
    x5c = base64.b64decode(jwk["x5c"][0])
    assert x509.load_der_x509_certificate(x5c).public_key().public_numbers() == public_key.public_numbers()

    text = repr(Registration(SECRET_APP, "r", secret=SECRET, certificate_pem=env.cert_pem))
    assert SECRET not in text and "PRIVATE" not in text
    principal = env.authority.verify_bearer(f"Bearer {token}")
    assert token not in repr(principal) and isinstance(principal, Principal)


def test_unconsented_scope_and_stale_device_code_are_refused(env: Env) -> None:
    authority = env.authority
    form = {"client_id": PUBLIC_APP, "scope": f"{GRAPH}/Synchronization.Read.All openid offline_access"}
    _, flow, _ = authority.device_code(TENANT, form)
    authority.approve_device_code(flow["user_code"], "alex@contoso.onmicrosoft.com")
    redeem = {"client_id": PUBLIC_APP, "grant_type": "urn:ietf:params:oauth:grant-type:device_code"}
    status, body, _ = authority.token(TENANT, {**redeem, "device_code": flow["device_code"]})
    assert (status, body["error"], body["error_codes"], body["suberror"]) == (
        400,
        "invalid_grant",
        [65001],
        "consent_required",
    )

    _, flow, _ = authority.device_code(TENANT, {**form, "scope": f"{GRAPH}/AuditLog.Read.All"})
    env.clock.offset += flow["expires_in"]
    status, body, _ = authority.token(TENANT, {**redeem, "device_code": flow["device_code"]})
    assert (status, body["error"], body["error_codes"]) == (400, "expired_token", [70020])
    with pytest.raises(LookupError):
        authority.approve_device_code(flow["user_code"], "alex@contoso.onmicrosoft.com")
