"""A local, TLS-speaking server that plays Microsoft Graph (v1.0 subset) and the identity platform.

It serves a :class:`~provkit.sim.tenant.Tenant`: the provisioning logs, directory audits, service principals,
app role assignments, users, groups and synchronization jobs that provkit reads, plus the POST actions
(validateCredentials, provisionOnDemand, start, pause, restart). It answers with Graph's error bodies and
headers, throttles ``/auditLogs`` at 5 requests per 10 s per calling app and tenant (429 with Retry-After), and
injects faults on demand. Nothing here reaches out to the network.

Non-Graph endpoints for tests live under ``/_sim/``: ``GET /_sim/health``, ``GET /_sim/requests`` (the request
log), ``POST /_sim/advance?minutes=N`` (move the simulated clock).
"""

from __future__ import annotations

import base64
import collections
import functools
import hashlib
import hmac
import json
import math
import os
import re
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from provkit.sim import ids
from provkit.sim.authority import Authority, GraphAuthError, Principal, Registration
from provkit.sim.certs import make_client_certificate, make_tls_material
from provkit.sim.faults import FaultPlan
from provkit.sim.loganalytics import LOG_ANALYTICS_RESOURCE, Workspace, workspace_id_for
from provkit.sim.loganalytics import THROTTLE_LIMIT as LA_THROTTLE_LIMIT
from provkit.sim.loganalytics import THROTTLE_WINDOW as LA_THROTTLE_WINDOW
from provkit.sim.logquery import DATETIMES, ENUMS, FILTERABLE, LogQuery
from provkit.sim.odata import ODataError, compile_filter, parse_orderby
from provkit.sim.tenant import App, Tenant

READ_PERMISSIONS = {
    "auditLogs": ("AuditLog.Read.All",),
    "servicePrincipals": ("Application.Read.All", "Directory.Read.All"),
    "synchronization": ("Synchronization.Read.All",),
    "users": ("User.Read.All", "Directory.Read.All"),
    "groups": ("GroupMember.Read.All", "Group.Read.All", "Directory.Read.All"),
}
WRITE_PERMISSION = ("Synchronization.ReadWrite.All",)
THROTTLE_LIMIT = 5
THROTTLE_WINDOW = 10.0
MAX_TOP = 1000
DEFAULT_TOP = 100


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


