"""Sign-in to Microsoft Graph: settings from the environment, four ways to get a token, a token cache on disk.

``Settings.from_env()`` reads the ``PROVKIT_*`` variables and checks them; ``sign_in(settings)`` picks a method
(certificate, client secret, managed identity or device code), gets a first token straight away, so a wrong
setting fails here with an explanation rather than on the first Graph call, and returns a :class:`TokenProvider`
that :class:`provkit.data.graph.GraphClient` asks for tokens.

The client secret is never stored in :class:`Settings`: it is read from ``PROVKIT_CLIENT_SECRET`` (or a callable
you pass, such as a vault look-up) only while signing in, and no message, repr or log line of this module holds a
secret, a client assertion or a token.

The clouds, :class:`Settings` and :func:`make_session` live in :mod:`provkit.data.settings` and are re-exported
here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import msal
import platformdirs
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from provkit.data.settings import (
    _GUID,
    _LINK_APP_ONLY,
    _LINK_ERRORS,
    APP_PERMISSIONS,
    CLOUDS,
    ENV_CA_BUNDLE,
    ENV_CERT_PATH,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    ENV_CLOUD,
    ENV_GRAPH_URL,
    ENV_TENANT_ID,
    MANAGED_IDENTITY_MARKERS,
    METHODS,
    Cloud,
    Method,
    Settings,
    _shown,
    get_cloud,
    make_session,
)
from provkit.errors import ConfigError, ProvkitError, SignInError

__all__ = [
    "CLOUDS",
    "Cloud",
    "Method",
    "Settings",
    "TokenProvider",
    "default_cache_path",
    "get_cloud",
    "redact",
    "make_session",
    "sign_in",
    "sign_in_error_from",
]

log = logging.getLogger("provkit.data.auth")


# ------------------------------------------------------------------------------------------- token cache


def default_cache_path() -> Path:
    """Where tokens are cached unless told otherwise: the user's cache folder, ``provkit/token-cache.json``."""
    return Path(platformdirs.user_cache_dir("provkit")) / "token-cache.json"


