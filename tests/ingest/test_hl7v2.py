"""HL7 v2 ORU^R01 parsing and acknowledgements, on real sample messages and generated ones."""

from __future__ import annotations

import contextlib
import string
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import hl7
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wardwatch.domain import Sex
from wardwatch.ingest import hl7v2
from wardwatch.ingest.hl7v2 import HL7Error, MessageInvalid, MessageRejected, ParsedMessage

DATA = Path(__file__).resolve().parents[1] / "data" / "hl7v2"
LAB = (DATA / "lab_oru_1.hl7").read_text()
SAMPLE = (DATA / "sample_oru_r01.hl7").read_text()

MSH = "MSH|^~\\&|LAB|NORTH|WARDWATCH|ICU|20240301101500||ORU^R01|MSG1|P|2.5.1"
PID = "PID|1||MRN77^^^NORTH^MR||DOE^JANE||19800101|F||||||||||ACC9"
OBR = "OBR|1|ORD1||24317-0^CBC^LN|||20240301093000"


def message(*obx: str, msh: str = MSH, pid: str = PID, obr: str = OBR) -> str:
    return "\r".join([msh, pid, obr, *obx])


def one(obx: str, **kwargs: str):
    parsed = hl7v2.parse_message(message(obx, **kwargs)).parsed
    assert len(parsed.reported) == 1
    return parsed.reported[0]


def by_code(parsed: ParsedMessage) -> dict:
    return {r.code: r for r in parsed.parsed.reported}


# -- the shared samples -----------------------------------------------------------------------


def test_lab_sample_header():
    m = hl7v2.parse_message(LAB)
    assert (m.control_id, m.sending_application, m.sending_facility) == ("182", "SomeSystem", "")
    assert (m.message_type, m.version, m.processing_id) == ("ORU^R01", "2.5", "T")
    assert m.sent_at == datetime(2014, 10, 6, 6, 45, tzinfo=UTC)
    assert m.sender == "SomeSystem"  # no facility: the application names the sender
    assert m.message_id == "SomeSystem|182"


def test_lab_sample_results():
    results = by_code(hl7v2.parse_message(LAB))
    red = results["11273-0"]
    assert (red.system, red.display, red.value, red.unit) == (
        "LN",
        "ERYTHROCYTES",
        4.06,
        "tera.l-1",
    )
    assert red.effective_at == datetime(2014, 10, 6, 6, 27, tzinfo=UTC)
    assert red.value_text == "4.06" and red.comparator is None
    platelets = results["11125-2"]
    assert (platelets.value, platelets.unit) == (221.0, "giga.l-1")
    hematocrit = results["20570-8"]
    assert (hematocrit.value, hematocrit.unit) == (40.1, "%")
    assert hematocrit.effective_at == datetime(2014, 10, 6, 8, 30, tzinfo=UTC)


def test_lab_sample_pending_results_are_reported_without_value():
    results = by_code(hl7v2.parse_message(LAB))
    for code in ("11156-7", "20509-6"):  # leukocytes, hemoglobin: result status I (pending)
        pending = results[code]
        assert (pending.value, pending.value_text, pending.unit) == (None, "", None)
        # no OBX-14, no OBR-7: the message time
        assert pending.effective_at == datetime(2014, 10, 6, 6, 45, tzinfo=UTC)


def test_lab_sample_source_ids_are_unique_although_set_ids_repeat():
    reported = hl7v2.parse_message(LAB).parsed.reported
    assert len(reported) == 10
    assert [r.source_id for r in reported] == [f"SomeSystem|182|{n}" for n in range(1, 11)]
    assert all(r.source == "hl7v2" for r in reported)
    basophils = reported[-1]
    assert basophils.code == "30180-4" and basophils.value == 0.0
    assert basophils.payload.startswith("MSH|^~\\&|SomeSystem||TransformationAgent|")
    assert "\rOBR|1|855238581|" in basophils.payload
    assert basophils.payload.endswith(
        "\rOBX|5|NM|30180-4^BASOPHILS/100 LEUKOCYTES^LN||0|%||N|||P|||201410060627"
    )


