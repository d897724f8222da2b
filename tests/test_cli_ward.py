"""The ward commands as an operator meets them: replay, score, alerts, and the demo's main job."""

from __future__ import annotations

from sqlalchemy import func, select

from wardwatch.demo import sample_patients
from wardwatch.store import open_engine
from wardwatch.store.schema import alerts, scores


def _count(tmp_path, table) -> int:
    engine = open_engine(f"sqlite:///{tmp_path / 'wardwatch.db'}")
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_replay_scores_every_hour_and_says_what_it_did(run, tmp_path):
    result = run("replay", str(sample_patients()), "--speed", "max", "--limit", "6")
    assert result.exit_code == 0, result.output
    assert "replayed" in result.output and "6 stays" in result.output
    assert _count(tmp_path, scores) > 6 * 10


def test_score_runs_a_ward_round_and_alerts_lists_what_is_open(run, tmp_path):
    run("replay", str(sample_patients()), "--speed", "max", "--limit", "12")
    result = run("score")
    assert result.exit_code == 0, result.output
    assert "ward round at" in result.output
    listed = run("alerts")
    assert listed.exit_code == 0
    assert _count(tmp_path, alerts) > 0  # twelve sample stays raise alerts (seen: 5)
    assert "sepsis" in listed.output and "above the ICU threshold" in listed.output


def test_a_bad_speed_says_what_to_give(run):
    result = run("replay", str(sample_patients()), "--speed", "fast")
    assert result.exit_code == 2
    assert "what to do" in result.output and "3600x" in result.output


def test_the_demo_fills_a_ward_and_shows_it(run, tmp_path):
    result = run("demo", "--home", str(tmp_path / "demo"), "--no-serve")
    assert result.exit_code == 0, result.output
    assert "replayed 73 hours" in result.output
    assert "Worklist at" in result.output
    assert "sepsis alert" in result.output
