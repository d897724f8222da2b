"""Bulk FHIR NDJSON on every core: workers read and normalize pieces, one writer stores them.

A bulk-data export is millions of lines. Reading and normalizing a line costs more than
storing it does, and both are Python, so one process leaves the second core idle. Here
worker processes parse and normalize pieces of `PIECE_BYTES`, and turn the observations into
the rows the gate reads and the database binds (`ReadyRows`), while this process runs the
quality gate (which reads the store) and writes the pieces in file order, on one connection,
committing whole pieces every `COMMIT_BYTES`. A killed ingest keeps every piece it committed;
ingesting the file again stores only the rest (observations are keyed by their source id).

Forked workers read their pieces straight from the document they inherited; only where
workers are spawned does each piece travel to its worker through a pipe. Observations come
back without their payloads (the lines they were read from, most of the bytes): the writer
reads back the lines of those the gate turns away.

Pieces are committed in order, so a Patient line is stored before the Observations of later
lines refer to it. Files are read Patient first, then Encounter (see `resource_order`): a
bulk export names its files by resource type, and alphabetical order would put
Observation.ndjson before Patient.ndjson and quarantine every result as an unknown patient.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from wardwatch.domain import Encounter, Patient, rejection_frame, reported_rows_frame
from wardwatch.ingest import fhir
from wardwatch.ingest.pipeline import (
    IngestSummary,
    Payloads,
    Pipeline,
    ReadyRows,
    store_normalized,
)
from wardwatch.store import bulk_connection
from wardwatch.terminology import LocalCodeMap, normalize
from wardwatch.terminology.normalize import Normalized

PIECE_BYTES = 8 << 20  # about 10,000 Observations
# Pieces are committed in groups of this many bytes: each commit writes every index page the
# group touched to the log, and the observations' unique key sends consecutive rows to pages
# all over its index, so four pieces to a commit write a page once where one piece to a
# commit wrote it up to four times (a fifth of the writer's time at 350,000 observations).
COMMIT_BYTES = 4 * PIECE_BYTES
# Below this size the worker processes cost more to start than they save.
PARALLEL_FROM_BYTES = 2 * PIECE_BYTES
_AHEAD = 2  # pieces read ahead per worker: enough to keep workers busy, bounded memory


@dataclass(slots=True)
class Prepared:
    """One piece of a file, read and normalized, not yet gated (the gate needs the store).

    The observations come without their payloads, each being the text of its line: half
    the bytes a worker would send back, and needed only for what the gate turns away, which
    the writer reads back from the document (`line_of`, `payloads`).
    """

    normalized: Normalized
    ready: ReadyRows
    line_of: np.ndarray  # per reported row (the observations' index): its line in the piece
    parse_rejections: pd.DataFrame
    patients: list[Patient]
    encounters: list[Encounter]
    ignored: Counter[str]
    received: int

    def payloads(self, piece: bytes | memoryview) -> Payloads:
        """The payloads of this piece's observations, read back from its text."""

        def read(rows: np.ndarray) -> list[str]:
            return _line_texts(bytes(piece).splitlines(), self.line_of[rows])  # as prepare split

        return read


def _line_texts(lines: list[bytes], positions: np.ndarray) -> list[str]:
    """The text of the lines at `positions`: the payloads of the observations read from them."""
    return [lines[i].decode("utf-8").strip() for i in positions]


def prepare(piece: bytes, first_line: int, code_map: LocalCodeMap) -> Prepared:
    """Parse and normalize NDJSON lines (runs in a worker process).

    Raises `fhir.FHIRError` only for a first piece that is not NDJSON at all.
    """
    with _collector_paused():
        return _prepare(piece, first_line, code_map)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Reading a piece makes a few hundred thousand small dicts and lists, none in a cycle,
    and each few hundred of them set off a collection that walks all that are alive: a tenth
    of a worker's time, spent finding nothing. They are collected as usual afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _prepare(piece: bytes, first_line: int, code_map: LocalCodeMap) -> Prepared:
    lines = piece.splitlines()
    result = fhir.parse_ndjson(lines, first_line=first_line, rows=True)
    parsed = result.parsed
    reported = reported_rows_frame(result.rows)
    line_of = np.asarray(result.lines, dtype=np.int64) - first_line
    # Normalized without the payloads (copying every line into the frame's text was a tenth
    # of a worker's time); the few it turns away get theirs back from the lines.
    reported["payload"] = np.full(len(reported), None, dtype=object)
    normalized = normalize(reported, code_map)
    turned_away = normalized.rejections
    if len(turned_away):
        turned_away = turned_away.assign(payload=_line_texts(lines, line_of[turned_away.index]))
    observations = normalized.observations
    return Prepared(
        Normalized(observations.drop(columns="payload"), turned_away),
        ReadyRows.of(observations),
        line_of,
        rejection_frame(parsed.rejections),
        parsed.patients,
        parsed.encounters,
        result.ignored,
        len(reported) + len(parsed.rejections),
    )


def store_prepared(
    conn: Connection, pipeline: Pipeline, piece: Prepared, text: bytes | memoryview
) -> IngestSummary:
    """Gate and store one piece (`text`: its bytes) in the transaction `conn` has open."""
    summary = store_normalized(
        conn, pipeline, piece.normalized, patients=piece.patients,
        encounters=piece.encounters, parse_rejections=piece.parse_rejections,
        received=piece.received, ready=piece.ready, payloads=piece.payloads(text),
    )  # fmt: skip
    summary.ignored.update(piece.ignored)
    return summary


@dataclass(frozen=True, slots=True)
class Span:
    """Where a piece lies in its document: the number of its first line, and its bytes."""

    first_line: int
    start: int
    end: int


