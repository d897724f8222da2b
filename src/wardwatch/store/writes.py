"""Writing a batch: patients, encounters, observations, quarantine and the receipt, atomically.

One batch is one transaction. That is the whole durability story: a process killed mid-ingest
loses only the batch it had not committed, and since every row is keyed by its source id,
ingesting the same input again fills exactly the gap.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from wardwatch.domain import Encounter, Patient
from wardwatch.store.schema import encounters, patients, quarantine, receipts

OBSERVATION_ROW = (
    "patient_id", "encounter_id", "loinc", "variable", "value", "value_text", "comparator",
    "unit", "effective_at", "source", "source_id", "received_at", "raw_system", "raw_code",
    "raw_value", "raw_unit",
)  # fmt: skip
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
# received_at is the moment of writing, so the writer adds it; the rest can be prepared
# anywhere (a bulk worker process prepares them beside the normalizing).
PREPARED_ROW = tuple(name for name in OBSERVATION_ROW if name != "received_at")
_RECEIVED_AT = OBSERVATION_ROW.index("received_at")
_SHARED_TEXT_FROM = 1000  # rows: see _arrow_texts
# A bulk connection's SQLite settings (see bulk_connection): a 64 MB page cache (negative:
# in KiB), and a checkpoint every 4,096 pages (16 MB) of write-ahead log.
_BULK_PRAGMAS = {"cache_size": -64 * 1024, "wal_autocheckpoint": 4096}


@dataclass(frozen=True, slots=True)
class Receipt:
    """Which message (HL7 MSH-10, bundle, file) data came from, so a resend is recognised,
    and what became of its contents."""

    source: str
    message_id: str
    accepted: int = 0
    quarantined: int = 0


@dataclass(frozen=True, slots=True)
class ObservationRows:
    """Observations as the values the database driver binds: one list per column of
    `PREPARED_ROW` (str, float or None).

    `of` turns a normalized frame into rows; bulk ingest calls it in its worker processes, so
    the one process that writes only binds them.
    """

    columns: tuple[list[Any], ...]

    @classmethod
    def of(cls, frame: pd.DataFrame) -> ObservationRows:
        n = len(frame)
        if not n:  # (numpy's text functions refuse empty arrays)
            return cls(tuple([] for _ in PREPARED_ROW))
        return cls(tuple(
            _bindable(frame[name]) if name in frame else [None] * n for name in PREPARED_ROW
        ))  # fmt: skip

    def __len__(self) -> int:
        return len(self.columns[0])

    def kept(self, keep: np.ndarray) -> ObservationRows:
        """Only the rows where `keep` (booleans, one per row) is true."""
        if keep.all():
            return self
        where = np.flatnonzero(keep).tolist()
        return ObservationRows(tuple([column[i] for i in where] for column in self.columns))

    def bound(self, received_at: str) -> Iterator[tuple[Any, ...]]:
        """One tuple per row in `OBSERVATION_ROW` order, `received_at` in its place."""
        before, after = self.columns[:_RECEIVED_AT], self.columns[_RECEIVED_AT:]
        return zip(*before, repeat(received_at), *after)


@dataclass(slots=True)
class Batch:
    # Normalized and gated: a frame whose columns include OBSERVATION_ROW's, or its rows.
    observations: pd.DataFrame | ObservationRows
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
    _insert_new(conn, patients, list(rows.values()))


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
    _insert_new(conn, encounters, list(rows.values()))


def _insert_new(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` (dicts with the same keys), skipping those whose key is stored already.

    On SQLite straight through the driver, each value through its column type's own bind
    processor, so the stored text is exactly what SQLAlchemy writes: SQLAlchemy's handling
    of each row's parameters costs about 10 µs more, and a bulk export brings an Encounter
    for every ten or so observations.
    """
    if conn.dialect.name != "sqlite":
        conn.execute(_insert_ignore(conn, table), rows)
        return
    names = list(rows[0])
    processors = [table.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
                  for name in names]  # fmt: skip
    columns = [
        [row[name] for row in rows] if process is None else [process(row[name]) for row in rows]
        for name, process in zip(names, processors, strict=True)
    ]
    marks = ", ".join("?" for _ in names)
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks}) ON CONFLICT DO NOTHING"
    _sqlite_executemany(conn, sql, zip(*columns, strict=True))


def _as_text(moments: pd.Series) -> np.ndarray:
    """UTC instants as the naive 'YYYY-MM-DD HH:MM:SS.ffffff' text both databases read.

    numpy formats in C; Series.dt.strftime calls Python per row.
    """
    naive = np.asarray(moments.array.tz_convert(None), dtype="datetime64[us]")
    return np.char.replace(np.datetime_as_string(naive, unit="us"), "T", " ")


