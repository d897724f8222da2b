"""Terminology: LOINC codes, local-code maps, UCUM units and the model's variables.

The tables live beside the code as CSV files a hospital can read and edit:
``variables.csv`` (model variables, canonical units, plausible and normal ranges),
``loinc.csv`` (the LOINC codes wardwatch knows and the variable each feeds),
``conversions.csv`` (analyte-specific mass/molar factors and ionic charges),
``unit_spellings.csv`` (how senders really write units) and ``local_codes.csv`` (the example
local-code map).

Errors: ``UnitError`` (a ValueError) for units; loading a malformed table raises ValueError
naming every bad row. Data problems never raise from ``normalize``: they become rejections.
"""

from wardwatch.terminology.localcodes import LocalCode, LocalCodeMap
from wardwatch.terminology.loinc import canonical_system, is_valid_loinc, loinc_table
from wardwatch.terminology.normalize import NORMALIZED_COLUMNS, Normalized, normalize
from wardwatch.terminology.units import Conversion, UnitError, canonical_unit_string, conversion
from wardwatch.terminology.variables import variables

__all__ = [
    "NORMALIZED_COLUMNS",
    "Conversion",
    "LocalCode",
    "LocalCodeMap",
    "Normalized",
    "UnitError",
    "canonical_system",
    "canonical_unit_string",
    "conversion",
    "is_valid_loinc",
    "loinc_table",
    "normalize",
    "variables",
]
