"""The evaluation report: every metric for models and baselines side by side, as JSON and HTML.

`evaluate_cohort` computes; `write_report` writes one self-contained HTML file (figures as
inline SVG images, no scripts, no network) and one JSON file holding every number, including
the data behind every figure, so the HTML can always be rebuilt from the JSON.

The caller is responsible for the split: `wide` must hold only patients the models never saw
in training (rule 4: evaluation splits by patient).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from wardwatch.evaluate.metrics import Predictions, evaluate_predictions, headline, number
from wardwatch.evaluate.subgroups import SMALL_CELL, evaluate_subgroups
from wardwatch.evaluate.utility import CHALLENGE_2019, Stays, UtilityParameters

HTML_NAME = "evaluation.html"
JSON_NAME = "evaluation.json"
LEAD_BIN_HOURS = 3
LEAD_MAX_HOURS = 72

DEFINITIONS = {
    "t_sepsis": "Clinical onset of sepsis (Sepsis-3) as labelled by the challenge: the first "
    "hour with SepsisLabel = 1, plus 6 hours. Patients never labelled are 'not septic'.",
    "utility": "PhysioNet 2019 normalized utility. Each hour earns credit: an alert from 12 h "
    "to 6 h before t_sepsis earns up to 1, falling back to 0 by 3 h after it; a missed septic "
    "patient loses up to 2 per hour from 6 h before to 3 h after t_sepsis; every alert hour in "
    "a patient who is not septic (or more than 12 h early) costs 0.05. Scaled so that never "
    "alerting scores 0 and perfect timing scores 1; below 0 is worse than staying silent.",
    "auroc": "Hourly AUROC: the chance that a random hour labelled septic has a higher risk "
    "than a random hour not labelled. 0.5 is a coin toss, 1 is perfect ranking.",
    "auprc": "Hourly AUPRC (average precision): how precise alerts are across all thresholds; "
    "compare it with the share of labelled hours (the prevalence), which a random score gets.",
    "sensitivity": "Share of septic patients alerted at least once no later than 3 h after "
    "t_sepsis. 'Before onset' counts only alerts at or before t_sepsis; 'in window' only "
    "alerts from 12 h before to 3 h after t_sepsis.",
    "ppv": "Of the patients alerted at least once during the stay, the share who were septic.",
    "specificity": "Of the patients never septic, the share never alerted.",
    "alerts_per_100_patient_days": "Alert burden: how many times an alert starts (goes from off "
    "to on) per 100 days of ICU stay. An alert that stays on for many hours counts once.",
    "median_lead_hours": "For septic patients whose first alert came at or before t_sepsis: "
    "the median number of hours from that first alert to t_sepsis.",
    "calibration": "Only for risks that are probabilities. Reliability: hours are split into "
    "groups of similar risk; a calibrated model's mean risk matches the observed share of "
    "labelled hours in each group. Brier score: mean squared error of the risk (lower is "
    "better). ECE: the average gap between mean risk and observed share, weighted by group "
    "size.",
    "small_cell": f"Subgroups with fewer than {SMALL_CELL} septic patients are marked: their "
    "numbers can change with one or two patients and are not evidence of a difference.",
}


def evaluate_cohort(
    wide: pd.DataFrame,
    predictions: dict[str, Predictions],
    *,
    title: str = "Sepsis early warning: evaluation",
    small_cell: int = SMALL_CELL,
    params: UtilityParameters = CHALLENGE_2019,
    alert_policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every metric, subgroup table and figure series for `predictions` on the cohort `wide`.

    `wide` needs `patient_id`, `SepsisLabel`, `Age`, `Gender`, `Unit1` and `Unit2`, rows
    grouped by patient in time order; each `Predictions` has one value per row of `wide`.
    `alert_policy` is `alerts.burden.policy_variants` on the same cohort, when there is one.
    """
    labels = wide["SepsisLabel"].to_numpy()
    stays = Stays.from_labels(wide["patient_id"].to_numpy(), labels, params)
    models = {
        name: evaluate_predictions(stays, labels, p, params=params)
        for name, p in predictions.items()
    }
    figures = _figure_data({n: m.pop("curves") for n, m in models.items()}, models)
    policy = {} if alert_policy is None else {"alert_policy": alert_policy}
    return policy | {
        "title": title,
        "cohort": {
            "patients": stays.n_stays,
            "septic_patients": int(stays.septic.sum()),
            "hours": stays.n_rows,
            "patient_days": stays.n_rows / 24,
            "hourly_prevalence": number(np.mean(labels)) if len(labels) else None,
        },
        "utility_parameters": asdict(params),
        "definitions": DEFINITIONS | {"small_cell": DEFINITIONS["small_cell"].replace(
            str(SMALL_CELL), str(small_cell))},
        "headline": [{"name": n, "kind": m["kind"], **headline(m)} for n, m in models.items()],
        "models": models,
        "subgroups": evaluate_subgroups(wide, predictions, small_cell=small_cell, params=params),
        "small_cell": small_cell,
        "figures": figures,
    }  # fmt: skip


