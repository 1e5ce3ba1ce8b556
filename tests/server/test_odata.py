"""The simulated Graph server's ``$filter``/``$orderby``: what a client sends, what it gets back.

The generated checks compare :meth:`Filter.matches` with an independent predicate built next to the filter text,
over records that mix Graph's timestamp forms, nulls, missing keys and case variants.
"""

from __future__ import annotations

import calendar
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from provkit.errors import ProvkitError
from provkit.sim.odata import Filter, ODataError, compile_filter, parse_orderby

PATHS = (
    "id",
    "jobId",
    "activityDateTime",
    "durationInMilliseconds",
    "accountEnabled",
    "provisioningAction",
    "provisioningStatusInfo/status",
    "servicePrincipal/id",
    "servicePrincipal/displayName",
    "sourceIdentity/displayName",
    "provisioningStatusInfo/errorInformation/errorCode",
)
ENUMS = ("provisioningAction", "provisioningStatusInfo/status")
DATETIMES = ("activityDateTime",)

DOCUMENTED = (
    "((contains(tolower(servicePrincipal/id), '3b2e5f41') or contains(tolower(servicePrincipal/displayName), "
    "'contoso')) and activityDateTime gt 2022-12-10 and activityDateTime lt 2022-12-11)"
)


def flt(text: str) -> Filter:
    return compile_filter(text, allowed_paths=PATHS, enum_paths=ENUMS, datetime_paths=DATETIMES)


# -- an independent model of the semantics ----------------------------------------------------------------------

Record = dict
Oracle = Callable[[Record], bool]


def get(record: Record, path: str) -> object:
    value: object = record
    for segment in path.split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(segment)
    return value


def instant(text: str) -> tuple[int, int]:
    """(whole UTC seconds, 100 ns ticks) of an ISO-8601 text; date-only and offset-less texts are UTC."""
    text = text.upper()
    m = re.fullmatch(r"([^.]*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", text)
    assert m is not None, text
    head, digits, zone = m.group(1), m.group(2) or "", m.group(3) or ""
    dt = datetime.fromisoformat(head + ("+00:00" if zone in ("", "Z") else zone))
    return calendar.timegm(dt.astimezone(UTC).timetuple()), int(digits.ljust(7, "0"))


def record_instant(record: Record) -> tuple[int, int] | None:
    value = record.get("activityDateTime")
    return instant(value) if isinstance(value, str) else None


def as_datetime(pair: tuple[int, int]) -> datetime:
    return datetime.fromtimestamp(pair[0], tz=UTC).replace(microsecond=pair[1] // 10)


BASE = calendar.timegm((2024, 3, 10, 16, 15, 21, 0, 0, 0))
DATETIME_LITERALS = (
    "2024-03-10",
    "2024-03-11",
    "2024-03-10T16:15:21Z",
    "2024-03-10T16:15:21.1160981Z",
    "2024-03-10T16:15:21.116098Z",
    "2024-03-10T18:15:21.1160981+02:00",
    "2024-03-10T12:00:00.5-05:30",
    "2024-03-10T16:15",
    "2024-03-10t16:15:21.1160982z",
)
JOBS = ("Salesforce.a1b2", "salesforce.a1b2", "AWS.c3d4", "")
SP_IDS = ("3b2e5f41-0c1d-4a7e-9f00-7d1c2b3a4e5f", "3B2E5F41-0C1D-4A7E-9F00-7D1C2B3A4E5F", "9c0d1e2f-aaaa")
SP_NAMES = ("Contoso HR", "contoso", "Fabrikam Sales", "Salesforce")
PEOPLE = ("O'Brien", "Ana Lopez", "ana lopez", "It''s", "Zoë", "'")
ACTIONS = ("create", "Create", "CREATE", "update", "delete", "stagedDelete", "StagedDelete", "other")
STATUSES = ("success", "Success", "failure", "FAILURE", "skipped", "warning")


def timestamp(rng: random.Random) -> object:
    """A record's activityDateTime in one of Graph's shapes, sometimes exactly on a literal's instant."""
    if rng.random() < 0.08:
        return rng.choice((None, "missing"))
    seconds = BASE + rng.choice((0, 0, 0, -1, 1, rng.randint(-2 * 86400, 2 * 86400)))
    ticks = rng.choice((1160981, 1160980, 1160982, 0, 5000000, rng.randint(0, 9_999_999)))
    dt = datetime.fromtimestamp(seconds, tz=UTC)
    shape = rng.random()
    if shape < 0.6:
        return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ticks:07d}Z"
    if shape < 0.75:
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if shape < 0.9:
        local = datetime.fromtimestamp(seconds + 7200, tz=UTC)
        return local.strftime("%Y-%m-%dT%H:%M:%S") + f".{ticks:07d}+02:00"
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ticks // 10000:03d}Z"


