"""Messages per second through the MLLP server on 127.0.0.1, with handlers that store nothing.

    .venv/bin/python benchmarks/mllp.py [--messages 5000] [--connections 1 4]

Handlers: `ack` answers AA from the raw text (framing, threads and sockets only); `parse`
parses the ORU^R01 (lab_oru_1 sample, 10 OBX) and answers AA, without a database. Modes:
`sequential` waits for each ACK before sending the next message, as an interface engine does
(one connection, or several in parallel); `pipelined` sends everything, then reads the ACKs.
The server runs in its own process (as in production), so client and server do not share
a GIL. The database-backed figure belongs beside these (a handler that commits, then answers).
"""

from __future__ import annotations

import argparse
import functools
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from wardwatch.ingest import hl7v2, mllp

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "hl7v2" / "lab_oru_1.hl7"

HANDLERS: dict[str, Callable[[str], str]] = {
    "ack": lambda text: hl7v2.ack(text, "AA"),
    "parse": functools.partial(hl7v2.acknowledge, commit=lambda message: None),
}


def messages(count: int, prefix: str) -> list[str]:
    text = SAMPLE.read_text()
    return [text.replace("|ORU^R01|182|", f"|ORU^R01|{prefix}{n}|") for n in range(count)]


def sequential(host: str, port: int, count: int, connections: int) -> float:
    batches = [messages(count // connections, f"C{c}-") for c in range(connections)]
    threads = [
        threading.Thread(target=mllp.send, args=(host, port, batch, 30.0)) for batch in batches
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def pipelined(host: str, port: int, count: int) -> float:
    batch = messages(count, "P")
    start = time.perf_counter()
    acks = mllp.send_pipelined(host, port, batch)
    assert len(acks) == count
    return count / (time.perf_counter() - start)


@contextmanager
def server_process(handler: str) -> Iterator[tuple[str, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, __file__, "--serve", handler, "--port", str(port)]
    with subprocess.Popen(command) as server:
        try:
            yield "127.0.0.1", _wait_until_listening(port)
        finally:
            server.terminate()
            server.wait(timeout=30)


def _wait_until_listening(port: int) -> int:
    deadline = time.monotonic() + 30
    while True:
        try:
            mllp.send("127.0.0.1", port, messages(50, "W"))  # also warms up
            return port
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median shown)")
    parser.add_argument("--serve", choices=HANDLERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        mllp.run_forever("127.0.0.1", args.port, HANDLERS[args.serve])
        return
    print(f"{'handler':8} {'mode':22} {'messages/s':>11}")
    for name in HANDLERS:
        with server_process(name) as (host, port):
            for connections in args.connections:
                rates = [
                    sequential(host, port, args.messages, connections) for _ in range(args.repeat)
                ]
                mode = f"sequential x{connections}"
                print(f"{name:8} {mode:22} {statistics.median(rates):11,.0f}", flush=True)
            rates = [pipelined(host, port, args.messages) for _ in range(args.repeat)]
            print(f"{name:8} {'pipelined x1':22} {statistics.median(rates):11,.0f}", flush=True)


if __name__ == "__main__":
    main()
