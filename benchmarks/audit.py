"""Audit chain throughput: appends per second (batched and one at a time) and verify speed.

    python benchmarks/audit.py [--appends N] [--batch N] [--single N] [--verify N] [--no-postgres]

Appends are measured on a fresh SQLite file and, when PostgreSQL is installed, on a fresh
private (durable) PostgreSQL server: `--appends` records in transactions of `--batch` records
(target: 20,000 records/s or more), then `--single` records one per transaction, as a web
request that audits one read would. Verify is then timed on a chain of `--verify` records
(default one million) on each database, with its peak memory. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, select

from wardwatch.security.audit import AuditEvent, audit_events, record, record_many
from wardwatch.security.audit_verify import verify
from wardwatch.store import init_db, open_engine
from wardwatch.store.scratch import scratch_databases

ACTIONS = ("patient.read", "score.create", "alert.open", "alert.dismiss", "what_if")


def fresh(url: str) -> Engine:
    engine = open_engine(url)
    if url.startswith("postgresql"):
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    init_db(engine)
    return engine


def events(start: int, n: int) -> list[AuditEvent]:
    now = datetime.now(UTC)
    return [
        AuditEvent(ACTIONS[i % 5], actor=f"user{i % 40}", role="nurse", patient_id=f"p{i % 5000}",
                   encounter_id=f"e{i % 5000}", object=f"alert/{i}", source="10.20.30.40",
                   detail={"unit": "MICU", "reason": "reviewed"}, at=now)
        for i in range(start, start + n)
    ]  # fmt: skip


def line(label: str, work: int, unit: str, elapsed: float) -> None:
    rate = work / elapsed if elapsed else float("inf")
    print(f"  {label:<34} {work:>10,} {unit} in {elapsed:7.2f} s = {rate:>10,.0f} {unit}/s")


def append_batched(engine: Engine, total: int, batch: int) -> float:
    items = events(0, total)  # built before the clock starts: we time the audit, not the caller
    started = time.perf_counter()
    for start in range(0, total, batch):
        with engine.begin() as conn:
            record_many(conn, items[start : start + batch])
    return time.perf_counter() - started


def fill(engine: Engine, total: int, batch: int = 10_000) -> None:
    """Untimed, a batch of events at a time: verify's memory is then measured on its own."""
    for start in range(0, total, batch):
        with engine.begin() as conn:
            record_many(conn, events(start, min(batch, total - start)))


def append_single(engine: Engine, total: int) -> float:
    items = events(0, total)
    started = time.perf_counter()
    for item in items:
        with engine.begin() as conn:
            record(conn, item)
    return time.perf_counter() - started


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(audit_events)) or 0)


def peak_rss_mb(reset: bool = False) -> float:
    """Linux's peak resident set (VmHWM) in MB; `reset` restarts it (/proc/self/clear_refs 5),
    so verify's own peak is seen, not the appends' before it. 0 where /proc is missing."""
    try:
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0.0
    kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
    return int(kb) / 1024


def time_verify(engine: Engine) -> None:
    gc.collect()
    before = peak_rss_mb(reset=True)
    started = time.perf_counter()
    with engine.connect() as conn:
        result = verify(conn)
    elapsed = time.perf_counter() - started
    line("verify", result.records, "records", elapsed)
    print(f"    intact: {result.intact}; peak memory {before:,.0f} MB before, "
          f"{peak_rss_mb():,.0f} MB during verify")  # fmt: skip


def bench(name: str, url: str, args: argparse.Namespace) -> None:
    print(f"\n{name}")
    engine = fresh(url)
    line(f"append, batches of {args.batch:,}", args.appends, "records",
         append_batched(engine, args.appends, args.batch))  # fmt: skip
    line("append, one per transaction", args.single, "records", append_single(engine, args.single))
    if args.verify > count(engine):
        missing = args.verify - count(engine)
        print(f"  (filling to {args.verify:,} records for verify ...)")
        fill(engine, missing)
    time_verify(engine)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appends", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--single", type=int, default=2000)
    parser.add_argument("--verify", type=int, default=1_000_000, help="chain length to verify")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with scratch_databases(not args.no_postgres, "audit-bench") as found:
        for name, url in found:
            bench(name, url, args)


if __name__ == "__main__":
    main()