def maybe(rng: random.Random, choices: tuple) -> object:
    r = rng.random()
    if r < 0.07:
        return None
    if r < 0.12:
        return "missing"
    return rng.choice(choices)


def make_record(rng: random.Random) -> Record:
    rec: dict = {
        "id": f"entry-{rng.randint(0, 999)}",
        "activityDateTime": timestamp(rng),
        "jobId": maybe(rng, JOBS),
        "durationInMilliseconds": maybe(rng, (0, 12, 250, 251, 9000, "250", True)),
        "accountEnabled": maybe(rng, (True, False, 1, 0, "true")),
        "provisioningAction": maybe(rng, ACTIONS),
        "provisioningStatusInfo": rng.choice(
            (
                {"status": maybe(rng, STATUSES), "errorInformation": None},
                None,
                "missing",
                {"status": ["failure"]},
            )
        ),
        "servicePrincipal": rng.choice(
            ({"id": maybe(rng, SP_IDS), "displayName": maybe(rng, SP_NAMES)}, "missing", None)
        ),
        "sourceIdentity": {"displayName": maybe(rng, PEOPLE)},
    }
    for parent in ("provisioningStatusInfo", "servicePrincipal"):
        if isinstance(rec[parent], dict):
            rec[parent] = {k: v for k, v in rec[parent].items() if v != "missing"}
    return {k: v for k, v in rec.items() if v != "missing"}


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def word(rng: random.Random, keyword: str) -> str:
    return rng.choice((keyword, keyword.upper(), keyword.capitalize()))


def atom(rng: random.Random) -> tuple[str, Oracle]:
    """One comparison or function call, as filter text and as an independent predicate."""
    kind = rng.randrange(9)
    if kind == 0:  # case-sensitive strings, all six operators
        path = rng.choice(
            ("jobId", "servicePrincipal/displayName", "sourceIdentity/displayName", "servicePrincipal/id")
        )
        lit = rng.choice(JOBS + SP_NAMES + PEOPLE + SP_IDS)
        op = rng.choice(("eq", "ne", "gt", "ge", "lt", "le"))
        py = {"eq": "__eq__", "ne": "__ne__", "gt": "__gt__", "ge": "__ge__", "lt": "__lt__", "le": "__le__"}[
            op
        ]
        return (
            f"{path} {word(rng, op)} {quote(lit)}",
            lambda r: isinstance(v := get(r, path), str) and getattr(v, py)(lit),
        )
    if kind == 1:  # enums ignore case
        path = rng.choice(ENUMS)
        lit = rng.choice(ACTIONS + STATUSES)
        op = rng.choice(("eq", "ne"))
        want = op == "eq"
        return (
            f"{path} {op} {quote(lit)}",
            lambda r: isinstance(v := get(r, path), str) and (v.lower() == lit.lower()) == want,
        )
    if kind == 2:  # instants
        lit = rng.choice(DATETIME_LITERALS)
        op = rng.choice(("eq", "ne", "gt", "ge", "lt", "le"))
        when = instant(lit)
        cmp = {
            "eq": lambda a: a == when,
            "ne": lambda a: a != when,
            "gt": lambda a: a > when,
            "ge": lambda a: a >= when,
            "lt": lambda a: a < when,
            "le": lambda a: a <= when,
        }[op]
        return f"activityDateTime {op} {lit}", lambda r: (t := record_instant(r)) is not None and cmp(t)
    if kind == 3:  # contains / startswith, optionally under tolower/toupper
        path = rng.choice(
            ("jobId", "servicePrincipal/displayName", "servicePrincipal/id", "sourceIdentity/displayName")
        )
        fn = rng.choice(("contains", "startswith"))
        case = rng.choice((None, "tolower", "toupper"))
        needle = rng.choice(("sales", "Sales", "contoso", "3b2e", "3B2E", "'", "O'B", "", "ana", "Ana"))
        arg = f"{case}({path})" if case else path
        fold: Callable[[str], str] = {None: str, "tolower": str.lower, "toupper": str.upper}[case]
        test = (lambda v: needle in v) if fn == "contains" else (lambda v: v.startswith(needle))
        return (
            f"{word(rng, fn)}({arg}, {quote(needle)})",
            lambda r: isinstance(v := get(r, path), str) and test(fold(v)),
        )
    if kind == 4:  # contains on an enum ignores case too
        needle = rng.choice(("FAIL", "fail", "Success", "stage"))
        path = rng.choice(ENUMS)
        return (
            f"contains({path}, {quote(needle)})",
            lambda r: isinstance(v := get(r, path), str) and needle.lower() in v.lower(),
        )
    if kind == 5:  # null
        path = rng.choice(PATHS)
        op = rng.choice(("eq", "ne"))
        return f"{path} {op} null", lambda r: (get(r, path) is None) == (op == "eq")
    if kind == 6:  # numbers: bool and numeric strings are other types
        n = rng.choice((0, 12, 250, 1))
        op = rng.choice(("eq", "ne", "gt", "lt", "ge", "le"))
        cmp = {"eq": int.__eq__, "ne": int.__ne__, "gt": int.__gt__, "lt": int.__lt__, "ge": int.__ge__}.get(
            op, int.__le__
        )
        return (
            f"durationInMilliseconds {op} {n}",
            lambda r: type(v := r.get("durationInMilliseconds")) is int and cmp(v, n),
        )
    if kind == 7:  # booleans: 1 and "true" are not true
        b = rng.choice((True, False))
        op = rng.choice(("eq", "ne"))
        want = b if op == "eq" else not b
        return f"accountEnabled {op} {str(b).lower()}", lambda r: r.get("accountEnabled") is want
    values = rng.sample(JOBS, 2)  # in (...)
    with_null = rng.random() < 0.3
    listed = ", ".join([quote(v) for v in values] + (["null"] if with_null else []))
    return (
        f"jobId {word(rng, 'in')} ({listed})",
        lambda r: with_null if (v := r.get("jobId")) is None else v in values,
    )