class GraphApp:
    """Request routing and Graph semantics, independent of the socket layer."""

    def __init__(
        self, tenant: Tenant, authority: Authority, faults: FaultPlan, throttle: Throttle, base_url: str
    ) -> None:
        self.tenant = tenant
        self.authority = authority
        self.faults = faults
        self.throttle = throttle
        self.base_url = base_url
        self.requests: list[RequestRecord] = []
        self.workspace = None  # the simulated Log Analytics workspace (provkit.sim.loganalytics.Workspace)
        self.la_throttle: Throttle | None = None
        self._log_lock = threading.Lock()
        self._token_key = os.urandom(32)  # signs $skiptoken values, so only this server's own tokens page

    # -- helpers --------------------------------------------------------------------------------------------
    def record(self, rec: RequestRecord) -> None:
        with self._log_lock:
            self.requests.append(rec)

    def require(self, principal: Principal, area: str, write: bool = False) -> None:
        needed = WRITE_PERMISSION if write else READ_PERMISSIONS[area]
        if principal.has_permission(*needed):
            return
        if area == "auditLogs":
            # The reporting endpoints' code and wording as community reports show them (reference 1.8).
            code = "Authentication_MSGraphPermissionMissing"
            message = f"Calling principal does not have required MSGraph permissions {needed[0]}"
        else:
            code = "Authorization_RequestDenied"
            message = "Insufficient privileges to complete the operation."
        raise HttpError(403, code, message, {"x-provkit-sim-required": needed[0]})

    def require_premium(self) -> None:
        """The reporting endpoints of a tenant without Entra ID P1/P2 (the tenant's ``premium`` knob)."""
        if not getattr(self.tenant, "premium", True):
            raise HttpError(
                403,
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Tenant is not a B2C tenant and doesn't have premium license",
            )

    def _top(self, query: dict[str, str], default: int = DEFAULT_TOP) -> int:
        raw = query.get("$top")
        if raw is None:
            return default
        try:
            top = int(raw)
        except ValueError:
            raise HttpError(400, "BadRequest", f"Invalid value '{raw}' for $top query option.") from None
        if top < 1:
            raise HttpError(400, "BadRequest", f"Invalid value '{raw}' for $top query option.")
        return min(top, MAX_TOP)

    def _next_link(self, path: str, query: dict[str, str], token: dict) -> str:
        params = {k: v for k, v in query.items() if k != "$skiptoken"}
        raw = json.dumps(token, separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        params["$skiptoken"] = f"{payload}.{self._mac(path, payload)}"
        qs = "&".join(f"{k}={quote(v, safe=chr(39) + '(),:/$')}" for k, v in params.items())
        return f"{self.base_url}{path}?{qs}"

    def _mac(self, path: str, payload: str) -> str:
        digest = hmac.new(self._token_key, f"{path}\n{payload}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def _token(self, path: str, query: dict[str, str]) -> dict | None:
        """The resume point a ``$skiptoken`` carries; 400 unless this server issued it for ``path``."""
        raw = query.get("$skiptoken")
        if raw is None:
            return None
        payload, _, mac = raw.partition(".")
        try:
            if not hmac.compare_digest(mac.encode(), self._mac(path, payload).encode()):
                raise ValueError("foreign or tampered $skiptoken")
            data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            token = json.loads(data)
            if not isinstance(token, dict):
                raise ValueError
            return token
        except (ValueError, json.JSONDecodeError):
            raise HttpError(400, "BadRequest", "The $skiptoken is invalid or has expired.") from None

    @staticmethod
    def _fingerprint(query: dict[str, str]) -> str:
        return str(hash((query.get("$filter", ""), query.get("$orderby", ""))) & 0xFFFFFFFF)

    # -- routing --------------------------------------------------------------------------------------------
    def handle_graph(
        self, method: str, path: str, query: dict[str, str], principal: Principal, body: dict | None
    ) -> tuple[int, dict | None]:
        parts = [unquote(p) for p in path.split("/") if p]
        if not parts or parts[0] not in ("v1.0", "beta"):
            raise HttpError(400, "BadRequest", f"Invalid version: {parts[0] if parts else ''}")
        version, rest = parts[0], parts[1:]
        root = f"/{version}"
        if "$count" in query:
            raise HttpError(
                400,
                "BadRequest",
                "$count is not supported on this API. Only URLs returned by the API can be used to page.",
            )
        if rest[:2] == ["auditLogs", "provisioning"] and len(rest) == 2 and method == "GET":
            self.require(principal, "auditLogs")
            self.require_premium()
            return 200, self.provisioning(root + "/auditLogs/provisioning", query)
        if rest[:2] == ["auditLogs", "directoryAudits"] and len(rest) == 2 and method == "GET":
            self.require(principal, "auditLogs")
            self.require_premium()
            return 200, self.directory_audits(root + "/auditLogs/directoryAudits", query)
        if rest and rest[0].startswith("servicePrincipals"):
            return self.service_principal_routes(method, root, rest, query, principal, body)
        if rest and rest[0] == "users" and method == "GET":
            self.require(principal, "users")
            return 200, self.users(rest, query)
        if rest and rest[0] == "groups" and method == "GET":
            self.require(principal, "groups")
            return 200, self.groups(rest, query)
        if method not in ("GET", "POST"):
            raise HttpError(405, "Request_BadRequest", f"The HTTP method '{method}' is not supported here.")
        raise HttpError(400, "BadRequest", f"Resource not found for the segment '{rest[0] if rest else ''}'.")

    # -- /auditLogs/provisioning ----------------------------------------------------------------------------
    def provisioning(self, path: str, query: dict[str, str]) -> dict:
        top = self._top(query)
        flt = None
        text = query.get("$filter")
        if getattr(self.tenant, "documented_queries_only", False):
            _documented_query_only(text, query.get("$orderby"))
        try:
            if text:
                flt = compile_filter(
                    text, allowed_paths=FILTERABLE, enum_paths=ENUMS, datetime_paths=DATETIMES
                )
            order = parse_orderby(
                query.get("$orderby", "activityDateTime desc"), allowed=("activityDateTime",)
            )
        except ODataError as exc:
            raise HttpError(400, "BadRequest", str(exc)) from None
        descending = order[0][1] if order else True
        token = self._token(path, query)
        after = None
        if token is not None:
            key = token.get("k")
            if token.get("f") != self._fingerprint(query) or not isinstance(key, list):
                raise HttpError(400, "BadRequest", "The $skiptoken does not belong to this query.")
            if len(key) != 4 or not all(type(x) is int for x in key):
                raise HttpError(400, "BadRequest", "The $skiptoken is invalid or has expired.")
            after = (key[0], key[1], key[2], key[3])
        page = LogQuery(self.tenant, flt, descending).page(top, after)
        result: dict = {
            "@odata.context": f"{self.base_url}{path.split('/auditLogs')[0]}/$metadata#auditLogs/provisioning",
            "value": page.items,
        }
        if page.last_key is not None:
            result["@odata.nextLink"] = self._next_link(
                path, query, {"k": list(page.last_key), "f": self._fingerprint(query)}
            )
        return result

    # -- generic list paging --------------------------------------------------------------------------------
    def list_page(
        self,
        path: str,
        query: dict[str, str],
        items: list,
        context: str,
        default_top: int = DEFAULT_TOP,
        render=None,
    ) -> dict:
        """One page of ``items``; ``render`` (when given) turns only the page's items into JSON, so a large
        collection of cheap references costs one page's rendering per request."""
        top = self._top(query, default_top)
        token = self._token(path, query)
        offset = 0
        if token is not None:
            if token.get("f") != self._fingerprint(query):
                raise HttpError(400, "BadRequest", "The $skiptoken does not belong to this query.")
            offset = token.get("o")
            if type(offset) is not int or offset < 0:
                raise HttpError(400, "BadRequest", "The $skiptoken is invalid or has expired.")
        chunk = items[offset : offset + top]
        if render is not None:
            chunk = [render(item) for item in chunk]
        result: dict = {"@odata.context": f"{self.base_url}/v1.0/$metadata#{context}", "value": chunk}
        if offset + top < len(items):
            result["@odata.nextLink"] = self._next_link(
                path, query, {"o": offset + top, "f": self._fingerprint(query)}
            )
        return result

    def _filtered(
        self,
        items: list[dict],
        query: dict[str, str],
        allowed: tuple[str, ...],
        datetimes: tuple[str, ...] = (),
        enums: tuple[str, ...] = (),
    ) -> list[dict]:
        """Items matching $filter; ``enums`` compare without regard to case (as Graph's directory objects do)."""
        text = query.get("$filter")
        if not text:
            return items
        try:
            flt = compile_filter(text, allowed_paths=allowed, datetime_paths=datetimes, enum_paths=enums)
        except ODataError as exc:
            raise HttpError(400, "BadRequest", str(exc)) from None
        return [i for i in items if flt.matches(i)]

    def directory_audits(self, path: str, query: dict[str, str]) -> dict:
        if getattr(self.tenant, "documented_queries_only", False) and re.search(
            r"\bor\b", re.sub(r"'(?:[^']|'')*'", "''", query.get("$filter") or ""), flags=re.IGNORECASE
        ):
            # the knob's strict reading: the directoryAudits page shows filters joined with "and" only
            raise HttpError(
                400, "BadRequest", "Invalid filter clause: 'or' is not supported on this resource."
            )
        items = self._filtered(
            self.tenant.directory_audits(),
            query,
            (
                "activityDateTime",
                "loggedByService",
                "category",
                "activityDisplayName",
                "result",
                "correlationId",
                "id",
                "operationType",
                "initiatedBy/user/id",
                "initiatedBy/user/userPrincipalName",
                "initiatedBy/app/displayName",
            ),
            ("activityDateTime",),
        )
        return self.list_page(path, query, items, "auditLogs/directoryAudits")

    # -- /servicePrincipals ---------------------------------------------------------------------------------
    def resolve_sp(self, segment: str) -> tuple[dict, App | None]:
        tenant = self.tenant
        if segment.startswith("servicePrincipals(") and segment.endswith(")"):
            inner = segment[len("servicePrincipals(") : -1]
            key, _, value = inner.partition("=")
            value = value.strip("'")
            if key != "appId":
                raise HttpError(400, "BadRequest", f"Invalid key '{key}' for servicePrincipals.")
            sp = next((s for s in tenant.service_principals() if s["appId"] == value), None)
        else:
            raise HttpError(400, "BadRequest", "Invalid service principal segment.")
        if sp is None:
            raise HttpError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{value}' does not exist or one of its queried reference-property objects "
                "are not present.",
            )
        return sp, tenant.app_by_sp(sp["id"])

    def service_principal_routes(
        self,
        method: str,
        root: str,
        rest: list[str],
        query: dict[str, str],
        principal: Principal,
        body: dict | None,
    ) -> tuple[int, dict | None]:
        tenant = self.tenant
        if rest[0] == "servicePrincipals" and len(rest) == 1:
            if method != "GET":
                raise HttpError(405, "Request_BadRequest", "Only GET is supported on this collection here.")
            self.require(principal, "servicePrincipals")
            items = self._filtered(
                tenant.service_principals(),
                query,
                ("displayName", "appId", "id", "servicePrincipalType", "accountEnabled"),
                enums=("displayName", "servicePrincipalType"),
            )
            return 200, self.list_page(root + "/servicePrincipals", query, items, "servicePrincipals")
        if rest[0] == "servicePrincipals":
            sp_id = rest[1]
            sp = tenant.service_principal(sp_id)
            if sp is None:
                raise HttpError(
                    404,
                    "Request_ResourceNotFound",
                    f"Resource '{sp_id}' does not exist or one of its queried reference-property "
                    "objects are not present.",
                )
            app = tenant.app_by_sp(sp_id)
            tail = rest[2:]
        else:
            sp, app = self.resolve_sp(rest[0])
            tail = rest[1:]
        if not tail:
            self.require(principal, "servicePrincipals")
            return 200, sp
        if tail == ["appRoleAssignedTo"]:
            self.require(principal, "servicePrincipals")
            items = tenant.app_role_assigned_to(app) if app else []
            return 200, self.list_page(
                root + "/" + "/".join(rest),
                query,
                items,
                f"servicePrincipals('{sp['id']}')/appRoleAssignedTo",
            )
        if tail[0] != "synchronization":
            raise HttpError(400, "BadRequest", f"Resource not found for the segment '{tail[0]}'.")
        return self.synchronization(method, root, rest, tail[1:], sp, app, query, principal, body)

    def synchronization(
        self,
        method: str,
        root: str,
        rest: list[str],
        tail: list[str],
        sp: dict,
        app: App | None,
        query: dict[str, str],
        principal: Principal,
        body: dict | None,
    ) -> tuple[int, dict | None]:
        tenant = self.tenant
        if not tail or tail[0] not in ("jobs", "templates", "secrets"):
            raise HttpError(400, "BadRequest", "Resource not found for the segment 'synchronization'.")
        if tail[0] == "templates":
            self.require(principal, "synchronization")
            return 200, {"value": []}
        if tail[0] == "secrets":
            # Secrets are write-only through Graph; reading them is not offered.
            raise HttpError(405, "Request_BadRequest", "Reading synchronization secrets is not supported.")
        jobs = tenant.jobs(app) if app else []
        if len(tail) == 1:
            if method != "GET":
                raise HttpError(
                    403,
                    "Authorization_RequestDenied",
                    "Creating jobs is not allowed in the simulated tenant.",
                )
            self.require(principal, "synchronization")
            return 200, {
                "@odata.context": f"{self.base_url}/v1.0/$metadata#servicePrincipals('{sp['id']}')"
                "/synchronization/jobs",
                "value": jobs,
            }
        job_id = tail[1]
        job = next((j for j in jobs if j["id"] == job_id), None)
        if job is None or app is None:
            raise HttpError(
                404,
                "NotFound",
                f"The synchronization job '{job_id}' was not found for service principal '{sp['id']}'.",
            )
        action = tail[2] if len(tail) > 2 else None
        if action is None and method == "GET":
            self.require(principal, "synchronization")
            return 200, job
        if action == "schema" and method == "GET" and len(tail) == 3:
            self.require(principal, "synchronization")
            return 200, tenant.schema(app)
        if method == "POST" and action in ("start", "pause", "restart"):
            self.require(principal, "synchronization", write=True)
            if action == "restart":
                _check_reset_scope(body)
            tenant.control(app, action, body, actor=self._actor(principal))
            return 204, None
        if method == "POST" and action == "validateCredentials":
            self.require(principal, "synchronization", write=True)
            return self.validate_credentials(app, body or {})
        if method == "POST" and action == "provisionOnDemand":
            self.require(principal, "synchronization", write=True)
            return 200, self.provision_on_demand(app, body or {})
        raise HttpError(400, "BadRequest", f"Unsupported request on synchronization job: {method} {action}")

    def validate_credentials(self, app: App, body: dict) -> tuple[int, dict | None]:
        """Checks the saved (or given) credentials against the simulated target; changes nothing."""
        if not isinstance(body.get("useSavedCredentials", False), bool):
            raise HttpError(400, "BadRequest", "useSavedCredentials must be a boolean.")
        if app.validate_ok:
            return 204, None
        from provkit.sim.tenant import credential_error

        code, message = credential_error(app.scenario)
        raise HttpError(400, code, message)

    def _actor(self, principal: Principal) -> dict:
        """The audit's initiatedBy for a request: an app-only caller is an app, a delegated one a user."""
        if principal.app_only:
            registration = self.authority._registrations.get(principal.client_id.lower())
            return {
                "app": {
                    "appId": principal.client_id,
                    "displayName": registration.display_name if registration else None,
                    "servicePrincipalId": principal.object_id,
                    "servicePrincipalName": None,
                },
                "user": None,
            }
        return {
            "user": {
                "id": principal.object_id,
                "displayName": None,
                "userPrincipalName": principal.user,
                "ipAddress": "127.0.0.1",
            },
            "app": None,
        }

    def provision_on_demand(self, app: App, body: dict) -> dict:
        params = body.get("parameters") or []
        rule_ids = {str(p.get("ruleId") or "") for p in params if isinstance(p, dict)}
        known = {r["id"] for r in self.tenant.schema(app)["synchronizationRules"]}
        if not rule_ids or not rule_ids <= known:
            # inference: Graph's wording for an unknown rule is not documented; a 400 naming the rule is.
            raise HttpError(
                400,
                "BadRequest",
                f"The ruleId {sorted(rule_ids)} does not name a synchronization rule of this job's schema.",
            )
        subjects = [s for p in params for s in (p.get("subjects") or [])]
        if len(subjects) != 1:
            raise HttpError(400, "BadRequest", "provisionOnDemand takes exactly one subject per request.")
        if str(subjects[0].get("objectTypeName") or "").lower() == "group":
            return self._group_on_demand(app, subjects[0])
        obj = self.tenant.directory.user_by_id(subjects[0].get("objectId", ""))
        if obj is None:
            raise HttpError(404, "NotFound", "The subject was not found in the source directory.")
        category = app.categories.get(obj.index, "not-assigned")
        return on_demand_answer(self.tenant, app, obj, category)

    def _group_on_demand(self, app: App, subject: dict) -> dict:
        """A group with up to five of its members (the documented ``links.members`` shape)."""
        directory = self.tenant.directory
        group = directory.group_by_id(str(subject.get("objectId") or ""))
        if group is None:
            raise HttpError(404, "NotFound", "The subject was not found in the source directory.")
        links = subject.get("links") if isinstance(subject.get("links"), dict) else {}
        members = [m for m in links.get("members") or [] if isinstance(m, dict)]
        if len(members) > 5:
            # the documented limit; inference: its error wording
            raise HttpError(
                400, "BadRequest", "provisionOnDemand accepts a single group with up to 5 members at a time."
            )
        users = []
        for m in members:
            user = directory.user_by_id(str(m.get("objectId") or ""))
            if user is None:
                raise HttpError(404, "NotFound", "A member subject was not found in the source directory.")
            users.append(user)
        return on_demand_group_answer(self.tenant, app, group, users)

    # -- /users, /groups ------------------------------------------------------------------------------------
    def users(self, rest: list[str], query: dict[str, str]) -> dict:
        directory = self.tenant.directory
        if len(rest) < 2:
            raise HttpError(
                400,
                "BadRequest",
                "Listing all users is not offered by the simulated tenant; "
                "get a user by id or userPrincipalName.",
            )
        key = rest[1]
        user = directory.user_by_id(key)
        if user is None and "@" in key:
            user = self._user_by_upn(key)
        if user is None:
            raise HttpError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{key}' does not exist or one of its queried reference-property objects "
                "are not present.",
            )
        if len(rest) == 2:
            return self._select({"@odata.type": "#microsoft.graph.user", **user.graph()}, query)
        if rest[2] in ("memberOf", "transitiveMemberOf"):
            groups = []
            for g in directory.groups:
                members = directory.transitive_users(g) if rest[2] == "transitiveMemberOf" else g.user_members
                if user.index in members:
                    groups.append({"@odata.type": "#microsoft.graph.group", **g.graph()})
            return self.list_page("/v1.0/" + "/".join(rest), query, groups, "directoryObjects")
        raise HttpError(400, "BadRequest", f"Resource not found for the segment '{rest[2]}'.")

    def _user_by_upn(self, upn: str):
        users = self.tenant.users
        wanted = upn.lower()
        for i in range(users.count):
            u = users.get(i)
            if u.user_principal_name == wanted:
                return u
        return None

    @staticmethod
    def _select(obj: dict, query: dict[str, str]) -> dict:
        select = query.get("$select")
        if not select:
            return obj
        keep = {s.strip() for s in select.split(",")} | {"id", "@odata.type"}
        return {k: v for k, v in obj.items() if k in keep}

    def groups(self, rest: list[str], query: dict[str, str]) -> dict:
        directory = self.tenant.directory
        if len(rest) < 2:
            raise HttpError(400, "BadRequest", "Listing all groups is not offered by the simulated tenant.")
        group = directory.group_by_id(rest[1])
        if group is None:
            raise HttpError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{rest[1]}' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
        if len(rest) == 2:
            return {"@odata.type": "#microsoft.graph.group", **group.graph()}
        if rest[2] not in ("members", "transitiveMembers"):
            raise HttpError(400, "BadRequest", f"Resource not found for the segment '{rest[2]}'.")
        users = self.tenant.users
        if rest[2] == "members":
            nested = list(group.group_members)
            user_ids = group.user_members
        else:
            nested, stack, seen = [], list(group.group_members), set()
            while stack:
                g = stack.pop()
                if g in seen:
                    continue
                seen.add(g)
                nested.append(g)
                stack.extend(directory.groups[g].group_members)
            user_ids = directory.transitive_users(group)
        members = [("group", g) for g in nested] + [("user", u) for u in user_ids]

        def render(ref: tuple[str, int]) -> dict:
            kind, index = ref
            if kind == "group":
                return {"@odata.type": "#microsoft.graph.group", **directory.groups[index].graph()}
            return {"@odata.type": "#microsoft.graph.user", **users.get(index).graph()}

        return self.list_page("/v1.0/" + "/".join(rest), query, members, "directoryObjects", render=render)


