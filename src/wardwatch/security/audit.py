"""The tamper-evident audit trail: who did what, to which patient, when, from where, and
with what outcome. Append-only, and chained by SHA-256 so that any change is detectable.

    record(conn, AuditEvent(...))          append one record, in the caller's transaction
    record_many(conn, events)              append a batch: one lock, one executemany / COPY
    audit_verify.verify(conn, anchors=...) walk the chain; say what was altered, removed, moved
    make_anchor(conn, by)                  write the head to audit_anchors (print it, keep it)
    records(conn, since=, patient_id=)     stream records in order (the FHIR export reads these)
    install_guards(engine)                 the database itself refuses UPDATE, DELETE, TRUNCATE

**The chain.** Record n keeps `prev_hash`, the hash of record n-1 (64 zeros for record 1),
and `hash = sha256(prev_hash + canonical)`, hex, where `canonical` is the JSON array (ASCII
escapes, no spaces) `[seq, at, actor, role, action, patient_id, encounter_id, object, source,
outcome, detail, field_sums]`, `at` written 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC and `detail`
the stored JSON text. That is the whole algorithm, so an auditor can re-check an export
without our code. A chain rather than a Merkle tree: appends are sequential anyway (one head,
under a lock), verify reads every record in order, and a chain names the first broken record
directly; a tree's short inclusion proofs have no consumer here.

`field_sums` (a 16-bit CRC per content field) is not security, the hash is: it is a hint that
lets verify say *which* field an attacker changed when he did not also fix the sums.

**Locking.** `audit_head` holds the chain's head (seq, hash) in one row. An append starts with
`UPDATE audit_head SET seq = seq ... RETURNING`: on PostgreSQL that row lock serialises
appenders (a waiter re-reads the committed head), on SQLite the UPDATE takes the database's
write lock. So seq stays gap-free and prev_hash is always the true previous hash, even with
many writers. Every audited transaction holds the lock from its append to its commit:
append last, just before committing. (Under REPEATABLE READ or SERIALIZABLE on PostgreSQL a
contended head raises a serialization failure instead of waiting: retry the transaction.)

**Anchors.** Deleting the newest records leaves a valid, shorter chain; only a copy of the
head kept elsewhere reveals it. Every `ANCHOR_EVERY`th record, and on demand (`wardwatch audit
anchor`), the head is written to `audit_anchors` and printed for an operator to keep outside
the database; verify checks every stored anchor, the head row and any given on the command
line. Someone who can write to the database can rewrite the whole chain after his change (the
algorithm is public, there is no key); the anchors kept outside are what catch that.

**Guards.** `install_guards` (also run when `init_db` creates the tables) adds triggers that
make the database refuse UPDATE and DELETE of records and anchors (and TRUNCATE on
PostgreSQL), and any move of the head backwards. They stop mistakes and the application's own
code; an attacker who owns the database can drop them, which is what the chain is for. On
PostgreSQL a deployment should also run wardwatch as a role that does not own these tables
(INSERT and SELECT on them, UPDATE on audit_head), so that not even its own credentials can
disable the triggers.

The tables join `wardwatch.store.schema.metadata` when this module is imported: import it
before `init_db` runs (the CLI does, through `audit_cli`).

Auditing cannot be switched off: there is no setting for it. The only way around it is at the
database level, and verify detects that.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    event,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from wardwatch.store.schema import UtcDateTime, metadata

GENESIS = "0" * 64
SYSTEM = "wardwatch"  # the actor, and the source, of what the system does by itself
ANCHOR_EVERY = 10_000
HEAD_ROW = "the head row in audit_head"
OUTCOMES = ("success", "denied", "error")
MAX_DETAIL = 4096  # characters of JSON: the audit says what happened, it is not a data store
# The actions the code base records, each with its FHIR mapping; other dotted names are
# accepted (and exported as Application Activity), so a new feature is never refused its audit.
ACTIONS = frozenset({
    "patient.read", "patient.search", "worklist.read", "score.create", "alert.open",
    "alert.confirm", "alert.dismiss", "alert.pause", "alert.escalate", "evaluation.create",
    "assessment.create", "what_if", "export", "model.promote", "model.rollback",
    "login.success", "login.failure", "logout", "account.lock", "permission.change",
    "user.create", "mfa.reset", "session.revoke", "token.issue", "token.revoke", "break_glass",
    "break_glass.review", "consent.change", "audit.verify", "audit.anchor", "audit.export",
    "mfa.enrol", "mfa.confirm", "mfa.confirm_failure", "break_glass.refused",
})  # fmt: skip
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z")
# 64-bit: a busy hospital outgrows 2^31 records. On SQLite, INTEGER PRIMARY KEY is the rowid
# (64-bit already, and no separate index to maintain).
_SEQ = BigInteger().with_variant(Integer, "sqlite")

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),  # user id, or "wardwatch"
    Column("role", String(32), nullable=False),
    Column("action", String(40), nullable=False),
    Column("patient_id", String(64)),
    Column("encounter_id", String(64)),
    Column("object", String(200), nullable=False),  # what: "alert/12", "model/v3"
    Column("source", String(64), nullable=False),  # from where: an IP, "cli", "mllp"
    Column("outcome", String(8), nullable=False),  # success | denied | error
    Column("detail", Text),  # small JSON object, or NULL
    Column("field_sums", String(40), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_events_patient", "patient_id", "seq"),
    Index("ix_audit_events_at", "at"),
    # One kind of record over a period: the governance page's refused break-the-glass
    # attempts of the last month, among every patient read of that month.
    Index("ix_audit_events_action_at", "action", "at"),
)

# The head of the chain, one row (id 1): the lock appenders queue on, and a cross-check.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", _SEQ, nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_anchors = Table(
    "audit_anchors",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("by", String(64), nullable=False),
)

COLUMNS = tuple(c.name for c in audit_events.columns)
CONTENT = COLUMNS[1:11]  # at .. detail: what field_sums cover


class AuditError(RuntimeError):
    """The audit trail cannot be written or read; the message says what to check."""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What happened, as the code that did it knows it; `record` adds seq, time and hashes.

    `object` names what was touched ("alert/12", "model/v3", "user/ann"); `detail` is a small
    JSON-able mapping (reason codes, counts), never clinical values or free text about a
    patient beyond what the action needs.
    """

    action: str
    actor: str = SYSTEM
    role: str = "system"
    patient_id: str | None = None
    encounter_id: str | None = None
    object: str = ""
    source: str = SYSTEM
    outcome: str = "success"
    detail: Mapping[str, Any] | None = None
    at: datetime | None = None  # default: now (wall clock, even during a replay)


