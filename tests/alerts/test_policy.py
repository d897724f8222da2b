from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wardwatch.alerts.policy import (
    Action,
    AlertMemory,
    PolicyBook,
    Situation,
    UnitPolicy,
    decide,
    load_policy_book,
)
from wardwatch.settings import load_settings

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
ICU = UnitPolicy(kind="ICU")
LACTATE = "Lactate 3.4 mmol/L (> 2) at 14:00"


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def situation(hours: float = 30.0, **changes) -> Situation:
    """A trustworthy score above the model's threshold (0.034) with one verifiable sign."""
    base = Situation(hour=hours, as_of=at(hours), risk=0.08, uncertainty=0.01, ood=False,
                     threshold=0.034, vitals_age_hours=1.0, signs=(LACTATE,))  # fmt: skip
    return replace(base, **changes)


def closed(state: str, hours: float, risk: float | None = 0.08) -> AlertMemory:
    return AlertMemory(state, opened_at=at(hours), closed_at=at(hours), closed_risk=risk)


def paused(hours: float, until: float | None = None, new_data: bool = False) -> AlertMemory:
    return AlertMemory("paused", opened_at=at(hours - 1), paused_at=at(hours),
                       paused_until=None if until is None else at(until),
                       pause_until_new_data=new_data)  # fmt: skip


def action(policy: UnitPolicy = ICU, s: Situation | None = None, sepsis=None, review=None):
    return decide(policy, s or situation(), sepsis, review).action


# ---------------------------------------------------------------- firing


def test_fires_above_the_threshold_with_a_sign_and_says_why():
    decision = decide(ICU, situation())
    assert decision.action is Action.FIRE
    assert decision.reasons[0] == "Risk 8.0% is above the ICU threshold 3.4%."
    assert LACTATE in decision.reasons
    assert any("±1.0 points" in r for r in decision.reasons)


def test_the_gate_keeps_a_high_risk_without_a_sign_quiet():
    decision = decide(ICU, situation(signs=()))
    assert decision.action is Action.NONE
    assert "No sign of organ dysfunction" in decision.reasons[1]
    ungated = replace(ICU, require_organ_dysfunction=False)
    assert action(ungated, situation(signs=())) is Action.FIRE


def test_below_the_threshold_stays_quiet_even_with_signs():
    assert action(s=situation(risk=0.02)) is Action.NONE


def test_a_unit_threshold_replaces_the_models():
    strict = replace(ICU, threshold=0.1)
    assert action(strict, situation(risk=0.08)) is Action.NONE
    assert action(strict, situation(risk=0.1)) is Action.FIRE
    assert decide(strict, situation(risk=0.1)).reasons[0].endswith("threshold 10.0%.")


def test_an_open_alert_is_not_opened_again():
    opened = AlertMemory("open", opened_at=at(29))
    assert action(sepsis=opened) is Action.NONE
    assert action(s=situation(ood=True), sepsis=opened) is Action.NONE


# ---------------------------------------------------------------- after a clinician's judgement


@pytest.mark.parametrize("state", ["dismissed", "confirmed"])
def test_no_second_alert_within_the_window_however_high_the_risk(state):
    memory = closed(state, hours=10, risk=0.08)
    for hours in (10, 11, 20, 33.99):
        assert action(s=situation(hours, risk=0.9), sepsis=memory) is Action.NONE
    reasons = decide(ICU, situation(20, risk=0.9), memory).reasons
    assert reasons == (f"A clinician {state} the sepsis alert at 2024-03-01 18:00 UTC; no new "
                       "alert before 2024-03-02 18:00 UTC.",)  # fmt: skip


@pytest.mark.parametrize("state", ["dismissed", "confirmed"])
def test_after_the_window_only_a_material_rise_re_alerts(state):
    memory = closed(state, hours=10, risk=0.08)
    assert action(s=situation(34, risk=0.11), sepsis=memory) is Action.NONE  # < 1.5 x 8 %
    assert action(s=situation(34, risk=0.12), sepsis=memory) is Action.FIRE
    assert action(s=situation(34, risk=0.12, signs=()), sepsis=memory) is Action.NONE  # gate
    why = decide(ICU, situation(34, risk=0.11), memory).reasons[1]
    assert why == f"The alert was {state}; a new one needs the risk to reach 1.5 × 8.0% = 12.0%."


