"""Benchmark: the group-membership reads of a second fetch, with Graph's delta query against the ways before it,
in the same run, at 100,000 users.

The simulated Graph server runs in its own process (``provkit emulator --users 100000``, throttle ON as on Graph).
Every app with a provisioning job and assigned groups is fetched once (the last two hours of logs) into a store;
the store is copied three times, the simulated clock moves ``--advance`` minutes (membership changes by the
hour: joiners and leavers), and each app's second fetch (``provkit.data.fetch.fetch_app``, the command's
function, its defaults untouched) runs into each copy:

- ``full re-read`` (the baseline: what every fetch did before the 12-h reuse, and what a fetch does once the
  stored membership is 12 h old): the stored read times are moved 13 h back and the delta query is not asked;
- ``12-h reuse`` (the way before this change, within 12 h): nothing read again, the facts as old as the last
  read (a changed group stays stale);
- ``delta`` (this change): the stored deltaLinks are followed; a group they name is updated from its member
  changes (no nested groups) or read again (nested groups), the others are kept.

For each: the unthrottled calls (everything but /auditLogs, as the server logged them) and the member reads
among them, the groups read again and those updated from the delta, the time from the fetch's start to the first
log page's answer, to the last unthrottled side read's answer, to the directory-audits call (throttled: it waits
for the side reads and for a free slot) and to the fetch's end; and whether its stored group facts equal a full read's. The ways run 12 s apart so that none starts inside another's throttle window.

    python bench/bench_group_delta.py                   # 100,000 users (about 5 minutes)
    python bench/bench_group_delta.py --users 20000 --apps Zendesk,Asana
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench_fetch import NOW, Emulator

from provkit.data.fetch import fetch_app
from provkit.data.graph import GraphClient
from provkit.data.sources.graph import provisioning_apps
from provkit.data.store import Store
from provkit.errors import GraphError

WAYS = ("full re-read", "12-h reuse", "delta")


def server_log(emulator: Emulator) -> list[dict[str, Any]]:
    answer = emulator.session().get(f"{emulator.base_url}/_sim/requests", timeout=120)
    answer.raise_for_status()
    return list(answer.json()["value"])


def refuse_delta(client: GraphClient) -> None:
    """The client as it was before the delta query: asking for a deltaLink fails before any call is sent."""

    def refused(group_ids: Sequence[str]) -> str:
        raise GraphError("delta query not used (baseline)", status=501, code="NotImplemented")

    client.group_delta_link = refused  # type: ignore[method-assign]


def prepare(way: str, store_root: Path, tenant_id: str, sp_id: str) -> None:
    """Set the copied store up for ``way``: read times 13 h back (full re-read) or now (12-h reuse)."""
    app_store = Store(store_root).app(tenant_id, sp_id)
    stored = app_store.meta("groups")
    groups: dict[str, Any] = stored if isinstance(stored, dict) else {}
    if way == "full re-read":
        when = (datetime.now().astimezone() - timedelta(hours=13)).isoformat()
    else:
        when = datetime.now().astimezone().isoformat()
    if way != "delta":
        app_store.write_meta("groups_read_at", dict.fromkeys(groups, when))
        app_store.write_meta("groups_delta", None)  # as a store from before the delta query


def second_fetch(
    emulator: Emulator, way: str, root: Path, app: dict[str, Any], start: datetime, end: datetime
) -> dict[str, Any]:
    client = emulator.client()
    if way != "delta":
        refuse_delta(client)
    tenant_id = emulator.settings.tenant_id or ""
    mark = len(server_log(emulator))
    first_page: list[float] = []
    began_wall = time.time()
    began = time.monotonic()
    summary, app_store = fetch_app(
        client,
        Store(root),
        app["display_name"],
        start=start,
        end=end,
        tenant_id=tenant_id,
        on_page=lambda n, s: first_page.append(time.monotonic() - began) if not first_page else None,
    )
    seconds = time.monotonic() - began
    calls = server_log(emulator)[mark:]
    side = [c for c in calls if not urlsplit(c["path"]).path.startswith("/v1.0/auditLogs")]
    audits = [c for c in calls if "/auditLogs/directoryAudits" in c["path"]]
    members = [c for c in side if urlsplit(c["path"]).path.endswith(("/members", "/transitiveMembers"))]
    delta = [c for c in side if "/groups/delta" in c["path"]]
    return {
        "unthrottled": len(side),
        "members": len(members),
        "delta": len(delta),
        "groups_read": summary.groups_read,
        "patched": summary.groups_patched,
        "groups": summary.groups_assigned,
        "first_page": first_page[0] if first_page else float("nan"),
        # the last unthrottled call's answer (the directory audits, throttled, wait for a free slot besides)
        "side_done": max((c["answered"] or c["time"]) for c in side) - began_wall if side else float("nan"),
        "audits": (audits[0]["time"] - began_wall) if audits else float("nan"),
        "seconds": seconds,
        "facts": app_store.meta("groups"),
        "line": summary.line(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000, help="users in the tenant (default 100000)")
    parser.add_argument("--advance", type=float, default=120, help="simulated minutes between the fetches")
    parser.add_argument("--apps", help="comma-separated app names (default: every app with assigned groups)")
    args = parser.parse_args(argv)
    print(
        f"Simulated Graph in its own process, throttle ON: {args.users:,} users, 1 day; second fetch "
        f"{args.advance:g} simulated minutes after the first.",
        flush=True,
    )
    with Emulator(["--users", str(args.users), "--days", "1", "--now", NOW], timeout=600) as emulator:
        client = emulator.client()
        tenant_id = emulator.settings.tenant_id or ""
        wanted = {a.strip().lower() for a in args.apps.split(",")} if args.apps else None
        apps = []
        for row in provisioning_apps(client):
            if wanted is not None and row["display_name"].lower() not in wanted:
                continue
            assigned = client.app_role_assignments(row["service_principal_id"])
            if any(a.get("principalType") == "Group" for a in assigned):
                apps.append(row)
        end = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
        start = end - timedelta(hours=2)
        base = Path(tempfile.mkdtemp(prefix="provkit-bench-groups-"))
        try:
            first = base / "first"
            for app in apps:
                fetch_app(
                    client, Store(first), app["display_name"], start=start, end=end, tenant_id=tenant_id
                )
            roots = {}
            for way in WAYS:
                roots[way] = base / way.replace(" ", "-")
                shutil.copytree(first, roots[way])
                for app in apps:
                    prepare(way, roots[way], tenant_id, app["service_principal_id"])
            now = datetime.fromisoformat(emulator.advance(args.advance).replace("Z", "+00:00"))
            print(f"{len(apps)} apps with assigned groups; clock moved to {now.isoformat()}", flush=True)
            for app in (
                apps
            ):  # the server rebuilds each app's history at its new time once: not in any way's figures
                client.list_jobs(app["service_principal_id"])
            results: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
            for way in WAYS:
                time.sleep(12)  # out of the previous way's throttle window
                for app in apps:
                    results[way].append(second_fetch(emulator, way, roots[way], app, start, now))
            print(
                f"\n{'way':<14} {'groups read':>12} {'updated':>8} {'unthrottled':>12} {'members':>8} {'delta':>6} "
                f"{'1st page s':>11} {'side reads s':>13} {'audits s':>9} {'fetch s':>8}  facts = full re-read"
            )
            reference = [r["facts"] for r in results["full re-read"]]
            for way in WAYS:
                rows = results[way]
                same = sum(r["facts"] == ref for r, ref in zip(rows, reference, strict=True))
                print(
                    f"{way:<14} {sum(r['groups_read'] for r in rows):>5} of {sum(r['groups'] for r in rows):<5}"
                    f" {sum(r['patched'] for r in rows):>8} {sum(r['unthrottled'] for r in rows):>12} {sum(r['members'] for r in rows):>8}"
                    f" {sum(r['delta'] for r in rows):>6}"
                    f" {statistics.median(r['first_page'] for r in rows):>11.2f}"
                    f" {statistics.median(r['side_done'] for r in rows):>13.2f}"
                    f" {statistics.median(r['audits'] for r in rows):>9.2f}"
                    f" {statistics.median(r['seconds'] for r in rows):>8.2f}  {same} of {len(rows)} apps"
                )
            print("(seconds are medians over the apps, from the fetch's start)")
            print(
                "\nper app (unthrottled calls: full re-read / 12-h reuse / delta; what delta read and updated):"
            )
            for k, app in enumerate(apps):
                figures = " / ".join(str(results[way][k]["unthrottled"]) for way in WAYS)
                delta = results["delta"][k]
                print(
                    f"  {app['display_name']:<28} {figures:<16} {delta['groups_read']} of {delta['groups']} read, "
                    f"{delta['patched']} updated"
                )
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
