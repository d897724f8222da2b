"""`wardwatch train`: one training run, from labelled patient files to a model artifact.

`train_model` is the one implementation behind the CLI and `scripts/train_setA.py` (which
adds the shipped sample and the development notes): read the cohort as the live store
would hold it, build features, fit `SepsisModelTrainer` (patient-level hash-rule splits),
validate on the test split, and save the artifact with a card whose lineage names the data
(hash of the source files and of the frame trained on), the code, the libraries, the
parameters and the split rule (design rule 6). Deterministic given the seed: two runs on the
same data write identical boosters, calibrator and OOD reference.

Nothing trained here is active: an artifact scores patients only where it is named
(`--model DIR`) until a registry promotes it. Errors are `TrainingError` (a `ValueError`)
with a hint saying what to do; they are raised before any file is written, and a failed
write leaves the previous artifact in place.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from wardwatch.evaluate.utility import normalized_utility
from wardwatch.features import build_features, latest_features
from wardwatch.ingest.psv import LABEL, PSVError, read_cohort, sepsis_onset_hours
from wardwatch.model.artifact import (
    FORMAT,
    MANIFEST,
    SHIPPED,
    model_files,
    model_version,
    save_model,
    verified_files,
)
from wardwatch.model.card import build_card, render_markdown
from wardwatch.model.lineage import code_version, file_sha256, frame_sha256, library_versions
from wardwatch.model.risk import RiskModel
from wardwatch.model.split import (
    CALIBRATION,
    SPLIT_RULE,
    SPLIT_SALT,
    TEST,
    TRAIN,
    assign_split,
    early_stopping_mask,
)
from wardwatch.model.train import SepsisModelTrainer
from wardwatch.model.validate import validation_figures

Progress = Callable[[str], None]  # one message as each phase begins
SMALL_SPLIT_SEPTIC = 10  # below this, a split's figures are noise (as the card's subgroups say)
TRANSFER_HABIT = ("_measured", "_count")  # ordering-habit features, dropped in one variant
SOURCE_HASH_RULE = (
    "a file: sha256 of its bytes; a directory: sha256 over its .psv files in sorted relative "
    "path order, each as path + NUL + sha256(content) + newline"
)
AS_STORED = (
    "as stored: values outside the quality gate's plausible ranges blanked, as the live store "
    "would hold them (quality.blank_implausible)"
)
DATA_HINT = (
    "give a directory or .tar.gz of PhysioNet 2019 training files (.psv with a SepsisLabel "
    "column), e.g. training_setA"
)


class TrainingError(ValueError):
    """Training cannot start or finish: bad data, too few septic patients, a protected --out.

    `hint` says what to do about it (the CLI prints it under the message).
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class TrainingResult:
    """What a run wrote, and the figures an operator checks first."""

    out_dir: Path
    version: str  # content-addressed, as `load_model` reports it
    model: RiskModel
    card: dict[str, Any]
    figures: dict[str, Any]  # test split (the card's validation.test_split)
    report: dict[str, Any]  # the trainer's report: split counts, members, calibration, threshold
    warnings: tuple[str, ...]