class _CacheFile:
    """An msal token cache kept in a file only its owner can read (0600), replaced atomically on each change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cache = msal.SerializableTokenCache()
        self._lock = threading.Lock()
        if path.exists():
            self._tighten()
            try:
                self.cache.deserialize(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("token cache %s is unreadable (%s); starting a new one", path, type(exc).__name__)

    def _tighten(self) -> None:
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            os.chmod(self.path, 0o600)
            log.info("token cache %s was readable by others (mode %o); set it to 0600", self.path, mode)

    def save(self) -> None:
        """Write the cache if it changed: to a 0600 temporary file beside it, then rename over the old one."""
        with self._lock:
            if not self.cache.has_state_changed:
                return
            state = self.cache.serialize()
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(state)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise


# -------------------------------------------------------------------------------------------- errors


# code -> (what it means, what to do). Codes are those the identity platform returns for this tool's sign-ins.
_AADSTS: dict[str, tuple[str, str]] = {
    "7000215": (
        "The client secret was refused: it is wrong, or it is the secret's ID rather than its value.",
        "Copy the secret's Value (shown once, when it was created) from App registrations > Certificates & "
        f"secrets into {ENV_CLIENT_SECRET}, or create a new secret.",
    ),
    "7000222": (
        "The client secret has expired.",
        f"Create a new client secret under App registrations > Certificates & secrets and put its Value in "
        f"{ENV_CLIENT_SECRET}; consider a certificate ({ENV_CERT_PATH}) instead.",
    ),
    "700016": (
        "The app was not found in this tenant: the client ID or the tenant is wrong.",
        f"Check {ENV_CLIENT_ID} is the Application (client) ID and {ENV_TENANT_ID} the tenant the app is "
        f"registered or consented in (and {ENV_CLOUD}, if the tenant is in a national cloud).",
    ),
    "90002": (
        "The tenant was not found.",
        f"Check {ENV_TENANT_ID} (a GUID or a verified domain) and {ENV_CLOUD}: a US Government or China tenant "
        "is not found in the global cloud.",
    ),
    "7000218": (
        "The app does not allow public client flows, which device code sign-in needs.",
        "In the app registration, Authentication > Advanced settings, set 'Allow public client flows' to Yes; or "
        f"sign in with a secret ({ENV_CLIENT_SECRET}) or a certificate ({ENV_CERT_PATH}).",
    ),
    "65001": (
        "Consent is missing: the app has not been granted the permissions it asks for.",
        f"In App registrations > API permissions, add {APP_PERMISSIONS} and select 'Grant admin consent'.",
    ),
    "700027": (
        "The certificate was refused: it is not registered on the app, or it expired.",
        f"Upload the public part of the certificate in {ENV_CERT_PATH} to App registrations > Certificates & "
        "secrets, and compare its thumbprint with the one shown there.",
    ),
    "1002012": (
        "The scope asked for is not valid for app-only sign-in (it must end in /.default).",
        f"Check {ENV_GRAPH_URL} and {ENV_CLOUD}: provkit asks for '<Graph root>/.default'.",
    ),
    "500011": (
        "The resource (Microsoft Graph in this cloud) was not found in the tenant.",
        f"Check {ENV_CLOUD} and {ENV_GRAPH_URL}: tokens are not interchangeable between clouds.",
    ),
    "700082": (
        "The saved sign-in (refresh token) expired after a long time unused.",
        "Sign in again; provkit will ask for a new device code.",
    ),
    "70020": (
        "The device code expired before anyone entered it.",
        "Sign in again and enter the code within 15 minutes.",
    ),
}
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")  # a token or client assertion
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?(?:-----END [A-Z ]+-----|$)", re.S)
_OPAQUE = re.compile(r"[A-Za-z0-9+/_~.=-]{24,}")
_THUMBPRINT = re.compile(r"^(?:[0-9A-F]{40}|[0-9A-F]{64})$")
_TRACE = re.compile(r"\s*Trace ID:\s*(?P<trace>[0-9a-fA-F-]+)")
_CORRELATION = re.compile(r"Correlation ID:\s*(?P<correlation>[0-9a-fA-F-]+)")
_TAIL = re.compile(r"\s*Trace ID:.*$")


def redact(text: str, known: tuple[str, ...] = ()) -> str:
    """Remove ``known`` secrets and anything token-like (JWTs, PEM blocks, long opaque strings) from ``text``.

    GUIDs, certificate thumbprints, URLs and host names are kept: they are what a reader needs to act.
    """
    for value in known:
        if value:
            text = text.replace(value, "[secret]")
    text = _PEM.sub("[redacted]", _JWT.sub("[redacted]", _shown(text)))

    def opaque(match: re.Match[str]) -> str:
        word = match.group(0).strip(".")
        if _GUID.match(word) or _THUMBPRINT.match(word) or "//" in word or "/" in word and "." in word:
            return match.group(0)
        if not (re.search(r"\d", word) and re.search(r"[A-Za-z]", word)) or re.fullmatch(
            r"[A-Za-z0-9.-]+\.[a-z]{2,}", word
        ):
            return match.group(0)  # plain words and host names
        return "[redacted]"

    return _OPAQUE.sub(opaque, text)


def sign_in_error_from(
    result: Mapping[str, Any], *, method: str = "secret", known_secrets: tuple[str, ...] = ()
) -> SignInError:
    """Turn an msal error result (``error``, ``error_description``, ``error_codes``...) into a SignInError.

    Known AADSTS codes get their likely cause and fix; others quote the first line of ``error_description``
    with anything token-like removed. ``known_secrets`` are scrubbed from the text as well.
    """
    description = str(result.get("error_description") or "")
    first_line = description.strip().splitlines()[0] if description.strip() else ""
    codes = result.get("error_codes") or []
    match = re.search(r"AADSTS(\d+)", first_line)
    number = str(codes[0]) if codes else (match.group(1) if match else None)
    aadsts = f"AADSTS{number}" if number else None
    trace = _TRACE.search(first_line)
    correlation = _CORRELATION.search(first_line)
    correlation_id = str(
        result.get("correlation_id") or (correlation.group("correlation") if correlation else "")
    )
    trace_id = str(result.get("trace_id") or (trace.group("trace") if trace else ""))
    said = redact(_TAIL.sub("", first_line), known_secrets)[:400]
    error = str(result.get("error") or "") or None
    known = _AADSTS.get(number or "")
    support = f" (correlation id {correlation_id})" if correlation_id else ""
    link = f"https://login.microsoftonline.com/error?code={number}" if number else _LINK_ERRORS
    if known is not None:
        meaning, remedy = known
        if number == "7000218" and method != "device-code":
            remedy = "Sign in with a secret or a certificate, or allow public client flows on the app."
        message = f"Sign-in ({method}) failed with {aadsts}. {meaning} Microsoft said: {said}{support}"
    elif method == "managed-identity":
        message = f"The managed identity endpoint gave no token ({error or 'no error code'}): {said}"
        remedy = (
            "Check that a managed identity is enabled on this Azure resource and that it was granted "
            f"{APP_PERMISSIONS} as application permissions with admin consent."
        )
        link = "https://learn.microsoft.com/en-us/entra/identity/managed-identities-azure-resources/overview"
    else:
        message = (
            f"Sign-in ({method}) failed: {aadsts or error or 'unknown error'}: {said or 'no description'}"
        )
        message += support
        remedy = "Look the code up at the link below; check the PROVKIT_* settings and the app registration."
    return SignInError(
        message,
        aadsts=aadsts,
        error=error,
        correlation_id=correlation_id or None,
        trace_id=trace_id or None,
        remedy=remedy,
        link=link,
    )


@contextlib.contextmanager
def _explained(settings: Settings, method: str, known_secrets: tuple[str, ...]) -> Iterator[None]:
    """Turn what msal raises (unknown tenant, unreachable host) into SignInError, without secrets."""
    try:
        yield
    except ProvkitError:
        raise
    except requests.exceptions.SSLError as exc:
        raise SignInError(
            f"Sign-in ({method}) failed: the TLS certificate of {_shown(settings.authority_url or settings.cloud.authority_host)}"
            " was not trusted.",
            remedy=f"For the local simulated tenant set {ENV_CA_BUNDLE} to its CA file; otherwise check the "
            "machine's proxy and CA settings.",
            error=type(exc).__name__,
        ) from None
    except requests.exceptions.RequestException as exc:
        where = (
            "the managed identity endpoint"
            if method == "managed-identity"
            else (_shown(settings.authority_url or settings.cloud.authority_host))
        )
        raise SignInError(
            f"Sign-in ({method}) failed: {where} could not be reached ({type(exc).__name__}).",
            remedy="Check the network, proxy and the PROVKIT_AUTHORITY_URL / PROVKIT_CLOUD settings."
            if method != "managed-identity"
            else "Managed identity only works on an Azure resource that has one; elsewhere use a secret, a "
            "certificate or device code sign-in.",
            error=type(exc).__name__,
        ) from None
    except ValueError as exc:
        text = redact(str(exc).splitlines()[0] if str(exc) else "", known_secrets)
        if method != "managed-identity" and "tenant" in text.lower():
            meaning, remedy = _AADSTS["90002"]
            raise SignInError(
                f"Sign-in ({method}) failed: the tenant {settings.tenant_id!r} was not found at "
                f"{_shown(settings.authority_url or settings.cloud.authority_host)} (AADSTS90002-like). {meaning}",
                aadsts="AADSTS90002",
                error="invalid_tenant",
                remedy=remedy,
                link="https://login.microsoftonline.com/error?code=90002",
            ) from None
        raise SignInError(
            f"Sign-in ({method}) failed: {text}",
            remedy="Check the PROVKIT_* settings.",
            link=_LINK_ERRORS,
        ) from None


# ------------------------------------------------------------------------------------------ token provider


class TokenProvider:
    """Hands out Graph access tokens, refreshing them shortly before they expire; thread-safe.

    ``method`` is how it signs in; ``cache_path`` where tokens are cached on disk (None: memory only).
    Build one with :func:`sign_in`.
    """

    def __init__(
        self,
        method: str,
        acquire: Callable[[], Mapping[str, Any]],
        *,
        summary: str,
        cache: _CacheFile | None,
        msal_cache: msal.TokenCache,
        known_secrets: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.method = method
        self._acquire = acquire
        self._summary = summary
        self._cache_file = cache
        self._msal_cache = msal_cache
        self._known_secrets = known_secrets
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.expires_at: float | None = None  # epoch seconds of the current token's expiry, once one is held
        self.acquisitions = 0  # tokens obtained from msal (from its cache or the identity platform)

    @property
    def cache_path(self) -> Path | None:
        """The token cache file (mode 0600), or None when tokens are kept in memory only."""
        return self._cache_file.path if self._cache_file else None

    def token(self) -> str:
        """Return a valid access token, getting a new one when the held one is near its end; raise SignInError."""
        with self._lock:
            now = self._clock()
            if self._token is not None and now < self._refresh_at:
                return self._token
            result = self._acquire()
            if self._cache_file is not None:
                self._cache_file.save()
            token = result.get("access_token") if isinstance(result, Mapping) else None
            if not token:
                raise sign_in_error_from(result or {}, method=self.method, known_secrets=self._known_secrets)
            lifetime = max(0.0, float(result.get("expires_in") or 0))
            self._token = str(token)
            self.expires_at = now + lifetime
            # Renew a little before the end: a tenth of the lifetime, at most the 5 minutes msal allows.
            self._refresh_at = now + lifetime - min(300.0, lifetime / 10)
            self.acquisitions += 1
            log.debug("got a %s token, valid for %d s", self.method, int(lifetime))
            return self._token

    def invalidate(self) -> None:
        """Forget the held token (after Graph answered 401), here and in msal's cache, so the next is new."""
        with self._lock:
            if self._token is not None:
                stale = self._token
                for entry in list(
                    self._msal_cache.search(
                        msal.TokenCache.CredentialType.ACCESS_TOKEN, query={"secret": stale}
                    )
                ):
                    self._msal_cache.remove_at(entry)
                if self._cache_file is not None:
                    self._cache_file.save()
            self._token = None
            self._refresh_at = 0.0
            self.expires_at = None

    def describe(self) -> str:
        """One line: how this provider signs in and where it caches tokens."""
        where = f"tokens cached in {self.cache_path}" if self.cache_path else "tokens kept in memory"
        return f"Signed in with {self._summary}; {where}."

    def __repr__(self) -> str:
        return f"TokenProvider(method={self.method!r}, cache_path={str(self.cache_path) if self.cache_path else None!r})"


