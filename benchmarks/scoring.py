"""Scoring speed: bedside latency and offline throughput of features + prediction.

    .venv/bin/python benchmarks/scoring.py [--model DIR] [--cohort PATH] [--repeats N]
        [--rounds N] [--workers N] [--no-one-shot] [--no-phases]

- *Online latency*: a patient with ~48 h of history receives one new hour; time
  `latest_features(history)` + `model.predict(...)` (p50 / p99 over repeats). Target p99 < 5 ms.
- *Offline throughput*: patient-hours per second, features + prediction of a whole cohort (the
  shipped sample by default; pass set A with --cohort), for the one-shot path
  `model.predict(build_features(wide))` and for `score_cohort` in this process (workers=1) and
  on every core. Variants run interleaved, `--rounds` times each, and the best and the median
  are reported: on a shared machine a single timing says little. Target >= 100,000/s.
- *Phases*: where the time of a chunk goes (`score_cohort`'s chunks, one thread, in this
  process): features, the model's column selection, LightGBM, OOD score, calibration and
  spread, as wall and CPU microseconds per patient-hour.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

import wardwatch
from wardwatch.features import build_features, latest_features
from wardwatch.ingest.psv import read_cohort
from wardwatch.model.artifact import SHIPPED, load_model
from wardwatch.model.cohort import ChunkPlan, score_cohort, usable_cores
from wardwatch.model.uncertainty import ensemble_spread

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


def offline_variants(model, workers: int, one_shot: bool) -> dict[str, Callable]:
    variants: dict[str, Callable] = {}
    if one_shot:
        variants["one-shot predict(build_features)"] = lambda w: model.predict(build_features(w))
    variants["score_cohort workers=1"] = lambda w: score_cohort(w, model, workers=1)
    if workers > 1:
        variants[f"score_cohort workers={workers}"] = lambda w: score_cohort(
            w, model, workers=workers
        )
    return variants


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    own, workers = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def offline(
    variants: dict[str, Callable], wide, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Patient-hours per second, and CPU µs per patient-hour (all processes), of every
    variant, `rounds` times, interleaved."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            started, cpu_started = time.perf_counter(), _cpu_seconds()
            run(wide)
            rates[name].append(len(wide) / (time.perf_counter() - started))
            cpu[name].append((_cpu_seconds() - cpu_started) / len(wide) * 1e6)
    return rates, cpu


class _Clock:
    """Wall and CPU seconds per phase, summed over chunks: `with clock("phase"): ...`."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.wall[phase] = self.wall.get(phase, 0.0) + time.perf_counter() - wall
        self.cpu[phase] = self.cpu.get(phase, 0.0) + time.process_time() - cpu


def phases(model, wide) -> _Clock:
    """Time the steps of `RiskModel.predict` (spelled out here) on `score_cohort`'s chunks."""
    plan, clock = ChunkPlan.of(wide), _Clock()
    for i in range(plan.chunks):
        with clock("slice chunk"):
            chunk = wide.iloc[plan.rows(i)]
        with clock("features"):
            features = build_features(chunk)
        model_columns, ood_columns = model._positions(features.columns)
        x = features.to_numpy(dtype=np.float64)
        with clock("model columns"):
            inputs = x[:, model_columns]
        with clock("LightGBM"):
            members = model.raw_members(inputs, threads=1)
        with clock("OOD score"):
            model.ood.flag(model.ood.score_array(x[:, ood_columns]))
        with clock("calibration + spread"):
            model.calibrator.predict(members.mean(axis=0))
            ensemble_spread(model.calibrator.predict(members))
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description="wardwatch scoring benchmark")
    parser.add_argument("--model", type=Path, default=SHIPPED)
    parser.add_argument("--cohort", type=Path, default=SAMPLE)
    parser.add_argument("--repeats", type=int, default=500, help="online predictions timed")
    parser.add_argument("--rounds", type=int, default=5, help="timings of each offline variant")
    parser.add_argument("--workers", type=int, default=usable_cores())
    parser.add_argument("--no-one-shot", dest="one_shot", action="store_false",
                        help="skip the one-shot path (2.3 GB of features on set A)")  # fmt: skip
    parser.add_argument("--no-phases", dest="phases", action="store_false")
    args = parser.parse_args()
    model = load_model(args.model)
    wide = read_cohort(args.cohort, as_stored=True)
    lat = online(model, wide, args.repeats)
    print(f"online: {lat['history_hours']} h history, feature update + prediction: "
          f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms (target p99 < 5)")  # fmt: skip
    variants = offline_variants(model, args.workers, args.one_shot)
    reference = None
    for run in variants.values():  # warm up, and check that every variant gives the same rows
        result = run(wide)
        if reference is None:
            reference = result
        pd.testing.assert_frame_equal(result, reference, check_exact=True)
    rates, cpu = offline(variants, wide, args.rounds)
    print(f"offline: {len(wide):,} patient-hours, {args.rounds} interleaved rounds "
          "(target >= 100,000/s); CPU: all processes' CPU time per patient-hour")  # fmt: skip
    for name, values in rates.items():
        print(f"  {name:34s} best {max(values):>9,.0f}/s  median "
              f"{statistics.median(values):>9,.0f}/s   CPU best {min(cpu[name]):6.2f} µs  "
              f"median {statistics.median(cpu[name]):6.2f} µs")  # fmt: skip
    if args.phases:
        clock = phases(model, wide)
        print("per patient-hour, score_cohort's chunks, one thread, in this process:")
        for phase in clock.wall:
            print(f"  {phase:22s} wall {clock.wall[phase] / len(wide) * 1e6:6.2f} µs   "
                  f"CPU {clock.cpu[phase] / len(wide) * 1e6:6.2f} µs")  # fmt: skip


if __name__ == "__main__":
    main()
