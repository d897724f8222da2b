"""qSOFA, quick SOFA (Sepsis-3, Seymour et al. JAMA 2016), one point each.

- respiratory rate ≥ 22 /min
- systolic blood pressure ≤ 100 mmHg
- altered mentation (GCS < 15) — NOT available: the data hold no GCS or mental status.

So here qSOFA is at most 2 and the conventional alert (≥ 2) needs both available criteria:
stricter than bedside qSOFA, which also reaches 2 with mentation and either one of them.

`components` gives each criterion as 1 / 0, NaN while its variable is unknown; `points` adds
them as at the bedside (unknown adds 0) and the features' `qSOFA_partial` / `qSOFA_components`
are the same components (the two definitions agreed when they were merged).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from wardwatch.scores.rules import FloatArray, LastKnown, bedside, criterion, values

USES = ("Resp", "SBP")
CANNOT_USE = "altered mentation / GCS < 15 (not recorded): at most 2 of 3 points"
THRESHOLD = 2
MAX_POINTS = 2
CRITERIA = ("respiratory rate", "systolic blood pressure")


def components(last: LastKnown) -> list[FloatArray]:
    """Per criterion (`CRITERIA`), 1 if met, 0 if not, NaN while its variable is unknown."""
    resp, sbp = values(last, "Resp"), values(last, "SBP")
    return [criterion(resp >= 22, resp), criterion(sbp <= 100, sbp)]


def points(last: LastKnown) -> npt.NDArray[np.int64]:
    """qSOFA per row, an unknown criterion adding 0."""
    return bedside(components(last))