# ------------------------------------------------------------------------------------------------ sign-in


def sign_in(
    settings: Settings,
    *,
    method: Method | str = "auto",
    secret: str | Callable[[], str] | None = None,
    device_code_prompt: Callable[[str], None] | None = None,
    cache_path: str | os.PathLike[str] | Literal[False] | None = None,
    session: requests.Session | None = None,
    environ: Mapping[str, str] | None = None,
    resource: str | None = None,
) -> TokenProvider:
    """Sign in and return a TokenProvider that already holds a first token.

    ``resource`` asks for tokens for another API than Graph (e.g. ``https://api.loganalytics.io``), with the same
    settings, cloud and credential; the scope is ``<resource>/.default``.

    ``method="auto"`` picks a certificate when ``settings.cert_path`` is set, else a client secret when ``secret``
    is given or ``PROVKIT_CLIENT_SECRET`` is set, else the managed identity when ``IDENTITY_ENDPOINT`` or
    ``MSI_ENDPOINT`` is set, else device code. ``secret`` may be a callable (a vault look-up), called once here.
    ``device_code_prompt`` receives the "open this page and enter this code" message (default: shown in a notebook
    if running in one, else printed to stderr). ``cache_path`` is the token cache file (default
    :func:`default_cache_path`; ``False`` keeps tokens in memory). ``environ`` defaults to ``os.environ``; msal
    itself reads the managed identity variables from the process environment.

    Raises ConfigError for a missing or bad setting and SignInError when the identity platform refuses.
    """
    env = os.environ if environ is None else environ
    if method not in METHODS:
        raise ConfigError(f"Unknown sign-in method {method!r}; valid: {', '.join(METHODS)}.")
    if method == "auto":
        method = _choose_method(settings, secret, env)
    session = session if session is not None else make_session(settings)
    if cache_path is False:
        cache_file = None
        msal_cache: msal.TokenCache = msal.SerializableTokenCache()
    else:
        cache_file = _CacheFile(Path(cache_path).expanduser() if cache_path else default_cache_path())
        msal_cache = cache_file.cache
    # With an authority override (the local server), msal must not ask login.microsoftonline.com to validate it.
    discovery = settings.authority_url is None

    known: tuple[str, ...] = ()
    if method == "managed-identity":
        identity: Any = (
            msal.UserAssignedManagedIdentity(client_id=settings.client_id)
            if settings.client_id
            else msal.SystemAssignedManagedIdentity()
        )
        with _explained(settings, method, known):
            client = msal.ManagedIdentityClient(identity, http_client=session, token_cache=msal_cache)
        target = resource or settings.graph_root

        def acquire() -> Mapping[str, Any]:
            with _explained(settings, "managed-identity", ()):
                result: Mapping[str, Any] = client.acquire_token_for_client(resource=target)
                return result

        which = f"user-assigned {settings.client_id}" if settings.client_id else "system-assigned"
        summary = f"the {which} managed identity for {target}"
    else:
        client_id = _require_client_id(settings)
        authority = settings.authority
        scopes = [f"{resource.rstrip('/')}/.default" if resource else settings.scope]
        if method == "device-code":
            with _explained(settings, method, known):
                public = msal.PublicClientApplication(
                    client_id,
                    authority=authority,
                    http_client=session,
                    token_cache=msal_cache,
                    instance_discovery=discovery,
                )
            prompt = device_code_prompt or show_device_code
            acquire = _device_code_acquirer(public, scopes, prompt, settings)
            summary = f"device code as a user of app {client_id} in tenant {settings.tenant_id}"
        else:
            if method == "certificate":
                credential: Any = _certificate_credential(settings)
                summary = f"certificate {credential['thumbprint']} for app {client_id} in tenant {settings.tenant_id}"
            elif method == "secret":
                value = _secret_value(secret, env)
                credential = value
                known = (value,)
                summary = f"a client secret for app {client_id} in tenant {settings.tenant_id}"
            else:  # pragma: no cover - METHODS is checked above
                raise ConfigError(f"Unknown sign-in method {method!r}.")
            with _explained(settings, method, known):
                confidential = msal.ConfidentialClientApplication(
                    client_id,
                    client_credential=credential,
                    authority=authority,
                    http_client=session,
                    token_cache=msal_cache,
                    instance_discovery=discovery,
                )
            secrets_ = known

            def acquire() -> Mapping[str, Any]:
                with _explained(settings, method, secrets_):
                    result: Mapping[str, Any] = confidential.acquire_token_for_client(scopes=scopes)
                    return result

    provider = TokenProvider(
        method, acquire, summary=summary, cache=cache_file, msal_cache=msal_cache, known_secrets=known
    )
    provider.token()  # fail now, with an explanation, rather than on the first Graph call
    return provider