class AuditRecord(NamedTuple):
    """One stored record, fields in column order. `at` is the canonical UTC text."""

    seq: int
    at: str
    actor: str
    role: str
    action: str
    patient_id: str | None
    encounter_id: str | None
    object: str
    source: str
    outcome: str
    detail: str | None
    field_sums: str
    prev_hash: str
    hash: str

    @property
    def recorded(self) -> datetime:
        return datetime.fromisoformat(self.at).replace(tzinfo=UTC)

    @property
    def details(self) -> dict[str, Any]:
        return json.loads(self.detail) if self.detail else {}


@dataclass(frozen=True, slots=True)
class Anchor:
    """A (seq, hash) the chain must pass through; `where` says who vouches for it."""

    seq: int
    hash: str
    where: str = "an anchor given on the command line"
    at: datetime | None = None

    def line(self) -> str:
        """What an operator keeps outside the database; `--anchor` reads it back."""
        return f"{self.seq}:{self.hash}"


# ---------------------------------------------------------------- the hash


_canonical = json.JSONEncoder(separators=(",", ":")).encode  # ASCII: no encoding questions
_detail = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False).encode


def field_sums(content: Sequence[str | None]) -> str:
    """A 16-bit CRC of each content field, as 4 hex digits each (a hint, not security)."""
    crcs = [zlib.crc32(b"\x00" if v is None else v.encode()) & 0xFFFF for v in content]
    return struct.pack(f">{len(crcs)}H", *crcs).hex()


