"""Small helpers shared by the point rules: bands of a value and criteria counts.

Every helper gives 0 points for a missing value (NaN): a bedside score counts only what is
known, so an unmeasured variable adds nothing. That is the clinical convention, and it means a
score here can only be as high as the data allow; it is never "normal" by imputation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd


def values(last: pd.DataFrame, column: str) -> npt.NDArray[np.float64]:
    return last[column].to_numpy(dtype=np.float64)


def banded(
    value: npt.NDArray[np.float64],
    edges: Sequence[float],
    points: Sequence[int],
    closed: Literal["right", "left"] = "right",
) -> npt.NDArray[np.int64]:
    """Points of the band each value falls in; NaN gives 0.

    ``closed="right"``: bands (-inf, e0], (e0, e1], ..., (e_last, inf) — for rules written as
    "≤ 8, 9–11, 12–20 …" on whole numbers, read as 8 < x ≤ 11 etc. ``closed="left"``: bands
    (-inf, e0), [e0, e1), ..., [e_last, inf) — for rules written as "< 400, < 300 …".
    """
    if len(points) != len(edges) + 1:
        raise ValueError("one more band than edges is needed")
    side: Literal["left", "right"] = "left" if closed == "right" else "right"
    band = np.searchsorted(np.asarray(edges, dtype=np.float64), value, side=side)
    return np.where(np.isnan(value), 0, np.asarray(points, dtype=np.int64)[band])


def criteria(*met: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """How many criteria hold (comparisons with NaN are False, so missing adds nothing)."""
    return np.sum(np.vstack(met), axis=0, dtype=np.int64)
