"""Server-side sessions: idle timeout, absolute lifetime, revocation, CSRF, the cookie."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from starlette.responses import Response
from tests.security.accounts import T0, make_user

from wardwatch.security import sessions, users
from wardwatch.security.sessions import CsrfMismatch, SessionInvalid, SessionPolicy

MINUTE = timedelta(minutes=1)


@pytest.fixture
def conn(engine):
    with engine.begin() as connection:
        make_user(connection, "n-ada", "nurse", enrol=False)
        make_user(connection, "dr-lee", "provider", enrol=False)
        yield connection


def new(conn, user_id="n-ada", at=T0, policy=sessions.DEFAULT_POLICY):
    return sessions.create_session(conn, user_id, at=at, source="10.0.0.7", policy=policy)


def reason(conn, token, at, **kwargs):
    with pytest.raises(SessionInvalid) as caught:
        sessions.resume(conn, token, at=at, **kwargs)
    return caught.value.reason


def test_new_session_resumes_as_its_user(conn):
    created = new(conn)
    session = sessions.resume(conn, created.token, at=T0 + MINUTE)
    assert (session.user_id, session.role, session.actor.role) == ("n-ada", "nurse", "nurse")
    assert session.expires_at == T0 + timedelta(hours=12)
    assert len(created.token) >= 43  # 32 random bytes, url-safe base64


def test_only_a_hash_of_the_token_is_stored(conn):
    created = new(conn)
    stored = conn.execute(select(sessions.sessions)).one()
    assert created.token not in [str(value) for value in stored]
    assert stored.token_hash == sessions.hash_token(created.token) == created.session.session_id


def test_each_session_gets_its_own_token(conn):
    assert new(conn).token != new(conn).token


def test_idle_for_fifteen_minutes_ends_the_session(conn):
    created = new(conn)
    sessions.resume(conn, created.token, at=T0 + 14 * MINUTE)  # activity resets the clock
    sessions.resume(conn, created.token, at=T0 + 28 * MINUTE)
    assert reason(conn, created.token, at=T0 + 43 * MINUTE) == "idle"


def test_polling_does_not_keep_a_session_alive(conn):
    created = new(conn)
    for minute in range(1, 15):
        sessions.resume(conn, created.token, at=T0 + minute * MINUTE, touch=False)
    assert reason(conn, created.token, at=T0 + 15 * MINUTE) == "idle"


def test_activity_is_written_at_most_every_thirty_seconds(conn):
    created = new(conn)
    seen = sessions.resume(conn, created.token, at=T0 + timedelta(seconds=10)).last_seen_at
    assert seen == T0
    assert sessions.resume(conn, created.token, at=T0 + MINUTE).last_seen_at == T0 + MINUTE


def test_twelve_hours_end_even_an_active_session(conn):
    created = new(conn)
    at = T0
    while at + 10 * MINUTE < T0 + timedelta(hours=12):
        at += 10 * MINUTE
        sessions.resume(conn, created.token, at=at)
    assert reason(conn, created.token, at=T0 + timedelta(hours=12)) == "lifetime"


def test_policy_is_configurable(conn):
    created = new(conn, policy=SessionPolicy(idle=MINUTE, lifetime=timedelta(hours=1)))
    policy = SessionPolicy(idle=MINUTE)
    assert reason(conn, created.token, at=T0 + MINUTE, policy=policy) == "idle"


def test_sign_out_ends_one_session_only(conn):
    first, second = new(conn), new(conn)
    assert sessions.revoke(conn, first.token, at=T0 + MINUTE)
    assert not sessions.revoke(conn, first.token, at=T0 + MINUTE)  # already ended
    assert reason(conn, first.token, at=T0 + MINUTE) == "revoked"
    sessions.resume(conn, second.token, at=T0 + MINUTE)


def test_sign_out_everywhere_ends_all_of_one_users_sessions(conn):
    mine = [new(conn), new(conn, at=T0 + MINUTE)]
    theirs = new(conn, "dr-lee")
    assert sessions.revoke_all(conn, "N-Ada", at=T0 + 2 * MINUTE) == 2
    assert [reason(conn, s.token, at=T0 + 2 * MINUTE) for s in mine] == ["revoked"] * 2
    sessions.resume(conn, theirs.token, at=T0 + 2 * MINUTE)
    assert sessions.revoke_all(conn, "n-ada", at=T0 + 3 * MINUTE) == 0


def test_revoke_by_id_from_the_list_of_active_sessions(conn):
    old, current = new(conn), new(conn, at=T0 + MINUTE)
    listed = sessions.active_sessions(conn, "n-ada", at=T0 + 2 * MINUTE)
    assert [s.session_id for s in listed] == [current.session.session_id, old.session.session_id]
    assert sessions.revoke_by_id(conn, old.session.session_id, at=T0 + 2 * MINUTE)
    later = sessions.active_sessions(conn, "n-ada", at=T0 + 3 * MINUTE)
    assert [s.session_id for s in later] == [current.session.session_id]
    assert sessions.active_sessions(conn, "n-ada", at=T0 + timedelta(hours=1)) == []


def test_disabled_user_sessions_stop_at_the_next_request(conn):
    created = new(conn)
    users.disable_user(conn, "n-ada", at=T0 + MINUTE, by="admin")
    assert reason(conn, created.token, at=T0 + MINUTE) == "disabled"


@pytest.mark.parametrize("token", [None, "", "made-up", "x" * 500, "é"])
def test_unknown_tokens_are_refused(conn, token):
    new(conn)
    assert reason(conn, token, at=T0) == "unknown"


def test_session_invalid_is_a_permission_error():
    assert issubclass(SessionInvalid, PermissionError)
    assert issubclass(CsrfMismatch, PermissionError)


# ---------------------------------------------------------------- CSRF


def test_csrf_token_belongs_to_its_session(conn):
    mine, theirs = new(conn), new(conn, "dr-lee")
    assert mine.csrf_token == sessions.csrf_token(mine.token) != theirs.csrf_token
    assert sessions.csrf_ok(mine.token, mine.csrf_token)
    sessions.require_csrf(mine.token, mine.csrf_token)


@pytest.mark.parametrize("submitted", [None, "", "0" * 64, "é" * 64])
def test_csrf_mismatch_is_refused(conn, submitted):
    mine = new(conn)
    assert not sessions.csrf_ok(mine.token, submitted)
    with pytest.raises(CsrfMismatch):
        sessions.require_csrf(mine.token, submitted)


def test_another_sessions_csrf_token_is_refused(conn):
    mine, theirs = new(conn), new(conn, "dr-lee")
    with pytest.raises(CsrfMismatch):
        sessions.require_csrf(mine.token, theirs.csrf_token)


def test_csrf_token_is_not_the_session_token(conn):
    mine = new(conn)
    assert mine.token not in mine.csrf_token and len(mine.csrf_token) == 64


# ---------------------------------------------------------------- the cookie


def test_cookie_is_secure_httponly_samesite_and_host_only():
    response = Response()
    response.set_cookie(**sessions.cookie_kwargs("opaque"))
    header = response.headers["set-cookie"]
    assert header.startswith("__Host-wardwatch_session=opaque;")
    for attribute in ("HttpOnly", "Path=/", "SameSite=lax", "Secure"):
        assert attribute in header
    assert "Domain" not in header and "Max-Age" not in header and "expires" not in header


def test_cookie_deletion_uses_the_same_attributes():
    response = Response()
    response.delete_cookie(**sessions.delete_cookie_kwargs())
    header = response.headers["set-cookie"]
    assert header.startswith('__Host-wardwatch_session="";') and "Secure" in header
    assert "Max-Age=0" in header