def test_the_window_and_the_rise_are_configurable():
    memory = closed("dismissed", hours=10, risk=0.08)
    quick = replace(ICU, realert_after_hours=4, realert_rise=1.0)
    assert action(quick, situation(13.5), memory) is Action.NONE
    assert action(quick, situation(14), memory) is Action.FIRE


def test_an_unknown_closing_risk_is_measured_from_the_threshold():
    memory = closed("dismissed", hours=10, risk=None)
    assert action(s=situation(40, risk=0.05), sepsis=memory) is Action.NONE  # < 1.5 x 3.4 %
    assert action(s=situation(40, risk=0.052), sepsis=memory) is Action.FIRE


def test_without_suppression_a_dismissed_patient_is_alerted_again_at_once():
    loud = replace(ICU, suppress_realert=False)
    memory = closed("dismissed", hours=10, risk=0.08)
    assert action(loud, situation(11, risk=0.08), memory) is Action.FIRE


def test_a_clinicians_judgement_covers_untrustworthy_hours_in_its_window():
    memory = closed("dismissed", hours=10)
    assert action(s=situation(12, ood=True), sepsis=memory) is Action.NONE
    assert action(s=situation(35, ood=True), sepsis=memory) is Action.REVIEW


# ---------------------------------------------------------------- pauses


def test_a_paused_alert_comes_back_when_its_pause_ends():
    memory = paused(10, until=14)
    assert action(s=situation(13.5), sepsis=memory) is Action.NONE
    # it comes back whatever the model now says: the clinician asked to be reminded
    for s in (situation(14), situation(15, risk=0.001, signs=()), situation(16, ood=True)):
        assert action(s=s, sepsis=memory) is Action.RESUME
    assert "the pause has ended" in decide(ICU, situation(14), memory).reasons[0]


def test_a_pause_until_new_data_resumes_on_a_new_lab_or_sign_only():
    memory = paused(10, new_data=True)
    older = situation(12, newest_lab_at=at(9), newest_sign_at=at(8))
    assert decide(ICU, older, memory) == decide(ICU, situation(12), memory)
    assert action(s=older, sepsis=memory) is Action.NONE
    assert action(s=replace(older, newest_lab_at=at(11)), sepsis=memory) is Action.RESUME
    assert action(s=replace(older, newest_sign_at=at(11)), sepsis=memory) is Action.RESUME
    assert action(s=replace(older, newest_lab_at=at(10)), sepsis=memory) is Action.NONE
    reasons = decide(ICU, replace(older, newest_lab_at=at(11)), memory).reasons
    assert reasons[0] == ("The sepsis alert was paused until new data: a lab result from "
                          "2024-03-01 19:00 UTC.")  # fmt: skip


def test_a_pause_with_a_time_and_new_data_ends_at_whichever_comes_first():
    memory = paused(10, until=20, new_data=True)
    assert action(s=situation(12, newest_lab_at=at(11)), sepsis=memory) is Action.RESUME
    assert action(s=situation(20), sepsis=memory) is Action.RESUME


# ---------------------------------------------------------------- needs human review


@pytest.mark.parametrize("risk", [0.9, 0.08, 0.004])
def test_out_of_distribution_input_asks_for_review_not_an_alert_nor_silence(risk):
    decision = decide(ICU, situation(ood=True, risk=risk))
    assert decision.action is Action.REVIEW
    assert decision.reasons[0] == ("Input unlike the training population (out of "
                                   "distribution): the score may be wrong.")  # fmt: skip


def test_ood_review_can_be_switched_off():
    assert action(replace(ICU, review_ood=False), situation(ood=True)) is Action.FIRE


def test_stale_vital_signs_ask_for_review():
    decision = decide(ICU, situation(vitals_age_hours=7.0))
    assert decision.action is Action.REVIEW
    assert decision.reasons[0].startswith("No vital signs for 7 h (limit 6 h)")
    assert action(s=situation(vitals_age_hours=6.0)) is Action.FIRE
    ward = UnitPolicy(kind="ward", max_vitals_age_hours=12.0)
    assert action(ward, situation(vitals_age_hours=7.0)) is Action.FIRE


def test_a_stay_without_vital_signs_is_stale_once_older_than_the_limit():
    assert action(s=situation(hours=8, vitals_age_hours=None)) is Action.REVIEW


