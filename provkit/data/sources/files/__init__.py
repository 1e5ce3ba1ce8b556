"""Provisioning logs saved to files, read into Graph-shaped provisioningObjectSummary records.

Formats are detected from the content (the file name only breaks ties); any of them may be gzip-compressed and
encoded as UTF-8 (with or without BOM) or UTF-16; other bytes are read as Windows-1252 with a warning.

============================  ==========================================================================
format name                   what the file is
============================  ==========================================================================
admin-center-json             the admin center's JSON download: an array of events, v1.0 or older names
admin-center-csv              the admin center's CSV download, main file: one row per event
admin-center-csv-steps        its ``_ProvisioningSteps`` file: one row per step, joined on change id
admin-center-csv-properties   its ``_ModifiedProperties`` file: one row per property, joined on change id
log-analytics-csv             an ``AADProvisioningLogs`` query exported as CSV
log-analytics-json            the same as JSON: an array of rows, or the query API's ``{"tables": [...]}``
graph-pages                   saved ``/auditLogs/provisioning`` responses (``{"value": [...]}``), or JSONL
                              with one page or one entry per line
============================  ==========================================================================

Every record comes out with v1.0 names (``provisioningAction``, ``provisioningStatusInfo.errorInformation``,
step ``details`` as a dict); values keep their original text (enum case is left to the tables layer) except
``activityDateTime``, which becomes ISO-8601 UTC. Unknown fields and columns are kept under their own name.
A record that cannot be read becomes a :class:`Reject` naming file and line; a file that cannot be read at all
raises :class:`~provkit.errors.InputError`. ``FileLoad.read == FileLoad.kept + len(FileLoad.rejects)``.

The admin center's CSV headers are not documented, so each field accepts the spellings in
:data:`ADMIN_CSV_COLUMNS`, :data:`ADMIN_CSV_STEP_COLUMNS` and :data:`ADMIN_CSV_PROPERTY_COLUMNS`; headers are
compared ignoring case, spaces and punctuation, and the dotted v1.0 path itself (``provisioningStatusInfo.status``,
as ``pandas.json_normalize`` writes it) is accepted too.

The modules of this package: :mod:`~provkit.data.sources.files.formats` (format names, header spellings,
results), :mod:`~provkit.data.sources.files.sniff` (decoding and format detection),
:mod:`~provkit.data.sources.files.records` (one record to v1.0 shape), :mod:`~provkit.data.sources.files.walk`
(JSON and CSV read record by record) and :mod:`~provkit.data.sources.files.read` (the CSV joins and
:func:`read_files`). Import the public names from here.
"""

from provkit.data.sources.files.formats import (
    ADMIN_CSV_COLUMNS,
    ADMIN_CSV_PROPERTY_COLUMNS,
    ADMIN_CSV_STEP_COLUMNS,
    FORMATS,
    FileLoad,
    Reject,
)
from provkit.data.sources.files.formats import _Bad as _Bad  # used by the Log Analytics source
from provkit.data.sources.files.formats import _Ctx as _Ctx
from provkit.data.sources.files.formats import _Notes as _Notes
from provkit.data.sources.files.read import read_files
from provkit.data.sources.files.records import _from_log_analytics as _from_log_analytics
from provkit.data.sources.files.records import parse_timestamp
from provkit.data.sources.files.sniff import detect_format

__all__ = [
    "ADMIN_CSV_COLUMNS",
    "ADMIN_CSV_PROPERTY_COLUMNS",
    "ADMIN_CSV_STEP_COLUMNS",
    "FORMATS",
    "FileLoad",
    "Reject",
    "detect_format",
    "parse_timestamp",
    "read_files",
]