def _choose_method(settings: Settings, secret: object, env: Mapping[str, str]) -> str:
    if settings.cert_path is not None:
        return "certificate"
    if secret is not None or (env.get(ENV_CLIENT_SECRET) or "").strip():
        return "secret"
    if any(env.get(name) for name in MANAGED_IDENTITY_MARKERS):
        return "managed-identity"
    return "device-code"


def _require_client_id(settings: Settings) -> str:
    if not settings.client_id:
        raise ConfigError(
            f"{ENV_CLIENT_ID} is not set.",
            remedy="Set it to the Application (client) ID of the app registration provkit signs in as.",
            link=_LINK_APP_ONLY,
        )
    return settings.client_id


def _secret_value(secret: str | Callable[[], str] | None, env: Mapping[str, str]) -> str:
    value = secret() if callable(secret) else secret
    if value is None:
        value = env.get(ENV_CLIENT_SECRET)
    value = (value or "").strip()
    if not value:
        raise ConfigError(
            f"No client secret: {ENV_CLIENT_SECRET} is not set and none was given.",
            remedy=f"Set {ENV_CLIENT_SECRET} in the environment (never in a notebook), or use a certificate "
            f"({ENV_CERT_PATH}) or device code sign-in.",
            link=_LINK_APP_ONLY,
        )
    return value


