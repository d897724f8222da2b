from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.strategies import wide_frame

from wardwatch.ingest.psv import MEASURED
from wardwatch.scores import BASELINES, DEFAULT_BASELINES, get_baseline, last_known, news2, sofa
from wardwatch.scores.rules import banded


def points(name, *hours):
    """Points of baseline `name` for one patient with the given hourly measurements."""
    return get_baseline(name).score(wide_frame({"p1": hours})).tolist()


# ---------------------------------------------------------------- last known value


def test_a_value_counts_from_the_hour_it_is_measured_never_before():
    wide = wide_frame({"a": [{}, {"HR": 80}, {}, {"HR": 120}], "b": [{}, {"Resp": 30}]})
    last = last_known(wide, ["HR", "Resp"])
    assert last["HR"].tolist()[:4] == pytest.approx([np.nan, 80, 80, 120], nan_ok=True)
    # nothing carries over from one patient to the next
    assert np.isnan(last["HR"].iloc[4:]).all()
    assert last["Resp"].iloc[5] == 30 and np.isnan(last["Resp"].iloc[4])
    assert last.index.equals(wide.index) and last.columns[0] == "patient_id"


def test_missing_values_add_no_points():
    for name in BASELINES:
        assert points(name, {}, {}) == [0, 0]


# ---------------------------------------------------------------- bands


def test_bands_closed_on_the_right_or_left():
    # A missing value is an unknown band (NaN), not 0 points: `bedside` turns it into 0 later.
    values = np.array([7.9, 8, 8.5, 11, 11.5, np.nan])
    right = banded(values, [8, 11], [3, 1, 0])
    left = banded(values, [8, 11], [3, 1, 0], closed="left")
    assert right.tolist()[:5] == [3, 3, 1, 1, 0] and np.isnan(right[5])
    assert left.tolist()[:5] == [3, 1, 1, 0, 0] and np.isnan(left[5])
    with pytest.raises(ValueError, match="one more band"):
        banded(values, [8, 11], [3, 1])


# ---------------------------------------------------------------- NEWS2


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"Resp": 25}, 3), ({"Resp": 24}, 2), ({"Resp": 21}, 2), ({"Resp": 20}, 0),
        ({"Resp": 12}, 0), ({"Resp": 11}, 1), ({"Resp": 9}, 1), ({"Resp": 8}, 3),
        ({"O2Sat": 91}, 3), ({"O2Sat": 92}, 2), ({"O2Sat": 93}, 2), ({"O2Sat": 94}, 1),
        ({"O2Sat": 95}, 1), ({"O2Sat": 96}, 0),
        ({"FiO2": 0.21}, 0), ({"FiO2": 0.4}, 2), ({"FiO2": 10}, 0),
        ({"Temp": 38.5}, 1), ({"Temp": 35.0}, 3), ({"Temp": 35.1}, 1), ({"Temp": 36.0}, 1),
        ({"Temp": 36.1}, 0), ({"Temp": 38.0}, 0), ({"Temp": 39.0}, 1), ({"Temp": 39.1}, 2),
        ({"SBP": 100}, 2), ({"SBP": 90}, 3), ({"SBP": 91}, 2), ({"SBP": 101}, 1),
        ({"SBP": 110}, 1), ({"SBP": 111}, 0), ({"SBP": 219}, 0), ({"SBP": 220}, 3),
        ({"HR": 131}, 3), ({"HR": 130}, 2), ({"HR": 111}, 2), ({"HR": 110}, 1), ({"HR": 91}, 1),
        ({"HR": 90}, 0), ({"HR": 51}, 0), ({"HR": 50}, 1), ({"HR": 41}, 1), ({"HR": 40}, 3),
    ],
)  # fmt: skip
def test_news2_bands(values, expected):
    assert points("news2", values) == [expected]


def test_news2_adds_its_parameters():
    # RR 25 -> 3, SpO2 91 -> 3, temp 38.5 -> 1, SBP 100 -> 2, HR 131 -> 3, FiO2 0.5 -> 2
    hour = {"Resp": 25, "O2Sat": 91, "Temp": 38.5, "SBP": 100, "HR": 131, "FiO2": 0.5}
    assert points("news2", hour) == [14]


def test_news2_uses_the_last_known_values():
    assert points("news2", {"Resp": 25}, {"HR": 131}, {"Resp": 16}) == [3, 6, 3]


