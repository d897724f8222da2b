"""The quality gate: every normalized observation is accepted, or quarantined with a reason.

The gate is pure (no database): the caller says which patients are known and what time it
is, so the same checks run on one HL7 message and on a million PhysioNet rows. Checks are
vectorized over numpy arrays; the reason a person reads is written only for the rows that
fail (usually none), and the first failing check wins.

Out-of-order arrival is not a failure: observations are stored with the time they happened
and read back in that order, so a late result simply lands in its place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from wardwatch.domain import REJECTION_COLUMNS
from wardwatch.terminology import variables


@dataclass(frozen=True, slots=True)
class GateContext:
    known_patients: set[str]
    now: datetime
    future_tolerance: timedelta = timedelta(minutes=5)
    oldest: datetime = datetime(1990, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class GateResult:
    accepted: pd.DataFrame
    rejections: pd.DataFrame
    kept: np.ndarray  # one boolean per row of the gated frame: accepted


@dataclass(frozen=True, slots=True)
class GateRows:
    """The columns the checks read, as numpy arrays (pandas per-call overhead would dominate
    a five-result HL7 message).

    `of` reads them from a normalized frame; bulk ingest does that in its worker processes,
    so the process that gates and writes only compares.
    """

    at: np.ndarray  # datetime64[ns] UTC; NaT when no time was sent
    patient: np.ndarray  # each row's index into `patients`; -1 when there is none
    patients: list[str]  # the distinct patient ids
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> GateRows:
        at = np.asarray(frame["effective_at"].array.tz_convert(None), dtype="datetime64[ns]")
        patient, patients = pd.factorize(frame["patient_id"])
        low, high = _ranges(frame["variable"])
        value = frame["value"].to_numpy(dtype="float64")
        return cls(at, patient, list(patients), value, low, high)


@functools.cache
def _range_table() -> dict[str, tuple[float, float]]:
    table = variables()
    return {name: (float(low), float(high)) for name, low, high in
            zip(table.index, table["low"], table["high"], strict=True)}  # fmt: skip


def _ranges(variable: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, names = pd.factorize(variable)
    table = _range_table()
    bounds = np.array([table.get(n, (np.nan, np.nan)) for n in names] + [(np.nan, np.nan)])
    return bounds[codes, 0], bounds[codes, 1]  # code -1 (no variable) picks the last: NaN


def _known(rows: GateRows, known: set[str]) -> np.ndarray:
    found = np.array([name in known for name in rows.patients] + [False], dtype=bool)
    return found[rows.patient]  # index -1 (no patient) picks the last: unknown


def _naive(moment: datetime) -> np.datetime64:
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "ns")


CHECKS: tuple[tuple[str, Callable[[GateRows, GateContext], np.ndarray]], ...] = (
    ("missing_time", lambda r, _c: np.isnat(r.at)),
    ("future_time", lambda r, c: r.at > _naive(c.now + c.future_tolerance)),
    ("too_old", lambda r, c: r.at < _naive(c.oldest)),
    ("unknown_patient", lambda r, c: ~_known(r, c.known_patients)),
    ("implausible", lambda r, _c: (r.value < r.low) | (r.value > r.high)),
)


def _reason(code: str, row: pd.Series, ctx: GateContext) -> str:
    """What was wrong and what to do, for one rejected row."""
    at = row["effective_at"]
    if code == "missing_time":
        return ("no time of measurement was sent (OBX-14 / OBR-7 / effective[x]); a "
                "measurement without a time cannot be placed in the patient's history")  # fmt: skip
    if code == "future_time":
        return (f"measured at {at}, which is in the future (now {ctx.now:%Y-%m-%d %H:%M} UTC); "
                "check the sender's clock and time zone")  # fmt: skip
    if code == "too_old":
        return (
            f"measured at {at}, before {ctx.oldest:%Y-%m-%d}: almost certainly a date-entry error"
        )
    if code == "unknown_patient":
        return (f"patient '{row['patient_id']}' is not known; send the Patient (FHIR) or a PID "
                "segment (HL7) first, then resend this observation")  # fmt: skip
    return _implausible_reason(row)


def _implausible_reason(row: pd.Series) -> str:
    table = variables()
    variable, value = row["variable"], row["value"]
    low, high = table.at[variable, "low"], table.at[variable, "high"]
    text = (f"{table.at[variable, 'display']} {value} {row['unit']} is outside the plausible "
            f"range {low}–{high}: a device, entry or unit error")  # fmt: skip
    if variable == "Temp" and 80 <= value <= 115:
        text += " (it looks like °F sent as °C)"
    return text


def _payload(row: pd.Series) -> str:
    sent = row.get("payload")
    if isinstance(sent, str) and sent:
        return sent
    return (f"{row['source_id']}: {row['loinc']} = {row['value']} {row['unit']} "
            f"at {row['effective_at']}")  # fmt: skip


def _rejections(bad: pd.DataFrame, codes: np.ndarray, ctx: GateContext) -> pd.DataFrame:
    rows = [
        {
            "source": row["source"],
            "source_id": row["source_id"],
            "reason_code": code,
            "reason": _reason(code, row, ctx),
            "payload": _payload(row),
            "patient_id": row["patient_id"],
        }
        for code, (_, row) in zip(codes, bad.iterrows(), strict=True)
    ]
    return pd.DataFrame(rows, columns=list(REJECTION_COLUMNS), index=bad.index)


def gate(frame: pd.DataFrame, ctx: GateContext, rows: GateRows | None = None) -> GateResult:
    """Split normalized observations into accepted and quarantined (with reasons).

    `rows` are `GateRows.of(frame)` when the caller has them already.
    """
    rows = GateRows.of(frame) if rows is None else rows
    codes = np.full(len(frame), None, dtype=object)
    for code, check in CHECKS:
        codes[check(rows, ctx) & (codes == None)] = code  # noqa: E711 - elementwise test
    rejected = codes != None  # noqa: E711 - elementwise test
    if not rejected.any():
        return GateResult(frame, pd.DataFrame(columns=list(REJECTION_COLUMNS)), ~rejected)
    rejections = _rejections(frame.loc[rejected], codes[rejected], ctx)
    return GateResult(frame.loc[~rejected], rejections, ~rejected)


def blank_implausible(wide: pd.DataFrame) -> pd.DataFrame:
    """A wide hourly frame with the values the gate would quarantine as implausible blanked.

    Offline readers (prediction files, evaluation, training) use it so that they see what the
    live store holds — one definition of "plausible", the gate's — and a replay through the
    store reproduces their scores exactly.
    """
    table = _range_table()
    present = [name for name in table if name in wide.columns]
    values = wide.loc[:, present].to_numpy(dtype="float64")
    low, high = (np.array([table[n][i] for n in present]) for i in (0, 1))
    bad = (values < low) | (values > high)
    if not bad.any():
        return wide
    out = wide.copy()
    out.loc[:, present] = np.where(bad, np.nan, values)
    return out