def test_lab_sample_patient_and_encounter():
    parsed = hl7v2.parse_message(LAB).parsed
    [patient] = parsed.patients
    assert (patient.patient_id, patient.sex, patient.birth_date) == (
        "10006579",
        Sex.MALE,
        date(1924, 10, 10),
    )
    [encounter] = parsed.encounters  # no PV1: the PID-18 account number
    assert (encounter.encounter_id, encounter.patient_id, encounter.unit) == (
        "40007716",
        "10006579",
        None,
    )
    assert {r.encounter_id for r in parsed.reported} == {"40007716"}
    assert {r.patient_id for r in parsed.reported} == {"10006579"}
    assert parsed.rejections == []


def test_sample_glucose_structured_numeric():
    m = hl7v2.parse_message(SAMPLE)
    glucose = m.parsed.reported[0]
    assert (glucose.system, glucose.code, glucose.display) == ("LN", "1554-5", "GLUCOSE")
    assert (glucose.value, glucose.value_text, glucose.comparator) == (182.0, "^182", None)
    assert glucose.unit == "mg/dl"
    assert glucose.effective_at == datetime(2002, 2, 15, 7, 30, tzinfo=UTC)  # OBR-7
    assert glucose.source_id == "ELAB-3|CNTRL-3456|1"


def test_sample_second_obx_is_kept_as_sent():
    # OBX-2 "FN" is HL7's family name type, and 1553-5 fails the LOINC check digit: the
    # text and the system are kept as sent for the normalizer to judge.
    second = hl7v2.parse_message(SAMPLE).parsed.reported[1]
    assert (second.code, second.system) == ("1553-5", "POST 12H CFST:MCNC:PT:SER/PLAS:QN")
    assert (second.value, second.value_text) == (None, "^182")


def test_sample_invalid_birth_date_keeps_the_patient_and_notes_it():
    parsed = hl7v2.parse_message(SAMPLE).parsed
    [patient] = parsed.patients
    assert (patient.patient_id, patient.sex, patient.birth_date) == (
        "555-44-4444",
        Sex.FEMALE,
        None,
    )
    [note] = parsed.rejections
    assert note.reason_code == "invalid_birth_date"
    assert "196203520" in note.reason and note.patient_id == "555-44-4444"
    assert note.source_id == "ELAB-3|CNTRL-3456|PID1-7"
    [encounter] = parsed.encounters
    assert encounter.encounter_id == "AC555444444"


@pytest.mark.parametrize("text", [LAB, SAMPLE], ids=["lab_oru_1", "sample_oru_r01"])
def test_line_endings_give_identical_results(text):
    lf = text.replace("\r\n", "\n").replace("\r", "\n")
    variants = [lf, lf.replace("\n", "\r"), lf.replace("\n", "\r\n"), lf + "\n\n", "\ufeff" + lf]
    results = [hl7v2.parse_message(v) for v in variants]
    assert all(r == results[0] for r in results[1:])


# -- values, codes, times -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value_type", "raw", "value", "text", "comparator"),
    [
        ("NM", "4.06", 4.06, "4.06", None),
        ("NM", "<5", 5.0, "<5", "<"),
        ("NM", ">= 10", 10.0, ">= 10", ">="),
        ("NM", "-0.5", -0.5, "-0.5", None),
        ("NM", ".5", 0.5, ".5", None),
        ("NM", "4,06", None, "4,06", None),
        ("NM", "NaN", None, "NaN", None),
        ("NM", "1" * 400, None, "1" * 400, None),
        ("NM", "", None, "", None),
        ("SN", "^182", 182.0, "^182", None),
        ("SN", "<^5", 5.0, "<^5", "<"),
        ("SN", ">^10", 10.0, ">^10", ">"),
        ("SN", "<=^0.1", 0.1, "<=^0.1", "<="),
        ("SN", "=^7", 7.0, "=^7", None),
        ("SN", "1^:^2", None, "1^:^2", None),
        ("SN", "^2^-^5", None, "^2^-^5", None),
        ("SN", "^100^+", None, "^100^+", None),
        ("SN", "<>^5", None, "<>^5", None),
        ("SN", "182", 182.0, "182", None),
        ("ST", "7.2", 7.2, "7.2", None),
        ("ST", "see note", None, "see note", None),
        ("TX", "hemolysed \\F\\ repeat", None, "hemolysed | repeat", None),
        ("", "12", 12.0, "12", None),
        ("CE", "POS^Positive^L", None, "POS^Positive^L", None),
        ("FN", "^182", None, "^182", None),
    ],
)
def test_observation_values(value_type, raw, value, text, comparator):
    reported = one(f"OBX|1|{value_type}|2345-7^GLUCOSE^LN||{raw}|mg/dL|||||F")
    assert (reported.value, reported.value_text, reported.comparator) == (value, text, comparator)


