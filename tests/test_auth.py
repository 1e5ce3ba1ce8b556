"""Sign-in: settings from the environment, the four methods, the token cache on disk, and errors that explain.

Sign-ins go through real msal to the local simulated identity platform over TLS. Managed identity is exercised
against a fake App Service identity endpoint (a tiny HTTP server here) that hands out tokens the simulated Graph
accepts. A sentinel secret is used throughout and must never appear in a message, a repr or a log line.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from provkit.data.auth import (
    CLOUDS,
    Settings,
    TokenProvider,
    get_cloud,
    make_session,
    show_device_code,
    sign_in,
    sign_in_error_from,
)
from provkit.data.graph import GraphClient
from provkit.errors import ConfigError, SignInError
from provkit.sim.authority import GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN, Authority, Registration
from provkit.sim.certs import make_client_certificate
from provkit.sim.server import RunningServer, start_server
from provkit.sim.tenant import Tenant

SENTINEL = "SENTINEL~s3cret.value_0123456789abcdefghij"
NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
UNKNOWN_APP = "00000000-1111-2222-3333-444444444444"


def make_tenant() -> Tenant:
    return Tenant(seed=7, users_count=300, days=2, now=NOW, scenarios=("healthy", "skipped-users"))


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server(make_tenant(), throttle=False, client_secret=SENTINEL)
    yield running
    running.stop()


def env_of(server: RunningServer, **changes: str | None) -> dict[str, str]:
    """The server's PROVKIT_* settings with some changed (None removes one)."""
    env = dict(server.env())
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def token_requests(server: RunningServer) -> int:
    """Calls to the token endpoint so far, once the server's log settled (it logs a call after answering it)."""
    seen = -1
    while len(server.graph.requests) != seen:
        seen = len(server.graph.requests)
        time.sleep(0.05)
    return sum(1 for r in server.graph.requests if r.path.endswith("/oauth2/v2.0/token"))


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


# ---------------------------------------------------------------------------------------------- settings


def test_settings_come_from_the_environment(server: RunningServer) -> None:
    settings = Settings.from_env(server.env())
    assert (settings.tenant_id, settings.client_id) == (server.tenant.tenant_id, server.client_id)
    assert settings.authority == f"{server.base_url}/{server.tenant.tenant_id}"
    assert settings.scope == f"{server.base_url}/.default" and settings.graph_api == f"{server.base_url}/v1.0"
    assert settings.ca_bundle == Path(server.ca_path)
    assert "tenant " + server.tenant.tenant_id in settings.describe() and SENTINEL not in settings.describe()
    assert SENTINEL not in repr(settings)

    gov = Settings.from_env(
        {"PROVKIT_TENANT_ID": " 'contoso.onmicrosoft.com' ", "PROVKIT_CLOUD": "USGov-DoD"}
    )
    assert gov.cloud is CLOUDS["usgov-dod"] and gov.scope == "https://dod-graph.microsoft.us/.default"
    assert gov.authority == "https://login.microsoftonline.us/contoso.onmicrosoft.com"
    assert Settings.from_env({"PROVKIT_CLIENT_ID": "  ", "PROVKIT_CLOUD": ""}).client_id is None
    assert not get_cloud("china").provisioning_logs and get_cloud("global").provisioning_logs


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PROVKIT_CLOUD", "azure-germany", "valid names: global, usgov, usgov-dod, china"),
        ("PROVKIT_CLIENT_ID", SENTINEL, "PROVKIT_CLIENT_ID is not a GUID (value not shown"),
        ("PROVKIT_TENANT_ID", SENTINEL, "PROVKIT_TENANT_ID is neither a GUID nor a domain"),
        ("PROVKIT_TENANT_ID", "common", "names no tenant"),
        ("PROVKIT_CA_BUNDLE", "/nonexistent/ca.pem", "PROVKIT_CA_BUNDLE names '/nonexistent/ca.pem'"),
        ("PROVKIT_CERT_PATH", "/nonexistent/cert.pem", "PROVKIT_CERT_PATH names"),
        ("PROVKIT_AUTHORITY_URL", "https://login.microsoftonline.us/contoso.com", "without the tenant"),
        ("PROVKIT_AUTHORITY_URL", "http://login.example", "is not a https URL"),
        ("PROVKIT_GRAPH_URL", "https://graph.microsoft.us/v1.0", "without the version"),
    ],
)
def test_bad_settings_name_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert expected in str(caught.value) and caught.value.remedy
    assert SENTINEL not in str(caught.value)


