"""parse → normalize → quality gate → store, for one message or a bulk batch alike.

Every entry point ends in `store_batch`, which runs in one transaction: either all of a
batch's accepted observations, quarantined items and receipt are committed, or none is.
Callers acknowledge (HL7 AA) only after it returns.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import Connection, Engine

from wardwatch.domain import Encounter, Parsed, Patient, rejection_frame, reported_frame
from wardwatch.quality import GateContext, gate
from wardwatch.settings import Settings
from wardwatch.store import Batch, Receipt, WriteResult, seen_message, write_batch
from wardwatch.store.reads import known_patients
from wardwatch.terminology import LocalCodeMap, normalize


@dataclass(slots=True)
class IngestSummary:
    """What happened to everything that came in: nothing is left out of these counts."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)  # resources we do not use
    patients: int = 0
    messages: int = 0
    duplicate_messages: int = 0
    errors: list[str] = field(default_factory=list)  # whole files or messages refused

    def add(self, other: IngestSummary) -> None:
        for name in ("received", "accepted", "duplicates", "patients", "messages",
                     "duplicate_messages"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.quarantined.update(other.quarantined)
        self.ignored.update(other.ignored)
        self.errors.extend(other.errors)

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The settings every ingest needs, resolved once."""

    engine: Engine
    code_map: LocalCodeMap
    settings: Settings

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings) -> Pipeline:
        return cls(engine, LocalCodeMap.load(settings.local_code_map), settings)

    def context(
        self, conn: Connection, frame: pd.DataFrame, batch_patients: set[str]
    ) -> GateContext:
        others = set(frame["patient_id"].dropna().unique()) - batch_patients
        return GateContext(
            known_patients=batch_patients | known_patients(conn, others),
            now=datetime.now(UTC),
            future_tolerance=self.settings.future_tolerance,
            oldest=datetime(self.settings.oldest_year, 1, 1, tzinfo=UTC),
        )


def _summary(result: WriteResult, rejections: pd.DataFrame, received: int) -> IngestSummary:
    summary = IngestSummary(received=received, accepted=result.accepted)
    summary.duplicates = result.duplicates
    summary.quarantined.update(rejections["reason_code"].value_counts().to_dict())
    return summary


def store_batch(
    conn: Connection,
    pipeline: Pipeline,
    reported: pd.DataFrame,
    *,
    patients: list[Patient],
    encounters: list[Encounter],
    parse_rejections: pd.DataFrame | None = None,
    receipt: Receipt | None = None,
) -> IngestSummary:
    """Normalize, gate and write one batch inside the caller's transaction."""
    normalized = normalize(reported, pipeline.code_map)
    batch_patients = {p.patient_id for p in patients}
    gated = gate(normalized.observations, pipeline.context(conn, reported, batch_patients))
    rejections = pd.concat(
        [f for f in (parse_rejections, normalized.rejections, gated.rejections)
         if f is not None and not f.empty] or [normalized.rejections],
        ignore_index=True,
    )  # fmt: skip
    batch = Batch(gated.accepted, rejections, patients, encounters, receipt)
    result = write_batch(conn, batch)
    summary = _summary(result, rejections, received=len(reported) + _count(parse_rejections))
    summary.patients = len(batch_patients)
    return summary


def _count(frame: pd.DataFrame | None) -> int:
    return 0 if frame is None else len(frame)


def store_parsed(
    pipeline: Pipeline, parsed: Parsed, receipt: Receipt | None = None
) -> IngestSummary:
    """Commit one parsed message or document; returns only after the commit."""
    with pipeline.engine.begin() as conn:
        if receipt is not None and seen_message(conn, receipt):
            return IngestSummary(messages=1, duplicate_messages=1)
        summary = store_batch(
            conn,
            pipeline,
            reported_frame(parsed.reported),
            patients=parsed.patients,
            encounters=parsed.encounters,
            parse_rejections=rejection_frame(parsed.rejections),
            receipt=receipt,
        )
    summary.messages = 1
    return summary
