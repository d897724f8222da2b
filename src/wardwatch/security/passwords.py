"""Passwords: the policy a new password must meet, and argon2id hashing.

Why argon2id: it is memory-hard (a GPU or ASIC guessing stolen hashes pays in memory, not
just cycles) and it is the first choice of OWASP and RFC 9106. We use argon2-cffi's
`PasswordHasher` with RFC 9106's *low-memory* profile (t=3, m=64 MiB, p=4): about 0.1 s on
this machine, slow enough to make offline guessing expensive and fast enough for a login.
The parameters travel inside every hash, so raising them later is safe: `needs_rehash` tells
the login to re-hash on the next successful sign-in.

Passwords are NFKC-normalised before hashing so the same password typed on two keyboards
(composed vs decomposed accents, full-width digits) is the same password.

The policy follows NIST SP 800-63B: length (≥ 12) matters, composition rules do not; refuse
the passwords attackers try first and the ones built from the user's own name. No expiry.

Tests pass a cheap hasher (`cheap_hasher()`) so the suite stays fast; one test runs the
production parameters.
"""

from __future__ import annotations

import unicodedata
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

MIN_LENGTH = 12
MAX_LENGTH = 256  # hashing a megabyte "password" is a denial of service, not a password

# The production hasher; tests monkeypatch this name (functions read it at call time).
HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)

# The most common passwords of 12+ characters in public breach lists, plus the obvious local
# ones. A short list on purpose: the length rule already removes the short common ones.
COMMON_PASSWORDS: frozenset[str] = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678910",
        "123456789abc",
        "1q2w3e4r5t6y",
        "aaaaaaaaaaaa",
        "abc123456789",
        "abcdefghijkl",
        "administrator",
        "baseball1234",
        "changeme1234",
        "correcthorsebatterystaple",
        "football1234",
        "iloveyou1234",
        "letmein12345",
        "passw0rd1234",
        "password1234",
        "password12345",
        "password123!",
        "passwordpassword",
        "q1w2e3r4t5y6",
        "qwerty123456",
        "qwertyuiop12",
        "qwertyuiopasdfgh",
        "sepsis123456",
        "trustno1trustno1",
        "welcome12345",
        "welcome123456",
        "wardwatch123",
        "wardwatch1234",
        "hospital1234",
        "nurse1234567",
        "doctor123456",
        "zaq12wsxcde3",
        "1qaz2wsx3edc",
        "000000000000",
        "111111111111",
        "qwertyqwerty",
        "asdfghjkl123",
        "summer202424",
        "winter202424",
    }
)


class WeakPassword(ValueError):
    """The password does not meet the policy; `problems` lists every reason, for the form."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def normalize(password: str) -> str:
    """The form that is hashed and compared (NFKC: one password, one byte string)."""
    return unicodedata.normalize("NFKC", password)


def policy_problems(password: str, user_id: str) -> list[str]:
    """Every way `password` breaks the policy for `user_id` (empty: it is acceptable)."""
    text = normalize(password)
    folded = text.casefold()
    problems = []
    if len(text) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters (a passphrase is easiest)")
    if len(text) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters")
    if folded in COMMON_PASSWORDS or len(set(folded)) <= 2:
        problems.append("is one of the passwords attackers try first")
    if any(part in folded for part in _name_parts(user_id)):
        problems.append("must not contain your user name")
    return problems


def check_policy(password: str, user_id: str) -> None:
    """Raise `WeakPassword` unless `password` meets the policy for `user_id`."""
    if problems := policy_problems(password, user_id):
        raise WeakPassword(problems)


def _name_parts(user_id: str) -> set[str]:
    """The user id and its pieces of 4+ characters ("dr.lee-smith" → itself, "smith")."""
    name = user_id.casefold()
    pieces = name.replace("_", ".").replace("-", ".").replace("@", ".").split(".")
    return {name} | {piece for piece in pieces if len(piece) >= 4}


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    """The argon2id hash (PHC string, salt and parameters included) of `password`."""
    return (hasher or HASHER).hash(normalize(password))


def verify_password(stored_hash: str, password: str, hasher: PasswordHasher | None = None) -> bool:
    """Whether `password` matches `stored_hash`; a malformed hash is a mismatch, never a crash."""
    try:
        return (hasher or HASHER).verify(stored_hash, normalize(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str, hasher: PasswordHasher | None = None) -> bool:
    """Whether `stored_hash` was made with other parameters than the hasher's current ones."""
    try:
        return (hasher or HASHER).check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def burn_time(password: str, hasher: PasswordHasher | None = None) -> None:
    """Verify against a dummy hash, so an unknown user costs as long as a wrong password.

    Without it, "no such user" answers in microseconds and "wrong password" in ~0.1 s, and
    the difference tells an attacker which user ids exist.
    """
    verify_password(_dummy_hash(hasher or HASHER), password, hasher)


@cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash("not a password: equalises the time of unknown-user logins")


def cheap_hasher() -> PasswordHasher:
    """Argon2id with minimal cost: for tests and nothing else (it would make guessing cheap)."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, hash_len=16, salt_len=16)
