"""The patient page (the TREWS page) and the actions taken from it.

One page answers a provider's questions about an alert — how sick, how sure, why, what if —
and offers the three answers side by side, with buttons of one size: confirm, dismiss (with a
reason), pause (until a time or new results). Rule 2: the model informs, the clinician decides,
and deciding "not now" must cost no more than deciding "yes". Nurses record their screening
assessment and escalate a concern from the same page.

Routes and the permission each declares (see `access`):

    GET  /patients/{id}                                   reads_chart   (audited read)
    POST /patients/{id}/what-if                           asks_what_if  (audited)
    POST /patients/{id}/break-glass                       may_break_glass
    POST /patients/{id}/alerts/{alert}/confirm            may_confirm   (provider)
    POST /patients/{id}/alerts/{alert}/dismiss            may_dismiss   (provider)
    POST /patients/{id}/alerts/{alert}/pause              may_pause     (provider)
    POST /patients/{id}/alerts/{alert}/items/{item}/done  may_complete_item
    POST /patients/{id}/assessment                        may_assess
    POST /patients/{id}/escalate                          may_escalate

Every action runs in the request's transaction and is rolled back whole when refused, but
one: breaking the glass, whose refusals must stay on record (`security.break_glass`), runs
in a transaction of its own that commits a refusal's record before the refusal is shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Connection, select

from wardwatch.alerts import workflow
from wardwatch.alerts.records import get_alert
from wardwatch.alerts.silent import require_shown
from wardwatch.alerts.workflow import (
    DISMISS_REASONS,
    SCREENING_QUESTIONS,
    Actor,
    AlertRecord,
    IllegalTransition,
    NotPermitted,
)
from wardwatch.chart import Chart, ChartNotFound, open_chart, stay_history
from wardwatch.explain import WhatIf, WhatIfError, what_if
from wardwatch.features import FeatureError
from wardwatch.ingest.psv import MEASURED
from wardwatch.security import break_glass
from wardwatch.store.schema import encounters
from wardwatch.terminology import wording
from wardwatch.ward import Bed, beds
from wardwatch.web import views
from wardwatch.web.access import (
    FormError,
    PageRoute,
    Require,
    may_assess,
    may_complete_item,
    may_confirm,
    may_dismiss,
    may_escalate,
    may_pause,
)
from wardwatch.web.auth import Principal, client_address, csrf_protected, wall_clock
from wardwatch.web.deps import Services, connection, now, services
from wardwatch.web.rendering import render

router = APIRouter(route_class=PageRoute, default_response_class=HTMLResponse)

PAUSES: Mapping[str, tuple[str, float | None]] = {
    "1h": ("1 hour", 1.0),
    "2h": ("2 hours", 2.0),
    "4h": ("4 hours", 4.0),
    "new-data": ("until new results", None),
}
DONE: Mapping[str, str] = {
    "confirmed": "Sepsis confirmed: the treatment checklist has started.",
    "dismissed": "Alert dismissed. The reason is on the alert's history.",
    "paused": "Alert paused. It comes back by itself when the pause ends.",
    "assessed": "Nursing assessment recorded.",
    "escalated": "Concern escalated: the provider sees it on the worklist.",
    "item": "Checklist item marked done.",
}
OPTED_OUT = "This patient opted out of AI scoring: no risk is computed or shown."
reads_chart = Require("patient.read", patient=True, audit="patient.read")
asks_what_if = Require("whatif", patient=True, audit="what_if")


class MayBreakGlass(Require):
    """`Require("break_glass")`, and a refused principal's attempt is on record
    (`break_glass.refuse`), committed in a transaction of its own because the request's rolls
    back with the refusal. Requests refused before this (not signed in, a form without its
    CSRF token) name nobody who could be recorded."""

    def __init__(self) -> None:
        super().__init__("break_glass")

    def __call__(  # type: ignore[override]
        self,
        request: Request,
        who: Principal = Depends(csrf_protected),  # noqa: B008
        conn: Connection = Depends(connection),  # noqa: B008
        svc: Services = Depends(services),  # noqa: B008
    ) -> Actor:
        try:
            return super().__call__(request, who, conn)
        except NotPermitted as error:
            encounter_id = str(request.path_params.get("encounter_id", ""))
            with svc.engine.begin() as own:
                break_glass.refuse(own, who.actor, encounter_id, str(error), source=who.source)
            raise


may_break_glass = MayBreakGlass()


# ---------------------------------------------------------------- the page


@router.get("/patients/{encounter_id}")
def patient(
    request: Request,
    encounter_id: str,
    actor: Annotated[Actor, Depends(reads_chart)],
    conn: Annotated[Connection, Depends(connection)],
    at: Annotated[datetime, Depends(now)],
    svc: Annotated[Services, Depends(services)],
) -> HTMLResponse:
    """The TREWS page: risk over time, why, what-if, the alert to evaluate, its history."""
    require_shown(conn)
    chart = open_chart(conn, encounter_id, svc.stay_model(conn, encounter_id), at=at, book=svc.book)
    notice = DONE.get(request.query_params.get("done", ""), "")
    return _page(request, actor, chart, notice=notice)


def _page(
    request: Request, actor: Actor, chart: Chart, *, notice: str = "",
    answer: views.WhatIfAnswer | None = None, status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    context = views.patient_context(chart, actor) | {
        "notice": notice,
        "answer": answer or views.WhatIfAnswer(),
        "DISMISS_REASONS": DISMISS_REASONS,
        "SCREENING_QUESTIONS": SCREENING_QUESTIONS,
        "PAUSES": PAUSES,
        "OPTED_OUT": OPTED_OUT,
        "variables": [(v, wording.display(v), wording.unit(v)) for v in MEASURED],
    }
    return render(request, "patient.html", actor, context, status_code=status_code)


@router.post("/patients/{encounter_id}/break-glass")
def open_by_breaking_glass(
    request: Request,
    encounter_id: str,
    actor: Annotated[Actor, Depends(may_break_glass)],
    svc: Annotated[Services, Depends(services)],
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> RedirectResponse:
    """Open one record for an hour with a written reason; governance reviews every grant.

    A transaction of its own, committed whether or not the glass breaks: a refusal leaves
    its record (`break_glass.refuse`), which the request's transaction would roll back."""
    with svc.engine.begin() as conn:
        refusal = _break_the_glass(conn, actor, encounter_id, reason, client_address(request))
    if refusal is not None:
        raise refusal
    return RedirectResponse(f"/patients/{quote(encounter_id, safe='')}", status_code=303)