def train_model(
    source: Path,
    out_dir: Path,
    *,
    transfer: bool = False,
    progress: Progress | None = None,
    limit: int | None = None,
    n_members: int | None = None,
    seed: int | None = None,
    replace: bool = False,
    allow_shipped: bool = False,
    description: str | None = None,
    experiments: Mapping[str, Any] | None = None,
    trainer_params: Mapping[str, Any] | None = None,
) -> TrainingResult:
    """Train on the labelled patient files at `source` and save the artifact in `out_dir`.

    `out_dir` must be new, empty, or (with `replace`) an existing artifact; the package's
    shipped model only with `allow_shipped`. `n_members`, `seed` and `trainer_params`
    override `SepsisModelTrainer`'s defaults; `description` and `experiments` go into the
    card (training population, validation notes). `transfer` adds the Unit1 -> Unit2
    experiment (two more one-member models).
    """
    say = progress or _quiet
    out = check_out_dir(out_dir, replace=replace, allow_shipped=allow_shipped)
    trainer = SepsisModelTrainer(**_params(trainer_params, n_members, seed))
    say(f"reading the patient files in {Path(source).name}")
    wide = read_training_cohort(Path(source), limit)
    warnings = check_splits(wide, trainer.split_salt)
    if transfer:
        check_transfer(wide, trainer.split_salt)
    say(f"building features for {_summary(wide)}")
    features = build_features(wide)
    notes = dict(experiments or {})
    if transfer:
        notes.update(transfer_experiments(wide, features, trainer, say))
    say(f"training {trainer.n_members} members (seed {trainer.seed})")
    fit_trainer(trainer, features, wide)
    say("validating on the test split")
    figures = held_out_figures(trainer, wide, features)
    say("measuring scoring speed on the test split")
    notes.update(artifact_notes(trainer.risk_model_, wide, features, trainer.split_))
    card = _card(trainer, figures, wide, Path(source), limit, description, notes)
    say(f"writing the artifact to {out}")
    check_out_dir(out, replace=replace, allow_shipped=allow_shipped)  # it may have changed
    extra = {"figures.json": {"test_split": figures, **notes, "training": trainer.report_}}
    write_artifact(trainer.risk_model_, out, card, extra)
    return TrainingResult(
        out_dir=out, version=model_version(verified_files(out)), model=trainer.risk_model_,
        card=card, figures=figures, report=trainer.report_, warnings=warnings,
    )  # fmt: skip


def fit_trainer(trainer: SepsisModelTrainer, features: pd.DataFrame, wide: pd.DataFrame) -> None:
    """`trainer.fit`, with a cohort too thin for it (e.g. a calibration fold without a septic
    patient, which `check_splits` does not see) reported as a `TrainingError`."""
    try:
        trainer.fit(features, wide[LABEL], wide["patient_id"])
    except ValueError as error:
        raise TrainingError(f"training failed on this cohort: {error}",
                            "this happens when a part of the patient split holds too few "
                            "septic patients; give more patients (a larger --limit, or "
                            "none)") from error  # fmt: skip


def _quiet(_message: str) -> None:
    """No progress display (the default)."""


def _params(
    overrides: Mapping[str, Any] | None, n_members: int | None, seed: int | None
) -> dict[str, Any]:
    params = dict(overrides or {})
    if n_members is not None:
        if n_members < 1:
            raise TrainingError(f"--members {n_members}: an ensemble needs at least 1 member",
                                "use the default (5) or a small positive number")  # fmt: skip
        params["n_members"] = n_members
    if seed is not None:
        params["seed"] = seed
    return params


def _summary(wide: pd.DataFrame) -> str:
    patients, septic = wide["patient_id"].nunique(), len(sepsis_onset_hours(wide))
    return f"{patients:,} patients ({septic:,} septic), {len(wide):,} patient-hours"


# ------------------------------------------------------------------ where the artifact goes


def check_out_dir(out_dir: Path, *, replace: bool = False, allow_shipped: bool = False) -> Path:
    """The resolved output directory, if a run may write there; `TrainingError` otherwise.

    Checked before training, so that a refusal costs seconds, not the whole run.
    """
    out = Path(out_dir).resolve()
    if out == SHIPPED.resolve() and not allow_shipped:
        raise TrainingError(
            f"{out} is the model shipped with wardwatch; a training run does not overwrite it",
            "choose another --out; the shipped model is rebuilt only by scripts/train_setA.py",
        )
    if out.exists() and not out.is_dir():
        raise TrainingError(f"{out} is a file, not a directory", "choose a directory for --out")
    if not out.exists() or not any(out.iterdir()):
        return out
    if not _is_artifact(out):
        raise TrainingError(
            f"{out} is not empty and holds more than a wardwatch model artifact; nothing there "
            "is overwritten",
            "choose a new or empty directory for --out",
        )
    if not replace:
        raise TrainingError(f"{out} already holds a model artifact",
                            "pass --replace to overwrite it, or choose another --out")  # fmt: skip
    return out


def _is_artifact(directory: Path) -> bool:
    """True if `directory` holds a model manifest and nothing the manifest does not list."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        listed = set(manifest["files"]) | {MANIFEST}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    present = {path.name for path in directory.iterdir()}
    return manifest.get("format") == FORMAT and present <= listed


def write_artifact(
    model: RiskModel, out: Path, card: dict[str, Any], extra: dict[str, Any]
) -> None:
    """Save into a fresh sibling directory, then swap it in: a failed write loses nothing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        save_model(model, staging, card, render_markdown(card), extra)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = staging.with_name(staging.name.replace(".new-", ".old-"))
    if out.exists():
        out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        if old.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    out.chmod(0o755)  # mkdtemp makes it private; an artifact is meant to be read