# --------------------------------------------------------------------------------------------- methods


def test_secret_sign_in_gives_a_token_graph_accepts(server: RunningServer, tmp_path: Path) -> None:
    settings = Settings.from_env(server.env())
    provider = sign_in(settings, cache_path=tmp_path / "cache.json", environ=server.env())  # auto: the secret
    assert provider.method == "secret"
    token = provider.token()
    assert claims(token)["appid"] == server.client_id and claims(token)["aud"] == server.base_url
    assert GraphClient(settings, provider).resolve_app("Zendesk").display_name == "Zendesk"
    assert "client secret" in provider.describe() and str(tmp_path / "cache.json") in provider.describe()

    calls: list[int] = []

    def from_vault() -> str:
        calls.append(1)
        return SENTINEL

    vaulted = sign_in(settings, secret=from_vault, cache_path=False, environ={})
    assert vaulted.method == "secret" and calls == [1] and vaulted.cache_path is None


def test_certificate_sign_in_uses_the_registered_thumbprint(server: RunningServer, tmp_path: Path) -> None:
    env = env_of(server, PROVKIT_CERT_PATH=str(server.cert_path))
    provider = sign_in(Settings.from_env(env), cache_path=False, environ=env)  # auto prefers the certificate
    assert provider.method == "certificate"
    assert server.cert_thumbprint in provider.describe()
    assert claims(provider.token())["appidacr"] == "2"  # authenticated with a certificate

    intruder, _ = make_client_certificate(tmp_path, "intruder")
    env = env_of(server, PROVKIT_CERT_PATH=str(intruder))
    with pytest.raises(SignInError) as caught:
        sign_in(Settings.from_env(env), cache_path=False, environ=env)
    assert caught.value.aadsts == "AADSTS700027" and "not registered" in str(caught.value)
    assert "BEGIN" not in str(caught.value)


def test_device_code_shows_the_message_and_reuses_the_cache(server: RunningServer, tmp_path: Path) -> None:
    env = env_of(server, PROVKIT_CLIENT_ID=server.device_client_id, PROVKIT_CLIENT_SECRET=None)
    settings = Settings.from_env(env)
    prompts: list[str] = []
    cache = tmp_path / "cache.json"
    provider = sign_in(settings, device_code_prompt=prompts.append, cache_path=cache, environ=env)
    assert provider.method == "device-code" and len(prompts) == 1
    assert "https://microsoft.com/devicelogin" in prompts[0] and "enter the code" in prompts[0]
    token = provider.token()
    assert claims(token)["idtyp"] == "user" and "AuditLog.Read.All" in claims(token)["scp"]

    again = sign_in(settings, device_code_prompt=prompts.append, cache_path=cache, environ=env)
    assert len(prompts) == 1  # no second prompt: the cached sign-in (refresh token) is used
    assert claims(again.token())["upn"] == claims(token)["upn"]


def test_an_expired_access_token_is_refreshed_without_a_new_prompt(tmp_path: Path) -> None:
    # msal renews tokens with under 5 minutes left, so a 60-second lifetime forces the refresh-token path.
    short = start_server(make_tenant(), throttle=False, client_secret=SENTINEL, token_lifetime=60)
    try:
        env = env_of(short, PROVKIT_CLIENT_ID=short.device_client_id, PROVKIT_CLIENT_SECRET=None)
        settings = Settings.from_env(env)
        prompts: list[str] = []
        cache = tmp_path / "cache.json"
        first = sign_in(settings, device_code_prompt=prompts.append, cache_path=cache, environ=env).token()
        second = sign_in(settings, device_code_prompt=prompts.append, cache_path=cache, environ=env).token()
        assert len(prompts) == 1 and first != second
        assert claims(second)["upn"] == claims(first)["upn"]
    finally:
        short.stop()


def test_device_code_default_prompt_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    show_device_code("To sign in, open https://microsoft.com/devicelogin and enter the code ABCD")
    assert "enter the code ABCD" in capsys.readouterr().err


