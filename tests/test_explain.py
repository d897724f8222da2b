"""Explanations: stars follow independently computed risk drops; what-if answers honestly.

Everything runs the shipped model on real sample stays and on constructed patients; the
expected values are computed here the slow, obvious way (edit the frame, `latest_features`,
`RiskModel.predict`, one counterfactual at a time), never by calling the code under test.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import wardwatch
from wardwatch.explain import (
    WhatIfError,
    _effect,
    explain,
    feature_inputs,
    typical_values,
    what_if,
)
from wardwatch.features import DEMOGRAPHIC_FEATURES, FEATURE_NAMES, FeatureError, latest_features
from wardwatch.ingest.psv import MEASURED, read_cohort
from wardwatch.model.artifact import load_shipped_model
from wardwatch.model.risk import RiskModel

SAMPLE = Path(wardwatch.__file__).parent / "data" / "physionet_sample" / "setA_sample.tar.gz"
NORMAL_VITALS = {"HR": 78, "O2Sat": 98, "Temp": 36.9, "SBP": 124, "DBP": 72, "MAP": 89, "Resp": 15}
NORMAL_LABS = {
    "WBC": 7.5, "Creatinine": 0.9, "Platelets": 240, "BUN": 14, "Glucose": 105,
    "Potassium": 4.1, "Hgb": 13.5, "Hct": 40,
}  # fmt: skip


@pytest.fixture(scope="module")
def model() -> RiskModel:
    return load_shipped_model()


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return read_cohort(SAMPLE, limit=30)


def stay(sample: pd.DataFrame, rank: int = 0, min_hours: int = 30) -> pd.DataFrame:
    """A sample stay with at least `min_hours` rows (the rank-th one), index reset."""
    sizes = sample.groupby("patient_id").size()
    patient = sorted(sizes[sizes >= min_hours].index)[rank]
    return sample[sample["patient_id"] == patient].reset_index(drop=True)


def constructed(hours: int = 60, lactate: float = 9.0) -> pd.DataFrame:
    """Normal vitals every hour, normal labs twice, lactate 1.1 at hour 1 and `lactate` now."""
    data = {v: np.full(hours, np.nan) for v in MEASURED}
    for v, x in NORMAL_VITALS.items():
        data[v][:] = x
    for v, x in NORMAL_LABS.items():
        data[v][[0, hours - 8]] = x
    data["Lactate"][[0, hours - 1]] = (1.1, lactate)
    hour = np.arange(1, hours + 1)
    demographics = {"Age": 64.0, "Gender": 0.0, "Unit1": 1.0, "Unit2": 0.0, "HospAdmTime": -3.0}
    frame = pd.DataFrame({"patient_id": "constructed", "hour": hour, **data, **demographics})
    frame["ICULOS"] = hour.astype(float)
    return frame


# ---------------------------------------------------------------- independent computations


def risk_of(model: RiskModel, history: pd.DataFrame) -> float:
    return float(model.predict(latest_features(history))["risk"].iloc[0])


def with_last(history: pd.DataFrame, variable: str, value: float) -> pd.DataFrame:
    """The history with `variable`'s last measured value (else the last hour's) set to value."""
    edited = history.sort_values("hour").reset_index(drop=True)
    measured = edited.index[edited[variable].notna()]
    row = measured[-1] if len(measured) else edited.index[-1]
    edited.loc[row, variable] = value
    return edited


def drops(model: RiskModel, history: pd.DataFrame) -> dict[str, float]:
    """risk - risk with the last value made typical, one variable at a time."""
    risk, typical = risk_of(model, history), typical_values(model)
    return {
        v: risk - risk_of(model, with_last(history, v, typical[v]))
        for v in MEASURED
        if history[v].notna().any()
    }


def expected_stars(model: RiskModel, history: pd.DataFrame, top: int) -> list[str]:
    ranked = sorted(drops(model, history).items(), key=lambda kv: (-kv[1], MEASURED.index(kv[0])))
    return [v for v, drop in ranked if drop > 0][:top]


# ---------------------------------------------------------------- starred measurements


def test_constructed_high_lactate_is_starred_first(model):
    history = constructed(lactate=9.0)
    explanation = explain(model, history)
    first = explanation.starred[0]
    assert first.variable == "Lactate"
    assert (first.value, first.hours_ago, first.measured_hour) == (9.0, 0, 60)
    replaced = with_last(history, "Lactate", first.typical)
    assert first.risk_if_typical == pytest.approx(risk_of(model, replaced), rel=1e-12)
    assert first.risk_change == pytest.approx(explanation.risk - first.risk_if_typical)
    assert first.risk_change > 0


def test_a_typical_value_is_never_starred(model):
    typical = typical_values(model)["Lactate"]
    lactate = explain(model, constructed(lactate=typical)).measurements
    (measurement,) = [m for m in lactate if m.variable == "Lactate"]
    assert measurement.risk_change == 0.0
    assert not measurement.starred


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_star_order_equals_independent_risk_drops(model, sample, rank):
    history = stay(sample, rank)
    explanation = explain(model, history, top=4)
    assert [m.variable for m in explanation.starred] == expected_stars(model, history, top=4)
    expected = drops(model, history)
    for m in explanation.measurements:
        if m.value is not None:
            assert m.risk_change == pytest.approx(expected[m.variable], rel=1e-9, abs=1e-12)


def test_measurements_are_sorted_by_risk_drop_and_never_measured_last(model, sample):
    explanation = explain(model, stay(sample))
    changes = [m.risk_change for m in explanation.measurements]
    measured = [c for c in changes if c is not None]
    assert measured == sorted(measured, reverse=True)
    assert changes[len(measured) :] == [None] * (len(changes) - len(measured))
    assert {m.variable for m in explanation.measurements} == set(MEASURED)


def test_never_measured_is_shown_as_such_and_never_starred(model):
    history = constructed()
    explanation = explain(model, history, top=len(MEASURED))
    never = [v for v in MEASURED if history[v].isna().all()]
    assert never  # the constructed stay has no EtCO2, AST, ... at all
    for m in explanation.measurements:
        if m.variable in never:
            assert (m.value, m.risk_if_typical, m.starred) == (None, None, False)
            assert m.sentence == f"{m.display}: not measured (normal {m.normal})"
    assert all(m.risk_change > 0 for m in explanation.starred)


def test_a_variable_without_training_reference_is_listed_but_not_starred(model):
    history = constructed()
    history.loc[history.index[-1], "EtCO2"] = 60.0  # never measured in the training set
    explanation = explain(model, history, top=len(MEASURED))
    (etco2,) = [m for m in explanation.measurements if m.variable == "EtCO2"]
    assert (etco2.value, etco2.risk_if_typical, etco2.starred) == (60.0, None, False)
    assert etco2.sentence.endswith("no training reference to compare it with")


def test_top_limits_the_stars(model, sample):
    history = stay(sample)
    assert explain(model, history, top=0).starred == ()
    assert len(explain(model, history, top=1).starred) <= 1
    with pytest.raises(ValueError, match="top"):
        explain(model, history, top=-1)


def test_risk_and_uncertainty_are_the_models(model, sample):
    history = stay(sample, 1)
    explanation = explain(model, history)
    expected = model.predict(latest_features(history)).iloc[0]
    assert explanation.risk == pytest.approx(expected["risk"], rel=1e-12)
    assert explanation.uncertainty == pytest.approx(expected["uncertainty"], rel=1e-9)
    assert explanation.ood == expected["ood"]
    assert explanation.hour == history["hour"].max()


def test_row_order_of_the_history_does_not_matter(model, sample):
    history = stay(sample, 2)
    shuffled = history.sample(frac=1.0, random_state=7)
    assert explain(model, shuffled) == explain(model, history)


def test_history_of_two_stays_is_refused(model, sample):
    with pytest.raises(FeatureError, match="one stay"):
        explain(model, sample)


# ---------------------------------------------------------------- tree-SHAP contributions


def test_contributions_add_up_to_the_members_raw_log_odds(model, sample):
    history = stay(sample)
    explanation = explain(model, history)
    x = latest_features(history).loc[:, list(model.feature_names)].to_numpy()
    raw = np.mean([b.predict(x, raw_score=True)[0] for b in model.boosters])
    total = sum(m.contribution for m in explanation.measurements)
    total += sum(c.contribution for c in explanation.others) + explanation.baseline_log_odds
    assert total == pytest.approx(raw, abs=1e-9)


def test_others_are_the_models_demographic_inputs_in_words(model, sample):
    explanation = explain(model, stay(sample))
    used = {f for f in model.feature_names if f in DEMOGRAPHIC_FEATURES}
    assert {c.variable for c in explanation.others} == used
    texts = {c.variable: c.text for c in explanation.others}
    assert re.fullmatch(r"ICU length of stay \d+ h", texts["ICULOS"])
    assert texts["Gender"] in ("Sex: male", "Sex: female")


def test_every_feature_has_an_attribution_rule():
    known = frozenset(MEASURED)
    for feature in FEATURE_NAMES:
        inputs = feature_inputs(feature, known)
        assert set(inputs) <= set(MEASURED)
        assert (inputs == ()) == (feature in DEMOGRAPHIC_FEATURES)
    assert feature_inputs("Lactate_delta_6h", known) == ("Lactate",)
    assert feature_inputs("Bilirubin_direct_hours_since", known) == ("Bilirubin_direct",)


def test_derived_features_follow_the_inputs_they_read():
    assert feature_inputs("MAP_est", frozenset({"MAP", "SBP", "DBP"})) == ("MAP",)
    assert feature_inputs("MAP_est", frozenset({"SBP", "DBP"})) == ("SBP", "DBP")
    assert feature_inputs("ShockIndex", frozenset({"HR"})) == ("HR",)
    assert feature_inputs("ShockIndex", frozenset()) == ("HR", "SBP")  # about their absence
    assert "Creatinine" in feature_inputs("SOFA_partial", frozenset({"Creatinine", "HR"}))


# ---------------------------------------------------------------- the population mean


def test_typical_values_are_the_training_means_read_off_the_grids(model):
    typical = typical_values(model)
    grids = dict(zip(model.ood.variables, model.ood.grids_, strict=True))
    assert "EtCO2" not in typical  # never measured in set A: no grid, no mean
    for v in MEASURED:
        grid = grids[v]
        if v == "EtCO2":
            continue
        assert grid[0] <= typical[v] <= grid[-1]
        spread = grid[-1] - grid[0]
        assert typical[v] == pytest.approx(np.mean(grid), abs=0.01 * spread)
    assert 1.0 < typical["Lactate"] < 3.5
    assert 36.0 < typical["Temp"] < 38.0


# ---------------------------------------------------------------- what-if


def test_what_if_with_the_current_value_changes_nothing(model, sample):
    history = stay(sample)
    current = history["HR"].dropna().iloc[-1]
    answer = what_if(model, history, {"HR": current})
    assert answer.risk_after == answer.risk_before == pytest.approx(risk_of(model, history))


def test_what_if_lower_lactate_does_not_raise_risk(model):
    answer = what_if(model, constructed(lactate=9.0), {"lactate": 1.0})
    assert answer.risk_after <= answer.risk_before
    expected = risk_of(model, with_last(constructed(lactate=9.0), "Lactate", 1.0))
    assert answer.risk_after == pytest.approx(expected, rel=1e-12)
    assert answer.uncertainty_after >= 0.0
    assert answer.changes == (("Lactate", 1.0),)


def test_what_if_typical_is_the_starred_counterfactual(model):
    history = constructed()
    lactate = next(m for m in explain(model, history).measurements if m.variable == "Lactate")
    answer = what_if(model, history, {"Lactate": lactate.typical})
    assert answer.risk_after == pytest.approx(lactate.risk_if_typical, rel=1e-12)


def test_what_if_adds_a_never_measured_value_at_the_last_hour(model):
    history = constructed()
    answer = what_if(model, history, {"Bilirubin_total": 6.0})
    expected = risk_of(model, with_last(history, "Bilirubin_total", 6.0))
    assert answer.risk_after == pytest.approx(expected, rel=1e-12)
    assert "not measured so far" in answer.sentence


@pytest.mark.parametrize("name", ["Lactate", "lactate", "LACTATE", " Lactate "])
def test_what_if_accepts_codes_and_display_names(model, name):
    assert what_if(model, constructed(), {name: 1.0}).changes == (("Lactate", 1.0),)


def test_what_if_takes_several_changes_in_clinical_words(model):
    answer = what_if(model, constructed(), {"heart rate": 130, "Temperature": 39.5})
    assert answer.changes == (("HR", 130.0), ("Temp", 39.5))
    assert "Heart rate were 130/min (now 78/min, this hour)" in answer.sentence
    assert "Temperature were 39.5 °C" in answer.sentence


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"Lactat": 1.0}, r"'Lactat' is not a measured variable.*Lactate"),
        ({"Age": 40.0}, "not a measured variable"),
        ({"Lactate": 400.0}, r"Lactate 400.0 mmol/L is not plausible; allowed 0\.1–40 mmol/L"),
        ({"Temp": -3.0}, "allowed 25–45 °C"),
        ({"Lactate": float("nan")}, "not plausible"),
        ({"Lactate": "high"}, "not plausible"),
        ({"Lactate": 1.0, "lactate": 2.0}, "changed twice"),
        ({}, "at least one change"),
    ],
)
def test_what_if_refuses_what_it_cannot_answer(model, changes, message):
    with pytest.raises(WhatIfError, match=message):
        what_if(model, constructed(), changes)


def test_what_if_error_is_a_value_error():
    assert issubclass(WhatIfError, ValueError)


# ---------------------------------------------------------------- clinical words


FEATURE_WORDS = re.compile(r"_|hours_since|delta|\bICULOS\b|\bGender\b|\bHR\b|Bilirubin_total")


def test_sentences_speak_clinical_words_and_units(model, sample):
    explanation = explain(model, constructed())
    texts = [m.sentence for m in explanation.measurements]
    texts += [c.sentence for c in explanation.others] + [c.text for c in explanation.others]
    texts += [explain(model, stay(sample, k)).measurements[0].sentence for k in range(3)]
    texts.append(what_if(model, constructed(), {"Lactate": 1.0, "SBP": 90}).sentence)
    for text in texts:
        assert not FEATURE_WORDS.search(text), text
    lactate = next(m for m in explanation.measurements if m.variable == "Lactate")
    assert lactate.sentence.startswith("Lactate 9 mmol/L, this hour (normal 0.5–2): raises risk")
    assert re.search(r"from \d+\.\d\d?% to \d+\.\d\d?%$", lactate.sentence)
    # A change one decimal would hide gets a second decimal; one it shows keeps one.
    assert _effect(0.0061, 0.0064) == "raises risk from 0.61% to 0.64%"
    assert _effect(0.0061, 0.0078) == "raises risk from 0.6% to 0.8%"
    assert _effect(0.0310, 0.0300) == "lowers risk from 3.1% to 3.0%"
    assert _effect(0.0300, 0.03001).startswith("does not change risk")
    units = {m.variable: m.unit for m in explanation.measurements}
    assert [units[v] for v in ("Temp", "SBP", "HR", "O2Sat")] == ["°C", "mm Hg", "/min", "%"]
    assert any("Systolic blood pressure 124 mm Hg" in t for t in texts)
    assert any("Temperature 36.9 °C" in t for t in texts)