# ------------------------------------------------------------------ the data


def read_training_cohort(source: Path, limit: int | None = None) -> pd.DataFrame:
    """The labelled cohort as the live store would hold it, grouped by patient in time order."""
    if not source.exists():
        raise TrainingError(f"{source}: no such file or directory", DATA_HINT)
    if limit is not None and limit < 1:
        raise TrainingError(f"--limit {limit}: nothing to train on", "give a positive --limit")
    try:
        wide = read_cohort(source, limit=limit, as_stored=True)
    except (PSVError, tarfile.TarError, OSError) as error:
        raise TrainingError(str(error), DATA_HINT) from error
    _check_labels(wide, source)
    if not wide["patient_id"].is_monotonic_increasing:
        wide = wide.sort_values(["patient_id", "hour"], kind="stable").reset_index(drop=True)
    return wide


def _check_labels(wide: pd.DataFrame, source: Path) -> None:
    unlabelled = DATA_HINT + "; unlabelled files are scored with `wardwatch predict-psv`"
    if LABEL not in wide.columns:
        raise TrainingError(f"{source}: the patient files have no {LABEL} column", unlabelled)
    missing = int(wide[LABEL].isna().sum())
    if missing:
        raise TrainingError(f"{source}: {missing:,} patient-hours have no {LABEL}", unlabelled)
    if not (wide[LABEL] == 1).any():
        raise TrainingError(f"{source}: no patient is septic ({LABEL} is never 1)",
                            "training needs septic patients; give the whole data set")  # fmt: skip


def split_counts(wide: pd.DataFrame, split_salt: str = SPLIT_SALT) -> pd.DataFrame:
    """Patients and septic patients in each part of the split: fit, early stopping,
    calibration, test (the parts `SepsisModelTrainer` uses)."""
    per_patient = wide.groupby("patient_id", sort=True)[LABEL].max()
    ids = per_patient.index.to_numpy(dtype=object)
    split = assign_split(ids, split_salt)
    part = np.where(split == TRAIN, "fit", split).astype(object)
    part[(split == TRAIN) & early_stopping_mask(ids)] = "early stopping"
    table = pd.DataFrame({"part": part, "septic": per_patient.to_numpy() == 1})
    counts = table.groupby("part")["septic"].agg(patients="size", septic="sum")
    return counts.reindex(["fit", "early stopping", CALIBRATION, TEST], fill_value=0)


def check_splits(wide: pd.DataFrame, split_salt: str = SPLIT_SALT) -> tuple[str, ...]:
    """Refuse a cohort a part of the split cannot learn or validate from; warn when small."""
    counts = split_counts(wide, split_salt)
    others = counts["patients"] - counts["septic"]
    if (counts["septic"] > 0).all() and (others > 0).all():
        return tuple(
            f"only {n} septic patients in the {part} split: its figures are too uncertain to act on"
            for part, n in counts["septic"].items()
            if part in (CALIBRATION, TEST) and n < SMALL_SPLIT_SEPTIC
        )
    table = ", ".join(f"{part} {row.septic}/{row.patients}" for part, row in counts.iterrows())
    raise TrainingError(
        "too few septic patients to split, train and calibrate: every part of the patient "
        f"split needs septic and other patients (septic/patients: {table})",
        _split_hint(counts),
    )


def check_transfer(wide: pd.DataFrame, split_salt: str = SPLIT_SALT) -> None:
    """Refuse `--transfer` before any training if a unit cannot be trained on or tested."""
    for unit in ("Unit1", "Unit2"):
        rows = wide[unit].to_numpy() == 1
        try:
            check_splits(wide.loc[rows], split_salt)
        except TrainingError as error:
            raise TrainingError(f"transfer experiment, {unit} patients: {error}",
                                "run without --transfer, or on a cohort with more Unit1 and "
                                "Unit2 patients (set A has both)") from error  # fmt: skip


