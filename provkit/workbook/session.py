"""The one call that notebooks and commands make to get an app's evidence: ``load_evidence``.

``source`` chooses where data comes from:
- ``"graph"``: the live tenant named by the PROVKIT_* settings; fetched into the store, then read from it;
- ``"demo"``: the simulated tenant, started in-process; fetched into a demo store through the same code;
- ``"store"``: the store alone, offline (after ``provkit fetch`` or ``provkit import``);
- empty or None: :func:`default_source`, the live tenant when ``PROVKIT_TENANT_ID`` is set, else the simulated one.

:func:`describe_origin` says in one line where an app's evidence came from (the banner of notebooks, report pages
and postmortems).

With ``workspace`` (a Log Analytics workspace id) the logs come from that workspace through KQL instead of the
Graph reporting API (the configuration still comes from Graph, of the live or the simulated tenant); ``logs``
says how much of them travels ("entries", "cycles", "findings", "summary" or "object", see provkit.data.sources.loganalytics).

The demo tenant's size can be set with ``PROVKIT_DEMO_USERS`` and ``PROVKIT_DEMO_DAYS`` (default 6000 users,
7 days); ``PROVKIT_DEMO_THROTTLE=1`` turns Graph's reporting throttle on (the simulated tenant is reached through
provkit.data.sources.demo). Simulated tenants run until :func:`stop_demo_tenants` (the command line calls it on the
way out). A fetch shows its progress with :class:`FetchProgressBar`, in a terminal and in a notebook alike.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from provkit.analysis import trends
from provkit.analysis.checks.travel import judged_one_by_one
from provkit.data.auth import Settings
from provkit.data.evidence import (
    Evidence,
    describe_window,
    fetched_evidence,
    stored_evidence,
)
from provkit.data.fetch import FetchProgress, FetchSummary, fetch_app
from provkit.data.graph import GraphClient
from provkit.data.sources import demo as demo_source
from provkit.data.sources.graph import connect
from provkit.data.sources.loganalytics import LogAnalytics, workspace_evidence
from provkit.data.store import Store
from provkit.errors import ConfigError
from provkit.window import parse_instant, resolve_window

SOURCES = ("graph", "demo", "store")
_DEMO: dict[tuple, Any] = {}  # simulated tenants (provkit.data.sources.demo) by their arguments
_DEMO_STORE: dict[str, Path] = {}


@dataclass
class Loaded:
    evidence: Evidence
    fetch: FetchSummary | None
    resolved: str  # "Resolved 'Zendesk' by display name to ..." or the store path
    transfer: object | None = (
        None  # rows and bytes a Log Analytics workspace sent (sources.loganalytics.Transfer)
    )
    source: str = ""  # the source it was read from: graph, demo or store
    store: Path | None = None  # the store's root folder, when known
    workspace: str | None = None  # the Log Analytics workspace the logs came from, when one did
    workspace_client: LogAnalytics | None = None  # its client, for aggregates asked for later

    def origin(self) -> str:
        """Where the evidence came from, in one line (:func:`describe_origin`)."""
        return describe_origin(self.evidence, source=self.source, store=self.store, workspace=self.workspace)

    def failures_by_day(self) -> pd.DataFrame:
        """Failed entries by UTC day and error code (``day``, ``code``, ``entries``): summarised in KQL by the
        workspace the logs came from (whatever part of the entries travelled), else from the events table."""
        evidence = self.evidence
        if self.workspace_client is not None and evidence.window is not None:
            return self.workspace_client.failures_by_day(evidence.service_principal_id, evidence.window)
        return trends.failures_by_day(evidence.events)


DEMO_SIZE_SETTINGS = {"users": "PROVKIT_DEMO_USERS", "days": "PROVKIT_DEMO_DAYS"}


def demo_size_from_env(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """The demo tenant's size from ``PROVKIT_DEMO_USERS`` (at least 50) and ``PROVKIT_DEMO_DAYS`` (at least 1),
    where set; tests and quick looks use a small tenant, the default is 6000 users and 7 days."""
    env = os.environ if environ is None else environ
    size: dict[str, int] = {}
    for option, name in DEMO_SIZE_SETTINGS.items():
        text = (env.get(name) or "").strip()
        if not text:
            continue
        least = 50 if option == "users" else 1
        if not text.isdigit() or int(text) < least:
            raise ConfigError(
                f"{name}={text!r} is not a whole number of at least {least}.",
                remedy=f"Unset {name} for the default size, or give a number such as {least * 8}.",
            )
        size[option] = int(text)
    return size


def demo_tenant(**kwargs):
    """A process-wide simulated tenant (started once per process and set of arguments).

    ``users`` and ``days`` not given come from PROVKIT_DEMO_USERS and PROVKIT_DEMO_DAYS when set.
    """
    kwargs = {**demo_size_from_env(), **kwargs}
    key = tuple(sorted(kwargs.items()))
    if key not in _DEMO:
        _DEMO[key] = demo_source.start_demo_tenant(**kwargs)
    return _DEMO[key]


def demo_options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The simulated tenant's clock and seed from ``PROVKIT_DEMO_NOW`` and ``PROVKIT_DEMO_SEED``, where set.

    ``PROVKIT_DEMO_NOW`` is an ISO-8601 instant (UTC unless an offset is given): a fixed one makes the demo's
    findings the same on every run (the notebook tests use it). Its size comes from ``PROVKIT_DEMO_USERS`` and
    ``PROVKIT_DEMO_DAYS``, which :func:`demo_tenant` reads itself.
    """
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    text = (env.get("PROVKIT_DEMO_SEED") or "").strip()
    if text:
        if not text.isdigit():
            raise ConfigError(f"PROVKIT_DEMO_SEED must be a whole number, not {text!r}.")
        options["seed"] = int(text)
    text = (env.get("PROVKIT_DEMO_NOW") or "").strip()
    if text:
        options["now"] = parse_instant(text, name="PROVKIT_DEMO_NOW")
    return options


