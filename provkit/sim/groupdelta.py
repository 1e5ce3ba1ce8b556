"""``GET /groups/delta``: changes to groups and their membership, as Graph's delta query gives them.

Shapes from graph-docs-contrib ``api-reference/v1.0/api/group-delta.md`` and ``concepts/delta-query-groups.md`` /
``delta-query-overview.md``:
- a round is one or more pages; each but the last carries ``@odata.nextLink`` (a ``$skiptoken``), the last
  ``@odata.deltaLink`` (a ``$deltatoken``); the query's own parameters live in the tokens, so the links carry
  nothing else;
- the first round (no token) lists the groups as they are now; with ``members`` selected each carries
  ``members@delta`` holding its current members as ``{"@odata.type", "id"}``, and a large group's members come
  spread over several pages, the group repeated on each;
- a round from a deltaLink lists only the groups that changed since, ``members@delta`` holding the net changes:
  an added member as above, a removed one with ``"@removed": {"reason": "deleted"}``; no change gives an empty
  ``value`` and a new deltaLink;
- ``$deltatoken=latest`` answers at once with a deltaLink and no groups ("sync from now");
- ``$filter`` takes only ``id eq '...'``, several joined with ``or``, at most 50 objects;
- ``$expand``, ``$top`` and ``$orderby`` are not supported for users and groups;
- delta tokens of directory objects are valid for seven days; an expired one answers a 40X error with the code
  ``syncStateNotFound``.
"""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from provkit.sim import ids
from provkit.sim.handler import HttpError
from provkit.sim.history import DAY

if TYPE_CHECKING:
    from provkit.sim.routes import GraphApp

