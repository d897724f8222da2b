"""The real app served by uvicorn in a background thread, on a free localhost port.

For what needs a real HTTP server in the same process: the browser tests and the README's
screenshots. `uvicorn.Server.run` installs no signal handlers when it is not in the main
thread, and `should_exit` stops it cleanly, so the caller's process stays in charge.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(app: FastAPI, timeout: float = 20.0) -> Iterator[str]:
    """Serve `app` until the block ends; yields its base URL, e.g. http://127.0.0.1:53117."""
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, name="wardwatch-web", daemon=True)
    thread.start()
    try:
        _wait_started(server, thread, timeout)
        yield f"http://{HOST}:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def _wait_started(server: uvicorn.Server, thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the web server stopped while starting (see its log)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the web server did not start within {timeout} s")
        time.sleep(0.05)
