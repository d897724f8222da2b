"""Organ-dysfunction signs a clinician can verify at the bedside, hour by hour.

TREWS stays quiet until there is something to check: a high risk alone does not alert, a high
risk *and* a measured sign of organ dysfunction does. This module finds those signs in the wide
hourly frame (`patient_id`, `hour`, the `MEASURED` columns, NaN = not measured that hour) for
every row at once, and words them so a clinician can look each one up in the chart.

A sign is present at hour t only when a qualifying **measurement** was taken in the lookback
ending at t: labs in (t - 24 h, t], vitals in (t - 6 h, t] (the same half-open windows as
`features.py`). Nothing is carried forward beyond the lookback (missing is not normal, rule 1)
and nothing after t is read (rule 4). "Any qualifying measurement in the lookback" is the
SEP-1 convention: a lactate of 3.4 at 10:00 is still a sign at 16:00 even if a later lactate
was 1.5 — the sentence names the measurement, so the clinician sees both.

- `lactate_high` (lab): Lactate > 2 mmol/L.
- `hypotension` (vital): SBP < 90 mm Hg, or MAP < 65 mm Hg.
- `creatinine_rise` (lab): KDIGO-style: creatinine at least 0.3 mg/dL above the lowest value
  measured in the previous 48 h ([t - 48 h, t)), or at least 1.5 x the stay's first value.
  KDIGO's baseline is the last 7 days; the stay's first value stands in for it, as a stay
  carries no earlier history. A stay's first value alone is never a rise.
- `platelets_low` (lab): Platelets < 100 x10^3/µL.
- `bilirubin_high` (lab): Total bilirubin > 2 mg/dL.
- `hypoxemia` (vital): *new* hypoxemia: SpO2 < 90 %, or SpO2/FiO2 < 235 (≈ P/F 200; Rice et
  al., Chest 2007), the ratio formed only with a FiO2 in 0.21–1 measured in the 6 h up to the
  SpO2 reading.

"New" hypoxemia: a hypoxemic reading counts only when the stay has already shown a
non-hypoxemic oxygenation reading before it (SpO2 >= 90 % and, when FiO2 is known, S/F >= 235).
A patient admitted hypoxemic and still hypoxemic (chronic lung disease, ARDS on arrival) never
has the sign from it; one who improved and then worsened has it again. A reading with no
recent FiO2 is taken as room air (the usual reason no FiO2 is charted).

Columns of `organ_dysfunction`: one bool per sign (`SIGNS`), `signs` (how many), the hours
`newest_sign_hour` (most recent qualifying measurement among present signs), `newest_lab_hour`
(most recent lab of any kind) and `newest_vital_hour` (most recent of `VITAL_SIGNS`), and per
criterion `<criterion>_value` / `<criterion>_hour` (NaN unless present) that `describe_signs`
turns into sentences. Everything is vectorized over the patient-sorted rows (running maxima of
row indices): all of set A (790k rows) takes 0.5-2 s on 2 shared cores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.ingest.psv import LABS

LAB_LOOKBACK_HOURS = 24
VITAL_LOOKBACK_HOURS = 6
CREATININE_WINDOW_HOURS = 48
CREATININE_RISE = 0.3  # mg/dL within 48 h (KDIGO stage 1)
CREATININE_RATIO = 1.5  # x baseline (KDIGO stage 1)
LACTATE_HIGH = 2.0  # mmol/L
SBP_LOW, MAP_LOW = 90.0, 65.0  # mm Hg
PLATELETS_LOW = 100.0  # x10^3/µL
BILIRUBIN_HIGH = 2.0  # mg/dL
SPO2_LOW = 90.0  # %
SF_LOW = 235.0  # SpO2/FiO2 ≈ PaO2/FiO2 200 (Rice et al., Chest 2007)
FIO2_PLAUSIBLE = (0.21, 1.0)
VITAL_SIGNS = ("HR", "SBP", "MAP", "Resp", "O2Sat", "Temp")
SIGNS = (
    "lactate_high", "hypotension", "creatinine_rise", "platelets_low", "bilirubin_high",
    "hypoxemia",
)  # fmt: skip
_EPS = 1e-9  # 1.2 - 0.9 is 0.29999999999999993 in floating point: a rise of 0.3 all the same
Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Criterion:
    """One kind of qualifying measurement: which sign it supports and how it reads."""

    name: str
    sign: str
    lookback: str  # "lab" or "vital"
    text: str  # sentence template; {value} and {when}, more for the two compound criteria


CRITERIA = (
    Criterion("lactate", "lactate_high", "lab", "Lactate {value} mmol/L (> 2) {when}"),
    Criterion("sbp", "hypotension", "vital", "Systolic BP {value} mm Hg (< 90) {when}"),
    Criterion("map", "hypotension", "vital", "MAP {value} mm Hg (< 65) {when}"),
    Criterion("creatinine", "creatinine_rise", "lab", "Creatinine {value} mg/dL {when}, {rise}"),
    Criterion("platelets", "platelets_low", "lab", "Platelets {value} ×10³/µL (< 100) {when}"),
    Criterion("bilirubin", "bilirubin_high", "lab", "Total bilirubin {value} mg/dL (> 2) {when}"),
    Criterion("spo2", "hypoxemia", "vital", "SpO2 {value} % (< 90) {when}, new in this stay"),
    Criterion("sf", "hypoxemia", "vital",
              "SpO2/FiO2 {value} (< 235; SpO2 {spo2} % on FiO2 {fio2}) {when}, new in this stay"),
)  # fmt: skip
# Extra values a compound criterion's sentence needs, and the criterion they belong to.
EXTRA_COLUMNS = {
    "creatinine_low48": "creatinine", "creatinine_first": "creatinine",
    "sf_spo2": "sf", "sf_fio2": "sf",
}  # fmt: skip


# ---------------------------------------------------------------- public API


def organ_dysfunction(
    wide: pd.DataFrame,
    *,
    lab_lookback_hours: float = LAB_LOOKBACK_HOURS,
    vital_lookback_hours: float = VITAL_LOOKBACK_HOURS,
) -> pd.DataFrame:
    """The signs present at every row of `wide` (same index), from measurements up to that row."""
    rows = _Rows.of(wide)
    lookback = {"lab": lab_lookback_hours, "vital": vital_lookback_hours}
    qualifying = _qualifying(rows)
    out: dict[str, npt.NDArray] = {}
    found: dict[str, npt.NDArray[np.int64]] = {}
    for criterion in CRITERIA:
        mask, value = qualifying[criterion.name]
        found[criterion.name] = _latest(rows, mask, lookback[criterion.lookback])
        out[f"{criterion.name}_value"] = _take(value, found[criterion.name])
        out[f"{criterion.name}_hour"] = _take(rows.hours, found[criterion.name])
    for column, criterion_name in EXTRA_COLUMNS.items():
        out[column] = _take(qualifying[column][1], found[criterion_name])
    return _assemble(rows, out)


def describe_signs(row: Mapping[str, object], when: Formatter | None = None) -> tuple[str, ...]:
    """Sentences a clinician can verify, one per qualifying measurement in `row`.

    `row` is a row of `organ_dysfunction` (a Series or a dict); `when` turns an hour into
    words (default "at hour 14"; the bedside passes clock times).
    """
    say = when or (lambda hour: f"at hour {_number(hour)}")
    sentences = []
    for criterion in CRITERIA:
        hour = _float(row.get(f"{criterion.name}_hour"))
        if not np.isnan(hour):
            sentences.append(_sentence(criterion, row, say(hour)))
    return tuple(sentences)


def vitals_age_hours(features: pd.DataFrame) -> npt.NDArray[np.float64]:
    """Hours since the freshest vital sign (`VITAL_SIGNS`) per row of a features frame; NaN if
    none was ever measured. The scoring service compares it with the policy's staleness limit."""
    ages = features.loc[:, [f"{v}_hours_since" for v in VITAL_SIGNS]].to_numpy(np.float64)
    out = np.full(len(ages), np.nan)
    seen = ~np.isnan(ages).all(axis=1)
    out[seen] = np.nanmin(ages[seen], axis=1)
    return out