def test_just_admitted_without_vitals_an_unusual_score_waits_for_them():
    decision = decide(ICU, situation(hours=1, vitals_age_hours=None, ood=True))
    assert decision.action is Action.NONE
    assert decision.reasons[-1].startswith("Awaiting the first vital signs (1 h into the stay)")
    # a trustworthy score with a sign alerts even before the first vital sign
    assert action(s=situation(hours=1, vitals_age_hours=None)) is Action.FIRE


def test_too_wide_an_uncertainty_asks_for_review():
    decision = decide(ICU, situation(uncertainty=0.2, risk=0.3))
    assert decision.action is Action.REVIEW
    assert decision.reasons[0] == "Too uncertain to call: risk 30.0% ± 20.0 points (limit ± 15)."
    assert action(s=situation(uncertainty=0.15)) is Action.FIRE
    assert action(replace(ICU, max_uncertainty=None), situation(uncertainty=0.2)) is Action.FIRE


@pytest.mark.parametrize("risk", [float("nan"), float("inf")])
def test_no_usable_risk_asks_for_review(risk):
    assert action(s=situation(risk=risk)) is Action.REVIEW


def test_a_review_floor_accepts_silence_below_it():
    floored = replace(ICU, review_min_risk=0.01)
    assert action(floored, situation(ood=True, risk=0.005)) is Action.NONE
    assert action(floored, situation(ood=True, risk=0.02)) is Action.REVIEW


def test_a_review_is_not_raised_twice():
    assert action(s=situation(ood=True), review=AlertMemory("open", at(29))) is Action.NONE


def test_a_handled_review_is_not_raised_again_within_its_window():
    handled = closed("dismissed", hours=10, risk=0.08)
    assert action(s=situation(20, ood=True, risk=0.1), review=handled) is Action.NONE
    assert action(s=situation(34, ood=True, risk=0.1), review=handled) is Action.REVIEW


def test_within_the_review_window_a_material_rise_above_threshold_raises_it_again():
    handled = closed("dismissed", hours=10, risk=0.02)
    assert action(s=situation(12, ood=True, risk=0.03), review=handled) is Action.NONE  # < thr
    decision = decide(ICU, situation(12, ood=True, risk=0.2), review=handled)
    assert decision.action is Action.REVIEW
    assert decision.reasons[-1] == "Risk rose to 20.0% from 2.0% since the last review."


def test_a_review_closed_without_a_risk_measures_the_rise_from_the_threshold():
    handled = closed("dismissed", hours=10, risk=None)
    assert action(s=situation(12, ood=True, risk=0.05), review=handled) is Action.NONE
    decision = decide(ICU, situation(12, ood=True, risk=0.06), review=handled)
    assert decision.reasons[-1] == "Risk rose to 6.0% from 3.4% since the last review."


def test_a_paused_review_comes_back_while_the_input_is_still_doubtful():
    memory = paused(10, until=14)
    assert action(s=situation(13, ood=True), review=memory) is Action.NONE
    assert action(s=situation(14, ood=True), review=memory) is Action.RESUME_REVIEW
    # once the input can be trusted, the sepsis rules apply again
    assert action(s=situation(14), review=memory) is Action.FIRE


@given(
    risk=st.floats(0, 1),
    uncertainty=st.floats(0, 0.5),
    ood=st.booleans(),
    age=st.one_of(st.none(), st.floats(0, 48)),
    hours=st.floats(0, 200),
    signs=st.booleans(),
)
def test_never_a_confident_alert_on_untrustworthy_input(risk, uncertainty, ood, age, hours, signs):
    s = situation(hours, risk=risk, uncertainty=uncertainty, ood=ood, vitals_age_hours=age,
                  signs=(LACTATE,) if signs else ())  # fmt: skip
    result = action(s=s)
    stale = (age is None and hours > 6) or (age is not None and age > 6)
    doubtful = ood or uncertainty > 0.15 or stale
    if doubtful:
        assert result is not Action.FIRE
        assert result is Action.REVIEW or (age is None and hours <= 6)
    else:
        assert result is (Action.FIRE if risk >= 0.034 and signs else Action.NONE)


# ---------------------------------------------------------------- the values themselves


