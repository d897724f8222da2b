from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from tests.strategies import cohorts

from wardwatch.evaluate.metrics import (
    Predictions,
    alert_burden,
    calibration,
    default_thresholds,
    evaluate_predictions,
    headline,
    hourly_discrimination,
    lead_times,
    patient_alerts,
    roc_points,
    threshold_curves,
)
from wardwatch.evaluate.utility import Stays, utility


def cohort(*stays):
    """Stays as (id, hours, first labelled row or None)."""
    ids, labels = [], []
    for pid, hours, first in stays:
        ids += [pid] * hours
        labels += [0] * hours if first is None else [0] * first + [1] * (hours - first)
    return Stays.from_labels(ids, labels), np.asarray(labels)


def alerts(n, *rows):
    out = np.zeros(n, dtype=bool)
    out[list(rows)] = True
    return out


# Stays: "s1" septic, 30 h, t_sepsis = row 20; "s2" septic, 30 h, t_sepsis = row 20 (rows 30..59);
# "n1" not septic, 24 h (rows 60..83); "n2" not septic, 24 h (rows 84..107).
STAYS, LABELS = cohort(("s1", 30, 14), ("s2", 30, 14), ("n1", 24, None), ("n2", 24, None))


def test_sensitivity_windows():
    # s1 alerted at t_sepsis + 2 only; s2 at t_sepsis - 20 (long before the window) only.
    alert = alerts(108, 22, 30)
    got = patient_alerts(STAYS, alert)
    assert got["sensitivity"] == 1.0  # both alerted no later than t_sepsis + 3
    assert got["sensitivity_before_onset"] == 0.5  # only s2 before t_sepsis
    assert got["sensitivity_in_window"] == 0.5  # only s1 within -12..+3


def test_an_alert_after_onset_plus_three_does_not_count_as_sensitive():
    got = patient_alerts(STAYS, alerts(108, 24))
    assert got["sensitivity"] == 0.0
    assert got["alerted_patients"] == 1 and got["ppv"] == 1.0


def test_ppv_and_specificity_count_patients_not_hours():
    alert = alerts(108, 15, 16, 17, 60, 61, 62, 63)  # s1 three hours, n1 four hours
    got = patient_alerts(STAYS, alert)
    assert got["ppv"] == 0.5
    assert got["specificity"] == 0.5
    assert patient_alerts(STAYS, alerts(108))["ppv"] is None  # nobody alerted


def test_alert_episodes_start_when_the_alert_switches_on():
    # n1: on at its first hour (row 60), off, on for 3 h; s2 ends on (row 59) — n1's first
    # hour is a new episode even though the previous row (another stay) was on.
    alert = alerts(108, 59, 60, 62, 63, 64)
    burden = alert_burden(STAYS, alert)
    assert burden["alert_episodes"] == 3
    assert burden["patient_days"] == 108 / 24
    assert burden["alerts_per_100_patient_days"] == pytest.approx(100 * 3 / 4.5)
    assert burden["alert_hours_fraction"] == pytest.approx(5 / 108)


def test_lead_time_is_measured_from_the_first_alert_of_the_stay():
    # s1: first alert t_sepsis - 9 (and another later); s2: first alert after onset: no lead.
    alert = alerts(108, 11, 19, 52, 55)
    assert lead_times(STAYS, alert).tolist() == [9.0]
    summary = evaluate_predictions(STAYS, LABELS, Predictions(alert * 1.0, 0.5))["lead_time"]
    assert summary["median_hours"] == 9 and summary["patients"] == 1


def test_hourly_discrimination_needs_both_classes():
    assert hourly_discrimination([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.9]) == {
        "auroc": 1.0,
        "auprc": 1.0,
        "prevalence": 0.5,
    }
    assert hourly_discrimination([0, 0], [0.1, 0.2])["auroc"] is None
    assert roc_points([1, 1], [0.1, 0.2]) == {"fpr": None, "tpr": None}


def test_calibration_of_a_calibrated_constant_is_perfect():
    got = calibration([0, 0, 0, 1] * 5, [0.25] * 20)
    assert got["bins"] == [{"mean_risk": 0.25, "observed": 0.25, "hours": 20}]
    assert got["ece"] == 0
    assert got["brier"] == pytest.approx((15 * 0.25**2 + 5 * 0.75**2) / 20)


def test_calibration_uses_quantile_bins():
    risk = np.linspace(0.01, 0.99, 100)
    got = calibration((risk > 0.5).astype(int), risk, n_bins=4)
    assert [b["hours"] for b in got["bins"]] == [25, 25, 25, 25]
    assert [b["observed"] for b in got["bins"]] == [0, 0, 1, 1]
    assert got["ece"] == pytest.approx(np.mean([abs(b["mean_risk"] - b["observed"])
                                                for b in got["bins"]]))  # fmt: skip


def test_predictions_check_their_input():
    with pytest.raises(ValueError, match="finite"):
        Predictions(np.array([0.1, np.nan]), 0.5)
    with pytest.raises(ValueError, match="differ in length"):
        Predictions(np.array([0.1, 0.2]), 0.5, alert=np.array([True]))
    assert Predictions(np.array([0.4, 0.6]), 0.5).alerts.tolist() == [False, True]
    with pytest.raises(ValueError, match="3 predictions for 108 rows"):
        evaluate_predictions(STAYS, LABELS, Predictions(np.zeros(3), 0.5))


def test_the_result_is_plain_json_and_headline_flattens_it():
    rng = np.random.default_rng(0)
    result = evaluate_predictions(STAYS, LABELS, Predictions(rng.random(108), 0.8))
    json.dumps(result, allow_nan=False)
    flat = headline(result)
    assert flat["utility"] == result["utility"]["normalized"]
    assert flat["brier"] == result["calibration"]["brier"]
    assert set(result["curves"]) == {"roc", "threshold"}


def test_points_are_not_calibrated():
    result = evaluate_predictions(
        STAYS, LABELS, Predictions(np.zeros(108), 0.5, kind="baseline", probability=False)
    )
    assert result["calibration"] is None
    assert headline(result)["ece"] is None


def test_few_distinct_risks_give_exact_thresholds():
    assert default_thresholds([0.0, 0.5, 0.5, 1.0]).tolist() == [0.0, 0.5, 1.0, np.inf]
    many = default_thresholds(np.linspace(0, 1, 1000))
    assert many[-1] == np.inf and len(many) <= 203


@settings(max_examples=60, deadline=None)
@given(cohorts())
def test_threshold_curves_equal_one_evaluation_per_threshold(cohort):
    stays = Stays.from_labels(cohort.patient_ids, cohort.labels)
    curves = threshold_curves(stays, cohort.risk)
    for i, t in enumerate(curves["thresholds"]):
        alert = cohort.risk >= (np.inf if t is None else t)
        patients = patient_alerts(stays, alert)
        burden = alert_burden(stays, alert)
        assert curves["sensitivity"][i] == patients["sensitivity"]
        assert curves["ppv"][i] == pytest.approx(patients["ppv"])
        assert curves["alerts_per_100_patient_days"][i] == pytest.approx(
            burden["alerts_per_100_patient_days"]
        )
        expected = utility(stays, alert).normalized
        assert curves["utility"][i] == pytest.approx(None if np.isnan(expected) else expected)
