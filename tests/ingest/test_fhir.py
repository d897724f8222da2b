"""wardwatch.ingest.fhir: real Synthea and OpenMRS bundles in, exact domain values out."""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import pkgutil
import tarfile
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.ingest.test_bulk import bulk_export, ndjson

from wardwatch.domain import Reported, Sex
from wardwatch.ingest.fhir import (
    LOINC,
    R4B_RESOURCE_TYPES,
    UCUM,
    FHIRError,
    FHIRParseResult,
    missing_patients,
    parse_json,
    parse_ndjson,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "fhir"
SYNTHEA_A = DATA / "synthea_patient_a.json"
SYNTHEA_C = DATA / "synthea_patient_c_subset.json"
SOILA = DATA / "openmrs_hiv_Soila394_Christiansen251_subset.json"
WALLY = DATA / "openmrs_hiv_Wally311_Blanda868_subset.json"
FIXTURES = (SYNTHEA_A, SYNTHEA_C, SOILA, WALLY)

AARON = "5cbc121b-cd71-4428-b8b7-31e53eba8184"  # Aaron697 Brekke496, synthea_patient_a
SOILA_ID = "fbba2017-3ef4-dfe0-714c-c302cd9b8cca"
CIEL_PULSE = "5087AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
CIEL_TEMPERATURE = "5088AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def synthea_a() -> FHIRParseResult:
    return parse_json(SYNTHEA_A.read_bytes())


@pytest.fixture(scope="module")
def soila() -> FHIRParseResult:
    return parse_json(SOILA.read_bytes())


def one(result: FHIRParseResult, source_id: str) -> Reported:
    found = [r for r in result.parsed.reported if r.source_id == source_id]
    assert len(found) == 1, f"{len(found)} Reported with source_id {source_id}"
    return found[0]


def resource_of(bundle: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == rid)


def observation(**fields: Any) -> dict[str, Any]:
    """A minimal valid R4 Observation (a heart rate), with `fields` replaced or (None) removed."""
    base: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "hr-1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "effectiveDateTime": "2024-03-01T08:15:00+01:00",
        "valueQuantity": {"value": 88, "unit": "beats/minute", "system": UCUM, "code": "/min"},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def bundle(*resources: dict[str, Any], full_urls: list[str] | None = None) -> dict[str, Any]:
    urls = full_urls or [None] * len(resources)
    entries = [
        {"resource": r} | ({"fullUrl": u} if u else {})
        for r, u in zip(resources, urls, strict=True)
    ]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


# --- real bundles -------------------------------------------------------------------------


def test_synthea_patient_has_sex_birth_date_and_identifiers(synthea_a):
    (patient,) = synthea_a.parsed.patients
    assert (patient.patient_id, patient.sex, patient.birth_date) == (
        AARON,
        Sex.MALE,
        date(1945, 12, 10),
    )
    assert ("http://hospital.smarthealthit.org", "2fa15bc7-8866-461a-9000-f739e425860a") in (
        synthea_a.identifiers[AARON]
    )
    assert ("http://hl7.org/fhir/sid/us-ssn", "999-93-7537") in synthea_a.identifiers[AARON]


def test_synthea_glucose_keeps_value_unit_loinc_and_time(synthea_a):
    glucose = one(synthea_a, "6c8ce179-a360-44c2-b561-70a6b3e94f46")
    assert glucose == Reported(
        patient_id=AARON,
        encounter_id="bae9a8f5-e741-4b46-b108-c73c2483b3a8",
        system=LOINC,
        code="2339-0",
        display="Glucose",
        value=87.84435224199666,
        value_text=None,
        comparator=None,
        unit="mg/dL",
        effective_at=datetime(2010, 3, 1, 11, 22, 41, tzinfo=UTC),  # 06:22:41-05:00
        source="fhir",
        source_id="6c8ce179-a360-44c2-b561-70a6b3e94f46",
        payload=glucose.payload,
    )
    assert json.loads(glucose.payload) == resource_of(load(SYNTHEA_A), glucose.source_id)


def test_blood_pressure_panel_splits_into_systolic_and_diastolic(synthea_a):
    panel = "35957c3a-8025-463b-860d-e6386554ec6a"
    assert not [r for r in synthea_a.parsed.reported if r.source_id == panel]  # no own value
    diastolic, systolic = (
        one(synthea_a, f"{panel}#component0"),
        one(synthea_a, f"{panel}#component1"),
    )
    assert (diastolic.code, diastolic.value, diastolic.unit) == (
        "8462-4",
        84.51637275024623,
        "mm[Hg]",
    )
    assert (systolic.code, systolic.value, systolic.unit) == (
        "8480-6",
        119.11425717022348,
        "mm[Hg]",
    )
    assert (
        systolic.effective_at
        == diastolic.effective_at
        == datetime(2010, 3, 1, 11, 22, 41, tzinfo=UTC)
    )
    assert systolic.patient_id == AARON and systolic.display == "Systolic Blood Pressure"
    assert systolic.payload == diastolic.payload  # the whole panel, kept once per row


def test_blood_pressure_panel_in_trimmed_synthea_c():
    result = parse_json(SYNTHEA_C.read_text(encoding="utf-8"))
    panel = "17dec39e-5965-4b3b-81b8-d519709ccc2b"
    systolic = one(result, f"{panel}#component1")
    assert (systolic.code, systolic.value) == ("8480-6", 136.409037522443)
    assert one(result, f"{panel}#component0").value == 82.34731718765768
    assert systolic.effective_at == datetime(2013, 7, 5, 17, 11, 44, tzinfo=UTC)
    assert result.ignored == Counter(
        {"Claim": 1, "ExplanationOfBenefit": 1, "Immunization": 1, "DiagnosticReport": 2}
    )


def test_coded_value_becomes_text(synthea_a):
    smoking = one(synthea_a, "1c8bf30b-0ae0-412b-8cf5-9fe87b0780c5")
    assert (smoking.code, smoking.value, smoking.value_text) == ("72166-2", None, "Never smoker")


def test_synthea_counts_resources_it_does_not_use(synthea_a):
    assert synthea_a.ignored == Counter({
        "Organization": 2, "Practitioner": 2, "Condition": 10, "Device": 1, "Claim": 22,
        "ExplanationOfBenefit": 21, "CareTeam": 2, "Goal": 5, "CarePlan": 2, "Immunization": 13,
        "DiagnosticReport": 15, "Procedure": 13, "MedicationRequest": 1, "ImagingStudy": 1,
    })  # fmt: skip
    assert synthea_a.parsed.rejections == []
    assert len(synthea_a.parsed.encounters) == 21
    assert len(synthea_a.parsed.reported) == 187 - 10 + 2 * 10  # 10 panels give 2 rows each


def test_encounter_unit_from_class_or_location(synthea_a, soila):
    emergency = next(
        e for e in synthea_a.parsed.encounters if e.encounter_id.startswith("f78d73fc")
    )
    assert (emergency.patient_id, emergency.unit) == (AARON, "ED")  # class EMER, no location
    assert emergency.admitted_at == datetime(1965, 11, 15, 11, 22, 41, tzinfo=UTC)
    (stay,) = soila.parsed.encounters
    assert (stay.encounter_id, stay.unit) == (
        "1cd1123b-7a8c-5e13-5c7f-5141c7b8e6a1",
        "BAYSTATE MEDICAL CENTER",
    )
    assert stay.admitted_at == datetime(2018, 3, 17, 23, 14, 15, tzinfo=UTC)


def test_ciel_codes_under_the_loinc_system_are_passed_on_as_sent(soila):
    pulse = one(soila, "036ae281-fec5-3b98-6d98-426d229dec5d")
    assert (pulse.system, pulse.code, pulse.display) == (LOINC, CIEL_PULSE, "PULSE")
    assert (pulse.value, pulse.unit, pulse.patient_id) == (91.68, "beats/minute", SOILA_ID)
    assert pulse.effective_at == datetime(2018, 3, 17, 23, 14, 15, tzinfo=UTC)
    temperature = one(soila, "4abec605-e1b1-775d-bcc2-1baf4093d5fb")
    assert (temperature.code, temperature.value, temperature.unit) == (
        CIEL_TEMPERATURE,
        37.922,
        "C",
    )
    (patient,) = soila.parsed.patients
    assert (patient.sex, patient.birth_date) == (Sex.FEMALE, date(1999, 2, 12))


def test_second_openmrs_bundle():
    result = parse_json(WALLY.read_bytes())
    pulse = one(result, "d8f08c13-815c-03b5-fc79-74628479dbe3")
    assert (pulse.code, pulse.value, pulse.patient_id) == (
        CIEL_PULSE,
        181.45,
        "879c534d-c512-35c0-58c2-98730ba5f171",
    )
    assert result.parsed.rejections == [] and missing_patients(result.parsed) == []


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_strict_r4b_validation_agrees_on_real_bundles(path):
    assert parse_json(path.read_bytes(), strict=True).parsed == parse_json(path.read_bytes()).parsed


@pytest.mark.shared_data
def test_all_openmrs_bundles_parse_and_keep_ciel_codes(shared_data):
    with tarfile.open(shared_data / "fhir" / "openmrs_hiv_bundles.tar.gz") as archive:
        members = [m for m in archive if m.isfile() and m.name.endswith(".json")]
        results = [parse_json(archive.extractfile(m).read()) for m in members]  # type: ignore[union-attr]
    reported = [r for result in results for r in result.parsed.reported]
    assert [r for result in results for r in result.parsed.rejections] == []
    assert len(members) == 16 and len(reported) == 3087  # every Observation has its own value
    assert {r.system for r in reported} == {LOINC}  # CIEL ids among them, as sent
    assert sum(r.code == CIEL_PULSE for r in reported) == 50


@pytest.mark.shared_data
def test_whole_synthea_c_bundle(shared_data):
    result = parse_json((shared_data / "fhir" / "synthea_patient_c.json").read_bytes())
    assert len(result.parsed.reported) == 374 - 12 + 2 * 12 and result.parsed.rejections == []


# --- documents that are not usable --------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('{"resourceType": "Bundle", "type": ', "not valid JSON: EOF while parsing"),
        (b"\xff\xfe{}", "not valid JSON"),
        ('{"resourceType": "Observation", "value": NaN}', "not valid JSON"),
        ("[1, 2]", "is a list, not an object"),
        ('{"name": "not FHIR"}', "has no resourceType"),
        ('{"resourceType": "Claim"}', "'Claim' is not something wardwatch reads"),
        ('{"resourceType": "Bundle"}', "Bundle.type is None"),
        (
            '{"resourceType": "Bundle", "type": "collection", "entry": {}}',
            "Bundle.entry must be a list",
        ),
        (12, "expected JSON text, bytes or a dict, got int"),
    ],
)
def test_unusable_documents_raise_fhir_error(document, message):
    with pytest.raises(FHIRError, match=message.replace("(", r"\(")):
        parse_json(document)


