from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.strategies import cohorts

from wardwatch.evaluate.utility import (
    CHALLENGE_2019,
    Stays,
    UtilityParameters,
    normalized_utility,
    optimal_predictions,
    row_utilities,
    utility,
    utility_curve,
)

# ---------------------------------------------------------------- reference: one stay, one hour
# at a time, written from the challenge's published definition (evaluate_sepsis_score.py).


def reference_stay_utility(labels, predictions, p: UtilityParameters = CHALLENGE_2019) -> float:
    septic = any(labels)
    t_sepsis = list(labels).index(1) - p.dt_optimal if septic else math.inf
    m1 = p.max_u_tp / (p.dt_optimal - p.dt_early)
    b1 = -m1 * p.dt_early
    m2 = -p.max_u_tp / (p.dt_late - p.dt_optimal)
    b2 = -m2 * p.dt_late
    m3 = p.min_u_fn / (p.dt_late - p.dt_optimal)
    b3 = -m3 * p.dt_optimal
    total = 0.0
    for t, predicted in enumerate(predictions):
        if t > t_sepsis + p.dt_late:
            continue
        if not septic:
            total += p.u_fp if predicted else p.u_tn
        elif predicted and t <= t_sepsis + p.dt_optimal:
            total += max(m1 * (t - t_sepsis) + b1, p.u_fp)
        elif predicted:
            total += m2 * (t - t_sepsis) + b2
        elif t > t_sepsis + p.dt_optimal:
            total += m3 * (t - t_sepsis) + b3
    return total


def reference_best(labels, p: UtilityParameters = CHALLENGE_2019) -> list[int]:
    best = [0] * len(labels)
    if any(labels):
        t_sepsis = list(labels).index(1) - p.dt_optimal
        for t in range(max(0, t_sepsis + p.dt_early), min(t_sepsis + p.dt_late + 1, len(labels))):
            best[t] = 1
    return best


def reference_cohort(stays) -> dict[str, float]:
    totals = dict.fromkeys(("observed", "best", "worst", "inaction"), 0.0)
    for labels, alerts in stays:
        best = reference_best(labels)
        totals["observed"] += reference_stay_utility(labels, alerts)
        totals["best"] += reference_stay_utility(labels, best)
        totals["worst"] += reference_stay_utility(labels, [1 - b for b in best])
        totals["inaction"] += reference_stay_utility(labels, [0] * len(labels))
    span = totals["best"] - totals["inaction"]
    totals["normalized"] = (totals["observed"] - totals["inaction"]) / span if span else math.nan
    return totals


def one_stay(labels, alerts=None):
    ids = np.array(["p1"] * len(labels), dtype=object)
    stays = Stays.from_labels(ids, labels)
    return stays, utility(stays, np.zeros(len(labels)) if alerts is None else alerts)


def septic_stay(hours=30, first_label=14):
    # t_sepsis = 14 + 6 = 20 (rows 0..29)
    return [0] * first_label + [1] * (hours - first_label)


def alert_at(hours, *rows):
    alerts = np.zeros(hours, dtype=bool)
    alerts[list(rows)] = True
    return alerts


# ---------------------------------------------------------------- hand-worked cases


def test_the_official_docstring_example():
    # evaluate_sepsis_score.py: labels [0,0,0,0,1,1], predictions [0,0,1,1,1,1] -> 3.3888…
    _, score = one_stay([0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1])
    assert score.observed == pytest.approx(3.388888888888889)


def test_false_alarms_in_a_patient_never_septic_cost_five_hundredths_each():
    _, score = one_stay([0] * 10, alert_at(10, 2, 3, 7))
    assert score.observed == pytest.approx(-0.15)
    assert (score.best, score.inaction, score.worst) == (0.0, 0.0, pytest.approx(-0.5))
    assert math.isnan(score.normalized)  # nothing to gain: the score is undefined


def test_onset_is_the_first_labelled_row_plus_six():
    stays = Stays.from_labels(["a"] * 30 + ["b"] * 5, septic_stay() + [0] * 5)
    assert stays.onset.tolist() == [20, math.inf]
    assert stays.septic.tolist() == [True, False]


def test_missing_a_septic_patient_costs_ten():
    # No alert: 0 until t_sepsis - 6, then -2/9 per hour more, down to -2 at t_sepsis + 3:
    # sum over d = -5..3 of (-2/9 d - 4/3) = 2 - 12 = -10.
    _, score = one_stay(septic_stay())
    assert score.observed == pytest.approx(-10)
    assert score.inaction == pytest.approx(-10)


@pytest.mark.parametrize(
    ("row", "alert_utility", "gain"),
    [
        (7, -0.05, -0.05),  # t_sepsis - 13: too early, a false alarm
        (8, 0.0, 0.0),  # t_sepsis - 12: the reward starts at 0
        (11, 0.5, 0.5),  # t_sepsis - 9: half way up
        (14, 1.0, 1.0),  # t_sepsis - 6: the full reward
        (20, 1 / 3, 1 / 3 + 4 / 3),  # t_sepsis: 1/3, and the 4/3 lost by silence is avoided
        (23, 0.0, 2.0),  # t_sepsis + 3: no reward, but the -2 of missing is avoided
        (24, 0.0, 0.0),  # t_sepsis + 4: too late to matter either way
    ],
)
def test_one_alert_in_a_septic_stay(row, alert_utility, gain):
    stays, score = one_stay(septic_stay(), alert_at(30, row))
    alert, _ = row_utilities(stays)
    assert alert[row] == pytest.approx(alert_utility)
    assert score.observed == pytest.approx(-10 + gain)


