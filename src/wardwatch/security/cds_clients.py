"""Trusting CDS Hooks clients: the EHRs allowed to ask for the sepsis card, and their keys.

CDS Hooks 2.0 ("Trusting CDS Clients"): a CDS client sends `Authorization: Bearer <JWT>`,
signed with its private key; the CDS service checks the signature with the client's public
keys and the claims:

    iss  the client's identifier (a URL), registered here with its JSON Web Key Set
    aud  the URL of the service being called: a token for another service is refused
    exp  at most 5 minutes after `iat` (the spec's advice; we allow 30 s of clock skew)
    jti  unique: a replayed token (same iss + jti) is refused while it could still be valid
    sub  the client id (kept for the audit trail)

Algorithms: ES384 and RS384, which the spec requires every service to support (and their
256/512 siblings, which EHRs also use); never `none`, never HMAC (a shared secret would let
us forge the EHR's tokens). The keys are registered, not fetched from a `jku` header: the
server makes no outbound requests, and a key from a URL named by the token itself proves
nothing unless the URL is on an allow-list, which is what registering the keys already is.

Registering a client is an administrator's act (`wardwatch cds-clients add`), audited, and
so is disabling one (`wardwatch cds-clients disable`): its JWTs are refused from then on, and
its row stays, so the audit trail's `cds:<iss>` actors keep a name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from wardwatch.alerts.records import utc_time
from wardwatch.security import audit
from wardwatch.security.users import role_of
from wardwatch.store.schema import UtcDateTime, metadata

ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS384", "PS256")
MAX_LIFETIME = timedelta(minutes=5)
LEEWAY = timedelta(seconds=30)

cds_clients = Table(
    "cds_clients",
    metadata,
    Column("iss", String(300), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("jwks", Text, nullable=False),  # the client's public keys, a JWK Set (JSON)
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(100), nullable=False),
)

cds_jwt_seen = Table(  # replay protection: (iss, jti) pairs until their tokens expire
    "cds_jwt_seen",
    metadata,
    Column("iss", String(300), primary_key=True),
    Column("jti", String(200), primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
)


class CdsClientRefused(PermissionError):
    """The JWT does not prove a registered, enabled CDS client; the message says why."""


@dataclass(frozen=True, slots=True)
class CdsClient:
    iss: str
    name: str
    sub: str  # the JWT's sub: the client id at that issuer
    jti: str


def _key_set(jwks: str | dict[str, Any]) -> jwt.PyJWKSet:
    data = json.loads(jwks) if isinstance(jwks, str) else jwks
    try:
        keys = jwt.PyJWKSet.from_dict(data)
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, KeyError, TypeError) as error:
        raise ValueError(f"not a usable JSON Web Key Set: {error}") from None
    if any(getattr(key, "key_type", "") == "oct" for key in keys.keys):
        raise ValueError("symmetric (oct) keys are not accepted: register the public keys")
    return keys


def register_client(conn: Connection, iss: str, name: str, jwks: str | dict[str, Any], *,
                    at: datetime, by: str) -> None:  # fmt: skip
    """Trust `iss`'s JWTs signed by the keys in `jwks` (public keys only)."""
    _key_set(jwks)
    text = jwks if isinstance(jwks, str) else json.dumps(jwks)
    try:
        with conn.begin_nested():
            conn.execute(insert(cds_clients).values(
                iss=iss, name=name, jwks=text, enabled=True, created_at=utc_time(at),
                created_by=by))  # fmt: skip
    except IntegrityError:
        raise ValueError(f"CDS client {iss!r} is already registered") from None
    event = audit.AuditEvent(action="cds_client.add", actor=by, role="admin",
                             object=f"cds_client/{iss}", at=at, source="cli")  # fmt: skip
    audit.record(conn, event)


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """A registered CDS client, as an administrator lists it."""

    iss: str
    name: str
    enabled: bool
    key_ids: tuple[str, ...]  # the `kid` of each registered public key ("" when none)
    created_at: datetime
    created_by: str


def list_clients(conn: Connection) -> list[RegisteredClient]:
    """Every registered client, disabled ones included, oldest first."""
    query = select(cds_clients).order_by(cds_clients.c.created_at, cds_clients.c.iss)
    return [
        RegisteredClient(row.iss, row.name, row.enabled, _key_ids(row.jwks), row.created_at,
                         row.created_by)
        for row in conn.execute(query)
    ]  # fmt: skip