def test_fhir_error_is_a_value_error():
    assert issubclass(FHIRError, ValueError)


# --- one bad resource in a good bundle ------------------------------------------------------


def test_one_broken_observation_is_rejected_and_the_rest_parsed():
    good = load(SYNTHEA_C)
    broken = copy.deepcopy(good)
    glucose = resource_of(broken, "30b8f234-abbc-40ec-a72c-ea6c056f2e2d")
    glucose["valueQuantity"]["value"] = "abc"
    before, after = parse_json(good).parsed, parse_json(broken).parsed
    (rejection,) = after.rejections
    assert rejection.source_id == glucose["id"] and rejection.reason_code == "invalid"
    assert (
        rejection.reason == "Observation.valueQuantity.value: 'abc' is not a (finite) JSON number"
    )
    assert rejection.patient_id == "adccf2c3-9dc4-4067-ba23-98982c4875da"
    assert json.loads(rejection.payload) == glucose
    assert len(after.reported) == len(before.reported) - 1
    assert [r for r in before.reported if r.source_id != glucose["id"]] == after.reported


def test_observation_without_subject_is_rejected_with_reason():
    result = parse_json(bundle(observation(subject=None), observation(id="hr-2")))
    (rejection,) = result.parsed.rejections
    assert (
        rejection.reason
        == "Observation.subject: missing; wardwatch needs the Patient this belongs to"
    )
    assert [r.source_id for r in result.parsed.reported] == ["hr-2"]


