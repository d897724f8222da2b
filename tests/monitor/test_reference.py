"""Reference profiles: the numbers a cohort is reduced to, and the one that ships."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wardwatch.ingest.psv import MEASURED, read_cohort
from wardwatch.model.artifact import load_shipped_model
from wardwatch.monitor.reference import (
    Distribution,
    ProfileError,
    load_profile,
    load_shipped_reference,
    profile_cohort,
    save_profile,
)

SAMPLE = resources.files("wardwatch") / "data" / "physionet_sample" / "setA_sample.tar.gz"


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return read_cohort(SAMPLE, as_stored=True)


values = st.lists(
    st.one_of(st.integers(-50, 200).map(float), st.floats(-1e4, 1e4, allow_nan=False)),
    min_size=1,
    max_size=300,
)


@given(values)
def test_a_distribution_is_shares_that_sum_to_one_and_a_rising_cdf(xs):
    d = Distribution.of(xs)
    assert d.count == len(xs)
    assert sum(d.shares) == pytest.approx(1.0, abs=1e-5)
    assert len(d.shares) == len(d.edges) + 1
    assert all(0 <= c <= 1 for c in d.cdf)
    assert list(d.cdf) == sorted(d.cdf)
    assert d.q1 <= d.median <= d.q3


@given(values, values)
def test_profiled_like_a_reference_a_cohort_lands_on_its_bins(ref, cur):
    reference = Distribution.of(ref)
    current = Distribution.of(cur, like=reference)
    assert current.edges == reference.edges and current.grid == reference.grid
    assert sum(current.shares) == pytest.approx(1.0, abs=1e-5)


def test_measured_shares_and_medians_are_the_cohorts(sample):
    profile = profile_cohort(sample)
    assert profile.hours == len(sample) and profile.patients == 300
    for v in ("HR", "Temp", "Lactate"):
        column = sample[v]
        assert profile.variables[v].measured_share == pytest.approx(column.notna().mean(), 1e-5)
        assert profile.variables[v].values.median == pytest.approx(column.median(), 1e-5)
        assert profile.variables[v].values.count == column.notna().sum()


def test_a_never_measured_variable_has_an_empty_distribution(sample):
    blank = sample.assign(EtCO2=np.nan)
    profile = profile_cohort(blank)
    assert profile.variables["EtCO2"].measured_share == 0
    assert profile.variables["EtCO2"].values.count == 0
    assert profile.variables["EtCO2"].values.median is None


def test_outputs_give_the_risk_side_and_labels_the_calibration(sample):
    risk = pd.DataFrame({"risk": np.linspace(0, 0.2, len(sample)), "ood": False})
    profile = profile_cohort(sample, risk, threshold=0.1)
    assert profile.alert_rate == pytest.approx(0.5, abs=1e-3)
    assert profile.ood_share == 0
    assert profile.calibration is not None
    assert profile.calibration.observed == pytest.approx(sample["SepsisLabel"].mean(), 1e-5)
    assert sum(n for n, _, _ in profile.calibration.bins) == len(sample)


def test_a_profile_survives_json(sample, tmp_path):
    risk = pd.DataFrame({"risk": np.linspace(0, 0.2, len(sample)), "ood": True})
    profile = profile_cohort(sample, risk, 0.1, source="sample", model_version="m1")
    again = load_profile(save_profile(profile, tmp_path / "p.json"))
    assert again == profile


def test_a_frame_that_is_not_hourly_data_is_refused_with_a_reason(sample):
    with pytest.raises(ProfileError, match="patient_id"):
        profile_cohort(sample.drop(columns="patient_id"))
    with pytest.raises(ProfileError, match="HR"):
        profile_cohort(sample.drop(columns="HR"))
    with pytest.raises(ProfileError, match="model outputs"):
        profile_cohort(sample, pd.DataFrame({"risk": [0.1]}))


def test_an_unreadable_profile_file_is_a_clear_error(tmp_path):
    with pytest.raises(ProfileError, match="no such"):
        load_profile(tmp_path / "nowhere.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ProfileError, match="not a readable"):
        load_profile(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ProfileError, match="not a reference profile"):
        load_profile(tmp_path / "other.json")


def test_the_shipped_reference_is_the_shipped_models_training_patients():
    reference = load_shipped_reference()
    assert reference.model_version == load_shipped_model().version
    assert len(reference.data_hash or "") == 64
    assert reference.patients > 10_000 and "training split" in reference.source
    assert set(reference.variables) == set(MEASURED)
    # The OOD flag is set on 1 % of training hours by construction.
    assert reference.ood_share == pytest.approx(0.01, abs=0.002)
    assert reference.notes["alert_burden"]["all"]["alerts_per_100_patient_days"] > 0
    shipped = resources.files("wardwatch.monitor") / "reference_data" / "shipped.json"
    assert len(shipped.read_bytes()) < 200_000
