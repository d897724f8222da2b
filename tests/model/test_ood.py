from __future__ import annotations

import numpy as np

from wardwatch.ingest.psv import LABS


def test_about_one_percent_of_training_rows_are_flagged(trained, sample_features):
    rows = sample_features.loc[trained.split_ == "train"]
    rate = trained.risk_model_.predict(rows)["ood"].mean()
    assert 0.0 < rate < 0.03


def typical_row(trained, sample_features):
    """A held-in row with labs measured whose OOD score is the median of such rows."""
    ood = trained.risk_model_.ood
    rows = sample_features.loc[sample_features["Creatinine"].notna()]
    scores = ood.score(rows)
    return rows.iloc[[int(np.argsort(scores)[len(scores) // 2])]].copy()


def test_a_typical_row_is_not_flagged(trained, sample_features):
    out = trained.risk_model_.predict(typical_row(trained, sample_features))
    assert not out["ood"].iloc[0]


def test_all_labs_extreme_is_flagged(trained, sample_features):
    ood = trained.risk_model_.ood
    row = typical_row(trained, sample_features)
    for lab in LABS:
        grid = ood.grids_[ood.variables.index(lab)]
        if len(grid):
            row[lab] = grid[-1] * 1.05  # just past the highest value seen in training
    typical = trained.risk_model_.predict(typical_row(trained, sample_features))
    out = trained.risk_model_.predict(row)
    assert out["ood"].iloc[0] and out["ood_score"].iloc[0] > typical["ood_score"].iloc[0] + 1


def test_reference_round_trips_through_json(trained, sample_features):
    from wardwatch.model.ood import OODDetector

    ood = trained.risk_model_.ood
    again = OODDetector.from_dict(ood.to_dict())
    rows = sample_features.iloc[:300]
    assert np.array_equal(again.score(rows), ood.score(rows)) and again.threshold_ == ood.threshold_
