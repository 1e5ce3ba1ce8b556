"""``provkit import``: downloads and exports into the store, filed per tenant and app, with exact accounting."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provkit.data.sources.files import Reject, read_files
from provkit.data.store import Store
from provkit.data.tables import events_from_records

UNKNOWN_TENANT = "unknown-tenant"


@dataclass
class ImportReport:
    read: int = 0
    kept: int = 0
    rejected: int = 0
    new: int = 0
    duplicates: int = 0
    formats: dict[str, str] = field(default_factory=dict)
    apps: dict[str, int] = field(default_factory=dict)  # "name (sp id)" -> entries
    rejects: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    store: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def text(self) -> str:
        lines = []
        for file, fmt in self.formats.items():
            lines.append(f"{file}: {fmt}")
        for file, why in self.unreadable.items():
            lines.append(f"{file}: NOT READ: {why}")
        lines.extend(f"warning: {w}" for w in self.warnings[:20])
        for r in self.rejects[:30]:
            lines.append(f"rejected: {r}")
        if len(self.rejects) > 30:
            lines.append(f"... and {len(self.rejects) - 30} more rejected records")
        for app, n in self.apps.items():
            lines.append(f"  {app}: {n} entries")
        lines.append(
            f"Records read {self.read}, kept {self.kept}, rejected {self.rejected}; "
            f"{self.new} new in the store, {self.duplicates} already there. Store: {self.store}"
        )
        return "\n".join(lines)


def _slug(text: str) -> str:
    """The folder an ``--app NAME`` import is filed under. Not provkit.formatting.slug: this one keeps "." and "_"
    and stops at 100 characters (the store's folder-name rule), and stores already filed this way must keep
    receiving the same app's records."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:100] or "imported"


def import_files(paths: list[Path], *, store: Path | None = None, app: str | None = None) -> ImportReport:
    """Read every file, then file each record under its tenant and service principal in the store.

    Records that name no service principal are filed under ``app`` when given, else reported as rejected.
    """
    load = read_files(paths, on_unreadable="report")
    st = Store(store)
    report = ImportReport(
        read=load.read,
        formats=dict(load.formats),
        warnings=list(load.warnings),
        unreadable=dict(load.unreadable),
        store=str(st.root),
    )
    report.rejects = [str(r) for r in load.rejects] + [str(r) for r in load.detail_rejects]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    origins: dict[tuple[str, str], list[Reject]] = defaultdict(list)
    names: dict[tuple[str, str], str] = {}
    orphans: list[Reject] = []
    for record, origin in zip(load.records, load.origins, strict=True):
        sp = record.get("servicePrincipal") or {}
        sp_id = sp.get("id") if isinstance(sp, dict) else None
        name = (sp.get("displayName") or sp.get("name")) if isinstance(sp, dict) else None
        if not sp_id:
            target = record.get("targetSystem") or {}
            details = target.get("details") if isinstance(target, dict) else None
            if isinstance(details, dict):
                sp_id = details.get("ServicePrincipalId")
                name = name or details.get("ServicePrincipalDisplayName")
        if not sp_id:
            if not app:
                orphans.append(origin)
                continue
            sp_id, name = _slug(app), app
        tenant = record.get("tenantId") or UNKNOWN_TENANT
        groups[(str(tenant).lower(), str(sp_id).lower())].append(record)
        origins[(str(tenant).lower(), str(sp_id).lower())].append(origin)
        names.setdefault((str(tenant).lower(), str(sp_id).lower()), name or app or str(sp_id))
    if orphans:
        files = ", ".join(dict.fromkeys(o.file for o in orphans))
        report.rejects.append(
            f"{len(orphans)} record(s) in {files} name no service principal (no servicePrincipal.id nor "
            "targetSystem details): pass --app NAME to file them under an app"
        )
    report.rejected = len(load.rejects) + len(orphans)
    for (tenant, sp_id), records in groups.items():
        tables = events_from_records(records)
        for index, reason in tables.rejects:
            where = origins[(tenant, sp_id)][index]  # the file and line the record was read from
            report.rejects.append(str(Reject(where.file, where.line, where.record, reason)))
        report.rejected += len(tables.rejects)
        app_store = st.app(tenant, sp_id)
        app_store.set_app({"display_name": names[(tenant, sp_id)], "source": "import"})
        result = app_store.write_events(tables, source="import")
        report.kept += len(tables.events)
        report.new += result.new
        report.duplicates += result.duplicates
        report.apps[f"{names[(tenant, sp_id)]} ({sp_id})"] = len(tables.events)
    return report
