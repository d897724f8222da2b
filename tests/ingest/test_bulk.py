"""Bulk FHIR NDJSON: pieces read by worker processes, stored in order, nothing lost or doubled."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from wardwatch.demo import sample_dir
from wardwatch.ingest import bulk
from wardwatch.ingest.files import ingest_path
from wardwatch.store.reads import quarantine_items
from wardwatch.store.schema import observations


def bulk_export() -> dict[str, list[dict]]:
    """The shipped Synthea bundles as a bulk export: one list of resources per type."""
    found: dict[str, list[dict]] = {"Patient": [], "Encounter": [], "Observation": []}
    for path in sorted((sample_dir() / "fhir").glob("*.json")):
        entries = json.loads(path.read_text())["entry"]
        kinds = {e["resource"]["id"]: e["resource"]["resourceType"] for e in entries}
        text = json.dumps([e["resource"] for e in entries])
        for ident, kind in kinds.items():  # bundle-internal references as in an export
            text = text.replace(f"urn:uuid:{ident}", f"{kind}/{ident}")
        for resource in json.loads(text):
            if resource["resourceType"] in found:
                found[resource["resourceType"]].append(resource)
    return found


def ndjson(resources: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in resources).encode()


def stored(pipeline) -> list[tuple]:
    query = select(observations.c.source_id, observations.c.loinc, observations.c.value,
                   observations.c.effective_at).order_by(observations.c.source_id)  # fmt: skip
    with pipeline.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def test_pieces_cover_the_document_on_line_boundaries():
    content = b"".join(b'{"n": %d}\n' % i for i in range(1000))
    parts = list(bulk.pieces(content, size=700))
    assert b"".join(piece for _, piece in parts) == content
    assert all(piece.endswith(b"\n") for _, piece in parts)
    starts = [first for first, _ in parts]
    assert starts[0] == 1
    assert starts == [1 + sum(p.count(b"\n") for _, p in parts[:i]) for i in range(len(parts))]


def test_on_worker_processes_the_store_holds_what_one_process_stores(pipeline, tmp_path):
    export = bulk_export()
    content = ndjson(export["Patient"] + export["Encounter"] + export["Observation"])
    serial = bulk.ingest_ndjson(pipeline, content, piece_bytes=1 << 30, parallel_from=1 << 40)
    expected = stored(pipeline)
    assert serial.accepted == len(expected) > 500
    with pipeline.engine.begin() as conn:
        conn.execute(observations.delete())
    # Small pieces: many of them, on worker processes, committed in file order.
    parallel = bulk.ingest_ndjson(pipeline, content, piece_bytes=20_000, parallel_from=0)
    assert (parallel.received, parallel.accepted) == (serial.received, serial.accepted)
    assert parallel.quarantined == serial.quarantined
    assert stored(pipeline) == expected


def test_a_bad_line_late_in_a_file_is_quarantined_with_its_line_number(pipeline):
    export = bulk_export()
    good = ndjson(export["Patient"] + export["Observation"][:200])
    content = good + b'{"resourceType": "Observation", "status": \n'
    summary = bulk.ingest_ndjson(pipeline, content, piece_bytes=10_000, parallel_from=0)
    assert summary.quarantined["malformed_json"] == 1
    line = good.count(b"\n") + 1
    with pipeline.engine.connect() as conn:
        reasons = [item["reason"] for item in quarantine_items(conn)]
    assert any(reason.startswith(f"line {line}: not valid JSON") for reason in reasons), reasons


def test_a_bulk_export_directory_reads_patients_before_their_observations(pipeline, tmp_path):
    """Alphabetically Observation.ndjson comes first; its results must not be refused."""
    export = bulk_export()
    folder = tmp_path / "export"
    folder.mkdir()
    for kind, resources in export.items():
        (folder / f"{kind}.ndjson").write_bytes(ndjson(resources))
    summary = ingest_path(pipeline, Path(folder))
    assert summary.accepted > 500
    assert summary.quarantined["unknown_patient"] == 0
