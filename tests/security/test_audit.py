"""The audit chain on real SQLite and PostgreSQL: appended in the caller's transaction, never
forked by concurrent writers, refused UPDATE/DELETE by the database, and every kind of
tampering (done the way an attacker with database access would: guards off first) detected."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from hashlib import sha256

import pytest
from fhir.resources.R4B.auditevent import AuditEvent as R4BAuditEvent
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from wardwatch.security import audit
from wardwatch.security.audit import (
    ACTIONS,
    GENESIS,
    AuditError,
    AuditEvent,
    audit_anchors,
    audit_events,
    install_guards,
    make_anchor,
    missing_guards,
    parse_anchor,
    record,
    record_many,
    records,
)
from wardwatch.security.audit_fhir import _MAP, ACTION_SYSTEM, export_ndjson
from wardwatch.security.audit_verify import Verification, verify

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
ACTION_CYCLE = ["patient.read", "score.create", "alert.open", "alert.dismiss", "login.success"]


def sample(i: int) -> AuditEvent:
    return AuditEvent(
        ACTION_CYCLE[i % len(ACTION_CYCLE)],
        actor=f"user{i % 3}",
        role="nurse",
        patient_id=f"p{i % 4}",
        encounter_id=f"p{i % 4}-icu",
        object=f"alert/{i}",
        source="10.0.0.7",
        detail={"i": i},
        at=T0 + timedelta(minutes=i),
    )


def fill(engine: Engine, n: int) -> None:
    with engine.begin() as conn:
        record_many(conn, [sample(i) for i in range(n)])


def check(engine: Engine, **kwargs) -> Verification:
    with engine.connect() as conn:
        return verify(conn, **kwargs)


def tamper(engine: Engine, *statements: str) -> None:
    """What an attacker with write access does: switch the guards off, then edit rows.
    SQLite: straight on the file with the sqlite3 module, no wardwatch code involved."""
    if engine.dialect.name == "sqlite":
        db = sqlite3.connect(engine.url.database)
        names = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        for (name,) in names:
            db.execute(f"DROP TRIGGER {name}")
        for statement in statements:
            db.execute(statement)
        db.commit()
        db.close()
        return
    tables = ("audit_events", "audit_head", "audit_anchors")
    with engine.begin() as conn:
        for table in tables:
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        for statement in statements:
            conn.exec_driver_sql(statement)
        for table in tables:
            conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def kinds(result: Verification) -> list[tuple[str, int, int]]:
    return [(p.kind, p.first, p.last) for p in result.problems]


def row_values(engine: Engine, seq: int) -> dict:
    with engine.connect() as conn:
        return dict(
            conn.execute(select(audit_events).where(audit_events.c.seq == seq)).one()._mapping
        )


# ---------------------------------------------------------------- appending


def test_records_are_chained_from_genesis_and_verify_intact(engine: Engine):
    with engine.begin() as conn:
        first = record(conn, sample(0))
        rest = record_many(conn, [sample(i) for i in range(1, 50)])
    assert (first.seq, first.prev_hash) == (1, GENESIS)
    assert [r.seq for r in rest] == list(range(2, 51))
    assert all(b.prev_hash == a.hash for a, b in zip([first, *rest], rest, strict=False))
    result = check(engine)
    assert result.intact and result.records == 50 and result.last_hash == rest[-1].hash
    with engine.connect() as conn:
        assert list(records(conn)) == [first, *rest]  # what is read is exactly what was hashed


def test_the_hash_rule_is_the_documented_one(engine: Engine):
    """An auditor re-implements the rule from the docstring, without our code."""
    fill(engine, 3)
    with engine.connect() as conn:
        rows = list(records(conn))
    prev = "0" * 64
    for row in rows:
        fields = [row.seq, row.at, row.actor, row.role, row.action, row.patient_id,
                  row.encounter_id, row.object, row.source, row.outcome, row.detail,
                  row.field_sums]  # fmt: skip
        canonical = json.dumps(fields, separators=(",", ":"))
        assert row.prev_hash == prev
        assert sha256((prev + canonical).encode()).hexdigest() == row.hash
        prev = row.hash
    assert rows[0].at == "2024-03-01 08:00:00.000000" and rows[0].recorded == T0


def test_a_rolled_back_action_leaves_no_record_and_no_gap(engine: Engine):
    with pytest.raises(RuntimeError), engine.begin() as conn:
        record(conn, sample(0))
        raise RuntimeError("the action failed after auditing")
    fill(engine, 2)
    with engine.connect() as conn:
        assert [r.seq for r in records(conn)] == [1, 2]
    assert check(engine).intact


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"action": "Alert Open"}, "dotted lower-case"),
        ({"outcome": "ok"}, "not one of success"),
        ({"actor": ""}, "who did this"),
        ({"detail": {"at": datetime.now(UTC)}}, "not JSON"),
        ({"detail": {"risk": float("nan")}}, "not JSON"),
        ({"detail": {"note": "x" * 5000}}, "longer than 4096"),
        ({"object": "o" * 201}, "object is longer than 200"),
    ],
)
def test_invalid_events_are_refused_before_anything_is_written(engine: Engine, change, says):
    bad = AuditEvent(**{"action": "patient.read", **change})
    with pytest.raises(ValueError, match=says), engine.begin() as conn:
        record_many(conn, [sample(0), bad])
    with engine.connect() as conn:
        assert list(records(conn)) == []


def test_two_writers_never_fork_the_chain(engine: Engine):
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for i in range(15):
                with engine.begin() as conn:
                    record_many(conn, [sample(offset + i * 10 + k) for k in range(10)])
                with engine.begin() as conn:
                    record(conn, sample(offset + i))
        except BaseException as error:  # noqa: BLE001 - reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n * 1000,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    result = check(engine)
    assert result.intact, result.problems
    assert result.records == result.last_seq == 2 * 15 * 11


def test_every_anchor_every_n_records_is_stored(engine: Engine, monkeypatch):
    monkeypatch.setattr(audit, "ANCHOR_EVERY", 10)
    for _ in range(5):
        fill(engine, 7)
    with engine.connect() as conn:
        anchored = conn.execute(select(audit_anchors.c.seq).order_by(audit_anchors.c.seq))
        assert list(anchored.scalars()) == [10, 20, 30]
    assert check(engine).anchor.seq == 35  # the head row; the newest dated anchor is 30


def test_a_lost_head_row_is_rebuilt_from_the_chain(engine: Engine):
    fill(engine, 5)
    tamper(engine, "DELETE FROM audit_head")
    fill(engine, 2)
    result = check(engine)
    assert result.intact and result.records == 7


def test_a_head_behind_its_records_stops_appends_with_a_clear_error(engine: Engine):
    fill(engine, 5)
    tamper(engine, "UPDATE audit_head SET seq = 3")
    with pytest.raises(AuditError, match="audit record 4 exists already"), engine.begin() as conn:
        record(conn, sample(9))


def test_verify_streams_in_small_batches(engine: Engine):
    fill(engine, 30)
    tamper(engine, "UPDATE audit_events SET role = 'admin' WHERE seq = 17")
    assert kinds(check(engine, batch=4)) == kinds(check(engine)) == [("altered", 17, 17)]


# ---------------------------------------------------------------- the database's guards


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET actor = 'x' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 2",
        "DELETE FROM audit_anchors",
        "UPDATE audit_anchors SET hash = 'x'",
        "UPDATE audit_head SET seq = 1",
        "DELETE FROM audit_head",
    ],
)
def test_the_database_refuses_to_change_audit_rows(engine: Engine, statement):
    install_guards(engine)  # idempotent: init_db installed them already
    fill(engine, 3)
    with engine.begin() as conn:
        make_anchor(conn, "ops")
    refused = r"append-only|never moves backwards"
    with pytest.raises(DBAPIError, match=refused), engine.begin() as conn:
        conn.execute(text(statement))
    assert check(engine).intact


def test_removed_or_disabled_guards_are_named(engine: Engine):
    with engine.connect() as conn:
        assert missing_guards(conn) == []
    if engine.dialect.name == "sqlite":
        remove = "DROP TRIGGER audit_events_no_update"
        name = "audit_events_no_update"
    else:
        remove = "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change"
        name = "audit_events_no_change"
    with engine.begin() as conn:
        conn.exec_driver_sql(remove)
    with engine.connect() as conn:
        assert missing_guards(conn) == [name]
    install_guards(engine)
    with engine.connect() as conn:
        assert missing_guards(conn) == []


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_postgres_refuses_truncate(engine: Engine):
    fill(engine, 2)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_events"))


# ---------------------------------------------------------------- tampering, detected


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("patient_id = 'p9'", "record 7 altered: patient_id changed"),
        ("at = '2024-03-01 08:06:00.000001'", "record 7 altered: at changed"),
        ("outcome = 'denied', detail = NULL", "record 7 altered: outcome, detail changed"),
        (
            f"hash = '{'1' * 64}'",
            "record 7 altered: its hash column (or a field with its checksum) was changed",
        ),
        (
            f"prev_hash = '{'2' * 64}'",
            "record 7 altered: its prev_hash column (or a field with its checksum) was changed",
        ),
    ],
)
def test_an_altered_record_is_found_with_what_changed(engine: Engine, change, says):
    fill(engine, 20)
    if engine.dialect.name == "postgresql" and change.startswith("at"):
        change = "at = at + interval '1 microsecond'"
    tamper(engine, f"UPDATE audit_events SET {change} WHERE seq = 7")
    result = check(engine)
    assert kinds(result) == [("altered", 7, 7)]  # one problem, no cascade to record 8
    assert result.problems[0].message == says


def test_a_deleted_record_is_named(engine: Engine):
    fill(engine, 20)
    tamper(engine, "DELETE FROM audit_events WHERE seq = 12")
    result = check(engine)
    assert kinds(result) == [("missing", 12, 12)]
    assert result.problems[0].message == "record 12 missing (1 record deleted)"


def test_deleted_first_records_are_named(engine: Engine):
    fill(engine, 10)
    tamper(engine, "DELETE FROM audit_events WHERE seq <= 3")
    assert kinds(check(engine)) == [("missing", 1, 3)]


def test_swapped_records_are_found(engine: Engine):
    fill(engine, 20)
    a, b = row_values(engine, 5), row_values(engine, 6)
    statements = [
        "UPDATE audit_events SET seq = -5 WHERE seq = 5",
        "UPDATE audit_events SET seq = 5 WHERE seq = 6",
        "UPDATE audit_events SET seq = 6 WHERE seq = -5",
    ]
    tamper(engine, *statements)
    assert (row_values(engine, 5)["hash"], row_values(engine, 6)["hash"]) == (b["hash"], a["hash"])
    result = check(engine)
    assert kinds(result) == [("swapped", 5, 6)]
    assert result.problems[0].message == "records 5 and 6 were swapped"


def test_a_deletion_hidden_by_renumbering_is_found(engine: Engine):
    fill(engine, 30)
    tamper(
        engine,
        "DELETE FROM audit_events WHERE seq = 10",
        "UPDATE audit_events SET seq = seq + 1000 WHERE seq > 10",
        "UPDATE audit_events SET seq = seq - 1001 WHERE seq > 1000",
        "UPDATE audit_head SET seq = 29",
    )
    result = check(engine)
    assert kinds(result)[0] == ("moved", 10, 29)
    assert "1 record removed just before record 10" in result.problems[0].message


def test_a_forged_record_inserted_in_the_middle_is_found(engine: Engine):
    fill(engine, 30)
    forged = _forged_after(engine, 15)
    tamper(
        engine,
        "UPDATE audit_events SET seq = seq + 1000 WHERE seq > 15",
        "UPDATE audit_events SET seq = seq - 999 WHERE seq > 1000",
        _insert_sql(forged),
    )
    result = check(engine)
    assert kinds(result)[0] == ("moved", 17, 31)
    assert (
        "1 record inserted just before record 17 (likely record 16)" in result.problems[0].message
    )


def test_a_rewritten_record_with_its_hash_recomputed_breaks_the_next_link(engine: Engine):
    fill(engine, 20)
    forged = _forged_after(engine, 7)
    tamper(engine, "DELETE FROM audit_events WHERE seq = 8", _insert_sql(forged))
    assert kinds(check(engine)) == [("broken_link", 9, 9)]


def test_a_removed_tail_is_found_against_the_anchor(engine: Engine):
    fill(engine, 1200)
    with engine.begin() as conn:
        anchor = make_anchor(conn, "ops")
    tamper(engine, "DELETE FROM audit_events WHERE seq > 1000")
    result = check(engine)
    assert kinds(result) == [("truncated", 1001, 1200)]
    assert "the chain ends at record 1000 but" in result.problems[0].message
    assert "says it reached 1200: 200 records removed from the end" in result.problems[0].message
    # The attacker also clears the anchors and the head: only the copy kept outside is left.
    tamper(engine, "DELETE FROM audit_anchors", "DELETE FROM audit_head")
    assert check(engine).intact
    outside = check(engine, anchors=[parse_anchor(anchor.line())])
    assert kinds(outside) == [("truncated", 1001, 1200)]


def test_an_emptied_chain_is_found_against_the_head(engine: Engine):
    fill(engine, 5)
    tamper(engine, "DELETE FROM audit_events")
    message = "the chain is empty but the head row in audit_head says it reached 5: 5 records"
    assert check(engine).problems[0].message.startswith(message)


def test_a_chain_rewritten_to_the_end_is_found_only_by_an_anchor(engine: Engine):
    fill(engine, 10)
    with engine.begin() as conn:
        anchor = make_anchor(conn, "ops")
    rows = _rechained(engine, changed_seq=4)
    tamper(engine, "DELETE FROM audit_events", *map(_insert_sql, rows),
           f"UPDATE audit_head SET hash = '{rows[-1]['hash']}'")  # fmt: skip
    result = check(engine)
    assert kinds(result) == [("anchor_mismatch", 10, 10)]
    tamper(engine, "DELETE FROM audit_anchors")
    assert check(engine).intact  # undetectable from inside the database alone ...
    assert kinds(check(engine, anchors=[anchor])) == [("anchor_mismatch", 10, 10)]  # ... not here


def test_problems_beyond_the_limit_are_counted(engine: Engine):
    fill(engine, 20)
    tamper(engine, "UPDATE audit_events SET role = 'x' WHERE seq IN (2, 4, 6, 8, 10)")
    result = check(engine, max_problems=2)
    assert len(result.problems) == 2 and result.not_shown == 3 and not result.intact


def _forged_after(engine: Engine, after: int) -> dict:
    """A perfectly chained record after record `after`: the algorithm is public, no key."""
    target = after + 1
    prev = row_values(engine, after)["hash"]
    content = ("2024-03-02 00:00:00.000000", "mallory", "admin", "permission.change", None,
               None, "user/mallory", "10.6.6.6", "success", None)  # fmt: skip
    sums = audit.field_sums(content)
    digest = audit.chain_hash(prev, target, content, sums)
    return dict(zip(audit.COLUMNS, (target, *content, sums, prev, digest), strict=True))


def _rechained(engine: Engine, changed_seq: int) -> list[dict]:
    with engine.connect() as conn:
        rows = [r._asdict() for r in records(conn)]
    prev = GENESIS
    for row in rows:
        if row["seq"] == changed_seq:
            row["actor"] = "someone-else"
        content = tuple(row[c] for c in audit.CONTENT)
        row["field_sums"] = audit.field_sums(content)
        row["prev_hash"], row["hash"] = (
            prev,
            audit.chain_hash(prev, row["seq"], content, row["field_sums"]),
        )
        prev = row["hash"]
    return rows


def _insert_sql(row: dict) -> str:
    def literal(value: object) -> str:
        return "NULL" if value is None else str(value) if isinstance(value, int) else f"'{value}'"

    columns = ", ".join(audit.COLUMNS)
    values = ", ".join(literal(row[c]) for c in audit.COLUMNS)
    return f"INSERT INTO audit_events ({columns}) VALUES ({values})"


# ---------------------------------------------------------------- FHIR AuditEvent


def test_every_known_action_has_its_fhir_mapping():
    assert set(_MAP) >= ACTIONS


def test_export_writes_valid_r4_audit_events(engine: Engine):
    with engine.begin() as conn:
        record_many(conn, [
            sample(0),
            AuditEvent("login.failure", actor="bob", source="cli", outcome="denied",
                       detail={"reason": "wrong password"}, at=T0),
            AuditEvent("brand.new_thing", at=T0 + timedelta(days=2)),
        ])  # fmt: skip
    out = io.StringIO()
    with engine.connect() as conn:
        assert export_ndjson(conn, out) == 3
    read, failed, system = (json.loads(line) for line in out.getvalue().splitlines())
    for resource in (read, failed, system):
        R4BAuditEvent.model_validate(resource)
    assert read["type"]["code"] == "rest" and read["subtype"][0]["code"] == "read"
    assert (read["action"], read["outcome"], read["recorded"]) == ("R", "0", "2024-03-01T08:00:00Z")
    assert read["agent"][0]["requestor"] is True
    assert read["agent"][0]["network"] == {"address": "10.0.0.7", "type": "2"}
    assert read["source"]["observer"]["display"] == "wardwatch"
    assert read["entity"][0]["what"]["reference"] == "Patient/p0"
    assert read["entity"][0]["role"]["code"] == "1"
    chain = {d["type"]: d["valueString"] for d in read["entity"][-1]["detail"]}
    assert chain["prev_hash"] == GENESIS and chain["seq"] == "1"
    assert (failed["outcome"], failed["outcomeDesc"]) == ("4", "wrong password")
    assert failed["subtype"][0]["code"] == "110122" and "network" not in failed["agent"][0]
    assert system["type"]["code"] == "110100"
    assert system["subtype"] == [{"system": ACTION_SYSTEM, "code": "brand.new_thing"}]


def test_export_filters_by_time_and_patient(engine: Engine):
    fill(engine, 12)
    out = io.StringIO()
    with engine.connect() as conn:
        n = export_ndjson(conn, out, since=T0 + timedelta(minutes=4), patient_id="p1")
    seqs = [json.loads(line)["id"] for line in out.getvalue().splitlines()]
    assert n == 2 and seqs == ["audit-6", "audit-10"]