def _certificate_credential(settings: Settings) -> dict[str, str]:
    """Read the PEM at ``cert_path`` (private key and certificate); return msal's credential dict."""
    path = settings.cert_path
    if path is None:
        raise ConfigError(
            f"{ENV_CERT_PATH} is not set.",
            remedy="Point it at a PEM file holding the private key and the certificate registered on the app.",
        )
    data = Path(path).read_bytes()
    try:
        certificate = x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        raise ConfigError(
            f"{ENV_CERT_PATH} ({path}) holds no PEM certificate.",
            remedy="Put the certificate (-----BEGIN CERTIFICATE-----) in the same file as its private key.",
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"The private key in {ENV_CERT_PATH} ({path}) is encrypted; provkit needs it unencrypted.",
            remedy="Export it without a passphrase (openssl pkey -in key.pem -out plain.pem) and keep the file "
            "readable by you only.",
        ) from None
    except ValueError:
        raise ConfigError(
            f"{ENV_CERT_PATH} ({path}) holds no private key, or one provkit cannot read.",
            remedy="Put the private key (-----BEGIN PRIVATE KEY-----) in the same PEM file as the certificate.",
        ) from None
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    # Entra's thumbprint: SHA-1 of the certificate's DER encoding, upper-case hex (not a security use of SHA-1).
    thumbprint = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    return {"private_key": key_pem, "thumbprint": thumbprint}