def _split_hint(counts: pd.DataFrame) -> str:
    rule = "patients are split by a hash of their id: 70 % train, 15 % calibration, 15 % test"
    if counts.loc[["fit", "early stopping", CALIBRATION], "patients"].sum() == 0:
        return (f"every patient here falls in the test split ({rule}); the shipped sample is "
                "such a set. Give a larger data set, e.g. all of training_setA")  # fmt: skip
    return f"{rule}; give more patients (a larger --limit, or none)"


# ------------------------------------------------------------------ validation and notes


def _utility(ids: np.ndarray, y: np.ndarray, alerts: np.ndarray) -> float:
    return round(normalized_utility(ids, y, alerts), 4)


def held_out_figures(
    trainer: SepsisModelTrainer, wide: pd.DataFrame, features: pd.DataFrame
) -> dict[str, Any]:
    """The card's test-split figures, plus the utility at the calibration optimum (the
    threshold margin's cost, measured on patients that chose neither)."""
    test = trainer.split_ == TEST
    model = trainer.risk_model_
    figures = validation_figures(model, wide.loc[test], features.loc[test])
    optimum = trainer.report_["threshold"]["calibration_optimum"]
    risk = model.predict(features.loc[test])["risk"].to_numpy()
    ids, labels = wide["patient_id"].to_numpy()[test], wide[LABEL].to_numpy()[test]
    figures["utility_at_calibration_optimum"] = {
        "threshold": optimum,
        "utility": _utility(ids, labels, risk >= optimum),
    }
    return figures


def artifact_notes(
    model: RiskModel, wide: pd.DataFrame, features: pd.DataFrame, split: np.ndarray
) -> dict[str, Any]:
    """Scoring speed on the test split and the model's size, for the card."""
    test = split == TEST
    size = sum(len(content) for content in model_files(model).values())
    return {
        "scoring_speed_test_split": scoring_speed(model, wide.loc[test], features.loc[test]),
        "artifact": {"model_bytes": size},
    }


def scoring_speed(model: RiskModel, wide: pd.DataFrame, features: pd.DataFrame) -> dict[str, Any]:
    """Latency of one patient's update (~48 h history) and throughput over the given rows."""
    lengths = wide.groupby("patient_id").size()
    history = wide[wide["patient_id"] == (lengths - 48).abs().idxmin()]
    times = []
    for _ in range(210):
        started = time.perf_counter()
        model.predict(latest_features(history))
        times.append(time.perf_counter() - started)
    ms = np.asarray(times[10:]) * 1000
    started = time.perf_counter()
    model.predict(build_features(wide))
    seconds = time.perf_counter() - started
    return {
        "online_update_ms_p50": round(float(np.percentile(ms, 50)), 2),
        "online_update_ms_p99": round(float(np.percentile(ms, 99)), 2),
        "offline_patient_hours_per_second": round(len(wide) / seconds),
        "offline_rows": len(wide),
        "note": "features + prediction, measured by the training run on the training machine; "
        "benchmarks/scoring.py measures the same on demand",
    }


def transfer_experiments(
    wide: pd.DataFrame, features: pd.DataFrame, trainer: SepsisModelTrainer, say: Progress
) -> dict[str, Any]:
    """Unit1 (MICU) -> Unit2 (SICU): with every feature, and without ordering-habit ones."""
    description = ("Train on Unit1 (MICU) patients only, or on Unit2 (SICU) patients only "
                   "(each on its own train/calibration splits, threshold chosen on its own "
                   "calibration patients); test both on the test split of Unit2. 1-member "
                   "models, otherwise the run's parameters.")  # fmt: skip
    out: dict[str, Any] = {}
    for label, drop in (("all_features", ()), ("without_measured_and_count", TRANSFER_HABIT)):
        say(f"transfer experiment ({label.replace('_', ' ')})")
        result = transfer(wide, features, trainer, drop)
        out[f"transfer_unit1_to_unit2_{label}"] = {"description": description, **result}
    return out


