"""The helpers of scripts/site_transfer.py that carry its figures: per-patient utilities, the
paired bootstrap and the leakage check (the experiment itself needs set A)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from wardwatch.evaluate.utility import Stays, utility
from wardwatch.ingest.psv import LABEL
from wardwatch.site.calibrate import ModelReference, SiteData

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "site_transfer.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("site_transfer", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cohort(seed: int = 3, patients: int = 60) -> tuple[Stays, np.ndarray]:
    """Stays of 10-40 hours, a fifth of them septic, and a risk per hour."""
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for p in range(patients):
        hours = int(rng.integers(10, 40))
        onset = int(rng.integers(0, hours)) if p % 5 == 0 else hours
        ids += [f"p{p:03d}"] * hours
        labels += [float(h >= onset) for h in range(hours)]
    stays = Stays.from_labels(np.array(ids, dtype=object), np.array(labels))
    return stays, rng.random(len(ids))


def test_patient_utilities_add_up_to_the_cohort_utility(script):
    stays, risk = cohort()
    for threshold in (0.2, 0.5, 0.9):
        alerts = risk >= threshold
        gained, span = script.patient_utilities(stays, alerts)
        assert len(gained) == len(span) == stays.n_stays
        assert gained.sum() / span.sum() == pytest.approx(utility(stays, alerts).normalized)


def test_the_bootstrap_is_paired_and_brackets_the_estimate(script):
    stays, risk = cohort()
    gained = {}
    for name, threshold in (("low", 0.3), ("high", 0.7)):
        gained[name], span = script.patient_utilities(stays, risk >= threshold)
    gained["same as low"] = gained["low"].copy()
    pairs = [("high", "low"), ("same as low", "low")]
    weights = script.resample_weights(stays.n_stays, 300)
    assert weights.shape == (300, stays.n_stays)
    assert (weights.sum(axis=1) == stays.n_stays).all()
    assert (weights == script.resample_weights(stays.n_stays, 300)).all()
    first = script.bootstrap(gained, span, pairs, weights)
    assert first[("same as low", "low")] == (0.0, 0.0)  # the same patients in every row
    for name in ("low", "high"):
        low, high = first[name]
        assert low <= gained[name].sum() / span.sum() <= high
    low, high = first[("high", "low")]
    point = (gained["high"].sum() - gained["low"].sum()) / span.sum()
    assert low <= point <= high


def test_the_leakage_check_refuses_shared_patients_and_foreign_units(script):
    wide = pd.DataFrame({"patient_id": ["a", "a", "b", "c", "d", "e"]})
    units = np.array(["MICU", "MICU", "MICU", "SICU", "SICU", "SICU"], dtype=object)
    fit = np.array([True, True, False, False, False, False])
    reference = np.array([False, False, True, False, False, False])
    target = np.array([False, False, False, True, True, False])
    groups = {"fitting": fit, "reference": reference, "target": target}
    script.check_no_leakage(wide, units, groups, "SICU")
    with pytest.raises(AssertionError, match="both in fitting and in reference"):
        script.check_no_leakage(wide, units, groups | {"reference": fit}, "SICU")
    with pytest.raises(AssertionError):
        script.check_no_leakage(wide, units, groups | {"target": target | reference}, "SICU")
    with pytest.raises(AssertionError, match="SICU rows in reference"):
        script.check_no_leakage(wide, units, groups | {"reference": reference | ~fit & ~target},
                                "SICU")  # fmt: skip


def test_without_set_a_the_script_says_so(script, tmp_path, capsys):
    assert script.main(["site_transfer.py", str(tmp_path / "absent"), "--foreign-only"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_rechosen_thresholds_give_an_interval_per_key_difference(script):
    stays, risk = cohort(seed=8, patients=80)
    onset = stays.onset[stays.codes]
    labels = np.isfinite(onset) & (stays.position >= onset - 6)  # labelled from t_sepsis - 6
    wide = pd.DataFrame({"patient_id": np.repeat(stays.patient_ids, stays.lengths),
                         LABEL: labels.astype(float)})  # fmt: skip
    outputs = pd.DataFrame({"risk": risk, "uncertainty": 0.0, "ood": False})
    target = SiteData(wide, outputs, pd.DataFrame(index=wide.index),
                      np.full(len(wide), "SICU", dtype=object))  # fmt: skip
    reference = ModelReference(alerts_per_100_patient_days=200.0, mean_risk=0.5, threshold=0.6)
    weights = script.resample_weights(stays.n_stays, 200)
    found = script.rechosen(target, reference, 0.6, weights)
    keys = {(script.FROM_MODEL, script.UNADJUSTED), (script.WITHIN, script.FROM_MODEL)}
    assert set(found) == keys
    for low, high in found.values():
        assert np.isfinite([low, high]).all() and low <= high
