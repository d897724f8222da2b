"""The model's variables (``variables.csv``): canonical units, plausible and normal ranges.

The canonical units are the PhysioNet 2019 challenge's, so the training data needs no
conversion. ``low``/``high`` bound what is physically possible for a measurement (outside is a
device, entry or unit error, for the quality gate to quarantine); ``normal_low``/``normal_high``
are adult reference ranges, for explanations.
"""

from __future__ import annotations

import functools

import pandas as pd

from wardwatch.terminology._files import read_shipped

KINDS = frozenset({"vital", "lab", "demographic"})
# The code system under which PhysioNet .psv column names travel (see wardwatch.ingest.psv):
# the code is the column name and the value is already in the canonical unit.
PHYSIONET_SYSTEM = "physionet2019"
_NUMERIC = ("low", "high", "normal_low", "normal_high")


@functools.cache
def _variables() -> pd.DataFrame:
    table = read_shipped("variables.csv")
    names, kinds = table["variable"], table["kind"]
    problems = [
        f"{v!r} has kind {k!r}" for v, k in zip(names, kinds, strict=True) if k not in KINDS
    ]
    problems += [f"{v!r} is listed twice" for v in names[names.duplicated()]]
    if problems:
        raise ValueError("variables.csv: " + "; ".join(problems))
    for column in _NUMERIC:
        table[column] = pd.to_numeric(table[column].replace("", None)).astype("float64")
    bad = table[~(table["low"] < table["high"])]
    if len(bad):
        raise ValueError(f"variables.csv: low must be below high for {list(bad['variable'])}")
    for column in ("loinc", "physionet"):
        table[column] = table[column].replace("", None)
    return table.set_index("variable")


def variables() -> pd.DataFrame:
    """The model variables, indexed by name.

    Columns: ``display`` (clinical words), ``kind`` (vital, lab or demographic), ``unit``
    (canonical UCUM unit), ``low``/``high`` (plausible range, in ``unit``),
    ``normal_low``/``normal_high`` (reference range), ``loinc`` (the primary code, used for
    PhysioNet columns) and ``physionet`` (the column name in a PhysioNet ``.psv`` file).
    """
    return _variables().copy()


def model_variables() -> tuple[str, ...]:
    return tuple(_variables().index)


def canonical_unit(variable: str) -> str:
    """The UCUM unit a model variable is stored in; KeyError names the unknown variable."""
    table = _variables()
    if variable not in table.index:
        raise KeyError(f"{variable!r} is not a model variable (see variables.csv)")
    return str(table.at[variable, "unit"])


@functools.cache
def physionet_columns() -> dict[str, str]:
    """PhysioNet .psv column name -> model variable, for the variables that have a LOINC code."""
    table = _variables().dropna(subset=["loinc", "physionet"])
    return dict(zip(table["physionet"], table.index, strict=True))
