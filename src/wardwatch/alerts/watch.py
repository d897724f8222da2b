"""After each scoring round, the policy reads every fresh score and the workflow acts on it.

The scoring service stores scores; this module turns them into what a clinician sees. For each
scored stay it gathers what the policy needs (the score, the organ-dysfunction signs measured
up to the scored hour, the stay's latest sepsis alert and review flag), asks `policy.decide`,
and carries the decision out through `workflow` in the same transaction as the scores: a new
sepsis alert, a new needs-human-review flag, a paused alert brought back, or, when nothing new
is to be shown, the risk on the stay's active alerts kept current.

Times in the sentences are the ward's clock times (what the chart shows), not stay hours.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, select

from wardwatch.alerts import workflow
from wardwatch.alerts.policy import Action, AlertMemory, Decision, PolicyBook, Situation, decide
from wardwatch.alerts.records import deployment_silent, latest_alerts
from wardwatch.alerts.signs import describe_signs, organ_dysfunction
from wardwatch.clock import ward_now
from wardwatch.model import registry
from wardwatch.model.risk import RiskModel
from wardwatch.model.serving import Lineup, ServingModels, lineup_of
from wardwatch.scoring import (
    ScoredStays,
    advance_mark,
    due_stays,
    has_unscored,
    present_stays,
    score_stays,
)  # fmt: skip
from wardwatch.store.schema import encounters

_KINDS = (workflow.Kind.SEPSIS, workflow.Kind.REVIEW)
ROUND_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Change:
    """One thing the round did to an encounter's alerts."""

    encounter_id: str
    action: Action
    alert_id: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Round:
    """One ward round: every stay due or on the ward scored, and what the policy did."""

    at: datetime
    scored: ScoredStays
    changes: list[Change]


def ward_round(
    conn: Connection, models: RiskModel | ServingModels, book: PolicyBook, at: datetime
) -> Round:
    """Score every stay with unscored observations or on the ward at `at`, then alert.

    Run after ingest and on a timer (an hour passing changes the model's input: every
    "hours since measured" grows); one transaction, so scores, marks and alerts agree. Stays
    are scored `ROUND_BATCH` at a time, so a bulk ingest of thousands of stays stays within
    memory. With the registry's `ServingModels`, each stay is scored by its scope's active
    model and by that scope's shadows (stored as shadow scores: never shown, never alerting);
    the lineup is re-read every round, so a promotion or rollback applies from the next one.
    """
    lineup = lineup_of(conn, models)
    everyone = [*lineup.active.values(), *(m for ms in lineup.shadows.values() for m in ms)]
    due = [due_stays(conn, model.version) for model in everyone]
    newest = max(n for _, n in due)
    stays = sorted({s for found, _ in due for s in found} | set(present_stays(conn, at)))
    parts, changes = [], []
    for scope, ids in _by_scope(conn, lineup, stays).items():
        active = lineup.active[scope]
        scored = _batches(conn, active, ids, at, "active")
        for shadow in lineup.shadows.get(scope, []):
            _batches(conn, shadow, ids, at, "shadow")  # stored; no alert policy on them
        policy = lineup.policy(active, book)  # the site's thresholds, if it set its own
        changes += [change for part in scored for change in watch(conn, part, policy)]
        parts += scored
    for model in everyone:
        advance_mark(conn, model.version, newest)
    return Round(at, ScoredStays.joined(parts), changes)


def _batches(conn: Connection, model: RiskModel, stays: list[str], at: datetime,
             role: str) -> list[ScoredStays]:  # fmt: skip
    return [score_stays(conn, model, stays[i : i + ROUND_BATCH], at=at, role=role)
            for i in range(0, len(stays), ROUND_BATCH)]  # fmt: skip


def _by_scope(conn: Connection, lineup: Lineup, stays: list[str]) -> dict[str, list[str]]:
    """The stays of each scope in service (a unit with its own active model, else hospital)."""
    if len(lineup.active) == 1 or not stays:
        return {registry.HOSPITAL: stays} if stays else {}
    query = select(encounters.c.encounter_id, encounters.c.unit)
    unit_of = {row.encounter_id: row.unit for row in conn.execute(query)}
    grouped: dict[str, list[str]] = {}
    for stay in stays:
        grouped.setdefault(lineup.scope_of(unit_of.get(stay)), []).append(stay)
    return grouped


@dataclass(frozen=True, slots=True)
class _Score:
    """One row of a scoring round, typed."""

    score_id: int
    encounter_id: str
    patient_id: str
    unit: str | None
    model_version: str
    hour: int
    as_of: datetime
    risk: float
    uncertainty: float
    ood: bool
    threshold: float
    vitals_age_hours: float | None

    @classmethod
    def of(cls, row: dict) -> _Score:
        values = {name: row[name] for name in cls.__slots__}  # type: ignore[attr-defined]
        values["as_of"] = pd.Timestamp(row["as_of"]).to_pydatetime()
        values["vitals_age_hours"] = _maybe(row["vitals_age_hours"])
        values["ood"] = bool(row["ood"])
        return cls(**values)

    @property
    def admitted(self) -> datetime:
        return self.as_of - timedelta(hours=self.hour)


