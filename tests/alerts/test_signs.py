from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.strategies import wide_frame

from wardwatch.alerts.signs import SIGNS, describe_signs, organ_dysfunction, vitals_age_hours
from wardwatch.features import build_features

NAN = float("nan")


def one_stay(hours: int, measured: dict[int, dict[str, float]], pid: str = "p1") -> pd.DataFrame:
    """One stay of `hours` hours (1..hours); `measured` maps an hour to its measurements."""
    return wide_frame({pid: [measured.get(h, {}) for h in range(1, hours + 1)]})


def present_hours(frame: pd.DataFrame, sign: str) -> list[int]:
    signs = organ_dysfunction(frame)
    return frame.loc[signs[sign].to_numpy(), "hour"].tolist()


@pytest.mark.parametrize(
    ("column", "value", "sign", "lookback"),
    [
        ("Lactate", 3.4, "lactate_high", 24),
        ("Platelets", 99.0, "platelets_low", 24),
        ("Bilirubin_total", 2.1, "bilirubin_high", 24),
        ("SBP", 85.0, "hypotension", 6),
        ("MAP", 64.0, "hypotension", 6),
    ],
)
def test_a_sign_lasts_exactly_its_lookback_after_the_measurement(column, value, sign, lookback):
    frame = one_stay(40, {3: {column: value}})
    assert present_hours(frame, sign) == list(range(3, 3 + lookback))


@pytest.mark.parametrize(
    ("column", "value", "sign"),
    [("Lactate", 2.0, "lactate_high"), ("Platelets", 100.0, "platelets_low"),
     ("Bilirubin_total", 2.0, "bilirubin_high"), ("SBP", 90.0, "hypotension"),
     ("MAP", 65.0, "hypotension")],
)  # fmt: skip
def test_values_at_the_cut_off_do_not_qualify(column, value, sign):
    assert present_hours(one_stay(10, {2: {column: value}}), sign) == []


def test_the_lookback_is_configurable():
    frame = one_stay(20, {2: {"Lactate": 5.0}, 3: {"SBP": 80.0}})
    signs = organ_dysfunction(frame, lab_lookback_hours=4, vital_lookback_hours=2)
    assert frame.loc[signs["lactate_high"].to_numpy(), "hour"].tolist() == [2, 3, 4, 5]
    assert frame.loc[signs["hypotension"].to_numpy(), "hour"].tolist() == [3, 4]


def test_any_qualifying_measurement_in_the_lookback_counts_and_is_the_newest_one_shown():
    frame = one_stay(40, {2: {"Lactate": 4.0}, 5: {"Lactate": 1.5}, 8: {"Lactate": 3.0}})
    signs = organ_dysfunction(frame)
    assert present_hours(frame, "lactate_high") == list(range(2, 32))
    at = signs.iloc[9]  # hour 10
    assert (at["lactate_value"], at["lactate_hour"], at["newest_sign_hour"]) == (3.0, 8.0, 8.0)


@pytest.mark.parametrize(
    ("measured", "rises_at"),
    [
        ({1: 1.0, 20: 1.3}, 20),  # +0.3 within 48 h
        ({1: 0.9, 20: 1.2}, 20),  # +0.3 despite floating point (1.2 - 0.9 < 0.3)
        ({1: 1.0, 20: 1.29}, None),
        ({1: 2.0, 10: 1.5, 55: 1.8}, 55),  # the 48 h window holds 1.5 (hour 10), not 2.0
        ({1: 2.0, 2: 1.5, 55: 1.8}, None),  # nothing in the 48 h before hour 55
        ({1: 2.0, 10: 1.5, 58: 1.8}, 58),  # exactly 48 h before is still in the window
        ({1: 2.0, 10: 1.5, 59: 1.8}, None),
        ({1: 1.0, 60: 1.5}, 60),  # 1.5 x the stay's first value
        ({1: 1.0, 60: 1.45}, None),
        ({1: 3.0}, None),  # a first value alone is no rise, however high
    ],
)
def test_creatinine_rise_rules(measured, rises_at):
    frame = one_stay(70, {h: {"Creatinine": v} for h, v in measured.items()})
    expected = [] if rises_at is None else list(range(rises_at, min(rises_at + 24, 71)))
    assert present_hours(frame, "creatinine_rise") == expected


def test_creatinine_sentences_name_the_rule_that_applied():
    frame = one_stay(70, {1: {"Creatinine": 1.0}, 20: {"Creatinine": 1.4},
                          60: {"Creatinine": 1.6}})  # fmt: skip
    signs = organ_dysfunction(frame)
    (by_48h,) = describe_signs(signs.iloc[19])
    assert by_48h == ("Creatinine 1.4 mg/dL at hour 20, up 0.4 from 1, the lowest in the "
                      "previous 48 h (KDIGO: a rise of 0.3 or more)")  # fmt: skip
    (by_ratio,) = describe_signs(signs.iloc[59])
    assert "1.6 × the stay's first value 1" in by_ratio