def _device_code_acquirer(
    app: msal.PublicClientApplication,
    scopes: list[str],
    prompt: Callable[[str], None],
    settings: Settings,
) -> Callable[[], Mapping[str, Any]]:
    def acquire() -> Mapping[str, Any]:
        with _explained(settings, "device-code", ()):
            for account in app.get_accounts():
                result: Mapping[str, Any] | None = app.acquire_token_silent_with_error(
                    scopes, account=account
                )
                if result and "access_token" in result:
                    return result
                if result:
                    log.info(
                        "saved sign-in could not be refreshed (%s); asking for a new device code",
                        result.get("error"),
                    )
            flow: dict[str, Any] = app.initiate_device_flow(scopes=scopes)
            if "user_code" not in flow:
                return flow
            prompt(str(flow.get("message", "")))
            answer: Mapping[str, Any] = app.acquire_token_by_device_flow(flow)
            return answer

    return acquire


def show_device_code(message: str) -> None:
    """Show the device code sign-in message: in a notebook as output, elsewhere on stderr."""
    try:  # deferred on purpose: IPython is optional and heavy, needed only when a device code must be shown
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    shell = get_ipython() if get_ipython is not None else None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        display(Markdown(f"**Sign-in needed.** {message}"))  # type: ignore[no-untyped-call]  # IPython has no hints
    else:
        print(message, file=sys.stderr, flush=True)
