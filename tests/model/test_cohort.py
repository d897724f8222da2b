"""`score_cohort` is `model.predict(build_features(wide))`, chunk by chunk, on every core."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wardwatch.features import FeatureError, build_features
from wardwatch.model import cohort
from wardwatch.model.artifact import load_shipped_model
from wardwatch.model.cohort import ChunkPlan, score_cohort


@pytest.fixture(scope="module")
def shipped():
    return load_shipped_model()


@pytest.fixture(scope="module")
def one_shot(shipped, sample_wide):
    return shipped.predict(build_features(sample_wide))


@pytest.fixture(scope="module")
def shuffled(sample_wide):
    return sample_wide.sample(frac=1.0, random_state=7)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("chunk_rows", [cohort.CHUNK_ROWS, 1500])
def test_equals_the_one_shot_path_exactly(shipped, sample_wide, one_shot, workers, chunk_rows):
    scored = score_cohort(sample_wide, shipped, workers=workers, chunk_rows=chunk_rows)
    pd.testing.assert_frame_equal(scored, one_shot, check_exact=True)


def test_two_workers_means_two_processes(shipped, sample_wide, one_shot, monkeypatch):
    started = []

    class Counted(cohort.Workers):
        def __init__(self, count: int, *args: object) -> None:
            started.append(count)
            super().__init__(count, *args)

    monkeypatch.setattr(cohort, "Workers", Counted)
    scored = score_cohort(sample_wide, shipped, workers=2, chunk_rows=1500)
    pd.testing.assert_frame_equal(scored, one_shot, check_exact=True)
    assert started == [2]


@pytest.mark.parametrize("workers", [1, 2])
def test_rows_in_any_order_come_back_in_that_order(shipped, shuffled, one_shot, workers):
    # build_features takes rows in any order and answers in that order; so does score_cohort.
    scored = score_cohort(shuffled, shipped, workers=workers, chunk_rows=1500)
    pd.testing.assert_frame_equal(scored, shipped.predict(build_features(shuffled)))
    pd.testing.assert_frame_equal(scored.loc[one_shot.index], one_shot, check_exact=True)


@pytest.mark.parametrize("frame", ["sample_wide", "shuffled"])
def test_every_patient_lies_in_one_chunk_and_every_row_in_one(request, frame):
    wide = request.getfixturevalue(frame)
    plan = ChunkPlan.of(wide, rows=1000)
    chunk_of = np.full(len(wide), -1)
    for i in range(plan.chunks):
        rows = np.arange(len(wide))[plan.rows(i)]
        assert (chunk_of[rows] == -1).all()
        chunk_of[rows] = i
        longest = wide["patient_id"].iloc[rows].value_counts().max()
        assert len(rows) <= max(1000, longest)
    assert (chunk_of >= 0).all()
    assert (pd.Series(chunk_of).groupby(wide["patient_id"].to_numpy()).nunique() == 1).all()
    assert (plan.order is None) == (frame == "sample_wide")


def test_a_patient_longer_than_a_chunk_gets_a_chunk_of_its_own(sample_wide):
    plan = ChunkPlan.of(sample_wide, rows=1)
    assert plan.chunks == sample_wide["patient_id"].nunique()


def test_a_small_cohort_is_scored_in_this_process(shipped, sample_wide, monkeypatch):
    def no_workers(*args: object) -> None:
        raise AssertionError("workers started for a single chunk")

    monkeypatch.setattr(cohort, "Workers", no_workers)
    small = sample_wide.iloc[:2000]
    pd.testing.assert_frame_equal(
        score_cohort(small, shipped, workers=2), shipped.predict(build_features(small))
    )


def test_an_empty_cohort_gives_an_empty_frame(shipped, sample_wide, one_shot):
    scored = score_cohort(sample_wide.iloc[:0], shipped)
    pd.testing.assert_frame_equal(scored, one_shot.iloc[:0])


@pytest.mark.parametrize("workers", [1, 2])
def test_a_feature_error_in_a_chunk_reaches_the_caller(shipped, sample_wide, workers):
    doubled = pd.concat([sample_wide, sample_wide.iloc[-1:]], ignore_index=True)
    with pytest.raises(FeatureError, match="two rows for the same hour"):
        score_cohort(doubled, shipped, workers=workers, chunk_rows=1500)
