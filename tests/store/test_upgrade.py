"""A store made by an older version gains the columns a newer one declares, in place."""

from __future__ import annotations

from sqlalchemy import inspect, text

from wardwatch.store import init_db


def test_a_column_added_since_the_store_was_made_is_added_with_its_default(engine):
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE alerts DROP COLUMN silent"))
        conn.execute(text(
            "INSERT INTO alerts (encounter_id, patient_id, kind, state, opened_at, reasons, "
            "pause_until_new_data, escalated, updated_at) VALUES ('e1', 'p1', 'sepsis', "
            "'open', '2026-01-01 00:00:00', '[]', false, false, '2026-01-01 00:00:00')"
        ))  # fmt: skip
    assert "silent" not in {c["name"] for c in inspect(engine).get_columns("alerts")}
    init_db(engine)  # what every command does at start
    with engine.connect() as conn:
        assert conn.execute(text("SELECT silent FROM alerts")).scalar_one() in (False, 0)
