"""The scoring service: stays with new data (or a new hour) get a fresh, stored score.

Ingest commits observations and acknowledges; scoring follows, batched, from the store — so a
burst of HL7 messages for one patient costs one score, not one per message, and the score is
computed from exactly what was committed. Which stays are due is itself durable: a stay is
due when it has an observation newer than the model's mark in `scoring_marks`, and the mark
moves in the same transaction as the scores, so a crash repeats no work and loses none.

A score is computed by the one feature implementation (`features.build_features`) over the
stay's hourly record as of the scoring time (`cohort.load_wide(until=…)`), and stored with
the model version, the inputs' ages, the uncertainty and the out-of-distribution score
(append-only: what the system said at 02:00 stays on record). Patients who opted out of AI
scoring are never scored (their stays are skipped, and counted as such); so are visits that
are not a bedded stay (ambulatory, virtual, home health: the model knows hospital beds) and
stays longer than `MAX_STAY_DAYS`, beyond anything the model was trained on (PhysioNet ICU
stays last at most 14 days), whose hourly record would also grow without bound.

Every stored score is in the audit trail (rule 5: the system read a patient's data and said
something about them): one `score.create` record per stay scored, naming the patient, the
stay, the score row and the model, never the risk or any other clinical value (the scores
table holds those). A batch's records are appended with one `record_many`, in the
transaction that stores its scores.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, insert, select, update

from wardwatch.alerts.signs import vitals_age_hours
from wardwatch.features import build_features
from wardwatch.ingest.psv import MEASURED
from wardwatch.model.risk import RiskModel
from wardwatch.security import audit
from wardwatch.store.cohort import HOUR, load_wide
from wardwatch.store.schema import encounters, observations, patients, scores, scoring_marks

_AGE_COLUMNS = [f"{v}_hours_since" for v in MEASURED]
NOT_BEDDED = frozenset({"ambulatory", "virtual", "home health", "pre-admission", "field",
                        "outpatient", "AMB", "VR", "HH", "PRENC", "FLD"})  # fmt: skip
MAX_STAY_DAYS = 60
OPTED_OUT = "opted out of AI scoring"


@dataclass(frozen=True)
class ScoredStays:
    """One scoring round: a row per stay scored, and the hourly records the scores read."""

    scores: pd.DataFrame  # one row per stay: score_id, encounter_id, hour, as_of, risk, …
    wide: pd.DataFrame  # each scored stay's hourly record up to its scored hour
    skipped: dict[str, str] = field(default_factory=dict)  # stay -> why it was not scored

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def nothing(cls, skipped: dict[str, str] | None = None) -> ScoredStays:
        return cls(_empty_scores(), pd.DataFrame(), dict(skipped or {}))

    @classmethod
    def joined(cls, parts: Sequence[ScoredStays]) -> ScoredStays:
        """One round's batches as one."""
        skipped = {k: v for p in parts for k, v in p.skipped.items()}
        scored = [p for p in parts if len(p)]
        if not scored:
            return cls.nothing(skipped)
        return cls(pd.concat([p.scores for p in scored], ignore_index=True),
                   pd.concat([p.wide for p in scored], ignore_index=True), skipped)  # fmt: skip


def due_stays(conn: Connection, model_version: str) -> tuple[list[str], int]:
    """Stays with observations the model has not scored yet, and the newest observation id."""
    mark = _mark(conn, model_version)
    newest = conn.execute(select(func.max(observations.c.id))).scalar() or 0
    if newest <= mark:
        return [], mark
    query = (
        select(observations.c.encounter_id)
        .where(observations.c.id > mark, observations.c.encounter_id.is_not(None))
        .distinct()
    )
    return sorted(conn.execute(query).scalars()), newest


def has_unscored(conn: Connection, model_version: str) -> bool:
    """Whether observations arrived that this model has not scored (one indexed query)."""
    newest = conn.execute(select(func.max(observations.c.id))).scalar() or 0
    return newest > _mark(conn, model_version)


