"""The error-code catalog: every documented code resolves, connector prefixes are stripped, unknown codes are
reported as unknown with the service's reason."""

from __future__ import annotations

import pytest

from provkit.analysis.checks.catalog import CATALOG, http_status, lookup
from provkit.data.tables import QUARANTINE_REASONS

# The analyze-logs error table (reference 4.2), the extra codes below it, cross-tenant and SCIM codes.
DOCUMENTED = [
    "Conflict",
    "EntryConflict",
    "TooManyRequests",
    "InternalServerError",
    "InsufficientRights",
    "MethodNotAllowed",
    "NotPermitted",
    "Unauthorized",
    "UnprocessableEntity",
    "WebExceptionProtocolError",
    "InvalidAnchor",
    "NotImplemented",
    "MandatoryFieldsMissing",
    "MissingValues",
    "SchemaAttributeNotFound",
    "InternalError",
    "InvalidDomain",
    "Timeout",
    "LicenseLimitExceeded",
    "DuplicateTargetEntries",
    "DuplicateSourceEntries",
    "ImportSkipped",
    "EntrySynchronizationSkipped",
    "SystemForCrossDomainIdentityManagementMultipleEntriesInResponse",
    "SystemForCrossDomainIdentityManagementServiceIncompatible",
    "SchemaPropertyCanOnlyAcceptValue",
    "SystemForCrossDomainIdentityManagementBadResponse",
    "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",
    "HybridSynchronizationActiveDirectoryInvalidParameter",
    "AzureActiveDirectoryCannotUpdateObjectsOriginatedInExternalService",
    "AzureDirectoryB2BManagementPolicyCheckFailure",
    "AzureActiveDirectoryQuotaLimitExceeded",
    "InvitationCreationFailure",
    "AzureActiveDirectoryInsufficientRights",
    "AzureActiveDirectoryForbidden",
    "InvitationCreationFailureInvalidPropertyValue",
    "InvitationCreationFailureAmbiguousUser",
    "AzureActiveDirectoryCannotUpdateObjectsMasteredOnPremises",
    "InvalidLookupReference",
    "UnableToResolveReferenceAttributeValue",
    # skip reasons
    "NotEffectivelyEntitled",
    "RedundantExport",
    "EntryJoiningPropertyValueIsMissing",
]


@pytest.mark.parametrize("code", DOCUMENTED)
def test_every_documented_code_is_known_with_meaning_fix_and_link(code):
    entry = lookup(code)
    assert entry.known and entry.base == code
    assert entry.meaning and entry.fix
    assert entry.link.startswith("https://learn.microsoft.com/")


@pytest.mark.parametrize("reason", [r for r in QUARANTINE_REASONS if r != "Unknown"])
def test_every_quarantine_reason_is_known(reason):
    entry = lookup(reason)
    assert entry.known and entry.kind == "quarantine"
    assert entry.link.startswith("https://learn.microsoft.com/")


def test_quarantine_on_demand_spelling_of_the_doc_is_known_too():
    assert lookup("QuarantineOnDemand").known


@pytest.mark.parametrize(
    ("code", "base"),
    [
        ("ContosoEntryConflict", "EntryConflict"),
        ("ZendeskEntryConflict", "EntryConflict"),
        ("SalesforceInvalidCredentials", "InvalidCredentials"),
        ("AtlassianInvalidCredentials", "InvalidCredentials"),
        ("SystemForCrossDomainIdentityManagementUnauthorized", "Unauthorized"),
        ("SystemForCrossDomainIdentityManagementEntryConflict", "EntryConflict"),
        ("ServiceNowInvalidLookupReference", "InvalidLookupReference"),
        # a connector the catalog has never heard of: the longest code it ends with, at a word boundary
        ("FabrikamHrTooManyRequests", "TooManyRequests"),
        ("FabrikamInternalServerError", "InternalServerError"),
        # exact codes win over a shorter suffix
        ("AzureActiveDirectoryInsufficientRights", "AzureActiveDirectoryInsufficientRights"),
        ("InvitationCreationFailureAmbiguousUser", "InvitationCreationFailureAmbiguousUser"),
    ],
)
def test_connector_prefixed_codes_resolve_to_their_base(code, base):
    entry = lookup(code)
    assert entry.known
    assert entry.base == base
    assert entry.code == code
    assert code in entry.label and (base in entry.label)


def test_lookup_ignores_case():
    assert lookup("entryconflict").base == "EntryConflict"
    assert lookup("zendeskENTRYCONFLICT").base == "EntryConflict"


def test_a_suffix_inside_a_word_is_not_a_match():
    # "...Nonconflict" ends with "conflict" but not at a PascalCase word boundary
    assert not lookup("FabrikamNonconflict").known


def test_unknown_code_is_reported_as_unknown_quoting_the_reason():
    entry = lookup("FabrikamQuotaGremlin", "The gremlin ate the request (HTTP 418).")
    assert not entry.known and entry.base is None
    assert "FabrikamQuotaGremlin" in entry.meaning
    assert "The gremlin ate the request (HTTP 418)." in entry.meaning
    assert entry.reason == "The gremlin ate the request (HTTP 418)."


def test_unknown_code_with_a_401_is_treated_as_a_credentials_problem():
    assert lookup("FabrikamOops", "returned HTTP status code 401").kind == "credentials"
    assert lookup("FabrikamOops", "returned HTTP status code 500").kind == "unknown"


def test_no_code_is_unknown():
    entry = lookup(None)
    assert not entry.known
    assert "No error code" in entry.meaning


