"""GraphClient: the one way provkit talks to Microsoft Graph (a live tenant or the local simulated one).

It pages by following ``@odata.nextLink`` verbatim, paces ``/auditLogs`` calls under Graph's reporting limit
(5 requests per 10 s per app and tenant), retries 429 (honouring Retry-After), 502/503/504, dropped connections
and truncated bodies with capped exponential backoff and full jitter, renews the token once after a 401, and turns
error answers into typed errors that say what to do (:mod:`provkit.errors`). It is read-only unless built with
``allow_writes=True``.

On top sit the reads the workbook needs: resolving an app by name, appId or object id, synchronization jobs and
their schema, app role assignments, users and groups, directory audits, and provisioning logs by time slice.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from provkit.data.auth import Settings, TokenProvider, make_session, redact
from provkit.data.pacing import AuditPacer, shared_pacer
from provkit.errors import (
    AmbiguousAppError,
    CloudNotSupportedError,
    ConfigError,
    GraphError,
    GraphUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    ReadOnlyError,
    ThrottledError,
)

__all__ = [
    "GraphClient",
    "GraphStats",
    "ResolvedApp",
    "permission_for",
    "time_slices",
]

log = logging.getLogger("provkit.data.graph")

EventHook = Callable[..., None]

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
MAX_EMPTY_PAGES = 50  # empty pages in a row, each with a nextLink, before paging is taken to be stuck
MAX_RESUMES = 3  # times a provisioning query resumes after its paging token stopped working, without progress
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_MAX_CANDIDATES = 10
# inference: no documented default or maximum $top for /auditLogs/provisioning (reference 1.5 and 1.8); public
# scripts use 500, 999 and 1000, and pages of up to 1,000 are reported. Refused sizes fall back in this order.
MAX_PAGE_SIZE = 1000
_PAGE_SIZE_FALLBACKS = (999, 500, 100)
_PAGE_SIZES: dict[str, int] = {}  # Graph root -> the $top last accepted after a refusal, for this process
_TOP_WORD = re.compile(r"(?<![a-z])top(?![a-z])", re.IGNORECASE)

LINK_THROTTLING = "https://learn.microsoft.com/en-us/graph/throttling-limits"
LINK_ERRORS = "https://learn.microsoft.com/en-us/graph/errors"
LINK_PERMISSIONS = "https://learn.microsoft.com/en-us/graph/permissions-reference"
LINK_PROVISIONING_LOGS = "https://learn.microsoft.com/en-us/graph/api/provisioningobjectsummary-list"
LINK_SYNC_PERMISSIONS = "https://learn.microsoft.com/en-us/graph/api/synchronization-synchronizationjob-get"
LINK_APP_OBJECTS = (
    "https://learn.microsoft.com/en-us/entra/identity-platform/app-objects-and-service-principals"
)
LINK_CLOUDS = "https://learn.microsoft.com/en-us/graph/deployments"

ID_HINT = (
    "An enterprise app has three ids: its service principal object id (Enterprise applications > Object ID), "
    "its appId (Application (client) ID) and its app registration's object id. Synchronization and log calls "
    "want the service principal object id; give provkit the app's name or either of the first two ids and it "
    "resolves the right one (GraphClient.resolve_app, or --app)."
)


# --------------------------------------------------------------------------------------------- results


@dataclass
class GraphStats:
    """What a GraphClient did: requests sent, pages read, retries, 429s received, seconds spent waiting."""

    requests: int = 0
    pages: int = 0
    retries: int = 0
    throttled: int = 0
    waited_seconds: float = 0.0


@dataclass(frozen=True)
class ResolvedApp:
    """An app the user named, resolved to its service principal; ``matched_by`` says how it was found."""

    service_principal_id: str
    app_id: str
    display_name: str
    matched_by: str  # "object id", "appId", "display name" or "display name prefix"
    query: str = ""

    def describe(self) -> str:
        """One line, e.g. "Resolved 'Zendesk' by display name to service principal <id> (appId <id>)"."""
        text = (
            f"Resolved '{self.query or self.display_name}' by {self.matched_by} to service principal "
            f"{self.service_principal_id} (appId {self.app_id})"
        )
        if self.query and self.query != self.display_name:
            text += f", named '{self.display_name}'"
        return text


def permission_for(path: str, method: str = "GET") -> str:
    """The Graph application permission a call to ``path`` (relative to /v1.0) needs, as a user-facing name."""
    lowered = path.lower()
    if "/synchronization" in lowered:
        return "Synchronization.Read.All" if method.upper() == "GET" else "Synchronization.ReadWrite.All"
    if lowered.startswith("/auditlogs"):
        return "AuditLog.Read.All (together with Directory.Read.All)"
    if lowered.startswith("/serviceprincipals"):
        return "Application.Read.All"
    if lowered.startswith(("/users", "/groups")):
        return "Directory.Read.All"
    return "the permission this call needs"


def time_slices(
    start: datetime, end: datetime, slice: timedelta = timedelta(hours=6)
) -> list[tuple[datetime, datetime]]:
    """Cut [start, end) into consecutive half-open slices of at most ``slice``, in time order.

    Inner boundaries fall on whole multiples of ``slice`` since 1970-01-01 UTC, so runs over overlapping windows
    share boundaries (a resumed fetch finds the same slices); the first and last slices may be shorter.
    Times must be timezone-aware; they are returned in UTC. An empty window gives an empty list.
    """
    if slice <= timedelta(0):
        raise ConfigError(f"time_slices needs a positive slice, got {slice}.")
    start, end = _utc(start, "start"), _utc(end, "end")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    slices: list[tuple[datetime, datetime]] = []
    cursor = start
    while cursor < end:
        boundary = epoch + ((cursor - epoch) // slice + 1) * slice
        upper = min(boundary, end)
        slices.append((cursor, upper))
        cursor = upper
    return slices


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(
            f"{name} ({value.isoformat()}) has no time zone; provkit will not guess one.",
            remedy="Pass a timezone-aware datetime, e.g. datetime(2025, 3, 1, tzinfo=UTC).",
        )
    return value.astimezone(UTC)


def _odata_datetime(value: datetime) -> str:
    """An OData datetime literal in UTC (unquoted), with microseconds only when there are some."""
    value = _utc(value, "time")
    # strftime does not zero-pad years before 1000 on every platform; OData wants four digits.
    text = f"{value.year:04d}-" + value.strftime("%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def _json_type(value: Any) -> str:
    return {dict: "object", str: "string", type(None): "null", bool: "boolean"}.get(type(value), "number")


def _entry_instant(entry: Any) -> datetime | None:
    """An entry's activityDateTime to the microsecond (rounded down; Graph may give 100-ns ticks), or None."""
    text = entry.get("activityDateTime") if isinstance(entry, dict) else None
    if not isinstance(text, str):
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    try:
        value = datetime.fromisoformat(base + "." + (fraction or "0")[:6].ljust(6, "0") + _zone(zone))
    except ValueError:
        return None
    return value.astimezone(UTC)


