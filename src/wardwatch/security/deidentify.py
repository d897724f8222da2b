"""De-identified exports of the store's hourly records, for data scientists (HIPAA Safe Harbor).

What leaves, and why each piece may leave (`KEPT` says it per column; `REMOVED` lists what is
taken out and how; both travel with every export in its manifest):

- Identifiers become pseudonyms: HMAC-SHA256(secret salt, kind + id), first 16 hex digits
  (64 bits: no collision in any cohort a hospital has). A keyed hash, not a plain one: MRNs
  and visit numbers are short and guessable, and an unkeyed hash of every possible MRN is a
  lookup table. The same salt gives the same pseudonym in every export, so a data scientist
  can add next month's stays to this month's and still split by patient (rule 4); a new salt
  unlinks them. The salt stays with the hospital, never in an export.
- Dates are not shifted, they are gone: every time is hours since the stay's admission
  (`ICULOS`, `HospAdmTime`), as in PhysioNet. Shifting dates by a per-patient offset keeps
  weekday, season and time-of-day patterns a re-identifier can use, and Safe Harbor proper
  allows no date element finer than a year anyway; the model needs only intervals.
- Ages above 89 become 90 ("90 or older", Safe Harbor's rule) and ages are whole years: a
  fractional age to the hundredth of a year narrows the birth date to days.
- Free text, raw codes and values as sent, birth dates, sources and message ids are never
  read: the export is built from `cohort.load_wide`, which holds numbers and a unit name only.
- Patients who opted out of use in training are left out (`consent.training_stays`), as
  their consent stood when the export began; a decision recorded during an export applies
  from the next one.

Formats: `psv` writes PhysioNet-style files, one per stay, named `<patient>_<stay>.psv` (the
PhysioNet readers take the file name as the patient id, and the patient pseudonym comes first
so stays of one patient stay together); `parquet` and `csv` write one table with `patient`
and `stay` columns. Output is written beside the destination and moved into place at the end:
a failed export leaves nothing that looks complete.

Every export is in the audit trail (`export`): who ran it, from where, the format and the
counts, never an identifier or the salt. The record is appended in the caller's transaction
just before the output moves into place, so the caller must commit (`engine.begin()`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection

from wardwatch.ingest.psv import COLUMNS, LABEL
from wardwatch.security import audit
from wardwatch.security.audit_actions import cli_operator
from wardwatch.security.consent import training_stays
from wardwatch.security.users import role_of
from wardwatch.store.cohort import load_wide

SALT_ENV = "WARDWATCH_DEID_SALT"
MIN_SALT_BYTES = 32
MAKE_SALT = (
    "make one once and keep it secret (not in the export, not in git): "
    "python -c 'import secrets; print(secrets.token_hex(32))' > deid.salt && chmod 600 deid.salt"
    f"; then pass --salt-file deid.salt or set {SALT_ENV}"
)
PSEUDONYM_HEX = 16
AGE_CAP = 90  # Safe Harbor: ages over 89 are reported as one group, "90 or older"
FORMATS = ("psv", "parquet", "csv")
MANIFEST = "DEIDENTIFICATION.json"
PSV_COLUMNS = (*COLUMNS, LABEL)
TABLE_COLUMNS = ("patient", "stay", *PSV_COLUMNS, "unit")
STAYS_PER_BATCH = 200  # bounds memory: one batch of hourly records at a time

_WHY_MEASURED = "a vital sign or lab value: clinical data, not an identifier under Safe Harbor"
KEPT: Mapping[str, str] = {
    "patient": "pseudonym: HMAC-SHA256(secret salt, patient id), 16 hex digits",
    "stay": "pseudonym: HMAC-SHA256(secret salt, encounter id), 16 hex digits",
    **{name: _WHY_MEASURED for name in COLUMNS[: COLUMNS.index("Age")]},
    "Age": f"whole years, {AGE_CAP} for everyone older than 89 (Safe Harbor)",
    "Gender": "sex (1 male, 0 female): not an identifier under Safe Harbor",
    "Unit1": "1 if the stay was in a medical ICU: a care setting, not a person",
    "Unit2": "1 if the stay was in a surgical ICU: a care setting, not a person",
    "HospAdmTime": "hours from hospital to unit admission: an interval, not a date",
    "ICULOS": "hours since the stay's admission: the only clock in the export",
    LABEL: "the outcome the model learns (sepsis within 6 h), relative to the stay",
    "unit": "the care unit's name (e.g. MICU, ED): where care happened, not who received it "
    "(parquet and csv only)",
}
REMOVED: Mapping[str, str] = {
    "patient id / MRN": "replaced by the patient pseudonym",
    "encounter / visit id": "replaced by the stay pseudonym",
    "admission, discharge, measurement and onset dates": "replaced by hours since admission",
    "birth date": "not exported; age in whole years, capped at 90",
    "names, addresses, contacts": "not held by the store; never exported",
    "free text, raw codes and values as sent, message ids, sources": "not exported",
    "patients opted out of use in training": "left out entirely",
}


class SaltError(ValueError):
    """No usable secret salt: the message says how to make one."""


class OutputExists(FileExistsError):
    """The destination already holds something: exports never overwrite or mix."""


@dataclass(frozen=True)
class Pseudonyms:
    """Keyed pseudonyms; one kind's pseudonym never equals another's for the same text."""

    salt: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_salt(self.salt)

    def patient(self, patient_id: str) -> str:
        return self._of("patient", patient_id)

    def stay(self, encounter_id: str) -> str:
        return self._of("stay", encounter_id)

    def _of(self, kind: str, value: str) -> str:
        message = f"wardwatch-deid-v1\x00{kind}\x00{value}".encode()
        return hmac.new(self.salt, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote; `excluded_stays` were left out because of a training opt-out."""

    out: Path
    fmt: str
    stays: int
    patients: int
    rows: int
    excluded_stays: int


