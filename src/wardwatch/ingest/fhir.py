"""FHIR R4 in, domain objects out.

    parse_json(document)       a Bundle (any Bundle.type) or one Patient, Encounter or Observation
    parse_ndjson(lines)        bulk-data NDJSON: one resource per line (rows=True: reported
                               items as plain tuples, for bulk ingest)
    missing_patients(parsed)   patient ids referred to without a Patient in the same document

What goes wrong, and where it ends up:

    FHIRError(ValueError)   the whole document is unusable: not JSON, not a FHIR resource, a
                            top-level type wardwatch does not read, a Bundle without a valid type
    Rejection (returned)    one resource (or NDJSON line) in a usable document is wrong; the reason
                            names the element and the problem, the payload keeps the resource
    ignored (returned)      resources wardwatch does not use (Claim, Immunization, ...): counted

Validation. Full fhir.resources R4B validation runs at about 10,000 Observations/s on a 2-core
machine, ten times too slow for bulk ingest. So by default every element this module reads is
checked against the constraints R4B puts on it (types, required elements, the id / code /
decimal / dateTime / instant patterns, one value[x] and one effective[x]), plus the required
bindings R4B leaves unchecked (status, comparator, gender). Elements that are never read stay
unvalidated in the payload. `strict=True` adds full R4B model validation of every Patient,
Encounter and Observation. The tests check that the fast path accepts nothing R4B rejects on
the elements it reads.

Choices:
- code: the http://loinc.org coding if there is one, else the first coding with a code; system
  and code exactly as sent (a CIEL id under the LOINC system is the normalizer's to catch).
- unit: Quantity.code when Quantity.system is UCUM, else Quantity.unit.
- time: effectiveDateTime, effectivePeriod.start, effectiveInstant, issued: the first present,
  as an aware UTC datetime. A date without a time becomes midnight UTC; a year or a month alone
  is too coarse to place in an hourly frame and is rejected.
- components (blood-pressure panels): one Reported each, source_id "<id>#component<i>" with i
  counted from 0 as in FHIRPath; the parent only when it has its own value[x] or
  dataAbsentReason. valueDecimal is not an R4 Observation element and is rejected.
- Encounter.unit: the display of the active location (else the first), else serviceType, else
  the class (EMER becomes "ED"). admitted_at is period.start, discharged_at period.end.
- source_id: the resource id, else the entry's fullUrl, else "sha256:" of the canonical JSON
  (so an identical resend dedups). Rejected Patients and Encounters are "Patient/<id>" and
  "Encounter/<id>" so they cannot clash with Observation ids in quarantine.
- references: "Type/id", absolute URLs ending in Type/id (optionally /_history/v), and any
  fullUrl of the same Bundle ("urn:uuid:..."). An unresolvable literal reference is rejected;
  an identifier-only reference to an optional Encounter is dropped.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pydantic_core

from wardwatch.domain import Encounter, Parsed, Patient, Rejection, Reported, Sex

SOURCE = "fhir"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

Resource = dict[str, Any]

R4B_RESOURCE_TYPES: frozenset[str] = frozenset(
    """Account ActivityDefinition AdministrableProductDefinition AdverseEvent AllergyIntolerance
    Appointment AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct
    BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry ChargeItem
    ChargeItemDefinition Citation Claim ClaimResponse ClinicalImpression ClinicalUseDefinition
    CodeSystem Communication CommunicationRequest CompartmentDefinition Composition ConceptMap
    Condition Consent Contract Coverage CoverageEligibilityRequest CoverageEligibilityResponse
    DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement
    DiagnosticReport DocumentManifest DocumentReference Encounter Endpoint EnrollmentRequest
    EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceReport EvidenceVariable
    ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group
    GuidanceResponse HealthcareService ImagingStudy Immunization ImmunizationEvaluation
    ImmunizationRecommendation ImplementationGuide Ingredient InsurancePlan Invoice Library
    Linkage List Location ManufacturedItemDefinition Measure MeasureReport Media Medication
    MedicationAdministration MedicationDispense MedicationKnowledge MedicationRequest
    MedicationStatement MedicinalProductDefinition MessageDefinition MessageHeader
    MolecularSequence NamingSystem NutritionOrder NutritionProduct Observation
    ObservationDefinition OperationDefinition OperationOutcome Organization
    OrganizationAffiliation PackagedProductDefinition Parameters Patient PaymentNotice
    PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole Procedure
    Provenance Questionnaire QuestionnaireResponse RegulatedAuthorization RelatedPerson
    RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject
    RiskAssessment Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition
    StructureDefinition StructureMap Subscription SubscriptionStatus SubscriptionTopic Substance
    SubstanceDefinition SupplyDelivery SupplyRequest Task TerminologyCapabilities TestReport
    TestScript ValueSet VerificationResult VisionPrescription""".split()  # noqa: SIM905 (a literal: 141 lines)
)

BUNDLE_TYPES = frozenset(
    ("document", "message", "transaction", "transaction-response", "batch", "batch-response",
     "history", "searchset", "collection")
)  # fmt: skip
_OBSERVATION_STATUS = frozenset(
    ("registered", "preliminary", "final", "amended", "corrected", "cancelled",
     "entered-in-error", "unknown")
)  # fmt: skip
_ENCOUNTER_STATUS = frozenset(
    ("planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
     "entered-in-error", "unknown")
)  # fmt: skip
_WITHDRAWN = {
    "entered-in-error": "the sender withdrew it as entered in error; it must not be used",
    "cancelled": "it was cancelled and never completed",
}
_COMPARATORS = frozenset(("<", "<=", ">=", ">"))
_SEXES = {"male": Sex.MALE, "female": Sex.FEMALE, "other": Sex.UNKNOWN, "unknown": Sex.UNKNOWN}
_CLASS_UNITS = {
    "EMER": "ED", "IMP": "inpatient", "ACUTE": "inpatient", "NONAC": "inpatient",
    "OBSENC": "observation", "SS": "short stay", "AMB": "ambulatory", "HH": "home health",
    "VR": "virtual", "PRENC": "pre-admission", "FLD": "field",
}  # fmt: skip
_VALUE_KEYS = frozenset(
    ("valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean", "valueInteger",
     "valueRange", "valueRatio", "valueSampledData", "valueTime", "valueDateTime", "valuePeriod",
     "valueDecimal")
)  # fmt: skip
_EFFECTIVE_KEYS = frozenset(
    ("effectiveDateTime", "effectivePeriod", "effectiveTiming", "effectiveInstant")
)

_UNREAD_TYPES = R4B_RESOURCE_TYPES - {"Patient", "Encounter", "Observation", "Bundle"}
_ID = re.compile(r"[A-Za-z0-9\-.]+")
_CODE = re.compile(r"[^\s]+(\s[^\s]+)*")
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH = r"-(0[1-9]|1[0-2])"
_DAY = r"-(0[1-9]|[1-2][0-9]|3[0-1])"
_CLOCK = r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|[+\-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_DATE = re.compile(rf"{_YEAR}({_MONTH}({_DAY})?)?")
_DATETIME = re.compile(rf"{_YEAR}({_MONTH}({_DAY}({_CLOCK}{_ZONE})?)?)?")
_INSTANT = re.compile(rf"{_YEAR}{_MONTH}{_DAY}{_CLOCK}{_ZONE}")
_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?")
_LITERAL = re.compile(r"(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]+)(?:/_history/[A-Za-z0-9\-.]+)?")
_LEADING_TYPE = re.compile(r'\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]+)"')


class FHIRError(ValueError):
    """The whole document is unusable: not JSON, not a FHIR resource, or nothing wardwatch reads."""


@dataclass(slots=True)
class FHIRParseResult:
    """What one document gave: domain objects, rejections, and counts of resources not used."""

    parsed: Parsed = field(default_factory=Parsed)
    ignored: Counter[str] = field(default_factory=Counter)
    identifiers: dict[str, list[tuple[str | None, str]]] = field(default_factory=dict)
    # The reported items as tuples of the `Reported` fields, in order: filled while reading,
    # then made `parsed.reported` unless the caller asked for the rows (see parse_ndjson).
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    # With rows=True: the number of the line each row was read from (its payload is that line).
    lines: list[int] = field(default_factory=list)


class _Invalid(Exception):
    """One resource is wrong; `reason` starts with the element path."""

    def __init__(self, reason: str, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(slots=True)
class _Context:
    full_urls: dict[str, tuple[Any, str]]
    strict: bool
    refs: dict[str, tuple[str, str] | str] = field(default_factory=dict)


# --- public API -----------------------------------------------------------------------------


def parse_json(data: str | bytes | dict[str, Any], *, strict: bool = False) -> FHIRParseResult:
    """Read a Bundle or one Patient / Encounter / Observation, as JSON text, bytes or a dict."""
    document = data if isinstance(data, dict) else _decode(data)
    if not isinstance(document, dict):
        raise FHIRError(f"not a FHIR resource: the document is {_kind(document)}, not an object")
    rtype = document.get("resourceType")
    out = FHIRParseResult()
    if rtype == "Bundle":
        _read_bundle(document, out, strict)
    elif isinstance(rtype, str) and rtype in _READERS:
        _read_resource(document, None, _Context({}, strict), out, None)
    elif rtype is None:
        raise FHIRError("not a FHIR resource: the JSON object has no resourceType")
    else:
        raise FHIRError(
            f"resourceType {_show(rtype)} is not something wardwatch reads: "
            "send a Bundle, Patient, Encounter or Observation"
        )
    return _reported(out)


def parse_ndjson(
    lines: Iterable[str | bytes], *, strict: bool = False, first_line: int = 1, rows: bool = False
) -> FHIRParseResult:
    """Read bulk-data NDJSON: an open file, a list of lines, or the whole text.

    A bad line is a Rejection (malformed_json / not_fhir) and the rest is read; only a first
    non-blank line that is not a JSON object raises FHIRError (then this is not NDJSON).
    Lines whose leading "resourceType" names a type wardwatch does not use are counted unread.
    `first_line` > 1 reads a later piece of a file: reasons give the file's line numbers, and
    the file has already shown it is NDJSON.

    `rows=True` leaves the reported items in `rows`, as tuples of the `Reported` fields, and
    `parsed.reported` empty: bulk ingest turns them straight into a frame, and a frozen
    Reported made of each on the way cost it a fifth more time to read a piece. `lines` then
    says which line each row came from.
    """
    if isinstance(lines, str | bytes):
        lines = lines.splitlines()
    out = FHIRParseResult()
    context = _Context({}, strict)
    seen_data = first_line > 1
    for number, line in enumerate(lines, start=first_line):
        text = _line_text(line, number, seen_data, out)
        if text is None:
            continue
        before = len(out.rows)
        seen_data = _read_line(text, number, seen_data, context, out)
        if rows:
            out.lines.extend(itertools.repeat(number, len(out.rows) - before))
    return out if rows else _reported(out)


def _reported(out: FHIRParseResult) -> FHIRParseResult:
    """`out` with its rows made the `Reported` items of `out.parsed`."""
    out.parsed.reported.extend(itertools.starmap(Reported, out.rows))
    out.rows = []
    return out


def missing_patients(parsed: Parsed) -> list[str]:
    """Patient ids that observations or encounters refer to without a Patient in the document."""
    defined = {p.patient_id for p in parsed.patients}
    referred = {r.patient_id for r in parsed.reported} | {e.patient_id for e in parsed.encounters}
    return sorted(referred - defined)


# --- documents and lines --------------------------------------------------------------------


def _decode(data: object) -> Any:
    if not isinstance(data, str | bytes | bytearray):
        raise FHIRError(f"expected JSON text, bytes or a dict, got {type(data).__name__}")
    try:
        return pydantic_core.from_json(data, allow_inf_nan=False)
    except ValueError as error:
        raise FHIRError(f"not valid JSON: {error}") from None


def _read_bundle(bundle: Resource, out: FHIRParseResult, strict: bool) -> None:
    kind = bundle.get("type")
    if not isinstance(kind, str) or kind not in BUNDLE_TYPES:
        raise FHIRError(
            f"Bundle.type is {_show(kind)}; expected one of {', '.join(sorted(BUNDLE_TYPES))}"
        )
    entries = bundle.get("entry")
    if entries is None:
        return
    if not isinstance(entries, list):
        raise FHIRError(f"Bundle.entry must be a list of entries, got {_kind(entries)}")
    context = _Context(_full_urls(entries), strict)
    for index, entry in enumerate(entries):
        _read_entry(entry, index, context, out)


def _full_urls(entries: list[Any]) -> dict[str, tuple[Any, str]]:
    found: dict[str, tuple[Any, str]] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            url = entry.get("fullUrl")
            if isinstance(url, str) and url:
                found[url] = (entry["resource"].get("resourceType"), _key(entry["resource"], url))
    return found


def _read_entry(entry: object, index: int, context: _Context, out: FHIRParseResult) -> None:
    if not isinstance(entry, dict):
        why = f"Bundle.entry[{index}]: is {_kind(entry)}, not an entry object"
        _reject(out, _digest(entry), "not_fhir", why, _dump(entry))
        return
    resource = entry.get("resource")
    if resource is None:
        out.ignored["Bundle.entry without resource"] += 1
        return
    url = entry.get("fullUrl")
    _read_resource(resource, url if isinstance(url, str) and url else None, context, out, None)


def _line_text(line: str | bytes, number: int, seen: bool, out: FHIRParseResult) -> str | None:
    if isinstance(line, bytes | bytearray):
        try:
            line = bytes(line).decode("utf-8")
        except UnicodeDecodeError as error:
            _bad_line(out, repr(line), number, seen, "malformed_json", f"not UTF-8 ({error})")
            return None
    if not isinstance(line, str):
        raise FHIRError(f"line {number}: expected text or bytes, got {type(line).__name__}")
    text = line.strip()
    return text or None


def _read_line(text: str, number: int, seen: bool, context: _Context, out: FHIRParseResult) -> bool:
    """Read one non-blank NDJSON line; return True once the file has shown it is NDJSON."""
    leading = _LEADING_TYPE.match(text)
    if leading and leading[1] in _UNREAD_TYPES:
        out.ignored[leading[1]] += 1
        return True
    try:
        resource = pydantic_core.from_json(text, allow_inf_nan=False)
    except ValueError as error:
        _bad_line(out, text, number, seen, "malformed_json", f"not valid JSON ({error})")
        return True
    if not isinstance(resource, dict):
        _bad_line(out, text, number, seen, "not_fhir", f"is {_kind(resource)}, not a resource")
        return True
    _read_resource(resource, None, context, out, text)
    return True


def _bad_line(
    out: FHIRParseResult, text: str, number: int, seen: bool, code: str, why: str
) -> None:
    if not seen:
        raise FHIRError(f"not NDJSON: line {number} {why}; NDJSON has one JSON resource per line")
    _reject(out, _digest(text), code, f"line {number}: {why}", text)


# --- one resource ---------------------------------------------------------------------------


def _read_resource(
    resource: object, url: str | None, context: _Context, out: FHIRParseResult, text: str | None
) -> None:
    if not isinstance(resource, dict):
        why = f"resource: is {_kind(resource)}, not a FHIR resource object"
        _reject(out, _digest(resource), "not_fhir", why, _dump(resource))
        return
    rtype = resource.get("resourceType")
    reader = _READERS.get(rtype) if isinstance(rtype, str) else None
    if reader is None:
        _not_read(resource, rtype, url, out)
        return
    key = _key(resource, url)
    if rtype == "Observation" and not context.strict:
        usual = fhir_usual.usual_rows(resource, key, context, text)
        if usual is not None:
            out.rows.append(usual)
            return
    try:
        if context.strict:
            _validate_r4b(resource, rtype)
        reader(resource, key, context, out, text)
    except _Invalid as bad:
        source_id = key if rtype == "Observation" else f"{rtype}/{key}"
        patient = _patient_hint(resource, rtype, key, context)
        _reject(out, source_id, bad.code, f"{rtype}.{bad.reason}", text or _dump(resource), patient)


def _not_read(resource: Resource, rtype: object, url: str | None, out: FHIRParseResult) -> None:
    if isinstance(rtype, str) and rtype in _UNREAD_TYPES:
        out.ignored[rtype] += 1
        return
    if rtype == "Bundle":
        code, why = "unsupported", "Bundle: a nested Bundle is not read; send its entries instead"
    elif rtype is None:
        code, why = "not_fhir", "resourceType: missing"
    else:
        code, why = "unknown_resource_type", f"resourceType: {_show(rtype)} is not an R4 type"
    _reject(out, _key(resource, url), code, why, _dump(resource))


def _reject(
    out: FHIRParseResult,
    source_id: str,
    code: str,
    reason: str,
    payload: str,
    patient_id: str | None = None,
) -> None:
    out.parsed.rejections.append(Rejection(SOURCE, source_id, code, reason, payload, patient_id))


def _key(resource: Resource, url: str | None) -> str:
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        return rid
    return url if url else _digest(resource)


def _patient_hint(resource: Resource, rtype: str, key: str, context: _Context) -> str | None:
    if rtype == "Patient":
        return key
    try:
        return _reference(resource.get("subject"), "subject", "Patient", context)
    except _Invalid:
        return None


@functools.cache
def _r4b_models() -> dict[str, Any]:
    from fhir.resources.R4B.encounter import Encounter as R4BEncounter
    from fhir.resources.R4B.observation import Observation as R4BObservation
    from fhir.resources.R4B.patient import Patient as R4BPatient

    return {"Patient": R4BPatient, "Encounter": R4BEncounter, "Observation": R4BObservation}


def _validate_r4b(resource: Resource, rtype: str) -> None:
    try:
        _r4b_models()[rtype].model_validate(resource)
    except (ValueError, TypeError) as error:  # pydantic.ValidationError is a ValueError
        raise _Invalid(_describe(error)) from None


def _describe(error: Exception) -> str:
    errors = getattr(error, "errors", None)
    if errors is None:
        return f"(resource): {error}"
    found = [
        f"{'.'.join(str(part) for part in e['loc']) or '(resource)'}: {e['msg']}"
        for e in errors(include_url=False, include_input=False)
    ]
    more = f"; and {len(found) - 3} more" if len(found) > 3 else ""
    return "; ".join(found[:3]) + more + " (full R4B validation)"


# --- Patient and Encounter ------------------------------------------------------------------


def _patient(resource: Resource, key: str, context: _Context, out: FHIRParseResult, _: Any) -> None:
    _check_id(resource)
    gender = resource.get("gender")
    if gender is not None and (not isinstance(gender, str) or gender not in _SEXES):
        raise _Invalid(f"gender: {_show(gender)} is not one of male, female, other, unknown")
    birth = _birth_date(resource.get("birthDate"))
    identifiers = _identifiers(resource.get("identifier"))
    out.parsed.patients.append(Patient(key, _SEXES.get(gender, Sex.UNKNOWN), birth, SOURCE))
    if identifiers:
        out.identifiers[key] = identifiers


def _birth_date(value: object) -> date | None:
    """A full birthDate as a date; a year or year-month alone gives None (never invented)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise _Invalid(f"birthDate: {_show(value)} is not a FHIR date (YYYY[-MM[-DD]])")
    try:
        return date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        raise _Invalid(f"birthDate: {_show(value)} is not a calendar date") from None


