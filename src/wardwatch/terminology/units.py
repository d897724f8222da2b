"""Units as they really arrive, read into UCUM and converted to each variable's canonical unit.

Three steps, each in one place:

1. spelling: ``unit_spellings.csv`` turns what senders write ("mmHg", "beats/minute", "C",
   "giga.l-1") into a UCUM code ("mm[Hg]", "/min", "Cel", "10*9/L");
2. dimensions: pint reads the UCUM code and converts between units of the same kind
   (temperatures with their offsets, kPa to mm[Hg], counts per volume, percent to fraction);
3. substance: ``conversions.csv`` gives the analyte-specific mass/molar factors (creatinine
   88.4 umol/L per mg/dL ...) and ionic charges (mEq), which no unit library can know.

``conversion(variable, unit)`` returns a factor and an offset, cached per distinct pair, so a
frame of any size is converted with one vectorized multiply-add.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np
import pint

from wardwatch.terminology._files import read_shipped
from wardwatch.terminology.variables import canonical_unit

# Canonical units that can stand without a unit in a message: a bare number means them.
DIMENSIONLESS_UNITS = frozenset({"1", "[pH]"})


class UnitError(ValueError):
    """A unit that is unknown, missing, or cannot express the variable.

    ``reason_code`` is the machine-readable quarantine code: ``unknown_unit``,
    ``unit_mismatch`` or ``missing_unit``.
    """

    def __init__(self, message: str, reason_code: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(frozen=True, slots=True)
class Conversion:
    """``canonical = value * factor + offset``, with ``unit`` the canonical UCUM unit."""

    factor: float
    offset: float
    unit: str

    def apply(self, values: np.ndarray | float) -> np.ndarray | float:
        return values * self.factor + self.offset


# --- the pint registry -------------------------------------------------------------------


@functools.cache
def registry() -> pint.UnitRegistry:
    ureg = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
    # pH is a logarithm, not a ratio: its own dimension keeps "%" from ever "converting" it.
    ureg.define("pH_value = [acidity]")
    # Charge equivalents get a dimension of their own; the analyte's valence (conversions.csv)
    # is what turns them into moles.
    ureg.define("equivalent = [charge_equivalent] = Eq = eq")
    # For enzyme activity the international unit is the enzyme unit (1 umol/min).
    ureg.define("international_unit = enzyme_unit = IU")
    return ureg


# UCUM atoms pint spells differently. Cel and [degF] carry offsets, which pint handles.
_UCUM_ATOMS = {
    "[Hg]": "_Hg",
    "[H2O]": "_H2O",
    "[degF]": "degF",
    "[pH]": "pH_value",
    "[IU]": "IU",
    "[iU]": "IU",
    "[ppm]": "ppm",
    "[ppth]": "permille",
}
_ANNOTATION = re.compile(r"\{[^}]*\}")
_CELSIUS = re.compile(r"(?<![A-Za-z_])Cel(?![A-Za-z_])")
_POWER_OF_TEN = re.compile(r"10\*(-?\d+)")
# UCUM writes exponents as trailing digits ("m2", "l-1"); not inside "1e3" or "H2O".
_EXPONENT = re.compile(r"(?<=[A-Za-z\]])(?<![0-9][eE])(-?\d+)(?=$|[./*)])")
_DOT = re.compile(r"(?<=[A-Za-z\]0-9])\.(?=[A-Za-z\[])")


def _pint_expression(ucum: str) -> str:
    """A UCUM code rewritten in pint's grammar ("10*3/uL" -> "1e3/uL", "mm[Hg]" -> "mm_Hg")."""
    text = _ANNOTATION.sub("1", ucum)  # "{beats}/min" means "/min": annotations are 1
    text = _EXPONENT.sub(r"**\1", text)
    for atom, name in _UCUM_ATOMS.items():
        text = text.replace(atom, name)
    text = _CELSIUS.sub("degC", text)
    text = _POWER_OF_TEN.sub(r"1e\1", text)
    text = _DOT.sub("*", text)
    if text.startswith("/"):
        text = "1" + text
    return text