@pytest.mark.parametrize(
    ("coding", "expected"),
    [
        ("2345-7^GLUCOSE^LN", ("LN", "2345-7", "GLUCOSE")),
        ("GLU^Glucose^L^2345-7^Glucose SerPl-mCnc^LN", ("LN", "2345-7", "Glucose SerPl-mCnc")),
        ("GLU^Glucose^99LAB^2345-7^Glucose^LN", ("LN", "2345-7", "Glucose")),
        ("GLU^Glucose^99LAB", ("99LAB", "GLU", "Glucose")),
        ("GLU^Glucose^L^G1^Glu^99OTHER", ("L", "GLU", "Glucose")),
        ("^^^2345-7^Glucose^LN", ("LN", "2345-7", "Glucose")),
        ("2345-7^Glucose", ("LN", "2345-7", "Glucose")),  # no system, valid LOINC: LOINC
        ("2345-8^Glucose", ("", "2345-8", "Glucose")),  # check digit wrong: kept as sent
        ("2345-8^Glucose^LN", ("LN", "2345-8", "Glucose")),  # sender says LN: as sent
        ("5087AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA^Pulse^LN", ("LN", "5087" + "A" * 32, "Pulse")),
        ("2345-7", ("LN", "2345-7", None)),
        ("", ("", "", None)),
    ],
)
def test_observation_coding(coding, expected):
    reported = one(f"OBX|1|NM|{coding}||5.5|mmol/L|||||F")
    assert (reported.system, reported.code, reported.display) == expected


@pytest.mark.parametrize("status", ["W", "D", "w"])
def test_withdrawn_results_are_rejections_not_measurements(status):
    obx = f"OBX|1|NM|2345-7^GLU^LN||55|mmol/L|||||{status}"
    parsed = hl7v2.parse_message(message("OBX|1|NM|2524-7^LACT^LN||2.1|mmol/L|||||F", obx)).parsed
    assert [r.code for r in parsed.reported] == ["2524-7"]
    [withdrawn] = parsed.rejections
    assert (withdrawn.reason_code, withdrawn.source_id) == ("result_withdrawn", "NORTH|MSG1|2")
    assert withdrawn.payload.endswith(obx) and withdrawn.patient_id == "MRN77"


def test_units_are_unescaped():
    assert one("OBX|1|NM|6690-2^WBC^LN||7.1|10\\S\\9/L|||||F").unit == "10^9/L"


@pytest.mark.parametrize(
    ("obx_time", "obr_time", "expected"),
    [
        ("20240301080000", "20240301070000", datetime(2024, 3, 1, 8, 0, tzinfo=UTC)),
        ("", "20240301070000", datetime(2024, 3, 1, 7, 0, tzinfo=UTC)),
        ("", "", datetime(2024, 3, 1, 10, 15, tzinfo=UTC)),  # MSH-7
        ("202403010800-0500", "", datetime(2024, 3, 1, 13, 0, tzinfo=UTC)),
        ("20240301080000.25+0100", "", datetime(2024, 3, 1, 7, 0, 0, 250000, tzinfo=UTC)),
        ("20240301080000^S", "", datetime(2024, 3, 1, 8, 0, tzinfo=UTC)),  # TS with precision
        ("2024030108", "", datetime(2024, 3, 1, 8, 0, tzinfo=UTC)),
        ("20240231", "20240301070000", None),  # invalid: no silent fall back to another time
        ("yesterday", "", None),
    ],
)
def test_observation_time(obx_time, obr_time, expected):
    obr = f"OBR|1|ORD1||24317-0^CBC^LN|||{obr_time}"
    reported = one(f"OBX|1|NM|2345-7^GLU^LN||5|mmol/L|||||F|||{obx_time}", obr=obr)
    assert reported.effective_at == expected