def _identifiers(value: object) -> list[tuple[str | None, str]]:
    found: list[tuple[str | None, str]] = []
    for i, item in enumerate(_list(value, "identifier")):
        path = f"identifier[{i}]"
        system = _uri(_object(item, path).get("system"), path, ".system")
        text = _string(item.get("value"), path, ".value")
        if text is not None:
            found.append((system, text))
    return found


def _encounter(
    resource: Resource, key: str, context: _Context, out: FHIRParseResult, _: Any
) -> None:
    _check_id(resource)
    _status(resource.get("status"), _ENCOUNTER_STATUS)
    klass = resource.get("class")
    if klass is None:
        raise _Invalid("class: missing; an R4 Encounter needs its class (a Coding)")
    klass = _coding(klass, "class")
    patient = _reference(resource.get("subject"), "subject", "Patient", context)
    start = _period_start(resource.get("period"), "period")
    end = _period_end(resource.get("period"), "period")
    unit = _location_unit(resource.get("location")) or _service_unit(resource.get("serviceType"))
    unit = unit or _CLASS_UNITS.get(klass.get("code")) or klass.get("display") or klass.get("code")
    out.parsed.encounters.append(
        Encounter(key, patient, unit, start, discharged_at=end, source=SOURCE)
    )


def _location_unit(value: object) -> str | None:
    """The display of the active location, else of the first one."""
    locations = _list(value, "location")
    for i, item in enumerate(locations):
        path = f"location[{i}]"
        _code(_object(item, path).get("status"), path, ".status")
        _string(_object(item.get("location"), path + ".location").get("display"), path, ".display")
    chosen = [item for item in locations if item.get("status") == "active"] or locations[:1]
    return chosen[0]["location"].get("display") if chosen else None