class _Handler(BaseHTTPRequestHandler):
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
                status, body, extra = self._log_analytics(method, parts, raw_body)
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

    def _log_analytics(self, method: str, parts: list[str], raw_body: bytes) -> tuple[int, dict, dict]:
        """The Log Analytics query API over the simulated workspace (see provkit.sim.loganalytics)."""
        from provkit.sim.loganalytics import handle_request

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
            app.workspace, app.authority, app.la_throttle, method, parts, authorization, raw_body
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


class _Server(ThreadingHTTPServer):
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
    _httpd: _Server = field(repr=False)
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
            "PROVKIT_WORKSPACE_ID": self.graph.workspace.workspace_id,
        }

    def write_env_file(self, path: Path) -> None:
        lines = [f"{k}={v}" for k, v in self.env().items()]
        lines.append(f"# certificate sign-in instead of the secret: PROVKIT_CERT_PATH={self.cert_path}")
        tmp = Path(str(path) + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, path)

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
    tls = make_tls_material(state)
    cert_path, thumbprint = make_client_certificate(state, "provkit-reader")
    secret = client_secret or base64.urlsafe_b64encode(os.urandom(30)).decode()
    codec = tenant.codec
    reader_id = codec.encode(ids.APPLICATION, 900)
    restricted_id = codec.encode(ids.APPLICATION, 901)
    device_id = codec.encode(ids.APPLICATION, 902)
    admin_id = codec.encode(ids.APPLICATION, 903)
    all_read = frozenset(
        {"AuditLog.Read.All", "Directory.Read.All", "Synchronization.Read.All", "Application.Read.All"}
    )
    registrations = [
        Registration(
            client_id=reader_id,
            display_name="provkit reader",
            secret=secret,
            secret_expires=None,
            certificate_pem=cert_path.read_bytes(),
            app_roles=all_read,
            public_client=False,
            delegated_scopes=frozenset(),
        ),
        Registration(
            client_id=restricted_id,
            display_name="provkit without audit log access",
            secret=secret,
            secret_expires=None,
            certificate_pem=None,
            app_roles=frozenset({"Directory.Read.All", "Synchronization.Read.All", "Application.Read.All"}),
            public_client=False,
            delegated_scopes=frozenset(),
        ),
        Registration(
            client_id=admin_id,
            display_name="provkit operator (read-write)",
            secret=secret,
            secret_expires=None,
            certificate_pem=None,
            app_roles=all_read | {"Synchronization.ReadWrite.All"},
            public_client=False,
            delegated_scopes=frozenset(),
        ),
        Registration(
            client_id=device_id,
            display_name="provkit device sign-in",
            secret=None,
            secret_expires=None,
            certificate_pem=None,
            app_roles=frozenset(),
            public_client=True,
            delegated_scopes=all_read,
        ),
    ]
    httpd = _Server(("127.0.0.1", port), _Handler)
    actual_port = httpd.server_address[1]
    base_url = f"https://127.0.0.1:{actual_port}"
    authority = _make_authority(base_url, tenant.tenant_id, registrations, token_lifetime)
    graph = GraphApp(tenant, authority, faults or FaultPlan(), Throttle(enabled=throttle), base_url)
    graph.workspace = Workspace(tenant, workspace_id_for(tenant.tenant_id), tables_present=workspace_tables)
    graph.la_throttle = Throttle(limit=LA_THROTTLE_LIMIT, window=LA_THROTTLE_WINDOW, enabled=throttle)
    handler = type("Handler", (_Handler,), {"app": graph})
    httpd.RequestHandlerClass = handler
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_path, tls.key_path)
    httpd.tls_context = context
    server = RunningServer(
        base_url=base_url,
        port=actual_port,
        tenant=tenant,
        graph=graph,
        authority=authority,
        ca_path=Path(tls.ca_path),
        client_id=reader_id,
        client_secret=secret,
        cert_path=cert_path,
        cert_thumbprint=thumbprint,
        restricted_client_id=restricted_id,
        device_client_id=device_id,
        admin_client_id=admin_id,
        state_dir=state,
        _httpd=httpd,
        _owns_state_dir=state_dir is None,
    )
    if background:
        thread = threading.Thread(target=httpd.serve_forever, name="provkit-sim", daemon=True)
        thread.start()
        server._thread = thread
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


