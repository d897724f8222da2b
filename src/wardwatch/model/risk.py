"""`RiskModel`: the trained predictor — bagged boosters, calibrator, OOD reference, threshold.

`predict(features)` returns one row per input row with:

| column        | meaning                                                                    |
|---------------|----------------------------------------------------------------------------|
| `risk`        | calibrated probability of SepsisLabel = 1 (from 6 h before onset) this hour |
| `uncertainty` | standard deviation of the members' calibrated risks (`uncertainty.py`)     |
| `ood_score`   | how unlike the training population the input is (`ood.py`)                 |
| `ood`         | True above the OOD threshold set on training data (99th percentile)        |

`alert` is not a column: alerting is `risk >= threshold` here, and the alert policy decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.model.calibrate import Calibrator
from wardwatch.model.ood import OODDetector
from wardwatch.model.uncertainty import ensemble_spread

_BULK_ROWS = 4096
_CHUNK = 65536  # rows scored at a time: bounds the memory of the column selection
PREDICTION_COLUMNS = ("risk", "uncertainty", "ood_score", "ood")


def member_probabilities(
    boosters: Sequence[lgb.Booster], x: npt.NDArray[np.float64], threads: int | None = None
) -> npt.NDArray[np.float64]:
    """Uncalibrated probability of each booster (members x rows).

    By default one thread for a few rows (the bedside: threads cost more than they save), two
    for bulk; a worker process that shares the cores with others passes `threads=1`.
    """
    if threads is None:
        threads = 1 if len(x) < _BULK_ROWS else 2
    return np.vstack([b.predict(x, num_threads=threads) for b in boosters])


class RiskModel:
    """A trained sepsis risk model; build it with `SepsisModelTrainer` or `load_model`."""

    def __init__(
        self,
        boosters: Sequence[lgb.Booster],
        calibrator: Calibrator,
        ood: OODDetector,
        threshold: float,
        feature_names: Sequence[str],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.boosters = list(boosters)
        self.calibrator = calibrator
        self.ood = ood
        self.threshold = float(threshold)
        self.feature_names = tuple(feature_names)
        self.metadata = dict(metadata or {})

    @property
    def version(self) -> str:
        """The artifact's content-addressed version (`unsaved` for a model not yet saved)."""
        return str(self.metadata.get("version", "unsaved"))

    def _positions(self, columns: pd.Index) -> tuple[np.ndarray, np.ndarray]:
        """Where the model's and the OOD detector's inputs sit among `columns` (cached)."""
        cached = getattr(self, "_columns_cache", None)
        if cached is not None and cached[0].equals(columns):
            return cached[1]
        model = columns.get_indexer(list(self.feature_names))
        ood = columns.get_indexer(list(self.ood.variables))
        if (model < 0).any() or (ood < 0).any():
            lacking = [n for n in (*self.feature_names, *self.ood.variables) if n not in columns]
            raise KeyError(f"features lack the model's inputs {lacking[:5]}")
        self._columns_cache = (columns, (model, ood))
        return model, ood

    def raw_members(
        self, x: npt.NDArray[np.float64], threads: int | None = None
    ) -> npt.NDArray[np.float64]:
        """Uncalibrated probability of each member (members x rows) for a model-input matrix."""
        return member_probabilities(self.boosters, x, threads)

    def raw(self, features: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Uncalibrated ensemble probability (the calibrator's input)."""
        model_columns, _ = self._positions(features.columns)
        x = features.to_numpy(dtype=np.float64)[:, model_columns]
        return self.raw_members(x).mean(axis=0)

    def predict(self, features: pd.DataFrame, *, threads: int | None = None) -> pd.DataFrame:
        """risk, uncertainty, ood_score, ood for every row of a `build_features` frame.

        `threads`: LightGBM threads (see `member_probabilities`); the numbers do not depend on it.
        """
        model_columns, ood_columns = self._positions(features.columns)
        everything = features.to_numpy(dtype=np.float64)
        parts = [
            self._predict_rows(
                everything[begin : begin + _CHUNK], model_columns, ood_columns, threads
            )
            for begin in range(0, len(everything), _CHUNK)
        ]
        stacked = np.hstack(parts) if parts else np.empty((4, 0))
        out = dict(zip(PREDICTION_COLUMNS, stacked, strict=True))
        out["ood"] = out["ood"].astype(bool)
        return pd.DataFrame(out, index=features.index)

    def _predict_rows(
        self,
        rows: npt.NDArray[np.float64],
        model_columns: np.ndarray,
        ood_columns: np.ndarray,
        threads: int | None,
    ) -> npt.NDArray[np.float64]:
        members = self.raw_members(rows[:, model_columns], threads)
        ood_score = self.ood.score_array(rows[:, ood_columns])
        risk = self.calibrator.predict(members.mean(axis=0))
        spread = ensemble_spread(self.calibrator.predict(members))
        return np.vstack([risk, spread, ood_score, self.ood.flag(ood_score)])

    def alerts(self, predictions: pd.DataFrame) -> npt.NDArray[np.bool_]:
        """Hours at or above the operating threshold."""
        return predictions["risk"].to_numpy() >= self.threshold
