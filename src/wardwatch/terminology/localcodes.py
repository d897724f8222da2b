"""The hospital's local-code map (``local_codes.csv``): (system, code) -> LOINC.

Columns: ``system``, ``code``, ``loinc``, ``unit`` (optional default unit, used only when a
message carries none) and ``note``. A row with an empty ``loinc`` is a deliberate "do not
map": items with that code are quarantined with the row's note as the reason.

Systems are compared after folding the spellings of LOINC ("http://loinc.org", "LN",
"LOINC", LOINC's OID) into one, because senders such as OpenMRS put their own concept ids
under the LOINC system; an entry keyed ``http://loinc.org`` therefore also matches ``LN``.
An entry wins over the code's own meaning, so a hospital can also correct a sender that
misuses a real LOINC code.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from os import PathLike

from wardwatch.terminology._files import read_path, read_shipped, shipped_path
from wardwatch.terminology.loinc import canonical_system, is_valid_loinc
from wardwatch.terminology.units import canonical_unit_string, is_known_unit

COLUMNS = ("system", "code", "loinc", "unit", "note")


@dataclass(frozen=True, slots=True)
class LocalCode:
    system: str
    code: str
    loinc: str | None  # None: listed on purpose, never mapped (quarantined with the note)
    unit: str | None  # default unit when the message has none
    note: str = ""


class LocalCodeMap:
    """Lookup of local codes by (system, code); loaded from a CSV path.

    ``LocalCodeMap()`` reads the example shipped with wardwatch; a hospital passes the path of
    its own copy. Loading fails with a ValueError naming every bad row (a LOINC that fails its
    check digit, an unreadable unit, a duplicate key), so a mistyped map never half-loads.
    """

    def __init__(self, path: str | PathLike[str] | None = None) -> None:
        table = read_shipped("local_codes.csv") if path is None else read_path(path)
        self.source = str(shipped_path("local_codes.csv") if path is None else path)
        missing = [c for c in COLUMNS if c not in table.columns and c != "note"]
        if missing:
            raise ValueError(f"{self.source}: missing columns {missing}")
        rows = [
            (r["system"], r["code"], r["loinc"], r["unit"], r.get("note", ""))
            for r in table.to_dict("records")
        ]
        self._entries = _index(rows, self.source)

    @classmethod
    def load(cls, path: str | PathLike[str] | None = None) -> LocalCodeMap:
        """The hospital's map at ``path``; None means the shipped example (read once)."""
        return default_map() if path is None else cls(path)

    @classmethod
    def from_rows(
        cls, rows: Iterable[tuple[str, str, str, str, str]], source: str = "<rows>"
    ) -> LocalCodeMap:
        """A map from (system, code, loinc, unit, note) tuples, e.g. built by a program."""
        self = cls.__new__(cls)
        self.source = source
        self._entries = _index(list(rows), source)
        return self

    def lookup(self, system: str | None, code: str | None) -> LocalCode | None:
        if not isinstance(code, str):
            return None
        return self._entries.get((canonical_system(system), code.strip()))

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LocalCode]:
        return iter(self._entries.values())

    def __repr__(self) -> str:
        return f"LocalCodeMap({self.source!r}, {len(self)} codes)"


@functools.cache
def default_map() -> LocalCodeMap:
    """The shipped example map, read once."""
    return LocalCodeMap()


def _index(
    rows: list[tuple[str, str, str, str, str]], source: str
) -> Mapping[tuple[str, str], LocalCode]:
    entries: dict[tuple[str, str], LocalCode] = {}
    problems: list[str] = []
    for line, (system, code, loinc, unit, note) in enumerate(rows, start=2):
        key = (canonical_system(system), code.strip())
        problems += [f"line {line}: {p}" for p in _row_problems(key, loinc, unit, entries)]
        entries[key] = LocalCode(
            key[0], key[1], loinc.strip() or None, canonical_unit_string(unit), note.strip()
        )
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems))
    return entries


def _row_problems(
    key: tuple[str, str], loinc: str, unit: str, seen: Mapping[tuple[str, str], LocalCode]
) -> list[str]:
    problems = []
    if not key[0] or not key[1]:
        problems.append("system and code are both required")
    if loinc.strip() and not is_valid_loinc(loinc):
        problems.append(f"{loinc!r} is not a LOINC code (bad format or check digit)")
    if unit.strip() and not is_known_unit(unit):
        problems.append(f"unit {unit!r} cannot be read (use UCUM, e.g. 'mmol/L')")
    if key in seen:
        problems.append(f"system {key[0]!r} code {key[1]!r} is listed twice")
    return problems
