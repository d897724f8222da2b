"""PhysioNet/CinC 2019 `.psv` files in: one pipe-separated file per ICU stay, one row per hour.

Two views of the same files:
- `read_cohort` gives the wide hourly frame (one row per patient-hour) that training and
  evaluation read directly;
- `to_parsed` turns a patient's rows into `Reported` observations at admission time + ICULOS
  hours, so the whole data set can be replayed through the same live pipeline as HL7 and FHIR.

The files carry no clock time, so every stay is anchored at `admitted_at` (a fixed date by
default, so ingesting the same file twice gives the same observation times and dedups).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from wardwatch.domain import REPORTED_COLUMNS, Encounter, Patient, Sex
from wardwatch.quality import blank_implausible

VITALS = ("HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "EtCO2")
LABS = (
    "BaseExcess", "HCO3", "FiO2", "pH", "PaCO2", "SaO2", "AST", "BUN", "Alkalinephos",
    "Calcium", "Chloride", "Creatinine", "Bilirubin_direct", "Glucose", "Lactate",
    "Magnesium", "Phosphate", "Potassium", "Bilirubin_total", "TroponinI", "Hct", "Hgb",
    "PTT", "WBC", "Fibrinogen", "Platelets",
)  # fmt: skip
MEASURED = VITALS + LABS
DEMOGRAPHICS = ("Age", "Gender", "Unit1", "Unit2", "HospAdmTime", "ICULOS")
LABEL = "SepsisLabel"
COLUMNS = (*MEASURED, *DEMOGRAPHICS)

DEFAULT_ADMISSION = datetime(2019, 1, 1, tzinfo=UTC)
SOURCE = "psv"
# Code system under which the file's column names travel to the normalizer.
SYSTEM = "physionet2019"
# The challenge labels septic patients from 6 h before clinical onset (Sepsis-3).
LABEL_LEAD_HOURS = 6


class PSVError(ValueError):
    """A file that is not a PhysioNet 2019 patient file."""


def _patient_id(name: str) -> str:
    return Path(name).name.removesuffix(".psv")


def _parse(name: str, content: bytes) -> pd.DataFrame:
    try:
        rows = pd.read_csv(io.BytesIO(content), sep="|", dtype="float64")
    except (ValueError, pd.errors.ParserError) as error:
        raise PSVError(f"{name}: not a pipe-separated PhysioNet file ({error})") from error
    missing = [c for c in COLUMNS if c not in rows.columns]
    if missing:
        raise PSVError(f"{name}: missing columns {missing}; is this a PhysioNet 2019 .psv file?")
    return rows


def _members(source: Path) -> Iterator[tuple[str, bytes]]:
    if source.is_dir():
        for path in sorted(source.rglob("*.psv")):
            yield path.name, path.read_bytes()
    elif source.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(source) as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(".psv"):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield member.name, handle.read()
    elif source.suffix == ".psv":
        yield source.name, source.read_bytes()
    else:
        raise PSVError(f"{source}: expected a .psv file, a directory of them, or a .tar.gz")


def count_patient_files(source: Path) -> int:
    source = Path(source)
    if source.is_dir():
        return sum(1 for _ in source.rglob("*.psv"))
    if source.suffix == ".psv":
        return 1
    with tarfile.open(source) as archive:
        return sum(1 for m in archive if m.isfile() and m.name.endswith(".psv"))


def iter_cohort(
    source: Path, patients_per_chunk: int = 1000, *, as_stored: bool = False
) -> Iterator[pd.DataFrame]:
    """Patient files as wide hourly frames of up to `patients_per_chunk` patients each.

    Each chunk's files are concatenated and parsed by a single C-level CSV read, which is
    what makes all of set A (790k rows) load in seconds rather than minutes. `as_stored`
    blanks the values the quality gate would quarantine: what the live store would hold.
    """
    for chunk in _chunks(source, patients_per_chunk):
        yield blank_implausible(chunk) if as_stored else chunk


def _chunks(source: Path, patients_per_chunk: int) -> Iterator[pd.DataFrame]:
    ids: list[str] = []
    bodies: list[bytes] = []
    header: bytes | None = None
    for name, content in _members(Path(source)):
        first, _, body = content.partition(b"\n")
        header = header or first.strip()
        if first.strip() != header:  # columns in another order: parse alone, re-emit ours
            frame = _parse(name, content)
            body = frame.to_csv(sep="|", header=False, index=False, columns=_names(header))
            body = body.encode()
        body = body.rstrip(b"\n")
        if body:
            ids.append(_patient_id(name))
            bodies.append(body)
        if len(ids) >= patients_per_chunk:
            yield _concat(header, ids, bodies)
            ids, bodies = [], []
    if header is None:
        raise PSVError(f"{source}: no .psv files found")
    if ids:
        yield _concat(header, ids, bodies)


def read_cohort(
    source: Path, limit: int | None = None, *, as_stored: bool = False
) -> pd.DataFrame:
    """All patient files (or the first `limit`) as one wide hourly frame.

    Columns: `patient_id`, `hour` (= ICULOS), then the file's columns.
    """
    chunks = []
    for chunk in iter_cohort(source, patients_per_chunk=limit or 5000, as_stored=as_stored):
        chunks.append(chunk)
        if limit is not None:
            break
    return pd.concat(chunks, ignore_index=True)


def _names(header: bytes) -> list[str]:
    return header.decode().split("|")


def _concat(header: bytes, ids: list[str], bodies: list[bytes]) -> pd.DataFrame:
    lengths = np.array([b.count(b"\n") + 1 for b in bodies])
    frame = pd.read_csv(
        io.BytesIO(b"\n".join(bodies)), sep="|", header=None, names=_names(header),
        dtype="float64",
    )  # fmt: skip
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise PSVError(f"missing columns {missing}; are these PhysioNet 2019 .psv files?")
    frame.insert(0, "patient_id", np.repeat(np.array(ids, dtype=object), lengths))
    frame.insert(1, "hour", frame["ICULOS"].astype("int64"))
    return frame


def _unit(first: pd.DataFrame) -> pd.Series:
    # Unit1 = medical ICU, Unit2 = surgical ICU in the challenge's data description; every
    # stay is an ICU stay, so an unrecorded unit is still "ICU".
    unit = pd.Series("ICU", index=first.index, dtype=object)
    unit[first["Unit2"] == 1] = "SICU"
    unit[first["Unit1"] == 1] = "MICU"
    return unit


def sepsis_onset_hours(wide: pd.DataFrame) -> pd.Series:
    """Per patient, the ICULOS hour of clinical sepsis onset (first labelled hour + 6).

    Patients never labelled are absent from the result.
    """
    if LABEL not in wide.columns:
        return pd.Series(dtype="float64")
    labelled = wide.loc[wide[LABEL] == 1]
    return labelled.groupby("patient_id", sort=False)["ICULOS"].min() + LABEL_LEAD_HOURS


Admissions = datetime | pd.Series  # one time for every stay, or a time per patient_id


def _admission_of(admitted_at: Admissions, pid: str) -> datetime:
    return admitted_at if isinstance(admitted_at, datetime) else admitted_at[pid]


def _at(admitted_at: datetime, hours: float) -> datetime | None:
    if hours is None or np.isnan(hours):
        return None
    return admitted_at + pd.Timedelta(hours=hours).to_pytimedelta()


def patients_and_encounters(
    wide: pd.DataFrame, admitted_at: Admissions = DEFAULT_ADMISSION
) -> tuple[list[Patient], list[Encounter]]:
    """One Patient and one ICU Encounter per patient in a wide cohort frame (a replay admits
    each patient at its own time: pass a Series of admission times indexed by patient_id)."""
    first = wide.groupby("patient_id", sort=False)[list(DEMOGRAPHICS)].first()
    span = wide.groupby("patient_id", sort=False)["ICULOS"].agg(["min", "max"])
    onset = sepsis_onset_hours(wide).reindex(first.index)
    units = _unit(first)
    patients, encounters = [], []
    for pid, row in first.iterrows():
        sex = {1.0: Sex.MALE, 0.0: Sex.FEMALE}.get(row["Gender"], Sex.UNKNOWN)
        patients.append(Patient(str(pid), sex=sex, source=SOURCE))
        admitted = _admission_of(admitted_at, str(pid))
        encounters.append(
            Encounter(
                encounter_id=f"{pid}-icu",
                patient_id=str(pid),
                unit=units[pid],
                admitted_at=admitted,
                hospital_admitted_at=_at(admitted, row["HospAdmTime"]),
                discharged_at=_at(admitted, span.at[pid, "max"]),
                records_start_at=_at(admitted, span.at[pid, "min"]),
                age_years=None if np.isnan(row["Age"]) else float(row["Age"]),
                sepsis_onset_at=_at(admitted, onset[pid]),
                source=SOURCE,
            )
        )
    return patients, encounters


def _admitted(admitted_at: Admissions, patient: np.ndarray) -> pd.Timestamp | pd.DatetimeIndex:
    if isinstance(admitted_at, datetime):
        return pd.Timestamp(admitted_at)
    return pd.to_datetime(admitted_at.reindex(patient).to_numpy(), utc=True)


def reported_rows(wide: pd.DataFrame, admitted_at: Admissions = DEFAULT_ADMISSION) -> pd.DataFrame:
    """Every non-missing measured value of a wide cohort frame as a `Reported` frame.

    The variables travel under the system "physionet2019" with the column name as code; the
    normalizer knows that system (the file's columns are named variables in canonical units).
    ICULOS h is taken as the end of the hour the row summarises (challenge convention).
    """
    values = wide.loc[:, list(MEASURED)].to_numpy(dtype="float64")
    row_index, var_index = np.nonzero(~np.isnan(values))
    hours = wide["ICULOS"].to_numpy(dtype="float64")[row_index]
    patient = wide["patient_id"].to_numpy(dtype=object)[row_index]
    variables = np.asarray(MEASURED, dtype=object)[var_index]
    n = len(row_index)
    source_id = (
        pd.Series(patient, dtype="string") + "|" + pd.Series(hours.astype("int64")).astype("string")
        + "|" + pd.Series(variables, dtype="string")
    ).astype(object)  # fmt: skip
    frame = pd.DataFrame(
        {
            "patient_id": patient,
            "encounter_id": pd.Series(patient, dtype="string").add("-icu").astype(object),
            "system": np.full(n, SYSTEM, dtype=object),
            "code": variables,
            "display": variables,
            "value": values[row_index, var_index],
            "value_text": None,
            "comparator": None,
            "unit": None,
            "effective_at": _admitted(admitted_at, patient) + pd.to_timedelta(hours, unit="h"),
            "source": np.full(n, SOURCE, dtype=object),
            "source_id": source_id.to_numpy(),
            "payload": "",
        }
    )
    return frame.loc[:, list(REPORTED_COLUMNS)]
