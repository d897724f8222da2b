"""Consent: decisions are recorded with who and why, kept, and obeyed by scoring and exports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from tests.security.samples import ingest_samples

from wardwatch.ingest.files import ingest_path
from wardwatch.model.artifact import load_shipped_model
from wardwatch.scoring import OPTED_OUT, score_stays
from wardwatch.security.consent import (
    ConsentState,
    PatientNotFound,
    consent_decisions,
    consent_of,
    set_consent,
    training_stays,
)
from wardwatch.store.schema import encounters, patients

AT = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
WHO = {"by": "alice", "role": "nurse", "reason": "patient asked at the bedside"}


@pytest.fixture(scope="module")
def model():
    return load_shipped_model()


@pytest.fixture
def ids(pipeline, tmp_path):
    return ingest_samples(pipeline, tmp_path / "psv")


def _flags(conn, patient_id):
    query = select(patients.c.opted_out_scoring, patients.c.opted_out_training).where(
        patients.c.patient_id == patient_id
    )
    return tuple(conn.execute(query).one())


def test_a_decision_sets_the_flags_and_is_kept(engine, pipeline, ids):
    with engine.begin() as conn:
        decision = set_consent(conn, ids[0], scoring=False, training=None, at=AT, **WHO)
    assert decision.state == ConsentState(scoring=False, training=True)
    assert decision.before == ConsentState(True, True)
    assert (decision.recorded_by, decision.role, decision.reason) == tuple(WHO.values())
    with engine.connect() as conn:
        assert _flags(conn, ids[0]) == (True, False)
        assert _flags(conn, ids[1]) == (False, False)  # nobody else touched
        found = consent_of(conn, ids[0])
    assert found.state == decision.state
    assert [d.id for d in found.history] == [decision.id]
    assert found.history[0].at == AT


def test_history_is_append_only_and_the_last_decision_is_the_state(engine, pipeline, ids):
    steps = [(False, None), (None, False), (True, None), (None, True)]
    with engine.begin() as conn:
        for n, (scoring, training) in enumerate(steps):
            at = AT + timedelta(hours=n)
            set_consent(conn, ids[0], scoring=scoring, training=training, at=at, **WHO)
    with engine.connect() as conn:
        found = consent_of(conn, ids[0])
        rows = conn.execute(select(func.count()).select_from(consent_decisions)).scalar()
    assert rows == 4
    states = [(d.scoring, d.training) for d in found.history]
    assert states == [(False, True), (False, False), (True, False), (True, True)]
    assert [d.before for d in found.history] == [None, *(d.state for d in found.history[:-1])]
    assert found.state == ConsentState(True, True)


def test_the_flags_and_the_history_change_together_or_not_at_all(engine, pipeline, ids):
    with pytest.raises(RuntimeError), engine.begin() as conn:
        set_consent(conn, ids[0], scoring=False, training=False, at=AT, **WHO)
        raise RuntimeError("crash before commit")
    with engine.connect() as conn:
        assert _flags(conn, ids[0]) == (False, False)
        assert consent_of(conn, ids[0]).history == ()


def test_unknown_patient_is_a_lookup_error(engine):
    with engine.begin() as conn, pytest.raises(LookupError, match="nobody"):
        set_consent(conn, "nobody", scoring=False, training=None, at=AT, **WHO)
    with engine.connect() as conn, pytest.raises(PatientNotFound):
        consent_of(conn, "nobody")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reason": "  "}, "reason is required"),
        ({"by": ""}, "by is required"),
        ({"role": ""}, "role is required"),
        ({"at": datetime(2024, 3, 1, 9, 30)}, "timezone-aware"),
        ({"scoring": None}, "nothing to record"),
    ],
)
def test_an_incomplete_decision_is_refused(engine, pipeline, ids, change, message):
    args = {"scoring": False, "training": None, "at": AT, **WHO, **change}
    with engine.begin() as conn, pytest.raises(ValueError, match=message):
        set_consent(conn, ids[0], **args)
    with engine.connect() as conn:
        assert consent_of(conn, ids[0]).history == ()


def test_opted_out_stays_are_not_scored_until_the_patient_opts_back_in(
    engine, pipeline, ids, model
):
    stays = [f"{pid}-icu" for pid in ids]
    with engine.begin() as conn:
        set_consent(conn, ids[0], scoring=False, training=None, at=AT, **WHO)
        out = score_stays(conn, model, stays)
    assert out.skipped == {stays[0]: OPTED_OUT}
    assert set(out.scores["encounter_id"]) == set(stays[1:])
    assert stays[0] not in set(out.wide["encounter_id"])  # its record was not even read

    with engine.begin() as conn:
        set_consent(conn, ids[0], scoring=True, training=None, at=AT, **WHO)
        again = score_stays(conn, model, stays)
    assert again.skipped == {}
    assert set(again.scores["encounter_id"]) == set(stays)


def test_a_training_opt_out_does_not_stop_scoring(engine, pipeline, ids, model):
    with engine.begin() as conn:
        set_consent(conn, ids[0], scoring=None, training=False, at=AT, **WHO)
        out = score_stays(conn, model, [f"{ids[0]}-icu"])
    assert out.skipped == {}
    assert len(out) == 1


def test_ingesting_the_patient_again_keeps_the_opt_out(engine, pipeline, ids, tmp_path):
    with engine.begin() as conn:
        set_consent(conn, ids[0], scoring=False, training=False, at=AT, **WHO)
    ingest_path(pipeline, tmp_path / "psv")
    with engine.connect() as conn:
        assert _flags(conn, ids[0]) == (True, True)


def test_training_stays_leave_out_training_opt_outs_only(engine, pipeline, ids):
    with engine.begin() as conn:
        set_consent(conn, ids[0], scoring=None, training=False, at=AT, **WHO)
        set_consent(conn, ids[1], scoring=False, training=None, at=AT, **WHO)
        kept, excluded = training_stays(conn)
    assert excluded == 1
    assert f"{ids[0]}-icu" not in kept
    assert f"{ids[1]}-icu" in kept  # a scoring opt-out alone is not a training opt-out
    assert len(kept) == len(ids) - 1


def test_training_stays_since_a_moment(engine, pipeline, ids):
    later = datetime(2020, 6, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            update(encounters).where(encounters.c.patient_id == ids[0]).values(admitted_at=later)
        )
        assert training_stays(conn, since=later) == ([f"{ids[0]}-icu"], 0)
        assert len(training_stays(conn)[0]) == len(ids)
