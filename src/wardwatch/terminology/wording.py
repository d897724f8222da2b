"""Numbers and names the way a chart shows them: one place, so every screen says it alike.

The explanation, the alert reasons, the worklist, the patient page and the CDS Hooks card all
turn variables, values and risks into words; a lactate written "4.1 mmol/L" in one place and
"4.100 mmol/l" in another erodes trust, so all of them call these functions.
"""

from __future__ import annotations

import functools
import math

from wardwatch.terminology.variables import variables

# UCUM as people read it at the bedside.
_UNITS = {"Cel": "°C", "mm[Hg]": "mm Hg", "1": "", "[pH]": "", "10*3/uL": "×10³/µL"}


@functools.cache
def reference(variable: str) -> dict[str, object]:
    """variables.csv's row for a variable (read once: words are needed at every page view)."""
    return dict(variables().loc[variable])


def display(variable: str) -> str:
    """The clinical name: "Lactate", "Systolic blood pressure"."""
    return str(reference(variable)["display"])


def unit(variable: str) -> str:
    """The canonical unit as written at the bedside: "mmol/L", "mm Hg", "°C"."""
    ucum = str(reference(variable)["unit"])
    return _UNITS.get(ucum, ucum)


def normal_range(variable: str) -> str:
    """"0.5–2.2", or "not defined"."""
    low, high = (float(reference(variable)[k]) for k in ("normal_low", "normal_high"))  # type: ignore[arg-type]
    if math.isnan(low) or math.isnan(high):
        return "not defined"
    if low == high:
        return number(low)
    return f"{number(low)} to {number(high)}" if low < 0 else f"{number(low)}–{number(high)}"


def number(x: float) -> str:
    """Three significant digits, no exponent, no trailing zeros: 4.1, 112, 7.31, 0.04."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    decimals = min(3, max(0, 2 - math.floor(math.log10(abs(x)))))
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def with_unit(value: float, unit_text: str) -> str:
    """"4.1 mmol/L", "98%", "112/min"."""
    text = number(float(value))
    if unit_text in ("%", "/min"):
        return text + unit_text
    return f"{text} {unit_text}".rstrip()


def value_of(variable: str, value: float) -> str:
    """A measured value in its canonical unit: value_of("Lactate", 4.1) == "4.1 mmol/L"."""
    return with_unit(value, unit(variable))


def ago(hours: float) -> str:
    """"this hour", "2 h ago"."""
    return "this hour" if hours < 1 else f"{int(hours)} h ago"


def percent(risk: float, decimals: int = 1) -> str:
    """A risk as a percentage; tiny risks as "<0.1%" rather than a misleading "0.0%"."""
    smallest = 10.0**-decimals
    return f"<{smallest:g}%" if 100 * risk < smallest / 2 else f"{100 * risk:.{decimals}f}%"
