from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.strategies import wide_frame

import wardwatch
from wardwatch.alerts import burden as burden_module
from wardwatch.alerts.burden import burden, policy_variants, simulate
from wardwatch.alerts.policy import PolicyBook
from wardwatch.alerts.signs import organ_dysfunction
from wardwatch.evaluate.utility import Stays
from wardwatch.features import build_features
from wardwatch.ingest.psv import read_cohort
from wardwatch.model.artifact import load_shipped_model

SAMPLE = Path(wardwatch.__file__).parent / "data" / "physionet_sample" / "setA_sample.tar.gz"
THRESHOLD = 0.034
HOURS = 24


def hours(extra: dict[int, dict[str, float]], septic_from: int | None = None) -> list[dict]:
    """24 hourly rows (row index 0..23) with a heart rate every hour, plus `extra` by row."""
    return [
        {"HR": 80.0, "SepsisLabel": float(septic_from is not None and r >= septic_from),
         **extra.get(r, {})}
        for r in range(HOURS)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cohort() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three patient-days worked out by hand (row indices; t_sepsis = first label row + 6):

    p0 septic, labelled from row 12 (t_sepsis row 18); risk 0.5 from row 8; lactate 3 at row 10.
    p1 not septic; platelets 80 at row 0 (a sign all stay); risk 0.5 at rows 2-3 and 15-16.
    p2 not septic; low risk; out of distribution at rows 5 and 10.
    """
    wide = wide_frame({
        "p0": hours({10: {"Lactate": 3.0}}, septic_from=12),
        "p1": hours({0: {"Platelets": 80.0}}),
        "p2": hours({}),
    }, {p: {"Unit1": 1.0} for p in ("p0", "p1", "p2")})  # fmt: skip
    risk = np.full(3 * HOURS, 0.01)
    risk[8:HOURS] = 0.5
    risk[HOURS + np.array([2, 3, 15, 16])] = 0.5
    ood = np.zeros(3 * HOURS, bool)
    ood[2 * HOURS + np.array([5, 10])] = True
    predictions = pd.DataFrame({"risk": risk, "uncertainty": 0.01, "ood": ood})
    return wide, predictions


def rows_where(flags: pd.Series) -> list[int]:
    return np.flatnonzero(flags.to_numpy()).tolist()


def test_the_policy_hour_by_hour(cohort):
    wide, predictions = cohort
    simulated = simulate(wide, predictions, PolicyBook(), THRESHOLD)
    # p0: rows 8-9 have no sign yet; row 10 fires and is dismissed (label 0 there) and the
    # 24 h window keeps the rest quiet. p1: row 2 fires; row 15 is inside the window.
    assert rows_where(simulated["fired"]) == [10, HOURS + 2]
    # p2: row 5 is flagged for review; row 10 falls in the review window.
    assert rows_where(simulated["review"]) == [2 * HOURS + 5]


def test_without_the_gate_the_alert_comes_at_the_first_high_risk(cohort):
    wide, predictions = cohort
    book = PolicyBook().with_all(require_organ_dysfunction=False)
    assert rows_where(simulate(wide, predictions, book, THRESHOLD)["fired"]) == [8, HOURS + 2]


def test_without_suppression_every_qualifying_hour_alerts_again(cohort):
    wide, predictions = cohort
    book = PolicyBook().with_all(suppress_realert=False)
    fired = rows_where(simulate(wide, predictions, book, THRESHOLD)["fired"])
    assert fired == [*range(10, HOURS), *(HOURS + np.array([2, 3, 15, 16])).tolist()]


def test_the_burden_counted_by_hand(cohort):
    wide, predictions = cohort
    stays = Stays.from_labels(wide["patient_id"], wide["SepsisLabel"])
    result = burden(wide, simulate(wide, predictions, PolicyBook(), THRESHOLD), stays)
    assert result == pytest.approx({
        "alerts": 2, "alerts_per_100_patient_days": 200 / 3,
        "review_flags": 1, "review_flags_per_100_patient_days": 100 / 3,
        "sensitivity": 1.0, "sensitivity_before_onset": 1.0, "sensitivity_alert_or_review": 1.0,
        "ppv_per_alert": 0.5, "median_lead_hours": 8.0, "patients_alerted": 2 / 3,
        "patient_days": 3.0,
    })  # fmt: skip


def test_the_variants_side_by_side(cohort):
    wide, predictions = cohort
    result = policy_variants(wide, predictions, PolicyBook(), THRESHOLD)
    rows = {(r["organ_dysfunction_gate"], r["realert_suppression"]): r for r in result["variants"]}
    expected = {  # (gate, suppression): alerts, alerts on p0 up to row 21, lead hours
        (None, None): (3, 1, 10.0),  # episodes: p0 from row 8; p1 from rows 2 and 15
        (True, True): (2, 1, 8.0),
        (True, False): (18, 12, 8.0),  # p0 rows 10-23, p1 rows 2, 3, 15, 16
        (False, True): (2, 1, 10.0),
        (False, False): (20, 14, 10.0),  # p0 rows 8-23
    }
    for key, (alerts, useful, lead) in expected.items():
        row = rows[key]
        assert (row["alerts"], row["median_lead_hours"]) == (alerts, lead), key
        assert row["ppv_per_alert"] == pytest.approx(useful / alerts), key
    assert rows[(None, None)]["review_flags"] == 0
    assert all(rows[k]["review_flags"] == 1 for k in expected if k != (None, None))
    assert set(result) == {"threshold", "policies", "variants", "definitions"}
    assert result["policies"]["ICU"]["suppress_realert"] is True


def test_a_units_own_threshold_applies_to_the_threshold_baseline_too(cohort):
    wide, predictions = cohort
    book = PolicyBook.from_table({"ICU": {"threshold": 0.6}})
    result = policy_variants(wide, predictions, book, THRESHOLD)
    assert all(row["alerts"] == 0 for row in result["variants"])


def test_the_replay_asks_decide_every_hour(cohort, monkeypatch):
    wide, predictions = cohort
    calls = []
    real = burden_module.decide
    monkeypatch.setattr(burden_module, "decide", lambda *a: calls.append(a) or real(*a))
    simulate(wide, predictions, PolicyBook(), THRESHOLD)
    assert len(calls) == len(wide)
    assert [c[1].hour for c in calls[:3]] == [1.0, 2.0, 3.0]


def test_the_simulated_clinician_confirms_labelled_hours_and_dismisses_the_rest(
    cohort, monkeypatch
):
    wide, predictions = cohort
    seen = []
    real = burden_module.decide
    monkeypatch.setattr(burden_module, "decide", lambda *a: seen.append(a[2]) or real(*a))
    simulate(wide, predictions, PolicyBook().with_all(suppress_realert=False), THRESHOLD)
    # p0 is alerted every hour from row 10; SepsisLabel is 1 from row 12
    assert [m.state for m in seen[11:15]] == ["dismissed", "dismissed", "confirmed", "confirmed"]
    assert seen[13].closed_risk == 0.5 and seen[HOURS] is None  # each stay starts afresh


def test_the_replay_refuses_what_it_cannot_simulate(cohort):
    wide, predictions = cohort
    with pytest.raises(ValueError, match="clinician"):
        simulate(wide, predictions, PolicyBook(), THRESHOLD, clinician="pause")
    with pytest.raises(ValueError, match="predictions"):
        simulate(wide, predictions.iloc[:5], PolicyBook(), THRESHOLD)


def test_on_the_shipped_sample_every_alert_obeys_the_rules():
    wide = read_cohort(SAMPLE, limit=60)
    model = load_shipped_model()
    predictions = model.predict(build_features(wide))
    signs = organ_dysfunction(wide)
    simulated = simulate(wide, predictions, PolicyBook(), model.threshold, signs=signs)
    fired = simulated["fired"].to_numpy()
    assert fired.any() and simulated["review"].any()
    assert (predictions["risk"].to_numpy()[fired] >= model.threshold).all()
    assert (signs["signs"].to_numpy()[fired] > 0).all()
    assert not predictions["ood"].to_numpy()[fired].any()
    assert not (simulated["fired"] & simulated["review"]).any()
