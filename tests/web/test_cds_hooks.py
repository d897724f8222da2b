"""CDS Hooks 2.0: discovery, the patient-view card, prefetch, and feedback into the workflow."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from wardwatch.alerts import workflow
from wardwatch.alerts.records import State, alert_events_for, get_alert
from wardwatch.chart import stay_history
from wardwatch.clock import ward_now
from wardwatch.explain import explain
from wardwatch.fhir_resources import validate
from wardwatch.store.schema import feedback, observations, patients, scores
from wardwatch.terminology import wording
from wardwatch.ward import worklist
from wardwatch.web import cards
from wardwatch.web.cds_hooks import SERVICE_ID, card_cache

SERVICE = f"/cds-services/{SERVICE_ID}"


def hook(patient_id: str, encounter_id: str | None = None, **extra: object) -> dict:
    context = {"userId": "Practitioner/123", "patientId": patient_id}
    if encounter_id is not None:
        context["encounterId"] = encounter_id
    body = {"hookInstance": str(uuid.uuid4()), "hook": "patient-view", "context": context}
    return body | extra


def beds_on(ward):
    with ward.engine.connect() as conn:
        return worklist(conn)


def with_open_sepsis(ward):
    return next(b for b in beds_on(ward) if b.sepsis is not None and b.sepsis.active)


def without_alert(ward):
    return next(
        b for b in beds_on(ward)
        if b.risk is not None and not any(
            r is not None and r.active for r in (b.sepsis, b.review, b.escalation))
    )  # fmt: skip


def card_for(client, bed, **extra):
    response = client.post(SERVICE, json=hook(bed.patient_id, bed.encounter_id, **extra))
    assert response.status_code == 200, response.text
    found = response.json()["cards"]
    assert len(found) == 1
    return found[0]


def latest_score(ward, encounter_id):
    with ward.engine.connect() as conn:
        query = (
            select(scores)
            .where(scores.c.encounter_id == encounter_id, scores.c.role == "active")
            .order_by(scores.c.id.desc())
        )
        return conn.execute(query).mappings().first()


# ---------------------------------------------------------------- discovery


def test_discovery_lists_one_patient_view_service_with_vitals_prefetch(client):
    services = client.get("/cds-services").json()["services"]
    assert [(s["id"], s["hook"]) for s in services] == [(SERVICE_ID, "patient-view")]
    prefetch = services[0]["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    assert prefetch["vitals"].startswith("Observation?patient={{context.patientId}}")
    assert "category=vital-signs" in prefetch["vitals"]


# ---------------------------------------------------------------- the card


def test_card_of_an_open_sepsis_alert_says_what_the_store_says(client, ward):
    bed = with_open_sepsis(ward)
    card = card_for(client, bed)
    score = latest_score(ward, bed.encounter_id)
    assert card["indicator"] == "critical"
    assert card["summary"].startswith(
        f"Sepsis risk {wording.percent(score['risk'])} ({bed.band}) — sepsis alert open"
    )
    assert len(card["summary"]) < 140
    assert card["source"]["label"] == f"wardwatch sepsis model {score['model_version']}"
    link = {"label": "Open the patient in wardwatch", "type": "absolute",
            "url": f"https://testserver/patients/{bed.encounter_id}"}  # fmt: skip
    assert card["links"] == [link]
    assert cards.read_card_uuid(card["uuid"]) == cards.CardRef(bed.sepsis.alert_id, score["id"], 0)


def test_starred_sentences_equal_explain_on_the_same_history(client, ward, model):
    bed = with_open_sepsis(ward)
    card = card_for(client, bed)
    score = latest_score(ward, bed.encounter_id)
    with ward.engine.connect() as conn:
        expected = explain(model, stay_history(conn, bed.encounter_id, score["as_of"]))
    assert expected.starred
    for measurement in expected.starred:
        assert f"- ★ {measurement.sentence}" in card["detail"]
    assert f"± {100 * score['uncertainty']:.1f}%" in card["detail"]
    assert score["model_version"] in card["detail"]


def test_suggestions_are_draft_r4_orders_and_override_reasons_are_the_dismiss_reasons(client, ward):
    card = card_for(client, with_open_sepsis(ward))
    assert card["selectionBehavior"] == "at-most-one"
    bundle, lactate_first = card["suggestions"]
    kinds = [a["resource"]["resourceType"] for a in bundle["actions"]]
    assert kinds[:3] == ["ServiceRequest", "ServiceRequest", "MedicationRequest"]
    assert [a["resource"]["code"]["coding"][0]["code"] for a in lactate_first["actions"]] == [
        "2524-7"
    ]
    for action in bundle["actions"] + lactate_first["actions"]:
        assert action["type"] == "create"
        resource = validate(action["resource"])
        assert (resource["status"], resource["intent"]) == ("draft", "proposal")
    assert [r["code"] for r in card["overrideReasons"]] == list(workflow.DISMISS_REASONS)


def test_no_suggestions_without_an_active_alert(client, ward):
    bed = without_alert(ward)
    card = card_for(client, bed)
    assert "suggestions" not in card and "overrideReasons" not in card
    assert card["indicator"] == ("warning" if bed.band == "high" else "info")
    assert cards.read_card_uuid(card["uuid"]).alert_id is None


def test_the_named_encounter_is_the_stay_and_another_patients_encounter_is_refused(client, ward):
    first, second = beds_on(ward)[:2]
    assert card_for(client, first)["links"][0]["url"].endswith(first.encounter_id)
    response = client.post(SERVICE, json=hook(first.patient_id, second.encounter_id))
    assert response.status_code == 400
    assert "is not an encounter of patient" in response.json()["detail"]


def test_without_encounter_the_patients_current_stay_is_used(client, ward):
    bed = with_open_sepsis(ward)
    response = client.post(SERVICE, json=hook(bed.patient_id))
    assert response.json()["cards"][0]["links"][0]["url"].endswith(bed.encounter_id)


def test_an_unknown_patient_gets_no_cards(client):
    response = client.post(SERVICE, json=hook("nobody-here"))
    assert response.status_code == 200
    assert response.json() == {"cards": []}


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"hookInstance": "x", "hook": "patient-view", "context": {"userId": "Practitioner/1"}},
         "context.patientId"),
        (hook("p1") | {"hook": "order-select"}, "answers the patient-view hook"),
        ({"hook": "patient-view"}, "hookInstance"),
        (hook("p1") | {"prefetch": {"vitals": {"resourceType": "Patient"}}}, "prefetch.vitals"),
    ],
)  # fmt: skip
def test_a_malformed_call_is_a_400_problem(client, ward, body, complaint):
    if "prefetch" in body:
        body["context"]["patientId"] = with_open_sepsis(ward).patient_id
    response = client.post(SERVICE, json=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert complaint in response.json()["detail"]


def test_not_json_is_a_400_and_an_unknown_service_a_404(client):
    assert client.post(SERVICE, content=b"{not json").status_code == 400
    assert client.post("/cds-services/other", json=hook("p1")).status_code == 404


def test_an_opted_out_patient_gets_one_info_card_without_a_risk(client, ward):
    bed = with_open_sepsis(ward)
    with ward.engine.begin() as conn:
        opt_out = update(patients).where(patients.c.patient_id == bed.patient_id)
        conn.execute(opt_out.values(opted_out_scoring=True))
    card = card_for(client, bed)
    assert card["indicator"] == "info"
    assert "opted out" in card["summary"]
    assert "%" not in card["summary"] + card["detail"]
    assert "suggestions" not in card and "uuid" not in card


def test_a_repeated_card_comes_from_the_cache_and_a_change_is_seen(provider, ward):
    bed = with_open_sepsis(ward)
    first = card_for(provider, bed)
    cache = card_cache(provider)
    cached = len(cache.facts), len(cache.explanations)
    assert card_for(provider, bed) == first
    assert (len(cache.facts), len(cache.explanations)) == cached
    assert feedback_on(provider, first, "overridden", reason="not_infected").status_code == 200
    after = card_for(provider, bed)
    assert "suggestions" not in after and after["indicator"] != "critical"


# ---------------------------------------------------------------- prefetch


def vitals_bundle(patient_id: str, at: datetime, value: float, rid: str = "hr-prefetch-1"):
    observation = {
        "resourceType": "Observation", "id": rid, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                            "observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": at.isoformat(),
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org",
                          "code": "/min"},
    }  # fmt: skip
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": observation}]}


def test_prefetched_vitals_are_ingested_scored_and_shown(client, ward):
    bed = without_alert(ward)
    with ward.engine.connect() as conn:
        at = ward_now(conn)  # the replay's last values are from this moment: be the newest
    before = latest_score(ward, bed.encounter_id)
    prefetch = {"vitals": vitals_bundle(bed.patient_id, at, 151)}
    card = card_for(client, bed, prefetch=prefetch)
    with ward.engine.connect() as conn:
        stored = conn.execute(
            select(observations).where(observations.c.source_id == "hr-prefetch-1")
        ).mappings().one()  # fmt: skip
    assert (stored["encounter_id"], stored["variable"], stored["value"]) == (
        bed.encounter_id, "HR", 151.0)  # fmt: skip
    after = latest_score(ward, bed.encounter_id)
    assert after["id"] > before["id"]
    assert after["through_observation_id"] >= stored["id"]
    assert card["summary"].startswith(f"Sepsis risk {wording.percent(after['risk'])}")
    assert "HR 151/min (this hour)" in card["detail"]
    assert after["risk"] != before["risk"]
    assert cards.read_card_uuid(card["uuid"]).score_id == after["id"]


def test_the_same_prefetch_again_stores_and_scores_nothing_new(client, ward):
    bed = without_alert(ward)
    with ward.engine.connect() as conn:
        at = ward_now(conn) - timedelta(minutes=5)
    prefetch = {"vitals": vitals_bundle(bed.patient_id, at, 140)}
    card_for(client, bed, prefetch=prefetch)
    counted = count_rows(ward)
    card_for(client, bed, prefetch=prefetch)
    assert count_rows(ward) == counted


def count_rows(ward):
    with ward.engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar()
                     for t in (observations, scores))  # fmt: skip


def test_prefetch_of_another_patient_is_refused_and_nothing_stored(client, ward):
    first, second = beds_on(ward)[:2]
    counted = count_rows(ward)
    prefetch = {"vitals": vitals_bundle(second.patient_id, datetime.now(UTC), 100)}
    response = client.post(SERVICE, json=hook(first.patient_id, prefetch=prefetch))
    assert response.status_code == 400
    assert "other patients" in response.json()["detail"]
    assert count_rows(ward) == counted


def test_a_null_prefetch_falls_back_to_the_store(client, ward):
    bed = with_open_sepsis(ward)
    assert card_for(client, bed, prefetch={"vitals": None}) == card_for(client, bed)


# ---------------------------------------------------------------- feedback


def feedback_on(client, card, outcome, *, reason=None, comment=None, suggestion=None, **extra):
    item = {"card": card["uuid"], "outcome": outcome,
            "outcomeTimestamp": datetime.now(UTC).isoformat()}  # fmt: skip
    if reason is not None or comment is not None:
        coding = (
            None
            if reason is None
            else {"code": reason, "system": card["overrideReasons"][0]["system"]}
        )
        item["overrideReason"] = {"reason": coding, "userComment": comment}
    if suggestion is not None:
        item["acceptedSuggestions"] = [{"id": card["suggestions"][suggestion]["uuid"]}]
    return client.post(f"{SERVICE}/feedback", json={"feedback": [item], **extra})


def alert_of(ward, card):
    with ward.engine.connect() as conn:
        alert_id = cards.read_card_uuid(card["uuid"]).alert_id
        return get_alert(conn, alert_id), alert_events_for(conn, alert_id)


def test_overridden_with_a_reason_dismisses_the_alert_with_that_reason(provider, ward):
    card = card_for(provider, with_open_sepsis(ward))
    response = feedback_on(provider, card, "overridden", reason="known_condition",
                           comment="chronic liver disease")  # fmt: skip
    assert response.status_code == 200, response.text
    alert, events = alert_of(ward, card)
    assert alert.state is State.DISMISSED
    last = events[-1]
    assert (last["action"], last["reason_code"], last["note"]) == (
        "dismiss", "known_condition", "chronic liver disease")  # fmt: skip
    assert (last["actor"], last["role"]) == ("dr.snow", "provider")


def test_accepting_the_bundle_confirms_and_the_lactate_suggestion_pauses(provider, ward):
    first, second = [b for b in beds_on(ward) if b.sepsis is not None and b.sepsis.active][:2]
    bundle_card, lactate_card = card_for(provider, first), card_for(provider, second)
    assert feedback_on(provider, bundle_card, "accepted", suggestion=0).status_code == 200
    assert feedback_on(provider, lactate_card, "accepted", suggestion=1).status_code == 200
    confirmed, events = alert_of(ward, bundle_card)
    assert confirmed.state is State.CONFIRMED
    assert "SEP-1 bundle" in events[-1]["note"]
    paused, _ = alert_of(ward, lactate_card)
    assert paused.state is State.PAUSED and paused.pause_until_new_data


def test_a_trusted_cds_client_names_the_user_who_acted(client, ward):
    card = card_for(client, with_open_sepsis(ward))
    named = {"extension": {"wardwatch.userId": "Practitioner/123"}}
    assert feedback_on(client, card, "overridden", reason="data_error", **named).status_code == 200
    _, events = alert_of(ward, card)
    assert (events[-1]["actor"], events[-1]["role"]) == ("Practitioner/123", "provider")


def test_feedback_needs_someone_who_may_act(client, ward, sign_in):
    card = card_for(client, with_open_sepsis(ward))
    assert feedback_on(client, card, "overridden", reason="data_error").status_code == 401
    sign_in("nurse.nightingale")
    response = feedback_on(client, card, "overridden", reason="data_error")
    assert response.status_code == 403
    assert alert_of(ward, card)[0].state is State.OPEN


def test_feedback_on_a_closed_alert_is_a_conflict(provider, ward):
    card = card_for(provider, with_open_sepsis(ward))
    assert feedback_on(provider, card, "overridden", reason="data_error").status_code == 200
    response = feedback_on(provider, card, "accepted", suggestion=0)
    assert response.status_code == 409
    assert "it is dismissed" in response.json()["detail"]


def test_bad_feedback_is_a_400_and_records_nothing(provider, ward):
    card = card_for(provider, with_open_sepsis(ward))
    good = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z",
            "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}  # fmt: skip
    bad = good | {"outcome": "overridden", "overrideReason": {"reason": {"code": "other"}}}
    response = provider.post(f"{SERVICE}/feedback", json={"feedback": [good, bad]})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("feedback[1]: dismissing for reason 'other'")
    assert alert_of(ward, card)[0].state is State.OPEN  # the first item was rolled back too
    stranger = good | {"card": str(uuid.uuid4())}
    response = provider.post(f"{SERVICE}/feedback", json={"feedback": [stranger]})
    assert response.status_code == 400 and "not the uuid of a wardwatch card" in response.text
    unknown_reason = feedback_on(provider, card, "overridden", reason="bored")
    assert unknown_reason.status_code == 400


def test_an_override_without_a_reason_leaves_the_alert_and_is_kept_as_feedback(provider, ward):
    card = card_for(provider, with_open_sepsis(ward))
    response = feedback_on(provider, card, "overridden", comment="not now")
    assert response.status_code == 200
    assert alert_of(ward, card)[0].state is State.OPEN
    with ward.engine.connect() as conn:
        kept = conn.execute(select(feedback)).mappings().all()
    assert [(k["actor"], k["page"]) for k in kept] == [("dr.snow", f"cds-hooks/{SERVICE_ID}")]
    assert "without a dismissal reason" in kept[0]["text"] and "not now" in kept[0]["text"]


# ---------------------------------------------------------------- card uuids


def test_card_uuids_round_trip_and_are_valid_uuids():
    for alert_id, score_id, item in [(1, 2, 0), (None, 7, 0), (2**30 - 1, 2**32 - 1, 255)]:
        text = cards.card_uuid(alert_id, score_id, item)
        assert uuid.UUID(text).version == 8
        assert cards.read_card_uuid(f"urn:uuid:{text}") == cards.CardRef(alert_id, score_id, item)
    with pytest.raises(ValueError, match="not the uuid of a wardwatch card"):
        cards.read_card_uuid(str(uuid.uuid4()))
    with pytest.raises(ValueError):
        cards.card_uuid(2**30, 1)
