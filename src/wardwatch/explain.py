"""Why a score is what it is, in clinical words: starred measurements, contributions, what-if.

A clinician evaluating an alert asks two questions, and each gets its own method.

**Which measurements drove this score?** Answered the TREWS way, by counterfactual: for each
measured variable, the risk the model gives when that variable's last value is replaced by the
training population's mean (`risk_if_typical`). `risk_change = risk - risk_if_typical` is in
the unit the clinician sees (calibrated risk), includes every interaction the model learned,
and needs no attribution theory. The measurements whose typical value would lower the risk the
most are starred (at most `top`, only those with `risk_change > 0`).

**How does the model weigh every input?** LightGBM's own tree-SHAP (`pred_contrib=True`),
per member and averaged over the bagged members. These are exact additive contributions in the
boosters' raw log-odds space, *before calibration*: they sum, with `baseline_log_odds`, to the
mean of the members' raw log-odds, not to the calibrated risk. They tell the direction and
relative weight of each input, including missingness and trends the counterfactual leaves alone.

Rules, chosen to be simple and honest:

- **One implementation.** A counterfactual edits the *history* (the wide hourly frame) and
  re-runs `build_features`, the same code that scores the patient; derived features (MAP,
  shock index, SOFA parts, deltas, window extremes) follow the edited value by construction.
  All counterfactual copies are stacked (distinct patient ids) into one `build_features` call
  and one `RiskModel.predict` call.
- **Replace the value, only the value.** The variable's last measured value is set to the
  population mean in the row where it was measured; earlier values stay as they were, as do
  the time since measured and the count (the measurement happened; only its result changes).
  So trend features see the edit as a change from the earlier values, exactly as they would if
  that result had really come back typical. `what_if` applies the same edit with the
  clinician's value, so `risk_if_typical` equals `what_if(model, history, {V: typical}).risk_after`.
- **Missing is not normal (design rule 1).** A never-measured variable has nothing to replace:
  it is listed as "not measured", never starred, never imputed. (Its absence can still carry
  a tree-SHAP contribution: the model sees missingness.) `what_if` on a never-measured variable
  adds the value at the current hour.
- **The population mean** is not stored in the artifact; it is read off the OOD reference, whose
  grid for each variable holds 201 evenly spaced quantiles of the training rows' last-known
  values. The mean is the integral of the quantile function, taken by the trapezoidal rule over
  the grid (which gives the extreme quantiles half weight). It is a mean over training
  *patient-hours*, like everything the model learned from.
- **Derived features are attributed** to the measured variables they read, split equally among
  those inputs that have a value at this hour (all inputs, if none has: the contribution is then
  about their absence). MAP_est and the SOFA cardiovascular part read MAP when it is known and
  systolic and diastolic pressure only otherwise, and are attributed accordingly; the partial
  scores (SOFA, SIRS, qSOFA, NEWS2) and their component counts are split over the variables
  of all their components. Demographic inputs (age, sex, ICU length of stay, time since
  hospital admission, unit) are reported apart, as `others` — those the model reads (the
  shipped model reads age, sex and ICU length of stay).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.features import (
    DEMOGRAPHIC_FEATURES,
    PER_VARIABLE_FEATURES,
    FeatureError,
    build_features,
)
from wardwatch.ingest.psv import MEASURED
from wardwatch.model.risk import RiskModel
from wardwatch.terminology import wording

FloatArray = npt.NDArray[np.float64]


class WhatIfError(ValueError):
    """A what-if question the model cannot answer: unknown variable or implausible value."""


# ---------------------------------------------------------------- public values


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measured variable at the explained hour, with what it does to the risk."""

    variable: str  # code, e.g. "Lactate"
    display: str  # clinical name, e.g. "Lactate"
    value: float | None  # last known value; None if never measured
    unit: str  # for humans: "mmol/L", "mm Hg", "°C", "/min", "%", "" for ratios
    measured_hour: int | None
    hours_ago: int | None
    normal: str  # reference range, e.g. "0.5–2"
    typical: float | None  # the training population's mean
    risk_if_typical: float | None  # risk with the last value replaced by `typical`
    risk_change: float | None  # risk - risk_if_typical; positive: this value raises risk
    contribution: float  # tree-SHAP, raw log-odds, summed over the variable's features
    starred: bool
    sentence: str


