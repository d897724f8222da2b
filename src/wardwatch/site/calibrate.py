"""Set per-unit alert thresholds from a site's own data: `wardwatch calibrate-site`.

Every threshold is searched *through the real alert policy*: for a candidate threshold the
unit's stays are replayed hour by hour by `alerts.burden.simulate` (threshold, organ-
dysfunction gate, re-alert suppression, review flags), and what is counted is what the policy
fired. A threshold-only count would mislead: the gate and the suppression change the alert
rate about twofold, and not by the same factor in every unit. The replay is a Python loop,
so the search is a bisection on the log-odds of the threshold (about a dozen replays a unit),
stopped as soon as the achieved figure is within `TOLERANCE` of the target.

Targets (one per run; see `Target`):

- without labels: at most N alerts per 100 patient-days (`alerts_per_100_patient_days`), or a
  share of patients alerted at least once (`patients_alerted`); the rate falls as the
  threshold rises, so bisection finds the threshold whose rate meets the budget;
- without labels and without a budget of the site's own (`budgets_from_model`): per unit, the
  alert rate the model had on its own held-out patients, scaled by how much riskier the
  unit looks to the model (its mean risk over the model's). The model's rate is in the
  model card's definition, alert *episodes* (risk goes from below to at or above the
  threshold), not policy alerts: the artifact records no policy replay, and a policy count
  would depend on the policy book of the hospital that trained it. So the unit's threshold
  is searched for the same count (`alert_episodes_per_100_patient_days`), never a policy
  count against an episode budget: the gate and the suppression fire 0.56-0.83 times as
  often as episodes at the model's threshold on the shipped sample, depending on the unit;
- with labels: the highest threshold whose patient-level sensitivity (an alert at or before
  t_sepsis + 3 h, through the policy) reaches the target (`sensitivity`); or the threshold
  with the best PhysioNet normalized utility of hourly alerts, risk >= threshold (`utility`;
  the utility is defined on hourly predictions, so this one is not a policy replay).

A prior shift (Saerens, Latinne & Decaestecker 2002, "Adjusting the outputs of a classifier
to new a priori probabilities") needs no labels: EM alternates between moving the posteriors
to a guessed prevalence and re-estimating the prevalence as their mean, per unit. The
thresholds are then searched on the adjusted risks; with no target, each unit keeps the
model's operating threshold on the adjusted scale.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.alerts.burden import burden, simulate
from wardwatch.alerts.policy import PolicyBook
from wardwatch.alerts.signs import organ_dysfunction
from wardwatch.evaluate.metrics import alert_burden
from wardwatch.evaluate.utility import Stays, utility, utility_curve
from wardwatch.ingest.psv import LABEL, read_cohort
from wardwatch.model.artifact import verified_files
from wardwatch.model.cohort import score_cohort
from wardwatch.model.risk import RiskModel
from wardwatch.site.config import (
    OTHER_ICU,
    PriorShift,
    SiteConfig,
    data_hash,
    finite,
    shift_prior,
    site_policy_book,
    stay_units,
)

TOLERANCE = 0.10  # the achieved alert figure must be within 10 % of the target
AIM = 0.04  # the search stops early once within 4 %
MAX_STEPS = 40
MIN_PATIENTS = 10  # a unit with fewer stays keeps the model's threshold (noted)
DISAGREE = 2.0  # EM prevalence vs mean risk, beyond which the prior shift is doubted
# A unit that looks more than 4x riskier (or safer) than the training population is too
# different for a scaled budget to mean much; the ratio is held at the limit and noted.
RATIO_RANGE = (0.25, 4.0)
FROM_MODEL = "budget-from-model"  # the method's name in a site configuration
EPISODES = "alert_episodes_per_100_patient_days"
Kind = Literal[
    "alerts_per_100_patient_days",
    "alert_episodes_per_100_patient_days",
    "patients_alerted",
    "sensitivity",
    "utility",
]
LABELLED_KINDS = ("sensitivity", "utility")


class CalibrationError(ValueError):
    """The site's data or the request cannot give a configuration (with the reason)."""


