"""The vocabulary the score modules are written in: bands, criteria, and the two ways to add.

Each score module defines its criteria once, as *components*: one float array per component
(SOFA's five organs, NEWS2's six parameters, …) with the points where the component's inputs
are known and NaN where they are not. Two readings are built from the same components:

- `bedside`: the baseline's points. A component whose inputs are unknown adds 0, as a bedside
  score counts only what is known; the score can only be as high as the data allow, and it is
  never "normal" by imputation (an unknown stays unknown in the components).
- `partial`: the model's features. The sum over the known components and, beside it, how many
  components were known (the sum is NaN when none is), so the model can tell "0 points" from
  "nothing measured" (design rule 1).

The functions take the *last known* values as a mapping from variable name to a 1-D array:
the features pass a dict of numpy arrays, the baselines a frame from `last_known` (whose
columns read as arrays); `values` reads either without copying float64 data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray: TypeAlias = npt.NDArray[np.float64]
LastKnown: TypeAlias = Mapping[str, npt.ArrayLike] | pd.DataFrame
"""Last known value per variable (NaN if not yet measured), one entry per row."""

# The fraction of inspired oxygen a person can breathe: room air to pure oxygen. Outside it a
# charted "FiO2" is not an FiO2 (PhysioNet set A has oxygen flows of 2-10 L/min charted as
# 0.02-0.10), so it is unknown, never read as room air or as oxygen.
FIO2_PLAUSIBLE = (0.21, 1.0)


def values(last: LastKnown, column: str) -> FloatArray:
    """The last known values of `column` as a float64 array (no copy if they already are)."""
    return np.asarray(last[column], dtype=np.float64)


def plausible_fio2(fio2: FloatArray) -> FloatArray:
    """FiO2 where it lies in `FIO2_PLAUSIBLE` (inclusive), NaN elsewhere."""
    low, high = FIO2_PLAUSIBLE
    return np.where((fio2 >= low) & (fio2 <= high), fio2, np.nan)


def banded(
    value: FloatArray,
    edges: Sequence[float],
    points: Sequence[float],
    closed: Literal["right", "left"] = "right",
) -> FloatArray:
    """Points of the band each value falls in; NaN where the value is NaN.

    ``closed="right"``: bands (-inf, e0], (e0, e1], ..., (e_last, inf) — for rules written as
    "≤ 8, 9–11, 12–20 …" on whole numbers, read as 8 < x ≤ 11 etc. ``closed="left"``: bands
    (-inf, e0), [e0, e1), ..., [e_last, inf) — for rules written as "< 400, < 300 …".
    """
    if len(points) != len(edges) + 1:
        raise ValueError("one more band than edges is needed")
    side: Literal["left", "right"] = "left" if closed == "right" else "right"
    band = np.searchsorted(np.asarray(edges, dtype=np.float64), value, side=side)
    return np.where(np.isnan(value), np.nan, np.asarray(points, dtype=np.float64)[band])


def criterion(met: npt.NDArray[np.bool_], value: FloatArray, *more: FloatArray) -> FloatArray:
    """1 where the criterion is `met`, 0 where not, NaN where any of its inputs is unknown.

    `met` is a comparison of the inputs (`value`, `more`); a comparison with NaN is False, so
    the inputs are passed too, to tell "not met" from "not known".
    """
    unknown = np.isnan(value)
    for other in more:
        unknown |= np.isnan(other)
    return np.where(unknown, np.nan, met.astype(np.float64))


def either(first: FloatArray, second: FloatArray) -> FloatArray:
    """A criterion with two alternatives: 1 if either holds, 0 if the known ones do not, NaN
    only if both are unknown (one known alternative that is not met is a known 0)."""
    return np.fmax(first, second)  # fmax ignores a NaN unless both are NaN


def bedside(components: Sequence[FloatArray]) -> npt.NDArray[np.int64]:
    """The points of a score: its components added, an unknown component adding 0."""
    total = np.zeros(len(components[0]))
    for component in components:
        total += np.where(np.isnan(component), 0.0, component)
    return total.astype(np.int64)


def partial(components: Sequence[FloatArray]) -> tuple[FloatArray, FloatArray]:
    """(sum of the known components, how many are known); the sum is NaN if none is."""
    total = np.zeros(len(components[0]))
    known = np.zeros(len(components[0]))
    for component in components:
        present = ~np.isnan(component)
        total += np.where(present, component, 0.0)
        known += present
    return np.where(known > 0, total, np.nan), known