def _mark(conn: Connection, model_version: str) -> int:
    query = select(scoring_marks.c.through_observation_id).where(
        scoring_marks.c.model_version == model_version
    )
    return conn.execute(query).scalar() or 0


def advance_mark(conn: Connection, model_version: str, through: int) -> None:
    """Record that every observation up to `through` has been scored by this model."""
    done = update(scoring_marks).where(scoring_marks.c.model_version == model_version)
    if conn.execute(done.values(through_observation_id=through)).rowcount == 0:
        row = {"model_version": model_version, "through_observation_id": through}
        conn.execute(insert(scoring_marks).values(**row))


def present_stays(conn: Connection, at: datetime) -> list[str]:
    """Stays on a ward at `at`: admitted by then and not yet discharged."""
    query = select(encounters.c.encounter_id).where(
        encounters.c.admitted_at <= at,
        encounters.c.admitted_at > at - timedelta(days=MAX_STAY_DAYS),
        (encounters.c.discharged_at.is_(None)) | (encounters.c.discharged_at >= at),
        encounters.c.unit.is_(None) | encounters.c.unit.not_in(NOT_BEDDED),
    )
    return sorted(conn.execute(query).scalars())


def unscored_stays(
    conn: Connection, encounter_ids: Sequence[str], at: datetime | None
) -> dict[str, str]:
    """The stays among `encounter_ids` that must not be scored, each with the reason."""
    query = (
        select(
            encounters.c.encounter_id,
            encounters.c.unit,
            encounters.c.admitted_at,
            encounters.c.discharged_at,
            patients.c.opted_out_scoring,
        )
        .join(patients, patients.c.patient_id == encounters.c.patient_id)
        .where(encounters.c.encounter_id.in_(list(encounter_ids)))
    )
    reasons = {}
    for eid, unit, admitted, discharged, opted_out in conn.execute(query).all():
        if reason := _why_unscored(unit, admitted, discharged, opted_out, at):
            reasons[eid] = reason
    return reasons


def _why_unscored(
    unit: str | None,
    admitted: datetime | None,
    discharged: datetime | None,
    opted_out: bool,
    at: datetime | None,
) -> str | None:
    if opted_out:
        return OPTED_OUT
    if unit in NOT_BEDDED:
        return f"a {unit} visit, not a bedded stay"
    end = min(d for d in (discharged, at or datetime.now(UTC)) if d is not None)
    if admitted is not None and end - admitted > timedelta(days=MAX_STAY_DAYS):
        return f"a stay of more than {MAX_STAY_DAYS} days, beyond what the model was trained on"
    return None


def score_stays(
    conn: Connection,
    model: RiskModel,
    encounter_ids: Sequence[str],
    *,
    at: datetime | None = None,
    role: str = "active",
) -> ScoredStays:
    """Score each stay's latest hour (as of `at`, default: all its data) and store the scores."""
    wanted = list(dict.fromkeys(encounter_ids))
    if not wanted:
        return ScoredStays.nothing()
    skipped = unscored_stays(conn, wanted, at)
    chosen = [e for e in wanted if e not in skipped]
    wide = load_wide(conn, encounter_ids=chosen, until=at) if chosen else pd.DataFrame()
    if wide.empty:
        return ScoredStays(_empty_scores(), wide, skipped)
    frame = _latest_scores(wide, model, role)
    frame["through_observation_id"] = frame["encounter_id"].map(_newest_ids(conn, chosen, at))
    frame["score_id"] = _store(conn, frame)
    _audit(conn, frame, model.version, role)
    return ScoredStays(frame, wide, skipped)


