"""Reported items in, LOINC-coded observations in canonical units (or quarantine) out.

``normalize`` works on a whole frame of ``Reported`` rows at once. Python only ever loops over
what is distinct (each (system, code), each (code, unit) pair); every row is handled by
vectorized pandas/numpy, so a batch of one and a PhysioNet load of ten million rows take the
same path. Plausible ranges, times and duplicates are not judged here: the quality gate does
that with ``variables()``.

Rules, in order, the first failure deciding the reason:

1. code: a code under a LOINC system ("http://loinc.org", "LN", "LOINC") is LOINC only if
   its check digit is right; anything else is looked up in the local code map by (system,
   code), and a local map entry wins even over a real LOINC code. Failures: ``invalid_loinc``
   (labelled LOINC but is not), ``unmapped_code`` (no local map entry, or one held back).
   PhysioNet files travel under the system "physionet2019" with the column name as code and
   no unit: the column is the model variable, in its canonical unit.
2. value: model variables need a number (``not_numeric``); other codes may keep a text-only
   value, but need some value (``no_value``).
3. unit: model variables are converted to their canonical unit (``unknown_unit``,
   ``unit_mismatch``, ``missing_unit``); other codes keep their unit, spelled in UCUM when
   wardwatch can read it. A missing unit is taken from the local map entry when it has one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from wardwatch.domain import OBSERVATION_COLUMNS, REJECTION_COLUMNS, REPORTED_COLUMNS
from wardwatch.terminology.localcodes import LocalCodeMap, default_map
from wardwatch.terminology.loinc import (
    canonical_system,
    is_loinc_system,
    is_valid_loinc,
    variable_for,
)
from wardwatch.terminology.units import UnitError, canonical_unit_string, conversion
from wardwatch.terminology.variables import PHYSIONET_SYSTEM, physionet_columns, variables

EXTRA_COLUMNS: tuple[str, ...] = (
    "value_text",
    "raw_system",
    "raw_code",
    "raw_value",
    "raw_unit",
    "payload",
)
NORMALIZED_COLUMNS: tuple[str, ...] = OBSERVATION_COLUMNS + EXTRA_COLUMNS

# A number sent as text, with an optional comparator ("<0.5", ">= 7", and HL7 SN "^182").
_NUMBER_TEXT = re.compile(
    r"^\s*(?P<comparator><=|>=|<|>|=)?\s*\^?\s*(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True, slots=True)
class Normalized:
    """The accepted rows as observations and the turned-away rows as rejections.

    Both keep the input frame's index, so every input row is in exactly one of them.
    ``observations`` has ``NORMALIZED_COLUMNS``: the ``Observation`` fields plus what was sent
    (``value_text``, ``raw_system``, ``raw_code``, ``raw_value``, ``raw_unit``, ``payload``).
    ``rejections`` has the ``Rejection`` fields.
    """

    observations: pd.DataFrame
    rejections: pd.DataFrame


@dataclass(frozen=True, slots=True)
class _Plan:
    """What happens to every row of one distinct (system, code, unit)."""

    loinc: str | None = None
    variable: str | None = None
    unit: str | None = None
    factor: float = 1.0
    offset: float = 0.0
    fio2_fraction: bool = False  # FiO2 sent as a fraction (or unitless): see _fix_fio2
    reason_code: str | None = None
    reason: str | None = None
    code_failed: bool = False  # the code itself was refused (then the value does not matter)


def normalize(reported: pd.DataFrame, code_map: LocalCodeMap | None = None) -> Normalized:
    """Normalize a frame with ``REPORTED_COLUMNS`` (see ``wardwatch.domain``).

    ``code_map`` defaults to the example map shipped with wardwatch; a hospital passes its own.
    """
    missing = [c for c in REPORTED_COLUMNS if c not in reported.columns]
    if missing:
        raise ValueError(f"normalize needs the Reported columns; missing {missing}")
    # "is None", not "or": an empty hospital map is falsy but still means "no local codes".
    plan_codes, plans = _plan_rows(reported, default_map() if code_map is None else code_map)
    values, comparator = _numbers(reported)
    # An empty text ("" from an HL7 OBX-5 left blank for a pending result) is no value at all.
    text = reported["value_text"].where(reported["value_text"].astype(str).str.strip() != "")
    planned = _plan_arrays(plans)
    reason_code = planned["reason_code"].take(plan_codes)
    # The value is judged before the unit: "needs a number" is the reason even when the unit
    # was wrong too.
    no_number = np.isnan(values) & ~planned["code_failed"][plan_codes]
    not_numeric = no_number & planned["is_model"][plan_codes]
    no_value = no_number & ~planned["is_model"][plan_codes] & text.isna().to_numpy()
    rejected = planned["rejected"][plan_codes] | not_numeric | no_value
    converted = values * planned["factor"][plan_codes] + planned["offset"][plan_codes]
    _fix_fio2(converted, planned["fio2_fraction"][plan_codes])
    observations = _observations(reported, ~rejected, plan_codes, planned, converted, comparator)
    reasons = _Reasons(reason_code, not_numeric, no_value, plan_codes, planned, text)
    return Normalized(observations, reasons.frame(reported, rejected))


# --- codes and units: resolved once per distinct value -------------------------------------------


def _plan_rows(frame: pd.DataFrame, code_map: LocalCodeMap) -> tuple[np.ndarray, list[_Plan]]:
    """Each row's index into the list of plans, one plan per distinct (system, code, unit)."""
    key_codes, keys = _factorize(frame["system"], frame["code"])
    displays = _first_of_each(frame["display"], key_codes, len(keys))
    resolved = [_resolve_code(s, c, d, code_map) for (s, c), d in zip(keys, displays, strict=True)]
    unit_codes, units = _factorize(frame["unit"])
    pair_codes, pairs = _factorize_codes(key_codes, len(keys), unit_codes, len(units))
    plans = [_plan(resolved[k], units[u][0]) for k, u in pairs]
    return pair_codes, plans


