"""Evaluate the rule-based baselines (qSOFA, SIRS, NEWS2, SOFA) on PhysioNet 2019 data.

    .venv/bin/python scripts/evaluate_baselines.py /tmp/setA/training_setA --out /tmp/eval_baselines

Baselines learn nothing, so the whole set is a fair test set; `--test-fraction` keeps a
patient-level subset instead (chosen by a hash of the patient id, so it is stable across runs
and never splits a stay). Writes evaluation.html and evaluation.json and prints the headline.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import pandas as pd

from wardwatch.evaluate import evaluate_cohort, write_report
from wardwatch.ingest.psv import read_cohort
from wardwatch.scores import DEFAULT_BASELINES, get_baseline

COLUMNS = (
    ("utility", "utility", "{:.3f}"),
    ("auroc", "AUROC", "{:.3f}"),
    ("auprc", "AUPRC", "{:.3f}"),
    ("sensitivity", "sens", "{:.1%}"),
    ("ppv", "PPV", "{:.1%}"),
    ("alerts_per_100_patient_days", "alerts/100pd", "{:.1f}"),
    ("median_lead_hours", "lead h", "{:.0f}"),
)


def held_out_patients(wide: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """The stays whose hashed id falls in the first `fraction` of the hash range."""
    if fraction >= 1:
        return wide
    ids = wide["patient_id"].drop_duplicates()
    bucket = ids.map(lambda p: int(hashlib.sha256(str(p).encode()).hexdigest()[:8], 16) / 2**32)
    keep = set(ids[bucket < fraction])
    return wide.loc[wide["patient_id"].isin(keep)].reset_index(drop=True)


def headline_table(results: dict) -> str:
    rows = [["baseline", *(label for _, label, _ in COLUMNS)]]
    for row in results["headline"]:
        cells = ["—" if row[k] is None else pattern.format(row[k]) for k, _, pattern in COLUMNS]
        rows.append([row["name"], *cells])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="directory of .psv files, or a .tar.gz")
    parser.add_argument("--out", type=Path, default=Path("/tmp/eval_baselines"))
    parser.add_argument("--limit", type=int, default=None, help="read only the first N files")
    parser.add_argument("--test-fraction", type=float, default=1.0)
    parser.add_argument("--baselines", nargs="+", default=list(DEFAULT_BASELINES))
    args = parser.parse_args(argv)

    started = time.perf_counter()
    wide = held_out_patients(read_cohort(args.data, limit=args.limit), args.test_fraction)
    predictions = {name: get_baseline(name).predictions(wide) for name in args.baselines}
    results = evaluate_cohort(wide, predictions, title="Rule-based baselines on PhysioNet 2019")
    html_path, json_path = write_report(results, args.out)
    cohort = results["cohort"]
    print(f"{cohort['patients']} patients, {cohort['septic_patients']} septic, "
          f"{cohort['hours']} hours")  # fmt: skip
    print(headline_table(results))
    print(f"wrote {html_path} and {json_path} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