# A unit made only of digits is a number, not a unit ("2" would silently double values); only
# "1" and powers of ten ("10*3") are units in UCUM.
_BARE_NUMBER = re.compile(r"[0-9.*^eE+-]+")
_UNIT_NUMBERS = re.compile(r"1|10[*^]-?[0-9]+")


@functools.cache
def _quantity(ucum: str) -> pint.Quantity | None:
    """What one ``ucum`` unit is, as a pint quantity (magnitude carries 10*3 etc.), or None."""
    if _BARE_NUMBER.fullmatch(ucum) and not _UNIT_NUMBERS.fullmatch(ucum):
        return None
    try:
        quantity = registry().parse_expression(_pint_expression(ucum))
    except Exception:  # noqa: BLE001 - pint raises many kinds of error for text it cannot read
        return None
    if not isinstance(quantity, pint.Quantity):  # "1" parses to a plain number
        quantity = registry().Quantity(quantity, "dimensionless")
    magnitude = float(quantity.magnitude)
    return quantity if math.isfinite(magnitude) and magnitude > 0 else None


# --- spellings ---------------------------------------------------------------------------


@functools.cache
def _spellings() -> tuple[dict[str, str], dict[str, str]]:
    """Exact spellings, and the same keyed in lower case (for "MG/DL", "Mmol/l" ...)."""
    table = read_shipped("unit_spellings.csv")
    exact = dict(zip(table["spelling"], table["ucum"], strict=True))
    folded: dict[str, str] = {}
    for spelling, ucum in exact.items():
        if folded.setdefault(spelling.lower(), ucum) != ucum:
            raise ValueError(
                f"unit_spellings.csv: {spelling!r} and another spelling differ only "
                f"in case but mean different units"
            )
    unreadable = sorted({u for u in exact.values() if _quantity(u) is None})
    if unreadable:
        raise ValueError(f"unit_spellings.csv: pint cannot read the UCUM codes {unreadable}")
    return exact, folded


def ucum_code(unit: str) -> str:
    """The UCUM code for a unit as sent; unknown spellings come back tidied but unchanged."""
    text = unit.strip().replace("µ", "u").replace("μ", "u")  # micro sign and Greek mu
    text = re.sub(r"10\^(-?\d+)", r"10*\1", text)
    exact, folded = _spellings()
    return exact.get(text) or folded.get(text.lower()) or text


def canonical_unit_string(unit: str | None) -> str | None:
    """The UCUM spelling of a unit when it can be read, else the unit as sent (stripped).

    For codes the model does not use: the record keeps its unit, spelled one way when
    wardwatch understands it. None or blank means no unit.
    """
    if not isinstance(unit, str) or not unit.strip():
        return None
    code = ucum_code(unit)
    return code if _quantity(code) is not None else unit.strip()


def is_known_unit(unit: str) -> bool:
    return _quantity(ucum_code(unit)) is not None


# --- substance-specific factors ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Substance:
    """How one analyte's mass and molar concentrations relate, and its ionic charge."""

    variable: str
    mass_unit: str
    molar_unit: str
    molar_per_mass: float  # e.g. creatinine: 88.4 umol/L per mg/dL
    molar_mass: float  # g/mol, the number the factor comes from (kept to check it)
    valence: int | None  # charge per ion, for mEq; None where it is not defined


@functools.cache
def substances() -> dict[str, Substance]:
    table = read_shipped("conversions.csv")
    return {
        row["variable"]: Substance(
            variable=row["variable"],
            mass_unit=row["mass_unit"],
            molar_unit=row["molar_unit"],
            molar_per_mass=float(row["molar_per_mass"]),
            molar_mass=float(row["molar_mass_g_per_mol"]),
            valence=int(row["valence"]) if row["valence"] else None,
        )
        for row in table.to_dict("records")
    }


