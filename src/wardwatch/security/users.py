"""Users: who may sign in, with which role, and the state of their credentials.

A user is never deleted: the audit trail names them for years, so leaving staff are
*disabled* (which also stops every session at its next request: `sessions.resume` checks).
The role is one canonical name from `roles.MATRIX` ("physician" is stored as "provider").

What is stored, and why it is safe to store:
    password_hash   argon2id PHC string (salt and parameters inside), never the password
    totp_secret     the shared TOTP secret; it must be readable to verify codes, so it is the
                    one secret here a database thief could use: with the password hash it
                    still needs the password. (Encrypting it under a key outside the database
                    is the next step if the threat model needs it.)
    totp_last_step  the last accepted TOTP time step: a code is accepted once (replay guard)
    failed_logins / locked_until   the lockout back-off (see `login`)

Mutating functions take `by` (who did it: an admin's user id, or "cli:<os user>") and
`source` (from where: the client's address, or "cli") and append their audit record in the
caller's transaction; they do not check permission themselves: the route or command that
calls them declares `users.manage`.

Errors: UserExists and InvalidUserId are ValueErrors, UserNotFound a LookupError; a weak
password raises `passwords.WeakPassword` (a ValueError) and an unknown role
`roles.UnknownRole` (a ValueError).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Integer,
    Row,
    String,
    Table,
    insert,
    select,
    update,
)

from wardwatch.alerts.records import utc_time
from wardwatch.alerts.workflow import Actor
from wardwatch.security import audit, passwords, roles
from wardwatch.store.schema import UtcDateTime, metadata

users = Table(
    "users",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("display_name", String(200), nullable=False, default=""),
    Column("role", String(32), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("password_changed_at", UtcDateTime, nullable=False),
    Column("totp_secret", String(64)),  # None: not enrolled in MFA yet
    Column("totp_last_step", Integer),  # last accepted TOTP step (replay protection)
    Column("mfa_enrolled_at", UtcDateTime),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("disabled_at", UtcDateTime),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", UtcDateTime),
    Column("last_login_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(100), nullable=False, default=""),
)

# Lower-case letters, digits and . _ - @ ; starts with a letter or digit. Case-insensitive
# sign-in is then just lower-casing what was typed.
_USER_ID = re.compile(r"[a-z0-9][a-z0-9._@-]{1,63}")


class UserExists(ValueError):
    """A user with that id already exists (ids are never reused: disable instead)."""


class UserNotFound(LookupError):
    """No user has that id."""


class InvalidUserId(ValueError):
    """The id is not 2–64 characters of a-z, 0-9 and . _ - @."""


@dataclass(frozen=True, slots=True)
class User:
    """A user as the rest of the system sees them: no password hash, no TOTP secret."""

    user_id: str
    display_name: str
    role: str
    disabled: bool
    mfa_enrolled: bool
    failed_logins: int
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime

    @property
    def actor(self) -> Actor:
        """The `Actor` the alert workflow and the permission checks take."""
        return Actor(self.user_id, self.role)

    def locked_at(self, at: datetime) -> bool:
        return self.locked_until is not None and at < self.locked_until


@dataclass(frozen=True, slots=True)
class RoleChange:
    """What `change_role` did (for the audit trail: a permission change)."""

    user_id: str
    old_role: str
    new_role: str
    by: str
    at: datetime


def normalize_user_id(user_id: str) -> str:
    """The stored form of a typed user id (trimmed, lower case)."""
    return user_id.strip().lower()


def valid_user_id(user_id: str) -> str:
    """`user_id` normalized, or InvalidUserId."""
    normalized = normalize_user_id(user_id)
    if not _USER_ID.fullmatch(normalized):
        raise InvalidUserId(f"user id {user_id!r} must be 2–64 characters: a-z, 0-9 and . _ - @")
    return normalized


def _user(row: Row) -> User:
    return User(
        user_id=row.user_id,
        display_name=row.display_name,
        role=row.role,
        disabled=row.disabled,
        mfa_enrolled=row.totp_secret is not None,
        failed_logins=row.failed_logins,
        locked_until=row.locked_until,
        last_login_at=row.last_login_at,
        created_at=row.created_at,
    )


def add_user(
    conn: Connection,
    user_id: str,
    role: str,
    password: str,
    *,
    at: datetime,
    by: str,
    display_name: str = "",
    hasher: PasswordHasher | None = None,
    source: str = "cli",
) -> User:
    """Create a user (without MFA: enrol next with `mfa.enrol`, or they cannot sign in)."""
    user_id = valid_user_id(user_id)
    role = roles.canonical_role(role)
    if role not in roles.HUMAN_ROLES:
        raise roles.UnknownRole(f"{role!r} is the software itself; nobody signs in as it")
    passwords.check_policy(password, user_id)
    if get_user(conn, user_id) is not None:
        raise UserExists(f"user {user_id!r} already exists (ids are never reused)")
    at = utc_time(at)
    conn.execute(
        insert(users).values(
            user_id=user_id, display_name=display_name.strip(), role=role,
            password_hash=passwords.hash_password(password, hasher), password_changed_at=at,
            disabled=False, failed_logins=0, created_at=at, created_by=by,
        )
    )  # fmt: skip
    _audit(conn, "user.create", user_id, by, source, role=role)
    return require_user(conn, user_id)


def get_user(conn: Connection, user_id: str) -> User | None:
    """The user with that id (case-insensitive), or None."""
    row = conn.execute(select(users).where(users.c.user_id == normalize_user_id(user_id))).first()
    return None if row is None else _user(row)


def require_user(conn: Connection, user_id: str) -> User:
    """The user with that id, or UserNotFound."""
    user = get_user(conn, user_id)
    if user is None:
        raise UserNotFound(f"no user {user_id!r}")
    return user


def list_users(conn: Connection) -> list[User]:
    """Every user, disabled ones included, by id."""
    return [_user(row) for row in conn.execute(select(users).order_by(users.c.user_id))]


def credentials(conn: Connection, user_id: str) -> Row | None:
    """The full row, secrets included: for `login` and `mfa` only, never for display."""
    return conn.execute(select(users).where(users.c.user_id == normalize_user_id(user_id))).first()


def _set(conn: Connection, user_id: str, **values: object) -> User:
    user_id = normalize_user_id(user_id)
    result = conn.execute(update(users).where(users.c.user_id == user_id).values(**values))
    if result.rowcount == 0:
        raise UserNotFound(f"no user {user_id!r}")
    return require_user(conn, user_id)


def disable_user(
    conn: Connection, user_id: str, *, at: datetime, by: str, source: str = "cli"
) -> User:
    """Stop a user signing in; their open sessions stop at their next request.

    Callers should also `sessions.revoke_all` and `tokens.revoke_tokens_of` the user, so
    nothing of theirs stays valid in the database either.
    """
    user = _set(conn, user_id, disabled=True, disabled_at=utc_time(at))
    _audit(conn, "user.disable", user.user_id, by, source)
    return user


def enable_user(
    conn: Connection, user_id: str, *, at: datetime, by: str, source: str = "cli"
) -> User:
    """Let a disabled (or locked-out) user sign in again: clears the lockout too."""
    utc_time(at)
    user = _set(conn, user_id, disabled=False, disabled_at=None, failed_logins=0,
                locked_until=None)  # fmt: skip
    _audit(conn, "user.enable", user.user_id, by, source)
    return user


def set_password(
    conn: Connection,
    user_id: str,
    password: str,
    *,
    at: datetime,
    by: str,
    hasher: PasswordHasher | None = None,
    source: str = "cli",
) -> User:
    """Replace a user's password (policy checked). Sessions are the caller's to revoke."""
    user_id = normalize_user_id(user_id)
    passwords.check_policy(password, user_id)
    user = _set(conn, user_id, password_hash=passwords.hash_password(password, hasher),
                password_changed_at=utc_time(at))  # fmt: skip
    _audit(conn, "user.password", user.user_id, by, source)  # never the password
    return user


def change_role(
    conn: Connection, user_id: str, role: str, *, at: datetime, by: str, source: str = "cli"
) -> RoleChange:
    """Give a user another role: a permission change, so the old and new roles are returned."""
    new_role = roles.canonical_role(role)
    if new_role not in roles.HUMAN_ROLES:
        raise roles.UnknownRole(f"{new_role!r} is the software itself; nobody signs in as it")
    old = require_user(conn, user_id)
    _set(conn, user_id, role=new_role)
    change = RoleChange(old.user_id, old.role, new_role, by, utc_time(at))
    _audit(conn, "permission.change", change.user_id, by, source, old_role=change.old_role,
           new_role=change.new_role)  # fmt: skip
    return change


def role_of(conn: Connection, by: str) -> str:
    """The role `by` acts in, for the audit trail: their role if they are a user, else
    "operator" (the console, a script, the demo: acting with the server's own rights)."""
    user = get_user(conn, by) if _USER_ID.fullmatch(normalize_user_id(by)) else None
    return "operator" if user is None else user.role


def _audit(conn: Connection, action: str, user_id: str, by: str, source: str,
           **detail: str) -> None:  # fmt: skip
    """Append the record of a change to a user, in the caller's transaction (rule 5)."""
    audit.record(conn, audit.AuditEvent(
        action, actor=by[:64], role=role_of(conn, by), object=f"user/{user_id}",
        source=source[:64], detail=detail or None,
    ))  # fmt: skip
