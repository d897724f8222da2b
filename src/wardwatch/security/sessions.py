"""Server-side sessions, their cookie, and the CSRF token that goes with each.

A session is a random token (`secrets.token_urlsafe(32)`, 256 bits) in a cookie; the database
keeps only its SHA-256, so a copy of the database (a backup, a replica) signs nobody in.
Because the server holds the session, it can end one at any time: sign out, "sign out
everywhere" (`revoke_all`), a disabled user (refused at the next request), an expired one.

Two clocks end a session (`SessionPolicy`):
    idle      15 minutes without a request that a person made: a ward computer left signed
              in is the usual way someone else acts under your name
    lifetime  12 hours after sign-in, however active: one shift, then sign in again
Automatic requests (the worklist polls its rows every few seconds) must pass `touch=False`,
or a screen left open would never go idle. `last_seen_at` is written at most once per
`TOUCH_EVERY` so a busy page does not write on every request.

The cookie (`COOKIE`, `cookie_kwargs`):
    __Host- prefix  the browser only accepts it Secure, for Path=/ and without Domain, so a
                    sibling subdomain cannot set or overwrite it
    Secure          HTTPS only (browsers treat http://localhost as secure, so local demos work;
                    a test client must use an https:// base URL)
    HttpOnly        page scripts cannot read it, so an injected script cannot steal it
    SameSite=Lax    not sent with cross-site POSTs, fetches or frames; sent on a top-level
                    GET link, so a link from the EHR or a CDS Hooks card opens the patient
                    page signed in. Strict would refuse that link and buys little more,
                    because no GET changes anything and every form carries a CSRF token.
    no Max-Age      a browser session cookie; the server enforces both clocks anyway

CSRF: each session has one token, HMAC-SHA256 keyed by the session token itself. A page puts
it in every form (and htmx in a header); the server recomputes it from the cookie and compares
in constant time. Nothing extra is stored, and an attacker who cannot read the cookie cannot
compute it. Errors: `SessionInvalid` and `CsrfMismatch` are PermissionErrors.

CSRF before a session (`SIGNIN_COOKIE`): the sign-in form itself must be protected too, or
another site could post an attacker's credentials and sign a clinician's browser in as the
attacker, whose account would then receive what the clinician records. There is no session
to derive a token from yet, so the sign-in page sets a random token in a cookie and in a
hidden field (double submit), and the POST must carry both, equal (constant time). The
cookie is __Host- (no sibling subdomain can plant one), HttpOnly, SameSite=Strict (never sent
with another site's request) and short-lived (`SIGNIN_MAX_AGE`); signing in deletes it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Connection, ForeignKey, Index, String, Table, insert, select, update

from wardwatch.alerts.records import utc_time
from wardwatch.alerts.workflow import Actor
from wardwatch.security import audit
from wardwatch.security.users import normalize_user_id, role_of, users
from wardwatch.store.schema import UtcDateTime, metadata

COOKIE = "__Host-wardwatch_session"
COOKIE_SAMESITE = "lax"
COOKIE_SECURE = True
COOKIE_HTTPONLY = True
CSRF_FORM_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
TOUCH_EVERY = timedelta(seconds=30)
SIGNIN_COOKIE = "__Host-wardwatch_signin"
SIGNIN_MAX_AGE = 30 * 60  # seconds: a sign-in page older than this is reloaded, not trusted
_SIGNIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # what secrets.token_urlsafe(32) makes
_CSRF_LABEL = b"wardwatch csrf v1"

sessions = Table(
    "user_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 hex of the cookie value
    Column("user_id", String(64), ForeignKey("users.user_id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),  # the absolute lifetime
    Column("revoked_at", UtcDateTime),
    Column("revoked_reason", String(32)),  # signed_out | signed_out_everywhere | ...
    Column("source", String(200), nullable=False, default=""),  # IP address or "cli"
    Index("ix_user_sessions_user", "user_id"),
)


class SessionInvalid(PermissionError):
    """No usable session; `reason` says why: unknown, revoked, idle, lifetime, disabled."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"session is not valid ({reason}): sign in again")
        self.reason = reason


