"""The documented provisioning error codes, skip reasons and quarantine reasons: meaning, fix and link.

:func:`lookup` resolves what the logs and the job status carry. Codes are often prefixed by the connector
(``ContosoEntryConflict``, ``SalesforceInvalidCredentials``, ``ZendeskEntryConflict``,
``SystemForCrossDomainIdentityManagementUnauthorized``); a known prefix is stripped, or the longest catalog
code the code ends with (at a word boundary) is used. An unknown code is reported as unknown, quoting the
reason text the service gave.

``retried`` is True when the guide says the service retries the failure by itself and no action is needed
unless it persists ("None; retried in 40 minutes"). Other failures are retried too (as escrows), but keep
failing until someone fixes the cause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from provkit.analysis.checks.finding import LINKS
from provkit.data.httpstatus import http_status  # moved to the data layer: the log summary reads it too

__all__ = ["CATALOG", "CONNECTOR_PREFIXES", "MESSAGES", "CatalogEntry", "KINDS", "http_status", "lookup"]

KINDS = (
    "credentials",  # the target refused the admin credentials or could not be reached to validate them
    "scim",  # the target's SCIM endpoint is not compatible with the Entra SCIM client
    "request",  # the target refused the request's shape or a value in it (HTTP 400), not the credentials
    "transient",  # target or service hiccup; retried automatically
    "data",  # a value on the object (missing, conflicting, duplicate, invalid)
    "mapping",  # the attribute mappings or matching attributes
    "target",  # the target app's configuration, licences or rights
    "skip",  # a skip reason: the object was not exported
    "quarantine",  # a quarantine reason on the job
    "cross-tenant",  # cross-tenant synchronization
    "unknown",
)


@dataclass(frozen=True)
class CatalogEntry:
    """What a code means and what to do about it.

    ``code`` is the code as asked for; ``base`` the catalog code it resolved to (None when unknown);
    ``reason`` the service's reason text when one was given with the look-up.
    """

    code: str
    base: str | None
    meaning: str
    fix: str
    retried: bool
    link: str
    kind: str
    known: bool = True
    reason: str | None = None

    @property
    def label(self) -> str:
        """``code`` with its base in brackets when they differ, e.g. ``ZendeskEntryConflict (EntryConflict)``."""
        if self.base and self.base.lower() != self.code.lower():
            return f"{self.code} ({self.base})"
        return self.code


_LOGS = LINKS["analyze-logs"]
_Q = LINKS["quarantine"]
_SCIM = LINKS["scim-compatibility"]
_NO_USERS = LINKS["no-users"]
_CONFIG = LINKS["config-problem"]

_RETRY_40 = "None: the service retries it in about 40 minutes. Look into it only if it keeps failing."

# (codes, meaning, fix, retried, link, kind). The first code of a row is its canonical name.
_ROWS: list[tuple[tuple[str, ...], str, str, bool, str, str]] = [
    # --- the analyze-logs error table (reference 4.2) --------------------------------------------------------
    (
        ("EntryConflict", "Conflict"),
        "Conflicting attribute values: the target already holds an object with the same unique value "
        "(often HTTP 409 from the target).",
        "Fix the conflicting values in Entra ID or in the app; if the existing account should be matched and "
        "taken over, fix the matching attributes instead.",
        False,
        _LOGS,
        "data",
    ),
    (
        ("TooManyRequests",),
        "The target app is overloaded and rejected the request (HTTP 429).",
        "None: the service retries automatically and Microsoft is notified.",
        True,
        _LOGS,
        "transient",
    ),
    (
        ("InternalServerError",),
        "The target app returned an unexpected error (HTTP 500).",
        _RETRY_40,
        True,
        _LOGS,
        "transient",
    ),
    (
        ("Unauthorized", "InsufficientRights", "MethodNotAllowed", "NotPermitted"),
        "The target refused the operation: the provisioning account is not authorized for it (HTTP 401/403 or "
        "405).",
        "Follow the app's provisioning tutorial; check the admin account's rights in the app and re-enter or "
        "re-authorize the credentials on the Provisioning page, then Test Connection.",
        False,
        _LOGS,
        "credentials",
    ),
    (
        ("UnprocessableEntity",),
        "The target returned an unexpected response (HTTP 422): the app may be misconfigured or having service "
        "issues.",
        "Check the app's configuration and its provisioning tutorial.",
        False,
        _LOGS,
        "target",
    ),
    (
        ("WebExceptionProtocolError",),
        "An HTTP protocol error occurred while connecting to the target app.",
        _RETRY_40,
        True,
        _LOGS,
        "transient",
    ),
    (
        ("InvalidAnchor",),
        "An object the service created or matched earlier no longer exists in the target.",
        "Make sure the object exists in the target; to force re-matching, restart the job through Graph "
        "(restart runs an initial cycle and clears the service's cache).",
        False,
        _LOGS,
        "data",
    ),
    (
        ("NotImplemented",),
        "The target returned an unexpected response (HTTP 501).",
        "Check the app's configuration and its provisioning tutorial.",
        False,
        _LOGS,
        "target",
    ),
    (
        ("MandatoryFieldsMissing", "MissingValues"),
        "Values the target requires to create the object are missing.",
        "Fill in the source attributes in Entra ID, or fix the attribute mappings (a default value) and the "
        "matching attributes.",
        False,
        _LOGS,
        "data",
    ),
    (
        ("SchemaAttributeNotFound",),
        "A mapped attribute does not exist in the target app's schema.",
        "Fix the attribute mappings: remove the mapping or map to an attribute the target has.",
        False,
        _LOGS,
        "mapping",
    ),
    (
        ("InternalError",),
        "An internal error occurred in the Entra provisioning service.",
        _RETRY_40,
        True,
        _LOGS,
        "transient",
    ),
    (
        ("InvalidDomain",),
        "An attribute value contains a domain the target does not accept.",
        "Update the user's domain (userPrincipalName or mail) in Entra ID, or permit the domain in the app.",
        False,
        _LOGS,
        "data",
    ),
    (
        ("Timeout",),
        "The target app took too long to respond.",
        _RETRY_40,
        True,
        _LOGS,
        "transient",
    ),
    (
        ("LicenseLimitExceeded",),
        "No licences are left in the target app to create the user.",
        "Buy more licences in the app, or review the assignments and mappings so fewer users are provisioned.",
        False,
        _LOGS,
        "target",
    ),
    (
        ("DuplicateTargetEntries",),
        "More than one object in the target matched the matching attributes.",
        "Remove the duplicate in the target app, or reconfigure the matching attributes.",
        False,
        _LOGS,
        "data",
    ),
    (
        ("DuplicateSourceEntries",),
        "More than one source object has the same matching value.",
        "Remove the duplicate in Entra ID, or reconfigure the matching attributes.",
        False,
        _LOGS,
        "data",
    ),
    (
        ("ImportSkipped",),
        "The object lacks its matching attribute, so scoping, matching and export could not be evaluated (this "
        "does not mean it is in scope).",
        "Populate the matching attribute on the source object, or change the matching attribute in the "
        "mappings.",
        False,
        _NO_USERS,
        "skip",
    ),
    (
        ("EntrySynchronizationSkipped",),
        "The object was found in the source but no action was taken: it is out of scope, or it already exists "
        "in the target with nothing to change.",
        "None, unless the object was expected to be provisioned.",
        False,
        _LOGS,
        "skip",
    ),
    (
        ("SystemForCrossDomainIdentityManagementMultipleEntriesInResponse",),
        "A GET for one user or group returned several (for example a group GET with excludedAttributes=members "
        "still returned members).",
        "The app developer must fix the SCIM endpoint so it returns a single resource.",
        False,
        _SCIM,
        "scim",
    ),
    (
        ("SystemForCrossDomainIdentityManagementServiceIncompatible",),
        "Entra ID could not parse the SCIM endpoint's response.",
        "The app developer must make the endpoint compatible with the Entra SCIM client.",
        False,
        _SCIM,
        "scim",
    ),
    (
        ("SchemaPropertyCanOnlyAcceptValue",),
        "The target attribute is single-valued but the source value is multi-valued.",
        "Map a single-valued source attribute, make the source single-valued, or remove the mapping.",
        False,
        _LOGS,
        "mapping",
    ),
    # --- more codes from other docs --------------------------------------------------------------------------
    (
        ("SystemForCrossDomainIdentityManagementBadResponse",),
        "The target answered the SCIM (or ECMA) request with an error response, for example an attribute longer "
        "than the target allows.",
        "Read the message for the attribute and the constraint; shorten the value (for example with Mid()) or "
        "map another attribute.",
        False,
        _LOGS,
        "target",
    ),
    (
        ("SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",),
        "The service could not validate the credentials: the SCIM endpoint could not be reached or refused "
        "authentication (not in the official error table; seen as the Test Connection failure).",
        "Check the Tenant URL (BaseAddress), the Secret Token (a valid, unexpired bearer token), TLS and that the "
        "endpoint is reachable from the internet; then Test Connection and save.",
        False,
        _CONFIG,
        "credentials",
    ),
    (
        ("InvalidCredentials",),
        "The app rejected the saved admin credentials (expired, revoked or wrong).",
        "Re-enter or re-authorize the admin credentials on the Provisioning page, Test Connection, save, then "
        "start (or restart) the job.",
        False,
        _Q,
        "credentials",
    ),
    (
        ("HybridSynchronizationActiveDirectoryInvalidParameter",),
        "An invalid value was written to Active Directory (e.g. msExchHideFromAddressLists must be TRUE or "
        "FALSE in capitals).",
        "Fix the expression in the attribute mapping so it produces a value AD accepts.",
        False,
        _LOGS,
        "mapping",
    ),
    (
        ("InvalidLookupReference",),
        "A reference-table value (ServiceNow department, location, ...) does not exist in the target.",
        "Create the referenced value in the app first, or change the mapping.",
        False,
        _LOGS,
        "target",
    ),
    (
        ("UnableToResolveReferenceAttributeValue",),
        "A reference (a manager or a group member) could not be resolved: the referenced object is not "
        "provisioned or linked.",
        "Provision the referenced object (assign it, or fix its own failure) and the reference follows.",
        False,
        _LOGS,
        "data",
    ),
    # --- beyond the error table: codes engineers meet (documentation or community, as marked) -------------
    (
        ("BadRequest",),
        "The target answered HTTP 400 Bad Request: it refused the shape or a value of the request. For a SCIM "
        "app this is often a PATCH it does not accept: 'Replace' in capitals, the boolean active sent as the "
        'string "False" on disable, or a group member removed through a path filter (community reports; the '
        "code is not in the documented error table).",
        "Read the target's error body in the reason. For a non-gallery SCIM app, make the endpoint accept the "
        "Entra SCIM client's PATCH shapes, or append the documented flag aadOptscim062020 to the Tenant URL "
        "for spec-compliant PATCH, and check the endpoint with the SCIM validator; for a gallery app, tell the "
        "app's vendor.",
        False,
        _SCIM,
        "request",
    ),
    (
        ("NotFound",),
        "The target answered HTTP 404 Not Found: for a SCIM endpoint a 404 on a list or filter query is a "
        "compliance failure (an empty result must be a ListResponse with totalResults 0 and HTTP 200), and it "
        "can quarantine the job.",
        "Check the Tenant URL; the app developer must return 200 with an empty ListResponse when nothing "
        "matches (RFC 7644 section 3.4.2).",
        False,
        _SCIM,
        "scim",
    ),
    (
        ("DuplicateRoles", "DuplicateAppRoles"),
        "The app's service principal has duplicate app roles (apps such as Salesforce or Zendesk import their "
        "roles), which the quarantine documentation lists as a cause of quarantine.",
        "Remove the duplicate role from the app's manifest (App registrations > the app > Manifest > appRoles), "
        "then restart provisioning.",
        False,
        _Q,
        "quarantine",
    ),
    # --- cross-tenant synchronization ------------------------------------------------------------------------
    (
        (
            "AzureActiveDirectoryCannotUpdateObjectsOriginatedInExternalService",
            "Microsoft Entra ID CannotUpdateObjectsOriginatedInExternalService",
        ),
        "The update in the target tenant failed because of source-of-authority enforcement (Mail or "
        "showInAddressList).",
        "The service may retry without the offending property; otherwise update the value in the target "
        "tenant directly.",
        False,
        _LOGS,
        "cross-tenant",
    ),
    (
        ("AzureDirectoryB2BManagementPolicyCheckFailure",),
        "The automatic-redemption policy is missing in the cross-tenant access settings.",
        "Enable automatic redemption for both inbound (target tenant) and outbound (source tenant).",
        False,
        _LOGS,
        "cross-tenant",
    ),
    (
        ("AzureActiveDirectoryQuotaLimitExceeded",),
        "The target directory reached its object quota.",
        "Raise the quota or remove objects from the target tenant.",
        False,
        _LOGS,
        "cross-tenant",
    ),
    (
        ("InvitationCreationFailure",),
        "The B2B invitation could not be created.",
        "Check the external collaboration settings in the target tenant.",
        False,
        _LOGS,
        "cross-tenant",
    ),
    (
        ("AzureActiveDirectoryInsufficientRights",),
        "A B2B user holding a role other than User, Helpdesk Administrator or User Account Administrator cannot "
        "be deleted.",
        "Remove the user's roles in the target tenant.",
        False,
        _LOGS,
        "cross-tenant",
    ),
    (
        ("AzureActiveDirectoryForbidden",),
        "The external collaboration settings blocked the invitation.",
        "Allow invitations in the target tenant's external collaboration settings.",
        False,
        _LOGS,
        "cross-tenant",
    ),
    (
        ("InvitationCreationFailureInvalidPropertyValue",),
        "Invalid primary SMTP address, a userType other than Guest or Member, or an email that collides with a "
        "group.",
        "Fix the user's mail or userType, or the mapping that produces them.",
        False,
        _LOGS,
        "cross-tenant",
    ),
    (
        ("InvitationCreationFailureAmbiguousUser",),
        "The user's proxy address collides with an internal user of the target tenant.",
        "Resolve the collision in the target tenant.",
        False,
        _LOGS,
        "cross-tenant",
    ),
    (
        ("AzureActiveDirectoryCannotUpdateObjectsMasteredOnPremises",),
        "The object is mastered on-premises in the target, so it cannot be updated in the cloud.",
        "Update it on-premises, or leave it out of scope.",
        False,
        _LOGS,
        "cross-tenant",
    ),
    # --- skip reasons (reference 4.1) ------------------------------------------------------------------------
    (
        ("NotEffectivelyEntitled",),
        "The object is not assigned to the app (nested groups do not count), is disabled in Entra ID, or lacks "
        "the entitlement for provisioning.",
        "Assign the user or group directly (or widen the scope to all users and groups); if it is assigned, "
        "remove and re-add the assignment; a disabled account must be enabled first.",
        False,
        _NO_USERS,
        "skip",
    ),
    (
        ("RedundantExport",),
        "The object already matches in source and target; nothing needed to change.",
        "None: this is not an error.",
        False,
        _LOGS,
        "skip",
    ),
    (
        ("StagedDelete", "StagedAction"),
        "A deletion (or disable) held back because its cycle passed the accidental-deletion threshold; it waits "
        "for an admin (the accidental-deletions page names the action StagedDelete, once StagedAction).",
        "Review the staged deletions; if they are intended, Allow deletes (restart with ForceDeletes), otherwise "
        "fix the cause (for example restore the assignment) and restart.",
        False,
        LINKS["accidental-deletions"],
        "skip",
    ),
    (
        ("ScopingFilterEvaluatedFalse",),
        "The object failed a scoping filter clause (null values always evaluate false).",
        "Fix the object's attribute value, or the scoping filter.",
        False,
        LINKS["scoping"],
        "skip",
    ),
    (
        ("EntryJoiningPropertyValueIsMissing",),
        "The object has no value for the matching (joining) attribute, so it cannot be matched.",
        "Check the mappings for the matching attribute and populate it on the user or group.",
        False,
        _NO_USERS,
        "skip",
    ),
    # --- quarantine reasons (reference 2.1 and 3.4) ----------------------------------------------------------
    (
        ("EncounteredQuarantineException",),
        "Quarantined because of invalid credentials or no connection to the target.",
        "Fix the credentials or the connection (Tenant URL, token), Test Connection, then start or restart the "
        "job.",
        False,
        _Q,
        "quarantine",
    ),
    (
        ("EncounteredEscrowProportionThreshold",),
        "Quarantined because more than 40% of provisioning events failed (at least 5,000 failures).",
        "Fix the most common failure (see the failures by code), then restart the job.",
        False,
        _Q,
        "quarantine",
    ),
    (
        ("EncounteredBaseEscrowThreshold",),
        "Quarantined because the number of failures passed the base escrow threshold.",
        "Fix the most common failure (see the failures by code), then restart the job.",
        False,
        _Q,
        "quarantine",
    ),
    (
        ("EncounteredTotalEscrowThreshold",),
        "Quarantined because the total number of failures passed the threshold (over 40,000, or 60,000 counting "
        "reference failures).",
        "Fix the most common failure (see the failures by code), then restart the job.",
        False,
        _Q,
        "quarantine",
    ),
    (
        ("QuarantinedOnDemand", "QuarantineOnDemand"),
        "Microsoft detected an issue with the job and quarantined it manually.",
        "Contact Microsoft support with the job id.",
        False,
        _Q,
        "quarantine",
    ),
    (
        ("TooManyDeletes",),
        "Quarantined because one cycle would delete or disable more objects than the accidental-deletion "
        "threshold allows.",
        "Review the pending deletions (action StagedDelete in the logs); if they are intended, Allow deletes "
        "(restart with ForceDeletes), otherwise fix the cause and restart.",
        False,
        LINKS["accidental-deletions"],
        "quarantine",
    ),
    (
        ("IngestionInterrupted",),
        "Quarantined because ingestion (API-driven inbound provisioning) was interrupted.",
        "Check the client that posts to the bulkUpload endpoint, then start the job.",
        False,
        _Q,
        "quarantine",
    ),
]

CONNECTOR_PREFIXES = (
    "SystemForCrossDomainIdentityManagement",
    "AzureActiveDirectory",
    "AzureDirectory",
    "HybridSynchronizationActiveDirectory",
    "Salesforce",
    "SalesforceSandbox",
    "ServiceNow",
    "Zendesk",
    "Dropbox",
    "Box",
    "Atlassian",
    "Slack",
    "GoogleApps",
    "GSuite",
    "Workday",
    "SuccessFactors",
    "Workplace",
    "Contoso",
    "Aws",
    "Github",
    "Zoom",
    "Okta",
)


def _build() -> dict[str, CatalogEntry]:
    table: dict[str, CatalogEntry] = {}
    for codes, meaning, fix, retried, link, kind in _ROWS:
        for code in codes:
            table[code.lower()] = CatalogEntry(code, code, meaning, fix, retried, link, kind)
    return table


CATALOG: dict[str, CatalogEntry] = _build()
"""Every documented code, lower-cased -> its entry (aliases such as Conflict have their own entry)."""

_BY_LENGTH = sorted(CATALOG, key=len, reverse=True)
_PREFIXES = sorted((p.lower() for p in CONNECTOR_PREFIXES), key=len, reverse=True)
# Connector-specific duplicate codes (SalesforceDuplicateUsername, SlackUserNameTaken,
# AzureActiveDirectoryDuplicateValue, ...) end in words a catalog code does not; they all mean a unique value
# already taken in the target, the documented EntryConflict.
_CONFLICT_WORDS = re.compile(
    r"(duplicate[a-z]*|[a-z]*(?:taken|alreadyexists|alreadyinuse|notunique))$", re.IGNORECASE
)

_MAPPING_LINK = LINKS["attributes"]
_KNOWN_ISSUES = LINKS["known-issues"]
# Messages without a documented code of their own: (pattern, label, meaning, fix, link, kind, source).
# ``source`` says where the remedy comes from: "documentation" or "community".
MESSAGES: list[tuple[re.Pattern[str], str, str, str, str, str, str]] = [
    (
        re.compile(r"no more than one app ?role assignment", re.IGNORECASE),
        "SingleAppRoleAssignment",
        "The mapping's SingleAppRoleAssignment expression found several app role assignments on the user; it "
        "expects exactly one.",
        "Give the user one app role for this app, or map roles with AppRoleAssignmentsComplex (which sends "
        "every role) where the app supports it.",
        _MAPPING_LINK,
        "mapping",
        "documentation",
    ),
    (
        re.compile(r"duplicate (?:app ?)?roles?", re.IGNORECASE),
        "DuplicateRoles",
        "The app has duplicate app roles; the quarantine documentation lists them as a cause of quarantine "
        "for apps such as Salesforce and Zendesk.",
        "Remove the duplicate role from the app's manifest, then restart provisioning.",
        _Q,
        "quarantine",
        "documentation",
    ),
    (
        re.compile(
            r"too long|exceed(?:s|ed)? (?:the )?(?:maximum|max) (?:length|size)|length (?:limit|constraint)|"
            r"CONSTRAINT_ATT_TYPE|maximum (?:of )?\d+ characters|string or binary data would be truncated",
            re.IGNORECASE,
        ),
        "AttributeLengthExceeded",
        "A value is longer than the target attribute allows (for example company and CN in Active Directory "
        "allow 64 characters).",
        "Shorten the value in the mapping with an expression such as Mid([attribute], 1, 64), or map another "
        "attribute.",
        _MAPPING_LINK,
        "data",
        "documentation",
    ),
    (
        re.compile(r"special character", re.IGNORECASE),
        "SpecialCharactersInMatchingValue",
        "A matching (joining) or filter attribute value contains special characters the service cannot put "
        "in a filter query (a known issue), so the object cannot be looked up in the target.",
        "Remove the special characters from the matching value (for example a group's display name), or match "
        "on another attribute.",
        _KNOWN_ISSUES,
        "data",
        "documentation",
    ),
]


def _message_entry(code: str, reason: str | None) -> CatalogEntry | None:
    if not reason:
        return None
    for pattern, label, meaning, fix, link, kind, _source in MESSAGES:
        if pattern.search(reason):
            return CatalogEntry(code or label, label, meaning, fix, False, link, kind, reason=reason)
    return None


@lru_cache(maxsize=4096)
def _resolve(code: str) -> CatalogEntry | None:
    lowered = code.lower()
    if lowered in CATALOG:
        return CATALOG[lowered]
    for prefix in _PREFIXES:
        if lowered.startswith(prefix) and lowered[len(prefix) :] in CATALOG:
            return CATALOG[lowered[len(prefix) :]]
    for base in _BY_LENGTH:
        if " " in base or not lowered.endswith(base) or len(lowered) == len(base):
            continue
        start = len(code) - len(base)
        if code[start].isupper() or code[start - 1] in "_.-":  # a word boundary in a PascalCase code
            return CATALOG[base]
    if _CONFLICT_WORDS.search(lowered):
        return replace(CATALOG["entryconflict"], code=code)
    return None


def lookup(code: str | None, reason: str | None = None) -> CatalogEntry:
    """The catalog entry for ``code`` (case-insensitive, connector prefixes resolved).

    An unknown (or empty) code gives an entry with ``known`` False whose meaning quotes ``reason``. The
    returned entry carries the code as asked for and the reason given.
    """
    text = (code or "").strip()
    found = _resolve(text) if text else None
    if found is not None:
        return replace(found, code=text, reason=reason)
    by_message = _message_entry(text, reason)
    if by_message is not None:
        return by_message
    said = f' The service said: "{reason.strip()}"' if reason and reason.strip() else ""
    meaning = f"The code {text!r} is not in the documented catalog." if text else "No error code was given."
    status = http_status(reason)
    if status in (401, 403):
        fix, kind = (
            "The target refused the credentials or the operation: check the admin credentials.",
            "credentials",
        )
    else:
        fix, kind = (
            "Read the reason text and the steps of the entry; search the app's provisioning tutorial.",
            "unknown",
        )
    return CatalogEntry(
        code=text,
        base=None,
        meaning=meaning + said,
        fix=fix,
        retried=False,
        link=_LOGS,
        kind=kind,
        known=False,
        reason=reason,
    )
