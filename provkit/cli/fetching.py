"""``provkit fetch``: the command whose speed is the throttle's, so it loads only what the first log call needs.

pandas, pyarrow and the analysis take most of a second to import (more on a busy machine); the fetch needs
them only to normalise and write the pages. Here, sign-in, the app's resolution and the store's manifest, lock
and gaps come first, the first log call goes, and the converters load while Graph answers it and the calls sent
after it (:mod:`provkit.data.deferred`). :mod:`provkit.cli.main` runs :func:`cmd_fetch` from here, not through
:mod:`provkit.cli.commands`, which imports the analysis at the top.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from provkit.data.auth import Settings
from provkit.data.fetch import FetchProgress, fetch_app
from provkit.data.sources.graph import connect
from provkit.data.store import Store
from provkit.window import parse_span, resolve_window

__all__ = ["cmd_fetch"]


class _ProgressBar:
    """The command's progress bar, made when the first page is in: the bar lives with the notebooks' helpers
    (:class:`provkit.workbook.session.FetchProgressBar`), whose module imports pandas and the analysis."""

    def __init__(self, app: str, stats: object | None) -> None:
        self.app = app
        self.stats = stats
        self.bar: Any = None

    def __call__(self, progress: FetchProgress) -> None:
        if self.bar is None:
            # Deferred on purpose: loaded after the first log call (see the module docstring).
            from provkit.workbook.session import FetchProgressBar

            self.bar = FetchProgressBar(self.app, stats=self.stats)
        self.bar(progress)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_fetch(args: argparse.Namespace) -> int:
    now = None
    if args.demo:
        # Deferred on purpose: the simulated tenant's helpers live with the notebooks' (pandas, the analysis).
        from provkit.workbook.session import demo_store_root, demo_tenant

        demo = demo_tenant()
        client, tenant_id = demo.client, demo.tenant_id
        now = datetime.fromtimestamp(demo.tenant.now_ticks / 10**7, tz=UTC)
        store = Store(args.store or demo_store_root())
    else:
        settings = Settings.from_env()
        client, tenant_id = connect(settings), settings.tenant_id
        store = Store(args.store)
    window = resolve_window(since=args.since, start=args.start, end=args.end, now=now)
    options: dict[str, Any] = {}
    if args.lookback:
        options["lookback"] = parse_span(args.lookback)
    resolved = client.resolve_app(args.app)
    print(resolved.describe(), file=sys.stderr)
    bar = _ProgressBar(resolved.display_name, getattr(client, "stats", None))
    try:
        summary, app_store = fetch_app(
            client,
            store,
            resolved,
            start=window[0],
            end=window[1],
            tenant_id=tenant_id,
            progress=bar,
            **options,
        )
    finally:
        bar.close()
    if args.json:
        print(json.dumps({**summary.as_dict(), "store": str(app_store.path)}, indent=2))
    else:
        print(summary.line())
        print(f"Stored in {app_store.path}")
    return 0
