"""`wardwatch evaluate`: the model and the bedside rules, side by side, on a labelled cohort."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from wardwatch.evaluate.metrics import Predictions
from wardwatch.evaluate.report import evaluate_cohort, write_report
from wardwatch.features import build_features
from wardwatch.ingest.psv import LABEL, read_cohort
from wardwatch.model.artifact import load_model, load_shipped_model
from wardwatch.scores import get_baseline


def model_predictions(wide: pd.DataFrame, model_dir: Path | None) -> Predictions:
    model = load_model(model_dir) if model_dir else load_shipped_model()
    risk = model.predict(build_features(wide))["risk"].to_numpy()
    return Predictions(risk, model.threshold, kind="model", note="calibrated probability")


def evaluate_data(
    data: Path,
    out_dir: Path,
    *,
    model_dir: Path | None = None,
    baselines: tuple[str, ...] = ("qsofa", "sirs", "news2", "sofa"),
    with_model: bool = True,
    limit: int | None = None,
) -> tuple[dict[str, Any], Path, Path]:
    """Evaluate on PhysioNet-format files with labels; returns the results and report paths."""
    wide = read_cohort(data, limit=limit)
    if LABEL not in wide.columns or wide[LABEL].isna().all():
        raise ValueError(f"{data}: no {LABEL} column: evaluation needs labelled data")
    wide = wide.sort_values(["patient_id", "hour"], kind="stable").reset_index(drop=True)
    predictions: dict[str, Predictions] = {}
    if with_model:
        predictions["wardwatch model"] = model_predictions(wide, model_dir)
    for name in baselines:
        predictions[name] = get_baseline(name).predictions(wide)
    results = evaluate_cohort(wide, predictions, title=f"Sepsis early warning: {Path(data).name}")
    html, json_path = write_report(results, out_dir)
    return results, html, json_path
