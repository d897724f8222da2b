"""`SepsisModelTrainer`: fit the risk model on a labelled cohort, patient-level throughout.

Estimator contract as scikit-learn's: parameters in `__init__`, `fit` returns self, learned
state ends in `_` (`risk_model_`, `split_`, `report_`). Deterministic given `seed`: the
split is a hash rule on patient ids, every random draw comes from a generator seeded by
(seed, member), and LightGBM runs with `deterministic`, a fixed thread count and col-wise
histograms, so two fits on the same data give identical model text.

Steps (rows must be grouped by patient, in time order, as `read_cohort` gives them):

1. Split patients by `assign_split` (hash rule): train / calibration / test. Test rows are
   never touched here. Within train, an early-stopping set of patients is held out of fitting.
2. Class imbalance (≈2 % of hours are positive): each member keeps every positive hour and a
   `negative_rate` share of negative hours. That is 4x cheaper to train than all hours and
   puts the booster's capacity where the positives are; it inflates the raw probabilities by
   about 1 / negative_rate in odds, which calibration (step 4) undoes on untouched patients.
3. `n_members` boosters, each on a bootstrap sample of training patients (uncertainty), each
   stopped early on the held-out training patients (AUROC, `early_stopping_rounds`).
4. Calibration on calibration patients: Platt vs isotonic compared by cross-fitted Brier
   (`calibrate.choose_calibrator`), the winner refitted on all calibration patients.
5. The OOD reference on training rows, the operating threshold on calibration patients
   (`threshold.choose_threshold`, normalized utility unless another scorer is given): the
   highest threshold within `threshold_tolerance` of the best score, a margin against the
   utility's cliff at sites whose risks run higher (see `threshold`).

Site-specific columns (`SITE_SPECIFIC`: ICU unit flags and hospital admission time, whose
meaning and coding differ between hospitals) are left out of the model inputs by default.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.features import FEATURE_NAMES
from wardwatch.model.calibrate import brier, choose_calibrator
from wardwatch.model.ood import OODDetector
from wardwatch.model.risk import RiskModel, member_probabilities
from wardwatch.model.split import (
    CALIBRATION,
    SPLIT_SALT,
    TRAIN,
    assign_split,
    early_stopping_mask,
)
from wardwatch.model.threshold import Scorer, choose_threshold
from wardwatch.model.uncertainty import bootstrap_patient_weights, negative_subsample

SITE_SPECIFIC = ("Unit1", "Unit2", "HospAdmTime")
OOD_SAMPLE_ROWS = 200_000


class SepsisModelTrainer:
    """Train a `RiskModel` (bagged LightGBM + calibration + OOD + threshold)."""

    def __init__(
        self,
        *,
        n_members: int = 5,
        seed: int = 2019,
        negative_rate: float = 0.25,
        learning_rate: float = 0.03,
        num_leaves: int = 31,
        min_data_in_leaf: int = 500,
        feature_fraction: float = 0.3,
        lambda_l2: float = 1.0,
        max_bin: int = 63,
        max_rounds: int = 1000,
        early_stopping_rounds: int = 80,
        num_threads: int = 2,
        exclude: Sequence[str] = SITE_SPECIFIC,
        split_salt: str = SPLIT_SALT,
        scorer: Scorer | None = None,
        threshold_tolerance: float = 0.03,
    ) -> None:
        self.n_members = n_members
        self.seed = seed
        self.negative_rate = negative_rate
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.feature_fraction = feature_fraction
        self.lambda_l2 = lambda_l2
        self.max_bin = max_bin
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.num_threads = num_threads
        self.exclude = tuple(exclude)
        self.split_salt = split_salt
        self.scorer = scorer
        self.threshold_tolerance = threshold_tolerance

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters (JSON-able; the scorer by name)."""
        params = {k: v for k, v in vars(self).items() if not k.endswith("_")}
        params["exclude"] = list(self.exclude)
        params["scorer"] = getattr(self.scorer, "__qualname__", None) or "normalized_utility"
        return params

    def lightgbm_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "metric": "auc",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "max_bin": self.max_bin,
            "num_threads": self.num_threads,
            "deterministic": True,
            "force_col_wise": True,
            "seed": self.seed,
            "verbose": -1,
        }

    # ------------------------------------------------------------ fit

    def fit(
        self, features: pd.DataFrame, labels: npt.ArrayLike, patient_ids: npt.ArrayLike
    ) -> SepsisModelTrainer:
        started = time.perf_counter()
        ids = np.asarray(patient_ids, dtype=object)
        y = np.asarray(labels, dtype=np.int64)
        self.split_ = assign_split(ids, self.split_salt)
        self.feature_names_ = [c for c in FEATURE_NAMES if c not in self.exclude]
        x = features.loc[:, self.feature_names_].to_numpy(dtype=np.float64)
        train = self.split_ == TRAIN
        stop = train & early_stopping_mask(ids)
        fit_rows, cal = train & ~stop, self.split_ == CALIBRATION
        self._check(y, fit_rows, stop, cal)
        boosters = [self._member(i, x, y, ids, fit_rows, stop) for i in range(self.n_members)]
        raw_cal = member_probabilities(boosters, x[cal]).mean(axis=0)
        calibrator, calibration_scores = choose_calibrator(raw_cal, y[cal], ids[cal])
        risk_cal = calibrator.predict(raw_cal)
        choice = choose_threshold(
            risk_cal, y[cal], ids[cal], self.scorer, tolerance=self.threshold_tolerance
        )
        ood = self._ood(features.loc[fit_rows])
        model = RiskModel(boosters, calibrator, ood, choice.threshold, self.feature_names_)
        self.risk_model_ = model
        self.report_ = self._report(y, ids, fit_rows, stop, cal, raw_cal, risk_cal, choice)
        self.report_["calibration"]["cross_fitted_brier"] = calibration_scores
        self.report_["training_seconds"] = round(time.perf_counter() - started, 1)
        model.metadata = {"trainer": self.get_params(), "training": self.report_}
        return self

    @staticmethod
    def _check(y: npt.NDArray[np.int64], *masks: npt.NDArray[np.bool_]) -> None:
        for name, mask in zip(("training", "early-stopping", "calibration"), masks, strict=True):
            if len(np.unique(y[mask])) < 2:
                raise ValueError(f"the {name} patients hold only one class of hours")

    def _member(
        self,
        i: int,
        x: npt.NDArray[np.float64],
        y: npt.NDArray[np.int64],
        ids: npt.NDArray[np.object_],
        fit_rows: npt.NDArray[np.bool_],
        stop: npt.NDArray[np.bool_],
    ) -> lgb.Booster:
        rng = np.random.default_rng([self.seed, i])
        codes, unique = pd.factorize(ids[fit_rows], sort=True)
        weight = bootstrap_patient_weights(codes, len(unique), rng)
        keep = (weight > 0) & negative_subsample(y[fit_rows], self.negative_rate, rng)
        params = {**self.lightgbm_params(), "seed": self.seed + i}
        data = lgb.Dataset(
            x[fit_rows][keep], y[fit_rows][keep], weight=weight[keep],
            feature_name=self.feature_names_, params=params, free_raw_data=True,
        )  # fmt: skip
        valid = lgb.Dataset(x[stop], y[stop], reference=data, params=params)
        stopper = lgb.early_stopping(self.early_stopping_rounds, verbose=False)
        booster = lgb.train(params, data, self.max_rounds, valid_sets=[valid], callbacks=[stopper])
        booster.free_dataset()
        return booster

    def _ood(self, train_features: pd.DataFrame) -> OODDetector:
        rng = np.random.default_rng([self.seed, 10_000])
        n = len(train_features)
        rows = np.sort(rng.choice(n, size=min(n, OOD_SAMPLE_ROWS), replace=False))
        return OODDetector().fit(train_features.iloc[rows])

    def _report(
        self,
        y: npt.NDArray[np.int64],
        ids: npt.NDArray[np.object_],
        fit_rows: npt.NDArray[np.bool_],
        stop: npt.NDArray[np.bool_],
        cal: npt.NDArray[np.bool_],
        raw_cal: npt.NDArray[np.float64],
        risk_cal: npt.NDArray[np.float64],
        choice: Any,
    ) -> dict[str, Any]:
        model = self.risk_model_

        def counts(mask: npt.NDArray[np.bool_]) -> dict[str, int]:
            septic = pd.Series(y[mask]).groupby(ids[mask]).max()
            return {
                "patients": len(septic),
                "septic_patients": int(septic.sum()),
                "hours": int(mask.sum()),
            }

        return {
            "split": {
                "fit": counts(fit_rows),
                "early_stopping": counts(stop),
                "calibration": counts(cal),
            },
            "members": [
                {"best_iteration": b.best_iteration, "trees": b.num_trees()} for b in model.boosters
            ],
            "calibration": {
                "method": model.calibrator.method,
                "brier_raw": brier(raw_cal, y[cal]),
                "brier_calibrated": brier(risk_cal, y[cal]),
            },
            "threshold": {
                "value": choice.threshold,
                "calibration_score": choice.score,
                "calibration_optimum": choice.best_threshold,
                "calibration_optimum_score": choice.best_score,
                "tolerance": self.threshold_tolerance,
            },
        }
