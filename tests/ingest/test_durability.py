"""Fail loud, lose nothing: a process killed mid-ingest keeps every committed batch whole,
and an acknowledged HL7 message is in the database even if the listener dies right after."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import wait_for_port
from tests.ingest.test_bulk import bulk_export, ndjson

from wardwatch.ingest import bulk, fhir, mllp, psv

PSV_DIR = Path(__file__).resolve().parents[1] / "data" / "psv"


def many_patients(folder: Path, copies: int) -> Path:
    folder.mkdir()
    for i in range(copies):
        for source in sorted(PSV_DIR.glob("*.psv")):
            shutil.copy(source, folder / f"p{i:03d}{source.stem[1:]}.psv")
    return folder


def wardwatch(*args: str, home: Path, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "WARDWATCH_HOME": str(home), **env}
    environment.pop("WARDWATCH_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "wardwatch", *args], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def stored(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []


def test_a_killed_ingest_keeps_whole_batches_and_a_rerun_fills_the_gap(tmp_path):
    data = many_patients(tmp_path / "psv", copies=40)
    expected = psv.read_cohort(data)
    per_patient = expected.groupby("patient_id")[list(psv.MEASURED)].count().sum(axis=1)
    db = tmp_path / "home" / "wardwatch.db"
    process = wardwatch("ingest", str(data), home=tmp_path / "home",
                        WARDWATCH_PSV_PATIENTS_PER_BATCH="1")  # fmt: skip
    deadline = time.monotonic() + 120
    while not stored(db, "SELECT 1 FROM observations LIMIT 1") and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    counts = dict(stored(db, "SELECT patient_id, count(*) FROM observations GROUP BY patient_id"))
    assert 0 < len(counts) < len(per_patient), "the kill must land mid-ingest"
    for patient, n in counts.items():  # every committed patient is complete: no torn batch
        assert n == per_patient[patient]
    rerun = wardwatch("ingest", str(data), home=tmp_path / "home")
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output.decode()
    total = stored(db, "SELECT count(*) FROM observations")[0][0]
    assert total == int(per_patient.sum())


def many_exports(copies: int) -> bytes:
    """The sample bulk export again and again, each copy under ids of its own."""
    export = bulk_export()
    text = ndjson(export["Patient"] + export["Encounter"] + export["Observation"]).decode()
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    return "".join(uuid.sub(rf"\g<0>-{i}", text) for i in range(copies)).encode()


def test_a_killed_bulk_fhir_ingest_keeps_whole_pieces_and_a_rerun_fills_the_gap(tmp_path):
    content = many_exports(copies=100)
    spans = list(bulk.spans(content))
    # Pieces are committed in groups: the kill can land between the first group and the rest.
    assert len(content) > bulk.COMMIT_BYTES + bulk.PIECE_BYTES, "too small to commit twice"
    data = tmp_path / "export.ndjson"
    data.write_bytes(content)
    db = tmp_path / "home" / "wardwatch.db"
    process = wardwatch("ingest", str(data), home=tmp_path / "home")
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    while not stored(db, "SELECT 1 FROM observations LIMIT 1") and time.monotonic() < deadline:
        workers |= _children(process.pid)
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    kept = {row[0] for row in stored(db, "SELECT source_id FROM observations")}
    rerun = wardwatch("ingest", str(data), home=tmp_path / "home")
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output.decode()
    everything = {row[0] for row in stored(db, "SELECT source_id FROM observations")}
    assert stored(db, "SELECT count(*) FROM observations")[0][0] == len(everything)
    # What the kill left is whole pieces, the first ones of the file: no torn piece.
    pieces = [_observation_ids(content, span) & everything for span in spans]
    committed = [piece for piece in pieces if piece & kept]
    assert 0 < len(committed) < len(pieces), "the kill must land mid-ingest"
    assert kept == set().union(*pieces[: len(committed)])
    time.sleep(2.5)  # the workers of the killed ingest notice it is gone (they look each second)
    assert not [pid for pid in workers if _running(pid)], "workers outlived the killed ingest"


def _observation_ids(content: bytes, span: bulk.Span) -> set[str]:
    lines = content[span.start : span.end].splitlines()
    parsed = fhir.parse_ndjson(lines, first_line=span.first_line).parsed
    return {r.source_id for r in parsed.reported}


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:  # not Linux, or the process is gone
        return set()


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_an_acknowledged_message_survives_the_listener_being_killed(tmp_path):
    home = tmp_path / "home"
    port = _free_port()
    server = wardwatch("mllp", "--port", str(port), home=home)
    try:
        wait_for_port(port, timeout=60)
        messages = [_message(i) for i in range(30)]
        acks = mllp.send("127.0.0.1", port, messages, timeout=30)
    finally:
        server.send_signal(signal.SIGKILL)
        server.communicate()
    assert all("MSA|AA|" in ack for ack in acks)
    db = home / "wardwatch.db"
    assert stored(db, "SELECT count(*) FROM receipts")[0][0] == 30
    assert stored(db, "SELECT count(*) FROM observations")[0][0] == 60


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _message(i: int) -> str:
    return "\r".join([
        f"MSH|^~\\&|LAB|KILLTEST|WARDWATCH|ICU|20240301080000||ORU^R01|K{i:05d}|P|2.5.1",
        f"PID|1||MRN{i:05d}^^^HOSP^MR||DOE^JANE||19600101|F",
        "OBR|1||R1|24331-1^PANEL^LN|||20240301075500",
        "OBX|1|NM|8867-4^HEART RATE^LN||88|/min|||||F|||20240301075500",
        "OBX|2|NM|2524-7^LACTATE^LN||2.4|mmol/L|||||F|||20240301075500",
    ])  # fmt: skip


if sys.platform == "win32":  # pragma: no cover - signals differ
    pytestmark = pytest.mark.skip("POSIX signals")
