"""Features: hand-checked values, offline == online, no look-ahead, missing stays missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.strategies import wide_frame

import wardwatch
from wardwatch.features import FEATURE_NAMES, FeatureError, build_features, latest_features
from wardwatch.ingest.psv import DEMOGRAPHICS, MEASURED, read_cohort
from wardwatch.scores import BASELINES

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


# ---------------------------------------------------------------- scores: one definition


def test_sofa_features_follow_the_documented_rules():
    # Respiration by Rice 2007's S/F cut-offs 148/232/316/400 (closed on the left):
    # 97 / 0.3 = 323.3 -> 1 (Pandharipande's 214-357 band, used here before, gave 2);
    # an FiO2 of 0.05 (an oxygen flow charted as FiO2) is no FiO2: respiration unknown.
    # Bilirubin 1.995 is in 1.2-1.9 read as [1.2, 2.0) -> 1 (the bands closed on the right at
    # 1.99, used here before, gave 2); creatinine 1.195 < 1.2 -> 0 (before: 1).
    f = build_features(
        patient([1, 2], O2Sat=[97, 97], FiO2=[0.3, 0.05], Bilirubin_total=[1.995, NA],
                Creatinine=[1.195, NA])
    )  # fmt: skip
    assert f.iloc[0]["SOFA_resp"] == 1 and np.isnan(f.iloc[1]["SOFA_resp"])
    assert f.iloc[0]["SOFA_liver"] == 1 and f.iloc[0]["SOFA_renal"] == 0
    assert f.iloc[1]["SOFA_components"] == 2  # liver and renal from hour 1; no respiration
    # NEWS2: SpO2 97 -> 0 is known; air or oxygen is not (FiO2 0.05), so 1 component, 0 points
    assert f.iloc[1]["NEWS2_partial"] == 0 and f.iloc[1]["NEWS2_components"] == 1
    assert f.iloc[0]["NEWS2_components"] == 2  # FiO2 0.3: oxygen, 2 points
    assert f.iloc[0]["NEWS2_partial"] == 2


def _around(low: float, high: float, *edges: float) -> st.SearchStrategy[float]:
    """Values in [low, high], the band edges and their near neighbours often."""
    near = [e + d for e in edges for d in (-0.01, 0.0, 0.01)]
    return st.one_of(st.sampled_from(near), st.floats(low, high, allow_nan=False))


SCORE_INPUTS = {
    "Temp": _around(30, 43, 35, 36, 38, 39), "HR": _around(20, 220, 40, 50, 90, 110, 130),
    "Resp": _around(2, 60, 8, 11, 20, 22, 24), "SBP": _around(40, 260, 90, 100, 110, 219),
    "DBP": _around(20, 140, 45, 60), "MAP": _around(30, 160, 70),
    "O2Sat": _around(50, 100, 91, 93, 95), "FiO2": _around(0.21, 1.0, 0.3, 0.5),
    "Platelets": _around(1, 600, 20, 50, 100, 150), "PaCO2": _around(10, 100, 32),
    "Bilirubin_total": _around(0.1, 40, 1.2, 2, 6, 12),
    "Creatinine": _around(0.1, 15, 1.2, 2, 3.5, 5),
    "WBC": _around(0.1, 60, 4, 12),
}  # fmt: skip
# Not a plausible FiO2 (0.21-1.0): a flow in L/min or a percentage charted as a fraction.
IMPLAUSIBLE_FIO2 = st.sampled_from([0.02, 0.1, 0.2, 40.0])
SCORES = {"SOFA": "sofa", "SIRS": "sirs", "qSOFA": "qsofa", "NEWS2": "news2"}


def _known_components(k: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Written from the published criteria, not from the code: when is each component known?"""
    pressures = k["MAP"] | (k["SBP"] & k["DBP"])
    return {
        "SOFA": [k["O2Sat"] & k["FiO2"], k["Platelets"], k["Bilirubin_total"], pressures,
                 k["Creatinine"]],
        "SIRS": [k["Temp"], k["HR"], k["Resp"] | k["PaCO2"], k["WBC"]],
        "qSOFA": [k["Resp"], k["SBP"]],
        "NEWS2": [k["Resp"], k["O2Sat"], k["FiO2"], k["SBP"], k["HR"], k["Temp"]],
    }  # fmt: skip


@st.composite
def score_hours(draw: st.DrawFn, missing: bool) -> pd.DataFrame:
    """One stay of 1-6 hours; every score input measured every hour unless `missing`."""
    hours = []
    for _ in range(draw(st.integers(1, 6))):
        hour = {}
        for name, strategy in SCORE_INPUTS.items():
            if missing and name == "FiO2":
                strategy = st.one_of(strategy, IMPLAUSIBLE_FIO2)
            if not missing or draw(st.booleans()):
                hour[name] = draw(strategy)
        hours.append(hour)
    return wide_frame({"p": hours})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(score_hours(missing=False))
def test_partial_scores_equal_the_baselines_when_everything_is_known(wide):
    features = build_features(wide)
    for score, baseline in SCORES.items():
        points = BASELINES[baseline].score(wide)
        assert features[f"{score}_partial"].tolist() == points.tolist(), score
        components = len(_known_components(dict.fromkeys(SCORE_INPUTS, True))[score])
        assert (features[f"{score}_components"] == components).all(), score


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(score_hours(missing=True))
def test_with_inputs_missing_the_counts_are_the_components_with_known_inputs(wide):
    features = build_features(wide)
    last = wide[list(SCORE_INPUTS)].ffill()  # one stay: the last known values
    known = {name: last[name].notna().to_numpy() for name in SCORE_INPUTS}
    fio2 = last["FiO2"].to_numpy()
    known["FiO2"] = (fio2 >= 0.21) & (fio2 <= 1.0)  # an implausible FiO2 is no FiO2
    expected = _known_components(known)
    for score, baseline in SCORES.items():
        count = np.sum(expected[score], axis=0)
        assert features[f"{score}_components"].tolist() == count.tolist(), score
        partial = features[f"{score}_partial"].to_numpy()
        assert (np.isnan(partial) == (count == 0)).all(), score
        # An unknown component adds nothing to either: the bedside points are the partial sum.
        assert np.nan_to_num(partial).tolist() == BASELINES[baseline].score(wide).tolist(), score
