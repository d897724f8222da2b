"""NEWS2, National Early Warning Score 2 (Royal College of Physicians, 2017).

| parameter        | 3      | 2       | 1         | 0         | 1         | 2         | 3     |
|------------------|--------|---------|-----------|-----------|-----------|-----------|-------|
| respiration /min | ≤ 8    |         | 9–11      | 12–20     |           | 21–24     | ≥ 25  |
| SpO2 scale 1 %   | ≤ 91   | 92–93   | 94–95     | ≥ 96      |           |           |       |
| air or oxygen    |        | oxygen  |           | air       |           |           |       |
| systolic BP      | ≤ 90   | 91–100  | 101–110   | 111–219   |           |           | ≥ 220 |
| pulse /min       | ≤ 40   |         | 41–50     | 51–90     | 91–110    | 111–130   | ≥ 131 |
| consciousness    |        |         |           | alert     |           |           | CVPU  |
| temperature °C   | ≤ 35.0 |         | 35.1–36.0 | 36.1–38.0 | 38.1–39.0 | ≥ 39.1    |       |

The published bands are on whole numbers (0.1 °C for temperature); raw values between them are
banded as half-open intervals closed on the right (pulse 41–50 means 40 < pulse ≤ 50, so 130.5
scores 3 and 35.05 °C scores 1).

Proxies and gaps: "oxygen" is the last known FiO2 above 0.21, "air" one of 0.21; an FiO2
outside 0.21–1.0 is no FiO2 and leaves the parameter unknown (FiO2 is charted mostly with
blood gases, so a patient weaned to air may keep the 2 points until the next FiO2). SpO2 scale 2
(target 88–92 % in hypercapnic failure) cannot be chosen without the diagnosis: scale 1 always.
Consciousness (ACVPU, 3 points) is not recorded, so the maximum here is 17, not 20; the "3 in a
single parameter" trigger is not applied. Conventional alert: aggregate score ≥ 5.

`components` gives each parameter's points, NaN while its variable is unknown; `points` adds
them as at the bedside (unknown adds 0) and the features' `NEWS2_partial` / `NEWS2_components`
are the same components. When the two definitions were merged, the features took this
module's oxygen rule: only a plausible FiO2 (0.21–1.0, `rules.FIO2_PLAUSIBLE`) tells air from
oxygen; the features had given 2 points for any FiO2 above 0.21 (an FiO2 of 40 too) and 0 for
one below it (oxygen flows charted as FiO2 0.02–0.10), now both unknown. The bands agreed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from wardwatch.scores.rules import (
    FloatArray,
    LastKnown,
    banded,
    bedside,
    criterion,
    plausible_fio2,
    values,
)

USES = ("Resp", "O2Sat", "FiO2", "SBP", "HR", "Temp")
CANNOT_USE = (
    "consciousness / new confusion (3 points; not recorded): at most 17 of 20 points; "
    "SpO2 scale 2 (needs a hypercapnia diagnosis): scale 1 always; "
    "oxygen is inferred from last known FiO2 > 0.21"
)
THRESHOLD = 5
MAX_POINTS = 17
ROOM_AIR_FIO2 = 0.21
PARAMETERS = ("respiration", "SpO2", "air or oxygen", "systolic BP", "pulse", "temperature")


def components(last: LastKnown) -> list[FloatArray]:
    """Points per parameter (`PARAMETERS`), NaN while its variable is unknown."""
    fio2 = plausible_fio2(values(last, "FiO2"))
    return [
        banded(values(last, "Resp"), [8, 11, 20, 24], [3, 1, 0, 2, 3]),
        banded(values(last, "O2Sat"), [91, 93, 95], [3, 2, 1, 0]),
        2.0 * criterion(fio2 > ROOM_AIR_FIO2, fio2),
        banded(values(last, "SBP"), [90, 100, 110, 219], [3, 2, 1, 0, 3]),
        banded(values(last, "HR"), [40, 50, 90, 110, 130], [3, 1, 0, 1, 2, 3]),
        banded(values(last, "Temp"), [35.0, 36.0, 38.0, 39.0], [3, 1, 0, 1, 2]),
    ]


def points(last: LastKnown) -> npt.NDArray[np.int64]:
    """NEWS2 aggregate per row, an unknown parameter adding 0."""
    return bedside(components(last))
