"""`wardwatch audit ...`: verify the audit chain, anchor it, export it as FHIR AuditEvents.

Each command is itself audited (audit.verify, audit.anchor, audit.export) with the operating
system user as the actor and "cli" as the source: reading the audit trail, which names
patients, is an access like any other.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import Engine, inspect

from wardwatch.security.audit import (
    HEAD_ROW,
    Anchor,
    AuditEvent,
    make_anchor,
    missing_guards,
    parse_anchor,
    record,
)
from wardwatch.security.audit_fhir import export_ndjson
from wardwatch.security.audit_verify import Verification, verify
from wardwatch.settings import load_settings
from wardwatch.store import engine_from_settings

audit_app = typer.Typer(
    help="The tamper-evident audit trail: verify it, anchor it, export it as FHIR.",
    no_args_is_help=True,
)
console = Console()
errors = Console(stderr=True)

TAMPERED_HINT = (
    "treat the database as compromised: keep a copy of it as evidence, compare it with your "
    "backups and with the anchors kept outside the database, and tell your security officer"
)


def _fail(message: str, hint: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    errors.print(f"[yellow]what to do:[/] {hint}")
    return typer.Exit(code=2)


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        return "operator"


@contextmanager
def _database() -> Iterator[Engine]:
    """The configured database, if it holds an audit trail (never creates an empty one)."""
    settings = load_settings()
    url = settings.resolved_database_url
    missing = url.startswith("sqlite") and not Path(url.split("///", 1)[-1]).exists()
    engine = None if missing else engine_from_settings(settings)
    try:
        if engine is None or not inspect(engine).has_table("audit_events"):
            raise _fail(
                f"there is no audit trail in {url}",
                "check WARDWATCH_DATABASE_URL / WARDWATCH_HOME, or create it: `wardwatch db init`",
            )
        yield engine
    finally:
        if engine is not None:
            engine.dispose()


def _audit(
    engine: Engine,
    action: str,
    *,
    patient_id: str | None = None,
    what: str = "",
    detail: dict[str, object] | None = None,
    outcome: str = "success",
) -> None:
    item = AuditEvent(action, actor=_operator(), role="operator", patient_id=patient_id,
                      object=what, source="cli", outcome=outcome, detail=detail)  # fmt: skip
    with engine.begin() as conn:
        record(conn, item)


def _anchors(lines: list[str]) -> list[Anchor]:
    try:
        return [parse_anchor(line) for line in lines]
    except ValueError as error:
        raise _fail(
            str(error), "pass the line `wardwatch audit anchor` printed: SEQ:HASH"
        ) from None


def _report(result: Verification) -> None:
    if result.intact:
        mark = result.anchor
        anchored = f"anchored at record {mark.seq:,} ({mark.where})" if mark else "no anchor"
        console.print(
            f"[green]chain intact:[/] {result.records:,} records, head {result.last_hash}, "
            f"{anchored}"
        )
        if mark is None or mark.where == HEAD_ROW:
            console.print("keep an anchor outside the database: `wardwatch audit anchor`")
        return
    count = len(result.problems) + result.not_shown
    problems = f"{count:,} problem{'s' if count != 1 else ''}"
    errors.print(f"[bold red]chain TAMPERED:[/] {problems} in {result.records:,} records")
    for problem in result.problems:
        errors.print(f"  [red]•[/] {problem.message}")
    if result.not_shown:
        errors.print(f"  … and {result.not_shown:,} more")
    errors.print(f"[yellow]what to do:[/] {TAMPERED_HINT}")


def _warn_unguarded(names: list[str]) -> None:
    if names:
        errors.print(
            f"[bold yellow]warning:[/] the append-only triggers {', '.join(names)} are "
            "missing or disabled: someone with administrator rights removed them"
        )
        errors.print("[yellow]what to do:[/] find out who; reinstall: `wardwatch db init`")


@audit_app.command("verify")
def verify_command(
    anchor: Annotated[
        list[str] | None,
        typer.Option(help="SEQ:HASH from `wardwatch audit anchor`, kept outside the database"),
    ] = None,
) -> None:
    """Check every record of the audit chain: altered, deleted, reordered or inserted records,
    and a removed tail (against the anchors). Exit code 1 when anything was tampered with."""
    given = _anchors(anchor or [])
    with _database() as engine:
        with engine.connect() as conn:
            result = verify(conn, anchors=given)
            unguarded = missing_guards(conn)
        _report(result)
        _warn_unguarded(unguarded)
        problems = len(result.problems) + result.not_shown
        detail = {"intact": result.intact, "records": result.records, "problems": problems,
                  "unguarded": unguarded}  # fmt: skip
        _audit(engine, "audit.verify", detail=detail)
    if not result.intact:
        raise typer.Exit(code=1)


@audit_app.command("anchor")
def anchor_command() -> None:
    """Record the chain's head in the database and print it: keep the line somewhere the
    database's administrators cannot write (a ticket, a signed e-mail, paper)."""
    with _database() as engine:
        _audit(engine, "audit.anchor")  # first, so the anchor covers this record too
        with engine.begin() as conn:
            mark = make_anchor(conn, _operator())
    console.print(f"anchor: [bold]{mark.line()}[/]  ({mark.at:%Y-%m-%d %H:%M:%S} UTC)")
    console.print(f"later: wardwatch audit verify --anchor {mark.line()}")


def _export(engine: Engine, fhir: Path, since: datetime | None, patient: str | None) -> int:
    """Write the file and audit the export, as an error too if the file cannot be written."""
    detail: dict[str, object] = {"since": since.isoformat() if since else None}
    where = f"file:{fhir.name}"
    try:
        with fhir.open("w", encoding="utf-8") as out, engine.connect() as conn:
            written = export_ndjson(conn, out, since=since, patient_id=patient)
    except OSError as error:
        detail["error"] = str(error)
        _audit(engine, "audit.export", patient_id=patient, what=where, detail=detail,
               outcome="error")  # fmt: skip
        raise _fail(f"cannot write {fhir}: {error}", "choose a writable path") from None
    _audit(engine, "audit.export", patient_id=patient, what=where,
           detail={**detail, "records": written})  # fmt: skip
    return written


@audit_app.command("export")
def export_command(
    fhir: Annotated[Path, typer.Option(help="write FHIR R4 AuditEvents here, one per line")],
    since: Annotated[
        datetime | None, typer.Option(help="only records from this UTC time (2024-03-01)")
    ] = None,
    patient: Annotated[str | None, typer.Option(help="only records about this patient")] = None,
) -> None:
    """Export the audit trail as FHIR R4 AuditEvent NDJSON, each resource validated."""
    start = since.replace(tzinfo=UTC) if since and since.tzinfo is None else since
    with _database() as engine:
        written = _export(engine, fhir, start, patient)
    console.print(f"wrote {written:,} AuditEvent resources to {fhir}")
