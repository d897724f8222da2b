"""The store on real SQLite and PostgreSQL: append-only, idempotent, times in UTC."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import psycopg
import pytest
from sqlalchemy import Engine, insert

from wardwatch.domain import Encounter, Patient, Rejection, Sex, rejection_frame
from wardwatch.store import (
    Batch,
    ObservationRows,
    Receipt,
    bulk_connection,
    seen_messages,
    write_batch,
)
from wardwatch.store.reads import patient_observations, quarantine_items, table_counts
from wardwatch.store.schema import encounters, patients
from wardwatch.store.writes import (
    OBSERVATION_ROW,
    PREPARED_ROW,
    write_encounters,
    write_patients,
)

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def observations(n: int, patient: str = "p1", start: datetime = T0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": patient,
            "encounter_id": f"{patient}-icu",
            "loinc": "8867-4",
            "variable": "HR",
            "value": [80.0 + i for i in range(n)],
            "value_text": None,
            "comparator": None,
            "unit": "/min",
            "effective_at": pd.to_datetime(
                [start + timedelta(hours=i) for i in range(n)], utc=True
            ),
            "source": "test",
            "source_id": [f"{patient}|{i}" for i in range(n)],
            "raw_system": "http://loinc.org",
            "raw_code": "8867-4",
            "raw_value": [str(80 + i) for i in range(n)],
            "raw_unit": "/min",
        }
    )


def batch(frame: pd.DataFrame, **kwargs) -> Batch:
    people = [Patient("p1", Sex.FEMALE, source="test")]
    stays = [Encounter("p1-icu", "p1", unit="MICU", admitted_at=T0, source="test")]
    return Batch(frame, rejection_frame([]), people, stays, **kwargs)


def test_same_rows_twice_are_stored_once(engine: Engine):
    with engine.begin() as conn:
        first = write_batch(conn, batch(observations(5)))
    with engine.begin() as conn:
        again = write_batch(conn, batch(observations(7)))
    assert (first.accepted, first.duplicates) == (5, 0)
    assert (again.accepted, again.duplicates) == (2, 5)
    with engine.connect() as conn:
        assert table_counts(conn)["observations"] == 7
        assert table_counts(conn)["patients"] == 1


def test_times_come_back_as_the_same_utc_instant(engine: Engine):
    local = datetime(2024, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as conn:
        write_batch(conn, batch(observations(1, start=local)))
    with engine.connect() as conn:
        stored = patient_observations(conn, "p1")
    assert stored["effective_at"].iloc[0] == datetime(2024, 3, 1, 8, 30, tzinfo=UTC)
    assert stored["value"].iloc[0] == 80.0
    assert stored["unit"].iloc[0] == "/min"


def test_late_arrivals_are_read_back_in_the_order_they_happened(engine: Engine):
    later = observations(3, start=T0 + timedelta(hours=10))
    earlier = observations(3, start=T0).assign(source_id=lambda f: f["source_id"] + "-late")
    with engine.begin() as conn:
        write_batch(conn, batch(later))
    with engine.begin() as conn:
        write_batch(conn, batch(earlier))
    with engine.connect() as conn:
        stored = patient_observations(conn, "p1")
    assert stored["effective_at"].is_monotonic_increasing
    assert list(stored["source_id"][:3]) == ["p1|0-late", "p1|1-late", "p1|2-late"]


def test_quarantine_keeps_payload_and_reason_once(engine: Engine):
    bad = rejection_frame(
        [Rejection("hl7v2", "F|1|3", "unmapped_code", "code X unmapped", "OBX|3")]
    )
    with engine.begin() as conn:
        write_batch(conn, Batch(observations(0), bad))
        write_batch(conn, Batch(observations(0), bad))
    with engine.connect() as conn:
        items = quarantine_items(conn)
    assert len(items) == 1
    assert items[0]["reason"] == "code X unmapped"
    assert items[0]["payload"] == "OBX|3"


def test_receipt_recognises_a_resent_message(engine: Engine):
    receipt = Receipt("hl7v2", "LAB|MSG0001")
    with engine.begin() as conn:
        assert not seen_messages(conn, [receipt])
        write_batch(conn, batch(observations(2), receipts=[receipt]))
    with engine.connect() as conn:
        other = Receipt("hl7v2", "LAB|MSG0002")
        assert seen_messages(conn, [receipt, other]) == {("hl7v2", "LAB|MSG0001")}


def test_a_failed_batch_leaves_nothing_behind(engine: Engine):
    broken = observations(3)
    broken.loc[2, "loinc"] = None  # NOT NULL: the whole batch must roll back
    refused = (sqlite3.IntegrityError, psycopg.IntegrityError)
    with pytest.raises(refused), engine.begin() as conn:
        write_batch(conn, batch(broken))
    with engine.connect() as conn:
        counts = table_counts(conn)
    assert counts["observations"] == 0
    assert counts["patients"] == 0


def test_rows_bind_python_values_with_none_for_missing():
    frame = observations(3).assign(
        value=[80.0, np.nan, 82.5], value_text=[None, "pending", None], comparator=None
    )
    # The same frame as normalize leaves it: text in pandas' arrow-backed "str" columns.
    texts = [c for c in frame if c not in ("value", "effective_at")]
    as_normalized = frame.astype({c: pd.StringDtype("pyarrow", na_value=np.nan) for c in texts})
    for rows in (ObservationRows.of(frame), ObservationRows.of(as_normalized)):
        row = dict(zip(OBSERVATION_ROW, next(rows.bound("now")), strict=True))
        assert row["effective_at"] == "2024-03-01 08:00:00.000000"
        assert row["received_at"] == "now"
        assert row["value"] == 80.0 and type(row["value"]) is float
        assert row["comparator"] is None and row["value_text"] is None
        second = dict(zip(OBSERVATION_ROW, next(rows.kept(np.array([0, 1, 1], bool)).bound("")),
                          strict=True))  # fmt: skip
        assert (second["value"], second["value_text"]) == (None, "pending")
    assert ObservationRows.of(frame) == ObservationRows.of(as_normalized)
    assert len(ObservationRows.of(frame.iloc[:0])) == 0


def test_a_large_batch_binds_one_string_per_distinct_text():
    frame = observations(1500).assign(value_text=["a", None, "b"] * 500)
    texts = [c for c in frame if c not in ("value", "effective_at")]
    as_normalized = frame.astype({c: pd.StringDtype("pyarrow", na_value=np.nan) for c in texts})
    shared = ObservationRows.of(as_normalized)
    assert shared == ObservationRows.of(frame)
    loinc = shared.columns[PREPARED_ROW.index("loinc")]
    assert len({id(text) for text in loinc}) == 1  # pickles once on its way to the writer


def test_prepared_rows_are_written_like_their_frame(engine: Engine):
    frame = observations(4)
    with engine.begin() as conn:
        first = write_batch(conn, batch(frame.iloc[:2]))
        second = write_batch(conn, batch(ObservationRows.of(frame)))
    assert (first.accepted, second.accepted, second.duplicates) == (2, 2, 2)
    with engine.connect() as conn:
        stored = patient_observations(conn, "p1")
    assert list(stored["source_id"]) == list(frame["source_id"])
    assert list(stored["effective_at"]) == list(frame["effective_at"])


def test_patients_and_encounters_are_stored_as_sqlalchemy_stores_them(engine: Engine):
    """They go straight to the driver on SQLite: the stored values, times included, must be
    what SQLAlchemy's own insert stores."""
    now = datetime(2024, 3, 2, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=1)))
    people = [Patient(f"p{i}", Sex.FEMALE, T0.date(), "test") for i in (1, 2)]
    stays = [Encounter(f"e{i}", f"p{i}", "MICU", T0, None, T0 + timedelta(days=2), None, 71.5,
                       T0 + timedelta(hours=5), "test") for i in (1, 2)]  # fmt: skip
    extra = {"opted_out_scoring": False, "opted_out_training": False, "created_at": now}
    by_sqlalchemy = _fields(people[1]) | {"patient_id": "q2"} | extra
    stay_by_sqlalchemy = _fields(stays[1]) | {"encounter_id": "f2", "patient_id": "q2",
                                              "created_at": now}  # fmt: skip
    with engine.begin() as conn:
        write_patients(conn, people[:1], now)
        write_encounters(conn, stays[:1], now)
        write_patients(conn, people, now)  # p1 again: kept once
        conn.execute(insert(patients), [by_sqlalchemy])
        conn.execute(insert(encounters), [stay_by_sqlalchemy])
    with engine.connect() as conn:
        stored_patients = conn.exec_driver_sql("SELECT * FROM patients ORDER BY patient_id")
        stored_encounters = conn.exec_driver_sql("SELECT * FROM encounters ORDER BY encounter_id")
        (p1, p2, q2), (e1, f2) = list(stored_patients), list(stored_encounters)
    assert p1[1:] == p2[1:] == q2[1:]
    assert e1[2:] == f2[2:]


def _fields(item: Patient | Encounter) -> dict:
    row = {name: getattr(item, name) for name in item.__slots__}
    if isinstance(item, Patient):
        row["birth_date"] = item.birth_date.isoformat() if item.birth_date else None
    return row


def test_a_bulk_connection_goes_back_to_the_pool_as_it_was(engine: Engine):
    def settings() -> tuple:
        with engine.connect() as conn:
            return tuple(conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                         for name in ("cache_size", "wal_autocheckpoint"))  # fmt: skip

    usual = settings() if engine.dialect.name == "sqlite" else None
    with bulk_connection(engine) as conn:
        if usual is not None:
            bulk = tuple(conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                         for name in ("cache_size", "wal_autocheckpoint"))  # fmt: skip
            conn.commit()
            assert bulk != usual
        with conn.begin():
            write_batch(conn, batch(observations(3)))
        with engine.connect() as other:  # committed: another connection sees it
            assert table_counts(other)["observations"] == 3
    if usual is not None:
        assert settings() == usual