def test_situations_need_aware_times_and_memories_valid_states():
    with pytest.raises(ValueError, match="timezone-aware"):
        situation(as_of=datetime(2024, 3, 1, 8))
    with pytest.raises(ValueError, match="not one of"):
        AlertMemory("snoozed", at(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="closed_at"):
        AlertMemory("dismissed", at(0))
    with pytest.raises(ValueError, match="paused_at"):
        AlertMemory("paused", at(0))


@pytest.mark.parametrize(
    "changes",
    [{"threshold": 1.5}, {"realert_rise": 0.9}, {"realert_after_hours": -1},
     {"max_uncertainty": 0.0}, {"max_vitals_age_hours": -2.0}],
)  # fmt: skip
def test_a_policy_refuses_nonsense(changes):
    with pytest.raises(ValueError):
        replace(ICU, **changes)


# ---------------------------------------------------------------- units and the settings file


@pytest.mark.parametrize(
    ("unit", "kind"),
    [("MICU", "ICU"), ("sicu", "ICU"), ("CCU", "ICU"), ("CVICU", "ICU"), ("ICU", "ICU"),
     ("ED", "ED"), ("er", "ED"), ("4 WEST", "ward"), ("", "ward"), (None, "ward")],
)  # fmt: skip
def test_unit_codes_map_to_kinds_by_convention(unit, kind):
    book = PolicyBook()
    assert book.kind_of(unit) == kind
    assert book.for_unit(unit).kind == kind


def test_defaults_differ_by_unit_where_practice_does():
    book = PolicyBook()
    assert book.for_unit("MICU").max_vitals_age_hours == 6
    assert book.for_unit("7 EAST").max_vitals_age_hours == 12
    assert book.for_unit("MICU").threshold is None  # the model's own


TOML = """
[wardwatch]
oldest_year = 1995

[alerts]
realert_after_hours = 12

[alerts.ICU]
threshold = 0.05
max_vitals_age_hours = 4

[alerts.ward]
require_organ_dysfunction = false
max_uncertainty = false

[alerts.ED]
threshold = "model"

[alerts.units]
"4 West" = "ward"
"BURN" = "ICU"
"""


def test_per_unit_policies_from_the_settings_file(tmp_path, monkeypatch):
    path = tmp_path / "wardwatch.toml"
    path.write_text(TOML)
    book = PolicyBook.load(path)
    icu, ward, ed = book.for_unit("MICU"), book.for_unit("4 WEST"), book.for_unit("ED")
    assert (icu.threshold, icu.max_vitals_age_hours, icu.realert_after_hours) == (0.05, 4, 12)
    assert (ward.require_organ_dysfunction, ward.max_uncertainty) == (False, None)
    assert ward.realert_after_hours == 12 and ed.threshold is None
    assert book.for_unit("burn").kind == "ICU"
    assert action(icu, situation(risk=0.04)) is Action.NONE
    # the same file the settings read, found the same way
    monkeypatch.setenv("WARDWATCH_CONFIG", str(path))
    assert load_policy_book() == book
    assert load_settings().oldest_year == 1995


def test_without_a_file_the_defaults_apply(tmp_path, monkeypatch):
    monkeypatch.setenv("WARDWATCH_CONFIG", str(tmp_path / "absent.toml"))
    assert load_policy_book() == PolicyBook() == PolicyBook.load(None)
    (tmp_path / "empty.toml").write_text("[wardwatch]\n")
    assert PolicyBook.load(tmp_path / "empty.toml") == PolicyBook()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[alerts]\nthreshhold = 0.1\n", "threshhold"),
        ("[alerts.ICU]\nrealert_hours = 3\n", "realert_hours"),
        ("[alerts.NICU]\nthreshold = 0.1\n", "NICU"),
        ("[alerts.units]\n'5 WEST' = 'wards'\n", "5 WEST"),
        ("[alerts.ICU]\nsuppress_realert = 'yes'\n", "suppress_realert"),
        ("[alerts.ICU]\nrealert_rise = true\n", "realert_rise"),
        ("[alerts]\nICU = 3\n", "ICU"),
    ],
)
def test_bad_settings_are_refused_by_name(tmp_path, text, named):
    path = tmp_path / "wardwatch.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=named):
        PolicyBook.load(path)


def test_with_all_changes_every_unit():
    book = PolicyBook().with_all(require_organ_dysfunction=False)
    assert not any(p.require_organ_dysfunction for p in book.policies.values())
    assert book.for_unit("4 WEST").max_vitals_age_hours == 12
