import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wardwatch.terminology import UnitError, canonical_unit_string, conversion


def convert(variable, unit, value):
    return conversion(variable, unit).apply(value)


# Hand-worked: each expected number was computed on paper from the definition of the unit.
@pytest.mark.parametrize(
    ("variable", "unit", "value", "expected"),
    [
        ("Temp", "[degF]", 98.6, 37.0),  # (98.6 - 32) * 5/9
        ("Temp", "degF", 212.0, 100.0),
        ("Temp", "°F", 32.0, 0.0),
        ("Temp", "K", 310.15, 37.0),
        ("Temp", "C", 37.2, 37.2),  # OpenMRS's "C" is Celsius, not the coulomb
        ("Creatinine", "umol/L", 88.4, 1.0),  # 1 mg/dL = 88.4 umol/L
        ("Creatinine", "µmol/L", 176.8, 2.0),
        ("Creatinine", "mmol/L", 0.0884, 1.0),
        ("Glucose", "mmol/L", 5.5, 99.1),  # 5.5 / 0.0555 (mmol/L = mg/dL / 18.0)
        ("Glucose", "mg/dl", 99.0, 99.0),
        ("Glucose", "g/L", 1.0, 100.0),
        ("Lactate", "mg/dL", 18.02, 2.0),  # 18.02 x 0.111 (mg/dL = mmol/L x 9.01)
        ("Lactate", "mEq/L", 2.0, 2.0),  # monovalent
        ("PaCO2", "kPa", 10.0, 75.006),  # 1 kPa = 7.50062 mm[Hg]
        ("SBP", "mmHg", 120.0, 120.0),
        ("FiO2", "%", 40.0, 0.4),
        ("FiO2", "1", 0.4, 0.4),
        ("O2Sat", "1", 0.97, 97.0),
        ("Hct", "L/L", 0.4, 40.0),
        ("BUN", "mmol/L", 10.0, 28.01),  # urea 10 mmol/L / 0.357
        ("Bilirubin_total", "umol/L", 17.1, 1.0),
        ("Bilirubin_direct", "umol/L", 34.2, 2.0),
        ("Calcium", "mmol/L", 2.5, 10.02),  # 2.5 / 0.2495
        ("Calcium", "mEq/L", 5.0, 10.02),  # divalent: 5 mEq/L = 2.5 mmol/L
        ("Magnesium", "mmol/L", 1.0, 2.431),  # 1 / 0.4114
        ("Magnesium", "meq/L", 2.0, 2.431),
        ("Phosphate", "mmol/L", 1.0, 3.097),  # 1 / 0.3229
        ("Potassium", "mEq/L", 4.0, 4.0),
        ("Chloride", "meq/l", 100.0, 100.0),
        ("Hgb", "mmol/L", 8.0, 12.89),  # 8.0 / 0.6206
        ("Hgb", "g/L", 130.0, 13.0),
        ("WBC", "10*9/L", 7.5, 7.5),
        ("WBC", "10^9/L", 7.5, 7.5),
        ("WBC", "K/uL", 7.5, 7.5),
        ("WBC", "/uL", 7500.0, 7.5),
        ("Platelets", "giga.l-1", 221.0, 221.0),  # as sent by the HL7 sample message
        ("Platelets", "10*3/mm3", 221.0, 221.0),
        ("HR", "beats/minute", 72.0, 72.0),
        ("HR", "{beats}/min", 72.0, 72.0),
        ("HR", "bpm", 72.0, 72.0),
        ("HR", "/s", 1.2, 72.0),
        ("Resp", "breaths/min", 18.0, 18.0),
        ("AST", "IU/L", 40.0, 40.0),
        ("AST", "[IU]/L", 40.0, 40.0),
        ("AST", "ukat/L", 1.0, 60.0),  # 1 ukat = 1 umol/s = 60 umol/min
        ("PTT", "sec", 32.0, 32.0),
        ("TroponinI", "ng/L", 40.0, 0.04),
        ("TroponinI", "ug/L", 0.04, 0.04),
        ("Fibrinogen", "g/L", 3.0, 300.0),
        ("pH", "[pH]", 7.4, 7.4),
        ("pH", "1", 7.4, 7.4),
        ("pH", None, 7.4, 7.4),
        ("FiO2", None, 0.3, 0.3),
        ("Age", "a", 64.0, 64.0),
    ],
)
def test_hand_worked_conversions(variable, unit, value, expected):
    assert convert(variable, unit, value) == pytest.approx(expected, rel=2e-3)


