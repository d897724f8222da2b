"""Build the training reference that ships with wardwatch: `monitor/reference/shipped.json`.

    .venv/bin/python scripts/build_reference.py [--source DIR_OR_TAR] [--out PATH]

Reads PhysioNet 2019 training set A (the unpacked /tmp/setA/training_setA if present, else
../shared/data/physionet2019/training_setA.tar.gz), keeps the patients of the *training* split
of the hash rule the shipped model was trained with (`model.split`), scores every hour with
the shipped model, and writes their profile (`monitor.reference`): how often each variable
was measured and what its values were, the risk distribution, the alert rate, the OOD share,
the calibration, and the alert burden the default policy projects on them (per unit). The
profile records the model version it belongs to and a sha256 of the patient files it read.
Without the data it says so and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from wardwatch.alerts.policy import PolicyBook
from wardwatch.ingest.psv import iter_cohort
from wardwatch.model.artifact import load_shipped_model
from wardwatch.model.cohort import score_cohort
from wardwatch.model.split import TRAIN, assign_split
from wardwatch.monitor.reference import SHIPPED_NAME, profile_cohort, save_profile
from wardwatch.site.validate import projected_burden

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "physionet2019" / "training_setA.tar.gz"
UNPACKED = Path("/tmp/setA/training_setA")
OUT = ROOT / "src" / "wardwatch" / "monitor" / "reference_data" / SHIPPED_NAME


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def source_of(given: Path | None) -> Path | None:
    for candidate in (given, UNPACKED, ARCHIVE):
        if candidate is not None and candidate.exists():
            return candidate
    return None


def training_hours(source: Path) -> pd.DataFrame:
    """Set A's training-split patients, as stored (implausible values blanked), sorted."""
    chunks = []
    for chunk in iter_cohort(source, patients_per_chunk=2000, as_stored=True):
        chunks.append(chunk.loc[assign_split(chunk["patient_id"]) == TRAIN])
    wide = pd.concat(chunks, ignore_index=True)
    return wide.sort_values(["patient_id", "hour"], kind="stable").reset_index(drop=True)


def data_hash(wide: pd.DataFrame) -> str:
    """sha256 of the profiled values: patient ids, hours and every measured column, in order."""
    digest = hashlib.sha256()
    digest.update("\n".join(wide["patient_id"].astype(str)).encode())
    digest.update(np.ascontiguousarray(wide.drop(columns="patient_id").to_numpy(np.float64)))
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    source = source_of(args.source)
    if source is None:
        print(f"set A not found (tried {UNPACKED} and {ARCHIVE}); nothing built", file=sys.stderr)
        return 0
    log(f"reading the training split of {source}")
    wide = training_hours(source)
    log(f"{wide['patient_id'].nunique():,} patients, {len(wide):,} hours; scoring")
    model = load_shipped_model()
    outputs = score_cohort(wide, model)
    log("profiling")
    profile = profile_cohort(wide, outputs, model.threshold, source="PhysioNet 2019 set A, "
                             "training split", model_version=model.version)  # fmt: skip
    log("replaying the default alert policy for the burden")
    burden = projected_burden(wide, outputs, PolicyBook(), model.threshold)
    profile = profile.with_lineage(
        data_hash=data_hash(wide),
        notes={"alert_burden": burden, "split_rule": "wardwatch.model.split, train",
               "alert_policy": "the default PolicyBook"},
    )  # fmt: skip
    path = save_profile(profile, args.out)
    log(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB), model {model.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