@dataclass(frozen=True, slots=True)
class Contribution:
    """A non-measurement input (age, sex, length of stay ...) and its tree-SHAP contribution."""

    variable: str  # feature code, e.g. "ICULOS"
    display: str  # e.g. "ICU length of stay"
    value: float | None
    text: str  # the value in words, e.g. "ICU length of stay 49 h"
    contribution: float  # raw log-odds (before calibration)
    sentence: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why the model gave `risk` at `hour`: measurements by importance, other inputs."""

    risk: float
    uncertainty: float
    ood: bool
    hour: int
    measurements: tuple[Measurement, ...]  # largest risk drop when made typical first
    others: tuple[Contribution, ...]  # largest absolute contribution first
    baseline_log_odds: float  # tree-SHAP expected value (mean over members)

    @property
    def starred(self) -> tuple[Measurement, ...]:
        return tuple(m for m in self.measurements if m.starred)


@dataclass(frozen=True, slots=True)
class WhatIf:
    """The answer to "what would the risk be if ... were ...?"."""

    changes: tuple[tuple[str, float], ...]  # (variable code, value)
    risk_before: float
    uncertainty_before: float
    risk_after: float
    uncertainty_after: float
    ood_after: bool
    sentence: str


# ---------------------------------------------------------------- public API


def explain(model: RiskModel, history: pd.DataFrame, top: int = 3) -> Explanation:
    """Explain the risk at the last hour of one stay's history (see the module docstring)."""
    if top < 0:
        raise ValueError(f"top must be 0 or more, not {top}")
    stay = _Stay.of(history)
    typical = typical_values(model)
    candidates = [v for v in MEASURED if stay.last_row(v) is not None and v in typical]
    variants = [stay.values, *(stay.edited({v: typical[v]}) for v in candidates)]
    features = _last_features(stay, variants)
    scores = model.predict(features)
    shap = _tree_shap(model, features.iloc[:1])
    risks = dict(zip(candidates, scores["risk"].to_numpy()[1:], strict=True))
    now = scores.iloc[0]
    per_variable = _attribute(model.feature_names, shap, stay.known())
    measurements = [
        _measurement(stay, v, float(now["risk"]), risks.get(v), typical.get(v), per_variable[v])
        for v in MEASURED
    ]
    return Explanation(
        risk=float(now["risk"]), uncertainty=float(now["uncertainty"]), ood=bool(now["ood"]),
        hour=stay.hour, measurements=_star(_by_importance(measurements), top),
        others=_others(model.feature_names, features.iloc[0], shap),
        baseline_log_odds=float(shap[-1]),
    )  # fmt: skip


def what_if(model: RiskModel, history: pd.DataFrame, changes: Mapping[str, float]) -> WhatIf:
    """The risk if the named variables' latest values were the given ones.

    Variables by code ("Lactate") or display name ("lactate"), case-insensitively; values in
    the variable's canonical unit (variables.csv). A never-measured variable gets the value at
    the current hour. `WhatIfError` for an unknown variable or an implausible value.
    """
    edits = _resolve(changes)
    stay = _Stay.of(history)
    features = _last_features(stay, [stay.values, stay.edited(edits)])
    before, after = (row for _, row in model.predict(features).iterrows())
    return WhatIf(
        changes=tuple(edits.items()),
        risk_before=float(before["risk"]), uncertainty_before=float(before["uncertainty"]),
        risk_after=float(after["risk"]), uncertainty_after=float(after["uncertainty"]),
        ood_after=bool(after["ood"]), sentence=_what_if_sentence(stay, edits, before, after),
    )  # fmt: skip


def typical_values(model: RiskModel) -> dict[str, float]:
    """Training population mean of each measured variable, from the OOD quantile grids.

    The mean is the integral of the quantile function over [0, 1]; the grid's quantiles are
    evenly spaced, so the trapezoidal rule is the mean of neighbouring quantiles' midpoints.
    Variables without a grid (never measured in training) have no typical value.
    """
    grids = dict(zip(model.ood.variables, model.ood.grids_, strict=True))
    out: dict[str, float] = {}
    for v in MEASURED:
        grid = np.asarray(grids.get(v, ()), dtype=np.float64)
        if len(grid) >= 2:
            out[v] = float(((grid[1:] + grid[:-1]) / 2).mean())
    return out


