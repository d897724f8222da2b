"""Configuration in one place: defaults, then a TOML file, then environment variables.

Environment variables win because that is how operators override a deployed file at 2 AM.
`WARDWATCH_CONFIG` names the file (default `wardwatch.toml` in the working directory, if any).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path


def _default_home() -> Path:
    return Path(os.environ.get("WARDWATCH_HOME", Path.cwd() / "var"))


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=_default_home)
    database_url: str = ""  # empty: SQLite file under home
    # A measurement more than this far in the future is a clock or time-zone error.
    future_tolerance: timedelta = timedelta(minutes=5)
    # Measurements before this year are data-entry errors, not history.
    oldest_year: int = 1990
    local_code_map: Path | None = None  # hospital's CSV; None: the shipped example map
    # SQLite synchronous mode: NORMAL survives a killed process (WAL), FULL also a power cut.
    sqlite_synchronous: str = "NORMAL"
    # PhysioNet files are committed this many patients per transaction.
    psv_patients_per_batch: int = 1000

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'wardwatch.db'}"


_ENV = {
    "home": "WARDWATCH_HOME",
    "database_url": "WARDWATCH_DATABASE_URL",
    "local_code_map": "WARDWATCH_LOCAL_CODE_MAP",
    "sqlite_synchronous": "WARDWATCH_SQLITE_SYNCHRONOUS",
    "oldest_year": "WARDWATCH_OLDEST_YEAR",
    "psv_patients_per_batch": "WARDWATCH_PSV_PATIENTS_PER_BATCH",
}


def _coerce(name: str, raw: object) -> object:
    kind = {f.name: f.type for f in dataclasses.fields(Settings)}[name]
    if raw is None or raw == "":
        return None if "None" in str(kind) else raw
    if "Path" in str(kind):
        return Path(str(raw)).expanduser()
    if kind == "int":
        return int(raw)  # type: ignore[call-overload]
    if kind == "timedelta":
        return timedelta(seconds=float(raw))  # type: ignore[arg-type]
    return raw


def load_settings(config_file: Path | None = None) -> Settings:
    """Defaults, overridden by the TOML file's [wardwatch] table, overridden by the environment."""
    values: dict[str, object] = {}
    path = config_file or Path(os.environ.get("WARDWATCH_CONFIG", "wardwatch.toml"))
    if path.is_file():
        with path.open("rb") as handle:
            values.update(tomllib.load(handle).get("wardwatch", {}))
    for name, variable in _ENV.items():
        if variable in os.environ:
            values[name] = os.environ[variable]
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown settings in {path}: {sorted(unknown)}; known: {sorted(known)}")
    return Settings(**{k: _coerce(k, v) for k, v in values.items()})  # type: ignore[arg-type]
