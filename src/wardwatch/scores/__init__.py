"""The rule-based baselines — SIRS, qSOFA, NEWS2, SOFA — as alternative "models".

Each baseline turns the wide hourly frame into integer points per hour from the *last known*
value of each variable (a value measured at hour t counts from hour t on, never earlier; a
variable not yet measured in the stay adds 0 points, as at the bedside). `risk` divides the
points by the most the data allow, giving [0, 1] for rank-based comparisons (AUROC, utility vs
threshold); it is not a probability. Each module's docstring says which criteria cannot be
computed from the PhysioNet 2019 variables.

Each score is defined once, in its module, as *components* (`components(last)`: per organ,
parameter or criterion, the points where its inputs are known, NaN where not — see `rules`).
The baseline's points add them, an unknown one adding 0; the model's derived features
(`wardwatch.features`: SOFA_resp …, SIRS_partial, NEWS2_components …) are built from the same
components, so a baseline and the matching feature cannot drift apart.

Use::

    news2 = BASELINES["news2"]
    news2.score(wide)  # integer points per row
    news2.predictions(wide)  # risk + alerts at the conventional threshold, for `evaluate`
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.ingest.psv import MEASURED
from wardwatch.scores import news2, qsofa, sirs, sofa

if TYPE_CHECKING:
    # `wardwatch.features` imports the score modules; importing `evaluate` (and scikit-learn)
    # here would add seconds to every process that only computes features.
    from wardwatch.evaluate.metrics import Predictions

__all__ = ["BASELINES", "Baseline", "get_baseline", "last_known"]


def last_known(wide: pd.DataFrame, columns: Iterable[str] = MEASURED) -> pd.DataFrame:
    """Each row's last known value of `columns` within its stay (causal forward fill).

    Rows must be in time order within each patient (as `read_cohort` gives them). The result
    has the same index as `wide`, with `patient_id` first.
    """
    names = list(columns)
    filled = wide.groupby("patient_id", sort=False)[names].ffill()
    filled.insert(0, "patient_id", wide["patient_id"].to_numpy())
    return filled


@dataclass(frozen=True)
class Baseline:
    """A clinical point score with a conventional alert threshold (alert when points ≥ it)."""

    name: str
    title: str
    points: Callable[[pd.DataFrame], npt.NDArray[np.int64]]
    threshold: int
    max_points: int
    uses: tuple[str, ...]
    cannot_use: str

    def score(self, wide: pd.DataFrame) -> npt.NDArray[np.int64]:
        """Integer points per row of `wide`."""
        return np.asarray(self.points(last_known(wide, self.uses)), dtype=np.int64)

    def risk(self, wide: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Points / maximum points available from the data, in [0, 1]."""
        return self.score(wide) / self.max_points

    def alert(self, wide: pd.DataFrame) -> npt.NDArray[np.bool_]:
        return self.score(wide) >= self.threshold

    def predictions(self, wide: pd.DataFrame) -> Predictions:
        """Risk and alerts at the conventional threshold, ready for `evaluate_cohort`."""
        from wardwatch.evaluate.metrics import Predictions  # lazily: see the imports above

        points = self.score(wide)
        return Predictions(
            risk=points / self.max_points,
            threshold=self.threshold / self.max_points,
            alert=points >= self.threshold,
            kind="baseline",
            probability=False,
            note=f"{self.title}: alert at ≥ {self.threshold} of {self.max_points} points. "
            f"Cannot use: {self.cannot_use}.",
            details={"threshold_points": self.threshold, "max_points": self.max_points,
                     "uses": list(self.uses)},
        )  # fmt: skip


def _baseline(name: str, title: str, rule: ModuleType, **overrides: Any) -> Baseline:
    fields = {"points": rule.points, "threshold": rule.THRESHOLD, "max_points": rule.MAX_POINTS,
              "uses": rule.USES, "cannot_use": rule.CANNOT_USE}  # fmt: skip
    return Baseline(name=name, title=title, **(fields | overrides))


BASELINES: dict[str, Baseline] = {
    "qsofa": _baseline("qsofa", "qSOFA", qsofa),
    "sirs": _baseline("sirs", "SIRS", sirs),
    "news2": _baseline("news2", "NEWS2", news2),
    "sofa": _baseline("sofa", "SOFA (total, baseline assumed 0)", sofa),
    "sofa_rise": _baseline(
        "sofa_rise", "SOFA rise over 24 h", sofa, points=sofa.rise_points,
        cannot_use=sofa.CANNOT_USE + "; under-calls organ failure present on arrival",
    ),
}  # fmt: skip
DEFAULT_BASELINES = ("qsofa", "sirs", "news2", "sofa")


def get_baseline(name: str) -> Baseline:
    try:
        return BASELINES[name]
    except KeyError:
        raise KeyError(f"no baseline {name!r}; known: {', '.join(BASELINES)}") from None
