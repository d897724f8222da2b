import dataclasses
import gc
import weakref
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wardwatch.domain import REJECTION_COLUMNS, Reported, reported_frame
from wardwatch.terminology import NORMALIZED_COLUMNS, LocalCodeMap, normalize

WHEN = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
CIEL = {
    "pulse": "5087AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "systolic": "5085AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "return visit": "5096AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
}


def item(code, value=None, unit=None, *, system=LOINC, text=None, comparator=None, display=None):
    return Reported(
        patient_id="patient-1",
        encounter_id="encounter-1",
        system=system,
        code=code,
        display=display,
        value=value,
        value_text=text,
        comparator=comparator,
        unit=unit,
        effective_at=WHEN,
        source="test",
        source_id="0",
        payload=f"OBX|{code}|{value}|{unit}",
    )


def run(*items, code_map=None):
    numbered = [dataclasses.replace(it, source_id=str(i)) for i, it in enumerate(items)]
    return normalize(reported_frame(numbered), code_map)


def accepted(*items, code_map=None):
    result = run(*items, code_map=code_map)
    assert result.rejections.empty, result.rejections["reason"].tolist()
    return result.observations.iloc[0]


def refused(*items, code_map=None):
    result = run(*items, code_map=code_map)
    assert result.observations.empty
    return result.rejections.iloc[0]


# --- codes -----------------------------------------------------------------------------------


def test_loinc_glucose_in_mmol_per_litre_arrives_in_mg_per_decilitre():
    row = accepted(item("2345-7", 5.5, "mmol/L"))
    assert (row["loinc"], row["variable"], row["unit"]) == ("2345-7", "Glucose", "mg/dL")
    assert row["value"] == pytest.approx(99.1, abs=0.05)
    assert (row["raw_value"], row["raw_unit"], row["raw_code"]) == ("5.5", "mmol/L", "2345-7")


@pytest.mark.parametrize("system", ["LN", "LOINC", "http://loinc.org"])
def test_every_spelling_of_the_loinc_system(system):
    assert accepted(item("8867-4", 72.0, "/min", system=system))["variable"] == "HR"


def test_local_code_999_maps_to_lactate_with_the_maps_default_unit():
    row = accepted(item("999", 2.1, None, system="urn:oid:1.2.3.4.5.local"))
    assert (row["loinc"], row["variable"], row["value"], row["unit"]) == (
        "2524-7",
        "Lactate",
        2.1,
        "mmol/L",
    )
    assert (row["raw_system"], row["raw_code"]) == ("urn:oid:1.2.3.4.5.local", "999")


def test_a_sent_unit_wins_over_the_maps_default():
    row = accepted(item("999", 18.02, "mg/dL", system="urn:oid:1.2.3.4.5.local"))
    assert row["value"] == pytest.approx(2.0, rel=1e-3)


def test_an_unmapped_local_code_is_quarantined_with_where_to_map_it():
    row = refused(item("12345", 7.0, "mg/dL", system="99LAB", display="Local magnesium"))
    assert row["reason_code"] == "unmapped_code"
    assert "code '12345' (Local magnesium) from system '99LAB'" in row["reason"]
    assert "local_codes.csv" in row["reason"]
    assert (row["source"], row["source_id"], row["patient_id"]) == ("test", "0", "patient-1")
    assert row["payload"] == "OBX|12345|7.0|mg/dL"


def test_a_ciel_code_under_the_loinc_system_is_mapped_through_the_local_map():
    row = accepted(item(CIEL["pulse"], 136.4, "beats/minute", display="PULSE"))
    assert (row["loinc"], row["variable"], row["value"], row["unit"]) == (
        "8867-4",
        "HR",
        136.4,
        "/min",
    )
    assert row["raw_code"] == CIEL["pulse"]


def test_a_ciel_code_not_in_the_map_is_quarantined_as_not_loinc():
    row = refused(item(CIEL["return visit"], display="Return visit date"))
    assert row["reason_code"] == "invalid_loinc"
    assert f"code '{CIEL['return visit']}' (Return visit date) is labelled LOINC" in row["reason"]
    assert "not a LOINC code (bad format or check digit)" in row["reason"]
    assert "local code map" in row["reason"] and "local_codes.csv" in row["reason"]


