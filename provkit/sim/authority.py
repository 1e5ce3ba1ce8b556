"""The simulated Microsoft identity platform: discovery, token and device-code endpoints, and bearer checks.

The local server routes ``/{tenant}/v2.0/.well-known/openid-configuration``, ``/{tenant}/discovery/v2.0/keys``,
``/{tenant}/oauth2/v2.0/token`` and ``/{tenant}/oauth2/v2.0/devicecode`` to :class:`Authority`, and checks every
Graph request with :meth:`Authority.verify_bearer`. Each endpoint method returns ``(status, body, headers)``; error
bodies have the identity platform's shape (``error``, ``error_description`` starting with the AADSTS code,
``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``) so real msal reads them as it reads the real ones.

Grants: client credentials with a secret or a certificate-signed client assertion (RS256 with ``x5t``, or PS256
with ``x5t#S256``, as msal sends them), device code (approved by :meth:`Authority.approve_device_code` or
automatically after a number of polls), and refresh token. Tokens are RS256 JWTs signed with the authority's key.
Secrets, assertions, codes and tokens never appear in an error body, an exception or a repr.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from provkit.errors import ProvkitError
from provkit.sim.certs import make_signing_certificate, sha256_thumbprint_of, thumbprint_of
from provkit.sim.clientauth import (
    Registration,
    TokenError,
    check_client_assertion,
    check_client_secret,
    required_field,
)

__all__ = [
    "GRAPH_APP_ID",
    "Authority",
    "GraphAuthError",
    "Principal",
    "Registration",
    "Response",
]

Response = tuple[int, dict[str, Any], dict[str, str]]

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
DEVICE_LOGIN_URI = "https://microsoft.com/devicelogin"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_REFRESH_TOKEN = "refresh_token"
_OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
_REFRESH_LIFETIME = 90 * 24 * 3600.0
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_USER_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_PII_HIDDEN = (
    "[PII of type 'System.String' is hidden. For more details, see https://aka.ms/IdentityModel/PII.]"
)


@dataclass(frozen=True)
class Principal:
    """Who a Graph request acts as: the app (``user`` None, ``roles`` set) or a user through the app (``scopes``).

    ``object_id`` is the service principal's object id for app-only tokens and the user's for delegated ones.
    """

    client_id: str
    tenant_id: str
    roles: frozenset[str]
    scopes: frozenset[str]
    user: str | None
    object_id: str

    @property
    def app_only(self) -> bool:
        """True for a client-credentials token (no signed-in user)."""
        return self.user is None

    def has_permission(self, *names: str) -> bool:
        """True when any of ``names`` is held as an app role or delegated scope (case-insensitive).

        A held ``X.ReadWrite.Y`` also grants ``X.Read.Y``, as Graph's permission reference states.
        """
        held = {name.lower() for name in self.roles | self.scopes}
        held |= {name.replace(".readwrite.", ".read.", 1) for name in held if ".readwrite." in name}
        return any(name.lower() in held for name in names)


class GraphAuthError(ProvkitError):
    """A bearer token Graph would refuse: ``status`` (401), Graph error ``code`` and ``message``.

    The message never quotes the token. ``headers`` holds the ``WWW-Authenticate`` challenge Graph sends with 401.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = {
            "WWW-Authenticate": (
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
                f'client_id="{GRAPH_APP_ID}"'
            )
        }


@dataclass
class _DeviceFlow:
    device_code: str = field(repr=False)
    user_code: str = field(repr=False)
    client_id: str
    scope: str
    expires_at: float
    polls: int = 0
    user: tuple[str, str] | None = None  # (user principal name, object id) once approved
    redeemed: bool = False


@dataclass(frozen=True)
class _Grant:
    client_id: str
    user: tuple[str, str]
    expires_at: float


