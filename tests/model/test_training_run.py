"""`train_model`: a whole training run, from patient files to an artifact with lineage.

The shipped sample holds only set A's test-split patients, so the runs here train on a copy
whose files are renamed `s…` instead of `p…`: other ids, which the hash rule spreads over
train, calibration and test like any other hospital's patients.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import wardwatch
from wardwatch.features import build_features
from wardwatch.ingest.psv import read_cohort
from wardwatch.model.artifact import FORMAT, MANIFEST, SHIPPED, load_card, load_model, save_model
from wardwatch.model.lineage import file_sha256, frame_sha256
from wardwatch.model.split import SPLIT_SALT
from wardwatch.model.training_run import (
    TrainingError,
    TrainingResult,
    check_out_dir,
    read_training_cohort,
    source_sha256,
    split_counts,
    train_model,
    write_artifact,
)

SAMPLE = Path(wardwatch.__file__).parent / "data" / "physionet_sample" / "setA_sample.tar.gz"
# Small boosters, one thread: a run takes about two seconds.
FAST: dict[str, Any] = dict(
    max_rounds=50, early_stopping_rounds=10, min_data_in_leaf=50, num_threads=1
)  # fmt: skip
MODEL_FILES = ("member_0.txt", "member_1.txt", "calibrator.json", "ood.json")


def relabelled_sample(directory: Path, edit: Any = None, limit: int | None = None) -> Path:
    """The shipped sample (or its first `limit` patients) as a directory of `s…` files, each
    optionally rewritten by `edit`."""
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(SAMPLE) as archive:
        for member in archive.getmembers()[:limit]:
            handle = archive.extractfile(member)
            if member.isfile() and handle is not None:
                path = directory / ("s" + Path(member.name).name[1:])
                path.write_bytes(handle.read())
                if edit is not None:
                    frame = edit(pd.read_csv(path, sep="|"))
                    frame.to_csv(path, sep="|", index=False, na_rep="NaN")
    return directory


def run(source: Path, out: Path, **options: Any) -> TrainingResult:
    options.setdefault("n_members", 2)
    return train_model(source, out, trainer_params=FAST, **options)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return relabelled_sample(tmp_path_factory.mktemp("site2") / "psv")


@pytest.fixture(scope="module")
def result(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    return run(cohort, tmp_path_factory.mktemp("run") / "model")


def test_the_artifact_loads_and_predicts_as_trained(result, cohort):
    loaded = load_model(result.out_dir)
    assert loaded.version == result.version
    features = build_features(read_cohort(cohort, limit=20, as_stored=True))
    assert loaded.predict(features).equals(result.model.predict(features))
    assert loaded.threshold == result.model.threshold


def test_the_card_records_lineage(result, cohort):
    card = load_card(result.out_dir)
    lineage = card["lineage"]
    assert lineage["data"]["source_sha256"] == source_sha256(cohort)
    wide = read_cohort(cohort, as_stored=True)
    assert lineage["data"]["wide_frame_sha256"] == frame_sha256(wide)
    assert "as stored" in lineage["data"]["values"]
    assert set(lineage["code"]) == {"git_commit", "git_dirty", "model_code_sha256"}
    assert lineage["parameters"]["n_members"] == 2 and lineage["parameters"]["seed"] == 2019
    assert lineage["parameters"]["max_rounds"] == FAST["max_rounds"]
    assert f"'{SPLIT_SALT}:" in lineage["split_rule"]
    assert card["training_population"]["split_rule"] == lineage["split_rule"]
    assert {"lightgbm", "numpy", "python"} <= set(lineage["libraries"])
    assert card["training_population"]["patients"] == 300
    assert "## Lineage" in (result.out_dir / "card.md").read_text()


def test_figures_are_written_for_the_test_split(result, cohort):
    manifest = json.loads((result.out_dir / MANIFEST).read_text())
    assert "figures.json" in manifest["files"]
    figures = json.loads((result.out_dir / "figures.json").read_text())
    test = figures["test_split"]
    expected = split_counts(read_cohort(cohort, as_stored=True)).loc["test"]
    assert test["counts"]["patients"] == expected["patients"]
    assert test["counts"]["septic_patients"] == expected["septic"]
    assert 0 <= test["auroc"] <= 1 and "subgroups" in test
    assert {"scoring_speed_test_split", "artifact", "training"} <= set(figures)
    assert result.figures == load_card(result.out_dir)["validation"]["test_split"]


def _model_json(directory: Path) -> dict[str, Any]:
    spec = json.loads((directory / "model.json").read_text())
    spec["metadata"]["training"].pop("training_seconds")  # wall-clock time, never equal
    return spec


def test_the_same_seed_writes_the_same_model(result, cohort, tmp_path):
    again = run(cohort, tmp_path / "again")
    for name in MODEL_FILES:
        assert (again.out_dir / name).read_bytes() == (result.out_dir / name).read_bytes(), name
    assert _model_json(again.out_dir) == _model_json(result.out_dir)


def test_another_seed_writes_another_model(result, cohort, tmp_path):
    other = run(cohort, tmp_path / "other", seed=7)
    assert other.card["lineage"]["parameters"]["seed"] == 7
    first = (result.out_dir / "member_0.txt").read_bytes()
    assert (other.out_dir / "member_0.txt").read_bytes() != first


def test_transfer_records_both_units(cohort, tmp_path):
    def both_units(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(Unit1=1.0, Unit2=1.0)  # every patient counts for both units

    source = relabelled_sample(tmp_path / "both", both_units)
    done = run(source, tmp_path / "model", transfer=True)
    experiment = done.card["validation"]["transfer_unit1_to_unit2_all_features"]
    assert {"unit1_to_unit2", "unit2_to_unit2"} <= set(experiment)
    assert experiment["unit2_to_unit2"]["patients"] > 0
    habit = done.card["validation"]["transfer_unit1_to_unit2_without_measured_and_count"]
    assert habit["dropped_feature_suffixes"] == ["_measured", "_count"]


def test_transfer_without_enough_unit_patients_is_refused_before_training(cohort, tmp_path):
    progress: list[str] = []
    with pytest.raises(TrainingError, match="transfer experiment") as caught:
        run(cohort, tmp_path / "model", transfer=True, progress=progress.append)
    assert "without --transfer" in caught.value.hint
    assert not (tmp_path / "model").exists()


# ------------------------------------------------------------------ where it writes


def _fake_artifact(directory: Path, *extra: str) -> Path:
    directory.mkdir(parents=True)
    manifest = {"format": FORMAT, "format_version": 1, "files": {"member_9.txt": "0"}}
    (directory / MANIFEST).write_text(json.dumps(manifest))
    for name in ("member_9.txt", *extra):
        (directory / name).write_text("x")
    return directory


def test_a_new_or_empty_directory_may_be_written(tmp_path):
    assert check_out_dir(tmp_path / "new") == (tmp_path / "new").resolve()
    (tmp_path / "empty").mkdir()
    assert check_out_dir(tmp_path / "empty") == (tmp_path / "empty").resolve()


def test_an_existing_artifact_is_replaced_only_when_asked(tmp_path):
    artifact = _fake_artifact(tmp_path / "model")
    with pytest.raises(TrainingError, match="already holds a model artifact") as caught:
        check_out_dir(artifact)
    assert "--replace" in caught.value.hint
    assert check_out_dir(artifact, replace=True) == artifact.resolve()


@pytest.mark.parametrize("extra", [(), ("notes.txt",)])
def test_a_directory_holding_anything_else_is_never_overwritten(tmp_path, extra):
    directory = tmp_path / "mine"
    if extra:
        _fake_artifact(directory, *extra)
    else:
        directory.mkdir()
        (directory / "thesis.docx").write_text("x")
    with pytest.raises(TrainingError, match="not empty"):
        check_out_dir(directory, replace=True)
    with pytest.raises(TrainingError, match="not a directory"):
        check_out_dir(next(directory.iterdir()))


def test_the_shipped_model_is_written_only_when_explicitly_allowed():
    with pytest.raises(TrainingError, match="shipped with wardwatch") as caught:
        check_out_dir(SHIPPED, replace=True)
    assert "scripts/train_setA.py" in caught.value.hint
    assert check_out_dir(SHIPPED, replace=True, allow_shipped=True) == SHIPPED.resolve()


def test_replacing_leaves_no_stale_file_and_no_staging_directory(result, tmp_path):
    target = _fake_artifact(tmp_path / "model")
    write_artifact(result.model, target, result.card, {"figures.json": {"x": 1}})
    assert not (target / "member_9.txt").exists()
    assert load_model(target).predict is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_failed_write_keeps_the_previous_artifact(result, tmp_path, monkeypatch):
    target = tmp_path / "model"
    save_model(result.model, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("wardwatch.model.training_run.save_model", broken)
    with pytest.raises(OSError, match="disk full"):
        write_artifact(result.model, target, result.card, {})
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# ------------------------------------------------------------------ bad data


def _expect(source: Path, out: Path, pattern: str, **options: Any) -> TrainingError:
    with pytest.raises(TrainingError, match=pattern) as caught:
        run(source, out, **options)
    assert caught.value.hint
    assert not out.exists()  # refused before anything was written
    return caught.value


def test_a_missing_source_is_refused(tmp_path):
    _expect(tmp_path / "nowhere", tmp_path / "model", "no such file or directory")


def test_a_directory_without_patient_files_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no patients here")
    _expect(tmp_path / "empty", tmp_path / "model", "no .psv files")


def test_files_without_labels_are_refused(tmp_path):
    source = relabelled_sample(tmp_path / "psv", lambda f: f.drop(columns="SepsisLabel"), 5)
    error = _expect(source, tmp_path / "model", "no SepsisLabel column")
    assert "predict-psv" in error.hint


def test_files_without_a_septic_patient_are_refused(tmp_path):
    source = relabelled_sample(tmp_path / "psv", lambda f: f.assign(SepsisLabel=0), 5)
    _expect(source, tmp_path / "model", "no patient is septic")


def test_test_split_patients_alone_cannot_be_trained_on(tmp_path):
    error = _expect(SAMPLE, tmp_path / "model", "too few septic patients")
    assert "fit 0/0" in str(error) and "test 100/300" in str(error)
    assert "every patient here falls in the test split" in error.hint


def test_too_few_patients_are_refused_with_the_counts(cohort, tmp_path):
    error = _expect(cohort, tmp_path / "model", "too few septic patients", limit=12)
    assert "larger --limit" in error.hint


def test_training_reads_values_as_the_store_holds_them(tmp_path):
    def implausible(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(HR=np.where(np.arange(len(frame)) == 0, 900.0, frame["HR"]))

    source = relabelled_sample(tmp_path / "psv", implausible, 3)
    wide = read_training_cohort(source)
    first_hours = wide.groupby("patient_id").head(1)
    assert first_hours["HR"].isna().all()  # 900 beats/min is blanked, as the gate would


def test_the_source_hash_covers_every_patient_file(tmp_path):
    assert source_sha256(SAMPLE) == file_sha256(SAMPLE)  # an archive: its bytes
    source = relabelled_sample(tmp_path / "psv", limit=3)
    before = source_sha256(source)
    (source / "notes.txt").write_text("not a patient file")
    assert source_sha256(source) == before
    first = sorted(source.glob("*.psv"))[0]
    first.write_text(first.read_text().replace("NaN", "", 1))
    assert source_sha256(source) != before
