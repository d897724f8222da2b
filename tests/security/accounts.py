"""Helpers for the security tests: a fixed clock, a cheap hasher, users with MFA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
from sqlalchemy import Connection

from wardwatch.security import mfa, users
from wardwatch.security.passwords import cheap_hasher

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)  # on a 30-second TOTP step boundary
STEP = timedelta(seconds=30)
HASHER = cheap_hasher()  # argon2id with minimal cost: the suite stays fast
PASSWORD = "correct horse battery"  # passes the policy for every id used here


def code(secret: str, at: datetime) -> str:
    """The TOTP code at `at`, computed by pyotp itself (not by the code under test)."""
    return pyotp.TOTP(secret).at(at)


def make_user(
    conn: Connection, user_id: str = "n-ada", role: str = "nurse", *, at: datetime = T0,
    password: str = PASSWORD, enrol: bool = True,
) -> tuple[users.User, mfa.Enrolment | None]:  # fmt: skip
    user = users.add_user(conn, user_id, role, password, at=at, by="test", hasher=HASHER)
    enrolment = mfa.enrol(conn, user.user_id, at=at, by="test") if enrol else None
    return users.require_user(conn, user.user_id), enrolment
