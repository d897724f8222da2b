"""The second factor: TOTP (RFC 6238) with recovery codes.

Enrolment gives the user a secret three ways: the base32 text, the `otpauth://` URI, and that
URI as a QR code. The QR code is rendered here, as SVG, by segno (pure Python, no image
library): a TOTP secret must never be sent to an online QR service, where it would be logged.

Verification accepts the code of the current 30-second step and of one step either side
(clocks drift; people type slowly), and never the same step twice: the last accepted step is
stored on the user, and a code for that step or an earlier one is refused. RFC 6238 §5.2
asks for exactly this, and it means a code read over someone's shoulder is useless once used.
The update is `... WHERE totp_last_step < step`, so two simultaneous logins with one code
cannot both win.

Recovery codes are for a lost phone: ten per enrolment, each usable once, shown once. They
are 80 random bits (16 characters from an alphabet without 0/O and 1/I), so a plain SHA-256
suffices to store them (nothing to brute-force, unlike a password) and a code can be found
by its hash instead of trying ten slow hashes.

Every change to a second factor is in the audit trail, naming who did it and for whom, and
never the secret, its URI or a code: `mfa.enrol` (a new secret issued; `replaced` says
whether an earlier one stopped working), `mfa.reset` (a lost phone, by an administrator),
then `mfa.confirm` when the first code of a new secret is accepted (the phone has it: the
enrolment is complete) or `mfa.confirm_failure` for each code refused before that (a
mistyped code, a phone clock that is wrong, or the wrong account scanned). There is no way
to remove a second factor: every human role must have one (`roles.MFA_REQUIRED`).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pyotp
import segno
from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Integer,
    String,
    Table,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    update,
)

from wardwatch.alerts.records import utc_time
from wardwatch.security import audit
from wardwatch.security.users import normalize_user_id, require_user, role_of, users
from wardwatch.store.schema import UtcDateTime, metadata

ISSUER = "wardwatch"
DIGITS = 6
INTERVAL = 30  # seconds per TOTP step: what every authenticator app uses
VALID_WINDOW = 1  # steps either side of now that are still accepted
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 symbols: 5 bits each
_RECOVERY_LENGTH = 16  # 80 bits

recovery_codes = Table(
    "mfa_recovery_codes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(64), ForeignKey("users.user_id"), nullable=False),
    Column("code_hash", String(64), nullable=False),  # sha256 of the normalized code
    Column("created_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime),
    UniqueConstraint("user_id", "code_hash", name="uq_mfa_recovery_codes_code"),
)

Factor = Literal["totp", "recovery_code"]


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What a user is shown once, at enrolment: never stored in this form."""

    user_id: str
    secret: str
    uri: str
    recovery_codes: tuple[str, ...]

    @property
    def qr_svg(self) -> str:
        return qr_svg(self.uri)


@dataclass(frozen=True, slots=True)
class SecondFactor:
    """A second factor that was accepted, and how many recovery codes are left."""

    factor: Factor
    recovery_codes_left: int


# ---------------------------------------------------------------- pure functions