def test_a_code_held_back_in_the_map_is_quarantined_with_the_maps_note():
    row = refused(item(CIEL["systolic"], 120.0, "mmHg"))
    assert row["reason_code"] == "unmapped_code"
    assert "held back" in row["reason"] and "both readings" in row["reason"]


def test_an_empty_hospital_map_maps_nothing():
    row = refused(item(CIEL["pulse"], 72.0, "/min"), code_map=LocalCodeMap.from_rows([]))
    assert row["reason_code"] == "invalid_loinc"


def test_a_hospital_map_can_map_what_the_example_does_not():
    hospital = LocalCodeMap.from_rows([(LOINC, CIEL["systolic"], "8480-6", "mm[Hg]", "checked")])
    row = accepted(item(CIEL["systolic"], 120.0, "mmHg"), code_map=hospital)
    assert row["variable"] == "SBP"


def test_a_hospital_map_can_correct_a_misused_loinc_code():
    # The HL7 sample sends platelet counts under the platelet *morphology* code 11125-2.
    assert pd.isna(accepted(item("11125-2", 221.0, "giga.l-1", system="LN"))["variable"])
    fixed = LocalCodeMap.from_rows([("LN", "11125-2", "777-3", "", "our analyser misuses it")])
    row = accepted(item("11125-2", 221.0, "giga.l-1", system="LN"), code_map=fixed)
    assert (row["loinc"], row["variable"], row["value"]) == ("777-3", "Platelets", 221.0)


def test_physionet_columns_are_model_variables_in_canonical_units():
    row = accepted(item("Lactate", 2.4, None, system="physionet2019"))
    assert (row["loinc"], row["variable"], row["value"], row["unit"]) == (
        "32693-4",
        "Lactate",
        2.4,
        "mmol/L",
    )
    fio2 = accepted(item("FiO2", 0.5, None, system="physionet2019"))
    assert (fio2["loinc"], fio2["value"], fio2["unit"]) == ("3150-0", 0.5, "1")


@pytest.mark.parametrize("column", ["Gender", "ICULOS", "SepsisLabel", "Heart rate"])
def test_physionet_columns_that_are_not_measurements_are_refused(column):
    row = refused(item(column, 1.0, None, system="physionet2019"))
    assert row["reason_code"] == "unmapped_code"
    assert "not a measured PhysioNet 2019 column" in row["reason"]


@pytest.mark.parametrize("code", ["2345-8", "1553-5", "2345", "glucose"])
def test_a_code_labelled_loinc_that_fails_the_check_is_quarantined(code):
    assert refused(item(code, 1.0, "mg/dL", system="LN"))["reason_code"] == "invalid_loinc"


def test_hemoglobin_and_fasting_glucose_are_kept_as_model_variables():
    result = run(
        item("718-7", 13.2, "g/dL"),
        item("20509-6", 12.9, "g/dL"),
        item("59260-0", 8.0, "mmol/L"),
        item("1558-6", 95.0, "mg/dL"),
        item("1554-5", None, "mg/dl", text="^182", system="LN"),
    )
    rows = result.observations
    assert result.rejections.empty
    assert list(rows["variable"]) == ["Hgb", "Hgb", "Hgb", "Glucose", "Glucose"]
    assert rows["value"].tolist() == pytest.approx([13.2, 12.9, 12.89, 95.0, 182.0], abs=0.01)


def test_a_valid_loinc_the_model_ignores_is_kept_as_sent():
    row = accepted(item("2532-0", 250.0, "u/l"))  # LDH: valid, not in loinc.csv
    assert (row["loinc"], row["value"], row["unit"]) == ("2532-0", 250.0, "U/L")
    assert pd.isna(row["variable"])


def test_hba1c_is_not_hemoglobin():
    row = accepted(item("4548-4", 5.8, "%"))
    assert pd.isna(row["variable"]) and row["unit"] == "%"


def test_an_unreadable_unit_of_an_ignored_code_is_kept_as_sent():
    assert accepted(item("2532-0", 250.0, "blorps"))["unit"] == "blorps"


# --- values ----------------------------------------------------------------------------------


def test_a_text_value_for_a_model_variable_is_quarantined_with_the_value():
    row = refused(item("2524-7", None, "mmol/L", text="pending"))
    assert row["reason_code"] == "not_numeric"
    assert row["reason"] == "Lactate (LOINC 2524-7) needs a number but the value sent was 'pending'"


