"""What clinicians do with an alert: an explicit state machine, one per alert.

    open_alert (system) ─┐     ┌─ escalate (nurse, no alert open)
                         ▼     ▼
        ┌──────────────► open ───────── confirm ─────► confirmed ─► treatment checklist
        │                 │ │                           (final)
        │ resume (system) │ └────────── dismiss ─────► dismissed  (reason from a list)
        │ escalate        │ pause                       (final)
        │                 ▼                                ▲
        └───────────── paused ──────── confirm / dismiss ──┘

Why a machine and not a status column anyone may write: an alert is a question put to a
clinician, and the answer (and who gave it, when, and why) must be unambiguous afterwards.
So the legal moves are data (`TRANSITIONS`), the roles allowed to make them are data
(`PERMISSIONS`, which the security work will extend), and every move writes the row change and
one `alert_events` row in the caller's transaction. Confirmed and dismissed are final: a
later re-alert is a new row, and the alert policy decides when that is due.

Actions that change nothing but are still something a person did to the alert (escalating an
open alert, a nursing assessment about it, completing a checklist item) also write an event,
with `from_state == to_state`, so the alert's timeline is complete.

Two clinicians acting at once cannot both win: each move is `UPDATE ... WHERE state =
<the state it was read in>`, and the loser is told who got there first.

Errors (each subclasses a builtin, so callers may catch broadly):

    ValueError ──────── IllegalTransition   the move is not allowed from the alert's state
    PermissionError ─── NotPermitted        the actor's role may not make this move
    LookupError ─────── AlertNotFound       no alert has that id
    ValueError                              bad input: unknown reason code, naive time, ...

Times are aware UTC. `at` is the moment of the action: in a replay, the simulated ward
clock; only when it is None is the wall clock read.

The lists themselves (the nurse's screening questions, the treatment bundle and its timing)
are data in `checklist`; this module stores them and enforces who may do what.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from wardwatch.alerts import checklist as bundle
from wardwatch.alerts.checklist import CONCERN_QUESTIONS as CONCERN_QUESTIONS  # re-exported
from wardwatch.alerts.checklist import SCREENING_QUESTIONS as SCREENING_QUESTIONS
from wardwatch.alerts.checklist import ChecklistItem, is_concern, screening_answers
from wardwatch.alerts.checklist import ItemStatus as ItemStatus
from wardwatch.alerts.records import ACTIVE as ACTIVE  # re-exported: callers use workflow.*
from wardwatch.alerts.records import (
    ACTIVE_STATES,
    deployment_silent,
    find_alerts,
    get_alert,
    parse_kind,
    utc_time,
)
from wardwatch.alerts.records import AlertNotFound as AlertNotFound
from wardwatch.alerts.records import AlertRecord as AlertRecord
from wardwatch.alerts.records import Kind as Kind
from wardwatch.alerts.records import State as State
from wardwatch.alerts.records import alert_events_for as alert_events_for
from wardwatch.alerts.records import current_alerts as current_alerts
from wardwatch.alerts.records import due_resumptions as due_resumptions
from wardwatch.alerts.records import latest_alert as latest_alert
from wardwatch.alerts.records import latest_alerts as latest_alerts
from wardwatch.alerts.records import open_alerts as open_alerts
from wardwatch.security import audit
from wardwatch.store.schema import alert_events, alerts, checklist_items, nursing_assessments

# (state, action) -> the state it leads to. Anything missing is an IllegalTransition.
TRANSITIONS: Mapping[tuple[State, str], State] = {
    (State.OPEN, "confirm"): State.CONFIRMED,
    (State.OPEN, "dismiss"): State.DISMISSED,
    (State.OPEN, "pause"): State.PAUSED,
    (State.OPEN, "escalate"): State.OPEN,  # marks the alert escalated
    (State.PAUSED, "resume"): State.OPEN,
    (State.PAUSED, "escalate"): State.OPEN,
    (State.PAUSED, "confirm"): State.CONFIRMED,
    (State.PAUSED, "dismiss"): State.DISMISSED,
}

# action -> the roles that may take it. `open_alert` and `update_risk` take no actor: only the
# system's own scoring calls them.
PERMISSIONS: Mapping[str, frozenset[str]] = {
    "confirm": frozenset({"provider"}),
    "dismiss": frozenset({"provider"}),
    "pause": frozenset({"provider"}),
    "resume": frozenset({"system"}),
    "escalate": frozenset({"nurse", "provider"}),
    "assess": frozenset({"nurse", "provider"}),
    "complete_item": frozenset({"nurse", "provider"}),
}

DISMISS_REASONS: Mapping[str, str] = {
    "not_infected": "No sign of infection",
    "known_condition": "Explained by a known condition (e.g. chronic kidney disease, cirrhosis)",
    "already_treated": "Already being treated for sepsis/infection",
    "comfort_care": "Patient is receiving comfort care only",
    "data_error": "Measurement error / artefact",
    "other": "Other (say why in the note)",
}


class IllegalTransition(ValueError):
    """The action is not allowed from the alert's current state."""


