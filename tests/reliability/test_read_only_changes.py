"""Read-only by default, for the notebook cells that reach beyond reading (restart, provision on demand,
validate credentials: ``provkit.data.changes`` behind the notebook's wrappers). By the simulated tenant's request
log: without their flag they send nothing, not even a sign-in for a live tenant, and say how to allow them; with
it each sends exactly its one documented POST. Offline there is no tenant to call, and they say so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from provkit.errors import ConfigError
from provkit.workbook import notebook as nb
from provkit.workbook.session import stop_demo_tenants

pytestmark = pytest.mark.reliability

# A seed of its own: the tenants this module changes are not the ones other tests of the process read.
DEMO_ENV = {
    "PROVKIT_DEMO_USERS": "300",
    "PROVKIT_DEMO_DAYS": "3",
    "PROVKIT_DEMO_NOW": "2024-06-03T12:00:00Z",
    "PROVKIT_DEMO_SEED": "1114",
}
LIVE = ("PROVKIT_TENANT_ID", "PROVKIT_CLIENT_ID", "PROVKIT_CLIENT_SECRET", "PROVKIT_CERT_PATH")


@pytest.fixture(scope="module", autouse=True)
def own_demo() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in (*DEMO_ENV, *LIVE)}
    os.environ.update(DEMO_ENV)
    for name in LIVE:
        os.environ.pop(name, None)
    yield
    stop_demo_tenants()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def evidence():
    return nb.load("Zendesk", nb.target("demo"), since="7d").evidence


def graph_posts(demo, mark: int) -> list[str]:
    """The Graph requests other than GETs the simulated tenant received since ``mark``, as "METHOD path"."""
    return [
        f"{r.method} {urlsplit(r.path).path}"
        for r in demo.server.graph.requests[mark:]
        if r.method != "GET" and r.path.startswith(("/v1.0", "/beta"))
    ]


def test_without_their_flags_the_calls_send_nothing_and_say_how_to_allow_them(evidence) -> None:
    where = nb.target("demo")
    writer = where.demo(allow_writes=True)  # the tenant the calls would write to
    mark = len(writer.server.graph.requests)
    user = nb.first_skipped_user(evidence)
    restart = nb.restart_job(evidence, False, where)
    on_demand = nb.provision_on_demand(evidence, user, False, where)
    assert restart.startswith("Not run: this cell would restart Zendesk's job")
    assert on_demand.startswith(
        f"Not run: this cell would provision {nb.object_name(evidence, user)} to Zendesk"
    )
    assert all("Set allow_changes = True in the parameters cell" in text for text in (restart, on_demand))
    assert nb.validator(evidence, False, where) is None
    assert writer.server.graph.requests[mark:] == []


def test_a_live_tenant_is_not_even_signed_in_to_without_the_flag(evidence) -> None:
    # No PROVKIT_* sign-in settings at all: had a call built its client, it would have failed to sign in.
    where = nb.target("graph")
    assert nb.restart_job(evidence, False, where).startswith("Not run:")
    assert nb.validator(evidence, False, where) is None
    assert nb.provision_on_demand(evidence, nb.first_skipped_user(evidence), False, where).startswith(
        "Not run:"
    )


def test_each_call_with_its_flag_sends_its_one_documented_post(evidence) -> None:
    where = nb.target("demo")
    writer = where.demo(allow_writes=True)
    job = f"/v1.0/servicePrincipals/{evidence.service_principal_id}/synchronization/jobs/{evidence.job['id']}"
    mark = len(writer.server.graph.requests)
    validate = nb.validator(evidence, True, where)
    assert graph_posts(writer, mark) == []  # nothing is sent before the checks call it
    validate()
    assert graph_posts(writer, mark) == [f"POST {job}/validateCredentials"]
    mark = len(writer.server.graph.requests)
    said = nb.restart_job(evidence, True, where)
    assert said.startswith("Restarted Zendesk's job at ") and "(Watermark, Escrows, QuarantineState)" in said
    assert graph_posts(writer, mark) == [f"POST {job}/restart"]


def test_offline_there_is_no_tenant_to_call(evidence) -> None:
    with pytest.raises(ConfigError, match="reads the store offline: there is no tenant to call"):
        nb.restart_job(evidence, True, nb.target("store"))
    with pytest.raises(ConfigError, match="reads the store offline"):
        nb.validator(evidence, True, nb.target("store"))
