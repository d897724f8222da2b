"""TOTP enrolment and verification, recovery codes, and replay protection."""

from __future__ import annotations

import re

import pyotp
import pytest
from sqlalchemy import select
from tests.security.accounts import STEP, T0, code, make_user

from wardwatch.security import mfa
from wardwatch.security.mfa import recovery_codes

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture
def conn(engine):
    with engine.begin() as connection:
        yield connection


# ---------------------------------------------------------------- pure


def test_codes_of_this_step_and_one_either_side_are_accepted():
    now = mfa.step_at(T0)
    for offset in (-1, 0, 1):
        assert mfa.matching_step(SECRET, code(SECRET, T0 + offset * STEP), T0, None) == now + offset


def test_codes_two_steps_away_are_refused():
    assert mfa.matching_step(SECRET, code(SECRET, T0 - 2 * STEP), T0, None) is None
    assert mfa.matching_step(SECRET, code(SECRET, T0 + 2 * STEP), T0, None) is None


def test_steps_up_to_the_last_accepted_one_are_refused():
    now = mfa.step_at(T0)
    assert mfa.matching_step(SECRET, code(SECRET, T0), T0, last_step=now) is None
    assert mfa.matching_step(SECRET, code(SECRET, T0 - STEP), T0, last_step=now - 1) is None
    assert mfa.matching_step(SECRET, code(SECRET, T0 + STEP), T0, last_step=now) == now + 1


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "12 34 5x"])
def test_malformed_codes_are_refused(typed):
    assert mfa.matching_step(SECRET, typed, T0, None) is None


def test_a_code_typed_with_a_space_is_accepted():
    typed = code(SECRET, T0)
    assert mfa.matching_step(SECRET, f"{typed[:3]} {typed[3:]}", T0, None) is not None


def test_new_secret_is_random_base32_of_160_bits():
    first, second = mfa.new_secret(), mfa.new_secret()
    assert first != second and len(first) == 32 and re.fullmatch(r"[A-Z2-7]+", first)


def test_provisioning_uri_names_the_issuer_and_the_user():
    uri = mfa.provisioning_uri(SECRET, "dr.lee")
    parsed = pyotp.parse_uri(uri)
    assert uri.startswith("otpauth://totp/wardwatch:dr.lee?")
    assert parsed.secret == SECRET and parsed.issuer == "wardwatch"
    assert parsed.interval == 30 and parsed.digits == 6


def test_qr_code_is_a_local_svg_without_external_references():
    svg = mfa.qr_svg(mfa.provisioning_uri(SECRET, "dr.lee"))
    assert svg.startswith("<?xml") and "<svg" in svg and "<path" in svg
    assert "href" not in svg and "<image" not in svg and SECRET not in svg
    assert svg != mfa.qr_svg(mfa.provisioning_uri(mfa.new_secret(), "dr.lee"))


def test_recovery_codes_are_ten_distinct_readable_codes():
    codes = mfa.new_recovery_codes()
    assert len(codes) == 10 == len(set(codes))
    for one in codes:
        assert re.fullmatch(r"([2-9A-HJ-NP-Z]{4}-){3}[2-9A-HJ-NP-Z]{4}", one)


def test_recovery_code_hash_ignores_case_dashes_and_spaces():
    assert mfa.hash_recovery_code("ABCD-EFGH-JKLM-NPQR") == mfa.hash_recovery_code(
        " abcd efgh jklmnpqr "
    )
    assert mfa.hash_recovery_code("ABCD-EFGH-JKLM-NPQR") != mfa.hash_recovery_code(
        "ABCD-EFGH-JKLM-NPQS"
    )


# ---------------------------------------------------------------- stored


def test_enrolment_stores_hashes_of_recovery_codes_never_the_codes(conn):
    _, enrolment = make_user(conn)
    stored = set(conn.execute(select(recovery_codes.c.code_hash)).scalars())
    assert len(stored) == 10
    assert stored == {mfa.hash_recovery_code(c) for c in enrolment.recovery_codes}
    assert not stored & set(enrolment.recovery_codes)


def test_totp_code_is_accepted_once(conn):
    _, enrolment = make_user(conn)
    now = code(enrolment.secret, T0)
    accepted = mfa.verify_second_factor(conn, "n-ada", now, at=T0)
    assert accepted == mfa.SecondFactor("totp", 10)
    assert mfa.verify_second_factor(conn, "n-ada", now, at=T0) is None  # replay
    assert mfa.verify_second_factor(conn, "n-ada", now, at=T0 + STEP) is None  # still in window


def test_after_a_later_code_earlier_ones_are_refused(conn):
    _, enrolment = make_user(conn)
    later, earlier = code(enrolment.secret, T0 + STEP), code(enrolment.secret, T0)
    assert mfa.verify_second_factor(conn, "n-ada", later, at=T0) is not None
    assert mfa.verify_second_factor(conn, "n-ada", earlier, at=T0) is None
    assert mfa.verify_second_factor(conn, "n-ada", code(enrolment.secret, T0 + 2 * STEP),
                                    at=T0 + 2 * STEP) is not None  # fmt: skip


def test_wrong_totp_code_is_refused(conn):
    _, enrolment = make_user(conn)
    right = code(enrolment.secret, T0)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    assert mfa.verify_second_factor(conn, "n-ada", wrong, at=T0) is None


def test_recovery_code_works_once(conn):
    _, enrolment = make_user(conn)
    first = enrolment.recovery_codes[0]
    assert mfa.verify_second_factor(conn, "n-ada", first.lower(), at=T0) == mfa.SecondFactor(
        "recovery_code", 9
    )
    assert mfa.verify_second_factor(conn, "n-ada", first, at=T0 + STEP) is None
    assert mfa.recovery_codes_left(conn, "n-ada") == 9


def test_another_users_recovery_code_is_refused(conn):
    _, ada = make_user(conn)
    make_user(conn, "dr-lee", "provider")
    assert mfa.verify_second_factor(conn, "dr-lee", ada.recovery_codes[0], at=T0) is None


def test_reset_replaces_secret_and_recovery_codes(conn):
    _, old = make_user(conn)
    new = mfa.reset_mfa(conn, "n-ada", at=T0, by="admin")
    assert new.secret != old.secret
    assert mfa.verify_second_factor(conn, "n-ada", old.recovery_codes[0], at=T0) is None
    assert mfa.verify_second_factor(conn, "n-ada", code(old.secret, T0), at=T0) is None
    assert mfa.verify_second_factor(conn, "n-ada", code(new.secret, T0), at=T0) is not None
    assert mfa.recovery_codes_left(conn, "n-ada") == 10


def test_user_without_enrolment_has_no_second_factor(conn):
    make_user(conn, enrol=False)
    assert mfa.verify_second_factor(conn, "n-ada", code(SECRET, T0), at=T0) is None
    assert mfa.verify_second_factor(conn, "nobody", code(SECRET, T0), at=T0) is None
