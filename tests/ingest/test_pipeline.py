"""The whole ingest path on real databases: PSV files in, every value accounted for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from wardwatch.ingest import psv
from wardwatch.ingest.files import ingest_path
from wardwatch.store.cohort import load_wide
from wardwatch.store.reads import quarantine_items, table_counts

PSV_DIR = Path(__file__).resolve().parents[1] / "data" / "psv"


def non_missing(wide: pd.DataFrame) -> int:
    return int(wide[list(psv.MEASURED)].notna().sum().sum())


def test_every_value_of_the_files_is_stored(pipeline):
    expected = psv.read_cohort(PSV_DIR)
    summary = ingest_path(pipeline, PSV_DIR)
    assert summary.received == non_missing(expected)
    assert summary.accepted == non_missing(expected)
    assert summary.quarantined_total == 0
    assert summary.patients == 3
    with pipeline.engine.connect() as conn:
        assert table_counts(conn)["observations"] == non_missing(expected)


def test_the_store_gives_back_the_files_hour_by_hour(pipeline):
    expected = psv.read_cohort(PSV_DIR)
    ingest_path(pipeline, PSV_DIR)
    with pipeline.engine.connect() as conn:
        stored = load_wide(conn)
    stored = stored.sort_values(["patient_id", "hour"]).reset_index(drop=True)
    expected = expected.sort_values(["patient_id", "hour"]).reset_index(drop=True)
    columns = [*psv.MEASURED, "Age", "Gender", "Unit1", "Unit2", "ICULOS", psv.LABEL]
    pd.testing.assert_frame_equal(stored[columns], expected[columns], check_dtype=False)
    np.testing.assert_allclose(stored["HospAdmTime"], expected["HospAdmTime"], atol=1e-6)


def test_ingesting_the_same_files_again_stores_nothing_twice(pipeline):
    first = ingest_path(pipeline, PSV_DIR)
    again = ingest_path(pipeline, PSV_DIR)
    assert again.accepted == 0
    assert again.duplicates == first.accepted
    with pipeline.engine.connect() as conn:
        assert table_counts(conn)["observations"] == first.accepted


def test_an_implausible_value_is_quarantined_with_a_reason(pipeline, tmp_path):
    text = (PSV_DIR / "p000001.psv").read_text().splitlines()
    header = text[0].split("|")
    row = text[5].split("|")
    row[header.index("HR")] = "900"
    row[header.index("Temp")] = "98.6"
    text[5] = "|".join(row)
    (tmp_path / "p900001.psv").write_text("\n".join(text) + "\n")
    summary = ingest_path(pipeline, tmp_path / "p900001.psv")
    assert summary.quarantined == {"implausible": 2}
    assert summary.accepted + summary.quarantined_total == summary.received
    with pipeline.engine.connect() as conn:
        reasons = sorted(item["reason"] for item in quarantine_items(conn))
    assert "Heart rate 900.0" in reasons[0]
    assert "°F" in reasons[1]
