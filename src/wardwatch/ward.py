"""The ward as clinicians see it: who is here, how sick, and what is waiting for them.

`worklist` is the one read model behind every view of a unit — the web worklist, the JSON
API, the terminal table of the demo — so a risk, a band or an alert state can never read
differently on two screens. It reads what the services stored (scores, alerts, the latest
vital signs), never recomputes a score: the page shows exactly what the system decided.

Rule 1 (missing is not normal) shapes it: a vital sign never measured shows as missing, an old
one shows its age, and a stay whose score is older than the last data says so. Patients who
opted out of AI scoring are listed (the nurse still needs the bed) with "not scored: opted
out" instead of a risk. Visits that are not a bedded stay, and stays longer than the model
knows (`scoring.MAX_STAY_DAYS`), are not on the AI worklist at all.

Bands are relative to the unit's alert threshold, because an absolute colour scale means
nothing across units with different thresholds: **high** at or above it, **raised** from half
of it, **low** below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine, Select, select

from wardwatch.alerts.policy import PolicyBook
from wardwatch.alerts.records import AlertRecord, latest_alerts
from wardwatch.clock import ward_now
from wardwatch.scoring import MAX_STAY_DAYS, NOT_BEDDED
from wardwatch.store.schema import encounters, observations, patients, scores
from wardwatch.terminology import wording

VITALS = ("HR", "SBP", "MAP", "Temp", "Resp", "O2Sat")
SHORT_NAMES = {"HR": "HR", "SBP": "SBP", "MAP": "MAP", "Temp": "Temp", "Resp": "RR",
               "O2Sat": "SpO2"}  # fmt: skip
TREND_HOURS = 6
TREND_STEP = 0.2  # a relative change of risk below 20 % over 6 h is "steady"
RECENT = timedelta(hours=24)  # older scores and vitals are not "current"


@dataclass(frozen=True, slots=True)
class Reading:
    """The latest value of one vital sign, with its age (never an imputed normal)."""

    variable: str
    name: str
    value: float | None
    text: str  # "112/min", or "—" when not measured in the last 24 h
    at: datetime | None
    hours_ago: float | None


@dataclass(frozen=True, slots=True)
class Bed:
    """One stay on the unit, as the worklist shows it."""

    encounter_id: str
    patient_id: str
    unit: str | None
    admitted_at: datetime
    hours_on_unit: float
    opted_out: bool
    risk: float | None
    uncertainty: float | None
    ood: bool
    threshold: float | None
    band: str  # high | raised | low | none
    trend: str | None  # up | down | steady; None without a score 6 h before
    scored_at: datetime | None  # data time of the score shown
    model_version: str | None
    last_data_at: datetime | None
    vitals: tuple[Reading, ...]
    sepsis: AlertRecord | None
    review: AlertRecord | None
    escalation: AlertRecord | None

    @property
    def alert_state(self) -> str:
        """What the worklist's alert column says, most pressing first."""
        for record, name in ((self.sepsis, "sepsis alert"), (self.escalation, "nurse concern"),
                             (self.review, "needs human review")):  # fmt: skip
            if record is not None and record.active:
                if record.state.value == "paused" and record.paused_until is not None:
                    return f"{name} paused until {record.paused_until:%H:%M}"
                return f"{name} {record.state.value}"
        if self.sepsis is not None:
            return f"sepsis alert {self.sepsis.state.value}"
        return ""


def band(risk: float | None, threshold: float | None) -> str:
    if risk is None or threshold is None:
        return "none"
    if risk >= threshold:
        return "high"
    return "raised" if risk >= threshold / 2 else "low"


def trend(now: float | None, before: float | None) -> str | None:
    if now is None or before is None:
        return None
    if now > before * (1 + TREND_STEP) and now - before > 0.001:
        return "up"
    if now < before * (1 - TREND_STEP) and before - now > 0.001:
        return "down"
    return "steady"


def worklist(
    conn: Connection,
    *,
    at: datetime | None = None,
    unit: str | None = None,
    book: PolicyBook | None = None,
) -> list[Bed]:
    """Every stay on the ward at `at` (default: the ward clock), highest risk first."""
    at = at or ward_now(conn)
    return _beds(conn, _present(conn, at, unit), at, book)