def test_hypoxemia_present_from_the_start_is_not_new():
    frame = one_stay(12, {h: {"O2Sat": 85.0} for h in range(1, 13)})
    assert present_hours(frame, "hypoxemia") == []


def test_hypoxemia_after_a_normal_reading_is_new():
    frame = one_stay(20, {1: {"O2Sat": 96.0}, 4: {"O2Sat": 86.0}})
    assert present_hours(frame, "hypoxemia") == list(range(4, 10))
    assert describe_signs(organ_dysfunction(frame).iloc[3]) == (
        "SpO2 86 % (< 90) at hour 4, new in this stay",
    )


def test_spo2_fio2_needs_a_recent_plausible_fio2():
    frame = one_stay(30, {
        1: {"O2Sat": 97.0},
        2: {"FiO2": 0.5}, 3: {"O2Sat": 96.0},  # S/F 192 with FiO2 an hour old
        10: {"FiO2": 0.6}, 17: {"O2Sat": 96.0},  # FiO2 7 h old: no ratio formed
        20: {"FiO2": 5.0, "O2Sat": 96.0},  # implausible FiO2 (a percent?): ignored
    })  # fmt: skip
    signs = organ_dysfunction(frame)
    assert present_hours(frame, "hypoxemia") == list(range(3, 9))
    assert describe_signs(signs.iloc[2]) == (
        "SpO2/FiO2 192 (< 235; SpO2 96 % on FiO2 0.50) at hour 3, new in this stay",
    )


def test_counts_newest_hours_and_sentences():
    frame = one_stay(10, {1: {"HR": 80.0, "Glucose": 100.0}, 2: {"Lactate": 3.4},
                          3: {"SBP": 85.0, "HR": 120.0}, 4: {"Platelets": 50.0}})  # fmt: skip
    signs = organ_dysfunction(frame)
    row = signs.iloc[4]  # hour 5
    assert row["signs"] == 3 and row["newest_sign_hour"] == 4.0
    assert (row["newest_lab_hour"], row["newest_vital_hour"]) == (4.0, 3.0)
    assert describe_signs(row) == (
        "Lactate 3.4 mmol/L (> 2) at hour 2",
        "Systolic BP 85 mm Hg (< 90) at hour 3",
        "Platelets 50 ×10³/µL (< 100) at hour 4",
    )
    assert describe_signs(row, when=lambda h: f"at {int(h):02d}:00")[0].endswith("at 02:00")
    first = signs.iloc[0]
    assert first["signs"] == 0 and math.isnan(first["newest_sign_hour"])
    assert describe_signs(first) == ()


def test_rows_in_any_order_give_the_same_signs_on_the_same_index():
    frame = wide_frame({
        "a": [{"Lactate": 3.0}, {}, {"SBP": 70.0}, {}],
        "b": [{}, {"Platelets": 20.0}, {}, {"O2Sat": 99.0}],
    })  # fmt: skip
    shuffled = frame.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(organ_dysfunction(shuffled).loc[frame.index],
                                  organ_dysfunction(frame))  # fmt: skip


def test_an_empty_frame_has_every_column():
    empty = organ_dysfunction(one_stay(1, {}).iloc[:0])
    assert len(empty) == 0 and set(SIGNS) <= set(empty.columns)


def test_vitals_age_is_the_freshest_vital_from_the_features():
    frame = one_stay(6, {1: {"Glucose": 90.0}, 2: {"HR": 80.0}, 4: {"Temp": 37.0}})
    ages = vitals_age_hours(build_features(frame))
    np.testing.assert_array_equal(ages, [NAN, 0, 1, 0, 1, 2])
    from_signs = frame["hour"] - organ_dysfunction(frame)["newest_vital_hour"]
    np.testing.assert_array_equal(ages, from_signs.to_numpy())


# ---------------------------------------------------------------- properties

VALUES = {
    "Lactate": (0.5, 6.0), "SBP": (60.0, 140.0), "MAP": (40.0, 100.0), "Creatinine": (0.4, 4.0),
    "Platelets": (20.0, 300.0), "Bilirubin_total": (0.2, 5.0), "O2Sat": (80.0, 100.0),
    "FiO2": (0.21, 1.0), "HR": (50.0, 140.0),
}  # fmt: skip


