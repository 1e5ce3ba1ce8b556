"""Benchmark: provkit.data.tables.events_from_records against pandas.json_normalize.

Generates realistic Graph provisioning log entries (a deterministic mix of create, update, skip, failure and
redundant-export entries with 3-6 steps each, modified properties and seven-digit timestamps) as JSON pages of
1,000 entries, the way Graph returns them, and normalises the same pages three ways:

- provkit, streamed: one ``events_from_records`` call per batch of ``--batch-pages`` pages, fed by a generator
  that parses each page as it is needed (how a source should call it), then ``concat_tables``.
- provkit, per page: ``events_from_records(page)`` for every parsed page, then ``concat_tables``.
- arrow-nested, per page (reference only): ``pyarrow.array(page)``, the C++ conversion of the nested
  dicts to a single struct column, with no flattening or typing: roughly the cost of reading every object.
- json_normalize, per page: the natural pandas way, ``json_normalize(page)`` for events plus
  ``json_normalize(page, record_path=...)`` for steps and for modified properties, then ``pd.concat``.
  It does less work than provkit (no type conversion, no details parsing, no validation), so the ratio is
  conservative. It (and arrow-nested) runs on at most ``--baseline-entries`` entries and its time is
  scaled linearly to the full count (the output says so).

Timed: the normalisation calls and the final concat. Not timed: generating the pages, and ``json.loads`` of
each page (measured separately, shown in its own column; it is the same work for every method).
Each method runs in its own subprocess so that its peak memory (``resource.getrusage`` ru_maxrss: peak
resident set size of that process, which includes one batch of input pages held as JSON text) is its own.

    python bench/bench_normalize.py --entries 1000000
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

PAGE_SIZE = 1_000
BASE_TICKS = 638_450_000_000_000_000  # 2024-03-01 in .NET ticks (100 ns since 0001-01-01)
EPOCH_TICKS = 621_355_968_000_000_000  # 1970-01-01 in .NET ticks
DEPARTMENTS = ("Sales", "Marketing", "Engineering", "Finance", "Support", None)
APPS = ("Contoso SCIM", "Fabrikam HR", "Salesforce")


def _graph_time(ticks: int) -> str:
    seconds, fraction = divmod(ticks - EPOCH_TICKS, 10_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:07d}Z"


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _step(name: str, kind: str, status: str, description: str, details: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "provisioningStepType": kind,
        "status": status,
        "description": description,
        "details": details,
    }


def _scoping(rng: random.Random, department: str | None, in_scope: bool, assigned: bool) -> dict[str, Any]:
    clause = {
        "sourceOperandName": "department",
        "operatorName": "EQUALS",
        "targetOperand": ["Sales"],
        "sourceValue": department,
        "result": in_scope,
    }
    evaluation = {"scopingFilterGroups": [{"name": "Sales only", "result": in_scope, "clauses": [clause]}]}
    details = {
        "IsActive": "True",
        "Assigned to the application": str(assigned),
        "IsEffectivelyEntitledForProvisioning": str(assigned),
        "IsInProvisioningScope": str(in_scope),
        "ScopeEvaluationResult": json.dumps(evaluation),
    }
    status = "success" if in_scope and assigned else "skipped"
    return _step("EntrySynchronizationScoping", "scoping", status, "Determine if User is in scope", details)


def make_entry(
    rng: random.Random, ticks: int, cycle_id: str, job_id: str, app: str, sp_id: str
) -> dict[str, Any]:
    """One provisioningObjectSummary as Graph returns it."""
    n = rng.randrange(100_000)
    upn = f"user{n}@contoso.com"
    name = f"User {n}"
    department = rng.choice(DEPARTMENTS)
    kind = rng.choices(("create", "update", "skip", "failure", "redundant"), weights=(15, 45, 20, 8, 12))[0]
    source_id = _uid(rng)
    target_id = "" if kind in ("create", "skip") else _uid(rng)
    steps = [
        _step("EntryImport", "import", "success", f"Retrieved User '{upn}' from Azure Active Directory", {}),
    ]
    properties: list[dict[str, Any]] = []
    action, status, error = "update", "success", None
    if kind == "skip":
        in_scope = department == "Sales"
        steps.append(_scoping(rng, department, in_scope, assigned=in_scope))
        reason = "NotEffectivelyEntitled" if in_scope else "ScopingFilterEvaluatedFalse"
        steps.append(
            _step(
                "EntrySynchronizationSkip",
                "export",
                "skipped",
                f"User '{upn}' will be skipped",
                {"SkipReason": reason, "ReportableIdentifier": upn},
            )
        )
        action, status = "other", "skipped"
    elif kind == "redundant":
        steps.append(_scoping(rng, "Sales", True, True))
        steps.append(
            _step("EntryImportObjectFound", "matching", "success", f"Found User '{upn}' in {app}", {})
        )
        steps.append(
            _step(
                "EntrySynchronizationSkip",
                "export",
                "skipped",
                "The state of the user in both systems already match",
                {"SkipReason": "RedundantExport", "ReportableIdentifier": upn},
            )
        )
        action, status = "other", "skipped"
    else:
        steps.append(_scoping(rng, "Sales", True, True))
        if kind == "create":
            steps.append(
                _step("EntrySynchronizationAdd", "matching", "success", f"User '{upn}' will be created", {})
            )
            action = "create"
            count = rng.randint(4, 8)
        else:
            steps.append(
                _step("EntryImportObjectFound", "matching", "success", f"Found User '{upn}' in {app}", {})
            )
            count = rng.randint(1, 3)
        if rng.random() < 0.3:
            steps.append(
                _step("EntryReferenceResolve", "referenceResolution", "success", "Resolved manager", {})
            )
        failed = kind == "failure"
        export = "EntryExportAdd" if action == "create" else "EntryExportUpdate"
        steps.append(
            _step(
                export,
                "export",
                "failure" if failed else "success",
                f"{'Failed to update' if failed else 'Updated'} User '{upn}' in {app}",
                {"ReportableIdentifier": upn},
            )
        )
        for i in range(count):
            attribute = (
                "displayName",
                "mail",
                "department",
                "jobTitle",
                "givenName",
                "surname",
                "active",
                "manager",
            )[i]
            old = None if action == "create" else f"old {attribute} {n}"
            properties.append({"displayName": attribute, "oldValue": old, "newValue": f"{attribute} {n}"})
        if failed:
            status = "failure"
            error = {
                "errorCode": "SystemForCrossDomainIdentityManagementServiceIncompatible",
                "reason": "The SCIM endpoint returned HTTP 409: a user with the same userName already exists.",
                "additionalDetails": None,
                "errorCategory": "nonServiceFailure",
                "recommendedAction": None,
            }
    return {
        "id": _uid(rng),
        "activityDateTime": _graph_time(ticks),
        "tenantId": "7928d5b5-7442-4a97-8e2d-66f9a9972ec0",
        "jobId": job_id,
        "cycleId": cycle_id,
        "changeId": _uid(rng),
        "provisioningAction": action,
        "durationInMilliseconds": rng.randint(20, 4000),
        "sourceSystem": {
            "id": "0404601d-a9c0-4ec7-bbcd-02660120d8c9",
            "displayName": "Azure Active Directory",
            "details": {},
        },
        "targetSystem": {"id": sp_id, "displayName": app, "details": {"ServicePrincipalId": sp_id}},
        "initiatedBy": {"id": "", "displayName": "Azure AD Provisioning Service", "initiatorType": "system"},
        "servicePrincipal": {"id": sp_id, "displayName": app},
        "sourceIdentity": {"id": source_id, "displayName": name, "identityType": "User", "details": {}},
        "targetIdentity": {
            "id": target_id,
            "displayName": name if target_id else "",
            "identityType": "urn:ietf:params:scim:schemas:core:2.0:User",
            "details": {},
        },
        "provisioningStatusInfo": {"status": status, "errorInformation": error},
        "provisioningSteps": steps,
        "modifiedProperties": properties,
    }


def make_page(page: int, size: int = PAGE_SIZE) -> list[dict[str, Any]]:
    """Page ``page`` of the log: the same input every time for the same page number."""
    rng = random.Random(page)
    app = APPS[page % len(APPS)]
    sp_id = str(uuid.UUID(int=page % len(APPS) + 1))
    job_id = f"scim.{uuid.UUID(int=page % len(APPS) + 7).hex}"
    cycle_id = str(uuid.UUID(int=page // 40 + 1000))
    ticks = BASE_TICKS + page * 600 * 10_000_000
    return [make_entry(rng, ticks + i * 3_712_345, cycle_id, job_id, app, sp_id) for i in range(size)]


def _batches(entries: int, batch_pages: int) -> Iterator[list[bytes]]:
    """The input, a batch of pages at a time, each page as the JSON text Graph would send."""
    pages = -(-entries // PAGE_SIZE)
    for first in range(0, pages, batch_pages):
        last = min(pages, first + batch_pages)
        yield [
            json.dumps(make_page(p, min(PAGE_SIZE, entries - p * PAGE_SIZE))).encode()
            for p in range(first, last)
        ]


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class _Clock:
    """Wall-clock and CPU seconds, accumulated over timed sections."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def add(self, since: tuple[float, float]) -> None:
        wall, cpu = self.now()
        self.wall += wall - since[0]
        self.cpu += cpu - since[1]


