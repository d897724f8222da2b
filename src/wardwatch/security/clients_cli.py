"""`wardwatch tokens …` and `wardwatch cds-clients …`: the machine clients an administrator lets in.

Two kinds of machine client call the web app. An interface engine posting results, or an EHR
reading risk assessments, sends an API token (`security.tokens`) limited by SMART scopes;
an EHR calling the CDS Hooks service sends a JWT it signed itself, checked against the public
keys registered here (`security.cds_clients`). Both are changes to who may see patient data,
so both are audited, with the operating-system user as the actor.

A token is printed once, on its own line, and never stored: only its hash is. Registered in
`cli.py` (`_register_security`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine

from wardwatch.security import cds_clients, tokens
from wardwatch.security.audit_actions import cli_operator
from wardwatch.settings import load_settings
from wardwatch.store import engine_from_settings, init_db

tokens_app = typer.Typer(
    help="API tokens for machine clients (interface engines, EHRs), limited by SMART scopes.",
    no_args_is_help=True,
)
cds_clients_app = typer.Typer(
    help="EHRs trusted to call the CDS Hooks service with JWTs signed by their own keys.",
    no_args_is_help=True,
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)
SERVICE_PATH = "/cds-services/wardwatch-sepsis"  # the one CDS service (web.cds_hooks.SERVICE_ID)


@contextmanager
def _engine() -> Iterator[Engine]:
    engine = engine_from_settings(load_settings())
    init_db(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


def _fail(message: str, hint: str = "") -> typer.Exit:
    errors.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        errors.print(f"[yellow]what to do:[/] {escape(hint)}")
    return typer.Exit(code=2)


# ---------------------------------------------------------------- tokens


def _scope_list(values: list[str]) -> list[str]:
    """`--scope` values, each possibly several scopes separated by spaces (as OAuth writes them)."""
    return [scope for value in values for scope in value.split()]


@tokens_app.command("issue")
def issue(
    client: Annotated[str, typer.Option(help="who will use it, e.g. lab-interface, epic-prod")],
    scope: Annotated[
        list[str],
        typer.Option(
            metavar="SCOPE",
            help="a SMART scope, e.g. system/Observation.c or system/RiskAssessment.rs; "
            "repeat for more",
        ),
    ],
    user: Annotated[
        str | None,
        typer.Option(help="the user a user/ scope acts for; the token is bounded by their role"),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="days until it expires")] = 90,
) -> None:
    """Issue an API token and print it once.

    `system/` scopes let the client act as itself (an interface engine, an EHR's back end);
    `user/` scopes act for the user given with `--user` and never beyond that user's role.
    Only the token's hash is stored: copy the token into the client's secret store now. The
    client sends it in the header `Authorization: Bearer <token>`.
    """
    try:
        with _engine() as engine, engine.begin() as conn:
            issued = tokens.issue_token(
                conn, client=client, scopes=_scope_list(scope), at=_now(), by=cli_operator(),
                user_id=user, lifetime=timedelta(days=days),
            )  # fmt: skip
    except tokens.InvalidScope as error:
        raise _fail(str(error), "scopes look like system/Observation.c (see --help)") from error
    except LookupError as error:
        raise _fail(str(error), "`wardwatch users list` shows who exists") from error
    _print_issued(issued)


def _print_issued(issued: tokens.IssuedToken) -> None:
    record = issued.record
    console.print(f"issued [bold]{record.token_id}[/] to {escape(record.client)}")
    console.print(f"  scopes:   {' '.join(str(s) for s in record.scopes)}")
    console.print(f"  acts for: {f'user {record.user_id}' if record.user_id else 'the client'}")
    console.print(f"  expires:  {record.expires_at:%Y-%m-%d %H:%M} UTC")
    console.print("\n[bold]The token[/], shown this once and stored nowhere (copy it now):\n")
    typer.echo(issued.token)  # plain, on its own line: no markup, no wrapping
    console.print(f"\nrevoke it with `wardwatch tokens revoke {record.token_id}`")


def _token_status(token: tokens.ApiToken, now: datetime) -> str:
    if token.revoked_at is not None:
        return f"revoked {token.revoked_at:%Y-%m-%d}"
    if token.expires_at <= now:
        return "expired"
    return "live"


@tokens_app.command("list")
def list_tokens() -> None:
    """Every token (never the token itself): client, scopes, expiry, last use, status."""
    with _engine() as engine, engine.connect() as conn:
        everything = tokens.list_tokens(conn)
    if not everything:
        console.print("no API tokens yet: issue one with `wardwatch tokens issue`")
        return
    table = Table("id", "client", "acts for", "scopes", "expires", "last used", "status")
    now = _now()
    for token in everything:
        used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
        table.add_row(token.token_id, token.client, token.user_id or "(client)",
                      " ".join(str(s) for s in token.scopes),
                      f"{token.expires_at:%Y-%m-%d}", used, _token_status(token, now))  # fmt: skip
    console.print(table)


@tokens_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="the token's id, e.g. tok_3f9a0c1d2e4b")],
) -> None:
    """Revoke a token at once: its next request gets 401."""
    with _engine() as engine, engine.begin() as conn:
        # committed even when nothing matched: a revocation of an unknown id is worth auditing
        revoked = tokens.revoke_token(conn, token_id, at=_now(), by=cli_operator())
    if not revoked:
        raise _fail(f"no live token {token_id!r}", "`wardwatch tokens list` shows the ids")
    console.print(f"revoked {token_id}")


# ---------------------------------------------------------------- CDS Hooks clients


def _read_jwks(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise _fail(f"cannot read {path}: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _fail(f"{path} is not JSON: {error}", "give the EHR's JWKS file") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise _fail(f"{path} is not a JSON Web Key Set", 'it must look like {"keys": [...]}')
    if any(isinstance(key, dict) and "d" in key for key in data["keys"]):
        # A private key must never leave the EHR: whoever holds it can sign as the EHR.
        raise _fail(f"{path} holds private keys", "ask the EHR team for the public JWKS only")
    return data


@cds_clients_app.command("add")
def add(
    iss: Annotated[str, typer.Argument(help="the client's issuer, exactly as in its JWTs' iss")],
    name: Annotated[str, typer.Option(help="a name people recognise, e.g. 'Epic production'")],
    jwks: Annotated[Path, typer.Option(help="the client's public keys, a JWKS (JSON) file")],
) -> None:
    """Trust an EHR to call the CDS Hooks service with JWTs signed by the keys in a JWKS.

    Each JWT must carry iss (this issuer), aud (the URL of the service it calls), iat, exp
    (at most 5 minutes after iat) and a unique jti, signed ES384 or RS384 (or their 256/512
    siblings) with one of these keys; a JWT that names no kid is accepted only when there
    is a single key.
    """
    key_set = _read_jwks(jwks)
    try:
        with _engine() as engine, engine.begin() as conn:
            cds_clients.register_client(conn, iss, name, key_set, at=_now(), by=cli_operator())
    except ValueError as error:
        raise _fail(str(error), "`wardwatch cds-clients list` shows who is registered") from error
    kids = ", ".join(str(key.get("kid", "(no kid)")) for key in key_set["keys"])
    console.print(f"registered [bold]{escape(iss)}[/] ({escape(name)}), keys: {escape(kids)}")
    console.print(f"its JWTs' aud must be this server's URL + {SERVICE_PATH}")


@cds_clients_app.command("list")
def list_cds_clients() -> None:
    """Every registered CDS client: issuer, name, keys, whether enabled, who added it."""
    with _engine() as engine, engine.connect() as conn:
        everyone = cds_clients.list_clients(conn)
    if not everyone:
        console.print("no CDS clients yet: register one with `wardwatch cds-clients add`")
        return
    table = Table("issuer", "name", "keys (kid)", "status", "added", "by")
    for client in everyone:
        status = "enabled" if client.enabled else "[red]disabled[/]"
        table.add_row(client.iss, client.name, ", ".join(k or "–" for k in client.key_ids),
                      status, f"{client.created_at:%Y-%m-%d}", client.created_by)  # fmt: skip
    console.print(table)


@cds_clients_app.command("disable")
def disable(
    iss: Annotated[str, typer.Argument(help="the client's issuer, as `cds-clients list` shows")],
) -> None:
    """Stop trusting a CDS client: its JWTs get 401 from now on (the record is kept)."""
    try:
        with _engine() as engine, engine.begin() as conn:
            changed = cds_clients.disable_client(conn, iss, at=_now(), by=cli_operator())
    except LookupError as error:
        raise _fail(str(error), "`wardwatch cds-clients list` shows the issuers") from error
    console.print(escape(f"disabled {iss}" if changed else f"{iss} was already disabled"))