def _service_unit(value: object) -> str | None:
    if value is None:
        return None
    codings, text = _codeable(value, "serviceType")
    return text or next((c["display"] for c in codings if c.get("display")), None)


# --- Observation ----------------------------------------------------------------------------


def _observation(
    resource: Resource, key: str, context: _Context, out: FHIRParseResult, text: str | None
) -> None:
    _check_id(resource)
    _status(resource.get("status"), _OBSERVATION_STATUS)
    patient = _reference(resource.get("subject"), "subject", "Patient", context)
    encounter = _reference(resource.get("encounter"), "encounter", "Encounter", context, False)
    when = _effective(resource)
    concept = _concept(resource.get("code"), "code")
    components = _list(resource.get("component"), "component")
    grouping = bool(components) or resource.get("hasMember") is not None
    payload = text if text is not None else _dump(resource)
    rows = []  # of the Reported fields (see FHIRParseResult.rows)
    if not grouping or _has_value(resource):
        value = _value(resource, "")
        rows.append((patient, encounter, *concept, *value, when, SOURCE, key, payload))
    for i, component in enumerate(components):
        prefix = f"component[{i}]."
        element = _object(component, prefix[:-1])
        concept = _concept(element.get("code"), prefix + "code")
        value = _value(element, prefix)
        source_id = f"{key}#component{i}"
        rows.append((patient, encounter, *concept, *value, when, SOURCE, source_id, payload))
    if not rows:
        out.ignored["Observation panel without value"] += 1
    out.rows.extend(rows)