def test_no_value_at_all_for_a_model_variable():
    row = refused(item("20509-6", None, None, system="LN"))
    assert row["reason_code"] == "not_numeric"  # the value is judged before the unit
    assert row["reason"] == "Hgb (LOINC 20509-6) needs a number but no value was sent"


def test_a_text_value_for_an_ignored_code_is_kept():
    row = accepted(item("72166-2", None, None, text="Never smoker"))
    assert np.isnan(row["value"])
    assert row["value_text"] == row["raw_value"] == "Never smoker"


def test_an_ignored_code_with_no_value_at_all_is_quarantined():
    row = refused(item("11156-7", None, None, system="LN"))
    assert row["reason_code"] == "no_value"
    assert "no value was sent for LOINC 11156-7" in row["reason"]


@pytest.mark.parametrize(
    ("text", "value", "comparator"),
    [
        ("<0.5", 0.5, "<"),
        ("> 10", 10.0, ">"),
        (">=7", 7.0, ">="),
        ("=2", 2.0, None),
        ("1.7", 1.7, None),
    ],
)
def test_numbers_sent_as_text_are_read_with_their_comparator(text, value, comparator):
    row = accepted(item("2524-7", None, "mmol/L", text=text))
    assert row["value"] == value
    assert (row["comparator"] if isinstance(row["comparator"], str) else None) == comparator
    assert row["raw_value"] == text


def test_a_separate_comparator_is_kept():
    assert accepted(item("2524-7", 0.5, "mmol/L", comparator="<"))["comparator"] == "<"


# --- units -----------------------------------------------------------------------------------


def test_an_unknown_unit_is_quarantined_with_the_reason():
    row = refused(item("2524-7", 2.0, "mmol/Lx"))
    assert row["reason_code"] == "unknown_unit"
    assert "unit 'mmol/Lx' is not a unit wardwatch can read" in row["reason"]
    assert "(LOINC 2524-7)" in row["reason"]


def test_a_unit_of_the_wrong_kind_is_quarantined():
    row = refused(item("59408-5", 97.0, "mg/dL"))
    assert row["reason_code"] == "unit_mismatch"
    assert "unit 'mg/dL' cannot express O2Sat (canonical '%')" in row["reason"]


def test_a_missing_unit_is_quarantined_unless_the_variable_needs_none():
    row = refused(item("2524-7", 2.0, None))
    assert row["reason_code"] == "missing_unit"
    assert accepted(item("11558-4", 7.31, None))["value"] == 7.31  # pH
    assert accepted(item("3150-0", 0.4, None))["value"] == 0.4  # FiO2


@pytest.mark.parametrize(
    ("value", "unit", "fio2"),
    [
        (40.0, "%", 0.4),
        (0.4, "1", 0.4),
        (40.0, "1", 0.4),  # a fraction cannot exceed 1: a percentage sent with the wrong unit
        (40.0, None, 0.4),
        (1.0, "1", 1.0),  # pure oxygen
        (7.0, "1", 0.07),  # oxygen flow charted as FiO2: left below room air for the gate
        (0.4, "%", 0.004),  # a fraction sent as a percentage: left for the gate
    ],
)
def test_fio2(value, unit, fio2):
    assert accepted(item("3150-0", value, unit))["value"] == pytest.approx(fio2)


def test_fahrenheit_is_converted_but_a_wrongly_labelled_celsius_is_left_to_the_gate():
    assert accepted(item("8310-5", 98.6, "[degF]"))["value"] == pytest.approx(37.0)
    assert accepted(item("8310-5", 98.6, "Cel"))["value"] == 98.6


# --- the frames ------------------------------------------------------------------------------


def test_columns_and_dtypes():
    result = run(item("2345-7", 90.0, "mg/dL"), item("2345-8", 90.0, "mg/dL"))
    assert tuple(result.observations.columns) == NORMALIZED_COLUMNS
    assert tuple(result.rejections.columns) == REJECTION_COLUMNS
    assert result.observations["value"].dtype == "float64"
    assert str(result.observations["effective_at"].dtype) == "datetime64[us, UTC]"


def test_every_row_lands_in_exactly_one_frame_under_its_own_index():
    frame = reported_frame(
        [item("2345-7", 90.0, "mg/dL"), item("2345-8", 1.0), item("718-7", 13.0, "g/dL")]
    )
    frame.index = [10, 20, 30]
    result = normalize(frame)
    assert list(result.observations.index) == [10, 30]
    assert list(result.rejections.index) == [20]


