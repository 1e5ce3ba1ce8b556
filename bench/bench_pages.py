"""Size and load time of report pages in Chromium, opened from disk (file://) and over http, against a baseline
measured in the same run: the same pages made self-contained (plotly.js inlined into every page, what plotly's
``include_plotlyjs=True`` gives).

    .venv/bin/python bench/bench_pages.py [--report DIR] [--users N] [--days N] [--rounds N]

Without ``--report`` it first writes a demo report (``provkit report --demo --all-apps``) on a small simulated
tenant. Each page is opened in a fresh browser context (nothing cached between pages) and timed from navigation
to the moment every chart on it has drawn. Needs Chromium (``PROVKIT_CHROMIUM`` or ``chromium`` on PATH).
Results go to bench/results/pages.json as well.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARGS = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DRAWN = (
    "() => [...document.querySelectorAll('.provkit-chart')].every(c => c.querySelector('.main-svg'))"
    " && document.querySelectorAll('.provkit-chart').length > 0"
)


def _demo_report(out: Path, users: int, days: int) -> Path:
    env = dict(os.environ, PROVKIT_DEMO_USERS=str(users), PROVKIT_DEMO_DAYS=str(days))
    for name in ("PROVKIT_TENANT_ID", "PROVKIT_CLIENT_ID", "PROVKIT_CLIENT_SECRET", "PROVKIT_CERT_PATH"):
        env.pop(name, None)
    command = [sys.executable, "-c", "import sys; from provkit.cli.main import main; sys.exit(main())"]
    command += ["report", "--demo", "--all-apps", "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 3):
        raise SystemExit(f"the demo report failed:\n{done.stderr[-2000:]}")
    return out


def _inline_copy(run: Path, target: Path) -> Path:
    """The run folder with plotly.js inlined into every page (the self-contained baseline)."""
    shutil.copytree(run, target)
    script = (run / "plotly.min.js").read_text(encoding="utf-8").replace("</script", "<\\/script")
    tag = re.compile(r'<script[^>]*src="\.\./plotly\.min\.js"[^>]*></script>')
    for page in target.glob("*/*.html"):
        text = page.read_text(encoding="utf-8")
        page.write_text(tag.sub(lambda _m: f"<script>{script}</script>", text), encoding="utf-8")
    (target / "plotly.min.js").unlink()
    return target


def _serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _time_pages(browser, urls: list[str]) -> list[float]:
    seconds = []
    for url in urls:
        context = browser.new_context()
        page = context.new_page()
        began = time.perf_counter()
        page.goto(url, wait_until="load")
        page.wait_for_function(DRAWN, timeout=30_000)
        seconds.append(time.perf_counter() - began)
        context.close()
    return seconds


def _size(folder: Path, pages: list[Path]) -> tuple[int, int]:
    """Bytes of the pages alone, and of the pages plus their shared script (once per run folder)."""
    pages_bytes = sum(p.stat().st_size for p in pages)
    shared = folder / "plotly.min.js"
    return pages_bytes, pages_bytes + (shared.stat().st_size if shared.exists() else 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, help="a report folder (--out of provkit report) to measure")
    parser.add_argument("--users", type=int, default=300, help="users of the demo tenant (default 300)")
    parser.add_argument("--days", type=int, default=3, help="days of the demo tenant (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="times each page is opened (default 3)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    executable = (
        os.environ.get("PROVKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not executable:
        raise SystemExit("Chromium is not installed: apt-get install chromium, or set PROVKIT_CHROMIUM.")
    with tempfile.TemporaryDirectory(prefix="provkit-bench-pages-") as tmp:
        report = (
            args.report.resolve()
            if args.report
            else _demo_report(Path(tmp) / "report", args.users, args.days)
        )
        run = max(p for p in report.iterdir() if p.is_dir() and (p / "summary.json").exists())
        baseline = _inline_copy(run, Path(tmp) / "inline")
        relative = sorted(str(p.relative_to(run)) for p in run.glob("*/*.html"))
        with_charts = [r for r in relative if "provkit-chart" in (run / r).read_text(encoding="utf-8")]
        results: dict[str, Any] = {
            "pages": len(relative),
            "pages_with_charts": len(with_charts),
            "variants": {},
        }
        flags = ["--no-sandbox", *ARGS] if os.geteuid() == 0 else ARGS
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=flags)
            for label, folder in (
                ("sibling plotly.min.js (provkit)", run),
                ("self-contained (baseline)", baseline),
            ):
                server, base = _serve(folder)
                try:
                    timings = {}
                    for scheme in ("file", "http"):
                        urls = [
                            (folder / r).as_uri() if scheme == "file" else f"{base}/{r}" for r in with_charts
                        ]
                        samples = [s for _ in range(args.rounds) for s in _time_pages(browser, urls)]
                        timings[scheme] = {
                            "median_s": round(statistics.median(samples), 3),
                            "p90_s": round(statistics.quantiles(samples, n=10)[-1], 3),
                        }
                finally:
                    server.shutdown()
                pages_bytes, total = _size(folder, [folder / r for r in relative])
                results["variants"][label] = {
                    "bytes_pages": pages_bytes,
                    "bytes_with_shared_script": total,
                    "median_page_bytes": int(
                        statistics.median((folder / r).stat().st_size for r in relative)
                    ),
                    **timings,
                }
            browser.close()
    print(
        f"{results['pages']} report pages ({results['pages_with_charts']} with charts), {args.rounds} rounds"
    )
    print(f"{'variant':<34} {'page (median)':>14} {'all pages':>12} {'file:// load':>22} {'http load':>22}")
    for label, v in results["variants"].items():
        print(
            f"{label:<34} {v['median_page_bytes'] / 1e3:>11.0f} kB {v['bytes_with_shared_script'] / 1e6:>9.1f} MB "
            f"{v['file']['median_s']:>9.3f} s (p90 {v['file']['p90_s']:.3f}) "
            f"{v['http']['median_s']:>9.3f} s (p90 {v['http']['p90_s']:.3f})"
        )
    results["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    out = ROOT / "bench" / "results" / "pages.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
