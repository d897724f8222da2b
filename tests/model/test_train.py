from __future__ import annotations

import inspect

import numpy as np
import pytest

from wardwatch.model.train import SITE_SPECIFIC, SepsisModelTrainer


def test_fit_returns_self_and_learned_state_ends_in_underscore(trained):
    learned = {k for k in vars(trained) if k.endswith("_")}
    assert {"risk_model_", "split_", "report_", "feature_names_"} <= learned
    params = set(inspect.signature(SepsisModelTrainer).parameters)
    assert set(trained.get_params()) == params


def test_same_seed_gives_identical_models(trained, sample_wide, sample_features, make_trainer):
    again = make_trainer().fit(
        sample_features, sample_wide["SepsisLabel"], sample_wide["patient_id"]
    )
    first, second = trained.risk_model_, again.risk_model_
    texts = [[b.model_to_string() for b in m.boosters] for m in (first, second)]
    assert texts[0] == texts[1]
    rows = sample_features.iloc[:500]
    assert first.predict(rows).equals(second.predict(rows))
    assert first.threshold == second.threshold


def test_site_specific_columns_are_not_inputs(trained):
    assert not set(SITE_SPECIFIC) & set(trained.risk_model_.feature_names)
    assert "ICULOS" in trained.risk_model_.feature_names


def test_every_split_is_patient_level(trained, sample_wide):
    per_patient = sample_wide.assign(split=trained.split_).groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()
    assert set(trained.split_) == {"train", "calibration", "test"}


def test_report_records_members_and_calibration(trained):
    report = trained.report_
    assert len(report["members"]) == 2
    assert report["calibration"]["method"] in {"platt", "isotonic"}
    assert set(report["calibration"]["cross_fitted_brier"]) == {"platt", "isotonic"}


def test_a_split_without_positives_is_refused(sample_wide, sample_features, make_trainer):
    with pytest.raises(ValueError, match="only one class"):
        make_trainer().fit(sample_features, np.zeros(len(sample_wide)), sample_wide["patient_id"])


def test_predictions_have_the_documented_columns(trained, sample_features):
    out = trained.risk_model_.predict(sample_features.iloc[:100])
    assert list(out.columns) == ["risk", "uncertainty", "ood_score", "ood"]
    assert out["risk"].between(0, 1).all() and (out["uncertainty"] >= 0).all()
    assert out["ood"].dtype == bool and out.index.equals(sample_features.index[:100])
