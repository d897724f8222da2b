"""Reading the CSV tables shipped beside the code (and the hospital's own copies of them)."""

from __future__ import annotations

from importlib import resources
from os import PathLike
from pathlib import Path
from typing import TextIO

import pandas as pd


def shipped_path(name: str) -> Path:
    """Where a shipped table lives, e.g. to show a person which file to edit."""
    return Path(str(resources.files("wardwatch.terminology").joinpath(name)))


def read_shipped(name: str) -> pd.DataFrame:
    with resources.files("wardwatch.terminology").joinpath(name).open(encoding="utf-8") as f:
        return _read(f)


def read_path(path: str | PathLike[str]) -> pd.DataFrame:
    with open(path, encoding="utf-8") as f:
        return _read(f)


def _read(handle: TextIO) -> pd.DataFrame:
    # Every cell as stripped text, empty cells as "": codes such as "0999" or "1" stay exactly
    # as written, and no value is silently turned into NaN.
    table = pd.read_csv(handle, dtype=str, keep_default_na=False)
    return table.apply(lambda column: column.str.strip())
