"""The alert policy's burden on set A patients the shipped model never saw (the test split).

    .venv/bin/python scripts/alert_burden.py [--source DIR_OR_TAR] [--config wardwatch.toml]
                                             [--json out.json] [--full-timing]

Reads PhysioNet 2019 training set A (the unpacked /tmp/setA/training_setA if present, else
../shared/data/physionet2019/training_setA.tar.gz), keeps the test split of the hash rule the
model was trained with (`model.split`: 15 % of patients, never used for fitting, calibration
or the threshold), scores every hour with the shipped model, replays the alert policy
(`alerts.burden.policy_variants`) and prints, for the threshold alone and for each combination
of the organ-dysfunction gate and re-alert suppression: alerts and review flags per 100
patient-days, sensitivity, PPV per alert and median lead time. With `--full-timing` it also
times the signs and one policy replay over all of set A (790k rows). Without the data it says
so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from wardwatch.alerts.burden import policy_variants, simulate
from wardwatch.alerts.policy import PolicyBook, load_policy_book
from wardwatch.alerts.signs import organ_dysfunction
from wardwatch.features import build_features
from wardwatch.ingest.psv import read_cohort
from wardwatch.model.artifact import load_shipped_model
from wardwatch.model.split import TEST, assign_split

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "physionet2019" / "training_setA.tar.gz"
UNPACKED = Path("/tmp/setA/training_setA")
COLUMNS = (
    ("alerts_per_100_patient_days", "alerts/100pd", "{:.1f}"),
    ("review_flags_per_100_patient_days", "reviews/100pd", "{:.1f}"),
    ("sensitivity", "sens", "{:.1%}"),
    ("sensitivity_before_onset", "sens<=onset", "{:.1%}"),
    ("sensitivity_alert_or_review", "alert|review", "{:.1%}"),
    ("ppv_per_alert", "PPV/alert", "{:.1%}"),
    ("median_lead_hours", "lead h", "{:.0f}"),
    ("patients_alerted", "pts alerted", "{:.1%}"),
)
T = TypeVar("T")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def timed(timings: dict[str, float], name: str, work: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = work()
    timings[name] = round(time.perf_counter() - started, 2)
    log(f"{name}: {timings[name]} s")
    return result


def find_source(given: Path | None) -> Path | None:
    if given is not None:
        return given
    return next((p for p in (UNPACKED, ARCHIVE) if p.exists()), None)


def held_out(wide: pd.DataFrame) -> pd.DataFrame:
    """The test-split patients, grouped by patient in time order."""
    test = wide.loc[assign_split(wide["patient_id"]) == TEST]
    return test.sort_values(["patient_id", "hour"], kind="stable").reset_index(drop=True)


def table(variants: list[dict[str, Any]]) -> str:
    rows = [["policy", *(label for _, label, _ in COLUMNS)]]
    for row in variants:
        cells = ["—" if row[k] is None else fmt.format(row[k]) for k, _, fmt in COLUMNS]
        rows.append([row["name"], *cells])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in rows]  # fmt: skip
    return "\n".join(lines)


def full_timing(wide: pd.DataFrame, book: PolicyBook, timings: dict[str, float]) -> None:
    """Signs and one replay of the default policy over every row given (all of set A)."""
    wide = wide.sort_values(["patient_id", "hour"], kind="stable").reset_index(drop=True)
    model = load_shipped_model()
    features = timed(timings, f"all {len(wide)} rows: features", lambda: build_features(wide))
    output = timed(timings, "all rows: model", lambda: model.predict(features))
    signs = timed(timings, "all rows: organ_dysfunction", lambda: organ_dysfunction(wide))
    timed(timings, "all rows: simulate (default policy)",
          lambda: simulate(wide, output, book, model.threshold, signs=signs))  # fmt: skip


def run(source: Path, book: PolicyBook, full: bool) -> dict[str, Any]:
    timings: dict[str, float] = {}
    wide = timed(timings, "read set A", lambda: read_cohort(source))
    test = held_out(wide)
    patients = test["patient_id"].nunique()
    log(f"test split: {patients} patients, {len(test)} hours")
    model = load_shipped_model()
    features = timed(timings, "features", lambda: build_features(test))
    output = timed(timings, "model", lambda: model.predict(features))
    signs = timed(timings, "organ_dysfunction", lambda: organ_dysfunction(test))

    def replay() -> dict[str, Any]:
        return policy_variants(test, output, book, model.threshold, signs=signs)

    result = timed(timings, "policy_variants (4 replays)", replay)
    if full:
        full_timing(wide, book, timings)
    septic = int(test.groupby("patient_id")["SepsisLabel"].max().sum())
    cohort = {"patients": patients, "septic_patients": septic, "hours": len(test)}
    return result | {"cohort": cohort, "seconds": timings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="set A directory or .tar.gz")
    parser.add_argument("--config", type=Path, default=None, help="TOML with an [alerts] table")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--full-timing", action="store_true", help="time all of set A too")
    args = parser.parse_args(argv)
    source = find_source(args.source)
    if source is None or not source.exists():
        print(f"skipped: set A not found ({args.source or ARCHIVE} is absent; ../shared is "
              "optional)")  # fmt: skip
        return 0
    book = PolicyBook.load(args.config) if args.config else load_policy_book()
    result = run(source, book, args.full_timing)
    c = result["cohort"]
    print(f"\nSet A test split: {c['patients']} patients, {c['septic_patients']} septic, "
          f"{c['hours']} hours; threshold {result['threshold']:.4f}\n")  # fmt: skip
    print(table(result["variants"]))
    print("\n" + "\n".join(f"- {k}: {v}" for k, v in result["definitions"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
