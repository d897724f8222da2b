"""Fixtures: a real SQLite file always, a real PostgreSQL server when its binaries exist.

PostgreSQL is started here, in a temporary directory on a free port, so a developer needs
nothing but the Debian package. `.ci/run` sets WARDWATCH_REQUIRE_POSTGRES=1 so that on CI a
missing server is a failure, never a quiet skip.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from wardwatch.settings import Settings
from wardwatch.store import init_db, open_engine
from wardwatch.store.scratch import NoPostgres, scratch_postgres

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if url := os.environ.get("WARDWATCH_TEST_POSTGRES_URL"):
        yield url
        return
    try:
        with scratch_postgres() as url:
            yield url
    except NoPostgres as error:
        if os.environ.get("WARDWATCH_REQUIRE_POSTGRES"):
            pytest.fail(f"{error}, and WARDWATCH_REQUIRE_POSTGRES is set")
        pytest.skip(str(error))


def _fresh_postgres(url: str) -> Engine:
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, initialised database of each kind: a real SQLite file, a real PostgreSQL."""
    if request.param == "sqlite":
        db = open_engine(f"sqlite:///{tmp_path / 'wardwatch.db'}")
    else:
        db = _fresh_postgres(request.getfixturevalue("postgres_url"))
    init_db(db)
    yield db
    db.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


@pytest.fixture
def pipeline(engine: Engine, settings: Settings):
    from wardwatch.ingest.pipeline import Pipeline

    return Pipeline.from_settings(engine, settings)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present (it is optional)")
    return SHARED


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`run("ingest", path)`: the CLI as an operator runs it, on a private SQLite home."""
    from typer.testing import CliRunner

    from wardwatch.cli import app

    monkeypatch.setenv("WARDWATCH_HOME", str(tmp_path))
    monkeypatch.delenv("WARDWATCH_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))
