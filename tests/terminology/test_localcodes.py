import pytest

from wardwatch.terminology import LocalCodeMap

CIEL_PULSE = "5087AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def test_the_shipped_example_loads():
    shipped = LocalCodeMap()
    assert len(shipped) >= 10
    assert shipped.source.endswith("local_codes.csv")


def test_local_code_999_is_lactate():
    entry = LocalCodeMap().lookup("urn:oid:1.2.3.4.5.local", "999")
    assert entry is not None
    assert (entry.loinc, entry.unit) == ("2524-7", "mmol/L")


@pytest.mark.parametrize("system", ["http://loinc.org", "LN", "LOINC"])
def test_ciel_ids_are_keyed_by_the_loinc_system_they_arrive_under(system):
    entry = LocalCodeMap().lookup(system, CIEL_PULSE)
    assert entry is not None and entry.loinc == "8867-4"


def test_the_ambiguous_ciel_blood_pressure_is_held_back_with_a_reason():
    entry = LocalCodeMap().lookup("http://loinc.org", "5085AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert entry is not None and entry.loinc is None
    assert "both readings" in entry.note


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("L", "999"),
        ("urn:oid:1.2.3.4.5.local", "998"),
        ("http://loinc.org", "2345-7"),
        (None, None),
    ],
)
def test_codes_not_in_the_map(system, code):
    assert LocalCodeMap().lookup(system, code) is None


def test_units_are_stored_in_ucum():
    assert LocalCodeMap().lookup("LN", "5088AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unit == "Cel"


def test_a_hospital_map_from_a_path(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text(
        "system,code,loinc,unit,note\n"
        "99LAB,GLU,2345-7,mg/dl,point of care glucose\n"
        "99LAB, K ,2823-3,,\n",
        encoding="utf-8",
    )
    hospital = LocalCodeMap(path)
    assert hospital.lookup("99LAB", "GLU").unit == "mg/dL"
    assert hospital.lookup("99LAB", "K").loinc == "2823-3"
    assert hospital.lookup("urn:oid:1.2.3.4.5.local", "999") is None
    assert hospital.source == str(path)


def test_a_broken_map_names_every_bad_line(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text(
        "system,code,loinc,unit,note\n"
        "L,1,2345-8,,wrong check digit\n"
        "L,2,2524-7,furlong per fortnight per banana,unreadable unit\n"
        "L,3,2524-7,,\n"
        "LN,3,2524-7,,\n"
        "L,3,2345-7,,listed twice\n"
        ",4,2345-7,,no system\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"codes\.csv") as caught:
        LocalCodeMap(path)
    message = str(caught.value)
    assert "line 2: '2345-8' is not a LOINC code" in message
    assert "line 3: unit 'furlong per fortnight per banana' cannot be read" in message
    assert "line 6: system 'L' code '3' is listed twice" in message
    assert "line 7: system and code are both required" in message
    assert "line 4" not in message and "line 5" not in message


def test_a_map_needs_its_columns(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("system,code\nL,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing columns"):
        LocalCodeMap(path)


def test_load_reads_a_path_or_the_shipped_example(tmp_path):
    assert LocalCodeMap.load(None) is LocalCodeMap.load()
    path = tmp_path / "codes.csv"
    path.write_text("system,code,loinc,unit,note\nL,1,2345-7,mg/dL,\n", encoding="utf-8")
    assert LocalCodeMap.load(path).lookup("L", "1").loinc == "2345-7"


def test_a_map_from_rows():
    built = LocalCodeMap.from_rows([("L", "7", "2160-0", "umol/L", "")])
    assert built.lookup("L", "7").unit == "umol/L"
    assert len(built) == 1
    assert next(iter(built)).code == "7"