def _resolve_code(
    system: str | None, code: str | None, display: str | None, code_map: LocalCodeMap
) -> _Plan:
    entry = code_map.lookup(system, code)
    named = f"code {code!r}{_named(display)}"
    if entry is not None and entry.loinc is None:
        held = f"is held back in the local code map ({code_map.source})"
        reason = f"{named} from system {system!r} {held}: {entry.note or 'no reason given'}"
        return _Plan(reason_code="unmapped_code", reason=reason, code_failed=True)
    if entry is not None:
        return _Plan(loinc=entry.loinc, variable=variable_for(entry.loinc), unit=entry.unit)
    if canonical_system(system) == PHYSIONET_SYSTEM:
        return _physionet_column(code, named)
    if is_loinc_system(system) and isinstance(code, str) and is_valid_loinc(code):
        return _Plan(loinc=code.strip(), variable=variable_for(code.strip()))
    if is_loinc_system(system):
        reason = (
            f"{named} is labelled LOINC (system {system!r}) but is not a LOINC code (bad format "
            f"or check digit); if it is a local code, add it with system {system!r} to the local "
            f"code map ({code_map.source})"
        )
        return _Plan(reason_code="invalid_loinc", reason=reason, code_failed=True)
    reason = (
        f"{named} from system {system!r} is not in the local code map; add a row "
        f"(system, code, loinc) for it to {code_map.source}"
    )
    return _Plan(reason_code="unmapped_code", reason=reason, code_failed=True)


def _physionet_column(code: str | None, named: str) -> _Plan:
    """A PhysioNet column name: the model variable itself, in its canonical unit."""
    variable = physionet_columns().get(code.strip()) if isinstance(code, str) else None
    if variable is None:
        reason = f"{named} is not a measured PhysioNet 2019 column (see variables.csv)"
        return _Plan(reason_code="unmapped_code", reason=reason, code_failed=True)
    table = variables()
    return _Plan(str(table.at[variable, "loinc"]), variable, str(table.at[variable, "unit"]))


def _named(display: str | None) -> str:
    return f" ({display})" if isinstance(display, str) and display.strip() else ""


def _plan(code: _Plan, sent_unit: str | None) -> _Plan:
    """The plan for one code with one unit as sent (``code.unit`` is the map's default)."""
    if code.reason_code is not None:
        return code
    unit = sent_unit if isinstance(sent_unit, str) and sent_unit.strip() else code.unit
    if code.variable is None:
        return _Plan(loinc=code.loinc, unit=canonical_unit_string(unit))
    try:
        found = conversion(code.variable, unit)
    except UnitError as error:
        reason = f"{error} (LOINC {code.loinc})"
        return _Plan(code.loinc, code.variable, reason_code=error.reason_code, reason=reason)
    # FiO2 in "1", "L/L" or without a unit has factor 1; "%" has 0.01.
    fraction = code.variable == "FiO2" and found.factor == 1.0
    return _Plan(code.loinc, code.variable, found.unit, found.factor, found.offset, fraction)


