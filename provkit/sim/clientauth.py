"""Client authentication at the simulated token endpoint: the app registrations, their secrets and
certificate-signed client assertions, and the identity platform's error answers (AADSTS codes).

:class:`~provkit.sim.authority.Authority` calls these; nothing here keeps state. Secrets and assertions never
appear in an exception message.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_SKEW = 300.0  # Entra tolerates five minutes of clock skew on client assertions


@dataclass(frozen=True)
class Registration:
    """An app registration and its service principal in the simulated tenant.

    ``app_roles`` are application permissions granted with admin consent; ``delegated_scopes`` the delegated ones.
    ``secret_expires`` and ``certificate_expires`` are epoch seconds (None: never). ``certificate_pem`` is the
    public certificate of the certificate credential (a PEM that also holds a private key is accepted too).
    """

    client_id: str
    display_name: str
    secret: str | None = field(default=None, repr=False)
    secret_expires: float | None = None
    certificate_pem: bytes | None = field(default=None, repr=False)
    app_roles: frozenset[str] = frozenset()
    public_client: bool = False
    delegated_scopes: frozenset[str] = frozenset()
    certificate_expires: float | None = None
    service_principal_id: str | None = None


class TokenError(Exception):
    """Internal: an identity-platform error answer on its way out of a grant handler."""

    def __init__(self, status: int, error: str, code: int, description: str, **extra: Any) -> None:
        super().__init__(f"AADSTS{code}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description
        self.extra = extra


def required_field(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise TokenError(
            400,
            "invalid_request",
            900144,
            f"The request body must contain the following parameter: '{name}'.",
        )
    return value


def check_client_secret(registration: Registration, secret: str, *, now: float) -> None:
    """Check a client secret against the registration's (compared in constant time) and its expiry at ``now``."""
    expected = registration.secret
    if expected is None or not hmac.compare_digest(secret.encode(), expected.encode()):
        raise TokenError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client "
            "secret value, not the client secret ID, for a secret added to app "
            f"'{registration.client_id}'.",
        )
    if registration.secret_expires is not None and registration.secret_expires <= now:
        raise TokenError(
            401,
            "invalid_client",
            7000222,
            f"The provided client secret keys for app '{registration.client_id}' are expired. Visit the "
            "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider "
            "using certificate credentials for added security: https://aka.ms/certCreds.",
        )


def check_client_assertion(
    registration: Registration,
    form: Mapping[str, str],
    *,
    registered: tuple[str, str] | None,
    now: float,
    token_endpoint: str,
    is_token_endpoint: Callable[[str], bool],
) -> None:
    """Check a certificate-signed client assertion in ``form`` (msal's RS256 with ``x5t`` or PS256 with
    ``x5t#S256``) against ``registered`` (the certificate's SHA-1 and SHA-256 thumbprints) at ``now``."""
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
        raise TokenError(
            401,
            "invalid_client",
            700027,
            f"Client assertion type must be '{CLIENT_ASSERTION_TYPE}'.",
        )
    assertion = required_field(form, "client_assertion")
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        raise TokenError(400, "invalid_request", 50027, "JWT token is invalid or malformed.") from None
    used = assertion_thumbprint(header)
    if used is None:
        raise TokenError(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. [Reason - The client assertion header has no "
            "x5t or x5t#S256 thumbprint of the signing certificate.]",
        )
    kind, thumbprint = used
    if registered is None or thumbprint != registered[0 if kind == "x5t" else 1]:
        raise TokenError(
            401,
            "invalid_client",
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on "
            f"application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', "
            "Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for "
            f"app Id '{registration.client_id}'. Review the documentation at "
            "https://docs.microsoft.com/en-us/graph/deployments to determine the corresponding service "
            "endpoint and https://docs.microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http "
            "to build a query request URL, such as "
            f"'https://graph.microsoft.com/beta/applications/{registration.client_id}']",
        )
    if registration.certificate_expires is not None and registration.certificate_expires <= now:
        raise TokenError(
            401,
            "invalid_client",
            700027,
            "Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint "
            f"of key used by client: '{thumbprint}']",
        )
    assert registration.certificate_pem is not None  # a registered thumbprint implies a certificate
    public_key = x509.load_pem_x509_certificates(registration.certificate_pem)[0].public_key()
    # RS256 and PS256 need an RSA key; the certificates of provkit and msal's users are RSA.
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise TokenError(401, "invalid_client", 700027, "Client assertion failed signature validation.")
    try:
        claims = jwt.decode(
            assertion,
            public_key,
            algorithms=["RS256", "PS256"],
            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError:
        raise TokenError(
            401, "invalid_client", 700027, "Client assertion failed signature validation."
        ) from None
    except jwt.PyJWTError:
        raise TokenError(400, "invalid_request", 50027, "JWT token is invalid or malformed.") from None
    audiences = claims.get("aud")
    audiences = audiences if isinstance(audiences, list) else [audiences]
    if not any(isinstance(a, str) and is_token_endpoint(a) for a in audiences):
        raise TokenError(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. [Reason - The audience claim must be the token "
            f"endpoint '{token_endpoint}'.]",
        )
    if claims.get("iss") != registration.client_id or claims.get("sub") != registration.client_id:
        raise TokenError(
            401,
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        )
    try:
        expires, not_before = float(claims["exp"]), float(claims.get("nbf", claims.get("iat", now)))
    except (KeyError, TypeError, ValueError):
        raise TokenError(400, "invalid_request", 50027, "JWT token is invalid or malformed.") from None
    if now > expires + ASSERTION_SKEW or now < not_before - ASSERTION_SKEW:
        raise TokenError(
            401, "invalid_client", 700024, "Client assertion is not within its valid time range."
        )


def assertion_thumbprint(header: Mapping[str, Any]) -> tuple[str, str] | None:
    """Return ("x5t" or "x5t#S256", upper-case hex thumbprint) from a client assertion's header, if present."""
    for kind in ("x5t#S256", "x5t"):
        value = header.get(kind)
        if isinstance(value, str) and value:
            try:
                raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            except (binascii.Error, ValueError):
                return kind, "(undecodable)"
            return kind, raw.hex().upper()
    return None
