import pytest
from hypothesis import given
from hypothesis import strategies as st

from wardwatch.terminology import LocalCodeMap, canonical_system, is_valid_loinc, loinc_table
from wardwatch.terminology.loinc import LOINC_SYSTEM, loinc_check_digit, variable_for

VALID = [
    "2345-7",  # glucose
    "8867-4",  # heart rate
    "85354-9",  # blood pressure panel
    "2160-0",  # creatinine
    "59408-5",  # SpO2
    "718-7",  # hemoglobin
    "104826-3",  # a six-digit body (LOINC passed 99999 in 2022)
    " 2524-7 ",  # surrounding blanks are tolerated
]
INVALID = [
    "2345-8",  # wrong check digit
    "1553-5",  # as sent in the python-hl7 sample message
    "5087AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # a CIEL id under the LOINC system (OpenMRS)
    "5087",
    "23457",
    "2345-77",
    "-7",
    "2345 7",
    "2345–7",  # en dash
    "12345678-9",  # body too long
    "",
    "LP6960-1",  # a LOINC part, not a code
]


@pytest.mark.parametrize("code", VALID)
def test_valid_codes(code):
    assert is_valid_loinc(code)


@pytest.mark.parametrize("code", INVALID)
def test_invalid_codes(code):
    assert not is_valid_loinc(code)


@given(st.integers(min_value=0, max_value=9_999_999))
def test_exactly_one_check_digit_validates_each_body(number):
    body = str(number)
    valid = [d for d in range(10) if is_valid_loinc(f"{body}-{d}")]
    assert valid == [loinc_check_digit(body)]


def test_check_digit_worked_by_hand():
    # 2345: from the right 5*2=10 -> 1, 4, 3*2=6, 2; 1+4+6+2 = 13; 10 - 3 = 7.
    assert loinc_check_digit("2345") == 7


@pytest.mark.parametrize(
    "system",
    [
        "http://loinc.org",
        "LN",
        "ln",
        "LOINC",
        " https://loinc.org ",
        "urn:oid:2.16.840.1.113883.6.1",
    ],
)
def test_loinc_system_spellings_fold_to_one(system):
    assert canonical_system(system) == LOINC_SYSTEM


@pytest.mark.parametrize(
    "system", ["L", "99LAB", "urn:oid:1.2.3.4.5.local", "http://snomed.info/sct"]
)
def test_other_systems_are_kept(system):
    assert canonical_system(system) == system


def test_every_shipped_loinc_passes_the_check_digit():
    codes = list(loinc_table().index)
    assert codes and all(is_valid_loinc(c) for c in codes)


def test_every_local_map_loinc_passes_the_check_digit():
    mapped = [e.loinc for e in LocalCodeMap() if e.loinc is not None]
    assert mapped and all(is_valid_loinc(c) for c in mapped)


@pytest.mark.parametrize(
    ("code", "variable"),
    [
        ("59408-5", "O2Sat"),  # pulse oximetry
        ("2708-6", "SaO2"),  # blood gas saturation
        ("1558-6", "Glucose"),  # fasting glucose is still the blood glucose
        ("41653-7", "Glucose"),  # point of care
        ("20509-6", "Hgb"),
        ("2028-9", "HCO3"),  # chemistry-panel total CO2
        ("14682-9", "Creatinine"),
        ("3150-0", "FiO2"),
        ("4548-4", None),  # HbA1c is not hemoglobin
        ("1994-3", None),  # ionized calcium is not total calcium
        ("3151-8", None),  # oxygen flow is not FiO2
        ("11125-2", None),  # platelet morphology, not a count
        ("2161-8", None),  # urine creatinine
        ("89579-7", None),  # high-sensitivity troponin
        ("2951-2", None),  # sodium: valid, not a model variable
        ("2532-0", None),  # not in the table at all
    ],
)
def test_codes_feed_the_right_variable(code, variable):
    assert variable_for(code) == variable


def test_loinc_table_has_displays_and_is_indexed_by_code():
    table = loinc_table()
    assert table.index.name == "loinc"
    assert table.at["2345-7", "display"] == "Glucose [Mass/volume] in Serum or Plasma"
    assert (table["display"].str.len() > 0).all()


def test_loinc_table_is_a_copy():
    table = loinc_table()
    table.loc["2345-7", "display"] = "changed"
    assert loinc_table().at["2345-7", "display"] != "changed"