class NotPermitted(PermissionError):
    """The actor's role may not take this action."""


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: str
    role: str  # nurse | provider | system (the security work adds more)


SYSTEM = Actor("wardwatch", "system")


# ---------------------------------------------------------------- rules


def require(actor: Actor, action: str) -> None:
    """Raise NotPermitted unless the actor's role may take `action`."""
    allowed = PERMISSIONS[action]
    if actor.role not in allowed:
        roles = " or ".join(sorted(allowed))
        raise NotPermitted(
            f"{actor.user_id} ({actor.role}) may not {action} an alert: only a {roles} may"
        )


def next_state(alert: AlertRecord, action: str) -> State:
    """The state `action` leads to from the alert's state, or IllegalTransition."""
    try:
        return TRANSITIONS[alert.state, action]
    except KeyError:
        allowed = sorted(s.value for s, a in TRANSITIONS if a == action)
        final = " (confirmed and dismissed alerts are final)" if not alert.active else ""
        raise IllegalTransition(
            f"cannot {action} alert {alert.alert_id}: it is {alert.state.value}{final}; "
            f"{action} is allowed only from {', '.join(allowed)}"
        ) from None


def _check_reason(reason_code: str, note: str | None) -> None:
    if reason_code not in DISMISS_REASONS:
        valid = ", ".join(DISMISS_REASONS)
        raise ValueError(f"unknown dismissal reason {reason_code!r}; valid codes: {valid}")
    if reason_code == "other" and not (note and note.strip()):
        raise ValueError("dismissing for reason 'other' needs a note saying why")


def _check_pause(at: datetime, until: datetime | None, until_new_data: bool) -> None:
    if until is None and not until_new_data:
        raise ValueError("a pause needs an end: a time (until=...), new data, or both")
    if until is not None and until <= at:
        raise ValueError(f"pause until {until.isoformat()} is not after {at.isoformat()}")


def _pause_note(until: datetime | None, until_new_data: bool, note: str | None) -> str:
    ends = ([f"until {until.isoformat()}"] if until else []) + (
        ["until new data"] if until_new_data else []
    )
    return " or ".join(ends) + (f"; {note}" if note else "")


def _reasons(reasons: Sequence[str]) -> str:
    if isinstance(reasons, str):
        raise TypeError("reasons is a sequence of sentences, not one string")
    return json.dumps(list(reasons))


# ---------------------------------------------------------------- writes


# Workflow actions as the audit trail names them.
_AUDITED = {"open": "alert.open", "confirm": "alert.confirm", "dismiss": "alert.dismiss",
            "pause": "alert.pause", "resume": "alert.resume", "escalate": "alert.escalate",
            "assess": "assessment.create", "complete_item": "checklist.complete"}  # fmt: skip


def _record(
    conn: Connection, actor: Actor, at: datetime, *, patient_id: str | None = None, **event: Any
) -> None:
    """One `alert_events` row: who (`actor`), when (`at`), and what (`event`'s columns); and
    the same decision in the tamper-evident audit trail, in the same transaction (rule 5)."""
    conn.execute(insert(alert_events).values(at=at, actor=actor.user_id, role=actor.role, **event))
    detail = {k: event[k] for k in ("from_state", "to_state", "reason_code") if event.get(k)}
    audit.record(conn, audit.AuditEvent(
        action=_AUDITED.get(event["action"], f"alert.{event['action']}"), actor=actor.user_id,
        role=actor.role, patient_id=patient_id, encounter_id=event["encounter_id"],
        object=f"alert/{event['alert_id']}", detail=detail or None, at=at,
    ))  # fmt: skip


