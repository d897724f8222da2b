from __future__ import annotations

import numpy as np

from wardwatch.model.calibrate import (
    IsotonicCalibrator,
    PlattCalibrator,
    brier,
    calibrator_from_dict,
    choose_calibrator,
)


def test_calibration_improves_brier_on_held_out_patients(
    trained, sample_wide, sample_features, held_out
):
    model = trained.risk_model_
    rows = sample_features.loc[held_out]
    labels = sample_wide.loc[held_out, "SepsisLabel"]
    raw = model.raw(rows)  # inflated by negative subsampling
    assert brier(model.predict(rows)["risk"], labels) < brier(raw, labels)


def test_calibrators_round_trip_through_json():
    rng = np.random.default_rng(0)
    raw = rng.random(2000)
    labels = (rng.random(2000) < raw**2).astype(int)
    for calibrator in (PlattCalibrator().fit(raw, labels), IsotonicCalibrator().fit(raw, labels)):
        again = calibrator_from_dict(calibrator.to_dict())
        assert np.array_equal(again.predict(raw), calibrator.predict(raw))


def test_choice_is_by_cross_fitted_brier():
    rng = np.random.default_rng(1)
    raw = rng.random(4000)
    labels = (rng.random(4000) < np.where(raw > 0.5, 0.9, 0.05)).astype(int)  # a step: not sigmoid
    ids = np.repeat(np.arange(400).astype(str), 10)
    chosen, scores = choose_calibrator(raw, labels, ids)
    assert chosen.method == "isotonic" and scores["isotonic"] < scores["platt"]
