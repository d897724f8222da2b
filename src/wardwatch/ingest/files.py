"""`wardwatch ingest PATH`: recognise what a path holds and send it down the pipeline.

A path may be a PhysioNet .psv file, a directory or .tar.gz of them, FHIR JSON / NDJSON
files, HL7 v2 files, or a directory or archive mixing these. Each kind is recognised by its
name and, for archives, by their members.
"""

from __future__ import annotations

import functools
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

from wardwatch.domain import rejection_frame
from wardwatch.ingest import bulk, fhir, hl7v2, psv
from wardwatch.ingest.listener import store_hl7_message
from wardwatch.ingest.pipeline import IngestSummary, Pipeline, store_batch, store_parsed

Progress = Callable[[int], None]  # called with how many units of work were just finished

FHIR_SUFFIXES = (".json", ".ndjson")
HL7_SUFFIXES = (".hl7", ".hl7v2", ".oru")


class IngestError(ValueError):
    """A path that wardwatch cannot read at all (the message says what it expected)."""


def _noop(_n: int) -> None:
    return None


def kinds_in(path: Path) -> list[str]:
    """Which of "psv", "fhir", "hl7" the path holds, in the order they are ingested."""
    if not path.exists():
        raise IngestError(f"{path}: no such file or directory")
    found = {_kind_of_name(n) for n in _member_names(path)}
    kinds = [kind for kind in INGESTERS if kind in found]
    if not kinds:
        raise IngestError(
            f"{path}: found no .psv, .json, .ndjson or .hl7 files; "
            "give a PhysioNet .psv file/directory/.tar.gz, FHIR JSON or NDJSON, or HL7 v2 files"
        )
    return kinds


def _kind_of_name(name: str) -> str | None:
    if name.endswith(".psv"):
        return "psv"
    if name.endswith(FHIR_SUFFIXES):
        return "fhir"
    if name.endswith(HL7_SUFFIXES):
        return "hl7"
    return None


def _member_names(path: Path) -> list[str]:
    if path.is_dir():
        return [str(p) for p in sorted(path.rglob("*")) if p.is_file()]
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return list(_archive_listing(path, path.stat().st_mtime_ns))
    return [path.name]


@functools.lru_cache(maxsize=8)
def _archive_listing(path: Path, _mtime_ns: int) -> tuple[str, ...]:
    """Listing a .tar.gz decompresses all of it; recognising its kind, sizing the progress
    bar and ingesting it would otherwise do that three times (keyed on mtime: a rewritten
    archive is listed afresh)."""
    with tarfile.open(path) as archive:
        return tuple(m.name for m in archive if m.isfile())


def resource_order(name: str) -> int:
    """FHIR files holding Patients are read first, then Encounters, then the rest.

    The gate quarantines an observation whose patient is not known yet, and a bulk export
    names its files by type: alphabetically, Observation.ndjson comes before Patient.ndjson.
    """
    base = Path(name).name.lower()
    return 0 if "patient" in base else 1 if "encounter" in base else 2


def _documents(path: Path, kind: str) -> Iterator[tuple[str, bytes]]:
    """(name, content) of every file of `kind` under `path` (FHIR in `resource_order`)."""
    rank = resource_order if kind == "fhir" else (lambda _name: 0)
    if path.is_dir():
        items = [p for p in path.rglob("*") if p.is_file() and _kind_of_name(p.name) == kind]
        for item in sorted(items, key=lambda p: (rank(p.name), str(p))):
            yield str(item), item.read_bytes()
    elif path.name.endswith((".tar.gz", ".tgz", ".tar")):
        names = [n for n in _archive_listing(path, path.stat().st_mtime_ns)
                 if _kind_of_name(n) == kind]  # fmt: skip
        for wanted in sorted({rank(n) for n in names}):  # one pass over the archive per rank
            with tarfile.open(path) as archive:
                for member in archive:
                    if not member.isfile() or _kind_of_name(member.name) != kind:
                        continue
                    handle = archive.extractfile(member)
                    if handle is not None and rank(member.name) == wanted:
                        yield member.name, handle.read()
    elif _kind_of_name(path.name) == kind:
        yield str(path), path.read_bytes()


def work_units(path: Path) -> int:
    """How many units `ingest_path` reports progress in (patients for PSV, files otherwise)."""
    return len([n for n in _member_names(path) if _kind_of_name(n)])


def ingest_psv(pipeline: Pipeline, path: Path, progress: Progress = _noop) -> IngestSummary:
    summary = IngestSummary()
    chunks = psv.iter_checked(path, patients_per_chunk=pipeline.settings.psv_patients_per_batch)
    for wide, turned_away in chunks:
        patients, encounters = psv.patients_and_encounters(wide)
        with pipeline.engine.begin() as conn:
            part = store_batch(
                conn, pipeline, psv.reported_rows(wide), patients=patients,
                encounters=encounters, parse_rejections=rejection_frame(turned_away),
            )  # fmt: skip
        summary.add(part)
        progress(len(patients))
    return summary


def ingest_fhir(pipeline: Pipeline, path: Path, progress: Progress = _noop) -> IngestSummary:
    summary = IngestSummary()
    for name, content in _documents(path, "fhir"):
        try:
            if name.endswith(".ndjson"):
                summary.add(bulk.ingest_ndjson(pipeline, content))
            else:
                result = fhir.parse_json(content)
                part = store_parsed(pipeline, result.parsed)
                part.ignored.update(result.ignored)
                summary.add(part)
        except fhir.FHIRError as error:
            summary.errors.append(f"{name}: {error}")
        progress(1)
    return summary


def ingest_hl7(pipeline: Pipeline, path: Path, progress: Progress = _noop) -> IngestSummary:
    summary = IngestSummary()
    for name, content in _documents(path, "hl7"):
        for text in hl7v2.split_messages(content.decode("utf-8", errors="replace")):
            summary.add(store_hl7_message(pipeline, text, origin=name)[0])
        progress(1)
    return summary


INGESTERS: dict[str, Callable[[Pipeline, Path, Progress], IngestSummary]] = {
    "psv": ingest_psv,
    "fhir": ingest_fhir,
    "hl7": ingest_hl7,
}


def ingest_path(pipeline: Pipeline, path: Path, progress: Progress = _noop) -> IngestSummary:
    """Ingest everything under `path`; returns counts of what was accepted, duplicate, kept out."""
    path = Path(path)
    summary = IngestSummary()
    for kind in kinds_in(path):
        summary.add(INGESTERS[kind](pipeline, path, progress))
    return summary
