"""In silent mode nothing reaches clinicians: no risk or alert on the worklist, no patient
page, no clinical API answer, no FHIR RiskAssessment or Flag, no CDS Hooks card of any kind."""

from __future__ import annotations

from wardwatch.alerts import silent
from wardwatch.clock import ward_now
from wardwatch.ward import clear_worklist_cache, worklist

GOV = {"by": "auditor.ada", "role": "auditor"}


def go_silent(ward) -> None:
    with ward.engine.begin() as conn:
        silent.set_silent(conn, True, reason="validation before go-live", **GOV)
    clear_worklist_cache()


def alerted(ward):
    with ward.engine.connect() as conn:
        return next(b for b in worklist(conn, at=ward_now(conn), book=ward.book) if b.sepsis)


def test_the_worklist_shows_no_risk_and_no_alert_and_says_why(provider, ward):
    bed = alerted(ward)
    assert "sepsis alert" in provider.get("/ward").text
    go_silent(ward)
    page = provider.get("/ward").text
    assert "Silent mode." in page
    rows = page.split("<tbody", 1)[1].split("</tbody>", 1)[0]
    assert "sepsis alert" not in rows and "band-high" not in rows and "band-raised" not in rows
    assert bed.encounter_id in page  # the patients are there; the model's opinion is not


def test_patient_pages_and_the_clinical_api_answer_silent_mode(provider, ward):
    bed = alerted(ward)
    go_silent(ward)
    page = provider.get(f"/patients/{bed.encounter_id}")
    assert page.status_code == 503 and "Silent mode" in page.text
    for path in (f"/api/patients/{bed.encounter_id}", f"/api/patients/{bed.encounter_id}/scores",
                 "/api/alerts", f"/api/alerts/{bed.sepsis.alert_id}"):  # fmt: skip
        answer = provider.get(path)
        assert answer.status_code == 503, path
        assert answer.json()["type"] == "/problems/silent-mode"
    listed = provider.get("/api/patients").json()["patients"]
    assert all(p["risk"] is None for p in listed)


def test_fhir_serves_no_risk_assessment_or_flag(issue_token, ward):
    reader = issue_token("system/RiskAssessment.rs", "system/Flag.rs")
    go_silent(ward)
    for path in ("/fhir/RiskAssessment", "/fhir/Flag", "/fhir/Flag/1"):
        answer = reader.get(path)
        assert answer.status_code == 503, path
        assert answer.json()["resourceType"] == "OperationOutcome"


def test_the_cds_service_returns_no_card_at_all(client, ward):
    bed = alerted(ward)
    body = {"hook": "patient-view", "hookInstance": "8b2f1c1e-0000-4000-8000-000000000002",
            "context": {"userId": "Practitioner/1", "patientId": bed.patient_id}}  # fmt: skip
    assert client.post("/cds-services/wardwatch-sepsis", json=body).json()["cards"]
    go_silent(ward)
    assert client.post("/cds-services/wardwatch-sepsis", json=body).json() == {"cards": []}
