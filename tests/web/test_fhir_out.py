"""FHIR out: scores as RiskAssessments, alerts as Flags, their basis resolvable, errors as
OperationOutcomes — every body valid against fhir.resources' R4B models."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.riskassessment import RiskAssessment
from sqlalchemy import select, update

from wardwatch import fhir_resources
from wardwatch.alerts import workflow
from wardwatch.alerts.workflow import Actor
from wardwatch.clock import ward_now
from wardwatch.store.schema import observations, patients, scores
from wardwatch.ward import worklist

FHIR_JSON = "application/fhir+json"


def fhir_get(client, path, status=200, **params):
    response = client.get(f"/fhir/{path}", params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == FHIR_JSON
    return response.json()


def stay_with_open_sepsis(ward):
    with ward.engine.connect() as conn:
        return next(b for b in worklist(conn) if b.sepsis is not None and b.sepsis.active)


def stored_scores(ward, encounter_id):
    with ward.engine.connect() as conn:
        query = (
            select(scores)
            .where(scores.c.encounter_id == encounter_id, scores.c.role == "active")
            .order_by(scores.c.as_of.desc(), scores.c.id.desc())
        )
        return [dict(r) for r in conn.execute(query).mappings()]


def resources(bundle):
    Bundle.model_validate(bundle)
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
    return [entry["resource"] for entry in bundle.get("entry", [])]


# ---------------------------------------------------------------- RiskAssessment


@pytest.fixture
def reader(issue_token):
    """An EHR reading wardwatch's FHIR with a system token scoped to what it reads."""
    return issue_token("system/RiskAssessment.rs", "system/Flag.rs", "system/Observation.r")


def test_risk_assessments_of_a_stay_are_its_stored_scores_newest_first(reader, ward):
    bed = stay_with_open_sepsis(ward)
    stored = stored_scores(ward, bed.encounter_id)
    bundle = fhir_get(reader, "RiskAssessment", encounter=f"Encounter/{bed.encounter_id}",
                      _count=500)  # fmt: skip
    found = resources(bundle)
    assert bundle["total"] == len(stored) == len(found)
    assert [r["id"] for r in found] == [str(s["id"]) for s in stored]
    newest, score = found[0], stored[0]
    RiskAssessment.model_validate(newest)
    assert newest["status"] == "final"
    assert newest["subject"] == {"reference": f"Patient/{bed.patient_id}"}
    assert newest["encounter"] == {"reference": f"Encounter/{bed.encounter_id}"}
    assert newest["occurrenceDateTime"] == fhir_resources.instant(score["as_of"])
    prediction = newest["prediction"][0]
    assert prediction["probabilityDecimal"] == pytest.approx(score["risk"])
    assert prediction["qualitativeRisk"]["text"].startswith(bed.band)
    assert f"{100 * score['uncertainty']:.1f}%" in prediction["rationale"]
    assert newest["performer"]["display"] == f"wardwatch sepsis model {score['model_version']}"


def test_basis_references_resolve_to_the_observations_the_score_read(reader, ward):
    bed = stay_with_open_sepsis(ward)
    score = stored_scores(ward, bed.encounter_id)[0]
    assessment = fhir_get(reader, f"RiskAssessment/{score['id']}")
    basis = {}
    for ref in assessment["basis"]:
        observation = fhir_get(reader, ref["reference"])
        Observation.model_validate(observation)
        row_id = fhir_resources.observation_row_id(observation["id"])
        basis[observation["code"]["coding"][0]["code"]] = row_id
    with ward.engine.connect() as conn:
        latest_hr = conn.execute(
            select(observations.c.id, observations.c.loinc, observations.c.value)
            .where(observations.c.encounter_id == bed.encounter_id)
            .where(observations.c.variable == "HR", observations.c.effective_at <= score["as_of"])
            .order_by(observations.c.effective_at.desc(), observations.c.id.desc())
        ).first()  # fmt: skip
        hr = fhir_get(reader, f"Observation/ww-{latest_hr.id}")
    assert basis[latest_hr.loinc] == latest_hr.id
    assert hr["valueQuantity"]["value"] == latest_hr.value
    assert hr["encounter"] == {"reference": f"Encounter/{bed.encounter_id}"}


def test_search_by_patient_pages_with_next_links(reader, ward):
    bed = stay_with_open_sepsis(ward)
    first = fhir_get(reader, "RiskAssessment", patient=bed.patient_id, _count=5)
    assert len(resources(first)) == 5 and first["total"] > 10
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = reader.get(following).json()
    ids = [r["id"] for r in resources(first) + resources(second)]
    assert len(set(ids)) == 10
    assert {r["subject"]["reference"] for r in resources(second)} == {f"Patient/{bed.patient_id}"}


def test_shadow_scores_and_opted_out_patients_are_not_served(reader, ward):
    bed = stay_with_open_sepsis(ward)
    score_id = stored_scores(ward, bed.encounter_id)[0]["id"]
    with ward.engine.begin() as conn:
        conn.execute(update(scores).where(scores.c.id == score_id).values(role="shadow"))
    fhir_get(reader, f"RiskAssessment/{score_id}", 404)
    with ward.engine.begin() as conn:
        opt_out = update(patients).where(patients.c.patient_id == bed.patient_id)
        conn.execute(opt_out.values(opted_out_scoring=True))
    assert fhir_get(reader, "RiskAssessment", patient=bed.patient_id)["total"] == 0


