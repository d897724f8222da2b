"""Reported items in, LOINC-coded observations in canonical units (or quarantine) out.

``normalize`` works on a whole frame of ``Reported`` rows at once. Python only ever loops over
what is distinct (each (system, code, unit), and for a refused value each (code, text sent));
every row is handled by vectorized numpy and arrow, so a batch of one and a PhysioNet load of
ten million rows take the same path. Plausible
ranges, times and duplicates are not judged here: the quality gate does that with
``variables()``.

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

Speed for small frames (an HL7 message is about five rows and the live feed commits each one,
a thousand a second): pandas costs microseconds per Series, ``where``, ``astype`` or frame, so
the columns are read as the arrays pandas stores, handled as numpy and arrow arrays, and each
output frame is built once, at the end, from its blocks. What a distinct (system, code, unit)
becomes (its ``_Plan``) depends only on that key and the code map, so plans, and the arrays of
each set of keys, are kept across calls, per map. Reason texts are written only for the rows
turned away. ``benchmarks/normalize.py`` measures both ends (one message, ten million rows).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

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

# Every text column leaves as pandas' "str" dtype, whatever dtype it arrived in (an all-None
# column arrives as object), so one row and a million rows come out alike.
_TEXT = pd.Series([], dtype="str").dtype
_TEXT_ARRAY = _TEXT.construct_array_type()
_LARGE = pa.large_string()

Array = Any  # a column's values: numpy array or pandas ExtensionArray


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
    # The reason in words; when the code itself was refused, only what follows the code's
    # name ("code '12345' (Local magnesium)"), which is written per frame (see _Reasons).
    reason: str | None = None
    code_failed: bool = False  # the code itself was refused (then the value does not matter)


def normalize(reported: pd.DataFrame, code_map: LocalCodeMap | None = None) -> Normalized:
    """Normalize a frame with ``REPORTED_COLUMNS`` (see ``wardwatch.domain``).

    ``code_map`` defaults to the example map shipped with wardwatch; a hospital passes its own.
    """
    columns = _columns(reported)
    # "is None", not "or": an empty hospital map is falsy but still means "no local codes".
    rows = _Rows(columns, default_map() if code_map is None else code_map)
    values, comparator = _numbers(columns)
    # The value is judged before the unit: "needs a number" is the reason even when the unit
    # was wrong too.
    no_number = np.isnan(values) & ~rows.planned("code_failed")
    is_model = rows.planned("is_model")
    not_numeric = no_number & is_model
    no_value = no_number & ~is_model
    if no_value.any():
        no_value &= _no_text(columns["value_text"])
    rejected = rows.planned("rejected") | not_numeric | no_value
    converted = values * rows.planned("factor") + rows.planned("offset")
    _fix_fio2(converted, rows.planned("fio2_fraction"))
    observations = _observations(reported.index, columns, rows, ~rejected, converted, comparator)
    reasons = _Reasons(columns, rows, not_numeric, no_value)
    return Normalized(observations, reasons.frame(reported.index, rejected))


def _columns(frame: pd.DataFrame) -> dict[str, Array]:
    """The values of each Reported column, as stored (no Series built: ~10 µs each)."""
    names = frame.columns.tolist()
    position = {name: i for i, name in enumerate(names)}
    missing = [c for c in REPORTED_COLUMNS if c not in position]
    if missing:
        raise ValueError(f"normalize needs the Reported columns; missing {missing}")
    if len(position) != len(names):
        repeated = sorted({c for c in REPORTED_COLUMNS if names.count(c) > 1})
        if repeated:
            raise ValueError(f"normalize needs each Reported column once; repeated {repeated}")
    stored = getattr(frame, "_get_column_array", None)  # pandas' own column accessor
    if stored is None:  # another pandas
        return {c: _unwrapped(frame[c].array) for c in REPORTED_COLUMNS}
    return {c: stored(position[c]) for c in REPORTED_COLUMNS}


def _stored(values: Array) -> Array:
    """What a frame stores for ``values``: objects are read as pandas reads them (datetimes)."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        return _unwrapped(pd.Series(values, copy=False).array)
    return values


