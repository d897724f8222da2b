"""SOFA, Sequential Organ Failure Assessment (Vincent et al. 1996), as far as the data allow.

| organ          | variable used                 | 1       | 2       | 3       | 4     |
|----------------|-------------------------------|---------|---------|---------|-------|
| respiration    | SpO2/FiO2 (surrogate of P/F)  | < 400   | < 316   | < 232   | < 148 |
| coagulation    | platelets ×10³/µL             | < 150   | < 100   | < 50    | < 20  |
| liver          | bilirubin (total) mg/dL       | 1.2–1.9 | 2.0–5.9 | 6.0–11.9| ≥ 12  |
| cardiovascular | MAP mmHg (charted, else est.) | < 70    | —       | —       | —     |
| renal          | creatinine mg/dL              | 1.2–1.9 | 2.0–3.4 | 3.5–4.9 | ≥ 5.0 |
| nervous system | —                             |         |         |         |       |

Gaps, said plainly: the data hold no PaO2, so respiration uses SpO2/FiO2 with the P/F cut-offs
400/300/200/100 mapped through Rice et al. (Chest 2007), S/F = 64 + 0.84 × P/F, and without the
"with respiratory support" condition for 3–4 points (ventilation is not recorded); S/F needs a
known SpO2 and a plausible FiO2 (0.21–1.0) and flattens above SpO2 97 %. No vasopressor doses,
so cardiovascular is at most 1 (MAP < 70); MAP is the last charted one, else estimated from the
last known pressures as (SBP + 2 DBP) / 3. No GCS: nervous system 0. No urine output: renal is
creatinine only. Maximum here 17 of 24. Bands of a continuous value close on the left (a
creatinine of 1.95 scores 1, of 2.0 scores 2).

Which SOFA alerts: Sepsis-3 defines organ dysfunction as an acute rise of ≥ 2 points and says
the baseline "should be assumed to be zero" in patients without known pre-existing dysfunction.
Pre-admission values are not in the data, so `points` is the total SOFA (baseline zero) and the
conventional alert is SOFA ≥ 2. `rise_points` is the alternative, a causal acute change: the
total now minus the lowest total over the preceding 24 h of the stay (current hour included);
it under-calls patients who arrive already in organ failure. Caution for both: the challenge's
sepsis labels were themselves derived from a SOFA rise, so SOFA is partly circular here.

Each organ is a component (`components`, in the order of `ORGANS`): its points, NaN where its
inputs are unknown. `points` adds them as at the bedside (unknown adds 0); the model's features
(`SOFA_resp` … `SOFA_renal`, `SOFA_partial`, `SOFA_components`) are the same components, so
the baseline and the features cannot drift apart. When they were merged (they used to be two
definitions), the features took this module's rules: respiration by Rice 2007's S/F cut-offs
with a plausible FiO2 (the features had used Pandharipande 2009's 512/357/214/89 and any FiO2),
and bilirubin and creatinine bands closed on the left as the published "1.2–1.9, 2.0–5.9 …"
read (the features had closed them on the right at 1.19, 1.99 …, so 1.995 mg/dL scored 2, not
1). The baseline took the features' cardiovascular rule: MAP estimated from SBP and DBP when
no MAP was charted (before, an uncharted MAP added 0 even with both pressures known).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.scores.rules import (
    FloatArray,
    LastKnown,
    banded,
    bedside,
    criterion,
    plausible_fio2,
    values,
)

USES = ("O2Sat", "FiO2", "Platelets", "Bilirubin_total", "MAP", "SBP", "DBP", "Creatinine")
CANNOT_USE = (
    "GCS (nervous system), vasopressors (cardiovascular > 1), urine output, PaO2 "
    "(respiration from SpO2/FiO2 instead), ventilation status: at most 17 of 24 points"
)
THRESHOLD = 2
MAX_POINTS = 17
RISE_WINDOW_HOURS = 24
ORGANS = ("respiration", "coagulation", "liver", "cardiovascular", "renal")
# P/F 400, 300, 200, 100 through S/F = 64 + 0.84 P/F (Rice et al. 2007).
SF_EDGES = (148, 232, 316, 400)


def mean_arterial_pressure(last: LastKnown) -> FloatArray:
    """The last charted MAP, else (SBP + 2 DBP) / 3 from the last known pressures."""
    charted = values(last, "MAP")
    estimated = (values(last, "SBP") + 2.0 * values(last, "DBP")) / 3.0
    return np.where(np.isnan(charted), estimated, charted)


def spo2_fio2(last: LastKnown) -> FloatArray:
    """SpO2 / FiO2, NaN unless both are known and the FiO2 is plausible (0.21–1.0)."""
    return values(last, "O2Sat") / plausible_fio2(values(last, "FiO2"))


def components(last: LastKnown) -> list[FloatArray]:
    """Points per organ, in the order of `ORGANS`; NaN where the organ's inputs are unknown."""
    arterial = mean_arterial_pressure(last)
    return [
        banded(spo2_fio2(last), SF_EDGES, [4, 3, 2, 1, 0], closed="left"),
        banded(values(last, "Platelets"), [20, 50, 100, 150], [4, 3, 2, 1, 0], closed="left"),
        banded(values(last, "Bilirubin_total"), [1.2, 2, 6, 12], [0, 1, 2, 3, 4], closed="left"),
        criterion(arterial < 70, arterial),
        banded(values(last, "Creatinine"), [1.2, 2, 3.5, 5], [0, 1, 2, 3, 4], closed="left"),
    ]


def points(last: LastKnown) -> npt.NDArray[np.int64]:
    """Total SOFA per row, an organ with unknown inputs adding 0."""
    return bedside(components(last))


def rise_points(last: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Total SOFA minus its minimum over the last 24 rows (hours) of the same stay."""
    total = pd.Series(points(last), index=last.index)
    grouped = total.groupby(last["patient_id"].to_numpy(), sort=False)
    lowest = grouped.rolling(RISE_WINDOW_HOURS, min_periods=1).min().droplevel(0)
    return (total - lowest.reindex(total.index)).to_numpy(dtype=np.int64)