@pytest.mark.parametrize(
    ("path", "status", "code", "params"),
    [
        ("RiskAssessment/999999", 404, "not-found", {}),
        ("RiskAssessment/abc", 404, "not-found", {}),
        ("Observation/12", 404, "not-found", {}),
        ("Flag/424242", 404, "not-found", {}),
        ("Patient/1", 404, "not-supported", {}),
        ("RiskAssessment", 400, "invalid", {"encounter": "x", "date": "2020"}),
        ("RiskAssessment", 400, "invalid", {"encounter": "x", "_count": "0"}),
        ("RiskAssessment", 400, "invalid", {"encounter": "Patient/x/y"}),
        ("Flag", 400, "invalid", {"category": "clinical"}),
    ],
)
def test_errors_are_operation_outcomes(reader, path, status, code, params):
    body = fhir_get(reader, path, status, **params)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code and body["issue"][0]["diagnostics"]


def test_an_unknown_stay_is_an_empty_searchset(reader):
    bundle = fhir_get(reader, "RiskAssessment", encounter="nobody", _format="json")
    assert bundle["total"] == 0 and "entry" not in bundle  # FHIR JSON has no empty arrays


def test_a_resource_that_fails_validation_is_a_server_error_never_sent(reader, ward, monkeypatch):
    bed = stay_with_open_sepsis(ward)
    broken = fhir_resources.risk_assessment

    def without_status(*args, **kwargs):
        return {k: v for k, v in broken(*args, **kwargs).items() if k != "status"}

    monkeypatch.setattr(fhir_resources, "risk_assessment", without_status)
    with pytest.raises(fhir_resources.InvalidResource, match="status"):
        reader.get("/fhir/RiskAssessment", params={"encounter": bed.encounter_id})


# ---------------------------------------------------------------- Flag


def test_alerts_are_flags_active_while_they_await_an_answer(provider, ward):
    bed = stay_with_open_sepsis(ward)
    flags = resources(fhir_get(provider, "Flag", patient=f"Patient/{bed.patient_id}"))
    sepsis = next(f for f in flags if f["id"] == str(bed.sepsis.alert_id))
    Flag.model_validate(sepsis)
    assert sepsis["status"] == "active"
    assert sepsis["code"]["text"] == "Sepsis early warning"
    assert sepsis["category"][0]["coding"][0]["code"] == "clinical"
    assert sepsis["period"] == {"start": fhir_resources.instant(bed.sepsis.opened_at)}
    assert sepsis["extension"] == [{"url": fhir_resources.ALERT_STATE_URL, "valueCode": "open"}]


def test_a_dismissed_alert_is_an_inactive_flag_with_its_reason(reader, ward):
    bed = stay_with_open_sepsis(ward)
    with ward.engine.begin() as conn:
        at = ward_now(conn)
        actor = Actor("dr.snow", "provider")
        workflow.dismiss(conn, bed.sepsis.alert_id, actor, "comfort_care", at=at)
    flag = fhir_get(reader, f"Flag/{bed.sepsis.alert_id}")
    Flag.model_validate(flag)
    assert flag["status"] == "inactive"
    assert flag["period"]["end"] == fhir_resources.instant(at)
    reason = flag["extension"][1]
    assert reason["url"] == fhir_resources.DISMISS_REASON_URL
    assert reason["valueCoding"]["code"] == "comfort_care"
    by_encounter = fhir_get(reader, "Flag", encounter=bed.encounter_id)
    assert str(bed.sepsis.alert_id) in {r["id"] for r in resources(by_encounter)}


def test_a_nurses_escalation_is_authored_by_the_nurse(reader, ward):
    with ward.engine.begin() as conn:
        bed = next(b for b in worklist(conn) if b.sepsis is None and b.escalation is None
                   and b.review is None)  # fmt: skip
        nurse = Actor("nurse.nightingale", "nurse")
        alert_id = workflow.escalate(conn, bed.encounter_id, bed.patient_id, nurse,
                                     at=ward_now(conn), note="looks unwell")  # fmt: skip
    flag = fhir_get(reader, f"Flag/{alert_id}")
    assert flag["author"] == {"display": "nurse.nightingale (nurse)"}
    assert flag["code"]["text"].startswith("Nurse concern")


def test_the_capability_statement_lists_what_is_served(reader):
    statement = fhir_get(reader, "metadata")
    served = {r["type"] for r in statement["rest"][0]["resource"]}
    assert served == {"RiskAssessment", "Flag", "Observation"}


@pytest.mark.parametrize("path", ["RiskAssessment", "Flag"])
def test_a_search_without_parameters_pages_through_everything_newest_first(reader, path):
    bundle = fhir_get(reader, path)
    assert bundle["type"] == "searchset" and bundle["total"] > 0
    ids = [int(entry["resource"]["id"]) for entry in bundle["entry"]]
    assert ids == sorted(ids, reverse=True)
