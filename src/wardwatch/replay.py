"""`wardwatch replay`: past patients through the live pipeline, in accelerated time.

A hospital watches what the system would have done on its own past data, and the demo gets a
living ward. Each past ICU stay is admitted at its own time (staggered, so the ward fills as a
real one does) on a timeline that ends at the present; then the ward clock advances one hour
per tick: the hour's measurements are ingested exactly as an interface would send them
(normalize → quality gate → store, one transaction), then a ward round (`alerts.watch`, as in
live service) scores every stay on the ward as of that hour and the alert policy reacts. At
`--speed 3600` one patient-hour passes per second; `max` runs as fast as the machine can.

Nothing is special-cased: the scores come from the same store reads and the same feature code
as live scoring, which is why a replay reproduces `predict-psv` score for score (tested).
The files' discharge times are known in advance, and only used to take a stay off the ward.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from wardwatch.alerts.policy import Action, PolicyBook
from wardwatch.alerts.watch import Change, ward_round
from wardwatch.clock import clear_ward_clock, set_ward_clock
from wardwatch.ingest import psv
from wardwatch.ingest.pipeline import IngestSummary, Pipeline, store_batch
from wardwatch.model.risk import RiskModel
from wardwatch.model.serving import ServingModels
from wardwatch.store.cohort import HOUR

OnTick = Callable[["Tick"], None]


class ReplayError(ValueError):
    """Data a replay cannot run (no PhysioNet stays in it) or a bad speed."""


@dataclass(frozen=True)
class ReplayPlan:
    """When each stay is admitted, and how many hours the whole replay spans."""

    cohort: pd.DataFrame  # the PhysioNet wide frame, rows grouped by patient, hourly
    admitted: pd.Series  # patient_id -> admission time (UTC)
    release: np.ndarray  # per cohort row: the tick (hour from origin) its values arrive
    origin: datetime
    hours: int

    def at(self, tick: int) -> datetime:
        return self.origin + tick * HOUR.to_pytimedelta()


@dataclass(frozen=True)
class Tick:
    """What one replayed hour did."""

    hour: int
    at: datetime
    admitted: int
    ingest: IngestSummary
    scored: int
    changes: list[Change] = field(default_factory=list)  # alerts opened or resumed


@dataclass
class ReplaySummary:
    ticks: int = 0
    stays: int = 0
    ingest: IngestSummary = field(default_factory=IngestSummary)
    scores: int = 0
    alerts: int = 0  # sepsis alerts opened
    reviews: int = 0  # needs-human-review flags opened


def parse_speed(text: str) -> float | None:
    """'3600x', '3600' or 'max' (None: no waiting)."""
    if text.strip().lower() in {"max", "inf"}:
        return None
    cleaned = text.strip().lower().removesuffix("x")
    try:
        speed = float(cleaned)
    except ValueError:
        raise ReplayError(f"speed {text!r}: give a factor such as 3600x, or max") from None
    if speed <= 0:
        raise ReplayError(f"speed {text!r} must be positive (3600x = one patient-hour a second)")
    return speed


def plan_replay(
    cohort: pd.DataFrame, *, stagger_hours: float = 1.0, end: datetime | None = None
) -> ReplayPlan:
    """Admit patient i at i × `stagger_hours` (rounded to the hour); the last hour ends `end`."""
    if cohort.empty:
        raise ReplayError("nothing to replay: the data holds no PhysioNet patient rows")
    ids = pd.unique(cohort["patient_id"])
    offsets = pd.Series(np.round(np.arange(len(ids)) * stagger_hours).astype("int64"), index=ids)
    release = offsets.reindex(cohort["patient_id"]).to_numpy() + cohort["ICULOS"].to_numpy(
        dtype="int64"
    )
    hours = int(release.max())
    end = (end or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    origin = end - hours * HOUR.to_pytimedelta()
    admitted = pd.Series(pd.Timestamp(origin) + offsets.to_numpy() * HOUR, index=ids)
    return ReplayPlan(cohort, admitted, release, origin, hours)


class Replay:
    """Runs a plan tick by tick through `pipeline`, scoring with `model` (a fixed model, or
    the registry's models in service: then promotions and rollbacks apply from the next tick)."""

    def __init__(
        self,
        pipeline: Pipeline,
        model: RiskModel | ServingModels,
        plan: ReplayPlan,
        *,
        speed: float | None = None,
        book: PolicyBook | None = None,
    ) -> None:
        self.pipeline, self.model, self.plan = pipeline, model, plan
        self.speed, self.book = speed, book or PolicyBook()
        self._admission_tick = ((plan.admitted - pd.Timestamp(plan.origin)) / HOUR).astype(int)

    def run(
        self, on_tick: OnTick | None = None, first: int = 0, last: int | None = None
    ) -> ReplaySummary:
        """Ticks `first` to `last` (default: to the end). Run to the end, the ward goes back to
        the wall clock; stopped before, the ward clock stays at the last tick (the demo's
        ward stays populated)."""
        summary = ReplaySummary()
        end = self.plan.hours if last is None else min(last, self.plan.hours)
        for hour in range(first, end + 1):
            started = time.monotonic()
            tick = self.tick(hour)
            _add(summary, tick)
            if on_tick is not None:
                on_tick(tick)
            self._wait(started)
        if end == self.plan.hours:
            with self.pipeline.engine.begin() as conn:
                clear_ward_clock(conn)
        return summary

    def tick(self, hour: int) -> Tick:
        """Ingest hour `hour`'s measurements, then score every stay on the ward."""
        at = self.plan.at(hour)
        arriving = self._admitted_at(hour)
        ingest = self._ingest(hour, arriving)
        with self.pipeline.engine.begin() as conn:
            done = ward_round(conn, self.model, self.book, at)
            set_ward_clock(conn, at, self.speed or 0.0)
        return Tick(hour, at, len(arriving), ingest, len(done.scored), done.changes)

    def _admitted_at(self, hour: int) -> list[str]:
        return list(self._admission_tick.index[self._admission_tick.to_numpy() == hour])

    def _ingest(self, hour: int, arriving: list[str]) -> IngestSummary:
        rows = self.plan.cohort.loc[self.plan.release == hour]
        admissions = self.plan.cohort.loc[self.plan.cohort["patient_id"].isin(arriving)]
        patients, encounters = psv.patients_and_encounters(admissions, self.plan.admitted)
        reported = psv.reported_rows(rows, self.plan.admitted)
        with self.pipeline.engine.begin() as conn:
            return store_batch(
                conn, self.pipeline, reported, patients=patients, encounters=encounters
            )

    def _wait(self, started: float) -> None:
        if self.speed is None:
            return
        remaining = 3600.0 / self.speed - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)


def _add(summary: ReplaySummary, tick: Tick) -> None:
    summary.ticks += 1
    summary.stays += tick.admitted
    summary.ingest.add(tick.ingest)
    summary.scores += tick.scored
    summary.alerts += sum(c.action == Action.FIRE for c in tick.changes)
    summary.reviews += sum(c.action == Action.REVIEW for c in tick.changes)


def load_replay_cohort(source: Path, limit: int | None = None) -> pd.DataFrame:
    """The PhysioNet stays in `source` (directory or archive), rows in time order."""
    try:
        cohort = psv.read_cohort(Path(source), limit=limit)
    except (OSError, psv.PSVError) as error:
        raise ReplayError(f"{source}: {error}") from error
    return cohort.sort_values(["patient_id", "ICULOS"], kind="stable").reset_index(drop=True)
