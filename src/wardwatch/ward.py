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

from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine, Row, Select, func, select

from wardwatch.alerts.policy import PolicyBook
from wardwatch.alerts.records import AlertRecord, deployment_silent, latest_alerts
from wardwatch.clock import ward_now, ward_time
from wardwatch.lru import LRU
from wardwatch.scoring import MAX_STAY_DAYS, NOT_BEDDED
from wardwatch.store.schema import (
    alert_events,
    deployment_mode,
    encounters,
    observations,
    patients,
    scores,
)
from wardwatch.terminology import wording

VITALS = ("HR", "SBP", "MAP", "Temp", "Resp", "O2Sat")
_DEFAULT_BOOK = PolicyBook()
_KEPT: LRU[tuple, list[Bed]] = LRU(64)
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


# The worklist's names of the alert kinds, most pressing first.
ALERT_NAMES = {"sepsis": "sepsis alert", "escalation": "nurse concern",
               "review": "needs human review"}  # fmt: skip


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
    at: datetime  # the moment the row describes (the ward clock when the worklist was built)

    @property
    def alert_state(self) -> str:
        """What the worklist's alert column says, most pressing first."""
        for kind in ALERT_NAMES:
            record = getattr(self, kind)
            if record is not None and record.active:
                return self.alert_text(kind, record)
        if self.sepsis is not None:
            return self.alert_text("sepsis", self.sepsis)
        return ""

    def alert_text(self, kind: str, record: AlertRecord) -> str:
        """ "sepsis alert open", "nurse concern paused until 19 Nov 02:30": one alert, in words."""
        name = ALERT_NAMES[kind]
        if record.state.value == "paused" and record.paused_until is not None:
            return f"{name} paused until {ward_time(record.paused_until, self.at)}"
        return f"{name} {record.state.value}"


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
    """Every stay on the ward at `at` (default: the ward clock), highest risk first.

    A whole unit refreshing its screens every few seconds asks the same question many times
    a minute; the answer is kept until anything it depends on changes (a score, an alert
    event, an observation, an opt-out) or the minute turns, so ages are at most a minute old.
    """
    at = at or ward_now(conn)
    book = book or _DEFAULT_BOOK
    key = worklist_key(conn, at=at, unit=unit, book=book)
    found = _KEPT.get(key)
    if found is None:
        found = _beds(conn, _present(conn, at, unit), at, book)
        _KEPT.put(key, found)
    return list(found)


def worklist_key(
    conn: Connection, *, at: datetime, unit: str | None, book: PolicyBook | None
) -> tuple:
    """Equal keys, equal worklists: what a view of the worklist may be kept under."""
    book = book or _DEFAULT_BOOK
    minute = at.replace(second=0, microsecond=0)
    return (str(conn.engine.url), unit, id(book), minute, _fingerprint(conn))


def clear_worklist_cache() -> None:
    """Forget every kept worklist (for a store changed behind the fingerprint's back: only
    tests do that, production observations are append-only)."""
    _KEPT.clear()


def _fingerprint(conn: Connection) -> tuple:
    """What the worklist depends on, in one cheap query (max ids ride on primary keys)."""
    opted_out = patients.c.opted_out_scoring
    query = select(
        select(func.max(scores.c.id)).scalar_subquery(),
        select(func.max(alert_events.c.id)).scalar_subquery(),
        select(func.max(observations.c.id)).scalar_subquery(),
        select(func.count()).where(opted_out).scalar_subquery(),
        select(func.min(patients.c.patient_id)).where(opted_out).scalar_subquery(),
        select(func.max(patients.c.patient_id)).where(opted_out).scalar_subquery(),
        select(func.max(encounters.c.created_at)).scalar_subquery(),
        select(deployment_mode.c.since).scalar_subquery(),  # silent mode on or off
    )
    return tuple(conn.execute(query).one())


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


def _beds(conn: Connection, stays: list[Row], at: datetime, book: PolicyBook | None) -> list[Bed]:
    if not stays:
        return []
    ids = [stay.encounter_id for stay in stays]
    silent = deployment_silent(conn)  # silent mode: no risk and no alert reach clinicians
    recent = {} if silent else _recent_scores(conn, ids, at)
    vitals = _latest_vitals(conn, stays, at)
    alerts = {} if silent else latest_alerts(conn, ids, shown_only=True)
    book = book or PolicyBook()
    found = [_bed(stay, recent.get(stay.encounter_id, []), vitals, alerts, at, book)
             for stay in stays]  # fmt: skip
    return sorted(found, key=lambda b: (b.risk is None, -(b.risk or 0.0), b.encounter_id))


def _stay_query() -> Select:
    return select(
        encounters.c.encounter_id,
        encounters.c.patient_id,
        encounters.c.unit,
        encounters.c.admitted_at,
        patients.c.opted_out_scoring.label("opted_out"),
    ).join(patients, patients.c.patient_id == encounters.c.patient_id)


