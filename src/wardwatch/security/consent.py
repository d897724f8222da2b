"""Consent: a patient may opt out of AI scoring, of use in training, or both.

Two separate choices, because they protect different things. Scoring is care-time use: an
opted-out patient is never scored, so no risk is shown for them and no alert fires
(`scoring.unscored_stays` reads `patients.opted_out_scoring`). Training is secondary use:
an opted-out patient's data leaves the store in no training or evaluation export
(`training_stays` is the one query those exports use). Neither implies the other: a patient
may decline the machine at the bedside yet let their record improve it, or accept bedside
scoring but keep their record out of research. Inferring one from the other would record a
choice the patient did not make; `wardwatch consent set` therefore says what stays unchanged.

The patients table holds the current state (what every query reads, one indexed column);
`consent_decisions` holds the history, one row per decision, never updated: who recorded
it, in what role, why, and the state that resulted. Both change in the caller's
transaction, so the current state is always the last decision; the decision's audit record
(`consent.change`, with the states before and after) is appended in that transaction too.

Errors (each subclasses a builtin):

    LookupError ─── PatientNotFound   no patient has that id
    ValueError                        nothing to decide, no reason, naive time, empty actor
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    RowMapping,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from wardwatch.security import audit
from wardwatch.security.audit_actions import clipped
from wardwatch.store.schema import UtcDateTime, encounters, metadata, patients

# One row per decision, append-only. scoring / training: True = allowed, False = opted out
# (the state after the decision, both choices, so any row alone says where the patient stood).
consent_decisions = Table(
    "consent_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patient_id", String(64), ForeignKey("patients.patient_id"), nullable=False),
    Column("scoring", Boolean, nullable=False),
    Column("training", Boolean, nullable=False),
    Column("recorded_by", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_consent_decisions_patient", "patient_id", "id"),
)


class PatientNotFound(LookupError):
    """No patient has that id: consent is recorded for known patients only."""


@dataclass(frozen=True)
class ConsentState:
    """Where a patient stands: True means the use is allowed."""

    scoring: bool = True
    training: bool = True

    def describe(self) -> str:
        def word(allowed: bool) -> str:
            return "allowed" if allowed else "opted out"

        return f"AI scoring {word(self.scoring)}, use in training {word(self.training)}"


@dataclass(frozen=True)
class ConsentDecision:
    """One recorded decision and the state it left; `before` is the state it replaced."""

    id: int
    patient_id: str
    scoring: bool
    training: bool
    recorded_by: str
    role: str
    reason: str
    at: datetime
    before: ConsentState | None = None  # None: the first decision on record

    @property
    def state(self) -> ConsentState:
        return ConsentState(self.scoring, self.training)


@dataclass(frozen=True)
class Consent:
    """A patient's current choices and every decision that led to them, oldest first."""

    patient_id: str
    state: ConsentState
    history: tuple[ConsentDecision, ...]


def set_consent(
    conn: Connection,
    patient_id: str,
    *,
    scoring: bool | None,
    training: bool | None,
    by: str,
    role: str,
    reason: str,
    at: datetime,
    source: str = "cli",
) -> ConsentDecision:
    """Record a decision (None leaves that choice as it is) in the caller's transaction.

    The patient's row is locked while read and updated, so two clerks recording at once
    leave a history whose last row is the current state.
    """
    if scoring is None and training is None:
        raise ValueError("nothing to record: give scoring and/or training")
    by, role, reason = _required(by=by, role=role, reason=reason)
    at = _aware(at)
    before = _current(conn, patient_id, lock=True)
    after = ConsentState(
        before.scoring if scoring is None else scoring,
        before.training if training is None else training,
    )
    conn.execute(
        update(patients)
        .where(patients.c.patient_id == patient_id)
        .values(opted_out_scoring=not after.scoring, opted_out_training=not after.training)
    )
    row = {"patient_id": patient_id, "scoring": after.scoring, "training": after.training,
           "recorded_by": by, "role": role, "reason": reason, "at": at}  # fmt: skip
    decision_id = conn.execute(insert(consent_decisions).values(**row)).inserted_primary_key[0]
    audit.record(conn, audit.AuditEvent(
        "consent.change", actor=by[:64], role=role[:32], patient_id=patient_id,
        object=f"consent/{decision_id}", source=source[:64],
        detail={"before": before.describe(), "after": after.describe(), "reason": clipped(reason),
                "decided_at": at.isoformat()},
    ))  # fmt: skip
    return ConsentDecision(id=int(decision_id), before=before, **row)


def consent_of(conn: Connection, patient_id: str) -> Consent:
    """The patient's current choices (from the patients table) and their history."""
    state = _current(conn, patient_id, lock=False)
    query = (
        select(consent_decisions)
        .where(consent_decisions.c.patient_id == patient_id)
        .order_by(consent_decisions.c.id)
    )
    return Consent(patient_id, state, _with_before(conn.execute(query).mappings().all()))


def training_stays(conn: Connection, since: datetime | None = None) -> tuple[list[str], int]:
    """Stays whose data may be used for training or evaluation, and how many were excluded.

    Every export for training or evaluation reads its stays here: a patient opted out of
    training is left out (opting out of scoring alone does not remove them, see above).
    `since` keeps stays admitted at or after that moment; stays never admitted are skipped.
    """
    query = select(encounters.c.encounter_id, patients.c.opted_out_training).join(
        patients, patients.c.patient_id == encounters.c.patient_id
    ).where(encounters.c.admitted_at.is_not(None)).order_by(encounters.c.encounter_id)  # fmt: skip
    if since is not None:
        query = query.where(encounters.c.admitted_at >= _aware(since))
    rows = conn.execute(query).all()
    kept = [eid for eid, opted_out in rows if not opted_out]
    return kept, len(rows) - len(kept)


def _current(conn: Connection, patient_id: str, *, lock: bool) -> ConsentState:
    query = select(patients.c.opted_out_scoring, patients.c.opted_out_training).where(
        patients.c.patient_id == patient_id
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise PatientNotFound(f"no patient with id {patient_id!r}")
    return ConsentState(scoring=not row[0], training=not row[1])


def _with_before(rows: Sequence[RowMapping]) -> tuple[ConsentDecision, ...]:
    history: list[ConsentDecision] = []
    for row in rows:
        before = history[-1].state if history else None
        history.append(ConsentDecision(before=before, **dict(row)))
    return tuple(history)


def _required(**values: str) -> tuple[str, ...]:
    """Who, in what role and why are part of the record: none may be blank."""
    stripped = tuple((value or "").strip() for value in values.values())
    for name, value in zip(values, stripped, strict=True):
        if not value:
            raise ValueError(f"{name} is required: a consent decision says who, as what, and why")
    return stripped


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"at must be timezone-aware (UTC), not naive {at.isoformat()}")
    return at.astimezone(UTC)
