"""Drift monitoring speed: profiling a cohort and comparing it with the reference.

    .venv/bin/python benchmarks/drift.py [--patients N ...]

Builds cohorts of N patients by repeating the shipped 300-patient sample (new ids, the same
hours), with a made-up risk per hour (the model's scoring is timed by benchmarks/scoring.py),
and prints the time to profile it as a reference, to profile it again on the reference's bins,
and to compare the two. Figures only; no assertion.
"""

from __future__ import annotations

import argparse
import time
from importlib import resources

import numpy as np
import pandas as pd

from wardwatch.ingest.psv import read_cohort
from wardwatch.monitor.drift import compare
from wardwatch.monitor.reference import profile_cohort

SAMPLE = resources.files("wardwatch") / "data" / "physionet_sample" / "setA_sample.tar.gz"


def cohort(sample: pd.DataFrame, patients: int) -> pd.DataFrame:
    copies = -(-patients // sample["patient_id"].nunique())
    parts = [sample.assign(patient_id=sample["patient_id"] + f"-{k}") for k in range(copies)]
    wide = pd.concat(parts, ignore_index=True)
    keep = wide["patient_id"].isin(wide["patient_id"].unique()[:patients])
    return wide.loc[keep].reset_index(drop=True)


def timed(work):
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[1_000, 5_000, 20_000])
    args = parser.parse_args()
    sample = read_cohort(SAMPLE, as_stored=True)
    print(f"{'patients':>9} {'rows':>9} {'reference s':>12} {'current s':>10} {'compare s':>10}")
    for n in args.patients:
        wide = cohort(sample, n)
        risk = pd.DataFrame({"risk": np.random.default_rng(0).beta(1, 40, len(wide)),
                             "ood": False})  # fmt: skip
        reference, t_ref = timed(lambda w=wide, r=risk: profile_cohort(w, r, 0.034))
        again = lambda w=wide, r=risk, f=reference: profile_cohort(w, r, 0.034, like=f)  # noqa: E731
        current, t_cur = timed(again)
        _, t_cmp = timed(lambda f=reference, c=current: compare(f, c))
        print(f"{n:>9,} {len(wide):>9,} {t_ref:>12.2f} {t_cur:>10.2f} {t_cmp:>10.3f}")


if __name__ == "__main__":
    main()