def new_secret() -> str:
    """A random base32 TOTP secret (160 bits, as RFC 4226 recommends)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, user_id: str, issuer: str = ISSUER) -> str:
    """The `otpauth://totp/...` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(
        name=user_id, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """`uri` as a QR code, as an SVG document, rendered locally (see the module docstring)."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=5, border=4, title="TOTP")
    return buffer.getvalue().decode("utf-8")


def step_at(at: datetime) -> int:
    """The TOTP time step (30-second slot since the epoch) that contains `at`."""
    return int(utc_time(at).timestamp()) // INTERVAL


def code_for_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).generate_otp(step)


def matching_step(secret: str, code: str, at: datetime, last_step: int | None) -> int | None:
    """The step whose code `code` is (now ± VALID_WINDOW, later than `last_step`), or None."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    now = step_at(at)
    for step in range(now - VALID_WINDOW, now + VALID_WINDOW + 1):
        fresh = last_step is None or step > last_step
        if fresh and hmac.compare_digest(code_for_step(secret, step), code):
            return step
    return None


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """`count` fresh recovery codes, formatted for reading aloud: XXXX-XXXX-XXXX-XXXX."""
    return [_format(_random_code()) for _ in range(count)]


def _random_code() -> str:
    return "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))


def _format(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalize_recovery_code(code: str) -> str:
    """What is hashed: upper case, without the dashes and spaces people type or not."""
    return code.strip().upper().replace("-", "").replace(" ", "")


def hash_recovery_code(code: str) -> str:
    return hashlib.sha256(normalize_recovery_code(code).encode("ascii", "replace")).hexdigest()


def looks_like_totp(code: str) -> bool:
    """Six digits (spaces allowed): a TOTP code; anything else is tried as a recovery code."""
    stripped = code.strip().replace(" ", "")
    return len(stripped) == DIGITS and stripped.isdigit()


# ---------------------------------------------------------------- stored enrolment


def enrol(
    conn: Connection, user_id: str, *, at: datetime, by: str, source: str = "cli",
    issuer: str = ISSUER,
) -> Enrolment:  # fmt: skip
    """Give the user a new TOTP secret and new recovery codes, replacing any old ones;
    `by` (who enrolled them) is recorded, never the secret (module docstring)."""
    replaced = _has_secret(conn, user_id)
    enrolment = _issue(conn, user_id, at=at, issuer=issuer)
    _audit(conn, "mfa.enrol", by, enrolment.user_id, source, {"replaced": replaced})
    return enrolment


def reset_mfa(
    conn: Connection, user_id: str, *, at: datetime, by: str, source: str = "cli"
) -> Enrolment:
    """A lost phone: a new secret and new codes; the old ones stop working at once.

    Callers should also revoke the user's sessions (`sessions.revoke_all`): whoever has the
    old phone may be signed in.
    """
    enrolment = _issue(conn, user_id, at=at)
    _audit(conn, "mfa.reset", by, enrolment.user_id, source)
    return enrolment


def _issue(conn: Connection, user_id: str, *, at: datetime, issuer: str = ISSUER) -> Enrolment:
    user = require_user(conn, user_id)
    secret = new_secret()
    conn.execute(
        update(users).where(users.c.user_id == user.user_id)
        .values(totp_secret=secret, totp_last_step=None, mfa_enrolled_at=utc_time(at))
    )  # fmt: skip
    codes = replace_recovery_codes(conn, user.user_id, at=at)
    return Enrolment(user.user_id, secret, provisioning_uri(secret, user.user_id, issuer), codes)


def _has_secret(conn: Connection, user_id: str) -> bool:
    query = select(users.c.totp_secret).where(users.c.user_id == normalize_user_id(user_id))
    return conn.execute(query).scalar() is not None


def _audit(conn: Connection, action: str, by: str, user_id: str, source: str,
           detail: dict[str, Any] | None = None, outcome: str = "success") -> None:  # fmt: skip
    """Append the record of a change to the user's second factor: who and for whom only,
    never the secret or codes (rule 5), in the caller's transaction."""
    audit.record(conn, audit.AuditEvent(
        action, actor=by[:64], role=role_of(conn, by), object=f"user/{user_id}",
        source=source[:64], outcome=outcome, detail=detail,
    ))  # fmt: skip


def replace_recovery_codes(conn: Connection, user_id: str, *, at: datetime) -> tuple[str, ...]:
    """Ten new recovery codes for the user; all earlier ones, used or not, stop working."""
    user_id = normalize_user_id(user_id)
    codes = tuple(new_recovery_codes())
    conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
    conn.execute(
        insert(recovery_codes),
        [{"user_id": user_id, "code_hash": hash_recovery_code(code), "created_at": utc_time(at)}
         for code in codes],
    )  # fmt: skip
    return codes


def recovery_codes_left(conn: Connection, user_id: str) -> int:
    query = select(func.count()).where(
        recovery_codes.c.user_id == normalize_user_id(user_id), recovery_codes.c.used_at.is_(None)
    )
    return int(conn.execute(query).scalar_one())


def verify_second_factor(
    conn: Connection, user_id: str, code: str, *, at: datetime, source: str = "cli"
) -> SecondFactor | None:
    """Accept `code` (a TOTP code or a recovery code) once, or return None.

    Accepting consumes it: the TOTP step is recorded, the recovery code marked used. A TOTP
    code for a secret none of whose codes was accepted yet confirms (or fails to confirm)
    its enrolment, and that is recorded, from `source` (module docstring).
    """
    user_id = normalize_user_id(user_id)
    accepted = _use_totp(conn, user_id, code, at, source) if looks_like_totp(code) else (
        _use_recovery_code(conn, user_id, code, at))  # fmt: skip
    if accepted is None:
        return None
    return SecondFactor(accepted, recovery_codes_left(conn, user_id))


def _use_totp(
    conn: Connection, user_id: str, code: str, at: datetime, source: str
) -> Factor | None:
    columns = (users.c.totp_secret, users.c.totp_last_step, users.c.mfa_enrolled_at)
    row = conn.execute(select(*columns).where(users.c.user_id == user_id)).first()
    if row is None or row.totp_secret is None:
        return None
    step = matching_step(row.totp_secret, code, at, row.totp_last_step)
    accepted = step is not None and _consume_step(conn, user_id, step)
    if row.totp_last_step is None:  # the new secret's first code: the enrolment's proof
        _confirmation(conn, user_id, accepted, row.mfa_enrolled_at, source)
    return "totp" if accepted else None


def _consume_step(conn: Connection, user_id: str, step: int) -> bool:
    """Record `step` as used, unless it (or a later one) already was: True if this won."""
    unused = (users.c.totp_last_step.is_(None)) | (users.c.totp_last_step < step)
    result = conn.execute(
        update(users).where(users.c.user_id == user_id, unused).values(totp_last_step=step)
    )
    return result.rowcount == 1


def _confirmation(conn: Connection, user_id: str, accepted: bool, enrolled_at: datetime | None,
                  source: str) -> None:  # fmt: skip
    """The user's own record of confirming their enrolment, or of a code that failed to."""
    detail = {"enrolled_at": enrolled_at.isoformat()} if enrolled_at else None
    if accepted:
        _audit(conn, "mfa.confirm", user_id, user_id, source, detail)
    else:
        _audit(conn, "mfa.confirm_failure", user_id, user_id, source, detail, outcome="denied")


def _use_recovery_code(conn: Connection, user_id: str, code: str, at: datetime) -> Factor | None:
    result = conn.execute(
        update(recovery_codes)
        .where(recovery_codes.c.user_id == user_id,
               recovery_codes.c.code_hash == hash_recovery_code(code),
               recovery_codes.c.used_at.is_(None))
        .values(used_at=utc_time(at))
    )  # fmt: skip
    return "recovery_code" if result.rowcount == 1 else None
