"""LOINC codes: the check digit, code systems, and the curated table in ``loinc.csv``.

LOINC has no Python library, so wardwatch ships the codes it knows in a CSV a hospital can
read and extend. A code is trusted as LOINC only when its mod-10 check digit is right:
senders such as OpenMRS put their own concept ids under the LOINC system URI, and the check
digit is what tells the two apart.
"""

from __future__ import annotations

import functools
import re

import pandas as pd

from wardwatch.terminology._files import read_shipped

LOINC_SYSTEM = "http://loinc.org"

# The spellings of "this code is LOINC": the FHIR URI, HL7 v2 table 0396 ("LN"), and LOINC's OID.
_LOINC_ALIASES = frozenset(
    {"http://loinc.org", "https://loinc.org", "ln", "loinc", "urn:oid:2.16.840.1.113883.6.1"}
)

# Body of 1 to 7 digits, a hyphen, one check digit. LOINC passed five body digits in 2022
# (e.g. 104826-3); seven leaves room without accepting arbitrary numbers.
_LOINC_FORMAT = re.compile(r"([0-9]{1,7})-([0-9])")


def loinc_check_digit(body: str) -> int:
    """The mod-10 check digit LOINC computes for the digits before the hyphen.

    LOINC uses the Luhn scheme: from the right, every other digit (starting with the
    rightmost) is doubled and its digits summed; the check digit brings the total to a
    multiple of ten.
    """
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            digit = digit // 10 + digit % 10
        total += digit
    return (10 - total % 10) % 10


def is_valid_loinc(code: str) -> bool:
    """True when ``code`` has LOINC's form (``NNNNN-C``) and a correct check digit."""
    match = _LOINC_FORMAT.fullmatch(code.strip()) if isinstance(code, str) else None
    if match is None:
        return False
    return loinc_check_digit(match.group(1)) == int(match.group(2))


def canonical_system(system: str | None) -> str:
    """One spelling per code system, so a map keyed by ``http://loinc.org`` also serves ``LN``."""
    if not isinstance(system, str):
        return ""
    stripped = system.strip()
    return LOINC_SYSTEM if stripped.lower() in _LOINC_ALIASES else stripped


def is_loinc_system(system: str | None) -> bool:
    return canonical_system(system) == LOINC_SYSTEM


@functools.cache
def _loinc_table() -> pd.DataFrame:
    from wardwatch.terminology.variables import model_variables

    table = read_shipped("loinc.csv")
    problems = [
        f"{c!r} fails the LOINC check digit" for c in table["loinc"] if not is_valid_loinc(c)
    ]
    problems += [f"{c!r} is listed twice" for c in table["loinc"][table["loinc"].duplicated()]]
    unknown = set(table["variable"]) - set(model_variables()) - {""}
    problems += [f"variable {v!r} is not in variables.csv" for v in sorted(unknown)]
    if problems:
        raise ValueError("loinc.csv: " + "; ".join(problems))
    table["variable"] = table["variable"].replace("", None)
    return table.set_index("loinc")


def loinc_table() -> pd.DataFrame:
    """The LOINC codes wardwatch knows, indexed by code.

    Columns: ``variable`` (the model variable the code feeds, missing when the model does not
    use it), ``display`` (LOINC long common name), ``example_unit``, ``note``.
    """
    return _loinc_table().copy()


def variable_for(loinc: str) -> str | None:
    """The model variable a LOINC code feeds, or None."""
    table = _loinc_table()
    if loinc not in table.index:
        return None
    variable = table.at[loinc, "variable"]
    return variable if isinstance(variable, str) else None