@dataclass(frozen=True)
class Target:
    """What the thresholds aim at: a kind and its value (None for `utility`, the maximum)."""

    kind: Kind
    value: float | None = None

    def __post_init__(self) -> None:
        if self.kind == "utility":
            return
        if self.value is None or not math.isfinite(self.value) or self.value <= 0:
            raise CalibrationError(f"the {self.kind} target must be a positive number")
        if self.kind in ("patients_alerted", "sensitivity") and self.value > 1:
            raise CalibrationError(f"the {self.kind} target is a share in (0, 1]")


# ---------------------------------------------------------------- the site's scored data


@dataclass(frozen=True)
class SiteData:
    """A site's stays with the model's output per hour: what every search replays."""

    wide: pd.DataFrame
    outputs: pd.DataFrame  # risk, uncertainty, ood per row of `wide`
    signs: pd.DataFrame  # `alerts.signs.organ_dysfunction(wide)`
    units: npt.NDArray[np.object_]
    source_hash: str = ""

    @classmethod
    def score(cls, wide: pd.DataFrame, model: RiskModel, source_hash: str = "") -> SiteData:
        wide = wide.reset_index(drop=True)
        outputs = score_cohort(wide, model).loc[:, ["risk", "uncertainty", "ood"]]
        return cls(wide, outputs, organ_dysfunction(wide), stay_units(wide), source_hash)

    @property
    def labelled(self) -> bool:
        return LABEL in self.wide and bool(self.wide[LABEL].notna().all())

    @property
    def risk(self) -> npt.NDArray[np.float64]:
        return self.outputs["risk"].to_numpy(np.float64)

    def stays(self) -> Stays:
        labels = self.wide[LABEL].to_numpy() if self.labelled else np.zeros(len(self.wide))
        return Stays.from_labels(self.wide["patient_id"].to_numpy(), labels)

    def rows(self, mask: npt.NDArray[np.bool_]) -> SiteData:
        """The same data restricted to some stays' rows (whole stays, in order)."""
        keep = np.flatnonzero(mask)
        return SiteData(
            self.wide.iloc[keep].reset_index(drop=True),
            self.outputs.iloc[keep].reset_index(drop=True),
            self.signs.iloc[keep].reset_index(drop=True),
            self.units[keep],
            self.source_hash,
        )

    def with_risk(self, risk: npt.NDArray[np.float64]) -> SiteData:
        outputs = self.outputs.assign(risk=np.asarray(risk, dtype=np.float64))
        return replace(self, outputs=outputs)

    def unit_codes(self) -> list[str]:
        return sorted(set(self.units.tolist()))


def load_site_data(path: Path, model: RiskModel, limit: int | None = None) -> SiteData:
    """The .psv files at `path` as the live store would hold them, scored by `model`."""
    wide = read_cohort(Path(path), limit=limit, as_stored=True)
    return SiteData.score(wide, model, data_hash(path))


# ---------------------------------------------------------------- what the policy does


def replay(data: SiteData, threshold: float, book: PolicyBook) -> pd.DataFrame:
    """`fired` and `review` per row, every unit's policy at `threshold`.

    The simulated clinician confirms an alert on a labelled hour and dismisses it otherwise;
    without labels every alert is dismissed, which the policy treats exactly as a
    confirmation (the same re-alert window and rise), so the counts need no labels.
    """
    at = book.with_all(threshold=threshold)
    wide = data.wide if data.labelled else data.wide.assign(**{LABEL: 0.0})
    return simulate(wide, data.outputs, at, threshold, signs=data.signs)