def _zone(zone: str | None) -> str:
    return "+00:00" if zone in (None, "Z") else zone


def _odata_string(text: str) -> str:
    """A quoted OData string literal: single quotes doubled."""
    return "'" + text.replace("'", "''") + "'"


def _segment(value: str) -> str:
    """One URL path segment (ids, user principal names with #EXT#) percent-encoded."""
    return quote(value, safe="@")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date), or None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _Retry(Exception):
    """Internal: an attempt failed in a way worth retrying."""

    def __init__(self, reason: str, *, status: int | None = None, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.delay = delay


# ------------------------------------------------------------------------------------------------ client


class GraphClient:
    """Microsoft Graph v1.0 for one tenant, through ``tokens``; read-only unless ``allow_writes``.

    ``timeout`` is (connect, read) seconds per request. A call is retried at most ``max_retries`` times and
    gives up once waiting again would pass ``retry_budget_seconds`` since it began. ``pacer`` paces
    ``/auditLogs`` calls (default: 5 per 10 s, the process's :func:`shared_pacer` for this tenant and client id,
    or a private one on an injected ``clock`` and ``sleep``). ``on_event(kind, **data)`` hears
    "request", "page", "retry", "throttle_wait" and "paced"; ``stats`` counts the same.
    """

    def __init__(
        self,
        settings: Settings,
        tokens: TokenProvider,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (10, 120),
        max_retries: int = 8,
        retry_budget_seconds: float = 300,
        pacer: AuditPacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_event: EventHook | None = None,
        allow_writes: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.session = session if session is not None else make_session(settings)
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_budget_seconds = retry_budget_seconds
        if pacer is None:
            # Real time: the process's one pacer for this tenant and client id; an injected clock gets its own.
            real_time = clock is time.monotonic and sleep is time.sleep
            pacer = shared_pacer(settings) if real_time else AuditPacer(5, 10.0, clock=clock, sleep=sleep)
        self.pacer = pacer
        self.allow_writes = allow_writes
        self.stats = GraphStats()
        self._sleep = sleep
        self._clock = clock
        self._on_event = on_event
        self._rng = rng or random.Random()
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        mode = "read-write" if self.allow_writes else "read-only"
        return f"GraphClient({self.settings.graph_api!r}, {self.tokens.method}, {mode})"

    # ------------------------------------------------------------------------------------- plumbing

    def url_for(self, path_or_url: str) -> str:
        """The full URL for a path relative to /v1.0 (``/auditLogs/provisioning``) or a Graph URL (a nextLink).

        Refuses URLs on any other host, so the token is only ever sent to Graph.
        """
        root = self.settings.graph_root
        if "://" in path_or_url:
            if not (path_or_url == root or path_or_url.startswith(root + "/")):
                raise ConfigError(
                    f"Refusing to send the Graph token to {urlsplit(path_or_url).netloc or path_or_url!r}: "
                    f"it is not {root}.",
                    remedy="Pass a path such as /auditLogs/provisioning, or a link Graph returned.",
                )
            return path_or_url
        path = path_or_url if path_or_url.startswith("/") else "/" + path_or_url
        if path.startswith(("/v1.0/", "/beta/")):
            return root + path
        return self.settings.graph_api + path

    def _emit(self, kind: str, **data: Any) -> None:
        if self._on_event is not None:
            self._on_event(kind, **data)

    def _count(self, **increments: float) -> None:
        with self._stats_lock:
            for name, amount in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + amount)

    def _relative(self, url: str) -> str:
        path = urlsplit(url).path
        for prefix in ("/v1.0", "/beta"):
            if path.startswith(prefix + "/"):
                return path[len(prefix) :]
        return path

    def _request(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        *,
        idempotent: bool = True,
    ) -> dict[str, Any] | None:
        """Send one call with retries; return the parsed JSON object (None for an empty answer)."""
        relative = self._relative(url)
        paced = relative.lower().startswith("/auditlogs")
        client_request_id = str(uuid.uuid4())
        started = self._clock()
        attempt = 0
        renewed = False
        while True:
            try:
                return self._attempt(
                    method, url, params, body, relative, paced, client_request_id, idempotent
                )
            except _Retry as failure:
                if failure.status == 401:
                    if renewed:
                        raise self._unauthorized(method, url) from None
                    renewed = True
                    self.tokens.invalidate()
                    self._count(retries=1)
                    self._emit("retry", reason="token refused (401)", attempt=attempt, delay=0.0, url=url)
                    continue
                attempt += 1
                delay = failure.delay
                if delay is None:
                    delay = self._rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))
                elapsed = self._clock() - started
                if attempt > self.max_retries or elapsed + delay > self.retry_budget_seconds:
                    raise self._gave_up(method, url, failure, attempt, elapsed) from None
                self._count(retries=1, waited_seconds=delay)
                self._emit("retry", reason=failure.reason, attempt=attempt, delay=delay, url=url)
                if failure.status == 429:
                    self._emit("throttle_wait", seconds=delay)
                log.debug(
                    "retrying %s %s in %.2f s (%s, attempt %d)", method, url, delay, failure.reason, attempt
                )
                self._sleep(delay)

    def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        body: Any,
        relative: str,
        paced: bool,
        client_request_id: str,
        idempotent: bool,
    ) -> dict[str, Any] | None:
        headers = {
            "Authorization": f"Bearer {self.tokens.token()}",
            "Accept": "application/json",
            "client-request-id": client_request_id,
        }
        slot = self.pacer.slot() if paced else contextlib.nullcontext(0.0)
        with slot as waited:
            if waited:
                self._count(waited_seconds=waited)
                self._emit("paced", seconds=waited)
            self._count(requests=1)
            try:
                # Never follow a redirect: a page from elsewhere is not Graph's data, even without the token.
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except (
                requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
                requests.Timeout,
            ) as exc:
                log.debug("%s %s -> no answer (%s)", method, url, type(exc).__name__)
                if not idempotent:
                    raise GraphUnavailableError(
                        f"The connection dropped during {method} {relative} ({type(exc).__name__}); the change may "
                        "or may not have been made.",
                        method=method,
                        url=relative,
                        client_request_id=client_request_id,
                        remedy="Check the job's status before trying again; provkit does not repeat changes "
                        "on its own.",
                        link=LINK_ERRORS,
                    ) from None
                raise _Retry(f"connection dropped ({type(exc).__name__})") from None
        status = response.status_code
        request_id = response.headers.get("request-id")
        log.debug("%s %s -> %s (request-id %s)", method, response.url, status, request_id)
        self._emit("request", method=method, url=response.url, status=status, request_id=request_id)
        if 300 <= status < 400:
            target = urlsplit(response.headers.get("Location") or "").netloc or "an unnamed place"
            raise GraphError(
                f"Graph answered {method} {relative} with a redirect ({status}) to {target}; provkit does not follow "
                "redirects for data, so nothing from it was stored.",
                status=status,
                request_id=request_id,
                method=method,
                url=relative,
                remedy="Check PROVKIT_GRAPH_URL and any proxy between here and Graph, then run again: the range "
                "this page belongs to stays uncovered and is fetched again.",
                link=LINK_ERRORS,
            )
        if 200 <= status < 300:
            if status == 204 or not response.content:
                return None
            try:
                data = response.json()
            except ValueError:
                raise _Retry("truncated or unreadable JSON body", status=status) from None
            if not isinstance(data, dict):
                raise GraphError(
                    f"Graph answered {method} {relative} with JSON that is not an object.",
                    status=status,
                    request_id=request_id,
                    method=method,
                    url=relative,
                )
            return data
        if status == 401:
            raise _Retry("token refused", status=401)
        if status in RETRYABLE_STATUS:
            delay = _retry_after(response.headers.get("Retry-After"))
            if status == 429:
                self._count(throttled=1)
                if paced:
                    self.pacer.throttled(delay)
            raise _Retry(f"HTTP {status}", status=status, delay=delay)
        raise self._error(response, method, relative)

    # --------------------------------------------------------------------------------------- errors

    def _error(self, response: requests.Response, method: str, relative: str) -> GraphError:
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        error = payload.get("error") if isinstance(payload, dict) else None
        error = error if isinstance(error, dict) else {}
        inner = error.get("innerError") or error.get("innererror") or {}
        inner = inner if isinstance(inner, dict) else {}
        status = response.status_code
        code = str(error.get("code") or response.reason or "")
        said = redact(str(error.get("message") or response.reason or "no message").splitlines()[0])[:500]
        fields: dict[str, Any] = {
            "status": status,
            "code": code,
            "request_id": response.headers.get("request-id") or inner.get("request-id"),
            "client_request_id": response.headers.get("client-request-id") or inner.get("client-request-id"),
            "method": method,
            "url": relative,
        }
        if status == 403:
            permission = permission_for(relative, method)
            link = LINK_PERMISSIONS
            if relative.lower().startswith("/auditlogs"):
                link = LINK_PROVISIONING_LOGS
            elif "/synchronization" in relative.lower():
                link = LINK_SYNC_PERMISSIONS
            if code.lower() == "authentication_requestfromnonpremiumtenantorb2ctenant":
                # Documented (reference 1.8): the reporting endpoints without a P1/P2 licence.
                return PermissionDeniedError(
                    "The tenant has no Microsoft Entra ID P1 or P2 licence, which the provisioning logs and "
                    f"directory audits require (Graph: {code}). Graph said: {said}",
                    remedy="Activate Microsoft Entra ID P1 or P2 in the tenant (a trial works), then fetch again. "
                    "Without it, job status and schema still work, and the admin center shows the logs of the "
                    "last 7 days for download (provkit import).",
                    link=LINK_PROVISIONING_LOGS,
                    **fields,
                )
            if code.lower() == "authentication_msgraphpermissionmissing":
                # Seen on reporting endpoints in community reports: the token carries no such role at all.
                return PermissionDeniedError(
                    f"The access token carries no {permission} permission (Graph: {code}). Graph said: {said}",
                    permission=permission,
                    remedy=f"Add {permission} to the app registration as an application permission, grant admin "
                    "consent, then sign in again: a token only carries the permissions consented before it was "
                    "issued.",
                    link=link,
                    **fields,
                )
            return PermissionDeniedError(
                f"Permission denied: this call needs {permission}. Graph said: {said}",
                permission=permission,
                remedy=f"Grant {permission} to the app as an application permission (Microsoft Graph) and give "
                "admin consent (App registrations > API permissions > Grant admin consent). With device code "
                "sign-in the user also needs a role that may read it (e.g. Reports Reader for logs).",
                link=link,
                **fields,
            )
        if status == 404:
            hint = ID_HINT if "/serviceprincipals" in relative.lower() else "Check the id in the request."
            return NotFoundError(
                f"Not found. Graph said: {said}", remedy=hint, link=LINK_APP_OBJECTS, **fields
            )
        if status == 400 and "skiptoken" in (said + relative).lower():
            return GraphError(
                f"Graph no longer accepts the paging token of {relative}: {said}",
                remedy="Paging tokens expire, and a restarted service forgets them. Run the fetch again: it resumes "
                "from the last stored entry (provisioning log queries already resume on their own a few times).",
                link=LINK_ERRORS,
                **fields,
            )
        if status == 400:
            return GraphError(
                f"Graph refused the request as malformed: {said}",
                remedy="This is likely a provkit bug or an unsupported filter; report it with the request-id.",
                link=LINK_ERRORS,
                **fields,
            )
        return GraphError(f"Graph answered {status}: {said}", link=LINK_ERRORS, **fields)

    def _unauthorized(self, method: str, url: str) -> GraphError:
        return GraphError(
            "Graph refused the access token twice, even a freshly issued one.",
            status=401,
            code="InvalidAuthenticationToken",
            method=method,
            url=self._relative(url),
            remedy="Check that PROVKIT_CLOUD (or PROVKIT_GRAPH_URL) matches the cloud the tenant is in: tokens "
            "are not interchangeable between clouds.",
            link=LINK_CLOUDS,
        )

    def _gave_up(self, method: str, url: str, failure: _Retry, attempts: int, elapsed: float) -> GraphError:
        relative = self._relative(url)
        tries = f"{attempts} tries over {elapsed:.0f} s"
        if failure.status == 429:
            return ThrottledError(
                f"Graph kept throttling {method} {relative} (429 Too Many Requests) after {tries}.",
                status=429,
                code="TooManyRequests",
                method=method,
                url=relative,
                retry_after=failure.delay,
                remedy="Graph's reporting APIs allow 5 requests per 10 seconds per app and tenant. Wait a minute and "
                "run again (fetches resume where they stopped), fetch a shorter time window, and avoid other "
                "tools reading audit logs with the same app at the same time.",
                link=LINK_THROTTLING,
            )
        return GraphUnavailableError(
            f"Graph did not answer {method} {relative} usefully ({failure.reason}) after {tries}.",
            status=failure.status,
            method=method,
            url=relative,
            remedy="Graph or the network is having trouble. Run again later (fetches resume where they stopped); "
            "if it persists, check Microsoft 365 service health and the proxy.",
            link=LINK_ERRORS,
        )

    # -------------------------------------------------------------------------------------- generic

    def get(self, path_or_url: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET one Graph resource or page; return its JSON object ({} for an empty answer)."""
        return self._request("GET", self.url_for(path_or_url), params) or {}

    def pages(self, path: str, params: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Yield each page of a collection, following ``@odata.nextLink`` verbatim until Graph gives none.

        No page size is assumed: a short or empty page with a nextLink is followed like any other. A page must be
        a JSON object whose ``value`` is a list (the documented shape, reference section 1.6); anything else is a
        GraphError for that page. A nextLink to a page already read, or more than :data:`MAX_EMPTY_PAGES` empty
        pages in a row, stops the paging with a GraphError instead of running forever.
        """
        url = self.url_for(path)
        query: Mapping[str, str] | None = params
        seen: set[str] = set()
        empty_run = 0
        number = 0
        while True:
            page = self._request("GET", url, query) or {}
            number += 1
            values = page.get("value")
            if not isinstance(values, list):
                shape = (
                    "no 'value'" if "value" not in page else f"a 'value' that is a JSON {_json_type(values)}"
                )
                raise GraphError(
                    f"Graph answered page {number} of {self._relative(url)} with {shape}, not a list of entries; "
                    "nothing from it was stored.",
                    url=self._relative(url),
                    method="GET",
                    remedy="Run again: the range this page belongs to stays uncovered and is fetched again. If it "
                    "persists, check for a proxy rewriting Graph's answers.",
                    link=LINK_ERRORS,
                )
            self._count(pages=1)
            self._emit("page", url=url, items=len(values))
            yield page
            link = page.get("@odata.nextLink")
            if not link:
                return
            seen.add(
                url if query is None else url + "?" + "&".join(f"{k}={v}" for k, v in sorted(query.items()))
            )
            empty_run = 0 if values else empty_run + 1
            if str(link) in seen:
                raise GraphError(
                    f"Graph's next-page link after page {number} of {self._relative(url)} leads back to a page "
                    "already read; the paging would loop forever, so it stopped.",
                    url=self._relative(url),
                    method="GET",
                    remedy="Run again (the range stays uncovered and is fetched again); if it repeats, report it "
                    "with the request-id of the last call.",
                    link=LINK_ERRORS,
                )
            if empty_run > MAX_EMPTY_PAGES:
                raise GraphError(
                    f"Graph returned {empty_run} empty pages in a row for {self._relative(url)}, each with a "
                    "next-page link; the paging stopped rather than run on without end.",
                    url=self._relative(url),
                    method="GET",
                    remedy="Run again later (the range stays uncovered and is fetched again), or fetch a shorter "
                    "window with --start/--end.",
                    link=LINK_ERRORS,
                )
            url, query = self.url_for(str(link)), None

    def items(self, path: str, params: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Yield the entries of every page of a collection, in Graph's order."""
        for page in self.pages(path, params):
            yield from page.get("value") or []

    def post(self, path: str, json: Any = None, *, changes_tenant: bool) -> dict[str, Any] | None:
        """POST to Graph; return the JSON answer or None (204). Calls that change the tenant need allow_writes.

        ``changes_tenant`` is the caller's statement of what the call does (restart, provisionOnDemand: True;
        validateCredentials with saved credentials: False). A dropped connection is not retried for those.
        """
        url = self.url_for(path)
        if changes_tenant and not self.allow_writes:
            raise ReadOnlyError(
                f"POST {self._relative(url)} would change the tenant, and this GraphClient is read-only.",
                remedy="Build the client with GraphClient(..., allow_writes=True) only when you mean to make this "
                "change; provkit never does it on its own.",
            )
        return self._request("POST", url, body=json, idempotent=not changes_tenant)

    # -------------------------------------------------------------------------------- app resolution

    def resolve_app(self, app: str) -> ResolvedApp:
        """Find the service principal ``app`` names: an object id, an appId, an exact name or a name prefix.

        A GUID is tried as the service principal object id, then as the appId. A name is matched exactly
        (``displayName eq``), then by prefix ignoring case. Raises NotFoundError, or AmbiguousAppError
        listing the candidates when several match.
        """
        text = app.strip()
        if not text:
            raise ConfigError("No app given.", remedy="Pass the app's display name, appId or object id.")
        if _GUID.match(text):
            with contextlib.suppress(NotFoundError):
                return self._resolved(self.get(f"/servicePrincipals/{_segment(text)}"), "object id", text)
            try:
                found = self.get(f"/servicePrincipals(appId={_odata_string(text)})")
            except NotFoundError:
                raise NotFoundError(
                    f"No service principal has the object id or appId {text}.",
                    status=404,
                    code="Request_ResourceNotFound",
                    remedy=ID_HINT + " An app registration's object id does not work: use the Enterprise "
                    "applications entry.",
                    link=LINK_APP_OBJECTS,
                ) from None
            return self._resolved(found, "appId", text)
        select = {"$select": "id,appId,displayName"}
        exact = list(
            self.items("/servicePrincipals", {"$filter": f"displayName eq {_odata_string(text)}", **select})
        )
        if len(exact) == 1:
            return self._resolved(exact[0], "display name", text)
        if len(exact) > 1:
            raise self._ambiguous(text, exact)
        wanted = text.casefold()
        prefixed = [
            sp
            for sp in self.items(
                "/servicePrincipals", {"$filter": f"startswith(displayName,{_odata_string(text)})", **select}
            )
            if str(sp.get("displayName", "")).casefold().startswith(wanted)
        ]
        same = [sp for sp in prefixed if str(sp.get("displayName", "")).casefold() == wanted]
        if len(same) == 1:
            return self._resolved(same[0], "display name", text)
        if len(prefixed) == 1:
            return self._resolved(prefixed[0], "display name prefix", text)
        if len(prefixed) > 1:
            raise self._ambiguous(text, same or prefixed)
        raise NotFoundError(
            f"No service principal is named {text!r} or has a name starting with it.",
            status=404,
            remedy="Check the name under Enterprise applications (names are matched exactly, then by prefix); "
            + ID_HINT,
            link=LINK_APP_OBJECTS,
        )

    @staticmethod
    def _resolved(sp: Mapping[str, Any], matched_by: str, query: str) -> ResolvedApp:
        resolved = ResolvedApp(
            service_principal_id=str(sp.get("id", "")),
            app_id=str(sp.get("appId", "")),
            display_name=str(sp.get("displayName", "")),
            matched_by=matched_by,
            query=query,
        )
        log.info("%s", resolved.describe())
        return resolved

    def _ambiguous(self, text: str, matches: list[dict[str, Any]]) -> AmbiguousAppError:
        candidates: list[dict[str, object]] = []
        for sp in matches[:_MAX_CANDIDATES]:
            try:
                has_job: bool | None = bool(self.list_jobs(str(sp.get("id", ""))))
            except GraphError:
                has_job = None  # not allowed to read synchronization, or the app has none
            candidates.append(
                {
                    "display_name": sp.get("displayName"),
                    "service_principal_id": sp.get("id"),
                    "app_id": sp.get("appId"),
                    "has_provisioning_job": has_job,
                }
            )
        job_text = {
            True: "has a provisioning job",
            False: "no provisioning job",
            None: "provisioning unknown",
        }
        lines = [
            f"  {c['display_name']}: object id {c['service_principal_id']}, appId {c['app_id']}, "
            f"{job_text[c['has_provisioning_job']]}"  # type: ignore[index]
            for c in candidates
        ]
        more = f"\n  ... and {len(matches) - _MAX_CANDIDATES} more" if len(matches) > _MAX_CANDIDATES else ""
        return AmbiguousAppError(
            f"{len(matches)} service principals match {text!r}:\n" + "\n".join(lines) + more,
            candidates=candidates,
            remedy="Pass the object id or appId of the one you mean instead of the name.",
            link=LINK_APP_OBJECTS,
        )

    # ------------------------------------------------------------------------------------ the reads

    def list_jobs(self, sp_id: str) -> list[dict[str, Any]]:
        """The synchronization (provisioning) jobs of a service principal; empty when it has none."""
        return list(self.items(f"/servicePrincipals/{_segment(sp_id)}/synchronization/jobs"))

    def get_job(self, sp_id: str, job_id: str) -> dict[str, Any]:
        """One synchronization job with its status (code, lastExecution, quarantine, progress...)."""
        return self.get(f"/servicePrincipals/{_segment(sp_id)}/synchronization/jobs/{_segment(job_id)}")

    def get_schema(self, sp_id: str, job_id: str) -> dict[str, Any]:
        """A job's synchronization schema: directories, object mappings, scoping filters, matching attributes."""
        return self.get(
            f"/servicePrincipals/{_segment(sp_id)}/synchronization/jobs/{_segment(job_id)}/schema"
        )

    def app_role_assignments(self, sp_id: str) -> list[dict[str, Any]]:
        """The users and groups assigned to the app (``appRoleAssignedTo``), direct assignments only."""
        return list(self.items(f"/servicePrincipals/{_segment(sp_id)}/appRoleAssignedTo"))

    def get_user(self, id_or_upn: str) -> dict[str, Any]:
        """A user by object id or user principal name (guests' ``#EXT#`` names are encoded)."""
        return self.get(f"/users/{_segment(id_or_upn)}")

    def group_members(self, group_id: str, transitive: bool = False) -> list[dict[str, Any]]:
        """A group's members (users and groups); ``transitive`` includes members of nested groups."""
        relation = "transitiveMembers" if transitive else "members"
        return list(self.items(f"/groups/{_segment(group_id)}/{relation}"))

    def user_member_of(self, user_id: str, transitive: bool = False) -> list[dict[str, Any]]:
        """The groups a user is in; ``transitive`` includes groups reached through nesting."""
        relation = "transitiveMemberOf" if transitive else "memberOf"
        return list(self.items(f"/users/{_segment(user_id)}/{relation}"))

    # The documented Account Provisioning activities that matter to cycles, quarantine and postmortems
    # (reference 1.8). Per-object records ("Export", "Import", "Synchronization rule action", "Process escrow",
    # "User Provisioning", "Other") can run to thousands a day: they are filtered out at the query.
    AUDIT_ACTIVITIES = (
        "Enable/restart provisioning configuration",
        "Enable/start provisioning configuration",
        "Disable/pause provisioning configuration",
        "Update attribute mappings or scope",
        "Update provisioning setting or credentials",
        "Quarantine",
        "Add provisioning configuration",
        "Delete provisioning configuration",
    )

    def directory_audits(
        self, start: datetime, end: datetime, sp_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Provisioning service audit records in [start, end) of the :attr:`AUDIT_ACTIVITIES`; with ``sp_id``,
        only those about that app, newest first as Graph sends them.

        Graph filters on time, ``loggedByService`` and ``activityDisplayName``; the target service principal is
        matched here, because ``targetResources`` cannot be filtered server-side. If Graph refuses the ``or`` of
        activity names (400; inference: the docs show single ``eq`` filters only), one query per activity is
        made instead, and remembered for the session.
        """
        base = (
            f"activityDateTime ge {_odata_datetime(start)} and activityDateTime lt {_odata_datetime(end)} "
            "and loggedByService eq 'Account Provisioning'"
        )
        names = " or ".join(f"activityDisplayName eq {_odata_string(a)}" for a in self.AUDIT_ACTIVITIES)
        audits: list[dict[str, Any]] = []
        if not getattr(self, "_audits_one_activity_per_query", False):
            try:
                audits = list(self.items("/auditLogs/directoryAudits", {"$filter": f"{base} and ({names})"}))
            except GraphError as exc:
                if exc.status != 400:
                    raise
                self._audits_one_activity_per_query = True
                log.info(
                    "Graph refused an 'or' of audit activity names (%s); one query per activity", exc.code
                )
        if getattr(self, "_audits_one_activity_per_query", False):
            seen: set[str] = set()
            for activity in self.AUDIT_ACTIVITIES:
                flt = f"{base} and activityDisplayName eq {_odata_string(activity)}"
                for audit in self.items("/auditLogs/directoryAudits", {"$filter": flt}):
                    if audit.get("id") not in seen:
                        seen.add(audit.get("id"))
                        audits.append(audit)
            audits.sort(key=lambda a: str(a.get("activityDateTime") or ""), reverse=True)
        if sp_id is None:
            return audits
        return [a for a in audits if any(t.get("id") == sp_id for t in a.get("targetResources") or [])]

    def provisioning_pages(
        self, sp_id: str, start: datetime, end: datetime, *, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the pages of provisioning log entries of one app in [start, end), oldest first.

        Oldest first (``$orderby=activityDateTime asc``): an interrupted fetch then holds a clean prefix of the
        window, so it can resume from the last entry's time instead of starting over. One query for the whole
        window: each extra query costs a throttled call (see :mod:`provkit.data.fetch`). Raises
        CloudNotSupportedError, before any request, in clouds without the provisioning logs API (China).
        ``page_size`` None asks :attr:`page_size` (1,000 by default, the size public scripts use; fewer pages is
        what counts under the throttle).
        """
        if not self.settings.cloud.provisioning_logs:
            raise CloudNotSupportedError(
                f"The provisioning logs API is not available in the {self.settings.cloud.name} cloud.",
                remedy="Use the admin center's Download (provkit import) or a Log Analytics export of "
                "AADProvisioningLogs where available; job status still works through Graph.",
                link=LINK_PROVISIONING_LOGS,
            )
        if not _GUID.match(sp_id):
            raise ConfigError(
                f"{sp_id!r} is not a service principal object id.",
                remedy="Resolve the app first (GraphClient.resolve_app) and pass its service_principal_id.",
                link=LINK_APP_OBJECTS,
            )
        if page_size is not None and not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}.")
        return self._provisioning_pages(
            sp_id, _utc(start, "start"), _utc(end, "end"), page_size or self.page_size
        )

    @property
    def page_size(self) -> int:
        """The ``$top`` asked of the logs by default: 1,000, or less once Graph refused that in this process."""
        return _PAGE_SIZES.get(self.settings.graph_root, MAX_PAGE_SIZE)

    # How provisioning_pages queries, most to least preferred. The v1.0 page documents eq, contains, gt and lt
    # for $filter and shows $orderby only with desc; ge and "asc" work today (inference from use), so a 400 to
    # them steps down: gt on the instant just before the window start, then no $orderby (sorted here).
    _PROVISIONING_QUERIES = ("ge+orderby", "gt+orderby", "gt")

    @staticmethod
    def _provisioning_params(
        sp_id: str, start: datetime, end: datetime, page_size: int, mode: str
    ) -> dict[str, str]:
        after = (
            f"activityDateTime ge {_odata_datetime(start)}"
            if mode.startswith("ge")
            else f"activityDateTime gt {_odata_datetime(start - timedelta(microseconds=1))}"
        )
        flt = f"servicePrincipal/id eq {_odata_string(sp_id)} and {after} and activityDateTime lt {_odata_datetime(end)}"
        params = {"$filter": flt, "$top": str(page_size)}
        if mode.endswith("orderby"):
            params["$orderby"] = "activityDateTime asc"
        return params

    def _provisioning_pages(
        self, sp_id: str, start: datetime, end: datetime, page_size: int
    ) -> Iterator[dict[str, Any]]:
        """The pages of one provisioning query, oldest entry first.

        A 400 to the query itself (before any page) naming ``$top`` asks the next smaller page size (a capped page,
        fewer entries than asked with a nextLink, needs nothing: the link carries on and no entry is lost); any
        other 400 steps down to the next of :data:`_PROVISIONING_QUERIES`; both are remembered for the process.
        When a next-page link stops working part-way (an expired ``$skiptoken``, a restarted server: 400 or 404),
        the query is asked again from the last entry's time and the entries already yielded at that instant are
        left out, so each entry comes once; at most :data:`MAX_RESUMES` times in a row without a new entry."""
        modes = self._PROVISIONING_QUERIES
        resume_from = start
        at_resume: set[str] = set()  # ids already yielded whose time is ``resume_from``
        resumes = 0
        while True:
            mode = getattr(self, "_provisioning_query", modes[0])
            pages = self.pages(
                "/auditLogs/provisioning", self._provisioning_params(sp_id, resume_from, end, page_size, mode)
            )
            last: datetime | None = None
            last_ids: set[str] = set()
            pages_read = 0
            unplaced = False  # an entry without a readable time: where the query stands is unknown
            try:
                if not mode.endswith("orderby"):
                    yield from self._sorted_pages(pages, resume_from, at_resume, page_size)
                    return
                for page in pages:
                    pages_read += 1
                    values = page["value"]
                    if at_resume:
                        values = [v for v in values if not (isinstance(v, dict) and v.get("id") in at_resume)]
                    for entry in values:
                        when = _entry_instant(entry)
                        if when is None:
                            unplaced = True
                        elif when != last:
                            last, last_ids = when, {str(entry.get("id"))}
                        else:
                            last_ids.add(str(entry.get("id")))
                    if values:
                        resumes = 0
                    yield {**page, "value": values} if at_resume else page
                return
            except GraphError as exc:
                smaller = [size for size in _PAGE_SIZE_FALLBACKS if size < page_size]
                if exc.status == 400 and pages_read == 0 and smaller and _TOP_WORD.search(str(exc)):
                    # inference: no documented error for a $top above the endpoint's maximum; a 400 whose message
                    # names it is taken for one ("Invalid value '...' for $top query option.", "The limit of
                    # '999' for Top query has been exceeded.").
                    log.info(
                        "Graph refused $top=%d on the provisioning logs; asking %d", page_size, smaller[0]
                    )
                    page_size = _PAGE_SIZES[self.settings.graph_root] = smaller[0]
                    continue
                if exc.status == 400 and pages_read == 0 and mode != modes[-1]:
                    self._provisioning_query = modes[modes.index(mode) + 1]  # remembered for the session
                    log.warning(
                        "Graph refused the provisioning-log query (%s); retrying as %r",
                        exc.code,
                        self._provisioning_query,
                    )
                    continue
                if exc.status not in (400, 404) or pages_read == 0 or unplaced or resumes >= MAX_RESUMES:
                    raise
                resumes += 1
                if last is not None:
                    if last == resume_from:
                        at_resume |= last_ids
                    else:
                        resume_from, at_resume = last, last_ids
                self._emit("resume", reason=exc.message, since=resume_from)
                log.info(
                    "paging of provisioning logs broke off (%s); resuming from %s", exc.status, resume_from
                )

    @staticmethod
    def _sorted_pages(
        pages: Iterator[dict[str, Any]], start: datetime, seen: set[str], page_size: int
    ) -> Iterator[dict[str, Any]]:
        """Without $orderby the order is Graph's: collect the window and hand it over oldest first."""
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        entries = [v for page in pages for v in page["value"]]
        entries = [
            e
            for e in entries
            if (_entry_instant(e) or epoch) >= start and not (isinstance(e, dict) and e.get("id") in seen)
        ]
        entries.sort(key=lambda e: _entry_instant(e) or epoch)
        for i in range(0, len(entries), page_size):
            yield {"value": entries[i : i + page_size]}
