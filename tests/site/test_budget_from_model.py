"""`wardwatch calibrate-site --budget-from-model`: the model's own alert rate, scaled per unit
by the unit's mean risk, on the shipped model and the shipped sample (300 set-A patients)."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from wardwatch.model.artifact import SHIPPED, save_model
from wardwatch.site.calibrate import (
    EPISODES,
    MIN_PATIENTS,
    RATIO_RANGE,
    TOLERANCE,
    CalibrationError,
    ModelReference,
    budgets_from_model,
    calibrate_site,
    model_reference,
)
from wardwatch.site.config import SiteConfig, data_hash, shift_prior

UNITS = {"MICU", "SICU", "ICU"}


def card_figures() -> tuple[float, float]:
    """The shipped model's test-split alert rate and mean risk, read from figures.json."""
    split = json.loads((SHIPPED / "figures.json").read_text())["test_split"]
    bins = split["reliability"]
    mean_risk = sum(b["hours"] * b["mean_risk"] for b in bins) / sum(b["hours"] for b in bins)
    return split["alerts_per_100_patient_days"], mean_risk


def by_hand(risk: npt.NDArray[np.float64], units: npt.NDArray[np.object_]) -> dict[str, float]:
    """Each unit's budget: rate x (unit mean risk / model mean risk), ratio within 1/4-4."""
    rate, reference = card_figures()
    return {
        unit: rate * min(max(float(risk[units == unit].mean()) / reference, 0.25), 4.0)
        for unit in set(units.tolist())
    }


def episodes_per_100_days(ids: npt.ArrayLike, risk: npt.ArrayLike, threshold: float) -> float:
    """The model card's count, by hand: hours where a stay's risk reaches the threshold from
    below (or is at or above it in the stay's first hour), per 100 patient-days."""
    ids, above = pd.Series(np.asarray(ids)), pd.Series(np.asarray(risk) >= threshold)
    new_stay = ids.ne(ids.shift())
    onsets = above & (new_stay | ~above.shift(fill_value=False))
    return 100 * int(onsets.sum()) / (len(ids) / 24)


def test_the_budget_is_the_models_rate_scaled_by_the_units_mean_risk(sample):
    reference = model_reference(SHIPPED)
    rate, mean_risk = card_figures()
    assert reference.alerts_per_100_patient_days == rate
    assert reference.mean_risk == pytest.approx(mean_risk, rel=1e-12)
    budgets = budgets_from_model(sample, reference)
    expected = by_hand(sample.risk, sample.units)
    assert set(budgets) == UNITS
    assert {u: b.budget for u, b in budgets.items()} == pytest.approx(expected, rel=1e-9)
    assert len({round(b.budget, 3) for b in budgets.values()}) == 3  # each unit its own

    # The same stays read as riskier (every risk's odds up by about a quarter): more alerts.
    riskier = sample.with_risk(shift_prior(sample.risk, 0.02, 0.025))
    raised = budgets_from_model(riskier, reference)
    for unit, before in budgets.items():
        after = raised[unit]
        assert not after.clipped and after.budget > before.budget * 1.1
        assert after.budget / before.budget == pytest.approx(after.mean_risk / before.mean_risk)


@pytest.mark.parametrize(("prevalence", "limit"), [(0.5, RATIO_RANGE[1]), (0.001, RATIO_RANGE[0])])
def test_a_unit_far_from_the_training_population_has_its_ratio_clipped_and_noted(
    sample, model, prevalence, limit
):
    extreme = sample.with_risk(shift_prior(sample.risk, 0.02, prevalence))
    config = calibrate_site(extreme, model.version, model.threshold,
                            reference=model_reference(SHIPPED))  # fmt: skip
    rate, _ = card_figures()
    assert dict(config.target) == pytest.approx({u: rate * limit for u in UNITS})
    assert sum("ratio clipped" in note for note in config.notes) == 3


def test_each_unit_alerts_as_often_as_its_derived_budget(sample, model):
    config = calibrate_site(sample, model.version, model.threshold,
                            reference=model_reference(SHIPPED))  # fmt: skip
    assert config.method == "budget-from-model"
    assert dict(config.target) == pytest.approx(by_hand(sample.risk, sample.units))
    for unit in UNITS:
        part = sample.rows(sample.units == unit)
        assert part.stays().n_stays >= MIN_PATIENTS
        got = episodes_per_100_days(part.wide["patient_id"], part.risk, config.thresholds[unit])
        assert abs(got - config.target[unit]) <= TOLERANCE * config.target[unit], (unit, got)
        assert config.achieved[unit][EPISODES] == pytest.approx(got)
    # The model's threshold would have missed the budgets: the search moved every unit.
    assert all(abs(t / model.threshold - 1) > 0.02 for t in config.thresholds.values())
    assert not any("not within" in note for note in config.notes)


def test_the_cli_writes_a_config_that_says_where_the_budgets_came_from(
    run, unlabelled_dir, tmp_path, sample, model
):
    out = tmp_path / "site.json"
    done = run("calibrate-site", str(unlabelled_dir), "--budget-from-model", "--out", str(out))
    assert done.exit_code == 0, done.output
    assert "budget-from-model" in done.output
    config = SiteConfig.load(out)
    assert config.method == "budget-from-model" and config.prior_shift is None
    assert config.model_version == model.version
    assert config.data_hash == data_hash(unlabelled_dir)
    assert datetime.fromisoformat(config.created).tzinfo is not None
    assert set(config.thresholds) == set(config.target) == UNITS
    assert dict(config.target) == pytest.approx(by_hand(sample.risk, sample.units))
    rate, mean_risk = card_figures()
    reference_note = next(n for n in config.notes if n.startswith("budget from the model"))
    assert f"{rate:.4g} alert episodes" in reference_note and f"{mean_risk:.2%}" in reference_note
    for unit in UNITS:
        unit_mean = float(sample.risk[sample.units == unit].mean())
        line = next(n for n in config.notes if n.startswith(f"{unit}: mean risk"))
        assert f"{unit_mean:.2%}" in line and f"{unit_mean / mean_risk:.3g} times" in line
        assert f"{config.target[unit]:.3g} alert episodes" in line


def test_an_artifact_without_figures_is_refused_with_what_to_do(
    run, unlabelled_dir, tmp_path, model
):
    bare = tmp_path / "bare"
    save_model(model, bare)  # a real artifact, but no figures.json
    done = run("calibrate-site", str(unlabelled_dir), "--budget-from-model", "--model", str(bare),
               "--out", str(tmp_path / "s.json"))  # fmt: skip
    assert done.exit_code == 2 and "Traceback" not in done.output
    assert "no figures.json" in done.output and "--budget N" in done.output
    assert not (tmp_path / "s.json").exists()


def test_figures_without_a_reliability_table_are_refused(tmp_path, model):
    partial = tmp_path / "partial"
    split = {"alerts_per_100_patient_days": 30.0, "threshold": model.threshold}
    save_model(model, partial, extra={"figures.json": {"test_split": split}})
    with pytest.raises(CalibrationError, match=r"no reliability table.*--budget N"):
        model_reference(partial)


def test_a_reference_measured_at_another_threshold_is_refused(sample, model):
    reference = model_reference(SHIPPED)
    other = ModelReference(reference.alerts_per_100_patient_days, reference.mean_risk,
                           reference.threshold * 1.5)  # fmt: skip
    with pytest.raises(CalibrationError, match="another model"):
        calibrate_site(sample, model.version, model.threshold, reference=other)
