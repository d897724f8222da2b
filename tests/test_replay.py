"""Replay: past stays through the live pipeline reproduce the offline scores exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from wardwatch.clock import ward_now
from wardwatch.demo import sample_dir
from wardwatch.model.artifact import load_shipped_model
from wardwatch.model.predict import predict_psv
from wardwatch.replay import Replay, ReplayError, load_replay_cohort, parse_speed, plan_replay
from wardwatch.store.schema import encounters, scores

SAMPLE = sample_dir() / "physionet_sample" / "setA_sample.tar.gz"
END = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def model():
    return load_shipped_model()


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return load_replay_cohort(SAMPLE, limit=24)


def _first(cohort: pd.DataFrame, n: int) -> pd.DataFrame:
    return cohort.loc[cohort["patient_id"].isin(pd.unique(cohort["patient_id"])[:n])]


def _final_scores(engine) -> pd.Series:
    with engine.connect() as conn:
        rows = conn.execute(
            select(scores.c.encounter_id, scores.c.hour, scores.c.risk).order_by(scores.c.id)
        ).all()
    frame = pd.DataFrame(rows, columns=["encounter_id", "hour", "risk"])
    return frame.groupby(["encounter_id", "hour"])["risk"].last()


def _offline(cohort: pd.DataFrame, model, tmp_path: Path) -> pd.Series:
    """predict-psv's output files, read back: the challenge driver's view."""
    source = tmp_path / "in"
    source.mkdir()
    for pid, rows in cohort.groupby("patient_id"):
        rows.drop(columns=["patient_id", "hour"]).to_csv(source / f"{pid}.psv", sep="|",
                                                         index=False)  # fmt: skip
    predict_psv(source, tmp_path / "out", model=model)
    parts = []
    for pid, rows in cohort.groupby("patient_id"):
        written = pd.read_csv(tmp_path / "out" / f"{pid}.psv", sep="|")
        index = pd.MultiIndex.from_product([[f"{pid}-icu"], rows["ICULOS"].astype(int)])
        parts.append(pd.Series(written["PredictedProbability"].to_numpy(), index=index))
    return pd.concat(parts)


def test_replay_reproduces_predict_psv_score_for_score(pipeline, model, cohort, tmp_path):
    summary = Replay(pipeline, model, plan_replay(cohort, stagger_hours=2.0, end=END)).run()
    live = _final_scores(pipeline.engine)
    offline = _offline(cohort, model, tmp_path)
    assert summary.ingest.accepted > 0
    assert set(live.index) == set(offline.index)  # every hour of every stay, no more
    # predict-psv writes 6 decimals; the live scores are the same floats before rounding
    np.testing.assert_allclose(live.loc[offline.index], offline, atol=5e-7, rtol=0)


def test_each_hour_is_scored_once_and_only_while_on_the_ward(pipeline, model, cohort):
    plan = plan_replay(_first(cohort, 3), end=END)
    Replay(pipeline, model, plan).run()
    with pipeline.engine.connect() as conn:
        rows = conn.execute(select(scores.c.encounter_id, scores.c.hour, scores.c.as_of)).all()
        query = select(encounters.c.encounter_id, encounters.c.discharged_at)
        stays = dict(conn.execute(query).all())
    frame = pd.DataFrame(rows, columns=["encounter_id", "hour", "as_of"])
    assert not frame.duplicated(["encounter_id", "hour"]).any()
    assert (frame["as_of"] <= frame["encounter_id"].map(stays)).all()
    assert frame["as_of"].max() <= END


def test_a_tick_moves_the_ward_clock_and_the_end_restores_the_wall_clock(pipeline, model, cohort):
    plan = plan_replay(_first(cohort, 2), end=END)
    replay = Replay(pipeline, model, plan)
    tick = replay.tick(5)
    with pipeline.engine.connect() as conn:
        assert ward_now(conn) == plan.at(5) == tick.at
    replay.run(first=plan.hours)
    with pipeline.engine.connect() as conn:
        assert abs((ward_now(conn) - datetime.now(UTC)).total_seconds()) < 60


def test_opted_out_patients_are_never_scored(pipeline, model, cohort):
    from wardwatch.store.schema import patients

    plan = plan_replay(_first(cohort, 2), end=END)
    replay = Replay(pipeline, model, plan)
    replay.tick(0)  # admits the first patient
    first = str(cohort["patient_id"].iloc[0])
    with pipeline.engine.begin() as conn:
        conn.execute(patients.update().where(patients.c.patient_id == first)
                     .values(opted_out_scoring=True))  # fmt: skip
    replay.run(first=1)
    scored = {e for e, _ in _final_scores(pipeline.engine).index}
    assert f"{first}-icu" not in scored
    assert scored  # the other patient was scored


@pytest.mark.parametrize(("text", "speed"), [("3600x", 3600.0), ("60", 60.0), ("max", None)])
def test_speed_is_a_factor_or_max(text, speed):
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["fast", "-3x", "0.0x1"])
def test_a_bad_speed_says_what_to_give(text):
    with pytest.raises(ReplayError, match="3600x"):
        parse_speed(text)


def test_staggered_admissions_end_at_the_given_hour(cohort):
    plan = plan_replay(cohort, stagger_hours=1.5, end=END)
    assert plan.at(plan.hours) == END
    offsets = (plan.admitted - pd.Timestamp(plan.origin)) / pd.Timedelta(hours=1)
    assert list(offsets[:4]) == [0, 2, 3, 4]  # rounded to whole hours: 0, 1.5, 3, 4.5