def watch(conn: Connection, scored: ScoredStays, book: PolicyBook) -> list[Change]:
    """Apply the policy to every score of a round; returns the alerts opened or resumed."""
    if not len(scored):
        return []
    signs = _signs_at_scored_hours(scored.wide)
    # While silent, the policy remembers its would-be alerts (their suppression is part of
    # what silent mode measures); once live, it forgets them (`alerts.silent`).
    shown_only = not deployment_silent(conn)
    latest = latest_alerts(conn, scored.scores["encounter_id"], shown_only=shown_only)
    changes = []
    for row in scored.scores.to_dict("records"):
        score = _Score.of(row)
        sepsis, review = (latest.get((score.encounter_id, k.value)) for k in _KINDS)
        situation = _situation(score, signs.loc[score.encounter_id])
        decision = decide(book.for_unit(score.unit), situation, _memory(sepsis), _memory(review))
        change = _act(conn, score, decision, sepsis, review)
        if change is not None:
            changes.append(change)
    return changes


def _signs_at_scored_hours(wide: pd.DataFrame) -> pd.DataFrame:
    """Each stay's signs at its last (scored) hour, indexed by encounter."""
    stays = wide.assign(patient_id=wide["encounter_id"])  # a stay is the unit, as in scoring
    found = organ_dysfunction(stays)
    last = stays.groupby("encounter_id", sort=False)["hour"].idxmax()
    return found.loc[last.to_numpy()].set_axis(last.index)


def _memory(record: workflow.AlertRecord | None) -> AlertMemory | None:
    if record is None:
        return None
    return AlertMemory(
        state=record.state.value,  # type: ignore[arg-type]
        opened_at=record.opened_at,
        closed_at=record.closed_at,
        closed_risk=record.closed_risk,
        paused_at=record.paused_at,
        paused_until=record.paused_until,
        pause_until_new_data=record.pause_until_new_data,
    )


def _situation(score: _Score, signs: pd.Series) -> Situation:
    admitted = score.admitted
    return Situation(
        hour=float(score.hour),
        as_of=score.as_of,
        risk=score.risk,
        uncertainty=score.uncertainty,
        ood=score.ood,
        threshold=score.threshold,
        vitals_age_hours=score.vitals_age_hours,
        signs=describe_signs(signs, when=lambda hour: _clock(admitted, hour)),
        newest_sign_at=_moment(admitted, signs["newest_sign_hour"]),
        newest_lab_at=_moment(admitted, signs["newest_lab_hour"]),
    )


def _maybe(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if np.isnan(number) else number


def _moment(admitted: datetime, hour: object) -> datetime | None:
    hours = _maybe(hour)
    return None if hours is None else admitted + timedelta(hours=hours)


def _clock(admitted: datetime, hour: float) -> str:
    return f"at {admitted + timedelta(hours=hour):%d %b %H:%M}"


def _act(
    conn: Connection,
    score: _Score,
    decision: Decision,
    sepsis: workflow.AlertRecord | None,
    review: workflow.AlertRecord | None,
) -> Change | None:
    action = decision.action
    if action in (Action.FIRE, Action.REVIEW):
        kind = workflow.Kind.SEPSIS if action == Action.FIRE else workflow.Kind.REVIEW
        alert_id = workflow.open_alert(
            conn, encounter_id=score.encounter_id, patient_id=score.patient_id,
            kind=kind.value, opened_at=score.as_of, reasons=decision.reasons,
            score_id=score.score_id, risk=score.risk, model_version=score.model_version,
        )  # fmt: skip
        return Change(score.encounter_id, action, alert_id, decision.reasons)
    if action in (Action.RESUME, Action.RESUME_REVIEW):
        target = sepsis if action == Action.RESUME else review
        assert target is not None  # decide resumes only an alert it was shown
        workflow.resume(conn, target.alert_id, at=score.as_of, why=" ".join(decision.reasons))
        return Change(score.encounter_id, action, target.alert_id, decision.reasons)
    for record in (sepsis, review):
        if record is not None and record.active:
            workflow.update_risk(conn, record.alert_id, score.risk, score.score_id)
    return None


class Watcher:
    """Ward rounds in the background, for a running listener or web server.

    Every `poll` seconds it checks (one indexed query) whether observations arrived that the
    model has not scored, and if so runs a round at once: an HL7 result is scored seconds
    after its ACK. Every `interval` seconds it runs a round anyway, because time passing
    changes the model's input and ends pauses. A failing round is reported through `on_error`
    and retried at the next poll; it never stops the watcher (ingest must go on).
    """

    def __init__(
        self,
        engine: Engine,
        model: RiskModel | ServingModels,
        book: PolicyBook,
        *,
        poll: float = 2.0,
        interval: float = 900.0,
        on_round: Callable[[Round], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.engine, self.model, self.book = engine, model, book
        self.poll, self.interval = poll, interval
        self.on_round, self.on_error = on_round, on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ward-rounds", daemon=True)
        self._last_round = 0.0

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def round_now(self) -> Round:
        with self.engine.begin() as conn:
            done = ward_round(conn, self.model, self.book, ward_now(conn))
        self._last_round = time.monotonic()
        if self.on_round is not None:
            self.on_round(done)
        return done

    def _due(self) -> bool:
        if time.monotonic() - self._last_round >= self.interval:
            return True
        with self.engine.connect() as conn:
            lineup = lineup_of(conn, self.model)
            return any(has_unscored(conn, m.version) for m in lineup.active.values())

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                if self._due():
                    self.round_now()
            except Exception as error:  # noqa: BLE001 - reported; the next poll retries
                if self.on_error is not None:
                    self.on_error(error)