@pytest.mark.parametrize(
    ("fields", "code", "reason"),
    [
        (
            {"status": "entered-in-error"},
            "entered_in_error",
            "Observation.status: entered-in-error",
        ),
        ({"status": "cancelled"}, "cancelled", "Observation.status: cancelled: it was cancelled"),
        ({"status": "done"}, "invalid", "Observation.status: 'done' is not one of amended"),
        ({"status": None}, "invalid", "Observation.status: missing"),
        ({"id": "a_b"}, "invalid", "Observation.id: 'a_b' is not a FHIR id"),
        (
            {"effectiveDateTime": "2024-03-01T08:15:00"},
            "invalid",
            "effectiveDateTime: '2024-03-01T08:15:00' is not a FHIR dateTime",
        ),
        ({"effectiveDateTime": "2024-03"}, "invalid", "gives only a year or a month"),
        ({"effectiveDateTime": "2024-02-30T08:15:00Z"}, "invalid", "is not a calendar date"),
        (
            {"issued": "2024-03-01"},
            "invalid",
            "Observation.issued: '2024-03-01' is not a FHIR instant",
        ),
        (
            {"effectiveInstant": "2024-03-01T08:15:00Z"},
            "invalid",
            "effective[x]: only one is allowed",
        ),
        (
            {"valueString": "88"},
            "invalid",
            "Observation.value[x]: only one is allowed, got valueQuantity, valueString",
        ),
        (
            {"valueQuantity": None, "valueDecimal": 88.0},
            "invalid",
            "valueDecimal: not an element of an R4 Observation",
        ),
        (
            {"valueQuantity": {"value": True}},
            "invalid",
            "valueQuantity.value: True is not a (finite) JSON number",
        ),
        ({"valueQuantity": {"value": "88"}}, "invalid", "valueQuantity.value: '88' is not"),
        ({"valueQuantity": {"value": float("nan")}}, "invalid", "valueQuantity.value: nan is not"),
        ({"valueQuantity": {"value": 10**400}}, "invalid", "is not a (finite) JSON number"),
        (
            {"valueQuantity": {"value": 1, "comparator": "~"}},
            "invalid",
            "comparator: '~' is not one of",
        ),
        (
            {"valueQuantity": {"value": 1, "unit": " "}},
            "invalid",
            "valueQuantity.unit: ' ' is not a non-blank string",
        ),
        (
            {"valueQuantity": {"value": 1, "code": " /min"}},
            "invalid",
            "valueQuantity.code: ' /min' is not a FHIR code",
        ),
        (
            {"valueQuantity": None, "valueInteger": 2**31},
            "invalid",
            "valueInteger: 2147483648 is not a 32-bit integer",
        ),
        (
            {"code": {"text": "pulse"}},
            "invalid",
            "Observation.code: no coding with a code (text 'pulse')",
        ),
        (
            {"code": {"coding": {"code": "x"}}},
            "invalid",
            "Observation.code.coding: is an object, expected a list",
        ),
        (
            {"code": {"coding": [{"system": 5, "code": "x"}]}},
            "invalid",
            "code.coding[0].system: 5 is not a URI",
        ),
        ({"code": None}, "invalid", "Observation.code: missing"),
        (
            {"subject": {"reference": "Group/g1"}},
            "invalid",
            "Observation.subject: refers to a 'Group', wardwatch needs a Patient",
        ),
        (
            {"subject": {"identifier": {"value": "MRN1"}}},
            "invalid",
            "subject: has no literal reference",
        ),
        (
            {"subject": {"reference": "urn:uuid:6b1d0000-0000-4000-8000-000000000000"}},
            "unresolved_reference",
            "matches no fullUrl",
        ),
        (
            {"subject": {"reference": "Patient?identifier=x|1"}},
            "unresolved_reference",
            "is not a literal reference",
        ),
        ({"subject": {"reference": "#p1"}}, "unresolved_reference", "is a contained resource"),
        (
            {"subject": "Patient/p1"},
            "invalid",
            "Observation.subject: is a string, expected an object",
        ),
        (
            {"encounter": {"reference": "Patient/p1"}},
            "invalid",
            "Observation.encounter: refers to a 'Patient'",
        ),
        ({"component": [{"valueQuantity": {"value": 1}}]}, "invalid", "component[0].code: missing"),
        ({"component": "x"}, "invalid", "Observation.component: is a string, expected a list"),
    ],
)
def test_invalid_observations_are_rejected_with_a_readable_reason(fields, code, reason):
    result = parse_json(bundle(observation(**fields), observation(id="ok")))
    (rejection,) = result.parsed.rejections
    assert rejection.reason_code == code
    assert reason is None or reason in rejection.reason, rejection.reason
    assert rejection.reason.startswith("Observation.")
    assert [r.source_id for r in result.parsed.reported] == ["ok"]