class _FakeIdentityEndpoint(BaseHTTPRequestHandler):
    """App Service's managed identity endpoint: checks X-IDENTITY-HEADER, returns a token for ``resource``."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        query = {name: values[0] for name, values in parse_qs(urlsplit(self.path).query).items()}
        server: Any = self.server
        server.seen.append({"X-IDENTITY-HEADER": self.headers.get("X-IDENTITY-HEADER"), **query})
        if self.headers.get("X-IDENTITY-HEADER") != server.header:
            self._reply(
                401, {"statusCode": 401, "message": "Unauthorized request: the identity header is wrong"}
            )
            return
        token = server.mint()
        expires = int(claims(token)["exp"])
        self._reply(200, {"access_token": token, "expires_on": str(expires), "resource": query.get("resource"),
                          "token_type": "Bearer"})  # fmt: skip

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def identity_endpoint(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FakeIdentityEndpoint)
    httpd.seen = []  # type: ignore[attr-defined]
    httpd.header = "fake-identity-header-value"  # type: ignore[attr-defined]

    def mint() -> str:  # the platform behind the endpoint: here, the simulated authority
        session = make_session(Settings.from_env(server.env()))
        form = {
            "grant_type": "client_credentials",
            "client_id": server.client_id,
            "client_secret": SENTINEL,
            "scope": f"{server.base_url}/.default",
        }
        response = session.post(f"{server.base_url}/{server.tenant.tenant_id}/oauth2/v2.0/token", data=form)
        return str(response.json()["access_token"])

    httpd.mint = mint  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    for name in ("IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{httpd.server_address[1]}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", httpd.header)  # type: ignore[attr-defined]
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_managed_identity_through_an_app_service_style_endpoint(
    server: RunningServer, identity_endpoint: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(server, PROVKIT_CLIENT_ID=None, PROVKIT_CLIENT_SECRET=None)
    settings = Settings.from_env(env)
    provider = sign_in(settings, cache_path=False, environ={**env, "IDENTITY_ENDPOINT": "set"})
    assert provider.method == "managed-identity" and "system-assigned" in provider.describe()
    assert GraphClient(settings, provider).resolve_app("Zendesk").matched_by == "display name"
    seen = identity_endpoint.seen
    assert seen[0]["resource"] == server.base_url and "client_id" not in seen[0]

    user_assigned = Settings.from_env(env_of(server, PROVKIT_CLIENT_SECRET=None))
    assert sign_in(user_assigned, method="managed-identity", cache_path=False).method == "managed-identity"
    assert seen[-1]["client_id"] == server.client_id

    monkeypatch.setenv("IDENTITY_HEADER", "not-the-right-header")
    with pytest.raises(SignInError, match="managed identity endpoint gave no token") as caught:
        sign_in(settings, method="managed-identity", cache_path=False)
    assert "identity header is wrong" in str(caught.value) and "admin consent" in str(caught.value)


# ------------------------------------------------------------------------------------------ token cache


def test_token_cache_is_private_and_shared_across_providers(server: RunningServer, tmp_path: Path) -> None:
    settings = Settings.from_env(server.env())
    cache = tmp_path / "nested" / "token-cache.json"
    first = sign_in(settings, secret=SENTINEL, cache_path=cache)
    assert first.cache_path == cache and stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert SENTINEL not in cache.read_text()
    before = token_requests(server)
    second = sign_in(settings, secret=SENTINEL, cache_path=cache)
    assert second.token() == first.token() and token_requests(server) == before  # no trip to the authority

    second.invalidate()  # as after a 401: the next token is a new one, and the cache no longer holds the old one
    renewed = second.token()
    assert renewed != first.token() and token_requests(server) == before + 1
    assert first.token() not in cache.read_text() and renewed in cache.read_text()

    os.chmod(cache, 0o644)
    sign_in(settings, secret=SENTINEL, cache_path=cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    cache.write_text("{not json")
    assert sign_in(settings, secret=SENTINEL, cache_path=cache).token()
    assert json.loads(cache.read_text())  # rewritten whole


def test_session_honours_the_ca_bundle_despite_requests_ca_bundle(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())  # a bundle without the local CA
    monkeypatch.setenv("CURL_CA_BUNDLE", requests.certs.where())
    settings = Settings.from_env(server.env())
    session = make_session(settings)
    assert session.headers["User-Agent"].startswith("provkit/") and session.trust_env is False
    assert session.get(f"{server.base_url}/_sim/health").status_code == 200
    assert sign_in(settings, secret=SENTINEL, cache_path=False).token()


# --------------------------------------------------------------------------------------- refusals (live)


@pytest.mark.parametrize(
    ("changes", "secret", "code", "phrase"),
    [
        ({}, SENTINEL + "-wrong", "AADSTS7000215", "secret's ID rather than its value"),
        ({"PROVKIT_CLIENT_ID": UNKNOWN_APP}, SENTINEL, "AADSTS700016", "client ID or the tenant is wrong"),
        ({"PROVKIT_TENANT_ID": "fabrikam.onmicrosoft.com"}, SENTINEL, "AADSTS90002", "tenant was not found"),
    ],
    ids=["wrong secret", "unknown app", "unknown tenant"],
)
def test_refusals_name_the_code_cause_and_fix(
    server: RunningServer, changes: dict[str, str], secret: str, code: str, phrase: str
) -> None:
    settings = Settings.from_env(env_of(server, **changes))
    with pytest.raises(SignInError) as caught:
        sign_in(settings, secret=secret, cache_path=False)
    error = caught.value
    assert error.aadsts == code and phrase in str(error) and error.remedy and error.link
    assert code.removeprefix("AADSTS") in str(error.link)
    assert SENTINEL not in str(error) and SENTINEL not in repr(error)


def test_device_code_with_a_confidential_app_explains_public_client_flows(server: RunningServer) -> None:
    env = env_of(server, PROVKIT_CLIENT_SECRET=None)  # the reader app is confidential
    with pytest.raises(SignInError) as caught:
        sign_in(
            Settings.from_env(env), method="device-code", device_code_prompt=lambda m: None, cache_path=False
        )
    assert caught.value.aadsts == "AADSTS7000218" and "Allow public client flows" in str(caught.value)


def test_unreachable_authority_and_missing_secret(server: RunningServer) -> None:
    nowhere = Settings.from_env(env_of(server, PROVKIT_AUTHORITY_URL="https://127.0.0.1:9"))
    with pytest.raises(SignInError, match="could not be reached"):
        sign_in(nowhere, secret=SENTINEL, cache_path=False)
    with pytest.raises(ConfigError, match="PROVKIT_CLIENT_SECRET is not set"):
        sign_in(Settings.from_env(server.env()), method="secret", cache_path=False, environ={})
    with pytest.raises(ConfigError, match="valid: auto, secret, certificate"):
        sign_in(Settings.from_env(server.env()), method="password", cache_path=False)


# ---------------------------------------------------------------------------- refusals (authority answers)


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


TENANT = "0c7b1f8e-7d3a-4c39-9a57-2f1d6c0e5b11"
GRAPH = "https://graph.microsoft.com"
READER, EXPIRED, PUBLIC = (
    "6f1e2d3c-0b1a-4f5e-8d7c-6b5a4f3e2d1c",
    "7a2b3c4d-5e6f-4a1b-9c8d-7e6f5a4b3c2d",
    "9c4d5e6f-7a8b-4c3d-9e0f-1a2b3c4d5e6f",
)


@pytest.fixture
def authority() -> tuple[Authority, Clock]:
    """The simulated identity platform without a socket, for answers the server's registrations cannot give."""
    clock = Clock()
    roles = frozenset({"AuditLog.Read.All"})
    registrations = [
        Registration(READER, "reader", secret=SENTINEL, app_roles=roles),
        Registration(EXPIRED, "old", secret=SENTINEL, secret_expires=clock() - 60, app_roles=roles),
        Registration(
            PUBLIC, "workbook", public_client=True, delegated_scopes=frozenset({"Directory.Read.All"})
        ),
    ]
    return Authority("https://login.test", TENANT, registrations, clock), clock


