"""Writing a batch: patients, encounters, observations, quarantine and the receipt, atomically.

One batch is one transaction. That is the whole durability story: a process killed mid-ingest
loses only the batch it had not committed, and since every row is keyed by its source id,
ingesting the same input again fills exactly the gap.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from wardwatch.domain import Encounter, Patient
from wardwatch.store.schema import encounters, patients, quarantine, receipts

OBSERVATION_ROW = (
    "patient_id", "encounter_id", "loinc", "variable", "value", "value_text", "comparator",
    "unit", "effective_at", "source", "source_id", "received_at", "raw_system", "raw_code",
    "raw_value", "raw_unit",
)  # fmt: skip
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True, slots=True)
class Receipt:
    """Which message (HL7 MSH-10, bundle, file) a batch came from, so a resend is recognised."""

    source: str
    message_id: str


@dataclass(slots=True)
class Batch:
    observations: pd.DataFrame  # normalized and gated: columns include OBSERVATION_ROW's
    rejections: pd.DataFrame  # REJECTION_COLUMNS
    patients: list[Patient] = field(default_factory=list)
    encounters: list[Encounter] = field(default_factory=list)
    receipt: Receipt | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0


def _insert_ignore(conn: Connection, table: Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def _utc_naive(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def write_patients(conn: Connection, items: list[Patient], now: datetime) -> None:
    if not items:
        return
    rows = {
        p.patient_id: {
            "patient_id": p.patient_id,
            "sex": p.sex,
            "birth_date": p.birth_date.isoformat() if p.birth_date else None,
            "source": p.source,
            "opted_out_scoring": False,
            "opted_out_training": False,
            "created_at": now,
        }
        for p in items
    }
    conn.execute(_insert_ignore(conn, patients), list(rows.values()))


def write_encounters(conn: Connection, items: list[Encounter], now: datetime) -> None:
    if not items:
        return
    rows = {
        e.encounter_id: {
            "encounter_id": e.encounter_id,
            "patient_id": e.patient_id,
            "unit": e.unit,
            "admitted_at": e.admitted_at,
            "hospital_admitted_at": e.hospital_admitted_at,
            "discharged_at": e.discharged_at,
            "records_start_at": e.records_start_at,
            "age_years": e.age_years,
            "sepsis_onset_at": e.sepsis_onset_at,
            "source": e.source,
            "created_at": now,
        }
        for e in items
    }
    conn.execute(_insert_ignore(conn, encounters), list(rows.values()))


def _observation_frame(frame: pd.DataFrame, now: datetime) -> pd.DataFrame:
    rows = frame.reindex(columns=list(OBSERVATION_ROW))
    rows["effective_at"] = frame["effective_at"].dt.tz_convert(UTC).dt.strftime(_TIME_FORMAT)
    rows["received_at"] = _utc_naive(now).strftime(_TIME_FORMAT)  # type: ignore[union-attr]
    return rows


def _write_observations_sqlite(conn: Connection, rows: pd.DataFrame) -> int:
    rows = rows.astype(object).where(rows.notna(), None)
    names = ", ".join(OBSERVATION_ROW)
    marks = ", ".join("?" for _ in OBSERVATION_ROW)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(
            # ON CONFLICT, not OR IGNORE: OR IGNORE would also skip NOT NULL violations,
            # silently dropping a broken row instead of failing the batch.
            f"INSERT INTO observations ({names}) VALUES ({marks}) "
            "ON CONFLICT (source, source_id) DO NOTHING",
            rows.itertuples(index=False, name=None),
        )
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _write_observations_postgres(conn: Connection, rows: pd.DataFrame) -> int:
    names = ", ".join(OBSERVATION_ROW)
    buffer = io.StringIO()
    rows.to_csv(buffer, index=False, header=False)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_observations "
            "(LIKE observations INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(f"COPY incoming_observations ({names}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(buffer.getvalue())
        cursor.execute(
            f"INSERT INTO observations ({names}) SELECT {names} FROM incoming_observations "
            "ORDER BY id ON CONFLICT (source, source_id) DO NOTHING"
        )
        inserted = int(cursor.rowcount)
        cursor.execute("TRUNCATE incoming_observations")
        return inserted
    finally:
        cursor.close()


def write_observations(conn: Connection, frame: pd.DataFrame, now: datetime) -> int:
    """Store the frame's observations; returns how many were new (the rest were duplicates)."""
    if frame.empty:
        return 0
    rows = _observation_frame(frame, now)
    if conn.dialect.name == "postgresql":
        return _write_observations_postgres(conn, rows)
    return _write_observations_sqlite(conn, rows)


def _fingerprint(row: dict[str, Any]) -> str:
    text = "\x1f".join(str(row[k]) for k in ("source", "source_id", "reason_code", "payload"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_quarantine(conn: Connection, frame: pd.DataFrame, now: datetime) -> int:
    if frame.empty:
        return 0
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for row in rows:
        row["payload"] = row["payload"] or ""
        row["fingerprint"] = _fingerprint(row)
        row["received_at"] = now
    conn.execute(_insert_ignore(conn, quarantine), rows)
    return len(rows)


def seen_message(conn: Connection, receipt: Receipt) -> bool:
    query = select(receipts.c.id).where(
        receipts.c.source == receipt.source, receipts.c.message_id == receipt.message_id
    )
    return conn.execute(query).first() is not None


def write_batch(conn: Connection, batch: Batch, now: datetime | None = None) -> WriteResult:
    """Write everything in `batch` inside the caller's transaction."""
    now = now or datetime.now(UTC)
    write_patients(conn, batch.patients, now)
    write_encounters(conn, batch.encounters, now)
    accepted = write_observations(conn, batch.observations, now)
    quarantined = write_quarantine(conn, batch.rejections, now)
    result = WriteResult(accepted, len(batch.observations) - accepted, quarantined)
    if batch.receipt is not None:
        conn.execute(
            _insert_ignore(conn, receipts),
            {
                "source": batch.receipt.source,
                "message_id": batch.receipt.message_id,
                "received_at": now,
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "quarantined": result.quarantined,
            },
        )
    return result
