"""`wardwatch calibrate-site` and `predict-psv --site-config` on the shipped sample (300 set-A
patients), with the shipped model, through the real alert policy and the real CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wardwatch.alerts.burden import simulate
from wardwatch.alerts.policy import PolicyBook
from wardwatch.evaluate.utility import utility
from wardwatch.ingest.psv import LABEL, read_cohort
from wardwatch.model.artifact import SHIPPED
from wardwatch.site.calibrate import (
    AIM,
    CalibrationError,
    SiteData,
    Target,
    achieved,
    bisect_falling,
    calibrate_site,
    estimate_prevalence,
    training_prevalence,
)
from wardwatch.site.config import PriorShift, SiteConfig, site_policy_book, stay_units


def policy_rates(sample: SiteData, config: SiteConfig, threshold: float) -> dict[str, float]:
    """Alerts per 100 patient-days per unit, replaying the policy book the config gives."""
    fired = simulate(sample.wide, sample.outputs, site_policy_book(config), threshold,
                     signs=sample.signs)["fired"].to_numpy()  # fmt: skip
    days = pd.Series(1 / 24, index=sample.wide.index).groupby(sample.units).sum()
    return (pd.Series(fired).groupby(sample.units).sum() * 100 / days).to_dict()


def test_budget_without_labels_meets_it_within_10_percent_per_unit(
    run, unlabelled_dir, tmp_path, sample, model
):
    out = tmp_path / "site.json"
    done = run("calibrate-site", str(unlabelled_dir), "--budget", "20", "--out", str(out))
    assert done.exit_code == 0, done.output
    config = SiteConfig.load(out)
    assert set(config.thresholds) == {"MICU", "SICU", "ICU"}
    assert len(set(config.thresholds.values())) == 3  # each unit its own
    assert config.model_version == model.version and config.method == "alerts_per_100_patient_days"
    assert config.target == {"alerts_per_100_patient_days": 20.0}
    assert len(config.data_hash) == 64 and config.prior_shift is None
    for unit, rate in policy_rates(sample, config, model.threshold).items():
        assert abs(rate - 20) <= 2.0, (unit, rate)
        assert config.achieved[unit]["alerts_per_100_patient_days"] == pytest.approx(rate)
    assert "sensitivity" not in config.achieved["MICU"]  # no labels, no outcome figures


def test_share_of_patients_alerted_is_met(sample, model):
    config = calibrate_site(sample, model.version, model.threshold,
                            target=Target("patients_alerted", 0.3))  # fmt: skip
    for unit in ("MICU", "SICU", "ICU"):
        assert abs(config.achieved[unit]["patients_alerted"] - 0.3) <= 0.03


def test_target_sensitivity_is_the_highest_threshold_reaching_it(sample, model):
    config = calibrate_site(sample, model.version, model.threshold,
                            target=Target("sensitivity", 0.8))  # fmt: skip
    for unit, threshold in config.thresholds.items():
        part = sample.rows(sample.units == unit)
        assert config.achieved[unit]["sensitivity"] >= 0.8
        assert achieved(part, threshold * 1.05, PolicyBook())["sensitivity"] < 0.8


def test_max_utility_beats_other_thresholds_on_the_sites_labels(sample, model):
    config = calibrate_site(sample, model.version, model.threshold, target=Target("utility"))
    for unit, threshold in config.thresholds.items():
        part = sample.rows(sample.units == unit)
        best = utility(part.stays(), part.risk >= threshold).normalized
        for other in (model.threshold, threshold * 0.8, threshold * 1.25, 0.01, 0.1):
            assert best >= utility(part.stays(), part.risk >= other).normalized - 1e-12


def test_predict_psv_uses_the_site_thresholds(run, tmp_path, unlabelled_dir, model, sample):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in sorted(unlabelled_dir.glob("*.psv"))[:40]:
        (inputs / path.name).write_text(path.read_text())
    config = SiteConfig(model.version, {"MICU": 0.9, "SICU": 0.001, "ICU": model.threshold},
                        "hand-written", "-", "2026-11-23")  # fmt: skip
    site_file = config.save(tmp_path / "site.json")
    assert run("predict-psv", str(inputs), str(tmp_path / "site"), "--site-config",
               str(site_file)).exit_code == 0  # fmt: skip
    assert run("predict-psv", str(inputs), str(tmp_path / "plain")).exit_code == 0
    wide = read_cohort(inputs)
    units = pd.Series(stay_units(wide)).groupby(wide["patient_id"].to_numpy()).first()
    differ = 0
    for pid, unit in units.items():
        site = pd.read_csv(tmp_path / "site" / f"{pid}.psv", sep="|")
        plain = pd.read_csv(tmp_path / "plain" / f"{pid}.psv", sep="|")
        limit = config.thresholds[unit]
        expected = (site["PredictedProbability"] >= limit - 5e-7).astype(int)
        assert (site["PredictedLabel"] == expected).all(), pid
        assert np.allclose(site["PredictedProbability"], plain["PredictedProbability"])
        differ += int((site["PredictedLabel"] != plain["PredictedLabel"]).sum())
    assert differ > 0 and {"MICU", "SICU", "ICU"} <= set(units)


def test_predict_psv_applies_the_prior_shift(run, tmp_path, unlabelled_dir, model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    first = sorted(unlabelled_dir.glob("*.psv"))[0]
    (inputs / first.name).write_text(first.read_text())
    unit = stay_units(read_cohort(inputs))[0]
    shift = PriorShift(0.02, {unit: 0.01})
    config = SiteConfig(model.version, {unit: 0.03}, "prior-shift", "-", "-", prior_shift=shift)
    run("predict-psv", str(inputs), str(tmp_path / "plain"))
    done = run("predict-psv", str(inputs), str(tmp_path / "site"), "--site-config",
               str(config.save(tmp_path / "site.json")))  # fmt: skip
    assert done.exit_code == 0, done.output
    plain = pd.read_csv(tmp_path / "plain" / first.name, sep="|")["PredictedProbability"]
    site = pd.read_csv(tmp_path / "site" / first.name, sep="|")["PredictedProbability"]
    expected = shift.adjust(plain.to_numpy(), np.full(len(plain), unit, dtype=object))
    assert np.allclose(site, expected, atol=2e-6) and (site < plain).all()


def test_predict_psv_refuses_a_config_of_another_model(run, tmp_path, unlabelled_dir):
    config = SiteConfig("sepsis-000000000000", {"ICU": 0.05}, "budget", "-", "-")
    done = run("predict-psv", str(unlabelled_dir), str(tmp_path / "out"), "--site-config",
               str(config.save(tmp_path / "site.json")))  # fmt: skip
    assert done.exit_code == 2
    assert "sepsis-000000000000" in done.output and "Traceback" not in done.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target-sensitivity", "0.8"], "needs labelled data"),
        (["--budget", "20", "--share", "0.3"], "give one of"),
        (["--budget", "20", "--budget-from-model"], "give one of"),
        ([], "give a target"),
        (["--budget", "-1"], "positive"),
    ],
)
def test_bad_requests_fail_with_a_reason(run, unlabelled_dir, tmp_path, args, message):
    done = run("calibrate-site", str(unlabelled_dir), "--out", str(tmp_path / "s.json"),
               "--limit", "20", *args)  # fmt: skip
    assert done.exit_code == 2 and message in done.output and "Traceback" not in done.output


def test_missing_data_fails_with_a_reason(run, tmp_path):
    done = run("calibrate-site", str(tmp_path / "absent"), "--budget", "10")
    assert done.exit_code == 2 and "no such file" in done.output


def test_em_recovers_a_known_prevalence():
    """Two Gaussian classes; posteriors computed exactly under a 30 % prior, data drawn at 5 %."""
    rng = np.random.default_rng(7)
    labels = rng.random(40_000) < 0.05
    x = rng.normal(np.where(labels, 1.5, 0.0), 1.0)
    likelihood_ratio = np.exp(1.5 * x - 1.5**2 / 2)
    posterior = 0.3 * likelihood_ratio / (0.3 * likelihood_ratio + 0.7)
    assert posterior.mean() > 0.15  # read naively, the risks say 3x too many
    assert estimate_prevalence(posterior, 0.3) == pytest.approx(labels.mean(), abs=0.01)


def test_prior_shift_alone_keeps_the_model_threshold_on_shifted_risks(sample, model):
    micu = sample.rows(sample.units == "MICU")
    prior = float(np.mean(micu.risk))  # EM's fixed point: it agrees with the mean risk
    config = calibrate_site(micu, model.version, model.threshold, prior_shift_from=prior)
    assert config.method == "model-threshold+prior-shift"
    assert config.thresholds == {"MICU": model.threshold}
    assert config.prior_shift is not None
    assert config.prior_shift.site_prevalence == {"MICU": pytest.approx(prior, rel=1e-4)}


def test_a_prior_shift_em_cannot_be_believed_is_not_applied(sample, model):
    """EM far from the mean risk means the case mix moved too: no shift beats a wrong one."""
    config = calibrate_site(sample, model.version, model.threshold, prior_shift_from=0.5)
    assert config.prior_shift is not None and dict(config.prior_shift.site_prevalence) == {}
    assert sum("not applied" in note for note in config.notes) == 3
    assert np.array_equal(config.risk(sample.risk, sample.units), sample.risk)


def test_training_prevalence_of_the_shipped_model_is_set_as_prevalence():
    assert 0.015 < training_prevalence(SHIPPED) < 0.03  # 2.2 % of set-A hours are labelled


def test_labelled_targets_need_septic_patients(sample, model):
    quiet = sample.rows(~np.isin(sample.wide["patient_id"], sample.wide.loc[
        sample.wide[LABEL] == 1, "patient_id"]))  # fmt: skip
    with pytest.raises(CalibrationError, match="no septic patient"):
        calibrate_site(quiet, model.version, model.threshold, target=Target("utility"))


@given(
    st.lists(st.integers(1, 999), min_size=5, max_size=60, unique=True),
    st.floats(0.05, 0.95),
)
def test_bisection_meets_any_reachable_target_of_a_falling_figure(risks, share):
    """Figure = share of risks at or above the threshold, as an alert rate is."""
    values = np.sort(np.asarray(risks)) / 1000

    def figure(threshold: float) -> float:
        return float(np.mean(values >= threshold))

    threshold, got = bisect_falling(figure, share, 0.0005, 0.9995)
    reachable = np.arange(len(values) + 1) / len(values)
    closest = reachable[np.argmin(np.abs(reachable - share))]
    assert got == pytest.approx(figure(threshold))
    assert abs(got - share) <= abs(closest - share) + 1e-12 or abs(got - share) <= AIM * share
