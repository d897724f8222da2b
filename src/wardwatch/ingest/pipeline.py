"""parse → normalize → quality gate → store, for one message or a bulk batch alike.

Files go through `store_batch`, messages with an identity (HL7 MSH-10) through
`store_messages`; both normalize and gate with `_gated` and write one transaction: either
all of a batch's accepted observations, quarantined items and receipts are committed, or
none is. Callers acknowledge (HL7 AA) only after it returns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine

from wardwatch.domain import Encounter, Parsed, Patient, rejection_frame, reported_frame
from wardwatch.quality import GateContext, GateRows, gate
from wardwatch.settings import Settings
from wardwatch.store import (
    Batch,
    ObservationRows,
    Receipt,
    WriteResult,
    seen_messages,
    write_batch,
)
from wardwatch.store.reads import known_patients
from wardwatch.terminology import LocalCodeMap, normalize
from wardwatch.terminology.normalize import Normalized


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
        self, conn: Connection, referred: Iterable[str], batch_patients: set[str]
    ) -> GateContext:
        """What the gate needs to know: which of the `referred` patients are known, and when
        now is."""
        others = set(referred) - batch_patients
        return GateContext(
            known_patients=batch_patients | known_patients(conn, others),
            now=datetime.now(UTC),
            future_tolerance=self.settings.future_tolerance,
            oldest=datetime(self.settings.oldest_year, 1, 1, tzinfo=UTC),
        )


# The payloads of normalized observations, by their index labels: for a frame sent without
# them (bulk ingest reads them back from the file, and only for what the gate turns away).
Payloads = Callable[[np.ndarray], list[str]]


@dataclass(frozen=True, slots=True)
class ReadyRows:
    """A normalized frame's observations as the gate reads them and as the store binds them.

    Bulk ingest builds them in its worker processes, beside the normalizing, so the one
    process that writes only compares and binds; elsewhere the gate and the writer build
    what they need from the frame themselves.
    """

    gate: GateRows
    store: ObservationRows

    @classmethod
    def of(cls, observations: pd.DataFrame) -> ReadyRows:
        return cls(GateRows.of(observations), ObservationRows.of(observations))


@dataclass(frozen=True, slots=True)
class Gated:
    """A batch after normalization and the gate, before it is written."""

    accepted: pd.DataFrame
    rejections: pd.DataFrame
    received: int
    kept: np.ndarray  # per normalized observation: accepted by the gate


def _gated(
    conn: Connection,
    pipeline: Pipeline,
    reported: pd.DataFrame,
    patients: list[Patient],
    parse_rejections: pd.DataFrame | None,
) -> Gated:
    normalized = normalize(reported, pipeline.code_map)
    received = len(reported) + (0 if parse_rejections is None else len(parse_rejections))
    return gate_normalized(conn, pipeline, normalized, patients, parse_rejections, received)


def gate_normalized(
    conn: Connection,
    pipeline: Pipeline,
    normalized: Normalized,
    patients: list[Patient],
    parse_rejections: pd.DataFrame | None,
    received: int,
    rows: GateRows | None = None,
    payloads: Payloads | None = None,
) -> Gated:
    """The quality gate over already-normalized rows (it reads the store: who is known).

    `rows` are the observations' `GateRows` when they were read beforehand; `payloads` gives
    the payloads of observations sent without them."""
    rows = GateRows.of(normalized.observations) if rows is None else rows
    context = pipeline.context(conn, rows.patients, {p.patient_id for p in patients})
    gated = gate(normalized.observations, context, rows)
    turned_away = gated.rejections
    if payloads is not None and len(turned_away):
        turned_away = turned_away.assign(payload=payloads(turned_away.index.to_numpy()))
    found = [parse_rejections, normalized.rejections, turned_away]
    rejections = pd.concat([f for f in found if f is not None and not f.empty] or [found[1]])
    return Gated(gated.accepted, rejections, received, gated.kept)


def _summary(gated: Gated, result: WriteResult, patients: int) -> IngestSummary:
    summary = IngestSummary(received=gated.received, accepted=result.accepted)
    summary.duplicates = result.duplicates
    summary.quarantined.update(gated.rejections["reason_code"].value_counts().to_dict())
    summary.patients = patients
    return summary


def store_batch(
    conn: Connection,
    pipeline: Pipeline,
    reported: pd.DataFrame,
    *,
    patients: list[Patient],
    encounters: list[Encounter],
    parse_rejections: pd.DataFrame | None = None,
) -> IngestSummary:
    """Normalize, gate and write one batch inside the caller's transaction."""
    received = len(reported) + (0 if parse_rejections is None else len(parse_rejections))
    return store_normalized(
        conn, pipeline, normalize(reported, pipeline.code_map), patients=patients,
        encounters=encounters, parse_rejections=parse_rejections, received=received,
    )  # fmt: skip


