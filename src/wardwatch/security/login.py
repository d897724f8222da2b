"""Signing in: password, then second factor, then a session; with lockout and back-off.

`authenticate` is the one door the web login (and anything else that signs a person in)
goes through. Its answer never tells a stranger whether a user id exists: an unknown user, a
wrong password and a wrong code all read "wrong user, password or code", cost the same argon2
time (`passwords.burn_time`), and count towards the same lockout — unknown ids are counted
in `login_throttle`, so even "account locked" appears for ids that do not exist. The precise
`outcome` is returned beside the public `reason`, for the audit trail only.

Lockout with back-off (`Lockout`): after 5 consecutive failures the id is locked for 1
minute, and each further failure doubles that, up to 1 hour. A locked id is refused without
looking at the password, so the right password does not help an attacker either; attempts
while locked are not counted (they would only let an attacker lock a colleague out for
longer). A success resets the count; so does an administrator's `users.enable_user`.

Checks in order, and why that order:
    locked?            before any work: the cheapest refusal, and guessing stops here
    password           then the second factor: a code is never consumed for a wrong password
    second factor      TOTP (once per step) or a recovery code (once ever); `mfa`
    disabled?          last: only someone with all the credentials learns the account exists
                       and is disabled, which is what that person needs to know

Times are wall-clock UTC, passed in as `at` (never the replay's ward clock: a replay must not
unlock accounts by running time forward).

Every attempt is in the audit trail: `login.success` (with the factor: a recovery code used
means a lost phone, or someone else's), `login.failure` with the precise outcome, and
`account.lock` when failures lock an id; the first code typed from a new TOTP secret also
confirms its enrolment, or fails to (`mfa.confirm`, `mfa.confirm_failure`: see `mfa`). A
refusal is *returned*, never raised, so the caller's transaction commits the failure count
and its audit record together: a caller must commit after a refused attempt as after a
success (raising inside `engine.begin()` would roll back both, and erase the attempt). An
id that is no user is recorded by a digest only: it may be a password typed into the wrong
box, and the chain keeps everything for good.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from sqlalchemy import Column, Connection, Integer, String, Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from wardwatch.alerts.records import utc_time
from wardwatch.security import audit, mfa, passwords, roles
from wardwatch.security.sessions import DEFAULT_POLICY, NewSession, SessionPolicy, create_session
from wardwatch.security.users import User, credentials, normalize_user_id, require_user, users
from wardwatch.store.schema import UtcDateTime, metadata

WRONG = "wrong user, password or code"
UNKNOWN_ACTOR = "(no such user)"  # parentheses: never a valid user id, so never mistaken for one

Outcome = Literal[
    "success", "unknown_user", "bad_password", "bad_code", "locked", "disabled", "no_mfa"
]

login_throttle = Table(
    "login_throttle",
    metadata,
    Column("login", String(64), primary_key=True),  # an id that is NOT a user
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until", UtcDateTime),
    Column("last_failure_at", UtcDateTime, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Lockout:
    threshold: int = 5
    first: timedelta = timedelta(minutes=1)
    longest: timedelta = timedelta(hours=1)

    def duration(self, failures: int) -> timedelta | None:
        """How long `failures` consecutive failures lock an id for (None: not locked)."""
        if failures < self.threshold:
            return None
        doublings = min(failures - self.threshold, 30)
        return min(self.first * 2**doublings, self.longest)


DEFAULT_LOCKOUT = Lockout()


@dataclass(frozen=True, slots=True)
class LoginResult:
    """What a sign-in attempt came to. Show `reason`; audit `outcome` (see the docstring)."""

    ok: bool
    outcome: Outcome
    reason: str
    login: str  # the id as typed, normalized (for the audit trail)
    at: datetime
    source: str
    user: User | None = None  # set only on success
    session: NewSession | None = None  # set only on success
    factor: mfa.Factor | None = None
    recovery_codes_left: int | None = None
    locked_until: datetime | None = None


def locked_message(until: datetime) -> str:
    return f"account locked until {until:%H:%M} UTC after repeated failures: try again then"


def authenticate(
    conn: Connection,
    user_id: str,
    password: str,
    totp_or_recovery_code: str,
    *,
    at: datetime,
    source: str,
    hasher: PasswordHasher | None = None,
    lockout: Lockout = DEFAULT_LOCKOUT,
    policy: SessionPolicy = DEFAULT_POLICY,
) -> LoginResult:
    """Sign a person in, or say no without saying why to a stranger (module docstring)."""
    at, typed = utc_time(at), normalize_user_id(user_id)
    login = typed[:64]  # the throttle's key; a longer id is no user (never a truncated one)
    row = credentials(conn, login) if typed == login else None
    failed = _Failure(conn, login, None if row is None else row.role, at, source, lockout)
    if until := _locked_until(conn, row, login, at):
        return failed.refuse("locked", locked_message(until), until)
    if row is None:
        passwords.burn_time(password, hasher)
        return failed.count("unknown_user")
    if not passwords.verify_password(row.password_hash, password, hasher):
        return failed.count("bad_password")
    needs_mfa = roles.requires_mfa(row.role)
    if needs_mfa and row.totp_secret is None:
        reason = "signing in needs MFA, and this account has none: ask an administrator"
        return failed.refuse("no_mfa", reason)
    second = None
    if needs_mfa:
        second = mfa.verify_second_factor(conn, login, totp_or_recovery_code, at=at, source=source)
        if second is None:
            return failed.count("bad_code")
    if row.disabled:
        return failed.refuse("disabled", "this account is disabled: ask an administrator")
    return _succeed(conn, row, second, at, source, hasher, policy, password)


def _locked_until(conn: Connection, row: Any, login: str, at: datetime) -> datetime | None:
    if row is None:
        row = conn.execute(select(login_throttle).where(login_throttle.c.login == login)).first()
    until = None if row is None else row.locked_until
    return until if until is not None and at < until else None


class _Failure:
    """Builds failed results, counting the ones that are guesses (a small state holder)."""

    def __init__(self, conn: Connection, login: str, role: str | None, at: datetime,
                 source: str, lockout: Lockout) -> None:  # fmt: skip
        self.conn, self.login, self.role, self.known = conn, login, role, role is not None
        self.at, self.source, self.lockout = at, source, lockout

    def refuse(self, outcome: Outcome, reason: str, until: datetime | None = None,
               lock: dict[str, Any] | None = None) -> LoginResult:  # fmt: skip
        """The failed result, its audit record written (and the lock's, when this locked)."""
        events = [] if lock is None else [self._event("account.lock", lock)]
        events.append(self._event("login.failure", {"outcome": outcome}))
        audit.record_many(self.conn, events)
        return LoginResult(False, outcome, reason, self.login, self.at, self.source,
                           locked_until=until)  # fmt: skip

    def _event(self, action: str, detail: dict[str, Any]) -> audit.AuditEvent:
        actor, what = UNKNOWN_ACTOR, f"login/{_digest(self.login)}"
        if self.known:
            actor, what = self.login, f"user/{self.login}"
        return audit.AuditEvent(
            action, actor=actor, role=self.role or "none", object=what,
            source=self.source[:64], outcome="denied", detail=detail,
        )  # fmt: skip

    def count(self, outcome: Outcome) -> LoginResult:
        """A failed guess: count it, and lock the id once there are too many."""
        failures = self._record()
        duration = self.lockout.duration(failures)
        if duration is None:
            return self.refuse(outcome, WRONG)
        until = self.at + duration
        self._lock(until)
        lock = {"failures": failures, "until": until.isoformat()}  # a security event of its own
        return self.refuse(outcome, f"{WRONG}; {locked_message(until)}", until, lock)

    def _record(self) -> int:
        if self.known:
            where = users.c.user_id == self.login
            self.conn.execute(update(users).where(where)
                              .values(failed_logins=users.c.failed_logins + 1))  # fmt: skip
            return int(self.conn.execute(select(users.c.failed_logins).where(where)).scalar_one())
        return _count_unknown(self.conn, self.login, self.at)

    def _lock(self, until: datetime) -> None:
        table, key = (users, users.c.user_id) if self.known else (
            login_throttle, login_throttle.c.login)  # fmt: skip
        self.conn.execute(update(table).where(key == self.login).values(locked_until=until))


def _digest(login: str) -> str:
    """Attempts on one unknown id group together in the trail without its text being kept."""
    return hashlib.sha256(login.encode("utf-8", "replace")).hexdigest()[:12]


def _count_unknown(conn: Connection, login: str, at: datetime) -> int:
    """Count a failure for an id that is no user (one row per id; concurrent-safe upsert)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(login_throttle).values(
        login=login, failed_logins=1, last_failure_at=at
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[login_throttle.c.login],
            set_={"failed_logins": login_throttle.c.failed_logins + 1, "last_failure_at": at},
        )
    )
    query = select(login_throttle.c.failed_logins).where(login_throttle.c.login == login)
    return int(conn.execute(query).scalar_one())


def _succeed(conn: Connection, row: Any, second: mfa.SecondFactor | None, at: datetime,
             source: str, hasher: PasswordHasher | None, policy: SessionPolicy,
             password: str) -> LoginResult:  # fmt: skip
    values: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": at}
    if passwords.needs_rehash(row.password_hash, hasher):
        values["password_hash"] = passwords.hash_password(password, hasher)  # new parameters
    conn.execute(update(users).where(users.c.user_id == row.user_id).values(**values))
    new_session = create_session(conn, row.user_id, at=at, source=source, policy=policy)
    detail = None if second is None else {
        "factor": second.factor, "recovery_codes_left": second.recovery_codes_left}  # fmt: skip
    audit.record(conn, audit.AuditEvent(  # session: a prefix of the token's hash, never the token
        "login.success", actor=row.user_id, role=row.role,
        object=f"session/{new_session.session.session_id[:12]}", source=source[:64],
        detail=detail,
    ))  # fmt: skip
    return LoginResult(
        True, "success", "signed in", row.user_id, at, source,
        user=require_user(conn, row.user_id), session=new_session,
        factor=None if second is None else second.factor,
        recovery_codes_left=None if second is None else second.recovery_codes_left,
    )  # fmt: skip


def prune_throttle(conn: Connection, *, at: datetime, keep: timedelta = timedelta(days=1)) -> int:
    """Forget unknown-id failures older than `keep` (the table must not grow forever)."""
    cutoff = utc_time(at) - keep
    result = conn.execute(delete(login_throttle).where(login_throttle.c.last_failure_at < cutoff))
    return result.rowcount