def _break_the_glass(
    conn: Connection, actor: Actor, encounter_id: str, reason: str, source: str
) -> Exception | None:
    """None once the grant is made; else the refusal to show, its record written in `conn`."""
    if not conn.execute(select(encounters.c.encounter_id).where(
            encounters.c.encounter_id == encounter_id)).first():  # fmt: skip
        refusal = ChartNotFound(f"There is no stay {encounter_id!r}.")
        break_glass.refuse(conn, actor, encounter_id, str(refusal), reason=reason, source=source)
        return refusal
    try:
        # the wall clock, not the ward clock: like every access control (see `auth`)
        break_glass.break_glass(conn, actor, encounter_id, reason, wall_clock(), source=source)
    except NotPermitted as error:  # already refused by `may_break_glass`; recorded all the same
        return error
    except ValueError as error:
        return FormError(str(error))
    return None


# ---------------------------------------------------------------- what-if


@router.post("/patients/{encounter_id}/what-if")
def ask_what_if(
    request: Request,
    encounter_id: str,
    actor: Annotated[Actor, Depends(asks_what_if)],
    conn: Annotated[Connection, Depends(connection)],
    at: Annotated[datetime, Depends(now)],
    svc: Annotated[Services, Depends(services)],
    variable: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """ "What would the risk be if ... were ...?": the sentence, or why it cannot be answered.

    htmx gets the answer alone (swapped into the box); without JavaScript, the whole page."""
    bed = _bed(conn, encounter_id, at, svc)
    answer, status = _answer(conn, bed, at, svc, variable, value)
    if request.headers.get("hx-request"):
        context = {"answer": answer, "encounter_id": encounter_id}
        return render(request, "_what_if.html", actor, context, status_code=status)
    require_shown(conn)
    chart = open_chart(conn, encounter_id, svc.stay_model(conn, encounter_id), at=at, book=svc.book)
    return _page(request, actor, chart, answer=answer, status_code=status)


def _answer(
    conn: Connection, bed: Bed, at: datetime, svc: Services, variable: str, value: str
) -> tuple[views.WhatIfAnswer, int]:
    asked = views.WhatIfAnswer(variable=variable, value=value)
    if bed.opted_out:
        return asked.failed(OPTED_OUT), 409
    try:
        result = _what_if(conn, bed, at, svc, variable, value)
    except WhatIfError as error:
        return asked.failed(str(error)), 422
    return asked.answered(result), 200


def _what_if(
    conn: Connection, bed: Bed, at: datetime, svc: Services, variable: str, value: str
) -> WhatIf:
    if not variable.strip():
        raise WhatIfError("Choose a measurement to change.")
    try:
        number = float(value)
    except ValueError:
        raise WhatIfError(f"{value.strip() or 'An empty value'!r} is not a number.") from None
    if not math.isfinite(number):
        raise WhatIfError(f"{value!r} is not a finite number.")
    history = stay_history(conn, bed.encounter_id, at)
    if history.empty:
        raise WhatIfError("There are no measurements for this stay yet: nothing to change.")
    try:
        return what_if(svc.model_for(bed.unit), history, {variable: number})
    except FeatureError as error:
        raise WhatIfError(f"The model cannot score this stay: {error}") from error


# ---------------------------------------------------------------- provider's evaluation


@router.post("/patients/{encounter_id}/alerts/{alert_id}/confirm")
def confirm(
    encounter_id: str,
    alert_id: int,
    actor: Annotated[Actor, Depends(may_confirm)],
    conn: Annotated[Connection, Depends(connection)],
    at: Annotated[datetime, Depends(now)],
    lactate: Annotated[str, Form()] = "",
    hypotension: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Confirm sepsis: the alert closes and its treatment checklist starts."""
    alert = _alert(conn, encounter_id, alert_id)
    facts = {"lactate": _lactate(lactate), "hypotension": _yes_no(hypotension, "hypotension")}
    with _acting(conn):
        workflow.confirm(conn, alert.alert_id, actor, at=at, note=note.strip() or None, **facts)
    return _back(encounter_id, "confirmed", f"checklist-{alert.alert_id}")


@router.post("/patients/{encounter_id}/alerts/{alert_id}/dismiss")
def dismiss(
    encounter_id: str,
    alert_id: int,
    actor: Annotated[Actor, Depends(may_dismiss)],
    conn: Annotated[Connection, Depends(connection)],
    at: Annotated[datetime, Depends(now)],
    reason: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Dismiss the alert with a reason from the list (and a note for "other")."""
    alert = _alert(conn, encounter_id, alert_id)
    if reason not in DISMISS_REASONS:
        raise FormError("Choose a reason for dismissing the alert.")
    with _acting(conn):
        workflow.dismiss(conn, alert.alert_id, actor, reason, note=note.strip() or None, at=at)
    return _back(encounter_id, "dismissed", "history")


@router.post("/patients/{encounter_id}/alerts/{alert_id}/pause")
def pause(
    encounter_id: str,
    alert_id: int,
    actor: Annotated[Actor, Depends(may_pause)],
    conn: Annotated[Connection, Depends(connection)],
    at: Annotated[datetime, Depends(now)],
    until: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Pause the alert for 1, 2 or 4 hours, or until new results arrive."""
    alert = _alert(conn, encounter_id, alert_id)
    if until not in PAUSES:
        raise FormError("Choose how long to pause the alert: 1, 2 or 4 hours, or new results.")
    hours = PAUSES[until][1]
    end = None if hours is None else at + timedelta(hours=hours)
    with _acting(conn):
        workflow.pause(conn, alert.alert_id, actor, until=end, until_new_data=hours is None,
                       at=at, note=note.strip() or None)  # fmt: skip
    return _back(encounter_id, "paused", f"alert-{alert.alert_id}")


@router.post("/patients/{encounter_id}/alerts/{alert_id}/items/{item}/done")
def complete_item(
    encounter_id: str,
    alert_id: int,
    item: str,
    actor: Annotated[Actor, Depends(may_complete_item)],
    conn: Annotated[Connection, Depends(connection)],
    at: Annotated[datetime, Depends(now)],
    note: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Tick one item of a confirmed alert's treatment checklist."""
    alert = _alert(conn, encounter_id, alert_id)
    with _acting(conn):
        workflow.complete_item(conn, alert.alert_id, item, actor, at=at, note=note.strip() or None)
    return _back(encounter_id, "item", f"checklist-{alert.alert_id}")


# ---------------------------------------------------------------- nurse's assessment


async def screening_form(request: Request) -> dict[str, str]:
    """The answered screening questions of the posted form (unanswered ones left out)."""
    form = await request.form()
    answers = {code: str(form.get(f"answer_{code}", "")) for code in SCREENING_QUESTIONS}
    return {code: answer for code, answer in answers.items() if answer}


@router.post("/patients/{encounter_id}/assessment")
def assess(
    encounter_id: str,
    answers: Annotated[dict[str, str], Depends(screening_form)],
    actor: Annotated[Actor, Depends(may_assess)],
    conn: Annotated[Connection, Depends(connection)],
    at: Annotated[datetime, Depends(now)],
    svc: Annotated[Services, Depends(services)],
    note: Annotated[str, Form()] = "",
    alert_id: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Record the nurse's screening answers (on the active alert's timeline when there is one)."""
    bed = _bed(conn, encounter_id, at, svc)
    about = _alert(conn, encounter_id, int(alert_id)).alert_id if alert_id.isdigit() else None
    if not answers:
        raise FormError("Answer at least one screening question before saving.")
    with _acting(conn):
        workflow.record_assessment(conn, encounter_id, bed.patient_id, actor, answers,
                                   alert_id=about, note=note.strip() or None, at=at)  # fmt: skip
    return _back(encounter_id, "assessed", "assessment")


@router.post("/patients/{encounter_id}/escalate")
def escalate(
    encounter_id: str,
    actor: Annotated[Actor, Depends(may_escalate)],
    conn: Annotated[Connection, Depends(connection)],
    at: Annotated[datetime, Depends(now)],
    svc: Annotated[Services, Depends(services)],
    note: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Raise a concern: flags the active alert, or opens a nurse-concern alert."""
    bed = _bed(conn, encounter_id, at, svc)
    with _acting(conn):
        workflow.escalate(conn, encounter_id, bed.patient_id, actor, at=at,
                          note=note.strip() or None)  # fmt: skip
    return _back(encounter_id, "escalated", "alerts")


# ---------------------------------------------------------------- helpers


def _bed(conn: Connection, encounter_id: str, at: datetime, svc: Services) -> Bed:
    found = beds(conn, [encounter_id], at=at, book=svc.book)
    if not found:
        raise ChartNotFound(f"There is no stay {encounter_id!r}.")
    return found[0]


def _alert(conn: Connection, encounter_id: str, alert_id: int) -> AlertRecord:
    """The alert, if it belongs to this stay (a URL naming another patient's alert is 404)."""
    alert = get_alert(conn, alert_id)
    if alert.encounter_id != encounter_id:
        raise ChartNotFound(f"Alert {alert_id} is not an alert of stay {encounter_id!r}.")
    return alert


@contextmanager
def _acting(conn: Connection) -> Iterator[None]:
    """Roll the whole action back if the workflow refuses it; bad input becomes a FormError."""
    try:
        yield
    except Exception as error:
        conn.rollback()
        if isinstance(error, ValueError) and not isinstance(error, IllegalTransition | FormError):
            raise FormError(str(error)) from error
        raise


def _lactate(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise FormError(f"Lactate {text!r} is not a number (mmol/L).") from None
    if not (math.isfinite(value) and 0 <= value <= 30):
        raise FormError(f"Lactate {text!r} mmol/L is not plausible (0–30).")
    return value


def _yes_no(text: str, name: str) -> bool | None:
    parse: Mapping[str, bool | None] = {"": None, "unknown": None, "yes": True, "no": False}
    if text not in parse:
        raise FormError(f"{name} must be yes, no or unknown, not {text!r}.")
    return parse[text]


def _back(encounter_id: str, done: str, anchor: str) -> RedirectResponse:
    """303 back to the patient page, which says what was done."""
    url = f"/patients/{quote(encounter_id, safe='')}?done={done}#{anchor}"
    return RedirectResponse(url, status_code=303)