# ---------------------------------------------------------------- the stay and its edits


@dataclass(frozen=True, slots=True)
class _Stay:
    """One stay's history sorted by hour, as arrays; the explained hour is the last row."""

    values: FloatArray  # (n, len(MEASURED)), NaN = not measured that hour
    hours: FloatArray
    demographics: dict[str, FloatArray]

    @classmethod
    def of(cls, history: pd.DataFrame) -> _Stay:
        missing = [c for c in ("patient_id", "hour", *MEASURED) if c not in history.columns]
        if missing:
            raise FeatureError(f"history lacks columns {missing}")
        ids = history["patient_id"].to_numpy()
        if len(ids) == 0 or (ids != ids[0]).any():
            raise FeatureError("explanations take the history of exactly one stay")
        order = np.argsort(history["hour"].to_numpy(dtype=np.float64), kind="stable")
        present = [d for d in DEMOGRAPHIC_FEATURES if d in history.columns]
        return cls(
            values=history[list(MEASURED)].to_numpy(dtype=np.float64)[order],
            hours=history["hour"].to_numpy(dtype=np.float64)[order],
            demographics={d: history[d].to_numpy(dtype=np.float64)[order] for d in present},
        )

    @property
    def hour(self) -> int:
        return int(self.hours[-1])

    def last_row(self, variable: str) -> int | None:
        rows = np.flatnonzero(~np.isnan(self.values[:, MEASURED.index(variable)]))
        return int(rows[-1]) if len(rows) else None

    def known(self) -> frozenset[str]:
        return frozenset(v for v in MEASURED if self.last_row(v) is not None)

    def edited(self, edits: Mapping[str, float]) -> FloatArray:
        """The values with each variable's last measurement (else the last hour) replaced."""
        values = self.values.copy()
        for variable, value in edits.items():
            row = self.last_row(variable)
            values[len(values) - 1 if row is None else row, MEASURED.index(variable)] = value
        return values


def _last_features(stay: _Stay, variants: Sequence[FloatArray]) -> pd.DataFrame:
    """Features at the last hour of each variant of the stay: one build_features call."""
    k, n = len(variants), len(stay.hours)
    stacked = np.vstack(variants)
    columns: dict[str, npt.ArrayLike] = {
        "patient_id": np.repeat(np.arange(k), n), "hour": np.tile(stay.hours, k),
    }  # fmt: skip
    columns |= {v: stacked[:, j] for j, v in enumerate(MEASURED)}
    columns |= {d: np.tile(column, k) for d, column in stay.demographics.items()}
    features = build_features(pd.DataFrame(columns))
    return features.iloc[np.arange(1, k + 1) * n - 1]


# ---------------------------------------------------------------- contributions


def _tree_shap(model: RiskModel, features: pd.DataFrame) -> FloatArray:
    """Tree-SHAP of one row, mean over members: model features then the expected value."""
    x = features.loc[:, list(model.feature_names)].to_numpy(dtype=np.float64)
    # One thread: a single row costs more to split across threads than to compute.
    members = [b.predict(x, pred_contrib=True, num_threads=1)[0] for b in model.boosters]
    return np.mean(members, axis=0)