def transfer(
    wide: pd.DataFrame, features: pd.DataFrame, trainer: SepsisModelTrainer, drop: tuple[str, ...]
) -> dict[str, Any]:
    """Train on Unit1 or on Unit2 patients; test both on Unit2's test split."""
    unit1, unit2 = wide["Unit1"].to_numpy() == 1, wide["Unit2"].to_numpy() == 1
    y, ids = wide[LABEL].to_numpy(), wide["patient_id"].to_numpy()
    exclude = (*trainer.exclude, *(c for c in features.columns if c.endswith(drop)))
    params = {**trainer.get_params(), "n_members": 1, "exclude": exclude,
              "scorer": trainer.scorer}  # fmt: skip
    target = unit2 & (assign_split(ids, trainer.split_salt) == TEST)  # the same for both
    out: dict[str, Any] = {"dropped_feature_suffixes": list(drop)}
    for name, rows in (("unit1", unit1), ("unit2", unit2)):
        try:
            unit = SepsisModelTrainer(**params).fit(features.loc[rows], y[rows], ids[rows])
        except ValueError as error:
            raise TrainingError(f"transfer experiment, {name} patients: {error}",
                                "run without --transfer, or on a cohort with more Unit1 and "
                                "Unit2 patients (set A has both)") from error  # fmt: skip
        out[f"{name}_to_unit2"] = _transfer_figures(unit, features.loc[target], y[target],
                                                    ids[target])  # fmt: skip
    return out


def _transfer_figures(
    unit: SepsisModelTrainer, features: pd.DataFrame, y: np.ndarray, ids: np.ndarray
) -> dict[str, Any]:
    model = unit.risk_model_
    risk = model.predict(features)["risk"].to_numpy()
    optimum = unit.report_["threshold"]["calibration_optimum"]
    auroc = round(float(roc_auc_score(y, risk)), 4) if len(np.unique(y)) == 2 else None
    return {
        "auroc": auroc,
        "utility_at_own_threshold": _utility(ids, y, risk >= model.threshold),
        "threshold": round(model.threshold, 4),
        "utility_at_own_calibration_optimum": _utility(ids, y, risk >= optimum),
        "calibration_optimum": round(optimum, 4),
        "patients": int(pd.unique(ids).size),
    }


# ------------------------------------------------------------------ the card


def source_sha256(source: Path) -> str:
    """sha256 identifying the source files (`SOURCE_HASH_RULE`)."""
    if not source.is_dir():
        return file_sha256(source)
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*.psv"), key=lambda p: p.relative_to(source).as_posix()):
        name = path.relative_to(source).as_posix()
        digest.update(f"{name}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def split_rule(split_salt: str = SPLIT_SALT) -> str:
    """The split rule as applied with `split_salt` (the card records the one actually used)."""
    return SPLIT_RULE.replace(f"'{SPLIT_SALT}:", f"'{split_salt}:")


def lineage(
    source: Path, wide: pd.DataFrame, trainer: SepsisModelTrainer, limit: int | None
) -> dict[str, Any]:
    """Which data, code, libraries, parameters and split made the model (design rule 6)."""
    data = {
        "source": source.name,
        "source_sha256": source_sha256(source),
        "source_hash_rule": SOURCE_HASH_RULE,
        "limit": limit,
        "values": AS_STORED,
        "wide_frame_sha256": frame_sha256(wide),
    }
    return {
        "data": data,
        "code": code_version(),
        "libraries": library_versions(),
        "parameters": trainer.get_params(),
        "lightgbm_parameters": trainer.lightgbm_params(),
        "split_rule": split_rule(trainer.split_salt),
    }


def population(wide: pd.DataFrame, source: Path, description: str | None) -> dict[str, Any]:
    """The card's training population: what the data was and how many of each."""
    patients, septic = wide["patient_id"].nunique(), len(sepsis_onset_hours(wide))
    what = description or f"PhysioNet 2019-format patient files ({source.name})"
    return {
        "description": f"{what}: {patients} patients, {septic} septic, {len(wide)} patient-hours.",
        "source": source.name,
        "patients": int(patients),
        "septic_patients": septic,
        "hours": len(wide),
    }


def _card(
    trainer: SepsisModelTrainer,
    figures: dict[str, Any],
    wide: pd.DataFrame,
    source: Path,
    limit: int | None,
    description: str | None,
    notes: dict[str, Any],
) -> dict[str, Any]:
    card = build_card(trainer, figures, lineage(source, wide, trainer, limit),
                      population(wide, source, description), notes)  # fmt: skip
    card["training_population"]["split_rule"] = split_rule(trainer.split_salt)
    return card
