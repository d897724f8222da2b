"""`wardwatch train` as an operator meets it: a manual, phases, a summary, clear refusals."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

import wardwatch
from wardwatch.model.artifact import SHIPPED, load_card, load_model

SAMPLE = Path(wardwatch.__file__).parent / "data" / "physionet_sample" / "setA_sample.tar.gz"




@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped sample renamed `s…`: ids the hash rule spreads over every split (the
    sample's own ids are all set A test-split patients)."""
    directory = tmp_path_factory.mktemp("site2")
    with tarfile.open(SAMPLE) as archive:
        for member in archive.getmembers():
            handle = archive.extractfile(member)
            if member.isfile() and handle is not None:
                (directory / ("s" + Path(member.name).name[1:])).write_bytes(handle.read())
    return directory


def test_help_reads_like_a_manual(run):
    result = run("train", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # as read, whatever the terminal's width
    for words in ("about 4 minutes on 2 cores", "not active", "card.md", "--replace",
                  "evaluate --data DATA --model DIR", "predict-psv IN OUT --model DIR",
                  "split rule", "same trees, calibration and threshold"):  # fmt: skip
        assert words in text, words
    assert "train" in run("--help").output


def test_train_writes_an_artifact_and_replaces_it_only_when_asked(run, cohort, tmp_path):
    out = tmp_path / "candidate"
    result = run("train", str(cohort), "--out", str(out), "--members", "2")
    assert result.exit_code == 0, result.output
    for words in ("reading the patient files", "training 2 members (seed 2019)",
                  "validating on the test split", "test AUROC", "not active",
                  str(out / "card.md")):  # fmt: skip
        assert words in result.output, words
    version = load_model(out).version
    assert version in result.output
    assert len(load_card(out)["members"]) == 2

    again = run("train", str(cohort), "--out", str(out), "--members", "2", "--seed", "7")
    assert again.exit_code == 2
    assert "already holds a model artifact" in again.output and "--replace" in again.output
    assert load_model(out).version == version

    replaced = run("train", str(cohort), "--out", str(out), "--members", "2", "--seed", "7",
                   "--replace")  # fmt: skip
    assert replaced.exit_code == 0, replaced.output
    assert load_card(out)["parameters"]["seed"] == 7


def _refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "what to do" in result.output
    for word in words:
        assert word in result.output, word


def test_a_missing_data_directory_says_what_to_do(run, tmp_path):
    _refused(run("train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")),
             "no such file or directory", "training_setA")  # fmt: skip


def test_a_directory_without_patient_files_is_refused(run, tmp_path):
    (tmp_path / "empty").mkdir()
    _refused(run("train", str(tmp_path / "empty"), "--out", str(tmp_path / "m")),
             "no .psv files")  # fmt: skip


def test_unlabelled_files_point_to_predict_psv(run, tmp_path):
    source = tmp_path / "unlabelled"
    source.mkdir()
    lines = (Path(__file__).parent / "data" / "psv" / "p000001.psv").read_text().splitlines()
    header = lines[0].split("|")
    keep = [i for i, name in enumerate(header) if name != "SepsisLabel"]
    rows = ["|".join(line.split("|")[i] for i in keep) for line in lines]
    (source / "p000001.psv").write_text("\n".join(rows) + "\n")
    _refused(run("train", str(source), "--out", str(tmp_path / "m")),
             "no SepsisLabel column", "predict-psv")  # fmt: skip


def test_test_split_patients_alone_are_too_few_to_train_on(run, tmp_path):
    _refused(run("train", str(SAMPLE), "--out", str(tmp_path / "m")),
             "too few septic patients", "falls in the test split")  # fmt: skip
    assert not (tmp_path / "m").exists()


def test_the_shipped_model_is_never_a_training_target(run, cohort):
    before = (SHIPPED / "manifest.json").read_bytes()
    _refused(run("train", str(cohort), "--out", str(SHIPPED), "--replace"),
             "shipped with wardwatch")  # fmt: skip
    assert (SHIPPED / "manifest.json").read_bytes() == before


def test_a_directory_of_other_files_is_not_overwritten(run, cohort, tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.md").write_text("mine")
    _refused(run("train", str(cohort), "--out", str(tmp_path / "work"), "--replace"),
             "not empty")  # fmt: skip
    assert (tmp_path / "work" / "notes.md").read_text() == "mine"
