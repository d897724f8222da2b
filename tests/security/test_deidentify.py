"""The de-identified export, checked field by field: what leaves is pseudonymous and dateless."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from tests.security.samples import OLD_ID, SAMPLE_IDS, ingest_samples

from wardwatch.demo import sample_dir
from wardwatch.ingest.files import ingest_path
from wardwatch.ingest.psv import read_cohort
from wardwatch.security.consent import set_consent
from wardwatch.security.deidentify import (
    KEPT,
    MANIFEST,
    PSV_COLUMNS,
    SALT_ENV,
    TABLE_COLUMNS,
    OutputExists,
    Pseudonyms,
    SaltError,
    export_deidentified,
    generalize_age,
    load_salt,
)
from wardwatch.store.cohort import load_wide
from wardwatch.store.schema import encounters, patients

SALT = b"s" * 16 + b"0123456789abcdef"  # 32 bytes
OTHER_SALT = b"another secret salt of 32 bytes."
AT = datetime(2024, 3, 1, tzinfo=UTC)
WHO = {"by": "alice", "role": "nurse", "reason": "patient request"}
DATE_TEXT = re.compile(rb"(?:19|20)\d\d[-/.](?:0[1-9]|1[0-2])[-/.]\d\d|\d\d:\d\d")


# ------------------------------------------------------------------ salt and pseudonyms


def test_pseudonyms_are_keyed_stable_and_kind_separated():
    one, same, other = Pseudonyms(SALT), Pseudonyms(SALT), Pseudonyms(OTHER_SALT)
    assert one.patient("p000200") == same.patient("p000200")
    assert one.patient("p000200") != other.patient("p000200")
    assert one.patient("p000200") != one.stay("p000200")
    assert one.patient("p000200") != one.patient("p000201")
    assert re.fullmatch(r"[0-9a-f]{16}", one.patient("p000200"))
    assert SALT.decode() not in repr(one)  # a logged object never shows the secret


def test_a_short_salt_is_refused_with_how_to_make_one():
    with pytest.raises(SaltError, match="token_hex"):
        Pseudonyms(b"x" * 31)


def test_salt_from_a_file_ignores_one_trailing_newline(tmp_path):
    path = tmp_path / "deid.salt"
    path.write_bytes(SALT + b"\n")
    assert load_salt(path, environ={}) == SALT


def test_salt_from_the_environment(tmp_path):
    assert load_salt(None, environ={SALT_ENV: SALT.decode()}) == SALT


@pytest.mark.parametrize("problem", ["none", "short", "missing"])
def test_no_usable_salt_is_an_error(tmp_path, problem):
    path = {"none": None, "short": tmp_path / "s", "missing": tmp_path / "absent"}[problem]
    if problem == "short":
        path.write_text("too short\n")
    with pytest.raises(SaltError):
        load_salt(path, environ={})


def test_ages_are_whole_years_and_over_89_is_90():
    ages = pd.Series([19.41, 45.7, 89.99, 90.0, 97.31, 104.0, np.nan])
    out = generalize_age(ages)
    assert out.iloc[:-1].tolist() == [19, 45, 89, 90, 90, 90]
    assert np.isnan(out.iloc[-1])


# ------------------------------------------------------------------ the export from the store


@pytest.fixture
def store(engine, pipeline, tmp_path):
    """Sample PhysioNet stays plus the shipped HL7 v2 and FHIR messages (whose ids include a
    social-security-like number), with one training opt-out and one scoring opt-out."""
    ids = ingest_samples(pipeline, tmp_path / "psv")
    for folder in ("hl7v2", "fhir"):
        ingest_path(pipeline, sample_dir() / folder)
    with engine.begin() as conn:
        set_consent(conn, SAMPLE_IDS[0], scoring=None, training=False, at=AT, **WHO)
        set_consent(conn, SAMPLE_IDS[1], scoring=False, training=None, at=AT, **WHO)
    return ids


def _export(engine, out, salt=SALT, fmt="psv", since=None):
    with engine.connect() as conn:
        return export_deidentified(conn, out, salt=salt, fmt=fmt, since=since)


def _originals(engine):
    """Every patient and encounter id, and the range of every stored date."""
    with engine.connect() as conn:
        pids = list(conn.execute(select(patients.c.patient_id)).scalars())
        stays = conn.execute(select(encounters)).mappings().all()
    moments = [
        row[c]
        for row in stays
        for c in ("admitted_at", "hospital_admitted_at", "discharged_at", "records_start_at")
        if row[c] is not None
    ]
    return pids + [row["encounter_id"] for row in stays], min(moments), max(moments)


def _files(out: Path) -> list[Path]:
    """Every file an export wrote: a directory's files, or the table and its manifest."""
    if out.is_dir():
        return sorted(p for p in out.rglob("*") if p.is_file())
    return [out, out.with_name(f"{out.name}.{MANIFEST}")]


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="|" if path.suffix == ".psv" else ",")


def _assert_no_identifiers(out: Path, ids: list[str]) -> None:
    for path in _files(out):
        for original in ids:
            assert original not in path.name
            assert original.encode() not in path.read_bytes(), (original, path.name)


