"""The nouns of the ward, as plain typed values.

Data arrives as `Reported` items (what the sender said, in its own codes and units), is
normalized to `Observation` (LOINC, canonical UCUM unit) or turned away as `Rejection`
(with a reason a person can read), and only then reaches the store. Bulk paths carry the
same fields as columns of a pandas frame (see `REPORTED_COLUMNS`), so a batch of one and a
batch of a million go through the same code.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd


class Sex:
    FEMALE = "female"
    MALE = "male"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Patient:
    patient_id: str
    sex: str = Sex.UNKNOWN
    birth_date: date | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class Encounter:
    encounter_id: str
    patient_id: str
    unit: str | None = None  # care unit: "MICU", "SICU", "ED", "ward" ...
    admitted_at: datetime | None = None  # admission to this unit (ICU in PhysioNet data)
    hospital_admitted_at: datetime | None = None
    discharged_at: datetime | None = None  # end of the stay's record; None while still here
    # First hourly record when it is later than the first hour (PhysioNet stays often start
    # their rows at ICULOS 2 or later); None means records start with the first hour.
    records_start_at: datetime | None = None
    age_years: float | None = None  # age at admission, when the source gives no birth date
    sepsis_onset_at: datetime | None = None  # label, only from sources that carry one
    source: str = ""


@dataclass(frozen=True, slots=True)
class Reported:
    """One measurement exactly as a sender reported it, before any normalization."""

    patient_id: str
    encounter_id: str | None
    system: str  # code system: "http://loinc.org", HL7 "LN", or a local system
    code: str
    display: str | None
    value: float | None  # numeric value when the sender gave one
    value_text: str | None  # the value as sent ("<5", "^182", "pending")
    comparator: str | None  # "<", "<=", ">", ">=" when the value is a bound
    unit: str | None
    effective_at: datetime | None
    source: str  # "hl7v2", "fhir", "psv"
    source_id: str  # unique within source: resent data carries the same id
    payload: str = ""  # raw fragment, kept whole for quarantine


@dataclass(frozen=True, slots=True)
class Observation:
    """A normalized measurement: LOINC code, value in the canonical unit, UTC time."""

    patient_id: str
    encounter_id: str | None
    loinc: str
    variable: str | None  # model variable it feeds ("Lactate"), None when the model ignores it
    value: float
    unit: str
    effective_at: datetime
    source: str
    source_id: str
    comparator: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """An item the quality gate turned away; it is kept in quarantine, never dropped."""

    source: str
    source_id: str
    reason_code: str  # machine-readable: "unmapped_code", "implausible", ...
    reason: str  # what was wrong and what to do, in words
    payload: str
    patient_id: str | None = None


REPORTED_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Reported))
OBSERVATION_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Observation))
REJECTION_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Rejection))
# attrgetter, not dataclasses.astuple: astuple deep-copies every field (10× slower in bulk).
_reported_row = operator.attrgetter(*REPORTED_COLUMNS)
_rejection_row = operator.attrgetter(*REJECTION_COLUMNS)


def utc(moment: datetime) -> datetime:
    """Return `moment` as an aware UTC datetime; naive times are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def reported_frame(items: list[Reported]) -> pd.DataFrame:
    """Reported items as a frame with `REPORTED_COLUMNS`; effective_at as UTC timestamps.

    Built column by column: the row-wise DataFrame constructor costs a millisecond even for
    the five results of one HL7 message.
    """
    return reported_rows_frame(map(_reported_row, items))


def reported_rows_frame(rows: Iterable[tuple[Any, ...]]) -> pd.DataFrame:
    """The same frame from rows: tuples of the `Reported` fields, in order (bulk parsing
    makes those instead of Reported objects)."""
    by_name = _object_columns(rows, REPORTED_COLUMNS)
    frame = pd.DataFrame({name: by_name[name] for name in _TEXT_COLUMNS}, dtype=object, copy=False)
    values = by_name["value"]
    frame.insert(_VALUE_AT, "value", np.array([np.nan if v is None else v for v in values],
                                              dtype="float64"))  # fmt: skip
    frame.insert(_TIME_AT, "effective_at", pd.to_datetime(list(by_name["effective_at"]), utc=True))
    return frame


_TEXT_COLUMNS = [c for c in REPORTED_COLUMNS if c not in ("value", "effective_at")]
_VALUE_AT = REPORTED_COLUMNS.index("value")
_TIME_AT = REPORTED_COLUMNS.index("effective_at")


def rejection_frame(items: list[Rejection]) -> pd.DataFrame:
    data = _object_columns(map(_rejection_row, items), REJECTION_COLUMNS)
    return pd.DataFrame(data, dtype=object, copy=False)


def _object_columns(
    rows: Iterable[tuple[Any, ...]], names: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Each field of `rows` as an object array, by name.

    Text stays as Python objects (the frames are built with dtype=object): pandas would
    otherwise copy every string, payloads being whole resources, into Arrow, most of the
    cost of these frames, for no use.
    """
    columns = list(zip(*rows, strict=True)) or [()] * len(names)
    return {name: np.array(col, dtype=object) for name, col in zip(names, columns, strict=True)}


def observations_from_frame(frame: pd.DataFrame) -> list[Observation]:
    """Turn a normalized frame back into domain objects (for small batches and the API)."""
    columns = frame.loc[:, list(OBSERVATION_COLUMNS)]
    rows = columns.astype(object).where(columns.notna(), None).to_dict("records")
    return [Observation(**{**r, "effective_at": r["effective_at"].to_pydatetime()}) for r in rows]


@dataclass(slots=True)
class Parsed:
    """What a parser got out of one message, bundle or file."""

    patients: list[Patient] = dataclasses.field(default_factory=list)
    encounters: list[Encounter] = dataclasses.field(default_factory=list)
    reported: list[Reported] = dataclasses.field(default_factory=list)
    rejections: list[Rejection] = dataclasses.field(default_factory=list)