def expression(rng: random.Random, depth: int = 0) -> tuple[str, Oracle, str]:
    """(text, oracle, kind) where kind is atom, and, or or not: the caller parenthesises by precedence."""
    r = rng.random()
    if depth >= 3 or r < 0.35:
        text, oracle = atom(rng)
        return text, oracle, "atom"
    if r < 0.5:
        text, inner, kind = expression(rng, depth + 1)
        body = text if kind == "atom" and rng.random() < 0.5 else f"({text})"
        return f"{word(rng, 'not')} {body}", lambda rec: not inner(rec), "not"
    op = "and" if r < 0.8 else "or"
    parts = [expression(rng, depth + 1) for _ in range(rng.randint(2, 3))]
    texts = []
    for text, _, kind in parts:
        # an "or" inside an "and" needs parentheses; an "and" inside an "or" needs none (not > and > or)
        needs = kind == "or" and op == "and"
        texts.append(f"({text})" if needs or (kind != "atom" and rng.random() < 0.3) else text)
    oracles = [o for _, o, _ in parts]
    if op == "and":
        return f" {word(rng, 'and')} ".join(texts), lambda rec: all(o(rec) for o in oracles), "and"
    return f" {word(rng, 'or')} ".join(texts), lambda rec: any(o(rec) for o in oracles), "or"


@pytest.fixture(scope="module")
def records() -> list[Record]:
    rng = random.Random(20240310)
    return [make_record(rng) for _ in range(300)]


def test_generated_filters_agree_with_an_independent_predicate(records: list[Record]) -> None:
    rng = random.Random(7)
    matched_some = matched_none = 0
    for _ in range(250):
        text, oracle, _ = expression(rng)
        f = flt(text)
        for rec in records:
            assert f.matches(rec) == oracle(rec), (text, rec)
        hits = sum(oracle(rec) for rec in records)
        matched_some += 0 < hits < len(records)
        matched_none += hits == 0
    assert matched_some > 100  # the generated filters discriminate, they are not all true or all false


def test_bounds_and_equalities_never_exclude_a_matching_record(records: list[Record]) -> None:
    rng = random.Random(11)
    bounded = pinned = 0
    for i in range(400):
        text, _, _ = expression(rng)
        if i % 2:  # the server's usual shape: an app and a window around whatever else the client asked
            lo, hi = sorted(rng.sample(DATETIME_LITERALS, 2), key=instant)
            text = f"jobId eq {quote(rng.choice(JOBS))} and activityDateTime ge {lo} and activityDateTime le {hi} and ({text})"
        f = flt(text)
        lower, upper = f.bounds("activityDateTime")
        jobs, actions = f.equalities("jobId"), f.equalities("provisioningAction")
        bounded += lower is not None or upper is not None
        pinned += jobs is not None
        for rec in filter(f.matches, records):
            t = record_instant(rec)
            if t is not None:
                exact = (t[0], t[1])
                assert lower is None or instant(lower.isoformat()) <= exact, (text, rec)
                assert upper is None or exact <= instant(upper.isoformat()), (text, rec)
            assert jobs is None or rec.get("jobId") in jobs, (text, rec)
            assert actions is None or rec.get("provisioningAction", "").casefold() in actions, (text, rec)
    assert bounded > 150 and pinned > 150