def _about(alert: AlertRecord, action: str, to_state: State | None = None) -> dict[str, Any]:
    """The event columns naming the alert and its move (no move when `to_state` is None)."""
    to_state = alert.state if to_state is None else to_state
    ids = {"alert_id": alert.alert_id, "encounter_id": alert.encounter_id, "action": action}
    ids["patient_id"] = alert.patient_id  # for the audit trail; not an alert_events column
    return ids | {"from_state": alert.state.value, "to_state": to_state.value}


def _lost_race(conn: Connection, alert_id: int, action: str) -> IllegalTransition:
    now = get_alert(conn, alert_id)
    last = alert_events_for(conn, alert_id)[-1]
    verb = "reopened" if now.state is State.OPEN else now.state.value
    return IllegalTransition(
        f"alert {alert_id} was already {verb} by {last['actor']} ({last['role']}) at "
        f"{last['at'].isoformat()}; cannot {action} it"
    )


def _transition(
    conn: Connection,
    alert: AlertRecord,
    action: str,
    actor: Actor,
    at: datetime,
    changes: Mapping[str, Any],
    **event: Any,
) -> None:
    """Move the alert, only if it is still in the state it was read in, and record it.

    `event` adds to the event row (reason_code, note)."""
    new = next_state(alert, action)
    result = conn.execute(
        update(alerts)
        .where(alerts.c.alert_id == alert.alert_id, alerts.c.state == alert.state.value)
        .values(state=new.value, updated_at=at, **changes)
    )
    if result.rowcount != 1:
        raise _lost_race(conn, alert.alert_id, action)
    _record(conn, actor, at, **_about(alert, action, new), **event)


_UNPAUSED = {"paused_at": None, "paused_until": None, "pause_until_new_data": False}


def _insert_alert(
    conn: Connection, actor: Actor, action: str, note: str | None, row: dict[str, Any]
) -> int:
    """Insert an open alert and its first event; IllegalTransition if one of its kind is active."""
    kind, opened_at = parse_kind(row["kind"]), utc_time(row["opened_at"], "opened_at")
    mine = (alerts.c.encounter_id == row["encounter_id"], alerts.c.kind == kind.value)
    if existing := find_alerts(conn, *mine, alerts.c.state.in_(ACTIVE_STATES)):
        raise IllegalTransition(
            f"cannot open a {kind.value} alert for encounter {row['encounter_id']}: "
            f"alert {existing[0].alert_id} is already {existing[0].state.value}"
        )
    row |= {"kind": kind.value, "state": State.OPEN.value, "opened_at": opened_at}
    row |= {"reasons": _reasons(row["reasons"]), "updated_at": opened_at}
    row["silent"] = deployment_silent(conn)  # a would-be alert: never shown (alerts.silent)
    alert_id = int(conn.execute(insert(alerts).values(**row)).inserted_primary_key[0])
    alert = get_alert(conn, alert_id)
    _record(conn, actor, opened_at, **_about(alert, action) | {"from_state": None}, note=note)
    return alert_id


def open_alert(
    conn: Connection,
    *,
    encounter_id: str,
    patient_id: str,
    kind: str,
    opened_at: datetime,
    reasons: Sequence[str],
    score_id: int | None = None,
    risk: float | None = None,
    model_version: str | None = None,
) -> int:
    """Open an alert (a system action); IllegalTransition if one of this kind is active."""
    row = {"encounter_id": encounter_id, "patient_id": patient_id, "kind": kind}
    row |= {"opened_at": opened_at, "reasons": reasons, "score_id": score_id, "risk": risk}
    return _insert_alert(conn, SYSTEM, "open", None, row | {"model_version": model_version})


