"""Ward rounds: live scores become alerts, and clinicians' decisions hold, in a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import select

from wardwatch.alerts import workflow
from wardwatch.alerts.policy import Action, PolicyBook
from wardwatch.demo import sample_dir
from wardwatch.model.artifact import load_shipped_model
from wardwatch.replay import Replay, load_replay_cohort, plan_replay
from wardwatch.store.schema import alerts, scores

SAMPLE = sample_dir() / "physionet_sample" / "setA_sample.tar.gz"
END = datetime(2026, 3, 1, 12, tzinfo=UTC)
PROVIDER = workflow.Actor("dr-ada", "provider")


@pytest.fixture(scope="module")
def model():
    return load_shipped_model()


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return load_replay_cohort(SAMPLE, limit=24)


def _alerts(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(select(alerts).order_by(alerts.c.alert_id)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows])


def test_a_replayed_ward_raises_alerts_with_their_reasons(pipeline, model, cohort):
    summary = Replay(pipeline, model, plan_replay(cohort, end=END)).run()
    raised = _alerts(pipeline.engine)
    sepsis = raised.loc[raised["kind"] == "sepsis"]
    assert summary.alerts == len(sepsis) > 0
    with pipeline.engine.connect() as conn:
        query = select(scores.c.encounter_id, scores.c.as_of, scores.c.risk)
        risk_then = {(e, t): r for e, t, r in conn.execute(query).all()}
    for alert in sepsis.itertuples(index=False):
        # fired on the score of its hour, which was above the threshold
        assert risk_then[(alert.encounter_id, alert.opened_at)] >= model.threshold
        reasons = " ".join(workflow.AlertRecord.from_row(alert._asdict()).reasons)
        assert "above the ICU threshold" in reasons
        assert any(unit in reasons for unit in ("mmol/L", "mm Hg", "mg/dL", "%", "µL"))
    active = raised.loc[raised["state"].isin(["open", "paused"])]
    assert not active.duplicated(["encounter_id", "kind"]).any()


def _first_alert(replay: Replay, hours: int) -> tuple[int, workflow.AlertRecord]:
    for hour in range(hours):
        tick = replay.tick(hour)
        fired = [c for c in tick.changes if c.action == Action.FIRE]
        if fired:
            with replay.pipeline.engine.connect() as conn:
                return hour, workflow.get_alert(conn, fired[0].alert_id)
    raise AssertionError("no alert fired in the replayed hours")


def _sepsis_alerts(engine, encounter_id: str) -> list[workflow.AlertRecord]:
    with engine.connect() as conn:
        found = workflow.current_alerts(conn, encounter_id)
    return [a for a in found if a.kind == workflow.Kind.SEPSIS]


def test_no_second_alert_within_the_window_after_a_dismissal(pipeline, model, cohort):
    plan = plan_replay(cohort, end=END)
    replay = Replay(pipeline, model, plan, book=PolicyBook().with_all(realert_after_hours=12))
    hour, alert = _first_alert(replay, plan.hours)
    with pipeline.engine.begin() as conn:
        workflow.dismiss(conn, alert.alert_id, PROVIDER, "not_infected", at=plan.at(hour))
    for later in range(hour + 1, min(hour + 12, plan.hours)):
        replay.tick(later)
    assert [a.alert_id for a in _sepsis_alerts(pipeline.engine, alert.encounter_id)] == [
        alert.alert_id
    ]


def test_a_pause_ends_and_the_alert_comes_back(pipeline, model, cohort):
    plan = plan_replay(cohort, end=END)
    replay = Replay(pipeline, model, plan)
    hour, alert = _first_alert(replay, plan.hours)
    until = plan.at(hour) + timedelta(hours=3)
    with pipeline.engine.begin() as conn:
        workflow.pause(conn, alert.alert_id, PROVIDER, until=until, at=plan.at(hour))
    states = []
    for later in range(hour + 1, hour + 5):
        replay.tick(later)
        with pipeline.engine.connect() as conn:
            states.append(workflow.get_alert(conn, alert.alert_id).state)
    assert states[:2] == [workflow.State.PAUSED] * 2
    assert states[2] == workflow.State.OPEN  # the tick at `until` brings it back
    with pipeline.engine.connect() as conn:
        events = workflow.alert_events_for(conn, alert.alert_id)
    assert events[-1]["action"] == "resume" and "pause" in events[-1]["note"].lower()
