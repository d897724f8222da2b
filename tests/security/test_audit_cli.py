"""`wardwatch audit verify | anchor | export` as an operator runs them, on a real SQLite file
that an attacker edited directly."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from fhir.resources.R4B.auditevent import AuditEvent as R4BAuditEvent
from sqlalchemy import Engine
from typer.testing import CliRunner

from wardwatch.security.audit import AuditEvent, record_many, records
from wardwatch.security.audit_cli import audit_app
from wardwatch.store import init_db, open_engine


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WARDWATCH_HOME", str(tmp_path))
    monkeypatch.delenv("WARDWATCH_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


@pytest.fixture
def db(home: Path) -> Engine:
    engine = open_engine(f"sqlite:///{home / 'wardwatch.db'}")
    init_db(engine)
    with engine.begin() as conn:
        record_many(conn, [AuditEvent("patient.read", actor="ann", role="nurse",
                                      patient_id=f"p{i % 2}", object=f"patient/p{i % 2}",
                                      source="10.1.2.3") for i in range(20)])  # fmt: skip
    yield engine
    engine.dispose()


def run(*args: str):
    return CliRunner().invoke(audit_app, list(args))


def edit_file(home: Path, *statements: str) -> None:
    """The attacker: the sqlite3 module on the file, triggers dropped first."""
    db = sqlite3.connect(home / "wardwatch.db")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def actions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r.action for r in records(conn)]


def test_verify_an_intact_chain(db: Engine):
    result = run("verify")
    assert result.exit_code == 0, result.output
    assert "chain intact: 20 records, head " in result.stdout
    assert "anchored at record 20 (the head row in audit_head)" in result.stdout
    assert "keep an anchor outside the database: `wardwatch audit anchor`" in result.stdout
    assert actions(db)[-1] == "audit.verify"  # reading the audit trail is audited too
    assert "warning" not in result.output


def test_verify_names_each_tampered_record_and_exits_1(db: Engine, home: Path):
    edit_file(home, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 5",
              "DELETE FROM audit_events WHERE seq = 9")  # fmt: skip
    result = run("verify")
    assert result.exit_code == 1
    assert "chain TAMPERED: 2 problems in 19 records" in result.stderr
    assert "record 5 altered: actor changed" in result.stderr
    assert "record 9 missing (1 record deleted)" in result.stderr
    assert "what to do: treat the database as compromised" in result.stderr
    assert "the append-only triggers audit_events_no_update" in result.stderr


def test_one_problem_is_said_in_the_singular(db: Engine, home: Path):
    edit_file(home, "UPDATE audit_events SET source = 'cli' WHERE seq = 2")
    result = run("verify")
    assert "chain TAMPERED: 1 problem in 20 records" in result.stderr
    assert "record 2 altered: source changed" in result.stderr


def test_an_anchor_kept_outside_catches_a_removed_tail(db: Engine, home: Path):
    made = run("anchor")
    assert made.exit_code == 0, made.output
    line = made.stdout.split("anchor: ")[1].split()[0]
    assert line.startswith("21:")  # the anchor covers its own audit record
    assert f"wardwatch audit verify --anchor {line}" in made.stdout
    assert "anchored at record 21 (the anchor of " in run("verify").stdout
    edit_file(home, "DELETE FROM audit_events WHERE seq > 16", "DELETE FROM audit_anchors",
              "DELETE FROM audit_head")  # fmt: skip
    assert run("verify").exit_code == 0  # nothing inside the database betrays it ...
    result = run("verify", "--anchor", line)  # ... the line the operator kept does
    assert result.exit_code == 1
    told = result.stderr.replace("\n", " ")  # (the intact verify above appended a new 17)
    assert "the chain ends at record 17 but an anchor given on the command line says it" in told
    assert "reached 21: 4 records removed from the end" in told


def test_a_malformed_anchor_says_what_to_pass(db: Engine):
    result = run("verify", "--anchor", "12:nothex")
    assert result.exit_code == 2
    assert "is not SEQ:HASH" in result.stderr and "what to do:" in result.stderr


def test_no_audit_trail_says_where_it_looked(home: Path):
    result = run("verify")
    assert result.exit_code == 2
    assert "there is no audit trail in sqlite:///" in result.stderr
    assert "wardwatch db init" in result.stderr
    assert not (home / "wardwatch.db").exists()  # looking did not create an empty database


def test_an_unwritable_export_fails_clearly_and_is_audited_as_an_error(db: Engine, home: Path):
    result = run("export", "--fhir", str(home / "no-such-dir" / "audit.ndjson"))
    assert result.exit_code == 2
    assert "cannot write" in result.stderr and "choose a writable path" in result.stderr
    with db.connect() as conn:
        last = list(records(conn))[-1]
    assert (last.action, last.outcome) == ("audit.export", "error")


def test_export_writes_valid_fhir_and_is_audited(db: Engine, home: Path):
    out = home / "audit.ndjson"
    result = run("export", "--fhir", str(out), "--patient", "p1", "--since", "2000-01-01")
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert "wrote 10 AuditEvent resources" in result.stdout and len(lines) == 10
    for line in lines:
        resource = json.loads(line)
        R4BAuditEvent.model_validate(resource)
        assert resource["entity"][0]["what"]["reference"] == "Patient/p1"
    with db.connect() as conn:
        last = list(records(conn))[-1]
    assert (last.action, last.patient_id, last.source, last.object) == (
        "audit.export", "p1", "cli", "file:audit.ndjson"
    )  # fmt: skip
    assert last.details["records"] == 10
