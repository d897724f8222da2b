import math

import pytest

from wardwatch.terminology import conversion, loinc_table, variables
from wardwatch.terminology.units import registry, substances

PHYSIONET = [
    "HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "EtCO2", "BaseExcess", "HCO3", "FiO2",
    "pH", "PaCO2", "SaO2", "AST", "BUN", "Alkalinephos", "Calcium", "Chloride", "Creatinine",
    "Bilirubin_direct", "Glucose", "Lactate", "Magnesium", "Phosphate", "Potassium",
    "Bilirubin_total", "TroponinI", "Hct", "Hgb", "PTT", "WBC", "Fibrinogen", "Platelets",
]  # fmt: skip

UNITS = {
    "HR": "/min", "O2Sat": "%", "Temp": "Cel", "SBP": "mm[Hg]", "MAP": "mm[Hg]",
    "DBP": "mm[Hg]", "Resp": "/min", "EtCO2": "mm[Hg]", "BaseExcess": "mmol/L",
    "HCO3": "mmol/L", "FiO2": "1", "pH": "[pH]", "PaCO2": "mm[Hg]", "SaO2": "%", "AST": "U/L",
    "BUN": "mg/dL", "Alkalinephos": "U/L", "Calcium": "mg/dL", "Chloride": "mmol/L",
    "Creatinine": "mg/dL", "Bilirubin_direct": "mg/dL", "Glucose": "mg/dL",
    "Lactate": "mmol/L", "Magnesium": "mg/dL", "Phosphate": "mg/dL", "Potassium": "mmol/L",
    "Bilirubin_total": "mg/dL", "TroponinI": "ng/mL", "Hct": "%", "Hgb": "g/dL", "PTT": "s",
    "WBC": "10*3/uL", "Fibrinogen": "mg/dL", "Platelets": "10*3/uL",
}  # fmt: skip


def test_the_34_physionet_variables_then_age_and_sex():
    assert list(variables().index) == [*PHYSIONET, "Age", "Sex"]


def test_kinds():
    kinds = variables()["kind"]
    assert set(kinds[PHYSIONET[:8]]) == {"vital"}
    assert set(kinds[PHYSIONET[8:]]) == {"lab"}
    assert set(kinds[["Age", "Sex"]]) == {"demographic"}


def test_canonical_units_are_physionets():
    assert variables()["unit"][PHYSIONET].to_dict() == UNITS


def test_ranges_are_ordered_and_normal_lies_within_plausible():
    table = variables()
    assert (table["low"] < table["high"]).all()
    normal = table.dropna(subset=["normal_low"])
    assert (normal["low"] <= normal["normal_low"]).all()
    assert (normal["normal_low"] <= normal["normal_high"]).all()
    assert (normal["normal_high"] <= normal["high"]).all()


def test_displays_are_words():
    assert variables().at["HR", "display"] == "Heart rate"
    assert variables().at["Lactate", "display"] == "Lactate"


@pytest.mark.parametrize("variable", [*PHYSIONET, "Age"])
def test_primary_loinc_feeds_its_variable(variable):
    code = variables().at[variable, "loinc"]
    assert loinc_table().at[code, "variable"] == variable


@pytest.mark.parametrize("variable", [*PHYSIONET, "Age", "Sex"])
def test_canonical_unit_converts_to_itself(variable):
    found = conversion(variable, variables().at[variable, "unit"])
    assert (found.factor, found.offset) == (1.0, 0.0)


def test_every_model_variable_has_a_code():
    fed = set(loinc_table()["variable"].dropna())
    assert fed == set(variables().index) - {"Sex"}  # sex comes from the patient record


@pytest.mark.parametrize("substance", list(substances().values()), ids=lambda s: s.variable)
def test_conversion_factors_agree_with_molar_masses(substance):
    # 1 mass_unit divided by the molar mass, in molar_unit, is the clinical factor.
    ureg = registry()
    mass = ureg.Quantity(1, substance.mass_unit.replace("dL", "deciliter").replace("L", "liter"))
    molar = (mass / ureg.Quantity(substance.molar_mass, "g/mol")).to(
        substance.molar_unit.replace("L", "liter")
    )
    assert math.isclose(molar.magnitude, substance.molar_per_mass, rel_tol=0.002)
    assert substance.variable in variables().index


def test_variables_is_a_copy():
    table = variables()
    table.loc["HR", "high"] = 1.0
    assert variables().at["HR", "high"] == 300.0
