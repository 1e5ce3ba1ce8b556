"""Time a full demo report (every app, notebooks 00 to 05) as ``provkit report --demo --all-apps`` runs it, against
a baseline: the same report run the plain papermill way, one notebook after another, each in a new kernel.

    .venv/bin/python bench/bench_report.py [--users N] [--days N] [--workers N] [--skip-baseline]

The report fetches each app once and runs the notebooks offline against that store, two at a time in worker
processes that each keep one kernel warm (reset between notebooks). The baseline keeps the fetch-once store, so
the difference is the process pool and the warm kernels. Results go to bench/results/report.json as well.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run(label: str, *, workers: int, warm: bool, out: Path) -> dict:
    from provkit.workbook.reports import build_report, exit_code

    began = time.perf_counter()
    run = build_report(None, out=out, source="demo", since="7d", workers=workers, warm_kernels=warm)
    seconds = time.perf_counter() - began
    notebooks = [n for app in run.apps for n in app.get("notebooks", [])]
    failed = [f"{n['app']}/{n['name']}: {n['error']}" for n in notebooks if n["status"] != "ok"]
    fetch = sum(app.get("seconds_to_load", 0.0) for app in run.apps)
    result = {
        "label": label,
        "workers": workers,
        "warm_kernels": warm,
        "apps": len(run.apps),
        "notebooks": len(notebooks),
        "failed": failed,
        "seconds": round(seconds, 1),
        "seconds_fetch_and_analysis": round(fetch, 1),
        "seconds_per_notebook": round(sum(n["seconds"] for n in notebooks) / max(1, len(notebooks)), 2),
        "exit_code": exit_code(run.summary, None),
    }
    print(
        f"{label:<58} {result['seconds']:>7.1f} s  ({result['apps']} apps, {result['notebooks']} notebooks, "
        f"{result['seconds_per_notebook']:.2f} s per notebook, {result['seconds_fetch_and_analysis']:.1f} s fetching"
        f"{', ' + str(len(failed)) + ' FAILED' if failed else ''})",
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--users", type=int, default=2000, help="users in the simulated tenant (default 2000)"
    )
    parser.add_argument("--days", type=int, default=7, help="days of history (default 7)")
    parser.add_argument(
        "--workers", type=int, default=2, help="report workers (default 2, as provkit report)"
    )
    parser.add_argument("--skip-baseline", action="store_true", help="time the report only")
    args = parser.parse_args()
    os.environ["PROVKIT_DEMO_USERS"] = str(args.users)
    os.environ["PROVKIT_DEMO_DAYS"] = str(args.days)
    print(
        f"provkit report, demo tenant of {args.users} users and {args.days} days, all apps, notebooks 00-05; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="provkit-bench-report-") as tmp:
        results.append(
            _run(
                f"report: fetch once, {args.workers} workers, warm kernels",
                workers=args.workers,
                warm=True,
                out=Path(tmp) / "report",
            )
        )
        if not args.skip_baseline:
            results.append(
                _run(
                    "baseline: 1 worker, a new kernel per notebook (papermill)",
                    workers=1,
                    warm=False,
                    out=Path(tmp) / "baseline",
                )
            )
    if len(results) == 2:
        print(f"speed-up over the baseline: {results[1]['seconds'] / results[0]['seconds']:.1f}x")
    folder = ROOT / "bench" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(
        json.dumps({"users": args.users, "days": args.days, "runs": results}, indent=2)
    )
    return 1 if any(r["failed"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
