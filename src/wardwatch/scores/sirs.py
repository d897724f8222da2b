"""SIRS: systemic inflammatory response syndrome criteria (ACCP/SCCM 1992), one point each.

- temperature > 38 °C or < 36 °C
- heart rate > 90 /min
- respiratory rate > 20 /min or PaCO2 < 32 mmHg
- white cell count > 12 or < 4 ×10³/µL

Cannot use: immature (band) neutrophils > 10 %, the alternative fourth criterion — not in the
data. Conventional alert: 2 or more criteria.

`components` gives each criterion as 1 / 0, NaN while its variables are unknown (respiration is
known when either the rate or PaCO2 is: one known alternative that is not met is a 0); `points`
adds them as at the bedside (unknown adds 0) and the features' `SIRS_partial` /
`SIRS_components` are the same components (the two definitions agreed when they were merged,
PaCO2 alternative included).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from wardwatch.scores.rules import FloatArray, LastKnown, bedside, criterion, either, values

USES = ("Temp", "HR", "Resp", "PaCO2", "WBC")
CANNOT_USE = "band neutrophils > 10 % (not recorded; the white-cell criterion uses WBC only)"
THRESHOLD = 2
MAX_POINTS = 4
CRITERIA = ("temperature", "heart rate", "respiration", "white cells")


def components(last: LastKnown) -> list[FloatArray]:
    """Per criterion (`CRITERIA`), 1 if met, 0 if not, NaN while its variables are unknown."""
    temp, heart = values(last, "Temp"), values(last, "HR")
    resp, paco2, wbc = values(last, "Resp"), values(last, "PaCO2"), values(last, "WBC")
    return [
        criterion((temp > 38) | (temp < 36), temp),
        criterion(heart > 90, heart),
        either(criterion(resp > 20, resp), criterion(paco2 < 32, paco2)),
        criterion((wbc > 12) | (wbc < 4), wbc),
    ]


def points(last: LastKnown) -> npt.NDArray[np.int64]:
    """SIRS criteria met per row, an unknown criterion adding 0."""
    return bedside(components(last))