def _has_value(element: Resource) -> bool:
    return element.get("dataAbsentReason") is not None or bool(
        _one_of(element, _VALUE_KEYS, "value[x]")
    )


def _one_of(element: Resource, names: frozenset[str], label: str) -> str | None:
    """The one choice-type element present (value[x], effective[x]), None if none is."""
    present = names.intersection(element)
    if len(present) == 1:
        (name,) = present
        if element[name] is not None:
            return name
    elif not present:
        return None
    present = frozenset(k for k in present if element[k] is not None)
    if len(present) > 1:
        raise _Invalid(f"{label}: only one is allowed, got {', '.join(sorted(present))}")
    return next(iter(present), None)


def _effective(resource: Resource) -> datetime | None:
    issued = resource.get("issued")
    issued_at = None if issued is None else _moment(issued, "issued", True)
    name = _one_of(resource, _EFFECTIVE_KEYS, "effective[x]")
    if name is None or name == "effectiveTiming":  # a schedule, not a moment: fall back to issued
        return issued_at
    if name == "effectivePeriod":
        return _period_start(resource[name], name) or issued_at
    return _moment(resource[name], name, name == "effectiveInstant")


_Value = tuple[float | None, str | None, str | None, str | None]


def _value(element: Resource, prefix: str) -> _Value:
    """(value, value_text, comparator, unit) of one value[x], or of its dataAbsentReason."""
    absent = _absent(element.get("dataAbsentReason"), prefix)  # checked even beside a value
    name = _one_of(element, _VALUE_KEYS, prefix + "value[x]")
    if name is None:
        return None, absent, None, None
    if name == "valueQuantity":
        return _quantity(element[name], prefix + name)
    if name == "valueInteger":
        return float(_integer(element[name], prefix + name)), None, None, None
    return None, _VALUE_TEXT.get(name, _other_value)(element[name], prefix + name), None, None