def run_worker(method: str, entries: int, batch_pages: int) -> dict[str, Any]:
    """Normalise ``entries`` entries with one method; returns the seconds spent and the peak memory."""
    import pandas as pd
    import pyarrow as pa

    from provkit.data.tables import concat_tables, events_from_records

    clock, loads = _Clock(), _Clock()
    parts: list[Any] = []
    rss_input = None

    def parsed(batch: list[bytes]) -> Iterator[list[dict[str, Any]]]:
        for text in batch:
            start = loads.now()
            page = json.loads(text)
            loads.add(start)
            yield page

    for batch in _batches(entries, batch_pages):
        if rss_input is None:
            rss_input = _maxrss_mib()
        if method == "provkit-stream":
            before = (loads.wall, loads.cpu)
            start = clock.now()
            parts.append(events_from_records(itertools.chain.from_iterable(parsed(batch))))
            clock.add(start)
            clock.wall -= loads.wall - before[0]  # the pages were parsed inside the call: not ours
            clock.cpu -= loads.cpu - before[1]
            continue
        for page in parsed(batch):
            start = clock.now()
            if method == "provkit-page":
                parts.append(events_from_records(page))
            elif method == "arrow-nested":
                parts.append(pa.array(page))  # no flattening at all: a floor, not a contender
            else:
                events = pd.json_normalize(page)
                steps = pd.json_normalize(
                    page, record_path="provisioningSteps", meta=["id", "changeId"], meta_prefix="event."
                )
                props = pd.json_normalize(
                    page, record_path="modifiedProperties", meta=["id", "changeId"], meta_prefix="event."
                )
                parts.append((events, steps, props))
            clock.add(start)
    start = clock.now()
    if method.startswith("provkit"):
        tables = concat_tables(parts)
        rows: tuple[int, ...] = (len(tables.events), len(tables.steps), len(tables.properties))
    elif method == "arrow-nested":
        rows = (sum(len(part) for part in parts), 0, 0)  # pages infer different struct types
    else:
        frames = [pd.concat([p[i] for p in parts], ignore_index=True) for i in range(3)]
        rows = tuple(len(f) for f in frames)
    clock.add(start)
    return {
        "method": method,
        "entries": entries,
        "wall": clock.wall,
        "cpu": clock.cpu,
        "loads_cpu": loads.cpu,
        "rows": rows,
        "rss_input_mib": rss_input,
        "rss_peak_mib": _maxrss_mib(),
    }


