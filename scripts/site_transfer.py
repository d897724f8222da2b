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
(trained on the source unit only, `foreign_direction`); `--foreign-only` runs just that one.
Its `--budget-from-model` row is the product's own path (`site.calibrate.calibrate_site` with
a `ModelReference` built from the figures `wardwatch train` would record for that model); the
row after it scales the source's policy rate instead, which an artifact does not record.

Run: `.venv/bin/python scripts/site_transfer.py [SET_A_DIR] [--foreign-only]` (default
/tmp/setA/training_setA).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.alerts.burden import burden
from wardwatch.alerts.policy import PolicyBook
from wardwatch.evaluate.utility import utility
from wardwatch.features import build_features
from wardwatch.ingest.psv import LABEL, read_cohort
from wardwatch.model.artifact import SHIPPED, load_shipped_model
from wardwatch.model.split import SPLIT_SALT, TEST, assign_split, buckets
from wardwatch.model.train import SepsisModelTrainer
from wardwatch.model.validate import validation_figures
from wardwatch.site.calibrate import (
    ModelReference,
    SiteData,
    Target,
    budgets_from_model,
    calibrate_site,
    estimate_prior_shift,
    replay,
    training_prevalence,
    unit_threshold,
)
from wardwatch.site.config import stay_units

SET_A = Path("/tmp/setA/training_setA")
HALVES_SALT = "wardwatch-site-transfer-halves"
UNITS = ("MICU", "SICU")


def load(set_a: Path) -> SiteData:
    model = load_shipped_model()
    wide = read_cohort(set_a, as_stored=True)
    salt = model.metadata.get("trainer", {}).get("split_salt", SPLIT_SALT)
    held_out = wide[assign_split(wide["patient_id"], salt) == TEST]
    return SiteData.score(held_out, model)


def unlabelled(data: SiteData) -> SiteData:
    """The same stays without SepsisLabel: what label-free calibration may see."""
    return SiteData(data.wide.drop(columns=[LABEL]), data.outputs, data.signs, data.units)


def outcome(data: SiteData, parts: list[tuple[npt.NDArray[np.bool_], float]]) -> dict[str, Any]:
    """Target figures when each part of its stays (a row mask) alerts at its threshold."""
    book = PolicyBook()
    fired = np.zeros(len(data.wide), bool)
    review = np.zeros(len(data.wide), bool)
    alerts = np.zeros(len(data.wide), bool)
    for rows, threshold in parts:
        simulated = replay(data.rows(rows), threshold, book)
        fired[rows], review[rows] = simulated["fired"], simulated["review"]
        alerts[rows] = data.risk[rows] >= threshold
    stays = data.stays()
    policy = burden(data.wide, pd.DataFrame({"fired": fired, "review": review}), stays)
    return {
        "utility": utility(stays, alerts).normalized,
        "alerts_per_100_patient_days": policy["alerts_per_100_patient_days"],
        "sensitivity": policy["sensitivity"],
        "ppv_per_alert": policy["ppv_per_alert"],
        "patients_alerted": policy["patients_alerted"],
        "thresholds": [t for _, t in parts],
    }


def budget_threshold(
    blind: SiteData, version: str, threshold: float, unit: str, rate: float
) -> float:
    """Label-free site calibration: the unit's threshold for `rate` alerts / 100 patient-days."""
    aim = Target("alerts_per_100_patient_days", rate)
    return calibrate_site(blind, version, threshold, target=aim).thresholds[unit]


def within_site(target: SiteData) -> dict[str, Any]:
    """2-fold cross-fitted utility-optimal thresholds on the target's own labels."""
    first_half = buckets(target.wide["patient_id"], HALVES_SALT) < 50
    parts = []
    for chosen_on in (first_half, ~first_half):
        threshold = unit_threshold(target.rows(chosen_on), Target("utility"), PolicyBook())
        parts.append((~chosen_on, threshold))
    return outcome(target, parts)


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
        return budget_threshold(blind, model.version, model.threshold, target_unit, rate)

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
        "em_prevalence": estimate_prior_shift(blind, training_prevalence(SHIPPED))
        .site_prevalence[target_unit],
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


