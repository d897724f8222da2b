"""The model registry on a real database: promotion, one-step rollback and shadows change what
scores the next observation without a restart; a corrupted artifact never serves; every
change is in the audit chain."""

from __future__ import annotations

import copy
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from wardwatch.alerts.policy import PolicyBook
from wardwatch.alerts.watch import ward_round
from wardwatch.clock import ward_now
from wardwatch.demo import sample_dir
from wardwatch.model import registry
from wardwatch.model.artifact import (
    SHIPPED,
    ArtifactError,
    load_card,
    load_shipped_model,
    save_model,
)
from wardwatch.model.serving import ServingModels
from wardwatch.replay import Replay, load_replay_cohort, plan_replay
from wardwatch.security import audit
from wardwatch.security.audit_verify import verify
from wardwatch.store import init_db
from wardwatch.store.schema import alerts, scores

SAMPLE = sample_dir() / "physionet_sample" / "setA_sample.tar.gz"
END = datetime(2026, 3, 1, 12, tzinfo=UTC)
GOV = {"by": "gov.grace", "role": "auditor"}


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    wide = load_replay_cohort(SAMPLE, limit=6)
    return wide


def variant(tmp_path: Path, threshold: float, name: str = "variant") -> Path:
    """A real second model: the shipped one at another operating threshold (a new version)."""
    model = copy.copy(load_shipped_model())
    model.threshold = threshold
    target = tmp_path / name
    save_model(model, target, card={**load_card(SHIPPED), "name": name},
               card_md="a test variant")  # fmt: skip
    return target


def versions_scored(engine, role: str = "active") -> list[str]:
    query = (select(scores.c.model_version).where(scores.c.role == role)
             .group_by(scores.c.model_version).order_by(func.min(scores.c.id)))  # fmt: skip
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def test_promote_and_rollback_switch_the_scoring_model_at_the_next_round(
    pipeline, engine, cohort, tmp_path
):
    serving = ServingModels.of(engine)
    shipped = load_shipped_model().version
    replay = Replay(pipeline, serving, plan_replay(cohort, stagger_hours=1.0, end=END))
    replay.run(last=10)
    assert versions_scored(engine) == [shipped]
    with engine.begin() as conn:
        entry = registry.register(conn, tmp_path / "store", variant(tmp_path, 0.05), **GOV)
        registry.promote(conn, entry.version, reason="better calibrated on local data", **GOV)
    replay.run(first=11, last=14)  # the same running service: no restart, no reload call
    assert versions_scored(engine) == [shipped, entry.version]
    with engine.begin() as conn:
        back = registry.rollback(conn, reason="alert rate doubled overnight", **GOV)
    assert back.version == shipped
    with engine.begin() as conn:
        before = conn.execute(select(func.max(scores.c.id))).scalar()
    replay.run(first=15, last=16)
    with engine.connect() as conn:
        newest = conn.execute(select(scores.c.model_version).where(scores.c.id > before)
                              .distinct()).scalars().all()  # fmt: skip
        trail = [(r.action, r.actor, r.object) for r in audit.records(conn)
                 if r.action.startswith("model.")]  # fmt: skip
        assert verify(conn).intact
    assert newest == [shipped]
    assert ("model.promote", "gov.grace", f"model/{entry.version}") in trail
    assert ("model.rollback", "gov.grace", f"model/{shipped}") in trail


def test_a_corrupted_artifact_never_becomes_active(engine, tmp_path):
    init_db(engine)
    with engine.begin() as conn:
        registry.ensure_shipped_active(conn)
        entry = registry.register(conn, tmp_path / "store", variant(tmp_path, 0.05), **GOV)
    member = entry.directory / "member_0.txt"
    member.write_text(member.read_text().replace("tree", "TREE", 1))
    with engine.begin() as conn, pytest.raises(ArtifactError, match="checksum mismatch"):
        registry.promote(conn, entry.version, reason="should be refused", **GOV)
    with engine.connect() as conn:
        assert registry.active_version(conn) == load_shipped_model().version


