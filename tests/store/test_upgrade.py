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


def test_an_index_declared_since_the_store_was_made_is_created_and_used(engine):
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_scores_version_time"))
    assert "ix_scores_version_time" not in _indexes(engine, "scores")
    init_db(engine)  # what every command does at start
    assert "ix_scores_version_time" in _indexes(engine, "scores")
    init_db(engine)  # and again: nothing to add, nothing fails
    if engine.dialect.name == "sqlite":  # the governance page's query seeks, not scans
        with engine.connect() as conn:
            plan = " ".join(str(row[-1]) for row in conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT min(as_of) FROM scores WHERE model_version = 'v2'"
            )))  # fmt: skip
        assert "ix_scores_version_time" in plan, plan


def _indexes(engine, table: str) -> set[str]:
    return {index["name"] for index in inspect(engine).get_indexes(table)}
