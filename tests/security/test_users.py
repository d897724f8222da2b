"""Users: adding, finding, disabling, enabling, roles and passwords, on real databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tests.security.accounts import HASHER, PASSWORD, T0, make_user

from wardwatch.security import passwords, roles, users
from wardwatch.security.users import users as users_table


@pytest.fixture
def conn(engine):
    with engine.begin() as connection:
        yield connection


def test_added_user_has_a_hash_not_the_password(conn):
    user, _ = make_user(conn, "Dr-Lee", "physician")
    assert (user.user_id, user.role, user.disabled, user.mfa_enrolled) == (
        "dr-lee", "provider", False, True)  # fmt: skip
    stored = conn.execute(select(users_table.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert passwords.verify_password(stored, PASSWORD, HASHER)


def test_user_is_found_case_insensitively(conn):
    make_user(conn)
    assert users.get_user(conn, " N-Ada ").user_id == "n-ada"
    assert users.get_user(conn, "nobody") is None
    with pytest.raises(users.UserNotFound):
        users.require_user(conn, "nobody")


def test_ids_are_never_reused(conn):
    make_user(conn)
    with pytest.raises(users.UserExists):
        users.add_user(conn, "N-ADA", "nurse", PASSWORD, at=T0, by="t", hasher=HASHER)


@pytest.mark.parametrize("bad", ["", "a", "has space", "semi;colon", "x" * 65, ".dot-first"])
def test_invalid_user_ids_are_refused(conn, bad):
    with pytest.raises(users.InvalidUserId):
        users.add_user(conn, bad, "nurse", PASSWORD, at=T0, by="t", hasher=HASHER)


def test_weak_password_and_unknown_role_are_refused(conn):
    with pytest.raises(passwords.WeakPassword):
        users.add_user(conn, "n-ada", "nurse", "short", at=T0, by="t", hasher=HASHER)
    with pytest.raises(roles.UnknownRole):
        users.add_user(conn, "n-ada", "pharmacist", PASSWORD, at=T0, by="t", hasher=HASHER)
    with pytest.raises(roles.UnknownRole, match="nobody signs in"):
        users.add_user(conn, "n-ada", "system", PASSWORD, at=T0, by="t", hasher=HASHER)
    assert users.list_users(conn) == []


def test_naive_times_are_refused(conn):
    with pytest.raises(ValueError, match="timezone-aware"):
        users.add_user(conn, "n-ada", "nurse", PASSWORD, at=T0.replace(tzinfo=None), by="t",
                       hasher=HASHER)  # fmt: skip


def test_disable_and_enable(conn):
    make_user(conn)
    assert users.disable_user(conn, "n-ada", at=T0, by="admin").disabled
    conn.execute(users_table.update().values(failed_logins=7, locked_until=T0))
    enabled = users.enable_user(conn, "n-ada", at=T0, by="admin")
    assert not enabled.disabled and enabled.failed_logins == 0 and enabled.locked_until is None
    with pytest.raises(users.UserNotFound):
        users.disable_user(conn, "nobody", at=T0, by="admin")


def test_change_role_reports_old_and_new(conn):
    make_user(conn)
    change = users.change_role(conn, "n-ada", "physician", at=T0, by="admin")
    assert (change.old_role, change.new_role, change.by) == ("nurse", "provider", "admin")
    assert users.require_user(conn, "n-ada").actor.role == "provider"


def test_set_password_checks_policy_and_replaces_hash(conn):
    make_user(conn)
    with pytest.raises(passwords.WeakPassword):
        users.set_password(conn, "n-ada", "n-ada is me!!", at=T0, by="n-ada", hasher=HASHER)
    users.set_password(conn, "n-ada", "a brand new passphrase", at=T0, by="n-ada", hasher=HASHER)
    stored = users.credentials(conn, "n-ada").password_hash
    assert passwords.verify_password(stored, "a brand new passphrase", HASHER)
    assert not passwords.verify_password(stored, PASSWORD, HASHER)


def test_list_users_is_sorted_and_hides_secrets(conn):
    make_user(conn, "n-zoe")
    make_user(conn, "auditor-al", "governance")
    listed = users.list_users(conn)
    assert [u.user_id for u in listed] == ["auditor-al", "n-zoe"]
    assert not hasattr(listed[0], "password_hash") and not hasattr(listed[0], "totp_secret")
