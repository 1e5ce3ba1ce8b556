"""The simulator's HTTP plumbing: the threaded TLS server, the request handler, Graph's error bodies and headers,
the /auditLogs throttle, injected faults and the request log.

The handler parses a request, applies faults, checks the bearer token and the throttle, then hands Graph
requests to :class:`~provkit.sim.routes.GraphApp`, sign-in requests to the authority and Log Analytics queries to
the workspace; it writes their answers (or Graph's error body for an :class:`HttpError`). Non-Graph endpoints
for tests live under ``/_sim/``: ``GET /_sim/health``, ``GET /_sim/requests`` (the request log),
``POST /_sim/advance?minutes=N`` (move the simulated clock).
"""

from __future__ import annotations

import collections
import json
import math
import socket
import ssl
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from provkit.sim.authority import GraphAuthError
from provkit.sim.loganalytics import Workspace, handle_request

if TYPE_CHECKING:
    from provkit.sim.routes import GraphApp

THROTTLE_LIMIT = 5
THROTTLE_WINDOW = 10.0


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class RequestRecord:
    time: float
    method: str
    path: str
    status: int
    client_id: str | None
    fault: str | None
    answered: float | None = None  # when the answer was written (time is when the request arrived)


@dataclass
class Throttle:
    """Sliding-window limit per (client app, tenant); throttled calls still count against the quota."""

    limit: int = THROTTLE_LIMIT
    window: float = THROTTLE_WINDOW
    enabled: bool = True
    _calls: dict[str, collections.deque] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    throttled: int = 0

    def check(self, key: str) -> float | None:
        """Record a call; return the seconds to wait when it is over the limit, else None."""
        if not self.enabled:
            return None
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, collections.deque())
            while calls and now - calls[0] >= self.window:
                calls.popleft()
            over = len(calls) >= self.limit
            calls.append(now)
            if over:
                self.throttled += 1
                # the call that must expire before another fits: the (limit)-th most recent, this throttled
                # one included (it counts against the quota too)
                oldest = calls[-self.limit]
                return max(0.0, self.window - (now - oldest))
            return None