def test_rejected_patients_and_encounters_are_named_by_type():
    patient = {"resourceType": "Patient", "id": "p9", "gender": "M"}
    encounter = {
        "resourceType": "Encounter",
        "id": "e9",
        "status": "finished",
        "subject": {"reference": "Patient/p9"},
    }
    result = parse_json(bundle(patient, encounter))
    assert [(r.source_id, r.reason) for r in result.parsed.rejections] == [
        ("Patient/p9", "Patient.gender: 'M' is not one of male, female, other, unknown"),
        ("Encounter/e9", "Encounter.class: missing; an R4 Encounter needs its class (a Coding)"),
    ]
    assert result.parsed.rejections[1].patient_id == "p9"


def test_odd_entries_are_rejected_or_counted():
    nested = bundle(observation())
    result = parse_json(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                "not an entry",
                {"request": {"method": "DELETE", "url": "Observation/1"}},
                {"resource": nested},
                {"resource": {"resourceType": "Observaton", "id": "typo"}},
                {"resource": {"id": "no-type"}},
                {"resource": {"resourceType": "Claim", "id": "c1"}},
            ],
        }
    )
    assert [(r.reason_code, r.reason) for r in result.parsed.rejections] == [
        ("not_fhir", "Bundle.entry[0]: is a string, not an entry object"),
        ("unsupported", "Bundle: a nested Bundle is not read; send its entries instead"),
        ("unknown_resource_type", "resourceType: 'Observaton' is not an R4 type"),
        ("not_fhir", "resourceType: missing"),
    ]
    assert result.ignored == Counter({"Bundle.entry without resource": 1, "Claim": 1})


def test_strict_mode_also_checks_elements_that_are_not_read():
    odd = observation(category="vital-signs")  # R4 wants a list of CodeableConcept
    assert parse_json(odd).parsed.rejections == []
    (rejection,) = parse_json(odd, strict=True).parsed.rejections
    assert (
        rejection.reason.startswith("Observation.category: ")
        and "(full R4B validation)" in rejection.reason
    )


# --- what is read, and how ----------------------------------------------------------------