def _unwrapped(values: Array) -> Array:
    """A numpy array for numpy-backed columns, as ``_get_column_array`` gives them."""
    return values.to_numpy() if isinstance(values, pd.arrays.NumpyExtensionArray) else values


# --- codes and units: resolved once per distinct key, and kept across calls -----------------


class _Rows:
    """Each row's plan: ``codes`` index ``plans``, one per distinct (system, code, unit)."""

    def __init__(self, columns: dict[str, Array], code_map: LocalCodeMap) -> None:
        codes, values = _factorize([columns["system"], columns["code"], columns["unit"]])
        key, distinct = _factorize_combined(codes, [len(v) for v in values])
        parts = [[v[i] for i in d.tolist()] for v, d in zip(values, distinct, strict=True)]
        self.keys = tuple(zip(*parts, strict=True))
        self.codes = key
        self.table = _plan_table(self.keys, code_map)
        self.plans = self.table.plans
        self._planned: dict[str, np.ndarray] = {}

    def planned(self, field: str) -> np.ndarray:
        """A numeric or boolean field of each row's plan."""
        if field not in self._planned:
            self._planned[field] = self.table.numbers[field][self.codes]
        return self._planned[field]

    def texts(self, positions: np.ndarray | None) -> list[pa.Array]:
        """The loinc, variable and unit of the rows at ``positions`` (None: every row)."""
        codes = pa.array(self.codes if positions is None else self.codes[positions])
        return [_take(texts, codes) for texts in self.table.texts]


_PLAN_TEXTS = ("loinc", "variable", "unit")


class _PlanTable:
    """The plans of one set of distinct keys, field by field, as numpy and arrow arrays."""

    __slots__ = ("numbers", "plans", "texts")

    def __init__(self, plans: list[_Plan]) -> None:
        self.plans = plans
        self.numbers = {
            "factor": np.array([p.factor for p in plans], dtype="float64"),
            "offset": np.array([p.offset for p in plans], dtype="float64"),
            "fio2_fraction": np.array([p.fio2_fraction for p in plans], dtype=bool),
            "code_failed": np.array([p.code_failed for p in plans], dtype=bool),
            "rejected": np.array([p.reason_code is not None for p in plans], dtype=bool),
            "is_model": np.array([p.variable is not None for p in plans], dtype=bool),
        }
        for array in self.numbers.values():
            array.flags.writeable = False  # shared by every call with the same keys
        self.texts = [pa.array([getattr(p, f) for p in plans], _LARGE) for f in _PLAN_TEXTS]


class _PlanCache:
    """One code map's plans by (system, code, unit), and its plan tables by set of keys.

    Least recently used entries go first. A live feed sends the same few codes over and over,
    so a message's keys are usually all known, often as the very same set.
    """

    PLANS = 8192
    TABLES = 1024

    def __init__(self) -> None:
        self.plans: OrderedDict[tuple, _Plan] = OrderedDict()
        self.tables: OrderedDict[tuple, _PlanTable] = OrderedDict()

    def table(self, keys: tuple[tuple, ...], code_map: LocalCodeMap) -> _PlanTable:
        table = self.tables.get(keys)
        if table is None:
            table = _PlanTable([self.plan(key, code_map) for key in keys])
            self._add(self.tables, keys, table, self.TABLES)
        else:
            self.tables.move_to_end(keys)
        return table

    def plan(self, key: tuple, code_map: LocalCodeMap) -> _Plan:
        plan = self.plans.get(key)
        if plan is None:
            plan = _plan(_resolve_code(key[0], key[1], code_map), key[2])
            self._add(self.plans, key, plan, self.PLANS)
        else:
            self.plans.move_to_end(key)
        return plan

    @staticmethod
    def _add(entries: OrderedDict, key: tuple, value: object, size: int) -> None:
        entries[key] = value
        if len(entries) > size:
            entries.popitem(last=False)


