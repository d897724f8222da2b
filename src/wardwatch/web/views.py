"""What the templates show, computed in Python where a template would need logic.

The read models (`ward.Bed`, `chart.Chart`, `explain.Explanation`) hold the facts; this module
words them for the pages: the alert badges of a worklist row, the uncertainty in a sentence,
each alert event as "who did what", each checklist item's timer. Kept out of the templates so
that the wording is tested like code and the templates stay a layout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

from wardwatch.alerts import checklist as bundle
from wardwatch.alerts.checklist import ChecklistItem, ItemStatus
from wardwatch.alerts.records import AlertRecord
from wardwatch.alerts.workflow import DISMISS_REASONS, PERMISSIONS, Actor
from wardwatch.chart import AlertHistory, Chart
from wardwatch.explain import Measurement, WhatIf
from wardwatch.terminology import wording
from wardwatch.ward import ALERT_NAMES, Bed
from wardwatch.web.charts import risk_chart
from wardwatch.web.rendering import age, clock, minutes

KIND_TITLES = {"sepsis": "Sepsis alert", "escalation": "Nurse concern",
               "review": "Needs human review"}  # fmt: skip
_ACTIONS = {
    "open": "opened the alert", "confirm": "confirmed sepsis", "dismiss": "dismissed the alert",
    "pause": "paused the alert", "resume": "the alert came back", "escalate": "escalated",
    "assess": "recorded a nursing assessment", "complete_item": "ticked a checklist item",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Badge:
    """One alert state as a worklist cell shows it: words, and a style keyed to the state."""

    text: str
    state: str  # open | paused | confirmed | dismissed


@dataclass(frozen=True, slots=True)
class WhatIfAnswer:
    """The what-if box: what was asked, and the answer or why there is none."""

    variable: str = ""
    value: str = ""
    sentence: str = ""
    error: str = ""

    def failed(self, message: str) -> WhatIfAnswer:
        return replace(self, error=message)

    def answered(self, result: WhatIf) -> WhatIfAnswer:
        return replace(self, sentence=result.sentence)


def alert_badges(bed: Bed) -> list[Badge]:
    """The row's alert states, the most pressing first (the one `Bed.alert_state` names),
    then the other alerts still waiting for an answer (a review beside a sepsis alert), and
    the sepsis alert's answer when another alert is the pressing one."""
    if not bed.alert_state:
        return []
    state = "paused" if " paused " in bed.alert_state else bed.alert_state.rsplit(" ", 1)[-1]
    badges = [Badge(bed.alert_state, state)]
    records = (("sepsis", bed.sepsis), ("escalation", bed.escalation), ("review", bed.review))
    for kind, record in records:
        if record is None or ALERT_NAMES[kind] in bed.alert_state:
            continue
        if record.active or kind == "sepsis":
            badges.append(Badge(bed.alert_text(kind, record), record.state.value))
    return badges


def score_lag(bed: Bed) -> str:
    """ "score 3 h older than the data" when data arrived that the shown score has not seen
    (rule 1: a stale input is shown, not hidden)."""
    if bed.scored_at is None or bed.last_data_at is None:
        return ""
    lag = (bed.last_data_at - bed.scored_at).total_seconds() / 3600
    return f"score {age(lag)} older than the data" if lag >= 2 else ""


def effect_text(m: Measurement) -> str:
    """What the measurement does to the risk: the tail of its sentence ("raises risk ...")."""
    return m.sentence.rsplit(": ", 1)[-1]


def uncertainty_words(risk: float, uncertainty: float, threshold: float | None) -> str:
    """The ensemble's spread as a sentence, and whether it straddles the alert threshold."""
    low, high = max(0.0, risk - uncertainty), min(1.0, risk + uncertainty)
    text = (
        f"The model's members disagree by ±{100 * uncertainty:.1f} percentage points: "
        f"the risk is probably between {wording.percent(low)} and {wording.percent(high)}."
    )
    if threshold is not None and low < threshold <= high:
        text += " That range straddles the alert threshold: the model is not sure which side "
        text += "of it this patient is on."
    return text


def pause_text(alert: AlertRecord, now: datetime) -> str:
    """ "Paused until 16:00 or new results" for a paused alert, else ""."""
    if alert.state.value != "paused":
        return ""
    ends = ([f"until {clock(alert.paused_until, now)}"] if alert.paused_until else []) + (
        ["until new results"] if alert.pause_until_new_data else []
    )
    return "Paused " + " or ".join(ends)


def event_text(event: dict[str, Any]) -> str:
    """An alert event as a sentence's predicate: "dismissed the alert: No sign of infection"."""
    text = _ACTIONS.get(event["action"], event["action"])
    code = event.get("reason_code")
    if event["action"] == "dismiss" and code:
        text += f": {DISMISS_REASONS.get(code, code)}"
    if event["action"] == "complete_item" and code:
        text += f": {bundle.ITEMS[code].title if code in bundle.ITEMS else code}"
    if event["from_state"] and event["from_state"] != event["to_state"]:
        text += f" ({event['from_state']} → {event['to_state']})"
    return text + (f" — {event['note']}" if event.get("note") else "")


def item_status(item: ChecklistItem, now: datetime) -> str:
    """A checklist item's timer in words."""
    if item.status is ItemStatus.DONE:
        late = " (late)" if item.late else ""
        return f"done at {clock(item.done_at, now)} by {item.done_by}{late}"
    if item.status is ItemStatus.NOT_APPLICABLE:
        return f"not applicable: {item.why}"
    due = clock(item.due_at, now)
    if item.status is ItemStatus.OVERDUE:
        return f"overdue by {minutes(item.minutes_left)} (was due {due})"
    return f"due in {minutes(item.minutes_left)} (by {due})"


def permissions(actor: Actor) -> dict[str, bool]:
    """Which workflow actions the actor's role may take (what the page offers them)."""
    return {action: actor.role in roles for action, roles in PERMISSIONS.items()}


def _active_first(history: list[AlertHistory]) -> list[AlertHistory]:
    order = ("sepsis", "escalation", "review")
    return sorted((h for h in history if h.alert.active), key=lambda h: order.index(h.alert.kind))


def _measurement(chart: Chart, variable: str) -> Measurement | None:
    if chart.explanation is None:
        return None
    return next((m for m in chart.explanation.measurements if m.variable == variable), None)


def patient_context(chart: Chart, actor: Actor) -> dict[str, Any]:
    """Everything the patient page template reads, from the chart."""
    explanation = chart.explanation
    measurements = explanation.measurements if explanation else ()
    bed = chart.bed
    return {
        "chart": chart, "bed": bed, "now": chart.at, "explanation": explanation,
        "measured": [m for m in measurements if m.value is not None],
        "unmeasured": [m.display for m in measurements if m.value is None],
        "starred": [m for m in measurements if m.starred],
        "chart_svg": risk_chart(chart.risk_history, chart.threshold),
        "uncertainty_text": "" if bed.risk is None or bed.uncertainty is None
        else uncertainty_words(bed.risk, bed.uncertainty, bed.threshold),
        "active": _active_first(chart.alerts),
        "confirmed": [h for h in chart.alerts if h.checklist],
        "lactate": _measurement(chart, "Lactate"),
        "can": permissions(actor), "bed_badges": alert_badges(bed),
        "KIND_TITLES": KIND_TITLES, "pause_text": pause_text, "event_text": event_text,
        "item_status": item_status, "effect_text": effect_text, "score_lag": score_lag,
        "page_path": f"/patients/{quote(bed.encounter_id, safe='')}",
        "encounter_id": bed.encounter_id,
    }  # fmt: skip