def test_times_without_offset_are_read_in_the_default_zone():
    paris = hl7v2.parse_message(LAB, default_tz=ZoneInfo("Europe/Paris"))
    red = by_code(paris)["11273-0"]
    assert red.effective_at == datetime(2014, 10, 6, 4, 27, tzinfo=UTC)  # CEST is UTC+2
    assert paris.sent_at == datetime(2014, 10, 6, 4, 45, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2014", datetime(2014, 1, 1, tzinfo=UTC)),
        ("201410", datetime(2014, 10, 1, tzinfo=UTC)),
        ("20141006", datetime(2014, 10, 6, tzinfo=UTC)),
        ("201410060627", datetime(2014, 10, 6, 6, 27, tzinfo=UTC)),
        ("20141006062733.1234", datetime(2014, 10, 6, 6, 27, 33, 123400, tzinfo=UTC)),
        ("20141006062733+0530", datetime(2014, 10, 6, 0, 57, 33, tzinfo=UTC)),
        ("201410060627.5", None),  # fraction without seconds
        ("20141006246000", None),
        ("2014100606", datetime(2014, 10, 6, 6, tzinfo=UTC)),
        ("201410060", None),
        ("20141006+0075", None),
        ("00010101+0100", None),
        ("", None),
    ],
)
def test_parse_ts(raw, expected):
    assert hl7v2.parse_ts(raw) == expected


def test_is_loinc():
    assert all(hl7v2.is_loinc(c) for c in ["1554-5", "11273-0", "2345-7", "8867-4", "59408-5"])
    assert not any(hl7v2.is_loinc(c) for c in ["1553-5", "2345-8", "2345", "abc-1", "", "1-"])


def test_visit_from_pv1():
    pv1 = ["PV1", "1", "I", "MICU^0101^1"] + [""] * 41
    pv1[19], pv1[44] = "V555", "20240228221500"
    pv1_text = "|".join(pv1)
    text = "\r".join([MSH, PID, pv1_text, OBR, "OBX|1|NM|2345-7^GLU^LN||5|mmol/L"])
    parsed = hl7v2.parse_message(text).parsed
    [encounter] = parsed.encounters
    assert (encounter.encounter_id, encounter.patient_id, encounter.unit) == (
        "V555",
        "MRN77",
        "MICU",
    )
    assert encounter.admitted_at == datetime(2024, 2, 28, 22, 15, tzinfo=UTC)
    assert parsed.reported[0].encounter_id == "V555"


def test_pv1_without_visit_number_falls_back_to_the_account_number():
    text = "\r".join([MSH, PID, "PV1|1|E|ED", OBR, "OBX|1|NM|2345-7^GLU^LN||5|mmol/L"])
    parsed = hl7v2.parse_message(text).parsed
    [encounter] = parsed.encounters
    assert (encounter.encounter_id, encounter.unit) == ("ACC9", "ED")


def test_no_visit_and_no_account_number_means_no_encounter():
    parsed = hl7v2.parse_message(message("OBX|1|NM|2345-7^GLU^LN||5", pid="PID|1||X1")).parsed
    assert parsed.encounters == [] and parsed.reported[0].encounter_id is None
    assert parsed.patients[0].sex == Sex.UNKNOWN and parsed.patients[0].birth_date is None


