"""`wardwatch export --deidentify` and `wardwatch consent set|show`.

Registered by `cli.py` (`app.command("export")(export_command)`,
`app.add_typer(consent_app, name="consent")`); kept here so the privacy commands sit with the
code they drive. There is no identified export: `--deidentify` must be given, so whoever
runs the command has said, in the command itself, what kind of data leaves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine, inspect

from wardwatch.security import consent as consents
from wardwatch.security.audit_actions import cli_operator
from wardwatch.security.deidentify import SALT_ENV, OutputExists, SaltError, load_salt
from wardwatch.settings import load_settings
from wardwatch.store import engine_from_settings, init_db

console = Console()
errors = Console(stderr=True)

consent_app = typer.Typer(
    help="Record and show a patient's consent to AI scoring and to use in training.",
    no_args_is_help=True,
)


class ExportFormat(StrEnum):
    psv = "psv"
    parquet = "parquet"
    csv = "csv"


def _fail(message: str, hint: str = "") -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    if hint:
        errors.print(f"[yellow]what to do:[/] {hint}")
    return typer.Exit(code=2)


def _engine() -> Engine:
    """The configured database, with every table (consent's included) created if missing."""
    engine = engine_from_settings(load_settings())
    init_db(engine)
    return engine


def _as_utc(moment: datetime | None) -> datetime | None:
    """A time typed on the command line: UTC unless it says otherwise."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def export_command(
    out: Annotated[
        Path, typer.Argument(help="a new directory (psv) or file (parquet, csv) to write")
    ],
    deidentify: Annotated[
        bool,
        typer.Option(
            "--deidentify",
            help="pseudonymise ids, drop dates and direct identifiers (required: there is "
            "no identified export)",
        ),
    ] = False,
    fmt: Annotated[
        ExportFormat, typer.Option("--format", help="psv: one PhysioNet file per stay")
    ] = ExportFormat.psv,
    salt_file: Annotated[
        Path | None, typer.Option(help=f"the secret salt (default: ${SALT_ENV})")
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(help="only stays admitted at or after (UTC)")
    ] = None,
) -> None:
    """Export the stored hourly records, de-identified, for data scientists.

    HIPAA Safe Harbor style: patient and stay ids become keyed pseudonyms (same salt, same
    pseudonyms), times become hours since admission (no dates), ages over 89 become 90, free
    text is never exported. Patients who opted out of use in training are left out. A
    DEIDENTIFICATION.json manifest says, column by column, what was kept and why.
    """
    from wardwatch.security.deidentify import export_deidentified

    if not deidentify:
        raise _fail("only de-identified exports exist", "add --deidentify")
    try:
        salt = load_salt(salt_file)
    except SaltError as error:
        raise _fail(str(error)) from None
    engine = _engine()
    try:
        with engine.begin() as conn:  # begin: the export's audit record must commit
            done = export_deidentified(conn, out, salt=salt, fmt=fmt.value, since=_as_utc(since),
                                       by=cli_operator(), source="cli")  # fmt: skip
    except OutputExists as error:
        raise _fail(str(error)) from None
    console.print(
        f"exported {done.stays:,} stays of {done.patients:,} patients ({done.rows:,} hourly "
        f"rows) to {done.out}, de-identified"
    )
    if done.excluded_stays:
        console.print(f"left out {done.excluded_stays:,} stays: patient opted out of training")


@consent_app.command("set")
def consent_set(
    patient: Annotated[str, typer.Argument(help="the patient id (MRN)")],
    by: Annotated[str, typer.Option(help="who records the decision (user id)")],
    reason: Annotated[str, typer.Option(help="why, in words (e.g. 'patient request at bedside')")],
    scoring: Annotated[
        bool | None, typer.Option("--scoring/--no-scoring", help="allow AI scoring, or opt out")
    ] = None,
    training: Annotated[
        bool | None,
        typer.Option("--training/--no-training", help="allow use in training, or opt out"),
    ] = None,
    role: Annotated[
        str | None, typer.Option(help="the recorder's role (default: their role as a user)")
    ] = None,
) -> None:
    """Record a patient's decision; what is not given stays as it was.

    Opting out of scoring does not opt out of training, nor the reverse: each is the
    patient's own choice. The decision, who recorded it and why are kept for good.
    """
    if scoring is None and training is None:
        raise _fail("nothing to record", "give --[no-]scoring and/or --[no-]training")
    engine = _engine()
    try:
        with engine.begin() as conn:
            role = role or _role_of(conn, by)
            decision = consents.set_consent(conn, patient, scoring=scoring, training=training,
                                            by=by, role=role, reason=reason,
                                            at=datetime.now(UTC), source="cli")  # fmt: skip
    except consents.PatientNotFound as error:
        raise _fail(str(error), "check the id: consent is recorded for known patients") from None
    except ValueError as error:
        raise _fail(str(error)) from None
    console.print(f"{patient}: {decision.state.describe()} (recorded by {by}, {role})")
    if note := _unchanged(decision, scoring, training):
        console.print(f"[yellow]note:[/] {note}")


def _role_of(conn: Connection, user_id: str) -> str:
    """The recorder's role from the user registry; `--role` when they are not a user."""
    from wardwatch.security.users import get_user

    user = get_user(conn, user_id) if inspect(conn).has_table("users") else None
    if user is None:
        raise _fail(f"{user_id!r} is not a wardwatch user", "pass --role, or add the user")
    return user.role


def _unchanged(decision: consents.ConsentDecision, scoring: bool | None,
               training: bool | None) -> str:  # fmt: skip
    """Say which choice was left as it was, so nobody assumes one opt-out implies the other."""
    if scoring is None:
        name, allowed, flag = "AI scoring", decision.scoring, "--no-scoring"
    elif training is None:
        name, allowed, flag = "use in training", decision.training, "--no-training"
    else:
        return ""
    hint = f"; {flag} opts out of it too" if allowed else ""
    return f"{name} unchanged: {_word(allowed)}{hint}"


@consent_app.command("show")
def consent_show(patient: Annotated[str, typer.Argument(help="the patient id (MRN)")]) -> None:
    """Show a patient's current choices and every decision recorded, oldest first."""
    with _engine().connect() as conn:
        try:
            found = consents.consent_of(conn, patient)
        except consents.PatientNotFound as error:
            raise _fail(str(error)) from None
    console.print(f"{patient}: {found.state.describe()}")
    if not found.history:
        console.print("no decision recorded in wardwatch")
        return
    table = Table("when (UTC)", "scoring", "training", "recorded by", "role", "reason")
    for d in found.history:
        table.add_row(f"{d.at:%Y-%m-%d %H:%M}", _word(d.scoring), _word(d.training),
                      d.recorded_by, d.role, d.reason)  # fmt: skip
    console.print(table)


def _word(allowed: bool) -> str:
    return "allowed" if allowed else "opted out"
