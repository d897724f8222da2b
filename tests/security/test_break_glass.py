"""Break the glass: reasoned, time-limited, one encounter, and queued for review."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.security.accounts import T0, make_user

from wardwatch.alerts.workflow import Actor, NotPermitted
from wardwatch.security import break_glass as bg

ADMIN = Actor("admin-al", "admin")
AUDITOR = Actor("auditor-bo", "auditor")
REASON = "restoring the feed during a code blue on 4 West"


@pytest.fixture
def conn(engine):
    with engine.begin() as connection:
        for actor in (ADMIN, AUDITOR, Actor("ds-cy", "data_scientist"), Actor("n-ada", "nurse")):
            make_user(connection, actor.user_id, actor.role, enrol=False)
        yield connection


def test_admin_reads_a_patient_only_after_breaking_the_glass(conn):
    assert not bg.may_read_patient(conn, ADMIN, "e1", T0)
    grant = bg.break_glass(conn, ADMIN, "e1", REASON, T0)
    assert (grant.user_id, grant.role, grant.reason, grant.reviewed) == (
        "admin-al", "admin", REASON, False)  # fmt: skip
    assert grant.expires_at == T0 + timedelta(hours=1)
    assert bg.may_read_patient(conn, ADMIN, "e1", T0 + timedelta(minutes=59))
    assert not bg.may_read_patient(conn, ADMIN, "e2", T0)  # one encounter only
    assert not bg.may_read_patient(conn, ADMIN, "e1", T0 + timedelta(hours=1))  # an hour only


def test_a_user_record_can_break_the_glass_too(conn):
    from wardwatch.security import users

    grant = bg.break_glass(conn, users.require_user(conn, "admin-al"), "e1", REASON, T0)
    assert grant.user_id == "admin-al"


@pytest.mark.parametrize("reason", ["", "   ", "because", "x  y  z  w"])
def test_a_reason_of_ten_characters_is_required(conn, reason):
    with pytest.raises(ValueError, match="at least 10"):
        bg.break_glass(conn, ADMIN, "e1", reason, T0)
    assert bg.pending_break_glass_reviews(conn) == []


def test_roles_without_break_glass_are_refused(conn):
    with pytest.raises(NotPermitted):
        bg.break_glass(conn, Actor("ds-cy", "data_scientist"), "e1", REASON, T0)
    with pytest.raises(NotPermitted):
        bg.break_glass(conn, AUDITOR, "e1", REASON, T0)


def test_a_nurse_reads_patients_without_a_grant(conn):
    assert bg.may_read_patient(conn, Actor("n-ada", "nurse"), "e1", T0)


def test_grants_wait_for_review_until_an_auditor_reviews_them(conn):
    first = bg.break_glass(conn, ADMIN, "e1", REASON, T0)
    second = bg.break_glass(conn, ADMIN, "e2", REASON, T0 + timedelta(minutes=5))
    assert [g.grant_id for g in bg.pending_break_glass_reviews(conn)] == [
        first.grant_id, second.grant_id]  # fmt: skip
    reviewed = bg.review(conn, first.grant_id, AUDITOR, "appropriate: feed outage", T0)
    assert (reviewed.reviewed, reviewed.reviewed_by) == (True, "auditor-bo")
    assert [g.grant_id for g in bg.pending_break_glass_reviews(conn)] == [second.grant_id]


def test_review_needs_the_permission_a_note_and_someone_else(conn):
    grant = bg.break_glass(conn, ADMIN, "e1", REASON, T0)
    with pytest.raises(NotPermitted):
        bg.review(conn, grant.grant_id, ADMIN, "looks fine to me", T0)
    with pytest.raises(ValueError, match="review found"):
        bg.review(conn, grant.grant_id, AUDITOR, "  ", T0)
    with pytest.raises(LookupError):
        bg.review(conn, 999, AUDITOR, "no such grant", T0)
    assert len(bg.pending_break_glass_reviews(conn)) == 1


def test_nobody_reviews_their_own_grant(monkeypatch, conn):
    from wardwatch.security import roles

    both = dict(roles.MATRIX) | {"admin": roles.MATRIX["admin"] | {"break_glass.review"}}
    monkeypatch.setattr(roles, "MATRIX", both)
    grant = bg.break_glass(conn, ADMIN, "e1", REASON, T0)
    with pytest.raises(NotPermitted, match="own"):
        bg.review(conn, grant.grant_id, ADMIN, "it was me, and fine", T0)


def test_refused_attempts_are_read_back_from_the_audit_trail_newest_first(conn):
    with pytest.raises(ValueError):
        bg.break_glass(conn, ADMIN, "e1", "because", T0)  # refused now, by the wall clock
    for minutes, who in ((1, ADMIN), (2, Actor("ds-cy", "data_scientist"))):
        bg.refuse(conn, who, f"e{minutes}", "not allowed", reason=REASON,
                  at=T0 + timedelta(minutes=minutes))  # fmt: skip
    bg.break_glass(conn, ADMIN, "e3", REASON, T0)  # granted: no refusal
    found = bg.refused_attempts(conn, since=T0)
    assert [(r.user_id, r.role, r.encounter_id) for r in found] == [
        ("admin-al", "admin", "e1"), ("ds-cy", "data_scientist", "e2"),
        ("admin-al", "admin", "e1")]  # fmt: skip
    assert "at least 10" in found[0].why and found[0].reason == "because"
    assert (found[1].why, found[1].reason, found[1].at) == (
        "not allowed", REASON, T0 + timedelta(minutes=2))  # fmt: skip
    assert [r.encounter_id for r in bg.refused_attempts(conn, since=T0, limit=1)] == ["e1"]
    assert [r.user_id for r in bg.refused_attempts(conn, since=T0 + timedelta(minutes=1))] == [
        "admin-al", "ds-cy"]  # fmt: skip
    assert bg.refusals_by_person(conn, since=T0) == [("admin-al", 2), ("ds-cy", 1)]
