"""Every metric again within subgroups of patients: sex, age band, ICU unit.

A patient's group comes from the first row of the stay (the demographics do not change
within a stay). Cells with fewer than `small_cell` septic patients are still reported, but
flagged: their estimates swing with one or two patients and must not be read as a finding.
A metric that needs both classes (AUROC, AUPRC) is None when a cell lacks one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.evaluate.metrics import Predictions, evaluate_predictions, headline
from wardwatch.evaluate.utility import CHALLENGE_2019, Stays, UtilityParameters

SMALL_CELL = 10
AGE_BANDS = ((0, 18, "under 18"), (18, 45, "18–44"), (45, 65, "45–64"), (65, 80, "65–79"),
             (80, np.inf, "80+"))  # fmt: skip
UNKNOWN = "unknown"


def _first_rows(wide: pd.DataFrame, column: str) -> npt.NDArray[np.float64]:
    stays = Stays.from_labels(wide["patient_id"], np.zeros(len(wide)))
    first = wide[column].to_numpy(dtype=np.float64)[stays.starts]
    return first[stays.codes]


def sex_groups(wide: pd.DataFrame) -> npt.NDArray[np.object_]:
    gender = _first_rows(wide, "Gender")
    return np.select([gender == 1, gender == 0], ["male", "female"], UNKNOWN).astype(object)


def age_groups(wide: pd.DataFrame) -> npt.NDArray[np.object_]:
    age = _first_rows(wide, "Age")
    bands = [(age >= low) & (age < high) for low, high, _ in AGE_BANDS]
    return np.select(bands, [name for *_, name in AGE_BANDS], UNKNOWN).astype(object)


def unit_groups(wide: pd.DataFrame) -> npt.NDArray[np.object_]:
    """MICU when Unit1 is 1, else SICU when Unit2 is 1, else unknown (both missing in set A)."""
    micu, sicu = _first_rows(wide, "Unit1"), _first_rows(wide, "Unit2")
    return np.select([micu == 1, sicu == 1], ["MICU", "SICU"], UNKNOWN).astype(object)


GROUPINGS = {"sex": sex_groups, "age": age_groups, "unit": unit_groups}


def _order(levels: npt.NDArray[np.object_], grouping: str) -> list[str]:
    present = set(levels.tolist())
    known = {"sex": ["female", "male"], "age": [n for *_, n in AGE_BANDS],
             "unit": ["MICU", "SICU"]}[grouping]  # fmt: skip
    return [g for g in [*known, UNKNOWN] if g in present]


def evaluate_cell(
    wide: pd.DataFrame,
    rows: npt.NDArray[np.bool_],
    predictions: dict[str, Predictions],
    *,
    small_cell: int = SMALL_CELL,
    params: UtilityParameters = CHALLENGE_2019,
) -> dict[str, Any]:
    """Counts, the small-cell flag and each model's scalar metrics on the selected rows."""
    labels = wide["SepsisLabel"].to_numpy()[rows]
    stays = Stays.from_labels(wide["patient_id"].to_numpy()[rows], labels, params)
    n_septic = int(stays.septic.sum())
    small = n_septic < small_cell
    models = {
        name: headline(
            evaluate_predictions(
                stays, labels, replace(p, risk=p.risk[rows], alert=p.alerts[rows]),
                curves=False, params=params,
            )
        )
        for name, p in predictions.items()
    }  # fmt: skip
    return {
        "patients": stays.n_stays,
        "septic_patients": n_septic,
        "hours": stays.n_rows,
        "small_cell": small,
        "note": f"small cell: fewer than {small_cell} septic patients" if small else None,
        "models": models,
    }


def evaluate_subgroups(
    wide: pd.DataFrame,
    predictions: dict[str, Predictions],
    *,
    small_cell: int = SMALL_CELL,
    params: UtilityParameters = CHALLENGE_2019,
) -> dict[str, dict[str, Any]]:
    """``{grouping: {level: cell}}`` for sex, age band and ICU unit (see `evaluate_cell`)."""
    result: dict[str, dict[str, Any]] = {}
    for grouping, assign in GROUPINGS.items():
        levels = assign(wide)
        result[grouping] = {
            level: evaluate_cell(
                wide, levels == level, predictions, small_cell=small_cell, params=params
            )
            for level in _order(levels, grouping)
        }
    return result
