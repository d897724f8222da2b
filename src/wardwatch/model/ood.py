"""How far an input lies from the training population: a score and a flag.

Two kinds of surprise, both in decades (log10 units) and averaged over the variables:

- **values**: for each measured variable (last known value) its mid-rank position u in the
  training distribution, read off a stored grid of quantiles, scored as -log10(2 min(u, 1-u)):
  0 at the median, 1 in the outer 10 %, 2 in the outer 1 %, capped where the grid ends. The
  mean over the variables the patient has, so one extreme but real lactate hardly moves it and
  a patient whose every lab sits in the far tails does.
- **missingness**: for each variable, -log10 of the training frequency of its measured/never-
  measured state at that point, averaged: a pattern of measurements this hospital's patients
  rarely had (a different unit, a different institution's ordering habits) scores high.

The score is the sum of the two; the flag is set above the 99th percentile of training rows
(`quantile`), so by construction about 1 % of training hours are flagged. The reference is a
few kilobytes of JSON (quantile grids, frequencies, the threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.ingest.psv import MEASURED

OOD_VARIABLES: tuple[str, ...] = (*MEASURED, "Age")
GRID = np.linspace(0.0, 1.0, 201)
_CLIP, _SHIFT = 1e5, 1e6  # values clipped to +-_CLIP, variable j shifted by j * _SHIFT
_MIN_FREQUENCY = 1e-4


class OODDetector:
    """Estimator: `fit(features)` learns the reference; `score`/`flag` judge new rows."""

    def __init__(self, variables: Sequence[str] = OOD_VARIABLES, quantile: float = 0.99) -> None:
        self.variables = variables
        self.quantile = quantile

    def fit(self, features: pd.DataFrame) -> OODDetector:
        x = features.loc[:, list(self.variables)].to_numpy(dtype=np.float64)
        self.grids_ = [self._grid(column) for column in x.T]
        self._flat_cache = None
        self.measured_frequency_ = np.clip((~np.isnan(x)).mean(axis=0), _MIN_FREQUENCY, 1.0)
        self.threshold_ = float(np.quantile(self._score(x), self.quantile))
        return self

    @staticmethod
    def _grid(column: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Quantiles of the values seen in training (empty when never measured)."""
        present = column[~np.isnan(column)]
        return np.quantile(present, GRID) if len(present) else np.array([], dtype=np.float64)

    def _flat(self) -> tuple[npt.NDArray[np.float64], ...]:
        """All grids in one sorted array, variable j's shifted by j * _SHIFT; where each
        starts; which variables have a grid. Cached: built once per detector."""
        if getattr(self, "_flat_cache", None) is None:
            shifts = np.arange(len(self.grids_)) * _SHIFT
            bands = [
                np.clip(g, -_CLIP, _CLIP) + s for g, s in zip(self.grids_, shifts, strict=True)
            ]
            lengths = np.array([len(g) for g in self.grids_])
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.float64)
            self._flat_cache = (np.concatenate(bands), shifts, starts, lengths == len(GRID))
        return self._flat_cache

    def _value_surprise(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Mean over measured variables of -log10(2 * tail share), tail read off the grids.

        One searchsorted for all variables: values are shifted into disjoint bands (exact to
        ~1e-8, far below the resolution of any charted value).
        """
        flat, shifts, starts, has_grid = self._flat()
        size = len(GRID)
        shifted = (np.clip(x, -_CLIP, _CLIP) + shifts).ravel()
        mid = (np.searchsorted(flat, shifted, "left") + np.searchsorted(flat, shifted, "right")) / 2
        rank = mid.reshape(x.shape) - starts
        tail = np.clip(np.minimum(rank, size - rank) / size, 0.5 / size, 0.5)
        usable = ~np.isnan(x) & has_grid
        surprise = np.where(usable, -np.log10(2 * tail), 0.0)
        counted = usable.sum(axis=1)
        return surprise.sum(axis=1) / np.maximum(counted, 1)

    def _missing_surprise(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        p = self.measured_frequency_
        state = np.where(np.isnan(x), np.clip(1 - p, _MIN_FREQUENCY, 1.0), p)
        return -np.log10(state).mean(axis=1)

    def _score(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return self._value_surprise(x) + self._missing_surprise(x)

    def score(self, features: pd.DataFrame) -> npt.NDArray[np.float64]:
        """OOD score per row (higher = less like the training population)."""
        return self._score(features.loc[:, list(self.variables)].to_numpy(dtype=np.float64))

    def score_array(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """`score` for a matrix whose columns are `variables`, in order."""
        return self._score(x)

    def flag(self, scores: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        return np.asarray(scores) > self.threshold_

    def to_dict(self) -> dict[str, Any]:
        return {
            "variables": list(self.variables),
            "quantile": self.quantile,
            "grid_probabilities": len(GRID),
            "grids": [g.tolist() for g in self.grids_],
            "measured_frequency": self.measured_frequency_.tolist(),
            "threshold": self.threshold_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OODDetector:
        detector = cls(tuple(data["variables"]), float(data["quantile"]))
        detector.grids_ = [np.asarray(g, dtype=np.float64) for g in data["grids"]]
        detector._flat_cache = None
        detector.measured_frequency_ = np.asarray(data["measured_frequency"], dtype=np.float64)
        detector.threshold_ = float(data["threshold"])
        return detector
