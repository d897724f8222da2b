"""Evaluation: the PhysioNet 2019 utility, hourly and patient-level metrics, subgroups, report.

Typical use, on patients held out from training::

    predictions = {"lightgbm": model_predictions, "news2": BASELINES["news2"].predictions(test)}
    write_report(evaluate_cohort(test, predictions), Path("var/evaluation"))
"""

from wardwatch.evaluate.metrics import Predictions, evaluate_predictions, headline
from wardwatch.evaluate.report import evaluate_cohort, write_report
from wardwatch.evaluate.subgroups import evaluate_subgroups
from wardwatch.evaluate.utility import (
    CHALLENGE_2019,
    Stays,
    UtilityParameters,
    UtilityScore,
    normalized_utility,
    utility,
    utility_curve,
)

__all__ = [
    "CHALLENGE_2019",
    "Predictions",
    "Stays",
    "UtilityParameters",
    "UtilityScore",
    "evaluate_cohort",
    "evaluate_predictions",
    "evaluate_subgroups",
    "headline",
    "normalized_utility",
    "utility",
    "utility_curve",
    "write_report",
]
