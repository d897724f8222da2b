"""Ingest throughput: PSV and FHIR in bulk, HL7 v2 over MLLP with ack-after-commit.

    python benchmarks/ingest.py [--psv PATH] [--patients N] [--hl7-messages N] [--no-postgres]

PSV defaults to set A from ../shared (unpacked to a temporary directory) when present, else
to the shipped sample. Each figure is measured on a fresh SQLite file and, when PostgreSQL
is installed, on a fresh private PostgreSQL server. Prints figures; asserts nothing.

Beside each rate: the CPU time it took per unit, of this process and of the processes it
started and waited for (bulk ingest's workers, the HL7 sender), not the database server's.
On a machine busy with other work the rate falls but the CPU time barely moves: compare that.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from wardwatch.demo import sample_dir
from wardwatch.ingest import mllp
from wardwatch.ingest.files import ingest_path
from wardwatch.ingest.listener import hl7_handler
from wardwatch.ingest.pipeline import Pipeline
from wardwatch.settings import Settings
from wardwatch.store import init_db, open_engine
from wardwatch.store.scratch import scratch_databases

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def fresh_pipeline(url: str, home: Path) -> Pipeline:
    engine = open_engine(url)
    if url.startswith("postgresql"):
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    else:
        Path(url.split("///")[1]).unlink(missing_ok=True)
    init_db(engine)
    return Pipeline.from_settings(engine, Settings(home=home))


def psv_source(path: str | None, patients: int | None, scratch: Path) -> Path:
    if path:
        source = Path(path)
    elif (SHARED / "physionet2019" / "training_setA.tar.gz").exists():
        source = SHARED / "physionet2019" / "training_setA.tar.gz"
    else:
        source = sample_dir() / "physionet_sample"
    if source.name.endswith(".tar.gz"):
        with tarfile.open(source) as archive:
            archive.extractall(scratch, filter="data")
        source = next(p.parent for p in scratch.rglob("*.psv"))
    if patients:
        chosen = scratch / "chosen"
        chosen.mkdir(exist_ok=True)
        for file in sorted(source.glob("*.psv"))[:patients]:
            if not (chosen / file.name).exists():  # the second database reuses the choice
                (chosen / file.name).symlink_to(file)
        source = chosen
    return source


def fhir_source(scratch: Path, copies: int) -> Path:
    """Synthea bundles replicated under fresh ids, as NDJSON (the bulk-data format).

    Bundle-internal "urn:uuid:" references become "Type/id" references, as in a bulk export.
    """
    resources = []
    for bundle_path in sorted((sample_dir() / "fhir").glob("*.json")):
        bundle = json.loads(bundle_path.read_text())
        resources += [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
    kept = [r for r in resources if r["resourceType"] in {"Patient", "Encounter", "Observation"}]
    kinds = {r["id"]: r["resourceType"] for r in kept}
    text = "\n".join(json.dumps(r) for r in kept)
    for ident, kind in kinds.items():
        text = text.replace(f"urn:uuid:{ident}", f"{kind}/{ident}")
    out = scratch / "bulk.ndjson"
    with out.open("w") as handle:
        for copy in range(copies):
            renamed = text
            for ident in kinds:
                renamed = renamed.replace(ident, f"{ident}-{copy}")
            handle.write(renamed + "\n")
    return out


def hl7_messages(n: int, results_per_message: int = 5) -> list[str]:
    start = datetime.now(UTC) - timedelta(days=1)
    codes = [("8867-4", "HR", "/min", 88), ("9279-1", "RR", "/min", 18),
             ("8310-5", "TEMP", "Cel", 37.2), ("2524-7", "LACTATE", "mmol/L", 1.4),
             ("777-3", "PLT", "10*3/uL", 210)]  # fmt: skip
    messages = []
    for i in range(n):
        at = (start + timedelta(seconds=i)).strftime("%Y%m%d%H%M%S")
        segments = [
            f"MSH|^~\\&|LAB|BENCH|WARDWATCH|ICU|{at}||ORU^R01|B{i:08d}|P|2.5.1",
            f"PID|1||MRN{i % 500:05d}^^^HOSP^MR||DOE^JANE||19600101|F",
            f"PV1|1|I|MICU^01^A||||||||||||||||V{i % 500:05d}",
            f"OBR|1||R{i}|24331-1^PANEL^LN|||{at}",
        ]
        for k, (code, name, unit, value) in enumerate(codes[:results_per_message], start=1):
            segments.append(f"OBX|{k}|NM|{code}^{name}^LN||{value}|{unit}|||||F|||{at}")
        messages.append("\r".join(segments))
    return messages


def timed(label: str, work: int, unit: str, action) -> None:
    started, cpu = time.perf_counter(), cpu_seconds()
    result = action()
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    rate = work / elapsed
    print(f"  {label:<28} {work:>10,} {unit} in {elapsed:6.2f} s = {rate:>10,.0f} {unit}/s, "
          f"cpu {cpu / work * 1e6:6.1f} µs/{unit}")  # fmt: skip
    return result


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have finished."""
    used = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(u.ru_utime + u.ru_stime for u in used)


