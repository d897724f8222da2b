"""`wardwatch deployment ...`: silent mode on and off, at the server's console."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from wardwatch.alerts import silent
from wardwatch.alerts.workflow import NotPermitted
from wardwatch.security import users
from wardwatch.settings import load_settings
from wardwatch.store import engine_from_settings, init_db

deployment_app = typer.Typer(
    help="Silent mode: run the whole pipeline on live patients without showing clinicians "
    "anything, until governance takes the deployment live.",
    no_args_is_help=True,
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)
By = Annotated[str, typer.Option("--by", help="the registered user acting (their role is checked)")]
Reason = Annotated[str, typer.Option(help="why: written to the audit trail")]


def _change(on: bool, by: str, reason: str) -> silent.Mode:
    engine = engine_from_settings(load_settings())
    init_db(engine)
    with engine.begin() as conn:
        user = users.get_user(conn, by)
        if user is None or user.disabled:
            errors.print(f"[bold red]error:[/] {escape(by)!r} is not an enabled user")
            raise typer.Exit(2)
        try:
            return silent.set_silent(conn, on, by=user.user_id, role=user.role, reason=reason)
        except (NotPermitted, ValueError) as error:
            errors.print(f"[bold red]error:[/] {escape(str(error))}")
            raise typer.Exit(2) from None


@deployment_app.command("silent")
def go_silent(by: By, reason: Reason) -> None:
    """Enter silent mode: scores, the alert policy and would-be alerts go on, stored for
    `wardwatch validate-site`; clinicians see no risk, no alert, no CDS card."""
    _change(True, by, reason)
    console.print("silent mode: nothing reaches clinicians until governance takes it live")


@deployment_app.command("live")
def go_live(by: By, reason: Reason) -> None:
    """Leave silent mode (governance only): risks and alerts are shown from the next ward
    round; would-be alerts of the silent period are closed, never shown."""
    _change(False, by, reason)
    console.print("live: clinicians see risks and alerts from the next ward round")


@deployment_app.command("status")
def status() -> None:
    """Silent or live, since when, by whom, why."""
    engine = engine_from_settings(load_settings())
    init_db(engine)
    with engine.connect() as conn:
        now = silent.mode(conn)
    state = "SILENT" if now.silent else "live"
    since = f" since {now.since:%Y-%m-%d %H:%M} UTC by {now.changed_by}" if now.since else ""
    console.print(f"{state}{since}: {escape(now.reason)}")
