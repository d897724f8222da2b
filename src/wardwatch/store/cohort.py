"""The store's observations as the wide hourly frame the model reads.

This is the same frame `ingest.psv.read_cohort` gives for PhysioNet files (patient_id,
hour, the measured variables, demographics, label), built from whatever was ingested —
HL7, FHIR or PSV — so training, evaluation and live scoring read one shape.

Hour h of a stay covers (admission + h-1 h, admission + h h]: a value measured at 10:20
after an 08:00 admission belongs to hour 3, and is therefore only visible from hour 3 on.
When several values of a variable fall in one hour, the latest is the hour's value.

`until` makes it an as-of view: only measurements taken by then, and each stay's rows run to
the hour that contains `until` (so a stay with no new data still ages hour by hour: its
"hours since measured" grow, which is what the model must see) but never past its discharge.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from wardwatch.ingest.psv import LABEL, LABEL_LEAD_HOURS, MEASURED
from wardwatch.store.schema import encounters, observations, patients

HOUR = pd.Timedelta(hours=1)


def _stays(
    conn: Connection, patient_ids: Sequence[str] | None, encounter_ids: Sequence[str] | None
) -> pd.DataFrame:
    query = select(
        encounters.c.encounter_id, encounters.c.patient_id, encounters.c.unit,
        encounters.c.admitted_at, encounters.c.hospital_admitted_at, encounters.c.age_years,
        encounters.c.sepsis_onset_at,
        encounters.c.records_start_at,
        encounters.c.discharged_at, patients.c.sex,
    ).join(patients, patients.c.patient_id == encounters.c.patient_id)  # fmt: skip
    if patient_ids is not None:
        query = query.where(encounters.c.patient_id.in_(list(patient_ids)))
    if encounter_ids is not None:
        query = query.where(encounters.c.encounter_id.in_(list(encounter_ids)))
    stays = _frame(conn.execute(query).all(), list(query.selected_columns.keys()))
    for column in (
        "admitted_at",
        "hospital_admitted_at",
        "sepsis_onset_at",
        "records_start_at",
        "discharged_at",
    ):
        stays[column] = pd.to_datetime(stays[column], utc=True)
    return stays


def _frame(rows: Sequence[Sequence[object]], columns: list[str]) -> pd.DataFrame:
    """Rows to a frame column by column: pandas inspects every SQLAlchemy Row object it is
    handed, which costs more than the query."""
    data = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    return pd.DataFrame(dict(zip(columns, data, strict=True)), columns=columns)


def _measurements(
    conn: Connection, stays: pd.DataFrame, until: datetime | None, chosen: bool
) -> pd.DataFrame:
    query = (
        select(
            observations.c.encounter_id,
            observations.c.variable,
            observations.c.value,
            observations.c.effective_at,
        )
        .where(observations.c.variable.in_(MEASURED), observations.c.value.is_not(None))
        .order_by(observations.c.effective_at, observations.c.id)
    )
    if chosen:  # patient_id first: it leads the observations' index, encounter_id is not indexed
        query = query.where(
            observations.c.patient_id.in_(list(stays["patient_id"].unique())),
            observations.c.encounter_id.in_(list(stays["encounter_id"])),
        )
    if until is not None:
        query = query.where(observations.c.effective_at <= until)
    columns = ["encounter_id", "variable", "value", "effective_at"]
    frame = _frame(conn.execute(query).all(), columns)
    frame["effective_at"] = pd.to_datetime(frame["effective_at"], utc=True)
    return frame


def _hour_of(moment: pd.Series, admitted: pd.Series) -> np.ndarray:
    hours = np.ceil((moment - admitted) / HOUR).to_numpy(dtype="float64")
    return np.maximum(hours, 1).astype("int64")  # earlier history counts from the first hour


def _unit_flag(unit: pd.Series, this: str, other: str) -> np.ndarray:
    # PhysioNet's Unit1/Unit2 columns: 1 for this ICU, 0 for the other, missing when unknown.
    return np.where(unit == this, 1.0, np.where(unit == other, 0.0, np.nan))


def _hours_after_admission(stays: pd.DataFrame, column: str) -> pd.Series:
    return ((stays[column] - stays["admitted_at"]) / HOUR).astype("float64")


def _demographics(stays: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Age": stays["age_years"].astype("float64"),
            "Gender": stays["sex"].map({"male": 1.0, "female": 0.0}).astype("float64"),
            "Unit1": _unit_flag(stays["unit"], "MICU", "SICU"),
            "Unit2": _unit_flag(stays["unit"], "SICU", "MICU"),
            "HospAdmTime": _hours_after_admission(stays, "hospital_admitted_at"),
            "onset_hour": _hours_after_admission(stays, "sepsis_onset_at"),
        }
    ).set_axis(stays["encounter_id"])


def load_wide(
    conn: Connection,
    patient_ids: Sequence[str] | None = None,
    *,
    encounter_ids: Sequence[str] | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """One row per stay-hour from the first recorded hour to the last hour with data or the
    discharge (or, with `until`, to the hour containing `until`); stays admitted after
    `until` are left out."""
    stays = _stays(conn, patient_ids, encounter_ids)
    stays = stays.loc[stays["admitted_at"].notna()]
    if until is not None:
        stays = stays.loc[stays["admitted_at"] <= pd.Timestamp(until)]
    chosen = patient_ids is not None or encounter_ids is not None
    values = _measurements(conn, stays, until, chosen)
    # Unfiltered, the query also returns observations of visits with no admission time
    # (an outpatient FHIR history): they have no hour of a stay, so they are not rows.
    values = values.loc[values["encounter_id"].isin(stays["encounter_id"])]
    admitted = values["encounter_id"].map(stays.set_index("encounter_id")["admitted_at"])
    values["hour"] = _hour_of(values["effective_at"], admitted)
    hourly = values.pivot_table(index=["encounter_id", "hour"], columns="variable",
                                values="value", aggfunc="last")  # fmt: skip
    return _dense(hourly, stays, until)


def _span(hourly: pd.DataFrame, stays: pd.DataFrame, until: datetime | None) -> pd.DataFrame:
    """First and last hour of each stay's hourly record."""
    by_stay = stays.set_index("encounter_id")
    last_data = hourly.reset_index().groupby("encounter_id")["hour"].max()
    first = _hours_after_admission(stays, "records_start_at").round().set_axis(by_stay.index)
    discharged = _hours_after_admission(stays, "discharged_at").round().set_axis(by_stay.index)
    span = pd.DataFrame({"first": first.fillna(1).clip(lower=1)})
    if until is None:
        last = pd.concat([last_data.reindex(span.index), discharged, span["first"]], axis=1)
        span["last"] = last.max(axis=1)
    else:
        now = np.ceil((pd.Timestamp(until) - by_stay["admitted_at"]) / HOUR)
        span["last"] = now.where(~(discharged < now), discharged)
    return span.astype("int64")