def test_heart_rate_value_unit_and_time_in_utc():
    (heart,) = parse_json(observation()).parsed.reported
    assert (heart.patient_id, heart.encounter_id, heart.code, heart.value, heart.unit) == (
        "p1",
        "e1",
        "8867-4",
        88.0,
        "/min",
    )  # UCUM code preferred over the display unit "beats/minute"
    assert heart.effective_at == datetime(2024, 3, 1, 7, 15, tzinfo=UTC)
    assert heart.effective_at.tzinfo is UTC and heart.source == "fhir"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {
                "valueQuantity": {
                    "value": 37.2,
                    "unit": "°C",
                    "system": "http://local",
                    "code": "DEGC",
                }
            },
            (37.2, None, None, "°C"),
        ),
        (
            {"valueQuantity": {"value": 0.5, "comparator": "<", "unit": "mmol/L"}},
            (0.5, None, "<", "mmol/L"),
        ),
        ({"valueQuantity": {"unit": "mmol/L"}}, (None, None, None, "mmol/L")),
        ({"valueQuantity": None, "valueInteger": 7}, (7.0, None, None, None)),
        ({"valueQuantity": None, "valueString": "pending"}, (None, "pending", None, None)),
        ({"valueQuantity": None, "valueBoolean": False}, (None, "false", None, None)),
        ({"valueQuantity": None, "valueTime": "08:15:00"}, (None, "08:15:00", None, None)),
        (
            {"valueQuantity": None, "valueRange": {"low": {"value": 1}}},
            (None, '{"low":{"value":1}}', None, None),
        ),
        (
            {
                "valueQuantity": None,
                "valueCodeableConcept": {"coding": [{"code": "POS", "display": "Positive"}]},
            },
            (None, "Positive", None, None),
        ),
        (
            {"valueQuantity": None, "dataAbsentReason": {"coding": [{"code": "not-performed"}]}},
            (None, "data absent: not-performed", None, None),
        ),
        ({"valueQuantity": None}, (None, None, None, None)),
    ],
)
def test_values_units_and_comparators(fields, expected):
    (item,) = parse_json(observation(**fields)).parsed.reported
    assert (item.value, item.value_text, item.comparator, item.unit) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"effectiveDateTime": "2024-03-01"},
            datetime(2024, 3, 1, tzinfo=UTC),
        ),  # a date: midnight UTC
        (
            {"effectiveDateTime": "2024-03-01T23:30:00.123456789-05:00"},
            datetime(2024, 3, 2, 4, 30, 0, 123456, tzinfo=UTC),
        ),
        (
            {"effectiveDateTime": None, "effectivePeriod": {"start": "2024-03-01T10:00:00Z"}},
            datetime(2024, 3, 1, 10, tzinfo=UTC),
        ),
        (
            {
                "effectiveDateTime": None,
                "effectivePeriod": {"end": "2024-03-01T10:00:00Z"},
                "issued": "2024-03-02T00:00:00Z",
            },
            datetime(2024, 3, 2, tzinfo=UTC),
        ),
        (
            {"effectiveDateTime": None, "effectiveInstant": "2024-03-01T10:00:00+14:00"},
            datetime(2024, 2, 29, 20, tzinfo=UTC),
        ),
        (
            {
                "effectiveDateTime": None,
                "effectiveTiming": {"event": ["2024-01-01"]},
                "issued": "2024-03-01T10:00:00Z",
            },
            datetime(2024, 3, 1, 10, tzinfo=UTC),
        ),
        (
            {"issued": "2024-03-05T10:00:00Z"},
            datetime(2024, 3, 1, 7, 15, tzinfo=UTC),
        ),  # effective wins
        ({"effectiveDateTime": None}, None),
    ],
)
def test_effective_time_order_and_utc(fields, expected):
    (item,) = parse_json(observation(**fields)).parsed.reported
    assert item.effective_at == expected


def test_parent_with_its_own_value_is_kept_beside_its_components():
    component = {
        "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
        "valueQuantity": {"value": 120},
    }
    result = parse_json(observation(component=[component]))
    assert [(r.source_id, r.code, r.value) for r in result.parsed.reported] == [
        ("hr-1", "8867-4", 88.0),
        ("hr-1#component0", "8480-6", 120.0),
    ]


def test_panel_made_only_of_members_is_counted_not_reported():
    result = parse_json(observation(valueQuantity=None, hasMember=[{"reference": "Observation/x"}]))
    assert result.parsed.reported == [] and result.parsed.rejections == []
    assert result.ignored == Counter({"Observation panel without value": 1})


def test_loinc_coding_is_preferred_and_other_systems_kept_as_sent():
    local = {"system": "http://hospital.example/codes", "code": "HR", "display": "Pulse"}
    loinc = {"system": LOINC, "code": "8867-4", "display": "Heart rate"}
    (preferred,) = parse_json(observation(code={"coding": [local, loinc]})).parsed.reported
    (first,) = parse_json(observation(code={"coding": [local], "text": "HR"})).parsed.reported
    assert (preferred.system, preferred.code) == (LOINC, "8867-4")
    assert (first.system, first.code, first.display) == (
        "http://hospital.example/codes",
        "HR",
        "Pulse",
    )


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p1",
        "https://fhir.example.org/r4/Patient/p1",
        "https://fhir.example.org/r4/Patient/p1/_history/3",
        "urn:uuid:0b6f1e2a-7c1d-4b59-9d4e-1f0e6a9c2b11",
    ],
)
def test_subject_references_resolve_to_the_patient_id(reference):
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-07"}
    document = bundle(
        patient,
        observation(subject={"reference": reference}),
        full_urls=["urn:uuid:0b6f1e2a-7c1d-4b59-9d4e-1f0e6a9c2b11", None],
    )
    result = parse_json(document)
    assert [r.patient_id for r in result.parsed.reported] == ["p1"]
    assert result.parsed.patients[0].birth_date is None  # a month alone is not a birth date
    assert missing_patients(result.parsed) == []