# A map is immutable once loaded, and its plans go with it: weak keys, so a new map never
# inherits a dead one's plans through a reused id (and maps compare by identity).
_plan_caches: weakref.WeakKeyDictionary[LocalCodeMap, _PlanCache] = weakref.WeakKeyDictionary()
_plan_lock = threading.Lock()


def _plan_table(keys: tuple[tuple, ...], code_map: LocalCodeMap) -> _PlanTable:
    """The plans of ``keys`` (each a (system, code, unit)) under ``code_map``."""
    with _plan_lock:
        try:
            cache = _plan_caches.get(code_map)
            if cache is None:
                cache = _plan_caches[code_map] = _PlanCache()
        except TypeError:  # a map that cannot be weakly referenced: plans are not kept
            cache = _PlanCache()
        return cache.table(keys, code_map)


def _resolve_code(system: str | None, code: str | None, code_map: LocalCodeMap) -> _Plan:
    """What a (system, code) means; a refusal's reason follows the code's name (_Reasons)."""
    entry = code_map.lookup(system, code)
    if entry is not None and entry.loinc is None:
        held = f"is held back in the local code map ({code_map.source})"
        reason = f" from system {system!r} {held}: {entry.note or 'no reason given'}"
        return _Plan(reason_code="unmapped_code", reason=reason, code_failed=True)
    if entry is not None:
        return _Plan(loinc=entry.loinc, variable=variable_for(entry.loinc), unit=entry.unit)
    if canonical_system(system) == PHYSIONET_SYSTEM:
        return _physionet_column(code)
    if is_loinc_system(system) and isinstance(code, str) and is_valid_loinc(code):
        return _Plan(loinc=code.strip(), variable=variable_for(code.strip()))
    if is_loinc_system(system):
        reason = (
            f" is labelled LOINC (system {system!r}) but is not a LOINC code (bad format "
            f"or check digit); if it is a local code, add it with system {system!r} to the local "
            f"code map ({code_map.source})"
        )
        return _Plan(reason_code="invalid_loinc", reason=reason, code_failed=True)
    reason = (
        f" from system {system!r} is not in the local code map; add a row "
        f"(system, code, loinc) for it to {code_map.source}"
    )
    return _Plan(reason_code="unmapped_code", reason=reason, code_failed=True)


def _physionet_column(code: str | None) -> _Plan:
    """A PhysioNet column name: the model variable itself, in its canonical unit."""
    variable = physionet_columns().get(code.strip()) if isinstance(code, str) else None
    if variable is None:
        reason = " is not a measured PhysioNet 2019 column (see variables.csv)"
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


def _numbers(columns: dict[str, Array]) -> tuple[np.ndarray, Array]:
    """The numeric values, reading numbers that came only as text ("<0.5", "^182")."""
    values = _floats(columns["value"])
    comparator = columns["comparator"]
    missing = np.isnan(values)
    if not missing.any():
        return values, comparator
    from_text = missing & pd.notna(columns["value_text"])
    if not from_text.any():
        return values, comparator
    positions = np.flatnonzero(from_text)
    sent_text = pd.Series(_as_text(columns["value_text"].take(positions)), copy=False)
    parsed = sent_text.str.extract(_NUMBER_TEXT)
    values[positions] = pd.to_numeric(parsed["number"], errors="coerce").to_numpy("float64")
    # A comparator inside the text ("<0.5") counts when the sender gave none separately.
    sent = parsed["comparator"].where(parsed["comparator"] != "=").to_numpy(object)
    known = _as_text(comparator).copy()
    take = pd.isna(known[positions]) & pd.notna(sent)
    known[positions[take]] = sent[take]
    return values, known