def bench(name: str, url: str, args: argparse.Namespace, scratch: Path) -> None:
    print(f"\n{name}")
    psv_path = psv_source(args.psv, args.patients, scratch / "psv")
    pipeline = fresh_pipeline(url, scratch)
    summary = ingest_path(pipeline, psv_path)  # warm-up excluded: measure a second, fresh load
    pipeline = fresh_pipeline(url, scratch)
    summary = timed("PSV bulk", summary.received, "obs", lambda: ingest_path(pipeline, psv_path))
    print(f"    accepted {summary.accepted:,}, quarantined {summary.quarantined_total:,}")
    fhir_path = fhir_source(scratch, args.fhir_copies)
    pipeline = fresh_pipeline(url, scratch)
    summary = ingest_path(pipeline, fhir_path)
    pipeline = fresh_pipeline(url, scratch)
    timed("FHIR NDJSON bulk", summary.received, "obs", lambda: ingest_path(pipeline, fhir_path))
    for connections in args.connections:
        bench_mllp(url, scratch, args.hl7_messages, connections)


def _senders(host: str, port: int, shares: list[list[str]], go, results) -> None:
    """The interface engine: its own process, one thread per connection."""
    results.put("ready")
    go.wait()
    with ThreadPoolExecutor(len(shares)) as pool:
        jobs = [pool.submit(mllp.send, host, port, share, 60) for share in shares]
        acks = [ack for job in jobs for ack in job.result()]
    results.put((len(acks), sum("MSA|AA|" in a for a in acks)))


def bench_mllp(url: str, scratch: Path, n: int, connections: int) -> None:
    """Each connection waits for its ACK before sending the next message, as interface
    engines do; several connections (lab, monitors, ADT) share group commits. The senders
    run in a process of their own, as an interface engine does, so they do not share the
    listener's interpreter lock."""
    messages = hl7_messages(n)
    shares = [messages[i::connections] for i in range(connections)]
    pipeline = fresh_pipeline(url, scratch)
    handler = hl7_handler(pipeline)
    context = multiprocessing.get_context("spawn")
    results, go = context.Queue(), context.Event()
    with mllp.background_server(handler) as (host, port):
        sender = context.Process(target=_senders, args=(host, port, shares, go, results))
        sender.start()
        assert results.get(timeout=60) == "ready"  # its start-up is not timed

        def run() -> tuple[int, int]:
            go.set()
            answered = results.get(timeout=600)
            sender.join()
            return answered

        answered, accepted = timed(f"HL7 over MLLP ({connections} conn)", n, "msg", run)
    assert answered == accepted == n, (answered, accepted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--psv", help="a .psv directory or .tar.gz (default: set A or sample)")
    parser.add_argument("--patients", type=int, help="use only the first N patient files")
    parser.add_argument("--fhir-copies", type=int, default=200)
    parser.add_argument("--hl7-messages", type=int, default=5000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32, 64],
                        help="MLLP runs: how many connections send at once")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    databases = scratch_databases(not args.no_postgres, "bench")
    with tempfile.TemporaryDirectory() as tmp, databases as dbs:
        for name, url in dbs:
            bench(name, url, args, Path(tmp))


if __name__ == "__main__":
    main()