def test_resources_without_id_are_known_by_full_url_or_content_hash():
    url = "urn:uuid:9a1c8f3e-0000-4000-8000-000000000001"
    patient = {"resourceType": "Patient", "gender": "male"}
    by_url = parse_json(
        bundle(
            patient, observation(id=None, subject={"reference": url}), full_urls=[url, url + "2"]
        )
    )
    assert by_url.parsed.patients[0].patient_id == url
    assert [(r.patient_id, r.source_id) for r in by_url.parsed.reported] == [(url, url + "2")]
    anonymous = observation(id=None)
    reordered = dict(reversed(list(anonymous.items())))
    first, again = (
        parse_json(anonymous).parsed.reported[0],
        parse_json(reordered).parsed.reported[0],
    )
    assert first.source_id.startswith("sha256:") and first.source_id == again.source_id


def test_single_patient_and_encounter_documents():
    patient = parse_json(
        '{"resourceType": "Patient", "id": "p2", "gender": "other"}'
    ).parsed.patients
    assert [(p.patient_id, p.sex, p.birth_date) for p in patient] == [("p2", Sex.UNKNOWN, None)]
    encounter = {
        "resourceType": "Encounter", "id": "e2", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p2"}, "period": {"start": "2024-03-01"},
        "serviceType": {"text": "Intensive care"},
        "location": [{"location": {"display": "Ward 3"}, "status": "completed"},
                     {"location": {"display": "MICU"}, "status": "active"}],
    }  # fmt: skip
    (stay,) = parse_json(encounter).parsed.encounters
    assert (stay.unit, stay.admitted_at) == ("MICU", datetime(2024, 3, 1, tzinfo=UTC))
    del encounter["location"]
    assert parse_json(encounter).parsed.encounters[0].unit == "Intensive care"
    del encounter["serviceType"]
    assert parse_json(encounter).parsed.encounters[0].unit == "inpatient"


def test_missing_patients_lists_referenced_patients_without_a_resource():
    result = parse_json(
        bundle(observation(), observation(id="x", subject={"reference": "Patient/p0"}))
    )
    assert missing_patients(result.parsed) == ["p0", "p1"]


# --- NDJSON -------------------------------------------------------------------------------


def test_ndjson_reads_lines_skips_blanks_and_rejects_one_bad_line():
    lines = [
        json.dumps({"resourceType": "Patient", "id": "p1", "gender": "female"}),
        "",
        json.dumps(observation()).encode(),
        '{"resourceType": "Observation", "id": "cut',
        json.dumps({"resourceType": "ExplanationOfBenefit", "id": "x"}),
        "[1, 2]",
    ]
    result = parse_ndjson(lines)
    assert [p.patient_id for p in result.parsed.patients] == ["p1"]
    assert [r.source_id for r in result.parsed.reported] == ["hr-1"]
    assert result.parsed.reported[0].payload == json.dumps(observation())  # the line as sent
    assert [(r.reason_code, r.reason) for r in result.parsed.rejections] == [
        (
            "malformed_json",
            "line 4: not valid JSON (EOF while parsing a string at line 1 column 42)",
        ),
        ("not_fhir", "line 6: is a list, not a resource"),
    ]
    assert result.parsed.rejections[0].payload == lines[3]
    assert result.ignored == Counter({"ExplanationOfBenefit": 1})


def test_ndjson_whose_first_line_is_not_json_is_not_ndjson():
    with pytest.raises(FHIRError, match="not NDJSON: line 1 not valid JSON"):
        parse_ndjson(SYNTHEA_C.read_text(encoding="utf-8"))  # a pretty-printed Bundle
    with pytest.raises(FHIRError, match="line 1 not UTF-8"):
        parse_ndjson([b"\xff{}"])


def test_ndjson_observations_resolve_relative_references_and_name_missing_patients():
    text = "\n".join(json.dumps(observation(id=f"o{i}")) for i in range(3)) + "\n"
    result = parse_ndjson(text)
    assert [r.source_id for r in result.parsed.reported] == ["o0", "o1", "o2"]
    assert missing_patients(result.parsed) == ["p1"]


def test_ndjson_rows_are_the_reported_fields_in_order():
    """Bulk ingest reads tuples (rows=True) where others get Reported items: the same values."""
    export = bulk_export()
    lines = ndjson(export["Patient"] + export["Encounter"] + export["Observation"]).splitlines()
    lines.insert(5, b'{"resourceType": "Observation", "status": ')  # a bad line among them
    items, rows = parse_ndjson(lines), parse_ndjson(lines, rows=True)
    assert [Reported(*row) for row in rows.rows] == items.parsed.reported
    assert len(rows.rows) > 100
    assert rows.parsed.reported == [] and items.rows == []
    assert rows.parsed.rejections == items.parsed.rejections
    assert (rows.parsed.patients, rows.parsed.encounters) == (
        items.parsed.patients, items.parsed.encounters,
    )  # fmt: skip


# --- properties ---------------------------------------------------------------------------

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
FIELD_NAMES = st.sampled_from([
    "resourceType", "type", "entry", "resource", "fullUrl", "id", "status", "code", "coding",
    "system", "subject", "reference", "encounter", "effectiveDateTime", "effectivePeriod",
    "start", "issued", "valueQuantity", "value", "unit", "component", "gender", "birthDate",
    "class", "period", "location", "display", "valueInteger", "valueDecimal", "hasMember",
])  # fmt: skip
FHIR_TYPES = st.sampled_from(["Bundle", "Observation", "Patient", "Encounter", "Claim", "Nope"])


