"""Metrics of hourly risk and alerts, every one returned as plain JSON-able values.

Definitions (rows are patient-hours; a stay's t_sepsis is as in `utility`: first labelled
hour + 6; "septic" means ever labelled; an *alert* is an hour whose alert flag is set):

- **AUROC / AUPRC (hourly)**: discrimination of each hour's risk against that hour's
  SepsisLabel (which is 1 from t_sepsis - 6 on), over all patient-hours. AUPRC is average
  precision. ``None`` when the hours hold only one class.
- **Sensitivity**: share of septic patients with at least one alert at or before
  t_sepsis + 3 h (the last hour the challenge utility still rewards).
  *before onset*: at or before t_sepsis. *in window*: at least one alert from t_sepsis - 12 h
  to t_sepsis + 3 h, the hours in which the utility rewards an alert.
- **PPV (patients)**: share of patients alerted at least once during the stay who are septic.
  **Specificity (patients)**: share of never-septic patients never alerted.
- **Alerts per 100 patient-days**: alert *episodes* (an episode starts when a stay's alert goes
  from off to on, or is on at its first hour) per 100 days of observed stay (rows / 24).
- **Lead time**: for septic patients whose first alert of the stay comes at or before
  t_sepsis, t_sepsis minus the hour of that first alert; summarized by the median.
- **Calibration** (only for risks that are probabilities): reliability curve over quantile
  bins of risk (bins merge where risks tie), Brier score, and expected calibration error =
  sum over bins of (bin share of hours) x |mean risk - observed label rate|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from wardwatch.evaluate.utility import (
    CHALLENGE_2019,
    Stays,
    UtilityParameters,
    utility,
    utility_curve,
)

HOURS_PER_DAY = 24
Kind = Literal["model", "baseline"]


@dataclass(frozen=True)
class Predictions:
    """One model's (or baseline's) output for every row of an evaluation frame.

    `risk` is one finite number per row (higher = more likely septic); `alert` is the hourly
    alert actually raised (defaults to ``risk >= threshold``; pass it when an alert policy
    suppresses some). `probability` says whether `risk` is a calibrated probability, which is
    when calibration is measured.
    """

    risk: npt.NDArray[np.float64]
    threshold: float
    alert: npt.NDArray[np.bool_] | None = None
    kind: Kind = "model"
    probability: bool = True
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        risk = np.asarray(self.risk, dtype=np.float64)
        if not np.all(np.isfinite(risk)):
            raise ValueError("risk must be finite on every row (no NaN)")
        alert = risk >= self.threshold if self.alert is None else np.asarray(self.alert, bool)
        if alert.shape != risk.shape:
            raise ValueError("alert and risk differ in length")
        object.__setattr__(self, "risk", risk)
        object.__setattr__(self, "alert", alert)

    @property
    def alerts(self) -> npt.NDArray[np.bool_]:
        assert self.alert is not None  # set in __post_init__
        return self.alert


def number(value: float | np.floating | None) -> float | None:
    """A JSON-able float: NaN, infinities and None become None."""
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def _share(part: int | np.integer, whole: int | np.integer) -> float | None:
    return float(part) / float(whole) if whole else None


def hourly_discrimination(labels: npt.ArrayLike, risk: npt.ArrayLike) -> dict[str, Any]:
    """Hourly AUROC and AUPRC (None when only one class is present) and the hourly prevalence."""
    y = np.asarray(labels, dtype=bool)
    both = 0 < y.sum() < len(y)
    return {
        "auroc": float(roc_auc_score(y, risk)) if both else None,
        "auprc": float(average_precision_score(y, risk)) if both else None,
        "prevalence": _share(int(y.sum()), len(y)),
    }


def first_alert_position(stays: Stays, alert: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Per stay, the row index of the first alert (``inf`` when never alerted)."""
    return stays.per_stay(np.where(alert, stays.position.astype(np.float64), np.inf), np.minimum)


