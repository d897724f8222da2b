"""Demo accounts: a nurse, a provider, an auditor (governance), an administrator and a data
scientist, for `wardwatch demo`.

Their passwords and TOTP secrets are random on every run and printed for the person running
the demo, clearly marked DEMO ONLY. Random, not fixed, because a fixed demo password is
exactly what an attacker tries first on a demo that was left running on a real network.
Running the demo again resets the same accounts (new password, new TOTP secret,
enabled, lockout cleared) rather than failing on "user exists".
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from sqlalchemy import Connection, Engine

from wardwatch.security import mfa, passwords, sessions, users
from wardwatch.security.sessions import NewSession

DEMO_BY = "demo"
DEMO_ACCOUNTS: tuple[tuple[str, str, str], ...] = (
    ("nurse.nightingale", "nurse", "Florence Nightingale (demo nurse)"),
    ("dr.snow", "provider", "Dr John Snow (demo provider)"),
    ("auditor.ada", "auditor", "Ada Lovelace (demo auditor)"),
    ("admin.root", "admin", "Demo administrator"),
    ("ds.fisher", "data_scientist", "Ronald Fisher (demo data scientist)"),
)


@dataclass(frozen=True, slots=True)
class DemoCredential:
    user_id: str
    role: str
    display_name: str
    password: str
    totp_secret: str
    totp_uri: str
    recovery_codes: tuple[str, ...]


def demo_password(user_id: str) -> str:
    """A random password that passes the policy (the loop almost never turns twice)."""
    while True:
        candidate = secrets.token_urlsafe(12)
        if not passwords.policy_problems(candidate, user_id):
            return candidate


def create_demo_users(
    engine: Engine, *, at: datetime | None = None, hasher: PasswordHasher | None = None
) -> list[DemoCredential]:
    """Create (or reset) the demo accounts; return their credentials to print once."""
    at = at or datetime.now(UTC)
    with engine.begin() as conn:
        return [_account(conn, *account, at=at, hasher=hasher) for account in DEMO_ACCOUNTS]


def _account(conn: Connection, user_id: str, role: str, name: str, *, at: datetime,
             hasher: PasswordHasher | None) -> DemoCredential:  # fmt: skip
    password = demo_password(user_id)
    if users.get_user(conn, user_id) is None:
        users.add_user(conn, user_id, role, password, at=at, by=DEMO_BY, display_name=name,
                       hasher=hasher)  # fmt: skip
    else:
        users.set_password(conn, user_id, password, at=at, by=DEMO_BY, hasher=hasher)
        users.change_role(conn, user_id, role, at=at, by=DEMO_BY)
        users.enable_user(conn, user_id, at=at, by=DEMO_BY)
    enrolment = mfa.enrol(conn, user_id, at=at, by=DEMO_BY)
    return DemoCredential(user_id, role, name, password, enrolment.secret, enrolment.uri,
                          enrolment.recovery_codes)  # fmt: skip


def demo_session(engine: Engine, user_id: str = "dr.snow", *, source: str = "script") -> NewSession:
    """A session for demo user `user_id` (the accounts are created first if missing), for
    scripts that drive the demo's pages: screenshots, benchmarks. Never for real accounts."""
    if user_id not in {account[0] for account in DEMO_ACCOUNTS}:
        raise ValueError(f"{user_id!r} is not a demo account")
    at = datetime.now(UTC)
    with engine.begin() as conn:
        if users.get_user(conn, user_id) is None:
            for account in DEMO_ACCOUNTS:
                _account(conn, *account, at=at, hasher=None)
        return sessions.create_session(conn, user_id, at=at, source=source)


def format_demo_credentials(credentials: list[DemoCredential]) -> str:
    """The credentials as text for the terminal, unmistakably marked as demo-only."""
    rule = "=" * 78
    lines = [rule, "DEMO ONLY — these accounts exist for this demonstration. Never use them",
             "with real patient data, and never leave this server reachable from a network.",
             rule]  # fmt: skip
    for cred in credentials:
        lines += [
            f"{cred.role:<9} {cred.user_id:<18} password: {cred.password}",
            f"{'':<28} TOTP secret: {cred.totp_secret}  (add it to an authenticator app)",
            f"{'':<28} one recovery code: {cred.recovery_codes[0]}",
        ]
    lines.append(rule)
    return "\n".join(lines)