def foreign_direction(wide: pd.DataFrame, source_unit: str, target_unit: str) -> dict[str, Any]:
    """The issue's own setting: a model that has never seen the target unit.

    A one-member model is trained on the source unit's train and calibration splits only (its
    threshold set on its own calibration patients, as `wardwatch train` does); the budget is
    its policy rate on the source's held-out (test-split) patients. Every target figure is on
    the target unit's test-split patients, who were never used for anything else.
    """
    units = stay_units(wide)
    held_out = assign_split(wide["patient_id"], SPLIT_SALT) == TEST
    train_rows = (units == source_unit) & ~held_out
    source_wide = wide[train_rows].reset_index(drop=True)
    trainer = SepsisModelTrainer(n_members=1, seed=2019)
    trainer.fit(build_features(source_wide), source_wide[LABEL], source_wide["patient_id"])
    model = trainer.risk_model_
    source_prevalence = float(source_wide[LABEL].mean())
    source = SiteData.score(wide[(units == source_unit) & held_out], model)
    target = SiteData.score(wide[(units == target_unit) & held_out], model)
    everything = np.ones(len(target.wide), bool)
    at_source = outcome(source, [(np.ones(len(source.wide), bool), model.threshold)])
    budget = at_source["alerts_per_100_patient_days"]
    blind = unlabelled(target)
    shift = estimate_prior_shift(blind, source_prevalence)
    source_em = estimate_prior_shift(unlabelled(source), source_prevalence)
    ratio = shift.site_prevalence[target_unit] / source_em.site_prevalence[source_unit]
    # What `wardwatch train` would write to the artifact's figures.json for this model: its
    # validation on its own held-out patients, from which `--budget-from-model` reads the
    # reference alert rate and mean risk.
    reference = ModelReference.from_figures(
        validation_figures(model, source.wide, build_features(source.wide)), "the source"
    )
    from_model = calibrate_site(blind, "foreign", model.threshold, reference=reference)
    derived = budgets_from_model(blind, reference)[target_unit]
    # The same scaling of the source's *policy* rate (gate and suppression replayed on the
    # source's stays): not what the product does, since an artifact records no policy rate,
    # kept to show what the choice of alert count changes.
    risk_ratio = float(np.mean(target.risk) / np.mean(source.risk))

    def label_free(rate: float) -> float:
        return budget_threshold(blind, "foreign", model.threshold, target_unit, rate)

    moved = target.with_risk(shift.adjust(target.risk, target.units))
    guarded = calibrate_site(blind, "foreign", model.threshold, prior_shift_from=source_prevalence)
    assert guarded.prior_shift is not None
    trusted = target.with_risk(guarded.prior_shift.adjust(target.risk, target.units))
    return {
        "source": source_unit,
        "target": target_unit,
        "source_patients": source.stays().n_stays,
        "target_patients": target.stays().n_stays,
        "target_septic": int(target.stays().septic.sum()),
        "source_utility_optimal_threshold": model.threshold,
        "source_at_that_threshold": at_source,
        "budget": budget,
        "em_prevalence": shift.site_prevalence[target_unit],
        "true_hourly_prevalence": float(target.wide[LABEL].mean()),
        "from_model": {
            "episodes": reference.alerts_per_100_patient_days,
            "source_mean_risk": reference.mean_risk,
            "target_mean_risk": derived.mean_risk,
            "budget": derived.budget,
        },
        "rows": {
            "source threshold, unadjusted": outcome(target, [(everything, model.threshold)]),
            "label-free: source's alert rate": outcome(target, [(everything, label_free(budget))]),
            "label-free: rate x EM prevalence ratio": outcome(
                target, [(everything, label_free(budget * ratio))]
            ),
            "label-free: --budget-from-model": outcome(
                target, [(everything, from_model.thresholds[target_unit])]
            ),
            "(ad hoc: policy rate x mean-risk ratio)": outcome(
                target, [(everything, label_free(budget * risk_ratio))]
            ),
            "label-free: EM prior shift": outcome(moved, [(everything, model.threshold)]),
            "label-free: EM shift where trusted": outcome(
                trusted, [(everything, model.threshold)]
            ),
            "within-site (own labels, 2-fold)": within_site(target),
        },
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


def main(argv: list[str]) -> int:
    foreign_only = "--foreign-only" in argv
    argv = [a for a in argv if a != "--foreign-only"]
    set_a = Path(argv[1]) if len(argv) > 1 else SET_A
    if not set_a.is_dir():
        print(f"skipped: {set_a} is absent (PhysioNet 2019 training set A, 20,336 .psv files)")
        return 0
    started = time.perf_counter()
    if foreign_only:
        wide = read_cohort(set_a, as_stored=True)
        for source, target in (UNITS, UNITS[::-1]):
            show(foreign_direction(wide, source, target))
        print(f"\n{time.perf_counter() - started:.0f} s")
        return 0
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
    for source, target in (UNITS, UNITS[::-1]):
        show(foreign_direction(wide, source, target))
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
