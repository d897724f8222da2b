"""The operating threshold: the calibrated risk above which an hour alerts.

Chosen on calibration patients (never trained on) to maximise a scorer of the alerts — by
default the PhysioNet/CinC 2019 normalized utility (`wardwatch.evaluate.utility`), which
rewards alerts 12 h before to 3 h after onset and charges every false-alarm hour. Any callable
``scorer(patient_ids, labels, alerts) -> float`` (higher is better) can stand in for it, e.g.
a hospital's own cost of a false alarm.

**Margin.** The utility curve is asymmetric: below its optimum every extra false-alarm hour of
every patient costs, so it falls off a cliff; above it, alerts are lost one by one, so it
declines gently. A site whose risks run higher than the training hospital's (sicker patients,
other measurement habits) moves the curve toward lower-looking thresholds — and a threshold set
exactly at the training optimum lands on the cliff. In set A, a model trained on MICU patients
and used on SICU patients scored utility -0.09 at its MICU-optimal threshold (0.025) and +0.33
at the highest threshold within 0.03 of that optimum (0.036), while a model trained on SICU
patients lost 0.003 to the same margin. So the chosen threshold is the *highest*
candidate whose score is within `tolerance` of the best (`tolerance=0` gives the optimum).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wardwatch.evaluate.utility import normalized_utility

Scorer = Callable[[npt.NDArray[np.object_], npt.NDArray[np.int64], npt.NDArray[np.bool_]], float]
DEFAULT_SCORER_NAME = "PhysioNet/CinC 2019 normalized utility"


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float  # the chosen one: highest within `tolerance` of the best score
    score: float
    best_threshold: float  # the optimum on the data it was chosen on
    best_score: float
    candidates: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float64]


def candidate_thresholds(risk: npt.ArrayLike, n: int = 200) -> npt.NDArray[np.float64]:
    """Distinct quantiles of the risk from its median up: where an alert threshold can sit."""
    return np.unique(np.quantile(np.asarray(risk, np.float64), np.linspace(0.5, 0.999, n)))


def choose_threshold(
    risk: npt.ArrayLike,
    labels: npt.ArrayLike,
    patient_ids: npt.ArrayLike,
    scorer: Scorer | None = None,
    candidates: npt.ArrayLike | None = None,
    tolerance: float = 0.0,
) -> ThresholdChoice:
    """The highest candidate scoring within `tolerance` of the best candidate."""
    r = np.asarray(risk, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    ids = np.asarray(patient_ids, dtype=object)
    score = scorer or normalized_utility
    grid = candidate_thresholds(r) if candidates is None else np.asarray(candidates, np.float64)
    scores = np.array([score(ids, y, r >= t) for t in grid], dtype=np.float64)
    best = int(np.nanargmax(scores))
    chosen = int(np.flatnonzero(scores >= scores[best] - tolerance).max())
    return ThresholdChoice(
        float(grid[chosen]), float(scores[chosen]), float(grid[best]), float(scores[best]),
        grid, scores,
    )  # fmt: skip