# ---------------------------------------------------------------- qSOFA and SIRS


@pytest.mark.parametrize(
    ("hour", "expected"),
    [
        ({"Resp": 22, "SBP": 100}, 2),
        ({"Resp": 21.9, "SBP": 100}, 1),
        ({"Resp": 22, "SBP": 100.1}, 1),
        ({"Resp": 30}, 1),  # SBP never measured: no point from it
    ],
)
def test_qsofa(hour, expected):
    assert points("qsofa", hour) == [expected]


@pytest.mark.parametrize(
    ("hour", "expected"),
    [
        ({"Temp": 38, "HR": 90, "Resp": 20, "PaCO2": 32, "WBC": 12}, 0),  # all on the limit
        ({"Temp": 38.1, "HR": 91, "Resp": 21, "WBC": 12.1}, 4),
        ({"Temp": 35.9, "WBC": 3.9}, 2),
        ({"Resp": 14, "PaCO2": 31}, 1),
        ({"Resp": 24, "PaCO2": 31}, 1),  # one criterion, met twice, is one point
    ],
)
def test_sirs(hour, expected):
    assert points("sirs", hour) == [expected]


# ---------------------------------------------------------------- SOFA


@pytest.mark.parametrize(
    ("hour", "expected"),
    [
        ({"Platelets": 150}, 0), ({"Platelets": 149}, 1), ({"Platelets": 99}, 2),
        ({"Platelets": 49}, 3), ({"Platelets": 19}, 4),
        ({"Bilirubin_total": 1.1}, 0), ({"Bilirubin_total": 1.2}, 1),
        ({"Bilirubin_total": 1.95}, 1), ({"Bilirubin_total": 2.0}, 2),
        ({"Bilirubin_total": 6.0}, 3), ({"Bilirubin_total": 12}, 4),
        ({"Creatinine": 1.19}, 0), ({"Creatinine": 1.2}, 1), ({"Creatinine": 2.0}, 2),
        ({"Creatinine": 3.5}, 3), ({"Creatinine": 5.0}, 4),
        ({"MAP": 70}, 0), ({"MAP": 69}, 1),
        # SpO2 / FiO2: 98 / 0.21 = 467 -> 0; 96 / 0.3 = 320 -> 1; 95 / 0.4 = 237.5 -> 2;
        # 92 / 0.5 = 184 -> 3; 90 / 1.0 = 90 -> 4; no FiO2 or an implausible FiO2 -> 0
        ({"O2Sat": 98, "FiO2": 0.21}, 0), ({"O2Sat": 96, "FiO2": 0.3}, 1),
        ({"O2Sat": 95, "FiO2": 0.4}, 2), ({"O2Sat": 92, "FiO2": 0.5}, 3),
        ({"O2Sat": 90, "FiO2": 1.0}, 4), ({"O2Sat": 90}, 0), ({"O2Sat": 90, "FiO2": 0}, 0),
    ],
)  # fmt: skip
def test_sofa_organs(hour, expected):
    assert points("sofa", hour) == [expected]


@pytest.mark.parametrize(
    ("hour", "expected"),
    [
        # No MAP charted: (SBP + 2 DBP) / 3 = (90 + 110) / 3 = 66.7 < 70 -> 1 (before the merge
        # with the features' definition an uncharted MAP added 0 here);
        ({"SBP": 90, "DBP": 55}, 1),
        # (90 + 120) / 3 = 70, not below 70 -> 0; one pressure alone estimates nothing -> 0;
        ({"SBP": 90, "DBP": 60}, 0), ({"SBP": 60}, 0),
        # a charted MAP wins over the estimate: MAP 75 -> 0 although (80 + 100) / 3 = 60.
        ({"MAP": 75, "SBP": 80, "DBP": 50}, 0),
    ],
)  # fmt: skip
def test_sofa_cardiovascular_estimates_map_only_when_none_is_charted(hour, expected):
    assert points("sofa", hour) == [expected]


def _last(**known: float) -> dict[str, np.ndarray]:
    """One row of last known values: the given ones, every other variable unknown."""
    return {name: np.array([known.get(name, np.nan)]) for name in MEASURED}