_MAP = "MAP*"  # MAP if measured, else systolic and diastolic pressure (see _map_est)
_SOFA = ("O2Sat", "FiO2", "Platelets", "Bilirubin_total", _MAP, "Creatinine")
_SIRS = ("Temp", "HR", "Resp", "PaCO2", "WBC")
_QSOFA = ("Resp", "SBP")
_NEWS2 = ("Resp", "O2Sat", "FiO2", "SBP", "HR", "Temp")
DERIVED_INPUTS: dict[str, tuple[str, ...]] = {
    "ShockIndex": ("HR", "SBP"), "MAP_est": (_MAP,), "PulsePressure": ("SBP", "DBP"),
    "SpO2_FiO2": ("O2Sat", "FiO2"), "SaO2_FiO2": ("SaO2", "FiO2"),
    "BUN_Creatinine": ("BUN", "Creatinine"), "SOFA_resp": ("O2Sat", "FiO2"),
    "SOFA_coag": ("Platelets",), "SOFA_liver": ("Bilirubin_total",), "SOFA_cardio": (_MAP,),
    "SOFA_renal": ("Creatinine",), "SOFA_partial": _SOFA, "SOFA_components": _SOFA,
    "SIRS_partial": _SIRS, "SIRS_components": _SIRS,
    "qSOFA_partial": _QSOFA, "qSOFA_components": _QSOFA,
    "NEWS2_partial": _NEWS2, "NEWS2_components": _NEWS2,
}  # fmt: skip
_OWNER = {
    **{v: v for v in MEASURED},
    **{f: v for f in PER_VARIABLE_FEATURES for v in MEASURED if f.startswith(f"{v}_")},
}


def feature_inputs(feature: str, known: frozenset[str]) -> tuple[str, ...]:
    """The measured variables a feature's contribution is attributed to (equal shares).

    () for a demographic input; KeyError for a feature without an attribution rule.
    """
    if feature in _OWNER:
        return (_OWNER[feature],)
    if feature in DEMOGRAPHIC_FEATURES:
        return ()
    pressures = ("MAP",) if "MAP" in known else ("SBP", "DBP")
    inputs = [p for v in DERIVED_INPUTS[feature] for p in (pressures if v == _MAP else (v,))]
    available = tuple(v for v in inputs if v in known)
    return available or tuple(inputs)


def _attribute(names: Sequence[str], shap: FloatArray, known: frozenset[str]) -> dict[str, float]:
    totals = dict.fromkeys(MEASURED, 0.0)
    for name, value in zip(names, shap[:-1], strict=True):
        inputs = feature_inputs(name, known)
        for v in inputs:
            totals[v] += float(value) / len(inputs)
    return totals


# ---------------------------------------------------------------- measurements


def _measurement(
    stay: _Stay, v: str, risk: float, if_typical: float | None, typical: float | None,
    contribution: float,
) -> Measurement:  # fmt: skip
    row = stay.last_row(v)
    value = None if row is None else float(stay.values[row, MEASURED.index(v)])
    measured = None if row is None else int(stay.hours[row])
    change = None if if_typical is None else risk - if_typical
    m = Measurement(
        variable=v, display=wording.display(v), value=value, unit=wording.unit(v),
        measured_hour=measured, hours_ago=None if measured is None else stay.hour - measured,
        normal=wording.normal_range(v),
        typical=typical, risk_if_typical=if_typical, risk_change=change,
        contribution=contribution, starred=False, sentence="",
    )  # fmt: skip
    return replace(m, sentence=_measurement_sentence(m, risk))


def _by_importance(measurements: list[Measurement]) -> list[Measurement]:
    """Largest risk_change first; without a counterfactual (never measured) last, stably."""
    return sorted(measurements, key=lambda m: math.inf if m.risk_change is None else -m.risk_change)


def _star(measurements: list[Measurement], top: int) -> tuple[Measurement, ...]:
    raising = [m for m in measurements if m.risk_change is not None and m.risk_change > 0]
    chosen = {m.variable for m in raising[:top]}
    return tuple(replace(m, starred=m.variable in chosen) for m in measurements)


def _effect(risk_if_typical: float, risk: float) -> str:
    """E.g. "raises risk from 3.1% to 8.4%"; a second decimal when one would hide a change."""
    before, now = wording.percent(risk_if_typical), wording.percent(risk)
    if before == now:
        before, now = wording.percent(risk_if_typical, 2), wording.percent(risk, 2)
    if before == now:
        return f"does not change risk ({wording.percent(risk)})"
    verb = "raises" if risk > risk_if_typical else "lowers"
    return f"{verb} risk from {before} to {now}"


def _measurement_sentence(m: Measurement, risk: float) -> str:
    if m.value is None or m.hours_ago is None:
        return f"{m.display}: not measured (normal {m.normal})"
    value = wording.with_unit(m.value, m.unit)
    head = f"{m.display} {value}, {wording.ago(m.hours_ago)} (normal {m.normal})"
    if m.risk_if_typical is None:
        return f"{head}: no training reference to compare it with"
    return f"{head}: {_effect(m.risk_if_typical, risk)}"