def _fix_fio2(fio2: np.ndarray, sent_as_fraction: np.ndarray) -> None:
    """FiO2 above 1 sent as a fraction is a percentage with the wrong unit: divide by 100.

    A fraction cannot exceed 1 (pure oxygen), so 40 with unit "1" can only mean 40 %. Values
    from 1 to 21 become 0.01-0.21, below room air, and the quality gate's plausible range
    quarantines them: they are usually oxygen flows in L/min charted as FiO2 (PhysioNet set A
    holds 7 and 10 of those). Exactly 1 stays 1: 100 % oxygen.
    """
    percent = sent_as_fraction & (fio2 > 1.0)
    fio2[percent] /= 100.0


# --- values -----------------------------------------------------------------------------------


def _numbers(frame: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
    """The numeric values, reading numbers that came only as text ("<0.5", "^182")."""
    values = frame["value"].to_numpy(dtype="float64", na_value=np.nan, copy=True)
    comparator = frame["comparator"]
    from_text = np.isnan(values) & frame["value_text"].notna().to_numpy()
    if not from_text.any():
        return values, comparator
    positions = np.flatnonzero(from_text)
    parsed = frame["value_text"].iloc[positions].astype("str").str.extract(_NUMBER_TEXT)
    values[positions] = pd.to_numeric(parsed["number"], errors="coerce").to_numpy("float64")
    # A comparator inside the text ("<0.5") counts when the sender gave none separately.
    sent = parsed["comparator"].where(parsed["comparator"] != "=").to_numpy(object)
    known = comparator.astype("str").array.copy()
    take = pd.isna(known[positions]) & pd.notna(sent)
    known[positions[take]] = sent[take]
    return values, pd.Series(known, index=frame.index, name="comparator")


# --- building the two frames ------------------------------------------------------------------


def _plan_arrays(plans: list[_Plan]) -> dict[str, np.ndarray | pd.api.extensions.ExtensionArray]:
    def strings(field: str) -> pd.api.extensions.ExtensionArray:
        return pd.array([getattr(p, field) for p in plans], dtype="str")

    return {
        "loinc": strings("loinc"),
        "variable": strings("variable"),
        "unit": strings("unit"),
        "reason_code": strings("reason_code"),
        "reason": strings("reason"),
        "factor": np.array([p.factor for p in plans], dtype="float64"),
        "offset": np.array([p.offset for p in plans], dtype="float64"),
        "fio2_fraction": np.array([p.fio2_fraction for p in plans], dtype=bool),
        "rejected": np.array([p.reason_code is not None for p in plans], dtype=bool),
        "code_failed": np.array([p.code_failed for p in plans], dtype=bool),
        "is_model": np.array([p.variable is not None for p in plans], dtype=bool),
    }


def _observations(
    frame: pd.DataFrame,
    accepted: np.ndarray,
    plan_codes: np.ndarray,
    planned: dict,
    converted: np.ndarray,
    comparator: pd.Series,
) -> pd.DataFrame:
    everything = bool(accepted.all())  # the bulk path: no row copied to filter
    rows = frame if everything else frame[accepted]
    codes = plan_codes if everything else plan_codes[accepted]

    def planned_column(name: str) -> pd.Series:
        return pd.Series(planned[name].take(codes), index=rows.index, name=name)

    columns = {
        "patient_id": rows["patient_id"],
        "encounter_id": rows["encounter_id"],
        "loinc": planned_column("loinc"),
        "variable": planned_column("variable"),
        "value": pd.Series(converted if everything else converted[accepted], index=rows.index),
        "unit": planned_column("unit"),
        "effective_at": rows["effective_at"],
        "source": rows["source"],
        "source_id": rows["source_id"],
        "comparator": comparator if everything else comparator[accepted],
        "value_text": rows["value_text"],
        "raw_system": rows["system"],
        "raw_code": rows["code"],
        "raw_value": _raw_values(rows),
        "raw_unit": rows["unit"],
        "payload": rows["payload"],
    }
    return _frame(columns, rows.index, NORMALIZED_COLUMNS)


def _raw_values(rows: pd.DataFrame) -> pd.Series:
    """The value as sent, as text: the sender's text, or the number written without noise."""
    numbers = rows["value"].to_numpy(dtype="float64", na_value=np.nan)
    # Text per distinct number, not per row (float-to-text is slow and readings repeat), and
    # in arrow, where choosing between two string columns does not copy through Python.
    codes, distinct = pd.factorize(numbers)
    spelled = pc.cast(pa.array(distinct, type=pa.float64()), pa.large_string())
    written = pc.take(spelled, pa.array(codes, mask=codes < 0))
    sent = pa.array(rows["value_text"].astype("str").array)
    if sent.null_count < len(sent):
        written = pc.coalesce(sent.cast(pa.large_string()), written)
    return pd.Series(pd.array(written, dtype="str"), index=rows.index)


class _Reasons:
    """The reason code and words for each turned-away row."""

    def __init__(
        self,
        reason_code: pd.api.extensions.ExtensionArray,
        not_numeric: np.ndarray,
        no_value: np.ndarray,
        plan_codes: np.ndarray,
        planned: dict,
        text: pd.Series,
    ) -> None:
        self.reason_code = reason_code
        self.not_numeric = not_numeric
        self.no_value = no_value
        self.plan_codes = plan_codes
        self.planned = planned
        self.text = text

    def frame(self, reported: pd.DataFrame, rejected: np.ndarray) -> pd.DataFrame:
        rows = reported[["source", "source_id", "payload", "patient_id"]][rejected]
        codes = self.reason_code[rejected]
        reasons = self.planned["reason"].take(self.plan_codes[rejected])
        about_value = (self.not_numeric | self.no_value)[rejected]
        if about_value.any():  # rows whose code and unit were fine but whose value was not
            codes = np.asarray(codes, dtype=object)
            codes[self.not_numeric[rejected]] = "not_numeric"
            codes[self.no_value[rejected]] = "no_value"
            reasons = np.asarray(reasons, dtype=object)
            reasons[about_value] = self._value_reasons(np.flatnonzero(rejected)[about_value])
        columns = {
            "source": rows["source"],
            "source_id": rows["source_id"],
            "reason_code": pd.Series(pd.array(codes, dtype="str")),
            "reason": pd.Series(pd.array(reasons, dtype="str")),
            "payload": rows["payload"],
            "patient_id": rows["patient_id"],
        }
        return _frame(columns, rows.index, REJECTION_COLUMNS)

    def _value_reasons(self, positions: np.ndarray) -> np.ndarray:
        codes = self.plan_codes[positions]
        variable = pd.Series(self.planned["variable"].take(codes), dtype="str")
        loinc = pd.Series(self.planned["loinc"].take(codes), dtype="str")
        sent = pd.Series(self.text.iloc[positions].to_numpy(dtype=object), dtype="str")
        shown = ("the value sent was '" + sent + "'").fillna("no value was sent")
        needs_number = variable + " (LOINC " + loinc + ") needs a number but " + shown
        nothing = "no value was sent for LOINC " + loinc
        return needs_number.where(variable.notna(), nothing).to_numpy(dtype=object)


_NOT_TEXT = frozenset({"value", "effective_at"})


def _frame(columns: dict[str, pd.Series], index: pd.Index, order: tuple[str, ...]) -> pd.DataFrame:
    # Arrays, not Series: no alignment on the index (which may repeat labels) and no copies.
    # Text columns are always the "str" dtype, whatever dtype the input happened to have (an
    # all-None column arrives as object), so one row and a million rows come out alike.
    arrays = {
        name: columns[name].array if name in _NOT_TEXT else columns[name].astype("str").array
        for name in order
    }
    return pd.DataFrame(arrays, index=index, copy=False)


# --- factorizing several columns at once ---------------------------------------------------------


def _factorize(*columns: pd.Series) -> tuple[np.ndarray, list[tuple]]:
    """Codes of the distinct combinations of ``columns``; missing values (None) count as values."""
    codes, uniques = pd.factorize(columns[0], use_na_sentinel=False)
    distinct = [(_plain(u),) for u in uniques]
    for column in columns[1:]:
        more_codes, more = pd.factorize(column, use_na_sentinel=False)
        codes, pairs = _factorize_codes(codes, len(distinct), more_codes, len(more))
        distinct = [(*distinct[a], _plain(more[b])) for a, b in pairs]
    return codes, distinct


def _factorize_codes(
    a: np.ndarray, a_size: int, b: np.ndarray, b_size: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    combined = a.astype("int64") * max(b_size, 1) + b
    codes, uniques = pd.factorize(combined)
    return codes, [(int(u) // max(b_size, 1), int(u) % max(b_size, 1)) for u in uniques]


def _plain(value: object) -> object:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def _first_of_each(column: pd.Series, codes: np.ndarray, size: int) -> list:
    """The value of ``column`` at the first row of each code (for naming a code in a reason)."""
    first = np.zeros(size, dtype=np.intp)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the earliest row writes last
    return [_plain(v) for v in column.iloc[first]]