def _quantity(value: object, path: str) -> _Value:
    quantity = _object(value, path)
    number, comparator = quantity.get("value"), quantity.get("comparator")
    unit, system, code = quantity.get("unit"), quantity.get("system"), quantity.get("code")
    if not (type(number) is float and math.isfinite(number)):  # the common case, checked inline
        number = None if number is None else _decimal(number, path, ".value")
    if comparator is not None and (
        not isinstance(comparator, str) or comparator not in _COMPARATORS
    ):
        raise _Invalid(f"{path}.comparator: {_show(comparator)} is not one of <, <=, >=, >")
    if not _quantity_ok(unit, system, code):  # say which one is wrong
        _string(unit, path, ".unit")
        _uri(system, path, ".system")
        _code(code, path, ".code")
    return number, None, comparator, quantity_unit(unit, system, code)


def quantity_unit(unit: object, system: object, code: object) -> Any:
    """The unit a Quantity is read in: its UCUM code when it has one, else its display unit."""
    return code if system == UCUM and code is not None else unit


def _absent(value: object, prefix: str) -> str | None:
    if value is None:
        return None
    codings, text = _codeable(value, prefix + "dataAbsentReason")
    reason = text or next((c["code"] for c in codings if c.get("code")), None) or "no reason"
    return f"data absent: {reason}"


