"""The fairness audit: subgroup figures at the patient level, equalized odds with patient
bootstrap intervals, the counterfactual sex swap, the HTML fragment and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.strategies import wide_frame

import wardwatch
from wardwatch.evaluate.metrics import patient_alerts
from wardwatch.evaluate.subgroups import sex_groups
from wardwatch.evaluate.utility import Stays
from wardwatch.features import build_features
from wardwatch.ingest.psv import LABEL, read_cohort
from wardwatch.model.artifact import load_shipped_model
from wardwatch.model.train import SepsisModelTrainer
from wardwatch.monitor.fairness import (
    CounterfactualTolerance,
    FairnessError,
    audit,
    counterfactual,
    render_html,
)

SAMPLE = Path(wardwatch.__file__).parent / "data" / "physionet_sample" / "setA_sample.tar.gz"


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return read_cohort(SAMPLE, as_stored=True)


@pytest.fixture(scope="module")
def shipped():
    return load_shipped_model()


@pytest.fixture(scope="module")
def shipped_risk(sample, shipped) -> np.ndarray:
    return shipped.predict(build_features(sample))["risk"].to_numpy()


@pytest.fixture(scope="module")
def sex_dependent_model(sample):
    """A real small LightGBM model trained where only men are ever labelled septic (every
    feature in every tree and a fast learning rate, so 25 rounds learn the rule)."""
    labels = np.where(sample["Gender"].to_numpy() == 1, sample[LABEL].to_numpy(), 0.0)
    trainer = SepsisModelTrainer(
        n_members=2, max_rounds=25, early_stopping_rounds=10, min_data_in_leaf=20,
        num_threads=1, split_salt="wardwatch-tests-v1", learning_rate=0.2, feature_fraction=1.0,
    )  # fmt: skip
    return trainer.fit(build_features(sample), labels, sample["patient_id"]).risk_model_


def test_counterfactual_flags_a_model_that_depends_on_sex(sex_dependent_model, sample):
    moved = counterfactual(sex_dependent_model, sample)
    assert moved["flagged"]
    assert moved["patients_alert_status_changed"] > CounterfactualTolerance().patients
    assert moved["patients_swapped"] == sample["patient_id"].nunique()


def test_counterfactual_does_not_flag_the_shipped_model(shipped, sample, shipped_risk):
    """Tolerance: at most 5 % of patients change alert status, mean |Δ log-odds| <= 0.10."""
    moved = counterfactual(shipped, sample, risk=shipped_risk)
    assert not moved["flagged"]
    assert moved["patients_alert_status_changed"] <= 0.05
    assert moved["hourly_mean_abs_logit_change"] <= 0.10
    assert moved["hourly_mean_abs_risk_change"] > 0  # sex is an input: it does move a little


def test_counterfactual_leaves_unrecorded_sex_alone(shipped, sample, shipped_risk):
    first = sample["patient_id"] == sample["patient_id"].iloc[0]
    blanked = sample.assign(Gender=np.where(first, np.nan, sample["Gender"]))
    moved = counterfactual(shipped, blanked)
    assert moved["hours_swapped"] == int((~first).sum())


def test_group_figures_agree_with_the_evaluation_code(sample, shipped_risk, shipped):
    alert = shipped_risk >= shipped.threshold
    result = audit(sample, shipped_risk, alert, n_boot=20)
    groups = sex_groups(sample)
    for name, cell in result["groupings"]["sex"]["groups"].items():
        rows = groups == name
        stays = Stays.from_labels(sample["patient_id"][rows], sample[LABEL][rows])
        expected = patient_alerts(stays, alert[rows])
        assert cell["patient_sensitivity"] == pytest.approx(expected["sensitivity"])
        assert cell["patient_specificity"] == pytest.approx(expected["specificity"])
        assert cell["patient_ppv"] == pytest.approx(expected["ppv"])
        assert cell["patients"] == stays.n_stays
    sens = [c["patient_sensitivity"] for c in result["groupings"]["sex"]["groups"].values()]
    odds = result["groupings"]["sex"]["equalized_odds"]
    assert odds["sensitivity_difference"]["value"] == pytest.approx(max(sens) - min(sens))
    assert result["overall"]["patients"] == 300


def two_sex_cohort(hours: int = 1) -> pd.DataFrame:
    """12 men and 12 women, 6 septic each (labelled from their first hour)."""
    stays, demographics = {}, {}
    for sex in (0.0, 1.0):
        for i in range(12):
            pid = f"p{int(sex)}{i:02d}"
            stays[pid] = [{LABEL: float(i < 6)}] * hours
            demographics[pid] = {"Gender": sex, "Age": 60.0, "Unit1": 1.0, "Unit2": 0.0}
    return wide_frame(stays, demographics)


def test_septic_men_alerted_and_septic_women_missed_is_a_full_gap():
    wide = two_sex_cohort()
    alert = ((wide["Gender"] == 1) & (wide[LABEL] == 1)).to_numpy()
    odds = audit(wide, np.full(len(wide), 0.1), alert, n_boot=200)["groupings"]["sex"]
    result = odds["equalized_odds"]
    assert result["sensitivity_difference"] == {"value": 1.0, "ci95": [1.0, 1.0]}
    assert result["false_positive_rate_difference"]["value"] == 0.0
    assert result["equalized_odds_difference"]["value"] == 1.0
    assert result["resampled"] == "patients"


@settings(max_examples=15, deadline=None)
@given(st.lists(st.booleans(), min_size=24, max_size=24), st.integers(1, 6))
def test_figures_are_per_patient_however_long_the_stays(alerted, hours):
    """Resampling patients, not rows: longer stays give the same patient-level audit."""

    def figures(n_hours: int) -> dict:
        wide = two_sex_cohort(n_hours)
        alert = np.repeat(np.asarray(alerted), n_hours)
        found = audit(wide, np.full(len(wide), 0.1), alert, n_boot=50)["groupings"]["sex"]
        cells = {g: c["patient_sensitivity"] for g, c in found["groups"].items()}
        return {"cells": cells, "odds": found["equalized_odds"]}

    one, many = figures(1), figures(hours)
    assert one == many
    interval = one["odds"]["equalized_odds_difference"]["ci95"]
    assert interval[0] is None or 0 <= interval[0] <= interval[1] <= 1


def test_small_cells_are_marked_and_not_compared(sample, shipped_risk, shipped):
    alert = shipped_risk >= shipped.threshold
    result = audit(sample, shipped_risk, alert, n_boot=20)
    age = result["groupings"]["age"]
    small = [g for g, c in age["groups"].items() if c["small_cell"]]
    compared = age["equalized_odds"]["groups_compared"]
    for group in small:
        assert group not in compared and "small cell" in age["groups"][group]["note"]
    assert all(age["groups"][g]["septic_patients"] >= 5 for g in compared)


def test_a_site_attribute_is_audited_and_small_cells_shown(sample, shipped_risk, shipped):
    first = sample.groupby("patient_id", sort=False).cumcount() == 0
    codes = sample["patient_id"].str[-1].map({"1": "<b>A</b>"}).fillna("B")
    wide = sample.assign(Ethnicity=codes.where(first).groupby(sample["patient_id"]).transform(
        "first"))  # fmt: skip
    result = audit(wide, shipped_risk, shipped_risk >= shipped.threshold,
                   attributes=["Ethnicity"], n_boot=20)  # fmt: skip
    groups = result["groupings"]["Ethnicity"]["groups"]
    assert set(groups) == {"<b>A</b>", "B"}
    assert sum(c["patients"] for c in groups.values()) == 300
    html = render_html(result | {"counterfactual": counterfactual(
        load_shipped_model(), sample.head(200), risk=shipped_risk[:200])})  # fmt: skip
    assert "&lt;b&gt;A&lt;/b&gt;" in html and "<b>A</b>" not in html
    assert html.count('<table class="fairness">') == 4
    assert "within tolerance" in html and "AUROC (patients, peak risk)" in html


def test_bad_input_is_a_fairness_error(sample, shipped_risk):
    with pytest.raises(FairnessError, match="labelled"):
        audit(sample.drop(columns=[LABEL]), shipped_risk, shipped_risk > 0.5)
    with pytest.raises(FairnessError, match="rows"):
        audit(sample, shipped_risk[:-1], shipped_risk[:-1] > 0.5)
    with pytest.raises(FairnessError, match="Ethnicity"):
        audit(sample, shipped_risk, shipped_risk > 0.5, attributes=["Ethnicity"])


def test_cli_writes_json_and_html(run, tmp_path):
    done = run("fairness", str(SAMPLE), "--out", str(tmp_path), "--bootstrap", "50")
    assert done.exit_code == 0, done.output
    result = json.loads((tmp_path / "fairness.json").read_text())
    assert set(result["groupings"]) == {"sex", "age", "unit"}
    assert "alert policy" in result["alert_source"]
    assert result["counterfactual"]["flagged"] is False
    assert (tmp_path / "fairness.html").read_text().startswith('<section class="fairness-audit">')
    assert "equalized-odds difference" in done.output


def test_cli_refuses_unusable_requests(run, tmp_path):
    done = run("fairness", str(SAMPLE), "--out", str(tmp_path), "--split", "train")
    assert done.exit_code == 2 and "no patient" in done.output  # the sample is held out
    done = run("fairness", str(tmp_path / "absent"), "--out", str(tmp_path))
    assert done.exit_code == 2 and "Traceback" not in done.output