# ---------------------------------------------------------------- rows in patient order


@dataclass(frozen=True)
class _Rows:
    """The frame's rows in (patient, hour) order; `order[i]` is sorted row i's position."""

    order: npt.NDArray[np.int64]
    hours: npt.NDArray[np.float64]
    start: npt.NDArray[np.int64]  # per sorted row, the index of its patient's first row
    frame: pd.DataFrame  # the measured columns, sorted
    index: pd.Index

    @classmethod
    def of(cls, wide: pd.DataFrame) -> _Rows:
        hour = "hour" if "hour" in wide.columns else "ICULOS"
        codes = pd.factorize(wide["patient_id"], sort=False)[0]
        hours = wide[hour].to_numpy(np.float64)
        order = np.lexsort((hours, codes))
        first = np.ones(len(order), bool)
        first[1:] = codes[order][1:] != codes[order][:-1]
        start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
        frame = wide.iloc[order].reset_index(drop=True)
        return cls(order, hours[order], start, frame, wide.index)

    def column(self, name: str) -> npt.NDArray[np.float64]:
        if name not in self.frame.columns:
            return np.full(len(self.order), np.nan)
        return self.frame[name].to_numpy(np.float64)

    def last_index(self, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        """Per row, the latest row <= it of the same patient where `mask` holds, or -1."""
        index = np.maximum.accumulate(np.where(mask, np.arange(len(mask)), -1))
        return np.where(index >= self.start, index, -1)


def _latest(rows: _Rows, mask: npt.NDArray[np.bool_], lookback: float) -> npt.NDArray[np.int64]:
    """Per row, the latest qualifying row within the lookback ending at it, or -1."""
    found = rows.last_index(mask)
    age = rows.hours - rows.hours[np.maximum(found, 0)]
    return np.where((found >= 0) & (age < lookback), found, -1)


def _take(values: npt.NDArray[np.float64], found: npt.NDArray[np.int64]) -> npt.NDArray:
    return np.where(found >= 0, values[np.maximum(found, 0)], np.nan)


# ---------------------------------------------------------------- qualifying measurements

Qualifying = dict[str, tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]]