class RequestHandler(BaseHTTPRequestHandler):
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle's algorithm on, the body waits for the client's
    # delayed ACK (about 40 ms a response on a kept-alive connection).
    disable_nagle_algorithm = True
    app: GraphApp  # set on the subclass
    _rec: RequestRecord

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        return  # the request log replaces stderr chatter

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # ---------------------------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        app = self.app
        split = urlsplit(self.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        raw_body = self._read_body()
        request_id = str(uuid.uuid4())
        client_request_id = self.headers.get("client-request-id") or request_id
        headers = {
            "request-id": request_id,
            "client-request-id": client_request_id,
            "x-ms-ags-diagnostic": json.dumps({"ServerInfo": {"DataCenter": "Local Simulator"}}),
        }
        fault = None
        status = 500
        body: dict | None
        # Logged on arrival (the time the throttle counts), before any answer is written.
        self._rec = RequestRecord(time.time(), method, self.path, 0, None, None)
        if not path.startswith("/_sim"):
            app.record(self._rec)
        try:
            parts = [p for p in path.split("/") if p]
            if parts and parts[0] == "_sim":
                status, body = self._sim_endpoint(method, parts, query)
                self._send_json(status, body, headers)
                return
            if parts[:2] == ["v1", "workspaces"] and app.workspace is not None:
                status, body, extra = self._log_analytics(app.workspace, method, parts, raw_body)
                headers.update(extra)
                self._send_json(status, body, headers)
                return
            if parts and parts[0] not in ("v1.0", "beta"):
                status, body, extra = self._authority(method, parts, raw_body)
                headers.update(extra)
                self._send_json(status, body, headers)
                return
            fault = self._rec.fault = app.faults.next()
            if fault in ("reset",):
                status = 0
                self._reset()
                return
            if fault == "429":
                status = 429
                raise HttpError(429, "TooManyRequests", "Too many requests.", {"Retry-After": "1"})
            if fault == "503":
                status = 503
                raise HttpError(
                    503, "ServiceUnavailable", "The service is temporarily unavailable.", {"Retry-After": "1"}
                )
            if fault == "504":
                status = 504
                raise HttpError(504, "GatewayTimeout", "The gateway did not receive a response in time.")
            if fault == "slow":
                time.sleep(app.faults.slow_seconds)
            try:
                principal = app.authority.verify_bearer(self.headers.get("Authorization"))
            except GraphAuthError as exc:
                raise HttpError(exc.status, exc.code, exc.message, dict(exc.headers)) from None
            self._rec.client_id = principal.client_id
            if len(parts) > 1 and parts[1] == "auditLogs":
                wait = app.throttle.check(f"{principal.client_id}:{principal.tenant_id}")
                if wait is not None:
                    raise HttpError(
                        429,
                        "TooManyRequests",
                        "Too many requests. The application has exceeded the limit of 5 requests per "
                        "10 seconds for the Entra reporting APIs.",
                        {"Retry-After": str(max(1, math.ceil(wait)))},
                    )
            body_json = None
            if raw_body:
                try:
                    body_json = json.loads(raw_body)
                except json.JSONDecodeError:
                    raise HttpError(400, "BadRequest", "The request body is not valid JSON.") from None
            status, body = app.handle_graph(method, path, query, principal, body_json)
            if fault == "truncate":
                self._send_truncated(status, body, headers)
                return
            if status == 204:
                self._send_empty(headers)
            else:
                self._send_json(status, body, headers)
        except HttpError as exc:
            status = exc.status
            headers.update(exc.headers)
            error = {
                "error": {
                    "code": exc.code,
                    "message": exc.message,
                    "innerError": {
                        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                        "request-id": request_id,
                        "client-request-id": client_request_id,
                    },
                }
            }
            try:
                self._send_json(exc.status, error, headers)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            status = 0
        except Exception as exc:  # the simulator must answer like Graph, even on its own bugs
            status = 500
            error = {
                "error": {
                    "code": "InternalServerError",
                    "message": f"{type(exc).__name__}: {exc}",
                    "innerError": {"request-id": request_id, "client-request-id": client_request_id},
                }
            }
            try:
                self._send_json(500, error, headers)
            except OSError:
                pass
        finally:
            self._rec.status, self._rec.answered = status, time.time()

    def _log_analytics(
        self, workspace: Workspace, method: str, parts: list[str], raw_body: bytes
    ) -> tuple[int, dict, dict]:
        """The Log Analytics query API over the simulated workspace (see provkit.sim.loganalytics)."""
        app = self.app
        fault = self._rec.fault = app.faults.next()
        if fault in ("429", "503"):
            return (
                int(fault),
                {"error": {"code": "ServiceUnavailable", "message": "Retry later."}},
                {"Retry-After": "1"},
            )
        if fault == "504":  # a query that outlived the gateway: a timeout, no rows
            return 504, {"error": {"code": "GatewayTimeout", "message": "The query timed out."}}, {}
        authorization = self.headers.get("Authorization")
        return handle_request(
            workspace, app.authority, app.la_throttle, method, parts, authorization, raw_body
        )

    def _authority(self, method: str, parts: list[str], raw_body: bytes) -> tuple[int, dict, dict]:
        authority = self.app.authority
        tenant = parts[0]
        rest = "/".join(parts[1:])
        form = (
            dict(parse_qsl(raw_body.decode("utf-8", "replace"), keep_blank_values=True)) if raw_body else {}
        )
        if rest == "v2.0/.well-known/openid-configuration" and method == "GET":
            return authority.openid_configuration(tenant)
        if rest in ("discovery/v2.0/keys", "discovery/keys") and method == "GET":
            return authority.jwks()
        if rest == "oauth2/v2.0/token" and method == "POST":
            return authority.token(tenant, form)
        if rest == "oauth2/v2.0/devicecode" and method == "POST":
            return authority.device_code(tenant, form)
        return 404, {"error": "not_found", "error_description": f"Unknown endpoint /{'/'.join(parts)}"}, {}

    def _sim_endpoint(self, method: str, parts: list[str], query: dict[str, str]) -> tuple[int, dict]:
        app = self.app
        if parts[1:] == ["health"]:
            return 200, {"status": "ok", "now": app.tenant.now_text}
        if parts[1:] == ["requests"]:
            return 200, {"value": [r.__dict__ for r in app.requests]}
        if parts[1:] == ["advance"] and method == "POST":
            app.tenant.advance(float(query.get("minutes", "40")))
            return 200, {"now": app.tenant.now_text}
        return 404, {"error": {"code": "NotFound", "message": "unknown simulator endpoint"}}

    def _send_json(self, status: int, body: dict | None, headers: dict[str, str]) -> None:
        self._rec.status, self._rec.answered = status, time.time()
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type",
            "application/json; odata.metadata=minimal; odata.streaming=true; "
            "IEEE754Compatible=false; charset=utf-8",
        )
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_empty(self, headers: dict[str, str]) -> None:
        self._rec.status, self._rec.answered = 204, time.time()
        self.send_response(204)
        self.send_header("Content-Length", "0")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def _send_truncated(self, status: int, body: dict | None, headers: dict[str, str]) -> None:
        """The first third of the answer, delimited by closing the connection (no Content-Length), so the client
        receives a body cut short that fails JSON parsing; an abort (RST) here would discard the body unread."""
        self._rec.status, self._rec.answered = status, time.time()
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; odata.metadata=minimal; charset=utf-8")
        self.send_header("Connection", "close")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data[: max(1, len(data) // 3)])
        self.wfile.flush()
        self.close_connection = True

    def _reset(self) -> None:
        """Drop the connection without an answer (RST), as a load balancer dropping a request would."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass


class ThreadedTLSServer(ThreadingHTTPServer):
    """Threaded HTTPS server doing the TLS handshake in the request's thread, so one silent client cannot stall
    the accept loop for everyone."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    tls_context: ssl.SSLContext | None = None

    def finish_request(self, request, client_address) -> None:  # noqa: ANN001
        if self.tls_context is not None:
            request.settimeout(30)
            try:
                request = self.tls_context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                request.close()
                return
            request.settimeout(None)
        try:
            super().finish_request(request, client_address)
        finally:
            try:
                request.close()
            except OSError:
                pass

    def shutdown_request(self, request) -> None:  # noqa: ANN001
        try:
            super().shutdown_request(request)
        except (OSError, ssl.SSLError):
            pass

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        return  # resets and truncations are on purpose; nothing to print