def store_normalized(
    conn: Connection,
    pipeline: Pipeline,
    normalized: Normalized,
    *,
    patients: list[Patient],
    encounters: list[Encounter],
    parse_rejections: pd.DataFrame | None,
    received: int,
    ready: ReadyRows | None = None,
    payloads: Payloads | None = None,
) -> IngestSummary:
    """Gate and write already-normalized rows inside the caller's transaction (bulk workers
    normalize, and prepare the `ready` rows; the gate reads the store, so it runs here)."""
    rows = None if ready is None else ready.gate
    gated = gate_normalized(
        conn, pipeline, normalized, patients, parse_rejections, received, rows, payloads
    )
    accepted = gated.accepted if ready is None else ready.store.kept(gated.kept)
    result = write_batch(conn, Batch(accepted, gated.rejections, patients, encounters))
    return _summary(gated, result, len({p.patient_id for p in patients}))


def store_parsed(pipeline: Pipeline, parsed: Parsed) -> IngestSummary:
    """Commit one parsed document (no message identity to de-duplicate on)."""
    with pipeline.engine.begin() as conn:
        summary = store_batch(
            conn,
            pipeline,
            reported_frame(parsed.reported),
            patients=parsed.patients,
            encounters=parsed.encounters,
            parse_rejections=rejection_frame(parsed.rejections),
        )
    summary.messages = 1
    return summary


def store_messages(
    pipeline: Pipeline, messages: list[tuple[Parsed, Receipt]]
) -> list[IngestSummary]:
    """Commit several messages in one transaction (group commit); one summary per message.

    A message already received (same source and message id, e.g. HL7 MSH-10) is recognised
    and stores nothing. Returns only after the commit, so callers may acknowledge then.
    """
    summaries: list[IngestSummary] = []
    fresh: list[int] = []
    with pipeline.engine.begin() as conn:
        seen = seen_messages(conn, [receipt for _, receipt in messages])
        for i, (_, receipt) in enumerate(messages):
            key = (receipt.source, receipt.message_id)
            summaries.append(IngestSummary(messages=1, duplicate_messages=int(key in seen)))
            if key not in seen:
                seen.add(key)
                fresh.append(i)
        if fresh:
            _store_fresh(conn, pipeline, [(i, *messages[i]) for i in fresh], summaries)
    return summaries


def _stacked(
    messages: list[tuple[int, Parsed, Receipt]],
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """All messages' reported items and parse rejections as two frames, plus which message
    each row came from (reported rows first, then rejections, matching the frames' index)."""
    reported = reported_frame([r for _, p, _ in messages for r in p.reported])
    rejections = rejection_frame([r for _, p, _ in messages for r in p.rejections])
    rejections = rejections.set_axis(pd.RangeIndex(len(reported), len(reported) + len(rejections)))
    owner = np.concatenate(
        [np.repeat([i for i, _, _ in messages], [len(p.reported) for _, p, _ in messages]),
         np.repeat([i for i, _, _ in messages], [len(p.rejections) for _, p, _ in messages])]
    )  # fmt: skip
    return reported, rejections, owner.astype("int64")


def _store_fresh(
    conn: Connection,
    pipeline: Pipeline,
    messages: list[tuple[int, Parsed, Receipt]],
    summaries: list[IngestSummary],
) -> None:
    reported, parse_rejections, owner = _stacked(messages)
    patients = [x for _, p, _ in messages for x in p.patients]
    encounters = [x for _, p, _ in messages for x in p.encounters]
    gated = _gated(conn, pipeline, reported, patients, parse_rejections)
    size = len(summaries)
    accepted = np.bincount(owner[gated.accepted.index.to_numpy()], minlength=size)
    rejected_by = owner[gated.rejections.index.to_numpy()]
    quarantined = np.bincount(rejected_by, minlength=size)
    receipts = [Receipt(r.source, r.message_id, int(accepted[i]), int(quarantined[i]))
                for i, _, r in messages]  # fmt: skip
    write_batch(conn, Batch(gated.accepted, gated.rejections, patients, encounters, receipts))
    for i, parsed, _ in messages:
        summaries[i].received = len(parsed.reported) + len(parsed.rejections)
        summaries[i].accepted = int(accepted[i])
        summaries[i].patients = len({p.patient_id for p in parsed.patients})
    for i, reason in zip(rejected_by, gated.rejections["reason_code"], strict=True):
        summaries[i].quarantined[reason] += 1
