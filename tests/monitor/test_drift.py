"""Drift: shifted data raises the right findings, unshifted data raises none."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from wardwatch.ingest.psv import read_cohort
from wardwatch.model.artifact import load_shipped_model
from wardwatch.model.cohort import score_cohort
from wardwatch.monitor.drift import (
    DriftThresholds,
    compare,
    ks,
    load_thresholds,
    measured_psi,
    psi,
)
from wardwatch.monitor.reference import Distribution, ProfileError, profile_cohort
from wardwatch.quality import blank_implausible

SAMPLE = resources.files("wardwatch") / "data" / "physionet_sample" / "setA_sample.tar.gz"


@pytest.fixture(scope="module")
def received() -> pd.DataFrame:
    """The sample as a site sends it (implausible values not yet blanked), patient-sorted."""
    wide = read_cohort(SAMPLE)
    return wide.sort_values(["patient_id", "hour"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def scored(received):
    model = load_shipped_model()
    stored = blank_implausible(received)
    return stored, score_cohort(stored, model), model.threshold


def halves(wide: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    ids = wide["patient_id"].unique()
    chosen = np.random.default_rng(seed).choice(ids, len(ids) // 2, replace=False)
    first = wide["patient_id"].isin(chosen).to_numpy()
    return first, ~first


def drift(wide, outputs, threshold, ref_rows, cur_rows, current=None, limits=None):
    """Profile the reference rows, then the current rows like it, and compare."""
    current = wide if current is None else current
    reference = profile_cohort(wide[ref_rows], outputs[ref_rows], threshold)
    now = profile_cohort(current[cur_rows], outputs[cur_rows], threshold, like=reference)
    return compare(reference, now, limits)


def kinds(report, kind):
    return {f.subject for f in report.findings if f.kind == kind}


# ---------------------------------------------------------------- the statistics


shares = st.lists(st.floats(0, 1), min_size=2, max_size=12).filter(lambda s: sum(s) > 0)


@given(shares)
def test_psi_of_a_distribution_with_itself_is_zero(s):
    assert psi(tuple(s), tuple(s)) == pytest.approx(0.0, abs=1e-12)


def paired_shares(n: int) -> st.SearchStrategy:
    one = st.lists(st.floats(0, 1), min_size=n, max_size=n).filter(lambda s: sum(s) > 0)
    return st.tuples(one, one)


@given(st.integers(2, 12).flatmap(paired_shares))
def test_psi_is_never_negative(pair):
    a, b = (np.asarray(s) / sum(s) for s in pair)
    assert psi(tuple(a), tuple(b)) >= 0


@given(st.floats(0, 1), st.floats(0, 1))
def test_measured_share_psi_grows_with_the_change(p, q):
    assert measured_psi(p, q) >= 0
    assert measured_psi(p, p) == pytest.approx(0.0, abs=1e-12)


def test_psi_of_different_bins_is_refused():
    with pytest.raises(ProfileError, match="like= the reference"):
        psi((0.5, 0.5), (0.2, 0.3, 0.5))


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.3, 1.0])
def test_ks_from_the_grid_is_the_sample_statistic_to_within_a_percentile(shift):
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=20_000), rng.normal(shift, size=20_000)
    reference = Distribution.of(a)
    ours = ks(reference, Distribution.of(b, like=reference))
    exact = ks_2samp(a, b).statistic
    assert ours <= exact + 1e-6
    assert ours == pytest.approx(exact, abs=0.011)


# ---------------------------------------------------------------- no drift, no notice


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_random_half_against_the_other_raises_nothing(scored, seed):
    wide, outputs, threshold = scored
    first, second = halves(wide, seed)
    report = drift(wide, outputs, threshold, first, second)
    assert report.findings == []
    assert all(v.psi < 0.25 for v in report.variables if v.judged)
    assert report.calibration is not None  # outcomes were there, and judged fine


# ---------------------------------------------------------------- shifted data


def test_unit2_patients_against_unit1_raise_measurement_and_prediction_drift(scored):
    wide, outputs, threshold = scored
    unit1 = (wide.groupby("patient_id")["Unit1"].transform("first") == 1).to_numpy()
    unit2 = (wide.groupby("patient_id")["Unit2"].transform("first") == 1).to_numpy()
    report = drift(wide, outputs, threshold, unit1, unit2)
    # The surgical ICU charts blood pressure and blood gases far more often.
    assert {"DBP", "SaO2", "pH", "BaseExcess"} <= kinds(report, "input_measured")
    assert "Potassium" in kinds(report, "input_values")
    assert report.finding("prediction", "risk") is not None
    dbp = report.finding("input_measured", "DBP")
    assert "more often" in dbp.message and "DBP" in dbp.message


def test_spo2_three_points_low_is_named_with_its_offset(scored):
    wide, outputs, threshold = scored
    first, second = halves(wide, 0)
    low = wide.assign(O2Sat=wide["O2Sat"] - 3)
    report = drift(wide, outputs, threshold, first, second, current=low)
    assert kinds(report, "input_values") == {"O2Sat"}
    spo2 = next(v for v in report.variables if v.variable == "O2Sat")
    assert spo2.median_offset == pytest.approx(-3.0)
    assert spo2.suspected_unit is None  # an offset, not a unit
    finding = report.finding("input_values", "O2Sat")
    assert "3 % lower" in finding.message


def test_temperature_in_fahrenheit_is_named_as_such(received, scored):
    wide, outputs, threshold = scored
    first, second = halves(wide, 1)
    fahrenheit = received.assign(Temp=received["Temp"] * 9 / 5 + 32)
    report = drift(received, outputs, threshold, first, second, current=fahrenheit)
    assert kinds(report, "input_values") == {"Temp"}
    temp = next(v for v in report.variables if v.variable == "Temp")
    assert temp.suspected_unit.startswith("°F sent as °C")
    assert "°F sent as °C" in report.finding("input_values", "Temp").message


def test_fahrenheit_temperatures_quarantined_by_the_gate_show_as_a_missing_variable(
    received, scored
):
    wide, outputs, threshold = scored
    first, second = halves(wide, 1)
    stored = blank_implausible(received.assign(Temp=received["Temp"] * 9 / 5 + 32))
    report = drift(wide, outputs, threshold, first, second, current=stored)
    assert "Temp" in kinds(report, "input_measured")
    assert "less often" in report.finding("input_measured", "Temp").message


def test_risks_a_third_too_low_raise_calibration_prediction_and_alert_rate_drift(scored):
    wide, outputs, threshold = scored
    first, second = halves(wide, 2)
    low = outputs.assign(risk=outputs["risk"] / 3)
    reference = profile_cohort(wide[first], outputs[first], threshold)
    now = profile_cohort(wide[second], low[second], threshold, like=reference)
    report = compare(reference, now)
    assert report.finding("calibration", "observed_to_expected").figure == pytest.approx(3, 0.3)
    assert report.finding("prediction", "risk") is not None
    assert report.finding("alert_rate", "alerts").figure < 1 / 1.5
    assert not kinds(report, "input_values") and not kinds(report, "input_measured")


def test_without_outcomes_calibration_is_not_judged(scored):
    wide, outputs, threshold = scored
    first, second = halves(wide, 3)
    unlabelled = wide.drop(columns="SepsisLabel")
    report = drift(wide, outputs, threshold, first, second, current=unlabelled)
    assert report.calibration is None and report.findings == []


def test_too_few_values_are_reported_but_not_judged(scored):
    wide, outputs, threshold = scored
    reference = profile_cohort(wide, outputs, threshold)
    few = profile_cohort(wide.head(200), like=reference)  # every lab has < min_values values
    report = compare(reference, few)
    lactate = next(v for v in report.variables if v.variable == "Lactate")
    assert not lactate.judged and lactate.psi is None
    assert not kinds(report, "input_values") and report.prediction is None


# ---------------------------------------------------------------- thresholds as data


def test_thresholds_come_from_the_monitor_table(tmp_path, scored):
    config = tmp_path / "wardwatch.toml"
    config.write_text("[monitor]\nvalue_psi = 50.0\nvalue_ks = 1.0\nmedian_offset_iqr = 99\n"
                      "webhook_url = 'http://127.0.0.1:9/'\n")  # fmt: skip
    limits = load_thresholds(config)
    assert limits.value_psi == 50.0 and limits.measured_psi == DriftThresholds().measured_psi
    wide, outputs, threshold = scored
    first, second = halves(wide, 0)
    low = wide.assign(O2Sat=wide["O2Sat"] - 3)
    report = drift(wide, outputs, threshold, first, second, current=low, limits=limits)
    assert "O2Sat" not in kinds(report, "input_values")  # the site's limits, not the defaults


@pytest.mark.parametrize(
    ("table", "complaint"),
    [("value_psi = -1", "non-negative"), ("alert_rate_ratio = 0.5", "at least 1"),
     ("value_pis = 0.3", "unknown keys"), ("value_psi = 'high'", "number")],
)  # fmt: skip
def test_a_wrong_monitor_table_says_what_is_wrong(tmp_path, table, complaint):
    config = tmp_path / "wardwatch.toml"
    config.write_text(f"[monitor]\n{table}\n")
    with pytest.raises(ValueError, match=complaint):
        load_thresholds(config)


def test_no_settings_file_gives_the_defaults(tmp_path):
    assert load_thresholds(tmp_path / "absent.toml") == DriftThresholds()
