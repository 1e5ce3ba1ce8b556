"""``provkit demo``: start the simulated tenant in-process and show what it serves, through real sign-in and Graph
calls (msal against the local authority, requests against the local Graph)."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from datetime import UTC, datetime

from provkit.sim.scenarios import SCENARIOS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated tenant (default 7)")
    parser.add_argument(
        "--users", type=int, default=6000, help="users in the simulated tenant (default 6000)"
    )
    parser.add_argument("--days", type=int, default=7, help="days of history (default 7)")
    parser.add_argument("--entries", type=int, default=3, help="log entries to show per app (default 3)")


def run(args: argparse.Namespace) -> int:
    # Deferred: every provkit command imports this module to build its parser; the server (TLS, tokens, the
    # tenant, Log Analytics) loads only when the tour runs.
    from provkit.sim.server import start_server
    from provkit.sim.tenant import Tenant

    now = datetime.now(UTC).replace(microsecond=0)
    print(f"Starting the simulated tenant ({args.users} users, {args.days} days, one app per scenario)...")
    tenant = Tenant(
        seed=args.seed, users_count=args.users, days=args.days, now=now, scenarios=tuple(SCENARIOS)
    )
    with start_server(tenant, port=0) as server:
        session, headers = _sign_in(server)
        graph = f"{server.base_url}/v1.0"

        def get(path: str, **params: str) -> dict:
            while True:
                response = session.get(graph + path, headers=headers, params=params, timeout=60)
                if response.status_code != 429:
                    break
                time.sleep(float(response.headers.get("Retry-After", "1")))  # Graph's 5-per-10-s throttle
            response.raise_for_status()
            return response.json()

        print(f"Signed in to {server.base_url} as client {server.client_id} (client secret, via msal).\n")
        sps = get("/servicePrincipals")["value"]
        print(f"{'app':<22} {'status':<11} {'schedule':<9} {'last cycle':<17} {'ended (UTC)':<20} quarantine")
        rows = []
        for sp in sps:
            jobs = get(f"/servicePrincipals/{sp['id']}/synchronization/jobs")["value"]
            for job in jobs:
                status = job["status"]
                last = status.get("lastExecution") or {}
                quarantine = (status.get("quarantine") or {}).get("reason") or ""
                ended = (last.get("timeEnded") or "")[:19].replace("T", " ")
                print(
                    f"{sp['displayName']:<22} {status['code']:<11} {job['schedule']['state']:<9} "
                    f"{last.get('state') or '(none yet)':<17} {ended:<20} {quarantine}"
                )
                rows.append((sp, job))
        no_jobs = [sp["displayName"] for sp in sps if not any(sp is r[0] for r in rows)]
        if no_jobs:
            print(f"\nService principals without provisioning: {', '.join(no_jobs)}")
        for sp, _job in rows:
            page = get(
                "/auditLogs/provisioning",
                **{"$filter": f"servicePrincipal/id eq '{sp['id']}'", "$top": str(max(args.entries, 1) * 20)},
            )
            entries = page["value"]
            counts = Counter(e["provisioningStatusInfo"]["status"] for e in entries)
            print(
                f"\n{sp['displayName']}: latest {len(entries)} log entries by status: "
                f"{', '.join(f'{k} {v}' for k, v in counts.most_common()) or 'none in the window'}"
            )
            for e in entries[: args.entries]:
                error = (e["provisioningStatusInfo"].get("errorInformation") or {}).get("errorCode") or ""
                skip = next(
                    (
                        s["details"].get("SkipReason")
                        for s in e["provisioningSteps"]
                        if s.get("details", {}).get("SkipReason")
                    ),
                    "",
                )
                print(
                    f"  {e['activityDateTime'][:19]}  {e['provisioningAction']:<7} "
                    f"{e['provisioningStatusInfo']['status']:<8} {e['sourceIdentity']['displayName']:<24} "
                    f"{error or skip}"
                )
        print(
            f"\n{len(server.graph.requests)} Graph requests served; "
            f"{server.graph.throttle.throttled} throttled (5 per 10 s on /auditLogs)."
        )
    return 0


def _sign_in(server):
    # Deferred with the server (see run): msal and requests are needed only once the tour signs in.
    import msal
    import requests

    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override verify
    session.verify = str(server.ca_path)
    app = msal.ConfidentialClientApplication(
        server.client_id,
        authority=f"{server.base_url}/{server.tenant.tenant_id}",
        client_credential=server.client_secret,
        instance_discovery=False,
        http_client=session,
    )
    result = app.acquire_token_for_client(scopes=[f"{server.base_url}/.default"])
    if "access_token" not in result:
        raise RuntimeError(f"sign-in to the simulated tenant failed: {result.get('error')}")
    return session, {"Authorization": f"Bearer {result['access_token']}"}