class CsrfMismatch(PermissionError):
    """The form's CSRF token is missing or not this session's."""


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle: timedelta = timedelta(minutes=15)
    lifetime: timedelta = timedelta(hours=12)


DEFAULT_POLICY = SessionPolicy()


@dataclass(frozen=True, slots=True)
class Session:
    """A live session: who, since when, until when. `session_id` is the stored hash."""

    session_id: str
    user_id: str
    role: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    source: str

    @property
    def actor(self) -> Actor:
        return Actor(self.user_id, self.role)


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just created: `token` goes in the cookie and is never stored."""

    token: str
    session: Session

    @property
    def csrf_token(self) -> str:
        return csrf_token(self.token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create_session(
    conn: Connection,
    user_id: str,
    *,
    at: datetime,
    source: str = "",
    policy: SessionPolicy = DEFAULT_POLICY,
) -> NewSession:
    """Start a session for `user_id` (who must already have signed in: see `login`)."""
    at = utc_time(at)
    token = secrets.token_urlsafe(32)
    conn.execute(
        insert(sessions).values(
            token_hash=hash_token(token), user_id=normalize_user_id(user_id), created_at=at,
            last_seen_at=at, expires_at=at + policy.lifetime, source=source[:200],
        )
    )  # fmt: skip
    return NewSession(token, resume(conn, token, at=at, policy=policy, touch=False))


def _row(conn: Connection, token_hash: str) -> Any:
    query = (
        select(sessions, users.c.role, users.c.disabled)
        .join(users, users.c.user_id == sessions.c.user_id)
        .where(sessions.c.token_hash == token_hash)
    )
    return conn.execute(query).first()


def _why_invalid(row: Any, at: datetime, policy: SessionPolicy) -> str | None:
    if row is None:
        return "unknown"
    if row.revoked_at is not None:
        return "revoked"
    if row.disabled:
        return "disabled"
    if at >= row.expires_at:
        return "lifetime"
    if at - row.last_seen_at >= policy.idle:
        return "idle"
    return None


def resume(
    conn: Connection,
    token: str | None,
    *,
    at: datetime,
    policy: SessionPolicy = DEFAULT_POLICY,
    touch: bool = True,
) -> Session:
    """The session behind a cookie value, or SessionInvalid (with the reason).

    `touch=True` counts this request as activity (resets the idle clock); pass False for
    automatic requests such as polling.
    """
    at = utc_time(at)
    row = _row(conn, hash_token(token or ""))
    if reason := _why_invalid(row, at, policy):
        raise SessionInvalid(reason)  # nothing written: the caller's transaction rolls back
    last_seen = row.last_seen_at
    if touch and at - last_seen >= TOUCH_EVERY:
        conn.execute(
            update(sessions).where(sessions.c.token_hash == row.token_hash)
            .values(last_seen_at=at)
        )  # fmt: skip
        last_seen = at
    return Session(row.token_hash, row.user_id, row.role, row.created_at, last_seen,
                   row.expires_at, row.source)  # fmt: skip


def _revoke_where(conn: Connection, condition: Any, at: datetime, reason: str) -> int:
    result = conn.execute(
        update(sessions).where(condition, sessions.c.revoked_at.is_(None))
        .values(revoked_at=utc_time(at), revoked_reason=reason)
    )  # fmt: skip
    return result.rowcount


def revoke(conn: Connection, token: str, *, at: datetime, reason: str = "signed_out") -> bool:
    """End the session behind a cookie value (sign out). True if one was live."""
    return _revoke_where(conn, sessions.c.token_hash == hash_token(token), at, reason) == 1


def revoke_by_id(
    conn: Connection, session_id: str, *, at: datetime, reason: str = "revoked"
) -> bool:
    """End one session by its stored id (from `active_sessions`: "sign out that computer")."""
    return _revoke_where(conn, sessions.c.token_hash == session_id, at, reason) == 1


def revoke_all(
    conn: Connection,
    user_id: str,
    *,
    at: datetime,
    reason: str = "signed_out_everywhere",
    by: str | None = None,
    source: str = "cli",
) -> int:
    """End every session of a user ("sign out everywhere"); returns how many were live.

    `by` is who did it: the user themself (the default) or an administrator.
    """
    user_id = normalize_user_id(user_id)
    count = _revoke_where(conn, sessions.c.user_id == user_id, at, reason)
    by = user_id if by is None else by
    audit.record(conn, audit.AuditEvent(
        "session.revoke", actor=by[:64], role=role_of(conn, by), object=f"user/{user_id}",
        source=source[:64], detail={"count": count, "reason": reason},
    ))  # fmt: skip
    return count


def active_sessions(
    conn: Connection, user_id: str, *, at: datetime, policy: SessionPolicy = DEFAULT_POLICY
) -> list[Session]:
    """The user's sessions that would still be accepted at `at`, newest first."""
    at = utc_time(at)
    query = (
        select(sessions, users.c.role, users.c.disabled)
        .join(users, users.c.user_id == sessions.c.user_id)
        .where(sessions.c.user_id == normalize_user_id(user_id), sessions.c.revoked_at.is_(None))
        .order_by(sessions.c.created_at.desc())
    )
    return [
        Session(r.token_hash, r.user_id, r.role, r.created_at, r.last_seen_at, r.expires_at,
                r.source)
        for r in conn.execute(query) if _why_invalid(r, at, policy) is None
    ]  # fmt: skip


