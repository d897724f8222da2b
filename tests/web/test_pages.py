"""The clinicians' pages on a real replayed ward (24 sample patients, 48 h in): what they show
is checked against the read models and the explanation computed here, and every action is
checked in the database it changed."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from wardwatch import ward as ward_model
from wardwatch.alerts import workflow
from wardwatch.alerts.records import get_alert
from wardwatch.chart import stay_history
from wardwatch.clock import set_ward_clock, ward_now
from wardwatch.explain import explain, what_if
from wardwatch.store.schema import (
    checklist_items,
    feedback,
    nursing_assessments,
    observations,
    patients,
)
from wardwatch.terminology import wording
from wardwatch.ward import clear_worklist_cache

# ---------------------------------------------------------------- helpers


def text_of(page: str) -> str:
    """The page as a reader sees it: no tags, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def row_order(page: str) -> list[str]:
    return re.findall(r'<tr class="row[^"]*" data-encounter="([^"]+)"', page)


def rows(page: str) -> dict[str, str]:
    """Each worklist row's HTML, by encounter id."""
    parts = re.split(r'(?=<tr class="row)', page)
    found = {}
    for part in parts[1:]:
        eid = re.match(r'<tr class="row[^"]*" data-encounter="([^"]+)"', part)
        assert eid is not None
        found[eid.group(1)] = part.split("</tr>", 1)[0]
    return found


def present(ward) -> list[ward_model.Bed]:
    with ward.engine.connect() as conn:
        return ward_model.worklist(conn, book=ward.book)


def alerted(ward) -> ward_model.Bed:
    """The highest-risk stay with an open sepsis alert."""
    return next(b for b in present(ward) if b.sepsis is not None and b.sepsis.active)


def now_of(ward):
    with ward.engine.connect() as conn:
        return ward_now(conn)


def post(client, url: str, data: dict | None = None, **headers: str):
    return client.post(url, data=data or {}, headers=headers, follow_redirects=False)


def state_of(ward, alert_id: int) -> str:
    with ward.engine.connect() as conn:
        return get_alert(conn, alert_id).state.value


# ---------------------------------------------------------------- sign-in


