"""Who is asking: a signed-in person (session cookie) or a machine client (bearer token).

    session   a person who signed in with password + TOTP (`security.login`); the cookie is
              `sessions.COOKIE`. Forms and htmx requests that change anything must carry the
              session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`).
              The sign-in form, sent before there is a session, carries a token of its own
              (`sessions.SIGNIN_COOKIE`, checked by the sign-in route in `pages`).
    token     an EHR, interface engine or script with an API token (`security.tokens`), in
              `Authorization: Bearer wwt_...`; allowed what its SMART scopes allow. No CSRF:
              a browser never attaches a bearer token by itself.
    CDS JWT   a registered CDS Hooks client's signed JWT (`security.cds_clients`), whose
              audience must be the service URL called; accepted only where a route says so
              (`Require(..., cds=True)`: the CDS service and its feedback).

Sessions are timed by the wall clock, never the ward clock: a replay runs the ward clock
thousands of times faster, and an idle timeout must not expire in a second of real time.

Automatic requests (the worklist's htmx refresh sends `HX-Trigger: worklist-rows`, every few
seconds) do not count as activity, so a screen left open still goes idle after 15 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Connection

from wardwatch.alerts.workflow import Actor
from wardwatch.security import cds_clients, sessions, tokens
from wardwatch.security.cds_clients import CdsClient
from wardwatch.security.sessions import CSRF_FORM_FIELD, CSRF_HEADER, Session
from wardwatch.security.tokens import ApiToken
from wardwatch.web.deps import Services, services

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
POLLING_TRIGGERS = frozenset({"worklist-rows"})  # htmx element ids that refresh by themselves
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class NotSignedIn(HTTPException):
    """401: no session or token, or one that is no longer valid (`reason` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(status_code=401, detail=reason,
                         headers={"WWW-Authenticate": 'Bearer realm="wardwatch"'})  # fmt: skip
        self.reason = reason


class CsrfRefused(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=403, detail="the form's security token is missing or "
                         "wrong: reload the page and try again")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Principal:
    """The person or client behind a request, and how they proved it."""

    actor: Actor
    source: str  # the client's address, for the audit trail
    session: Session | None = None
    session_token: str | None = None  # the cookie value: the CSRF token derives from it
    token: ApiToken | None = None
    cds_client: CdsClient | None = None

    @property
    def via(self) -> str:
        if self.cds_client is not None:
            return "cds-jwt"
        return "token" if self.token is not None else "session"

    @property
    def csrf_token(self) -> str:
        return sessions.csrf_token(self.session_token) if self.session_token else ""


def wall_clock() -> datetime:
    return datetime.now(UTC)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _token_principal(conn: Connection, value: str, source: str) -> Principal:
    try:
        token = tokens.authenticate_token(conn, value, at=wall_clock())
    except tokens.TokenInvalid as error:
        raise NotSignedIn(f"API token {error.reason}") from None
    actor = Actor(token.user_id or f"client:{token.client}", token.role or "system")
    return Principal(actor, source, token=token)


def _cds_principal(request: Request, conn: Connection, value: str, source: str) -> Principal:
    audience = str(request.url.replace(query=None, fragment=None))
    try:
        client = cds_clients.verify_client_jwt(conn, value, audience=audience, at=wall_clock())
    except cds_clients.CdsClientRefused as error:
        raise NotSignedIn(str(error)) from None
    return Principal(Actor(f"cds:{client.iss}"[:64], "system"), source, cds_client=client)


def _session_principal(request: Request, conn: Connection, source: str) -> Principal:
    cookie = request.cookies.get(sessions.COOKIE)
    if not cookie:
        raise NotSignedIn("sign in first")
    polling = request.headers.get("hx-trigger") in POLLING_TRIGGERS
    try:
        session = sessions.resume(conn, cookie, at=wall_clock(), touch=not polling)
    except sessions.SessionInvalid as error:
        raise NotSignedIn(f"session {error.reason}: sign in again") from None
    return Principal(session.actor, source, session=session, session_token=cookie)


def principal(request: Request, svc: Services = Depends(services)) -> Principal:  # noqa: B008
    """The signed-in person or the token's client; 401 when there is neither.

    Checked in a short transaction of its own, committed at once: noting a session's or a
    token's last use writes, and on SQLite a write held until the request ends would lock
    out the routes that write through transactions of their own (ingest, the CDS service).
    """
    with svc.engine.begin() as conn:
        return resolve_principal(request, conn)


def resolve_principal(request: Request, conn: Connection) -> Principal:
    """`principal`, in the caller's transaction."""
    source = client_address(request)
    value = _bearer(request)
    if value is None:
        found = _session_principal(request, conn, source)
    elif value.count(".") == 2 and not value.startswith(tokens.PREFIX):  # a JWT
        found = _cds_principal(request, conn, value, source)
    else:
        found = _token_principal(conn, value, source)
    request.state.principal = found  # the pages read it for the header and the CSRF token
    return found


def optional_principal(request: Request) -> Principal | None:
    """The principal a dependency already resolved for this request, if any."""
    return getattr(request.state, "principal", None)


async def csrf_protected(request: Request, who: Principal = Depends(principal)) -> Principal:  # noqa: B008
    """`who`, after checking the CSRF token of a state-changing request made with a session."""
    if who.session_token is None or request.method in SAFE_METHODS:
        return who
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
        value = (await request.form()).get(CSRF_FORM_FIELD)  # cached: the route reads it again
        submitted = value if isinstance(value, str) else None
    if not sessions.csrf_ok(who.session_token, submitted):
        raise CsrfRefused()
    return who