# ---------------------------------------------------------------- other inputs


_OTHER_DISPLAY = {
    "Age": "Age", "Gender": "Sex", "Unit1": "Medical ICU", "Unit2": "Surgical ICU",
    "HospAdmTime": "Time since hospital admission", "ICULOS": "ICU length of stay",
}  # fmt: skip


def _other_text(name: str, value: float) -> str:
    display = _OTHER_DISPLAY[name]
    if math.isnan(value):
        return f"{display}: not recorded"
    if name == "Age":
        return f"Age {wording.number(value)} years"
    if name == "Gender":
        return "Sex: male" if value >= 0.5 else "Sex: female"
    if name in ("Unit1", "Unit2"):
        return f"{display}: {'yes' if value >= 0.5 else 'no'}"
    if name == "HospAdmTime":  # hours from ICU admission back to hospital admission (<= 0)
        return f"Admitted to hospital {wording.number(abs(value))} h before the ICU"
    return f"{display} {wording.number(value)} h"


def _other(name: str, value: float, contribution: float) -> Contribution:
    text = _other_text(name, value)
    direction = "raises" if contribution > 0 else "lowers" if contribution < 0 else "leaves"
    return Contribution(
        variable=name, display=_OTHER_DISPLAY[name],
        value=None if math.isnan(value) else value, text=text, contribution=contribution,
        sentence=f"{text}: {direction} the model's score",
    )  # fmt: skip


def _others(names: Sequence[str], row: pd.Series, shap: FloatArray) -> tuple[Contribution, ...]:
    found = [
        _other(name, float(row[name]), float(shap[k]))
        for k, name in enumerate(names)
        if name in DEMOGRAPHIC_FEATURES
    ]
    return tuple(sorted(found, key=lambda c: -abs(c.contribution)))


# ---------------------------------------------------------------- what-if


@functools.cache
def _names() -> dict[str, str]:
    names = {v.lower(): v for v in MEASURED}
    names |= {wording.display(v).lower(): v for v in MEASURED}
    return names


def _resolve(changes: Mapping[str, float]) -> dict[str, float]:
    if not changes:
        raise WhatIfError("what-if needs at least one change, e.g. {'Lactate': 1.0}")
    names, edits = _names(), {}
    for name, value in changes.items():
        variable = names.get(str(name).strip().lower())
        if variable is None:
            raise WhatIfError(
                f"{name!r} is not a measured variable; use a code or display name, one of: "
                + ", ".join(f"{v} ({wording.display(v)})" for v in MEASURED)
            )
        if variable in edits:
            raise WhatIfError(f"{wording.display(variable)} is changed twice ({name!r})")
        edits[variable] = _plausible(variable, value)
    return edits


def _plausible(variable: str, value: float) -> float:
    low, high = (float(wording.reference(variable)[k]) for k in ("low", "high"))
    unit = wording.unit(variable)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not low <= number <= high:
        raise WhatIfError(
            f"{wording.display(variable)} {value!r} {unit} is not plausible; allowed "
            f"{wording.number(low)}–{wording.number(high)} {unit}".rstrip()
        )
    return number


def _what_if_sentence(stay: _Stay, edits: dict[str, float], before: pd.Series,
                      after: pd.Series) -> str:  # fmt: skip
    parts = []
    for v, value in edits.items():
        row = stay.last_row(v)
        now = (
            "not measured so far" if row is None else
            f"now {wording.with_unit(stay.values[row, MEASURED.index(v)], wording.unit(v))}, "
            f"{wording.ago(stay.hour - int(stay.hours[row]))}"
        )  # fmt: skip
        parts.append(f"{wording.display(v)} were {wording.value_of(v, value)} ({now})")
    sentence = (
        f"If {' and '.join(parts)}, the risk would be {wording.percent(after['risk'])} "
        f"± {100 * after['uncertainty']:.1f}% instead of {wording.percent(before['risk'])}."
    )
    if after["ood"]:
        sentence += " These values are unlike the training population: trust the figure less."
    return sentence


