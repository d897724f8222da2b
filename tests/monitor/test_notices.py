"""Operations notices and monitor runs, on SQLite and PostgreSQL: stored, not repeated while
open, acknowledged by name, audited, sent to a webhook that may be down; and the incremental
monitor reading only what arrived since its last run."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from sqlalchemy import Engine, select

from wardwatch.ingest.files import ingest_path
from wardwatch.ingest.psv import COLUMNS, LABEL, read_cohort
from wardwatch.model.artifact import load_shipped_model
from wardwatch.monitor.drift import compare
from wardwatch.monitor.notices import (
    NoticeNotFound,
    Webhook,
    acknowledge,
    deliver,
    last_marks,
    notices_of_run,
    open_notices,
    record_run,
    webhook_from_settings,
)
from wardwatch.monitor.reference import load_shipped_reference, profile_cohort
from wardwatch.monitor.run import monitor_store
from wardwatch.scoring import due_stays, score_stays
from wardwatch.security.audit import records
from wardwatch.security.audit_verify import verify
from wardwatch.store.schema import observations, scores

SAMPLE = resources.files("wardwatch") / "data" / "physionet_sample" / "setA_sample.tar.gz"
T0 = pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime()


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return read_cohort(SAMPLE)


@pytest.fixture(scope="module")
def unit_drift(sample):
    """Surgical-ICU patients against medical-ICU ones: several input findings."""
    first = sample.groupby("patient_id")[["Unit1", "Unit2"]].transform("first")
    reference = profile_cohort(sample[first["Unit1"] == 1])
    return compare(reference, profile_cohort(sample[first["Unit2"] == 1], like=reference))


def stored_run(engine: Engine, report, source: str = "psv:test") -> tuple[int, list[int]]:
    with engine.begin() as conn:
        return record_run(conn, report, source=source, started_at=T0)


def test_a_run_stores_one_notice_per_finding(engine, unit_drift):
    run_id, ids = stored_run(engine, unit_drift)
    assert len(ids) == len(unit_drift.findings) > 3
    with engine.connect() as conn:
        stored = notices_of_run(conn, run_id)
        shown = open_notices(conn)
    assert {(n["kind"], n["subject"]) for n in stored} == {
        (f.kind, f.subject) for f in unit_drift.findings
    }
    dbp = next(n for n in stored if n["subject"] == "DBP" and n["kind"] == "input_measured")
    assert dbp["figure"] > dbp["threshold"] and "DBP" in dbp["message"]
    assert dbp["recommendation"] and dbp["acknowledged_at"] is None
    assert len(shown) == len(ids)


def test_an_open_notice_is_not_raised_again_until_acknowledged(engine, unit_drift):
    _, first = stored_run(engine, unit_drift)
    _, again = stored_run(engine, unit_drift)
    assert first and again == []
    with engine.begin() as conn:
        acknowledge(conn, first[0], "gov.grace", "reviewed at the March committee")
    _, third = stored_run(engine, unit_drift)
    assert len(third) == 1  # only the acknowledged one comes back
    with engine.connect() as conn:
        assert len(open_notices(conn)) == len(first)


def test_acknowledging_is_by_name_once_and_audited(engine, unit_drift):
    _, ids = stored_run(engine, unit_drift)
    with engine.begin() as conn:
        acknowledge(conn, ids[0], "gov.grace", "input feed fixed")
    already = pytest.raises(ValueError, match=r"already acknowledged by gov\.grace")
    with already, engine.begin() as conn:
        acknowledge(conn, ids[0], "gov.hal")
    with pytest.raises(NoticeNotFound, match="no operations notice 99999"), engine.begin() as conn:
        acknowledge(conn, 99999, "gov.hal")
    with pytest.raises(ValueError, match="who acknowledges"), engine.begin() as conn:
        acknowledge(conn, ids[1], " ")
    with engine.connect() as conn:
        trail = list(records(conn))
        assert verify(conn).intact
    actions = [(r.action, r.actor, r.object) for r in trail]
    assert ("monitor.acknowledge", "gov.grace", f"notice/{ids[0]}") in actions
    run = next(r for r in trail if r.action == "monitor.run")
    assert run.details["findings"] == len(unit_drift.findings)


# ---------------------------------------------------------------- the webhook


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        """Quiet."""


@pytest.fixture
def receiver():
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Receiver.received
    server.shutdown()
    server.server_close()


def test_new_notices_are_posted_to_the_webhook(engine, unit_drift, receiver):
    url, received = receiver
    run_id, ids = stored_run(engine, unit_drift)
    assert deliver(engine, Webhook(url), run_id) == "delivered (HTTP 204)"
    (payload,) = received
    assert payload["run_id"] == run_id and [n["id"] for n in payload["notices"]] == ids
    assert {"kind", "subject", "figure", "threshold", "message", "recommendation"} <= set(
        payload["notices"][0]
    )
    with engine.connect() as conn:
        assert all(n["webhook"].startswith("delivered") for n in notices_of_run(conn, run_id))


def test_a_webhook_that_is_down_is_recorded_and_never_stops_monitoring(engine, unit_drift):
    run_id, _ = stored_run(engine, unit_drift)
    outcome = deliver(engine, Webhook("http://127.0.0.1:9/hook", timeout=2), run_id)
    assert outcome.startswith("failed")
    with engine.connect() as conn:
        assert all(n["webhook"].startswith("failed") for n in notices_of_run(conn, run_id))


def test_the_webhook_comes_from_the_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("WARDWATCH_MONITOR_WEBHOOK_URL", raising=False)
    config = tmp_path / "wardwatch.toml"
    assert webhook_from_settings(config) is None
    config.write_text('[monitor]\nwebhook_url = "https://ops.example.org/h"\n')
    assert webhook_from_settings(config) == Webhook("https://ops.example.org/h")
    monkeypatch.setenv("WARDWATCH_MONITOR_WEBHOOK_URL", "http://override.example/h")
    assert webhook_from_settings(config).url == "http://override.example/h"
    monkeypatch.delenv("WARDWATCH_MONITOR_WEBHOOK_URL")
    config.write_text('[monitor]\nwebhook_url = "ftp://nope"\n')
    with pytest.raises(ValueError, match="http"):
        webhook_from_settings(config)


# ---------------------------------------------------------------- the incremental monitor


def write_psv(wide: pd.DataFrame, directory: Path) -> Path:
    """One PhysioNet file per patient of `wide`."""
    directory.mkdir(parents=True, exist_ok=True)
    columns = [*COLUMNS, LABEL]
    for pid, rows in wide.groupby("patient_id", sort=False):
        rows.loc[:, columns].to_csv(directory / f"{pid}.psv", sep="|", index=False, na_rep="NaN")
    return directory


def ingest_and_score(pipeline, engine: Engine, wide: pd.DataFrame, directory: Path) -> None:
    ingest_path(pipeline, write_psv(wide, directory))
    model = load_shipped_model()
    with engine.begin() as conn:
        due, _ = due_stays(conn, model.version)
        score_stays(conn, model, due)


def test_each_store_run_reads_what_arrived_since_the_last(engine, pipeline, sample, tmp_path):
    ids = sample["patient_id"].unique()
    first = sample[sample["patient_id"].isin(ids[:12])]
    later = sample[sample["patient_id"].isin(ids[12:20])]
    reference = load_shipped_reference()
    ingest_and_score(pipeline, engine, first, tmp_path / "first")
    run = monitor_store(engine, reference)
    assert run.report.patients == 12 and run.report.hours == len(first)
    assert run.report.prediction["hours"] == 12  # one ward round: a score per stay
    with engine.connect() as conn:
        marks = last_marks(conn)
        assert marks.observation_id == conn.scalar(select(observations.c.id).order_by(
            observations.c.id.desc()).limit(1))  # fmt: skip
        assert marks.score_id == max(conn.scalars(select(scores.c.id)))
    assert monitor_store(engine, reference) is None  # nothing new: no run
    ingest_and_score(pipeline, engine, later, tmp_path / "later")
    again = monitor_store(engine, reference)
    assert again.report.patients == 8 and again.report.hours == len(later)
    assert again.run_id > run.run_id


def test_fahrenheit_temperatures_reach_the_monitor_as_a_missing_variable(
    engine, pipeline, sample, tmp_path
):
    ids = sample["patient_id"].unique()[:25]
    site = sample[sample["patient_id"].isin(ids)]
    ingest_and_score(pipeline, engine, site.assign(Temp=site["Temp"] * 9 / 5 + 32), tmp_path)
    run = monitor_store(engine, load_shipped_reference())
    temp = run.report.finding("input_measured", "Temp")
    assert temp is not None and "less often" in temp.message  # the gate quarantined them all
    with engine.connect() as conn:
        assert ("input_measured", "Temp") in {(n["kind"], n["subject"]) for n in open_notices(conn)}
