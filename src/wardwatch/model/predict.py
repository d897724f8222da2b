"""Score a directory of PhysioNet 2019 `.psv` files the way the challenge's driver does.

For every patient file `pXXXXXX.psv` in `in_dir`, writes `out_dir/pXXXXXX.psv` with the header
`PredictedProbability|PredictedLabel` and one line per input row: the calibrated risk at that
hour (6 decimals) and 1 if it reaches the model's threshold, else 0. The challenge feeds rows
0..t to the model for hour t; the features at hour t depend on rows 0..t only (see
`wardwatch.features`, tested against truly incremental scoring), so scoring each whole file in
one pass gives the same numbers, thousands of times faster. Values the quality gate would
quarantine as implausible are blanked first, as the live store would never hold them.

Files are read a chunk of patients at a time; the chunks are scored and written in forked
worker processes, one per core (`wardwatch.model.cohort.Workers`), while this process reads
the next ones; a small directory, `workers=1` or a platform without fork does it all here.

With a site configuration (`wardwatch.site.config`, from `wardwatch calibrate-site`), each
stay's label uses its care unit's threshold of that site, and the probability is the site's
prior-shifted one when the configuration has a prior shift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from wardwatch.ingest.psv import count_patient_files, iter_cohort
from wardwatch.model.artifact import load_shipped_model
from wardwatch.model.cohort import Workers, score_cohort, usable_cores
from wardwatch.model.risk import RiskModel

if TYPE_CHECKING:
    from wardwatch.site.config import SiteConfig

HEADER = "PredictedProbability|PredictedLabel"
Progress = Callable[[int, int], None]  # (patients done, patients in total)


def format_predictions(risk: np.ndarray, alert: np.ndarray) -> str:
    """The output file's text: header, then `probability|label` per row."""
    rows = [f"{p:.6f}|{int(a)}" for p, a in zip(risk.tolist(), alert.tolist(), strict=True)]
    return "\n".join([HEADER, *rows]) + "\n"


@dataclass(frozen=True, slots=True)
class _Job:
    """What every chunk is scored with and where its files go."""

    model: RiskModel
    out_dir: Path
    site: SiteConfig | None

    def write(self, chunk: pd.DataFrame, threads: int | None = None) -> list[str]:
        """Score a chunk of patients and write their files; returns their ids."""
        model, site = self.model, self.site
        risk = score_cohort(chunk, model, workers=1, threads=threads)["risk"].to_numpy()
        alert = risk >= model.threshold
        if site is not None:
            from wardwatch.site.config import stay_units

            units = stay_units(chunk)
            risk, alert = site.risk(risk, units), site.alerts(risk, units, model.threshold)
        ids = chunk["patient_id"].to_numpy()
        bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
        for begin, end in pairwise(bounds):
            text = format_predictions(risk[begin:end], alert[begin:end])
            (self.out_dir / f"{ids[begin]}.psv").write_text(text)
        return [str(ids[b]) for b in bounds[:-1]]


# In a forked worker of `predict_psv`: the job, inherited.
_job: _Job | None = None


def _inherit_job(job: _Job) -> None:
    global _job  # set once per worker process, by the pool
    _job = job


def _write_inherited(chunk: pd.DataFrame) -> list[str]:
    """`_Job.write` in a forked worker: one LightGBM thread, as the cores are shared."""
    if _job is None:
        raise RuntimeError("only workers started by predict_psv write chunks")
    return _job.write(chunk, threads=1)


def _written(chunks: Iterable[pd.DataFrame], job: _Job, workers: int) -> Iterator[list[str]]:
    """The ids written, chunk by chunk in the order read, by `workers` processes (or here)."""
    if workers < 2 or not Workers.available():
        for chunk in chunks:
            yield job.write(chunk)
        return
    with Workers(workers, _inherit_job, (job,)) as pool:
        yield from pool.in_order(_write_inherited, chunks)


def predict_psv(
    in_dir: Path,
    out_dir: Path,
    model: RiskModel | None = None,
    progress: Progress | None = None,
    patients_per_chunk: int = 500,
    site: SiteConfig | None = None,
    *,
    workers: int | None = None,
) -> int:
    """Write one prediction file per patient file; returns the number of files written.

    `site`: a site configuration whose per-unit thresholds (and prior shift) replace the
    model's threshold; it must have been set for `model` (`SiteConfig.check_model`).
    `workers`: processes scoring chunks (default: one per core; 1 scores in this process)."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    model = model or load_shipped_model()
    if site is not None:
        site.check_model(model.version)
    out_dir.mkdir(parents=True, exist_ok=True)
    total, done = count_patient_files(in_dir), set()
    chunks = iter_cohort(in_dir, patients_per_chunk=patients_per_chunk, as_stored=True)
    count = min(usable_cores() if workers is None else workers, -(-total // patients_per_chunk))
    for written in _written(chunks, _Job(model, out_dir, site), count):
        done.update(written)
        if progress is not None:
            progress(len(done), total)
    for path in sorted(in_dir.rglob("*.psv")):  # files with a header but no rows
        if path.stem not in done:
            (out_dir / path.name).write_text(HEADER + "\n")
            done.add(path.stem)
    return len(done)