class Authority:
    """The token authority for one simulated tenant, thread-safe (the server is threaded).

    ``issuer_base`` is the server's own root (``https://127.0.0.1:8443``); endpoints are advertised under it.
    ``graph_root`` is the resource tokens are issued for (their ``aud``); scopes may name it or Graph's app id.
    ``tenant_domains`` are extra names the tenant answers to (``contoso.onmicrosoft.com``). ``clock`` drives
    every lifetime, so tests can expire tokens without sleeping.
    """

    def __init__(
        self,
        issuer_base: str,
        tenant_id: str,
        registrations: Iterable[Registration],
        clock: Callable[[], float] = time.time,
        signing_key: rsa.RSAPrivateKey | None = None,
        *,
        graph_root: str = "https://graph.microsoft.com",
        tenant_domains: Iterable[str] = (),
        access_token_lifetime: int = 3600,
        device_code_interval: int = 1,
        device_code_lifetime: int = 900,
        auto_approve_device_after_polls: int | None = None,
        auto_approve_user: str = "admin@contoso.onmicrosoft.com",
        other_resources: Iterable[str] = (),
    ) -> None:
        self.issuer_base = issuer_base.rstrip("/")
        self.tenant_id = tenant_id.lower()
        self.graph_root = graph_root.rstrip("/")
        # Resources besides Graph that app-only tokens may be asked for (e.g. Log Analytics); their ``aud``.
        self.other_resources = tuple(r.rstrip("/") for r in other_resources)
        self.access_token_lifetime = int(access_token_lifetime)
        self.device_code_interval = int(device_code_interval)
        self.device_code_lifetime = int(device_code_lifetime)
        self.auto_approve_device_after_polls = auto_approve_device_after_polls
        self.auto_approve_user = auto_approve_user
        self._clock = clock
        self._tenant_names = {self.tenant_id} | {d.lower() for d in tenant_domains}
        self._registrations: dict[str, Registration] = {}
        self._thumbprints: dict[str, tuple[str, str]] = {}
        for registration in registrations:
            key = registration.client_id.lower()
            if key in self._registrations:
                raise ValueError(f"two registrations share the client id {registration.client_id}")
            self._registrations[key] = registration
            if registration.certificate_pem is not None:
                pem = registration.certificate_pem
                self._thumbprints[key] = (thumbprint_of(pem), sha256_thumbprint_of(pem))

        self._signing_key = signing_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public_key = self._signing_key.public_key()
        self._signing_cert = make_signing_certificate(self._signing_key)
        der = self._signing_cert.public_bytes(serialization.Encoding.DER)
        self._kid = _b64url(hashlib.sha1(der, usedforsecurity=False).digest())
        self._signing_cert_b64 = base64.b64encode(der).decode()

        self._lock = threading.Lock()
        self._device_flows: dict[str, _DeviceFlow] = {}  # by device code
        self._user_codes: dict[str, str] = {}  # user code -> device code
        self._refresh_grants: dict[str, _Grant] = {}
        self._issued: list[str] = []

    # ----------------------------------------------------------------------------------------- discovery

    @property
    def token_endpoint(self) -> str:
        """The v2.0 token endpoint, as advertised (and as a client assertion's ``aud`` must name it)."""
        return f"{self.issuer_base}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def access_token_issuer(self) -> str:
        """The ``iss`` of access tokens: Graph accepts v1.0-format tokens from ``sts.windows.net``."""
        return f"https://sts.windows.net/{self.tenant_id}/"

    def openid_configuration(self, tenant: str, *, correlation_id: str | None = None) -> Response:
        """Answer ``GET /{tenant}/v2.0/.well-known/openid-configuration``; unknown tenant: 400 AADSTS90002."""
        if not self._knows_tenant(tenant):
            return self._error_response(self._tenant_not_found(tenant), correlation_id)
        base = f"{self.issuer_base}/{self.tenant_id}"
        body = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.graph_root}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],  # fmt: skip
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": urlsplit(self.graph_root).netloc,
            "rbac_url": "https://pas.windows.net",
        }
        return 200, body, self._headers(correlation_id)

    def jwks(self) -> Response:
        """Answer the ``jwks_uri``: the public half of the token-signing key, with its certificate."""
        jwk = dict(RSAAlgorithm.to_jwk(self._public_key, as_dict=True))
        jwk.update(
            {
                "use": "sig",
                "kid": self._kid,
                "x5t": self._kid,
                "x5c": [self._signing_cert_b64],
                "issuer": f"{self.issuer_base}/{self.tenant_id}/v2.0",
            }
        )
        return 200, {"keys": [jwk]}, {"Content-Type": "application/json; charset=utf-8"}

    # ---------------------------------------------------------------------------------------- device code

    def device_code(
        self, tenant: str, form: Mapping[str, str], *, correlation_id: str | None = None
    ) -> Response:
        """Answer ``POST /{tenant}/oauth2/v2.0/devicecode``: a user code to show and a device code to poll with.

        The client's type is not checked here; a confidential client fails when it redeems the code, as in Entra.
        """
        try:
            self._require_tenant(tenant)
            registration = self._registration(form)
            scope = required_field(form, "scope")
            self._delegated_scopes_of(registration, scope, check_consent=False)
        except TokenError as failure:
            return self._error_response(failure, correlation_id)
        now = self._clock()
        user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(9))
        device_code = "DAQABIQEAAAB" + secrets.token_urlsafe(96)
        flow = _DeviceFlow(
            device_code=device_code,
            user_code=user_code,
            client_id=registration.client_id,
            scope=scope,
            expires_at=now + self.device_code_lifetime,
        )
        with self._lock:
            self._device_flows[device_code] = flow
            self._user_codes[user_code] = device_code
            self._issued.append(device_code)
        body = {
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": DEVICE_LOGIN_URI,
            "expires_in": self.device_code_lifetime,
            "interval": self.device_code_interval,
            "message": (
                f"To sign in, use a web browser to open the page {DEVICE_LOGIN_URI} and enter the code "
                f"{user_code} to authenticate."
            ),
        }
        return 200, body, self._headers(correlation_id, no_store=True)

    def approve_device_code(
        self, user_code: str, user_principal_name: str, *, user_object_id: str | None = None
    ) -> None:
        """Sign ``user_principal_name`` in on the device-login page with ``user_code`` (case-insensitive).

        Raises ``LookupError`` when no pending, unexpired flow has that code.
        """
        with self._lock:
            device_code = self._user_codes.get(user_code.strip().upper())
            flow = self._device_flows.get(device_code) if device_code else None
            if flow is None or flow.redeemed or flow.expires_at <= self._clock():
                raise LookupError("no pending device-code sign-in has that user code")
            flow.user = (user_principal_name, user_object_id or self._user_object_id(user_principal_name))

    # --------------------------------------------------------------------------------------------- token

    def token(self, tenant: str, form: Mapping[str, str], *, correlation_id: str | None = None) -> Response:
        """Answer ``POST /{tenant}/oauth2/v2.0/token`` for the client-credentials, device-code and refresh grants.

        ``form`` is the decoded ``application/x-www-form-urlencoded`` body, one value per name.
        """
        try:
            self._require_tenant(tenant)
            grant_type = required_field(form, "grant_type")
            registration = self._registration(form)
            if grant_type == GRANT_CLIENT_CREDENTIALS:
                body = self._client_credentials(registration, form)
            elif grant_type == GRANT_DEVICE_CODE:
                body = self._device_code_grant(registration, form)
            elif grant_type == GRANT_REFRESH_TOKEN:
                body = self._refresh_grant(registration, form)
            else:
                raise TokenError(
                    400,
                    "unsupported_grant_type",
                    70003,
                    f"The app requested an unsupported grant type '{grant_type[:80]}'.",
                )
        except TokenError as failure:
            return self._error_response(failure, correlation_id)
        return 200, body, self._headers(correlation_id, no_store=True)

    def _client_credentials(self, registration: Registration, form: Mapping[str, str]) -> dict[str, Any]:
        method = self._authenticate(registration, form, required=True)
        scope = required_field(form, "scope")
        scopes = scope.split()
        for value in scopes:
            if not value.endswith("/.default"):
                raise TokenError(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {value[:200]} is not valid. Client credential flows must have a "
                    "scope value with /.default suffixed to the resource identifier (application ID URI).",
                )
        if len(scopes) != 1:
            raise TokenError(
                400,
                "invalid_scope",
                70011,
                "The provided value for the input parameter 'scope' is not valid.",
            )
        resource = scopes[0].removesuffix("/.default").rstrip("/")
        other = next((r for r in self.other_resources if r.lower() == resource.lower()), None)
        if other is None:
            self._require_graph(resource)
        claims = self._access_claims(registration, method)
        if other is not None:
            claims["aud"] = other
        claims["idtyp"] = "app"
        claims["oid"] = claims["sub"] = self._service_principal_id(registration)
        if registration.app_roles:
            claims["roles"] = sorted(registration.app_roles)
        access_token = self._sign(claims)
        return {
            "token_type": "Bearer",
            "expires_in": claims["exp"] - claims["iat"],
            "ext_expires_in": claims["exp"] - claims["iat"],
            "access_token": access_token,
        }

    def _device_code_grant(self, registration: Registration, form: Mapping[str, str]) -> dict[str, Any]:
        method = self._authenticate(registration, form, required=not registration.public_client)
        device_code = required_field(form, "device_code")
        now = self._clock()
        with self._lock:
            flow = self._device_flows.get(device_code)
            if flow is None or flow.redeemed or flow.client_id.lower() != registration.client_id.lower():
                raise TokenError(
                    400,
                    "invalid_grant",
                    70000,
                    "The provided value for the input parameter 'device_code' is not valid.",
                )
            if flow.expires_at <= now:
                raise TokenError(
                    400,
                    "expired_token",
                    70020,
                    "The provided value for the input parameter 'device_code' is not valid. This device code has "
                    "expired.",
                )
            if flow.user is None:
                flow.polls += 1
                limit = self.auto_approve_device_after_polls
                if limit is not None and flow.polls > limit:
                    flow.user = (self.auto_approve_user, self._user_object_id(self.auto_approve_user))
                else:
                    raise TokenError(
                        400,
                        "authorization_pending",
                        70016,
                        "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                    )
            flow.redeemed = True
            user, scope = flow.user, flow.scope
        return self._delegated_response(registration, method, user, scope, form)

    def _refresh_grant(self, registration: Registration, form: Mapping[str, str]) -> dict[str, Any]:
        method = self._authenticate(registration, form, required=not registration.public_client)
        refresh_token = required_field(form, "refresh_token")
        with self._lock:
            grant = self._refresh_grants.get(refresh_token)
        if grant is None or grant.client_id.lower() != registration.client_id.lower():
            raise TokenError(
                400,
                "invalid_grant",
                9002313,
                "Invalid request. Request is malformed or invalid. The refresh token is not valid.",
            )
        if grant.expires_at <= self._clock():
            raise TokenError(
                400,
                "invalid_grant",
                700082,
                "The refresh token has expired due to inactivity.",
            )
        scope = form.get("scope") or ".default offline_access openid profile"
        return self._delegated_response(registration, method, grant.user, scope, form)

    def _delegated_response(
        self,
        registration: Registration,
        method: str,
        user: tuple[str, str],
        scope: str,
        form: Mapping[str, str],
    ) -> dict[str, Any]:
        granted, echoed, oidc = self._delegated_scopes_of(registration, scope, check_consent=True)
        upn, object_id = user
        claims = self._access_claims(registration, method)
        claims.update(
            {
                "idtyp": "user",
                "oid": object_id,
                "sub": _b64url(hashlib.sha256(f"{object_id}|{registration.client_id}".encode()).digest()),
                "scp": " ".join(sorted(granted)),
                "upn": upn,
                "unique_name": upn,
                "name": upn.split("@", 1)[0],
            }
        )
        access_token = self._sign(claims)
        lifetime = claims["exp"] - claims["iat"]
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(
                echoed + [s for s in ("openid", "profile", "email", "offline_access") if s in oidc]
            ),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }
        if "offline_access" in oidc:
            refresh_token = "1.AXkA" + secrets.token_urlsafe(160)
            with self._lock:
                self._refresh_grants[refresh_token] = _Grant(
                    client_id=registration.client_id,
                    user=user,
                    expires_at=self._clock() + _REFRESH_LIFETIME,
                )
                self._issued.append(refresh_token)
            body["refresh_token"] = refresh_token
        if "openid" in oidc:
            now = claims["iat"]
            body["id_token"] = self._sign(
                {
                    "aud": registration.client_id,
                    "iss": f"{self.issuer_base}/{self.tenant_id}/v2.0",
                    "iat": now,
                    "nbf": now,
                    "exp": claims["exp"],
                    "name": claims["name"],
                    "oid": object_id,
                    "preferred_username": upn,
                    "sub": claims["sub"],
                    "tid": self.tenant_id,
                    "ver": "2.0",
                },
                record=False,
            )
        if form.get("client_info") == "1":
            body["client_info"] = _b64url(json.dumps({"uid": object_id, "utid": self.tenant_id}).encode())
        return body

    # ------------------------------------------------------------------------------------ bearer checks

    def verify_bearer(self, authorization_header: str | None, audience: str | None = None) -> Principal:
        """Return who a Graph request's ``Authorization`` header acts as, or raise :class:`GraphAuthError`.

        Checks what Graph checks: a Bearer JWT signed by this authority, for ``graph_root``, from this tenant,
        within its lifetime (by ``clock``, no skew, so a short lifetime expires exactly). ``audience`` names
        another resource the token must be for instead of Graph (Log Analytics).
        """
        code = "InvalidAuthenticationToken"
        text = (authorization_header or "").strip()
        scheme, _, token = text.partition(" ")
        token = token.strip()
        if not text or (scheme.lower() == "bearer" and not token):
            raise GraphAuthError(401, code, "Access token is empty.")
        if scheme.lower() != "bearer":
            raise GraphAuthError(401, code, "Access token validation failure.")
        dots = token.count(".")
        if dots != 2:
            reason = "there are no dots (.)" if dots == 0 else f"it has {dots} dots (.) instead of 2"
            raise GraphAuthError(
                401,
                code,
                f"IDX14100: JWT is not well formed, {reason}.\nThe token needs to be in JWS or JWE Compact "
                "Serialization Format. (JWS): 'EncodedHeader.EndcodedPayload.EncodedSignature'. (JWE): "
                "'EncodedProtectedHeader.EncodedEncryptedKey.EncodedInitializationVector.EncodedCiphertext."
                "EncodedAuthenticationTag'.",
            )
        try:
            jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidSignatureError:
            raise GraphAuthError(401, code, "Access token validation failure. Invalid signature.") from None
        except jwt.InvalidTokenError:
            raise GraphAuthError(
                401,
                code,
                f"IDX14102: Unable to decode the header '{_PII_HIDDEN}' as Base64Url encoded string.",
            ) from None
        allowed = (audience,) if audience else (self.graph_root, GRAPH_APP_ID)
        if claims.get("aud") not in allowed:
            raise GraphAuthError(401, code, "Access token validation failure. Invalid audience.")
        if claims.get("iss") != self.access_token_issuer or claims.get("tid") != self.tenant_id:
            raise GraphAuthError(401, code, "Access token validation failure. Invalid issuer.")
        now = self._clock()
        try:
            expires, not_before = float(claims["exp"]), float(claims.get("nbf", 0))
        except (KeyError, TypeError, ValueError):
            raise GraphAuthError(401, code, "Access token validation failure.") from None
        if now >= expires:
            raise GraphAuthError(401, code, "Lifetime validation failed, the token is expired.")
        if now < not_before:
            raise GraphAuthError(401, code, "Lifetime validation failed, the token is not yet valid.")
        delegated = claims.get("idtyp") == "user" or "scp" in claims
        return Principal(
            client_id=str(claims.get("appid", "")),
            tenant_id=str(claims["tid"]),
            roles=frozenset(claims.get("roles") or ()),
            scopes=frozenset(str(claims.get("scp", "")).split()),
            user=str(claims.get("upn")) if delegated else None,
            object_id=str(claims.get("oid", "")),
        )

    def issued_tokens(self) -> list[str]:
        """Every access token, refresh token and device code issued so far, oldest first (for leak searches)."""
        with self._lock:
            return list(self._issued)

    # ---------------------------------------------------------------------------------------- internals

    def _knows_tenant(self, tenant: str) -> bool:
        return tenant.lower() in self._tenant_names

    def _require_tenant(self, tenant: str) -> None:
        if not self._knows_tenant(tenant):
            raise self._tenant_not_found(tenant)

    def _tenant_not_found(self, tenant: str) -> TokenError:
        return TokenError(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{tenant[:100]}' not found. Check to make sure you have the correct tenant ID and are signing "
            "into the correct cloud. Check with your subscription administrator, this may happen if there are no "
            "active subscriptions for the tenant.",
        )

    def _registration(self, form: Mapping[str, str]) -> Registration:
        client_id = required_field(form, "client_id")
        registration = self._registrations.get(client_id.lower())
        if registration is None:
            # A value that is not a GUID may be a secret pasted into the wrong setting: do not echo it.
            shown = client_id if _GUID.match(client_id) else "(not a GUID; not shown)"
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{shown}' was not found in the directory '{self.tenant_id}'. This "
                "can happen if the application has not been installed by the administrator of the tenant or "
                "consented to by any user in the tenant. You may have sent your authentication request to the "
                "wrong tenant.",
            )
        return registration

    def _authenticate(self, registration: Registration, form: Mapping[str, str], *, required: bool) -> str:
        """Check the client credential in ``form``; return ``appidacr`` ("0" none, "1" secret, "2" certificate)."""
        if form.get("client_assertion") or form.get("client_assertion_type"):
            check_client_assertion(
                registration,
                form,
                registered=self._thumbprints.get(registration.client_id.lower()),
                now=self._clock(),
                token_endpoint=self.token_endpoint,
                is_token_endpoint=self._is_token_endpoint,
            )
            return "2"
        secret = form.get("client_secret")
        if secret:
            check_client_secret(registration, secret, now=self._clock())
            return "1"
        if required:
            raise TokenError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        return "0"

    def _is_token_endpoint(self, audience: str) -> bool:
        audience = audience.rstrip("/")
        prefix = f"{self.issuer_base}/"
        if not audience.startswith(prefix):
            return False
        tenant, _, path = audience[len(prefix) :].partition("/")
        return tenant.lower() in self._tenant_names and path in ("oauth2/v2.0/token", "oauth2/token")

    def _require_graph(self, resource: str) -> None:
        if resource.rstrip("/").lower() not in (self.graph_root.lower(), GRAPH_APP_ID):
            raise TokenError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource[:200]} was not found in the tenant named "
                f"{self.tenant_id}. This can happen if the application has not been installed by the administrator "
                "of the tenant or consented to by any user in the tenant. You might have sent your authentication "
                "request to the wrong tenant.",
            )

    def _delegated_scopes_of(
        self, registration: Registration, scope: str, *, check_consent: bool
    ) -> tuple[set[str], list[str], set[str]]:
        """Split a delegated ``scope`` into (granted Graph permission names, echoed resource scopes, OIDC scopes).

        Bare names (``AuditLog.Read.All``) mean Graph, as in Entra. ``.default`` means every consented scope.
        """
        oidc = {s.lower() for s in scope.split() if s.lower() in _OIDC_SCOPES}
        requested: list[tuple[str, str]] = []  # (name, as the client wrote it)
        default = False
        for value in scope.split():
            if value.lower() in _OIDC_SCOPES:
                continue
            resource, _, name = value.rpartition("/")
            if resource:
                self._require_graph(resource)
            if name == ".default":
                default = True
            elif name:
                requested.append((name, value))
            else:
                raise TokenError(
                    400,
                    "invalid_scope",
                    70011,
                    "The provided value for the input parameter 'scope' is not valid.",
                )
        if default and requested:
            raise TokenError(
                400,
                "invalid_scope",
                70011,
                "The provided value for the input parameter 'scope' is not valid. '.default' cannot be combined "
                "with resource-specific scopes.",
            )
        if default:
            names = sorted(registration.delegated_scopes)
            return set(names), [f"{self.graph_root}/{name}" for name in names], oidc
        consented = {name.lower() for name in registration.delegated_scopes}
        if check_consent and any(name.lower() not in consented for name, _ in requested):
            raise TokenError(
                400,
                "invalid_grant",
                65001,
                f"The user or administrator has not consented to use the application with ID "
                f"'{registration.client_id}' named '{registration.display_name}'. Send an interactive "
                "authorization request for this user and resource.",
                suberror="consent_required",
            )
        return {name for name, _ in requested}, [value for _, value in requested], oidc

    def _access_claims(self, registration: Registration, method: str) -> dict[str, Any]:
        now = int(self._clock())
        return {
            "aud": self.graph_root,
            "iss": self.access_token_issuer,
            "iat": now,
            "nbf": now,
            "exp": now + self.access_token_lifetime,
            "app_displayname": registration.display_name,
            "appid": registration.client_id,
            "appidacr": method,
            "idp": self.access_token_issuer,
            "tid": self.tenant_id,
            "uti": _b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }

    def _sign(self, claims: dict[str, Any], *, record: bool = True) -> str:
        token = jwt.encode(
            claims,
            self._signing_key,
            algorithm="RS256",
            headers={"typ": "JWT", "kid": self._kid, "x5t": self._kid},
        )
        if record:
            with self._lock:
                self._issued.append(token)
        return token

    def _service_principal_id(self, registration: Registration) -> str:
        return registration.service_principal_id or str(
            uuid.uuid5(
                uuid.NAMESPACE_URL, f"{self.tenant_id}/servicePrincipals/{registration.client_id.lower()}"
            )
        )

    def _user_object_id(self, user_principal_name: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.tenant_id}/users/{user_principal_name.lower()}"))

    def _headers(self, correlation_id: str | None, *, no_store: bool = False) -> dict[str, str]:
        headers = {"Content-Type": "application/json; charset=utf-8", "x-ms-request-id": str(uuid.uuid4())}
        if correlation_id:
            headers["client-request-id"] = correlation_id
        if no_store:
            headers["Cache-Control"] = "no-store, no-cache"
            headers["Pragma"] = "no-cache"
        return headers

    def _error_response(self, failure: TokenError, correlation_id: str | None) -> Response:
        headers = self._headers(correlation_id, no_store=True)
        trace_id = headers["x-ms-request-id"]
        correlation = correlation_id if correlation_id and _GUID.match(correlation_id) else str(uuid.uuid4())
        stamp = datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)
        body: dict[str, Any] = {
            "error": failure.error,
            "error_description": (
                f"AADSTS{failure.code}: {failure.description} Trace ID: {trace_id} Correlation ID: {correlation} "
                f"Timestamp: {stamp:%Y-%m-%d %H:%M:%S}Z"
            ),
            "error_codes": [failure.code],
            "timestamp": f"{stamp:%Y-%m-%d %H:%M:%S}Z",
            "trace_id": trace_id,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={failure.code}",
        }
        body.update(failure.extra)
        return failure.status, body, headers


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