def stop_demo_tenants() -> int:
    """Stop every simulated tenant this process started (their servers and threads); returns how many.

    The command line and report runs call it on the way out; a later :func:`demo_tenant` starts a new one.
    """
    demos = list(_DEMO.values())
    _DEMO.clear()
    for demo in demos:
        demo.stop()
    return len(demos)


def demo_store_root() -> Path:
    """A store folder for this process's simulated tenant.

    Fresh per process: the simulated history ends at the moment the demo starts, so two runs minutes apart hold
    the same entry ids at slightly different times, and one store must not mix them. Pass a store to keep one.
    """
    if "store" not in _DEMO_STORE:
        _DEMO_STORE["store"] = Path(tempfile.mkdtemp(prefix="provkit-demo-store-"))
    return _DEMO_STORE["store"]


def default_source(environ: Mapping[str, str] | None = None) -> str:
    """The source used when none is named: ``"graph"`` (the live tenant) when ``PROVKIT_TENANT_ID`` is set,
    else ``"demo"`` (the simulated tenant), so that real settings are never silently ignored."""
    env = os.environ if environ is None else environ
    return "graph" if (env.get("PROVKIT_TENANT_ID") or "").strip() else "demo"


def check_source(source: str | None) -> str:
    """``source`` checked and normalised; empty or None means :func:`default_source`."""
    if source is None or not str(source).strip():
        return default_source()
    value = str(source).strip().lower()
    if value in ("offline",):
        value = "store"
    if value not in SOURCES:
        raise ConfigError(f"Unknown source {source!r}.", remedy=f"Use one of: {', '.join(SOURCES)}.")
    return value


def load_evidence(
    app: str,
    *,
    source: str | None = None,
    since: str | None = "7d",
    start: str | None = None,
    end: str | None = None,
    store: str | Path | None = None,
    tenant_id: str | None = None,
    progress: bool | Callable[[int, int], None] = True,
    client=None,
    demo_options: dict | None = None,
    workspace: str | None = None,
    logs: str = "entries",
    object_ref: str | None = None,
) -> Loaded:
    """Fetch (unless offline) and read one app's evidence. ``app`` is a display name, appId or object id;
    ``source`` None means :func:`default_source`."""
    source = check_source(source)
    if not app or not str(app).strip():
        raise ConfigError(
            "No app given.", remedy="Name the app by display name, appId or service principal id."
        )
    if workspace is not None:
        return _load_from_workspace(
            app, source, workspace, since, start, end, tenant_id, client, demo_options, logs, object_ref
        )
    if source == "store":
        st = Store(store)
        app_store = st.find(app, tenant_id)
        # Cut to the window here, once, for every caller: --since counts back from the end of what the store
        # holds; explicit --start/--end are taken as given, so missing days show as missing.
        since = None if (start or end) else since
        evidence = stored_evidence(app_store, since=since, start=start, end=end)
        read = f"Read {app!r} from the store at {app_store.path}; {describe_window(evidence, since=since)}"
        return Loaded(evidence, None, read, source="store", store=st.root)
    client, tenant_id, st, window = fetch_target(
        source,
        since=since,
        start=start,
        end=end,
        store=store,
        client=client,
        demo_options=demo_options,
    )
    bar = FetchProgressBar(app, stats=getattr(client, "stats", None)) if progress is True else None
    try:
        summary, app_store = fetch_app(
            client,
            st,
            app,
            start=window[0],
            end=window[1],
            tenant_id=tenant_id,
            on_page=progress if callable(progress) else None,
            progress=bar,
        )
    finally:
        if bar is not None:
            bar.close()
    resolved = client.resolve_app(app).describe() if hasattr(client, "resolve_app") else app
    return loaded_after_fetch(summary, app_store, window, source, resolved)


