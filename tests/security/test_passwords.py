"""Password policy and argon2id hashing."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from wardwatch.security import passwords
from wardwatch.security.passwords import WeakPassword, check_policy, policy_problems

CHEAP = passwords.cheap_hasher()


def test_production_parameters_hash_and_verify():
    """The real parameters, once (about 0.1 s a hash): argon2id, 64 MiB, 3 passes."""
    stored = passwords.hash_password("a long passphrase, really")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert "passphrase" not in stored
    assert passwords.verify_password(stored, "a long passphrase, really")
    assert not passwords.verify_password(stored, "a long passphrase, really!")
    assert not passwords.needs_rehash(stored)


def test_same_password_hashes_differently_each_time():
    first = passwords.hash_password("same password twice", CHEAP)
    second = passwords.hash_password("same password twice", CHEAP)
    assert first != second
    assert passwords.verify_password(first, "same password twice", CHEAP)
    assert passwords.verify_password(second, "same password twice", CHEAP)


def test_hash_made_with_cheaper_parameters_needs_rehash():
    stored = passwords.hash_password("same password twice", CHEAP)
    assert passwords.needs_rehash(stored)  # against the production hasher
    assert not passwords.needs_rehash(stored, CHEAP)
    assert passwords.needs_rehash("not a hash", CHEAP)


def test_malformed_hash_is_a_mismatch_not_a_crash():
    assert not passwords.verify_password("not a hash", "whatever it is", CHEAP)
    assert not passwords.verify_password("", "whatever it is", CHEAP)


def test_unicode_forms_of_one_password_are_one_password():
    composed, decomposed = "caf\u00e9 au lait, please", "cafe\u0301 au lait, please"
    stored = passwords.hash_password(composed, CHEAP)
    assert passwords.verify_password(stored, decomposed, CHEAP)


def test_burn_time_verifies_against_a_dummy_hash(monkeypatch):
    calls = []
    real = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password", lambda *a: calls.append(a) or real(*a))
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    passwords.burn_time("guess", hasher)
    ((dummy, password, used),) = calls
    assert password == "guess" and used is hasher and dummy.startswith("$argon2id$")


def test_a_long_passphrase_is_accepted():
    check_policy("tea at the nurses station", "n-ada")


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short pass", "at least 12"),
        ("x" * 300, "at most 256"),
        ("Password1234", "attackers try first"),
        ("QWERTY123456", "attackers try first"),
        ("abababababab", "attackers try first"),
        ("my name is n-ada ok", "user name"),
        ("im dr.lee-smith really", "user name"),
        ("SMITH is my password", "user name"),
    ],
)
def test_policy_refuses(password, problem):
    user = "dr.lee-smith" if "smith" in password.lower() else "n-ada"
    assert any(problem in p for p in policy_problems(password, user))
    with pytest.raises(WeakPassword, match=problem):
        check_policy(password, user)


def test_every_problem_is_reported_at_once():
    with pytest.raises(WeakPassword) as caught:
        check_policy("adam", "adam")
    assert len(caught.value.problems) == 2  # too short and contains the user id
    assert isinstance(caught.value, ValueError)