def check_salt(salt: bytes) -> bytes:
    """The salt, if it is long enough to be a secret; a short one is refused, not padded."""
    if len(salt) < MIN_SALT_BYTES:
        raise SaltError(
            f"the de-identification salt has {len(salt)} bytes; at least {MIN_SALT_BYTES} "
            f"are needed. {MAKE_SALT}"
        )
    return salt


def load_salt(path: Path | None = None, environ: Mapping[str, str] = os.environ) -> bytes:
    """The salt from `path` or, without one, from the environment; one trailing newline (as
    `print` or an editor leaves) is not part of it."""
    if path is not None:
        try:
            raw = Path(path).read_bytes()
        except OSError as error:
            raise SaltError(f"cannot read the salt file {path}: {error.strerror}") from error
    elif environ.get(SALT_ENV):
        raw = environ[SALT_ENV].encode()
    else:
        raise SaltError(f"no de-identification salt: {MAKE_SALT}")
    return check_salt(raw.removesuffix(b"\n").removesuffix(b"\r"))


def deidentify_wide(wide: pd.DataFrame, pseudonyms: Pseudonyms) -> pd.DataFrame:
    """`load_wide`'s frame with ids pseudonymised and ages generalised; only `TABLE_COLUMNS`."""
    out = pd.DataFrame(
        {
            "patient": _mapped(wide["patient_id"], pseudonyms.patient),
            "stay": _mapped(wide["encounter_id"], pseudonyms.stay),
        }
    )
    for name in PSV_COLUMNS:
        out[name] = wide[name].to_numpy(dtype="float64")
    out["Age"] = generalize_age(out["Age"])
    out["unit"] = wide["unit"].astype("string").to_numpy()
    return out


def generalize_age(age: pd.Series) -> pd.Series:
    """Whole years, and `AGE_CAP` for everyone over 89; missing stays missing."""
    return np.floor(age.astype("float64")).clip(upper=AGE_CAP)


def _mapped(ids: pd.Series, pseudonym: Callable[[str], str]) -> np.ndarray:
    unique = pd.unique(ids.astype(str))
    lookup = {value: pseudonym(value) for value in unique}
    return ids.astype(str).map(lookup).to_numpy(dtype=object)


def deidentified_batches(
    conn: Connection,
    pseudonyms: Pseudonyms,
    since: datetime | None = None,
    stays_per_batch: int = STAYS_PER_BATCH,
) -> tuple[Iterator[pd.DataFrame], int]:
    """The de-identified hourly records, a batch of stays at a time, and how many stays were
    left out because their patient opted out of training."""
    stays, excluded = training_stays(conn, since)

    def batches() -> Iterator[pd.DataFrame]:
        for start in range(0, len(stays), stays_per_batch):
            wide = load_wide(conn, encounter_ids=stays[start : start + stays_per_batch])
            if not wide.empty:
                yield deidentify_wide(wide, pseudonyms)

    return batches(), excluded


