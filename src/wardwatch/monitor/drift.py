"""Drift: how a current cohort differs from the reference, and which differences need a person.

`compare(reference, current, thresholds)` takes two `Profile`s on the same bins (profile the
current cohort `like=` the reference) and measures, per measured variable:

- **PSI** (population stability index) of the values over the reference's decile bins:
  sum over bins of (site share - reference share) x ln(site share / reference share), shares
  floored at 1e-4 so an empty bin counts as rare rather than impossible. 0 means the same
  distribution; by convention < 0.1 is stable and > 0.25 a major shift.
- **KS**: the largest gap between the two cumulative distributions, read at the reference's
  percentiles (a CDF-from-bins equivalent of `scipy.stats.ks_2samp`'s statistic, without
  keeping any patient's values; it can miss a gap narrower than one percentile, so it is a
  lower bound of the sample statistic, within 0.01 of it).
- the change in the **share of hours measured**, judged as the PSI of measured / not measured
  (missingness drift is drift: the model reads how often a value is charted);
- the **median offset**, in the variable's units and in reference IQRs, and when the offset
  matches a known unit confusion (°F sent as °C, mmol/L as mg/dL, a percentage as a fraction)
  the confusion, by name.

Then the model's side: PSI and KS of the **risk** distribution (prediction drift), the
**alert rate** (hours at or above the threshold) and the **out-of-distribution share** against
the reference's, and, when the current cohort has outcomes, **calibration**: observed over
expected labelled hours, and the expected calibration error (ECE), against the reference's.

Each crossed threshold is a `Finding`: a sentence a governance committee reads, and what to
do about it. The thresholds are data (`DriftThresholds`): defaults here, overridden by the
settings file's `[monitor]` table. A variable or a figure with too few values to judge
(`min_values`, `min_hours`, `min_labelled_hours`) is reported but raises nothing.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from wardwatch.ingest.psv import MEASURED
from wardwatch.monitor.reference import Distribution, Profile, ProfileError
from wardwatch.terminology.units import substances
from wardwatch.terminology.variables import variables as variable_table

FLOOR = 1e-4  # share given to an empty bin in PSI
KS_METHOD = "CDF at the reference's percentiles (lower bound of the two-sample KS statistic)"
WEBHOOK_KEYS = ("webhook_url", "webhook_timeout_seconds")  # [monitor] keys that are not limits


@dataclass(frozen=True)
class DriftThresholds:
    """When a difference becomes an operations notice. Every figure is explained in the
    module docstring; the defaults are the conventional PSI cut-offs and effect sizes that a
    random half of set A never reaches (tests/monitor/test_drift.py)."""

    value_psi: float = 0.25
    value_ks: float = 0.2
    median_offset_iqr: float = 1.0  # |site median - reference median| in reference IQRs
    measured_psi: float = 0.1
    prediction_psi: float = 0.2
    prediction_ks: float = 0.15
    alert_rate_ratio: float = 1.5  # either way: 1.5 x more, or 1.5 x fewer
    ood_share_ratio: float = 3.0  # the OOD flag is set on 1 % of training hours by design
    calibration_ratio: float = 1.5  # observed / expected labelled hours, either way
    ece_increase: float = 0.02
    min_values: int = 300  # values of a variable before its distribution is judged
    min_hours: int = 500  # patient-hours before frequencies and the model's outputs are judged
    min_labelled_hours: int = 50  # labelled hours before calibration is judged

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"[monitor] {f.name} must be a non-negative number, not {value!r}")
        for name in ("alert_rate_ratio", "ood_share_ratio", "calibration_ratio"):
            if (value := getattr(self, name)) < 1:
                raise ValueError(f"[monitor] {name} is a ratio: at least 1, not {value}")

    @classmethod
    def from_table(cls, table: dict[str, Any], source: str = "") -> DriftThresholds:
        """Thresholds from a `[monitor]` table; unknown keys are a ValueError naming them."""
        where = f" in {source}" if source else ""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known - set(WEBHOOK_KEYS))
        if unknown:
            raise ValueError(f"unknown keys in [monitor]{where}: {unknown}; known: {sorted(known)}")
        return cls(**{k: v for k, v in table.items() if k in known})


def monitor_table(config_file: Path | None = None) -> tuple[dict[str, Any], str]:
    """The settings file's `[monitor]` table (found as `settings.load_settings` finds the
    file), and the file's name; an empty table when there is no file or no table."""
    path = config_file or Path(os.environ.get("WARDWATCH_CONFIG", "wardwatch.toml"))
    if not path.is_file():
        return {}, str(path)
    with path.open("rb") as handle:
        table = tomllib.load(handle).get("monitor", {})
    if not isinstance(table, dict):
        raise ValueError(f"{path}: monitor must be a table ([monitor])")
    return table, str(path)