def test_pages_redirect_to_signin_without_a_signed_in_clinician(client):
    for path in ("/ward", "/ward/rows", "/model", "/patients/anything"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/signin?next=")
    assert client.get("/", follow_redirects=False).headers["location"] == "/signin"
    unit = client.get("/ward?unit=MICU", follow_redirects=False).headers["location"]
    assert unit == "/signin?next=/ward%3Funit%3DMICU"
    assert 'name="next" value="/ward?unit=MICU"' in client.get(unit).text


def test_actions_need_a_signed_in_clinician_and_change_nothing_without(client, ward):
    bed = alerted(ward)
    url = f"/patients/{bed.encounter_id}/alerts/{bed.sepsis.alert_id}/dismiss"
    response = post(client, url, {"reason": "not_infected"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin")
    assert state_of(ward, bed.sepsis.alert_id) == "open"


def test_the_htmx_refresh_is_sent_to_the_signin_page_not_given_it_as_rows(client):
    response = client.get("/ward/rows", headers={"HX-Request": "true"}, follow_redirects=False)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/signin")


# ---------------------------------------------------------------- the worklist


def test_worklist_lists_the_present_patients_highest_risk_first(provider, ward):
    beds = present(ward)
    page = provider.get("/ward").text
    assert row_order(page) == [b.encounter_id for b in beds]
    risks = [b.risk for b in beds if b.risk is not None]
    assert risks == sorted(risks, reverse=True) and len(risks) >= 5
    for bed in beds:
        row = text_of(rows(page)[bed.encounter_id])
        assert bed.patient_id in row
        if bed.risk is not None:
            assert wording.percent(bed.risk) in row
            assert f"±{100 * bed.uncertainty:.1f} pts" in row
            assert {"high": "High", "raised": "Raised", "low": "Low"}[bed.band] in row
        for reading in bed.vitals:
            if reading.value is not None:
                assert f"{reading.name} · " in row and wording.number(reading.value) in row


def test_worklist_bands_read_without_colour(provider, ward):
    page = provider.get("/ward").text
    high = next(b for b in present(ward) if b.band == "high")
    assert '<span aria-hidden="true">▲</span> High' in rows(page)[high.encounter_id]


def test_a_never_measured_vital_shows_a_dash_not_a_normal_value(provider, ward):
    bed = present(ward)[0]
    with ward.engine.begin() as conn:
        conn.execute(delete(observations).where(
            observations.c.encounter_id == bed.encounter_id, observations.c.variable == "HR"
        ))  # fmt: skip
    clear_worklist_cache()  # observations are append-only: deleting one is for this test only
    row = rows(provider.get("/ward").text)[bed.encounter_id]
    hr = re.search(r'<li class="vital missing" title="HR: not measured[^"]*">(.*?)</li>', row)
    assert hr is not None, row
    assert text_of(hr.group(1)) == "HR — not measured"


def test_the_rows_fragment_is_what_htmx_refreshes(provider, ward):
    page = provider.get("/ward?unit=MICU").text
    assert 'hx-get="/ward/rows?unit=MICU"' in page and 'hx-trigger="every 5s"' in page
    fragment = provider.get("/ward/rows?unit=MICU")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    micu = [b.encounter_id for b in present(ward) if b.unit == "MICU"]
    assert row_order(fragment.text) == micu and micu
    assert "render;dur=" in fragment.headers["Server-Timing"]


def test_the_rows_show_a_decision_as_soon_as_it_is_taken(provider, ward):
    bed = alerted(ward)
    before = rows(provider.get("/ward/rows").text)[bed.encounter_id]
    assert "sepsis alert open" in before
    with ward.engine.begin() as conn:
        workflow.dismiss(conn, bed.sepsis.alert_id, workflow.Actor("dr.snow", "provider"),
                         "known_condition", at=ward_now(conn))  # fmt: skip
    after = rows(provider.get("/ward/rows").text)[bed.encounter_id]
    assert "sepsis alert dismissed" in after


def test_an_opted_out_patient_is_listed_without_a_score(provider, ward):
    bed = present(ward)[0]
    with ward.engine.begin() as conn:
        conn.execute(update(patients).where(patients.c.patient_id == bed.patient_id)
                     .values(opted_out_scoring=True))  # fmt: skip
    page = provider.get("/ward").text
    row = text_of(rows(page)[bed.encounter_id])
    assert "not scored — opted out" in row
    assert wording.percent(bed.risk) not in row
    assert row_order(page)[-1] == bed.encounter_id  # no score: listed after the scored


# ---------------------------------------------------------------- the patient page


def test_the_patient_page_stars_the_measurements_explain_stars(provider, ward, model):
    bed = alerted(ward)
    with ward.engine.connect() as conn:
        expected = explain(model, stay_history(conn, bed.encounter_id, ward_now(conn)))
    page = provider.get(f"/patients/{bed.encounter_id}").text
    starred = {m.display for m in expected.starred}
    assert starred
    shown = re.findall(r'<tr class="is-starred">.*?<th scope="row">(.*?)</th>', page, re.S)
    assert {html.unescape(s) for s in shown} == starred
    for m in expected.starred:
        assert html.escape(m.sentence, quote=False) in page
    plain = next(m for m in expected.measurements if not m.starred and m.value is not None)
    assert f'<th scope="row">{html.escape(plain.display, quote=False)}</th>' in page
    for m in expected.measurements:
        if m.value is None:
            assert html.escape(m.display, quote=False) in page.split("Not measured in this stay")[1]


def test_the_patient_page_shows_the_alert_its_reasons_and_the_uncertainty(provider, ward):
    bed = alerted(ward)
    page = provider.get(f"/patients/{bed.encounter_id}").text
    words = text_of(page)
    for reason in bed.sepsis.reasons:
        assert reason in words
    assert wording.percent(bed.risk) in words
    assert f"±{100 * bed.uncertainty:.1f} pts" in words
    assert f"disagree by ±{100 * bed.uncertainty:.1f} percentage points" in words
    assert '<svg class="risk-chart"' in page and 'class="threshold"' in page
    assert "Confirm sepsis" in words and "Dismiss" in words and "Pause" in words
    assert 'href="/model"' in page and bed.model_version in page


def test_an_unknown_patient_is_a_404_page(provider):
    response = provider.get("/patients/nobody-icu")
    assert response.status_code == 404
    assert "No such patient" in response.text


def test_an_opted_out_patient_page_shows_no_risk(provider, ward):
    bed = alerted(ward)
    with ward.engine.begin() as conn:
        conn.execute(update(patients).where(patients.c.patient_id == bed.patient_id)
                     .values(opted_out_scoring=True))  # fmt: skip
    page = provider.get(f"/patients/{bed.encounter_id}").text
    assert "This patient opted out of AI scoring: no risk is computed or shown." in page
    assert wording.percent(bed.risk) not in page
    assert not any(reason in text_of(page) for reason in bed.sepsis.reasons)
    assert "risk-chart" not in page and "The measurements used" not in page
    asked = post(provider, f"/patients/{bed.encounter_id}/what-if",
                 {"variable": "Lactate", "value": "1"}, **{"HX-Request": "true"})  # fmt: skip
    assert asked.status_code == 409 and "opted out" in asked.text


# ---------------------------------------------------------------- what-if


def test_what_if_answers_with_the_explain_sentence(provider, ward, model):
    bed = alerted(ward)
    with ward.engine.connect() as conn:
        history = stay_history(conn, bed.encounter_id, ward_now(conn))
    expected = what_if(model, history, {"Lactate": 1.0}).sentence
    url = f"/patients/{bed.encounter_id}/what-if"
    answer = post(provider, url, {"variable": "Lactate", "value": "1.0"}, **{"HX-Request": "true"})
    assert answer.status_code == 200
    assert "<html" not in answer.text
    assert html.escape(expected, quote=False) in answer.text
    whole = post(provider, url, {"variable": "Lactate", "value": "1.0"})
    assert whole.status_code == 200 and "<html" in whole.text
    assert html.escape(expected, quote=False) in whole.text


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("Unobtainium", "1", "is not a measured variable"),
        ("Lactate", "lots", "is not a number"),
        ("Lactate", "900", "is not plausible"),
        ("", "1", "Choose a measurement"),
    ],
)
def test_a_bad_what_if_gets_an_inline_message_not_a_500(provider, ward, variable, value, message):
    bed = alerted(ward)
    answer = post(provider, f"/patients/{bed.encounter_id}/what-if",
                  {"variable": variable, "value": value}, **{"HX-Request": "true"})  # fmt: skip
    assert answer.status_code == 422
    assert 'role="alert"' in answer.text and message in html.unescape(answer.text)


# ---------------------------------------------------------------- provider's evaluation


def test_confirming_starts_the_checklist_shown_on_the_page(provider, ward):
    bed = alerted(ward)
    alert_id = bed.sepsis.alert_id
    base = f"/patients/{bed.encounter_id}/alerts/{alert_id}"
    response = post(provider, f"{base}/confirm", {"lactate": "3.1", "hypotension": "no"})
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/patients/{bed.encounter_id}?done=confirmed")
    assert state_of(ward, alert_id) == "confirmed"
    page = provider.get(response.headers["location"]).text
    words = text_of(page)
    assert "Sepsis confirmed: the treatment checklist has started." in words
    assert "Treatment checklist" in words and "Blood cultures before antibiotics" in words
    assert "not applicable: no hypotension; lactate 3.1 mmol/L < 4" in words
    assert re.search(r"(due in|overdue by) \d", words)
    done = post(provider, f"{base}/items/blood_cultures/done")
    assert done.status_code == 303
    with ward.engine.connect() as conn:
        query = select(checklist_items.c.done_by).where(
            checklist_items.c.alert_id == alert_id, checklist_items.c.item == "blood_cultures"
        )
        assert conn.execute(query).scalar() == "dr.snow"
    assert "done at" in text_of(provider.get(f"/patients/{bed.encounter_id}").text)


def test_dismissing_with_a_reason_is_recorded_and_shown(provider, ward):
    bed = alerted(ward)
    url = f"/patients/{bed.encounter_id}/alerts/{bed.sepsis.alert_id}/dismiss"
    response = post(provider, url, {"reason": "not_infected", "note": "<b>viral</b>"})
    assert response.status_code == 303
    assert state_of(ward, bed.sepsis.alert_id) == "dismissed"
    page = provider.get(f"/patients/{bed.encounter_id}").text
    assert "dismissed the alert: No sign of infection" in text_of(page)
    assert "&lt;b&gt;viral&lt;/b&gt;" in page and "<b>viral</b>" not in page
    assert "sepsis alert dismissed" in rows(provider.get("/ward").text)[bed.encounter_id]


def test_a_second_dismissal_is_a_clear_409(provider, ward):
    bed = alerted(ward)
    url = f"/patients/{bed.encounter_id}/alerts/{bed.sepsis.alert_id}/dismiss"
    assert post(provider, url, {"reason": "not_infected"}).status_code == 303
    again = post(provider, url, {"reason": "data_error"})
    assert again.status_code == 409
    assert "Someone got there first" in again.text and "dismissed" in again.text
    assert f'href="/patients/{bed.encounter_id}"' in again.text


@pytest.mark.parametrize(
    ("form", "message"),
    [({}, "Choose a reason"), ({"reason": "other"}, "needs a note"), ({"reason": "x"}, "reason")],
)
def test_a_dismissal_without_a_usable_reason_is_refused(provider, ward, form, message):
    bed = alerted(ward)
    url = f"/patients/{bed.encounter_id}/alerts/{bed.sepsis.alert_id}/dismiss"
    response = post(provider, url, form)
    assert response.status_code == 422 and message in response.text
    assert state_of(ward, bed.sepsis.alert_id) == "open"


def test_pausing_for_two_hours_shows_paused_until(provider, ward):
    bed = alerted(ward)
    alert_id = bed.sepsis.alert_id
    url = f"/patients/{bed.encounter_id}/alerts/{alert_id}/pause"
    assert post(provider, url, {"until": "2h"}).status_code == 303
    until = now_of(ward) + timedelta(hours=2)
    with ward.engine.connect() as conn:
        assert get_alert(conn, alert_id).paused_until == until
    page = text_of(provider.get(f"/patients/{bed.encounter_id}").text)
    # The patient page names the day too when the pause ends on another day of the ward clock.
    shown = f"{until:%H:%M}" if until.date() == now_of(ward).date() else f"{until:%d %b %H:%M}"
    assert f"Paused until {shown}" in page
    row = rows(provider.get("/ward").text)[bed.encounter_id]
    assert f"sepsis alert paused until {shown}" in row


def test_a_pause_that_ends_tomorrow_names_the_day_on_the_worklist_too(provider, ward):
    bed = alerted(ward)
    late = now_of(ward).replace(hour=22, minute=30)  # later the same day of the ward clock
    with ward.engine.begin() as conn:
        set_ward_clock(conn, late, speed=1.0)
    clear_worklist_cache()
    url = f"/patients/{bed.encounter_id}/alerts/{bed.sepsis.alert_id}/pause"
    assert post(provider, url, {"until": "4h"}).status_code == 303
    until = late + timedelta(hours=4)  # 02:30 the next day
    row = rows(provider.get("/ward").text)[bed.encounter_id]
    assert f"sepsis alert paused until {until:%d %b} 02:30" in row
    page = text_of(provider.get(f"/patients/{bed.encounter_id}").text)
    assert f"Paused until {until:%d %b} 02:30" in page


def test_pausing_until_new_results(provider, ward):
    bed = alerted(ward)
    url = f"/patients/{bed.encounter_id}/alerts/{bed.sepsis.alert_id}/pause"
    assert post(provider, url, {"until": "new-data"}).status_code == 303
    page = text_of(provider.get(f"/patients/{bed.encounter_id}").text)
    assert "Paused until new results" in page
    assert post(provider, url, {"until": "3 days"}).status_code == 422


def test_an_alert_of_another_patient_is_not_found(provider, ward):
    first, second = present(ward)[:2]
    alert_id = alerted(ward).sepsis.alert_id
    other = second if alerted(ward).encounter_id == first.encounter_id else first
    url = f"/patients/{other.encounter_id}/alerts/{alert_id}/dismiss"
    assert post(provider, url, {"reason": "not_infected"}).status_code == 404
    assert state_of(ward, alert_id) == "open"


# ---------------------------------------------------------------- the nurse


def test_a_nurse_cannot_dismiss(nurse, ward):
    bed = alerted(ward)
    page = nurse.get(f"/patients/{bed.encounter_id}").text
    assert "/dismiss" not in page and "A provider evaluates this alert" in page
    url = f"/patients/{bed.encounter_id}/alerts/{bed.sepsis.alert_id}/dismiss"
    response = post(nurse, url, {"reason": "not_infected"})
    assert response.status_code == 403
    assert "not allowed to confirm, dismiss or pause an alert: only a provider is" in response.text
    assert state_of(ward, bed.sepsis.alert_id) == "open"


def test_a_nurse_records_an_assessment(nurse, ward):
    bed = alerted(ward)
    form = {"answer_suspected_infection": "yes", "answer_rigors": "unsure", "note": "warm"}
    form["alert_id"] = str(bed.sepsis.alert_id)
    response = post(nurse, f"/patients/{bed.encounter_id}/assessment", form)
    assert response.status_code == 303
    with ward.engine.connect() as conn:
        row = conn.execute(select(nursing_assessments)).mappings().one()
    assert row["actor"] == "nurse.nightingale" and row["concern"]
    assert row["alert_id"] == bed.sepsis.alert_id
    page = text_of(nurse.get(f"/patients/{bed.encounter_id}").text)
    assert "Do you suspect a new infection? yes" in page and "recorded a nursing assessment" in page
    empty = post(nurse, f"/patients/{bed.encounter_id}/assessment", {"note": "nothing"})
    assert empty.status_code == 422


def test_a_nurse_escalates_a_concern(nurse, ward):
    bed = next(b for b in present(ward) if b.sepsis is None and not b.opted_out)
    page = nurse.get(f"/patients/{bed.encounter_id}").text
    assert "Escalate concern" in page
    response = post(nurse, f"/patients/{bed.encounter_id}/escalate", {"note": "looks grey"})
    assert response.status_code == 303
    row = rows(nurse.get("/ward").text)[bed.encounter_id]
    assert "nurse concern open" in row


# ---------------------------------------------------------------- feedback and the model


def test_feedback_is_stored_and_acknowledged(provider, ward):
    bed = alerted(ward)
    form = {"text": "The lactate was redrawn", "page": f"/patients/{bed.encounter_id}",
            "encounter_id": bed.encounter_id}  # fmt: skip
    response = post(provider, "/feedback", form)
    assert response.status_code == 303
    with ward.engine.connect() as conn:
        row = conn.execute(select(feedback)).mappings().one()
    assert (row["actor"], row["role"], row["encounter_id"]) == ("dr.snow", "provider",
                                                               bed.encounter_id)  # fmt: skip
    assert row["text"] == "The lactate was redrawn" and row["page"] == form["page"]
    assert "Thank you: your feedback was saved." in provider.get(response.headers["location"]).text
    assert post(provider, "/feedback", {"text": "  "}).status_code == 422
    away = post(provider, "/feedback", {"text": "x", "page": "https://evil.example/"})
    assert away.headers["location"].startswith("/ward?")


def test_the_model_card_page_renders_the_shipped_card(provider, model):
    page = provider.get("/model")
    assert page.status_code == 200
    words = text_of(page.text)
    assert "Intended use" in words and "Known limitations" in words
    assert model.version in words
    assert "<table>" in page.text  # the card's Markdown tables rendered as tables