def test_several_patients_in_one_message():
    text = "\r".join(
        [
            MSH,
            "PID|1||A1" + "|" * 15 + "VA",
            OBR,
            "OBX|1|NM|2345-7^GLU^LN||5",
            "PID|2||B2|||||M",
            OBR,
            "OBX|1|NM|2345-7^GLU^LN||6",
        ]
    )
    parsed = hl7v2.parse_message(text).parsed
    assert [p.patient_id for p in parsed.patients] == ["A1", "B2"]
    assert [(r.patient_id, r.encounter_id, r.value) for r in parsed.reported] == [
        ("A1", "VA", 5.0),
        ("B2", None, 6.0),
    ]
    assert [r.source_id for r in parsed.reported] == ["NORTH|MSG1|1", "NORTH|MSG1|2"]


def test_other_segments_are_ignored():
    text = message(
        "OBX|1|NM|2345-7^GLU^LN||5", "NTE|1||fasting", "ZXY|anything", "SPM|1|S1||BLD"
    ).replace(OBR, "ORC|RE|ORD1\r" + OBR)
    assert len(hl7v2.parse_message(text).parsed.reported) == 1


def test_custom_separators():
    text = "MSH#!~$@#LAB#NORTH#WW#ICU#20240301101500##ORU!R01#C7#P#2.5\rPID#1##M1\rOBR#1\r"
    text += "OBX#1#SN#2345-7!Glu!LN##<!5#mg/dL"
    reported = hl7v2.parse_message(text).parsed.reported[0]
    assert (reported.code, reported.value, reported.comparator) == ("2345-7", 5.0, "<")
    assert reported.value_text == "<!5"


# -- refusals -----------------------------------------------------------------------------------


HEADER = MSH.rsplit("|", 4)[0]  # up to MSH-8


@pytest.mark.parametrize(
    ("text", "error", "condition", "words"),
    [
        ("", MessageRejected, "100", "empty"),
        ("\r\n\n", MessageRejected, "100", "empty"),
        ("PID|1||X", MessageRejected, "100", "no MSH"),
        ("hello world", MessageRejected, "100", "no MSH"),
        ("FHS|^~\\&\rMSH|^~\\&|A", MessageRejected, "100", "batch"),
        (message().replace("ORU^R01", "ADT^A01"), MessageRejected, "200", "ADT^A01"),
        (message().replace("ORU^R01", "ORU^R30"), MessageRejected, "201", "ORU^R30"),
        (message().replace("|2.5.1", "|3.0"), MessageRejected, "203", "version"),
        (message().replace("|P|2.5.1", "|X|2.5.1"), MessageRejected, "202", "processing id"),
        ("MSH", MessageInvalid, "102", "encoding characters"),
        ("MSH|^~\\&", MessageInvalid, "102", "encoding characters"),
        ("MSHabcdefgh|", MessageInvalid, "102", "encoding characters"),
        ("MSH|^^\\&|A", MessageInvalid, "102", "encoding characters"),
        ("MSH|^~\\&|LAB|NORTH", MessageInvalid, "101", "MSH-9"),
        (HEADER + "|ORU^R01", MessageInvalid, "101", "MSH-10"),
        (HEADER + "|ORU^R01|C1|P", MessageInvalid, "101", "MSH-12"),
        (MSH, MessageInvalid, "100", "no PID"),
        ("\r".join([MSH, PID]), MessageInvalid, "100", "no OBR"),
        ("\r".join([MSH, OBR]), MessageInvalid, "100", "OBR before any PID"),
        ("\r".join([MSH, "PV1|1|I|ICU", PID]), MessageInvalid, "100", "PV1 before"),
        ("\r".join([MSH, PID, "OBX|1|NM|2345-7||5"]), MessageInvalid, "100", "OBX outside"),
        (message().replace(PID, "PID|1||"), MessageInvalid, "101", "PID-3"),
        (message("OBX|1|TX|X^Y^L||line one\nline two"), MessageInvalid, "100", "'line two'"),
        (message() + "\r" + MSH, MessageInvalid, "100", "second MSH"),
    ],
)
def test_refusals(text, error, condition, words):
    with pytest.raises(error) as caught:
        hl7v2.parse_message(text)
    assert caught.value.condition == condition
    assert words in caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert caught.value.ack_code == ("AR" if error is MessageRejected else "AE")
    assert isinstance(caught.value, ValueError)


