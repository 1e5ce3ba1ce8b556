"""The Graph API the simulator serves: routing, paging, permissions and Graph semantics, apart from the sockets.

:class:`GraphApp` answers one parsed request (method, path, query, the caller's :class:`Principal`, JSON body)
with a status and a JSON body, or raises :class:`~provkit.sim.handler.HttpError`; :mod:`provkit.sim.handler`
does the HTTP around it and :mod:`provkit.sim.server` starts and stops the whole.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import threading
from urllib.parse import quote, unquote

from provkit.sim.authority import Authority, Principal
from provkit.sim.faults import FaultPlan
from provkit.sim.groupdelta import group_delta
from provkit.sim.handler import HttpError, RequestRecord, Throttle
from provkit.sim.loganalytics import Workspace
from provkit.sim.logquery import DATETIMES, ENUMS, FILTERABLE, LogQuery
from provkit.sim.odata import ODataError, compile_filter, parse_orderby
from provkit.sim.ondemand import on_demand_answer, on_demand_group_answer
from provkit.sim.tenant import App, Tenant, credential_error

READ_PERMISSIONS = {
    "auditLogs": ("AuditLog.Read.All",),
    "servicePrincipals": ("Application.Read.All", "Directory.Read.All"),
    "synchronization": ("Synchronization.Read.All",),
    "users": ("User.Read.All", "Directory.Read.All"),
    "groups": ("GroupMember.Read.All", "Group.Read.All", "Directory.Read.All"),
}
WRITE_PERMISSION = ("Synchronization.ReadWrite.All",)
MAX_TOP = 1000
DEFAULT_TOP = 100


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
        self.workspace: Workspace | None = None  # the simulated Log Analytics workspace
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
        if rest[:2] in (["groups", "delta"], ["groups", "microsoft.graph.delta"]) and len(rest) == 2:
            # /delta is a shortcut for /microsoft.graph.delta (delta-query-groups.md)
            self.require(principal, "groups")
            if method != "GET":
                raise HttpError(
                    405, "Request_BadRequest", f"The HTTP method '{method}' is not supported here."
                )
            return 200, group_delta(self, root + "/groups/delta", query)
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
            resume = token.get("o")
            if type(resume) is not int or resume < 0:
                raise HttpError(400, "BadRequest", "The $skiptoken is invalid or has expired.")
            offset = resume
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
        links = subject.get("links")
        if not isinstance(links, dict):
            links = {}
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
            membership, now = self.tenant.membership, self.tenant.now_ticks
            for g in directory.groups:
                members = (
                    membership.transitive(g, now)
                    if rest[2] == "transitiveMemberOf"
                    else membership.members(g, now)
                )
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
        membership, now = self.tenant.membership, self.tenant.now_ticks  # joiners and leavers since the start
        if rest[2] == "members":
            nested = list(group.group_members)
            user_ids = membership.members(group, now)
        else:
            nested, stack, seen = [], list(group.group_members), set()
            while stack:
                g = stack.pop()
                if g in seen:
                    continue
                seen.add(g)
                nested.append(g)
                stack.extend(directory.groups[g].group_members)
            user_ids = membership.transitive(group, now)
        members = [("group", g) for g in nested] + [("user", u) for u in user_ids]

        def render(ref: tuple[str, int]) -> dict:
            kind, index = ref
            if kind == "group":
                return {"@odata.type": "#microsoft.graph.group", **directory.groups[index].graph()}
            return {"@odata.type": "#microsoft.graph.user", **users.get(index).graph()}

        return self.list_page("/v1.0/" + "/".join(rest), query, members, "directoryObjects", render=render)


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
