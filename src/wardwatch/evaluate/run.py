"""`wardwatch evaluate`: the model and the bedside rules, side by side, on a labelled cohort.

With the model, the report also replays the alert policy (`alerts.burden`) over the cohort:
the policy needs each hour's uncertainty and out-of-distribution flag beside the risk, so the
model's full output is kept, not only the risk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from wardwatch.alerts.burden import policy_variants
from wardwatch.alerts.policy import PolicyBook, load_policy_book
from wardwatch.evaluate.metrics import Predictions
from wardwatch.evaluate.report import evaluate_cohort, write_report
from wardwatch.ingest.psv import LABEL, read_cohort
from wardwatch.model.artifact import load_model, load_shipped_model
from wardwatch.model.cohort import score_cohort
from wardwatch.scores import get_baseline

POLICY_INPUTS = ("risk", "uncertainty", "ood")


def model_outputs(wide: pd.DataFrame, model_dir: Path | None) -> tuple[pd.DataFrame, float]:
    """The model's risk, uncertainty and OOD flag per row of `wide`, and its threshold."""
    model = load_model(model_dir) if model_dir else load_shipped_model()
    output = score_cohort(wide, model).loc[:, list(POLICY_INPUTS)]  # on every core
    return output, model.threshold


def as_predictions(output: pd.DataFrame, threshold: float) -> Predictions:
    risk = output["risk"].to_numpy()
    return Predictions(risk, threshold, kind="model", note="calibrated probability")


def model_predictions(wide: pd.DataFrame, model_dir: Path | None) -> Predictions:
    return as_predictions(*model_outputs(wide, model_dir))


def evaluate_data(
    data: Path,
    out_dir: Path,
    *,
    model_dir: Path | None = None,
    baselines: tuple[str, ...] = ("qsofa", "sirs", "news2", "sofa"),
    with_model: bool = True,
    limit: int | None = None,
    alert_policy: bool = True,
    policy_book: PolicyBook | None = None,
) -> tuple[dict[str, Any], Path, Path]:
    """Evaluate on PhysioNet-format files with labels; returns the results and report paths.

    With the model and `alert_policy`, the alert policy of `policy_book` (default: the
    settings file's `[alerts]`, see `alerts.policy`) is replayed over the cohort as well.
    """
    wide = read_cohort(data, limit=limit)
    if LABEL not in wide.columns or wide[LABEL].isna().all():
        raise ValueError(f"{data}: no {LABEL} column: evaluation needs labelled data")
    wide = wide.sort_values(["patient_id", "hour"], kind="stable").reset_index(drop=True)
    predictions: dict[str, Predictions] = {}
    policy: dict[str, Any] | None = None
    if with_model:
        output, threshold = model_outputs(wide, model_dir)
        predictions["wardwatch model"] = as_predictions(output, threshold)
        if alert_policy:
            book = policy_book or load_policy_book()
            policy = policy_variants(wide, output, book, threshold)
    for name in baselines:
        predictions[name] = get_baseline(name).predictions(wide)
    title = f"Sepsis early warning: {Path(data).name}"
    results = evaluate_cohort(wide, predictions, title=title, alert_policy=policy)
    html, json_path = write_report(results, out_dir)
    return results, html, json_path
