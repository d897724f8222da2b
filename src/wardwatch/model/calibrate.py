"""Calibrators: map the ensemble's raw score to a probability, saved as plain JSON.

Two candidates, both fitted on patients the boosters never saw:

- `PlattCalibrator`: logistic regression on the logit of the raw score (2 numbers). Smooth,
  monotone, hard to overfit; cannot fix a non-sigmoid distortion.
- `IsotonicCalibrator`: a monotone step function (pairs of thresholds and values, linear
  between them, as scikit-learn's). Fixes any monotone distortion; can overfit small sets.

`choose_calibrator` compares them by Brier score with 2-fold cross-fitting over patients of
the calibration set (fit on one half, score on the other, both ways), so the more flexible
method does not win by scoring on its own fitting data; the winner is refitted on all of it.
Either one undoes the distortion of the training prior made by negative subsampling.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from wardwatch.model.split import buckets

_EPS = 1e-6
FloatArray = npt.NDArray[np.float64]


class Calibrator(Protocol):
    method: str

    def fit(self, raw: FloatArray, labels: npt.ArrayLike) -> Calibrator: ...
    def predict(self, raw: npt.ArrayLike) -> FloatArray: ...
    def to_dict(self) -> dict[str, Any]: ...


def _logit(p: npt.ArrayLike) -> FloatArray:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(q / (1 - q))


class PlattCalibrator:
    """p = 1 / (1 + exp(-(slope * logit(raw) + intercept)))."""

    method = "platt"

    def __init__(self) -> None:
        pass

    def fit(self, raw: FloatArray, labels: npt.ArrayLike) -> PlattCalibrator:
        regression = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000)
        regression.fit(_logit(raw)[:, None], np.asarray(labels, dtype=np.int64))
        self.slope_ = float(regression.coef_[0, 0])
        self.intercept_ = float(regression.intercept_[0])
        return self

    def predict(self, raw: npt.ArrayLike) -> FloatArray:
        z = self.slope_ * _logit(raw) + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "slope": self.slope_, "intercept": self.intercept_}


class IsotonicCalibrator:
    """Monotone piecewise-linear map through (thresholds, values); clipped outside."""

    method = "isotonic"

    def __init__(self) -> None:
        pass

    def fit(self, raw: FloatArray, labels: npt.ArrayLike) -> IsotonicCalibrator:
        regression = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        regression.fit(np.asarray(raw, dtype=np.float64), np.asarray(labels, dtype=np.float64))
        self.thresholds_ = np.asarray(regression.X_thresholds_, dtype=np.float64)
        self.values_ = np.asarray(regression.y_thresholds_, dtype=np.float64)
        return self

    def predict(self, raw: npt.ArrayLike) -> FloatArray:
        return np.interp(np.asarray(raw, dtype=np.float64), self.thresholds_, self.values_)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "thresholds": self.thresholds_.tolist(),
            "values": self.values_.tolist(),
        }


def calibrator_from_dict(data: dict[str, Any]) -> Calibrator:
    """The calibrator a `to_dict` described."""
    if data.get("method") == "platt":
        platt = PlattCalibrator()
        platt.slope_, platt.intercept_ = float(data["slope"]), float(data["intercept"])
        return platt
    if data.get("method") == "isotonic":
        iso = IsotonicCalibrator()
        iso.thresholds_ = np.asarray(data["thresholds"], dtype=np.float64)
        iso.values_ = np.asarray(data["values"], dtype=np.float64)
        return iso
    raise ValueError(f"unknown calibration method {data.get('method')!r}")


CANDIDATES = {"platt": PlattCalibrator, "isotonic": IsotonicCalibrator}


def brier(probability: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    p, y = np.asarray(probability, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def cross_fitted_brier(
    method: str, raw: FloatArray, labels: npt.NDArray[np.int64], patient_ids: npt.ArrayLike
) -> float:
    """Brier of `method` over 2 patient folds, each scored by the model fitted on the other."""
    fold = buckets(patient_ids, salt="wardwatch-calibration-fold-v1") % 2 == 0
    squared = np.empty(len(raw))
    for held in (fold, ~fold):
        fitted = CANDIDATES[method]().fit(raw[~held], labels[~held])
        squared[held] = (fitted.predict(raw[held]) - labels[held]) ** 2
    return float(squared.mean())


def choose_calibrator(
    raw: FloatArray, labels: npt.ArrayLike, patient_ids: npt.ArrayLike
) -> tuple[Calibrator, dict[str, float]]:
    """The candidate with the lower cross-fitted Brier, refitted on all rows, and the scores."""
    y = np.asarray(labels, dtype=np.int64)
    scores = {m: cross_fitted_brier(m, raw, y, patient_ids) for m in CANDIDATES}
    best = min(scores, key=lambda m: (scores[m], m))
    return CANDIDATES[best]().fit(raw, y), scores