def test_the_documented_cross_tenant_filter_selects_the_app_and_the_day() -> None:
    f = flt(DOCUMENTED)
    day = "2022-12-10T16:15:21.1160981Z"
    assert f.matches(
        {"servicePrincipal": {"id": "3B2E5F41-0000", "displayName": "x"}, "activityDateTime": day}
    )
    assert f.matches(
        {"servicePrincipal": {"id": "ffff", "displayName": "Contoso HR"}, "activityDateTime": day}
    )
    assert not f.matches(
        {"servicePrincipal": {"id": "ffff", "displayName": "Fabrikam"}, "activityDateTime": day}
    )
    late = "2022-12-11T00:00:00.0000001Z"
    assert not f.matches(
        {"servicePrincipal": {"id": "3b2e5f41", "displayName": "x"}, "activityDateTime": late}
    )
    assert f.bounds("activityDateTime") == (
        datetime(2022, 12, 10, tzinfo=UTC),
        datetime(2022, 12, 11, tzinfo=UTC),
    )
    assert f.equalities("servicePrincipal/id") is None  # contains(tolower(...)) pins nothing


@pytest.mark.parametrize(
    ("text", "record", "expected"),
    [
        ("jobId eq 'Salesforce.a1b2'", {"jobId": "Salesforce.a1b2"}, True),
        ("activityDateTime ge 2024-01-01T00:00:00Z", {"activityDateTime": "2024-01-01T00:00:00Z"}, True),
        (
            "activityDateTime ge 2024-01-01T00:00:00Z",
            {"activityDateTime": "2023-12-31T23:59:59.9999999Z"},
            False,
        ),
        (
            "servicePrincipal/id eq 'x' and activityDateTime ge 2024-01-01T00:00:00Z and "
            "activityDateTime lt 2024-01-02T00:00:00Z",
            {"servicePrincipal": {"id": "x"}, "activityDateTime": "2024-01-01T23:59:59.9999999Z"},
            True,
        ),
        (
            "provisioningStatusInfo/status eq 'failure'",
            {"provisioningStatusInfo": {"status": "Failure"}},
            True,
        ),
        ("displayName eq 'Salesforce'", {"displayName": "Salesforce"}, True),
        ("displayName eq 'Salesforce'", {"displayName": "salesforce"}, False),
        ("appId eq '00000000-aaaa'", {"appId": "00000000-aaaa"}, True),
        ("startswith(displayName, 'Sales')", {"displayName": "Salesforce"}, True),
        ("startswith(displayName, 'Sales')", {"displayName": "salesforce"}, False),
    ],
)
def test_the_common_client_filters(text: str, record: Record, expected: bool) -> None:
    f = compile_filter(
        text, allowed_paths=(*PATHS, "displayName", "appId"), enum_paths=ENUMS, datetime_paths=DATETIMES
    )
    assert f.matches(record) is expected


def test_not_binds_tighter_than_and_which_binds_tighter_than_or() -> None:
    rec = {"jobId": "a", "provisioningAction": "create", "id": "z"}
    assert flt("jobId eq 'a' or jobId eq 'b' and id eq 'y'").matches(rec)  # a or (b and y)
    assert not flt("(jobId eq 'a' or jobId eq 'b') and id eq 'y'").matches(rec)
    assert not flt("not jobId eq 'a' and id eq 'z'").matches(rec)  # (not a) and z
    assert flt("not (jobId eq 'a' and id eq 'y')").matches(rec)
    assert flt("NOT(jobId EQ 'b') AND Id Eq 'z'").matches(rec)  # keywords and properties in any case
    assert flt("not not jobId eq 'a'").matches(rec)


def test_quotes_are_escaped_by_doubling_them() -> None:
    assert flt("sourceIdentity/displayName eq 'O''Brien'").matches(
        {"sourceIdentity": {"displayName": "O'Brien"}}
    )
    assert flt("sourceIdentity/displayName eq ''''").matches({"sourceIdentity": {"displayName": "'"}})
    assert flt("contains(sourceIdentity/displayName, '''')").matches(
        {"sourceIdentity": {"displayName": "It's"}}
    )
    assert not flt("sourceIdentity/displayName eq 'O''''Brien'").matches(
        {"sourceIdentity": {"displayName": "O'Brien"}}
    )
    assert flt("jobId eq 'a and b or c'").matches(
        {"jobId": "a and b or c"}
    )  # keywords inside strings are text


