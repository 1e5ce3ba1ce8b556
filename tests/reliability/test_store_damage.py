"""The store never loses data: the ten ways issue 16 found to lose or hide entries, each tried against the
simulated tenant and each ending with every entry the server holds in the store (the tally's "entries lost").

1. a missing manifest; 2. two writers at once; 3. a damaged part or manifest; 4. analysis over a partly covered
window; 5. entries the service writes late; 6. a redirect or a page without a ``value`` list; 7. paging that never
ends; 8. file-system errors and absurd spans; 9. thousands of small parts; 10. a paging token that stops working,
and smaller things (messages, years before 1000, entries outside the window).

The Graph answers that a healthy simulator never gives (a redirect, a looping nextLink, a page whose ``value`` is
not a list) come from a transport adapter mounted on the client's session, in front of the real one: provkit's own
code runs unchanged.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from provkit.analysis import cycles
from provkit.analysis.checks import run_checks
from provkit.cli import main as provkit_cli
from provkit.data.auth import Settings
from provkit.data.fetch import fetch_app
from provkit.data.graph import GraphClient, _odata_datetime
from provkit.data.store import COMPACT_AT, AppStore, Store
from provkit.errors import ConfigError, GraphError, GraphUnavailableError
from provkit.sim.server import RunningServer
from provkit.sim.tenant import Tenant
from provkit.workbook.notebook import load as notebook_load
from provkit.workbook.reports import app_summary

from .support import (
    NOW,
    Tally,
    client_for,
    live_env,
    make_tenant,
    raw_event_ids,
    run_in_process,
    serve,
    tenant_now,
)
from .test_faults import assert_same_store, stray_files

pytestmark = pytest.mark.reliability

APP = "Zendesk"
OTHER = "Salesforce"
START = NOW - timedelta(days=3)
WINDOW = ["--start", START.strftime("%Y-%m-%dT%H:%M:%SZ"), "--end", NOW.strftime("%Y-%m-%dT%H:%M:%SZ")]
PAGE = 20


class Killed(BaseException):
    """Stands in for the process dying."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = serve(make_tenant(), tmp_path_factory.mktemp("store-server"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> GraphClient:
    return client_for(server)


def fetch(server: RunningServer, client: GraphClient, store: Store, app: str = APP, **options):
    options.setdefault("start", START)
    options.setdefault("end", tenant_now(server))
    return fetch_app(client, store, app, tenant_id=server.tenant.tenant_id, page_size=PAGE, **options)


