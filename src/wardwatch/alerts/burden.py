"""What the alert policy would have shown clinicians on a past, labelled cohort.

A threshold's alert count says little about a ward's evening: the policy gates on organ
dysfunction, stays quiet after a clinician's judgement and raises review flags instead of
confident alerts. `simulate` replays `policy.decide` — the one implementation the bedside
runs — hour by hour over every stay, with a simulated clinician; `burden` counts what came
out; `policy_variants` does both for each switch of the policy, beside the plain threshold.

The simulated clinician evaluates every alert in the hour it fires: **confirmed** when that
hour's SepsisLabel is 1, **dismissed** otherwise, and closes every review flag the same hour
(as handled). It never pauses. This is the conservative assumption for burden: a dismissal
ends the alert at once, so the re-alert rules are exercised as often as they can be (a real
clinician who leaves an alert open for hours sees fewer new ones).

Every stay is anchored at an arbitrary clock time (hour h = `ANCHOR` + h hours; the policy
only compares times). A stay's care unit is MICU (Unit1 = 1), SICU (Unit2 = 1) or ICU, mapped
to a policy by the `PolicyBook` as an encounter's unit would be. The rows must be grouped by
patient in time order (as `evaluate` requires).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.alerts.policy import Action, AlertMemory, PolicyBook, Situation, decide
from wardwatch.alerts.signs import SIGNS, organ_dysfunction
from wardwatch.evaluate.metrics import (
    HOURS_PER_DAY,
    alert_onsets,
    first_alert_position,
    lead_time_summary,
    number,
    patient_alerts,
)
from wardwatch.evaluate.utility import CHALLENGE_2019, Stays, UtilityParameters

ANCHOR = datetime(2019, 1, 1, tzinfo=UTC)
CLINICIANS = ("dismiss",)
VARIANTS = (
    ("Threshold only (risk ≥ threshold, each new episode)", None, None),
    ("Policy: organ-dysfunction gate + re-alert suppression", True, True),
    ("Gate, no re-alert suppression", True, False),
    ("Re-alert suppression, no gate", False, True),
    ("Neither gate nor suppression", False, False),
)
DEFINITIONS = {
    "alerts_per_100_patient_days": "Sepsis alerts opened per 100 days of stay. For the threshold "
    "alone, an alert is an episode (risk goes from below to at or above the threshold).",
    "review_flags_per_100_patient_days": "Needs-human-review flags (input out of distribution, "
    "vital signs stale or the model too uncertain) per 100 days of stay.",
    "sensitivity": "Share of septic patients alerted no later than 3 h after t_sepsis "
    "(t_sepsis = first SepsisLabel hour + 6, as in the utility).",
    "sensitivity_before_onset": "Share of septic patients alerted at or before t_sepsis.",
    "sensitivity_alert_or_review": "Share of septic patients who got an alert or a review flag "
    "no later than 3 h after t_sepsis: what a clinician would have been asked to look at.",
    "ppv_per_alert": "Of all alerts, the share fired on a septic patient at or before "
    "t_sepsis + 3 h (an alert on a septic patient later than that counts as not useful).",
    "median_lead_hours": "For septic patients first alerted at or before t_sepsis, the median "
    "hours from that first alert to t_sepsis.",
    "patients_alerted": "Share of all patients alerted at least once.",
    "clinician": "Simulated: every alert is evaluated the hour it fires, confirmed if that "
    "hour's SepsisLabel is 1, else dismissed; review flags are handled the same hour; nothing "
    "is paused. Dismissing at once exercises the re-alert rules as often as possible: the "
    "conservative assumption for burden.",
}


# ---------------------------------------------------------------- the replay


def simulate(
    wide: pd.DataFrame,
    predictions: pd.DataFrame,
    book: PolicyBook,
    threshold: float,
    clinician: str = "dismiss",
    *,
    signs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per row of `wide`: whether a sepsis alert fired (`fired`) or a review flag (`review`).

    `predictions` holds `risk`, `uncertainty` and `ood` per row of `wide` (same order);
    `threshold` is the model's own; `signs` is `organ_dysfunction(wide)` if already computed.
    """
    if clinician not in CLINICIANS:
        raise ValueError(f"clinician must be one of {CLINICIANS}, not {clinician!r}")
    if len(predictions) != len(wide):
        raise ValueError(f"{len(predictions)} predictions for {len(wide)} rows")
    replay = _Replay.of(wide, predictions, organ_dysfunction(wide) if signs is None else signs)
    fired, review = np.zeros(len(wide), bool), np.zeros(len(wide), bool)
    for begin, end, unit in replay.stays():
        replay.run(book.for_unit(unit), threshold, begin, end, (fired, review))
    return pd.DataFrame({"fired": fired, "review": review}, index=wide.index)


