"""The quality gate: every normalized observation is accepted, or quarantined with a reason.

The gate is pure (no database): the caller says which patients are known and what time it
is, so the same checks run on one HL7 message and on a million PhysioNet rows. Checks are
vectorized; each produces a reason a person can act on, and the first failing check wins.

Out-of-order arrival is not a failure: observations are stored with the time they happened
and read back in that order, so a late result simply lands in its place.
"""

from __future__ import annotations

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


Check = Callable[[pd.DataFrame, GateContext], tuple[pd.Series, pd.Series]]


def _no_reason(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(None, index=frame.index, dtype=object)


def _missing_time(frame: pd.DataFrame, _ctx: GateContext) -> tuple[pd.Series, pd.Series]:
    failed = frame["effective_at"].isna()
    reason = _no_reason(frame).mask(
        failed, "no time of measurement was sent (OBX-14 / OBR-7 / effective[x]); "
        "a measurement without a time cannot be placed in the patient's history",
    )  # fmt: skip
    return failed, reason


def _future_time(frame: pd.DataFrame, ctx: GateContext) -> tuple[pd.Series, pd.Series]:
    limit = pd.Timestamp(ctx.now + ctx.future_tolerance)
    failed = frame["effective_at"] > limit
    text = "measured at " + frame["effective_at"].astype(str) + ", which is in the future "
    text = text + f"(now {ctx.now:%Y-%m-%d %H:%M} UTC); check the sender's clock and time zone"
    return failed, _no_reason(frame).mask(failed, text)


def _too_old(frame: pd.DataFrame, ctx: GateContext) -> tuple[pd.Series, pd.Series]:
    failed = frame["effective_at"] < pd.Timestamp(ctx.oldest)
    text = "measured at " + frame["effective_at"].astype(str)
    text = text + f", before {ctx.oldest:%Y-%m-%d}: almost certainly a date-entry error"
    return failed, _no_reason(frame).mask(failed, text)


def _unknown_patient(frame: pd.DataFrame, ctx: GateContext) -> tuple[pd.Series, pd.Series]:
    failed = ~frame["patient_id"].isin(ctx.known_patients)
    text = "patient '" + frame["patient_id"].astype(str) + "' is not known; send the Patient "
    text = text + "(FHIR) or a PID segment (HL7) first, then resend this observation"
    return failed, _no_reason(frame).mask(failed, text)


def _implausible(frame: pd.DataFrame, _ctx: GateContext) -> tuple[pd.Series, pd.Series]:
    table = variables()
    low = frame["variable"].map(table["low"]).astype("float64")
    high = frame["variable"].map(table["high"]).astype("float64")
    value = frame["value"]
    failed = (value < low) | (value > high)
    text = (
        frame["variable"].map(table["display"]).astype(str) + " " + value.astype(str) + " "
        + frame["unit"].astype(str) + " is outside the plausible range " + low.astype(str)
        + "–" + high.astype(str) + ": a device, entry or unit error"
    )  # fmt: skip
    text = text.mask(failed & (frame["variable"] == "Temp") & value.between(80, 115),
                     text + " (it looks like °F sent as °C)")  # fmt: skip
    return failed, _no_reason(frame).mask(failed, text)


CHECKS: tuple[tuple[str, Check], ...] = (
    ("missing_time", _missing_time),
    ("future_time", _future_time),
    ("too_old", _too_old),
    ("unknown_patient", _unknown_patient),
    ("implausible", _implausible),
)


def _payload(frame: pd.DataFrame) -> pd.Series:
    described = (
        frame["source_id"].astype(str) + ": " + frame["loinc"].astype(str) + " = "
        + frame["value"].astype(str) + " " + frame["unit"].astype(str) + " at "
        + frame["effective_at"].astype(str)
    )  # fmt: skip
    sent = frame["payload"] if "payload" in frame else pd.Series("", index=frame.index)
    return sent.where(sent.fillna("").astype(str) != "", described)


def gate(frame: pd.DataFrame, ctx: GateContext) -> GateResult:
    """Split normalized observations into accepted and quarantined (with reasons)."""
    reason_code = _no_reason(frame)
    reason = _no_reason(frame)
    for code, check in CHECKS:
        failed, text = check(frame, ctx)
        fresh = failed.fillna(False).astype(bool) & reason_code.isna()
        reason_code = reason_code.mask(fresh, code)
        reason = reason.mask(fresh, text)
    rejected = reason_code.notna().to_numpy()
    bad = frame.loc[rejected]
    rejections = pd.DataFrame(
        {
            "source": bad["source"],
            "source_id": bad["source_id"],
            "reason_code": reason_code[rejected],
            "reason": reason[rejected],
            "payload": _payload(bad),
            "patient_id": bad["patient_id"],
        },
        columns=list(REJECTION_COLUMNS),
    )
    return GateResult(frame.loc[~np.asarray(rejected)], rejections)