@pytest.mark.parametrize(
    ("literal", "record_value", "eq"),
    [
        ("2024-03-10T16:15:21.1160981Z", "2024-03-10T16:15:21.1160981Z", True),
        ("2024-03-10T16:15:21.116098Z", "2024-03-10T16:15:21.1160980Z", True),
        ("2024-03-10T16:15:21.116098Z", "2024-03-10T16:15:21.1160981Z", False),  # 100 ns apart
        ("2024-03-10T18:15:21.1160981+02:00", "2024-03-10T16:15:21.1160981Z", True),
        ("2024-03-10T16:15:21.1160981Z", "2024-03-10T11:45:21.1160981-04:30", True),
        ("2024-03-10", "2024-03-10T00:00:00Z", True),
        ("2024-03-10T16:15", "2024-03-10T16:15:00.0000000Z", True),
        ("2024-03-10T16:15:21", "2024-03-10T16:15:21.000Z", True),
        ("2024-03-10t16:15:21z", "2024-03-10T16:15:21Z", True),
        ("2024-03-11T00:00:00+00:00", "2024-03-10T23:59:59.9999999Z", False),
    ],
)
def test_datetimes_compare_as_instants_to_the_100_nanosecond(
    literal: str, record_value: str, eq: bool
) -> None:
    rec = {"activityDateTime": record_value}
    assert flt(f"activityDateTime eq {literal}").matches(rec) is eq
    assert flt(f"activityDateTime ne {literal}").matches(rec) is not eq
    assert flt(f"activityDateTime ge {literal} and activityDateTime le {literal}").matches(rec) is eq


def test_bounds_keep_a_record_on_a_seven_digit_edge() -> None:
    f = flt(
        "activityDateTime ge 2024-03-10T16:15:21.1160981Z and activityDateTime le 2024-03-10T16:15:21.1160989Z"
    )
    lower, upper = f.bounds("activityDateTime")
    assert lower == datetime(2024, 3, 10, 16, 15, 21, 116098, tzinfo=UTC)
    assert upper == datetime(2024, 3, 10, 16, 15, 21, 116099, tzinfo=UTC)
    assert flt("activityDateTime lt 2024-03-10T18:00:00+02:00").bounds("activityDateTime") == (
        None,
        datetime(2024, 3, 10, 16, 0, tzinfo=UTC),
    )


def test_enums_ignore_case_and_strings_do_not() -> None:
    assert flt("provisioningAction eq 'STAGEDDELETE'").matches({"provisioningAction": "stagedDelete"})
    assert not flt("provisioningAction ne 'create'").matches({"provisioningAction": "Create"})
    assert flt("contains(provisioningStatusInfo/status, 'FAIL')").matches(
        {"provisioningStatusInfo": {"status": "failure"}}
    )
    assert not flt("jobId eq 'SALESFORCE.A1B2'").matches({"jobId": "salesforce.a1b2"})
    assert not flt("contains(jobId, 'Sales')").matches({"jobId": "salesforce.a1b2"})
    assert flt("tolower(jobId) eq 'salesforce.a1b2'").matches({"jobId": "SalesForce.A1B2"})
    assert flt("toupper(jobId) eq 'SALESFORCE.A1B2'").matches({"jobId": "SalesForce.A1B2"})
    assert not flt("tolower(jobId) eq 'SalesForce.A1B2'").matches({"jobId": "SalesForce.A1B2"})
    assert flt("jobId gt 'Z'").matches({"jobId": "a"})  # ordinal: lower case sorts after upper case


@pytest.mark.parametrize(
    "record",
    [{}, {"jobId": None, "servicePrincipal": None}, {"servicePrincipal": {}}, {"servicePrincipal": "text"}],
    ids=["missing", "null", "missing-child", "parent-not-an-object"],
)
def test_a_missing_or_null_value_only_equals_null(record: Record) -> None:
    for path in ("jobId", "servicePrincipal/id"):
        assert flt(f"{path} eq null").matches(record)
        for text in (
            f"{path} ne null",
            f"{path} eq 'x'",
            f"{path} ne 'x'",
            f"{path} gt 'x'",
            f"{path} le 'x'",
            f"contains({path}, '')",
            f"startswith({path}, '')",
            f"contains({path}, 'x') eq false",
            f"tolower({path}) ne 'x'",
            f"{path} in ('x', 'y')",
        ):
            assert not flt(text).matches(record), text
        assert flt(f"not ({path} eq 'x')").matches(record)
        assert flt(f"{path} in ('x', null)").matches(record)
    assert not flt("activityDateTime lt 2999-01-01").matches(record)


