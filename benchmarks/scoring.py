"""Scoring speed: bedside latency and offline throughput of features + prediction.

    .venv/bin/python benchmarks/scoring.py [--model DIR] [--cohort PATH] [--repeats N]

- *Online latency*: a patient with ~48 h of history receives one new hour; time
  `latest_features(history)` + `model.predict(...)` (p50 / p99 over repeats). Target p99 < 5 ms.
- *Offline throughput*: patient-hours per second for `build_features` + `model.predict` over a
  whole cohort (the shipped sample by default; pass set A with --cohort). Target >= 100,000/s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import wardwatch
from wardwatch.features import build_features, latest_features
from wardwatch.ingest.psv import read_cohort
from wardwatch.model.artifact import SHIPPED, load_model

SAMPLE = Path(wardwatch.__file__).parent / "data" / "physionet_sample" / "setA_sample.tar.gz"


def online(model, wide, repeats: int) -> dict[str, float]:
    lengths = wide.groupby("patient_id").size()
    pid = (lengths - 48).abs().idxmin()
    history = wide[wide["patient_id"] == pid]
    times = []
    for i in range(repeats):
        rows = history.iloc[: len(history) - (i % 3)]  # a slightly different "now" each time
        started = time.perf_counter()
        model.predict(latest_features(rows))
        times.append(time.perf_counter() - started)
    ms = np.asarray(times[10:]) * 1000  # the first calls warm caches
    return {"history_hours": len(history), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}  # fmt: skip


def offline(model, wide) -> dict[str, float]:
    started = time.perf_counter()
    features = build_features(wide)
    middle = time.perf_counter()
    model.predict(features)
    done = time.perf_counter()
    return {"patient_hours": len(wide), "features_s": middle - started,
            "predict_s": done - middle, "hours_per_s": len(wide) / (done - started)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description="wardwatch scoring benchmark")
    parser.add_argument("--model", type=Path, default=SHIPPED)
    parser.add_argument("--cohort", type=Path, default=SAMPLE)
    parser.add_argument("--repeats", type=int, default=500)
    args = parser.parse_args()
    model = load_model(args.model)
    wide = read_cohort(args.cohort)
    lat = online(model, wide, args.repeats)
    print(f"online: {lat['history_hours']} h history, feature update + prediction: "
          f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms (target p99 < 5)")  # fmt: skip
    thr = offline(model, wide)
    print(f"offline: {thr['patient_hours']} patient-hours, features {thr['features_s']:.2f} s, "
          f"prediction {thr['predict_s']:.2f} s -> {thr['hours_per_s']:,.0f} patient-hours/s "
          "(target >= 100,000/s)")  # fmt: skip


if __name__ == "__main__":
    main()