def confirm(
    conn: Connection,
    alert_id: int,
    actor: Actor,
    *,
    at: datetime | None = None,
    note: str | None = None,
    lactate: float | None = None,
    hypotension: bool | None = None,
) -> None:
    """A provider confirms sepsis: the alert closes and its treatment checklist starts.

    `lactate` (mmol/L) and `hypotension`, when known, decide whether fluids and a repeat lactate
    apply; when unknown, those items apply with a note saying what to check.
    """
    require(actor, "confirm")
    bundle.check_lactate(lactate)
    when = utc_time(at)
    alert = get_alert(conn, alert_id)
    changes = {"closed_at": when, "closed_risk": alerts.c.risk}
    _transition(conn, alert, "confirm", actor, when, changes, note=note)
    rows = bundle.plan(alert.alert_id, alert.opened_at, lactate, hypotension)
    conn.execute(insert(checklist_items), rows)


def dismiss(
    conn: Connection,
    alert_id: int,
    actor: Actor,
    reason_code: str,
    *,
    note: str | None = None,
    at: datetime | None = None,
) -> None:
    """A provider dismisses the alert with a reason from `DISMISS_REASONS`."""
    require(actor, "dismiss")
    _check_reason(reason_code, note)
    when = utc_time(at)
    alert = get_alert(conn, alert_id)
    changes = {"closed_at": when, "closed_risk": alerts.c.risk}
    _transition(conn, alert, "dismiss", actor, when, changes, reason_code=reason_code, note=note)


def pause(
    conn: Connection,
    alert_id: int,
    actor: Actor,
    *,
    until: datetime | None = None,
    until_new_data: bool = False,
    at: datetime | None = None,
    note: str | None = None,
) -> None:
    """A provider pauses the alert until a time, until new data arrives, or whichever first."""
    require(actor, "pause")
    when = utc_time(at)
    until = None if until is None else utc_time(until, "until")
    _check_pause(when, until, until_new_data)
    alert = get_alert(conn, alert_id)
    changes = {"paused_at": when, "paused_until": until, "pause_until_new_data": until_new_data}
    note = _pause_note(until, until_new_data, note)
    _transition(conn, alert, "pause", actor, when, changes, note=note)


def resume(
    conn: Connection, alert_id: int, *, at: datetime | None, why: str, actor: Actor = SYSTEM
) -> None:
    """A paused alert opens again; `why` says what ended the pause ("pause ended", ...)."""
    require(actor, "resume")
    if not why.strip():
        raise ValueError("resume needs a reason (why)")
    when = utc_time(at)
    alert = get_alert(conn, alert_id)
    _transition(conn, alert, "resume", actor, when, _UNPAUSED, note=why)


def update_risk(conn: Connection, alert_id: int, risk: float, score_id: int) -> bool:
    """Keep an active alert's risk current (no event). False if the alert is already closed."""
    if not 0.0 <= risk <= 1.0:
        raise ValueError(f"risk must be a probability in [0, 1], not {risk!r}")
    result = conn.execute(
        update(alerts)
        .where(alerts.c.alert_id == alert_id, alerts.c.state.in_(ACTIVE_STATES))
        .values(risk=risk, score_id=score_id)
    )
    if result.rowcount == 0:
        get_alert(conn, alert_id)  # AlertNotFound when there is no such alert
    return result.rowcount == 1


_ESCALATION_ORDER = (Kind.SEPSIS, Kind.ESCALATION, Kind.REVIEW)


def _escalation_target(conn: Connection, encounter_id: str) -> AlertRecord | None:
    """The active alert an escalation lands on: a sepsis alert first, then the newest."""
    active = [a for a in current_alerts(conn, encounter_id) if a.active]
    active.sort(key=lambda a: _ESCALATION_ORDER.index(a.kind))  # stable: newest first per kind
    return active[0] if active else None


def escalate(
    conn: Connection,
    encounter_id: str,
    patient_id: str,
    actor: Actor,
    *,
    at: datetime | None = None,
    note: str | None = None,
) -> int:
    """Raise a concern: flags the encounter's active alert (reopening it if paused), or opens
    an escalation alert when none is active. Returns the alert's id."""
    require(actor, "escalate")
    when = utc_time(at)
    target = _escalation_target(conn, encounter_id)
    if target is None:
        reason = f"Concern escalated by {actor.role} {actor.user_id}" + (
            f": {note}" if note else ""
        )
        row = {"encounter_id": encounter_id, "patient_id": patient_id, "kind": Kind.ESCALATION}
        row |= {"opened_at": when, "reasons": [reason], "escalated": True}
        return _insert_alert(conn, actor, "escalate", note, row)
    _transition(conn, target, "escalate", actor, when, {"escalated": True, **_UNPAUSED}, note=note)
    return target.alert_id