def export_deidentified(
    conn: Connection,
    out: Path,
    *,
    salt: bytes,
    fmt: str = "psv",
    since: datetime | None = None,
    by: str | None = None,
    source: str = "cli",
) -> ExportSummary:
    """Write the de-identified export to `out` (a directory for psv, a file otherwise).

    `by` is who runs it (default: the operating-system user, as `cli:<name>`).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    out = Path(out)
    _refuse_existing(out)
    _refuse_existing(_manifest_path(out, fmt))
    batches, excluded = deidentified_batches(conn, Pseudonyms(salt), since)
    partial = out.with_name(out.name + ".partial")
    beside = _manifest_path(partial if fmt == "psv" else out, fmt)
    _remove(partial)
    try:
        summary = ExportSummary(out, fmt, *_write(batches, partial, fmt), excluded_stays=excluded)
        beside.write_text(json.dumps(manifest(summary), indent=2) + "\n")
        _audit(conn, summary, since, by or cli_operator(), source)  # no record, no export
        partial.rename(out)
    except BaseException:
        _remove(partial)
        _remove(beside)
        raise
    return summary


def _audit(conn: Connection, summary: ExportSummary, since: datetime | None, by: str,
           source: str) -> None:  # fmt: skip
    """Patient data left the system, de-identified: say who, the format and how much."""
    detail = {"format": summary.fmt, "stays": summary.stays, "patients": summary.patients,
              "rows": summary.rows, "excluded_stays": summary.excluded_stays,
              "since": since and since.isoformat()}  # fmt: skip
    audit.record(conn, audit.AuditEvent(
        "export", actor=by[:64], role=role_of(conn, by), object=f"file:{summary.out.name}"[:200],
        source=source[:64], detail=detail,
    ))  # fmt: skip


def manifest(summary: ExportSummary) -> dict[str, object]:
    """What the recipient is told: how the data was de-identified, column by column."""
    return {
        "method": "HIPAA Safe Harbor style de-identification (wardwatch)",
        "pseudonyms": "HMAC-SHA256 with the site's secret salt, first 16 hex digits; "
        "the same salt gives the same pseudonyms in every export",
        "time": "hours since the stay's admission; no dates",
        "format": summary.fmt,
        "stays": summary.stays,
        "patients": summary.patients,
        "rows": summary.rows,
        "columns": dict(KEPT) if summary.fmt != "psv" else {c: KEPT[c] for c in PSV_COLUMNS},
        "removed": dict(REMOVED),
    }


def _write(batches: Iterator[pd.DataFrame], dest: Path, fmt: str) -> tuple[int, int, int]:
    """Write every batch; returns (stays, patients, rows)."""
    stays: set[str] = set()
    patients: set[str] = set()
    rows = 0
    writer = _PsvWriter(dest) if fmt == "psv" else _TableWriter(dest, fmt)
    with writer:
        for frame in batches:
            writer.write(frame)
            stays.update(frame["stay"])
            patients.update(frame["patient"])
            rows += len(frame)
    return len(stays), len(patients), rows


class _PsvWriter:
    """One PhysioNet `.psv` file per stay; a name already taken is an error, never a merge."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True)

    def __enter__(self) -> _PsvWriter:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def write(self, frame: pd.DataFrame) -> None:
        for (patient, stay), rows in frame.groupby(["patient", "stay"], sort=False):
            with open(self.directory / f"{patient}_{stay}.psv", "x", newline="") as handle:
                rows.to_csv(handle, sep="|", index=False, na_rep="NaN",
                            columns=list(PSV_COLUMNS))  # fmt: skip


_SCHEMA = pa.schema(
    [pa.field("patient", pa.string()), pa.field("stay", pa.string())]
    + [pa.field(name, pa.float64()) for name in PSV_COLUMNS]
    + [pa.field("unit", pa.string())]
)


class _TableWriter:
    """One parquet or csv file, appended a batch at a time."""

    def __init__(self, path: Path, fmt: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fmt = path, fmt
        self.parquet = pq.ParquetWriter(path, _SCHEMA) if fmt == "parquet" else None
        if fmt == "csv":
            pd.DataFrame(columns=list(TABLE_COLUMNS)).to_csv(path, index=False)

    def __enter__(self) -> _TableWriter:
        return self

    def __exit__(self, *_: object) -> None:
        if self.parquet is not None:
            self.parquet.close()

    def write(self, frame: pd.DataFrame) -> None:
        frame = frame.loc[:, list(TABLE_COLUMNS)]
        if self.parquet is not None:
            self.parquet.write_table(pa.Table.from_pandas(frame, _SCHEMA, preserve_index=False))
        else:
            frame.to_csv(self.path, mode="a", header=False, index=False)


def _refuse_existing(out: Path) -> None:
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty directory made for the export is fine
    if out.exists():
        raise OutputExists(f"{out} already exists: choose a new destination, exports never "
                           "overwrite or mix with another")  # fmt: skip


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _manifest_path(out: Path, fmt: str) -> Path:
    return out / MANIFEST if fmt == "psv" else out.with_name(f"{out.name}.{MANIFEST}")