def achieved(data: SiteData, threshold: float, book: PolicyBook) -> dict[str, Any]:
    """What the policy would have done at `threshold`; outcome figures only with labels."""
    stays = data.stays()
    figures = burden(data.wide, replay(data, threshold, book), stays)
    result: dict[str, Any] = {
        "threshold": threshold,
        "patients": stays.n_stays,
        "patient_days": figures["patient_days"],
        "alerts_per_100_patient_days": figures["alerts_per_100_patient_days"],
        "review_flags_per_100_patient_days": figures["review_flags_per_100_patient_days"],
        "patients_alerted": figures["patients_alerted"],
    }
    # The model card's count of the same threshold, so the two can be set side by side.
    result[EPISODES] = alert_burden(stays, data.risk >= threshold)["alerts_per_100_patient_days"]
    if data.labelled:
        alerts = data.risk >= threshold
        result |= {
            "septic_patients": int(stays.septic.sum()),
            "sensitivity": figures["sensitivity"],
            "ppv_per_alert": figures["ppv_per_alert"],
            "median_lead_hours": figures["median_lead_hours"],
            "utility_hourly_threshold": finite(utility(stays, alerts).normalized),
        }
    return result


# ---------------------------------------------------------------- searching


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _bounds(risk: npt.NDArray[np.float64]) -> tuple[float, float]:
    """A threshold below every risk (all hours above) and one above every risk (none)."""
    low = float(np.clip(np.min(risk) * 0.999, 1e-9, 0.5))
    high = float(np.clip(np.max(risk) + (1 - np.max(risk)) * 0.001, 0.5, 1 - 1e-9))
    return low, high


def bisect_falling(
    measure: Callable[[float], float], target: float, low: float, high: float
) -> tuple[float, float]:
    """(threshold, figure) for a figure that falls as the threshold rises, aiming at `target`.

    Bisects on the log-odds; returns the closest figure seen (relatively), stopping once it is
    within `AIM` of the target.
    """
    lo, hi = _logit(low), _logit(high)
    best = (high, measure(high))
    for _ in range(MAX_STEPS):
        mid = _expit((lo + hi) / 2)
        figure = measure(mid)
        if abs(figure - target) < abs(best[1] - target):
            best = (mid, figure)
        if abs(figure - target) <= AIM * target or hi - lo < 1e-6:
            break
        lo, hi = (_logit(mid), hi) if figure > target else (lo, _logit(mid))
    return best


