"""Bulk FHIR NDJSON on every core: workers read and normalize pieces, one writer stores them.

A bulk-data export is millions of lines. Reading and normalizing a line costs about twice
what storing it does, and both are Python, so one process leaves the second core idle. Here
worker processes parse and normalize pieces of `PIECE_BYTES` while this process runs
the quality gate (which reads the store) and writes each piece in its own transaction, in
file order. A killed ingest keeps every piece it committed; ingesting the file again stores
only the rest (observations are keyed by their source id).

Pieces are committed in order, so a Patient line is stored before the Observations of later
lines refer to it. Files are read Patient first, then Encounter (see `resource_order`): a
bulk export names its files by resource type, and alphabetical order would put
Observation.ndjson before Patient.ndjson and quarantine every result as an unknown patient.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass

import pandas as pd

from wardwatch.domain import Encounter, Patient, rejection_frame, reported_frame
from wardwatch.ingest import fhir
from wardwatch.ingest.pipeline import IngestSummary, Pipeline, store_normalized
from wardwatch.terminology import LocalCodeMap, normalize
from wardwatch.terminology.normalize import Normalized

PIECE_BYTES = 8 << 20  # about 10,000 Observations
# Below this size the worker processes cost more to start than they save.
PARALLEL_FROM_BYTES = 2 * PIECE_BYTES
_AHEAD = 2  # pieces read ahead per worker: enough to keep workers busy, bounded memory


@dataclass(slots=True)
class Prepared:
    """One piece of a file, read and normalized, not yet gated (the gate needs the store)."""

    normalized: Normalized
    parse_rejections: pd.DataFrame
    patients: list[Patient]
    encounters: list[Encounter]
    ignored: Counter[str]
    received: int


def prepare(piece: bytes, first_line: int, code_map: LocalCodeMap) -> Prepared:
    """Parse and normalize NDJSON lines (runs in a worker process).

    Raises `fhir.FHIRError` only for a first piece that is not NDJSON at all.
    """
    result = fhir.parse_ndjson(piece.splitlines(), first_line=first_line)
    parsed = result.parsed
    reported = reported_frame(parsed.reported)
    parse_rejections = rejection_frame(parsed.rejections)
    return Prepared(
        normalize(reported, code_map),
        parse_rejections,
        parsed.patients,
        parsed.encounters,
        result.ignored,
        len(reported) + len(parse_rejections),
    )


def store_prepared(pipeline: Pipeline, piece: Prepared) -> IngestSummary:
    """Gate and commit one piece."""
    with pipeline.engine.begin() as conn:
        summary = store_normalized(
            conn, pipeline, piece.normalized, patients=piece.patients,
            encounters=piece.encounters, parse_rejections=piece.parse_rejections,
            received=piece.received,
        )  # fmt: skip
    summary.ignored.update(piece.ignored)
    return summary


def pieces(content: bytes, size: int = PIECE_BYTES) -> Iterator[tuple[int, bytes]]:
    """(first line number, bytes) of consecutive pieces of about `size` bytes, whole lines.

    Pieces are slices of the document, not lists of lines: a worker receives one buffer,
    and this process never holds a million small line objects.
    """
    start, line = 0, 1
    while start < len(content):
        end = content.find(b"\n", min(start + size, len(content)) - 1)
        end = len(content) if end == -1 else end + 1
        yield line, content[start:end]
        line += content.count(b"\n", start, end)
        start = end


def ingest_ndjson(
    pipeline: Pipeline,
    content: bytes,
    progress: Callable[[int], None] | None = None,
    *,
    piece_bytes: int = PIECE_BYTES,
    parallel_from: int = PARALLEL_FROM_BYTES,
) -> IngestSummary:
    """Store one NDJSON document; on several cores when it is large enough to pay."""
    summary = IngestSummary(messages=1)
    workers = min(_cores(), 8)
    if len(content) < parallel_from or workers < 2:
        for first, piece in pieces(content, piece_bytes):
            summary.add(store_prepared(pipeline, prepare(piece, first, pipeline.code_map)))
            if progress:
                progress(len(piece))
        return summary
    # Objects alive now are frozen out of the collector: otherwise each forked worker's
    # first collection touches them all and copies the parent's memory page by page.
    gc.freeze()
    try:
        with _worker_pool(workers) as pool:
            work = pieces(content, piece_bytes)
            for size, prepared in _in_order(pool, pipeline.code_map, work, workers):
                summary.add(store_prepared(pipeline, prepared))
                if progress:
                    progress(size)
    finally:
        gc.unfreeze()
    return summary


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    # fork where it is the platform's way: workers start in milliseconds and inherit the
    # imported modules; elsewhere the platform default (spawn) costs a second per worker.
    methods = multiprocessing.get_all_start_methods()
    method = "fork" if "fork" in methods and os.name == "posix" else None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


def _in_order(
    pool: Executor,
    code_map: LocalCodeMap,
    work: Iterator[tuple[int, bytes]],
    workers: int,
) -> Iterator[tuple[int, Prepared]]:
    """Prepared pieces in file order, with a bounded number in flight."""
    in_flight: list[tuple[int, Future[Prepared]]] = []
    for first, piece in work:
        in_flight.append((len(piece), pool.submit(prepare, piece, first, code_map)))
        if len(in_flight) >= workers * _AHEAD:
            size, future = in_flight.pop(0)
            yield size, future.result()
    for size, future in in_flight:
        yield size, future.result()
