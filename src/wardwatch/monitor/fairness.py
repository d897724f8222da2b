"""The fairness audit: does the model, and do the alerts clinicians see, serve every group alike?

For each grouping (sex, age band, ICU unit, and any column a site names, e.g. a recorded
ethnicity) and each of its groups, `audit` reports, with the level of every figure in its
name:

- **patients** — the level a clinician lives at. A patient is *septic* if ever labelled;
  *alerted* if any hour alerted. Sensitivity = septic patients alerted at or before
  t_sepsis + 3 h (as `evaluate.metrics.patient_alerts`); specificity = never-septic patients
  never alerted; PPV = alerted patients who are septic; alert rate = share of patients alerted;
  AUROC of each patient's peak risk (for septic patients up to t_sepsis + 3 h, the hours an
  alert could still count) against ever septic.
- **hours** — AUROC of each hour's risk against its SepsisLabel; calibration as mean risk vs
  observed label rate, expected calibration error and Brier score (`evaluate.metrics`).
- **episodes** — alerts per 100 patient-days.

Cells with fewer than `SMALL_PATIENTS` patients or `SMALL_EVENTS` septic patients are
reported and marked `small_cell`, and left out of the between-group differences (one patient
swings them), which say which groups they compare.

**Equalized odds** (patient level): the largest between-group difference in true-positive
rate (sensitivity) and in false-positive rate (1 - specificity), and the larger of the two
(fairlearn's `equalized_odds_difference`), each with a percentile bootstrap interval that
resamples *patients* (a patient's hours move together). The interval of a max-minus-min is
biased upward at small sizes: read it as "how large could the gap be".

**Counterfactual**: the same clinical data with a sensitive attribute swapped (sex: 0 <-> 1)
is scored again; how far risks move, how many hourly alert decisions and patients' alert
status change. A model that does not lean on the attribute moves little; `flagged` says the
movement is beyond the stated tolerance (`CounterfactualTolerance`).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from fairlearn.metrics import (
    equalized_odds_difference,
    false_positive_rate_difference,
    true_positive_rate_difference,
)
from sklearn.metrics import roc_auc_score

from wardwatch.evaluate.metrics import (
    HOURS_PER_DAY,
    alert_burden,
    calibration,
    first_alert_position,
    number,
)
from wardwatch.evaluate.subgroups import UNKNOWN, age_groups, sex_groups, unit_groups
from wardwatch.evaluate.utility import CHALLENGE_2019, Stays
from wardwatch.features import build_features
from wardwatch.ingest.psv import LABEL
from wardwatch.model.risk import RiskModel

SMALL_PATIENTS = 10
SMALL_EVENTS = 5
N_BOOT = 1000
BOOT_CHUNK = 50
GROUPINGS: dict[str, Callable[[pd.DataFrame], npt.NDArray[np.object_]]] = {
    "sex": sex_groups,
    "age": age_groups,
    "unit": unit_groups,
}
SEX_SWAP = {0.0: 1.0, 1.0: 0.0}


class FairnessError(ValueError):
    """Data the audit cannot read (no labels, a missing column, mismatched lengths)."""


@dataclass(frozen=True)
class CounterfactualTolerance:
    """When a counterfactual's movement is flagged: more than `patients` of the patients
    change alert status, or the mean absolute change of the log-odds exceeds `logit`."""

    patients: float = 0.05
    logit: float = 0.10


# ---------------------------------------------------------------- per patient


def patient_table(
    stays: Stays, risk: npt.NDArray[np.float64], alert: npt.NDArray[np.bool_]
) -> pd.DataFrame:
    """One row per patient: septic, alerted, `flagged` (the patient-level prediction equalized
    odds compares: an alert by t_sepsis + 3 h if septic, any alert if not) and peak risk."""
    late = CHALLENGE_2019.dt_late
    first = first_alert_position(stays, alert)
    in_time = stays.hours_from_onset() <= late  # all hours of never-septic patients
    peak = stays.per_stay(np.where(in_time, risk, -np.inf), np.maximum)
    septic = stays.septic
    flagged = np.where(septic, first <= stays.onset + late, np.isfinite(first))
    return pd.DataFrame(
        {
            "patient_id": stays.patient_ids,
            "septic": septic,
            "alerted": np.isfinite(first),
            "flagged": flagged,
            "peak_risk": peak,
            "days": stays.lengths / HOURS_PER_DAY,
        }
    )


def attribute_groups(wide: pd.DataFrame, column: str) -> npt.NDArray[np.object_]:
    """Per row, the stay's value of a site-configured column (first row) as a group name."""
    if column not in wide:
        raise FairnessError(f"the data have no column {column!r} to audit by")
    ids = wide["patient_id"].to_numpy()
    first = wide.groupby(ids, sort=False)[column].transform("first")
    named = first.map(lambda v: UNKNOWN if pd.isna(v) else _name(v))
    return named.to_numpy(dtype=object)