def _audit(conn: Connection, frame: pd.DataFrame, model_version: str, role: str) -> None:
    """One `score.create` record per stored score, as one batch (see the module docstring)."""
    detail = {"model_version": model_version, "role": role}
    audit.record_many(conn, [
        audit.AuditEvent("score.create", patient_id=str(patient_id), encounter_id=str(encounter_id),
                         object=f"score/{score_id}", detail=detail)
        for score_id, patient_id, encounter_id in zip(
            frame["score_id"], frame["patient_id"], frame["encounter_id"], strict=True)
    ])  # fmt: skip


def _latest_scores(wide: pd.DataFrame, model: RiskModel, role: str) -> pd.DataFrame:
    stays = wide.assign(patient_id=wide["encounter_id"])  # a stay is the model's unit
    last = stays.groupby("encounter_id", sort=False)["hour"].idxmax().to_numpy()
    features = build_features(stays).loc[last]
    predicted = model.predict(features)
    rows = wide.loc[last]
    return pd.DataFrame(
        {
            "encounter_id": rows["encounter_id"].to_numpy(),
            "patient_id": rows["patient_id"].to_numpy(),
            "unit": rows["unit"].to_numpy(),
            "hour": rows["hour"].to_numpy(dtype="int64"),
            "model_version": model.version,
            "role": role,
            "risk": predicted["risk"].to_numpy(),
            "uncertainty": predicted["uncertainty"].to_numpy(),
            "ood_score": predicted["ood_score"].to_numpy(),
            "ood": predicted["ood"].to_numpy(),
            "threshold": model.threshold,
            "vitals_age_hours": vitals_age_hours(features),
            "input_ages": _input_ages(features),
        }
    )


def _input_ages(features: pd.DataFrame) -> list[str]:
    """Per row, JSON {variable: hours since measured} for the variables ever measured."""
    ages = features.loc[:, _AGE_COLUMNS].to_numpy(dtype="float64")
    names = np.asarray(MEASURED)
    out = []
    for row in ages:
        measured = ~np.isnan(row)
        out.append(json.dumps(dict(zip(names[measured], row[measured].tolist(), strict=True))))
    return out


def _newest_ids(conn: Connection, encounter_ids: list[str], at: datetime | None) -> pd.Series:
    query = (
        select(observations.c.encounter_id, func.max(observations.c.id))
        .where(observations.c.encounter_id.in_(encounter_ids))
        .group_by(observations.c.encounter_id)
    )
    if at is not None:
        query = query.where(observations.c.effective_at <= at)
    return pd.Series(dict(conn.execute(query).all()), dtype="int64")


def _admissions(conn: Connection, encounter_ids: list[str]) -> pd.Series:
    query = select(encounters.c.encounter_id, encounters.c.admitted_at).where(
        encounters.c.encounter_id.in_(encounter_ids)
    )
    return pd.Series(dict(conn.execute(query).all()))


def _store(conn: Connection, frame: pd.DataFrame) -> list[int]:
    admitted = _admissions(conn, list(frame["encounter_id"]))
    as_of = pd.to_datetime(frame["encounter_id"].map(admitted), utc=True)
    frame["as_of"] = as_of + frame["hour"].to_numpy() * HOUR
    frame["scored_at"] = datetime.now(UTC)
    frame["through_observation_id"] = frame["through_observation_id"].fillna(0).astype("int64")
    records = frame.drop(columns=["score_id"], errors="ignore").to_dict("records")
    for record in records:
        record["as_of"] = record["as_of"].to_pydatetime()
        record["vitals_age_hours"] = _none_if_nan(record["vitals_age_hours"])
        record["ood"] = bool(record["ood"])
    returning = insert(scores).returning(scores.c.id, sort_by_parameter_order=True)
    return list(conn.execute(returning, records).scalars())


def _none_if_nan(value: float) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def _empty_scores() -> pd.DataFrame:
    return pd.DataFrame(
        columns=["score_id", "encounter_id", "patient_id", "unit", "hour", "as_of", "risk",
                 "uncertainty", "ood_score", "ood", "threshold", "vitals_age_hours"]
    )  # fmt: skip
