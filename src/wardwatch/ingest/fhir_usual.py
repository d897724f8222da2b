"""The usual Observation of a bulk export, read in one pass; anything else goes the long way.

Nearly every line of a bulk export is the same shape: one LOINC-coded Quantity, at one
dateTime, of a Patient (and an Encounter) already referred to earlier in the file. Reading it
through `fhir._observation`, which names the element at fault for any resource however wrong,
is about a hundred small function calls, most of a worker's time. `usual_rows` checks that
shape inline and returns the rows; where anything differs from it (a component, another
value[x], a withdrawn status, a reference not yet resolved, any doubt about a type) it returns
None and the caller reads the resource with `fhir._observation`, which gives the same rows or
the reason to quarantine it. So this path may only ever accept less, never more, and never
differently: tests/ingest/test_fhir_usual.py holds it to that on generated resources.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from wardwatch.ingest import fhir

# Elements that make an Observation unusual here (the long way reads them, or says why not).
_UNUSUAL = (fhir._VALUE_KEYS | fhir._EFFECTIVE_KEYS | {"component", "hasMember",
            "dataAbsentReason"}) - {"valueQuantity", "effectiveDateTime"}  # fmt: skip
_USUAL_STATUS = fhir._OBSERVATION_STATUS - fhir._WITHDRAWN.keys()
_EXACT = 2**53  # integers a float holds exactly


def usual_rows(
    resource: dict[str, Any], key: str, context: Any, text: str | None
) -> tuple[Any, ...] | None:
    """The one row (the `Reported` fields) of a usual Observation, or None to go the long way."""
    if not _UNUSUAL.isdisjoint(resource):
        return None
    rid = resource.get("id")
    if rid is not None and (type(rid) is not str or not fhir._ID.fullmatch(rid)):
        return None
    status = resource.get("status")
    if type(status) is not str or status not in _USUAL_STATUS:
        return None
    patient = _resolved(resource.get("subject"), "Patient", context)
    if patient is None:
        return None
    encounter: str | None = None
    if resource.get("encounter") is not None:
        encounter = _resolved(resource["encounter"], "Encounter", context)
        if encounter is None:
            return None
    when = _moment(resource.get("effectiveDateTime"), False)
    if when is None:
        return None
    issued = resource.get("issued")  # checked, though the effective time is the one kept
    if issued is not None and _moment(issued, True) is None:
        return None
    concept = _concept(resource.get("code"))
    if concept is None:
        return None
    value = _quantity(resource.get("valueQuantity"))
    if value is None:
        return None
    payload = text if text is not None else fhir._dump(resource)
    return (patient, encounter, *concept, *value, when, fhir.SOURCE, key, payload)


def _resolved(value: object, target: str, context: Any) -> str | None:
    """The id a literal reference resolved earlier in this document points at, if a `target`."""
    if type(value) is not dict:
        return None
    reference = value.get("reference")
    if type(reference) is not str:
        return None
    found = context.refs.get(reference)
    if type(found) is not tuple or found[0] != target:
        return None  # not resolved yet, unresolvable, or of another type: the long way
    return found[1]


def _moment(value: object, instant: bool) -> datetime | None:
    if type(value) is not str:
        return None
    parsed = fhir._parse_moment(value, instant)
    return parsed if type(parsed) is datetime else None


def _concept(value: object) -> tuple[str, str, str | None] | None:
    """As `fhir._concept`: every Coding valid, then the first LOINC one with a code, else
    the first with a code."""
    if type(value) is not dict:
        return None
    codings = value.get("coding")
    text = value.get("text")
    if type(codings) is not list or not fhir._is_text(text):
        return None
    first = loinc = None
    for coding in codings:
        if type(coding) is not dict:
            return None
        system, code = coding.get("system"), coding.get("code")
        try:
            if not fhir._coding_ok(system, code, coding.get("display")):
                return None
        except TypeError:  # unhashable: a list or object where text belongs
            return None
        if code is not None:
            first = first or coding
            if loinc is None and system == fhir.LOINC:
                loinc = coding
    chosen = loinc or first
    if chosen is None:
        return None
    return chosen.get("system") or "", chosen["code"], chosen.get("display") or text


def _quantity(value: object) -> tuple[float, None, str | None, str | None] | None:
    """(value, value_text, comparator, unit) as `fhir._quantity` gives them."""
    if type(value) is not dict:
        return None
    number = value.get("value")
    if type(number) is int and -_EXACT < number < _EXACT:
        number = float(number)
    if type(number) is not float or not math.isfinite(number):
        return None
    comparator = value.get("comparator")
    if comparator is not None and (type(comparator) is not str
                                   or comparator not in fhir._COMPARATORS):  # fmt: skip
        return None
    unit, system, code = value.get("unit"), value.get("system"), value.get("code")
    if not fhir._quantity_ok(unit, system, code):
        return None
    return number, None, comparator, fhir.quantity_unit(unit, system, code)