@st.composite
def stays(draw: st.DrawFn) -> pd.DataFrame:
    """A few stays, hourly, each variable measured in some hours, values near the cut-offs."""
    out = {}
    for p in range(draw(st.integers(1, 3))):
        hours = draw(st.integers(1, 60))
        rows = []
        for _ in range(hours):
            row = {}
            for column, (low, high) in VALUES.items():
                if draw(st.integers(0, 9)) == 0:
                    row[column] = round(draw(st.floats(low, high)), 1)
            rows.append(row)
        out[f"p{p}"] = rows
    return wide_frame(out)


def measurements(frame: pd.DataFrame, column: str) -> list[list[tuple[float, float]]]:
    """Per row: the (hour, value) measurements of `column` of its patient up to that row."""
    out, seen = [], {}
    for pid, hour, value in zip(frame.patient_id, frame.hour, frame[column], strict=True):
        history = seen.setdefault(pid, [])
        if not math.isnan(value):
            history.append((float(hour), float(value)))
        out.append(list(history))
    return out


def naive(frame: pd.DataFrame, column: str, test, lookback: float) -> list[bool]:
    """Per row: a measurement of `column` passing `test` in (t - lookback, t], same patient."""
    return [
        any(test(v) for h, v in history if h > t - lookback)
        for t, history in zip(frame.hour, measurements(frame, column), strict=True)
    ]


def creatinine_rises(history: list[tuple[float, float]]) -> bool:
    """Whether the last measurement of `history` is a KDIGO-style rise over the earlier ones."""
    (hour, value), earlier = history[-1], history[:-1]
    window = [v for h, v in earlier if h >= hour - 48]
    return bool(
        (window and value - min(window) >= 0.3 - 1e-9)
        or (earlier and value >= 1.5 * earlier[0][1] - 1e-9)
    )


def naive_creatinine(frame: pd.DataFrame) -> list[bool]:
    rises = [
        not math.isnan(v) and creatinine_rises(history)
        for v, history in zip(frame.Creatinine, measurements(frame, "Creatinine"), strict=True)
    ]
    return naive(frame.assign(Q=np.where(rises, 1.0, np.nan)), "Q", bool, 24)


def naive_hypoxemia(frame: pd.DataFrame) -> list[bool]:
    """New hypoxemia as the module docstring words it, reading by reading."""
    spo2s, fio2s = measurements(frame, "O2Sat"), measurements(frame, "FiO2")

    def low(hour: float, spo2: float, fio2s: list[tuple[float, float]]) -> bool:
        recent = [f for h, f in fio2s if hour - 6 < h <= hour and 0.21 <= f <= 1]
        return spo2 < 90 or (bool(recent) and spo2 / recent[-1] < 235)

    qualifying = []
    for spo2, fio2 in zip(spo2s, fio2s, strict=True):
        readings = [(h, low(h, v, fio2)) for h, v in spo2]
        qualifying.append([
            h for k, (h, hypoxemic) in enumerate(readings)
            if hypoxemic and any(not was for _, was in readings[:k])
        ])  # fmt: skip
    return [any(h > t - 6 for h in q) for t, q in zip(frame.hour, qualifying, strict=True)]


@settings(max_examples=40, deadline=None)
@given(stays())
def test_each_sign_is_true_exactly_when_a_qualifying_measurement_is_in_the_lookback(frame):
    signs = organ_dysfunction(frame)
    lactate = naive(frame, "Lactate", lambda v: v > 2, 24)
    platelets = naive(frame, "Platelets", lambda v: v < 100, 24)
    bilirubin = naive(frame, "Bilirubin_total", lambda v: v > 2, 24)
    hypotension = np.logical_or(naive(frame, "SBP", lambda v: v < 90, 6),
                                naive(frame, "MAP", lambda v: v < 65, 6))  # fmt: skip
    assert signs["lactate_high"].tolist() == lactate
    assert signs["platelets_low"].tolist() == platelets
    assert signs["bilirubin_high"].tolist() == bilirubin
    assert signs["hypotension"].tolist() == hypotension.tolist()
    assert signs["creatinine_rise"].tolist() == naive_creatinine(frame)
    assert signs["hypoxemia"].tolist() == naive_hypoxemia(frame)


@settings(max_examples=40, deadline=None)
@given(stays(), st.data())
def test_no_look_ahead_appending_hours_changes_no_earlier_row(frame, data):
    cut = {p: data.draw(st.integers(1, int(n)), label=p)
           for p, n in frame.groupby("patient_id")["hour"].max().items()}  # fmt: skip
    earlier = frame[frame["hour"] <= frame["patient_id"].map(cut)]
    full = organ_dysfunction(frame).loc[earlier.index]
    pd.testing.assert_frame_equal(organ_dysfunction(earlier), full)