def _spawn(method: str, entries: int, batch_pages: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--entries",
        str(entries),
        "--batch-pages",
        str(batch_pages),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {method} run failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--entries", type=int, default=1_000_000, help="log entries to normalise (default 1,000,000)"
    )
    parser.add_argument(
        "--baseline-entries", type=int, default=200_000, help="cap for the json_normalize run (scaled up)"
    )
    parser.add_argument(
        "--batch-pages", type=int, default=50, help="pages generated and normalised at a time"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.entries, args.batch_pages)))
        return 0

    baseline_entries = min(args.entries, args.baseline_entries)
    results = [
        _spawn("provkit-stream", args.entries, args.batch_pages),
        _spawn("provkit-page", args.entries, args.batch_pages),
        _spawn("arrow-nested", baseline_entries, args.batch_pages),
        _spawn("json_normalize", baseline_entries, args.batch_pages),
    ]
    base = results[-1]
    scale = args.entries / base["entries"]

    print(
        f"Normalising {args.entries:,} provisioning log entries in JSON pages of {PAGE_SIZE:,} "
        f"({args.batch_pages} pages per batch)"
    )
    header = (
        f"{'method':<16}{'entries run':>12}{'CPU s':>8}{'wall s':>8}{'entries/CPU s':>15}"
        f"{'speed-up CPU':>14}{'speed-up wall':>15}{'json.loads CPU s':>18}{'peak RSS MiB':>14}"
        f"{'input RSS MiB':>15}  rows (events, steps, properties)"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        factor = scale if r["entries"] != args.entries else 1
        cpu, wall = r["cpu"] * factor, r["wall"] * factor
        print(
            f"{r['method']:<16}{r['entries']:>12,}{cpu:>8.1f}{wall:>8.1f}{args.entries / cpu:>15,.0f}"
            f"{base['cpu'] * scale / cpu:>13.1f}x{base['wall'] * scale / wall:>14.1f}x"
            f"{r['loads_cpu'] * factor:>18.1f}{r['rss_peak_mib']:>14,.0f}{r['rss_input_mib']:>15,.0f}  {tuple(r['rows'])}"
        )
    if scale != 1:
        print(
            f"arrow-nested and json_normalize ran on {base['entries']:,} entries; their seconds are scaled "
            f"linearly (x{scale:g}) to {args.entries:,}."
        )
    print(
        "arrow-nested: pyarrow.array(page), C++ conversion of the nested dicts to one struct column with no"
    )
    print("flattening or typing; a reference for the cost of just reading every object, not a contender.")
    print(
        "Seconds: inside the normalisation calls plus the final concat; CPU s is process time, wall s elapsed"
    )
    print(
        "time (CPU time is steadier on a shared machine). Not counted: generating the input, and json.loads of"
    )
    print(
        "each page (its own column, scaled like the row). Speed-up: json_normalize seconds / the method's seconds."
    )
    print("Peak RSS: resource.getrusage ru_maxrss of each method's own process, including one batch of input")
    print("pages; input RSS: the same measure after the first batch was generated, before any normalisation.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
