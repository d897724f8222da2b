"""A bad PhysioNet file in a feed is turned away with its reason; the rest of the feed lands.

Before, one value that was not a number stopped `wardwatch ingest` of a whole directory with a
traceback. Now: a bad value is quarantined alone (its row's other values are stored), a row
without an hour is quarantined, a file that is not a PhysioNet file or cannot be parsed is
quarantined whole, and every good file is stored as if it had come alone.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from sqlalchemy import func, select

from wardwatch.demo import sample_dir
from wardwatch.ingest.files import ingest_path
from wardwatch.store.schema import observations, quarantine


def sample_files(into: Path, count: int) -> list[Path]:
    with tarfile.open(sample_dir() / "physionet_sample" / "setA_sample.tar.gz") as archive:
        archive.extractall(into, filter="data")
    return sorted(into.rglob("*.psv"))[:count]


def stored_values(engine, patient: str) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(observations.c.patient_id == patient)
        return conn.execute(query).scalar_one()


def test_bad_values_rows_and_files_are_quarantined_and_the_rest_is_stored(pipeline, tmp_path):
    clean_dir, feed = tmp_path / "clean", tmp_path / "feed"
    files = sample_files(tmp_path / "all", 4)
    for directory in (clean_dir, feed):
        directory.mkdir()
        for path in files:
            (directory / path.name).write_bytes(path.read_bytes())
    first, second = (feed / files[0].name), (feed / files[1].name)
    lines = first.read_text().split("\n")
    cells = lines[3].split("|")
    assert cells[0] != ""  # HR was measured in that hour: it is the value made bad
    cells[0] = "eighty"
    lines[3] = "|".join(cells)
    first.write_text("\n".join(lines))
    lines = second.read_text().split("\n")
    cells = lines[2].split("|")
    cells[39] = ""  # ICULOS: the row has no hour
    lines[2] = "|".join(cells)
    second.write_text("\n".join(lines))
    garbage = b"this is not a PhysioNet file\n1|2\n"
    (feed / "p999999.psv").write_bytes(garbage)
    header = files[2].read_text().split("\n")[0]
    ragged = f"{header}\n{'|'.join(['1'] * 60)}\n".encode()
    (feed / "p999998.psv").write_bytes(ragged)

    summary = ingest_path(pipeline, feed)

    assert summary.quarantined["not_numeric"] == 1
    assert summary.quarantined["no_hour"] == 1
    assert summary.quarantined["unreadable_file"] == 1
    assert summary.quarantined["ragged_row"] == 1
    assert summary.received == summary.accepted + summary.duplicates + sum(
        summary.quarantined.values()
    )
    with pipeline.engine.connect() as conn:
        kept = {
            row.reason_code: row
            for row in conn.execute(select(quarantine))
            if row.reason_code in ("not_numeric", "no_hour")
        }
        whole = {
            row.source_id: row.payload
            for row in conn.execute(
                select(quarantine).where(quarantine.c.reason_code == "unreadable_file")
            )
        }
    pid = files[0].name.removesuffix(".psv")
    assert (
        kept["not_numeric"].source_id.startswith(f"{pid}|")
        and "HR 'eighty'" in kept["not_numeric"].reason
    )
    assert kept["not_numeric"].payload == first.read_text().split("\n")[3]
    assert "ICULOS" in kept["no_hour"].reason
    assert whole == {"p999999.psv": garbage.decode()}
    with pipeline.engine.connect() as conn:
        misaligned = conn.execute(
            select(quarantine.c.payload, quarantine.c.reason).where(
                quarantine.c.reason_code == "ragged_row"
            )
        ).one()
    assert misaligned.payload == ragged.decode().split("\n")[1]
    assert "60 fields where the header has 41" in misaligned.reason

    # What the bad file still held landed: all but the one bad HR (and the unplaced row's
    # values) compared with the clean copy ingested into a fresh store of its own.
    bad_first, bad_second = (
        stored_values(pipeline.engine, pid),
        stored_values(pipeline.engine, files[1].name.removesuffix(".psv")),
    )
    untouched = [stored_values(pipeline.engine, f.name.removesuffix(".psv")) for f in files[2:]]
    with pipeline.engine.begin() as conn:
        conn.execute(observations.delete())
        conn.execute(quarantine.delete())
    ingest_path(pipeline, clean_dir)
    assert bad_first == stored_values(pipeline.engine, pid) - 1
    row_values = sum(1 for v in files[1].read_text().split("\n")[2].split("|")[:34] if v != "NaN")
    assert bad_second == stored_values(pipeline.engine, files[1].name.removesuffix(".psv")) - (
        row_values
    )
    assert untouched == [
        stored_values(pipeline.engine, f.name.removesuffix(".psv")) for f in files[2:]
    ]
