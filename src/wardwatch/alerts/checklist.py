"""The lists clinicians work through: the nurse's screening questions and the treatment bundle.

Both are data, and this module is pure (no database): `workflow` stores the answers and the
items and records who did what.

Screening: `SCREENING_QUESTIONS` (code -> question), each answered yes / no / unsure. The
assessment raises a concern when `CONCERN_QUESTIONS` (a suspected new infection, or a nurse
worried about the patient) gets any yes. The other questions are signs of organ dysfunction:
recorded for the provider, but without a suspected infection or a worried nurse they are not,
on their own, a sepsis concern.

Treatment: confirming an alert starts an SEP-1 style bundle. Every item is timed from the
alert's `opened_at` (time zero), as SEP-1 counts from the time sepsis was first recognisable,
not from when a clinician got round to confirming it:

    item              due        applies when
    lactate           3 h        always
    blood_cultures    3 h        always (and before antibiotics)
    antibiotics       3 h        always
    fluids            3 h        hypotension, or lactate >= 4 mmol/L
    repeat_lactate    6 h        initial lactate > 2 mmol/L

When the deciding fact is unknown at confirmation, the item applies and its `why` says what to
check: an item wrongly shown costs a glance, an item wrongly hidden can cost a patient (missing
is not normal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

SCREENING_QUESTIONS: Mapping[str, str] = {
    "suspected_infection": "Do you suspect a new infection?",
    "new_confusion": "New confusion or altered mental status?",
    "mottled_skin": "Is the skin mottled, or capillary refill slow?",
    "reduced_urine": "Is urine output reduced?",
    "rigors": "Rigors (shaking chills)?",
    "clinician_concern": "Are you worried about this patient?",
}
CONCERN_QUESTIONS = frozenset({"suspected_infection", "clinician_concern"})
ANSWERS = ("yes", "no", "unsure")


def screening_answer(code: str, value: str | bool) -> str:
    """One answer as stored: "yes", "no" or "unsure" (a bool is yes or no)."""
    if code not in SCREENING_QUESTIONS:
        valid = ", ".join(SCREENING_QUESTIONS)
        raise ValueError(f"unknown screening question {code!r}; valid codes: {valid}")
    if isinstance(value, bool):
        return "yes" if value else "no"
    answer = str(value).strip().lower()
    if answer not in ANSWERS:
        raise ValueError(f"answer to {code} must be yes, no, unsure or a bool, not {value!r}")
    return answer


def screening_answers(answers: Mapping[str, str | bool]) -> dict[str, str]:
    if not answers:
        raise ValueError("a nursing assessment needs at least one answered question")
    return {code: screening_answer(code, value) for code, value in answers.items()}


def is_concern(answers: Mapping[str, str]) -> bool:
    """A yes to a suspected infection or to a worried nurse (see the module docstring)."""
    return any(answers.get(code) == "yes" for code in CONCERN_QUESTIONS)


@dataclass(frozen=True, slots=True)
class BundleItem:
    code: str
    title: str
    within: timedelta  # due this long after the alert opened


BUNDLE: tuple[BundleItem, ...] = (
    BundleItem("lactate", "Measure lactate", timedelta(hours=3)),
    BundleItem("blood_cultures", "Blood cultures before antibiotics", timedelta(hours=3)),
    BundleItem("antibiotics", "Broad-spectrum antibiotics", timedelta(hours=3)),
    BundleItem(
        "fluids", "30 mL/kg crystalloid for hypotension or lactate ≥ 4 mmol/L", timedelta(hours=3)
    ),
    BundleItem("repeat_lactate", "Repeat lactate if the first was > 2 mmol/L", timedelta(hours=6)),
)
ITEMS: Mapping[str, BundleItem] = {item.code: item for item in BUNDLE}

ANTIBIOTICS_BEFORE_CULTURES = "antibiotics before blood cultures"
FLUIDS_UNKNOWN = "check: hypotension or lactate ≥ 4 mmol/L?"
REPEAT_LACTATE_UNKNOWN = "check: initial lactate > 2 mmol/L?"


class ItemStatus(StrEnum):
    DONE = "done"
    DUE = "due"
    OVERDUE = "overdue"
    NOT_APPLICABLE = "not applicable"


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    """One bundle item of one alert, with its status at the time it was read."""

    alert_id: int
    item: str
    title: str
    due_at: datetime
    applicable: bool
    why: str | None
    done_at: datetime | None
    done_by: str | None
    note: str | None
    status: ItemStatus
    minutes_left: int | None  # due: minutes to go; overdue: negative; else None

    @property
    def late(self) -> bool:
        """Done, but after it was due."""
        return self.done_at is not None and self.done_at > self.due_at


def _mmol(value: float) -> str:
    return f"{value:g} mmol/L"


def fluids_applicable(lactate: float | None, hypotension: bool | None) -> tuple[bool, str]:
    """Whether 30 mL/kg crystalloid is due, and why."""
    found = (["hypotension"] if hypotension else []) + (
        [f"lactate {_mmol(lactate)} ≥ 4"] if lactate is not None and lactate >= 4 else []
    )
    if found:
        return True, "; ".join(found)
    if hypotension is False and lactate is not None:
        return False, f"no hypotension; lactate {_mmol(lactate)} < 4"
    return True, FLUIDS_UNKNOWN


def repeat_lactate_applicable(lactate: float | None) -> tuple[bool, str]:
    """Whether a repeat lactate is due (the first was above 2 mmol/L), and why."""
    if lactate is None:
        return True, REPEAT_LACTATE_UNKNOWN
    if lactate > 2:
        return True, f"initial lactate {_mmol(lactate)} > 2"
    return False, f"initial lactate {_mmol(lactate)} ≤ 2"


def _applicability(
    code: str, lactate: float | None, hypotension: bool | None
) -> tuple[bool, str | None]:
    if code == "fluids":
        return fluids_applicable(lactate, hypotension)
    if code == "repeat_lactate":
        return repeat_lactate_applicable(lactate)
    return True, None


def check_lactate(lactate: float | None) -> None:
    if lactate is not None and not (math.isfinite(lactate) and lactate >= 0):
        raise ValueError(f"lactate must be a finite number of mmol/L ≥ 0, not {lactate!r}")


def plan(
    alert_id: int, opened_at: datetime, lactate: float | None, hypotension: bool | None
) -> list[dict[str, Any]]:
    """The `checklist_items` rows confirming an alert creates."""
    check_lactate(lactate)
    rows = []
    for item in BUNDLE:
        applicable, why = _applicability(item.code, lactate, hypotension)
        rows.append(
            {
                "alert_id": alert_id,
                "item": item.code,
                "title": item.title,
                "due_at": opened_at + item.within,
                "applicable": applicable,
                "why": why,
            }
        )
    return rows


def status_at(
    due_at: datetime, applicable: bool, done_at: datetime | None, at: datetime
) -> tuple[ItemStatus, int | None]:
    """An item's status at `at`, and its minutes left (negative once overdue)."""
    if done_at is not None:
        return ItemStatus.DONE, None
    if not applicable:
        return ItemStatus.NOT_APPLICABLE, None
    minutes = math.floor((due_at - at).total_seconds() / 60)
    return (ItemStatus.DUE if at <= due_at else ItemStatus.OVERDUE), minutes


def item_from_row(row: Mapping[str, Any], at: datetime) -> ChecklistItem:
    status, minutes = status_at(row["due_at"], row["applicable"], row["done_at"], at)
    return ChecklistItem(
        alert_id=row["alert_id"],
        item=row["item"],
        title=row["title"],
        due_at=row["due_at"],
        applicable=bool(row["applicable"]),
        why=row["why"],
        done_at=row["done_at"],
        done_by=row["done_by"],
        note=row["note"],
        status=status,
        minutes_left=minutes,
    )


def completion_note(item: str, cultures_done: bool, note: str | None) -> str | None:
    """The note stored on a completed item: antibiotics before cultures are flagged."""
    if item != "antibiotics" or cultures_done:
        return note
    return ANTIBIOTICS_BEFORE_CULTURES + (f"; {note}" if note else "")


def order(code: str) -> int:
    """An item's place in the bundle, for listing in the order a clinician works."""
    return [item.code for item in BUNDLE].index(code)
