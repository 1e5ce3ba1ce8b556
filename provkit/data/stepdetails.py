"""Reading a provisioning step's ``details``: the scoping keys and the scope evaluation, in every shape seen.

Two families of scoping keys exist, and both are read (case, spacing and punctuation ignored):

- provisioning logs (``EntrySynchronizationScoping`` in a list response; documented example in the
  cross-tenant synchronization "configure with Graph" guide, step 12): ``Active in the source system``,
  ``Assigned to the application``, ``User has the required role``, ``Scoping filter evaluation passed``;
- provisionOnDemand answers (documented example in the provisionOnDemand API page): ``IsActive``,
  ``Assigned``, ``IsEffectivelyEntitledForProvisioning``, ``IsInProvisioningScopeDisplayName`` ("True").

``ScopeEvaluationResult`` is read in two shapes:

- documented: a JSON object (usually sent as a string, sometimes a string inside a string) whose keys are
  ``<scoping filter name>.<source attribute> <OPERATOR> '<value>'`` and whose values are booleans, e.g.
  ``{"Marketing department filter.department EQUALS 'Marketing'": false}``; ``{}`` when no filter applies;
- inference: a structured ``{"scopingFilterGroups": [{"name", "result", "clauses": [{"sourceOperandName",
  "operatorName", "targetOperand", "sourceValue", "result"}]}]}``, which older provkit versions and
  the simulator wrote. It carries the source value; the documented form does not.

Filters are ORed and the clauses of one filter ANDed: an object is out of scope when every filter has a
false clause. :func:`scope_failure` names the first false clause of the first filter that failed.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ci_get",
    "DETAIL_KEYS",
    "ScopeClause",
    "ScopeFailure",
    "detail_column",
    "parse_bool",
    "parse_scope_key",
    "scope_clauses",
    "scope_failure",
]

# Details keys lifted into columns of the steps and events tables, in order of preference when a step
# carries more than one spelling. Documented: the log keys and the provisionOnDemand keys named above.
# IsInProvisioningScope is shown by the portal's on-demand view (reference 1.7), not in a documented
# JSON example.
DETAIL_KEYS: dict[str, tuple[str, ...]] = {
    "skip_reason": ("SkipReason",),
    "reportable_identifier": ("ReportableIdentifier",),
    "scoping_result": (
        "Scoping filter evaluation passed",
        "IsInProvisioningScope",
        "IsInProvisioningScopeDisplayName",
    ),
    "assigned": ("Assigned to the application", "Assigned"),
    "is_active": ("Active in the source system", "IsActive"),
    "effectively_entitled": ("IsEffectivelyEntitledForProvisioning",),
    "has_required_role": ("User has the required role",),
}

# inference: spellings that differ from the documented ones only in wording (the portal and the
# downloads have shortened some labels over the years); read as the same key.
_VARIANTS = {
    "assignedtoapplication": "assigned",
    "assignedtotheapp": "assigned",
    "assignedtoapp": "assigned",
    "activeinsourcesystem": "is_active",
    "activeinsource": "is_active",
    "userhasrequiredrole": "has_required_role",
    # seen in a public export of a group's log entry ("Group has the required role"); not in Microsoft's docs
    "grouphastherequiredrole": "has_required_role",
    "objecthastherequiredrole": "has_required_role",
    "hasrequiredrole": "has_required_role",
    "scopingfiltersevaluationpassed": "scoping_result",
    "scopingfilterevaluationpass": "scoping_result",
    "isinscope": "scoping_result",
    "iseffectivelyentitled": "effectively_entitled",
}


def _squash(key: str) -> str:
    return re.sub(r"[^0-9a-z]", "", key.lower())


_LOOKUP: dict[str, tuple[str, int]] = {}
for _column_name, _keys in DETAIL_KEYS.items():
    for _rank, _key in enumerate(_keys):
        _LOOKUP.setdefault(_squash(_key), (_column_name, _rank))
for _variant, _column_name in _VARIANTS.items():
    _LOOKUP.setdefault(_variant, (_column_name, len(DETAIL_KEYS[_column_name])))


@functools.lru_cache(maxsize=1024)
def detail_column(key: object) -> tuple[str, int] | None:
    """(column, rank) a details key is lifted into (rank 0 is the preferred spelling), or None."""
    if not isinstance(key, str):
        return None
    return _LOOKUP.get(_squash(key))


def is_scope_evaluation_key(key: object) -> bool:
    return isinstance(key, str) and _squash(key) == "scopeevaluationresult"


@dataclass(frozen=True)
class ScopeClause:
    """One evaluated scoping clause. ``source_value`` is only known from the structured shape."""

    filter: str | None
    attribute: str | None
    operator: str | None
    value: str | None
    result: bool | None
    source_value: str | None = None
    has_source_value: bool = False
    group: object = None  # what clauses of one filter share (its name, or its position when unnamed)

    @property
    def text(self) -> str:
        """``department EQUALS 'Marketing'`` (no quoted value for operators without one)."""
        head = " ".join(p for p in (self.attribute, self.operator) if p)
        return f"{head} '{self.value}'" if self.value not in (None, "") else head


@dataclass(frozen=True)
class ScopeFailure:
    """The clause that put an object out of scope: the filter's name, the clause and the source value
    ("(empty)" for a null value; None when the log does not say)."""

    filter: str | None
    clause: str
    value: str | None


_BOOL_TEXT = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def parse_bool(value: object) -> bool | None:
    """A detail's truth value from a bool, a number or text (True/False, yes/no, 1/0, any case); None if unreadable."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _BOOL_TEXT.get(value.strip().lower())
    if isinstance(value, int | float) and value == value:
        return bool(value)
    return None


