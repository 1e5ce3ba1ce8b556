"""The HTTP status a provisioning log entry's reason text names, when it names one.

Entra's provisioning logs carry no HTTP status field; a failed export's reason quotes the target's answer in
prose: "... returned an error response with the HTTP status code 409", "HTTP 401", "401 Unauthorized", the .NET
texts "StatusCode: BadRequest" and "The remote server returned an error: (401) Unauthorized.". The checks judge
an unknown error code by that status (a 401 rejects the credentials), and the log summary groups failures by
it (:mod:`provkit.data.logsummary`). The Log Analytics source reads the same status in KQL from the same
patterns (:data:`PATTERNS`; provkit.data.sources.loganalytics_failures), so this module is their one source.
"""

from __future__ import annotations

import re

__all__ = ["PATTERNS", "STATUS_NAMES", "http_status"]

# The patterns, tried in this order; the first that matches anywhere in the text gives the status (its group
# 1). The last one may name the status by word (STATUS_NAMES). Written in the syntax common to Python's re and
# RE2 (the regex dialect of KQL), case-insensitive unless said: the KQL extraction uses these strings as they
# are.
# inference: beyond the documented example ("... with the HTTP status code 409", reference 1.8), the wordings
# are those of reasons seen in exported logs and community reports.
PATTERNS: tuple[tuple[str, bool], ...] = (
    # "... HTTP status code 409", "HTTP 401", "status code (404)"
    (r"\b(?:HTTP(?: status code)?|status code)\s*\(?([1-5]\d\d)\b", True),
    # "401 Unauthorized", "404 (Not Found)"
    (
        r"\b([45]\d\d)\s*\(?(?:Unauthorized|Forbidden|Not ?Found|Conflict|Too Many Requests|Bad Request)\b",
        True,
    ),
    # "(401) Unauthorized" (the .NET WebException text); case-sensitive: a capitalised word follows
    (r"\(([1-5]\d\d)\)\s*[A-Z][a-z]", False),
    # "StatusCode: BadRequest" / "StatusCode: 400" (the .NET HttpResponseMessage text in SCIM reasons)
    (r"\bStatus\s*Code\s*[:=]\s*\(?([A-Za-z]+|[1-5]\d\d)\b", True),
)
STATUS_NAMES = {
    "badrequest": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "notfound": 404,
    "methodnotallowed": 405,
    "conflict": 409,
    "preconditionfailed": 412,
    "unprocessableentity": 422,
    "toomanyrequests": 429,
    "internalservererror": 500,
    "notimplemented": 501,
    "badgateway": 502,
    "serviceunavailable": 503,
    "gatewaytimeout": 504,
}
# ASCII: \b, \d and \s as RE2 reads them (RE2's are ASCII-only), so both read a text alike.
_COMPILED = tuple(re.compile(p, re.ASCII | (re.IGNORECASE if folded else 0)) for p, folded in PATTERNS)


def http_status(text: str | None) -> int | None:
    """The HTTP status code a reason text mentions ("... HTTP status code 409 ...", "HTTP 401",
    "StatusCode: BadRequest", "(401) Unauthorized"), or None."""
    if not text:
        return None
    for pattern in _COMPILED:
        match = pattern.search(text)
        if match:
            word = match.group(1)
            return int(word) if word.isdigit() else STATUS_NAMES.get(word.lower())
    return None
