"""Does label-free site calibration recover what a site would get from its own labels?

Set A of PhysioNet 2019 comes from one hospital system, but its files say in which ICU a stay
was: Unit1 (medical, MICU) or Unit2 (surgical, SICU). Treating each unit as a "site":

- source = one unit, target = the other, both directions;
- only patients in the shipped model's *test* split (the model was trained on set A's train
  split and calibrated, and its threshold set, on the calibration split: neither is used
  here); patients whose file records neither unit (45 % of set A) belong to no side and are
  left out;
- the budget: the alert policy's rate (alerts per 100 patient-days) on the *source* side at
  the source's utility-optimal threshold (chosen on the source's labels) — what a site
  would carry over from a sister unit it trusts;
- three thresholds on the target, each scored on the target's labels:
  1. the shipped model's threshold, unadjusted;
  2. label-free site calibration: `site.calibrate` on the target's unlabelled stays, aiming
     at the source's budget through the real alert policy (and, as a variant, the EM prior
     shift with the shipped threshold on the shifted risks);
  3. within-site: the utility-optimal threshold on the target's own labels, chosen on one
     half of the target's patients and scored on the other half (and vice versa: 2-fold
     cross-fitting, so no patient is scored at a threshold chosen on its own labels).

Utility is the PhysioNet normalized utility of hourly alerts (risk >= the unit's threshold,
what `wardwatch predict-psv` writes); alerts per 100 patient-days, sensitivity and PPV per
alert are those of the alert policy replayed over the target (`alerts.burden`).

A split by admission period (train on earlier patients, test on later ones) is not possible:
the files carry no dates, only hours since ICU admission.

A second experiment is closer to the issue's setting: a model that never saw the target unit
(`foreign_direction`; `--foreign-only` runs just that one):

- the source model: one member (`SepsisModelTrainer(n_members=1)`), fitted on the source
  unit's train-split patients (early stopping on some of them), its calibrator and threshold
  set on the source's calibration split, as `wardwatch train` does; its reference figures on
  the source's held-out test split: the alert-episode rate at its threshold and the mean
  risk (what `wardwatch train` writes to figures.json and `--budget-from-model` reads), and
  the policy rate (for the label-free rows that carry it over);
- the target: every patient of the other unit, whatever their split, since the model saw
  none of them (`--target-test-split`: its test-split patients only, the earlier, smaller
  and noisier version). `check_no_leakage` asserts that the fitting, reference and target
  patients are disjoint; a target label is used only to score the rows and by within-site's
  cross-fitted choice;
- rows: the source threshold, unadjusted; `--budget-from-model`, the product's own path
  (`calibrate_site` with a `ModelReference` built from the model's validation figures);
  other label-free variants (the source's policy rate, as is and times an EM prevalence
  ratio or a mean-risk ratio, which the product does not do since an artifact records no
  policy rate; the EM prior shift, everywhere and where `trusted_shift` believes it);
  within-site, as above;
- uncertainty: a paired patient-level bootstrap of the target (`RESAMPLES` resamples, seed
  `BOOTSTRAP_SEED`, the same resamples for every row) of each row's utility, of its
  difference from the unadjusted row, and of within-site minus budget-from-model, with the
  thresholds held at the values chosen on the whole target; and of the two key differences
  again with the target's thresholds re-chosen in each resample (`rechosen`: budget-from-
  model from the resample's mean risk and episode rates, within-site from its halves), which
  the held thresholds understate. Both are intervals given the source model; its own
  variation shows over `--seeds K` (default 3; beyond the first seed, only the unadjusted,
  budget-from-model and within-site rows, without policy replay).

Run: `.venv/bin/python scripts/site_transfer.py [SET_A_DIR] [--foreign-only]
[--target-test-split] [--seeds K] [--resamples N]` (default /tmp/setA/training_setA).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.alerts.burden import burden
from wardwatch.alerts.policy import PolicyBook
from wardwatch.evaluate.metrics import alert_burden, alert_onsets
from wardwatch.evaluate.utility import Stays, optimal_predictions, row_utilities, utility
from wardwatch.features import build_features
from wardwatch.ingest.psv import LABEL, read_cohort
from wardwatch.model.artifact import SHIPPED, load_shipped_model
from wardwatch.model.risk import RiskModel
from wardwatch.model.split import SPLIT_SALT, TEST, assign_split, buckets
from wardwatch.model.train import SepsisModelTrainer
from wardwatch.model.validate import validation_figures
from wardwatch.site.calibrate import (
    EPISODES,
    RATIO_RANGE,
    ModelReference,
    SiteData,
    Target,
    budgets_from_model,
    calibrate_site,
    estimate_prior_shift,
    replay,
    training_prevalence,
    trusted_shift,
    unit_threshold,
)
from wardwatch.site.config import stay_units

SET_A = Path("/tmp/setA/training_setA")
HALVES_SALT = "wardwatch-site-transfer-halves"
UNITS = ("MICU", "SICU")
SEED = 2019  # the source model's (`SepsisModelTrainer(seed=...)`); `--seeds K` adds 2020, ...
RESAMPLES = 1000
GRID = 400  # risk quantiles from which `rechosen` picks thresholds in each resample
UNADJUSTED = "source threshold, unadjusted"
FROM_MODEL = "label-free: --budget-from-model"
WITHIN = "within-site (own labels, 2-fold)"
BOOTSTRAP_SEED = 20190


def load(set_a: Path) -> SiteData:
    model = load_shipped_model()
    wide = read_cohort(set_a, as_stored=True)
    salt = model.metadata.get("trainer", {}).get("split_salt", SPLIT_SALT)
    held_out = wide[assign_split(wide["patient_id"], salt) == TEST]
    return SiteData.score(held_out, model)


def unlabelled(data: SiteData) -> SiteData:
    """The same stays without SepsisLabel: what label-free calibration may see."""
    return SiteData(data.wide.drop(columns=[LABEL]), data.outputs, data.signs, data.units)


def outcome(
    data: SiteData, parts: list[tuple[npt.NDArray[np.bool_], float]], policy: bool = True
) -> dict[str, Any]:
    """Target figures when each part of its stays (a row mask) alerts at its threshold.

    `policy=False` skips the policy replay (alerts, sensitivity and PPV are then None).
    """
    book = PolicyBook()
    fired = np.zeros(len(data.wide), bool)
    review = np.zeros(len(data.wide), bool)
    alerts = np.zeros(len(data.wide), bool)
    for rows, threshold in parts:
        if policy:
            simulated = replay(data.rows(rows), threshold, book)
            fired[rows], review[rows] = simulated["fired"], simulated["review"]
        alerts[rows] = data.risk[rows] >= threshold
    stays = data.stays()
    figures = dict.fromkeys(("alerts_per_100_patient_days", "sensitivity", "ppv_per_alert",
                             "patients_alerted"))  # fmt: skip
    if policy:
        simulated = pd.DataFrame({"fired": fired, "review": review})
        figures = {k: v for k, v in burden(data.wide, simulated, stays).items() if k in figures}
    return figures | {
        "utility": utility(stays, alerts).normalized,
        "episodes_per_100_patient_days": alert_burden(stays, alerts)["alerts_per_100_patient_days"],
        "thresholds": [t for _, t in parts],
        "alerts": alerts,
    }


def budget_threshold(blind: SiteData, unit: str, rate: float) -> float:
    """Label-free site calibration: the unit's threshold for `rate` alerts / 100 patient-days
    (the search `calibrate_site` runs for `--budget N`, without its report's replays)."""
    aim = Target("alerts_per_100_patient_days", rate)
    return unit_threshold(blind.rows(blind.units == unit), aim, PolicyBook())


def within_site(target: SiteData, policy: bool = True) -> dict[str, Any]:
    """2-fold cross-fitted utility-optimal thresholds on the target's own labels."""
    first_half = buckets(target.wide["patient_id"], HALVES_SALT) < 50
    parts = []
    for chosen_on in (first_half, ~first_half):
        threshold = unit_threshold(target.rows(chosen_on), Target("utility"), PolicyBook())
        parts.append((~chosen_on, threshold))
    return outcome(target, parts, policy)


def direction(data: SiteData, source_unit: str, target_unit: str) -> dict[str, Any]:
    model = load_shipped_model()
    source = data.rows(data.units == source_unit)
    target = data.rows(data.units == target_unit)
    everything = np.ones(len(target.wide), bool)
    source_best = unit_threshold(source, Target("utility"), PolicyBook())
    source_at_best = outcome(source, [(np.ones(len(source.wide), bool), source_best)])
    budget = source_at_best["alerts_per_100_patient_days"]
    usual = outcome(source, [(np.ones(len(source.wide), bool), model.threshold)])
    blind = unlabelled(target)

    def label_free(rate: float) -> float:
        return budget_threshold(blind, target_unit, rate)

    shifted = calibrate_site(blind, model.version, model.threshold,
                             prior_shift_from=training_prevalence(SHIPPED))  # fmt: skip
    assert shifted.prior_shift is not None
    moved = target.with_risk(shifted.risk(target.risk, target.units))
    return {
        "source": source_unit,
        "target": target_unit,
        "source_patients": source.stays().n_stays,
        "target_patients": target.stays().n_stays,
        "target_septic": int(target.stays().septic.sum()),
        "source_utility_optimal_threshold": source_best,
        "source_at_that_threshold": source_at_best,
        "budget": budget,
        "source_rate_at_shipped_threshold": usual["alerts_per_100_patient_days"],
        "em_prevalence": estimate_prior_shift(blind, training_prevalence(SHIPPED)).site_prevalence[
            target_unit
        ],
        "true_hourly_prevalence": float(target.wide[LABEL].mean()),
        "rows": {
            "shipped threshold, unadjusted": outcome(target, [(everything, model.threshold)]),
            "label-free: source's utility-optimal rate": outcome(
                target, [(everything, label_free(budget))]
            ),
            "label-free: source's rate at shipped thr.": outcome(
                target, [(everything, label_free(usual["alerts_per_100_patient_days"]))]
            ),
            "label-free: EM prior shift": outcome(moved, [(everything, model.threshold)]),
            "within-site (own labels, 2-fold)": within_site(target),
        },
    }


def source_model(wide: pd.DataFrame, rows: npt.NDArray[np.bool_], seed: int) -> RiskModel:
    """A one-member model fitted as `wardwatch train` fits one, on `rows` alone.

    `rows` are the source unit's train- and calibration-split patients; the trainer splits them
    again by the same hash rule (train: fit and early stopping; calibration: calibrator and
    threshold), so the model's threshold is set on the source's calibration patients.
    """
    frame = wide[rows].reset_index(drop=True)
    trainer = SepsisModelTrainer(n_members=1, seed=seed, split_salt=SPLIT_SALT)
    trainer.fit(build_features(frame), frame[LABEL], frame["patient_id"])
    assert not (trainer.split_ == TEST).any()  # no test-split patient reached the trainer
    return trainer.risk_model_


def check_no_leakage(
    wide: pd.DataFrame,
    units: npt.NDArray[np.object_],
    groups: dict[str, npt.NDArray[np.bool_]],
    target_unit: str,
) -> None:
    """Fail unless the fitting, reference and target patients are three disjoint sets, the
    target holds only patients of the target unit and the source none."""
    ids = wide["patient_id"].to_numpy()
    sets = {name: set(ids[rows].tolist()) for name, rows in groups.items()}
    names = list(sets)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = sets[first] & sets[second]
            assert not shared, f"{len(shared)} patients both in {first} and in {second}"
    target = groups["target"]
    assert (units[target] == target_unit).all()
    for name in names[:-1]:
        assert not (units[groups[name]] == target_unit).any(), f"{target_unit} rows in {name}"


def patient_utilities(
    stays: Stays, alerts: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per patient: the utility gained over inaction by `alerts`, and the best possible gain.

    The cohort's normalized utility is the ratio of their sums, so a bootstrap resample's
    utility is one weighted sum over patients (`bootstrap`).
    """
    u_alert, u_quiet = row_utilities(stays)
    gained = stays.per_stay(np.where(alerts, u_alert - u_quiet, 0.0), np.add)
    span = stays.per_stay(np.where(optimal_predictions(stays), u_alert - u_quiet, 0.0), np.add)
    return gained.astype(np.float64), span.astype(np.float64)


def resample_weights(patients: int, resamples: int) -> npt.NDArray[np.float64]:
    """Patient-level bootstrap: per resample, how often each patient is drawn (fixed seed)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.integers(0, patients, size=(resamples, patients))
    picks += patients * np.arange(resamples)[:, None]
    counts = np.bincount(picks.ravel(), minlength=resamples * patients)
    return counts.reshape(resamples, patients).astype(np.float64)


def bootstrap(
    gained: dict[str, npt.NDArray[np.float64]],
    span: npt.NDArray[np.float64],
    pairs: list[tuple[str, str]],
    weights: npt.NDArray[np.float64],
) -> dict[Any, tuple[float, float]]:
    """95 % percentile intervals over the resamples (`weights`): of each row's utility (key:
    the row's name) and of each pair's difference (key: the pair).

    The thresholds are held at the values chosen on the full target (see `rechosen`); what
    is resampled is the target's patients, not the source model (see `--seeds` for that).
    """
    names = list(gained)
    scores = (weights @ np.stack([gained[n] for n in names], axis=1)) / (weights @ span)[:, None]
    column = {name: scores[:, i] for i, name in enumerate(names)}
    out: dict[Any, tuple[float, float]] = {name: _interval(column[name]) for name in names}
    for first, second in pairs:
        out[(first, second)] = _interval(column[first] - column[second])
    return out


def rechosen(
    target: SiteData, reference: ModelReference, threshold: float, weights: npt.NDArray[np.float64]
) -> dict[tuple[str, str], tuple[float, float]]:
    """The two key differences' intervals with the target's thresholds chosen again in every
    resample, from a grid of `GRID` risk quantiles: budget-from-model from the resample's
    mean risk and alert-episode rates (the grid threshold whose rate is closest to its
    budget), within-site from the resample's halves (the grid threshold of the best utility
    on one half for the other). Only the source's threshold (`threshold`) stays fixed.
    """
    stays, risk = target.stays(), target.risk
    grid = np.unique(np.quantile(risk, 1 - np.geomspace(1, 1e-4, GRID)))
    gains = np.empty((stays.n_stays, len(grid)))
    episodes = np.empty_like(gains)
    span = np.zeros(stays.n_stays)
    for k, cut in enumerate(grid):
        alerts = risk >= cut
        gains[:, k], span = patient_utilities(stays, alerts)
        episodes[:, k] = stays.per_stay(alert_onsets(stays, alerts), np.add)
    unadjusted = weights @ patient_utilities(stays, risk >= threshold)[0]
    first = (buckets(target.wide["patient_id"], HALVES_SALT) < 50)[stays.starts]
    on_first, on_second = (weights * first) @ gains, (weights * ~first) @ gains
    draw = np.arange(len(weights))
    within = on_second[draw, on_first.argmax(1)] + on_first[draw, on_second.argmax(1)]
    hours = weights @ stays.lengths.astype(np.float64)
    ratio = (weights @ stays.per_stay(risk, np.add)) / hours / reference.mean_risk
    budget = reference.alerts_per_100_patient_days * np.clip(ratio, *RATIO_RANGE)
    # The episode rate peaks at a low threshold (below it, alerts merge into fewer, longer
    # episodes); the search wants its falling side, above the peak, as the bisection finds.
    falling = int(np.argmax(episodes.sum(axis=0)))
    rate = 100 * (weights @ episodes[:, falling:]) / (hours / 24)[:, None]
    chosen = falling + np.abs(rate - budget[:, None]).argmin(1)
    from_model = (on_first + on_second)[draw, chosen]
    spans = weights @ span
    return {
        (FROM_MODEL, UNADJUSTED): _interval((from_model - unadjusted) / spans),
        (WITHIN, FROM_MODEL): _interval((within - from_model) / spans),
    }


def _interval(values: npt.NDArray[np.float64]) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def foreign_direction(
    wide: pd.DataFrame,
    source_unit: str,
    target_unit: str,
    *,
    seed: int = SEED,
    whole_target: bool = True,
    full: bool = True,
    resamples: int = RESAMPLES,
) -> dict[str, Any]:
    """The issue's own setting: a model that has never seen the target unit.

    A one-member model is trained on the source unit's train and calibration splits only (its
    threshold set on its own calibration patients, as `wardwatch train` does); its reference
    figures (alert-episode rate, mean risk, the policy rate of the plain label-free rows) are
    those of the source's held-out test-split patients, as `wardwatch train` records them.
    The model saw no patient of the target unit, so the target is every patient of that unit,
    whatever their split (`whole_target=False`: its test-split patients only, as before).
    No target label is used but to score the rows, and by within-site's cross-fitted choice.
    `full=False` computes only the unadjusted, `--budget-from-model` and within-site rows (no
    policy-rate searches: the repeat over other seeds).
    """
    units = stay_units(wide)
    held_out = assign_split(wide["patient_id"], SPLIT_SALT) == TEST
    groups = {
        "the source's fitting and calibration": (units == source_unit) & ~held_out,
        "the source's reference (test split)": (units == source_unit) & held_out,
        "target": (units == target_unit) & (held_out | whole_target),
    }
    check_no_leakage(wide, units, groups, target_unit)
    fitting, reference_rows, target_rows = groups.values()
    model = source_model(wide, fitting, seed)
    source_prevalence = float(wide.loc[fitting, LABEL].mean())
    source = SiteData.score(wide[reference_rows], model)
    target = SiteData.score(wide[target_rows], model)
    everything = np.ones(len(target.wide), bool)
    blind = unlabelled(target)
    # What `wardwatch train` would write to the artifact's figures.json for this model: its
    # validation on its own held-out patients, from which `--budget-from-model` reads the
    # reference alert rate and mean risk.
    reference = ModelReference.from_figures(
        validation_figures(model, source.wide, build_features(source.wide)), "the source"
    )
    from_model = calibrate_site(blind, "foreign", model.threshold, reference=reference)
    derived = budgets_from_model(blind, reference)[target_unit]
    rows = {
        UNADJUSTED: outcome(target, [(everything, model.threshold)], full),
        FROM_MODEL: outcome(target, [(everything, from_model.thresholds[target_unit])], full),
    }
    at_source = outcome(source, [(np.ones(len(source.wide), bool), model.threshold)], full)
    budget = at_source["alerts_per_100_patient_days"]
    shift = estimate_prior_shift(blind, source_prevalence)
    if full:
        source_em = estimate_prior_shift(unlabelled(source), source_prevalence)
        ratio = shift.site_prevalence[target_unit] / source_em.site_prevalence[source_unit]
        # The same scaling of the source's *policy* rate (gate and suppression replayed on the
        # source's stays): not what the product does, since an artifact records no policy
        # rate, kept to show what the choice of alert count changes.
        risk_ratio = float(np.mean(target.risk) / np.mean(source.risk))

        def label_free(rate: float) -> float:
            return budget_threshold(blind, target_unit, rate)

        moved = target.with_risk(shift.adjust(target.risk, target.units))
        guarded, _ = trusted_shift(blind, source_prevalence)  # what --prior-shift applies
        trusted = target.with_risk(guarded.adjust(target.risk, target.units))
        rows |= {
            "label-free: source's policy rate": outcome(target, [(everything, label_free(budget))]),
            "label-free: rate x EM prevalence ratio": outcome(
                target, [(everything, label_free(budget * ratio))]
            ),
            "(ad hoc: policy rate x mean-risk ratio)": outcome(
                target, [(everything, label_free(budget * risk_ratio))]
            ),
            "label-free: EM prior shift": outcome(moved, [(everything, model.threshold)]),
        }
        # The guarded shift is the whole shift or none (one unit): then no second replay.
        trusted_row = "label-free: EM shift where trusted"
        if np.array_equal(trusted.risk, moved.risk):
            rows[trusted_row] = dict(rows["label-free: EM prior shift"])
        elif np.array_equal(trusted.risk, target.risk):
            rows[trusted_row] = dict(rows[UNADJUSTED])
        else:
            rows[trusted_row] = outcome(trusted, [(everything, model.threshold)])
    rows[WITHIN] = within_site(target, full)
    stays = target.stays()
    gained, span = {}, np.zeros(0)
    for name, row in rows.items():
        gained[name], span = patient_utilities(stays, row.pop("alerts"))
        assert math.isclose(gained[name].sum() / span.sum(), row["utility"], abs_tol=1e-9)
    pairs = [(name, UNADJUSTED) for name in rows if name != UNADJUSTED]
    pairs.append((WITHIN, FROM_MODEL))
    weights = resample_weights(stays.n_stays, resamples)
    return {
        "source": source_unit,
        "target": target_unit,
        "seed": seed,
        "whole_target": whole_target,
        "fitting_patients": len(np.unique(wide.loc[fitting, "patient_id"])),
        "source_patients": source.stays().n_stays,
        "source_septic": int(source.stays().septic.sum()),
        "target_patients": stays.n_stays,
        "target_septic": int(stays.septic.sum()),
        "source_threshold": model.threshold,
        "source_at_that_threshold": at_source,
        "budget": budget,
        "em_prevalence": shift.site_prevalence[target_unit],
        "true_hourly_prevalence": float(target.wide[LABEL].mean()),
        "from_model": {
            "episodes": reference.alerts_per_100_patient_days,
            "source_mean_risk": reference.mean_risk,
            "target_mean_risk": derived.mean_risk,
            "budget": derived.budget,
            "achieved": from_model.achieved[target_unit][EPISODES],
        },
        "rows": rows,
        "intervals": bootstrap(gained, span, pairs, weights),
        "rechosen": rechosen(target, reference, model.threshold, weights),
        "resamples": resamples,
    }


def show(result: dict[str, Any]) -> None:
    print(f"\n{result['source']} -> {result['target']}: source {result['source_patients']} "
          f"patients; target {result['target_patients']} patients "
          f"({result['target_septic']} septic)")  # fmt: skip
    src = result["source_at_that_threshold"]
    print(f"  source utility-optimal threshold {result['source_utility_optimal_threshold']:.4f}"
          f" (source utility {src['utility']:.3f}); budget = its policy rate "
          f"{result['budget']:.1f} alerts / 100 patient-days")  # fmt: skip
    if "source_rate_at_shipped_threshold" in result:
        print(f"  (at the shipped threshold: {result['source_rate_at_shipped_threshold']:.1f})")
    if "from_model" in result:
        derived = result["from_model"]
        print(f"  budget from the model (`--budget-from-model`): {derived['episodes']:.2f} alert "
              f"episodes / 100 patient-days on the source x mean risk "
              f"{derived['target_mean_risk']:.2%} / {derived['source_mean_risk']:.2%} = "
              f"{derived['budget']:.1f} episodes")  # fmt: skip
    print(f"  EM prior shift: target prevalence estimated {result['em_prevalence']:.2%}, "
          f"labelled {result['true_hourly_prevalence']:.2%} of hours")  # fmt: skip
    print(f"  {'method':<40} {'threshold':>16} {'utility':>8} {'alerts/100pd':>12} "
          f"{'sens.':>6} {'PPV/alert':>9}")  # fmt: skip
    for name, row in result["rows"].items():
        thresholds = "/".join(f"{t:.4f}" for t in row["thresholds"])
        print(f"  {name:<40} {thresholds:>16} {row['utility']:8.3f} "
              f"{row['alerts_per_100_patient_days']:12.1f} {_pct(row['sensitivity']):>6} "
              f"{_pct(row['ppv_per_alert']):>9}")  # fmt: skip


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def show_foreign(result: dict[str, Any]) -> None:
    """One direction's table: figures on the target and 95 % bootstrap intervals."""
    where = "all splits" if result["whole_target"] else "test split only"
    print(f"\n{result['source']} -> {result['target']} (source model seed {result['seed']}): "
          f"fitted on {result['fitting_patients']} {result['source']} patients (train + "
          f"calibration splits); reference: {result['source_patients']} held-out "
          f"{result['source']} patients ({result['source_septic']} septic); target: "
          f"{result['target_patients']} {result['target']} patients ({where}, "
          f"{result['target_septic']} septic)")  # fmt: skip
    src = result["source_at_that_threshold"]
    print(f"  source threshold {result['source_threshold']:.4f} (set on its calibration split); "
          f"on the reference patients: utility {src['utility']:.3f}, policy rate "
          f"{result['budget']:.1f} alerts / 100 patient-days")  # fmt: skip
    derived = result["from_model"]
    print(f"  --budget-from-model: {derived['episodes']:.2f} alert episodes / 100 patient-days "
          f"on the reference x mean risk {derived['target_mean_risk']:.2%} / "
          f"{derived['source_mean_risk']:.2%} = {derived['budget']:.1f} episodes (achieved "
          f"{derived['achieved']:.1f})")  # fmt: skip
    print(f"  EM prior shift: target prevalence estimated {result['em_prevalence']:.2%}, "
          f"labelled {result['true_hourly_prevalence']:.2%} of hours")  # fmt: skip
    intervals = result["intervals"]
    print(f"  {'method':<40} {'threshold':>13} {'utility [95% CI]':>22} "
          f"{'vs unadjusted [95% CI]':>23} {'episodes':>8} {'alerts':>6} {'sens.':>6} "
          f"{'PPV/alert':>9}")  # fmt: skip
    rows = result["rows"]
    for name, row in rows.items():
        thresholds = "/".join(f"{t:.4f}" for t in row["thresholds"])
        change = "" if name == UNADJUSTED else _difference(rows, intervals, name, UNADJUSTED)
        print(f"  {name:<40} {thresholds:>13} {_with_interval(row['utility'], intervals[name])}"
              f" {change:>23} {row['episodes_per_100_patient_days']:8.1f} "
              f"{row['alerts_per_100_patient_days']:6.1f} {_pct(row['sensitivity']):>6} "
              f"{_pct(row['ppv_per_alert']):>9}")  # fmt: skip
    print(f"  within-site - budget-from-model: {_difference(rows, intervals, WITHIN, FROM_MODEL)}")
    again = result["rechosen"]
    print(f"  with the target's thresholds re-chosen in each resample: budget-from-model - "
          f"unadjusted {_difference(rows, again, FROM_MODEL, UNADJUSTED)}, within-site - "
          f"budget-from-model {_difference(rows, again, WITHIN, FROM_MODEL)}")  # fmt: skip
    print(f"  (episodes, alerts: alert episodes and policy alerts per 100 patient-days; intervals: "
          f"{result['resamples']} patient-level bootstrap resamples of the target, seed "
          f"{BOOTSTRAP_SEED}, thresholds held at their values)")  # fmt: skip


def _with_interval(value: float, interval: tuple[float, float]) -> str:
    return f"{value:8.3f} [{interval[0]:6.3f},{interval[1]:6.3f}]"


def _difference(
    rows: dict[str, Any], intervals: dict[Any, tuple[float, float]], first: str, second: str
) -> str:
    value = rows[first]["utility"] - rows[second]["utility"]
    low, high = intervals[(first, second)]
    return f"{value:+.3f} [{low:+.3f},{high:+.3f}]"


def show_seeds(results: list[dict[str, Any]]) -> None:
    """The key rows over several source-model seeds, each with its own bootstrap."""
    print("\n--- over source-model seeds: utility on the target (threshold, alert episodes per "
          "100 patient-days); differences with 95 % bootstrap intervals, the target's "
          "thresholds re-chosen in each resample ---")  # fmt: skip
    print(f"  {'direction':<13} {'seed':>5} {'unadjusted':>24} {'budget-from-model':>24} "
          f"{'within':>6} {'from-model - unadjusted':>24} {'within - from-model':>22}")  # fmt: skip
    for result in results:
        rows, again = result["rows"], result["rechosen"]
        print(f"  {result['source'] + ' -> ' + result['target']:<13} {result['seed']:>5} "
              f"{_brief(rows[UNADJUSTED]):>24} {_brief(rows[FROM_MODEL]):>24} "
              f"{rows[WITHIN]['utility']:6.3f} "
              f"{_difference(rows, again, FROM_MODEL, UNADJUSTED):>24} "
              f"{_difference(rows, again, WITHIN, FROM_MODEL):>22}")  # fmt: skip


def _brief(row: dict[str, Any]) -> str:
    (threshold,) = row["thresholds"]
    return f"{row['utility']:.3f} ({threshold:.4f}, {row['episodes_per_100_patient_days']:.1f})"


def foreign(
    wide: pd.DataFrame, whole_target: bool, seeds: int, resamples: int
) -> list[dict[str, Any]]:
    """Both directions in full at `SEED`, then the key rows at `seeds - 1` further seeds."""
    results = []
    for source, target in (UNITS, UNITS[::-1]):
        results.append(foreign_direction(wide, source, target, whole_target=whole_target,
                                          resamples=resamples))  # fmt: skip
        show_foreign(results[-1])
    for seed in range(SEED + 1, SEED + seeds):
        for source, target in (UNITS, UNITS[::-1]):
            results.append(foreign_direction(wide, source, target, seed=seed, full=False,
                                              whole_target=whole_target,
                                              resamples=resamples))  # fmt: skip
    if seeds > 1:
        show_seeds(sorted(results, key=lambda r: (r["source"], r["seed"])))
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("set_a", nargs="?", type=Path, default=SET_A)
    parser.add_argument("--foreign-only", action="store_true",
                        help="only the experiment with a model trained on one unit")  # fmt: skip
    parser.add_argument("--target-test-split", action="store_true",
                        help="foreign experiment: only the target's test-split patients as the "
                        "target (the earlier, smaller version)")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3,
                        help="source-model seeds, foreign experiment (default 3)")  # fmt: skip
    parser.add_argument("--resamples", type=int, default=RESAMPLES,
                        help=f"bootstrap resamples (default {RESAMPLES})")  # fmt: skip
    args = parser.parse_args(argv[1:])
    set_a = args.set_a
    if not set_a.is_dir():
        print(f"skipped: {set_a} is absent (PhysioNet 2019 training set A, 20,336 .psv files)")
        return 0
    started = time.perf_counter()
    whole_target = not args.target_test_split
    if not args.foreign_only:
        data = load(set_a)
        units, counts = np.unique(data.units[data.stays().starts], return_counts=True)
        found = dict(zip(units.tolist(), counts.tolist(), strict=True))
        print(f"test-split patients of set A: {found} "
              "(ICU = neither Unit1 nor Unit2: left out of both sides)")  # fmt: skip
        print("split by admission period: not possible, the files carry no dates")
        for source, target in (UNITS, UNITS[::-1]):
            show(direction(data, source, target))
        print("\n--- a model that has never seen the target unit (trained on the source only) ---")
    wide = read_cohort(set_a, as_stored=True)
    foreign(wide, whole_target, max(args.seeds, 1), args.resamples)
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
