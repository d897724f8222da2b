"""The store on real SQLite and PostgreSQL: append-only, idempotent, times in UTC."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import psycopg
import pytest
from sqlalchemy import Engine

from wardwatch.domain import Encounter, Patient, Rejection, Sex, rejection_frame
from wardwatch.store import Batch, Receipt, seen_messages, write_batch
from wardwatch.store.reads import patient_observations, quarantine_items, table_counts

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