def _lead_histogram(models: dict[str, Any]) -> dict[str, Any]:
    edges = np.r_[np.arange(0, LEAD_MAX_HOURS + 1, LEAD_BIN_HOURS), np.inf]
    counts = {
        name: np.histogram(m["lead_time"]["hours"], edges)[0].tolist() for name, m in models.items()
    }
    return {"bin_edges_hours": [number(e) for e in edges], "patients": counts}


def _figure_data(curves: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    return {
        "roc": {n: c["roc"] for n, c in curves.items()},
        "utility_vs_threshold": {
            n: c["threshold"] | {"operating_threshold": models[n]["threshold"]}
            for n, c in curves.items()
        },
        "reliability": {n: m["calibration"]["bins"] for n, m in models.items() if m["calibration"]},
        "lead_time_histogram": _lead_histogram(models),
    }


def write_report(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write `evaluation.html` and `evaluation.json` into `out_dir`; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / JSON_NAME, out_dir / HTML_NAME
    json_path.write_text(json.dumps(results, indent=1, allow_nan=False), encoding="utf-8")
    html_path.write_text(render_html(results), encoding="utf-8")
    return html_path, json_path


# ---------------------------------------------------------------- figures


def _style(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    colors = mpl.colormaps["tab10"].colors
    return {
        row["name"]: {"color": colors[i % len(colors)],
                      "linestyle": "-" if row["kind"] == "model" else "--"}
        for i, row in enumerate(results["headline"])
    }  # fmt: skip


def _svg(draw: Callable[[Any], None], size: tuple[float, float] = (6.4, 4.4)) -> str:
    figure = Figure(figsize=size, layout="constrained")
    draw(figure.add_subplot())
    buffer = io.BytesIO()
    with mpl.rc_context({"svg.hashsalt": "wardwatch", "svg.fonttype": "path"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/svg+xml;base64,{encoded}">'


def _roc(results: dict[str, Any], style: dict[str, Any]) -> Callable[[Any], None]:
    def draw(ax: Any) -> None:
        ax.plot([0, 1], [0, 1], color="0.7", linewidth=0.8, label="chance")
        for name, points in results["figures"]["roc"].items():
            if points["fpr"] is not None:
                ax.plot(points["fpr"], points["tpr"], label=name, **style[name])
        ax.set(xlabel="false-positive rate (hours)", ylabel="true-positive rate (hours)",
               title="ROC, hourly", xlim=(0, 1), ylim=(0, 1))  # fmt: skip
        ax.legend(loc="lower right", fontsize="small")

    return draw


def _utility(results: dict[str, Any], style: dict[str, Any]) -> Callable[[Any], None]:
    def draw(ax: Any) -> None:
        ax.axhline(0, color="0.7", linewidth=0.8)
        for name, curve in results["figures"]["utility_vs_threshold"].items():
            pairs = [(t, u) for t, u in zip(curve["thresholds"], curve["utility"], strict=True)
                     if t is not None and u is not None]  # fmt: skip
            if not pairs:
                continue
            ax.plot(*zip(*pairs, strict=True), label=name, **style[name])
            here = curve["operating_threshold"]
            at = min(pairs, key=lambda p: abs(p[0] - here)) if here is not None else None
            if at is not None:
                ax.plot(*at, marker="o", color=style[name]["color"])
        ax.set(
            xlabel="alert threshold (risk; baselines: points / maximum points)",
            ylabel="normalized utility",
            title="Utility vs threshold (dot: operating point)",
        )
        ax.legend(fontsize="small")

    return draw


def _reliability(results: dict[str, Any], style: dict[str, Any]) -> Callable[[Any], None]:
    def draw(ax: Any) -> None:
        top = 0.0
        for name, bins in results["figures"]["reliability"].items():
            x, y = [b["mean_risk"] for b in bins], [b["observed"] for b in bins]
            ax.plot(x, y, marker="o", label=name, **style[name])
            top = max(top, *x, *y)
        top = min(1.0, top * 1.05) or 1.0
        ax.plot([0, top], [0, top], color="0.7", linewidth=0.8, label="perfect calibration")
        ax.set(xlabel="mean predicted risk (quantile bins)", ylabel="observed share labelled",
               title="Reliability, hourly")  # fmt: skip
        ax.legend(fontsize="small")

    return draw


def _leads(results: dict[str, Any], style: dict[str, Any]) -> Callable[[Any], None]:
    def draw(ax: Any) -> None:
        data = results["figures"]["lead_time_histogram"]
        edges = [e for e in data["bin_edges_hours"] if e is not None]
        for name, counts in data["patients"].items():
            ax.stairs(counts[: len(edges) - 1], edges, label=name, **style[name])
            if len(counts) >= len(edges):
                ax.plot(edges[-1] + 1, counts[-1], marker="^", color=style[name]["color"])
        ax.set(
            xlabel=f"hours from first alert to t_sepsis (triangle: ≥ {LEAD_MAX_HOURS} h)",
            ylabel="septic patients",
            title="Lead time of the first alert",
        )
        ax.legend(fontsize="small")

    return draw


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.8em 0 1.6em}
th,td{border:1px solid #ccc;padding:0.3em 0.6em;text-align:right}
th:first-child,td:first-child,td.text{text-align:left}
thead th{background:#f0f0f0}
tr.baseline td:first-child::after{content:" (baseline)";color:#777;font-size:0.85em}
tr.small td{color:#8a5a00;background:#fff8e6}
.note{color:#555;font-size:0.92em}
.figures img{width:48%;min-width:420px;vertical-align:top}
dt{font-weight:600;margin-top:0.6em}
"""

HEADLINE = (
    ("utility", "Utility", "{:.3f}"),
    ("auroc", "AUROC (hourly)", "{:.3f}"),
    ("auprc", "AUPRC (hourly)", "{:.3f}"),
    ("sensitivity", "Sensitivity", "{:.0%}"),
    ("ppv", "PPV (patients)", "{:.0%}"),
    ("alerts_per_100_patient_days", "Alerts / 100 patient-days", "{:.1f}"),
    ("median_lead_hours", "Median lead (h)", "{:.0f}"),
)
SECONDARY = (
    ("sensitivity_before_onset", "Sensitivity, before onset", "{:.0%}"),
    ("sensitivity_in_window", "Sensitivity, in window", "{:.0%}"),
    ("specificity", "Specificity (patients)", "{:.0%}"),
    ("brier", "Brier", "{:.4f}"),
    ("ece", "ECE", "{:.4f}"),
)
SUBGROUP = (
    ("utility", "Utility", "{:.3f}"),
    ("auroc", "AUROC", "{:.3f}"),
    ("sensitivity", "Sensitivity", "{:.0%}"),
    ("ppv", "PPV", "{:.0%}"),
    ("alerts_per_100_patient_days", "Alerts / 100 pt-days", "{:.1f}"),
    ("median_lead_hours", "Median lead (h)", "{:.0f}"),
)


def _fmt(value: Any, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


def _e(text: Any) -> str:
    return html.escape(str(text))


def _table(head: Iterable[str], rows: Iterable[tuple[str, list[str]]]) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(
        f'<tr class="{cls}">' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
        for cls, cells in rows
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _threshold(model: dict[str, Any]) -> str:
    points = model["details"].get("threshold_points")
    if points is not None:
        return f"≥ {points} points"
    return _fmt(model["threshold"], "{:.3g}")


def _metric_table(results: dict[str, Any], columns: tuple[tuple[str, str, str], ...]) -> str:
    rows = [
        (row["kind"], [_e(row["name"]), _threshold(results["models"][row["name"]])]
         + [_fmt(row[key], pattern) for key, _, pattern in columns])
        for row in results["headline"]
    ]  # fmt: skip
    return _table(["Model", "Alert at", *(label for _, label, _ in columns)], rows)


def _subgroup_table(cells: dict[str, Any], small_cell: int) -> str:
    rows = []
    for level, cell in cells.items():
        flag = " ⚠ small cell" if cell["small_cell"] else ""
        for name, metrics in cell["models"].items():
            counts = [str(cell["patients"]), str(cell["septic_patients"])]
            values = [_fmt(metrics[key], pattern) for key, _, pattern in SUBGROUP]
            row = [_e(level) + flag, _e(name), *counts, *values]
            rows.append(("small" if cell["small_cell"] else "", row))
    head = ["Group", "Model", "Patients", "Septic", *(label for _, label, _ in SUBGROUP)]
    note = (f'<p class="note">⚠ small cell: fewer than {small_cell} septic patients; do not '
            "read differences in these rows as findings.</p>")  # fmt: skip
    return _table(head, rows) + (note if any(c["small_cell"] for c in cells.values()) else "")


def _figures(results: dict[str, Any]) -> str:
    style = _style(results)
    parts = [_svg(_roc(results, style)), _svg(_utility(results, style))]
    if results["figures"]["reliability"]:
        parts.append(_svg(_reliability(results, style)))
    parts.append(_svg(_leads(results, style)))
    missing = "" if results["figures"]["reliability"] else (
        '<p class="note">No reliability curve: none of the evaluated risks is a probability '
        "(rule-based scores are points, not probabilities).</p>")  # fmt: skip
    return f'<div class="figures">{"".join(parts)}</div>{missing}'


def _cohort(results: dict[str, Any]) -> str:
    c = results["cohort"]
    prevalence = _fmt(c["hourly_prevalence"], "{:.1%}")
    return (
        f"<p>{c['patients']:,} ICU stays, {c['septic_patients']:,} of them septic "
        f"({_fmt(c['septic_patients'] / c['patients'] if c['patients'] else None, '{:.1%}')}); "
        f"{c['hours']:,} patient-hours ({c['patient_days']:,.0f} patient-days), of which "
        f"{prevalence} are labelled. Models and rule-based baselines are scored on the same "
        "hours, side by side; every risk at hour t uses data up to hour t only.</p>"
    )


GROUP_TITLES = {"sex": "Sex", "age": "Age band (years)", "unit": "ICU unit"}
POLICY_COLUMNS = (
    ("alerts_per_100_patient_days", "Alerts / 100 pt-days", "{:.1f}"),
    ("review_flags_per_100_patient_days", "Review flags / 100 pt-days", "{:.1f}"),
    ("sensitivity", "Sensitivity", "{:.0%}"),
    ("sensitivity_before_onset", "Before onset", "{:.0%}"),
    ("sensitivity_alert_or_review", "Alert or review", "{:.0%}"),
    ("ppv_per_alert", "PPV per alert", "{:.0%}"),
    ("median_lead_hours", "Median lead (h)", "{:.0f}"),
    ("patients_alerted", "Patients alerted", "{:.0%}"),
)
POLICY_SETTINGS = (
    "threshold", "require_organ_dysfunction", "suppress_realert", "realert_after_hours",
    "realert_rise", "review_ood", "max_uncertainty", "max_vitals_age_hours", "review_after_hours",
    "review_min_risk",
)  # fmt: skip


def policy_table(policy: dict[str, Any]) -> str:
    """The policy variants side by side (the table of the report's alert-policy section)."""
    rows = [
        ("" if row["organ_dysfunction_gate"] is not None else "baseline",
         [_e(row["name"]), *(_fmt(row[key], pattern) for key, _, pattern in POLICY_COLUMNS)])
        for row in policy["variants"]
    ]  # fmt: skip
    return _table(["Policy", *(label for _, label, _ in POLICY_COLUMNS)], rows)


def _policy_settings(policy: dict[str, Any]) -> str:
    rows = [
        ("", [_e(kind), *(_e("model's" if key == "threshold" and p[key] is None else p[key])
                          for key in POLICY_SETTINGS)])
        for kind, p in policy["policies"].items()
    ]  # fmt: skip
    return _table(["Unit", *(k.replace("_", " ") for k in POLICY_SETTINGS)], rows)


def _policy_section(results: dict[str, Any]) -> str:
    policy = results.get("alert_policy")
    if policy is None:
        return ""
    defs = "".join(
        f"<dt>{_e(k.replace('_', ' '))}</dt><dd>{_e(v)}</dd>"
        for k, v in policy["definitions"].items()
    )
    return f"""<h2>Alert policy: what clinicians would see</h2>
<p class="note">The model's alert policy replayed hour by hour over these patients: an alert
needs the risk at or above the threshold ({_fmt(policy["threshold"], "{:.3g}")}, the model's
unless a unit sets its own) and, with the gate, a measured sign of organ dysfunction; after a
clinician confirms or dismisses, re-alert suppression keeps the patient quiet for a window and
then until the risk rises materially. Untrustworthy input (out of distribution, stale vital
signs, too uncertain) raises a needs-human-review flag instead. Without suppression, a patient
whose alert was just answered is alerted again the next hour the conditions hold; each of a
septic patient's repeated alerts counts, which is why PPV per alert rises there.</p>
{policy_table(policy)}
{_policy_settings(policy)}
<dl>{defs}</dl>
"""


def render_html(results: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    defs = "".join(
        f"<dt>{_e(k.replace('_', ' '))}</dt><dd>{_e(v)}</dd>"
        for k, v in results["definitions"].items()
    )
    notes = "".join(
        f"<li><b>{_e(name)}</b>: {_e(model['note'])}</li>"
        for name, model in results["models"].items()
        if model["note"]
    )
    groups = "".join(
        f"<h3>{_e(GROUP_TITLES.get(g, g))}</h3>{_subgroup_table(cells, results['small_cell'])}"
        for g, cells in results["subgroups"].items()
    )
    params = ", ".join(f"{k} = {v}" for k, v in results["utility_parameters"].items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(results["title"])}</title>
<style>{CSS}</style></head><body>
<h1>{_e(results["title"])}</h1>
{_cohort(results)}
<h2>Headline</h2>
{_metric_table(results, HEADLINE)}
<p class="note">Sensitivity: septic patients alerted no later than 3 h after onset. PPV: alerted
patients who were septic. Definitions below.</p>
<h2>More detail</h2>
{_metric_table(results, SECONDARY)}
{_policy_section(results)}<h2>What the numbers mean</h2>
<dl>{defs}</dl>
<h2>Figures</h2>
{_figures(results)}
<h2>Subgroups</h2>
<p class="note">The same metrics within groups of patients, to see whether any group is served
worse. {_e(results["definitions"]["small_cell"])}</p>
{groups}
<h2>What each model and baseline can use</h2>
<ul>{notes}</ul>
<h2>Method</h2>
<p class="note">Utility constants: {_e(params)}. Rows are hours of ICU stay; all metrics
are computed on the hours and patients given to the report, which must be patients held out from
training. Data: PhysioNet/Computing in Cardiology Challenge 2019 (Reyna et al., Crit Care Med
2020;48(2):210-217; doi 10.13026/v64v-d857).</p>
</body></html>
"""