def patient_alerts(
    stays: Stays, alert: npt.NDArray[np.bool_], params: UtilityParameters = CHALLENGE_2019
) -> dict[str, Any]:
    """Patient-level sensitivity (three windows), PPV and specificity."""
    septic = stays.septic
    first = first_alert_position(stays, alert)
    d = stays.hours_from_onset()
    window = (d >= params.dt_early) & (d <= params.dt_late)
    in_window = stays.per_stay(alert & window, np.logical_or)[septic]
    alerted = np.isfinite(first)
    n_septic = int(septic.sum())
    onset, first_septic = stays.onset[septic], first[septic]
    return {
        "sensitivity": _share(int((first_septic <= onset + params.dt_late).sum()), n_septic),
        "sensitivity_before_onset": _share(int((first_septic <= onset).sum()), n_septic),
        "sensitivity_in_window": _share(int(in_window.sum()), n_septic),
        "ppv": _share(int((alerted & septic).sum()), int(alerted.sum())),
        "specificity": _share(int((~alerted & ~septic).sum()), int((~septic).sum())),
        "alerted_patients": int(alerted.sum()),
        "alerted_septic_patients": int((alerted & septic).sum()),
    }


def alert_onsets(stays: Stays, alert: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Per row, whether an alert episode starts there (off -> on, or on at the stay's start)."""
    previous = np.r_[False, alert[:-1]]
    previous[stays.starts] = False
    return alert & ~previous


def alert_burden(stays: Stays, alert: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """Alert episodes, episodes per 100 patient-days and the share of hours in alert."""
    episodes = int(alert_onsets(stays, alert).sum())
    days = stays.n_rows / HOURS_PER_DAY
    return {
        "alert_episodes": episodes,
        "patient_days": days,
        "alerts_per_100_patient_days": 100 * episodes / days if days else None,
        "alert_hours_fraction": _share(int(alert.sum()), stays.n_rows),
    }


def lead_times(stays: Stays, alert: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Hours from the first alert to t_sepsis, for septic stays first alerted at or before it."""
    septic = stays.septic
    lead = stays.onset[septic] - first_alert_position(stays, alert)[septic]
    return lead[lead >= 0]


def lead_time_summary(stays: Stays, alert: npt.NDArray[np.bool_]) -> dict[str, Any]:
    lead = lead_times(stays, alert)
    quartiles = np.percentile(lead, [25, 50, 75]) if len(lead) else [None] * 3
    return {
        "median_hours": number(quartiles[1]),
        "q1_hours": number(quartiles[0]),
        "q3_hours": number(quartiles[2]),
        "patients": len(lead),
        "hours": [int(h) for h in lead],
    }


def calibration(labels: npt.ArrayLike, risk: npt.ArrayLike, n_bins: int = 10) -> dict[str, Any]:
    """Reliability curve over quantile bins, Brier score and expected calibration error."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(risk, dtype=np.float64)
    if not len(y):
        return {"bins": [], "brier": None, "ece": None}
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    which = np.searchsorted(edges[1:-1], p, side="right")
    count = np.bincount(which, minlength=len(edges) - 1)
    used = count > 0
    mean_risk = np.bincount(which, weights=p)[used] / count[used]
    observed = np.bincount(which, weights=y)[used] / count[used]
    bins = [
        {"mean_risk": float(m), "observed": float(o), "hours": int(c)}
        for m, o, c in zip(mean_risk, observed, count[used], strict=True)
    ]
    gap = np.abs(mean_risk - observed) * count[used] / len(y)
    return {"bins": bins, "brier": float(np.mean((p - y) ** 2)), "ece": float(gap.sum())}


def roc_points(labels: npt.ArrayLike, risk: npt.ArrayLike, max_points: int = 200) -> dict:
    """The ROC curve, thinned to at most `max_points` points for plotting (None if one class)."""
    y = np.asarray(labels, dtype=bool)
    if not 0 < y.sum() < len(y):
        return {"fpr": None, "tpr": None}
    fpr, tpr, _ = roc_curve(y, risk)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}


def default_thresholds(risk: npt.ArrayLike, n: int = 101) -> npt.NDArray[np.float64]:
    """A threshold grid: every distinct risk when there are few (point scores), else a grid on
    [0, 1] merged with quantiles of the risk (which resolves the crowded low end)."""
    p = np.asarray(risk, dtype=np.float64)
    distinct = np.unique(p)
    if len(distinct) <= n:
        return np.r_[distinct, np.inf]
    grid = np.r_[np.linspace(0, 1, n), np.quantile(p, np.linspace(0, 1, n))]
    return np.unique(np.r_[grid, np.inf])


def _count_at_least(values: npt.NDArray[np.float64], thresholds: npt.NDArray[np.float64]) -> Any:
    return len(values) - np.searchsorted(np.sort(values), thresholds, side="left")


def threshold_curves(
    stays: Stays,
    risk: npt.NDArray[np.float64],
    thresholds: npt.ArrayLike | None = None,
    params: UtilityParameters = CHALLENGE_2019,
) -> dict[str, Any]:
    """Utility, alerts per 100 patient-days, sensitivity and PPV (patients) per threshold.

    Alerting is ``risk >= threshold``. Each curve is exact and costs one sort, not one pass
    per threshold: an episode starts at row i for exactly the thresholds in
    (risk[i - 1], risk[i]], and a patient is alerted for thresholds up to the stay's max risk.
    """
    grid = default_thresholds(risk) if thresholds is None else np.asarray(thresholds, float)
    previous = np.r_[-np.inf, risk[:-1]]
    previous[stays.starts] = -np.inf
    starts = _count_at_least(risk, grid) - _count_at_least(np.minimum(risk, previous), grid)
    d = stays.hours_from_onset()
    by_late = stays.per_stay(np.where(d <= params.dt_late, risk, -np.inf), np.maximum)
    peak = stays.per_stay(risk, np.maximum)
    septic = stays.septic
    alerted = _count_at_least(peak, grid)
    alerted_septic = _count_at_least(peak[septic], grid)
    days = stays.n_rows / HOURS_PER_DAY
    with np.errstate(invalid="ignore", divide="ignore"):
        ppv = np.where(alerted > 0, alerted_septic / np.maximum(alerted, 1), np.nan)
    return {
        "thresholds": [number(t) for t in grid],  # inf (never alert) is written as None
        "utility": [number(u) for u in utility_curve(stays, risk, grid, params)],
        "alerts_per_100_patient_days": [number(100 * s / days) if days else None for s in starts],
        "sensitivity": [
            _share(int(c), int(septic.sum())) for c in _count_at_least(by_late[septic], grid)
        ],
        "ppv": [number(v) for v in ppv],
    }


def evaluate_predictions(
    stays: Stays,
    labels: npt.ArrayLike,
    predictions: Predictions,
    *,
    curves: bool = True,
    params: UtilityParameters = CHALLENGE_2019,
) -> dict[str, Any]:
    """Every metric of one model on one cohort, as a JSON-able dict."""
    alert, risk = predictions.alerts, predictions.risk
    if len(risk) != stays.n_rows:
        raise ValueError(f"{len(risk)} predictions for {stays.n_rows} rows")
    score = utility(stays, alert, params)
    result: dict[str, Any] = {
        "kind": predictions.kind,
        "threshold": number(predictions.threshold),
        "probability": predictions.probability,
        "note": predictions.note,
        "details": predictions.details,
        "counts": {
            "patients": stays.n_stays,
            "septic_patients": int(stays.septic.sum()),
            "hours": stays.n_rows,
        },
        "utility": {
            "normalized": number(score.normalized),
            "observed": score.observed,
            "best": score.best,
            "worst": score.worst,
            "inaction": score.inaction,
        },
        "hourly": hourly_discrimination(labels, risk),
        "patients": patient_alerts(stays, alert, params),
        "burden": alert_burden(stays, alert),
        "lead_time": lead_time_summary(stays, alert),
        "calibration": calibration(labels, risk) if predictions.probability else None,
    }
    if curves:
        result["curves"] = {
            "roc": roc_points(labels, risk),
            "threshold": threshold_curves(stays, risk, params=params),
        }
    return result


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The scalar metrics of an `evaluate_predictions` result, flat, for tables."""
    calibrated = result["calibration"] or {}
    return {
        "utility": result["utility"]["normalized"],
        "auroc": result["hourly"]["auroc"],
        "auprc": result["hourly"]["auprc"],
        "sensitivity": result["patients"]["sensitivity"],
        "sensitivity_before_onset": result["patients"]["sensitivity_before_onset"],
        "sensitivity_in_window": result["patients"]["sensitivity_in_window"],
        "ppv": result["patients"]["ppv"],
        "specificity": result["patients"]["specificity"],
        "alerts_per_100_patient_days": result["burden"]["alerts_per_100_patient_days"],
        "median_lead_hours": result["lead_time"]["median_hours"],
        "brier": calibrated.get("brier"),
        "ece": calibrated.get("ece"),
    }
