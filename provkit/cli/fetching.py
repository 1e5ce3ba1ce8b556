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
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from provkit.data.auth import Settings
from provkit.data.fetch import FetchProgress, fetch_app
from provkit.data.sources.graph import connect
from provkit.data.store import Store
from provkit.window import parse_span, resolve_window

__all__ = ["cmd_fetch"]

_COMMAND_MODULE = "provkit.cli.main"


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
    if not args.demo and _runs_the_process():
        _exit_now()
    return 0


def _runs_the_process() -> bool:
    """Whether this command is the whole process: ``provkit fetch`` or ``python -m provkit.cli.main fetch``, not
    :func:`provkit.cli.main.main` called from other code (a test, a notebook), which must get its return."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == _COMMAND_MODULE:
        return True
    # The `provkit` console script: a file of that name whose __main__ imports main from the command module
    # (code that runs `from provkit.cli.main import main` as python -c or from another script is not it).
    script = os.path.splitext(os.path.basename(getattr(main, "__file__", None) or ""))[0]
    command = sys.modules.get(_COMMAND_MODULE)
    return (
        script in ("provkit", "provkit-script")
        and command is not None
        and getattr(main, "main", None) is getattr(command, "main", object())
    )


def _exit_now() -> None:
    """End the process with status 0 without the interpreter's teardown of pandas, pyarrow and the rest (0.15-0.2
    s measured between the summary's print and the exit, a third of what follows the last page).

    Safe here because nothing is left to finish: every store file was written to a temporary file, fsynced and
    renamed, and the writer lock released, before :func:`fetch_app` returned; the log-page and side-read threads
    were joined; the progress bar is closed; the only open sockets are reads'. What is buffered is flushed
    first: the log handlers, then stdout and stderr (if that fails, e.g. a closed pipe, the normal exit runs and
    reports it)."""
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(0)
