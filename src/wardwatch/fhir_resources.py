"""wardwatch's own records as FHIR R4 resources: what the system said, in the EHR's language.

    risk_assessment(score, band, basis)   one stored score        -> RiskAssessment
    flag(alert, author, reason)           one alert               -> Flag
    observation(row)                      one stored measurement  -> Observation
    searchset(...), operation_outcome(...), capability_statement(...)
    validate(resource)                    fhir.resources' R4B model check, or InvalidResource

The builders are pure (rows in, JSON-ready dicts out); `web.fhir_out` reads the store and
serves them. Every resource leaves through `validate`: a resource the R4B models reject is a
bug in a builder, so it raises `InvalidResource` (a 500, which the tests would see) rather
than sending an EHR something it cannot parse. fhir.resources does not check required code
bindings, so the few coded elements we emit (status, intent) are checked here too.

Choices, each visible to an EHR:

- **Flag, not DetectedIssue**, for an alert. DetectedIssue is "an issue with or between
  clinical actions" (an interaction, a duplicate order) and wants `implicated` orders; a sepsis
  warning is about the patient, not an order. Flag is a patient-level warning with exactly the
  alert's lifecycle: active while a clinician's answer is awaited (open or paused), inactive
  once confirmed or dismissed, with `period` from opening to closing. What Flag cannot say (the
  alert's state, the dismissal reason) goes in two extensions.
- **Observation ids are `ww-<row id>`**: the row id of the store's observations table, which
  is stable and unique, prefixed so it is never mistaken for the sender's resource id (kept
  as `identifier`, system = source). A RiskAssessment's `basis` refers to these, and
  `GET /fhir/Observation/ww-<id>` serves them, so the references resolve.
- **Observation.status is "unknown"**: the store keeps the value, not the sender's status, and
  FHIR's "unknown" means exactly that (one of the statuses applies; we do not know which).
- **Canonical URLs** of our extensions and code systems live under `CANONICAL`, an `.invalid`
  host (RFC 2606) that nobody can own, until a deployment publishes its profiles.
- **FHIR version**: we claim R4 (4.0.1). fhir.resources ships R4B (4.3.0) models, which are the
  same for every element these builders write.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from wardwatch.alerts.records import AlertRecord, Kind, State
from wardwatch.alerts.workflow import DISMISS_REASONS
from wardwatch.ingest.psv import LABEL_LEAD_HOURS
from wardwatch.terminology import wording

Resource = dict[str, Any]

CANONICAL = "https://wardwatch.invalid/fhir"
DISMISS_REASON_SYSTEM = f"{CANONICAL}/CodeSystem/dismiss-reason"
ALERT_STATE_URL = f"{CANONICAL}/StructureDefinition/alert-state"
DISMISS_REASON_URL = f"{CANONICAL}/StructureDefinition/dismiss-reason"
FHIR_JSON = "application/fhir+json"
OBSERVATION_PREFIX = "ww-"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
OUTCOME = f"sepsis (Sepsis-3) within {LABEL_LEAD_HOURS} hours"
OOD_SENTENCE = (
    "Out of distribution: these inputs are unlike the training population; trust the figure less."
)

# Our bands (relative to the unit's threshold, see `ward`) on HL7's risk-probability codes.
_QUALITATIVE = {"high": ("high", "High likelihood"), "raised": ("moderate", "Moderate likelihood"),
                "low": ("low", "Low likelihood")}  # fmt: skip
_FLAG_CODES = {Kind.SEPSIS: "Sepsis early warning", Kind.REVIEW: "Needs human review",
               Kind.ESCALATION: "Nurse concern: possible sepsis"}  # fmt: skip
# Required bindings fhir.resources leaves unchecked, for the coded elements we write.
_BINDINGS: Mapping[tuple[str, str], frozenset[str]] = {
    ("RiskAssessment", "status"): frozenset({"registered", "preliminary", "final", "amended",
                                              "corrected", "cancelled", "entered-in-error",
                                              "unknown"}),
    ("Flag", "status"): frozenset({"active", "inactive", "entered-in-error"}),
    ("Observation", "status"): frozenset({"registered", "preliminary", "final", "amended",
                                           "corrected", "cancelled", "entered-in-error",
                                           "unknown"}),
    ("ServiceRequest", "status"): frozenset({"draft", "active", "on-hold", "revoked",
                                              "completed", "entered-in-error", "unknown"}),
    ("ServiceRequest", "intent"): frozenset({"proposal", "plan", "directive", "order",
                                              "original-order", "reflex-order", "filler-order",
                                              "instance-order", "option"}),
    ("MedicationRequest", "status"): frozenset({"active", "on-hold", "cancelled", "completed",
                                                 "entered-in-error", "stopped", "draft",
                                                 "unknown"}),
    ("MedicationRequest", "intent"): frozenset({"proposal", "plan", "order", "original-order",
                                                 "reflex-order", "filler-order",
                                                 "instance-order", "option"}),
}  # fmt: skip


class InvalidResource(RuntimeError):
    """A resource we built fails R4B validation: a bug in its builder, never the caller's
    (a RuntimeError, not a ValueError, so no handler mistakes it for bad input)."""


# ---------------------------------------------------------------- validation


def _models() -> dict[str, Any]:
    """R4B model classes by resource type, imported on first use (they load slowly)."""
    if not _MODELS:
        from fhir.resources.R4B.bundle import Bundle
        from fhir.resources.R4B.capabilitystatement import CapabilityStatement
        from fhir.resources.R4B.flag import Flag
        from fhir.resources.R4B.medicationrequest import MedicationRequest
        from fhir.resources.R4B.observation import Observation
        from fhir.resources.R4B.operationoutcome import OperationOutcome
        from fhir.resources.R4B.riskassessment import RiskAssessment
        from fhir.resources.R4B.servicerequest import ServiceRequest

        for model in (Bundle, CapabilityStatement, Flag, MedicationRequest, Observation,
                      OperationOutcome, RiskAssessment, ServiceRequest):  # fmt: skip
            _MODELS[model.__name__] = model
    return _MODELS


_MODELS: dict[str, Any] = {}


def validate(resource: Resource) -> Resource:
    """Check `resource` against its R4B model (a Bundle's entries included); return it."""
    rtype = resource.get("resourceType")
    model = _models().get(str(rtype))
    if model is None:
        raise InvalidResource(f"no R4B model for resourceType {rtype!r}")
    try:
        model.model_validate(resource)
    except ValueError as error:  # pydantic.ValidationError is a ValueError
        raise InvalidResource(f"{rtype} fails R4B validation: {error}") from error
    for item in _contained(resource):
        _check_bindings(item)
    return resource


def _contained(resource: Resource) -> list[Resource]:
    entries = resource.get("entry", []) if resource.get("resourceType") == "Bundle" else []
    return [resource, *(e["resource"] for e in entries if "resource" in e)]


def _check_bindings(resource: Resource) -> None:
    rtype = resource["resourceType"]
    for (bound_type, element), allowed in _BINDINGS.items():
        if bound_type == rtype and element in resource and resource[element] not in allowed:
            raise InvalidResource(f"{rtype}.{element} {resource[element]!r} is not in its binding")


# ---------------------------------------------------------------- elements


def instant(moment: datetime) -> str:
    """An aware time as FHIR writes it: UTC, 'Z'."""
    if moment.tzinfo is None:
        raise InvalidResource(f"naive time {moment.isoformat()}: FHIR times need a zone")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def reference(rtype: str, rid: str, display: str | None = None) -> Resource:
    ref: Resource = {"reference": f"{rtype}/{rid}"}
    return ref | {"display": display} if display else ref


def model_reference(version: str) -> Resource:
    """The model as a display-only Device reference: who made the prediction."""
    return {"type": "Device", "display": f"wardwatch sepsis model {version}"}


def observation_id(row_id: int) -> str:
    return f"{OBSERVATION_PREFIX}{row_id}"


def observation_row_id(resource_id: str) -> int | None:
    """The store row id behind an Observation id, or None when it is not one of ours."""
    digits = resource_id.removeprefix(OBSERVATION_PREFIX)
    if digits == resource_id or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


def _number(value: float) -> float:
    if not math.isfinite(value):
        raise InvalidResource(f"{value!r} is not a FHIR decimal")
    return float(value)


# ---------------------------------------------------------------- RiskAssessment


def _qualitative(band: str, threshold: float | None) -> Resource | None:
    if band not in _QUALITATIVE or threshold is None:
        return None
    code, display = _QUALITATIVE[band]
    text = f"{band} (relative to the unit's alert threshold of {wording.percent(threshold)})"
    return {"coding": [{"system": RISK_PROBABILITY, "code": code, "display": display}],
            "text": text}  # fmt: skip


def _uncertainty(score: Mapping[str, Any]) -> str:
    return (
        f"Uncertainty ± {100 * float(score['uncertainty']):.1f}% (spread of the model's bagged "
        "members: epistemic, not an interval with coverage)."
    )


def _ood(score: Mapping[str, Any]) -> str:
    if score["ood"]:
        return OOD_SENTENCE
    return "Inputs lie within the training population."


def basis_display(row: Mapping[str, Any]) -> str:
    """ "Heart rate 112/min at 2026-11-18 14:00 UTC" for a stored measurement."""
    variable, value = row["variable"], row["value"]
    shown = wording.value_of(variable, value) if value is not None else str(row["value_text"])
    return f"{wording.display(variable)} {shown} at {row['effective_at']:%Y-%m-%d %H:%M} UTC"


def risk_assessment(
    score: Mapping[str, Any],
    band: str,
    threshold: float | None,
    basis: Sequence[Mapping[str, Any]],
) -> Resource:
    """One stored score (a `scores` row) as a RiskAssessment; `basis`: the observations it read
    (the stay's latest of each measured variable, as `web.fhir_out.basis_rows` finds them)."""
    prediction: Resource = {
        "outcome": {"text": OUTCOME},
        "probabilityDecimal": _number(score["risk"]),
        "rationale": _uncertainty(score),
    }
    if (qualitative := _qualitative(band, threshold)) is not None:
        prediction["qualitativeRisk"] = qualitative
    resource: Resource = {
        "resourceType": "RiskAssessment",
        "id": str(score["id"]),
        "status": "final",
        "method": {"text": f"wardwatch sepsis model {score['model_version']}"},
        "code": {"text": "Sepsis risk"},
        "subject": reference("Patient", score["patient_id"]),
        "encounter": reference("Encounter", score["encounter_id"]),
        "occurrenceDateTime": instant(score["as_of"]),
        "performer": model_reference(score["model_version"]),
        "prediction": [prediction],
        "note": [{"text": f"{_uncertainty(score)} {_ood(score)}"}],
    }
    if basis:
        resource["basis"] = [
            reference("Observation", observation_id(row["id"]), basis_display(row)) for row in basis
        ]
    return resource


# ---------------------------------------------------------------- Flag


def flag(alert: AlertRecord, author: Resource, reason_code: str | None = None) -> Resource:
    """One alert as a Flag: active while it awaits an answer (open, paused), else inactive."""
    extensions: list[Resource] = [{"url": ALERT_STATE_URL, "valueCode": alert.state.value}]
    if alert.state is State.DISMISSED and reason_code in DISMISS_REASONS:
        coding = {"system": DISMISS_REASON_SYSTEM, "code": reason_code,
                  "display": DISMISS_REASONS[reason_code]}  # fmt: skip
        extensions.append({"url": DISMISS_REASON_URL, "valueCoding": coding})
    period = {"start": instant(alert.opened_at)}
    if alert.closed_at is not None:
        period["end"] = instant(alert.closed_at)
    category = {"system": FLAG_CATEGORY, "code": "clinical", "display": "Clinical"}
    return {
        "resourceType": "Flag",
        "id": str(alert.alert_id),
        "extension": extensions,
        "status": "active" if alert.active else "inactive",
        "category": [{"coding": [category]}],
        "code": {"text": _FLAG_CODES[alert.kind]},
        "subject": reference("Patient", alert.patient_id),
        "period": period,
        "encounter": reference("Encounter", alert.encounter_id),
        "author": author,
    }


# ---------------------------------------------------------------- Observation


def _value(row: Mapping[str, Any]) -> Resource:
    if row["value"] is None:
        return {"valueString": str(row["value_text"])} if row["value_text"] else {}
    quantity: Resource = {"value": _number(row["value"])}
    if row["unit"]:
        bedside = wording.unit(row["variable"]) if row["variable"] else row["unit"]
        quantity |= {"unit": bedside or row["unit"], "system": UCUM, "code": row["unit"]}
    if row["comparator"]:
        quantity["comparator"] = row["comparator"]
    return {"valueQuantity": quantity}


def _category(variable: str | None) -> list[Resource]:
    if variable is None:
        return []
    kind = wording.reference(variable)["kind"]
    code, display = (
        ("vital-signs", "Vital Signs") if kind == "vital" else ("laboratory", "Laboratory")
    )
    return [{"coding": [{"system": OBSERVATION_CATEGORY, "code": code, "display": display}]}]


def observation(row: Mapping[str, Any]) -> Resource:
    """One `observations` row (normalized: LOINC, canonical UCUM unit) as an Observation."""
    code: Resource = {"coding": [{"system": LOINC, "code": row["loinc"]}]}
    if row["variable"]:
        code["text"] = wording.display(row["variable"])
    resource: Resource = {
        "resourceType": "Observation",
        "id": observation_id(row["id"]),
        "identifier": [
            {"system": f"{CANONICAL}/source/{row['source']}", "value": row["source_id"]}
        ],
        "status": "unknown",
        "category": _category(row["variable"]),
        "code": code,
        "subject": reference("Patient", row["patient_id"]),
        "effectiveDateTime": instant(row["effective_at"]),
        "issued": instant(row["received_at"]),
        **_value(row),
    }
    if row["encounter_id"]:
        resource["encounter"] = reference("Encounter", row["encounter_id"])
    if not resource["category"]:
        del resource["category"]
    return resource


# ---------------------------------------------------------------- envelopes


def searchset(
    base: str, self_url: str, resources: Sequence[Resource], total: int, next_url: str | None
) -> Resource:
    """A searchset Bundle of `resources` (one page of `total` matches)."""
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    entries = [
        {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
         "search": {"mode": "match"}}
        for r in resources
    ]  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links}
    return bundle | {"entry": entries} if entries else bundle  # FHIR JSON has no empty arrays


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> Resource:
    """FHIR's error body; `code` from the issue-type value set (not-found, invalid, ...)."""
    issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def capability_statement(base: str, software_version: str, searches: Mapping[str, Sequence[
        tuple[str, str, str]]]) -> Resource:  # fmt: skip
    """What this read-only server offers: `searches` maps a resource type to its search
    parameters as (name, type, documentation)."""
    resources = [
        {"type": rtype, "interaction": [{"code": "read"}, *([{"code": "search-type"}]
                                                           if params else [])],
         "searchParam": [{"name": n, "type": t, "documentation": d} for n, t, d in params]}
        for rtype, params in searches.items()
    ]  # fmt: skip
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(datetime.now(UTC)),
        "kind": "instance",
        "software": {"name": "wardwatch", "version": software_version},
        "implementation": {"description": "wardwatch: sepsis early warning", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{"mode": "server", "resource": resources}],
    }