def _concept_text(value: object, path: str) -> str | None:
    codings, text = _codeable(value, path)
    first = codings[0] if codings else {}
    return text or first.get("display") or first.get("code")


def _boolean_text(value: object, path: str) -> str:
    if not isinstance(value, bool):
        raise _Invalid(f"{path}: {_show(value)} is not true or false")
    return "true" if value else "false"


def _pattern_text(pattern: re.Pattern[str], what: str) -> Callable[[object, str], str]:
    def check(value: object, path: str) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise _Invalid(f"{path}: {_show(value)} is not a FHIR {what}")
        return value

    return check


def _decimal_text(value: object, path: str) -> str:
    why = "not an element of an R4 Observation; send valueQuantity (with its unit) or valueInteger"
    raise _Invalid(f"{path}: {why}")


def _other_value(value: object, path: str) -> str:
    """Range, Ratio, Period, SampledData: kept as compact JSON text, not read further."""
    return _dump(_object(value, path))


_VALUE_TEXT: dict[str, Callable[[object, str], str | None]] = {
    "valueString": lambda value, path: _string(value, path),
    "valueCodeableConcept": _concept_text,
    "valueBoolean": _boolean_text,
    "valueDateTime": _pattern_text(_DATETIME, "dateTime"),
    "valueTime": _pattern_text(_TIME, "time (hh:mm:ss)"),
    "valueDecimal": _decimal_text,
}

