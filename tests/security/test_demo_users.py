"""The demo accounts: random credentials, reset on every run, marked demo-only."""

from __future__ import annotations

from tests.security.accounts import HASHER, T0, code

from wardwatch.security import login
from wardwatch.security.demo_users import create_demo_users, format_demo_credentials


def sign_in(engine, cred, password=None):
    with engine.begin() as conn:
        return login.authenticate(conn, cred.user_id, password or cred.password,
                                  code(cred.totp_secret, T0), at=T0, source="demo",
                                  hasher=HASHER)  # fmt: skip


def test_demo_users_can_sign_in(engine):
    creds = create_demo_users(engine, at=T0, hasher=HASHER)
    assert {(c.user_id, c.role) for c in creds} >= {("nurse.nightingale", "nurse"),
                                                    ("dr.snow", "provider")}  # fmt: skip
    assert {c.role for c in creds} == {"nurse", "provider", "auditor", "admin", "data_scientist"}
    for cred in creds:
        assert sign_in(engine, cred).ok, cred.user_id


def test_running_again_resets_the_accounts(engine):
    first = create_demo_users(engine, at=T0, hasher=HASHER)
    second = create_demo_users(engine, at=T0, hasher=HASHER)
    assert first[0].password != second[0].password
    assert first[0].totp_secret != second[0].totp_secret
    assert not sign_in(engine, second[0], password=first[0].password).ok
    assert sign_in(engine, second[0]).ok


def test_printout_is_marked_demo_only_and_has_every_secret():
    from wardwatch.security.demo_users import DemoCredential

    cred = DemoCredential("dr.snow", "provider", "Dr", "pw-123456789xyz", "SECRETBASE32",
                          "otpauth://x", ("AAAA-BBBB-CCCC-DDDD",))  # fmt: skip
    text = format_demo_credentials([cred])
    assert text.count("DEMO ONLY") == 1 and text.splitlines()[1].startswith("DEMO ONLY")
    assert "pw-123456789xyz" in text and "SECRETBASE32" in text and "AAAA-BBBB" in text