class _Replay:
    """The per-row inputs of the policy as plain Python lists (fast to index in the loop)."""

    def __init__(self, columns: dict[str, list[Any]], starts: list[int], units: list[str]):
        self.columns, self.starts, self.units = columns, starts, units

    @classmethod
    def of(cls, wide: pd.DataFrame, predictions: pd.DataFrame, signs: pd.DataFrame) -> _Replay:
        ids = wide["patient_id"].to_numpy()
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, int)
        hours = wide["hour" if "hour" in wide.columns else "ICULOS"].to_numpy(np.float64)
        vital_age = hours - signs["newest_vital_hour"].to_numpy(np.float64)  # NaN: none yet
        columns = {
            "hour": hours.tolist(),
            "risk": predictions["risk"].to_numpy(np.float64).tolist(),
            "uncertainty": predictions["uncertainty"].to_numpy(np.float64).tolist(),
            "ood": predictions["ood"].to_numpy(bool).tolist(),
            "label": (wide["SepsisLabel"].to_numpy(np.float64) == 1).tolist(),
            "vitals_age": [None if a != a else a for a in vital_age.tolist()],
            "signs": _sign_names(signs),
            "sign_hour": signs["newest_sign_hour"].to_numpy(np.float64).tolist(),
            "lab_hour": signs["newest_lab_hour"].to_numpy(np.float64).tolist(),
        }
        return cls(columns, [int(s) for s in starts], _units(wide, starts))

    def stays(self) -> Iterator[tuple[int, int, str]]:
        ends = [*self.starts[1:], len(self.columns["hour"])]
        yield from zip(self.starts, ends, self.units, strict=True)

    def run(self, policy: Any, threshold: float, begin: int, end: int, out: tuple) -> None:
        """One stay, hour by hour: decide, then let the simulated clinician answer."""
        c = self.columns
        sepsis: AlertMemory | None = None
        review: AlertMemory | None = None
        for r in range(begin, end):
            now = _at(c["hour"][r])
            situation = Situation(
                c["hour"][r], now, c["risk"][r], c["uncertainty"][r], c["ood"][r], threshold,
                c["vitals_age"][r], c["signs"][r], _at(c["sign_hour"][r]), _at(c["lab_hour"][r]),
            )  # fmt: skip
            action = decide(policy, situation, sepsis, review).action
            if action is Action.FIRE:
                out[0][r] = True
                state = "confirmed" if c["label"][r] else "dismissed"
                sepsis = AlertMemory(state, now, now, c["risk"][r])
            elif action is Action.REVIEW:
                out[1][r] = True
                review = AlertMemory("dismissed", now, now, c["risk"][r])


def _at(hour: float) -> datetime | None:
    if hour != hour:  # NaN: never measured
        return None
    return ANCHOR + timedelta(hours=hour)


def _sign_names(signs: pd.DataFrame) -> list[tuple[str, ...]]:
    """Per row, the names of the signs present (the simulation needs presence, not words)."""
    bits = signs.loc[:, list(SIGNS)].to_numpy(bool) @ (1 << np.arange(len(SIGNS)))
    table = [tuple(s for k, s in enumerate(SIGNS) if m >> k & 1) for m in range(1 << len(SIGNS))]
    return [table[m] for m in bits.tolist()]


def _units(wide: pd.DataFrame, starts: npt.NDArray[np.int64]) -> list[str]:
    """Each stay's unit code from its first row: MICU, SICU, or ICU when neither is set."""
    unit1 = wide["Unit1"].to_numpy(np.float64)[starts] if "Unit1" in wide else np.zeros(0)
    unit2 = wide["Unit2"].to_numpy(np.float64)[starts] if "Unit2" in wide else np.zeros(0)
    units = np.full(len(starts), "ICU", dtype=object)
    if len(unit2):
        units[unit2 == 1] = "SICU"
    if len(unit1):
        units[unit1 == 1] = "MICU"
    return units.tolist()