_READERS: dict[str, Callable[[Resource, str, _Context, FHIRParseResult, str | None], None]] = {
    "Patient": _patient,
    "Encounter": _encounter,
    "Observation": _observation,
}


# --- references -----------------------------------------------------------------------------


def _reference(
    value: object, path: str, target: str, context: _Context, required: bool = True
) -> str | None:
    if value is None and not required:
        return None
    if value is None:
        raise _Invalid(f"{path}: missing; wardwatch needs the {target} this belongs to")
    reference = _object(value, path).get("reference")
    if reference is None and not required:
        return None  # a logical (identifier-only) reference to an optional target
    if reference is None:
        why = f"has no literal reference; wardwatch needs {target}/<id> or a Bundle fullUrl"
        raise _Invalid(f"{path}: {why}")
    if not isinstance(reference, str) or not reference.strip():
        raise _Invalid(f"{path}.reference: {_show(reference)} is not a non-blank string")
    found = context.refs.get(reference)
    if found is None:
        found = context.refs[reference] = _resolve(reference, context)
    if isinstance(found, str):
        raise _Invalid(f"{path}.reference: {_show(reference)} {found}", "unresolved_reference")
    if found[0] != target:
        raise _Invalid(f"{path}: refers to a {_show(found[0])}, wardwatch needs a {target}")
    return found[1]


def _resolve(reference: str, context: _Context) -> tuple[str, str] | str:
    """(resourceType, id) a literal reference points at, or why it cannot be resolved."""
    if reference in context.full_urls:
        rtype, key = context.full_urls[reference]
        return (rtype, key) if isinstance(rtype, str) else "points at an entry without resourceType"
    if reference.startswith(("urn:uuid:", "urn:oid:")):
        return "matches no fullUrl in this document"
    if reference.startswith("#"):
        return "is a contained resource, which wardwatch does not read"
    match = _LITERAL.fullmatch(reference) if "?" not in reference else None
    if match is None:
        return "is not a literal reference such as Patient/123"
    return match[1], match[2]


# --- elements (a failing check names its element: `path` + `name`, joined only then) -------


def _check_id(resource: Resource) -> None:
    rid = resource.get("id")
    if rid is not None and (not isinstance(rid, str) or not _ID.fullmatch(rid)):
        raise _Invalid(f"id: {_show(rid)} is not a FHIR id (letters, digits, '-' and '.')")


def _status(value: object, allowed: frozenset[str]) -> None:
    if value is None:
        raise _Invalid("status: missing; it is required")
    if not isinstance(value, str) or value not in allowed:
        raise _Invalid(f"status: {_show(value)} is not one of {', '.join(sorted(allowed))}")
    if value in _WITHDRAWN:
        raise _Invalid(f"status: {value}: {_WITHDRAWN[value]}", value.replace("-", "_"))


def _concept(value: object, path: str) -> tuple[str, str, str | None]:
    """(system, code, display) of the coding to report: LOINC if present, else the first."""
    if value is None:
        raise _Invalid(f"{path}: missing; it is required")
    codings, text = _codeable(value, path)
    chosen = None
    for coding in codings:
        if coding.get("code") is not None and (chosen is None or coding.get("system") == LOINC):
            chosen = coding
            if coding.get("system") == LOINC:
                break
    if chosen is None:
        shown = f" (text {text!r})" if text else ""
        raise _Invalid(f"{path}: no coding with a code{shown}; wardwatch reads coded data only")
    return chosen.get("system") or "", chosen["code"], chosen.get("display") or text


def _codeable(value: object, path: str) -> tuple[list[Resource], str | None]:
    concept = _object(value, path)
    codings = _list(concept.get("coding"), path, ".coding")
    for i, coding in enumerate(codings):
        _coding(coding, path, i)
    return codings, _string(concept.get("text"), path, ".text")


def _coding(value: object, path: str, index: int | None = None) -> Resource:
    if type(value) is dict:
        try:
            if _coding_ok(value.get("system"), value.get("code"), value.get("display")):
                return value
        except TypeError:  # a list or object where text belongs: unhashable; said below
            pass
    where = path if index is None else f"{path}.coding[{index}]"
    coding = _object(value, where)
    _uri(coding.get("system"), where, ".system")
    _code(coding.get("code"), where, ".code")
    _string(coding.get("display"), where, ".display")
    raise _Invalid(f"{where}: is not a valid Coding")  # unreachable: a check above failed


