"""The database tables (SQLAlchemy 2 Core).

Observations are append-only: no code path updates or deletes one. `(source, source_id)` is
unique, which is what makes every ingest idempotent: a resent HL7 message or FHIR resource
lands on the same key and is counted as a duplicate instead of being stored twice.

Times are stored as naive UTC (`UtcDateTime` attaches the zone on the way out), because
SQLite has no zone-aware type and one convention for both engines keeps queries identical.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.types import DateTime, TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive UTC on disk."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

patients = Table(
    "patients",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("sex", String(16), nullable=False, default="unknown"),
    Column("birth_date", String(10)),  # ISO date; a date type buys nothing on SQLite
    Column("source", String(32), nullable=False, default=""),
    Column("opted_out_scoring", Boolean, nullable=False, default=False),
    Column("opted_out_training", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
)

encounters = Table(
    "encounters",
    metadata,
    Column("encounter_id", String(64), primary_key=True),
    Column("patient_id", String(64), ForeignKey("patients.patient_id"), nullable=False),
    Column("unit", String(32)),
    Column("admitted_at", UtcDateTime),
    Column("hospital_admitted_at", UtcDateTime),
    Column("discharged_at", UtcDateTime),
    Column("records_start_at", UtcDateTime),
    Column("age_years", Float),
    Column("sepsis_onset_at", UtcDateTime),
    Column("source", String(32), nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_encounters_patient", "patient_id"),
)

observations = Table(
    "observations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patient_id", String(64), nullable=False),
    Column("encounter_id", String(64)),
    Column("loinc", String(16), nullable=False),
    Column("variable", String(32)),
    Column("value", Float),
    Column("value_text", Text),
    Column("comparator", String(2)),
    Column("unit", String(32)),
    Column("effective_at", UtcDateTime, nullable=False),
    Column("source", String(16), nullable=False),
    Column("source_id", String(200), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("raw_system", String(200)),
    Column("raw_code", String(100)),
    Column("raw_value", Text),
    Column("raw_unit", String(50)),
    UniqueConstraint("source", "source_id", name="uq_observations_source"),
    Index("ix_observations_patient_time", "patient_id", "effective_at"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # sha256 of source, source id, reason and payload: the same bad item sent twice is kept once.
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("source", String(16), nullable=False),
    Column("source_id", String(200), nullable=False),
    Column("patient_id", String(64)),
    Column("reason_code", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Index("ix_quarantine_reason", "reason_code"),
)

receipts = Table(
    "receipts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(16), nullable=False),
    Column("message_id", String(200), nullable=False),  # HL7 MSH-10, bundle id, file name
    Column("received_at", UtcDateTime, nullable=False),
    Column("accepted", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
    Column("quarantined", Integer, nullable=False),
    UniqueConstraint("source", "message_id", name="uq_receipts_message"),
)

# ---------------------------------------------------------------- scores and alerts
#
# Append-only like observations: a score is what the system said at a moment, and a clinician
# must later be able to see exactly that. The current score of a stay is its newest row.

scores = Table(
    "scores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("encounter_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("role", String(8), nullable=False),  # active | shadow (shadow is never shown)
    Column("unit", String(32)),
    Column("hour", Integer, nullable=False),  # hour of the stay the score is for
    Column("as_of", UtcDateTime, nullable=False),  # data time: admission + hour
    Column("scored_at", UtcDateTime, nullable=False),  # wall clock
    Column("risk", Float, nullable=False),
    Column("uncertainty", Float, nullable=False),
    Column("ood_score", Float, nullable=False),
    Column("ood", Boolean, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("vitals_age_hours", Float),  # hours since the freshest vital sign; NULL: none yet
    Column("input_ages", Text, nullable=False),  # JSON {variable: hours since last measured}
    # The newest observation id the score saw: a stay with a newer one is due for scoring.
    Column("through_observation_id", Integer, nullable=False),
    Index("ix_scores_encounter", "encounter_id", "model_version", "hour"),
    # A version's scores by data time: the governance page's first score of a shadow model
    # and its comparison with the active one, over years of active scores.
    Index("ix_scores_version_time", "model_version", "as_of"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", Integer, primary_key=True, autoincrement=True),
    Column("encounter_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # sepsis | review | escalation
    Column("state", String(16), nullable=False),  # open | paused | confirmed | dismissed
    Column("opened_at", UtcDateTime, nullable=False),  # data time of the triggering score
    Column("score_id", Integer),
    Column("risk", Float),
    Column("model_version", String(64)),
    Column("reasons", Text, nullable=False),  # JSON list of sentences a clinician reads
    Column("paused_at", UtcDateTime),
    Column("paused_until", UtcDateTime),
    Column("pause_until_new_data", Boolean, nullable=False, default=False),
    Column("escalated", Boolean, nullable=False, default=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("closed_at", UtcDateTime),
    Column("closed_risk", Float),  # risk when confirmed or dismissed: a re-alert must beat it
    # Opened while the deployment was silent (`alerts.silent`): a would-be alert, never shown.
    Column("silent", Boolean, nullable=False, default=False, server_default=false()),
    Index("ix_alerts_encounter", "encounter_id", "state"),
)

# Silent mode (`alerts.silent`): one row once set; no row means live.
deployment_mode = Table(
    "deployment_mode",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("silent", Boolean, nullable=False),
    Column("since", UtcDateTime, nullable=False),
    Column("changed_by", String(64), nullable=False),
    Column("reason", Text, nullable=False),
)
# At most one active (open or paused) alert of a kind per stay, even with two scorers racing.
_ACTIVE = text("state IN ('open', 'paused')")
Index("uq_alerts_active", alerts.c.encounter_id, alerts.c.kind, unique=True,
      sqlite_where=_ACTIVE, postgresql_where=_ACTIVE)  # fmt: skip

# Who did what to an alert, when: one row per transition, never updated.
alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, ForeignKey("alerts.alert_id"), nullable=False),
    Column("encounter_id", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),  # user id, or "wardwatch" for the system
    Column("role", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("reason_code", String(32)),
    Column("note", Text),
    Index("ix_alert_events_alert", "alert_id"),
)

nursing_assessments = Table(
    "nursing_assessments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("encounter_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("alert_id", Integer),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("answers", Text, nullable=False),  # JSON {question code: answer}
    Column("concern", Boolean, nullable=False),  # the nurse suspects infection / sepsis
    Column("note", Text),
    Index("ix_nursing_assessments_encounter", "encounter_id"),
)

checklist_items = Table(
    "checklist_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, ForeignKey("alerts.alert_id"), nullable=False),
    Column("item", String(32), nullable=False),
    Column("title", Text, nullable=False),
    Column("due_at", UtcDateTime, nullable=False),  # timed from the alert, as SEP-1 is
    Column("applicable", Boolean, nullable=False, default=True),
    Column("why", Text),  # why it applies or does not (e.g. "lactate 4.6 mmol/L")
    Column("done_at", UtcDateTime),
    Column("done_by", String(64)),
    Column("note", Text),
    UniqueConstraint("alert_id", "item", name="uq_checklist_item"),
)

# The ward's clock when time is simulated (replay); absent row: the wall clock.
ward_clock = Table(
    "ward_clock",
    metadata,
    Column("name", String(16), primary_key=True),
    Column("now", UtcDateTime, nullable=False),
    Column("speed", Float, nullable=False),
)

# How far each model has scored: observations with a larger id belong to stays due for a
# score. Committed with the scores, so a crash between the two loses no work and repeats none.
scoring_marks = Table(
    "scoring_marks",
    metadata,
    Column("model_version", String(64), primary_key=True),
    Column("through_observation_id", Integer, nullable=False),
)

# Free text from clinicians to the deployment team ("this alert was useless because ...").
feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("encounter_id", String(64)),
    Column("page", String(200)),
    Column("text", Text, nullable=False),
)