def device_flow(authority: Authority, scope: str) -> dict[str, Any]:
    _, flow, _ = authority.device_code(TENANT, {"client_id": PUBLIC, "scope": scope})
    authority.approve_device_code(flow["user_code"], "investigator@contoso.com")
    _, body, _ = authority.token(
        TENANT, {"grant_type": GRANT_DEVICE_CODE, "client_id": PUBLIC, "device_code": flow["device_code"]}
    )
    return body


def test_each_aadsts_code_gets_its_cause_and_fix(authority: tuple[Authority, Clock]) -> None:
    platform, clock = authority
    app_only = {"grant_type": "client_credentials", "client_secret": SENTINEL, "scope": f"{GRAPH}/.default"}
    answers = {
        "7000222": platform.token(TENANT, {**app_only, "client_id": EXPIRED})[1],
        "1002012": platform.token(
            TENANT, {**app_only, "client_id": READER, "scope": f"{GRAPH}/AuditLog.Read.All"}
        )[1],
        "65001": device_flow(platform, f"{GRAPH}/AuditLog.Read.All"),
        "90002": platform.token("fabrikam.com", {**app_only, "client_id": READER})[1],
    }
    signed_in = device_flow(platform, f"{GRAPH}/.default offline_access")
    clock.offset += 91 * 86400
    refresh = {
        "grant_type": GRANT_REFRESH_TOKEN,
        "client_id": PUBLIC,
        "refresh_token": signed_in["refresh_token"],
    }
    answers["700082"] = platform.token(TENANT, refresh)[1]
    expected = {
        "7000222": "Create a new client secret",
        "1002012": "/.default",
        "65001": "Grant admin consent",
        "90002": "PROVKIT_CLOUD",
        "700082": "Sign in again",
    }
    for code, body in answers.items():
        assert body["error_codes"] == [int(code)], body
        error = sign_in_error_from(body, method="secret", known_secrets=(SENTINEL,))
        assert error.aadsts == f"AADSTS{code}" and expected[code] in str(error), str(error)
        assert error.correlation_id == body["correlation_id"] and error.correlation_id in str(error)
        assert "Trace ID" not in error.message and SENTINEL not in str(error)


