"""Codes and units as they really arrive, from the public sample feeds.

``data/feed_samples.csv`` is a small extract (see ``data/README.md`` for sources and licences)
that always runs; the ``shared_data`` tests read the full sample data when it is present.
"""

import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from wardwatch.domain import Reported, reported_frame
from wardwatch.terminology import normalize, variables

DATA = Path(__file__).resolve().parent / "data"
WHEN = datetime(2020, 1, 1, tzinfo=UTC)


def as_reported(rows: list[dict]) -> pd.DataFrame:
    def number(text: str) -> float | None:
        return float(text) if text not in ("", None) else None

    return reported_frame([
        Reported(
            patient_id="p", encounter_id=None, system=r["system"], code=r["code"],
            display=r["display"] or None, value=number(r["value"]),
            value_text=r["value_text"] or None, comparator=None, unit=r["unit"] or None,
            effective_at=WHEN, source=r["source"], source_id=str(i),
        )
        for i, r in enumerate(rows)
    ])  # fmt: skip


def test_the_sample_feeds_normalize_as_checked_by_hand():
    samples = pd.read_csv(DATA / "feed_samples.csv", dtype=str, keep_default_na=False)
    result = normalize(as_reported(samples.to_dict("records")))
    observations = result.observations.set_index("source_id")
    reasons = result.rejections.set_index("source_id")["reason_code"]
    for i, expect in samples.iterrows():
        where = f"row {i}: {expect['source']} {expect['system']}|{expect['code']}"
        if expect["expect_reason"]:
            assert reasons.get(str(i)) == expect["expect_reason"], where
            continue
        got = observations.loc[str(i)]
        assert got["loinc"] == expect["expect_loinc"], where
        assert (got["variable"] if isinstance(got["variable"], str) else "") == expect[
            "expect_variable"
        ], where
        assert (got["unit"] if isinstance(got["unit"], str) else "") == expect["expect_unit"], where
        if expect["expect_value"]:
            assert got["value"] == pytest.approx(float(expect["expect_value"]), abs=1e-4), where


# --- the full shared data -------------------------------------------------------------------


def fhir_observations(bundle: dict, source: str) -> list[dict]:
    """Code, unit and value of every Observation (and component) in a bundle: no parser."""
    rows = []
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        if resource["resourceType"] != "Observation":
            continue
        for part in resource.get("component") or [resource]:
            coding = part["code"]["coding"][0]
            quantity = part.get("valueQuantity") or {}
            concept = part.get("valueCodeableConcept") or {}
            unit = quantity.get("code") or quantity.get("unit", "")
            rows.append({
                "source": source, "system": coding.get("system", ""), "code": coding["code"],
                "display": coding.get("display", ""), "value": quantity.get("value", ""),
                "value_text": concept.get("text", ""), "unit": unit,
            })  # fmt: skip
    return rows


@pytest.mark.shared_data
def test_synthea_bundles_feed_the_model_without_unit_errors(shared_data):
    rows = []
    for path in sorted((shared_data / "fhir").glob("synthea_*.json")):
        rows += fhir_observations(json.loads(path.read_text(encoding="utf-8")), "synthea")
    result = normalize(as_reported(rows))
    assert len(rows) > 500
    assert result.rejections.empty, result.rejections["reason"].unique().tolist()
    fed = set(result.observations["variable"].dropna())
    assert {"SBP", "DBP", "Glucose", "Creatinine", "Potassium", "HCO3", "Hgb", "WBC"} <= fed


@pytest.mark.shared_data
def test_openmrs_bundles_map_ciel_vitals_and_quarantine_the_rest(shared_data):
    rows = []
    with tarfile.open(shared_data / "fhir" / "openmrs_hiv_bundles.tar.gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith(".json"):
                bundle = json.load(archive.extractfile(member))
                if isinstance(bundle, dict):
                    rows += fhir_observations(bundle, "openmrs")
    result = normalize(as_reported(rows))
    observations, rejections = result.observations, result.rejections
    assert len(observations) + len(rejections) == len(rows) > 3000
    counts = observations["variable"].value_counts().to_dict()
    assert counts == {"HR": 50, "Temp": 50, "O2Sat": 50}
    assert set(rejections["reason_code"]) == {"invalid_loinc", "unmapped_code"}
    held = rejections[rejections["reason_code"] == "unmapped_code"]
    assert len(held) == 100 and held["reason"].str.contains("both readings").all()
    assert rejections["reason"].str.contains("not a LOINC code").sum() == len(rejections) - 100


def hl7_observations(text: str) -> list[dict]:
    """OBX code, value and unit from an ORU message: split on | and ^, no parser."""
    rows = []
    for segment in text.replace("\r", "\n").splitlines():
        fields = segment.split("|")
        if fields[0] != "OBX":
            continue
        identifier = fields[3].split("^")
        value = fields[5]
        rows.append({
            "source": "hl7v2", "system": identifier[2] if len(identifier) > 2 else "",
            "code": identifier[0], "display": identifier[1], "value": "",
            "value_text": value, "unit": fields[6],
        })  # fmt: skip
    return rows


@pytest.mark.shared_data
def test_hl7_sample_messages(shared_data):
    rows = []
    for path in sorted((shared_data / "hl7v2").glob("*.hl7")):
        rows += hl7_observations(path.read_text(encoding="utf-8"))
    result = normalize(as_reported(rows))
    by_code = result.observations.set_index("raw_code")
    assert by_code.at["20570-8", "variable"] == "Hct" and by_code.at["20570-8", "value"] == 40.1
    assert by_code.at["11125-2", "unit"] == "10*9/L"  # platelet morphology code: kept, not fed
    assert pd.isna(by_code.at["11125-2", "variable"])
    reasons = dict(
        zip(result.rejections["source_id"], result.rejections["reason_code"], strict=True)
    )
    # Pending results (OBX-11 "I") carry no value; the glucose OBX puts its coding system in the
    # wrong component, so "1554-5" and "1553-5" arrive under an unknown system.
    assert sorted(reasons.values()) == ["no_value", "not_numeric", "unmapped_code", "unmapped_code"]


# Set-A values outside variables.csv's plausible ranges, as documented in the design notes:
# probe readings of room air (Temp), impossible chemistry (HCO3 0, K 27.5, Hgb 32 ...), and
# oxygen flows in L/min charted as FiO2 (0.02-0.10, 7, 10) or FiO2 charted as 0.
SET_A_OUTSIDE = {
    "Temp": 4, "BaseExcess": 1, "HCO3": 2, "FiO2": 268, "Calcium": 1, "Chloride": 2,
    "Magnesium": 1, "Potassium": 1, "Hgb": 1,
}  # fmt: skip


@pytest.mark.shared_data
@pytest.mark.slow
def test_physionet_set_a_lies_within_the_plausible_ranges(shared_data):
    header, lines = b"", []
    with tarfile.open(shared_data / "physionet2019" / "training_setA.tar.gz") as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".psv"):
                header, _, body = archive.extractfile(member).read().partition(b"\n")
                lines.append(body)  # one parse of all 20,336 files is 20x faster than 20,336
    table = io.BytesIO(header + b"\n" + b"".join(lines))
    data = pd.read_csv(table, sep="|").rename(columns={"Gender": "Sex"})
    ranges = variables()
    outside = {}
    for name, row in ranges.iterrows():
        values = data[name].dropna()
        count = int(((values < row["low"]) | (values > row["high"])).sum())
        if count:
            outside[name] = count
    assert len(data) == 790_215
    assert outside == SET_A_OUTSIDE
    assert sum(outside.values()) / data[list(ranges.index)].notna().sum().sum() < 1e-4