def test_refusal_carries_the_control_id_when_there_is_one():
    with pytest.raises(MessageInvalid) as caught:
        hl7v2.parse_message(MSH)
    assert caught.value.control_id == "MSG1"


@pytest.mark.parametrize("text", [LAB, SAMPLE], ids=["lab_oru_1", "sample_oru_r01"])
def test_every_truncation_parses_or_raises_hl7error(text):
    text = text.replace("\n", "\r")
    for cut in range(len(text)):
        with contextlib.suppress(HL7Error):
            hl7v2.parse_message(text[:cut])


@given(st.text(alphabet=string.printable))
def test_printable_garbage_only_ever_raises_hl7error(text):
    with contextlib.suppress(HL7Error):
        hl7v2.parse_message(text)


@given(st.sampled_from(["MSH|^~\\&|", MSH, message(), LAB]), st.text())
def test_garbage_after_a_header_only_ever_raises_hl7error(start, tail):
    with contextlib.suppress(HL7Error):
        hl7v2.parse_message(start + tail)


NUMBERS = st.from_regex(r"-?[0-9]{1,9}(\.[0-9]{1,6})?", fullmatch=True)
CODES = st.sampled_from(["2345-7", "2524-7", "8867-4", "8310-5", "777-3", "6690-2", "1975-2"])


@given(
    st.lists(st.tuples(CODES, NUMBERS, st.sampled_from(["", "<", ">", "<=", ">="])), max_size=20)
)
def test_generated_messages_round_trip_their_values(results):
    obx = [f"OBX|{n}|NM|{code}^X^LN||{cmp}{num}|u" for n, (code, num, cmp) in enumerate(results)]
    reported = hl7v2.parse_message(message(*obx)).parsed.reported
    assert [(r.code, r.value, r.comparator or "") for r in reported] == [
        (code, float(num), cmp) for code, num, cmp in results
    ]


# Field text: printable, with the separators and escapes, but no segment break.
FIELD = st.text(alphabet=string.ascii_letters + string.digits + " .-^~&\\<>", max_size=12)
SEGMENT = st.tuples(st.sampled_from(["PID", "PV1", "OBR", "OBX", "NTE", "ZXY"]),
                    st.lists(FIELD, max_size=12))  # fmt: skip


@given(st.lists(FIELD, min_size=10, max_size=14), st.lists(SEGMENT, max_size=8))
def test_segments_and_fields_split_as_python_hl7_splits_them(header, segments):
    """python-hl7 is the reference: our split (one str.split per segment) must agree."""
    header[8] = "ORU^R01"
    lines = ["MSH|^~\\&|" + "|".join(header)]
    lines += ["|".join([name, *fields]) for name, fields in segments]
    text = "\r".join(lines).rstrip()  # python-hl7 strips the message's edges
    ours = hl7v2._split(text, hl7v2._read_separators(text.split("\r", 1)[0]))
    theirs = [[str(field) for field in segment] for segment in hl7.parse(text)]
    assert ours == theirs


# -- splitting files ---------------------------------------------------------------------------


def test_split_messages():
    text = f"FHS|^~\\&\nBHS|^~\\&\n{LAB}\n\n{SAMPLE}\nBTS|2\nFTS|1\n"
    first, second = hl7v2.split_messages(text)
    assert hl7v2.parse_message(first) == hl7v2.parse_message(LAB)
    assert hl7v2.parse_message(second) == hl7v2.parse_message(SAMPLE)


def test_split_messages_keeps_junk_before_the_first_header():
    junk, _lab = hl7v2.split_messages("oops\n" + LAB)
    assert junk == "oops"
    with pytest.raises(MessageRejected):
        hl7v2.parse_message(junk)
    assert hl7v2.split_messages("") == []


# -- acknowledgements --------------------------------------------------------------------------


def fields(ack: str, segment: str) -> list[str]:
    parsed = hl7.parse(ack)
    return [str(f) for f in parsed.segment(segment)]