def beds(
    conn: Connection,
    encounter_ids: Sequence[str],
    *,
    at: datetime | None = None,
    book: PolicyBook | None = None,
) -> list[Bed]:
    """The named stays as the worklist would show them, on the ward or not (a chart can be
    opened after discharge)."""
    at = at or ward_now(conn)
    return _beds(conn, _stays(conn, encounter_ids), at, book)


def _beds(
    conn: Connection, stays: pd.DataFrame, at: datetime, book: PolicyBook | None
) -> list[Bed]:
    if stays.empty:
        return []
    ids = list(stays["encounter_id"])
    recent = _recent_scores(conn, ids, at)
    vitals = _latest_vitals(conn, stays, at)
    alerts = latest_alerts(conn, ids)
    beds = [_bed(stay, recent, vitals, alerts, at, book or PolicyBook())
            for stay in stays.to_dict("records")]  # fmt: skip
    return sorted(beds, key=lambda b: (b.risk is None, -(b.risk or 0.0), b.encounter_id))


def units(conn: Connection, at: datetime | None = None) -> list[str]:
    """The units with a patient on them at `at`."""
    stays = _present(conn, at or ward_now(conn), None)
    return sorted({str(u) for u in stays["unit"].dropna()})


_STAY_COLUMNS = ["encounter_id", "patient_id", "unit", "admitted_at", "opted_out"]


def _stay_query() -> Select:
    return select(
        encounters.c.encounter_id,
        encounters.c.patient_id,
        encounters.c.unit,
        encounters.c.admitted_at,
        patients.c.opted_out_scoring,
    ).join(patients, patients.c.patient_id == encounters.c.patient_id)


def _stays(conn: Connection, encounter_ids: Sequence[str]) -> pd.DataFrame:
    query = _stay_query().where(encounters.c.encounter_id.in_(list(encounter_ids)))
    query = query.where(encounters.c.admitted_at.is_not(None))
    return pd.DataFrame(conn.execute(query).all(), columns=_STAY_COLUMNS)


def _present(conn: Connection, at: datetime, unit: str | None) -> pd.DataFrame:
    query = (
        _stay_query()
        .where(encounters.c.admitted_at <= at)
        .where(encounters.c.admitted_at > at - timedelta(days=MAX_STAY_DAYS))
        .where(encounters.c.discharged_at.is_(None) | (encounters.c.discharged_at >= at))
        .where(encounters.c.unit.is_(None) | encounters.c.unit.not_in(NOT_BEDDED))
    )
    if unit is not None:
        query = query.where(encounters.c.unit == unit)
    return pd.DataFrame(conn.execute(query).all(), columns=_STAY_COLUMNS)


def _recent_scores(conn: Connection, ids: Sequence[str], at: datetime) -> pd.DataFrame:
    query = (
        select(
            scores.c.encounter_id,
            scores.c.as_of,
            scores.c.risk,
            scores.c.uncertainty,
            scores.c.ood,
            scores.c.threshold,
            scores.c.model_version,
        )
        .where(scores.c.encounter_id.in_(list(ids)), scores.c.role == "active")
        .where(scores.c.as_of <= at, scores.c.as_of > at - RECENT)
        .order_by(scores.c.id)
    )
    columns = ["encounter_id", "as_of", "risk", "uncertainty", "ood", "threshold", "version"]
    return pd.DataFrame(conn.execute(query).all(), columns=columns)


def _latest_vitals(conn: Connection, stays: pd.DataFrame, at: datetime) -> pd.DataFrame:
    query = (
        select(
            observations.c.encounter_id,
            observations.c.variable,
            observations.c.value,
            observations.c.effective_at,
        )
        .where(observations.c.patient_id.in_(list(stays["patient_id"].unique())))
        .where(observations.c.encounter_id.in_(list(stays["encounter_id"])))
        .where(observations.c.effective_at <= at, observations.c.effective_at > at - RECENT)
    )
    columns = ["encounter_id", "variable", "value", "effective_at"]
    frame = pd.DataFrame(conn.execute(query).all(), columns=columns)
    frame = frame.sort_values("effective_at", kind="stable")
    return frame.groupby(["encounter_id", "variable"]).last()