def test_repeated_index_labels_are_fine():
    frame = reported_frame(
        [
            item("2345-7", 90.0, "mg/dL"),
            item("2345-8", 1.0),
            item("2524-7", None, "mmol/L", text="x"),
        ]
    )
    frame.index = [0, 0, 0]
    result = normalize(frame)
    assert len(result.observations) == 1
    assert sorted(result.rejections["reason_code"]) == ["invalid_loinc", "not_numeric"]


def test_an_empty_frame():
    result = normalize(reported_frame([]))
    assert result.observations.empty and result.rejections.empty
    assert tuple(result.observations.columns) == NORMALIZED_COLUMNS


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="value_text"):
        normalize(reported_frame([item("2345-7", 1.0, "mg/dL")]).drop(columns=["value_text"]))


# One of each kind of row, to mix into big frames.
KINDS = [
    item("2345-7", 5.5, "mmol/L"),
    item("999", 2.1, None, system="urn:oid:1.2.3.4.5.local"),
    item("12345", 7.0, "mg/dL", system="99LAB"),
    item(CIEL["pulse"], 136.4, "beats/minute"),
    item(CIEL["return visit"]),
    item(CIEL["systolic"], 120.0, "mmHg"),
    item("718-7", 13.2, "g/dL"),
    item("1554-5", None, "mg/dl", text="^182", system="LN"),
    item("2524-7", 2.0, "mmol/Lx"),
    item("2524-7", None, "mmol/L", text="pending"),
    item("2524-7", None, "mmol/L", text="<0.5"),
    item("3150-0", 40.0, "1"),
    item("8310-5", 98.6, "[degF]"),
    item("72166-2", None, None, text="Never smoker"),
    item("11156-7", None, None, system="LN"),
    item("59408-5", 97.0, "mg/dL"),
]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(range(len(KINDS))), min_size=1, max_size=60), st.data())
def test_one_row_alone_equals_the_same_row_inside_a_big_frame(kinds, data):
    items = [dataclasses.replace(KINDS[k], source_id=str(i)) for i, k in enumerate(kinds)]
    big = normalize(reported_frame(items))
    position = data.draw(st.integers(min_value=0, max_value=len(items) - 1))
    one = reported_frame([items[position]])
    one.index = [position]
    alone = normalize(one)
    pd.testing.assert_frame_equal(
        alone.observations, big.observations.loc[big.observations.index == position]
    )
    pd.testing.assert_frame_equal(
        alone.rejections, big.rejections.loc[big.rejections.index == position]
    )


def test_a_big_frame_of_mixed_rows_partitions_and_converts():
    items = [dataclasses.replace(KINDS[i % len(KINDS)], source_id=str(i)) for i in range(16_000)]
    result = normalize(reported_frame(items))
    assert len(result.observations) + len(result.rejections) == 16_000
    counts = result.rejections["reason_code"].value_counts().to_dict()
    assert counts == {
        "unmapped_code": 2_000, "invalid_loinc": 1_000, "unknown_unit": 1_000,
        "not_numeric": 1_000, "no_value": 1_000, "unit_mismatch": 1_000,
    }  # fmt: skip
    glucose = result.observations[result.observations["raw_code"] == "2345-7"]
    assert glucose["value"].round(1).unique().tolist() == [99.1]


# --- small frames: one path for a message and for a bulk load ----------------------------------

# An HL7 v2 ORU message: five OBX rows, as wardwatch.ingest.hl7v2 reports them.
MESSAGE = [
    ("8867-4", 72.0, "/min"),
    ("9279-1", 18.0, "/min"),
    ("8310-5", 37.2, "Cel"),
    ("2524-7", 2.1, "mmol/L"),
    ("777-3", 221.0, "10*3/uL"),
]


def message(*rows, text=False):
    return [
        Reported(
            patient_id="patient-9",
            encounter_id=None,
            system="LN",
            code=code,
            display=None,
            value=value,
            value_text=str(value) if text and value is not None else None,
            comparator=None,
            unit=unit,
            effective_at=WHEN,
            source="hl7v2",
            source_id=f"MSG00001|{i + 1}",
        )
        for i, (code, value, unit) in enumerate(rows)
    ]