# The flags of synchronizationJobRestartCriteria.resetScope (synchronizationJobRestartScope in the v1.0 CSDL).
RESET_SCOPES = (
    "None",
    "ConnectorDataStore",
    "Escrows",
    "Watermark",
    "QuarantineState",
    "Full",
    "ForceDeletes",
)


def _check_reset_scope(body: dict | None) -> None:
    """400 for a restart body whose criteria.resetScope is not a comma-separated list of the enum's flags."""
    criteria = (body or {}).get("criteria")
    if criteria is None:
        return
    scope = criteria.get("resetScope") if isinstance(criteria, dict) else None
    if scope is None:
        return
    known = {s.lower() for s in RESET_SCOPES}
    parts = [p.strip() for p in str(scope).split(",")] if isinstance(scope, str) else [None]
    bad = [p for p in parts if not p or p.lower() not in known]
    if bad:
        raise HttpError(
            400,
            "BadRequest",
            f"Invalid value for resetScope: {scope!r}. Valid flags: {', '.join(RESET_SCOPES)}.",
        )


def _on_demand_step(stamp: str, name: str, kind: str, status: str, description: str, details: dict) -> dict:
    """One step of a provisionOnDemand answer, as the documented example lists them (reference 2.2)."""
    return {
        "name": name,
        "type": kind,
        "status": status,
        "description": description,
        "timestamp": stamp,
        "details": details,
    }