def fhirish(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keyed = st.dictionaries(FIELD_NAMES | st.text(max_size=5), children, max_size=6)
    typed = st.builds(lambda d, t: {**d, "resourceType": t}, keyed, FHIR_TYPES)
    return st.lists(children, max_size=4) | keyed | typed


JSONISH = st.recursive(JSON_LEAVES | FHIR_TYPES, fhirish, max_leaves=40)


@settings(max_examples=400, deadline=None)
@given(JSONISH)
def test_any_json_document_gives_a_result_or_fhir_error(document):
    for data in (document, json.dumps(document)):
        try:
            result = parse_json(data)
        except FHIRError:
            continue
        assert isinstance(result, FHIRParseResult)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(JSONISH.map(json.dumps) | st.text(max_size=20) | st.binary(max_size=20), max_size=6)
)
def test_any_ndjson_lines_give_a_result_or_fhir_error(lines):
    with contextlib.suppress(FHIRError):
        assert isinstance(parse_ndjson(lines), FHIRParseResult)


PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-07-01",
           "identifier": [{"system": "urn:mrn", "value": "1"}]}  # fmt: skip
ENCOUNTER = {
    "resourceType": "Encounter", "id": "e1", "status": "finished",
    "subject": {"reference": "Patient/p1"}, "class": {"code": "IMP"},
    "period": {"start": "2024-03-01T08:00:00Z"},
    "location": [{"location": {"display": "MICU"}, "status": "active"}],
    "serviceType": {"coding": [{"display": "ICU"}]},
}  # fmt: skip
PANEL = observation(
    valueQuantity=None,
    dataAbsentReason={"text": "see components"},
    component=[
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 1}}
    ],
)
VALID = [observation(), PANEL, PATIENT, ENCOUNTER, bundle(PATIENT, ENCOUNTER, observation())]


@st.composite
def damaged(draw: st.DrawFn) -> Any:
    """A valid resource or bundle with one to three nested values replaced by any JSON."""
    document = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 3))):
        node = document
        while children := list(node.items() if isinstance(node, dict) else enumerate(node)):
            key, child = draw(st.sampled_from(children))
            if not (isinstance(child, dict | list) and child and draw(st.booleans())):
                node[key] = draw(JSONISH)
                break
            node = child
    return document


@settings(max_examples=500, deadline=None)
@given(damaged())
def test_damaged_resources_never_crash_a_bundle(document):
    for data in (bundle(document), [json.dumps(PATIENT), json.dumps(document)]):
        result = parse_json(data) if isinstance(data, dict) else parse_ndjson(data)
        assert isinstance(result, FHIRParseResult)
    with contextlib.suppress(FHIRError):
        parse_json(document, strict=True)


OFFSETS = st.integers(-12 * 4, 14 * 4).map(lambda q: timezone(timedelta(minutes=15 * q)))
MOMENTS = st.datetimes(datetime(1900, 1, 2), datetime(2100, 1, 1), timezones=OFFSETS)
NUMBERS = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
UNITS = st.sampled_from(["mg/dL", "mmol/L", "/min", "%", "Cel", "[degF]", "10*3/uL", "mm[Hg]"])


@settings(max_examples=300, deadline=None)
@given(moment=MOMENTS, number=NUMBERS, unit=UNITS, ucum=st.booleans(),
       comparator=st.sampled_from([None, "<", "<=", ">=", ">"]), zulu=st.booleans())  # fmt: skip
def test_generated_observations_round_trip_exactly(moment, number, unit, ucum, comparator, zulu):
    text = moment.isoformat()
    if zulu and moment.utcoffset() == timedelta(0):
        text = text.replace("+00:00", "Z")
    quantity = {"value": number, "unit": "as displayed"} | (
        {"system": UCUM, "code": unit} if ucum else {"unit": unit}
    )
    if comparator:
        quantity["comparator"] = comparator
    resource = observation(effectiveDateTime=text, valueQuantity=quantity)
    for result in (parse_json(json.dumps(resource)), parse_ndjson([json.dumps(resource)])):
        (item,) = result.parsed.reported
        assert (item.value, item.unit, item.comparator) == (float(number), unit, comparator)
        assert item.effective_at == moment.astimezone(UTC)
        assert (item.system, item.code, item.patient_id) == (LOINC, "8867-4", "p1")