@pytest.fixture(scope="module")
def reference(server: RunningServer, client: GraphClient, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Per app: an undisturbed fetch's store (what every damaged store must end up holding)."""
    root = tmp_path_factory.mktemp("store-reference")
    out = {}
    for app in (APP, OTHER):
        summary, app_store = fetch(server, client, Store(root), app)
        assert summary.new > 100
        out[app] = app_store
    return out


def ids(app_store: AppStore) -> set[str]:
    return set(app_store.tables().events["id"])


def account(tally: Tally, got: AppStore, want: AppStore) -> None:
    """Count the reference's entries and those missing from ``got``; the test then asserts none is."""
    expected = ids(want)
    tally.entries_checked += len(expected)
    tally.entries_lost += len(expected - ids(got))


def cli(server: RunningServer, home: Path, *argv: str):
    return run_in_process(server, argv[0], list(argv), live_env(server, home))


def no_traceback(run) -> None:
    assert "Traceback" not in run.err and "Traceback" not in run.out, run.err


# ---- 1. a missing manifest -----------------------------------------------------------------------------------
def test_1_a_missing_manifest_is_rebuilt_from_the_parts_and_a_later_fetch_loses_nothing(
    server: RunningServer, reference: dict, tmp_path: Path, tally: Tally
) -> None:
    first_end = NOW - timedelta(days=1)
    first = cli(server, tmp_path, "fetch", "--app", APP, *WINDOW[:2], "--end", first_end.isoformat())
    assert first.code == 0, first.err
    app_store = Store(tmp_path / "store").find(APP)
    before = ids(app_store)
    assert len(before) > 100
    (app_store.path / "manifest.json").unlink()
    tally.stores_damaged += 1

    later = cli(server, tmp_path, "fetch", "--app", APP, *WINDOW)
    assert later.code == 0, later.err
    no_traceback(later)
    got = Store(tmp_path / "store").find(APP)
    assert before <= ids(got)  # nothing the first fetch stored was deleted
    account(tally, got, reference[APP])
    assert_same_store(got, reference[APP])
    journal = (got.path / "journal.log").read_text()
    assert "rebuilt the manifest" in journal and "it was missing" in journal


# ---- 2. two writers ------------------------------------------------------------------------------------------
RACES = 3


def test_2_two_fetches_started_together_into_one_store_both_succeed_and_lose_nothing(
    reference: dict, tmp_path: Path, tally: Tally
) -> None:
    # Every Graph answer a little slow, so that each fetch holds the store for seconds and the two overlap.
    server = serve(make_tenant(), tmp_path / "slow-server", faults="slow=1", slow_seconds=0.15)
    try:
        _race(server, reference, tmp_path, tally)
    finally:
        server.stop()


def _race(server: RunningServer, reference: dict, tmp_path: Path, tally: Tally) -> None:
    waited = 0
    for race in range(RACES):
        home = tmp_path / f"race-{race}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PROVKIT_")},
            **live_env(server, home),
        }
        command = [sys.executable, "-m", "provkit.cli.main", "fetch", "--app", APP, *WINDOW]
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.2)
        second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        outcomes = [p.communicate(timeout=600) + (p.returncode,) for p in (first, second)]
        tally.writers_raced += 2
        for _out, err, code in outcomes:
            assert code == 0, err
            assert "Traceback" not in err, err
        waited += sum("waiting up to" in err for _, err, _ in outcomes)
        got = Store(home / "store").find(APP)
        account(tally, got, reference[APP])
        assert_same_store(got, reference[APP])
        raw = raw_event_ids(got)
        assert len(raw) == len(set(raw))
    assert waited >= 1, "the two fetches never overlapped: the race was not tried"


# ---- 3. a damaged part or manifest ---------------------------------------------------------------------------
def _garbage(file: Path) -> None:
    file.write_bytes(b"\x00garbage, not parquet\xff" * 50)


def _cut(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 2])


