"""The JSON API on a real replayed ward (24 sample patients, 48 h in): each answer is checked
against the read models it comes from, and each write in the database it changed."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from wardwatch import ward as ward_model
from wardwatch.alerts import workflow
from wardwatch.alerts.records import get_alert
from wardwatch.chart import stay_history
from wardwatch.clock import ward_now
from wardwatch.explain import what_if
from wardwatch.scoring import OPTED_OUT
from wardwatch.store.schema import observations, patients, quarantine
from wardwatch.web.api import MAX_BODY_BYTES

FHIR_DATA = Path(__file__).resolve().parents[1] / "data" / "fhir"
FHIR_JSON = {"content-type": "application/fhir+json"}
PROBLEM = "application/problem+json"

# ---------------------------------------------------------------- helpers


def present(ward) -> list[ward_model.Bed]:
    with ward.engine.connect() as conn:
        return ward_model.worklist(conn, book=ward.book)


def scored(ward) -> ward_model.Bed:
    """The stay at the top of the worklist: scored, high risk, with an open alert."""
    return present(ward)[0]


def open_alert_ids(ward) -> list[int]:
    with ward.engine.connect() as conn:
        return [a.alert_id for a in workflow.open_alerts(conn) if a.state.value == "open"]


def opt_out(ward, patient_id: str) -> None:
    with ward.engine.begin() as conn:
        query = update(patients).where(patients.c.patient_id == patient_id)
        conn.execute(query.values(opted_out_scoring=True))


def evaluate(client, alert_id: int, evaluation: dict):
    return client.post(f"/api/alerts/{alert_id}/evaluation", json=evaluation)


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    assert body["instance"] == response.request.url.path
    return body


def synthea() -> dict:
    return json.loads((FHIR_DATA / "synthea_patient_c_subset.json").read_text())


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def quarantined(ward) -> list[dict]:
    with ward.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(quarantine)).mappings()]


# ---------------------------------------------------------------- sign-in


@pytest.mark.parametrize("path", ["/api/patients", "/api/alerts", "/api/quarantine/summary"])
def test_every_answer_needs_a_signed_in_clinician(client, path):
    body = assert_problem(client.get(path), 401)
    assert "sign in" in body["detail"]


# ---------------------------------------------------------------- patients


def test_the_worklist_is_the_wards_read_model_highest_risk_first(provider, ward):
    answer = provider.get("/api/patients").json()
    beds = present(ward)
    assert [p["encounter_id"] for p in answer["patients"]] == [b.encounter_id for b in beds]
    top, bed = answer["patients"][0], beds[0]
    assert top["risk"] == pytest.approx(bed.risk)
    assert top["band"] == bed.band and top["alert_state"] == bed.alert_state
    assert top["not_scored_reason"] is None
    assert [v["variable"] for v in top["vitals"]] == list(ward_model.VITALS)
    assert {a["kind"] for a in top["alerts"]} <= {"sepsis", "review", "escalation"}
    risks = [p["risk"] for p in answer["patients"] if p["risk"] is not None]
    assert risks == sorted(risks, reverse=True)


def test_the_worklist_can_show_one_unit(provider, ward):
    answer = provider.get("/api/patients", params={"unit": "MICU"}).json()
    expected = [b.encounter_id for b in present(ward) if b.unit == "MICU"]
    assert answer["unit"] == "MICU"
    assert [p["encounter_id"] for p in answer["patients"]] == expected
    assert provider.get("/api/patients", params={"unit": "nowhere"}).json()["patients"] == []


def test_a_chart_shows_the_bed_the_starred_measurements_and_the_alerts(provider, ward):
    bed = scored(ward)
    chart = provider.get(f"/api/patients/{bed.encounter_id}").json()
    assert chart["bed"]["encounter_id"] == bed.encounter_id
    assert chart["bed"]["risk"] == pytest.approx(bed.risk)
    assert chart["model_version"] == ward.model.version
    assert 1 <= len(chart["starred"]) <= 3
    for m in chart["starred"]:
        assert m["value"] is not None and m["unit"] is not None and m["measured_at"]
        assert m["risk_change"] > 0
        assert m["sentence"].startswith(m["display"])
    assert chart["alerts"] and chart["alerts"][0]["encounter_id"] == bed.encounter_id


def test_an_unknown_stay_is_a_404_problem(provider):
    body = assert_problem(provider.get("/api/patients/p999999-icu"), 404)
    assert "p999999-icu" in body["detail"]
    assert_problem(provider.get("/api/patients/p999999-icu/scores"), 404)


def test_the_risk_history_is_oldest_first_and_can_start_later(provider, ward):
    bed = scored(ward)
    path = f"/api/patients/{bed.encounter_id}/scores"
    scores = provider.get(path).json()["scores"]
    times = [s["as_of"] for s in scores]
    assert times == sorted(times) and len(times) > 10
    assert scores[-1]["risk"] == pytest.approx(bed.risk)
    since = scores[-3]["as_of"]
    assert provider.get(path, params={"since": since}).json()["scores"] == scores[-3:]


def test_a_time_without_its_zone_is_refused(provider, ward):
    path = f"/api/patients/{scored(ward).encounter_id}/scores"
    body = assert_problem(provider.get(path, params={"since": "2026-11-20T10:00:00"}), 422)
    assert body["errors"][0]["loc"] == ["query", "since"]


def test_an_opted_out_patient_is_listed_without_a_risk_and_says_why(provider, ward):
    bed = scored(ward)
    opt_out(ward, bed.patient_id)
    line = next(
        p
        for p in provider.get("/api/patients").json()["patients"]
        if p["encounter_id"] == bed.encounter_id
    )
    assert line["opted_out"] is True
    assert (line["risk"], line["uncertainty"], line["ood"]) == (None, None, None)
    assert line["not_scored_reason"] == OPTED_OUT
    chart = provider.get(f"/api/patients/{bed.encounter_id}").json()
    assert chart["starred"] == [] and chart["bed"]["not_scored_reason"] == OPTED_OUT
    history = provider.get(f"/api/patients/{bed.encounter_id}/scores").json()
    assert history == {
        "encounter_id": bed.encounter_id,
        "not_scored_reason": OPTED_OUT,
        "scores": [],
    }
    answer = provider.post(
        f"/api/patients/{bed.encounter_id}/what-if", json={"changes": {"Lactate": 1.0}}
    ).json()
    assert answer["risk_after"] is None and answer["not_scored_reason"] == OPTED_OUT


# ---------------------------------------------------------------- what-if


def test_what_if_answers_as_the_explanation_does(provider, ward):
    bed = scored(ward)
    response = provider.post(
        f"/api/patients/{bed.encounter_id}/what-if", json={"changes": {"Lactate": 1.0}}
    )
    assert response.status_code == 200
    with ward.engine.connect() as conn:
        expected = what_if(
            ward.model, stay_history(conn, bed.encounter_id, ward_now(conn)), {"Lactate": 1.0}
        )
    answer = response.json()
    assert answer["changes"] == {"Lactate": 1.0}
    assert answer["risk_before"] == pytest.approx(expected.risk_before)
    assert answer["risk_after"] == pytest.approx(expected.risk_after)
    assert answer["uncertainty_after"] == pytest.approx(expected.uncertainty_after)
    assert answer["ood_after"] is expected.ood_after
    assert answer["sentence"] == expected.sentence


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"Lactatex": 1.0}, ["body", "changes", "Lactatex"]),  # not a variable
        ({"Lactate": 400.0}, ["body", "changes", "Lactate"]),  # not plausible
        ({"Lactate": "1.0"}, ["body", "changes", "Lactate"]),  # not a number
        ({}, ["body", "changes"]),  # nothing to change
    ],
)
def test_a_what_if_the_model_cannot_answer_is_a_422_problem(provider, ward, changes, where):
    path = f"/api/patients/{scored(ward).encounter_id}/what-if"
    body = assert_problem(provider.post(path, json={"changes": changes}), 422)
    assert body["errors"][0]["loc"] == where


# ---------------------------------------------------------------- alerts


def test_the_alert_list_is_every_open_and_paused_alert(provider, ward):
    answer = provider.get("/api/alerts").json()["alerts"]
    with ward.engine.connect() as conn:
        expected = workflow.open_alerts(conn)
    assert [a["alert_id"] for a in answer] == [a.alert_id for a in expected]
    assert answer and all(a["active"] and a["state"] in ("open", "paused") for a in answer)


def test_an_alert_comes_with_its_timeline(provider, ward):
    alert_id = open_alert_ids(ward)[0]
    alert = provider.get(f"/api/alerts/{alert_id}").json()
    assert alert["alert_id"] == alert_id and alert["state"] == "open"
    assert alert["events"][0]["action"] == "open" and alert["events"][0]["actor"] == "wardwatch"
    assert alert["checklist"] == []


def test_an_unknown_alert_is_a_404_problem(provider):
    body = assert_problem(provider.get("/api/alerts/999999"), 404)
    assert "999999" in body["detail"]
    evaluation = {"action": "confirm"}
    assert_problem(evaluate(provider, 999999, evaluation), 404)


def test_a_provider_confirms_an_alert_and_its_treatment_checklist_starts(provider, ward):
    alert_id = open_alert_ids(ward)[0]
    confirmation = {"action": "confirm", "lactate": 4.6, "hypotension": False, "note": "septic"}
    response = evaluate(provider, alert_id, confirmation)
    assert response.status_code == 200
    answer = response.json()
    assert answer["state"] == "confirmed" and answer["active"] is False
    last = answer["events"][-1]
    assert (last["action"], last["actor"], last["note"]) == ("confirm", "dr.snow", "septic")
    fluids = next(i for i in answer["checklist"] if i["item"] == "fluids")
    assert fluids["applicable"] is True and "4.6" in fluids["why"]
    with ward.engine.connect() as conn:
        assert get_alert(conn, alert_id).state.value == "confirmed"
    assert provider.get(f"/api/alerts/{alert_id}").json() == answer


def test_a_provider_pauses_an_alert_until_new_data(provider, ward):
    alert_id = open_alert_ids(ward)[0]
    answer = evaluate(provider, alert_id, {"action": "pause", "until_new_data": True}).json()
    assert answer["state"] == "paused" and answer["pause_until_new_data"] is True
    listed = provider.get("/api/alerts").json()["alerts"]
    assert answer["alert_id"] in [a["alert_id"] for a in listed]


def test_a_pause_that_ends_before_the_ward_clock_is_a_422_problem(provider, ward):
    alert_id = open_alert_ids(ward)[0]
    with ward.engine.connect() as conn:
        past = ward_now(conn) - timedelta(hours=1)
    evaluation = {"action": "pause", "until": past.isoformat()}
    body = assert_problem(evaluate(provider, alert_id, evaluation), 422)
    assert "is not after" in body["detail"]
    with ward.engine.connect() as conn:
        assert get_alert(conn, alert_id).state.value == "open"


def test_dismissing_twice_is_a_409_problem_naming_the_state(provider, ward):
    alert_id = open_alert_ids(ward)[0]
    evaluation = {"action": "dismiss", "reason_code": "not_infected"}
    assert evaluate(provider, alert_id, evaluation).json()["state"] == "dismissed"
    body = assert_problem(evaluate(provider, alert_id, evaluation), 409)
    assert "dismissed" in body["detail"]


def test_a_nurse_may_not_evaluate_an_alert(nurse, ward):
    alert_id = open_alert_ids(ward)[0]
    evaluation = {"action": "dismiss", "reason_code": "not_infected"}
    body = assert_problem(evaluate(nurse, alert_id, evaluation), 403)
    assert "nurse" in body["detail"]
    with ward.engine.connect() as conn:
        assert get_alert(conn, alert_id).state.value == "open"


@pytest.mark.parametrize(
    "evaluation",
    [
        {"action": "escalate"},  # not an evaluation
        {"action": "dismiss"},  # no reason
        {"action": "dismiss", "reason_code": "bored"},  # not a reason on the list
        {"action": "confirm", "reason_code": "not_infected"},  # a member confirm does not have
        {"action": "confirm", "hypotension": 0},  # not a boolean
        {"action": "pause", "until": 1700000000},  # not a time
    ],
)
def test_an_evaluation_that_is_not_one_is_a_422_problem(provider, ward, evaluation):
    alert_id = open_alert_ids(ward)[0]
    body = assert_problem(evaluate(provider, alert_id, evaluation), 422)
    assert body["errors"]


def test_dismissing_for_another_reason_needs_a_note(provider, ward):
    alert_id = open_alert_ids(ward)[0]
    evaluation = {"action": "dismiss", "reason_code": "other"}
    body = assert_problem(evaluate(provider, alert_id, evaluation), 422)
    assert "needs a note" in body["detail"]


# ---------------------------------------------------------------- FHIR ingest


def test_a_fhir_observation_is_stored_once(engineer, ward):
    bundle = synthea()
    patient = resources(bundle, "Patient")[0]
    glucose = next(o for o in resources(bundle, "Observation") if o["id"].startswith("30b8f234"))
    glucose = {**glucose, "subject": {"reference": f"Patient/{patient['id']}"}}
    del glucose["encounter"]
    first = engineer.post("/api/ingest/fhir", json=patient, headers=FHIR_JSON)
    assert first.status_code == 200 and first.json()["patients"] == 1
    stored = engineer.post("/api/ingest/fhir", json=glucose, headers=FHIR_JSON)
    assert stored.status_code == 201
    assert stored.json() == {
        "received": 1, "accepted": 1, "duplicates": 0, "quarantined": {},
        "quarantined_total": 0, "ignored": {}, "patients": 0,
    }  # fmt: skip
    with ward.engine.connect() as conn:
        row = (
            conn.execute(select(observations).where(observations.c.source_id == glucose["id"]))
            .mappings()
            .one()
        )
    assert (row["patient_id"], row["loinc"], row["variable"]) == (
        patient["id"],
        "2339-0",
        "Glucose",
    )
    again = engineer.post("/api/ingest/fhir", json=glucose)  # application/json
    assert again.status_code == 200 and again.json()["duplicates"] == 1


def test_a_synthea_bundle_is_stored_and_what_is_not_used_is_counted(engineer, ward):
    text = (FHIR_DATA / "synthea_patient_c_subset.json").read_bytes()
    response = engineer.post("/api/ingest/fhir", content=text, headers=FHIR_JSON)
    assert response.status_code == 201
    summary = response.json()
    assert summary["accepted"] > 20 and summary["patients"] == 1
    assert summary["ignored"] == {
        "Immunization": 1,
        "DiagnosticReport": 2,
        "Claim": 1,
        "ExplanationOfBenefit": 1,
    }
    total = summary["accepted"] + summary["duplicates"] + summary["quarantined_total"]
    assert total == summary["received"]
    patient_id = resources(synthea(), "Patient")[0]["id"]
    with ward.engine.connect() as conn:
        query = select(func.count()).where(observations.c.patient_id == patient_id)
        assert conn.scalar(query) == summary["accepted"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "why"),
    [
        (b'{"resourceType": "Observation",', "application/fhir+json", 400, "not valid JSON"),
        (b"\xff\xfe not text", "application/json", 400, "not valid JSON"),
        (b'{"resourceType": "Claim"}', "application/fhir+json", 422, "not something"),
        (b"[1, 2]", "application/fhir+json", 422, "is a list"),
        (b'{"resourceType": "Bundle"}', "application/fhir+json", 422, "Bundle.type"),
        (b"MSH|^~\\&|LAB", "text/plain", 415, "sent as 'text/plain'"),
    ],
)
def test_a_document_that_cannot_be_read_is_a_problem_and_kept(
    engineer, ward, body, content_type, status, why
):
    response = engineer.post(
        "/api/ingest/fhir", content=body, headers={"content-type": content_type}
    )
    problem = assert_problem(response, status)
    assert why in problem["detail"] and "quarantine" in problem["detail"]
    [kept] = quarantined(ward)
    assert (kept["source"], kept["reason_code"]) == ("fhir", "unreadable")
    assert why in kept["reason"]
    assert kept["payload"] == body.decode("utf-8", errors="backslashreplace")
    listed = engineer.get("/api/quarantine").json()["items"]
    assert [(i["id"], i["reason"]) for i in listed] == [(kept["id"], kept["reason"])]


def test_a_document_over_the_limit_is_refused_unread(engineer, ward):
    body = b" " * (MAX_BODY_BYTES + 1)
    response = engineer.post("/api/ingest/fhir", content=body, headers=FHIR_JSON)
    problem = assert_problem(response, 413)
    assert "10 MB" in problem["detail"]
    assert quarantined(ward) == []


# ---------------------------------------------------------------- quarantine


def broken_documents(engineer, n: int) -> None:
    for i in range(n):
        engineer.post("/api/ingest/fhir", content=f"broken {i}", headers=FHIR_JSON)
    engineer.post("/api/ingest/fhir", content=b"{}", headers=FHIR_JSON)


def test_the_quarantine_is_listed_newest_first_a_page_at_a_time(engineer, ward):
    broken_documents(engineer, 4)
    everything = engineer.get("/api/quarantine").json()
    assert everything["total"] == 5
    ids = [i["id"] for i in everything["items"]]
    assert ids == sorted(ids, reverse=True)
    page = engineer.get("/api/quarantine", params={"limit": 2, "offset": 2}).json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)
    assert [i["id"] for i in page["items"]] == ids[2:4]
    assert engineer.get("/api/quarantine", params={"reason": "implausible"}).json() == {
        "total": 0,
        "limit": 100,
        "offset": 0,
        "reason": "implausible",
        "items": [],
    }


def test_the_quarantine_summary_counts_by_reason(engineer, ward):
    assert engineer.get("/api/quarantine/summary").json() == {"total": 0, "by_reason": {}}
    broken_documents(engineer, 2)
    assert engineer.get("/api/quarantine/summary").json() == {
        "total": 3,
        "by_reason": {"unreadable": 3},
    }


def test_a_quarantine_item_has_its_whole_payload(engineer, ward, monkeypatch):
    monkeypatch.setattr("wardwatch.web.api.PREVIEW_CHARS", 10)
    payload = "not json " * 20
    engineer.post("/api/ingest/fhir", content=payload, headers=FHIR_JSON)
    [listed] = engineer.get("/api/quarantine").json()["items"]
    assert listed["payload"] == payload[:10] and listed["payload_chars"] == len(payload)
    item = engineer.get(f"/api/quarantine/{listed['id']}").json()
    assert item["payload"] == payload and item["payload_chars"] == len(payload)
    assert_problem(engineer.get("/api/quarantine/999999"), 404)