def on_demand_answer(tenant, app: App, user, category: str) -> dict:
    """provisionOnDemand's stringKeyStringValuePair, in one of the two documented shapes.

    - the v1.0 API page's example: ``key`` the JSON of ``{"result", "details": {"errorCode", "errorMessage"}}``
      and ``value`` the JSON of one object with ``provisioningSteps`` (each with ``name``, ``type``, ``status``,
      ``description``, ``timestamp``, ``details``), ``statusInfo``, ``action``, ``sourceIdentity`` ...;
    - the cross-tenant guide's (reference 1.8): ``key``
      "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo" and ``value`` the JSON of a
      list of such objects.

    Apps alternate between them (by index), so a reader must take either. The scoping details use the on-demand
    keys (``IsActive``, ``Assigned``, ``IsEffectivelyEntitledForProvisioning``,
    ``IsInProvisioningScopeDisplayName`` "True"/"False", ``ScopeEvaluationResult``).
    """
    from provkit.sim.timefmt import format_ticks

    sc = app.scenario
    upn = user.user_principal_name
    stamp = format_ticks(tenant.now_ticks)
    active = category not in ("disabled", "disabled-expected")
    assigned = category not in ("not-assigned", "nested-only", "broken") or sc.scope == "all"
    evaluation: dict[str, bool] = {}
    for clause in sc.scoping:
        from provkit.sim.tenant import clause_passes

        ok = clause_passes(clause.operator, user.attribute(clause.attribute), clause.values)
        evaluation[
            f"{sc.scoping_group_name}.{clause.attribute} {clause.operator} '{', '.join(clause.values)}'"
        ] = ok
    in_scope = all(evaluation.values()) if evaluation else True
    entitled = active and (assigned or sc.scope == "all")

    step = functools.partial(_on_demand_step, stamp)

    steps = [
        step(
            "EntryImport",
            "Import",
            "Success",
            f"Retrieved User '{upn}' from Azure Active Directory",
            {
                "objectId": user.id,
                "accountEnabled": str(active),
                "displayName": user.display_name,
                "userPrincipalName": upn,
                "IsSoftDeleted": "False",
            },
        ),
        step(
            "EntrySynchronizationScoping",
            "Scoping",
            "Success",
            "Determine if User in scope by evaluating against each scoping filter",
            {
                "IsActive": str(active),
                "Assigned": str(assigned),
                "IsEffectivelyEntitledForProvisioning": str(entitled),
                "IsInProvisioningScopeDisplayName": str(in_scope),
                "ScopeEvaluationResult": json.dumps(evaluation, separators=(",", ":")),
            },
        ),
    ]
    if not (entitled and in_scope):
        result, code, message = (
            "Skipped",
            "NotEffectivelyEntitled",
            f"The User '{upn}' will be skipped: it is not assigned, not active or not in scope.",
        )
        steps.append(step("EntrySynchronizationSkip", "Export", "Skipped", message, {"SkipReason": code}))
    elif category in App.FAILING:
        code = "EntryConflict" if category == "conflict" else "MandatoryFieldsMissing"
        result, message = "Failure", "The export to the target failed."
        steps.append(step("EntryExportAdd", "Export", "Failure", message, {"ReportableIdentifier": upn}))
    else:
        result, code = "Skipped", "RedundantExport"
        message = "The state of the user in both the source and target systems already match."
        steps.append(step("EntrySynchronizationSkip", "Export", "Skipped", message, {"SkipReason": code}))
    status = {"result": result, "details": {"errorCode": code, "errorMessage": message}}
    record = {
        "action": "Other",
        "changeId": str(uuid.uuid4()),
        "endTime": stamp,
        "modifiedProperties": [],
        "provisioningSteps": steps,
        "reportableIdentifier": upn,
        "startTime": stamp,
        "statusInfo": {"status": result, "errorCode": None if result != "Failure" else code, "reason": None},
        "sourceIdentity": {"id": user.id, "type": "User", "displayName": None, "details": None},
        "sourceSystem": {"id": None, "name": "Azure Active Directory", "details": None},
        "targetIdentity": {"id": None, "type": "User", "displayName": None, "details": None},
        "targetSystem": {"id": None, "name": sc.app, "details": None},
    }
    if app.index % 2:
        return {
            "@odata.type": "#microsoft.graph.stringKeyStringValuePair",
            "key": "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo",
            "value": json.dumps(
                [record | {"statusInfo": record["statusInfo"] | {"details": status["details"]}}]
            ),
        }
    return {
        "@odata.type": "#microsoft.graph.stringKeyStringValuePair",
        "key": json.dumps(status),
        "value": json.dumps(record),
    }