def spans(content: bytes, size: int = PIECE_BYTES) -> Iterator[Span]:
    """Consecutive pieces of about `size` bytes, whole lines, covering `content`.

    Spans, not slices: a forked worker reads its piece from the document it inherited, and
    this process never holds a million small line objects.
    """
    start, line = 0, 1
    while start < len(content):
        end = content.find(b"\n", min(start + size, len(content)) - 1)
        end = len(content) if end == -1 else end + 1
        yield Span(line, start, end)
        line += _newlines(content, start, end)
        start = end


def _newlines(content: bytes, start: int, end: int) -> int:
    """How many line feeds `content[start:end]` holds: numpy compares many bytes at a time,
    where bytes.count, one at a time, was a twentieth of the writer process's work."""
    return int(np.count_nonzero(np.frombuffer(content, np.uint8, end - start, start) == 0x0A))


def ingest_ndjson(
    pipeline: Pipeline,
    content: bytes,
    progress: Callable[[int], None] | None = None,
    *,
    piece_bytes: int = PIECE_BYTES,
    parallel_from: int = PARALLEL_FROM_BYTES,
    commit_bytes: int = COMMIT_BYTES,
) -> IngestSummary:
    """Store one NDJSON document; on several cores when it is large enough to pay.

    Whole pieces are committed together once they hold `commit_bytes` (and at the end), so
    a killed ingest keeps the first pieces of the file, each whole.
    """
    summary = IngestSummary(messages=1)
    workers = min(_cores(), 8)
    if len(content) < parallel_from or workers < 2:
        prepared = (
            (span, prepare(content[span.start : span.end], span.first_line, pipeline.code_map))
            for span in spans(content, piece_bytes)
        )
        _store_in_order(pipeline, content, prepared, summary, progress, commit_bytes)
        return summary
    # Objects alive now are frozen out of the collector: otherwise each forked worker's
    # first collection touches them all and copies the parent's memory page by page.
    gc.freeze()
    try:
        with _Workers(workers, content, pipeline.code_map) as pool:
            prepared = _in_order(pool, spans(content, piece_bytes), workers)
            _store_in_order(pipeline, content, prepared, summary, progress, commit_bytes)
    finally:
        gc.unfreeze()
    return summary


def _store_in_order(
    pipeline: Pipeline,
    content: bytes,
    prepared: Iterator[tuple[Span, Prepared]],
    summary: IngestSummary,
    progress: Callable[[int], None] | None,
    commit_bytes: int,
) -> None:
    """Store the pieces in turn, adding to `summary`, committing every `commit_bytes`;
    one connection for them all. Progress counts what is committed."""
    document = memoryview(content)  # a piece's text, without copying it
    with bulk_connection(pipeline.engine) as conn:
        pending = 0  # bytes stored since the last commit
        for span, piece in prepared:
            if not conn.in_transaction():
                conn.begin()
            text = document[span.start : span.end]
            summary.add(store_prepared(conn, pipeline, piece, text))
            pending += span.end - span.start
            if pending >= commit_bytes:
                conn.commit()
                if progress:
                    progress(pending)
                pending = 0
        if conn.in_transaction():
            conn.commit()
        if progress and pending:
            progress(pending)


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# In a forked worker: the document and code map being ingested, inherited from the parent.
_inherited: tuple[bytes, LocalCodeMap] | None = None


def _start_worker(parent: int, inherited: tuple[bytes, LocalCodeMap] | None) -> None:
    """Runs first in every worker: keep what it inherited; leave when the ingest dies."""
    global _inherited  # set once per worker process, here
    _inherited = inherited
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """A killed ingest cannot stop its workers, and they would wait for work forever,
    holding the document: each one leaves once it is orphaned (its parent has changed)."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _prepare_span(span: Span) -> Prepared:
    """`prepare` of a piece of the inherited document (runs in a forked worker)."""
    assert _inherited is not None, "only workers started by _Workers prepare spans"
    document, code_map = _inherited
    return prepare(document[span.start : span.end], span.first_line, code_map)


class _Workers:
    """Worker processes that prepare the pieces of one document.

    fork where it is the platform's way: workers start in milliseconds, inherit the imported
    modules, and inherit the document itself, so a piece is sent as three numbers instead of
    8 MB pickled through a pipe (the code map is inherited too: one object, so its
    normalization plans are worked out once per worker, not once per piece). Elsewhere the
    platform default (spawn) costs a second per worker and each piece travels whole.
    """

    def __init__(self, count: int, document: bytes, code_map: LocalCodeMap) -> None:
        methods = multiprocessing.get_all_start_methods()
        self.forked = "fork" in methods and os.name == "posix"
        self.document, self.code_map = document, code_map
        context = multiprocessing.get_context("fork" if self.forked else None)
        # With fork, initargs are inherited, never pickled.
        inherited = (document, code_map) if self.forked else None
        self.pool = ProcessPoolExecutor(count, context, _start_worker, (os.getpid(), inherited))

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown()

    def submit(self, span: Span) -> Future[Prepared]:
        if self.forked:
            return self.pool.submit(_prepare_span, span)
        piece = self.document[span.start : span.end]
        return self.pool.submit(prepare, piece, span.first_line, self.code_map)


def _in_order(
    pool: _Workers, work: Iterator[Span], workers: int
) -> Iterator[tuple[Span, Prepared]]:
    """Prepared pieces in file order, with their spans, a bounded number in flight."""
    in_flight: list[tuple[Span, Future[Prepared]]] = []
    for span in work:
        in_flight.append((span, pool.submit(span)))
        if len(in_flight) >= workers * _AHEAD:
            span, future = in_flight.pop(0)
            yield span, future.result()
    for span, future in in_flight:
        yield span, future.result()