def ci_get(mapping: dict[str, Any], key: str) -> Any:
    """``mapping[key]``, else the value of the first key equal to it ignoring case; None when there is none."""
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == lowered:
            return v
    return None


def parse_scope_key(key: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(filter, attribute, operator, value) from a documented ScopeEvaluationResult key.

    ``"Marketing department filter.department EQUALS 'Marketing'"`` gives ("Marketing department filter",
    "department", "EQUALS", "Marketing"). The value is everything from the first `` '`` on, its outer quotes
    removed; the attribute is the word after the last dot before it (a filter name may hold dots, a source
    attribute does not); the operator is the rest (``IS NOT NULL`` has no value). inference: keys without a
    filter name, and operators other than the documented EQUALS, are read the same way.
    """
    text = key.strip()
    value: str | None = None
    cut = text.find(" '")
    if cut >= 0:
        value = text[cut + 1 :].strip()
        if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
            value = value[1:-1]
        text = text[:cut]
    dot = text.rfind(".")
    filter_name = text[:dot].strip() or None if dot >= 0 else None
    rest = text[dot + 1 :].strip() if dot >= 0 else text
    attribute, _, operator = rest.partition(" ")
    return filter_name, attribute or None, operator.strip() or None, value


def _loads(value: object) -> object:
    """JSON text decoded, as often as it was encoded (a string inside a string); other values as given."""
    for _ in range(3):
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
    return value


def _structured(groups: list[Any]) -> list[ScopeClause]:
    out = []
    for index, group in enumerate(groups):
        if not isinstance(group, dict):
            continue
        name = ci_get(group, "name")
        name = str(name) if name not in (None, "") else None
        clauses = [c for c in (ci_get(group, "clauses") or []) if isinstance(c, dict)]
        if not clauses:
            # A group with only its result: one clause standing for it.
            out.append(ScopeClause(name, None, None, None, parse_bool(ci_get(group, "result")), group=index))
        for c in clauses:
            target = ci_get(c, "targetOperand")
            if isinstance(target, list):
                target = ", ".join(str(t) for t in target)
            has_value = any(isinstance(k, str) and k.lower() == "sourcevalue" for k in c)
            value = ci_get(c, "sourceValue")
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value) if value else None
            attribute = ci_get(c, "sourceOperandName")
            operator = ci_get(c, "operatorName")
            out.append(
                ScopeClause(
                    name,
                    None if attribute is None else str(attribute),
                    None if operator is None else str(operator),
                    None if target in (None, "") else str(target),
                    parse_bool(ci_get(c, "result")),
                    None if value is None else str(value),
                    has_value,
                    index,
                )
            )
    return out


def scope_clauses(evaluation: object) -> list[ScopeClause] | None:
    """Every clause of a ScopeEvaluationResult in order, or None when it cannot be read.

    ``{}`` (no scoping filter) gives an empty list.
    """
    evaluation = _loads(evaluation)
    if isinstance(evaluation, list):
        return _structured(evaluation)
    if not isinstance(evaluation, dict):
        return None
    groups = ci_get(evaluation, "scopingFilterGroups")
    if isinstance(groups, list):
        return _structured(groups)
    out = []
    for key, result in evaluation.items():
        if not isinstance(key, str):
            continue
        filter_name, attribute, operator, value = parse_scope_key(key)
        out.append(
            ScopeClause(filter_name, attribute, operator, value, parse_bool(result), group=filter_name)
        )
    return out


def _failure(clauses: list[ScopeClause], groups_passed: dict[object, bool | None]) -> ScopeFailure | None:
    by_filter: dict[object, list[ScopeClause]] = {}
    for clause in clauses:
        by_filter.setdefault(clause.group, []).append(clause)
    first: ScopeClause | None = None
    for name, members in by_filter.items():
        passed = groups_passed.get(name)
        if passed is None:
            passed = all(c.result is True for c in members)
        if passed:
            return None  # one filter passed: in scope
        if first is None:
            first = next((c for c in members if c.result is False), None)
    if first is None:
        return None
    if first.has_source_value:
        value: str | None = "(empty)" if first.source_value in (None, "") else first.source_value
    else:
        value = None
    return ScopeFailure(first.filter, first.text or "(filter evaluated false)", value)


@functools.lru_cache(maxsize=4096)
def _failure_of_text(text: str) -> ScopeFailure | None:
    # The same filter evaluated against the same value repeats across thousands of entries: cache it.
    return _failure_of(_loads(text))


def _failure_of(evaluation: object) -> ScopeFailure | None:
    clauses = scope_clauses(evaluation)
    if not clauses:
        return None
    passed: dict[object, bool | None] = {}
    groups = ci_get(evaluation, "scopingFilterGroups") if isinstance(evaluation, dict) else evaluation
    if isinstance(groups, list):
        for index, group in enumerate(groups):
            if isinstance(group, dict):
                passed[index] = parse_bool(ci_get(group, "result"))
    return _failure(clauses, passed)


def scope_failure(evaluation: object) -> ScopeFailure | None:
    """Why a ScopeEvaluationResult put the object out of scope, or None (in scope, no filter, unreadable)."""
    if isinstance(evaluation, str):
        return _failure_of_text(evaluation)
    return _failure_of(evaluation)