def _bed(
    stay: dict,
    recent: pd.DataFrame,
    vitals: pd.DataFrame,
    alerts: dict[tuple[str, str], AlertRecord],
    at: datetime,
    book: PolicyBook,
) -> Bed:
    eid = stay["encounter_id"]
    mine = recent.loc[recent["encounter_id"] == eid] if not stay["opted_out"] else recent[:0]
    last = mine.iloc[-1] if len(mine) else None
    risk = None if last is None else float(last["risk"])
    threshold = _threshold(book, stay["unit"], last)
    readings = tuple(_reading(vitals, eid, v, at) for v in VITALS)
    return Bed(
        encounter_id=eid, patient_id=stay["patient_id"], unit=stay["unit"],
        admitted_at=stay["admitted_at"],
        hours_on_unit=(at - stay["admitted_at"]).total_seconds() / 3600,
        opted_out=bool(stay["opted_out"]), risk=risk,
        uncertainty=None if last is None else float(last["uncertainty"]),
        ood=bool(last is not None and last["ood"]), threshold=threshold,
        band=band(risk, threshold), trend=trend(risk, _risk_before(mine)),
        scored_at=None if last is None else last["as_of"],
        model_version=None if last is None else str(last["version"]),
        last_data_at=max((r.at for r in readings if r.at is not None), default=None),
        vitals=readings, sepsis=alerts.get((eid, "sepsis")),
        review=alerts.get((eid, "review")), escalation=alerts.get((eid, "escalation")),
    )  # fmt: skip


def _threshold(book: PolicyBook, unit: str | None, last: pd.Series | None) -> float | None:
    configured = book.for_unit(unit).threshold
    if configured is not None:
        return configured
    return None if last is None else float(last["threshold"])


def _risk_before(mine: pd.DataFrame) -> float | None:
    if mine.empty:
        return None
    cutoff = mine["as_of"].iloc[-1] - timedelta(hours=TREND_HOURS)
    earlier = mine.loc[mine["as_of"] <= cutoff]
    return None if earlier.empty else float(earlier["risk"].iloc[-1])


def _reading(vitals: pd.DataFrame, eid: str, variable: str, at: datetime) -> Reading:
    name = SHORT_NAMES[variable]
    if (eid, variable) not in vitals.index:
        return Reading(variable, name, None, "—", None, None)
    row = vitals.loc[(eid, variable)]
    when = pd.Timestamp(row["effective_at"]).to_pydatetime()
    value = float(row["value"])
    hours = (at - when).total_seconds() / 3600
    return Reading(variable, name, value, wording.value_of(variable, value), when, hours)


# ---------------------------------------------------------------- the terminal view


def _risk_cell(bed: Bed) -> str:
    if bed.opted_out:
        return "[dim]opted out[/]"
    if bed.risk is None:
        return "[dim]not scored[/]"
    style = {"high": "bold white on red", "raised": "black on yellow", "low": "green"}[bed.band]
    arrow = {"up": "↑", "down": "↓", "steady": "→", None: " "}[bed.trend]
    return f"[{style}] {wording.percent(bed.risk)} [/]{arrow}"


def _vital_cell(reading: Reading) -> str:
    if reading.value is None:
        return "[dim]—[/]"
    age = reading.hours_ago or 0.0
    return reading.text if age < 1 else f"{reading.text} [dim]{age:.0f}h[/]"


def show_ward(engine: Engine, console: Console, rows: int = 15) -> None:
    """The worklist as a terminal table (the demo's view without a browser)."""
    with engine.connect() as conn:
        beds = worklist(conn)
        at = ward_now(conn)
    if not beds:
        console.print("no patients on the ward at this time")
        return
    table = Table(title=f"Worklist at {at:%d %b %H:%M}: {len(beds)} patients, highest risk first")
    for heading in ("patient", "unit", "risk", *(SHORT_NAMES[v] for v in VITALS), "alert"):
        table.add_column(heading)
    for bed in beds[:rows]:
        table.add_row(bed.patient_id, bed.unit or "", _risk_cell(bed),
                      *(_vital_cell(r) for r in bed.vitals), bed.alert_state)  # fmt: skip
    console.print(table)
    console.print(
        "Risk is a calibrated probability of sepsis within hours; the band is relative to the "
        "unit's alert threshold. The model informs; the clinician decides."
    )