def fetch_target(
    source: str,
    *,
    since: str | None,
    start: str | None,
    end: str | None,
    store: str | Path | None,
    client=None,
    demo_options: dict | None = None,
) -> tuple[GraphClient, str, Store, tuple[datetime, datetime]]:
    """(client, tenant id, store, window) of a fetch from ``source`` ("demo" or "graph")."""
    if source == "demo":
        demo = demo_tenant(**(demo_options or {}))
        client = client or demo.client
        tenant_id = demo.tenant_id
        st = Store(store or demo_store_root())
        now = datetime.fromtimestamp(demo.tenant.now_ticks / 10**7).astimezone()
    else:
        settings = Settings.from_env()
        client = client or connect(settings)
        tenant_id = settings.tenant_id or ""
        st = Store(store)
        now = None
    window = resolve_window(since=since if not (start or end) else None, start=start, end=end, now=now)
    return client, tenant_id, st, window


def loaded_after_fetch(
    summary: FetchSummary | None, app_store, window: tuple[datetime, datetime], source: str, resolved: str
) -> Loaded:
    """The evidence of an app just fetched into ``app_store`` for ``window``."""
    evidence = fetched_evidence(app_store, window)  # cut: the store may hold more than this window
    evidence.source = source
    # The store's root folder: app folders sit at <root>/<tenant>/<service principal>.
    return Loaded(evidence, summary, resolved, source=source, store=Path(app_store.path).parent.parent)


def simulated_tenant_ids(environ: Mapping[str, str] | None = None) -> set[str]:
    """Tenant ids the simulated tenant uses (its default seed, and ``PROVKIT_DEMO_SEED`` when set): stored
    evidence with one of them came from the simulator, not from a real tenant."""
    env = os.environ if environ is None else environ
    seeds = {7}
    text = (env.get("PROVKIT_DEMO_SEED") or "").strip()
    if text.isdigit():
        seeds.add(int(text))
    return demo_source.simulated_tenant_ids(seeds)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment


def describe_origin(
    evidence: Evidence,
    *,
    source: str | None = None,
    store: str | Path | None = None,
    when: datetime | None = None,
    workspace: str | None = None,
) -> str:
    """Where ``evidence`` came from, in one line: the simulated tenant, a live tenant (its id), a stored copy
    read offline (``source="store"``), or an import; with the app and the window (and ``when`` it was fetched,
    default "just now"). With ``workspace`` (the logs were queried from that Log Analytics workspace) it names
    the workspace and says that the job status and schema came from Graph. Never holds a secret."""
    tenant = evidence.tenant_id or "unknown"
    simulated = tenant.lower() in simulated_tenant_ids()
    read = (source or evidence.source or "").lower()
    fetched = f"at {_utc(when):%Y-%m-%d %H:%M} UTC" if when else "just now"
    where = f"the store at {store}" if store else "the local store"
    if (evidence.source or "").lower() == "import":
        text = f"an IMPORT of downloaded logs in {where} (tenant {tenant}), read offline"
    elif read == "store":
        kind = "the SIMULATED tenant (demo data)" if simulated else "the LIVE tenant"
        text = f"a copy of {kind} kept in {where} (tenant {tenant}), read offline"
    elif read in ("demo", "simulator") or simulated:
        text = f"the SIMULATED tenant (demo data, tenant {tenant}), fetched {fetched}"
    else:
        text = f"the LIVE tenant {tenant}, fetched {fetched}"
    if workspace and read != "store" and (evidence.source or "").lower() != "import":
        graph = text.rsplit(", fetched ", 1)[0]
        text = (
            f"Log Analytics workspace {workspace} (the provisioning logs, queried with KQL; job status and schema "
            f"from Graph of {graph}), fetched {fetched}"
        )
    window = evidence.window
    span = (
        f"{_utc(window[0]):%Y-%m-%d %H:%M} to {_utc(window[1]):%Y-%m-%d %H:%M} UTC"
        if window
        else "all stored"
    )
    return f"Evidence for {evidence.display_name} from {text}; window {span}."