def test_unknown_codes_quote_one_line_without_anything_token_like() -> None:
    body = {
        "error": "invalid_request",
        "error_description": "AADSTS50000: There was an error issuing a token eyJhbGciOiJ.eyJzdWIiOiIx.c2lnbmF0dXJl "
        "for client secret abc8Q~0123456789abcdefghijklmnopqrstuv near app 6f1e2d3c-0b1a-4f5e-8d7c-6b5a4f3e2d1c.\n"
        "Second line: details nobody asked for",
        "error_codes": [50000],
    }
    error = sign_in_error_from(body)
    text = str(error)
    assert error.aadsts == "AADSTS50000" and "There was an error issuing a token" in text
    assert "eyJ" not in text and "abc8Q~" not in text and "Second line" not in text
    assert "6f1e2d3c-0b1a-4f5e-8d7c-6b5a4f3e2d1c" in text  # ids stay: they are what support needs


# ---------------------------------------------------------------------------------------- no secret leaks


def test_sentinel_secret_and_tokens_never_reach_messages_reprs_or_logs(
    server: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("msal", "urllib3", "provkit"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    settings = Settings.from_env(server.env())
    texts: list[str] = [repr(settings), settings.describe()]
    providers: list[TokenProvider] = [
        sign_in(settings, secret=SENTINEL, cache_path=tmp_path / "c.json"),
        sign_in(Settings.from_env(env_of(server, PROVKIT_CERT_PATH=str(server.cert_path))), cache_path=False),
    ]
    tokens = [p.token() for p in providers]
    GraphClient(settings, providers[0]).get("/servicePrincipals")
    texts += [repr(p) for p in providers] + [p.describe() for p in providers]
    for wrong in (SENTINEL + "x", SENTINEL[:-1]):
        with pytest.raises(SignInError) as caught:
            sign_in(settings, secret=wrong, cache_path=False)
        texts += [str(caught.value), repr(caught.value), *map(str, caught.value.args)]
        texts += traceback.format_exception(caught.value)
    with pytest.raises(SignInError) as caught:
        sign_in(
            Settings.from_env(env_of(server, PROVKIT_CLIENT_ID=UNKNOWN_APP)),
            secret=SENTINEL,
            cache_path=False,
        )
    texts += [str(caught.value), *traceback.format_exception(caught.value)]
    texts.append(caplog.text)
    private_key = server.cert_path.read_text().split("-----BEGIN CERTIFICATE-----")[0]
    everything = "\n".join(texts)
    assert SENTINEL[:20] not in everything
    assert all(token not in everything for token in tokens)
    assert "PRIVATE KEY" not in everything and private_key.strip().splitlines()[1] not in everything
    assert "client_secret" not in caplog.text and "client_assertion=" not in caplog.text
