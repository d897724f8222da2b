"""How the pages turn values into words: the Jinja2 environment and its filters.

One place for every format a clinician reads (a risk "11.7%", its uncertainty "±4.0 pts", an
age "35 min", a time "14:00" or "19 Nov 03:00"), so the worklist and the patient page can
never say the same thing two ways. Numbers and names of variables come from
`terminology.wording`, as on every other screen.

Templates use `StrictUndefined`: a misspelt variable fails the page test instead of
rendering as an empty cell a clinician would read as "nothing there".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from wardwatch.alerts.workflow import Actor
from wardwatch.clock import ward_time
from wardwatch.terminology import wording

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Band: a shape and a word as well as a colour, so it reads without colour vision.
BANDS: Mapping[str, tuple[str, str]] = {
    "high": ("▲", "High"),
    "raised": ("◆", "Raised"),
    "low": ("○", "Low"),
    "none": ("–", "Not scored"),
}
TRENDS: Mapping[str | None, tuple[str, str]] = {
    "up": ("↑", "rising"),
    "down": ("↓", "falling"),
    "steady": ("→", "steady"),
    None: ("", "no trend yet"),
}


def percent(risk: float | None) -> str:
    """A risk as the clinician reads it: "11.7%", or "—" without one."""
    return "—" if risk is None else wording.percent(risk)


def points(uncertainty: float | None) -> str:
    """The ensemble's spread in percentage points: "±1.2 pts"."""
    return "" if uncertainty is None else f"±{100 * uncertainty:.1f} pts"


def age(hours: float | None) -> str:
    """How old something is, briefly: "now", "35 min", "3 h", "2 d 4 h"; "—" if unknown."""
    if hours is None:
        return "—"
    minutes = round(hours * 60)
    if minutes < 1:
        return "now"
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    days, rest = divmod(minutes // 60, 24)
    return f"{days} d {rest} h" if rest else f"{days} d"


def since(moment: datetime | None, now: datetime) -> str:
    """How long before `now` `moment` was: "just now", "35 min ago"; "—" if unknown."""
    if moment is None:
        return "—"
    text = age((now - moment).total_seconds() / 3600)
    return "just now" if text == "now" else f"{text} ago"


def clock(moment: datetime | None, now: datetime | None = None) -> str:
    """ "14:00" on the day of `now`, else "19 Nov 03:00" (ward clock, UTC)."""
    return ward_time(moment, now)


def minutes(value: int | None) -> str:
    """A duration in minutes as "45 min" or "2 h 5 min"."""
    if value is None:
        return ""
    hours, rest = divmod(abs(value), 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def vital_unit(variable: str) -> str:
    """A variable's unit as written after its number: "/min", "%", " mm Hg"."""
    unit = wording.unit(variable)
    return unit if unit in ("%", "/min", "") else f" {unit}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(percent=percent, points=points, age=age, since=since, clock=clock,
                       minutes=minutes, with_unit=wording.with_unit,
                       ago=wording.ago, number=wording.number,
                       unit=vital_unit)  # fmt: skip
    env.globals.update(BANDS=BANDS, TRENDS=TRENDS)
    return env


templates = Jinja2Templates(env=_environment())


def render(
    request: Request,
    name: str,
    actor: Actor | None,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A template as an HTML response; every page gets the actor (for the header) and the
    session's CSRF token (for its forms, and for htmx in a header: see base.html)."""
    who = getattr(request.state, "principal", None)
    csrf = who.csrf_token if who is not None else ""
    return templates.TemplateResponse(
        request,
        name,
        {"actor": actor, "csrf_token": csrf, **context},
        status_code=status_code,
        headers=dict(headers or {}),
    )
