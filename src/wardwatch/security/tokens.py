"""API tokens for machine clients, with scopes in the SMART on FHIR style.

A lab interface sending observations, an EHR reading risk assessments: neither can type a
TOTP code, so each gets a bearer token an administrator issues, limited by *scopes* and by an
expiry date, revocable at any time. Like session tokens, only the SHA-256 of a token is
stored (it is 256 random bits, so nothing is gained by a slow hash); `token_id` is a short
public handle for lists and revocation. Tokens start with `wwt_` so secret scanners can spot
one pasted into a ticket.

Scopes follow SMART App Launch v2 (`context/Resource.cruds`), v1's `.read`/`.write` accepted:

    system/Observation.c      create observations (an ingest feed)
    system/RiskAssessment.rs  read and search risk assessments (an EHR)
    user/Patient.r            read patients, as the owning user and never more than they may
    system/*.r                read every resource type

`system/` tokens act as the software on the client's behalf: their scopes are all they need.
`user/` tokens act for one user: a request must be allowed by the scope *and* by the user's
current role (`SCOPE_PERMISSIONS`), and the token dies with a disabled user. `patient/`
scopes need a SMART launch context that wardwatch does not issue, so they are refused.

Errors: `InvalidScope` is a ValueError, `TokenInvalid` a PermissionError (with `reason`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Connection, ForeignKey, String, Table, Text, insert, select, update

from wardwatch.alerts.records import utc_time
from wardwatch.security import audit, roles
from wardwatch.security.audit_actions import clipped
from wardwatch.security.users import normalize_user_id, require_user, role_of, users
from wardwatch.store.schema import UtcDateTime, metadata

PREFIX = "wwt_"
DEFAULT_LIFETIME = timedelta(days=90)
MAX_LIFETIME = timedelta(days=366)
TOUCH_EVERY = timedelta(minutes=1)
CONTEXTS = frozenset({"patient", "user", "system"})
ACTIONS = "cruds"  # create, read, update, delete, search: the order v2 requires
_V1_ACTIONS: Mapping[str, str] = {"read": "rs", "write": "cud", "*": "cruds"}
RESOURCES = frozenset(
    {"Observation", "Patient", "Encounter", "RiskAssessment", "Flag", "AuditEvent", "Bundle"}
)
_SCOPE = re.compile(r"(?P<context>[a-z]+)/(?P<resource>\*|[A-Z][A-Za-z]+)\.(?P<actions>[a-z*]+)")

# (resource, action) → the permission a user/ token's owner must hold for it.
SCOPE_PERMISSIONS: Mapping[tuple[str, str], str] = {
    **{(res, act): "patient.read" for res in ("Patient", "Encounter", "Observation",
                                               "RiskAssessment", "Flag") for act in "rs"},
    ("Observation", "c"): "ingest.write",
    ("Bundle", "c"): "ingest.write",
    ("AuditEvent", "r"): "audit.read",
    ("AuditEvent", "s"): "audit.read",
}  # fmt: skip

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(16), primary_key=True),  # public handle, e.g. tok_3f9a0c1d2e4b
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex of the token
    Column("client", String(100), nullable=False),  # who uses it: "lab-interface", "epic-prod"
    Column("user_id", String(64), ForeignKey("users.user_id")),  # owner of user/ scopes
    Column("scopes", Text, nullable=False),  # space-separated, as in OAuth
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("last_used_at", UtcDateTime),
)


class InvalidScope(ValueError):
    """A scope string that is not `context/Resource.actions`, or one wardwatch cannot grant."""


class TokenInvalid(PermissionError):
    """No usable token; `reason` is unknown, revoked, expired or disabled."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"API token is not valid ({reason})")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Scope:
    context: str  # patient | user | system
    resource: str  # a FHIR resource type, or "*"
    actions: frozenset[str]  # subset of c r u d s

    def allows(self, resource: str, action: str, context: str | None = None) -> bool:
        if context is not None and context != self.context:
            return False
        return self.resource in {"*", resource} and action in self.actions

    def __str__(self) -> str:
        actions = "".join(a for a in ACTIONS if a in self.actions)
        return f"{self.context}/{self.resource}.{actions}"


