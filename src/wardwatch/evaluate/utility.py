"""The PhysioNet/CinC 2019 normalized utility, vectorized over a whole cohort.

Definition (Reyna et al., Crit Care Med 2020; the challenge's `evaluate_sepsis_score.py`),
reproduced here exactly, with times counted in rows (hours) from the start of each stay:

- A septic patient's onset is ``t_sepsis = (index of the first SepsisLabel == 1) - dt_optimal``,
  i.e. the first labelled row + 6. A patient never labelled has ``t_sepsis = inf``.
- For a septic patient, with ``d = t - t_sepsis``, an hour's utility is

  ====================  ==================================  ===============================
  d                     alert (prediction 1)                no alert (prediction 0)
  ====================  ==================================  ===============================
  d <= dt_optimal (-6)  max(m1 * d + b1, u_fp): 0 at -12,   0
                        rising to 1 at -6, -0.05 before -12
  -6 < d <= dt_late (3) m2 * d + b2: falls from 1 to 0      m3 * d + b3: falls from 0 to -2
  d > 3                 0                                   0
  ====================  ==================================  ===============================

  For a patient never septic every hour is ``u_fp`` (-0.05) with an alert, ``u_tn`` (0) without.
- Per cohort, ``normalized = (observed - inaction) / (best - inaction)``, where *inaction*
  predicts 0 everywhere and *best* predicts 1 exactly on rows
  ``max(0, t_sepsis + dt_early) .. min(t_sepsis + dt_late, n - 1)`` of each septic stay (the
  window is cut at the edges of short stays), 0 elsewhere. *Worst* is ``1 - best``; it does not
  enter the normalization but is reported, as in the official code.

Because each hour's utility depends only on whether that hour alerts, the cohort's utility is
``sum(u_no_alert) + sum over alerted rows of (u_alert - u_no_alert)``; that identity is what
makes `utility_curve` exact for every threshold in one sort.

Rows must be grouped by patient and in time order within a patient, one row per hour (the
challenge's files and `read_cohort` frames are); `Stays` checks the grouping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd


@dataclass(frozen=True)
class UtilityParameters:
    """The challenge's constants; hours are relative to t_sepsis."""

    dt_early: int = -12
    dt_optimal: int = -6
    dt_late: int = 3
    max_u_tp: float = 1.0
    min_u_fn: float = -2.0
    u_fp: float = -0.05
    u_tn: float = 0.0

    def __post_init__(self) -> None:
        if not self.dt_early < self.dt_optimal < self.dt_late:
            raise ValueError("utility times must satisfy dt_early < dt_optimal < dt_late")


CHALLENGE_2019 = UtilityParameters()


@dataclass(frozen=True)
class Stays:
    """Row layout of a cohort: each row's stay, its hour index within the stay, and onsets.

    `codes` numbers the stays 0..n_stays-1 in order of appearance, `starts` is the first row
    of each stay, `position` the 0-based row index within its stay and `onset` each stay's
    t_sepsis as a row index (``inf`` when the patient never gets the label).
    """

    codes: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    position: npt.NDArray[np.int64]
    onset: npt.NDArray[np.float64]
    patient_ids: npt.NDArray[np.object_]

    @classmethod
    def from_labels(
        cls,
        patient_ids: npt.ArrayLike,
        labels: npt.ArrayLike,
        params: UtilityParameters = CHALLENGE_2019,
    ) -> Stays:
        codes, uniques = pd.factorize(np.asarray(patient_ids, dtype=object), sort=False)
        codes = codes.astype(np.int64)
        if len(codes) and np.any(np.diff(codes) < 0):
            raise ValueError("rows must be grouped by patient (each stay's rows together)")
        label = _binary(labels, "labels")
        if len(label) != len(codes):
            raise ValueError("labels and patient ids differ in length")
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else codes
        position = np.arange(len(codes)) - starts[codes]
        first = np.full(len(starts), np.inf)
        if len(codes):
            labelled = np.where(label, position.astype(np.float64), np.inf)
            first = np.minimum.reduceat(labelled, starts)
        onset = first - params.dt_optimal
        return cls(codes, starts.astype(np.int64), position, onset, np.asarray(uniques, object))

    @property
    def n_rows(self) -> int:
        return len(self.codes)

    @property
    def n_stays(self) -> int:
        return len(self.starts)

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        return np.diff(np.r_[self.starts, self.n_rows])

    @property
    def septic(self) -> npt.NDArray[np.bool_]:
        """Per stay: whether the patient is ever labelled septic."""
        return np.isfinite(self.onset)

    def hours_from_onset(self) -> npt.NDArray[np.float64]:
        """Per row: hours relative to the stay's t_sepsis (``-inf`` for non-septic stays)."""
        return self.position - self.onset[self.codes]

    def per_stay(self, values: npt.ArrayLike, reduce: np.ufunc) -> npt.NDArray[np.generic]:
        """`reduce` (np.maximum, np.minimum, np.add, np.logical_or) of row values per stay."""
        values = np.asarray(values)
        if not self.n_rows:
            return values[:0]
        return reduce.reduceat(values, self.starts)