def highest_reaching(
    measure: Callable[[float], float], target: float, low: float, high: float
) -> float:
    """The highest threshold whose figure (falling with the threshold) still reaches `target`."""
    if measure(low) < target:
        raise CalibrationError(f"the target {target:.0%} is not reached even at threshold {low}")
    lo, hi = _logit(low), _logit(high)
    for _ in range(MAX_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if measure(_expit(mid)) >= target else (lo, mid)
        if hi - lo < 1e-3:  # a 0.1 % change of the threshold's odds
            break
    return _expit(lo)


def _for_budget(data: SiteData, target: Target, book: PolicyBook) -> float:
    assert target.value is not None  # checked by Target
    stays = data.stays()

    def figure(threshold: float) -> float:
        if target.kind == EPISODES:  # no replay: episodes are the threshold's alone
            return alert_burden(stays, data.risk >= threshold)["alerts_per_100_patient_days"]
        simulated = replay(data, threshold, book)
        if target.kind == "patients_alerted":
            return float(stays.per_stay(simulated["fired"].to_numpy(), np.logical_or).mean())
        return 100 * int(simulated["fired"].sum()) / (stays.n_rows / 24)

    return bisect_falling(figure, target.value, *_bounds(data.risk))[0]


def _for_sensitivity(data: SiteData, target: Target, book: PolicyBook) -> float:
    assert target.value is not None
    stays = data.stays()

    def sensitivity(threshold: float) -> float:
        figures = burden(data.wide, replay(data, threshold, book), stays)
        return figures["sensitivity"]

    return highest_reaching(sensitivity, target.value, *_bounds(data.risk))


def _for_utility(data: SiteData) -> float:
    """The exact optimum: every distinct risk is a candidate (`utility_curve` is one sort)."""
    grid = np.unique(data.risk)
    grid = grid[(grid > 0) & (grid < 1)]
    curve = utility_curve(data.stays(), data.risk, grid)
    return float(grid[int(np.nanargmax(curve))])


def unit_threshold(data: SiteData, target: Target, book: PolicyBook) -> float:
    """One unit's threshold for `target` on that unit's rows."""
    if target.kind in LABELLED_KINDS and not data.stays().septic.any():
        raise CalibrationError(f"no septic patient in the data: cannot aim at {target.kind}")
    if target.kind == "utility":
        return _for_utility(data)
    if target.kind == "sensitivity":
        return _for_sensitivity(data, target, book)
    return _for_budget(data, target, book)


# ---------------------------------------------------------------- prior shift


def estimate_prevalence(
    risk: npt.ArrayLike, training_prevalence: float, tol: float = 1e-8, max_steps: int = 1000
) -> float:
    """The site's prevalence by Saerens-Latinne-Decaestecker EM, from posteriors alone."""
    p = np.asarray(risk, dtype=np.float64)
    if not len(p):
        raise CalibrationError("no risks to estimate a prevalence from")
    prevalence = training_prevalence
    for _ in range(max_steps):
        updated = float(np.clip(shift_prior(p, training_prevalence, prevalence).mean(),
                                1e-6, 1 - 1e-6))  # fmt: skip
        if abs(updated - prevalence) < tol:
            return updated
        prevalence = updated
    return prevalence


def estimate_prior_shift(data: SiteData, training_prevalence: float) -> PriorShift:
    """Per unit, the EM estimate of the share of positive hours."""
    site = {
        unit: estimate_prevalence(data.risk[data.units == unit], training_prevalence)
        for unit in data.unit_codes()
    }
    return PriorShift(training_prevalence, site)


def prior_shift_doubts(data: SiteData, shift: PriorShift) -> dict[str, str]:
    """Units whose EM prevalence is more than `DISAGREE`-fold off the mean risk, and why.

    EM assumes only the prevalence changed (the same patients look the same given their
    label). When the case mix changed too, EM runs to an extreme (it can go to zero); the
    mean risk, the unadjusted model's own estimate, is then the saner figure to compare.
    """
    doubts = {}
    for unit, estimated in shift.site_prevalence.items():
        mean_risk = float(np.mean(data.risk[data.units == unit]))
        if not 1 / DISAGREE <= estimated / mean_risk <= DISAGREE:
            doubts[unit] = (
                f"{unit}: EM estimates {estimated:.2%} positive hours but the mean risk is "
                f"{mean_risk:.2%}; more than a prior shift is going on, so the shift is not "
                "applied there (the unit keeps the model's risks)"
            )
    return doubts


def trusted_shift(data: SiteData, training_prevalence: float) -> tuple[PriorShift, list[str]]:
    """The EM prior shift for the units where it can be believed, and notes on the others.

    On set A, a model trained on the surgical ICU alone put the medical ICU's prevalence at
    24.2 % of hours (it is 2.7 %; mean risk 1.7 %): applied, the shift took utility from 0.27
    to -0.06 (scripts/site_transfer.py --foreign-only). Where EM and the mean risk disagree
    that much, no shift is safer than a wrong one. The guard catches only that much: trained
    on the medical ICU, EM put the surgical ICU at 3.7 % (it is 1.1 %; mean risk 2.7 %),
    within the bound, and the shift, applied, took utility from 0.23 to -0.09 there.
    """
    shift = estimate_prior_shift(data, training_prevalence)
    doubts = prior_shift_doubts(data, shift)
    kept = {u: p for u, p in shift.site_prevalence.items() if u not in doubts}
    return PriorShift(training_prevalence, kept), list(doubts.values())


def training_prevalence(model_dir: Path) -> float:
    """The share of positive hours in the model's own population, from its artifact.

    Read from the model's metadata (`training.prevalence`) when the trainer recorded it,
    else from the test split's reliability table in `figures.json` (hours per bin times the
    observed rate): the held-out patients of the training hospital.
    """
    files = verified_files(model_dir)
    metadata = json.loads(files["model.json"]).get("metadata", {})
    recorded = metadata.get("training", {}).get("prevalence")
    if recorded is not None:
        return float(recorded)
    figures = json.loads(files.get("figures.json", b"{}"))
    bins = figures.get("test_split", {}).get("reliability") or []
    hours = sum(b["hours"] for b in bins)
    if not hours:
        raise CalibrationError(f"{model_dir}: the artifact records no training prevalence")
    return sum(b["hours"] * b["observed"] for b in bins) / hours


# ---------------------------------------------------------------- a budget from the model


@dataclass(frozen=True)
class ModelReference:
    """The model on its own held-out patients: what `budgets_from_model` scales.

    `alerts_per_100_patient_days` counts alert episodes at `threshold` (risk from below to at
    or above it, `evaluate.metrics.alert_burden`, as on the model card); `mean_risk` is the
    mean hourly risk over the same patients.
    """

    alerts_per_100_patient_days: float
    mean_risk: float
    threshold: float
    source: str = "the model's held-out patients"

    def __post_init__(self) -> None:
        for name in ("alerts_per_100_patient_days", "mean_risk", "threshold"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise CalibrationError(
                    f"the model's reference {name} is {value}: there is no alert rate to carry "
                    "over; give the site a budget of its own (--budget N)"
                )

    @classmethod
    def from_figures(
        cls, figures: Mapping[str, Any], source: str = "the model's held-out patients"
    ) -> ModelReference:
        """From validation figures (`model.validate.validation_figures`, figures.json's
        `test_split`): the alert rate, the threshold and the reliability table, whose bins
        give the mean risk exactly (hours times each bin's mean risk)."""
        bins = figures.get("reliability") or []
        hours = sum(b["hours"] for b in bins)
        needed = ("alerts_per_100_patient_days", "threshold")
        lacking = [k for k in needed if figures.get(k) is None]
        if lacking or not hours:
            raise CalibrationError(
                f"{source} records no {', '.join(lacking or ['reliability table'])}: the model's "
                "own alert rate and mean risk are unknown, so no budget can be derived from "
                "it; give the site a budget of its own (--budget N), or use a model trained by "
                "`wardwatch train`, which records them in figures.json"
            )
        return cls(
            alerts_per_100_patient_days=float(figures["alerts_per_100_patient_days"]),
            mean_risk=sum(b["hours"] * b["mean_risk"] for b in bins) / hours,
            threshold=float(figures["threshold"]),
            source=source,
        )

    def note(self) -> str:
        low, high = RATIO_RANGE
        return (
            f"budget from the model: on {self.source} it raised "
            f"{self.alerts_per_100_patient_days:.4g} alert episodes per 100 patient-days at "
            f"threshold {self.threshold:.4g} (risk from below to at or above it; the policy's "
            f"gate and re-alert suppression usually fire fewer) with a mean risk of "
            f"{self.mean_risk:.2%} per hour; each unit's budget is that rate times its mean "
            f"risk over {self.mean_risk:.2%} (the ratio held within {low:g}-{high:g})"
        )


def model_reference(model_dir: Path) -> ModelReference:
    """The reference figures of the artifact at `model_dir`, from its verified figures.json
    (`test_split`: the training hospital's held-out patients).

    The trainer records nothing of the kind in the model's metadata (`training` holds the
    fit and calibration splits, on which the model is not held out), so there is no
    metadata field to prefer, unlike `training_prevalence`.
    """
    files = verified_files(model_dir)
    if "figures.json" not in files:
        raise CalibrationError(
            f"{model_dir}: the artifact has no figures.json (the model's validation on "
            "held-out patients), so its own alert rate and mean risk are unknown; give the "
            "site a budget of its own (--budget N), or use a model trained by "
            "`wardwatch train`, which writes figures.json"
        )
    figures = json.loads(files["figures.json"]).get("test_split") or {}
    where = f"the held-out test split in {model_dir.name}/figures.json"
    return ModelReference.from_figures(figures, where)


@dataclass(frozen=True)
class UnitBudget:
    """One unit's budget derived from the model: the rate scaled by the unit's mean risk."""

    unit: str
    mean_risk: float
    ratio: float  # mean risk over the reference's, before clipping
    budget: float  # alert episodes per 100 patient-days

    @property
    def clipped(self) -> bool:
        low, high = RATIO_RANGE
        return not low <= self.ratio <= high

    def note(self, reference: ModelReference) -> str:
        used = float(np.clip(self.ratio, *RATIO_RANGE))
        text = (
            f"{self.unit}: mean risk {self.mean_risk:.2%}, {self.ratio:.3g} times the "
            f"model's; budget {reference.alerts_per_100_patient_days:.4g} x {used:.3g} = "
            f"{self.budget:.3g} alert episodes per 100 patient-days"
        )
        if self.clipped:
            text += (
                f" (ratio clipped from {self.ratio:.3g}: a unit this unlike the training "
                "population needs a budget of its own, or labels, more than a scaled one)"
            )
        return text


def budgets_from_model(data: SiteData, reference: ModelReference) -> dict[str, UnitBudget]:
    """Per unit: the model's own alert rate times (the unit's mean risk / the model's).

    Evidence (scripts/site_transfer.py --foreign-only): a one-member model trained on one ICU
    of PhysioNet set A, deployed on every patient of the other (5,470 SICU / 5,344 MICU
    patients). With this budget, MICU -> SICU and SICU -> MICU reached a utility of 0.232 and
    0.271, against 0.231 and 0.272 at the model's own threshold (differences +0.001 and
    -0.001, 95 % patient-bootstrap intervals -0.010 to +0.013 and -0.010 to +0.007: the two
    thresholds nearly coincide) and 0.294 and 0.318 with the target's own labels (+0.062
    [+0.021, +0.121] and +0.048 [+0.015, +0.084] over this budget). Over two more seeds of
    the source model it was never measurably worse than the model's threshold (at worst
    -0.004 [-0.011, +0.002]) and better in two of the six runs, MICU -> SICU, where the
    model's threshold raised 83-87 alert episodes per 100 patient-days on the new unit
    (0.044 -> 0.172 and 0.142 -> 0.227, +0.129 [+0.096, +0.192] and +0.085 [+0.056,
    +0.121]); it stayed below the target's own labels in all six (by 0.048-0.140, every
    interval above zero). Scaling the rate by an EM prevalence ratio instead gave 0.313 and
    -0.065. Mean risk, not an EM prevalence: when the case mix moves as well as the
    prevalence, EM runs to extremes, while the mean risk is the model's plain reading of how
    sick the unit is. `data` holds the model's own risks (not prior-shifted), the scale the
    reference was measured on.
    """
    budgets = {}
    for unit in data.unit_codes():
        mean_risk = float(np.mean(data.risk[data.units == unit]))
        ratio = mean_risk / reference.mean_risk
        used = float(np.clip(ratio, *RATIO_RANGE))
        budgets[unit] = UnitBudget(unit, mean_risk, ratio,
                                   reference.alerts_per_100_patient_days * used)  # fmt: skip
    return budgets


# ---------------------------------------------------------------- the whole site


def _method(target: Target | None, shift: PriorShift | None, from_model: bool = False) -> str:
    name = FROM_MODEL if from_model else "model-threshold" if target is None else target.kind
    return f"{name}+prior-shift" if shift is not None else name


def calibrate_site(
    data: SiteData,
    model_version: str,
    model_threshold: float,
    *,
    target: Target | None = None,
    prior_shift_from: float | None = None,
    book: PolicyBook | None = None,
    reference: ModelReference | None = None,
) -> SiteConfig:
    """Thresholds per unit for `target`, or for budgets derived from the model's `reference`
    (`budgets_from_model`), optionally after a prior shift away from the training prevalence
    `prior_shift_from`; units with too few stays keep the model's threshold."""
    if target is None and reference is None and prior_shift_from is None:
        raise CalibrationError("give a target (budget, share, sensitivity, utility) or prior shift")
    if target is not None and reference is not None:
        raise CalibrationError("give a target or a budget from the model, not both")
    if target is not None and target.kind in LABELLED_KINDS and not data.labelled:
        raise CalibrationError(f"aiming at {target.kind} needs labelled data (SepsisLabel)")
    book = book or PolicyBook()
    shift, notes = None, []
    if prior_shift_from is not None:
        shift, notes = trusted_shift(data, prior_shift_from)
    budgets: dict[str, UnitBudget] = {}
    if reference is not None:
        _check_reference(reference, model_threshold)
        budgets = budgets_from_model(data, reference)  # on the unshifted risks, as the model's
        notes.append(reference.note())
        notes.extend(b.note(reference) for b in budgets.values())
    scored = data if shift is None else data.with_risk(shift.adjust(data.risk, data.units))
    thresholds: dict[str, float] = {}
    figures: dict[str, Any] = {}
    for unit in scored.unit_codes():
        part = scored.rows(scored.units == unit)
        n = part.stays().n_stays
        aim = Target(EPISODES, budgets[unit].budget) if budgets else target
        if aim is not None and n < MIN_PATIENTS:
            notes.append(f"{unit}: {n} stays (< {MIN_PATIENTS}); keeps the model's threshold")
            continue
        threshold = model_threshold if aim is None else unit_threshold(part, aim, book)
        thresholds[unit] = threshold
        figures[unit] = achieved(part, threshold, book)
        notes.extend(_off_target(unit, figures[unit], aim))
    figures["all"] = _overall(scored, thresholds, model_threshold, book)
    if budgets:
        aims = {unit: budgets[unit].budget for unit in thresholds}
    else:
        aims = {} if target is None or target.value is None else {target.kind: target.value}
    return SiteConfig(
        model_version=model_version,
        thresholds=thresholds,
        method=_method(target, shift, from_model=reference is not None),
        data_hash=data.source_hash,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        target=aims,
        prior_shift=shift,
        achieved=figures,
        notes=tuple(notes),
    )


def _check_reference(reference: ModelReference, model_threshold: float) -> None:
    """Refuse a reference measured at another threshold: it would be another model's rate."""
    if not math.isclose(reference.threshold, model_threshold, rel_tol=1e-9):
        raise CalibrationError(
            f"the model's reference alert rate was measured at threshold "
            f"{reference.threshold:.6g}, but this model's threshold is {model_threshold:.6g}: "
            "the figures belong to another model; read them from this model's own artifact"
        )


def _off_target(unit: str, figures: dict[str, Any], target: Target | None) -> list[str]:
    budgets = ("alerts_per_100_patient_days", EPISODES, "patients_alerted")
    if target is None or target.kind not in budgets:
        return []
    assert target.value is not None
    got = figures[target.kind] or 0.0
    if abs(got - target.value) <= TOLERANCE * target.value:
        return []
    return [f"{unit}: achieved {target.kind} {got:.3g}, not within {TOLERANCE:.0%} of "
            f"{target.value:g} (too few stays or alerts to resolve it)"]  # fmt: skip


def _overall(
    data: SiteData, thresholds: dict[str, float], default: float, book: PolicyBook
) -> dict[str, Any]:
    """The site's figures with every unit at its own threshold (one replay of all units)."""
    config = SiteConfig("-", thresholds or {OTHER_ICU: default}, "-", "-", "-")
    wide = data.wide if data.labelled else data.wide.assign(**{LABEL: 0.0})
    simulated = simulate(wide, data.outputs, site_policy_book(config, book), default,
                         signs=data.signs)  # fmt: skip
    stays = data.stays()
    figures = burden(wide, simulated, stays)
    keys = ["alerts_per_100_patient_days", "review_flags_per_100_patient_days",
            "patients_alerted", "patient_days"]  # fmt: skip
    if data.labelled:
        keys += ["sensitivity", "ppv_per_alert", "median_lead_hours"]
    result = {k: figures[k] for k in keys} | {"patients": stays.n_stays}
    alerts = config.alerts(data.risk, data.units, default)
    result[EPISODES] = alert_burden(stays, alerts)["alerts_per_100_patient_days"]
    if data.labelled:
        result["utility_hourly_threshold"] = finite(utility(stays, alerts).normalized)
    return result
