"""`wardwatch users …`: add, disable, enable, reset MFA, list.

For the administrator at the server's console. Secrets are shown once and never logged: the
password is typed twice (hidden) or read from standard input (`--password-stdin`, for
scripts: never put a password on the command line, where `ps` and shell history see it); the
TOTP secret, its otpauth URI and the ten recovery codes are printed once, and the QR code is
written as an SVG only the owner can read — delete it once the phone has scanned it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from wardwatch.security import mfa, roles, sessions, tokens, users
from wardwatch.security.audit_actions import cli_operator
from wardwatch.security.passwords import WeakPassword
from wardwatch.settings import load_settings
from wardwatch.store import engine_from_settings, init_db

users_app = typer.Typer(help="Manage who may sign in: users, roles and MFA.", no_args_is_help=True)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

UserArg = Annotated[str, typer.Argument(help="the user id, e.g. dr.lee")]
QrOption = Annotated[
    Path | None, typer.Option("--qr", help="where to write the TOTP QR code (SVG)")
]


def _engine() -> tuple[Engine, Path]:
    settings = load_settings()
    engine = engine_from_settings(settings)
    init_db(engine)
    return engine, settings.home


def _operator() -> str:
    """Who ran the command, for the audit trail: the operating-system user."""
    return cli_operator()


def _now() -> datetime:
    return datetime.now(UTC)


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


def _read_password(user_id: str, from_stdin: bool) -> str:
    if from_stdin:
        return typer.get_text_stream("stdin").readline().rstrip("\r\n")
    return typer.prompt(f"password for {user_id}", hide_input=True, confirmation_prompt=True)


def _write_qr(enrolment: mfa.Enrolment, path: Path) -> Path:
    """Write the QR code readable by its owner only (it is the TOTP secret, as a picture)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(enrolment.qr_svg)
    return path


def _print_enrolment(enrolment: mfa.Enrolment, qr_path: Path) -> None:
    console.print(f"\n[bold]MFA enrolment for {enrolment.user_id}[/] (shown once)")
    console.print(f"  TOTP secret:  {enrolment.secret}")
    console.print(f"  otpauth URI:  {enrolment.uri}")
    console.print(f"  QR code:      {qr_path}  (scan it, then delete the file)")
    console.print("\n[bold]Recovery codes[/] (each works once; keep them apart from the phone):")
    for code in enrolment.recovery_codes:
        console.print(f"  {code}")


def _qr_path(home: Path, user_id: str, chosen: Path | None) -> Path:
    return chosen or home / "mfa" / f"{user_id}-totp.svg"


@users_app.command("add")
def add(
    user_id: UserArg,
    role: Annotated[str, typer.Option(help=f"one of {', '.join(sorted(roles.HUMAN_ROLES))}")],
    display_name: Annotated[str, typer.Option(help="the name shown on pages")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
    qr: QrOption = None,
) -> None:
    """Add a user with a password, and enrol them in MFA (TOTP + recovery codes)."""
    engine, home = _engine()
    password = _read_password(user_id, password_stdin)
    try:
        with engine.begin() as conn:
            user = users.add_user(conn, user_id, role, password, at=_now(), by=_operator(),
                                  display_name=display_name)  # fmt: skip
            enrolment = mfa.enrol(conn, user.user_id, at=_now(), by=_operator())
    except WeakPassword as error:
        raise _fail(f"password {error}") from error
    except (ValueError, LookupError) as error:
        raise _fail(str(error)) from error
    console.print(f"added [bold]{user.user_id}[/] ({user.role})")
    _print_enrolment(enrolment, _write_qr(enrolment, _qr_path(home, user.user_id, qr)))


@users_app.command("disable")
def disable(user_id: UserArg) -> None:
    """Stop a user signing in, end their sessions and revoke their API tokens."""
    engine, _ = _engine()
    at, by = _now(), _operator()
    try:
        with engine.begin() as conn:
            user = users.disable_user(conn, user_id, at=at, by=by)
            ended = sessions.revoke_all(conn, user.user_id, at=at, reason="user_disabled", by=by)
            revoked = tokens.revoke_tokens_of(conn, user.user_id, at=at, by=by)
    except LookupError as error:
        raise _fail(str(error)) from error
    console.print(f"disabled {user.user_id}: {ended} session(s) ended, {revoked} token(s) revoked")


@users_app.command("enable")
def enable(user_id: UserArg) -> None:
    """Let a disabled or locked-out user sign in again."""
    engine, _ = _engine()
    try:
        with engine.begin() as conn:
            user = users.enable_user(conn, user_id, at=_now(), by=_operator())
    except LookupError as error:
        raise _fail(str(error)) from error
    console.print(f"enabled {user.user_id} (lockout cleared)")


@users_app.command("reset-mfa")
def reset_mfa(user_id: UserArg, qr: QrOption = None) -> None:
    """A lost phone: new TOTP secret and recovery codes; the old ones and all sessions end."""
    engine, home = _engine()
    at, by = _now(), _operator()
    try:
        with engine.begin() as conn:
            enrolment = mfa.reset_mfa(conn, user_id, at=at, by=by)
            ended = sessions.revoke_all(conn, enrolment.user_id, at=at, reason="mfa_reset", by=by)
    except LookupError as error:
        raise _fail(str(error)) from error
    console.print(f"MFA reset for {enrolment.user_id}: {ended} session(s) ended")
    _print_enrolment(enrolment, _write_qr(enrolment, _qr_path(home, enrolment.user_id, qr)))


def _status(user: users.User, now: datetime) -> str:
    if user.disabled:
        return "disabled"
    if user.locked_at(now) and user.locked_until is not None:
        return f"locked until {user.locked_until:%H:%M} UTC"
    return "active"


@users_app.command("list")
def list_users() -> None:
    """Every user: role, MFA, whether disabled or locked, last sign-in."""
    engine, _ = _engine()
    with engine.connect() as conn:
        everyone = users.list_users(conn)
    now = _now()
    table = Table("user", "name", "role", "MFA", "status", "last sign-in")
    for user in everyone:
        status = _status(user, now)
        last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
        mfa_state = "yes" if user.mfa_enrolled else "[red]no[/]"
        table.add_row(user.user_id, user.display_name, user.role, mfa_state, status, last)
    console.print(table if everyone else "no users yet: add one with `wardwatch users add`")