@pytest.mark.parametrize(
    "rows",
    [
        MESSAGE,
        [*MESSAGE[:3], ("2524-7", 2.0, "mmol/Lx"), ("2524-7", None, "mmol/L")],
        [("11156-7", None, None), ("2345-8", 1.0, "mg/dL"), *MESSAGE[:3]],
    ],
    ids=["all accepted", "bad unit and no number", "no value and invalid code"],
)
@pytest.mark.parametrize("text", [False, True], ids=["numbers", "numbers with text"])
def test_a_message_alone_equals_its_rows_inside_a_big_frame(rows, text):
    items = message(*rows, text=text)
    bulk = [dataclasses.replace(KINDS[i % len(KINDS)], source_id=str(i)) for i in range(20_000)]
    positions = [3, 4_999, 5_000, 12_345, 19_999][: len(items)]
    for position, it in zip(positions, items, strict=True):
        bulk[position] = it
    big = normalize(reported_frame(bulk))
    alone_frame = reported_frame(items)
    alone_frame.index = positions
    alone = normalize(alone_frame)
    assert len(alone.observations) + len(alone.rejections) == len(items)
    pd.testing.assert_frame_equal(
        alone.observations, big.observations[big.observations.index.isin(positions)]
    )
    pd.testing.assert_frame_equal(
        alone.rejections, big.rejections[big.rejections.index.isin(positions)]
    )


def test_a_message_of_loinc_vitals_and_labs():
    result = normalize(reported_frame(message(*MESSAGE)))
    assert result.rejections.empty
    rows = result.observations
    assert list(rows["variable"]) == ["HR", "Resp", "Temp", "Lactate", "Platelets"]
    assert list(rows["unit"]) == ["/min", "/min", "Cel", "mmol/L", "10*3/uL"]
    assert list(rows["raw_value"]) == ["72", "18", "37.2", "2.1", "221"]
    assert list(rows["source_id"]) == [f"MSG00001|{i}" for i in range(1, 6)]
    assert all(str(rows[c].dtype) == "str" for c in NORMALIZED_COLUMNS if c not in _NOT_TEXT)


_NOT_TEXT = ("value", "effective_at")


def test_columns_of_object_dtype_give_the_same_frames():
    items = [dataclasses.replace(k, source_id=str(i)) for i, k in enumerate(KINDS)]
    typed = normalize(reported_frame(items))
    untyped = normalize(reported_frame(items).astype(object))
    pd.testing.assert_frame_equal(untyped.observations, typed.observations)
    pd.testing.assert_frame_equal(untyped.rejections, typed.rejections)


def test_each_code_map_keeps_its_own_plans():
    frame = reported_frame([item("12345", 90.0, "mg/dL", system="99LAB")])
    mapped = LocalCodeMap.from_rows([("99LAB", "12345", "2345-7", "", "glucose")])
    held = LocalCodeMap.from_rows([("99LAB", "12345", "", "", "not this one")])
    for _ in range(2):  # the second round reads every plan from the caches
        assert normalize(frame, mapped).observations["variable"].tolist() == ["Glucose"]
        refused_row = normalize(frame, held).rejections.iloc[0]
        assert refused_row["reason"].endswith("not this one")
        assert normalize(frame).rejections["reason_code"].tolist() == ["unmapped_code"]


def test_kept_plans_do_not_keep_a_code_map_alive():
    hospital = LocalCodeMap.from_rows([("99LAB", "12345", "2345-7", "", "glucose")])
    normalize(reported_frame([item("12345", 90.0, "mg/dL", system="99LAB")]), hospital)
    gone = weakref.ref(hospital)
    del hospital
    gc.collect()
    assert gone() is None


def test_changing_a_result_changes_neither_the_input_nor_the_next_result():
    items = message(*MESSAGE)
    first = normalize(reported_frame(items))
    expected = first.observations.copy()
    first.observations.iloc[0, NORMALIZED_COLUMNS.index("loinc")] = "changed"  # in place
    first.observations.iloc[0, NORMALIZED_COLUMNS.index("value")] = -1.0
    frame = reported_frame(items)
    before = frame.copy()
    pd.testing.assert_frame_equal(normalize(frame).observations, expected)
    pd.testing.assert_frame_equal(frame, before)