def _binary(values: npt.ArrayLike, what: str) -> npt.NDArray[np.bool_]:
    array = np.asarray(values)
    if array.dtype == bool:
        return array
    numeric = array.astype(np.float64)
    if not np.all((numeric == 0) | (numeric == 1)):
        raise ValueError(f"{what} must be 0 or 1")
    return numeric == 1


def row_utilities(
    stays: Stays, params: UtilityParameters = CHALLENGE_2019
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per row, the utility of alerting and of not alerting at that hour."""
    p = params
    m1 = float(p.max_u_tp) / float(p.dt_optimal - p.dt_early)
    b1 = -m1 * p.dt_early
    m2 = float(-p.max_u_tp) / float(p.dt_late - p.dt_optimal)
    b2 = -m2 * p.dt_late
    m3 = float(p.min_u_fn) / float(p.dt_late - p.dt_optimal)
    b3 = -m3 * p.dt_optimal
    d = stays.hours_from_onset()
    septic = stays.septic[stays.codes]
    early = septic & (d <= p.dt_optimal)
    middle = septic & (d > p.dt_optimal) & (d <= p.dt_late)
    alert = np.where(septic, 0.0, p.u_fp)
    quiet = np.where(septic, 0.0, p.u_tn)
    alert[early] = np.maximum(m1 * d[early] + b1, p.u_fp)
    alert[middle] = m2 * d[middle] + b2
    quiet[middle] = m3 * d[middle] + b3
    return alert, quiet


def optimal_predictions(
    stays: Stays, params: UtilityParameters = CHALLENGE_2019
) -> npt.NDArray[np.bool_]:
    """The official "best" predictions: 1 from t_sepsis - 12 to t_sepsis + 3, cut to the stay."""
    onset = stays.onset[stays.codes]
    return (stays.position >= onset + params.dt_early) & (stays.position <= onset + params.dt_late)


@dataclass(frozen=True)
class UtilityScore:
    """Unnormalized cohort totals and the normalized score (NaN when best == inaction)."""

    observed: float
    best: float
    worst: float
    inaction: float

    @property
    def normalized(self) -> float:
        span = self.best - self.inaction
        return (self.observed - self.inaction) / span if span else float("nan")


def utility(
    stays: Stays, alerts: npt.ArrayLike, params: UtilityParameters = CHALLENGE_2019
) -> UtilityScore:
    """The cohort's utility for binary hourly alerts (the challenge's PredictedLabel)."""
    alert = _binary(alerts, "alerts")
    if len(alert) != stays.n_rows:
        raise ValueError("one alert value is needed per row")
    u_alert, u_quiet = row_utilities(stays, params)
    best = optimal_predictions(stays, params)
    return UtilityScore(
        observed=float(np.where(alert, u_alert, u_quiet).sum()),
        best=float(np.where(best, u_alert, u_quiet).sum()),
        worst=float(np.where(best, u_quiet, u_alert).sum()),
        inaction=float(u_quiet.sum()),
    )


def normalized_utility(
    patient_ids: npt.ArrayLike,
    labels: npt.ArrayLike,
    alerts: npt.ArrayLike,
    params: UtilityParameters = CHALLENGE_2019,
) -> float:
    """The challenge score for hourly labels and alerts of a cohort (rows grouped by patient)."""
    return utility(Stays.from_labels(patient_ids, labels, params), alerts, params).normalized


def utility_curve(
    stays: Stays,
    risk: npt.ArrayLike,
    thresholds: npt.ArrayLike,
    params: UtilityParameters = CHALLENGE_2019,
) -> npt.NDArray[np.float64]:
    """Normalized utility of alerting when ``risk >= threshold``, for every threshold at once."""
    u_alert, u_quiet = row_utilities(stays, params)
    best = optimal_predictions(stays, params)
    inaction = u_quiet.sum()
    span = np.where(best, u_alert, u_quiet).sum() - inaction
    gained = alerted_sums(np.asarray(risk, np.float64), u_alert - u_quiet, thresholds)
    return gained / span if span else np.full(len(gained), np.nan)


def alerted_sums(
    risk: npt.NDArray[np.float64], values: npt.NDArray[np.float64], thresholds: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """For each threshold, the sum of `values` over rows with ``risk >= threshold``."""
    order = np.argsort(risk, kind="stable")
    tail = np.r_[np.cumsum(values[order][::-1])[::-1], 0.0]
    return tail[np.searchsorted(risk[order], np.asarray(thresholds, np.float64), side="left")]
