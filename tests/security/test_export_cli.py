"""`wardwatch export --deidentify` and `wardwatch consent`, as an operator runs them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import typer
from tests.security.samples import SAMPLE_IDS, ingest_samples
from typer.testing import CliRunner

from wardwatch.ingest.pipeline import Pipeline
from wardwatch.security.deidentify import MANIFEST, SALT_ENV, Pseudonyms
from wardwatch.security.export_cli import consent_app, export_command
from wardwatch.settings import Settings
from wardwatch.store import init_db, open_engine

SALT = "0123456789abcdef0123456789abcdef"
PATIENT = SAMPLE_IDS[0]
WHO = ["--by", "alice", "--role", "nurse", "--reason", "asked at the bedside"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private SQLite home holding the sample patients, as the commands will find it."""
    home = tmp_path / "home"
    monkeypatch.setenv("WARDWATCH_HOME", str(home))
    monkeypatch.delenv("WARDWATCH_DATABASE_URL", raising=False)
    monkeypatch.delenv(SALT_ENV, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    settings = Settings(home=home)
    engine = open_engine(settings.resolved_database_url)
    init_db(engine)
    ingest_samples(Pipeline.from_settings(engine, settings), tmp_path / "psv")
    engine.dispose()
    return home


@pytest.fixture
def run(home):
    """The commands registered as cli.py registers them."""
    app = typer.Typer()
    app.command("export")(export_command)
    app.add_typer(consent_app, name="consent")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_consent_set_records_and_says_what_stayed_unchanged(run):
    done = run("consent", "set", PATIENT, "--no-scoring", *WHO)
    assert done.exit_code == 0, done.output
    assert "AI scoring opted out, use in training allowed" in done.output
    assert "use in training unchanged: allowed; --no-training opts out of it too" in done.output


def test_consent_show_lists_the_history(run):
    run("consent", "set", PATIENT, "--no-scoring", "--no-training", *WHO)
    run("consent", "set", PATIENT, "--scoring", "--by", "bob", "--role", "provider",
        "--reason", "changed their mind")  # fmt: skip
    shown = run("consent", "show", PATIENT)
    assert shown.exit_code == 0, shown.output
    assert "AI scoring allowed, use in training opted out" in shown.output
    assert "asked at the bedside" in shown.output
    assert "changed their mind" in shown.output
    assert shown.output.index("alice") < shown.output.index("bob")


def test_consent_show_without_decisions(run):
    shown = run("consent", "show", PATIENT)
    assert shown.exit_code == 0
    assert "no decision recorded" in shown.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "--no-scoring", *WHO], "no patient with id 'nobody'"),
        ([PATIENT, *WHO], "nothing to record"),
        ([PATIENT, "--no-scoring", "--by", "alice", "--reason", "x"], "not a wardwatch user"),
        ([PATIENT, "--no-scoring", "--by", "alice", "--role", "nurse", "--reason", " "],
         "reason is required"),
    ],
)  # fmt: skip
def test_consent_set_refuses_incomplete_decisions(run, args, message):
    done = run("consent", "set", *args)
    assert done.exit_code == 2
    assert message in done.output


def test_consent_set_needs_a_reason(run):
    done = run("consent", "set", PATIENT, "--no-scoring", "--by", "alice", "--role", "nurse")
    assert done.exit_code == 2
    assert "--reason" in done.output


def test_export_needs_the_deidentify_flag(run, tmp_path, monkeypatch):
    monkeypatch.setenv(SALT_ENV, SALT)
    done = run("export", str(tmp_path / "out"))
    assert done.exit_code == 2
    assert "--deidentify" in done.output
    assert not (tmp_path / "out").exists()


def test_export_without_a_salt_says_how_to_make_one(run, tmp_path):
    done = run("export", "--deidentify", str(tmp_path / "out"))
    assert done.exit_code == 2
    assert "secrets.token_hex(32)" in done.output
    assert not (tmp_path / "out").exists()


def test_export_leaves_out_training_opt_outs(run, tmp_path, monkeypatch):
    monkeypatch.setenv(SALT_ENV, SALT)
    run("consent", "set", PATIENT, "--no-training", *WHO)
    done = run("export", "--deidentify", str(tmp_path / "out"))
    assert done.exit_code == 0, done.output
    assert "left out 1 stays" in done.output
    names = Pseudonyms(SALT.encode())
    stems = {p.stem.split("_")[0] for p in (tmp_path / "out").glob("*.psv")}
    assert names.patient(PATIENT) not in stems
    assert names.patient(SAMPLE_IDS[1]) in stems
    assert (tmp_path / "out" / MANIFEST).is_file()


def test_export_parquet_with_a_salt_file(run, tmp_path):
    salt = tmp_path / "deid.salt"
    salt.write_text(SALT + "\n")
    out = tmp_path / "cohort.parquet"
    done = run("export", "--deidentify", "--format", "parquet", "--salt-file", str(salt), str(out))
    assert done.exit_code == 0, done.output
    frame = pd.read_parquet(out)
    assert frame["patient"].nunique() == len(SAMPLE_IDS) + 1
    manifest = json.loads(out.with_name(f"{out.name}.{MANIFEST}").read_text())
    assert manifest["format"] == "parquet"


def test_export_since_a_date(run, tmp_path, monkeypatch):
    monkeypatch.setenv(SALT_ENV, SALT)
    done = run("export", "--deidentify", "--format", "csv", "--since", "2019-01-02",
               str(tmp_path / "late.csv"))  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "exported 0 stays" in done.output  # the samples are admitted on 2019-01-01


def test_export_never_overwrites(run, tmp_path, monkeypatch):
    monkeypatch.setenv(SALT_ENV, SALT)
    (tmp_path / "out.csv").write_text("precious")
    done = run("export", "--deidentify", "--format", "csv", str(tmp_path / "out.csv"))
    assert done.exit_code == 2
    assert "already exists" in done.output
    assert (tmp_path / "out.csv").read_text() == "precious"