def _assert_no_dates(frame: pd.DataFrame, first: datetime, last: datetime) -> None:
    """No datetime column, no date-like text, no number that is an instant in the range (as
    epoch seconds to nanoseconds; values under a million are clinical values or hours, and
    would match the seconds around 1970 only)."""
    assert not any(pd.api.types.is_datetime64_any_dtype(t) for t in frame.dtypes)
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            numbers = values.to_numpy(dtype="float64")
            for unit in (1, 1e3, 1e6, 1e9):  # epoch seconds, ms, µs, ns
                low, high = first.timestamp() * unit, last.timestamp() * unit
                instant = (numbers >= low) & (numbers <= high) & (np.abs(numbers) >= 1e6)
                assert not instant.any(), column
        else:
            text = values.dropna().astype(str)
            assert not text.str.contains(DATE_TEXT.pattern.decode()).any(), column


def test_psv_export_holds_no_identifier_and_no_date_field_by_field(engine, store, tmp_path):
    out = tmp_path / "export"
    done = _export(engine, out)
    ids, first, last = _originals(engine)
    _assert_no_identifiers(out, ids)
    for path in _files(out):
        if path.suffix == ".psv":
            frame = _read(path)
            assert tuple(frame.columns) == PSV_COLUMNS  # each justified in KEPT
            assert set(frame.columns) <= set(KEPT)
            _assert_no_dates(frame, first, last)
            assert re.fullmatch(r"[0-9a-f]{16}_[0-9a-f]{16}", path.stem)
        assert not DATE_TEXT.search(path.read_bytes()), path.name
    assert done.stays == len(list(out.glob("*.psv")))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_export_holds_no_identifier_and_no_date(engine, store, tmp_path, fmt):
    out = tmp_path / f"cohort.{fmt}"
    done = _export(engine, out, fmt=fmt)
    ids, first, last = _originals(engine)
    _assert_no_identifiers(out, ids)
    frame = _read(out)
    assert tuple(frame.columns) == TABLE_COLUMNS
    assert set(frame.columns) <= set(KEPT)
    _assert_no_dates(frame, first, last)
    assert len(frame) == done.rows
    assert frame["stay"].nunique() == done.stays
    for path in _files(out)[int(fmt == "parquet") :]:  # parquet is binary: its cells are above
        assert not DATE_TEXT.search(path.read_bytes()), path.name


def test_ages_leave_capped_and_everything_else_as_stored(engine, store, tmp_path):
    _export(engine, tmp_path / "export")
    exported = read_cohort(tmp_path / "export")
    names = Pseudonyms(SALT)
    old = f"{names.patient(OLD_ID)}_{names.stay(OLD_ID + '-icu')}"
    ages = exported.groupby("patient_id")["Age"].first()
    assert ages[old] == 90
    assert ages.max() <= 90
    assert (ages.dropna() == np.floor(ages.dropna())).all()

    source = SAMPLE_IDS[2]
    with engine.connect() as conn:
        stored = load_wide(conn, encounter_ids=[f"{source}-icu"])
    mine = exported.loc[exported["patient_id"].str.startswith(names.patient(source))]
    measured = [c for c in PSV_COLUMNS if c not in ("Age",)]
    pd.testing.assert_frame_equal(
        mine[measured].reset_index(drop=True), stored[measured].reset_index(drop=True)
    )


def test_opted_out_of_training_are_absent_and_scoring_opt_outs_present(engine, store, tmp_path):
    done = _export(engine, tmp_path / "cohort.csv", fmt="csv")
    frame = _read(tmp_path / "cohort.csv")
    names = Pseudonyms(SALT)
    assert names.patient(SAMPLE_IDS[0]) not in set(frame["patient"])
    assert names.patient(SAMPLE_IDS[1]) in set(frame["patient"])
    assert done.excluded_stays == 1


def test_same_salt_same_pseudonyms_other_salt_unlinkable(engine, store, tmp_path):
    _export(engine, tmp_path / "a")
    _export(engine, tmp_path / "b.csv", fmt="csv")
    _export(engine, tmp_path / "c.parquet", salt=OTHER_SALT, fmt="parquet")
    first = {p.stem.split("_")[0] for p in (tmp_path / "a").glob("*.psv")}
    second = set(_read(tmp_path / "b.csv")["patient"])
    third = set(_read(tmp_path / "c.parquet")["patient"])
    assert first == second
    assert len(third) == len(first)
    assert not first & third


def test_since_keeps_later_admissions(engine, store, tmp_path):
    since = datetime(2019, 1, 1, tzinfo=UTC)
    everything = _export(engine, tmp_path / "all.csv", fmt="csv")
    recent = _export(engine, tmp_path / "recent.csv", fmt="csv", since=since)
    with engine.connect() as conn:
        query = select(encounters.c.encounter_id).where(encounters.c.admitted_at >= since)
        expected = set(conn.execute(query).scalars()) - {f"{SAMPLE_IDS[0]}-icu"}
    names = Pseudonyms(SALT)
    assert set(_read(tmp_path / "recent.csv")["stay"]) == {names.stay(e) for e in expected}
    assert 0 < recent.stays < everything.stays


def test_manifest_says_what_was_kept_and_removed(engine, store, tmp_path):
    _export(engine, tmp_path / "export")
    manifest = json.loads((tmp_path / "export" / MANIFEST).read_text())
    assert set(manifest["columns"]) == set(PSV_COLUMNS)
    assert "hours since" in manifest["time"]
    assert "patient id / MRN" in manifest["removed"]


def test_an_existing_destination_is_never_overwritten(engine, store, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExists):
        _export(engine, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "export.partial").exists()


def test_a_failed_export_leaves_nothing(engine, store, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        _export(engine, tmp_path / "export")
    assert list(tmp_path.glob("export*")) == []