# The fast path checks what it reads; it must never accept what R4B rejects on those elements.
READ_ELEMENTS: dict[str, list[Any]] = {
    "id": ["obs-1", "a_b", "", 5],
    "status": ["final", "preliminary", "bogus", 3, "entered-in-error"],
    "code": [
        {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        {"coding": [{"code": " x"}]}, {"coding": [{"system": 5, "code": "x"}]},
        {"coding": [{"code": "x", "display": "\x0c"}]}, {"coding": "x"}, {"text": "t"}, "x", {},
    ],
    "subject": [
        {"reference": "Patient/p1"}, {"reference": ""}, {"reference": 5}, "Patient/p1",
        {"display": "x"},
    ],
    "encounter": [{"reference": "Encounter/e1"}, {"reference": 7}, {"display": "x"}, []],
    "effectiveDateTime": [
        "2024-03-01T08:15:00+01:00", "2024-03-01T08:15:00", "2024", "2024-02-30T00:00:00Z",
        "2024-03-01", 5,
    ],
    "effectivePeriod": [{"start": "2024-03-01T08:15:00Z"}, {"start": "nope"}, {"start": 3}, "x"],
    "effectiveInstant": ["2024-03-01T08:15:00.5Z", "2024-03-01", 1],
    "issued": ["2024-03-01T08:15:00Z", "2024-03-01T08:15", None],
    "valueQuantity": [
        {"value": 1.5, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}, {"value": "abc"},
        {"value": True}, {"value": "12.5"}, {"value": 1, "unit": ""}, {"value": 1, "code": "a  b"},
        {"value": 1, "system": 4}, {"value": 3, "comparator": "<"}, {}, "x",
    ],
    "valueInteger": [3, 3.0, 3.5, True, 2**40, "3"],
    "valueString": ["x", "", 5],
    "valueDecimal": [1.5],
    "valueBoolean": [True, 1, "true"],
    "valueTime": ["08:15:00", "25:00:00", 8],
    "valueCodeableConcept": [{"text": "positive"}, {"coding": [{"code": "bad code "}]}, "x"],
    "dataAbsentReason": [{"coding": [{"code": "asked-unknown"}]}, {"text": ""}],
    "component": [
        [{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueInteger": 120}],
        [{"valueQuantity": {"value": 1}}], [{"code": {"text": "x"}, "valueInteger": "1"}],
        ["x"], "x",
    ],
}  # fmt: skip


@st.composite
def mutated_observations(draw: st.DrawFn) -> dict[str, Any]:
    resource = observation(effectiveDateTime=None, valueQuantity=None)
    names = draw(st.lists(st.sampled_from(sorted(READ_ELEMENTS)), max_size=4, unique=True))
    for name in names:
        resource[name] = draw(st.sampled_from(READ_ELEMENTS[name]))
    return {k: v for k, v in resource.items() if v is not None}


def r4b_accepts(resource: dict[str, Any]) -> bool:
    from fhir.resources.R4B.observation import Observation

    try:
        Observation.model_validate(resource)
    except pydantic.ValidationError:
        return False
    return True


@settings(max_examples=600, deadline=None)
@given(mutated_observations())
def test_fast_path_never_accepts_what_r4b_rejects(resource):
    fast = parse_json(copy.deepcopy(resource)).parsed
    strict = parse_json(copy.deepcopy(resource), strict=True).parsed
    if not fast.rejections:
        assert r4b_accepts(resource), fast.reported
        assert strict == fast
    else:
        assert strict.rejections and not strict.reported


# Every element the parser reads, by the R4B model that defines it.
READ_IN_R4B = {
    "observation.Observation": "id status code subject encounter effectiveDateTime effectivePeriod "
    "effectiveInstant effectiveTiming issued valueQuantity valueInteger valueString "
    "valueCodeableConcept valueBoolean valueTime valueDateTime valueRange valueRatio "
    "valueSampledData valuePeriod dataAbsentReason component hasMember",
    "observation.ObservationComponent": "code valueQuantity valueInteger valueString "
    "valueCodeableConcept dataAbsentReason",
    "patient.Patient": "id gender birthDate identifier",
    "encounter.Encounter": "id status class subject period location serviceType",
    "encounter.EncounterLocation": "location status",
    "quantity.Quantity": "value comparator unit system code",
    "period.Period": "start",
    "reference.Reference": "reference",
    "codeableconcept.CodeableConcept": "coding text",
    "coding.Coding": "system code display",
    "identifier.Identifier": "system value",
    "bundle.Bundle": "type entry",
    "bundle.BundleEntry": "fullUrl resource",
}


@pytest.mark.parametrize(("model", "elements"), READ_IN_R4B.items())
def test_elements_read_exist_in_r4b(model, elements):
    module, name = model.split(".")
    fields = importlib.import_module(f"fhir.resources.R4B.{module}").__dict__[name].model_fields
    assert set(elements.split()) <= {f.alias or n for n, f in fields.items()}


def test_value_decimal_is_not_an_r4b_observation_element():
    from fhir.resources.R4B.observation import Observation

    assert "valueDecimal" not in Observation.model_fields  # so it is rejected, not read


@pytest.mark.slow
def test_r4b_resource_types_are_those_of_fhir_resources():
    import fhir.resources.R4B as r4b
    from fhir.resources.R4B.resource import Resource

    found = set()
    for module in pkgutil.iter_modules(r4b.__path__):
        loaded = importlib.import_module(f"{r4b.__name__}.{module.name}")
        for value in vars(loaded).values():
            if (
                isinstance(value, type)
                and issubclass(value, Resource)
                and value.__module__ == loaded.__name__
            ):
                found.add(value.get_resource_type())
    assert found - {"Resource", "DomainResource"} == R4B_RESOURCE_TYPES