def test_best_alerts_from_twelve_hours_before_to_three_after_onset():
    stays, score = one_stay(septic_stay())
    assert np.flatnonzero(optimal_predictions(stays)).tolist() == list(range(8, 24))
    # rewards d/6 + 2 for d = -12..-6 (sum 3.5) and 1/3 - d/9 for d = -5..3 (sum 4)
    assert score.best == pytest.approx(7.5)
    # worst = 1 - best: 8 early alerts (-0.4) and silence in the window (-10)
    assert score.worst == pytest.approx(-10.4)


def test_normalization_of_an_alert_at_six_hours_before_onset():
    _, score = one_stay(septic_stay(), alert_at(30, 14))
    assert score.normalized == pytest.approx(1 / 17.5)


def test_a_stay_shorter_than_the_window_is_cut_at_both_ends():
    # Labelled from the first row: t_sepsis = 6, the window -12..+3 is cut to rows 0..4.
    stays, score = one_stay([1] * 5, np.ones(5))
    assert optimal_predictions(stays).all()
    assert score.observed == pytest.approx(1 + 8 / 9 + 7 / 9 + 6 / 9 + 5 / 9)
    assert score.inaction == pytest.approx(-(2 + 4 + 6 + 8) / 9)
    assert score.normalized == pytest.approx(1)


def test_a_stay_ending_before_onset_still_rewards_early_alerts():
    # first label at row 2 of 3: t_sepsis = 8 lies after the stay; rows are d = -8, -7, -6.
    _, score = one_stay([0, 0, 1], np.ones(3))
    assert score.observed == pytest.approx(2 / 3 + 5 / 6 + 1)
    assert score.inaction == 0


def test_inaction_scores_zero_and_the_optimum_one_on_a_mixed_cohort():
    labels = septic_stay() + [0] * 12 + [1] * 4 + [0] * 8
    ids = ["a"] * 30 + ["b"] * 12 + ["c"] * 4 + ["d"] * 8
    stays = Stays.from_labels(ids, labels)
    assert utility(stays, np.zeros(len(labels))).normalized == 0
    assert utility(stays, optimal_predictions(stays)).normalized == pytest.approx(1)
    assert normalized_utility(ids, labels, optimal_predictions(stays)) == pytest.approx(1)


def test_rows_must_be_grouped_by_patient():
    with pytest.raises(ValueError, match="grouped by patient"):
        Stays.from_labels(["a", "b", "a"], [0, 0, 0])


def test_labels_and_alerts_must_be_binary():
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        Stays.from_labels(["a", "a"], [0, 2])
    stays = Stays.from_labels(["a", "a"], [0, 1])
    with pytest.raises(ValueError, match="alerts must be 0 or 1"):
        utility(stays, [0.5, 1])
    with pytest.raises(ValueError, match="one alert value is needed per row"):
        utility(stays, [1])


def test_the_constants_must_be_ordered():
    with pytest.raises(ValueError, match="dt_early < dt_optimal < dt_late"):
        UtilityParameters(dt_early=-6, dt_optimal=-12)


def test_an_empty_cohort():
    stays = Stays.from_labels([], [])
    assert stays.n_stays == 0
    assert math.isnan(utility(stays, []).normalized)


# ---------------------------------------------------------------- vectorized == reference


@settings(max_examples=100, deadline=None)
@given(cohorts())
def test_vectorized_utility_equals_the_reference_loop(cohort):
    stays = Stays.from_labels(cohort.patient_ids, cohort.labels)
    score = utility(stays, cohort.alerts)
    expected = reference_cohort([(list(s[0]), list(s[2])) for s in cohort.stays()])
    assert score.observed == pytest.approx(expected["observed"], abs=1e-9)
    assert score.best == pytest.approx(expected["best"], abs=1e-9)
    assert score.worst == pytest.approx(expected["worst"], abs=1e-9)
    assert score.inaction == pytest.approx(expected["inaction"], abs=1e-9)
    assert score.normalized == pytest.approx(expected["normalized"], abs=1e-9, nan_ok=True)


@settings(max_examples=60, deadline=None)
@given(cohorts(), st.lists(st.floats(-0.1, 1.1), min_size=1, max_size=6))
def test_utility_curve_equals_one_evaluation_per_threshold(cohort, thresholds):
    stays = Stays.from_labels(cohort.patient_ids, cohort.labels)
    grid = np.r_[thresholds, 0.5, 0.5000001, np.inf]
    curve = utility_curve(stays, cohort.risk, grid)
    each = [utility(stays, cohort.risk >= t).normalized for t in grid]
    np.testing.assert_allclose(curve, each, atol=1e-9, equal_nan=True)