def load_thresholds(config_file: Path | None = None) -> DriftThresholds:
    table, source = monitor_table(config_file)
    return DriftThresholds.from_table(table, source)


# ---------------------------------------------------------------- the statistics


def psi(reference: tuple[float, ...], current: tuple[float, ...]) -> float:
    """Population stability index of two share vectors over the same bins (>= 0)."""
    if len(reference) != len(current):
        raise ProfileError(f"PSI of {len(current)} bins against {len(reference)}: profile the "
                           "current cohort like= the reference")  # fmt: skip
    r = np.maximum(np.asarray(reference, np.float64), FLOOR)
    c = np.maximum(np.asarray(current, np.float64), FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def ks(reference: Distribution, current: Distribution) -> float:
    """Largest gap of the two CDFs at the reference's grid points (see `KS_METHOD`)."""
    if not reference.cdf or not current.cdf:
        return 0.0
    gaps = np.abs(np.asarray(current.cdf) - np.asarray(reference.cdf))
    return float(gaps.max())


def measured_psi(reference_share: float, current_share: float) -> float:
    """PSI of the measured / not-measured split of the hours."""
    return psi((reference_share, 1 - reference_share), (current_share, 1 - current_share))


# ---------------------------------------------------------------- unit confusions


@dataclass(frozen=True)
class Confusion:
    """A way a site's values can arrive in another unit than the one they are labelled with."""

    variable: str
    description: str
    scale: float  # canonical = value * scale + shift
    shift: float = 0.0

    def undo(self, value: float) -> float:
        return value * self.scale + self.shift


def _confusions() -> list[Confusion]:
    found = [
        Confusion("Temp", "°F sent as °C", 5 / 9, -32 * 5 / 9),
        Confusion("Temp", "kelvin sent as °C", 1.0, -273.15),
        Confusion("FiO2", "a percentage sent as a fraction", 0.01),
        Confusion("O2Sat", "a fraction sent as a percentage", 100.0),
        Confusion("SaO2", "a fraction sent as a percentage", 100.0),
    ]
    for s in substances().values():
        found.append(Confusion(s.variable, f"{s.molar_unit} sent as {s.mass_unit}",
                               1 / s.molar_per_mass))  # fmt: skip
    return found


def suspected_confusion(
    variable: str, reference: Distribution, current: Distribution
) -> tuple[Confusion, float] | None:
    """The unit confusion that brings the site's median back to the reference's, if one
    does (to within a quarter of the reference IQR), with the corrected median."""
    if reference.median is None or current.median is None or not reference.iqr:
        return None
    if abs(current.median - reference.median) < 2 * reference.iqr:
        return None  # close enough that no confusion of units is needed to explain it
    for confusion in _confusions():
        corrected = confusion.undo(current.median)
        if confusion.variable == variable and abs(corrected - reference.median) <= (
            0.25 * reference.iqr
        ):
            return confusion, corrected
    return None


# ---------------------------------------------------------------- the comparison


@dataclass(frozen=True)
class Finding:
    """One crossed threshold: what, how far, and what to do. Stored as an operations notice."""

    kind: str  # input_values | input_measured | prediction | alert_rate | ood | calibration
    subject: str  # the variable, or "risk", "alerts", "ood", "calibration"
    figure: float
    threshold: float
    message: str
    recommendation: str


@dataclass(frozen=True)
class VariableDrift:
    """One measured variable, reference against site."""

    variable: str
    reference_measured_share: float
    measured_share: float
    measured_psi: float
    reference_values: int
    values: int
    judged: bool  # enough values on both sides to judge the distribution
    psi: float | None = None
    ks: float | None = None
    reference_median: float | None = None
    median: float | None = None
    median_offset: float | None = None
    offset_iqr: float | None = None  # the offset in reference IQRs
    suspected_unit: str | None = None  # e.g. "°F sent as °C: corrected median 37.0"

    @property
    def measured_ratio(self) -> float | None:
        ref = self.reference_measured_share
        return self.measured_share / ref if ref > 0 else None


@dataclass(frozen=True)
class DriftReport:
    """Everything `compare` measured, and the findings to raise."""

    hours: int
    patients: int
    variables: list[VariableDrift]
    prediction: dict[str, Any] | None
    alert_rate: dict[str, Any] | None
    ood: dict[str, Any] | None
    calibration: dict[str, Any] | None
    findings: list[Finding]
    thresholds: DriftThresholds
    reference: dict[str, Any] = field(default_factory=dict)  # source, model version, data hash

    def finding(self, kind: str, subject: str) -> Finding | None:
        return next((f for f in self.findings if f.kind == kind and f.subject == subject), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hours": self.hours,
            "patients": self.patients,
            "reference": self.reference,
            "ks_method": KS_METHOD,
            "thresholds": asdict(self.thresholds),
            "variables": [asdict(v) | {"measured_ratio": v.measured_ratio} for v in self.variables],
            "prediction": self.prediction,
            "alert_rate": self.alert_rate,
            "ood": self.ood,
            "calibration": self.calibration,
            "findings": [asdict(f) for f in self.findings],
        }


def compare(
    reference: Profile, current: Profile, thresholds: DriftThresholds | None = None
) -> DriftReport:
    """Measure the drift of `current` from `reference` and list what crosses `thresholds`."""
    limits = thresholds or DriftThresholds()
    variables = [
        _variable_drift(v, reference, current, limits)
        for v in MEASURED
        if v in reference.variables and v in current.variables
    ]
    findings = [f for v in variables for f in _variable_findings(v, current.hours, limits)]
    prediction = _prediction(reference, current)
    alert_rate = _rates(reference.alert_rate, current.alert_rate)
    ood = _rates(reference.ood_share, current.ood_share)
    calibration = _calibration(reference, current)
    if current.hours >= limits.min_hours:
        findings += _model_findings(prediction, alert_rate, ood, limits)
    if calibration and calibration["labelled_hours"] >= limits.min_labelled_hours:
        findings += _calibration_findings(calibration, limits)
    lineage = {"source": reference.source, "model_version": reference.model_version,
               "data_hash": reference.data_hash}  # fmt: skip
    return DriftReport(current.hours, current.patients, variables, prediction, alert_rate, ood,
                       calibration, findings, limits, lineage)  # fmt: skip


def _variable_drift(
    name: str, reference: Profile, current: Profile, limits: DriftThresholds
) -> VariableDrift:
    ref, cur = reference.variables[name], current.variables[name]
    judged = min(ref.values.count, cur.values.count) >= limits.min_values
    base = VariableDrift(
        name, ref.measured_share, cur.measured_share,
        measured_psi(ref.measured_share, cur.measured_share),
        ref.values.count, cur.values.count, judged,
    )  # fmt: skip
    if not judged:
        return base
    offset = cur.values.median - ref.values.median  # type: ignore[operator]
    iqr = ref.values.iqr
    confusion = suspected_confusion(name, ref.values, cur.values)
    suspect = None
    if confusion:
        suspect = f"{confusion[0].description} (corrected median {confusion[1]:.3g})"
    return VariableDrift(
        **{**asdict(base), "psi": psi(ref.values.shares, cur.values.shares),
           "ks": ks(ref.values, cur.values), "reference_median": ref.values.median,
           "median": cur.values.median, "median_offset": offset,
           "offset_iqr": offset / iqr if iqr else None, "suspected_unit": suspect},
    )  # fmt: skip


def _unit(name: str) -> str:
    table = variable_table()
    unit = str(table.at[name, "unit"]) if name in table.index else ""
    return {"Cel": "°C", "mm[Hg]": "mmHg", "1": ""}.get(unit, unit)


def _display(name: str) -> str:
    table = variable_table()
    display = str(table.at[name, "display"]) if name in table.index else name
    return display if name in display else f"{display} ({name})"


def _variable_findings(v: VariableDrift, hours: int, limits: DriftThresholds) -> list[Finding]:
    found = []
    if hours >= limits.min_hours and v.measured_psi > limits.measured_psi:
        found.append(_measured_finding(v, limits))
    if v.judged and _values_drifted(v, limits):
        found.append(_values_finding(v, limits))
    return found


def _values_drifted(v: VariableDrift, limits: DriftThresholds) -> bool:
    offset = abs(v.offset_iqr) if v.offset_iqr is not None else 0.0
    return bool(
        v.psi > limits.value_psi  # type: ignore[operator]
        or v.ks > limits.value_ks  # type: ignore[operator]
        or offset > limits.median_offset_iqr
        or v.suspected_unit
    )


def _values_finding(v: VariableDrift, limits: DriftThresholds) -> Finding:
    unit = _unit(v.variable)
    direction = "higher" if (v.median_offset or 0) > 0 else "lower"
    message = (
        f"{_display(v.variable)} reads {abs(v.median_offset or 0):.3g} {unit} {direction} than in "
        f"training (median {v.median:.4g} against {v.reference_median:.4g} {unit}); PSI "
        f"{v.psi:.2f} (limit {limits.value_psi}), KS {v.ks:.2f} (limit {limits.value_ks})."
    )
    if v.suspected_unit:
        message += f" The values look like {v.suspected_unit}."
        recommendation = (
            f"Fix the unit at the source: the interface must send {v.variable} in {unit} or "
            "label it with the unit it is in (a local code map row). Until then the model "
            "reads wrong values; review whether to suspend scoring."
        )
    else:
        recommendation = (
            f"Ask the integration team to compare a sample of raw {v.variable} messages with the "
            "chart (unit, device calibration, a new analyser); then ask the governance "
            "committee to review whether the model's validation still holds here."
        )
    return Finding("input_values", v.variable, float(v.psi or 0.0), limits.value_psi,
                   message, recommendation)  # fmt: skip


def _measured_finding(v: VariableDrift, limits: DriftThresholds) -> Finding:
    more = "more" if v.measured_share > v.reference_measured_share else "less"
    message = (
        f"{_display(v.variable)} is measured {more} often than in training: in "
        f"{v.measured_share:.1%} of patient-hours against {v.reference_measured_share:.1%} "
        f"(measured-share PSI {v.measured_psi:.2f}, limit {limits.measured_psi})."
    )
    recommendation = (
        f"Check that {v.variable} still reaches wardwatch (interface mapping, the quarantine "
        "list) and whether ordering or charting practice changed. The model reads how often a "
        "value is measured, so a change in practice changes its risk: review its performance."
    )
    return Finding("input_measured", v.variable, v.measured_psi, limits.measured_psi,
                   message, recommendation)  # fmt: skip


def _prediction(reference: Profile, current: Profile) -> dict[str, Any] | None:
    if reference.risk is None or current.risk is None or not current.risk.count:
        return None
    return {
        "psi": psi(reference.risk.shares, current.risk.shares),
        "ks": ks(reference.risk, current.risk),
        "reference_median": reference.risk.median,
        "median": current.risk.median,
        "hours": current.risk.count,
    }


def _rates(reference: float | None, current: float | None) -> dict[str, Any] | None:
    if reference is None or current is None:
        return None
    ratio = current / reference if reference > 0 else None
    return {"reference": reference, "current": current, "ratio": ratio}


def _model_findings(
    prediction: dict[str, Any] | None,
    alert_rate: dict[str, Any] | None,
    ood: dict[str, Any] | None,
    limits: DriftThresholds,
) -> list[Finding]:
    found = []
    if prediction and (prediction["psi"] > limits.prediction_psi
                       or prediction["ks"] > limits.prediction_ks):  # fmt: skip
        found.append(_prediction_finding(prediction, limits))
    if alert_rate and _outside(alert_rate["ratio"], limits.alert_rate_ratio):
        found.append(_alert_rate_finding(alert_rate, limits))
    if ood and (ood["ratio"] or 0) > limits.ood_share_ratio:
        found.append(_ood_finding(ood, limits))
    return found


def _outside(ratio: float | None, limit: float) -> bool:
    return ratio is not None and (ratio > limit or ratio < 1 / limit)


def _prediction_finding(prediction: dict[str, Any], limits: DriftThresholds) -> Finding:
    message = (
        f"The model's risk distribution has moved: median risk {prediction['median']:.3g} "
        f"against {prediction['reference_median']:.3g} in training; PSI {prediction['psi']:.2f} "
        f"(limit {limits.prediction_psi}), KS {prediction['ks']:.2f} (limit "
        f"{limits.prediction_ks})."
    )
    recommendation = (
        "Review the input notices raised with it (they usually explain the move); evaluate the "
        "model on recent labelled stays (wardwatch evaluate) before trusting its alerts."
    )
    return Finding("prediction", "risk", prediction["psi"], limits.prediction_psi,
                   message, recommendation)  # fmt: skip


def _alert_rate_finding(rate: dict[str, Any], limits: DriftThresholds) -> Finding:
    message = (
        f"The share of patient-hours at or above the alert threshold is {rate['current']:.1%} "
        f"against {rate['reference']:.1%} in training ({rate['ratio']:.2f} times; limit "
        f"{limits.alert_rate_ratio} times either way)."
    )
    recommendation = (
        "Review the alert burden with the unit leads (more alerts: fatigue; fewer: missed "
        "sepsis) and whether the threshold still fits this population."
    )
    return Finding("alert_rate", "alerts", rate["ratio"], limits.alert_rate_ratio,
                   message, recommendation)  # fmt: skip


def _ood_finding(ood: dict[str, Any], limits: DriftThresholds) -> Finding:
    message = (
        f"{ood['current']:.1%} of patient-hours are flagged out of distribution, against "
        f"{ood['reference']:.1%} in training ({ood['ratio']:.1f} times; limit "
        f"{limits.ood_share_ratio} times): these patients get review flags, not alerts."
    )
    recommendation = (
        "Find which inputs make these patients unusual (the input notices), and review "
        "whether the model suits this population before relying on it."
    )
    return Finding("ood", "ood", ood["ratio"], limits.ood_share_ratio, message, recommendation)


def _calibration(reference: Profile, current: Profile) -> dict[str, Any] | None:
    cur = current.calibration
    if cur is None:
        return None
    ref = reference.calibration
    return {
        "hours": cur.hours,
        "labelled_hours": cur.labelled_hours,
        "mean_risk": cur.mean_risk,
        "observed": cur.observed,
        "observed_to_expected": cur.observed_to_expected,
        "ece": cur.ece,
        "reference_observed_to_expected": ref.observed_to_expected if ref else None,
        "reference_ece": ref.ece if ref else None,
    }


def _calibration_findings(cal: dict[str, Any], limits: DriftThresholds) -> list[Finding]:
    ratio, ref_ratio = cal["observed_to_expected"], cal["reference_observed_to_expected"]
    found = []
    drift = ratio / ref_ratio if ratio and ref_ratio else None
    if drift is not None and _outside(drift, limits.calibration_ratio):
        way = "more" if drift > 1 else "fewer"
        found.append(Finding(
            "calibration", "observed_to_expected", drift, limits.calibration_ratio,
            f"Outcomes no longer match the risk: {cal['observed']:.2%} of hours were labelled "
            f"septic where the model expected {cal['mean_risk']:.2%}, an observed/expected ratio "
            f"of {ratio:.2f} against {ref_ratio:.2f} in training ({drift:.2f} times: {way} "
            f"septic hours than the model predicts; limit {limits.calibration_ratio} times).",
            "Recalibrate the model on local labelled stays and review the thresholds; until "
            "then read the risk as a ranking, not a probability.",
        ))  # fmt: skip
    if cal["reference_ece"] is not None and cal["ece"] - cal["reference_ece"] > limits.ece_increase:
        found.append(Finding(
            "calibration", "ece", cal["ece"], cal["reference_ece"] + limits.ece_increase,
            f"The expected calibration error rose to {cal['ece']:.3f} from "
            f"{cal['reference_ece']:.3f} in training (allowed rise {limits.ece_increase}).",
            "Recalibrate the model on local labelled stays and review the thresholds.",
        ))  # fmt: skip
    return found