def test_a_component_is_unknown_until_its_inputs_are():
    organs = [float(c[0]) for c in sofa.components(_last(O2Sat=95, FiO2=0.4, Platelets=99))]
    # respiration 95 / 0.4 = 237.5 -> 2; platelets 99 -> 2; liver, MAP, creatinine unknown
    assert organs[:2] == [2, 2] and np.isnan(organs[2:]).all()
    # an FiO2 outside 0.21-1.0 is no FiO2: the organ / parameter that needs it is unknown
    for fio2 in (0.05, 0.2, 40.0):
        assert np.isnan(sofa.components(_last(O2Sat=95, FiO2=fio2))[0][0])
        assert np.isnan(news2.components(_last(FiO2=fio2))[2][0])
    assert news2.components(_last(FiO2=0.21))[2][0] == 0  # room air is known: 0 points
    assert news2.components(_last(FiO2=1.0))[2][0] == 2


def test_components_read_a_frame_or_a_dict_of_arrays_alike():
    hours = [{"HR": 131, "Resp": 23}, {"SBP": 95, "O2Sat": 93, "FiO2": 0.5}, {"Temp": 35.5}]
    last = last_known(wide_frame({"p": hours}))
    arrays = {name: last[name].to_numpy() for name in MEASURED}
    for rule in (news2, sofa):
        for a, b in zip(rule.components(last), rule.components(arrays), strict=True):
            np.testing.assert_array_equal(a, b)


def test_sofa_adds_its_organs():
    hour = {"Platelets": 80, "Bilirubin_total": 2.5, "MAP": 65, "Creatinine": 1.5}
    assert points("sofa", hour) == [2 + 2 + 1 + 1]


def test_sofa_rise_is_the_change_from_the_lowest_of_the_last_24_hours():
    hours = [{"Creatinine": 2.5}] + [{}] * 9 + [{"Creatinine": 1.0, "MAP": 65}]
    hours += [{"Creatinine": 5.0}] + [{}] * 30
    total = points("sofa", *hours)
    rise = points("sofa_rise", *hours)
    assert total[:12] == [2] * 10 + [1, 5]
    assert rise[:12] == [0] * 10 + [0, 4]
    # 24 hours after the low (row 10) it leaves the window; the baseline becomes 5
    assert rise[33] == 4 and rise[34] == 0


# ---------------------------------------------------------------- the baseline objects


def test_the_registry_and_the_conventional_thresholds():
    assert DEFAULT_BASELINES == ("qsofa", "sirs", "news2", "sofa")
    assert {n: BASELINES[n].threshold for n in DEFAULT_BASELINES} == {
        "qsofa": 2, "sirs": 2, "news2": 5, "sofa": 2,
    }  # fmt: skip
    with pytest.raises(KeyError, match="no baseline 'apache'"):
        get_baseline("apache")


def test_risk_alert_and_predictions_agree():
    wide = wide_frame({"p1": [{"Resp": 25}, {"HR": 131}, {"Temp": 39.5}, {"Resp": 16}]})
    news2 = get_baseline("news2")
    assert news2.score(wide).tolist() == [3, 6, 8, 5]
    assert news2.risk(wide) == pytest.approx(np.array([3, 6, 8, 5]) / 17)
    assert news2.alert(wide).tolist() == [False, True, True, True]
    predictions = news2.predictions(wide)
    assert predictions.alerts.tolist() == news2.alert(wide).tolist()
    assert (predictions.risk >= predictions.threshold).tolist() == predictions.alerts.tolist()
    assert predictions.kind == "baseline" and not predictions.probability
    assert "consciousness" in predictions.note


def test_scores_are_causal():
    # Appending later hours never changes the scores of earlier hours.
    hours = [{"Resp": 23}, {"SBP": 95}, {"Resp": 18, "Platelets": 40}, {"HR": 140}]
    for baseline in BASELINES.values():
        full = baseline.score(wide_frame({"p": hours}))
        for n in range(1, len(hours)):
            assert baseline.score(wide_frame({"p": hours[:n]})).tolist() == full[:n].tolist()


def test_a_frame_with_another_index_is_scored_row_by_row():
    wide = wide_frame({"p1": [{"HR": 131}, {}], "p2": [{}]})
    wide.index = pd.Index([10, 20, 30])
    assert get_baseline("news2").score(wide).tolist() == [3, 3, 0]
    assert get_baseline("sofa_rise").score(wide).tolist() == [0, 0, 0]