@pytest.mark.parametrize(
    ("code", "retried"),
    [
        ("TooManyRequests", True),
        ("InternalServerError", True),
        ("WebExceptionProtocolError", True),
        ("InternalError", True),
        ("Timeout", True),
        ("EntryConflict", False),
        ("MandatoryFieldsMissing", False),
        ("SchemaAttributeNotFound", False),
        ("Unauthorized", False),
    ],
)
def test_retried_follows_the_guide(code, retried):
    assert lookup(code).retried is retried


def test_credential_and_scim_codes_are_classified():
    assert (
        lookup("SystemForCrossDomainIdentityManagementCredentialValidationUnavailable").kind == "credentials"
    )
    assert lookup("SalesforceInvalidCredentials").kind == "credentials"
    assert lookup("SystemForCrossDomainIdentityManagementServiceIncompatible").kind == "scim"
    assert lookup("InvalidAnchor").kind == "data"


def test_reason_is_carried_on_known_codes():
    assert lookup("ZendeskEntryConflict", "HTTP 409").reason == "HTTP 409"


def test_catalog_keys_are_lower_case_codes():
    assert all(k == k.lower() for k in CATALOG)


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("Zendesk returned an error response with the HTTP status code 409.", 409),
        ("the SCIM endpoint returned HTTP 401 (Unauthorized).", 401),
        ("the API answered 401 Unauthorized.", 401),
        ("returned 404 Not Found for the filter query", 404),
        ("no status here", None),
        (None, None),
    ],
)
def test_http_status_is_read_from_reason_text(text, status):
    assert http_status(text) == status


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("StatusCode: BadRequest Message: Processing of the HTTP request resulted in an exception.", 400),
        ("StatusCode: NotFound Message: the resource was not found", 404),
        ("The remote server returned an error: (401) Unauthorized.", 401),
        ("StatusCode: 403", 403),
        ("StatusCode: SomethingNew", None),
        ("a value (12) Apples", None),
    ],
)
def test_http_status_reads_dotnet_status_texts(text, status):
    assert http_status(text) == status


@pytest.mark.parametrize(
    "code",
    [
        "SalesforceDuplicateUsername",
        "SlackUserNameTaken",
        "AzureActiveDirectoryDuplicateValue",
        "BoxEmailAlreadyExists",
    ],
)
def test_connector_duplicate_codes_resolve_to_a_conflict(code):
    entry = lookup(code)
    assert entry.known and entry.base == "EntryConflict" and entry.kind == "data"
    assert entry.code == code


def test_the_documented_duplicate_codes_keep_their_own_meaning():
    assert lookup("DuplicateTargetEntries").base == "DuplicateTargetEntries"
    assert lookup("ContosoDuplicateSourceEntries").base == "DuplicateSourceEntries"


def test_scim_bad_request_is_a_refused_request_not_a_credentials_failure():
    entry = lookup("SystemForCrossDomainIdentityManagementBadRequest")
    assert entry.known and entry.base == "BadRequest" and entry.kind == "request"
    assert "aadOptscim062020" in entry.fix
    assert lookup("SystemForCrossDomainIdentityManagementNotFound").kind == "scim"


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("Error: No more than one app role assignment was expected for the user.", "SingleAppRoleAssignment"),
        ("The application has duplicate roles defined.", "DuplicateRoles"),
        ("ConstraintViolation-AtrErr: DSID-0315xxx CONSTRAINT_ATT_TYPE - company", "AttributeLengthExceeded"),
        ("The value of 'title' is too long for the target.", "AttributeLengthExceeded"),
        ("Filter query failed: the value contains a special character.", "SpecialCharactersInMatchingValue"),
    ],
)
def test_known_messages_without_a_code_are_explained(reason, label):
    entry = lookup("SomeConnectorFailure", reason)
    assert entry.known and entry.base == label
    assert entry.fix and entry.link.startswith("https://learn.microsoft.com/")


def test_an_unknown_code_with_an_unknown_message_stays_unknown():
    assert not lookup("SomeConnectorFailure", "Something odd happened").known


def test_every_code_the_simulator_can_emit_has_a_catalog_entry():
    """Every error code, skip reason, job error and quarantine reason any scenario of the simulated tenant
    writes resolves to a catalog entry, so no finding ever says 'not in the documented catalog' on the demo."""
    from datetime import UTC, datetime

    from provkit.sim.evidence import from_simulator
    from provkit.sim.scenarios import SCENARIOS
    from provkit.sim.tenant import Tenant

    tenant = Tenant(seed=7, users_count=600, days=7, now=datetime(2026, 11, 20, 12, tzinfo=UTC))
    seen: dict[str, str] = {}
    for app in tenant.apps:
        ev = from_simulator(tenant, app)
        for column in ("error_code", "skip_reason"):
            for code in ev.events[column].dropna().unique():
                seen.setdefault(str(code), app.scenario.name)
        status = ev.job["status"]
        quarantine = status.get("quarantine") or {}
        for code in (
            ((status.get("lastExecution") or {}).get("error") or {}).get("code"),
            quarantine.get("reason"),
            (quarantine.get("error") or {}).get("code"),
        ):
            if code and code != "None":
                seen.setdefault(str(code), app.scenario.name)
    assert {app.scenario.name for app in tenant.apps} == set(SCENARIOS)
    assert "UnableToResolveReferenceAttributeValue" in seen and "TooManyDeletes" in seen
    unknown = {code: where for code, where in seen.items() if not lookup(code).known}
    assert unknown == {}
