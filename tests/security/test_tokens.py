"""API tokens for machine clients, with SMART on FHIR style scopes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from tests.security.accounts import T0, make_user

from wardwatch.security import tokens, users
from wardwatch.security.tokens import InvalidScope, Scope, TokenInvalid, allows, parse_scope

DAY = timedelta(days=1)


# ---------------------------------------------------------------- scopes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("system/Observation.c", Scope("system", "Observation", frozenset("c"))),
        ("user/Patient.rs", Scope("user", "Patient", frozenset("rs"))),
        ("system/*.cruds", Scope("system", "*", frozenset("cruds"))),
        ("user/Observation.read", Scope("user", "Observation", frozenset("rs"))),
        ("system/Observation.write", Scope("system", "Observation", frozenset("cud"))),
        ("patient/Observation.*", Scope("patient", "Observation", frozenset("cruds"))),
    ],
)
def test_scopes_parse(text, expected):
    assert parse_scope(text) == expected


@pytest.mark.parametrize(
    "text",
    ["system/Observation.rc", "system/Observation.x", "system/Observation.", "app/Patient.r",
     "Observation.r", "system/observation.r", "system/Observation.rr", "openid", "",
     "system/Observation.r?category=vital-signs"],
)  # fmt: skip
def test_malformed_scopes_are_refused(text):
    with pytest.raises(InvalidScope):
        parse_scope(text)


def test_scope_prints_back_in_v2_form():
    assert str(parse_scope("user/Observation.read")) == "user/Observation.rs"


def test_allows_checks_resource_and_action():
    scopes = ["system/Observation.c", "system/RiskAssessment.rs"]
    assert allows(scopes, "Observation", "c")
    assert not allows(scopes, "Observation", "r")
    assert not allows(scopes, "Patient", "c")
    assert allows(scopes, "RiskAssessment", "s")
    assert allows(["system/*.r"], "Patient", "r") and not allows(["system/*.r"], "Patient", "d")
    assert not allows([], "Patient", "r")


def test_allows_checks_context_when_asked():
    assert allows(["user/Patient.r"], "Patient", "r", context="user")
    assert not allows(["user/Patient.r"], "Patient", "r", context="system")


def test_allows_refuses_unknown_actions():
    with pytest.raises(ValueError, match="action"):
        allows(["system/*.cruds"], "Patient", "read")


# ---------------------------------------------------------------- stored tokens


@pytest.fixture
def conn(engine):
    with engine.begin() as connection:
        make_user(connection, "n-ada", "nurse", enrol=False)
        yield connection


def issue(conn, scopes="system/Observation.c", **kwargs):
    kwargs.setdefault("at", T0)
    return tokens.issue_token(conn, client="lab-interface", scopes=scopes, by="admin", **kwargs)


def test_issued_token_authenticates_and_only_its_hash_is_stored(conn):
    issued = issue(conn, "system/Observation.c system/RiskAssessment.r")
    assert issued.token.startswith("wwt_") and len(issued.token) >= 47
    row = conn.execute(select(tokens.api_tokens)).one()
    assert issued.token not in [str(value) for value in row]
    record = tokens.authenticate_token(conn, issued.token, at=T0 + DAY)
    assert record.token_id == issued.record.token_id and record.client == "lab-interface"
    assert record.allows("Observation", "c") and not record.allows("Observation", "r")
    assert record.expires_at == T0 + tokens.DEFAULT_LIFETIME


def test_last_use_is_recorded(conn):
    issued = issue(conn)
    tokens.authenticate_token(conn, issued.token, at=T0 + DAY)
    assert tokens.list_tokens(conn)[0].last_used_at == T0 + DAY


@pytest.mark.parametrize("token", [None, "", "wwt_made-up"])
def test_unknown_tokens_are_refused(conn, token):
    issue(conn)
    with pytest.raises(TokenInvalid, match="unknown"):
        tokens.authenticate_token(conn, token, at=T0)


def test_expired_token_is_refused(conn):
    issued = issue(conn, lifetime=7 * DAY)
    tokens.authenticate_token(conn, issued.token, at=T0 + 7 * DAY - timedelta(seconds=1))
    with pytest.raises(TokenInvalid, match="expired"):
        tokens.authenticate_token(conn, issued.token, at=T0 + 7 * DAY)


def test_revoked_token_is_refused(conn):
    issued, other = issue(conn), issue(conn)
    assert tokens.revoke_token(conn, issued.record.token_id, at=T0 + DAY, by="admin")
    assert not tokens.revoke_token(conn, issued.record.token_id, at=T0 + DAY, by="admin")
    with pytest.raises(TokenInvalid, match="revoked") as caught:
        tokens.authenticate_token(conn, issued.token, at=T0 + DAY)
    assert isinstance(caught.value, PermissionError)
    tokens.authenticate_token(conn, other.token, at=T0 + DAY)


def test_user_token_is_bounded_by_its_owners_role(conn):
    issued = issue(conn, "user/Patient.r user/Observation.c", user_id="n-ada")
    record = tokens.authenticate_token(conn, issued.token, at=T0)
    assert record.role == "nurse"
    assert record.allows("Patient", "r")
    assert not record.allows("Observation", "c")  # a nurse may not ingest
    users.change_role(conn, "n-ada", "admin", at=T0, by="admin")
    assert not tokens.authenticate_token(conn, issued.token, at=T0).allows("Patient", "r")


def test_user_token_dies_with_a_disabled_owner(conn):
    issued = issue(conn, "user/Patient.r", user_id="n-ada")
    users.disable_user(conn, "n-ada", at=T0, by="admin")
    with pytest.raises(TokenInvalid, match="disabled"):
        tokens.authenticate_token(conn, issued.token, at=T0)


def test_revoke_tokens_of_a_user(conn):
    mine = [issue(conn, "user/Patient.r", user_id="n-ada") for _ in range(2)]
    system = issue(conn)
    assert tokens.revoke_tokens_of(conn, "n-ada", at=T0, by="admin") == 2
    for issued in mine:
        with pytest.raises(TokenInvalid):
            tokens.authenticate_token(conn, issued.token, at=T0)
    tokens.authenticate_token(conn, system.token, at=T0)


@pytest.mark.parametrize(
    ("scopes", "kwargs", "problem"),
    [
        ("patient/Observation.r", {}, "launch context"),
        ("system/Medication.r", {}, "unknown resource"),
        ("user/Patient.r", {}, "user/ scopes need"),
        ("", {}, "at least one scope"),
        ("system/Observation.c", {"lifetime": timedelta(days=400)}, "lifetime"),
        ("system/Observation.c", {"lifetime": timedelta(0)}, "lifetime"),
    ],
)
def test_tokens_wardwatch_cannot_honour_are_refused(conn, scopes, kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        issue(conn, scopes, **kwargs)
    assert tokens.list_tokens(conn) == []


def test_token_for_an_unknown_user_is_refused(conn):
    with pytest.raises(users.UserNotFound):
        issue(conn, "user/Patient.r", user_id="nobody")
