"""A monitor run: recent data profiled, compared with the reference, notices stored and sent.

Two sources:

- **the store** (`monitor_store`, what `wardwatch monitor` runs, incrementally): the stays
  that received observations since the last store run, from the hour of their first new
  observation on, as the same wide hourly frame the model reads (`store.cohort.load_wide`);
  and the scores the ward rounds stored since the last run (what the system actually said).
  The run's marks (the newest observation and score ids it read) are committed with its
  notices, so the next run starts where this one stopped; an observation that arrives while a
  run reads may be counted by two runs, never by none.
- **PhysioNet files** (`monitor_files`, `wardwatch monitor --data DIR`): a cohort on demand,
  read as the store would hold it (implausible values blanked) and scored by the model here.

Outcomes reach the store as each stay's sepsis onset (`encounters.sepsis_onset_at`): when any
stay read has one, calibration is judged, counting stays without a recorded onset as not
septic; when none has, outcomes have not arrived and calibration is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from wardwatch.ingest.psv import LABEL_LEAD_HOURS, PSVError, read_cohort
from wardwatch.model.cohort import score_cohort
from wardwatch.model.risk import RiskModel
from wardwatch.monitor.drift import DriftReport, DriftThresholds, compare
from wardwatch.monitor.notices import (
    STORE,
    RunMarks,
    Webhook,
    deliver,
    last_marks,
    record_run,
)
from wardwatch.monitor.reference import Profile, has_labels, profile_cohort, with_outputs
from wardwatch.store.cohort import HOUR, load_wide
from wardwatch.store.schema import encounters, observations, scores

Step = Callable[[str], None]  # told what the run is doing now, for a progress display
_CHUNK = 900  # stays under SQLite's bound-parameter limit on old builds


@dataclass(frozen=True)
class MonitorResult:
    """One stored run: its id, what it measured, the notices it raised, the webhook outcome."""

    run_id: int
    report: DriftReport
    notice_ids: list[int]
    source: str
    webhook: str | None = None
    notes: list[str] = field(default_factory=list)  # what the run could not judge, and why


def _quiet(_: str) -> None:
    """No progress display."""


# ---------------------------------------------------------------- from the store


def _newest(conn: Connection) -> RunMarks:
    return RunMarks(
        int(conn.scalar(select(func.max(observations.c.id))) or 0),
        int(conn.scalar(select(func.max(scores.c.id))) or 0),
    )


def _first_new_hours(conn: Connection, since: int, through: int) -> pd.Series:
    """Per stay with observations in (since, through], the hour of its first new one."""
    query = (
        select(encounters.c.encounter_id, encounters.c.admitted_at,
               func.min(observations.c.effective_at))
        .join(encounters, encounters.c.encounter_id == observations.c.encounter_id)
        .where(observations.c.id > since, observations.c.id <= through,
               encounters.c.admitted_at.is_not(None))
        .group_by(encounters.c.encounter_id, encounters.c.admitted_at)
    )  # fmt: skip
    rows = conn.execute(query).all()
    if not rows:
        return pd.Series(dtype="int64")
    ids, admitted, first = zip(*rows, strict=True)
    hours = np.ceil((pd.to_datetime(list(first), utc=True)
                     - pd.to_datetime(list(admitted), utc=True)) / HOUR)  # fmt: skip
    return pd.Series(np.maximum(np.asarray(hours, dtype="float64"), 1), index=list(ids))


def _seen_before(conn: Connection, encounter_ids: list[str], since: int) -> set[str]:
    """Which of the stays already had observations when the last run read (id <= since)."""
    seen: set[str] = set()
    for start in range(0, len(encounter_ids), _CHUNK):
        chunk = encounter_ids[start : start + _CHUNK]
        query = (
            select(observations.c.encounter_id)
            .distinct()
            .where(observations.c.id <= since, observations.c.encounter_id.in_(chunk))
        )
        seen.update(conn.scalars(query))
    return seen


def recent_hours(conn: Connection, since: int, through: int) -> pd.DataFrame:
    """The wide hourly rows of the stays with new observations: from their first new hour for
    stays a run has read before, whole for new stays (their first hours may hold no value)."""
    first = _first_new_hours(conn, since, through)
    if first.empty:
        return pd.DataFrame()
    seen = _seen_before(conn, list(first.index), since) if since else set()
    first = first.where(first.index.isin(list(seen)), 0)
    wide = load_wide(conn, encounter_ids=list(first.index))
    keep = wide["hour"].to_numpy() >= wide["encounter_id"].map(first).to_numpy()
    return wide.loc[keep].reset_index(drop=True)


def recent_scores(conn: Connection, since: int, through: int) -> pd.DataFrame:
    """Active scores stored in (since, through], with the label of the scored hour (1 from
    6 h before a recorded onset; NaN for every score when no stay has a recorded onset)."""
    query = (
        select(scores.c.risk, scores.c.ood, scores.c.threshold, scores.c.model_version,
               scores.c.as_of, encounters.c.sepsis_onset_at)
        .join(encounters, encounters.c.encounter_id == scores.c.encounter_id)
        .where(scores.c.id > since, scores.c.id <= through, scores.c.role == "active")
    )  # fmt: skip
    columns = ["risk", "ood", "threshold", "model_version", "as_of", "onset"]
    frame = pd.DataFrame(conn.execute(query).all(), columns=columns)
    onset = pd.to_datetime(frame["onset"], utc=True)
    as_of = pd.to_datetime(frame["as_of"], utc=True)
    labelled = (as_of >= onset - pd.Timedelta(hours=LABEL_LEAD_HOURS)).astype("float64")
    frame["label"] = labelled if onset.notna().any() else np.nan
    return frame


def _store_profile(
    wide: pd.DataFrame, found: pd.DataFrame, reference: Profile, notes: list[str]
) -> Profile:
    profile = profile_cohort(wide, like=reference, source=STORE)
    if reference.model_version is not None:
        other = found["model_version"] != reference.model_version
        if other.any():
            notes.append(
                f"{int(other.sum())} scores of other models than the reference's "
                f"({reference.model_version}) were left out of prediction drift"
            )
        found = found.loc[~other]
    if found.empty:
        notes.append("no scores of the reference's model since the last run: no prediction drift")
        return profile
    labels = found["label"].to_numpy(np.float64)
    if np.isnan(labels).all():
        notes.append("no stay has a recorded sepsis onset yet: calibration is not judged")
    return with_outputs(
        profile, found["risk"], found["threshold"], ood=found["ood"].astype(bool),
        labels=None if np.isnan(labels).all() else labels, like=reference,
    )  # fmt: skip


def monitor_store(
    engine: Engine,
    reference: Profile,
    thresholds: DriftThresholds | None = None,
    *,
    webhook: Webhook | None = None,
    step: Step = _quiet,
) -> MonitorResult | None:
    """Compare what was stored since the last store run with `reference`; None when nothing
    new has arrived (no run is recorded then)."""
    started = datetime.now(UTC)
    notes: list[str] = []
    with engine.connect() as conn:
        since, newest = last_marks(conn), _newest(conn)
        if newest.observation_id <= since.observation_id and newest.score_id <= since.score_id:
            return None
        step("reading the hours with new observations")
        wide = recent_hours(conn, since.observation_id, newest.observation_id)
        found = recent_scores(conn, since.score_id, newest.score_id)
    step("profiling and comparing with the reference")
    if wide.empty:
        notes.append("no new observations of bedded stays: input drift not judged")
        wide = pd.DataFrame(columns=["patient_id", *reference.variables])
    current = _store_profile(wide, found, reference, notes)
    report = compare(reference, current, thresholds)
    return _store_run(engine, report, STORE, started, newest, webhook, notes)


def _store_run(
    engine: Engine,
    report: DriftReport,
    source: str,
    started: datetime,
    marks: RunMarks | None,
    webhook: Webhook | None,
    notes: list[str],
) -> MonitorResult:
    with engine.begin() as conn:
        run_id, ids = record_run(conn, report, source=source, started_at=started, marks=marks)
    outcome = deliver(engine, webhook, run_id) if ids else None
    return MonitorResult(run_id, report, ids, source, outcome, notes)


# ---------------------------------------------------------------- from files


def read_sorted(data: Path, *, as_stored: bool = True) -> pd.DataFrame:
    """PhysioNet files as one wide frame, patient by patient in time order."""
    try:
        wide = read_cohort(Path(data), as_stored=as_stored)
    except PSVError:
        raise
    except (ValueError, pd.errors.ParserError) as error:  # a cell that is not a number
        raise PSVError(f"{data}: not PhysioNet 2019 patient files ({error})") from error
    return wide.sort_values(["patient_id", "hour"], kind="stable").reset_index(drop=True)


def profile_files(
    wide: pd.DataFrame, model: RiskModel, reference: Profile | None, source: str
) -> tuple[Profile, pd.DataFrame]:
    """A labelled or unlabelled PSV cohort profiled with the model's outputs."""
    outputs = score_cohort(wide, model)
    profile = profile_cohort(wide, outputs, model.threshold, like=reference, source=source,
                             model_version=model.version)  # fmt: skip
    return profile, outputs


def monitor_files(
    engine: Engine,
    data: Path,
    reference: Profile,
    model: RiskModel,
    thresholds: DriftThresholds | None = None,
    *,
    webhook: Webhook | None = None,
    step: Step = _quiet,
) -> MonitorResult:
    """Compare a directory or archive of PhysioNet files with `reference`, on demand."""
    started = datetime.now(UTC)
    notes: list[str] = []
    step(f"reading {data}")
    wide = read_sorted(data)
    if reference.model_version and reference.model_version != model.version:
        notes.append(
            f"the model ({model.version}) is not the reference's "
            f"({reference.model_version}): prediction drift compares two models"
        )
    if not has_labels(wide):
        notes.append("the files carry no SepsisLabel = 1: calibration is not judged")
    step(f"scoring {wide['patient_id'].nunique():,} patients")
    current, _ = profile_files(wide, model, reference, f"psv:{data}")
    step("comparing with the reference")
    report = compare(reference, current, thresholds)
    return _store_run(engine, report, f"psv:{Path(data).resolve()}", started, None, webhook, notes)
