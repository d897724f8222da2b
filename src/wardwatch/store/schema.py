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