# --- conversion ----------------------------------------------------------------------------


@functools.cache
def conversion(variable: str, from_unit: str | None) -> Conversion:
    """Factor and offset that take ``variable`` from ``from_unit`` to its canonical unit.

    Raises UnitError (a ValueError) saying what to fix when the unit is missing, unknown, or
    of the wrong kind for the variable; KeyError when ``variable`` is not a model variable.
    """
    canonical = canonical_unit(variable)
    if not isinstance(from_unit, str) or not from_unit.strip():
        if canonical in DIMENSIONLESS_UNITS:
            return Conversion(1.0, 0.0, canonical)
        raise UnitError(
            f"no unit was sent for {variable} (canonical {canonical!r}); a number without a "
            f"unit cannot be read safely - fix the sender, or give the code a default unit in "
            f"local_codes.csv",
            "missing_unit",
        )
    source = _quantity(ucum_code(from_unit))
    if source is None:
        raise UnitError(
            f"unit {from_unit!r} is not a unit wardwatch can read (for {variable} send a UCUM "
            f"unit such as {canonical!r}); if it is a local spelling, add it to "
            f"unit_spellings.csv",
            "unknown_unit",
        )
    target = _quantity(canonical)
    if target is None:
        raise ValueError(
            f"variables.csv: the canonical unit {canonical!r} of {variable} is unreadable"
        )
    factor, offset = _linear(variable, from_unit, source, target, canonical)
    return Conversion(factor, offset, canonical)


def _linear(
    variable: str, from_unit: str, source: pint.Quantity, target: pint.Quantity, canonical: str
) -> tuple[float, float]:
    """The straight line through two converted points: exact for every unit pint knows."""
    if source.dimensionality == target.dimensionality:
        at_zero = _convert(0.0, source, target)
        return _convert(1.0, source, target) - at_zero, at_zero
    if canonical == "[pH]" and source.dimensionless and math.isclose(source.m_as(""), 1.0):
        return 1.0, 0.0  # "1" (or an annotation) for pH means "no unit", not a fraction
    scaled = _through_substance(variable, source, target)
    if scaled is None:
        raise UnitError(_mismatch(variable, from_unit, source, canonical), "unit_mismatch")
    return scaled, 0.0


def _convert(value: float, source: pint.Quantity, target: pint.Quantity) -> float:
    ureg = registry()
    moved = ureg.Quantity(value * source.magnitude, source.units).to(target.units)
    return float(moved.magnitude / target.magnitude)


def _through_substance(variable: str, source: pint.Quantity, target: pint.Quantity) -> float | None:
    """Factor for mass <-> molar <-> equivalents of one analyte, or None if it has no route."""
    substance = substances().get(variable)
    if substance is None:
        return None
    ureg = registry()
    one = ureg.Quantity(source.magnitude, source.units)
    if one.check("[charge_equivalent] / [length] ** 3"):
        if substance.valence is None:
            return None
        one = one / ureg.Quantity(substance.valence, "eq/mol")
    # Mass per mole implied by the clinical factor: (1 mass_unit) / (factor molar_unit).
    per_mole = ureg.Quantity(1, _pint_expression(substance.mass_unit)) / ureg.Quantity(
        substance.molar_per_mass, _pint_expression(substance.molar_unit)
    )
    for candidate in (one, one * per_mole, one / per_mole):
        if candidate.dimensionality == target.dimensionality:
            return float(candidate.to(target.units).magnitude / target.magnitude)
    return None


def _mismatch(variable: str, from_unit: str, source: pint.Quantity, canonical: str) -> str:
    message = f"unit {from_unit!r} cannot express {variable} (canonical {canonical!r})"
    if source.check("[charge_equivalent] / [length] ** 3"):
        message += (
            f"; mEq needs the charge of the ion, and conversions.csv gives none for {variable}"
        )
    return message