def test_ack_accept():
    text = hl7v2.ack(hl7v2.parse_message(SAMPLE), "AA")
    assert "\n" not in text and text.count("\r") == 1
    msh = fields(text, "MSH")
    assert msh[3:7] == ["GHH OE", "BLDG4", "GHH LAB", "ELAB-3"]  # swapped
    assert (msh[9], msh[11], msh[12]) == ("ACK^R01^ACK", "P", "2.4")
    assert msh[10] and msh[10] != "CNTRL-3456"
    assert hl7v2.parse_ts(msh[7]) is not None
    assert fields(text, "MSA") == ["MSA", "AA", "CNTRL-3456"]


def test_ack_error_v25_has_an_err_segment():
    text = hl7v2.ack(
        hl7v2.parse_message(LAB), "AE", "bad | value ^ here\r\nreally", condition="101"
    )
    msa, err = fields(text, "MSA"), fields(text, "ERR")
    assert msa[1:3] == ["AE", "182"]
    assert hl7v2.unescape(msa[3]) == "bad | value ^ here  really"
    assert err[3] == "101^Required field missing^HL70357" and err[4] == "E"
    assert hl7v2.unescape(err[8]) == "bad | value ^ here  really"
    assert fields(text, "MSH")[11] == "T"  # processing id echoed


def test_ack_error_v24_uses_the_old_err_layout():
    text = hl7v2.ack(SAMPLE, "AR", "no")
    assert fields(text, "ERR")[1] == "^^^207&Application internal error&HL70357"


def test_ack_for_garbage():
    text = hl7v2.ack("\x0b\x1cnot hl7 at all|^~", "AR", "no MSH header")
    assert "\x0b" not in text and "\x1c" not in text
    assert fields(text, "MSA") == ["MSA", "AR", "", "no MSH header"]
    assert fields(text, "MSH")[9] == "ACK" and fields(text, "MSH")[12] == "2.5"


def test_ack_for_a_broken_message_echoes_what_it_can():
    broken = HEADER.replace("20240301101500", "x") + "|ORU^R01|C9\x1c\x0b|P|"
    text = hl7v2.ack(broken, "AE", "truncated")
    assert fields(text, "MSA")[:3] == ["MSA", "AE", "C9"]
    assert fields(text, "MSH")[3:7] == ["WARDWATCH", "ICU", "LAB", "NORTH"]


def test_ack_keeps_the_senders_separators_and_charset():
    msh = "MSH#!~$@#LAB#NORTH#WW#ICU#20240301101500##ORU!R01#C7#P#2.5######8859/1"
    text = hl7v2.ack(msh, "AE", "a#b")
    assert text.startswith("MSH#!~$@#WW#ICU#LAB#NORTH#")
    assert text.split("\r")[0].split("#")[17] == "8859/1"
    assert "MSA#AE#C7#a$F$b" in text


def test_ack_codes_are_checked():
    with pytest.raises(ValueError, match="AA, AE or AR"):
        hl7v2.ack(LAB, "CA")


def test_error_ack():
    with pytest.raises(HL7Error) as caught:
        hl7v2.parse_message(message().replace("ORU^R01", "ADT^A01"))
    text = hl7v2.error_ack(message(), caught.value)
    assert fields(text, "MSA")[1:3] == ["AR", "MSG1"]
    assert fields(text, "ERR")[3].startswith("200^Unsupported message type")


def test_acknowledge_commits_before_accepting():
    committed: list[ParsedMessage] = []
    text = hl7v2.acknowledge(LAB, committed.append)
    assert [m.control_id for m in committed] == ["182"]
    assert fields(text, "MSA") == ["MSA", "AA", "182"]


def test_acknowledge_does_not_accept_when_the_commit_fails():
    def fail(message: ParsedMessage) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        hl7v2.acknowledge(LAB, fail)


@given(st.text(), st.sampled_from(["AA", "AE", "AR"]), st.text())
def test_ack_never_fails_and_always_parses(raw, code, reason):
    text = hl7v2.ack(raw, code, reason)
    assert fields(text, "MSA")[1] == code
    assert "\x0b" not in text and "\x1c" not in text and "\n" not in text