def _scramble(file: Path) -> None:
    data = bytearray(file.read_bytes())  # magic bytes and footer intact, the compressed pages not
    for i in range(8, len(data) // 2):
        data[i] ^= 0x5A
    file.write_bytes(bytes(data))


def _directory(file: Path) -> None:
    file.unlink()
    file.mkdir()  # cannot be opened as a file (stands in for a part this user may not read)


@pytest.mark.parametrize("damage", [_garbage, _cut, _scramble, _directory], ids=lambda f: f.__name__[1:])
def test_3_a_damaged_part_is_named_other_apps_stay_usable_and_the_next_fetch_sets_it_aside_and_refills_it(
    damage: Callable[[Path], None],
    server: RunningServer,
    reference: dict,
    tmp_path: Path,
    tally: Tally,
) -> None:
    for app in (APP, OTHER):
        assert cli(server, tmp_path, "fetch", "--app", app, *WINDOW).code == 0
    store = Store(tmp_path / "store")
    app_store = store.find(APP)
    part = app_store.path / "events" / app_store.manifest()["parts"]["events"][0]
    damage(part)
    tally.stores_damaged += 1

    listing = cli(server, tmp_path, "apps", "--offline")
    no_traceback(listing)
    assert listing.code == 0 and OTHER in listing.out  # the other app is listed as usual
    if damage is not _scramble:  # (a scrambled part keeps its footer, which is all `apps` reads)
        assert str(part) in listing.out + listing.err
    for argv in (["cycles", "--offline", "--app", APP], ["diagnose", "--offline", "--app", APP]):
        run = cli(server, tmp_path, *argv)
        no_traceback(run)
        assert run.code == 1 and str(part) in run.err and "provkit store check --repair" in run.err, run.err
    assert cli(server, tmp_path, "cycles", "--offline", "--app", OTHER).code == 0
    check = cli(server, tmp_path, "store", "check")
    assert check.code == 1 and str(part) in check.out

    refetch = cli(server, tmp_path, "fetch", "--app", APP, *WINDOW)  # a writer: it sets the damage aside
    no_traceback(refetch)
    assert refetch.code == 0, refetch.err
    assert str(part) in refetch.text and "damaged store file(s) set aside" in refetch.out
    assert (app_store.path / "quarantine" / "events" / part.name).exists()  # moved aside, not deleted
    got = Store(tmp_path / "store").find(APP)
    account(tally, got, reference[APP])
    assert ids(got) == ids(reference[APP])
    assert cli(server, tmp_path, "store", "check").code == 0


def test_3_check_repair_sets_damage_aside_and_takes_it_back_once_readable(
    server: RunningServer, reference: dict, tmp_path: Path, tally: Tally
) -> None:
    assert cli(server, tmp_path, "fetch", "--app", APP, *WINDOW).code == 0
    app_store = Store(tmp_path / "store").find(APP)
    part = app_store.path / "events" / app_store.manifest()["parts"]["events"][0]
    good = part.read_bytes()
    _directory(part)  # unreadable, as a part this user may not read
    tally.stores_damaged += 1
    repair = cli(server, tmp_path, "store", "check", "--repair")
    assert repair.code == 0 and "marked as not covered" in repair.out, repair.out
    quarantined = app_store.path / "quarantine" / "events" / part.name
    assert quarantined.is_dir() and not part.exists()
    assert ids(app_store) < ids(
        reference[APP]
    )  # its entries are out of the store until fetched or taken back

    quarantined.rmdir()
    quarantined.write_bytes(good)  # readable again (permissions fixed, or restored from a backup)
    again = cli(server, tmp_path, "store", "check", "--repair")
    assert again.code == 0 and "took back 1 part(s)" in again.out, again.out
    got = Store(tmp_path / "store").find(APP)
    account(tally, got, reference[APP])
    assert ids(got) == ids(reference[APP])
    # Its covered range is back; what the damage had marked beyond it stays to be fetched (never claimed).
    assert all(any(a <= x and y <= b for a, b in reference[APP].covered()) for x, y in got.covered())
    assert cli(server, tmp_path, "store", "check").code == 0


def test_3_a_garbled_manifest_of_one_app_does_not_block_another_and_is_rebuilt(
    server: RunningServer, reference: dict, tmp_path: Path, tally: Tally
) -> None:
    for app in (APP, OTHER):
        assert cli(server, tmp_path, "fetch", "--app", app, *WINDOW).code == 0
    other = Store(tmp_path / "store").find(OTHER)
    (other.path / "manifest.json").write_text('{"parts": {"events": ["part-1.parq')
    tally.stores_damaged += 1
    for argv in (
        ["apps", "--offline"],
        ["cycles", "--offline", "--app", APP],
        ["diagnose", "--offline", "--app", OTHER],
    ):
        run = cli(server, tmp_path, *argv)
        no_traceback(run)
        assert run.code == 0, run.err
    got = Store(tmp_path / "store").find(OTHER)
    account(tally, got, reference[OTHER])
    assert ids(got) == ids(reference[OTHER])
    assert (got.path / "quarantine" / "manifest.json").exists()


# ---- 4. coverage honesty -------------------------------------------------------------------------------------
def test_4_offline_analysis_over_a_partly_fetched_window_names_the_missing_ranges(
    server: RunningServer, client: GraphClient, reference: dict, tmp_path: Path, tally: Tally
) -> None:
    store = Store(tmp_path / "store")

    def die_after_the_first_day(entries: int, committed: int) -> None:
        if committed >= 1:
            raise Killed("interrupted after the first day")

    with pytest.raises(Killed):
        fetch(server, client, store, on_page=die_after_the_first_day)
    covered = store.find(APP).covered()
    assert covered and covered[-1][1] < NOW - timedelta(days=1)  # one day of three, the rest missing

    run = cli(server, tmp_path, "diagnose", "--offline", "--app", APP, *WINDOW, "--json")
    assert run.code == 0, run.err
    findings = json.loads(run.out)
    gaps = [f for f in findings if f["check"] == "store.coverage-gaps"]
    assert len(gaps) == 1 and gaps[0]["severity"] == "warning"
    evidence = gaps[0]["evidence"]
    assert [(datetime.fromisoformat(r["from"]), datetime.fromisoformat(r["to"])) for r in evidence] == [
        (covered[-1][1], NOW)
    ]
    assert "provkit fetch --app" in gaps[0]["remedy"]
    assert "Not in the store:" in run.err and "provkit fetch" in run.err
    # The notebooks' loader and the report's summary.json carry the same warning. (The notebooks end a window at
    # the end of what the store covers, so the hole they can show is one inside it: fetch the last day first.)
    last_day = ["--start", (NOW - timedelta(days=1)).isoformat(), "--end", NOW.isoformat()]
    assert cli(server, tmp_path, "fetch", "--app", APP, *last_day).code == 0
    loaded = notebook_load(APP, source="store", store=str(tmp_path / "store"), start=WINDOW[1], end=WINDOW[3])
    from_notebook = run_checks(loaded.evidence)
    hole = [f.evidence for f in from_notebook if f.check == "store.coverage-gaps"]
    assert [[(row["from"], row["to"]) for row in rows] for rows in hole] == [
        [(covered[-1][1], NOW - timedelta(days=1))]
    ]
    summary = app_summary(loaded.evidence, from_notebook, cycles.summary(loaded.evidence))
    assert "store.coverage-gaps" in summary["checks"]["warning"] and summary["state"] != "ok"

    assert cli(server, tmp_path, "fetch", "--app", APP, *WINDOW).code == 0  # the remedy
    after = json.loads(cli(server, tmp_path, "diagnose", "--offline", "--app", APP, *WINDOW, "--json").out)
    assert not [f for f in after if f["check"] == "store.coverage-gaps"]
    got = store.find(APP)
    account(tally, got, reference[APP])
    assert ids(got) == ids(reference[APP])


# ---- 5. late entries -----------------------------------------------------------------------------------------
def test_5_entries_written_late_are_fetched_by_the_next_run(tmp_path: Path, tally: Tally) -> None:
    tenant = Tenant(
        seed=7,
        users_count=400,
        days=3,
        now=NOW,
        scenarios=("healthy", "skipped-users"),
        late_share=1.0,
        late_minutes=120,
    )
    # Every entry is written two hours after it happened (the default lookback is three hours).
    late_server = serve(tenant, tmp_path / "server")
    try:
        client = client_for(late_server)
        first_end = tenant_now(late_server)
        start = first_end - timedelta(days=1)
        with_lookback, without = Store(tmp_path / "default"), Store(tmp_path / "no-lookback")
        fetch(late_server, client, with_lookback, OTHER, start=start, end=first_end)
        fetch(late_server, client, without, OTHER, start=start, end=first_end, lookback=timedelta(0))
        first_ids = ids(with_lookback.find(OTHER))
        tenant.advance(150)  # the late entries are written now
        later = tenant_now(late_server)
        fetch(late_server, client, with_lookback, OTHER, start=start, end=later)
        fetch(late_server, client, without, OTHER, start=start, end=later, lookback=timedelta(0))

        truth = Store(tmp_path / "truth")
        fetch(late_server, client, truth, OTHER, start=start, end=later)  # asked for once all was written
        events = truth.find(OTHER).tables().events
        before_first_end = set(events.loc[events["activity_time"] < first_end, "id"])
        late = before_first_end - first_ids
        assert late, "no entry was written late; the test proves nothing"
        assert late - ids(without.find(OTHER)), "without a lookback the late entries should have been missed"
        got = with_lookback.find(OTHER)
        account(tally, got, truth.find(OTHER))
        assert ids(got) == ids(truth.find(OTHER))
    finally:
        late_server.stop()


# ---- 6 and 7. answers a healthy Graph never gives ------------------------------------------------------------
class Meddler(requests.adapters.BaseAdapter):
    """A transport in front of the client's real one: ``rule(request, real_send)`` returns a response or None
    (pass the request through)."""

    def __init__(self, session: requests.Session, rule) -> None:
        super().__init__()
        self.real = session.get_adapter("https://")
        self.rule = rule
        self.provisioning: list[str] = []  # URLs of the provisioning log requests, in order

    def send(self, request, **kwargs):
        if "/auditLogs/provisioning" in request.url:
            self.provisioning.append(request.url)
        answer = self.rule(self, request, kwargs)
        return answer if answer is not None else self.real.send(request, **kwargs)

    def close(self) -> None:
        self.real.close()


def synthetic(
    request, status: int, body: object | None = None, headers: dict | None = None
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = {200: "OK", 302: "Found"}.get(status, "")
    response._content = b"" if body is None else json.dumps(body).encode()
    response.headers.update({"Content-Type": "application/json", **(headers or {})})
    response.url = request.url
    response.request = request
    return response


def meddled_client(server: RunningServer, rule) -> tuple[GraphClient, Meddler]:
    client = client_for(server)
    meddler = Meddler(client.session, rule)
    client.session.mount("https://", meddler)
    return client, meddler


def on_page(n: int, answer):
    """A rule: the ``n``-th provisioning request (1-based) gets ``answer(meddler, request, kwargs)``; the rest,
    and any request to a host other than the server's, pass through (or, for a foreign host, an empty page)."""

    def rule(meddler: Meddler, request, kwargs):
        if "127.0.0.1" not in request.url:  # a foreign host: what a followed redirect would have reached
            return synthetic(request, 200, {"value": []})
        if "/auditLogs/provisioning" in request.url and len(meddler.provisioning) == n:
            return answer(meddler, request, kwargs)
        return None

    return rule


def redirect(meddler, request, kwargs):
    return synthetic(
        request, 302, None, {"Location": "https://elsewhere.example/v1.0/auditLogs/provisioning"}
    )


def value_not_a_list(meddler, request, kwargs):
    return synthetic(request, 200, {"value": {"id": "x"}})


def no_value(meddler, request, kwargs):
    return synthetic(request, 200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata"})


@pytest.mark.parametrize("answer", [redirect, value_not_a_list, no_value], ids=lambda f: f.__name__)
def test_6_a_redirect_or_a_page_without_a_value_list_is_an_error_and_nothing_of_its_range_is_covered(
    answer, server: RunningServer, client: GraphClient, reference: dict, tmp_path: Path, tally: Tally
) -> None:
    store = Store(tmp_path)
    meddling, meddler = meddled_client(server, on_page(3, answer))
    with pytest.raises(GraphError) as caught:
        fetch(server, meddling, store)
    tally.stores_damaged += 1
    message = str(caught.value)
    assert ("redirect" in message and "elsewhere.example" in message) or "not a list of entries" in message
    assert not any("elsewhere" in url for url in meddler.provisioning)  # the redirect was not followed
    app_store = store.find(APP)
    covered = app_store.covered()
    assert not covered or covered[-1][1] < tenant_now(server)  # the page's range is not covered
    assert ids(app_store) <= ids(reference[APP])
    fetch(server, client, store)  # the next fetch fills it
    account(tally, app_store, reference[APP])
    assert_same_store(app_store, reference[APP])


def loop_back(meddler, request, kwargs):
    """The page's nextLink leads back to the page before it (A -> B -> A)."""
    real = meddler.real.send(request, **kwargs)
    body = real.json()
    body["@odata.nextLink"] = meddler.provisioning[-2]
    return synthetic(request, 200, body)


def endless_empty(meddler, request, kwargs):
    """From here on, every page is empty and links to another empty page."""
    n = len(meddler.provisioning)
    base = meddler.provisioning[0].split("?")[0]
    return synthetic(request, 200, {"value": [], "@odata.nextLink": f"{base}?$skiptoken=empty{n}"})


def test_7_a_nextlink_cycle_and_a_run_of_empty_pages_stop_with_a_message(
    server: RunningServer, client: GraphClient, reference: dict, tmp_path: Path, tally: Tally
) -> None:
    for answer, words in (
        (loop_back, "leads back to a page already read"),
        (endless_empty, "empty pages in a row"),
    ):
        store = Store(tmp_path / answer.__name__)
        if answer is endless_empty:

            def rule(meddler, request, kwargs):
                if "/auditLogs/provisioning" in request.url and len(meddler.provisioning) >= 3:
                    return endless_empty(meddler, request, kwargs)
                return None

        else:
            rule = on_page(3, answer)
        meddling, meddler = meddled_client(server, rule)
        with pytest.raises(GraphError, match=words):
            fetch(server, meddling, store)
        tally.stores_damaged += 1
        assert len(meddler.provisioning) < 100  # stopped, not run until memory ran out
        fetch(server, client, store)
        got = store.find(APP)
        account(tally, got, reference[APP])
        assert_same_store(got, reference[APP])


# ---- 8. file-system errors and absurd spans ------------------------------------------------------------------
def test_8_disk_full_read_only_and_unreadable_files_are_one_line_messages_with_the_path(
    server: RunningServer, reference: dict, tmp_path: Path, tally: Tally, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        cli(server, tmp_path, "fetch", "--app", APP, *WINDOW[:2], "--end", "2025-02-27T12:00:00Z").code == 0
    )
    app_store = Store(tmp_path / "store").find(APP)
    before = ids(app_store)

    for code, words in ((errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")):

        def refuse(*args, code=code, **kwargs):
            raise OSError(code, os.strerror(code))

        with monkeypatch.context() as mp:
            mp.setattr(os, "fsync" if code == errno.ENOSPC else "replace", refuse)
            run = cli(server, tmp_path, "fetch", "--app", APP, *WINDOW)
        tally.stores_damaged += 1
        no_traceback(run)
        assert run.code == 1 and words in run.err and str(app_store.path) in run.err, run.err
        assert run.err.count("\n") <= 3  # the message and what to do
        assert before <= ids(Store(tmp_path / "store").find(APP))  # nothing stored was lost

    (app_store.path / "meta" / "schema.json").write_text("{not json")
    run = cli(server, tmp_path, "diagnose", "--offline", "--app", APP)
    no_traceback(run)
    assert run.code == 1 and str(app_store.path / "meta" / "schema.json") in run.err
    assert cli(server, tmp_path, "fetch", "--app", APP, *WINDOW).code == 0  # a fetch writes it afresh
    got = Store(tmp_path / "store").find(APP)
    account(tally, got, reference[APP])
    assert ids(got) == ids(reference[APP])

    for span in ("99999999999d", "1e400d", "4000w"):
        run = cli(server, tmp_path, "fetch", "--app", APP, "--since", span)
        no_traceback(run)
        assert run.code == 2 and span in run.err


# ---- 9. compaction -------------------------------------------------------------------------------------------
def test_9_many_small_fetches_are_compacted_by_fetch_and_by_store_compact_and_nothing_is_lost(
    server: RunningServer, client: GraphClient, reference: dict, tmp_path: Path, tally: Tally
) -> None:
    store = Store(tmp_path / "store")
    hours = int((tenant_now(server) - START) / timedelta(hours=1))
    parts_seen = 0
    for h in range(0, hours, 2):  # incremental fetches, two hours each: more parts than COMPACT_AT
        end = min(START + timedelta(hours=h + 2), tenant_now(server))
        fetch(server, client, store, end=end, lookback=timedelta(0))
        parts_seen = max(parts_seen, len(store.find(APP).manifest()["parts"]["events"]))
        assert parts_seen <= COMPACT_AT + 1  # compacted as it goes
    fetch(server, client, store)
    got = store.find(APP)
    assert "compacted" in (got.path / "journal.log").read_text()
    account(tally, got, reference[APP])
    assert_same_store(got, reference[APP])

    run = cli(server, tmp_path, "store", "compact")
    assert run.code == 0, run.err
    got = Store(tmp_path / "store").find(APP)
    assert [len(got.manifest()["parts"][k]) for k in ("events", "jobs")] == [1, 1]
    assert_same_store(got, reference[APP])
    assert stray_files(got) == []


# ---- 10. a paging token that stops working, and smaller things -----------------------------------------------
def test_10_a_restarted_server_mid_paging_is_resumed_not_reported_as_a_bug(
    server: RunningServer, client: GraphClient, reference: dict, tmp_path: Path, tally: Tally
) -> None:
    store = Store(tmp_path)
    pages = [0]

    def restart_the_server(entries: int, committed: int) -> None:
        pages[0] += 1
        if pages[0] in (3, 7):  # new signing key: every $skiptoken issued so far is now "invalid or expired"
            server.graph._token_key = os.urandom(32)

    mark = len(server.graph.requests)
    summary, got = fetch(server, client, store, on_page=restart_the_server)
    refused = [r for r in server.graph.requests[mark:] if r.status == 400]
    assert len(refused) == 2  # both restarts were met, and resumed
    tally.stores_damaged += 1
    account(tally, got, reference[APP])
    assert_same_store(got, reference[APP])
    assert summary.duplicates == 0  # resuming asked again only for what was not read


def test_10_entries_dated_outside_the_window_are_counted_not_stored(
    server: RunningServer, reference: dict, tmp_path: Path
) -> None:
    def add_a_stranger(meddler, request, kwargs):
        body = meddler.real.send(request, **kwargs).json()
        stranger = {
            **body["value"][0],
            "id": "outside-the-window",
            "activityDateTime": "2020-01-01T00:00:00Z",
        }
        body["value"].append(stranger)
        return synthetic(request, 200, body)

    meddling, _ = meddled_client(server, on_page(2, add_a_stranger))
    summary, got = fetch(server, meddling, Store(tmp_path))
    assert summary.outside == 1 and "1 dated outside the window" in summary.line()
    assert "outside-the-window" not in ids(got)
    assert ids(got) == ids(reference[APP])


def test_10_messages_and_queries(capsys: pytest.CaptureFixture[str]) -> None:
    assert provkit_cli.main(["emulator", "--late-entries", "2,120"]) == 2
    assert "--late-entries" in capsys.readouterr().err
    unanswered = GraphUnavailableError("Graph did not answer.", method="GET", url="/auditLogs/provisioning")
    assert str(unanswered).startswith("GET /auditLogs/provisioning: ")
    assert _odata_datetime(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0999-01-02T03:04:05Z"
    env = {
        "PROVKIT_TENANT_ID": "contoso.onmicrosoft.com",
        "PROVKIT_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
        "PROVKIT_AUTHORITY_URL": "https://admin:hunter2@login.example.com",
    }
    assert "hunter2" not in Settings.from_env(env).describe()
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**env, "PROVKIT_AUTHORITY_URL": "https://admin:hunter2@login.example.com/tenant"})
    assert "hunter2" not in str(caught.value) and "login.example.com" in str(caught.value)
