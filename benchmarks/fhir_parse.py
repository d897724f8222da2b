"""Observations per second through `wardwatch.ingest.fhir`, on the shared Synthea bundles.

    .venv/bin/python benchmarks/fhir_parse.py [--observations 100000] [--data DIR]

The two Synthea bundles are replicated until about `--observations` Observations; each copy gets
its own clock times (minute and second rewritten) so no cache sees the same bundle twice. Lines:

    bundles, JSON bytes        parse_json(bytes) per bundle: decoding included, end to end
    bundles, decoded dicts     parse_json(dict): the parser alone, JSON decoding excluded
    bundles, decoding only     pydantic_core.from_json: the floor the bundle figure sits on
    NDJSON Observation lines   parse_ndjson on a bulk-data style Observation.ndjson
    NDJSON all resources       the same with every other resource type mixed in (counted, unread)
    NDJSON rows (bulk ingest)  the same as tuples (rows=True), as bulk ingest reads it
    strict (full R4B)          parse_json(dict, strict=True) on a slice, for comparison
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic_core

from wardwatch.ingest.fhir import parse_json, parse_ndjson

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "fhir"
BUNDLES = ("synthea_patient_a.json", "synthea_patient_c.json")
CLOCK = re.compile(rb"(T\d\d):\d\d:\d\d")
URN = re.compile(r'"(urn:uuid:[0-9a-fA-F-]+)"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=SHARED)
    args = parser.parse_args()
    originals = [(args.data / name).read_bytes() for name in BUNDLES]
    per_round = sum(_observation_count(raw) for raw in originals)
    rounds = -(-args.observations // per_round)
    copies = [_retimed(raw, k) for k in range(rounds) for raw in originals]
    total = per_round * rounds
    print(f"{len(copies)} bundles, {total:,} Observations, {sum(map(len, copies)) / 1e6:.0f} MB")
    decoded = [pydantic_core.from_json(raw) for raw in copies]
    observation_lines = [line for d in decoded for line in _ndjson(d, only="Observation")]
    all_lines = [line for d in decoded for line in _ndjson(d)]
    gc.freeze()  # the inputs are not the parser's garbage to scan
    _report("bundles, JSON bytes", total, lambda: _each(parse_json, copies))
    _report("bundles, decoded dicts", total, lambda: _each(parse_json, decoded))
    _report("bundles, decoding only", total, lambda: _each(pydantic_core.from_json, copies))
    _report("NDJSON Observation lines", total, lambda: parse_ndjson(observation_lines))
    _report("NDJSON all resources", total, lambda: parse_ndjson(all_lines))
    _report("NDJSON rows (bulk ingest)", total, lambda: parse_ndjson(all_lines, rows=True))
    few = decoded[: max(2, len(decoded) // 20)]
    few_total = sum(_observation_count_decoded(d) for d in few)
    _report("strict (full R4B)", few_total, lambda: _each(strict, few))


def strict(document: dict) -> object:
    return parse_json(document, strict=True)


def _each(parse: Callable[[Any], object], documents: list[Any]) -> None:
    """One document at a time, each result dropped as a pipeline would hand it on."""
    for document in documents:
        parse(document)


def _report(label: str, observations: int, run: Callable[[], object]) -> None:
    """Best of three; CPU time of this process (the machine may be shared), and wall time."""
    cpu, wall = min(_timed(run) for _ in range(3))
    print(f"{label:26s} {observations / cpu:>10,.0f} Observations/s CPU "
          f"({cpu:.2f} s; wall {wall:.2f} s)")  # fmt: skip


def _timed(run: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return time.process_time() - cpu, time.perf_counter() - wall


def _retimed(raw: bytes, k: int) -> bytes:
    """The bundle with every hh:mm:ss given minute and second from k (still valid FHIR)."""
    clock = f":{k // 60 % 60:02d}:{k % 60:02d}".encode()
    return CLOCK.sub(lambda m: m[1] + clock, raw)


def _observation_count(raw: bytes) -> int:
    return _observation_count_decoded(pydantic_core.from_json(raw))


def _observation_count_decoded(bundle: dict) -> int:
    return sum(e["resource"]["resourceType"] == "Observation" for e in bundle["entry"])


def _ndjson(bundle: dict, only: str | None = None) -> list[str]:
    """The bundle's resources as bulk-data lines: urn:uuid references become Type/id."""
    local = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
             for e in bundle["entry"]}  # fmt: skip
    lines = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if only is None or resource["resourceType"] == only:
            text = json.dumps(resource, separators=(",", ":"))
            lines.append(URN.sub(lambda m: f'"{local.get(m[1], m[1])}"', text))
    return lines


if __name__ == "__main__":
    main()
