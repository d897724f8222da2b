"""The alert workflow on real SQLite and PostgreSQL: every move, every refusal, every role."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Connection, Engine, event, func, select

from wardwatch.alerts import workflow as wf
from wardwatch.alerts.checklist import FLUIDS_UNKNOWN, REPEAT_LACTATE_UNKNOWN, ItemStatus
from wardwatch.alerts.workflow import SYSTEM, Actor, AlertNotFound, IllegalTransition, NotPermitted
from wardwatch.store.schema import alert_events, nursing_assessments

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)  # the alert opens (time zero)
SOON = T0 + timedelta(minutes=20)  # the first move
LATER = T0 + timedelta(minutes=50)  # the move under test
NURSE = Actor("n-ada", "nurse")
DOC = Actor("dr-lee", "provider")
ROLES = {
    "nurse": NURSE,
    "provider": DOC,
    "system": SYSTEM,
    "pharmacist": Actor("ph-ora", "pharmacist"),  # a role no rule names yet
}


@pytest.fixture
def conn(engine: Engine):
    with engine.begin() as connection:
        yield connection


def new_alert(conn, encounter="e1", kind="sepsis", at=T0, risk=0.82) -> int:
    return wf.open_alert(
        conn, encounter_id=encounter, patient_id="p1", kind=kind, opened_at=at,
        reasons=["Lactate 4.1 mmol/L (2 h ago)", "Heart rate 124/min"], score_id=7, risk=risk,
        model_version="gbm-1",
    )  # fmt: skip


def alert_in(conn, state: str, encounter="e1", kind="sepsis") -> int:
    """A new alert brought to `state` by the usual people at SOON."""
    alert_id = new_alert(conn, encounter, kind)
    if state == "paused":
        wf.pause(conn, alert_id, DOC, until=T0 + timedelta(hours=2), at=SOON)
    elif state == "confirmed":
        wf.confirm(conn, alert_id, DOC, at=SOON)
    elif state == "dismissed":
        wf.dismiss(conn, alert_id, DOC, "not_infected", at=SOON)
    return alert_id


def events(conn, alert_id) -> list[dict]:
    return wf.alert_events_for(conn, alert_id)


def count(conn, table) -> int:
    return conn.scalar(select(func.count()).select_from(table))


# ---------------------------------------------------------------- opening


def test_open_alert_stores_the_alert_and_a_system_event(conn):
    alert_id = new_alert(conn)
    alert = wf.get_alert(conn, alert_id)
    assert (alert.state, alert.kind, alert.encounter_id) == ("open", "sepsis", "e1")
    assert alert.reasons == ("Lactate 4.1 mmol/L (2 h ago)", "Heart rate 124/min")
    assert (alert.risk, alert.score_id, alert.model_version) == (0.82, 7, "gbm-1")
    assert alert.opened_at == T0 and alert.opened_at.tzinfo is not None
    assert alert.active and not alert.escalated and alert.closed_at is None
    [opened] = events(conn, alert_id)
    assert opened["actor"] == "wardwatch" and opened["role"] == "system"
    assert (opened["action"], opened["from_state"], opened["to_state"]) == ("open", None, "open")
    assert opened["at"] == T0


@pytest.mark.parametrize("state", ["open", "paused"])
def test_a_second_alert_of_a_kind_is_refused_while_one_is_active(conn, state):
    first = alert_in(conn, state)
    with pytest.raises(IllegalTransition, match=f"sepsis.*e1.*alert {first} is already {state}"):
        new_alert(conn)
    assert len(wf.current_alerts(conn, "e1")) == 1


@pytest.mark.parametrize("state", ["confirmed", "dismissed"])
def test_a_re_alert_after_a_final_state_is_a_new_row(conn, state):
    first = alert_in(conn, state)
    second = new_alert(conn, at=T0 + timedelta(hours=5))
    assert second != first
    assert wf.get_alert(conn, first).state == state


def test_other_kinds_and_other_encounters_open_alongside(conn):
    new_alert(conn)
    assert new_alert(conn, kind="review") != new_alert(conn, encounter="e2")
    assert {a.kind for a in wf.current_alerts(conn, "e1")} == {"sepsis", "review"}


def test_open_alert_refuses_bad_input(conn):
    with pytest.raises(ValueError, match=r"unknown alert kind 'septic'.*sepsis, review"):
        new_alert(conn, kind="septic")
    with pytest.raises(ValueError, match="opened_at must be timezone-aware"):
        new_alert(conn, at=datetime(2024, 3, 1, 8))
    with pytest.raises(TypeError, match="sequence of sentences"):
        wf.open_alert(conn, encounter_id="e1", patient_id="p1", kind="sepsis", opened_at=T0,
                      reasons="high risk")  # fmt: skip
    assert count(conn, alert_events) == 0


def test_times_in_another_zone_are_stored_as_the_same_instant_in_utc(conn):
    paris = datetime(2024, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    alert = wf.get_alert(conn, new_alert(conn, at=paris))
    assert alert.opened_at == T0 and alert.opened_at.utcoffset() == timedelta(0)


# ---------------------------------------------------------------- the state machine

# action -> a call taking (conn, alert_id, actor, at)
ACTIONS: dict[str, Callable[..., None]] = {
    "confirm": lambda conn, alert_id, actor, at=LATER: wf.confirm(conn, alert_id, actor, at=at),
    "dismiss": lambda conn, alert_id, actor, at=LATER: wf.dismiss(
        conn, alert_id, actor, "data_error", at=at
    ),
    "pause": lambda conn, alert_id, actor, at=LATER: wf.pause(
        conn, alert_id, actor, until_new_data=True, at=at
    ),
    "resume": lambda conn, alert_id, actor, at=LATER: wf.resume(
        conn, alert_id, at=at, why="pause ended", actor=actor
    ),
}
WHO = {"confirm": DOC, "dismiss": DOC, "pause": DOC, "resume": SYSTEM}
# Written out by hand, not read from wf.TRANSITIONS, so that a wrong table fails here.
LEGAL = {
    ("open", "confirm"): "confirmed",
    ("open", "dismiss"): "dismissed",
    ("open", "pause"): "paused",
    ("paused", "resume"): "open",
    ("paused", "confirm"): "confirmed",
    ("paused", "dismiss"): "dismissed",
}
FINAL = ("confirmed", "dismissed")
MATRIX = [(s, a) for s in ("open", "paused", "confirmed", "dismissed") for a in ACTIONS]


@pytest.mark.parametrize(("state", "action"), [m for m in MATRIX if m in LEGAL])
def test_legal_transition_moves_and_records_who_when_and_from_where(conn, state, action):
    alert_id = alert_in(conn, state)
    ACTIONS[action](conn, alert_id, WHO[action])
    alert = wf.get_alert(conn, alert_id)
    assert alert.state == LEGAL[state, action] and alert.updated_at == LATER
    last = events(conn, alert_id)[-1]
    assert (last["actor"], last["role"]) == (WHO[action].user_id, WHO[action].role)
    assert (last["action"], last["from_state"], last["to_state"]) == (action, state, alert.state)
    assert last["at"] == LATER and last["encounter_id"] == "e1"


@pytest.mark.parametrize(("state", "action"), [m for m in MATRIX if m not in LEGAL])
def test_illegal_transition_is_an_error_naming_alert_state_and_action(conn, state, action):
    alert_id = alert_in(conn, state)
    before = events(conn, alert_id)
    final = " (confirmed and dismissed alerts are final)" if state in FINAL else ""
    message = f"cannot {action} alert {alert_id}: it is {state}{final};"
    with pytest.raises(IllegalTransition, match=re.escape(message)):
        ACTIONS[action](conn, alert_id, WHO[action])
    assert wf.get_alert(conn, alert_id).state == state
    assert events(conn, alert_id) == before


def test_illegal_transition_is_a_value_error_and_refusal_a_permission_error():
    assert issubclass(IllegalTransition, ValueError)
    assert issubclass(NotPermitted, PermissionError)
    assert issubclass(AlertNotFound, LookupError)


@pytest.mark.parametrize("action", list(ACTIONS))
def test_acting_on_an_unknown_alert_is_alert_not_found(conn, action):
    with pytest.raises(AlertNotFound, match="no alert with id 999"):
        ACTIONS[action](conn, 999, WHO[action])


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_naive_time_is_refused(conn, action):
    alert_id = alert_in(conn, "paused" if action == "resume" else "open")
    with pytest.raises(ValueError, match="at must be timezone-aware"):
        ACTIONS[action](conn, alert_id, WHO[action], at=datetime(2024, 3, 1, 9))
    assert len(events(conn, alert_id)) == (2 if action == "resume" else 1)


def test_without_at_the_wall_clock_is_the_time_of_the_action(conn):
    alert_id = new_alert(conn)
    before = datetime.now(UTC)
    wf.confirm(conn, alert_id, DOC)
    closed_at = wf.get_alert(conn, alert_id).closed_at
    assert before - timedelta(seconds=1) <= closed_at <= datetime.now(UTC) + timedelta(seconds=1)


# ---------------------------------------------------------------- permissions

# Also written out by hand: role -> the actions it may take.
MAY = {
    "nurse": {"escalate", "assess", "complete_item"},
    "provider": {"confirm", "dismiss", "pause", "escalate", "assess", "complete_item"},
    "system": {"resume"},
    "pharmacist": set(),
}
ONLY = {
    "confirm": "only a provider may",
    "dismiss": "only a provider may",
    "pause": "only a provider may",
    "resume": "only a system may",
    "escalate": "only a nurse or provider may",
    "assess": "only a nurse or provider may",
    "complete_item": "only a nurse or provider may",
}
PERMISSION_ACTIONS = {
    **ACTIONS,
    "escalate": lambda conn, alert_id, actor: wf.escalate(conn, "e1", "p1", actor, at=LATER),
    "assess": lambda conn, alert_id, actor: wf.record_assessment(
        conn, "e1", "p1", actor, {"clinician_concern": True}, alert_id=alert_id, at=LATER
    ),
    "complete_item": lambda conn, alert_id, actor: wf.complete_item(
        conn, alert_id, "lactate", actor, at=LATER
    ),
}
READY = {"resume": "paused", "complete_item": "confirmed"}  # the rest start from open


@pytest.mark.parametrize("action", list(PERMISSION_ACTIONS))
@pytest.mark.parametrize("role", list(ROLES))
def test_each_role_may_take_exactly_its_actions(conn, role, action):
    alert_id = alert_in(conn, READY.get(action, "open"))
    written = count(conn, alert_events), count(conn, nursing_assessments)
    if action in MAY[role]:
        PERMISSION_ACTIONS[action](conn, alert_id, ROLES[role])
        assert events(conn, alert_id)[-1]["role"] == role
        return
    with pytest.raises(NotPermitted, match=f"{ROLES[role].user_id} \\({role}\\).*{ONLY[action]}"):
        PERMISSION_ACTIONS[action](conn, alert_id, ROLES[role])
    assert (count(conn, alert_events), count(conn, nursing_assessments)) == written


def test_permissions_are_data_a_new_role_needs_no_code(conn, monkeypatch):
    monkeypatch.setitem(wf.PERMISSIONS, "confirm", frozenset({"provider", "rapid_response"}))
    alert_id = new_alert(conn)
    wf.confirm(conn, alert_id, Actor("rr-1", "rapid_response"), at=LATER)
    assert wf.get_alert(conn, alert_id).state == "confirmed"


def test_refusal_comes_before_any_other_check(conn):
    # a nurse trying to confirm a dismissed alert is told about her role, not the state
    alert_id = alert_in(conn, "dismissed")
    with pytest.raises(NotPermitted):
        wf.confirm(conn, alert_id, NURSE, at=LATER)


# ---------------------------------------------------------------- confirm and dismiss


def test_confirm_closes_with_the_risk_current_at_that_moment(conn):
    alert_id = new_alert(conn, risk=0.6)
    assert wf.update_risk(conn, alert_id, 0.71, score_id=8)
    wf.confirm(conn, alert_id, DOC, at=LATER, note="fever, lactate up")
    alert = wf.get_alert(conn, alert_id)
    assert (alert.closed_at, alert.closed_risk, alert.risk) == (LATER, 0.71, 0.71)
    assert events(conn, alert_id)[-1]["note"] == "fever, lactate up"


@pytest.mark.parametrize("code", ["not_infected", "known_condition", "already_treated",
                                  "comfort_care", "data_error"])  # fmt: skip
def test_dismiss_with_each_listed_reason(conn, code):
    alert_id = new_alert(conn)
    wf.dismiss(conn, alert_id, DOC, code, at=LATER)
    alert = wf.get_alert(conn, alert_id)
    assert (alert.state, alert.closed_at, alert.closed_risk) == ("dismissed", LATER, 0.82)
    assert events(conn, alert_id)[-1]["reason_code"] == code
    assert wf.DISMISS_REASONS[code]


def test_dismiss_reasons_are_the_agreed_list():
    assert set(wf.DISMISS_REASONS) == {"not_infected", "known_condition", "already_treated",
                                       "comfort_care", "data_error", "other"}  # fmt: skip
    assert wf.DISMISS_REASONS["not_infected"] == "No sign of infection"


def test_dismiss_for_an_unknown_reason_lists_the_valid_ones(conn):
    alert_id = new_alert(conn)
    with pytest.raises(ValueError, match=r"'bored'.*not_infected, known_condition.*other"):
        wf.dismiss(conn, alert_id, DOC, "bored", at=LATER)
    assert wf.get_alert(conn, alert_id).state == "open"


@pytest.mark.parametrize("note", [None, "", "   "])
def test_dismiss_for_other_needs_a_note(conn, note):
    alert_id = new_alert(conn)
    with pytest.raises(ValueError, match="'other' needs a note"):
        wf.dismiss(conn, alert_id, DOC, "other", note=note, at=LATER)
    wf.dismiss(conn, alert_id, DOC, "other", note="post-op SIRS, expected", at=LATER)
    assert events(conn, alert_id)[-1]["note"] == "post-op SIRS, expected"


# ---------------------------------------------------------------- pause and resume


@pytest.mark.parametrize(
    ("until", "new_data", "note"),
    [
        (T0 + timedelta(hours=2), False, "until 2024-03-01T10:00:00+00:00"),
        (None, True, "until new data"),
        (T0 + timedelta(hours=2), True, "until 2024-03-01T10:00:00+00:00 or until new data"),
    ],
)
def test_pause_until_a_time_new_data_or_both(conn, until, new_data, note):
    alert_id = new_alert(conn)
    wf.pause(conn, alert_id, DOC, until=until, until_new_data=new_data, at=LATER, note="abx given")
    alert = wf.get_alert(conn, alert_id)
    assert (alert.state, alert.paused_at, alert.paused_until) == ("paused", LATER, until)
    assert alert.pause_until_new_data is new_data
    assert events(conn, alert_id)[-1]["note"] == f"{note}; abx given"


@pytest.mark.parametrize(
    ("until", "message"),
    [
        (None, "a pause needs an end"),
        (LATER, "is not after"),
        (LATER - timedelta(minutes=1), "is not after"),
        (datetime(2024, 3, 1, 12), "until must be timezone-aware"),
    ],
)
def test_a_pause_without_a_future_end_is_refused(conn, until, message):
    alert_id = new_alert(conn)
    with pytest.raises(ValueError, match=message):
        wf.pause(conn, alert_id, DOC, until=until, at=LATER)
    assert wf.get_alert(conn, alert_id).state == "open"


def test_resume_clears_the_pause_and_records_why(conn):
    alert_id = new_alert(conn)
    wf.pause(conn, alert_id, DOC, until=T0 + timedelta(hours=2), until_new_data=True, at=SOON)
    wf.resume(conn, alert_id, at=LATER, why="new lactate 3.4 mmol/L")
    alert = wf.get_alert(conn, alert_id)
    assert (alert.state, alert.paused_at, alert.paused_until) == ("open", None, None)
    assert alert.pause_until_new_data is False
    last = events(conn, alert_id)[-1]
    assert (last["actor"], last["note"], last["action"]) == ("wardwatch", "new lactate 3.4 mmol/L",
                                                              "resume")  # fmt: skip


def test_resume_needs_a_reason(conn):
    alert_id = alert_in(conn, "paused")
    with pytest.raises(ValueError, match="why"):
        wf.resume(conn, alert_id, at=LATER, why=" ")


def test_due_resumptions_are_paused_alerts_whose_time_has_come(conn):
    timed = alert_in(conn, "paused")  # until T0 + 2 h
    data_only = new_alert(conn, encounter="e2")
    wf.pause(conn, data_only, DOC, until_new_data=True, at=SOON)
    alert_in(conn, "open", encounter="e3")
    assert wf.due_resumptions(conn, T0 + timedelta(hours=2) - timedelta(seconds=1)) == []
    assert [a.alert_id for a in wf.due_resumptions(conn, T0 + timedelta(hours=2))] == [timed]
    wf.resume(conn, timed, at=T0 + timedelta(hours=2), why="pause ended")
    assert wf.due_resumptions(conn, T0 + timedelta(hours=9)) == []


# ---------------------------------------------------------------- escalation


def test_escalate_without_an_alert_opens_an_escalation_alert_in_the_nurses_name(conn):
    alert_id = wf.escalate(conn, "e1", "p1", NURSE, at=LATER, note="looks grey, new confusion")
    alert = wf.get_alert(conn, alert_id)
    assert (alert.kind, alert.state, alert.escalated, alert.opened_at) == (
        "escalation", "open", True, LATER
    )  # fmt: skip
    assert alert.reasons == ("Concern escalated by nurse n-ada: looks grey, new confusion",)
    [opened] = events(conn, alert_id)
    assert (opened["actor"], opened["role"], opened["action"]) == ("n-ada", "nurse", "escalate")
    assert (opened["from_state"], opened["to_state"]) == (None, "open")


@pytest.mark.parametrize("state", ["open", "paused"])
def test_escalate_flags_the_active_alert_and_reopens_a_paused_one(conn, state):
    alert_id = alert_in(conn, state)
    assert wf.escalate(conn, "e1", "p1", NURSE, at=LATER) == alert_id
    alert = wf.get_alert(conn, alert_id)
    assert (alert.state, alert.escalated, alert.paused_until) == ("open", True, None)
    last = events(conn, alert_id)[-1]
    assert (last["action"], last["from_state"], last["to_state"]) == ("escalate", state, "open")
    assert last["actor"] == "n-ada"


@pytest.mark.parametrize("state", ["confirmed", "dismissed"])
def test_escalate_after_a_final_state_opens_a_new_escalation_alert(conn, state):
    closed = alert_in(conn, state)
    alert_id = wf.escalate(conn, "e1", "p1", NURSE, at=LATER)
    assert alert_id != closed and wf.get_alert(conn, alert_id).kind == "escalation"
    assert wf.get_alert(conn, closed).state == state


def test_escalate_lands_on_the_sepsis_alert_before_a_review_alert(conn):
    sepsis = alert_in(conn, "paused")
    new_alert(conn, kind="review", at=SOON)  # newer, but less to the point
    assert wf.escalate(conn, "e1", "p1", NURSE, at=LATER) == sepsis


def test_a_second_escalation_joins_the_first(conn):
    first = wf.escalate(conn, "e1", "p1", NURSE, at=SOON)
    assert wf.escalate(conn, "e1", "p1", DOC, at=LATER) == first
    assert len(wf.current_alerts(conn, "e1")) == 1
    assert [e["actor"] for e in events(conn, first)] == ["n-ada", "dr-lee"]


# ---------------------------------------------------------------- nursing assessment


@pytest.mark.parametrize(
    ("answers", "concern"),
    [
        ({"suspected_infection": True}, True),
        ({"clinician_concern": "yes"}, True),
        ({"suspected_infection": "No", "clinician_concern": "YES "}, True),
        ({"new_confusion": True, "mottled_skin": True, "reduced_urine": "yes", "rigors": True},
         False),
        ({"suspected_infection": "unsure", "clinician_concern": False}, False),
    ],
)  # fmt: skip
def test_concern_is_a_yes_to_suspected_infection_or_a_worried_nurse(conn, answers, concern):
    row_id = wf.record_assessment(conn, "e1", "p1", NURSE, answers, at=LATER, note="seen at 9")
    row = conn.execute(select(nursing_assessments)).mappings().one()
    assert row["id"] == row_id and row["concern"] is concern
    assert (row["actor"], row["at"], row["alert_id"], row["note"]) == ("n-ada", LATER, None,
                                                                       "seen at 9")  # fmt: skip
    assert set(wf.SCREENING_QUESTIONS) >= set(answers)


def test_an_assessment_of_an_alert_joins_its_timeline(conn):
    alert_id = alert_in(conn, "paused")
    wf.record_assessment(conn, "e1", "p1", NURSE, {"suspected_infection": True},
                         alert_id=alert_id, at=LATER)  # fmt: skip
    last = events(conn, alert_id)[-1]
    assert (last["action"], last["from_state"], last["to_state"]) == ("assess", "paused", "paused")
    assert last["note"].startswith("concern")
    assert wf.get_alert(conn, alert_id).state == "paused"  # escalating is a separate act


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"fever": True}, "unknown screening question 'fever'.*suspected_infection"),
        ({"rigors": "maybe"}, "yes, no, unsure"),
        ({}, "at least one"),
    ],
)
def test_an_assessment_with_bad_answers_is_refused(conn, answers, message):
    with pytest.raises(ValueError, match=message):
        wf.record_assessment(conn, "e1", "p1", NURSE, answers, at=LATER)
    assert count(conn, nursing_assessments) == 0


def test_an_assessment_must_name_an_alert_of_its_own_encounter(conn):
    other = new_alert(conn, encounter="e2")
    with pytest.raises(ValueError, match="belongs to encounter e2"):
        wf.record_assessment(conn, "e1", "p1", NURSE, {"rigors": True}, alert_id=other, at=LATER)
    with pytest.raises(AlertNotFound):
        wf.record_assessment(conn, "e1", "p1", NURSE, {"rigors": True}, alert_id=99, at=LATER)


# ---------------------------------------------------------------- risk updates


def test_update_risk_keeps_an_active_alert_current_without_an_event(conn):
    alert_id = alert_in(conn, "paused")
    before = events(conn, alert_id)
    assert wf.update_risk(conn, alert_id, 0.93, score_id=12) is True
    alert = wf.get_alert(conn, alert_id)
    assert (alert.risk, alert.score_id, alert.state) == (0.93, 12, "paused")
    assert events(conn, alert_id) == before


def test_update_risk_leaves_a_closed_alert_as_it_was_decided(conn):
    alert_id = alert_in(conn, "dismissed")
    assert wf.update_risk(conn, alert_id, 0.99, score_id=12) is False
    alert = wf.get_alert(conn, alert_id)
    assert (alert.risk, alert.closed_risk) == (0.82, 0.82)
    with pytest.raises(AlertNotFound):
        wf.update_risk(conn, 999, 0.5, score_id=1)
    with pytest.raises(ValueError, match="probability"):
        wf.update_risk(conn, alert_id, 1.5, score_id=1)


# ---------------------------------------------------------------- checklist


def items(conn, alert_id, at=LATER) -> dict[str, wf.ChecklistItem]:
    return {i.item: i for i in wf.checklist(conn, alert_id, at=at)}


def test_confirming_starts_the_bundle_timed_from_the_alert_not_the_confirmation(conn):
    alert_id = new_alert(conn)
    wf.confirm(conn, alert_id, DOC, at=T0 + timedelta(hours=2), lactate=3.1, hypotension=False)
    listed = wf.checklist(conn, alert_id, at=T0 + timedelta(hours=2))
    assert [i.item for i in listed] == ["lactate", "blood_cultures", "antibiotics", "fluids",
                                        "repeat_lactate"]  # fmt: skip
    due = {i.item: i.due_at - T0 for i in listed}
    assert due == {"lactate": timedelta(hours=3), "blood_cultures": timedelta(hours=3),
                   "antibiotics": timedelta(hours=3), "fluids": timedelta(hours=3),
                   "repeat_lactate": timedelta(hours=6)}  # fmt: skip


@pytest.mark.parametrize(
    ("lactate", "hypotension", "fluids", "repeat"),
    [
        (None, None, (True, FLUIDS_UNKNOWN), (True, REPEAT_LACTATE_UNKNOWN)),
        (3.0, None, (True, FLUIDS_UNKNOWN), (True, "initial lactate 3 mmol/L > 2")),
        (None, False, (True, FLUIDS_UNKNOWN), (True, REPEAT_LACTATE_UNKNOWN)),
        (4.6, False, (True, "lactate 4.6 mmol/L ≥ 4"), (True, "initial lactate 4.6 mmol/L > 2")),
        (4.0, None, (True, "lactate 4 mmol/L ≥ 4"), (True, "initial lactate 4 mmol/L > 2")),
        (1.5, True, (True, "hypotension"), (False, "initial lactate 1.5 mmol/L ≤ 2")),
        (None, True, (True, "hypotension"), (True, REPEAT_LACTATE_UNKNOWN)),
        (5.2, True, (True, "hypotension; lactate 5.2 mmol/L ≥ 4"), (True,
         "initial lactate 5.2 mmol/L > 2")),
        (3.9, False, (False, "no hypotension; lactate 3.9 mmol/L < 4"), (True,
         "initial lactate 3.9 mmol/L > 2")),
        (2.0, False, (False, "no hypotension; lactate 2 mmol/L < 4"), (False,
         "initial lactate 2 mmol/L ≤ 2")),
    ],
)  # fmt: skip
def test_fluids_and_repeat_lactate_apply_when_they_should_and_say_why(
    conn, lactate, hypotension, fluids, repeat
):
    alert_id = new_alert(conn)
    wf.confirm(conn, alert_id, DOC, at=SOON, lactate=lactate, hypotension=hypotension)
    listed = items(conn, alert_id)
    assert (listed["fluids"].applicable, listed["fluids"].why) == fluids
    assert (listed["repeat_lactate"].applicable, listed["repeat_lactate"].why) == repeat
    assert listed["antibiotics"].applicable and listed["lactate"].applicable
    for item in listed.values():
        expected = ItemStatus.DUE if item.applicable else ItemStatus.NOT_APPLICABLE
        assert item.status == expected


@pytest.mark.parametrize("lactate", [-1.0, float("nan"), float("inf")])
def test_an_impossible_lactate_is_refused_before_anything_changes(conn, lactate):
    alert_id = new_alert(conn)
    with pytest.raises(ValueError, match="lactate"):
        wf.confirm(conn, alert_id, DOC, at=SOON, lactate=lactate)
    assert wf.get_alert(conn, alert_id).state == "open"


@pytest.mark.parametrize(
    ("at", "status", "minutes_left"),
    [
        (T0 + timedelta(hours=1), ItemStatus.DUE, 120),
        (T0 + timedelta(hours=2, minutes=59, seconds=30), ItemStatus.DUE, 0),
        (T0 + timedelta(hours=3), ItemStatus.DUE, 0),
        (T0 + timedelta(hours=3, minutes=1), ItemStatus.OVERDUE, -1),
        (T0 + timedelta(hours=5), ItemStatus.OVERDUE, -120),
    ],
)
def test_an_open_item_is_due_until_its_time_then_overdue(conn, at, status, minutes_left):
    alert_id = alert_in(conn, "confirmed")
    cultures = items(conn, alert_id, at=at)["blood_cultures"]
    assert (cultures.status, cultures.minutes_left) == (status, minutes_left)


def test_a_completed_item_is_done_even_when_late_and_says_who(conn):
    alert_id = alert_in(conn, "confirmed")
    wf.complete_item(conn, alert_id, "lactate", NURSE, at=T0 + timedelta(hours=1))
    wf.complete_item(conn, alert_id, "blood_cultures", DOC, at=T0 + timedelta(hours=4))
    listed = items(conn, alert_id, at=T0 + timedelta(hours=5))
    assert (listed["lactate"].status, listed["lactate"].done_by) == (ItemStatus.DONE, "n-ada")
    assert not listed["lactate"].late and listed["blood_cultures"].late
    assert listed["blood_cultures"].status == ItemStatus.DONE
    assert listed["blood_cultures"].minutes_left is None
    last = events(conn, alert_id)[-1]
    assert (last["action"], last["reason_code"]) == ("complete_item", "blood_cultures")
    assert last["actor"] == "dr-lee"
    assert (last["from_state"], last["to_state"]) == ("confirmed", "confirmed")


def test_antibiotics_before_cultures_are_allowed_but_flagged(conn):
    alert_id = alert_in(conn, "confirmed")
    wf.complete_item(conn, alert_id, "antibiotics", DOC, at=LATER, note="pip-tazo")
    wf.complete_item(conn, alert_id, "blood_cultures", NURSE, at=LATER + timedelta(minutes=5))
    listed = items(conn, alert_id)
    assert listed["antibiotics"].note == "antibiotics before blood cultures; pip-tazo"
    assert listed["blood_cultures"].note is None


def test_antibiotics_after_cultures_carry_no_warning(conn):
    alert_id = alert_in(conn, "confirmed")
    wf.complete_item(conn, alert_id, "blood_cultures", NURSE, at=SOON)
    wf.complete_item(conn, alert_id, "antibiotics", DOC, at=LATER)
    assert items(conn, alert_id)["antibiotics"].note is None


def test_completing_an_item_twice_is_illegal_and_says_who_did_it(conn):
    alert_id = alert_in(conn, "confirmed")
    wf.complete_item(conn, alert_id, "lactate", NURSE, at=SOON)
    with pytest.raises(IllegalTransition, match=r"lactate of alert .* already completed by n-ada"):
        wf.complete_item(conn, alert_id, "lactate", DOC, at=LATER)
    assert items(conn, alert_id)["lactate"].done_at == SOON


@pytest.mark.parametrize("state", ["open", "paused", "dismissed"])
def test_only_a_confirmed_alert_has_a_checklist(conn, state):
    alert_id = alert_in(conn, state)
    assert wf.checklist(conn, alert_id, at=LATER) == []
    with pytest.raises(IllegalTransition, match=f"is {state}: only a confirmed one"):
        wf.complete_item(conn, alert_id, "lactate", DOC, at=LATER)


def test_an_unknown_item_lists_the_bundle(conn):
    alert_id = alert_in(conn, "confirmed")
    with pytest.raises(ValueError, match=r"'vasopressors'.*lactate, blood_cultures"):
        wf.complete_item(conn, alert_id, "vasopressors", DOC, at=LATER)
    with pytest.raises(AlertNotFound):
        wf.checklist(conn, 999, at=LATER)


# ---------------------------------------------------------------- reads


def test_reads_list_alerts_newest_first(conn):
    old = alert_in(conn, "dismissed")
    review = new_alert(conn, kind="review", at=T0 + timedelta(hours=1))
    newest = new_alert(conn, at=T0 + timedelta(hours=3))
    other = alert_in(conn, "paused", encounter="e2")
    assert [a.alert_id for a in wf.current_alerts(conn, "e1")] == [newest, review, old]
    assert wf.latest_alert(conn, "e1", "sepsis").alert_id == newest
    assert wf.latest_alert(conn, "e1", "escalation") is None
    assert [a.alert_id for a in wf.open_alerts(conn)] == [newest, review, other]
    assert [e["action"] for e in events(conn, old)] == ["open", "dismiss"]
    with pytest.raises(AlertNotFound, match="999"):
        wf.get_alert(conn, 999)


# ---------------------------------------------------------------- two clinicians at once


def race(engine: Engine, loser: Callable[[Connection], object], winner: Callable) -> list:
    """`loser` reads the alert; `winner` acts and commits; only then `loser` writes."""
    read, committed, errors = threading.Event(), threading.Event(), []

    def hold_first_write(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("UPDATE") and not read.is_set():
            read.set()
            assert committed.wait(20)

    def run_loser():
        try:
            with engine.begin() as conn:
                event.listen(conn, "before_cursor_execute", hold_first_write)
                loser(conn)
        except Exception as error:  # noqa: BLE001 — handed to the test thread to assert on
            errors.append(error)

    thread = threading.Thread(target=run_loser)
    thread.start()
    assert read.wait(20)
    with engine.begin() as conn:
        winner(conn)
    committed.set()
    thread.join(20)
    return errors


def test_two_clinicians_at_once_cannot_both_decide(engine):
    with engine.begin() as conn:
        alert_id = new_alert(conn)
    kim = Actor("dr-kim", "provider")
    errors = race(
        engine,
        loser=lambda conn: wf.confirm(conn, alert_id, kim, at=LATER),
        winner=lambda conn: wf.dismiss(conn, alert_id, DOC, "not_infected", at=LATER),
    )
    assert len(errors) == 1 and isinstance(errors[0], IllegalTransition)
    assert f"alert {alert_id} was already dismissed by dr-lee (provider)" in str(errors[0])
    with engine.connect() as conn:
        assert wf.get_alert(conn, alert_id).state == "dismissed"
        assert wf.checklist(conn, alert_id, at=LATER) == []
        assert [e["action"] for e in events(conn, alert_id)] == ["open", "dismiss"]


def test_two_people_ticking_one_item_at_once_cannot_both_succeed(engine):
    with engine.begin() as conn:
        alert_id = alert_in(conn, "confirmed")
    errors = race(
        engine,
        loser=lambda conn: wf.complete_item(conn, alert_id, "lactate", DOC, at=LATER),
        winner=lambda conn: wf.complete_item(conn, alert_id, "lactate", NURSE, at=SOON),
    )
    assert len(errors) == 1 and isinstance(errors[0], IllegalTransition)
    assert "already completed by n-ada" in str(errors[0])
    with engine.connect() as conn:
        assert items(conn, alert_id)["lactate"].done_by == "n-ada"
        assert [e["actor"] for e in events(conn, alert_id)][-1] == "n-ada"


def test_a_score_landing_while_a_provider_decides_is_the_risk_the_decision_closes_on(engine):
    with engine.begin() as conn:
        alert_id = new_alert(conn, risk=0.6)
    errors = race(
        engine,
        loser=lambda conn: wf.confirm(conn, alert_id, DOC, at=LATER),
        winner=lambda conn: wf.update_risk(conn, alert_id, 0.74, score_id=9),
    )
    assert errors == []
    with engine.connect() as conn:
        alert = wf.get_alert(conn, alert_id)
    assert (alert.state, alert.closed_risk) == ("confirmed", 0.74)
