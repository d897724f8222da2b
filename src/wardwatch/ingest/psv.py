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

from wardwatch.domain import REPORTED_COLUMNS, Encounter, Patient, Rejection, Sex
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


def iter_checked(
    source: Path, patients_per_chunk: int = 1000
) -> Iterator[tuple[pd.DataFrame, list[Rejection]]]:
    """As `iter_cohort`, for ingest: what cannot be read is turned away, with its reason.

    `iter_cohort` (training, evaluation) stops at the first bad file. A hospital's feed must
    not: a file that is not a PhysioNet file, or cannot be parsed, is turned away whole; a
    value that is not a number is turned away alone (the rest of its row is kept); a row
    whose ICULOS is not an hour of the stay cannot be placed in time and is turned away. Each
    chunk comes with the rejections of the files read for it; the last may be empty.
    """
    turned_away: list[Rejection] = []
    for chunk in _chunks(Path(source), patients_per_chunk, turned_away):
        yield chunk, turned_away[:]
        turned_away.clear()
    if turned_away:
        yield _empty_wide(), turned_away


def _chunks(
    source: Path, patients_per_chunk: int, turned_away: list[Rejection] | None = None
) -> Iterator[pd.DataFrame]:
    """Chunks of whole files; with `turned_away`, bad files and values go there instead of
    raising (see `iter_checked`)."""
    ids: list[str] = []
    bodies: list[bytes] = []
    header: bytes | None = None
    read_any = False
    for name, content in _members(Path(source)):
        read_any = True
        first, _, body = content.partition(b"\n")
        if turned_away is not None and (why := _not_physionet(first)):
            turned_away.append(_whole_file(name, content, why))
            continue
        header = header or first.strip()
        if first.strip() != header:  # columns in another order: parse alone, re-emit ours
            if turned_away is None:
                frame = _parse(name, content)
            elif (checked := _checked(name, content, turned_away)) is None:
                continue
            else:
                frame = checked.drop(columns=["patient_id", "hour"])
            body = frame.to_csv(sep="|", header=False, index=False, columns=_names(header))
            body = body.encode()
        body = body.rstrip(b"\n")
        if body:
            ids.append(_patient_id(name))
            bodies.append(body)
        if len(ids) >= patients_per_chunk:
            yield _concat_or_check(header, ids, bodies, turned_away)
            ids, bodies = [], []
    if not read_any:
        raise PSVError(f"{source}: no .psv files found")
    if ids and header is not None:
        yield _concat_or_check(header, ids, bodies, turned_away)


def _concat_or_check(
    header: bytes, ids: list[str], bodies: list[bytes], turned_away: list[Rejection] | None
) -> pd.DataFrame:
    """One C-level read of the chunk; if it fails and bad input is to be turned away, each
    file is read alone and checked value by value (the good files are not held up)."""
    if turned_away is None:
        return _concat(header, ids, bodies)
    try:
        return _concat(header, ids, bodies)
    except ValueError:  # PSVError and pandas' parser errors are ValueErrors
        frames = [_checked(f"{pid}.psv", header + b"\n" + body, turned_away)
                  for pid, body in zip(ids, bodies, strict=True)]  # fmt: skip
        kept = [frame for frame in frames if frame is not None]
        return pd.concat(kept, ignore_index=True) if kept else _empty_wide()


def _not_physionet(first_line: bytes) -> str | None:
    names = first_line.decode("utf-8", "replace").strip().split("|")
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        shown = ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else "")
        return f"its first line lacks the PhysioNet 2019 columns {shown}"
    return None


def _whole_file(name: str, content: bytes, why: str) -> Rejection:
    return Rejection(SOURCE, name, "unreadable_file",
                     f"{name}: {why}; the file is kept here whole: correct it and ingest it again",
                     content.decode("utf-8", "replace"), _patient_id(name))  # fmt: skip


def _checked(name: str, content: bytes, turned_away: list[Rejection]) -> pd.DataFrame | None:
    """One file read value by value: a wide frame of what is usable, the rest turned away.

    Its first line is a header `_not_physionet` passed (the callers checked it).
    """
    pid = _patient_id(name)
    lines = content.decode("utf-8", "replace").splitlines()
    fields = lines[0].count("|") + 1
    rows = [0]  # the header, then each data row whose fields line up with it
    for i, line in enumerate(lines[1:], start=1):
        if not line.strip():
            continue
        if line.count("|") + 1 == fields:
            rows.append(i)
            continue
        reason = (f"{name} line {i + 1}: {line.count('|') + 1} fields where the header has "
                  f"{fields}; the values cannot be matched to their columns")  # fmt: skip
        turned_away.append(Rejection(SOURCE, f"{pid}|line {i + 1}", "ragged_row", reason, line,
                                     pid))  # fmt: skip
    usable = "\n".join(lines[i] for i in rows).encode()
    try:
        text = pd.read_csv(io.BytesIO(usable), sep="|", dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as error:
        turned_away.append(_whole_file(name, content, f"cannot be parsed ({error})"))
        return None
    lines = [lines[i] for i in rows]  # line k + 1 is data row k, as below
    cells = text.apply(lambda column: column.str.strip())
    numbers = cells.apply(pd.to_numeric, errors="coerce").astype("float64")
    bad = numbers.isna() & ~cells.isin(["", "NaN", "nan"])
    hours = numbers["ICULOS"]
    placed = hours.notna() & (hours == hours.round())
    numbered = rows[1:]  # data row k was line numbered[k] + 1 of the file
    for i in np.flatnonzero(~placed.to_numpy()):
        hour = cells["ICULOS"].iat[i]
        reason = (f"{name} line {numbered[i] + 1}: ICULOS {hour!r} is not an hour of the stay; "
                  "the row cannot be placed in time")  # fmt: skip
        turned_away.append(Rejection(SOURCE, f"{pid}|line {numbered[i] + 1}", "no_hour", reason,
                                     lines[i + 1], pid))  # fmt: skip
    for i, j in zip(*np.nonzero(bad.to_numpy() & placed.to_numpy()[:, None]), strict=True):
        column = text.columns[j]
        turned_away.append(Rejection(
            SOURCE, f"{pid}|{int(hours.iat[i])}|{column}", "not_numeric",
            f"{name} line {numbered[i] + 1}: {column} {cells.iat[i, j]!r} is not a number",
            lines[i + 1], pid))  # fmt: skip
    kept = numbers[placed.to_numpy()].reset_index(drop=True)
    kept.insert(0, "patient_id", np.full(len(kept), pid, dtype=object))
    kept.insert(1, "hour", kept["ICULOS"].astype("int64"))
    return kept


def _empty_wide() -> pd.DataFrame:
    """A wide frame of no rows (a chunk whose every file was turned away)."""
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS})
    frame.insert(0, "patient_id", pd.Series(dtype=object))
    frame.insert(1, "hour", pd.Series(dtype="int64"))
    return frame


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
    fields = header.count(b"|") + 1
    for pid, body in zip(ids, bodies, strict=True):
        if any(line.count(b"|") + 1 != fields for line in body.split(b"\n") if line.strip()):
            raise PSVError(f"{pid}.psv: a row's fields do not line up with the header's {fields}")
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