def test_values_of_another_type_never_compare() -> None:
    assert not flt("accountEnabled eq true").matches({"accountEnabled": 1})
    assert flt("accountEnabled ne true").matches({"accountEnabled": False})
    assert not flt("durationInMilliseconds eq 1").matches({"durationInMilliseconds": True})
    assert not flt("durationInMilliseconds ge 0").matches({"durationInMilliseconds": "250"})
    assert flt("durationInMilliseconds ge -5").matches({"durationInMilliseconds": 0})
    assert flt("accountEnabled in (true, 5)").matches({"accountEnabled": True})
    assert not flt("accountEnabled in (true, 5)").matches({"accountEnabled": 1})
    assert not flt("durationInMilliseconds in (1, 250)").matches({"durationInMilliseconds": True})
    assert flt("durationInMilliseconds in (1, 250)").matches({"durationInMilliseconds": 250})
    assert not flt("jobId eq 'x'").matches({"jobId": ["x"]})
    assert not flt("provisioningStatusInfo/status eq 'failure'").matches(
        {"provisioningStatusInfo": {"status": ["failure"]}}
    )
    assert not flt("activityDateTime gt 2000-01-01").matches({"activityDateTime": "yesterday"})
    assert not flt("activityDateTime gt 2000-01-01").matches({"activityDateTime": 1710087321})


def test_function_results_compare_with_true_or_false() -> None:
    rec = {"jobId": "Salesforce.a1b2"}
    assert flt("startswith(jobId, 'Sales') eq true").matches(rec)
    assert flt("contains(jobId, 'AWS') eq false").matches(rec)
    assert flt("contains(jobId, 'AWS') ne true").matches(rec)
    assert not flt("contains(jobId, 'Sales') ne true").matches(rec)


def test_equalities_pin_only_what_every_match_must_hold() -> None:
    assert flt("jobId eq 'a'").equalities("jobId") == {"a"}
    assert flt("jobId eq 'a' or jobId eq 'b'").equalities("jobId") == {"a", "b"}
    assert flt("jobId in ('a', 'b') and jobId eq 'b'").equalities("jobId") == {"b"}
    assert flt("jobId eq 'a' and jobId eq 'b'").equalities("jobId") == set()  # nothing can match
    assert flt("(jobId eq 'a' and id eq 'x') or jobId eq 'b'").equalities("jobId") == {"a", "b"}
    assert flt("servicePrincipal/id eq 'S' and activityDateTime ge 2024-01-01").equalities(
        "servicePrincipal/id"
    ) == {"S"}
    assert flt("JOBID eq 'a'").equalities("jobId") == {"a"}
    assert flt("provisioningAction eq 'Create'").equalities("provisioningAction") == {"create"}
    for text in (
        "jobId eq 'a' or id eq 'x'",
        "jobId ne 'a'",
        "not (jobId eq 'a')",
        "tolower(jobId) eq 'a'",
        "contains(jobId, 'a')",
        "startswith(jobId, 'a')",
        "jobId in ('a', null)",
        "jobId eq null",
        "jobId gt 'a'",
        "id eq 'a'",
    ):
        assert flt(text).equalities("jobId") is None, text


def test_bounds_come_from_and_and_from_or_only_when_every_branch_is_bounded() -> None:
    def b(text: str) -> tuple[datetime | None, datetime | None]:
        return flt(text).bounds("activityDateTime")

    d = lambda day: datetime(2024, 1, day, tzinfo=UTC)  # noqa: E731
    assert b("activityDateTime gt 2024-01-02 and activityDateTime lt 2024-01-05") == (d(2), d(5))
    assert b(
        "activityDateTime gt 2024-01-02 and activityDateTime gt 2024-01-03 and activityDateTime lt 2024-01-09"
    ) == (d(3), d(9))
    assert b("activityDateTime eq 2024-01-04") == (d(4), d(4))
    assert b("activityDateTime in (2024-01-04, 2024-01-02)") == (d(2), d(4))
    assert b(
        "(activityDateTime ge 2024-01-02 and activityDateTime le 2024-01-03) or activityDateTime eq 2024-01-07"
    ) == (d(2), d(7))
    assert b("activityDateTime ge 2024-01-02 or activityDateTime le 2024-01-03") == (None, None)
    assert b("activityDateTime ge 2024-01-02 or jobId eq 'a'") == (None, None)
    assert b("not (activityDateTime lt 2024-01-02)") == (None, None)
    assert b("activityDateTime ne 2024-01-02") == (None, None)
    assert b("jobId eq 'a' and (activityDateTime ge 2024-01-02 or activityDateTime ge 2024-01-03)") == (
        d(2),
        None,
    )
    assert b("jobId eq 'a'") == (None, None)


