"""The model card: what the model is for, what it was trained on, how well it did, its limits.

`build_card` assembles a JSON-able dict from the trainer, the validation figures and the
lineage; `render_markdown` turns it into the page a governance committee reads (`card.md`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from wardwatch.model.split import SPLIT_RULE
from wardwatch.model.threshold import DEFAULT_SCORER_NAME
from wardwatch.model.train import SITE_SPECIFIC, SepsisModelTrainer

INTENDED_USE = (
    "Hourly estimate, for adult ICU patients, of the probability that the patient is within 6 "
    "hours before the clinical onset of sepsis (Sepsis-3) or later, from routinely charted vital "
    "signs, laboratory values, age and sex. It informs the bedside team's attention (worklist "
    "order, an alert to evaluate); the clinician decides. Not a diagnosis, not a replacement for "
    "clinical assessment, not for children, not for wards outside the ICU without local validation."
)
LABEL_DEFINITION = (
    "PhysioNet/CinC 2019 SepsisLabel: for patients meeting Sepsis-3 (suspicion of infection plus "
    "a SOFA increase of 2 or more), 1 from 6 hours before the clinical onset time t_sepsis on; 0 "
    "for every hour of patients who never meet it."
)
METHOD = {
    "features": "Hourly features with data up to each hour only (wardwatch.features): last value, "
    "hours since measured, measured this hour, counts, 6 h/24 h change, min and max; shock index, "
    "MAP, partial SOFA/SIRS/qSOFA/NEWS2, BUN/creatinine; age, sex, ICU length of stay. Missing "
    "values stay missing (LightGBM routes them), never imputed normal.",
    "excluded_inputs": f"{list(SITE_SPECIFIC)}: site-specific (unit coding and hospital admission "
    "time differ between hospitals and are often absent).",
    "imbalance": "Every positive hour and a random share of negative hours (negative_rate, 0.25) "
    "per member: cheaper training, capacity on the rare positives; the inflated raw "
    "probabilities are mapped back to true probabilities by calibration on untouched patients.",
    "calibration": "Platt vs isotonic on calibration patients, compared by 2-fold patient-level "
    "cross-fitted Brier score; the better refitted on all calibration patients.",
    "uncertainty": "Bagged ensemble: each LightGBM member trained on a bootstrap sample of "
    "training patients; uncertainty = standard deviation of the members' calibrated risks.",
    "ood": "Mean quantile-tail surprise of the last known values plus mean surprise of the "
    "measured/missing pattern vs training rows (log10 units); flagged above the 99th percentile "
    "of training rows.",
}
LIMITATIONS = [
    "Trained and validated on one hospital system (PhysioNet 2019 set A): the test split is other "
    "patients of the same hospital, not an external validation.",
    "Decision thresholds and measurement habits do not transfer between hospitals. Even between "
    "two ICUs of set A, a model trained on MICU patients ranked SICU patients better than a "
    "SICU-trained one, yet at its MICU-optimal threshold the SICU utility was negative; the "
    "threshold margin restored it there (see the transfer experiment), but nothing guarantees "
    "it elsewhere: re-check calibration and set the threshold on local data (shadow mode) "
    "before any alert reaches a clinician.",
    "EtCO2 is never measured in set A, so the model cannot use it; variables a new site measures "
    "more (or less) often than set A raise the OOD score through the missingness pattern.",
    "The label is a retrospective Sepsis-3 definition computed from charted data; it misses "
    "sepsis that was never charted as such and dates onset by documentation.",
    "Timing of tests (hours since measured, counts) carries clinicians' suspicion: part of the "
    "signal is what the team already suspected, and it reflects this hospital's ordering habits.",
    "No vasopressor, mentation, ventilation or medication data: SOFA, qSOFA and NEWS2 are partial.",
    "Subgroup cells with fewer than 10 septic patients are flagged small; do not read them as "
    "findings.",
    "The uncertainty is the spread of a small bagged ensemble (model uncertainty), not a "
    "calibrated "
    "prediction interval; OOD flags unusual inputs, it does not prove the risk wrong.",
]


def build_card(
    trainer: SepsisModelTrainer,
    validation: dict[str, Any],
    lineage: dict[str, Any],
    population: dict[str, Any],
    experiments: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card as a JSON-able dict."""
    model = trainer.risk_model_
    report = trainer.report_
    return {
        "name": "wardwatch sepsis risk (LightGBM ensemble)",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "intended_use": INTENDED_USE,
        "label": LABEL_DEFINITION,
        "training_population": {**population, "split": report["split"], "split_rule": SPLIT_RULE},
        "inputs": {"features": len(model.feature_names), "names": list(model.feature_names)},
        "method": METHOD,
        "parameters": trainer.get_params(),
        "members": report["members"],
        "calibration": report["calibration"],
        "operating_threshold": {
            "value": model.threshold,
            "how_chosen": f"The {DEFAULT_SCORER_NAME} of alerts (risk >= threshold) over "
            "calibration-split patients (never trained on), for 200 quantiles of their risk; the "
            "highest threshold within "
            f"{report['threshold']['tolerance']} of the best utility is taken (optimum "
            f"{report['threshold']['calibration_optimum']:.4f}, utility "
            f"{report['threshold']['calibration_optimum_score']:.3f}): below its optimum the "
            "utility falls off a cliff (every false-alarm hour costs), above it it declines "
            "gently, so the margin protects sites whose risks run higher than set A's.",
            "calibration_utility": report["threshold"]["calibration_score"],
        },
        "validation": {"test_split": validation, **(experiments or {})},
        "limitations": LIMITATIONS,
        "lineage": {**lineage, "training_seconds": report["training_seconds"]},
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 0.1 else f"{value:.3f}"
    return str(value)


HEADLINE_ROWS = (
    ("AUROC (hourly)", "auroc"), ("AUPRC (hourly)", "auprc"),
    ("Normalized utility at threshold", "utility"), ("Sensitivity (patients)", "sensitivity"),
    ("PPV (patients)", "ppv"), ("Specificity (patients)", "specificity"),
    ("Alerts per 100 patient-days", "alerts_per_100_patient_days"),
    ("Median lead time (h)", "median_lead_hours"),
    ("Brier, uncalibrated ensemble", "brier_uncalibrated"), ("Brier, calibrated", "brier"),
    ("Expected calibration error", "ece"), ("Mean uncertainty (ensemble sd)", "mean_uncertainty"),
    ("OOD-flagged hours", "ood_rate"),
)  # fmt: skip
SUBGROUP_COLUMNS = ("patients", "septic_patients", "auroc", "auprc", "utility", "sensitivity")


def _headline_md(figures: dict[str, Any]) -> list[str]:
    lines = ["| metric | value |", "|---|---|"]
    return lines + [f"| {label} | {_fmt(figures.get(key))} |" for label, key in HEADLINE_ROWS]


def _optimum_md(figures: dict[str, Any]) -> list[str]:
    optimum = figures.get("utility_at_calibration_optimum")
    if not optimum:
        return []
    return [f"At the calibration optimum itself (threshold {optimum['threshold']:.4f}) the test "
            f"utility would be {_fmt(optimum['utility'])}.", ""]  # fmt: skip


def _subgroups_md(subgroups: dict[str, Any]) -> list[str]:
    lines = ["| group | level | " + " | ".join(SUBGROUP_COLUMNS) + " | note |",
             "|---|---|" + "---|" * (len(SUBGROUP_COLUMNS) + 1)]  # fmt: skip
    for grouping, cells in subgroups.items():
        for level, cell in cells.items():
            values = " | ".join(_fmt(cell.get(c)) for c in SUBGROUP_COLUMNS)
            lines.append(f"| {grouping} | {level} | {values} | {cell.get('note') or ''} |")
    return lines


def _experiments_md(validation: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, experiment in validation.items():
        if name == "test_split":
            continue
        lines += [f"### {name}", "", str(experiment.get("description", "")), "", "```"]
        lines += [f"{k}: {v}" for k, v in experiment.items() if k != "description"] + ["```", ""]
    return lines


def render_markdown(card: dict[str, Any]) -> str:
    """The card as a Markdown page."""
    pop, thr, test = card["training_population"], card["operating_threshold"], card["validation"]
    figures = test["test_split"]
    lines = [
        f"# Model card — {card['name']}", "", f"Created {card['created']}.", "",
        "## Intended use", "", card["intended_use"], "",
        "## Label", "", card["label"], "",
        "## Training population", "", f"{pop.get('description', '')}", "",
        f"Split (patient level): `{pop['split_rule']}`", "",
        "```", *(f"{k}: {v}" for k, v in pop["split"].items()), "```", "",
        "## Method", "", *(f"- **{k}**: {v}" for k, v in card["method"].items()), "",
        "## Operating threshold", "", f"**{thr['value']:.4f}** — {thr['how_chosen']} "
        f"Utility on calibration patients: {_fmt(thr['calibration_utility'])}.", "",
        "## Validation on held-out test patients", "",
        f"Counts: {figures['counts']}.", "", *_headline_md(figures), "",
        *_optimum_md(figures),
        "### Subgroups (test split)", "", *_subgroups_md(figures["subgroups"]), "",
        *_experiments_md(test),
        "## Known limitations", "", *(f"- {item}" for item in card["limitations"]), "",
        "## Lineage", "", "```", *(f"{k}: {v}" for k, v in card["lineage"].items()), "```", "",
    ]  # fmt: skip
    return "\n".join(lines)