def _dense(hourly: pd.DataFrame, stays: pd.DataFrame, until: datetime | None) -> pd.DataFrame:
    span = _span(hourly, stays, until)
    lengths = (span["last"] - span["first"] + 1).clip(lower=0).to_numpy()
    hours = [np.arange(a, b + 1) for a, b in zip(span["first"], span["last"], strict=True)]
    index = pd.MultiIndex.from_arrays(
        [
            np.repeat(span.index.to_numpy(), lengths),
            np.concatenate([np.array([], "int64"), *hours]),
        ],
        names=["encounter_id", "hour"],
    )
    wide = hourly.reindex(index=index, columns=list(MEASURED)).reset_index()
    demographics = _demographics(stays).reindex(wide["encounter_id"]).reset_index(drop=True)
    wide = pd.concat([wide, demographics], axis=1)
    wide["ICULOS"] = wide["hour"].astype("float64")
    onset = wide.pop("onset_hour")
    wide[LABEL] = (wide["hour"] >= onset - LABEL_LEAD_HOURS).astype("float64")
    by_stay = stays.set_index("encounter_id")
    wide.insert(0, "patient_id", wide["encounter_id"].map(by_stay["patient_id"]))
    wide["unit"] = wide["encounter_id"].map(by_stay["unit"])
    return wide
