"""Score a directory of PhysioNet 2019 `.psv` files the way the challenge's driver does.

For every patient file `pXXXXXX.psv` in `in_dir`, writes `out_dir/pXXXXXX.psv` with the header
`PredictedProbability|PredictedLabel` and one line per input row: the calibrated risk at that
hour (6 decimals) and 1 if it reaches the model's threshold, else 0. The challenge feeds rows
0..t to the model for hour t; the features at hour t depend on rows 0..t only (see
`wardwatch.features`, tested against truly incremental scoring), so scoring each whole file in
one pass gives the same numbers, thousands of times faster. Values the quality gate would
quarantine as implausible are blanked first, as the live store would never hold them.

With a site configuration (`wardwatch.site.config`, from `wardwatch calibrate-site`), each
stay's label uses its care unit's threshold of that site, and the probability is the site's
prior-shifted one when the configuration has a prior shift.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from wardwatch.features import build_features
from wardwatch.ingest.psv import count_patient_files, iter_cohort
from wardwatch.model.artifact import load_shipped_model
from wardwatch.model.risk import RiskModel

if TYPE_CHECKING:
    from wardwatch.site.config import SiteConfig

HEADER = "PredictedProbability|PredictedLabel"
Progress = Callable[[int, int], None]  # (patients done, patients in total)


def format_predictions(risk: np.ndarray, alert: np.ndarray) -> str:
    """The output file's text: header, then `probability|label` per row."""
    rows = [f"{p:.6f}|{int(a)}" for p, a in zip(risk.tolist(), alert.tolist(), strict=True)]
    return "\n".join([HEADER, *rows]) + "\n"


def _write_chunk(
    chunk: pd.DataFrame, model: RiskModel, out_dir: Path, site: SiteConfig | None = None
) -> list[str]:
    risk = model.predict(build_features(chunk))["risk"].to_numpy()
    alert = risk >= model.threshold
    if site is not None:
        from wardwatch.site.config import stay_units

        units = stay_units(chunk)
        risk, alert = site.risk(risk, units), site.alerts(risk, units, model.threshold)
    ids = chunk["patient_id"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    for begin, end in pairwise(bounds):
        text = format_predictions(risk[begin:end], alert[begin:end])
        (out_dir / f"{ids[begin]}.psv").write_text(text)
    return [str(ids[b]) for b in bounds[:-1]]


def predict_psv(
    in_dir: Path,
    out_dir: Path,
    model: RiskModel | None = None,
    progress: Progress | None = None,
    patients_per_chunk: int = 500,
    site: SiteConfig | None = None,
) -> int:
    """Write one prediction file per patient file; returns the number of files written.

    `site`: a site configuration whose per-unit thresholds (and prior shift) replace the
    model's threshold; it must have been set for `model` (`SiteConfig.check_model`)."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    model = model or load_shipped_model()
    if site is not None:
        site.check_model(model.version)
    out_dir.mkdir(parents=True, exist_ok=True)
    total, done = count_patient_files(in_dir), set()
    for chunk in iter_cohort(in_dir, patients_per_chunk=patients_per_chunk, as_stored=True):
        done.update(_write_chunk(chunk, model, out_dir, site))
        if progress is not None:
            progress(len(done), total)
    for path in sorted(in_dir.rglob("*.psv")):  # files with a header but no rows
        if path.stem not in done:
            (out_dir / path.name).write_text(HEADER + "\n")
            done.add(path.stem)
    return len(done)
