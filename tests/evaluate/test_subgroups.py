from __future__ import annotations

import numpy as np
import pytest
from tests.strategies import wide_frame

from wardwatch.evaluate.metrics import Predictions
from wardwatch.evaluate.subgroups import (
    age_groups,
    evaluate_cell,
    evaluate_subgroups,
    sex_groups,
    unit_groups,
)

PEOPLE = {
    "a": {"Gender": 1, "Age": 18.0, "Unit1": 1, "Unit2": 0},
    "b": {"Gender": 0, "Age": 44.99, "Unit1": 0, "Unit2": 1},
    "c": {"Gender": 0, "Age": 45.0},  # unit unknown
    "d": {"Gender": 1, "Age": 79.9, "Unit1": 1, "Unit2": 0},
    "e": {"Gender": 1, "Age": 80.0, "Unit1": 0, "Unit2": 1},
    "f": {"Age": np.nan},
}


def septic(hours, first):
    return [{"SepsisLabel": float(i >= first)} for i in range(hours)]


def wide():
    stays = {
        "a": septic(20, 5),
        "b": septic(10, 10),
        "c": septic(12, 3),
        "d": septic(8, 8),
        "e": septic(15, 8),
        "f": septic(6, 6),
    }
    return wide_frame(stays, PEOPLE)


def per_patient(frame, labels):
    return dict(zip(frame["patient_id"], labels, strict=True))


def test_groups_come_from_each_patients_demographics():
    frame = wide()
    assert per_patient(frame, sex_groups(frame)) == {
        "a": "male", "b": "female", "c": "female", "d": "male", "e": "male", "f": "unknown",
    }  # fmt: skip
    assert per_patient(frame, age_groups(frame)) == {
        "a": "18–44", "b": "18–44", "c": "45–64", "d": "65–79", "e": "80+", "f": "unknown",
    }  # fmt: skip
    assert per_patient(frame, unit_groups(frame)) == {
        "a": "MICU", "b": "SICU", "c": "unknown", "d": "MICU", "e": "SICU", "f": "unknown",
    }  # fmt: skip


def test_every_cell_is_reported_and_small_cells_are_flagged():
    frame = wide()
    risk = np.linspace(0, 1, len(frame))
    result = evaluate_subgroups(frame, {"m": Predictions(risk, 0.5)}, small_cell=2)
    assert list(result) == ["sex", "age", "unit"]
    assert list(result["sex"]) == ["female", "male", "unknown"]
    assert list(result["age"]) == ["18–44", "45–64", "65–79", "80+", "unknown"]
    male = result["sex"]["male"]
    assert (male["patients"], male["septic_patients"], male["small_cell"]) == (3, 2, False)
    female = result["sex"]["female"]
    assert female["septic_patients"] == 1 and female["small_cell"]
    assert female["note"] == "small cell: fewer than 2 septic patients"
    # patient f is never labelled: one class only, so no AUROC, and no utility to gain
    unknown = result["sex"]["unknown"]["models"]["m"]
    assert unknown["auroc"] is None and unknown["utility"] is None
    assert unknown["sensitivity"] is None and unknown["alerts_per_100_patient_days"] > 0


def test_a_cell_is_the_same_as_evaluating_its_patients_alone():
    frame = wide()
    rng = np.random.default_rng(1)
    predictions = {"m": Predictions(rng.random(len(frame)), 0.7)}
    rows = frame["patient_id"].isin(["a", "c"]).to_numpy()
    cell = evaluate_cell(frame, rows, predictions)
    alone = frame.loc[rows].reset_index(drop=True)
    again = evaluate_cell(
        alone, np.ones(len(alone), bool), {"m": Predictions(predictions["m"].risk[rows], 0.7)}
    )
    assert cell == again
    assert cell["models"]["m"]["auroc"] == pytest.approx(again["models"]["m"]["auroc"])
