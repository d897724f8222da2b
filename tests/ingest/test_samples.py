"""Real sample messages through the real pipeline into real databases: specific values out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from wardwatch.demo import sample_dir
from wardwatch.ingest import mllp
from wardwatch.ingest.files import ingest_path
from wardwatch.ingest.listener import hl7_handler
from wardwatch.store.reads import patient_observations, quarantine_items, table_counts

HL7 = sample_dir() / "hl7v2"
FHIR = sample_dir() / "fhir"


def one(frame, **where):
    for column, value in where.items():
        frame = frame[frame[column] == value]
    assert len(frame) == 1, frame
    return frame.iloc[0]


def test_glucose_over_mllp_is_acked_after_commit_and_stored_once(pipeline):
    text = (HL7 / "sample_oru_r01.hl7").read_text().replace("\n", "\r")
    with mllp.background_server(hl7_handler(pipeline)) as (host, port):
        first, resent = mllp.send(host, port, [text, text], timeout=30)
    assert "MSA|AA|CNTRL-3456" in first
    assert "MSA|AA|CNTRL-3456" in resent and "already received" in resent
    with pipeline.engine.connect() as conn:
        stored = patient_observations(conn, "555-44-4444")
        counts = table_counts(conn)
        reasons = {q["source_id"]: q["reason_code"] for q in quarantine_items(conn)}
    glucose = one(stored, loinc="1554-5")
    assert glucose["variable"] == "Glucose"
    assert glucose["value"] == 182.0
    assert glucose["unit"] == "mg/dL"
    assert pd.isna(glucose["comparator"])
    assert glucose["effective_at"] == datetime(2002, 2, 15, 7, 30, tzinfo=UTC)
    assert counts["observations"] == 1
    assert reasons == {
        "ELAB-3|CNTRL-3456|2": "unmapped_code",  # "1553-5" fails the LOINC check digit
        "ELAB-3|CNTRL-3456|PID1-7": "invalid_birth_date",  # PID-7 "196203520"
    }


def test_a_truncated_message_is_answered_ae_and_kept_whole(pipeline):
    text = (HL7 / "sample_oru_r01.hl7").read_text().replace("\n", "\r")
    truncated = text.split("\rPID")[0]  # MSH only: no patient, no results
    with mllp.background_server(hl7_handler(pipeline)) as (host, port):
        (answer,) = mllp.send(host, port, [truncated], timeout=30)
    assert "MSA|AE|CNTRL-3456" in answer
    with pipeline.engine.connect() as conn:
        (item,) = quarantine_items(conn)
    assert item["reason_code"] == "unreadable"
    assert item["payload"] == truncated
    assert "PID" in item["reason"]


def test_a_cbc_file_stores_counts_and_holds_pending_results(pipeline):
    summary = ingest_path(pipeline, HL7 / "lab_oru_1.hl7")
    with pipeline.engine.connect() as conn:
        stored = patient_observations(conn, "10006579")
    hematocrit = one(stored, loinc="20570-8")
    assert (hematocrit["variable"], hematocrit["value"], hematocrit["unit"]) == ("Hct", 40.1, "%")
    assert hematocrit["effective_at"] == datetime(2014, 10, 6, 8, 30, tzinfo=UTC)
    neutrophils = one(stored, loinc="23761-0")
    assert pd.isna(neutrophils["variable"]) and neutrophils["value"] == 72.0  # kept, not fed
    assert summary.received == summary.accepted + summary.quarantined_total
    # OBX 1 (leukocytes) and OBX 3 (hemoglobin) are pending (status I) with no value yet.
    assert summary.quarantined == {"no_value": 1, "not_numeric": 1}


def test_a_synthea_bundle_stores_split_blood_pressure_and_glucose(pipeline):
    summary = ingest_path(pipeline, FHIR / "synthea_patient_a.json")
    assert summary.ignored["Claim"] == 22
    with pipeline.engine.connect() as conn:
        stored = patient_observations(conn, "5cbc121b-cd71-4428-b8b7-31e53eba8184")
    first_visit = stored[stored["effective_at"] == datetime(2010, 3, 1, 11, 22, 41, tzinfo=UTC)]
    systolic = one(first_visit, variable="SBP")
    diastolic = one(first_visit, variable="DBP")
    assert systolic["value"] == pytest.approx(119.114257)
    assert diastolic["value"] == pytest.approx(84.516373)
    assert systolic["unit"] == "mm[Hg]"
    assert one(first_visit, loinc="2339-0")["value"] == pytest.approx(87.844352)


def _bundle(*observations: dict) -> dict:
    patient = {"resourceType": "Patient", "id": "pt-1", "gender": "female"}
    entries = [patient, *observations]
    entry = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in entries]
    return {"resourceType": "Bundle", "type": "collection", "entry": entry}


def _observation(ident: str, system: str, code: str, value: float, unit: str) -> dict:
    return {
        "resourceType": "Observation", "id": ident, "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/pt-1"},
        "effectiveDateTime": "2024-03-01T08:00:00+01:00",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                          "code": unit},
    }  # fmt: skip


def test_local_codes_are_mapped_and_false_loinc_is_caught(pipeline, tmp_path: Path):
    bundle = _bundle(
        _observation("o1", "urn:oid:1.2.3.4.5.local", "999", 2.4, "mmol/L"),
        _observation("o2", "urn:oid:1.2.3.4.5.local", "12345", 7.0, "mmol/L"),
        _observation("o3", "http://loinc.org", "5087AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 92, "/min"),
        _observation("o4", "http://loinc.org", "9999AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1, "/min"),
        _observation("o5", "http://loinc.org", "2345-7", 5.5, "mmol/L"),
        _observation("o6", "http://loinc.org", "8310-5", 98.6, "Cel"),
    )
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    summary = ingest_path(pipeline, tmp_path / "bundle.json")
    with pipeline.engine.connect() as conn:
        stored = patient_observations(conn, "pt-1")
        kept_out = {q["source_id"]: q for q in quarantine_items(conn)}
    assert one(stored, source_id="o1")[["variable", "value"]].tolist() == ["Lactate", 2.4]
    assert one(stored, source_id="o3")[["variable", "value"]].tolist() == ["HR", 92.0]
    glucose = one(stored, source_id="o5")
    assert (glucose["unit"], round(glucose["value"], 1)) == ("mg/dL", 99.1)
    assert glucose["effective_at"] == datetime(2024, 3, 1, 7, 0, tzinfo=UTC)
    assert kept_out["o2"]["reason_code"] == "unmapped_code"
    assert kept_out["o4"]["reason_code"] == "invalid_loinc"
    assert kept_out["o6"]["reason_code"] == "implausible" and "°F" in kept_out["o6"]["reason"]
    assert summary.accepted + summary.quarantined_total == summary.received == 6