def _stays(conn: Connection, encounter_ids: Sequence[str]) -> list[Row]:
    query = _stay_query().where(encounters.c.encounter_id.in_(list(encounter_ids)))
    return list(conn.execute(query.where(encounters.c.admitted_at.is_not(None))).all())


def _present(conn: Connection, at: datetime, unit: str | None) -> list[Row]:
    query = (
        _stay_query()
        .where(encounters.c.admitted_at <= at)
        .where(encounters.c.admitted_at > at - timedelta(days=MAX_STAY_DAYS))
        .where(encounters.c.discharged_at.is_(None) | (encounters.c.discharged_at >= at))
        .where(encounters.c.unit.is_(None) | encounters.c.unit.not_in(NOT_BEDDED))
    )
    if unit is not None:
        query = query.where(encounters.c.unit == unit)
    return list(conn.execute(query).all())


def _recent_scores(conn: Connection, ids: Sequence[str], at: datetime) -> dict[str, list[Row]]:
    """Each stay's active-model scores of the last 24 h, oldest first."""
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
    by_stay: dict[str, list[Row]] = {}
    for row in conn.execute(query):
        by_stay.setdefault(row.encounter_id, []).append(row)
    return by_stay


def _latest_vitals(conn: Connection, stays: list[Row], at: datetime) -> dict[tuple[str, str], Row]:
    """The newest value of each vital sign of each stay in the last 24 h (picked by the
    database: a busy ward has thousands of readings a day, the worklist shows 6 per bed)."""
    o = observations.c
    window = (
        o.patient_id.in_(list({stay.patient_id for stay in stays})),
        o.encounter_id.in_([stay.encounter_id for stay in stays]),
        o.variable.in_(VITALS), o.value.is_not(None),
        o.effective_at <= at, o.effective_at > at - RECENT,
    )  # fmt: skip
    newest = (
        select(o.encounter_id, o.variable, func.max(o.effective_at).label("at"))
        .where(*window)
        .group_by(o.encounter_id, o.variable)
        .subquery()
    )
    query = (
        select(o.encounter_id, o.variable, o.value, o.effective_at)
        .join(
            newest,
            (o.encounter_id == newest.c.encounter_id)
            & (o.variable == newest.c.variable)
            & (o.effective_at == newest.c.at),
        )
        .where(*window)
        .order_by(o.id)
    )
    return {(row.encounter_id, row.variable): row for row in conn.execute(query)}


def _bed(
    stay: Row,
    mine: list[Row],
    vitals: dict[tuple[str, str], Row],
    alerts: dict[tuple[str, str], AlertRecord],
    at: datetime,
    book: PolicyBook,
) -> Bed:
    eid = stay.encounter_id
    mine = [] if stay.opted_out else mine
    last = mine[-1] if mine else None
    risk = None if last is None else float(last.risk)
    threshold = _threshold(book, stay.unit, last)
    readings = tuple(_reading(vitals.get((eid, v)), v, at) for v in VITALS)
    return Bed(
        encounter_id=eid, patient_id=stay.patient_id, unit=stay.unit,
        admitted_at=stay.admitted_at,
        hours_on_unit=(at - stay.admitted_at).total_seconds() / 3600,
        opted_out=bool(stay.opted_out), risk=risk,
        uncertainty=None if last is None else float(last.uncertainty),
        ood=bool(last is not None and last.ood), threshold=threshold,
        band=band(risk, threshold), trend=trend(risk, _risk_before(mine)),
        scored_at=None if last is None else last.as_of,
        model_version=None if last is None else str(last.model_version),
        last_data_at=max((r.at for r in readings if r.at is not None), default=None),
        vitals=readings, sepsis=alerts.get((eid, "sepsis")),
        review=alerts.get((eid, "review")), escalation=alerts.get((eid, "escalation")), at=at,
    )  # fmt: skip


def unit_threshold(
    book: PolicyBook, unit: str | None, score_threshold: float | None
) -> float | None:
    """The threshold a stay's band is measured against: the unit's setting, else the model's
    own (as stored with the score)."""
    configured = book.for_unit(unit).threshold
    return configured if configured is not None else score_threshold


def _threshold(book: PolicyBook, unit: str | None, last: Row | None) -> float | None:
    return unit_threshold(book, unit, None if last is None else float(last.threshold))


def _risk_before(mine: list[Row]) -> float | None:
    """The risk about TREND_HOURS before the newest score (None if the record is shorter)."""
    if not mine:
        return None
    cutoff = mine[-1].as_of - timedelta(hours=TREND_HOURS)
    earlier = [row for row in mine if row.as_of <= cutoff]
    return float(earlier[-1].risk) if earlier else None


def _reading(row: Row | None, variable: str, at: datetime) -> Reading:
    name = SHORT_NAMES[variable]
    if row is None:
        return Reading(variable, name, None, "—", None, None)
    value = float(row.value)
    hours = (at - row.effective_at).total_seconds() / 3600
    return Reading(variable, name, value, wording.value_of(variable, value), row.effective_at,
                   hours)  # fmt: skip


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