def _below(x: npt.NDArray[np.float64], limit: float) -> npt.NDArray[np.bool_]:
    return ~np.isnan(x) & (np.nan_to_num(x, nan=np.inf) < limit)


def _above(x: npt.NDArray[np.float64], limit: float) -> npt.NDArray[np.bool_]:
    return ~np.isnan(x) & (np.nan_to_num(x, nan=-np.inf) > limit)


def _qualifying(rows: _Rows) -> Qualifying:
    """Per criterion: (row qualifies, value shown); also the `EXTRA_COLUMNS` (mask unused)."""
    lactate, sbp, map_ = rows.column("Lactate"), rows.column("SBP"), rows.column("MAP")
    platelets, bilirubin = rows.column("Platelets"), rows.column("Bilirubin_total")
    out: Qualifying = {
        "lactate": (_above(lactate, LACTATE_HIGH), lactate),
        "sbp": (_below(sbp, SBP_LOW), sbp),
        "map": (_below(map_, MAP_LOW), map_),
        "platelets": (_below(platelets, PLATELETS_LOW), platelets),
        "bilirubin": (_above(bilirubin, BILIRUBIN_HIGH), bilirubin),
    }
    return out | _creatinine(rows) | _hypoxemia(rows)


def _creatinine(rows: _Rows) -> Qualifying:
    """KDIGO-style rises, computed over the creatinine measurements only (they are sparse)."""
    value = rows.column("Creatinine")
    at = np.flatnonzero(~np.isnan(value))
    v, h, patient = value[at], rows.hours[at], rows.start[at]
    low = _previous_minimum(v, h, patient, CREATININE_WINDOW_HOURS)
    first = _first_earlier(v, patient)
    with np.errstate(invalid="ignore"):
        rise = (v - low >= CREATININE_RISE - _EPS) | (v >= CREATININE_RATIO * first - _EPS)
    mask = _spread(at, rise, len(value), False)
    return {"creatinine": (mask, value),
            "creatinine_low48": (mask, _spread(at, low, len(value), np.nan)),
            "creatinine_first": (mask, _spread(at, first, len(value), np.nan))}  # fmt: skip


def _spread(at: npt.NDArray[np.int64], values: npt.NDArray, n: int, fill: object) -> npt.NDArray:
    """`values` (one per position in `at`) placed in an array of length n, `fill` elsewhere."""
    out = np.full(n, fill, dtype=values.dtype)
    out[at] = values
    return out