def chain_hash(prev_hash: str, seq: int, content: Sequence[str | None], sums: str) -> str:
    """sha256(prev_hash + canonical JSON of the record), hex: the module docstring's rule."""
    return sha256((prev_hash + _canonical([seq, *content, sums])).encode()).hexdigest()


def _at_text(moment: datetime | str) -> str:
    """The canonical time text; SQLite hands back exactly this string, PostgreSQL a datetime."""
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    # "YYYY-MM-DD HH:MM:SS.ffffff", as SQLAlchemy stores a DateTime in SQLite (no strftime:
    # isoformat is three times faster).
    return moment.isoformat(" ", "microseconds")


def _short(name: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise ValueError(f"audit {name} is longer than {limit} characters: {value[:40]!r}...")


def _content(item: AuditEvent, now: str) -> tuple[str | None, ...]:
    """The event's content fields, validated, in CONTENT order."""
    if not _ACTION.match(item.action) or len(item.action) > 40:
        raise ValueError(f"audit action {item.action!r}: use dotted lower-case, e.g. 'alert.open'")
    if item.outcome not in OUTCOMES:
        raise ValueError(f"audit outcome {item.outcome!r} is not one of {', '.join(OUTCOMES)}")
    if not item.actor:
        raise ValueError("audit actor is empty: who did this? (the system is 'wardwatch')")
    detail = None
    if item.detail is not None:
        try:
            detail = _detail(dict(item.detail))
        except (TypeError, ValueError) as error:  # not JSON-able; NaN or infinity
            raise ValueError(f"audit detail is not JSON: {error}") from error
        _short("detail", detail, MAX_DETAIL)
    for name, limit in (("actor", 64), ("role", 32), ("patient_id", 64), ("encounter_id", 64),
                        ("object", 200), ("source", 64)):  # fmt: skip
        _short(name, getattr(item, name), limit)
    at = now if item.at is None else _at_text(item.at)
    return (at, item.actor, item.role, item.action, item.patient_id,
            item.encounter_id, item.object, item.source, item.outcome, detail)  # fmt: skip


# ---------------------------------------------------------------- appending


_LOCK_HEAD = (
    update(audit_head)
    .where(audit_head.c.id == 1)
    .values(seq=audit_head.c.seq)
    .returning(audit_head.c.seq, audit_head.c.hash)
)

_ADVANCE_HEAD = (
    update(audit_head)
    .where(audit_head.c.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


def _insert_ignore(conn: Connection, table: Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def _lock_head(conn: Connection) -> tuple[int, str]:
    """The head (seq, hash), locked until the caller's transaction ends.

    A missing head row (a new database) is created from the newest record, so the chain
    continues where it is; two appenders racing to create it both end up on the same row.
    """
    row = conn.execute(_LOCK_HEAD).first()
    if row is None:
        last = conn.execute(
            select(audit_events.c.seq, audit_events.c.hash).order_by(audit_events.c.seq.desc())
        ).first()
        start = (int(last.seq), str(last.hash)) if last else (0, GENESIS)
        conn.execute(_insert_ignore(conn, audit_head), {"id": 1, "seq": start[0],
                                                        "hash": start[1]})  # fmt: skip
        row = conn.execute(_LOCK_HEAD).one()
    return int(row.seq), str(row.hash)


def _chain(contents: Sequence[tuple[str | None, ...]], seq: int, prev: str) -> list[AuditRecord]:
    chained = []
    for content in contents:
        seq += 1
        sums = field_sums(content)
        digest = chain_hash(prev, seq, content, sums)
        chained.append(AuditRecord(seq, *content, sums, prev, digest))  # type: ignore[arg-type]
        prev = digest
    return chained


def _insert_sqlite(conn: Connection, rows: list[AuditRecord]) -> None:
    marks = ", ".join("?" for _ in COLUMNS)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({marks})",
                           rows)  # fmt: skip
    finally:
        cursor.close()


def _insert_postgres(conn: Connection, rows: list[AuditRecord]) -> None:
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(f"COPY audit_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    finally:
        cursor.close()


def _insert(conn: Connection, rows: list[AuditRecord]) -> None:
    try:
        if conn.dialect.name == "postgresql":
            _insert_postgres(conn, rows)
        else:
            _insert_sqlite(conn, rows)
    except conn.dialect.loaded_dbapi.IntegrityError as error:
        raise AuditError(
            f"audit record {rows[0].seq} exists already: the chain's head (audit_head) is behind "
            "its records, which only tampering does. Run `wardwatch audit verify`"
        ) from error


def record_many(conn: Connection, events: Iterable[AuditEvent]) -> list[AuditRecord]:
    """Append `events` in order, inside the caller's transaction; returns the stored records.

    The batch is hashed in Python and written in one executemany (SQLite) or COPY
    (PostgreSQL), under one lock of the head: this is the fast path for bulk work (ingest,
    scoring rounds). Invalid events raise ValueError before the head is even locked.
    """
    now = _at_text(datetime.now(UTC))
    contents = [_content(item, now) for item in events]
    if not contents:
        return []
    seq, prev = _lock_head(conn)
    rows = _chain(contents, seq, prev)
    _insert(conn, rows)
    last = rows[-1]
    conn.execute(_ADVANCE_HEAD, {"new_seq": last.seq, "new_hash": last.hash})
    due = [Anchor(r.seq, r.hash) for r in rows if r.seq % ANCHOR_EVERY == 0]
    _write_anchors(conn, due, SYSTEM)
    return rows


def record(conn: Connection, item: AuditEvent) -> AuditRecord:
    """Append one record inside the caller's transaction, so the action it describes and its
    audit commit together or not at all."""
    return record_many(conn, [item])[0]


def _write_anchors(conn: Connection, anchors: Sequence[Anchor], by: str) -> None:
    if anchors:
        now = datetime.now(UTC)
        rows = [{"seq": a.seq, "hash": a.hash, "at": a.at or now, "by": by} for a in anchors]
        conn.execute(_insert_ignore(conn, audit_anchors), rows)


def make_anchor(conn: Connection, by: str) -> Anchor:
    """Write the current head to `audit_anchors` and return it, to print and keep elsewhere."""
    seq, digest = _lock_head(conn)
    if seq == 0:
        raise AuditError("the audit trail is empty: there is nothing to anchor yet")
    at = datetime.now(UTC)
    _write_anchors(conn, [Anchor(seq, digest, at=at)], by)
    return Anchor(seq, digest, "audit_anchors", at)


def parse_anchor(text: str) -> Anchor:
    """`SEQ:HASH`, as `Anchor.line()` prints it."""
    seq, _, digest = text.strip().partition(":")
    if not seq.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"anchor {text!r} is not SEQ:HASH (e.g. 1200:<64 hex digits>)")
    return Anchor(int(seq), digest)


def stored_anchors(conn: Connection) -> list[Anchor]:
    """The head row (an anchor the appenders keep current), then the anchors table's, oldest
    first: a verification names the newest anchor it passed, preferring a dated one."""
    head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
    found = []
    if head is not None and head.seq > 0:
        found.append(Anchor(int(head.seq), str(head.hash), HEAD_ROW))
    rows = conn.execute(select(audit_anchors).order_by(audit_anchors.c.seq)).all()
    found += [Anchor(r.seq, r.hash, f"the anchor of {r.at:%Y-%m-%d %H:%M} UTC", r.at) for r in rows]
    return found


# ---------------------------------------------------------------- reading


def _selected() -> Any:
    # `at` read as stored (SQLite: the canonical text itself), not parsed: hashing then
    # covers the very bytes on disk, and 1M rows skip a million datetime parses.
    return [type_coerce(audit_events.c.at, Text) if c.name == "at" else c
            for c in audit_events.columns]  # fmt: skip


def records(
    conn: Connection,
    *,
    since: datetime | None = None,
    patient_id: str | None = None,
    batch: int = 10_000,
) -> Iterator[AuditRecord]:
    """Stream records in seq order, `batch` rows at a time (a server-side cursor on
    PostgreSQL), so a million records take bounded memory."""
    query = select(*_selected()).order_by(audit_events.c.seq)
    if since is not None:
        query = query.where(audit_events.c.at >= since)
    if patient_id is not None:
        query = query.where(audit_events.c.patient_id == patient_id)
    result = conn.execution_options(yield_per=batch).execute(query)
    for row in result:
        yield AuditRecord(row[0], _at_text(row[1]), *row[2:])


# ---------------------------------------------------------------- guards


def _sqlite_guards(table: str) -> list[str]:
    refuse = f"SELECT RAISE(ABORT, 'wardwatch: {table} is append-only')"
    if table == "audit_head":
        return [
            f"CREATE TRIGGER {table}_forward BEFORE UPDATE ON {table} "
            f"WHEN NEW.seq < OLD.seq BEGIN {refuse}; END",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} BEGIN {refuse}; END",
        ]
    return [f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} BEGIN {refuse}; END"
            for op in ("UPDATE", "DELETE")]  # fmt: skip


_PG_FUNCTIONS = [
    """CREATE OR REPLACE FUNCTION wardwatch_audit_refuse() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = 'wardwatch: ' || TG_TABLE_NAME || ' is append-only (' || TG_OP || ' refused)';
    END $$""",
    """CREATE OR REPLACE FUNCTION wardwatch_audit_head_forward() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN
        IF NEW.seq < OLD.seq THEN
            RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                MESSAGE = 'wardwatch: the audit head never moves backwards';
        END IF;
        RETURN NEW;
    END $$""",
]


def _postgres_guards(table: str) -> list[str]:
    fire = "FOR EACH ROW EXECUTE FUNCTION"
    truncate = (f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION wardwatch_audit_refuse()")  # fmt: skip
    if table == "audit_head":
        return [f"CREATE TRIGGER {table}_forward BEFORE UPDATE ON {table} "
                f"{fire} wardwatch_audit_head_forward()",
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                f"{fire} wardwatch_audit_refuse()", truncate]  # fmt: skip
    return [f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            f"{fire} wardwatch_audit_refuse()", truncate]  # fmt: skip


def _guard_statements(dialect: str, table: str) -> list[str]:
    if dialect == "postgresql":
        return [*_PG_FUNCTIONS, *_postgres_guards(table)]
    if dialect == "sqlite":
        return _sqlite_guards(table)
    raise AuditError(f"no audit guards for {dialect}: use SQLite or PostgreSQL")


def _trigger_names(dialect: str, table: str) -> list[str]:
    return [
        s.split()[2] for s in _guard_statements(dialect, table) if s.startswith("CREATE TRIGGER")
    ]


def _guard(conn: Connection, table: str) -> None:
    """(Re)create one table's triggers: dropped first, so a changed definition takes effect."""
    for statement in _guard_statements(conn.dialect.name, table):
        if statement.startswith("CREATE TRIGGER"):
            on = f" ON {table}" if conn.dialect.name == "postgresql" else ""
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {statement.split()[2]}{on}")
        conn.exec_driver_sql(statement)


_ACTIVE_TRIGGERS = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'trigger'",
    "postgresql": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D' "
    "AND tgrelid IN ('audit_events'::regclass, 'audit_head'::regclass, 'audit_anchors'::regclass)",
}


def missing_guards(conn: Connection) -> list[str]:
    """The guard triggers that are absent or disabled. On a database that had them, someone
    with administrator rights removed them: what an attacker does before editing rows."""
    dialect = conn.dialect.name
    active = {str(name) for name in conn.exec_driver_sql(_ACTIVE_TRIGGERS[dialect]).scalars()}
    wanted = [name for t in GUARDED for name in _trigger_names(dialect, t.name)]
    return [name for name in wanted if name not in active]


GUARDED = (audit_events, audit_head, audit_anchors)


def install_guards(engine: Engine) -> None:
    """Make the database refuse UPDATE/DELETE/TRUNCATE of audit rows. Idempotent: safe to
    call at every start (the tables must exist: `init_db` first)."""
    with engine.begin() as conn:
        for table in GUARDED:
            _guard(conn, table.name)


def _guard_on_create(target: Table, connection: Connection, **_: Any) -> None:
    _guard(connection, target.name)


for _table in GUARDED:  # a new database is guarded from its first moment
    event.listen(_table, "after_create", _guard_on_create)
