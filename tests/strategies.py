"""Hypothesis strategies and small frame builders shared by the tests.

Cohorts here are made up for the tests, hour by hour, never read from the PhysioNet files.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from wardwatch.ingest.psv import COLUMNS, LABEL

# A few distinct levels make ties (as point scores have) as well as distinct values likely.
RISK_LEVELS = (0.0, 0.1, 0.25, 0.5, 0.5000001, 0.75, 1.0)


@dataclass(frozen=True)
class Cohort:
    """Hourly rows of several stays: ids, labels, a risk and a binary alert per row."""

    patient_ids: np.ndarray
    labels: np.ndarray
    risk: np.ndarray
    alerts: np.ndarray

    def stays(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per stay, its (labels, risk, alerts), in order."""
        _, first = np.unique(self.patient_ids, return_index=True)
        bounds = [*sorted(first), len(self.patient_ids)]
        return [
            (self.labels[a:b], self.risk[a:b], self.alerts[a:b])
            for a, b in itertools.pairwise(bounds)
        ]


@st.composite
def stay_labels(draw: st.DrawFn, max_hours: int = 40) -> list[int]:
    """SepsisLabel of one stay: all 0, or 0 until some hour and 1 from then to the end."""
    hours = draw(st.integers(1, max_hours))
    first = draw(st.one_of(st.none(), st.integers(0, hours - 1)))
    return [0] * hours if first is None else [0] * first + [1] * (hours - first)


@st.composite
def cohorts(draw: st.DrawFn, max_stays: int = 8, max_hours: int = 40) -> Cohort:
    stays = draw(st.lists(stay_labels(max_hours), min_size=1, max_size=max_stays))
    labels = np.concatenate([np.asarray(s, dtype=np.int64) for s in stays])
    n = len(labels)
    risk = draw(st.lists(st.sampled_from(RISK_LEVELS), min_size=n, max_size=n))
    alerts = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    ids = np.concatenate([[f"p{i:03d}"] * len(s) for i, s in enumerate(stays)]).astype(object)
    return Cohort(ids, labels, np.asarray(risk), np.asarray(alerts, dtype=bool))


def wide_frame(
    stays: Mapping[str, Sequence[Mapping[str, float]]],
    demographics: Mapping[str, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """A wide hourly frame like `read_cohort` gives: one row per given hour, NaN elsewhere.

    `stays` maps a patient id to its hours, each a dict of the values measured that hour
    (SepsisLabel defaults to 0); `demographics` gives Age, Gender, Unit1, Unit2 per patient.
    """
    rows = []
    for pid, hours in stays.items():
        extra = (demographics or {}).get(pid, {})
        for i, values in enumerate(hours, start=1):
            row = dict.fromkeys(COLUMNS, np.nan) | {"ICULOS": float(i), LABEL: 0.0}
            rows.append({"patient_id": pid, "hour": i, **row, **extra, **values})
    frame = pd.DataFrame(rows)
    frame[LABEL] = frame[LABEL].astype("float64")
    return frame
