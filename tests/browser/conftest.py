"""Browser tests: what people see, in Debian's Chromium driven by Playwright for Python.

Playwright cannot download its own browsers here, so the tests launch the system's Chromium
(``PROVKIT_CHROMIUM``, else ``chromium`` on PATH). ``make test`` installs it with apt when it is missing and the
user is root; otherwise these tests are skipped with a message saying what to install. The network of the
machines that run them is closed, so Chromium is started with everything that phones home turned off, and the
tests check that no page makes a request leaving the machine.

A failing test leaves a full-page screenshot of each page it opened in ``tests/browser/artifacts/`` (git-ignored;
CI keeps it); ``PROVKIT_BROWSER_SCREENSHOTS=1`` keeps them for passing tests too, to look at the pages.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# The small, deterministic simulated tenant the notebook tests use too.
DEMO_ENV = {
    "PROVKIT_DEMO_USERS": "300",
    "PROVKIT_DEMO_DAYS": "3",
    "PROVKIT_DEMO_NOW": "2024-06-03T12:00:00Z",
    "PROVKIT_DEMO_THROTTLE": "0",
}
LIVE_SETTINGS = ("PROVKIT_TENANT_ID", "PROVKIT_CLIENT_ID", "PROVKIT_CLIENT_SECRET", "PROVKIT_CERT_PATH")
LOCAL_PREFIXES = ("file://", "data:", "blob:", "about:", "http://127.0.0.1", "ws://127.0.0.1")


def chromium_path() -> str | None:
    """The Chromium to drive: ``PROVKIT_CHROMIUM``, else ``chromium`` (Debian) or ``chromium-browser``."""
    configured = os.environ.get("PROVKIT_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def demo_environment() -> dict[str, str]:
    """This process's environment with the small demo tenant and without live sign-in settings."""
    env = {k: v for k, v in os.environ.items() if k not in LIVE_SETTINGS}
    env.update(DEMO_ENV)
    return env


@pytest.fixture(scope="module")  # closed after each test file: the rest of the suite runs without it
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed: run `make install` (it installs the test extras).")
    executable = chromium_path()
    if executable is None:
        advice = (
            "Chromium is not installed. As root, `make test` installs it (apt-get install -y chromium); "
            "otherwise install Debian's chromium package, or set PROVKIT_CHROMIUM to a Chromium binary."
        )
        if os.environ.get("CI") == "true":  # in CI a skipped browser test would hide what it guards
            pytest.fail(advice)
        pytest.skip(advice)
    args = list(CHROMIUM_ARGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.insert(0, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _artifact_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:120]


class Pages:
    """Pages opened by a test; on failure each gets a full-page screenshot in ``tests/browser/artifacts``."""

    def __init__(self, browser: object) -> None:
        self.browser = browser
        self.opened: list[tuple[str, object]] = []

    def new(self, label: str, **options: object) -> object:
        context = self.browser.new_context(viewport={"width": 1400, "height": 1000}, **options)
        page = context.new_page()
        self.opened.append((label, page))
        return page

    def snapshot(self, page: object, name: str) -> Path | None:
        """Keep a full-page screenshot of ``page`` now (for a page about to be closed)."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{_artifact_name(name)}.png"
        try:
            page.screenshot(path=str(path), full_page=True)
        except Exception:
            return None
        return path

    def keep_screenshots(self, nodeid: str) -> list[Path]:
        ARTIFACTS.mkdir(exist_ok=True)
        kept = []
        for label, page in self.opened:
            path = ARTIFACTS / f"{_artifact_name(nodeid)}-{_artifact_name(label)}.png"
            try:
                page.screenshot(path=str(path), full_page=True)
                kept.append(path)
            except Exception:  # a crashed page: the test's own error says more
                continue
        return kept

    def close(self) -> None:
        for _label, page in self.opened:
            try:
                page.context.close()
            except Exception:
                pass


@pytest.fixture
def pages(browser: object, request: pytest.FixtureRequest) -> Iterator[Pages]:
    opened = Pages(browser)
    yield opened
    report = getattr(request.node, "report_call", None)
    if (report is not None and report.failed) or os.environ.get("PROVKIT_BROWSER_SCREENSHOTS") == "1":
        for path in opened.keep_screenshots(request.node.nodeid):
            print(f"screenshot of the failure: {path}")
    opened.close()
