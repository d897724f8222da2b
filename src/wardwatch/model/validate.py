"""Validation figures of a `RiskModel` on held-out patients, for the card and the report.

All figures come from `wardwatch.evaluate` (the project's one implementation of the utility,
AUROC/AUPRC, alert metrics and subgroup tables); this module only feeds it the model's output
and adds what is specific to a model: Brier before/after calibration, uncertainty and OOD rates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from wardwatch.evaluate.metrics import Predictions, evaluate_predictions, headline
from wardwatch.evaluate.subgroups import evaluate_subgroups
from wardwatch.evaluate.utility import Stays
from wardwatch.ingest.psv import LABEL
from wardwatch.model.calibrate import brier
from wardwatch.model.risk import RiskModel

MODEL_KEY = "model"


def _rounded(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return value


def _subgroup_table(wide: pd.DataFrame, predictions: Predictions) -> dict[str, Any]:
    table = evaluate_subgroups(wide, {MODEL_KEY: predictions})
    return {
        grouping: {
            level: {
                **{k: v for k, v in cell.items() if k != "models"},
                **_rounded(cell["models"][MODEL_KEY]),
            }
            for level, cell in cells.items()
        }
        for grouping, cells in table.items()
    }


def validation_figures(
    model: RiskModel, wide: pd.DataFrame, features: pd.DataFrame
) -> dict[str, Any]:
    """Headline metrics, calibration, uncertainty/OOD and subgroups on labelled patients.

    `wide` and `features` are the same rows (grouped by patient, in time order).
    """
    out = model.predict(features)
    raw = model.raw(features)
    labels = wide[LABEL].to_numpy(dtype=np.int64)
    predictions = Predictions(out["risk"].to_numpy(), model.threshold)
    result = evaluate_predictions(
        Stays.from_labels(wide["patient_id"], labels), labels, predictions
    )
    figures = _rounded(headline(result))
    figures["brier_uncalibrated"] = round(brier(raw, labels), 4)
    figures["counts"] = result["counts"]
    figures["threshold"] = model.threshold
    figures["mean_uncertainty"] = round(float(out["uncertainty"].mean()), 4)
    figures["ood_rate"] = round(float(out["ood"].mean()), 4)
    figures["reliability"] = result["calibration"]["bins"]
    figures["subgroups"] = _subgroup_table(wide, predictions)
    return figures