def parse_scope(text: str) -> Scope:
    """A scope from its SMART string (v2 `.cruds` letters in order, or v1 read/write/*)."""
    match = _SCOPE.fullmatch(text.strip())
    if match is None or match["context"] not in CONTEXTS:
        raise InvalidScope(f"{text!r} is not a scope like system/Observation.c or user/Patient.r")
    return Scope(match["context"], match["resource"], _actions(match["actions"], text))


def _actions(letters: str, text: str) -> frozenset[str]:
    if letters in _V1_ACTIONS:
        return frozenset(_V1_ACTIONS[letters])
    in_order = "".join(a for a in ACTIONS if a in letters)
    if not letters or letters != in_order:
        raise InvalidScope(f"{text!r}: actions must be letters of {ACTIONS!r}, in that order")
    return frozenset(letters)


def parse_scopes(scopes: str | Iterable[str]) -> tuple[Scope, ...]:
    """Scopes from a space-separated string or a list of strings."""
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    return tuple(parse_scope(item) for item in items)


def allows(scopes: Iterable[Scope | str], resource: str, action: str,
           context: str | None = None) -> bool:  # fmt: skip
    """Whether any of `scopes` allows `action` (c r u d s) on `resource` (in `context`)."""
    if action not in ACTIONS or len(action) != 1:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    parsed = (s if isinstance(s, Scope) else parse_scope(s) for s in scopes)
    return any(scope.allows(resource, action, context) for scope in parsed)


def check_grantable(scopes: Iterable[Scope], user_id: str | None) -> None:
    """Refuse scopes wardwatch cannot honour (see the module docstring)."""
    for scope in scopes:
        if scope.context == "patient":
            raise InvalidScope(f"{scope}: patient/ scopes need a SMART launch context")
        if scope.resource != "*" and scope.resource not in RESOURCES:
            raise InvalidScope(f"{scope}: unknown resource; known: {', '.join(sorted(RESOURCES))}")
        if scope.context == "user" and user_id is None:
            raise InvalidScope(f"{scope}: user/ scopes need the user the token acts for")


