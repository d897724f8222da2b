"""Features: hand-checked values, offline == online, no look-ahead, missing stays missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wardwatch
from wardwatch.features import FEATURE_NAMES, FeatureError, build_features, latest_features
from wardwatch.ingest.psv import DEMOGRAPHICS, MEASURED, read_cohort

SAMPLE = Path(wardwatch.__file__).parent / "data" / "physionet_sample" / "setA_sample.tar.gz"


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    wide = read_cohort(SAMPLE)
    return wide[wide["patient_id"].isin(sorted(wide["patient_id"].unique())[:40])]


def patient(hours: list[int], **columns: list[float]) -> pd.DataFrame:
    """One patient's wide rows: the given variables, every other one never measured."""
    n = len(hours)
    data = {name: np.full(n, np.nan) for name in (*MEASURED, *DEMOGRAPHICS)}
    data.update({"ICULOS": np.asarray(hours, float), "Age": np.full(n, 70.0)})
    data.update({"Gender": np.ones(n)})
    data.update({name: np.asarray(values, dtype=float) for name, values in columns.items()})
    return pd.DataFrame({"patient_id": ["p1"] * n, "hour": hours, **data})


NA = np.nan
HR = [NA, 80, NA, 90, NA, NA, NA, NA, 100, NA]


def same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True)


def test_columns_are_the_documented_list():
    features = build_features(patient(list(range(1, 11)), HR=HR))
    assert tuple(features.columns) == FEATURE_NAMES
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_hand_checked_heart_rate_features():
    f = build_features(patient(list(range(1, 11)), HR=HR))
    at9, at10 = f.iloc[8], f.iloc[9]
    assert at9["HR"] == 100 and at9["HR_hours_since"] == 0 and at9["HR_measured"] == 1
    assert at9["HR_count"] == 3
    assert at9["HR_delta_6h"] == 100 - 80  # last known at hour 3 was 80
    assert (at9["HR_min_6h"], at9["HR_max_6h"]) == (90, 100)  # hours 4..9
    assert (at9["HR_min_24h"], at9["HR_max_24h"]) == (80, 100)
    assert np.isnan(at9["HR_delta_24h"])  # nothing known 24 h before hour 9
    assert at10["HR"] == 100 and at10["HR_hours_since"] == 1 and at10["HR_measured"] == 0
    assert f.iloc[5]["HR_hours_since"] == 2 and f.iloc[5]["HR_count"] == 2


def test_never_measured_is_missing_not_normal():
    f = build_features(patient(list(range(1, 11)), HR=HR)).iloc[0]
    for column in ("HR", "HR_hours_since", "HR_delta_6h", "HR_min_6h", "Lactate", "WBC_max_24h"):
        assert np.isnan(f[column]), column
    assert f["HR_count"] == 0 and f["Lactate_measured"] == 0
    assert np.isnan(f["SOFA_partial"]) and f["SOFA_components"] == 0


def test_windows_are_in_hours_not_rows():
    f = build_features(patient([1, 2, 20, 30], HR=[70, 75, 90, 95]))
    assert f.iloc[3]["HR_min_24h"] == 90  # hour 20 is inside (6, 30]; hours 1 and 2 are not
    assert f.iloc[3]["HR_delta_24h"] == 95 - 75  # last known at hour 6 came from hour 2
    assert f.iloc[3]["HR_max_6h"] == 95 and f.iloc[3]["HR_hours_since"] == 0


def test_derived_scores_from_last_values():
    f = build_features(
        patient([1, 2], HR=[120, NA], SBP=[NA, 80], DBP=[NA, 50], Platelets=[NA, 90],
                Resp=[24, NA], Temp=[38.5, NA], O2Sat=[95, NA], FiO2=[NA, 0.5])
    ).iloc[1]  # fmt: skip
    assert f["ShockIndex"] == pytest.approx(1.5)
    assert f["MAP_est"] == pytest.approx((80 + 100) / 3)  # MAP missing: from SBP and DBP
    assert f["SpO2_FiO2"] == pytest.approx(190) and f["SOFA_resp"] == 3
    assert f["SOFA_coag"] == 2 and f["SOFA_cardio"] == 1 and np.isnan(f["SOFA_renal"])
    assert f["SOFA_partial"] == 6 and f["SOFA_components"] == 3
    assert f["SIRS_partial"] == 3 and f["SIRS_components"] == 3  # temp, HR, resp; no WBC
    assert f["qSOFA_partial"] == 2
    # NEWS2: resp 24 -> 2, SpO2 95 -> 1, oxygen -> 2, SBP 80 -> 3, HR 120 -> 2, temp 38.5 -> 1
    assert f["NEWS2_partial"] == 11 and f["NEWS2_components"] == 6


def test_input_order_does_not_matter(sample):
    shuffled = sample.sample(frac=1.0, random_state=3)
    assert same(build_features(shuffled).loc[sample.index], build_features(sample))


def test_duplicate_hours_are_refused():
    with pytest.raises(FeatureError, match="same hour"):
        build_features(patient([1, 1], HR=[80, 90]))


def test_offline_equals_online_hour_by_hour(sample):
    offline = build_features(sample)
    for pid in sorted(sample["patient_id"].unique())[:3]:
        rows = sample[sample["patient_id"] == pid]
        for t in range(len(rows)):
            online = latest_features(rows.iloc[: t + 1])
            assert same(online, offline.loc[rows.index[t : t + 1]]), (pid, t)


def test_latest_features_of_every_patient_match_the_cohort(sample):
    offline = build_features(sample)
    for _, rows in sample.groupby("patient_id"):
        assert same(latest_features(rows), offline.loc[rows.index[-1:]])


def test_latest_features_takes_one_patient(sample):
    with pytest.raises(FeatureError, match="exactly one patient"):
        latest_features(sample)


values = st.one_of(st.just(np.nan), st.floats(0, 300, allow_nan=False, width=32))


@st.composite
def histories(draw: st.DrawFn) -> tuple[pd.DataFrame, int]:
    n = draw(st.integers(1, 40))
    gaps = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    hours = np.cumsum(gaps).tolist()
    columns = {v: draw(st.lists(values, min_size=n, max_size=n)) for v in ("HR", "SBP", "Lactate")}
    return patient(hours, **columns), draw(st.integers(1, n))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_no_look_ahead(history):
    frame, k = history
    assert same(build_features(frame).iloc[:k], build_features(frame.iloc[:k]))
    assert same(latest_features(frame.iloc[:k]), build_features(frame).iloc[k - 1 : k])