MAX_FILTER_IDS = 50  # "There is a limit of 50 filtered objects." (group-delta.md)
# inference: no page size is documented for delta (and $top is refused); a page holds at most this many member
# references, so a group of thousands spans several pages, as the paging section describes.
MEMBERS_PER_PAGE = 1000
GROUPS_PER_PAGE = 100  # inference: groups without members selected, per page
_ID_EQ = re.compile(r"^\s*id\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)
_UNSUPPORTED = ("$top", "$orderby", "$expand", "$count", "$search")


def group_delta(app: GraphApp, path: str, query: dict[str, str]) -> dict[str, Any]:
    """One page of a groups/delta round for the query (or the token in it)."""
    tenant = app.tenant
    now = tenant.now_ticks
    if not tenant.group_delta_offered:
        # the error delta-query-overview.md shows for a delta query on what it does not support
        raise HttpError(501, "NotImplemented", "This operation target is not yet supported.")
    if "$skiptoken" in query:
        state = _read_token(app, path, query["$skiptoken"], "skip")
        return _page(app, path, state)
    delta = query.get("$deltatoken")
    if delta is not None and delta.lower() != "latest":
        state = _read_token(app, path, delta, "delta")
        if now - state["t"] > tenant.delta_token_days * DAY:
            raise _sync_state_not_found()
        return _page(
            app, path, {"since": state["t"], "at": now, "ids": state["ids"], "sel": state["sel"], "o": 0}
        )
    for name in _UNSUPPORTED:
        if name in query:
            # inference: the overview says these are not supported for users and groups; the error's wording is not
            # documented.
            raise HttpError(
                400,
                "Request_UnsupportedQuery",
                f"The query parameter '{name}' is not supported with delta query.",
            )
    ids = _filter_ids(app, query.get("$filter"))
    select = _select(query.get("$select"))
    if delta is not None:  # latest: a deltaLink from now, no groups
        return {
            "@odata.context": f"{app.base_url}/v1.0/$metadata#groups",
            "@odata.deltaLink": _link(
                app, path, "$deltatoken", {"k": "delta", "t": now, "ids": ids, "sel": select}
            ),
            "value": [],
        }
    return _page(app, path, {"since": None, "at": now, "ids": ids, "sel": select, "o": 0})


def _page(app: GraphApp, path: str, state: dict[str, Any]) -> dict[str, Any]:
    """The page at offset ``o`` of the round described by ``state`` (since None: the groups' whole state)."""
    items = _round(app, state)
    offset = state["o"]
    chunk: list[dict[str, Any]] = []
    refs = 0
    while offset < len(items) and len(chunk) < GROUPS_PER_PAGE:
        item = items[offset]
        size = len(item.get("members@delta", ()))
        if chunk and refs + size > MEMBERS_PER_PAGE:
            break
        chunk.append(item)
        refs += size
        offset += 1
    body: dict[str, Any] = {"@odata.context": f"{app.base_url}/v1.0/$metadata#groups", "value": chunk}
    if offset < len(items):
        body["@odata.nextLink"] = _link(app, path, "$skiptoken", {**state, "k": "skip", "o": offset})
    else:
        token = {"k": "delta", "t": state["at"], "ids": state["ids"], "sel": state["sel"]}
        body["@odata.deltaLink"] = _link(app, path, "$deltatoken", token)
    return body


def _round(app: GraphApp, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every group object of the round in order, a group with many members split into several objects."""
    tenant = app.tenant
    directory = tenant.directory
    membership = tenant.membership
    groups = directory.groups if state["ids"] is None else [directory.groups[i] for i in state["ids"]]
    select = state["sel"]
    members_selected = select is None or "members" in select
    since, at = state["since"], state["at"]
    changes = None if since is None else membership.changed(since, at, [g.index for g in groups])
    items: list[dict[str, Any]] = []
    for group in groups:
        if changes is not None and group.index not in changes:
            continue  # only membership changes happen in the simulated tenant
        properties = group.graph()
        shown = {"id": group.id}
        shown.update({k: v for k, v in properties.items() if select is None or k in select})
        if not members_selected:
            if changes is None:
                items.append(shown)
            continue
        if changes is None:
            refs = [_ref(app, "group", n) for n in group.group_members]
            refs += [_ref(app, "user", u) for u in membership.members_at(group, at)]
        else:
            refs = [
                _ref(app, "user", u)
                if member
                else {**_ref(app, "user", u), "@removed": {"reason": "deleted"}}
                for u, member in sorted(changes[group.index].items())
            ]
        if not refs:
            items.append(shown)  # a group without members comes without members@delta (delta-query-groups.md)
        for k in range(0, len(refs), MEMBERS_PER_PAGE):
            items.append({**shown, "members@delta": refs[k : k + MEMBERS_PER_PAGE]})
    return items


def _ref(app: GraphApp, kind: str, index: int) -> dict[str, Any]:
    directory = app.tenant.directory
    if kind == "group":
        return {"@odata.type": "#microsoft.graph.group", "id": directory.groups[index].id}
    return {"@odata.type": "#microsoft.graph.user", "id": directory.codec.encode(ids.USER, 0, 0, index)}


def _filter_ids(app: GraphApp, text: str | None) -> list[int] | None:
    """Group indexes named by ``id eq '...' or id eq '...'``; None without a filter. Unknown ids match nothing."""
    if text is None or not text.strip():
        return None
    clauses = re.split(r"\s+or\s+", text.strip(), flags=re.IGNORECASE)
    ids: list[int] = []
    for clause in clauses:
        match = _ID_EQ.match(clause)
        if match is None:
            # inference: the wording; the docs say only id eq (joined with or) is supported
            raise HttpError(
                400,
                "Request_UnsupportedQuery",
                f"Unsupported filter clause {clause.strip()!r}: groups/delta filters only by id eq '...'.",
            )
        group = app.tenant.directory.group_by_id(match.group(1))
        if group is not None and group.index not in ids:
            ids.append(group.index)
    if len(clauses) > MAX_FILTER_IDS:
        # inference: the wording; the limit of 50 filtered objects is documented
        raise HttpError(
            400,
            "Request_UnsupportedQuery",
            f"The filter names {len(clauses)} objects; delta query tracks at most {MAX_FILTER_IDS}.",
        )
    return ids


_GROUP_PROPERTIES = {
    "id",
    "displayName",
    "description",
    "mail",
    "mailNickname",
    "mailEnabled",
    "securityEnabled",
    "groupTypes",
    "membershipRuleProcessingState",
    "members",
}


def _select(text: str | None) -> list[str] | None:
    if text is None or not text.strip():
        return None
    names = [s.strip() for s in text.split(",") if s.strip()]
    for name in names:
        if name not in _GROUP_PROPERTIES:
            raise HttpError(
                400,
                "Request_BadRequest",
                f"Could not find a property named '{name}' on type 'microsoft.graph.group'.",
            )
    return names


def _link(app: GraphApp, path: str, name: str, state: dict[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":")).encode()
    payload = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    token = f"{payload}.{app._mac(path, payload)}"
    return f"{app.base_url}{path}?{name}={quote(token, safe='')}"


def _read_token(app: GraphApp, path: str, token: str, kind: str) -> dict[str, Any]:
    """The state a token this server issued carries; anything else is a sync state it does not know."""
    payload, _, mac = token.partition(".")
    try:
        if mac != app._mac(path, payload):
            raise ValueError("foreign or tampered token")
        state = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if not isinstance(state, dict) or state.get("k") != kind:
            raise ValueError("not a token of this kind")
    except (ValueError, json.JSONDecodeError):
        if kind == "skip":
            raise HttpError(400, "BadRequest", "The $skiptoken is invalid or has expired.") from None
        raise _sync_state_not_found() from None
    return state


def _sync_state_not_found() -> HttpError:
    # inference: the status. The overview says an expired token answers "a 40X-series error with error codes such
    # as syncStateNotFound", and a synchronization reset answers 410 Gone; 410 is used for both.
    return HttpError(
        410,
        "syncStateNotFound",
        "The delta token has expired or is not known; start over with a full synchronization.",
    )