# ---------------------------------------------------------------- stored tokens


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A stored token, as a request sees it (never the token itself)."""

    token_id: str
    client: str
    user_id: str | None
    role: str | None  # the owner's role now (user/ scopes are bounded by it)
    scopes: tuple[Scope, ...]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def allows(self, resource: str, action: str) -> bool:
        """Whether this token may take `action` on `resource` (scope, and owner's role)."""
        for scope in self.scopes:
            if scope.allows(resource, action) and self._owner_may(scope, resource, action):
                return True
        return False

    def _owner_may(self, scope: Scope, resource: str, action: str) -> bool:
        if scope.context == "system":
            return True
        needed = SCOPE_PERMISSIONS.get((resource, action))
        return needed is not None and self.role is not None and (
            roles.has_permission(self.role, needed))  # fmt: skip


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just issued: `token` is shown once to the administrator and never stored."""

    token: str
    record: ApiToken


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _record(row: Any) -> ApiToken:
    return ApiToken(row.token_id, row.client, row.user_id, row.role, parse_scopes(row.scopes),
                    row.created_at, row.expires_at, row.revoked_at, row.last_used_at)  # fmt: skip


def _select() -> Any:
    return select(api_tokens, users.c.role, users.c.disabled).outerjoin(
        users, users.c.user_id == api_tokens.c.user_id
    )


def issue_token(
    conn: Connection,
    *,
    client: str,
    scopes: str | Iterable[str],
    at: datetime,
    by: str,
    user_id: str | None = None,
    lifetime: timedelta = DEFAULT_LIFETIME,
    source: str = "cli",
) -> IssuedToken:
    """Issue a token for `client` with `scopes`, valid for `lifetime` (at most a year)."""
    at = utc_time(at)
    parsed = parse_scopes(scopes)
    if not parsed:
        raise InvalidScope("a token needs at least one scope")
    owner = require_user(conn, user_id).user_id if user_id is not None else None
    check_grantable(parsed, owner)
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ValueError(f"lifetime must be positive and at most {MAX_LIFETIME.days} days")
    token, token_id = PREFIX + secrets.token_urlsafe(32), "tok_" + secrets.token_hex(6)
    conn.execute(
        insert(api_tokens).values(
            token_id=token_id, token_hash=hash_token(token), client=client.strip(),
            user_id=owner, scopes=" ".join(str(s) for s in parsed), created_at=at,
            created_by=by, expires_at=at + lifetime,
        )
    )  # fmt: skip
    scope_text = clipped(" ".join(str(s) for s in parsed), 2000)
    detail = {"client": client.strip(), "user_id": owner, "scopes": scope_text,
              "expires_at": (at + lifetime).isoformat()}  # fmt: skip
    _audit(conn, "token.issue", f"token/{token_id}", by, source, detail)  # never the token
    row = conn.execute(_select().where(api_tokens.c.token_id == token_id)).one()
    return IssuedToken(token, _record(row))


def authenticate_token(conn: Connection, token: str | None, *, at: datetime) -> ApiToken:
    """The token behind an `Authorization: Bearer` value, or TokenInvalid with the reason."""
    at = utc_time(at)
    row = conn.execute(_select().where(api_tokens.c.token_hash == hash_token(token or ""))).first()
    if reason := _why_invalid(row, at):
        raise TokenInvalid(reason)
    if row.last_used_at is None or at - row.last_used_at >= TOUCH_EVERY:
        conn.execute(
            update(api_tokens).where(api_tokens.c.token_id == row.token_id)
            .values(last_used_at=at)
        )  # fmt: skip
    return _record(row)


def _why_invalid(row: Any, at: datetime) -> str | None:
    if row is None:
        return "unknown"
    if row.revoked_at is not None:
        return "revoked"
    if at >= row.expires_at:
        return "expired"
    if row.user_id is not None and row.disabled:
        return "disabled"
    return None


def revoke_token(
    conn: Connection, token_id: str, *, at: datetime, by: str, source: str = "cli"
) -> bool:
    """Revoke one token by its public id; True if it was live."""
    result = conn.execute(
        update(api_tokens)
        .where(api_tokens.c.token_id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=utc_time(at))
    )  # fmt: skip
    # An unknown or already revoked id is recorded too (count 0): a probe is worth seeing.
    _audit(conn, "token.revoke", f"token/{token_id[:60]}", by, source,
           {"count": result.rowcount})  # fmt: skip
    return result.rowcount == 1


def revoke_tokens_of(
    conn: Connection, user_id: str, *, at: datetime, by: str, source: str = "cli"
) -> int:
    """Revoke every live token acting for a user (they left, or their account was misused)."""
    result = conn.execute(
        update(api_tokens)
        .where(api_tokens.c.user_id == normalize_user_id(user_id),
               api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=utc_time(at))
    )  # fmt: skip
    _audit(conn, "token.revoke", f"user/{normalize_user_id(user_id)[:64]}", by, source,
           {"count": result.rowcount})  # fmt: skip
    return result.rowcount


def _audit(conn: Connection, action: str, what: str, by: str, source: str,
           detail: dict[str, Any]) -> None:  # fmt: skip
    """Append the record of a token change, in the caller's transaction (rule 5)."""
    audit.record(conn, audit.AuditEvent(
        action, actor=by[:64], role=role_of(conn, by), object=what, source=source[:64],
        detail=detail,
    ))  # fmt: skip


def list_tokens(conn: Connection) -> list[ApiToken]:
    """Every token, newest first, revoked and expired ones included."""
    query = _select().order_by(api_tokens.c.created_at.desc(), api_tokens.c.token_id)
    return [_record(row) for row in conn.execute(query)]
