"""Writing a batch: patients, encounters, observations, quarantine and the receipt, atomically.

One batch is one transaction. That is the whole durability story: a process killed mid-ingest
loses only the batch it had not committed, and since every row is keyed by its source id,
ingesting the same input again fills exactly the gap.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
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
    """Which message (HL7 MSH-10, bundle, file) data came from, so a resend is recognised,
    and what became of its contents."""

    source: str
    message_id: str
    accepted: int = 0
    quarantined: int = 0


@dataclass(slots=True)
class Batch:
    observations: pd.DataFrame  # normalized and gated: columns include OBSERVATION_ROW's
    rejections: pd.DataFrame  # REJECTION_COLUMNS
    patients: list[Patient] = field(default_factory=list)
    encounters: list[Encounter] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)


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


def _as_text(moments: pd.Series) -> np.ndarray:
    """UTC instants as the naive 'YYYY-MM-DD HH:MM:SS.ffffff' text both databases read.

    numpy formats in C; Series.dt.strftime calls Python per row.
    """
    naive = np.asarray(moments.array.tz_convert(None), dtype="datetime64[us]")
    return np.char.replace(np.datetime_as_string(naive, unit="us"), "T", " ")


def _row_columns(frame: pd.DataFrame, now: datetime) -> list[np.ndarray]:
    """The observations table's columns, in `OBSERVATION_ROW` order, ready for the driver."""
    n = len(frame)
    received = _utc_naive(now).strftime(_TIME_FORMAT)  # type: ignore[union-attr]
    columns = []
    for name in OBSERVATION_ROW:
        if name == "effective_at":
            columns.append(_as_text(frame[name]).astype(object))
        elif name == "received_at":
            columns.append(np.full(n, received, dtype=object))
        elif name in frame:
            columns.append(_column_values(frame[name]))
        else:
            columns.append(np.full(n, None, dtype=object))
    return columns


def _column_values(column: pd.Series) -> np.ndarray:
    """A column as Python objects with None for missing: what the DB driver binds as NULL.

    Done per column on numpy arrays: DataFrame.astype(object).where(...) costs milliseconds
    even for one HL7 message's five rows.
    """
    values = np.array(column, dtype=object)  # a copy: to_numpy may hand back a read-only view
    values[pd.isna(values)] = None
    return values


def _write_observations_sqlite(conn: Connection, columns: list[np.ndarray]) -> int:
    names = ", ".join(OBSERVATION_ROW)
    marks = ", ".join("?" for _ in OBSERVATION_ROW)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(
            # ON CONFLICT, not OR IGNORE: OR IGNORE would also skip NOT NULL violations,
            # silently dropping a broken row instead of failing the batch.
            f"INSERT INTO observations ({names}) VALUES ({marks}) "
            "ON CONFLICT (source, source_id) DO NOTHING",
            zip(*columns, strict=True),
        )
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _write_observations_postgres(conn: Connection, columns: list[np.ndarray]) -> int:
    names = ", ".join(OBSERVATION_ROW)
    buffer = io.StringIO()
    csv.writer(buffer).writerows(zip(*columns, strict=True))  # None → empty → NULL in COPY
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
    columns = _row_columns(frame, now)
    if conn.dialect.name == "postgresql":
        return _write_observations_postgres(conn, columns)
    return _write_observations_sqlite(conn, columns)


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


def seen_messages(conn: Connection, batch: list[Receipt]) -> set[tuple[str, str]]:
    """Which of these (source, message id) pairs were already received."""
    found: set[tuple[str, str]] = set()
    for source in {r.source for r in batch}:
        ids = sorted({r.message_id for r in batch if r.source == source})
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            query = select(receipts.c.message_id).where(
                receipts.c.source == source, receipts.c.message_id.in_(ids[start : start + 900])
            )
            found.update((source, m) for m in conn.scalars(query))
    return found


def write_receipts(conn: Connection, items: list[Receipt], now: datetime) -> None:
    if not items:
        return
    rows = [
        {"source": r.source, "message_id": r.message_id, "received_at": now,
         "accepted": r.accepted, "duplicates": 0, "quarantined": r.quarantined}
        for r in items
    ]  # fmt: skip
    conn.execute(_insert_ignore(conn, receipts), rows)


def write_batch(conn: Connection, batch: Batch, now: datetime | None = None) -> WriteResult:
    """Write everything in `batch` inside the caller's transaction."""
    now = now or datetime.now(UTC)
    write_patients(conn, batch.patients, now)
    write_encounters(conn, batch.encounters, now)
    accepted = write_observations(conn, batch.observations, now)
    quarantined = write_quarantine(conn, batch.rejections, now)
    write_receipts(conn, batch.receipts, now)
    return WriteResult(accepted, len(batch.observations) - accepted, quarantined)