def _load_from_workspace(
    app: str,
    source: str,
    workspace: str,
    since: str | None,
    start: str | None,
    end: str | None,
    tenant_id: str | None,
    client,
    demo_options: dict | None,
    logs: str,
    object_ref: str | None,
) -> Loaded:
    if source == "store":
        raise ConfigError(
            "A Log Analytics workspace cannot be read offline.",
            remedy="Drop --offline to query the workspace, or drop --workspace to read the store.",
        )
    if source == "demo":
        demo = demo_tenant(**(demo_options or {}))
        client = client or demo.client
        tenant_id = demo.tenant_id
        env = demo.server.env()
        workspace = workspace or env["PROVKIT_WORKSPACE_ID"]
        la = LogAnalytics.connect(
            workspace, environ=env, method="secret", secret=env["PROVKIT_CLIENT_SECRET"], cache_path=False
        )
        now = datetime.fromtimestamp(demo.tenant.now_ticks / 10**7).astimezone()
    else:
        settings = Settings.from_env()
        client = client or connect(settings)
        tenant_id = settings.tenant_id
        la = LogAnalytics.connect(workspace or None, settings=settings)
        now = None
    window = resolve_window(since=since if not (start or end) else None, start=start, end=end, now=now)
    # Which failing objects travel whole is the checks' decision (those they judge one by one).
    evidence, resolved = workspace_evidence(
        client,
        la,
        app,
        window=window,
        tenant_id=tenant_id,
        mode=logs,
        object_ref=object_ref,
        judged=judged_one_by_one,
    )
    # The logs are the window's already (the query's timespan); the job status read from Graph now may describe
    # a later state than a past window: the cut keeps it only when it does not.
    evidence = evidence.cut(window)
    where = f"Log Analytics workspace {la.workspace_id}: {la.transfer.line()}"
    if la.rejects:
        where += f"; {len(la.rejects)} rows unreadable, e.g. {la.rejects[0]}"
    return Loaded(
        evidence,
        None,
        f"{resolved.describe()}\n{where}",
        la.transfer,
        source=source,
        workspace=la.workspace_id,
        workspace_client=la,
    )


class FetchProgressBar:
    """The progress of a fetch, as the command line (``provkit fetch``) and the notebooks show it: a tqdm bar for :func:`provkit.data.fetch.fetch_app`'s ``progress``: entries (of those the window is expected to
    hold), pages, rate, the time left that the throttle implies and, given the client's ``stats`` (a
    :class:`provkit.data.graph.GraphStats`), the 429s received; quiet when stderr is not a terminal or notebook."""

    def __init__(self, app: str, stats: object | None = None) -> None:
        # Deferred on purpose: tqdm.auto imports IPython and ipywidgets where they are installed, which only a
        # fetch needs (not `cycles --offline` or `apps`).
        from tqdm.auto import tqdm

        self.app = app
        # The whole line is the description: tqdm's own rate and estimate know nothing of the throttle.
        self.bar = tqdm(
            desc=f"fetching {app}: 0 entries",  # drawn at once, before the first page
            unit=" entries",
            file=sys.stderr,
            leave=False,
            disable=None,
            mininterval=0.5,
            bar_format="{desc}",
        )
        self.stats = stats
        self._throttled = getattr(stats, "throttled", 0)

    def __call__(self, progress: FetchProgress) -> None:
        text = progress.line()
        throttled = getattr(self.stats, "throttled", 0) - self._throttled if self.stats is not None else 0
        if throttled:
            text += f", {throttled} throttled (429)"
        self.bar.set_description_str(f"fetching {self.app}: {text}", refresh=False)
        expected = progress.entries_expected
        if expected and self.bar.total != expected:
            self.bar.total = expected
        self.bar.update(progress.entries - self.bar.n)  # redraws (at most every half second)

    def close(self) -> None:
        self.bar.close()