def on_demand_group_answer(tenant, app: App, group, users: list) -> dict:
    """provisionOnDemand's answer for a group and the chosen members: the group's steps (import, scoping,
    matching, export, member references) in the v1.0 example's shape, then each member as a user would be
    answered (in the list shape).

    inference: the steps of a group on demand are not shown in the docs' JSON; they follow the user example's
    step names with the group's kind and a reference-resolution step for the members."""
    from provkit.sim.timefmt import format_ticks

    stamp = format_ticks(tenant.now_ticks)
    assigned = group in app.assigned_groups and group.display_name not in app.timeline().unassigned
    provisioned = assigned and app.scenario.provision_groups
    member_ids = set(group.user_members)
    outside = [u for u in users if u.index not in member_ids]

    step = functools.partial(_on_demand_step, stamp)

    steps = [
        step(
            "EntryImport",
            "Import",
            "Success",
            f"Retrieved Group '{group.display_name}' from Azure Active Directory",
            {
                "objectId": group.id,
                "displayName": group.display_name,
                "securityEnabled": str(group.security_enabled),
            },
        ),
        step(
            "EntrySynchronizationScoping",
            "Scoping",
            "Success" if provisioned else "Skipped",
            "Determine if Group in scope by evaluating against each scoping filter",
            {
                "IsActive": "True",
                "Assigned": str(assigned),
                "IsEffectivelyEntitledForProvisioning": str(provisioned),
                "IsInProvisioningScopeDisplayName": str(provisioned),
                "ScopeEvaluationResult": "{}",
            },
        ),
    ]
    if not provisioned:
        code = "NotEffectivelyEntitled"
        message = (
            f"The Group '{group.display_name}' will be skipped: it is not assigned to the application"
            if not assigned
            else f"The Group '{group.display_name}' will be skipped: the job does not provision groups"
        )
        result = "Skipped"
        steps.append(step("EntrySynchronizationSkip", "Export", "Skipped", message, {"SkipReason": code}))
    elif outside:
        code, result = "UnableToResolveReferenceAttributeValue", "Failure"
        message = (
            f"{len(outside)} of the chosen members are not members of '{group.display_name}': "
            + ", ".join(u.user_principal_name for u in outside)
        )
        steps.append(step("EntryReferenceResolution", "ReferenceResolution", "Failure", message, {}))
    else:
        code, result = None, "Success"
        message = f"Group '{group.display_name}' was updated in {app.scenario.app} with {len(users)} members"
        steps.append(
            step(
                "EntryReferenceResolution",
                "ReferenceResolution",
                "Success",
                f"Resolved references to {len(users)} members",
                {"members": ", ".join(u.user_principal_name for u in users)},
            )
        )
        steps.append(
            step(
                "EntryExportUpdate",
                "Export",
                "Success",
                message,
                {"ReportableIdentifier": group.display_name},
            )
        )
    status = {"result": result, "details": {"errorCode": code, "errorMessage": message}}
    record = {
        "action": "Update" if result == "Success" else "Other",
        "changeId": str(uuid.uuid4()),
        "endTime": stamp,
        "modifiedProperties": [],
        "provisioningSteps": steps,
        "reportableIdentifier": group.display_name,
        "startTime": stamp,
        "statusInfo": {"status": result, "errorCode": code if result == "Failure" else None, "reason": None},
        "sourceIdentity": {
            "id": group.id,
            "type": "Group",
            "displayName": group.display_name,
            "details": None,
        },
        "sourceSystem": {"id": None, "name": "Azure Active Directory", "details": None},
        "targetIdentity": {"id": None, "type": "Group", "displayName": None, "details": None},
        "targetSystem": {"id": None, "name": app.scenario.app, "details": None},
    }
    if app.index % 2:
        records = [record | {"statusInfo": record["statusInfo"] | {"details": status["details"]}}]
        for user in users:
            answer = on_demand_answer(tenant, app, user, app.categories.get(user.index, "not-assigned"))
            records.extend(json.loads(answer["value"]) if answer["key"].startswith("Microsoft.") else [])
        return {
            "@odata.type": "#microsoft.graph.stringKeyStringValuePair",
            "key": "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo",
            "value": json.dumps(records),
        }
    return {
        "@odata.type": "#microsoft.graph.stringKeyStringValuePair",
        "key": json.dumps(status),
        "value": json.dumps(record),
    }


def _documented_query_only(text: str | None, orderby: str | None) -> None:
    """The tenant's ``documented_queries_only`` knob: 400 for what the v1.0 page does not document for this
    endpoint (operators other than eq, contains, gt and lt; an ascending $orderby)."""
    bare = re.sub(r"'(?:[^']|'')*'", "''", text or "")
    used = {w.lower() for w in re.findall(r"\b(ge|le|ne|in|startswith)\b", bare, flags=re.IGNORECASE)}
    if used:
        raise HttpError(
            400,
            "BadRequest",
            f"Invalid filter clause: the operator(s) {', '.join(sorted(used))} are not supported on this resource.",
        )
    if orderby and not orderby.strip().lower().endswith("desc"):
        raise HttpError(400, "BadRequest", f"Unsupported $orderby: {orderby!r}.")
