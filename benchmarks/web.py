"""Web latency and throughput: the worklist page and the CDS Hooks patient-view card.

    .venv/bin/python benchmarks/web.py [--home DIR] [--clients 8] [--seconds 10]

Builds the demo ward (`wardwatch.demo`: the shipped sample replayed through the live pipeline,
72 hours in, about 40 stays on the ward), serves the real app with uvicorn in a *subprocess*
(clients and server in one process would share a GIL and measure each other), and drives it
with concurrent httpx clients, one thread each, for a fixed time. Reported per target:
requests/s, p50/p90/p99 latency and errors, once with one client (latency without queueing)
and once with `--clients` (throughput). The CDS card is also timed on its first view of each
patient (the explanation is computed then; later views read the card cache).

Targets: patient-view p99 < 100 ms, at least 200 requests/s. The worklist page is measured
when the pages are there (`GET /ward`, else `GET /api/patients`, else skipped with a note).
Figures depend on the machine and on what else runs on it: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

CDS = "/cds-services/wardwatch-sepsis"
SIGNED_IN: dict[str, str] = {}  # the session cookie every client sends (set in `benchmark`)


# ---------------------------------------------------------------- the ward and the server


def build_ward(home: Path, hours: int) -> None:
    from rich.console import Console

    from wardwatch.demo import fresh_pipeline, start_ward

    started = time.perf_counter()
    start_ward(fresh_pipeline(home), Console(quiet=True), warm_up_hours=hours)
    print(f"demo ward built in {time.perf_counter() - started:.0f} s: {home / 'wardwatch.db'}")


def sign_in(home: Path) -> None:
    """A provider's session on the demo ward: every benchmark client sends its cookie (the
    CDS calls too: a signed-in person may read a card, as an EHR's JWT may)."""
    from wardwatch.security import sessions
    from wardwatch.security.demo_users import demo_session
    from wardwatch.settings import Settings
    from wardwatch.store import open_engine

    engine = open_engine(Settings(home=home).resolved_database_url)
    SIGNED_IN[sessions.COOKIE] = demo_session(engine, "dr.snow", source="benchmark").token
    engine.dispose()


def present_stays(home: Path) -> list[tuple[str, str]]:
    from wardwatch.settings import Settings
    from wardwatch.store import open_engine
    from wardwatch.ward import worklist

    engine = open_engine(Settings(home=home).resolved_database_url)
    with engine.connect() as conn:
        stays = [(b.patient_id, b.encounter_id) for b in worklist(conn)]
    engine.dispose()
    return stays


def serve(home: Path, port: int) -> None:
    """The server subprocess: the real app on the ward, no background ward rounds."""
    import uvicorn

    from wardwatch.alerts.policy import PolicyBook
    from wardwatch.ingest.pipeline import Pipeline
    from wardwatch.model.artifact import load_shipped_model
    from wardwatch.settings import Settings
    from wardwatch.store import open_engine
    from wardwatch.web.app import create_app
    from wardwatch.web.deps import Services

    settings = Settings(home=home)
    engine = open_engine(settings.resolved_database_url)
    pipeline = Pipeline.from_settings(engine, settings)
    app = create_app(Services(engine, load_shipped_model(), PolicyBook(), pipeline))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(home), str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/cds-services", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not start within 120 s")


# ---------------------------------------------------------------- load


Call = Callable[[httpx.Client, int], httpx.Response]


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, latency: float, ok: bool) -> None:
        with self.lock:
            self.latencies.append(latency)
            self.errors += not ok

    def line(self, name: str) -> str:
        ms = np.asarray(self.latencies) * 1000
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        rate = len(ms) / self.seconds
        return (f"{name:<34} {rate:7.0f} req/s   p50 {p50:6.1f}   p90 {p90:6.1f}   "
                f"p99 {p99:6.1f} ms   ({len(ms)} requests, {self.errors} errors)")  # fmt: skip


def drive(url: str, call: Call, clients: int, seconds: float) -> Run:
    """`clients` threads calling as fast as answers come, for `seconds`."""
    run, stop = Run(), time.monotonic() + seconds

    def client(k: int) -> None:
        with httpx.Client(base_url=url, cookies=SIGNED_IN, timeout=30) as http:
            i = k * 7
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = call(http, i)
                run.add(time.perf_counter() - started, response.status_code == 200)
                i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.seconds = time.perf_counter() - started
    return run


def patient_view(stays: list[tuple[str, str]]) -> Call:
    def call(http: httpx.Client, i: int) -> httpx.Response:
        patient_id, encounter_id = stays[i % len(stays)]
        context = {"userId": "Practitioner/bench", "patientId": patient_id,
                   "encounterId": encounter_id}  # fmt: skip
        body = {"hookInstance": str(uuid.uuid4()), "hook": "patient-view", "context": context}
        return http.post(CDS, json=body)

    return call


def worklist_call(url: str) -> tuple[str, Call] | None:
    """The worklist's address, if the pages (or the API) answer yet."""
    with httpx.Client(base_url=url, cookies=SIGNED_IN, timeout=30) as http:
        for path in ("/ward", "/api/patients"):
            if http.get(path).status_code == 200:
                return path, lambda client, _i, path=path: client.get(path)
    return None


def cold_cards(url: str, stays: list[tuple[str, str]]) -> Run:
    """Each patient's first card, one at a time: the explanation is computed."""
    run, call = Run(), patient_view(stays)
    started = time.perf_counter()
    with httpx.Client(base_url=url, cookies=SIGNED_IN, timeout=30) as http:
        for i in range(len(stays)):
            t = time.perf_counter()
            response = call(http, i)
            run.add(time.perf_counter() - t, response.status_code == 200)
    run.seconds = time.perf_counter() - started
    return run


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description="wardwatch web benchmark")
    parser.add_argument("--home", type=Path, help="ward directory (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="use the ward already in --home")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warm-up-hours", type=int, default=72)
    parser.add_argument("--serve", nargs=2, metavar=("HOME", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return
    with tempfile.TemporaryDirectory(prefix="wardwatch-bench-") as scratch:
        home = args.home or Path(scratch)
        if not (args.reuse and (home / "wardwatch.db").exists()):
            build_ward(home, args.warm_up_hours)
        benchmark(home, args.clients, args.seconds)


def benchmark(home: Path, clients: int, seconds: float) -> None:
    stays = present_stays(home)
    sign_in(home)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{len(stays)} stays on the ward; {os.cpu_count()} CPUs, load average {load} "
          "(a shared machine: figures move with the neighbours' work)")  # fmt: skip
    server, url = start_server(home)
    try:
        print(cold_cards(url, stays).line("patient-view, first view (cold)"))
        targets = [("patient-view", patient_view(stays))]
        found = worklist_call(url)
        if found is None:
            print("worklist: neither /ward nor /api/patients answers 200 yet; skipped")
        else:
            targets.append((f"worklist {found[0]}", found[1]))
            rows = "/ward/rows"  # what every open worklist screen polls every 5 s
            targets.append((f"worklist {rows}", lambda client, _i: client.get(rows)))
        for name, call in targets:
            drive(url, call, 2, 2.0)  # warm: caches, connections, the first templates
            print(drive(url, call, 1, seconds).line(f"{name}, 1 client"))
            print(drive(url, call, clients, seconds).line(f"{name}, {clients} clients"))
    finally:
        server.terminate()
        server.wait(30)
    print("targets: patient-view p99 < 100 ms; >= 200 requests/s")


if __name__ == "__main__":
    main()