def _floats(values: Array, *, copy: bool = True) -> np.ndarray:
    """Float64 (a copy unless ``copy`` is false), missing values as NaN."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values.astype("float64", copy=copy)
    return pd.Series(values, copy=False).to_numpy(dtype="float64", na_value=np.nan, copy=copy)


def _no_text(value_text: Array) -> np.ndarray:
    """No text at all: missing, or empty ("" from an HL7 OBX-5 left blank for a pending result)."""
    text = _arrow_text(value_text)
    blank = pc.equal(pc.utf8_trim_whitespace(text), "")
    return pc.fill_null(blank, True).to_numpy(zero_copy_only=False)


def _sent_text(value_text: Array, positions: np.ndarray) -> pa.Array:
    """The text sent at ``positions``, null where there was none (see _no_text)."""
    text = _arrow_text(_select(value_text, positions))
    return pc.if_else(pc.equal(pc.utf8_trim_whitespace(text), ""), _text_scalar(None), text)


# --- text columns -----------------------------------------------------------------------------


def _as_text(values: Array) -> Array:
    """``values`` as a "str" array (the same array when it already is one)."""
    if _is_text(values):
        return values
    if isinstance(values, np.ndarray) and values.dtype == object:
        try:  # arrow reads None, NaN, pd.NA and text alike, and quicker than pandas does
            return _from_arrow(pa.array(values, _LARGE, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # numbers or other objects among the text: pandas writes them out
    return _TEXT_ARRAY._from_sequence(values, dtype=_TEXT)


def _text_rows(values: Array, positions: np.ndarray | None) -> Array:
    """The rows at ``positions`` (None: all of them) as a "str" array."""
    if not _is_text(values):
        return _as_text(_select(values, positions))
    if positions is None:
        return values  # the bulk path: as it came
    return _from_arrow(_take(values.__arrow_array__(), positions))  # quicker than its take


def _is_text(values: Array) -> bool:
    dtype = values.dtype
    return dtype is _TEXT or (type(values) is _TEXT_ARRAY and dtype == _TEXT)


def _arrow_text(values: Array) -> pa.Array:
    return _large(pa.array(_as_text(values)))


def _large(text: pa.Array) -> pa.Array:
    return text if text.type == _LARGE else pc.cast(text, _LARGE)


def _text_scalar(text: str | None) -> pa.Scalar:
    return pa.scalar(text, _LARGE)


def _from_arrow(text: pa.Array | pa.ChunkedArray) -> Array:
    """Arrow text (large_string) as a "str" array, sharing the arrow data."""
    if _TEXT_FROM_ARROW:  # straight to the constructor: _from_sequence costs 3 µs more
        return _TEXT_ARRAY(text, dtype=_TEXT)
    return _TEXT_ARRAY._from_sequence(text, dtype=_TEXT)


def _wraps_arrow() -> bool:
    try:
        wrapped = _TEXT_ARRAY(pa.array(["a", None], _LARGE), dtype=_TEXT)
    except (TypeError, ValueError):
        return False
    return wrapped.dtype == _TEXT


_TEXT_FROM_ARROW = _wraps_arrow()
_NO_TEXT = pa.array([], _LARGE)
_TO_TEXT = pc.CastOptions.safe(_LARGE)


def _select(values: Array, positions: np.ndarray | None) -> Array:
    """The rows at ``positions`` (None: all of them, not copied)."""
    if positions is None:
        return values
    return values[:0] if len(positions) == 0 else values.take(positions)


# --- building the two frames ------------------------------------------------------------------


def _observations(
    index: pd.Index,
    columns: dict[str, Array],
    rows: _Rows,
    accepted: np.ndarray,
    converted: np.ndarray,
    comparator: Array,
) -> pd.DataFrame:
    # The bulk path (everything accepted) copies no row to filter.
    kept = None if accepted.all() else np.flatnonzero(accepted)
    value_text = _text_rows(columns["value_text"], kept)
    loinc, variable, unit = rows.texts(kept)
    arrays = [  # in the order of NORMALIZED_COLUMNS
        _text_rows(columns["patient_id"], kept),
        _text_rows(columns["encounter_id"], kept),
        _from_arrow(loinc),
        _from_arrow(variable),
        _select(converted, kept),
        _from_arrow(unit),
        _stored(_select(columns["effective_at"], kept)),
        _text_rows(columns["source"], kept),
        _text_rows(columns["source_id"], kept),
        _text_rows(comparator, kept),
        value_text,
        _text_rows(columns["system"], kept),
        _text_rows(columns["code"], kept),
        _raw_values(_select(columns["value"], kept), value_text),
        _text_rows(columns["unit"], kept),
        _text_rows(columns["payload"], kept),
    ]
    return _frame(arrays, index if kept is None else index.take(kept), NORMALIZED_COLUMNS)


def _raw_values(numbers: Array, sent_text: Array) -> Array:
    """The value as sent, as text: the sender's text, or the number written without noise."""
    sent = _arrow_text(sent_text)
    if sent.null_count == 0:
        return _from_arrow(sent)
    # Text per distinct number, not per row (float-to-text is slow and readings repeat), and
    # in arrow, where choosing between two string columns does not copy through Python.
    floats = pa.array(_floats(numbers, copy=False), from_pandas=True)  # NaN: null, no text
    encoded = pc.call_function("dictionary_encode", [floats])
    written = _take(pc.call_function("cast", [encoded.dictionary], _TO_TEXT), encoded.indices)
    if sent.null_count < len(sent):
        written = pc.coalesce(sent, written)
    return _from_arrow(written)


