"""`wardwatch models` as governance uses it: gates block with the failing figures, an
override needs the governance role and a reason, rollback is one command."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest

from wardwatch.demo import sample_dir
from wardwatch.model.artifact import SHIPPED, load_card, load_shipped_model, save_model
from wardwatch.security import users
from wardwatch.settings import Settings
from wardwatch.store import init_db, open_engine

SAMPLE = sample_dir() / "physionet_sample" / "setA_sample.tar.gz"
PASSWORD = "correct horse battery staple 24"


def variant(tmp_path: Path, threshold: float) -> Path:
    model = copy.copy(load_shipped_model())
    model.threshold = threshold
    save_model(model, tmp_path / "variant", card=load_card(SHIPPED), card_md="variant")
    return tmp_path / "variant"


@pytest.fixture
def people(run, tmp_path: Path) -> None:
    assert run("db", "init").exit_code == 0
    engine = open_engine(Settings(home=tmp_path).resolved_database_url)
    init_db(engine)
    with engine.begin() as conn:
        for user_id, role in (("gov.grace", "auditor"), ("ds.fisher", "data_scientist")):
            users.add_user(conn, user_id, role, PASSWORD, at=datetime.now(UTC), by="tests")
    engine.dispose()


def version_of(output: str) -> str:
    return output.split("registered ", 1)[1].split()[0]


def test_a_failing_gate_blocks_promotion_with_its_figures_and_only_governance_overrides(
    run, people, tmp_path
):
    registered = run("models", "register", str(variant(tmp_path, 0.30)), "--by", "ds.fisher",
                     "--label", "too quiet")  # fmt: skip
    assert registered.exit_code == 0, registered.output
    version = version_of(registered.output)
    blocked = run("models", "promote", version, "--by", "gov.grace", "--reason", "try",
                  "--data", str(SAMPLE))  # fmt: skip
    assert blocked.exit_code == 2
    assert "FAIL" in blocked.output and "alert rate" in blocked.output
    assert "nothing changed" in blocked.output
    by_scientist = run("models", "promote", version, "--by", "ds.fisher", "--reason", "try",
                       "--data", str(SAMPLE), "--override", "trust me")  # fmt: skip
    assert by_scientist.exit_code == 2 and "may not promote" in by_scientist.output
    listed = run("models", "list")
    assert f"{version}" in listed.output and "active · hospital" in listed.output
    overridden = run("models", "promote", version, "--by", "gov.grace", "--reason",
                     "quieter ICU night shift trial", "--data", str(SAMPLE), "--override",
                     "committee accepted the lower sensitivity for a two-week trial")  # fmt: skip
    assert overridden.exit_code == 0, overridden.output
    assert f"{version} is now the active model of hospital" in overridden.output
    back = run("models", "rollback", "--by", "gov.grace", "--reason", "trial over")
    assert back.exit_code == 0 and load_shipped_model().version in back.output
    history = run("models", "history")
    for action in ("register", "promote", "rollback"):
        assert action in history.output


def test_a_registry_command_by_a_role_without_the_permission_is_refused(run, people, tmp_path):
    result = run("models", "register", str(variant(tmp_path, 0.05)), "--by", "gov.grace")
    assert result.exit_code == 2 and "may not train, register" in result.output
    nobody = run("models", "rollback", "--by", "nobody", "--reason", "x")
    assert nobody.exit_code == 2 and "is not an enabled user" in nobody.output


def test_promotion_without_data_is_refused_unless_overridden(run, people, tmp_path):
    version = version_of(run("models", "register", str(variant(tmp_path, 0.05)),
                             "--by", "ds.fisher").output)  # fmt: skip
    refused = run("models", "promote", version, "--by", "gov.grace", "--reason", "x")
    assert refused.exit_code == 2 and "no --data" in refused.output