def record_assessment(
    conn: Connection,
    encounter_id: str,
    patient_id: str,
    actor: Actor,
    answers: Mapping[str, str | bool],
    *,
    alert_id: int | None = None,
    note: str | None = None,
    at: datetime | None = None,
) -> int:
    """Store a nursing assessment (answers to `SCREENING_QUESTIONS`); returns its id.

    `concern` is true when any of `CONCERN_QUESTIONS` is answered yes. When the assessment is
    about an alert, the alert's timeline gets an "assess" event.
    """
    require(actor, "assess")
    coded, when = screening_answers(answers), utc_time(at)
    alert = None if alert_id is None else _alert_of(conn, alert_id, encounter_id)
    concern = is_concern(coded)
    row = {"encounter_id": encounter_id, "patient_id": patient_id, "alert_id": alert_id}
    row |= {"at": when, "actor": actor.user_id, "answers": json.dumps(coded), "note": note}
    result = conn.execute(insert(nursing_assessments).values(**row, concern=concern))
    if alert is not None:
        _record(conn, actor, when, **_about(alert, "assess"), note=_concern_note(concern))
    return int(result.inserted_primary_key[0])


def _concern_note(concern: bool) -> str:
    return "concern: suspected infection or worried" if concern else "no concern"


def _alert_of(conn: Connection, alert_id: int, encounter_id: str) -> AlertRecord:
    alert = get_alert(conn, alert_id)
    if alert.encounter_id != encounter_id:
        raise ValueError(
            f"alert {alert_id} belongs to encounter {alert.encounter_id}, not {encounter_id}"
        )
    return alert


# ---------------------------------------------------------------- checklist


def _checklist_rows(conn: Connection, alert_id: int) -> dict[str, Mapping[str, Any]]:
    query = select(checklist_items).where(checklist_items.c.alert_id == alert_id)
    return {row["item"]: row for row in conn.execute(query).mappings()}


def _open_item(conn: Connection, alert: AlertRecord, item: str) -> dict[str, Mapping[str, Any]]:
    """The alert's checklist rows, after checking `item` exists there and is not done."""
    if item not in bundle.ITEMS:
        raise ValueError(f"unknown checklist item {item!r}; valid items: {', '.join(bundle.ITEMS)}")
    rows = _checklist_rows(conn, alert.alert_id)
    if not rows:
        state = alert.state.value
        raise IllegalTransition(
            f"alert {alert.alert_id} is {state}: only a confirmed one has items"
        )
    if (done := rows[item])["done_at"] is not None:
        by = f"by {done['done_by']} at {done['done_at'].isoformat()}"
        raise IllegalTransition(f"{item} of alert {alert.alert_id} was already completed {by}")
    return rows


def complete_item(
    conn: Connection,
    alert_id: int,
    item: str,
    actor: Actor,
    *,
    at: datetime | None = None,
    note: str | None = None,
) -> None:
    """Tick a checklist item. Antibiotics before blood cultures are allowed, and flagged."""
    require(actor, "complete_item")
    when = utc_time(at)
    alert = get_alert(conn, alert_id)
    rows = _open_item(conn, alert, item)
    note = bundle.completion_note(item, rows["blood_cultures"]["done_at"] is not None, note)
    result = conn.execute(
        update(checklist_items)
        .where(checklist_items.c.id == rows[item]["id"], checklist_items.c.done_at.is_(None))
        .values(done_at=when, done_by=actor.user_id, note=note)
    )
    if result.rowcount != 1:
        _open_item(conn, alert, item)  # someone else ticked it meanwhile: says who
    _record(conn, actor, when, **_about(alert, "complete_item"), reason_code=item, note=note)


def checklist(conn: Connection, alert_id: int, at: datetime | None = None) -> list[ChecklistItem]:
    """The alert's checklist in bundle order, each item's status as of `at` (empty if none)."""
    when = utc_time(at)
    get_alert(conn, alert_id)
    rows = _checklist_rows(conn, alert_id)
    return [bundle.item_from_row(rows[code], when) for code in sorted(rows, key=bundle.order)]


# ---------------------------------------------------------------- reads