class _Reasons:
    """The reason code and words for each turned-away row."""

    def __init__(
        self,
        columns: dict[str, Array],
        rows: _Rows,
        not_numeric: np.ndarray,
        no_value: np.ndarray,
    ) -> None:
        self.columns = columns
        self.rows = rows
        self.not_numeric = not_numeric
        self.no_value = no_value

    def frame(self, index: pd.Index, rejected: np.ndarray) -> pd.DataFrame:
        positions = np.flatnonzero(rejected)
        if not len(positions):  # the usual case: all columns empty, one array will do
            empty = _from_arrow(_NO_TEXT)
            return _frame(
                [empty] * len(REJECTION_COLUMNS), index.take(positions), REJECTION_COLUMNS
            )
        codes, reasons = self._reasons(positions)
        arrays = [  # in the order of REJECTION_COLUMNS
            _text_rows(self.columns["source"], positions),
            _text_rows(self.columns["source_id"], positions),
            _from_arrow(codes),
            _from_arrow(reasons),
            _text_rows(self.columns["payload"], positions),
            _text_rows(self.columns["patient_id"], positions),
        ]
        return _frame(arrays, index.take(positions), REJECTION_COLUMNS)

    def _reasons(self, positions: np.ndarray) -> tuple[pa.Array, pa.Array]:
        """Reason codes and words: each distinct text written once, then taken per row."""
        rows = self.rows
        plans = rows.codes[positions]
        not_numeric = self.not_numeric[positions]
        no_value = self.no_value[positions]
        # Codes: each plan's own, then the two about the value.
        codes = [p.reason_code for p in rows.plans] + ["not_numeric", "no_value"]
        code_of = plans.copy()
        code_of[not_numeric] = len(rows.plans)
        code_of[no_value] = len(rows.plans) + 1
        # Words: each plan's own, then one per (plan, text sent) for the rows whose code and
        # unit were fine but whose value was not.
        reasons = self._plan_reasons(np.unique(plans))
        reason_of = plans.copy()
        about_value = not_numeric | no_value
        if about_value.any():
            value_of, value_reasons = self._value_reasons(positions[about_value])
            reason_of[about_value] = len(reasons) + value_of
            reasons += value_reasons
        return _taken(codes, code_of), _taken(reasons, reason_of)

    def _plan_reasons(self, used: np.ndarray) -> list[str | None]:
        """The reason of each plan in words (None for plans not in ``used``)."""
        rows = self.rows
        named = self._names(used)
        reasons: list[str | None] = [None] * len(rows.plans)
        for p in used.tolist():
            plan = rows.plans[p]
            if plan.code_failed:
                reasons[p] = f"code {rows.keys[p][1]!r}{named[rows.keys[p][:2]]}{plan.reason}"
            else:
                reasons[p] = plan.reason
        return reasons

    def _names(self, used: np.ndarray) -> dict[tuple, str]:
        """Per refused (system, code): the display sent with it first, as " (display)"."""
        rows = self.rows
        failed = [p for p in used.tolist() if rows.plans[p].code_failed]
        if not failed:
            return {}
        # The first row of a (system, code) is the first row of one of its plans (units).
        first = _first_of_each(rows.codes, len(rows.plans))
        earliest: dict[tuple, int] = {}
        for p, key in enumerate(rows.keys):
            if rows.plans[p].code_failed:
                earliest[key[:2]] = min(earliest.get(key[:2], len(rows.codes)), int(first[p]))
        display = self.columns["display"]
        return {key: _named(_plain(display[row])) for key, row in earliest.items()}

    def _value_reasons(self, positions: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """For the rows at ``positions``: which reason, and the distinct reasons in words."""
        plans = self.rows.plans
        sent = _from_arrow(_sent_text(self.columns["value_text"], positions))
        (texts,), (text_values,) = _factorize([sent])
        reason_of, (plan_of, text_of) = _factorize_combined(
            [self.rows.codes[positions], texts], [len(plans), len(text_values)]
        )
        reasons = [
            _value_reason(plans[p], text_values[t])
            for p, t in zip(plan_of.tolist(), text_of.tolist(), strict=True)
        ]
        return reason_of, reasons


def _value_reason(plan: _Plan, sent: str | None) -> str:
    if plan.variable is None:
        return f"no value was sent for LOINC {plan.loinc}"
    shown = "no value was sent" if sent is None else f"the value sent was '{sent}'"
    return f"{plan.variable} (LOINC {plan.loinc}) needs a number but {shown}"


def _taken(texts: list[str | None], positions: np.ndarray) -> pa.Array:
    """``texts[i]`` for each ``i`` in ``positions``, as arrow text."""
    return _take(pa.array(texts, _LARGE), positions)


def _take(values: pa.Array | pa.ChunkedArray, positions: np.ndarray | pa.Array) -> pa.Array:
    """``values`` at ``positions`` (null where a position is null)."""
    # call_function, not Array.take: the wrapper costs as much as taking a few rows.
    if isinstance(positions, np.ndarray):
        positions = pa.array(positions)
    return pc.call_function("take", [values, positions])


def _frame(arrays: list[Array], index: pd.Index, names: tuple[str, ...]) -> pd.DataFrame:
    """A frame of ``arrays`` (named ``names``, in order) on ``index``, no array copied.

    Every array is already what the frame stores (float64 or datetime numpy arrays, extension
    arrays) and as long as the index, so pandas' checks and inference, most of the cost of a
    small frame, are skipped: each array becomes one block as it is.
    """
    if create_dataframe_from_blocks is None:  # pandas before 3.0
        return pd.DataFrame(dict(zip(names, arrays, strict=True)), index=index, copy=False)
    blocks = [
        (values.reshape(1, -1) if isinstance(values, np.ndarray) else values, _PLACES[i])
        for i, values in enumerate(arrays)
    ]
    return create_dataframe_from_blocks(blocks, index=index, columns=_LABELS[names])


try:
    from pandas.api.internals import create_dataframe_from_blocks
except ImportError:
    create_dataframe_from_blocks = None
_LABELS = {names: pd.Index(names) for names in (NORMALIZED_COLUMNS, REJECTION_COLUMNS)}
_PLACES = [np.array([i]) for i in range(len(NORMALIZED_COLUMNS))]


# --- factorizing -----------------------------------------------------------------------------


def _factorize(columns: list[Array]) -> tuple[list[np.ndarray], list[list]]:
    """Codes of each column's distinct values, and the values; a missing value (None) counts.

    Arrow text columns (the usual kind) are encoded together in one arrow pass and share one
    dictionary; any other column is factorized by pandas.
    """
    texts = [i for i, c in enumerate(columns) if isinstance(c, pd.arrays.ArrowStringArray)]
    codes: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(columns)
    values: list[list] = [[] for _ in columns]
    if texts and len(columns[0]):
        arrays = [_large(pa.array(columns[i])) for i in texts]
        together = pa.chunked_array(arrays, _LARGE)
        encoded = pc.call_function("dictionary_encode", [together], _NULL_IS_A_VALUE).chunks
        # Chunks of the output need not match the columns (empty ones are dropped, say):
        # the codes are read as one run, cut into one piece per column.
        indices = [c.indices.to_numpy(zero_copy_only=False) for c in encoded]
        run = (np.concatenate(indices) if len(indices) > 1 else indices[0]).astype(np.int64)
        dictionary = max((c.dictionary for c in encoded), key=len).to_pylist()
        rows = len(columns[0])
        for k, i in enumerate(texts):
            codes[i], values[i] = run[k * rows : (k + 1) * rows], dictionary
    for i, column in enumerate(columns):
        if i not in texts:
            column_codes, uniques = pd.factorize(column, use_na_sentinel=False)
            codes[i], values[i] = column_codes.astype(np.int64), [_plain(u) for u in uniques]
    return codes, values


_NULL_IS_A_VALUE = pc.DictionaryEncodeOptions(null_encoding="encode")


def _factorize_combined(
    codes: list[np.ndarray], sizes: list[int]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Codes of the distinct rows of several code columns, and each column's code in each.

    ``codes[i]`` holds codes below ``sizes[i]``. The columns are combined into one integer
    (renumbered on the way if that would leave int64) and factorized once.
    """
    combined, renumbered, tail, bound = codes[0], None, [], max(sizes[0], 1)
    for more, size in zip(codes[1:], sizes[1:], strict=True):
        size = max(size, 1)
        if bound * size >= 2**62:
            combined, distinct = _factorize_ints(combined, bound)
            renumbered, tail, bound = _decode(distinct, renumbered, tail), [], len(distinct)
        combined = combined * size + more
        tail.append(size)
        bound *= size
    key, distinct = _factorize_ints(combined, bound)
    return key, _decode(distinct, renumbered, tail)


def _decode(
    values: np.ndarray, renumbered: list[np.ndarray] | None, tail: list[int]
) -> list[np.ndarray]:
    """The column codes in combined ``values``: ``renumbered`` then ``tail`` (see above)."""
    columns = []
    for size in reversed(tail):
        values, rest = np.divmod(values, size)
        columns.append(rest)
    first = [values] if renumbered is None else [column[values] for column in renumbered]
    return first + columns[::-1]


def _factorize_ints(values: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the distinct values (ints from 0 to below ``top``) and the distinct values."""
    if top > 4 * len(values) + 65_536:  # sparse: hash them
        codes, distinct = pd.factorize(values)
        return codes, distinct
    # Dense: a table over 0..top, which is quicker than hashing and no larger than the rows.
    seen = np.zeros(top, dtype=bool)
    seen[values] = True
    distinct = np.flatnonzero(seen)
    lookup = np.empty(top, dtype=np.intp)
    lookup[distinct] = np.arange(len(distinct))
    return lookup[values], distinct


def _plain(value: object) -> object:
    """None for a missing value (None, NaN or pd.NA), as arrow text gives it."""
    missing = value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))
    return None if missing else value


def _first_of_each(codes: np.ndarray, size: int) -> np.ndarray:
    """The first row of each code."""
    first = np.zeros(size, dtype=np.intp)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the earliest row writes last
    return first