@pytest.mark.parametrize(
    ("text", "fragment", "position"),
    [
        ("jobId eq 'x' and", "syntax error at position 16 near ''", 16),
        ("jobId eq xx", "syntax error at position 9 near 'xx'", 9),
        ("jobId eq", "syntax error at position 8", 8),
        ("jobId 'x'", "syntax error at position 6 near ''x'': expected a comparison operator", 6),
        ("jobId eq 'x' and and jobId eq 'y'", "syntax error at position 17 near 'and'", 17),
        ("jobId eq 'x' xor jobId eq 'y'", "syntax error at position 13 near 'xor'", 13),
        ("jobId eq 'x' & id eq 'y'", "syntax error at position 13 near '& id eq 'y''", 13),
        ("jobId eq 'abc", "syntax error at position 9 near ''abc': the quoted string is not closed", 9),
        ("((jobId eq 'x')", "syntax error at position 15 near '': expected ')'", 15),
        ("jobId eq 'x')", "syntax error at position 12 near ')': unbalanced ')'", 12),
        ("", "syntax error at position 0 near '': the filter is empty", 0),
        ("   ", "syntax error at position 0", 0),
        ("not", "syntax error at position 3", 3),
        ("'x' eq jobId", "syntax error at position 0 near ''x'': expected a property", 0),
        ("jobId eq -", "syntax error at position 9 near '-'", 9),
        ("jobId eq 12abc", "syntax error at position 9 near '12a'", 9),
        ("contains(jobId 'x')", "syntax error at position 15 near ''x'': expected ','", 15),
        ("contains(jobId, 'x') eq 'y'", "syntax error at position 24 near ''y''", 24),
        ("contains(jobId, 'x') gt true", "syntax error at position 21 near 'gt'", 21),
        ("jobId in ('a', 'b'", "syntax error at position 18", 18),
        ("activityDateTime gt 2024-01-01T00:00:00.12345678Z", "syntax error at position 20", 20),
        ("activityDateTime ge 2024-01-01T00:00:00 02:00", "position 40 near '02:00'", 40),
        ("activityDateTime gt 2024-02-30", "'2024-02-30' at position 20 is not a valid date and time", 20),
        ("activityDateTime gt 2024-01-01T25:00:00Z", "at position 20 is not a valid date and time", 20),
        ("activityDateTime gt 2024-01-01T00:00:00+24:00", "at position 20 is not a valid date and time", 20),
        ("activityDateTime gt 0001-01-01T00:00:00+01:00", "at position 20 is not a valid date and time", 20),
        ("provisioningSteps/any(s:s/status eq 'failure')", "lambda operator 'any' at position 18", 18),
        ("provisioningSteps/ALL (s: s/status eq 'x')", "lambda operator 'ALL' at position 18", 18),
        ("endswith(jobId, 'x')", "function 'endswith' at position 0 is not supported", 0),
        ("length(jobId) eq 3", "function 'length' at position 0 is not supported", 0),
        ("jobId has 'x'", "operator 'has' at position 6 is not supported", 6),
        ("provisioningAction gt 'a'", "operator 'gt' at position 19 is not supported on enum property", 19),
        ("accountEnabled ge true", "operator 'ge' at position 15 is not supported on true or false", 15),
        ("contains(jobId, 5)", "second argument of contains() at position 16 must be a quoted string", 16),
        ("(" * 70 + "jobId eq 'x'" + ")" * 70, "nested more than 64 levels deep at position 64", 64),
    ],
)
def test_syntax_errors_name_the_position_and_the_text_there(text: str, fragment: str, position: int) -> None:
    with pytest.raises(ODataError) as caught:
        flt(text)
    message = str(caught.value)
    assert message.startswith("Invalid filter clause: ")
    assert fragment in message
    assert caught.value.position == position


