"""How much do the held-out figures depend on which patients happened to be held out?

    .venv/bin/python scripts/split_variation.py [SET_A_DIR] [--splits 5] [--members 1]

The shipped model's card reports one patient-level split of set A (70 % train, 15 %
calibration, 15 % test by a hash of the patient id). One split's 3,093 test patients hold 263
septic patients, so its utility and AUROC carry a sampling error of their own. This script
repeats the whole training run (`SepsisModelTrainer`: early stopping, calibration, threshold
on calibration patients, figures on test patients) on `--splits` other hash salts, i.e. other
random patient-level splits, and prints each split's test figures with their mean and
standard deviation. `--members 1` (the default) trains one booster per split, so the run
takes minutes; the shipped model has five.

Same code as `wardwatch train` (`training_run.fit_trainer`, `held_out_figures`); nothing is
saved.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from wardwatch.features import build_features
from wardwatch.model.split import SPLIT_SALT
from wardwatch.model.train import SepsisModelTrainer
from wardwatch.model.training_run import (
    TrainingError,
    fit_trainer,
    held_out_figures,
    read_training_cohort,
)

FIGURES = ("utility", "auroc", "auprc", "sensitivity", "ppv", "alerts_per_100_patient_days")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=Path, default=Path("/tmp/setA/training_setA"))
    parser.add_argument("--splits", type=int, default=5, help="how many other splits")
    parser.add_argument("--members", type=int, default=1, help="boosters per model")
    args = parser.parse_args()
    started = time.perf_counter()
    try:
        wide = read_training_cohort(args.source)
    except TrainingError as error:
        print(f"error: {error}\n{error.hint}", file=sys.stderr)
        return 2
    features = build_features(wide)
    salts = [SPLIT_SALT] + [f"{SPLIT_SALT}-variation-{k}" for k in range(1, args.splits + 1)]
    rows = []
    print("split salt".ljust(34) + "".join(f"{name[:12]:>13}" for name in FIGURES), flush=True)
    for salt in salts:
        trainer = SepsisModelTrainer(n_members=args.members, split_salt=salt)
        fit_trainer(trainer, features, wide)
        figures = held_out_figures(trainer, wide, features)
        rows.append([float(figures[name]) for name in FIGURES])
        shipped = "  (the shipped split)" if salt == SPLIT_SALT else ""
        print(salt.ljust(34) + "".join(f"{v:13.3f}" for v in rows[-1]) + shipped, flush=True)
    table = np.asarray(rows[1:])  # the other splits: the shipped one was chosen before them
    print("mean of the other splits".ljust(34) + "".join(f"{v:13.3f}" for v in table.mean(0)))
    print("sd of the other splits".ljust(34) + "".join(f"{v:13.3f}" for v in table.std(0, ddof=1)))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
