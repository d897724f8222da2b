"""Signing in: password, second factor, lockout with back-off, disabled accounts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from tests.security.accounts import HASHER, PASSWORD, STEP, T0, code, make_user

from wardwatch.security import login, passwords, sessions, users
from wardwatch.security.login import WRONG, Lockout, authenticate

MINUTE = timedelta(minutes=1)


@pytest.fixture
def conn(engine):
    with engine.begin() as connection:
        yield connection


@pytest.fixture
def ada(conn):
    _, enrolment = make_user(conn)
    return enrolment


def sign_in(conn, at, password=PASSWORD, second=None, user_id="n-ada", secret=None):
    second = second if second is not None else code(secret, at) if secret else "000000"
    return authenticate(conn, user_id, password, second, at=at, source="10.0.0.7", hasher=HASHER)


def fail_times(conn, n, at, user_id="n-ada"):
    for _ in range(n):
        result = sign_in(conn, at, password="not the password", user_id=user_id)
        assert not result.ok
    return result


def test_right_password_and_code_sign_in_with_a_new_session(conn, ada):
    result = sign_in(conn, T0, secret=ada.secret)
    assert result.ok and result.outcome == "success" and result.factor == "totp"
    assert result.user.user_id == "n-ada" and result.user.last_login_at == T0
    assert result.session.session.source == "10.0.0.7"
    assert sessions.resume(conn, result.session.token, at=T0).user_id == "n-ada"


def test_user_id_is_case_insensitive(conn, ada):
    assert authenticate(conn, " N-ADA", PASSWORD, code(ada.secret, T0), at=T0, source="x",
                        hasher=HASHER).ok  # fmt: skip


def test_wrong_password_says_nothing_specific(conn, ada):
    result = sign_in(conn, T0, password="not the password", secret=ada.secret)
    assert (result.ok, result.outcome, result.reason) == (False, "bad_password", WRONG)
    assert result.session is None and result.user is None
    assert users.require_user(conn, "n-ada").failed_logins == 1


def test_wrong_password_does_not_consume_the_code(conn, ada):
    sign_in(conn, T0, password="not the password", secret=ada.secret)
    assert sign_in(conn, T0, secret=ada.secret).ok


def test_wrong_code_says_nothing_specific(conn, ada):
    right = code(ada.secret, T0)
    result = sign_in(conn, T0, second=f"{(int(right) + 1) % 1_000_000:06d}")
    assert (result.ok, result.outcome, result.reason) == (False, "bad_code", WRONG)


def test_unknown_user_reads_like_a_wrong_password_and_costs_the_same(conn, monkeypatch):
    burned = []
    monkeypatch.setattr(passwords, "burn_time", lambda p, h=None: burned.append(p))
    result = sign_in(conn, T0, user_id="nobody")
    assert (result.ok, result.outcome, result.reason) == (False, "unknown_user", WRONG)
    assert burned == [PASSWORD]


def test_unknown_user_locks_like_a_real_one(conn, ada):
    real = fail_times(conn, 5, T0)
    ghost = fail_times(conn, 5, T0, user_id="nobody")
    assert real.reason == ghost.reason and "locked until 08:01" in ghost.reason
    assert sign_in(conn, T0 + STEP, user_id="nobody").reason == sign_in(conn, T0 + STEP).reason


def test_totp_replay_is_refused(conn, ada):
    first = sign_in(conn, T0, secret=ada.secret)
    again = sign_in(conn, T0 + timedelta(seconds=10), second=code(ada.secret, T0))
    assert first.ok and (again.ok, again.outcome) == (False, "bad_code")


def test_recovery_code_signs_in_once(conn, ada):
    spare = ada.recovery_codes[3]
    first = sign_in(conn, T0, second=spare)
    assert first.ok and first.factor == "recovery_code" and first.recovery_codes_left == 9
    second = sign_in(conn, T0 + MINUTE, second=spare)
    assert (second.ok, second.outcome) == (False, "bad_code")


def test_five_failures_lock_for_a_minute_even_against_the_right_password(conn, ada):
    four = fail_times(conn, 4, T0)
    assert four.reason == WRONG and four.locked_until is None
    fifth = fail_times(conn, 1, T0)
    assert fifth.locked_until == T0 + MINUTE and "locked until 08:01 UTC" in fifth.reason
    right = sign_in(conn, T0 + STEP, secret=ada.secret)
    assert (right.ok, right.outcome, right.locked_until) == (False, "locked", T0 + MINUTE)
    assert right.reason.startswith("account locked until 08:01")


def test_lock_ends_and_success_resets_the_count(conn, ada):
    fail_times(conn, 5, T0)
    assert sign_in(conn, T0 + MINUTE, secret=ada.secret).ok
    user = users.require_user(conn, "n-ada")
    assert (user.failed_logins, user.locked_until) == (0, None)
    assert fail_times(conn, 4, T0 + 2 * MINUTE).locked_until is None


def test_back_off_doubles_per_further_failure(conn, ada):
    at = T0
    fail_times(conn, 5, at)
    for minutes in (2, 4, 8, 16, 32, 60, 60):
        at = users.require_user(conn, "n-ada").locked_until  # the moment the lock ends
        result = fail_times(conn, 1, at)
        assert result.locked_until - at == timedelta(minutes=minutes)


def test_attempts_while_locked_do_not_extend_the_lock(conn, ada):
    fail_times(conn, 5, T0)
    fail_times(conn, 3, T0 + STEP)
    user = users.require_user(conn, "n-ada")
    assert (user.failed_logins, user.locked_until) == (5, T0 + MINUTE)


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(4, None), (5, 1), (6, 2), (7, 4), (10, 32), (11, 60), (1000, 60)],
)
def test_lockout_durations(failures, expected):
    duration = Lockout().duration(failures)
    assert duration == (None if expected is None else timedelta(minutes=expected))


def test_disabled_user_is_refused_but_only_told_so_with_all_credentials(conn, ada):
    users.disable_user(conn, "n-ada", at=T0, by="admin")
    wrong = sign_in(conn, T0, password="not the password")
    right = sign_in(conn, T0, secret=ada.secret)
    assert (wrong.outcome, wrong.reason) == ("bad_password", WRONG)
    assert (right.ok, right.outcome, right.session) == (False, "disabled", None)
    assert "disabled" in right.reason


def test_user_without_mfa_cannot_sign_in(conn):
    make_user(conn, "admin-al", "admin", enrol=False)
    result = sign_in(conn, T0, user_id="admin-al", second="123456")
    assert (result.ok, result.outcome) == (False, "no_mfa")


def test_old_hash_parameters_are_upgraded_at_sign_in(conn, ada):
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    before = users.credentials(conn, "n-ada").password_hash
    result = authenticate(conn, "n-ada", PASSWORD, code(ada.secret, T0), at=T0, source="x",
                          hasher=stronger)  # fmt: skip
    after = users.credentials(conn, "n-ada").password_hash
    assert result.ok and after != before and "m=16,t=2,p=1" in after
    assert passwords.verify_password(after, PASSWORD, stronger)


def test_prune_throttle_forgets_old_unknown_ids(conn):
    fail_times(conn, 2, T0, user_id="nobody")
    assert login.prune_throttle(conn, at=T0 + timedelta(hours=1)) == 0
    assert login.prune_throttle(conn, at=T0 + timedelta(days=2)) == 1


def test_an_overlong_id_is_not_read_as_its_first_64_characters(conn):
    long_id = "a" * 64
    _, enrolment = make_user(conn, long_id, "nurse")
    result = sign_in(conn, T0, user_id=long_id + "x", secret=enrolment.secret)
    assert (result.ok, result.outcome) == (False, "unknown_user")
    assert sign_in(conn, T0, user_id=long_id, secret=enrolment.secret).ok