# ---------------------------------------------------------------- CSRF


def csrf_token(session_token: str) -> str:
    """The CSRF token of the session behind `session_token` (see the module docstring)."""
    return hmac.new(session_token.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_ok(session_token: str, submitted: str | None) -> bool:
    """Whether `submitted` is this session's CSRF token (constant-time comparison)."""
    if not submitted or not session_token:
        return False
    return hmac.compare_digest(csrf_token(session_token).encode(), submitted.encode("utf-8"))


def require_csrf(session_token: str, submitted: str | None) -> None:
    """Raise CsrfMismatch unless `submitted` is this session's CSRF token."""
    if not csrf_ok(session_token, submitted):
        raise CsrfMismatch("the form's security token does not match: reload the page and retry")


def signin_token(cookie: str | None) -> str:
    """The sign-in form's token: the browser's own (`cookie`) if it has a well-formed one, so
    two sign-in tabs both work, else a new random one (256 bits)."""
    if cookie and _SIGNIN_TOKEN.fullmatch(cookie):
        return cookie
    return secrets.token_urlsafe(32)


def signin_token_ok(cookie: str | None, submitted: str | None) -> bool:
    """Whether the sign-in form's field matches its cookie (constant-time comparison)."""
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode("utf-8"), submitted.encode("utf-8"))


# ---------------------------------------------------------------- the cookie


def cookie_kwargs(token: str) -> dict[str, Any]:
    """Keyword arguments for Starlette's `response.set_cookie` (see the module docstring)."""
    return {
        "key": COOKIE,
        "value": token,
        "path": "/",
        "secure": COOKIE_SECURE,
        "httponly": COOKIE_HTTPONLY,
        "samesite": COOKIE_SAMESITE,
    }


def signin_cookie_kwargs(token: str) -> dict[str, Any]:
    """`response.set_cookie` arguments for the sign-in form's token (module docstring)."""
    return {"key": SIGNIN_COOKIE, "value": token, "path": "/", "max_age": SIGNIN_MAX_AGE,
            "secure": True, "httponly": True, "samesite": "strict"}  # fmt: skip


def delete_signin_cookie_kwargs() -> dict[str, Any]:
    return {"key": SIGNIN_COOKIE, "path": "/", "secure": True, "httponly": True,
            "samesite": "strict"}  # fmt: skip


def delete_cookie_kwargs() -> dict[str, Any]:
    """Keyword arguments for `response.delete_cookie` (same attributes, or browsers ignore it)."""
    return {"key": COOKIE, "path": "/", "secure": COOKIE_SECURE, "httponly": COOKIE_HTTPONLY,
            "samesite": COOKIE_SAMESITE}  # fmt: skip