# ---------------------------------------------------------------- counting


def burden(
    wide: pd.DataFrame,
    simulated: pd.DataFrame,
    stays: Stays,
    params: UtilityParameters = CHALLENGE_2019,
) -> dict[str, Any]:
    """The alert burden and yield of one simulation (definitions in `DEFINITIONS`)."""
    fired = simulated["fired"].to_numpy(bool)
    review = simulated["review"].to_numpy(bool)
    if len(fired) != stays.n_rows or len(wide) != stays.n_rows:
        raise ValueError("simulated, wide and stays differ in rows")
    days = stays.n_rows / HOURS_PER_DAY
    patients = patient_alerts(stays, fired, params)
    lead = lead_time_summary(stays, fired)
    return {
        "alerts": int(fired.sum()),
        "alerts_per_100_patient_days": _per_100_days(int(fired.sum()), days),
        "review_flags": int(review.sum()),
        "review_flags_per_100_patient_days": _per_100_days(int(review.sum()), days),
        "sensitivity": patients["sensitivity"],
        "sensitivity_before_onset": patients["sensitivity_before_onset"],
        "sensitivity_alert_or_review": _caught(stays, fired | review, params),
        "ppv_per_alert": _ppv_per_alert(stays, fired, params),
        "median_lead_hours": lead["median_hours"],
        "patients_alerted": number(patients["alerted_patients"] / stays.n_stays)
        if stays.n_stays
        else None,
        "patient_days": days,
    }


def _per_100_days(count: int, days: float) -> float | None:
    return 100 * count / days if days else None


def _caught(stays: Stays, flag: npt.NDArray[np.bool_], params: UtilityParameters) -> float | None:
    septic = stays.septic
    first = first_alert_position(stays, flag)[septic]
    return number(np.mean(first <= stays.onset[septic] + params.dt_late)) if septic.any() else None


def _ppv_per_alert(
    stays: Stays, fired: npt.NDArray[np.bool_], params: UtilityParameters
) -> float | None:
    useful = fired & (stays.hours_from_onset() <= params.dt_late) & stays.septic[stays.codes]
    return number(useful.sum() / fired.sum()) if fired.any() else None


# ---------------------------------------------------------------- the switches


def policy_variants(
    wide: pd.DataFrame,
    predictions: pd.DataFrame,
    book: PolicyBook,
    threshold: float,
    *,
    signs: pd.DataFrame | None = None,
    params: UtilityParameters = CHALLENGE_2019,
) -> dict[str, Any]:
    """Burden of the threshold alone and of the policy with each switch on and off."""
    stays = Stays.from_labels(wide["patient_id"].to_numpy(), wide["SepsisLabel"].to_numpy(), params)
    signs = organ_dysfunction(wide) if signs is None else signs
    rows = []
    for name, gate, suppress in VARIANTS:
        if gate is None:
            simulated = _threshold_only(wide, predictions, book, threshold, stays)
        else:
            changed = book.with_all(require_organ_dysfunction=gate, suppress_realert=suppress)
            simulated = simulate(wide, predictions, changed, threshold, signs=signs)
        flags = {"organ_dysfunction_gate": gate, "realert_suppression": suppress}
        rows.append({"name": name, **flags, **burden(wide, simulated, stays, params)})
    return {
        "threshold": threshold,
        "policies": {kind: asdict(p) for kind, p in book.policies.items()},
        "variants": rows,
        "definitions": DEFINITIONS,
    }


def _threshold_only(
    wide: pd.DataFrame, predictions: pd.DataFrame, book: PolicyBook, threshold: float, stays: Stays
) -> pd.DataFrame:
    """Episodes of risk at or above each stay's unit threshold; no review flags."""
    units = _units(wide, stays.starts)
    limits = [book.for_unit(u).threshold for u in units]
    per_stay = np.asarray([threshold if t is None else t for t in limits], dtype=np.float64)
    above = predictions["risk"].to_numpy(np.float64) >= per_stay[stays.codes]
    fired = alert_onsets(stays, above)
    return pd.DataFrame({"fired": fired, "review": np.zeros_like(fired)}, index=wide.index)