def test_files_corrupted_under_a_running_service_leave_the_last_good_model_serving(
    engine, tmp_path
):
    init_db(engine)
    problems: list[str] = []
    serving = ServingModels.of(engine)
    serving.on_problem = problems.append
    with engine.begin() as conn:
        entry = registry.register(conn, tmp_path / "store", variant(tmp_path, 0.05), **GOV)
        registry.promote(conn, entry.version, reason="local threshold", **GOV)
    with engine.begin() as conn:
        registry.rollback(conn, reason="back to the shipped model", **GOV)
        registry.promote(conn, entry.version, reason="again", **GOV)
    shutil.rmtree(entry.directory)  # deleted behind the server's back, before it reloads
    with engine.connect() as conn:
        lineup = serving.lineup(conn)
    assert lineup.hospital.version == load_shipped_model().version  # the last good one
    assert problems and "not taken into service" in problems[0]


def test_shadows_are_scored_and_stored_but_never_alert(pipeline, engine, cohort, tmp_path):
    serving = ServingModels.of(engine)
    with engine.begin() as conn:
        entry = registry.register(conn, tmp_path / "store", variant(tmp_path, 0.0001), **GOV)
        registry.shadow(conn, entry.version, reason="compare before promoting", **GOV)
    Replay(pipeline, serving, plan_replay(cohort, stagger_hours=1.0, end=END)).run(last=30)
    assert versions_scored(engine, "shadow") == [entry.version]
    with engine.connect() as conn:
        alerted = conn.execute(select(alerts.c.model_version).distinct()).scalars().all()
        active = conn.execute(select(func.count()).where(scores.c.role == "active")).scalar()
        shadow = conn.execute(select(func.count()).where(scores.c.role == "shadow")).scalar()
    assert entry.version not in alerted  # a threshold of 0.0001 would alert on everyone
    assert shadow == active  # the same stays and hours


def test_retiring_the_active_model_is_refused(engine):
    init_db(engine)
    with engine.begin() as conn:
        shipped = registry.ensure_shipped_active(conn)
        with pytest.raises(registry.RegistryError, match="is active in hospital"):
            registry.retire(conn, shipped, reason="no", **GOV)


def test_a_unit_scope_scores_its_own_stays_only(pipeline, engine, cohort, tmp_path):
    serving = ServingModels.of(engine)
    Replay(pipeline, serving, plan_replay(cohort, stagger_hours=1.0, end=END)).run(last=4)
    with engine.begin() as conn:
        entry = registry.register(conn, tmp_path / "store", variant(tmp_path, 0.05), **GOV)
        registry.promote(conn, entry.version, scope="unit:MICU", reason="MICU's own", **GOV)
        ward_round(conn, serving, PolicyBook(), ward_now(conn))
    with engine.connect() as conn:
        rows = conn.execute(select(scores.c.model_version, scores.c.unit)
                            .where(scores.c.model_version == entry.version)).all()  # fmt: skip
    assert rows and {unit for _, unit in rows} == {"MICU"}


def test_a_site_configuration_sets_the_live_thresholds_from_the_next_round(
    pipeline, engine, cohort
):
    from wardwatch.site.config import SiteConfig
    from wardwatch.site.registry import activate_site_config

    serving = ServingModels.of(engine)
    replay = Replay(pipeline, serving, plan_replay(cohort, stagger_hours=1.0, end=END))
    replay.run(last=6)
    shipped = load_shipped_model().version
    quiet = SiteConfig(model_version=shipped, thresholds={"ICU": 0.99, "MICU": 0.99,
                       "SICU": 0.99}, method="test: nobody alerts", data_hash="sha256:test",
                       created="2026-11-22")  # fmt: skip
    with engine.begin() as conn:
        activate_site_config(conn, quiet, reason="a budget the committee chose", **GOV)
        before = conn.execute(select(func.count()).select_from(alerts)).scalar()
    replay.run(first=7, last=40)
    with engine.connect() as conn:
        after = conn.execute(select(func.count()).where(alerts.c.kind == "sepsis")).scalar()
        trail = [r.action for r in audit.records(conn)]
    assert after <= before  # no new sepsis alert: every unit's threshold is 0.99
    assert "site_config.activate" in trail
    with engine.connect() as conn:
        lineup = serving.lineup(conn)
    assert lineup.policy(load_shipped_model(), PolicyBook()) != PolicyBook()