def _key_ids(jwks: str) -> tuple[str, ...]:
    return tuple(str(key.get("kid", "")) for key in json.loads(jwks).get("keys", []))


def disable_client(conn: Connection, iss: str, *, at: datetime, by: str,
                   source: str = "cli") -> bool:  # fmt: skip
    """Refuse `iss`'s JWTs from now on; True if it was enabled, LookupError if unknown."""
    result = conn.execute(
        update(cds_clients).where(cds_clients.c.iss == iss, cds_clients.c.enabled.is_(True))
        .values(enabled=False)
    )  # fmt: skip
    if result.rowcount == 0 and not _registered(conn, iss):
        raise LookupError(f"no CDS client {iss!r} is registered")
    event = audit.AuditEvent(action="cds_client.disable", actor=by[:64], role=role_of(conn, by),
                             object=f"cds_client/{iss}", at=at, source=source[:64],
                             detail={"count": result.rowcount})  # fmt: skip
    audit.record(conn, event)
    return result.rowcount == 1


def _registered(conn: Connection, iss: str) -> bool:
    found = conn.execute(select(cds_clients.c.iss).where(cds_clients.c.iss == iss)).first()
    return found is not None


def _header_and_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise CdsClientRefused(f"not a JWT: {error}") from None
    return header, claims


def _signing_key(keys: jwt.PyJWKSet, kid: str | None) -> Any:
    if kid is None:
        if len(keys.keys) != 1:
            raise CdsClientRefused("the JWT names no key (kid) and the client has several")
        return keys.keys[0]
    try:
        return keys[kid]
    except KeyError:
        raise CdsClientRefused(f"no registered key {kid!r} for this client") from None


def verify_client_jwt(conn: Connection, token: str, *, audience: str, at: datetime) -> CdsClient:
    """The registered client whose signed JWT this is, for a call to `audience`."""
    header, unverified = _header_and_claims(token)
    iss = unverified.get("iss")
    row = conn.execute(select(cds_clients).where(cds_clients.c.iss == str(iss))).first()
    if row is None or not row.enabled:
        raise CdsClientRefused(f"CDS client {iss!r} is not registered here")
    if header.get("alg") not in ALGORITHMS:
        raise CdsClientRefused(f"algorithm {header.get('alg')!r} is not accepted")
    key = _signing_key(_key_set(row.jwks), header.get("kid"))
    at = utc_time(at)
    try:
        claims = jwt.decode(
            token, key.key, algorithms=list(ALGORITHMS), audience=audience, issuer=row.iss,
            leeway=LEEWAY, options={"require": ["iss", "aud", "exp", "iat", "jti"],
                                    "verify_iat": False}, # checked below against our clock
        )  # fmt: skip
    except jwt.PyJWTError as error:
        raise CdsClientRefused(f"JWT refused: {error}") from None
    _check_times(claims, at)
    _remember_jti(conn, row.iss, str(claims["jti"]), claims, at)
    return CdsClient(row.iss, row.name, str(claims.get("sub", "")), str(claims["jti"]))


def _check_times(claims: dict[str, Any], at: datetime) -> None:
    issued, expires = float(claims["iat"]), float(claims["exp"])
    now = at.timestamp()
    if expires - issued > MAX_LIFETIME.total_seconds() + LEEWAY.total_seconds():
        raise CdsClientRefused("JWT refused: it is valid for more than 5 minutes")
    if issued > now + LEEWAY.total_seconds():
        raise CdsClientRefused("JWT refused: issued in the future (check the client's clock)")
    if expires < now - LEEWAY.total_seconds():
        raise CdsClientRefused("JWT refused: it has expired")


def _remember_jti(conn: Connection, iss: str, jti: str, claims: dict[str, Any],
                  at: datetime) -> None:  # fmt: skip
    conn.execute(delete(cds_jwt_seen).where(cds_jwt_seen.c.expires_at < at - LEEWAY))
    expires = datetime.fromtimestamp(float(claims["exp"]), tz=at.tzinfo) + LEEWAY
    try:
        with conn.begin_nested():
            conn.execute(insert(cds_jwt_seen).values(iss=iss, jti=jti, expires_at=expires))
    except IntegrityError:
        raise CdsClientRefused("JWT refused: this token (jti) was already used") from None