def _bindable(column: pd.Series) -> list[Any]:
    """A column as Python objects with None for missing: what the DB driver binds as NULL."""
    if column.name == "effective_at":
        # None for a missing time: the column is NOT NULL, so such a batch fails, loudly.
        texts = _as_text(column).astype(object)
        texts[column.isna().to_numpy()] = None
        return texts.tolist()
    if isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow":
        return _arrow_texts(pa.array(column.array))
    if isinstance(column.dtype, np.dtype) and column.dtype.kind == "f":
        values = column.to_numpy()
        found = values.tolist()
        for i in np.flatnonzero(np.isnan(values)).tolist():
            found[i] = None
        return found
    # Done per column on numpy arrays: DataFrame.astype(object).where(...) costs
    # milliseconds even for one HL7 message's five rows.
    values = np.array(column, dtype=object)  # a copy: to_numpy may hand back a read-only view
    values[pd.isna(values)] = None
    return values.tolist()


def _arrow_texts(text: pa.Array | pa.ChunkedArray) -> list[str | None]:
    """Arrow text as Python strings; in a large batch, one string per distinct text.

    Codes, units and ids repeat down a bulk batch: each distinct text made once is quicker
    than once per row, and pickles once when a worker process sends the rows to the writer.
    A few rows are quicker converted one by one.
    """
    if len(text) < _SHARED_TEXT_FROM:
        return text.to_pylist()
    encoded = pc.dictionary_encode(text)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    words = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)  # -1: None
    return words[encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)].tolist()


def _write_observations_sqlite(conn: Connection, rows: Iterator[tuple[Any, ...]]) -> int:
    names = ", ".join(OBSERVATION_ROW)
    marks = ", ".join("?" for _ in OBSERVATION_ROW)
    # ON CONFLICT, not OR IGNORE: OR IGNORE would also skip NOT NULL violations, silently
    # dropping a broken row instead of failing the batch.
    sql = (f"INSERT INTO observations ({names}) VALUES ({marks}) "
           "ON CONFLICT (source, source_id) DO NOTHING")  # fmt: skip
    return _sqlite_executemany(conn, sql, rows)


def _sqlite_executemany(conn: Connection, sql: str, rows: Iterator[tuple[Any, ...]]) -> int:
    """`sql` once per row on the driver's own cursor (inside `conn`'s transaction); the
    number of rows it changed."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, rows)
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _write_observations_postgres(conn: Connection, rows: Iterator[tuple[Any, ...]]) -> int:
    names = ", ".join(OBSERVATION_ROW)
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)  # None → empty → NULL in COPY
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


def write_observations(
    conn: Connection, observations: pd.DataFrame | ObservationRows, now: datetime
) -> int:
    """Store the observations; returns how many were new (the rest were duplicates)."""
    if not len(observations):
        return 0
    if isinstance(observations, pd.DataFrame):
        observations = ObservationRows.of(observations)
    received = _utc_naive(now).strftime(_TIME_FORMAT)  # type: ignore[union-attr]
    if conn.dialect.name == "postgresql":
        return _write_observations_postgres(conn, observations.bound(received))
    return _write_observations_sqlite(conn, observations.bound(received))


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


@contextmanager
def bulk_connection(engine: Engine) -> Iterator[Connection]:
    """One connection for a long run of batches, each still committed on its own.

    On SQLite (see `_BULK_PRAGMAS`) it gets a page cache that holds the observations' indexes
    of a large load, where the default 2 MB makes every batch read most index pages back from
    the file; and it copies the write-ahead log into the database file every 16 MB instead
    of after every batch (a batch is more than SQLite's usual 4 MB, and the index pages one
    batch writes the next writes again). A committed batch is in the log, whole, either way:
    a killed process loses nothing committed. Only a power cut under synchronous=NORMAL (which
    syncs the log at these copies) may now lose the last few batches instead of the last one,
    and bulk files are re-read idempotently; synchronous=FULL syncs every commit regardless.
    """
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            yield conn
            return
        usual = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in _BULK_PRAGMAS}
        _set_pragmas(conn, _BULK_PRAGMAS)
        try:
            yield conn
        finally:  # the connection goes back to the pool: as it was
            _set_pragmas(conn, usual)


def _set_pragmas(conn: Connection, values: dict[str, Any]) -> None:
    for name, value in values.items():
        conn.exec_driver_sql(f"PRAGMA {name}={int(value)}")
    conn.commit()


def write_batch(conn: Connection, batch: Batch, now: datetime | None = None) -> WriteResult:
    """Write everything in `batch` inside the caller's transaction."""
    now = now or datetime.now(UTC)
    write_patients(conn, batch.patients, now)
    write_encounters(conn, batch.encounters, now)
    accepted = write_observations(conn, batch.observations, now)
    quarantined = write_quarantine(conn, batch.rejections, now)
    write_receipts(conn, batch.receipts, now)
    return WriteResult(accepted, len(batch.observations) - accepted, quarantined)
