"""A throwaway PostgreSQL server for tests and benchmarks, from the Debian packages.

It lives in a temporary directory on a free port, runs as the `postgres` user when we are
root (PostgreSQL refuses root), and is removed when the context ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class NoPostgres(RuntimeError):
    """PostgreSQL's server binaries are not installed."""


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise NoPostgres("PostgreSQL is not installed: apt-get install postgresql")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: list[str], check: bool = True) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=check, capture_output=True)


@contextmanager
def scratch_postgres(*, durable: bool = False) -> Iterator[str]:
    """Start a private server; yields its SQLAlchemy URL. `durable=False` turns fsync off."""
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="wardwatch-pg-"))  # not pytest's root-only tmp dir
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    options += "" if durable else " -c fsync=off"
    _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
          "-w", "start"])  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], check=False)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def scratch_databases(
    with_postgres: bool, name: str = "scratch"
) -> Iterator[list[tuple[str, str]]]:
    """(kind, url) of a throwaway SQLite file and, when asked and possible, a throwaway
    durable PostgreSQL server: what the benchmarks compare. A missing PostgreSQL is said
    and skipped, not an error (a laptop may not have it)."""
    with tempfile.TemporaryDirectory() as tmp:
        found = [("sqlite", f"sqlite:///{tmp}/{name}.db")]
        if not with_postgres:
            yield found
            return
        try:
            with scratch_postgres(durable=True) as url:
                yield [*found, ("postgresql", url)]
        except NoPostgres as error:
            print(f"(PostgreSQL skipped: {error})")
            yield found