def _first_earlier(
    v: npt.NDArray[np.float64], patient: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Per measurement, the patient's first measured value (NaN for that first one itself)."""
    first_of_patient = np.ones(len(v), bool)
    first_of_patient[1:] = patient[1:] != patient[:-1]
    first = v[np.maximum.accumulate(np.where(first_of_patient, np.arange(len(v)), 0))]
    return np.where(first_of_patient, np.nan, first)


def _previous_minimum(
    v: npt.NDArray[np.float64],
    h: npt.NDArray[np.float64],
    patient: npt.NDArray[np.int64],
    window: float,
) -> npt.NDArray[np.float64]:
    """Per measurement, the lowest earlier value of the same patient in [h - window, h)."""
    low = np.full(len(v), np.nan)
    for k in range(1, len(v)):
        earlier = slice(0, len(v) - k)
        valid = (patient[k:] == patient[earlier]) & (h[k:] - h[earlier] <= window)
        if not valid.any():
            break
        low[k:] = np.where(valid, np.fmin(low[k:], v[earlier]), low[k:])
    return low


def _hypoxemia(rows: _Rows) -> Qualifying:
    spo2 = rows.column("O2Sat")
    fio2 = rows.column("FiO2")
    plausible = ~np.isnan(fio2) & (fio2 >= FIO2_PLAUSIBLE[0]) & (fio2 <= FIO2_PLAUSIBLE[1])
    recent = _latest(rows, plausible, VITAL_LOOKBACK_HOURS)
    on = np.where(np.isnan(spo2), np.nan, _take(fio2, recent))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = spo2 / on
    low_spo2, low_sf = _below(spo2, SPO2_LOW), _below(ratio, SF_LOW)
    normal = ~np.isnan(spo2) & ~low_spo2 & ~low_sf
    new = _seen_before(rows, normal)
    return {"spo2": (low_spo2 & new, spo2), "sf": (low_sf & new, ratio),
            "sf_spo2": (low_sf & new, spo2), "sf_fio2": (low_sf & new, on)}  # fmt: skip


def _seen_before(rows: _Rows, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Per row, whether `mask` held at an earlier row of the same patient."""
    before = np.full(len(mask), -1)
    before[1:] = rows.last_index(mask)[:-1]
    return before >= rows.start


# ---------------------------------------------------------------- the frame and sentences


def _assemble(rows: _Rows, out: dict[str, npt.NDArray]) -> pd.DataFrame:
    present = {s: np.zeros(len(rows.order), bool) for s in SIGNS}
    newest = np.full(len(rows.order), np.nan)
    for criterion in CRITERIA:
        hour = out[f"{criterion.name}_hour"]
        present[criterion.sign] |= ~np.isnan(hour)
        newest = np.fmax(newest, hour)
    labs = np.column_stack([~np.isnan(rows.column(v)) for v in LABS]).any(axis=1)
    vitals = np.column_stack([~np.isnan(rows.column(v)) for v in VITAL_SIGNS]).any(axis=1)
    columns = {
        **present, "signs": np.sum(list(present.values()), axis=0, dtype=np.int64),
        "newest_sign_hour": newest,
        "newest_lab_hour": _take(rows.hours, rows.last_index(labs)),
        "newest_vital_hour": _take(rows.hours, rows.last_index(vitals)),
        **out,
    }  # fmt: skip
    frame = pd.DataFrame(columns)
    unsorted = np.empty_like(rows.order)
    unsorted[rows.order] = np.arange(len(rows.order))
    return frame.iloc[unsorted].set_axis(rows.index)


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _number(value: float) -> str:
    return f"{value:.4g}"


def _rise(row: Mapping[str, object]) -> str:
    value = _float(row.get("creatinine_value"))
    low, first = _float(row.get("creatinine_low48")), _float(row.get("creatinine_first"))
    if not np.isnan(low) and value - low >= CREATININE_RISE - _EPS:
        return (f"up {_number(value - low)} from {_number(low)}, the lowest in the previous "
                "48 h (KDIGO: a rise of 0.3 or more)")  # fmt: skip
    return (f"{_number(value / first)} × the stay's first value {_number(first)} "
            "(KDIGO: 1.5 × or more)")  # fmt: skip


def _sentence(criterion: Criterion, row: Mapping[str, object], when: str) -> str:
    fields = {"value": _number(_float(row.get(f"{criterion.name}_value"))), "when": when}
    if criterion.name == "creatinine":
        fields["rise"] = _rise(row)
    if criterion.name == "sf":
        fields["value"] = f"{_float(row.get('sf_value')):.0f}"
        fields["spo2"] = _number(_float(row.get("sf_spo2")))
        fields["fio2"] = f"{_float(row.get('sf_fio2')):.2f}"
    return criterion.text.format(**fields)