@functools.lru_cache(maxsize=1 << 12)
def _coding_ok(system: object, code: object, display: object) -> bool:
    """Cached: a bulk export repeats the same few hundred codings millions of times."""
    return _is_text(system) and _is_code(code) and _is_text(display)


def _quantity_ok(unit: object, system: object, code: object) -> bool:
    """Cached like codings: units repeat as often."""
    try:
        return _units_ok(unit, system, code)
    except TypeError:  # a list or object where text belongs: the caller says which
        return False


@functools.lru_cache(maxsize=1 << 12)
def _units_ok(unit: object, system: object, code: object) -> bool:
    return _is_text(unit) and _is_text(system) and _is_code(code)


def _period_start(value: object, path: str) -> datetime | None:
    if value is None:
        return None
    start = _object(value, path).get("start")
    return None if start is None else _moment(start, path + ".start")


def _period_end(value: object, path: str) -> datetime | None:
    end = _object(value, path).get("end") if value is not None else None
    return None if end is None else _moment(end, path + ".end")


def _moment(value: object, path: str, instant: bool = False) -> datetime:
    if not isinstance(value, str):
        raise _Invalid(f"{path}: {_show(value)} is not a string")
    parsed = _parse_moment(value, instant)
    if isinstance(parsed, str):
        raise _Invalid(f"{path}: {_show(value)} {parsed}")
    return parsed


@functools.lru_cache(maxsize=1 << 14)
def _parse_moment(text: str, instant: bool) -> datetime | str:
    """An aware UTC datetime, or why `text` is not one (cached: panels share timestamps)."""
    if not (_INSTANT if instant else _DATETIME).fullmatch(text):
        kind = "instant (YYYY-MM-DDThh:mm:ss+zz:zz)" if instant else "dateTime"
        return f"is not a FHIR {kind}"
    if len(text) < 10:
        return "gives only a year or a month; wardwatch needs at least the day"
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        return "is not a calendar date and time wardwatch can hold"


def _decimal(value: object, path: str, name: str = "") -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
    raise _Invalid(f"{path}{name}: {_show(value)} is not a (finite) JSON number")


def _integer(value: object, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31:
        return value
    raise _Invalid(f"{path}: {_show(value)} is not a 32-bit integer")


def _is_text(value: object) -> bool:
    return value is None or (isinstance(value, str) and value != "" and not value.isspace())


def _is_code(value: object) -> bool:
    return value is None or (isinstance(value, str) and _CODE.fullmatch(value) is not None)


def _string(value: Any, path: str, name: str = "") -> str | None:
    if _is_text(value):
        return value
    raise _Invalid(f"{path}{name}: {_show(value)} is not a non-blank string")


def _uri(value: Any, path: str, name: str = "") -> str | None:
    if _is_text(value):
        return value
    raise _Invalid(f"{path}{name}: {_show(value)} is not a URI")


def _code(value: Any, path: str, name: str = "") -> str | None:
    if _is_code(value):
        return value
    raise _Invalid(f"{path}{name}: {_show(value)} is not a FHIR code (no edge or double spaces)")


def _object(value: object, path: str) -> Resource:
    if isinstance(value, dict):
        return value
    raise _Invalid(f"{path}: is {_kind(value)}, expected an object")


def _list(value: object, path: str, name: str = "") -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise _Invalid(f"{path}{name}: is {_kind(value)}, expected a list")


# --- text -----------------------------------------------------------------------------------


def _kind(value: object) -> str:
    if value is None:
        return "null"
    names = {bool: "true/false", str: "a string", list: "a list", dict: "an object"}
    if type(value) in names:
        return names[type(value)]
    return "a number" if isinstance(value, int | float) else f"a {type(value).__name__}"


def _show(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _dump(value: object) -> str:
    """The JSON of a resource for payloads; never fails (falls back to repr)."""
    try:
        return pydantic_core.to_json(value).decode()
    except (ValueError, TypeError):
        try:
            return json.dumps(value, ensure_ascii=True, default=repr)
        except (ValueError, TypeError, RecursionError):
            return repr(value)


def _digest(value: object) -> str:
    """A stable id for content without one: sha256 of its canonical JSON."""
    try:
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    except (ValueError, TypeError, RecursionError):
        canonical = repr(value)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


# Imported last: it reads this module's rules, and this module calls it only at run time.
from wardwatch.ingest import fhir_usual  # noqa: E402
