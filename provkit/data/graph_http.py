"""The HTTP plumbing under :class:`provkit.data.graph.GraphClient`: URLs, paging by ``@odata.nextLink``, pacing of
``/auditLogs`` calls, retries (429 with Retry-After, 502/503/504, dropped connections, truncated bodies) with capped
exponential backoff and full jitter, one token renewal after a 401, and error answers turned into typed errors.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from provkit.data.auth import Settings, TokenProvider, make_session, redact
from provkit.data.pacing import AuditPacer, shared_pacer
from provkit.data.paging import PageChain
from provkit.errors import (
    ConfigError,
    GraphError,
    GraphUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    ReadOnlyError,
    ThrottledError,
)

log = logging.getLogger("provkit.data.graph")


EventHook = Callable[..., None]
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
MAX_EMPTY_PAGES = 50  # empty pages in a row, each with a nextLink, before paging is taken to be stuck
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0

ID_HINT = (
    "An enterprise app has three ids: its service principal object id (Enterprise applications > Object ID), "
    "its appId (Application (client) ID) and its app registration's object id. Synchronization and log calls "
    "want the service principal object id; give provkit the app's name or either of the first two ids and it "
    "resolves the right one (GraphClient.resolve_app, or --app)."
)

LINK_THROTTLING = "https://learn.microsoft.com/en-us/graph/throttling-limits"
LINK_ERRORS = "https://learn.microsoft.com/en-us/graph/errors"
LINK_PERMISSIONS = "https://learn.microsoft.com/en-us/graph/permissions-reference"
LINK_PROVISIONING_LOGS = "https://learn.microsoft.com/en-us/graph/api/provisioningobjectsummary-list"
LINK_SYNC_PERMISSIONS = "https://learn.microsoft.com/en-us/graph/api/synchronization-synchronizationjob-get"
LINK_APP_OBJECTS = (
    "https://learn.microsoft.com/en-us/entra/identity-platform/app-objects-and-service-principals"
)
LINK_CLOUDS = "https://learn.microsoft.com/en-us/graph/deployments"


# --------------------------------------------------------------------------------------------- results


@dataclass
class GraphStats:
    """What a GraphClient did: requests sent, pages read, retries, 429s received, seconds spent waiting."""

    requests: int = 0
    pages: int = 0
    retries: int = 0
    throttled: int = 0
    waited_seconds: float = 0.0
    sent_ahead: int = 0  # page calls sent before the page before was parsed (provkit.data.paging)
    dropped_ahead: int = 0  # of those, answers not used: the parsed page named another next link


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


def _json_type(value: Any) -> str:
    return {dict: "object", str: "string", type(None): "null", bool: "boolean"}.get(type(value), "number")


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


class _GraphHttp:
    """Requests to Graph and their failures; :class:`provkit.data.graph.GraphClient` adds the reads."""

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
        on_body: Callable[[bytes], None] | None = None,
        on_sending: Callable[[], None] | None = None,
    ) -> dict[str, Any] | None:
        """Send one call with retries; return the parsed JSON object (None for an empty answer). ``on_body`` hears
        each successful answer's raw body before it is parsed (:meth:`pages` sends the next page's call then);
        ``on_sending`` hears each attempt just before it is sent (its pacing done)."""
        relative = self._relative(url)
        paced = relative.lower().startswith("/auditlogs")
        client_request_id = str(uuid.uuid4())
        started = self._clock()
        attempt = 0
        renewed = False
        while True:
            try:
                return self._attempt(
                    method,
                    url,
                    params,
                    body,
                    relative,
                    paced,
                    client_request_id,
                    idempotent,
                    on_body,
                    on_sending,
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
        on_body: Callable[[bytes], None] | None = None,
        on_sending: Callable[[], None] | None = None,
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
            if on_sending is not None:
                on_sending()
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
            if on_body is not None:
                on_body(response.content)
            try:
                data = json.loads(response.content)
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

    def pages(
        self, path: str, params: Mapping[str, str] | None = None, *, ahead: bool | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield each page of a collection, following ``@odata.nextLink`` verbatim until Graph gives none.

        No page size is assumed: a short or empty page with a nextLink is followed like any other. A page must be
        a JSON object whose ``value`` is a list (the documented shape, reference section 1.6); anything else is a
        GraphError for that page. A nextLink to a page already read, or more than :data:`MAX_EMPTY_PAGES` empty
        pages in a row, stops the paging with a GraphError instead of running forever.

        ``ahead`` (by default for ``/auditLogs``, whose calls the throttle counts one after another) sends each
        next page's call as soon as the page before has arrived, before it is parsed; its answer is used only if
        the parsed page names the same link (:mod:`provkit.data.paging`).
        """
        url = self.url_for(path)
        query: Mapping[str, str] | None = params
        if ahead is None:
            ahead = self._relative(url).lower().startswith("/auditlogs")
        chain = PageChain(self._get_page, self.url_for) if ahead else None
        try:
            yield from self._paging(url, query, chain)
        finally:
            if chain is not None:
                chain.close()
                with self._stats_lock:
                    self.stats.sent_ahead += chain.sent_ahead
                    self.stats.dropped_ahead += chain.dropped

    def _get_page(
        self,
        url: str,
        query: Mapping[str, str] | None,
        on_body: Callable[[bytes], None],
        on_sending: Callable[[], None],
    ) -> dict[str, Any] | None:
        return self._request("GET", url, query, on_body=on_body, on_sending=on_sending)

    def _paging(
        self, url: str, query: Mapping[str, str] | None, chain: PageChain | None
    ) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        empty_run = 0
        number = 0
        while True:
            page = chain.take(url, query) if chain is not None else self._request("GET", url, query) or {}
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