def _name(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _share(part: float, whole: float) -> float | None:
    return float(part) / float(whole) if whole else None


def _auroc(labels: npt.ArrayLike, score: npt.ArrayLike) -> float | None:
    y = np.asarray(labels, dtype=bool)
    return float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else None


# ---------------------------------------------------------------- one cell


def cell(
    wide: pd.DataFrame,
    risk: npt.NDArray[np.float64],
    alert: npt.NDArray[np.bool_],
    rows: npt.NDArray[np.bool_],
) -> dict[str, Any]:
    """Every figure of the patients whose rows are selected (see the module docstring)."""
    labels = wide[LABEL].to_numpy(np.float64)[rows]
    stays = Stays.from_labels(wide["patient_id"].to_numpy()[rows], labels)
    patients = patient_table(stays, risk[rows], alert[rows])
    septic, alerted = patients["septic"].to_numpy(), patients["alerted"].to_numpy()
    n, events = len(patients), int(septic.sum())
    small = n < SMALL_PATIENTS or events < SMALL_EVENTS
    hourly = calibration(labels, risk[rows])
    return {
        "patients": n,
        "septic_patients": events,
        "patient_days": float(patients["days"].sum()),
        "small_cell": small,
        "note": f"small cell: fewer than {SMALL_PATIENTS} patients or {SMALL_EVENTS} septic"
        if small
        else None,
        "patient_sensitivity": _share(int((patients["flagged"] & septic).sum()), events),
        "patient_specificity": _share(int((~alerted & ~septic).sum()), n - events),
        "patient_ppv": _share(int((alerted & septic).sum()), int(alerted.sum())),
        "patient_alert_rate": _share(int(alerted.sum()), n),
        "patient_auroc_peak_risk": _auroc(septic, patients["peak_risk"]),
        "hourly_auroc": _auroc(labels, risk[rows]),
        "hourly_mean_risk": number(np.mean(risk[rows])) if rows.any() else None,
        "hourly_observed_rate": number(np.mean(labels)) if rows.any() else None,
        "hourly_ece": hourly["ece"],
        "hourly_brier": hourly["brier"],
        "alerts_per_100_patient_days": alert_burden(stays, alert[rows])[
            "alerts_per_100_patient_days"
        ],
    }


# ---------------------------------------------------------------- equalized odds


def _rates(
    codes: npt.NDArray[np.int64],
    septic: npt.NDArray[np.bool_],
    flagged: npt.NDArray[np.bool_],
    k: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """TPR and FPR per group code, along the last axis (codes may be resampled 2-D)."""
    tpr, fpr = [], []
    for g in range(k):
        mine = codes == g
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr.append((mine & septic & flagged).sum(-1) / (mine & septic).sum(-1))
            fpr.append((mine & ~septic & flagged).sum(-1) / (mine & ~septic).sum(-1))
    return np.stack(tpr, -1), np.stack(fpr, -1)


def _gap(rates: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(rates, -1) - np.nanmin(rates, -1)
    return np.asarray(spread, dtype=np.float64)


def _bootstrap(
    codes: npt.NDArray[np.int64],
    septic: npt.NDArray[np.bool_],
    flagged: npt.NDArray[np.bool_],
    k: int,
    n_boot: int,
    seed: int,
) -> dict[str, npt.NDArray[np.float64]]:
    """TPR, FPR and equalized-odds gaps over `n_boot` resamples of patients."""
    rng = np.random.default_rng(seed)
    tpr_gaps, fpr_gaps = [], []
    for begin in range(0, n_boot, BOOT_CHUNK):
        draw = rng.integers(0, len(codes), size=(min(BOOT_CHUNK, n_boot - begin), len(codes)))
        tpr, fpr = _rates(codes[draw], septic[draw], flagged[draw], k)
        tpr_gaps.append(_gap(tpr))
        fpr_gaps.append(_gap(fpr))
    tpr_gap, fpr_gap = np.concatenate(tpr_gaps), np.concatenate(fpr_gaps)
    return {"tpr": tpr_gap, "fpr": fpr_gap, "eo": np.fmax(tpr_gap, fpr_gap)}


def _interval(values: npt.NDArray[np.float64]) -> list[float | None]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return [None, None]
    return [number(v) for v in np.percentile(finite, [2.5, 97.5])]


def equalized_odds(
    patients: pd.DataFrame,
    groups: npt.NDArray[np.object_],
    compared: Sequence[str],
    *,
    n_boot: int = N_BOOT,
    seed: int = 2019,
) -> dict[str, Any]:
    """Patient-level equalized-odds differences between the `compared` groups, with 95 %
    bootstrap intervals (patients resampled); None when fewer than two groups compare."""
    result: dict[str, Any] = {"level": "patients", "groups_compared": list(compared)}
    keep = np.isin(groups, list(compared))
    if len(compared) < 2:
        return result | {"note": "fewer than two groups large enough to compare"}
    y, flagged, g = (
        patients["septic"].to_numpy()[keep],
        patients["flagged"].to_numpy()[keep],
        groups[keep],
    )
    codes = pd.Categorical(g, categories=list(compared)).codes.astype(np.int64)
    boot = _bootstrap(codes, y, flagged, len(compared), n_boot, seed)
    point = {
        "tpr": true_positive_rate_difference(y, flagged, sensitive_features=g),
        "fpr": false_positive_rate_difference(y, flagged, sensitive_features=g),
        "eo": equalized_odds_difference(y, flagged, sensitive_features=g),
    }
    names = {"tpr": "sensitivity_difference", "fpr": "false_positive_rate_difference",
             "eo": "equalized_odds_difference"}  # fmt: skip
    for key, name in names.items():
        result[name] = {"value": number(point[key]), "ci95": _interval(boot[key])}
    return result | {"bootstrap_resamples": n_boot, "resampled": "patients"}


# ---------------------------------------------------------------- the audit


def audit(
    wide: pd.DataFrame,
    risk: npt.ArrayLike,
    alert: npt.ArrayLike,
    *,
    attributes: Sequence[str] = (),
    alert_source: str = "",
    n_boot: int = N_BOOT,
    seed: int = 2019,
) -> dict[str, Any]:
    """Subgroup figures and equalized odds for sex, age band, unit and each `attributes`
    column, on labelled rows grouped by patient in time order; JSON-able."""
    p = np.asarray(risk, dtype=np.float64)
    a = np.asarray(alert, dtype=bool)
    _check(wide, p, a)
    labels = wide[LABEL].to_numpy(np.float64)
    stays = Stays.from_labels(wide["patient_id"].to_numpy(), labels)
    patients = patient_table(stays, p, a)
    groupings = dict(GROUPINGS) | {c: (lambda w, c=c: attribute_groups(w, c)) for c in attributes}
    result: dict[str, Any] = {"alert_source": alert_source, "groupings": {}}
    for name, assign in groupings.items():
        levels = assign(wide)
        cells = {str(g): cell(wide, p, a, levels == g) for g in _ordered(levels)}
        compared = [g for g, c in cells.items() if not c["small_cell"]]
        per_patient = levels[stays.starts]
        odds = equalized_odds(patients, per_patient, compared, n_boot=n_boot, seed=seed)
        result["groupings"][name] = {"groups": cells, "equalized_odds": odds}
    result["overall"] = cell(wide, p, a, np.ones(len(p), dtype=bool))
    return result


def _check(wide: pd.DataFrame, risk: npt.NDArray, alert: npt.NDArray) -> None:
    if LABEL not in wide or wide[LABEL].isna().any():
        raise FairnessError("the fairness audit needs labelled data (SepsisLabel on every row)")
    if not (len(risk) == len(alert) == len(wide)):
        raise FairnessError(f"{len(risk)} risks and {len(alert)} alerts for {len(wide)} rows")
    if not np.all(np.isfinite(risk)):
        raise FairnessError("risk must be finite on every row")


def _ordered(levels: npt.NDArray[np.object_]) -> list[str]:
    present = sorted({str(v) for v in levels.tolist()} - {UNKNOWN})
    return [*present, UNKNOWN] if UNKNOWN in set(levels.tolist()) else present


# ---------------------------------------------------------------- counterfactual


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    q = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(q / (1 - q))


def counterfactual(
    model: RiskModel,
    wide: pd.DataFrame,
    *,
    column: str = "Gender",
    swap: Mapping[float, float] = SEX_SWAP,
    tolerance: CounterfactualTolerance | None = None,
    risk: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """Score `wide` again with `column` swapped (`swap`, values not in it kept) and report how
    far predictions move: hourly risk and log-odds, hourly alert decisions (risk >= the
    model's threshold) and patients' alert status. `risk`: the unswapped risks, if known."""
    tolerance = tolerance or CounterfactualTolerance()
    if column not in wide:
        raise FairnessError(f"the data have no column {column!r} to swap")
    original = wide[column].to_numpy(np.float64)
    swapped = np.array([swap.get(v, v) for v in original.tolist()], dtype=np.float64)
    moved = ~np.isclose(original, swapped, equal_nan=True)
    before = (
        model.predict(build_features(wide))["risk"].to_numpy()
        if risk is None
        else np.asarray(risk, dtype=np.float64)
    )
    after = model.predict(build_features(wide.assign(**{column: swapped})))["risk"].to_numpy()
    return _movement(wide, before, after, moved, model.threshold, column, swap, tolerance)


def _movement(
    wide: pd.DataFrame,
    before: npt.NDArray[np.float64],
    after: npt.NDArray[np.float64],
    moved: npt.NDArray[np.bool_],
    threshold: float,
    column: str,
    swap: Mapping[float, float],
    tolerance: CounterfactualTolerance,
) -> dict[str, Any]:
    ids = wide["patient_id"].to_numpy()[moved]
    change = after[moved] - before[moved]
    logit_change = np.abs(_logit(after[moved]) - _logit(before[moved]))
    decided = (before[moved] >= threshold) != (after[moved] >= threshold)
    status = pd.DataFrame({"b": before[moved] >= threshold, "a": after[moved] >= threshold})
    status = status.groupby(ids, sort=False).any()
    patients_changed = _share(int((status["a"] != status["b"]).sum()), len(status))
    mean_logit = number(logit_change.mean()) if len(change) else None
    flagged = (patients_changed or 0) > tolerance.patients or (mean_logit or 0) > tolerance.logit
    return {
        "attribute": column,
        "swap": {_name(k): v for k, v in swap.items()},
        "hours_swapped": int(moved.sum()),
        "patients_swapped": len(status),
        "hourly_mean_abs_risk_change": number(np.abs(change).mean()) if len(change) else None,
        "hourly_p95_abs_risk_change": number(np.percentile(np.abs(change), 95))
        if len(change)
        else None,
        "hourly_max_abs_risk_change": number(np.abs(change).max()) if len(change) else None,
        "hourly_mean_risk_change": number(change.mean()) if len(change) else None,
        "hourly_mean_abs_logit_change": mean_logit,
        "hourly_alert_decisions_changed": _share(int(decided.sum()), len(decided)),
        "patients_alert_status_changed": patients_changed,
        "tolerance": asdict(tolerance),
        "flagged": bool(flagged),
    }


# ---------------------------------------------------------------- HTML


COLUMNS = (
    ("patients", "patients", "{:,}"),
    ("septic_patients", "septic", "{:,}"),
    ("patient_sensitivity", "sensitivity (patients)", "{:.1%}"),
    ("patient_specificity", "specificity (patients)", "{:.1%}"),
    ("patient_ppv", "PPV (patients)", "{:.1%}"),
    ("patient_alert_rate", "alerted (share of patients)", "{:.1%}"),
    ("alerts_per_100_patient_days", "alerts / 100 patient-days", "{:.1f}"),
    ("patient_auroc_peak_risk", "AUROC (patients, peak risk)", "{:.3f}"),
    ("hourly_auroc", "AUROC (hours)", "{:.3f}"),
    ("hourly_mean_risk", "mean risk (hours)", "{:.2%}"),
    ("hourly_observed_rate", "labelled (hours)", "{:.2%}"),
    ("hourly_ece", "ECE (hours)", "{:.4f}"),
)


def _fmt(value: Any, form: str) -> str:
    return "–" if value is None else form.format(value)


def _row(name: str, figures: Mapping[str, Any]) -> str:
    cells = "".join(f"<td>{_fmt(figures[k], f)}</td>" for k, _, f in COLUMNS)
    if not figures["small_cell"]:
        return f"<tr><th>{html.escape(name)}</th>{cells}</tr>"
    note = html.escape(figures["note"] or "")
    return f'<tr class="small-cell" title="{note}"><th>{html.escape(name)} *</th>{cells}</tr>'


def _odds_line(odds: Mapping[str, Any]) -> str:
    if "equalized_odds_difference" not in odds:
        return f'<p class="odds">Equalized odds: {html.escape(odds.get("note", ""))}.</p>'
    parts = []
    for key, label in (("sensitivity_difference", "sensitivity gap"),
                       ("false_positive_rate_difference", "false-positive-rate gap"),
                       ("equalized_odds_difference", "equalized-odds difference")):  # fmt: skip
        value, (low, high) = odds[key]["value"], odds[key]["ci95"]
        parts.append(f"{label} {_fmt(value, '{:.3f}')} (95 % CI {_fmt(low, '{:.3f}')}–"
                     f"{_fmt(high, '{:.3f}')})")  # fmt: skip
    groups = ", ".join(html.escape(g) for g in odds["groups_compared"])
    return f'<p class="odds">Patients, between {groups}: {"; ".join(parts)}.</p>'


def render_html(result: Mapping[str, Any]) -> str:
    """An HTML fragment (tables and sentences, no page chrome) of an `audit` result, with an
    optional `counterfactual` entry, for the governance dashboard and transparency report."""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in COLUMNS)
    parts = ['<section class="fairness-audit">']
    if result.get("alert_source"):
        parts.append(f"<p>Alerts: {html.escape(result['alert_source'])}.</p>")
    for name, grouping in result["groupings"].items():
        rows = "".join(_row(g, c) for g, c in grouping["groups"].items())
        caption = f"<caption>by {html.escape(name)}</caption>"
        table = f"<thead><tr><th>group</th>{head}</tr></thead><tbody>{rows}</tbody>"
        parts.append(f'<table class="fairness">{caption}{table}</table>')
        parts.append(_odds_line(grouping["equalized_odds"]))
    parts.append(f"<p>* small cell: fewer than {SMALL_PATIENTS} patients or {SMALL_EVENTS} "
                 "septic patients; shown, not compared.</p>")  # fmt: skip
    if (cf := result.get("counterfactual")) is not None:
        parts.append(_counterfactual_html(cf))
    parts.append("</section>")
    return "\n".join(parts)


def _counterfactual_html(cf: Mapping[str, Any]) -> str:
    verdict = "beyond tolerance" if cf["flagged"] else "within tolerance"
    return (
        f'<p class="counterfactual">Counterfactual ({html.escape(cf["attribute"])} swapped, '
        f"same clinical data, {cf['patients_swapped']:,} patients): hourly risk moved by "
        f"{_fmt(cf['hourly_mean_abs_risk_change'], '{:.4f}')} on average (95th percentile "
        f"{_fmt(cf['hourly_p95_abs_risk_change'], '{:.4f}')}); "
        f"{_fmt(cf['hourly_alert_decisions_changed'], '{:.2%}')} of hourly alert decisions and "
        f"{_fmt(cf['patients_alert_status_changed'], '{:.2%}')} of patients' alert status "
        f"changed: <strong>{verdict}</strong> (at most {cf['tolerance']['patients']:.0%} of "
        f"patients, mean log-odds change {cf['tolerance']['logit']:g}).</p>"
    )
