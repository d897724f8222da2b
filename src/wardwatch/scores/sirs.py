"""SIRS: systemic inflammatory response syndrome criteria (ACCP/SCCM 1992), one point each.

- temperature > 38 °C or < 36 °C
- heart rate > 90 /min
- respiratory rate > 20 /min or PaCO2 < 32 mmHg
- white cell count > 12 or < 4 ×10³/µL

Cannot use: immature (band) neutrophils > 10 %, the alternative fourth criterion — not in the
data. Conventional alert: 2 or more criteria.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.scores.rules import criteria, values

USES = ("Temp", "HR", "Resp", "PaCO2", "WBC")
CANNOT_USE = "band neutrophils > 10 % (not recorded; the white-cell criterion uses WBC only)"
THRESHOLD = 2
MAX_POINTS = 4


def points(last: pd.DataFrame) -> npt.NDArray[np.int64]:
    temp, wbc = values(last, "Temp"), values(last, "WBC")
    return criteria(
        (temp > 38) | (temp < 36),
        values(last, "HR") > 90,
        (values(last, "Resp") > 20) | (values(last, "PaCO2") < 32),
        (wbc > 12) | (wbc < 4),
    )
