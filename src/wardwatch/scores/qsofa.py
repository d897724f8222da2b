"""qSOFA, quick SOFA (Sepsis-3, Seymour et al. JAMA 2016), one point each.

- respiratory rate ≥ 22 /min
- systolic blood pressure ≤ 100 mmHg
- altered mentation (GCS < 15) — NOT available: the data hold no GCS or mental status.

So here qSOFA is at most 2 and the conventional alert (≥ 2) needs both available criteria:
stricter than bedside qSOFA, which also reaches 2 with mentation and either one of them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.scores.rules import criteria, values

USES = ("Resp", "SBP")
CANNOT_USE = "altered mentation / GCS < 15 (not recorded): at most 2 of 3 points"
THRESHOLD = 2
MAX_POINTS = 2


def points(last: pd.DataFrame) -> npt.NDArray[np.int64]:
    return criteria(values(last, "Resp") >= 22, values(last, "SBP") <= 100)
