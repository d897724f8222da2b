"""Clinicians' decisions on alerts land in the tamper-evident audit trail, in the same
transaction as the decision (rule 5), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from wardwatch.alerts import workflow
from wardwatch.security.audit import records
from wardwatch.security.audit_verify import verify

AT = datetime(2026, 3, 1, 8, tzinfo=UTC)
PROVIDER = workflow.Actor("dr.snow", "provider")


def _open(conn) -> int:
    return workflow.open_alert(
        conn, encounter_id="e1", patient_id="p1", kind="sepsis", opened_at=AT,
        reasons=["Risk 8% is above the ICU threshold 3.4%."], risk=0.08,
    )  # fmt: skip


def test_every_move_of_an_alert_is_audited_and_the_chain_verifies(engine):
    with engine.begin() as conn:
        alert_id = _open(conn)
        workflow.pause(conn, alert_id, PROVIDER, until=AT + timedelta(hours=2), at=AT)
        workflow.resume(conn, alert_id, at=AT + timedelta(hours=2), why="pause ended")
        workflow.dismiss(conn, alert_id, PROVIDER, "not_infected", at=AT + timedelta(hours=3))
    with engine.connect() as conn:
        trail = list(records(conn))
        checked = verify(conn)
    assert [r.action for r in trail] == ["alert.open", "alert.pause", "alert.resume",
                                         "alert.dismiss"]  # fmt: skip
    dismissal = trail[-1]
    assert (dismissal.actor, dismissal.role, dismissal.patient_id) == ("dr.snow", "provider", "p1")
    assert dismissal.object == f"alert/{alert_id}" and dismissal.encounter_id == "e1"
    assert checked.intact and checked.records == 4


def test_a_refused_decision_leaves_neither_the_decision_nor_an_audit_record(engine):
    with engine.begin() as conn:
        alert_id = _open(conn)
    nurse = workflow.Actor("nurse.n", "nurse")
    with pytest.raises(workflow.NotPermitted), engine.begin() as conn:
        workflow.dismiss(conn, alert_id, nurse, "not_infected", at=AT)
    with engine.connect() as conn:
        assert [r.action for r in records(conn)] == ["alert.open"]
