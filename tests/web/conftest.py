"""A replayed sample ward behind the real app, shared by the web tests.

The ward (24 sample patients, the first 48 hours of their replay through the live pipeline)
is built once per test session in an SQLite file; each test gets its own copy of the file,
so tests may confirm, dismiss and ingest without seeing each other's changes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from wardwatch.alerts.policy import PolicyBook
from wardwatch.demo import sample_patients
from wardwatch.ingest.pipeline import Pipeline
from wardwatch.model.artifact import load_shipped_model
from wardwatch.replay import Replay, load_replay_cohort, plan_replay
from wardwatch.settings import Settings
from wardwatch.store import init_db, open_engine
from wardwatch.web.app import create_app
from wardwatch.web.deps import DEMO_COOKIE, Services

WARD_PATIENTS = 24
WARD_HOURS = 48


@pytest.fixture(scope="session")
def model():
    return load_shipped_model()


@pytest.fixture(scope="session")
def ward_template(tmp_path_factory: pytest.TempPathFactory, model) -> Path:
    home = tmp_path_factory.mktemp("ward")
    settings = Settings(home=home)
    engine = open_engine(settings.resolved_database_url)
    init_db(engine)
    plan = plan_replay(load_replay_cohort(sample_patients(), WARD_PATIENTS), stagger_hours=1.0)
    Replay(Pipeline.from_settings(engine, settings), model, plan).run(last=WARD_HOURS)
    engine.dispose()
    return home / "wardwatch.db"


@pytest.fixture
def ward(ward_template: Path, tmp_path: Path, model) -> Iterator[Services]:
    """A private copy of the replayed ward, with the ward clock at its 48th hour."""
    shutil.copy(ward_template, tmp_path / "wardwatch.db")
    settings = Settings(home=tmp_path)
    engine = open_engine(settings.resolved_database_url)
    yield Services(engine, model, PolicyBook(), Pipeline.from_settings(engine, settings))
    engine.dispose()


@pytest.fixture
def client(ward: Services) -> Iterator[TestClient]:
    with TestClient(create_app(ward)) as test_client:
        yield test_client


@pytest.fixture
def provider(client: TestClient) -> TestClient:
    client.cookies.set(DEMO_COOKIE, "dr.snow")
    return client


@pytest.fixture
def nurse(client: TestClient) -> TestClient:
    client.cookies.set(DEMO_COOKIE, "nurse.nightingale")
    return client
