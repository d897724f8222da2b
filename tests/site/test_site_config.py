"""The site configuration: JSON round trip, refusals, and what the policy and labels read."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wardwatch.alerts.policy import PolicyBook
from wardwatch.site.config import (
    PriorShift,
    SiteConfig,
    SiteConfigError,
    data_hash,
    shift_prior,
    site_policy_book,
    stay_units,
)

probabilities = st.floats(0.001, 0.999)


def config(**changes) -> SiteConfig:
    values = dict(
        model_version="sepsis-abc", thresholds={"MICU": 0.05, "SICU": 0.02, "ICU": 0.03},
        method="alerts_per_100_patient_days", data_hash="f" * 64,
        created="2026-11-23T10:00:00+00:00", target={"alerts_per_100_patient_days": 20.0},
        prior_shift=PriorShift(0.02, {"MICU": 0.03, "SICU": 0.01}),
        achieved={"MICU": {"threshold": 0.05, "alerts_per_100_patient_days": 19.5}},
        notes=("ICU: 3 stays",),
    )  # fmt: skip
    return SiteConfig(**{**values, **changes})


def test_json_round_trip_keeps_every_field(tmp_path):
    original = config()
    assert SiteConfig.from_json(original.to_json()) == original
    assert SiteConfig.load(original.save(tmp_path / "site.json")) == original


@given(
    st.dictionaries(st.sampled_from(["MICU", "SICU", "ICU", "CCU"]), probabilities, min_size=1),
    st.none() | st.tuples(probabilities, probabilities),
)
def test_round_trip_of_any_thresholds_and_shift(thresholds, shift):
    prior = None if shift is None else PriorShift(shift[0], {"MICU": shift[1]})
    original = config(thresholds=thresholds, prior_shift=prior)
    assert SiteConfig.from_json(original.to_json()) == original


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="something-else"), "not a wardwatch-site-config"),
        (lambda d: d.pop("model_version"), "lacks"),
        (lambda d: d["thresholds"].update(MICU=1.5), "probability"),
        (lambda d: d["thresholds"].update(MICU="high"), "number"),
        (lambda d: d.update(thresholds={}), "at least one"),
        (lambda d: d.update(prior_shift={"training_prevalence": 0.02}), "prior_shift"),
    ],
)
def test_malformed_documents_are_refused_with_the_reason(edit, message):
    document = config().to_dict()
    edit(document)
    with pytest.raises(SiteConfigError, match=message):
        SiteConfig.from_json(json.dumps(document))


def test_unreadable_or_non_json_file_is_a_site_config_error(tmp_path):
    with pytest.raises(SiteConfigError, match="cannot read"):
        SiteConfig.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SiteConfigError, match="not JSON"):
        SiteConfig.load(tmp_path / "bad.json")


def test_a_config_for_another_model_is_refused():
    with pytest.raises(SiteConfigError, match="sepsis-abc"):
        config().check_model("sepsis-other")
    config().check_model("sepsis-abc")


def test_policy_book_gives_each_unit_its_own_threshold_and_keeps_other_settings():
    base = PolicyBook().with_all(realert_after_hours=12.0)
    book = site_policy_book(config(), base)
    assert book.for_unit("MICU").threshold == 0.05
    assert book.for_unit("sicu").threshold == 0.02
    assert book.for_unit("ICU").threshold == 0.03
    assert book.for_unit("CCU").threshold == 0.03  # another ICU: the ICU kind's threshold
    assert book.for_unit("ED").threshold is None  # not calibrated: the model's own
    assert book.for_unit("MICU").realert_after_hours == 12.0


@given(st.sampled_from(["MICU", "SICU", "ICU", "CCU", "ED", "4 WEST", None]))
def test_plain_thresholds_agree_with_the_policy_book(unit):
    site = config(thresholds={"MICU": 0.05, "ICU": 0.03})
    policy = site_policy_book(site).for_unit(unit).threshold
    assert site.threshold_for(unit, default=0.5) == (0.5 if policy is None else policy)


def test_alerts_use_each_rows_unit_threshold_on_shifted_risk():
    site = config(prior_shift=None)
    risk = np.array([0.04, 0.04, 0.04, 0.04])
    units = np.array(["MICU", "SICU", "ICU", "ED"], dtype=object)
    assert site.alerts(risk, units, default=0.5).tolist() == [False, True, True, False]
    shifted = config(prior_shift=PriorShift(0.02, {"SICU": 0.002}))
    assert shifted.alerts(risk, units, default=0.5).tolist() == [False, False, True, False]


@given(probabilities, probabilities, probabilities)
def test_prior_shift_is_undone_by_the_reverse_shift_and_keeps_order(p, a, b):
    there = shift_prior([p, min(p * 1.1, 0.999)], a, b)
    back = shift_prior(there, b, a)
    assert np.allclose(back, [p, min(p * 1.1, 0.999)], rtol=1e-6, atol=1e-9)
    assert there[0] <= there[1]
    assert (there[0] > p) == (b > a) or np.isclose(there[0], p)


def test_stay_units_come_from_each_stays_first_row():
    wide = pd.DataFrame({
        "patient_id": ["a", "a", "b", "c", "c"],
        "Unit1": [1.0, 0.0, np.nan, 0.0, 0.0],
        "Unit2": [0.0, 1.0, np.nan, 1.0, 1.0],
    })  # fmt: skip
    assert stay_units(wide).tolist() == ["MICU", "MICU", "ICU", "SICU", "SICU"]


def test_data_hash_follows_content_not_location(tmp_path):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "p1.psv").write_text("HR|SepsisLabel\n80|0\n")
    assert data_hash(tmp_path / "one") == data_hash(tmp_path / "two")
    (tmp_path / "two" / "p1.psv").write_text("HR|SepsisLabel\n81|0\n")
    assert data_hash(tmp_path / "one") != data_hash(tmp_path / "two")