@pytest.mark.parametrize(
    ("variable", "unit", "reason_code", "words"),
    [
        ("O2Sat", "mg/dL", "unit_mismatch", "unit 'mg/dL' cannot express O2Sat (canonical '%')"),
        ("Temp", "mm[Hg]", "unit_mismatch", "cannot express Temp (canonical 'Cel')"),
        ("pH", "%", "unit_mismatch", "cannot express pH"),
        ("Phosphate", "mEq/L", "unit_mismatch", "mEq needs the charge of the ion"),
        ("Creatinine", "U/L", "unit_mismatch", "cannot express Creatinine"),
        ("TroponinI", "nmol/L", "unit_mismatch", "cannot express TroponinI"),  # no molar factor
        ("Lactate", "furlongs", "unit_mismatch", "cannot express Lactate"),
        ("Lactate", "mmol/Lx", "unknown_unit", "unit 'mmol/Lx' is not a unit wardwatch can read"),
        ("Lactate", "2", "unknown_unit", "unit_spellings.csv"),  # a number is not a unit
        ("Lactate", None, "missing_unit", "no unit was sent for Lactate"),
        ("Lactate", "  ", "missing_unit", "local_codes.csv"),
        ("HR", None, "missing_unit", "no unit was sent for HR"),
    ],
)
def test_refused_units_say_what_is_wrong(variable, unit, reason_code, words):
    with pytest.raises(UnitError) as caught:
        conversion(variable, unit)
    assert caught.value.reason_code == reason_code
    assert words in str(caught.value)


def test_unit_error_is_a_value_error():
    assert issubclass(UnitError, ValueError)


def test_unknown_variable_is_a_key_error():
    with pytest.raises(KeyError, match="Sodium"):
        conversion("Sodium", "mmol/L")


def test_conversions_are_cached_per_distinct_pair():
    assert conversion("Glucose", "mmol/L") is conversion("Glucose", "mmol/L")


def test_apply_is_vectorized():
    values = np.array([32.0, 98.6, 212.0])
    assert convert("Temp", "[degF]", values) == pytest.approx([0.0, 37.0, 100.0])


def test_the_canonical_unit_is_reported():
    assert conversion("Glucose", "mmol/L").unit == "mg/dL"


# Round trips: a canonical value written in another unit by a hand formula, read back.
ROUND_TRIPS = [
    ("Temp", "[degF]", lambda c: c * 9 / 5 + 32, (25.0, 45.0)),
    ("Temp", "K", lambda c: c + 273.15, (25.0, 45.0)),
    ("PaCO2", "kPa", lambda mmhg: mmhg * 0.133322387415, (5.0, 200.0)),  # 133.322387415 Pa
    ("Creatinine", "umol/L", lambda mg: mg * 88.4, (0.05, 50.0)),
    ("Glucose", "mmol/L", lambda mg: mg * 0.0555, (5.0, 2500.0)),
    ("Lactate", "mg/dL", lambda mmol: mmol / 0.111, (0.1, 40.0)),
    ("BUN", "mmol/L", lambda mg: mg * 0.357, (0.5, 300.0)),
    ("Calcium", "mEq/L", lambda mg: mg * 0.2495 * 2, (2.0, 25.0)),
    ("Hgb", "mmol/L", lambda g: g * 0.6206, (1.0, 25.0)),
    ("FiO2", "%", lambda fraction: fraction * 100, (0.21, 1.0)),
    ("WBC", "/uL", lambda thousands: thousands * 1000, (0.0, 1000.0)),
    ("TroponinI", "ng/L", lambda ng_ml: ng_ml * 1000, (0.0, 500.0)),
    ("AST", "ukat/L", lambda u: u / 60, (1.0, 50000.0)),
]


@pytest.mark.parametrize(
    ("variable", "unit", "write", "bounds"),
    ROUND_TRIPS,
    ids=[f"{v}-{u}" for v, u, *_ in ROUND_TRIPS],
)
@given(fraction=st.floats(min_value=0.0, max_value=1.0))
def test_round_trip_through_another_unit(variable, unit, write, bounds, fraction):
    canonical = bounds[0] + fraction * (bounds[1] - bounds[0])
    assert convert(variable, unit, write(canonical)) == pytest.approx(canonical, rel=1e-9, abs=1e-9)


@given(
    value=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    spelling=st.sampled_from(["[degF]", "degF", "°F", "deg F", "F", "fahrenheit"]),
)
def test_every_spelling_of_a_unit_converts_alike(value, spelling):
    assert convert("Temp", spelling, value) == convert("Temp", "[degF]", value)


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_conversion_is_a_straight_line(value):
    found = conversion("Temp", "[degF]")
    assert math.isclose(found.apply(value), (value - 32) * 5 / 9, rel_tol=1e-12, abs_tol=1e-9)


@pytest.mark.parametrize(
    ("sent", "spelled"),
    [
        ("mg/dl", "mg/dL"),
        ("MG/DL", "mg/dL"),
        ("mmHg", "mm[Hg]"),
        ("mm[Hg]", "mm[Hg]"),
        ("10^3/uL", "10*3/uL"),
        ("K/uL", "10*3/uL"),
        ("giga.l-1", "10*9/L"),
        ("tera.l-1", "10*12/L"),
        ("µmol/L", "umol/L"),
        ("beats/minute", "/min"),
        ("C", "Cel"),
        ("IU/L", "[IU]/L"),
        ("mEq/L", "meq/L"),
        ("sec", "s"),
        ("kg", "kg"),
        ("kg/m2", "kg/m2"),
        ("{score}", "{score}"),
        ("mL/min/{1.73_m2}", "mL/min/{1.73_m2}"),
        ("  g/dL ", "g/dL"),
        ("copies per mL", "copies per mL"),  # unreadable: kept as sent
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_units_of_codes_the_model_ignores_are_spelled_in_ucum(sent, spelled):
    assert canonical_unit_string(sent) == spelled
