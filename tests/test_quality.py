"""The quality gate on its own: each check, its reason, and the order they are applied in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from wardwatch.quality import GateContext, gate

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def frame(**overrides) -> pd.DataFrame:
    row = {
        "patient_id": "p1", "encounter_id": "e1", "loinc": "8867-4", "variable": "HR",
        "value": 88.0, "unit": "/min", "effective_at": NOW - timedelta(hours=1),
        "source": "test", "source_id": "x1", "comparator": None, "payload": "",
    }  # fmt: skip
    row.update(overrides)
    out = pd.DataFrame([row])
    out["effective_at"] = pd.to_datetime(out["effective_at"], utc=True)
    return out


CTX = GateContext(known_patients={"p1"}, now=NOW)


def reason_of(**overrides) -> tuple[str, str]:
    result = gate(frame(**overrides), CTX)
    assert len(result.accepted) + len(result.rejections) == 1
    if result.rejections.empty:
        return "accepted", ""
    row = result.rejections.iloc[0]
    return row["reason_code"], row["reason"]


def test_a_plain_measurement_is_accepted():
    assert reason_of() == ("accepted", "")


def test_a_future_time_is_a_clock_error():
    code, reason = reason_of(effective_at=NOW + timedelta(hours=2))
    assert code == "future_time" and "time zone" in reason


def test_a_little_clock_skew_is_tolerated():
    assert reason_of(effective_at=NOW + timedelta(minutes=2))[0] == "accepted"


def test_an_absurdly_old_time_is_an_entry_error():
    assert reason_of(effective_at=datetime(1900, 1, 1, tzinfo=UTC))[0] == "too_old"


def test_a_missing_time_cannot_be_placed():
    assert reason_of(effective_at=None)[0] == "missing_time"


def test_an_unknown_patient_says_what_to_send_first():
    code, reason = reason_of(patient_id="stranger")
    assert code == "unknown_patient" and "PID" in reason and "stranger" in reason


def test_fahrenheit_sent_as_celsius_is_named():
    code, reason = reason_of(loinc="8310-5", variable="Temp", value=101.3, unit="Cel")
    assert code == "implausible" and "°F" in reason and "101.3" in reason


def test_the_first_failing_check_wins():
    code, _ = reason_of(patient_id="stranger", effective_at=NOW + timedelta(days=1), value=900.0)
    assert code == "future_time"


def test_codes_the_model_ignores_have_no_range_to_fail():
    assert reason_of(loinc="718-7", variable=None, value=1e6, unit="g/dL")[0] == "accepted"


def test_an_empty_batch_passes_through():
    result = gate(frame().iloc[0:0], CTX)
    assert result.accepted.empty and result.rejections.empty


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9))
def test_every_heart_rate_is_either_accepted_or_quarantined_never_lost(value):
    result = gate(frame(value=value), CTX)
    assert len(result.accepted) + len(result.rejections) == 1
    assert (len(result.accepted) == 1) == (10 <= value <= 300)