@pytest.mark.parametrize(
    ("text", "fragment", "prop"),
    [
        ("foo eq 'x'", "property 'foo' is not supported.", "foo"),
        ("servicePrincipal eq 'x'", "property 'servicePrincipal' is not supported.", "servicePrincipal"),
        (
            "contains(tolower(servicePrincipal/appId), 'x')",
            "property 'servicePrincipal/appId' is not",
            "servicePrincipal/appId",
        ),
        (
            "jobId eq 3b2e5f41-0c1d-4a7e-9f00-7d1c2b3a4e5f",
            "Found operand types 'Edm.String' and 'Edm.Guid' for operator kind 'Equal' (property 'jobId' at "
            "position 0). Quote the value: '3b2e5f41-0c1d-4a7e-9f00-7d1c2b3a4e5f'",
            "jobId",
        ),
        (
            "servicePrincipal/id in ('a', ABCDEF12-0c1d-4a7e-9f00-7d1c2b3a4e5f)",
            "'Edm.Guid' for operator kind 'In'",
            "servicePrincipal/id",
        ),
        (
            "activityDateTime gt '2024-01-01'",
            "Found operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind 'GreaterThan'",
            "activityDateTime",
        ),
        ("activityDateTime lt 5", "'Edm.DateTimeOffset' and 'Edm.Int32'", "activityDateTime"),
        (
            "jobId ge 2024-01-01",
            "'Edm.String' and 'Edm.DateTimeOffset' for operator kind 'GreaterThanOrEqual'",
            "jobId",
        ),
        ("provisioningAction eq 1", "'Edm.Enum' and 'Edm.Int32'", "provisioningAction"),
        ("tolower(jobId) eq true", "'Edm.String' and 'Edm.Boolean'", "jobId"),
        (
            "contains(activityDateTime, '2024')",
            "property 'activityDateTime' is a date and time",
            "activityDateTime",
        ),
        (
            "tolower(activityDateTime) eq 'x'",
            "property 'activityDateTime' is a date and time",
            "activityDateTime",
        ),
    ],
)
def test_property_errors_name_the_property(text: str, fragment: str, prop: str) -> None:
    with pytest.raises(ODataError) as caught:
        flt(text)
    assert str(caught.value).startswith("Invalid filter clause: ")
    assert fragment in str(caught.value)
    assert caught.value.property == prop


def test_odata_errors_are_value_errors_under_the_provkit_root() -> None:
    with pytest.raises(ODataError) as caught:
        flt("foo eq 'x'")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ProvkitError)


def test_properties_are_matched_in_any_case_and_read_in_their_json_spelling() -> None:
    f = flt("SERVICEPRINCIPAL/DISPLAYNAME eq 'Contoso' and provisioningstatusinfo/STATUS eq 'Success'")
    assert f.matches(
        {"servicePrincipal": {"displayName": "Contoso"}, "provisioningStatusInfo": {"status": "success"}}
    )
    assert f.equalities("servicePrincipal/displayName") == {"Contoso"}
    deep = flt(
        "provisioningStatusInfo/errorInformation/errorCode eq 'SystemForCrossDomainIdentityManagementBadResponse'"
    )
    assert deep.matches(
        {
            "provisioningStatusInfo": {
                "errorInformation": {"errorCode": "SystemForCrossDomainIdentityManagementBadResponse"}
            }
        }
    )
    assert not deep.matches({"provisioningStatusInfo": {"errorInformation": None}})


def test_filters_compare_by_text_and_show_it() -> None:
    assert flt("jobId eq 'a'") == flt("jobId eq 'a'")
    assert "jobId eq 'a'" in repr(flt("jobId eq 'a'"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("activityDateTime desc", [("activityDateTime", True)]),
        ("activityDateTime", [("activityDateTime", False)]),
        ("ACTIVITYDATETIME Asc", [("activityDateTime", False)]),
        (" displayName desc , activityDateTime ", [("displayName", True), ("activityDateTime", False)]),
        ("", []),
    ],
)
def test_orderby_gives_paths_in_their_spelling_and_the_direction(text: str, expected: list) -> None:
    assert parse_orderby(text, allowed=("activityDateTime", "displayName")) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("jobId desc", "Invalid $orderby: property 'jobId' is not supported."),
        ("activityDateTime down", "syntax error at position 17 near 'down': expected asc or desc"),
        ("activityDateTime desc extra", "syntax error at position 0"),
        ("displayName,,activityDateTime", "syntax error at position 12"),
        ("activityDateTime, activityDateTime desc", "property 'activityDateTime' is named twice"),
    ],
)
def test_orderby_errors(text: str, fragment: str) -> None:
    with pytest.raises(ODataError, match=re.escape(fragment)):
        parse_orderby(text, allowed=("activityDateTime", "displayName"))
