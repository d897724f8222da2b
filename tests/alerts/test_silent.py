"""Silent mode on the real pipeline: the policy runs and stores would-be alerts exactly as a
live deployment would, nothing is shown, and going live is governance's audited decision."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from wardwatch.alerts import silent
from wardwatch.alerts.records import latest_alerts
from wardwatch.alerts.workflow import NotPermitted
from wardwatch.demo import sample_dir
from wardwatch.model.artifact import load_shipped_model
from wardwatch.replay import Replay, load_replay_cohort, plan_replay
from wardwatch.security import audit
from wardwatch.store.schema import alerts
from wardwatch.ward import worklist

SAMPLE = sample_dir() / "physionet_sample" / "setA_sample.tar.gz"
END = datetime(2026, 3, 1, 12, tzinfo=UTC)
GOV = {"by": "gov.grace", "role": "auditor"}


def counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        quiet = conn.execute(select(func.count()).where(alerts.c.silent.is_(True))).scalar()
        shown = conn.execute(select(func.count()).where(alerts.c.silent.is_(False))).scalar()
    return quiet, shown


@pytest.fixture(scope="module")
def cohort():
    return load_replay_cohort(SAMPLE, limit=24)


def test_silent_mode_stores_the_same_alerts_a_live_deployment_would_have_shown(
    pipeline, engine, cohort, tmp_path
):
    from wardwatch.ingest.pipeline import Pipeline
    from wardwatch.settings import Settings
    from wardwatch.store import init_db, open_engine

    plan = plan_replay(cohort, stagger_hours=1.0, end=END)
    with engine.begin() as conn:
        silent.set_silent(conn, True, reason="validation before go-live", **GOV)
    Replay(pipeline, load_shipped_model(), plan).run(last=48)
    live_engine = open_engine(f"sqlite:///{tmp_path / 'live.db'}")
    init_db(live_engine)
    live = Pipeline.from_settings(live_engine, Settings(home=tmp_path))
    Replay(live, load_shipped_model(), plan).run(last=48)
    quiet, shown = counts(engine)
    assert quiet > 0 and shown == 0
    assert counts(live_engine) == (0, quiet)  # the same alerts, only shown
    with engine.connect() as conn:
        beds = worklist(conn)
    assert all(b.risk is None and b.sepsis is None and b.review is None for b in beds)


def test_only_governance_takes_it_live_and_would_be_alerts_never_surface(pipeline, engine, cohort):
    plan = plan_replay(cohort, stagger_hours=1.0, end=END)
    with engine.begin() as conn:
        silent.set_silent(conn, True, reason="validation before go-live", **GOV)
    replay = Replay(pipeline, load_shipped_model(), plan)
    replay.run(last=40)
    with engine.begin() as conn, pytest.raises(NotPermitted, match="governance"):
        silent.set_silent(conn, False, by="nurse.n", role="nurse", reason="let me see")
    with engine.begin() as conn:
        silent.set_silent(conn, False, reason="committee approved go-live", **GOV)
        quiet_open = alerts.c.silent.is_(True) & alerts.c.state.in_(("open", "paused"))
        still_open = conn.execute(select(func.count()).where(quiet_open)).scalar()
        trail = [r.action for r in audit.records(conn)]
    assert still_open == 0
    assert trail.count("deployment.silent") == 1 and trail.count("deployment.live") == 1
    replay.run(first=41, last=48)
    quiet, shown = counts(engine)
    assert quiet > 0 and shown > 0  # patients still at risk get fresh, visible alerts
    with engine.connect() as conn:
        beds = worklist(conn)
        latest = latest_alerts(conn, [b.encounter_id for b in beds], shown_only=True)
    shown_alerts = {b.sepsis.alert_id for b in beds if b.sepsis is not None}
    assert shown_alerts and shown_alerts <= {a.alert_id for a in latest.values()}
    with engine.connect() as conn:
        flags = conn.execute(select(alerts.c.silent).where(
            alerts.c.alert_id.in_(shown_alerts))).scalars().all()  # fmt: skip
    assert not any(flags)
