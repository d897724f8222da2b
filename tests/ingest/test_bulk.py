"""Bulk FHIR NDJSON: pieces read by worker processes, stored in order, nothing lost or doubled."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from sqlalchemy import Engine, func, select

from wardwatch.demo import sample_dir
from wardwatch.ingest import bulk, fhir
from wardwatch.ingest.files import ingest_path
from wardwatch.ingest.pipeline import store_parsed
from wardwatch.store import writes
from wardwatch.store.reads import quarantine_items
from wardwatch.store.schema import encounters, observations, patients, quarantine
from wardwatch.terminology.loinc import variable_for


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
    content = b"".join(b'{"n": %d}\n' % i for i in range(1000)) + b'{"n": "last"}'
    spans = list(bulk.spans(content, size=700))
    parts = [content[span.start : span.end] for span in spans]
    assert b"".join(parts) == content
    assert all(piece.endswith(b"\n") for piece in parts[:-1])
    starts = [span.first_line for span in spans]
    assert starts == [1 + sum(p.count(b"\n") for p in parts[:i]) for i in range(len(parts))]


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


def test_pieces_are_committed_in_groups_and_progress_counts_what_is_committed(pipeline):
    export = bulk_export()
    content = ndjson(export["Patient"] + export["Encounter"] + export["Observation"])
    spans = list(bulk.spans(content, 20_000))
    sizes = [span.end - span.start for span in spans]
    assert len(spans) >= 7
    seen: list[tuple[int, int]] = []  # (bytes reported, observations stored by then)

    def progress(done: int) -> None:
        with pipeline.engine.connect() as other:  # another connection sees only what is committed
            seen.append((done, other.execute(select(func.count()).select_from(observations)
                                             ).scalar_one()))  # fmt: skip

    summary = bulk.ingest_ndjson(pipeline, content, progress, piece_bytes=20_000,
                                 parallel_from=0, commit_bytes=60_000)  # fmt: skip
    reported = [done for done, _ in seen]
    assert sum(reported) == len(content)
    # Each report is a commit of whole consecutive pieces, at least 60,000 bytes but the last.
    bounds, at = [], 0
    for done in reported:
        at += done
        bounds.append(at)
    piece_ends = {sum(sizes[: i + 1]) for i in range(len(sizes))}
    assert set(bounds) <= piece_ends
    assert all(done >= 60_000 for done in reported[:-1])
    assert len(reported) < len(spans), "pieces were committed one by one"
    stored_then = [count for _, count in seen]
    assert stored_then == sorted(stored_then) and stored_then[0] > 0
    assert stored_then[-1] == summary.accepted


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


def messy_export() -> bytes:
    """The sample export with an observation for every way of being turned away, a line that
    is not JSON, and ten observations sent twice."""
    export = bulk_export()
    found = copy.deepcopy(export["Observation"])
    later = found[10:]  # the first ten are resent, and changed below
    glucose = [o for o in later if variable_of(o) == "Glucose"]
    glucose[0]["valueQuantity"]["value"] = 1e6  # implausible
    glucose[1]["valueQuantity"]["unit"] = glucose[1]["valueQuantity"]["code"] = "km"
    glucose[2].pop("valueQuantity")
    glucose[2]["valueString"] = "pending"  # a model variable without a number
    other = next(o for o in later if variable_of(o) is None and "valueQuantity" in o)
    other.pop("valueQuantity")
    other["valueString"] = "see report"  # text, for a code no model variable reads
    found[0]["effectiveDateTime"] = "2099-01-01T00:00:00Z"  # in the future
    found[1]["effectiveDateTime"] = "1970-01-01T00:00:00Z"  # too old
    found[2]["subject"] = {"reference": "Patient/nobody"}  # unknown patient
    found[3]["code"]["coding"] = [{"system": "urn:local", "code": "X1"}]  # unmapped
    found[4]["status"] = "bogus"  # refused by the parser
    lines = ndjson(export["Patient"] + export["Encounter"] + found[:300])
    lines += b'{"resourceType": "Observation", "status": \n'  # not JSON
    return lines + ndjson(found[300:] + found[:10])


def variable_of(observation: dict) -> str | None:
    return variable_for(observation["code"]["coding"][0]["code"])


def tables(engine: Engine) -> dict[str, list[tuple]]:
    """Every stored row, but ids and the moments of writing. On SQLite as stored on disk
    (times are text there, and queries compare that text)."""
    found = {}
    with engine.connect() as conn:
        for table in (patients, encounters, observations, quarantine):
            names = [c.name for c in table.columns
                     if c.name not in ("id", "received_at", "created_at")]  # fmt: skip
            rows = conn.exec_driver_sql(f"SELECT {', '.join(names)} FROM {table.name}")
            found[table.name] = sorted(rows, key=repr) if table is quarantine else list(rows)
    # The reason for a time in the future says what time it was.
    found["quarantine"] = [tuple(re.sub(r"now [0-9: -]+ UTC", "now", str(v)) for v in row)
                           for row in found["quarantine"]]  # fmt: skip
    return found


def emptied(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in (observations, quarantine, encounters, patients):
            conn.execute(table.delete())


def test_rows_prepared_on_workers_are_stored_as_one_process_stores_them(pipeline, monkeypatch):
    """Workers build the rows the gate reads and the database binds; what lands in every
    table is exactly what the one-document path (which builds them itself) writes."""
    content = messy_export()
    parsed = fhir.parse_ndjson(content.splitlines())
    one = store_parsed(pipeline, parsed.parsed)
    expected = tables(pipeline.engine)
    emptied(pipeline.engine)
    # The workers' small pieces take the way a large batch's text goes (see _arrow_texts).
    monkeypatch.setattr(writes, "_SHARED_TEXT_FROM", 2)
    on_workers = bulk.ingest_ndjson(pipeline, content, piece_bytes=40_000, parallel_from=0)
    assert set(one.quarantined) == {
        "future_time", "implausible", "invalid", "malformed_json", "not_numeric", "too_old",
        "unit_mismatch", "unknown_patient", "unmapped_code",
    }  # fmt: skip
    assert on_workers.quarantined == one.quarantined
    assert (on_workers.received, on_workers.accepted) == (one.received, one.accepted)
    assert on_workers.duplicates == one.duplicates > 0
    assert tables(pipeline.engine) == expected
    assert len(expected["observations"]) == one.accepted > 500
