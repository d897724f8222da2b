"""Where a model came from: data hash, code version, library versions (design rule 6)."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("wardwatch", "lightgbm", "scikit-learn", "numpy", "pandas")
# The code that defines what the model computes: its hash changes when any of it does.
MODEL_CODE = ("features.py", "model")


def frame_sha256(frame: pd.DataFrame) -> str:
    """sha256 of a frame's content: column names, then each column's values in row order."""
    digest = hashlib.sha256()
    for name in frame.columns:
        digest.update(str(name).encode() + b"\0")
        column = frame[name]
        if column.dtype == object or pd.api.types.is_string_dtype(column):
            digest.update("\n".join(column.astype(str)).encode())
        else:
            digest.update(np.ascontiguousarray(column.to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _model_code_files() -> list[Path]:
    files: list[Path] = []
    for name in MODEL_CODE:
        path = PACKAGE_ROOT / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def code_sha256() -> str:
    """sha256 over the source of the feature and model code (path and content of each file)."""
    digest = hashlib.sha256()
    for path in _model_code_files():
        digest.update(str(path.relative_to(PACKAGE_ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def code_version() -> dict[str, Any]:
    """git commit (None outside a repository or before the first commit), dirty flag, code hash."""
    status = _git("status", "--porcelain", "--", ".")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status),
        "model_code_sha256": code_sha256(),
    }


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
