"""The clinicians' pages: sign-in, the unit worklist, the patient page, the model card.

Server-rendered HTML (Jinja2) that works without JavaScript; htmx (vendored) only refreshes
the worklist's rows every few seconds and answers what-if questions in place. Every form is a
plain POST that redirects back (303) after it acted, so a reload never repeats an action.

Routes and the actor each one needs (see `access`):

    GET  /                    anyone       → the worklist
    GET  /signin, POST /signin, POST /signout
                              anyone       demo sign-in (a cookie naming a demo clinician)
    GET  /ward                signed_in    the unit worklist, highest risk first
    GET  /ward/rows           signed_in    its rows (the htmx refresh)
    GET  /model               signed_in    the active model's card
    POST /feedback            signed_in    free-text feedback about a page
    /patients/...             see `patient_page`
"""

from __future__ import annotations

import time
from datetime import datetime
from functools import cache
from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy import Connection, insert

from wardwatch import ward
from wardwatch.alerts.workflow import Actor
from wardwatch.lru import LRU
from wardwatch.model.artifact import SHIPPED, load_card, model_version, verified_files
from wardwatch.store.schema import feedback
from wardwatch.web import patient_page, views
from wardwatch.web.access import FormError, PageRoute, anyone, local_path, signed_in
from wardwatch.web.deps import DEMO_COOKIE, DEMO_USERS, Services, connection, now, services
from wardwatch.web.rendering import render, templates

router = APIRouter(route_class=PageRoute, default_response_class=HTMLResponse)
router.include_router(patient_page.router)

FEEDBACK_LIMIT = 4000  # characters: a paragraph or two, not a document


# ---------------------------------------------------------------- sign-in


@router.get("/")
def home(_: Annotated[None, Depends(anyone)]) -> RedirectResponse:
    return RedirectResponse("/ward", status_code=303)


@router.get("/signin")
def signin_page(
    request: Request,
    _: Annotated[None, Depends(anyone)],
    next: str = "/ward",
) -> HTMLResponse:
    return _signin(request, next)


def _signin(request: Request, target: str, error: str = "", status_code: int = 200) -> HTMLResponse:
    context = {"users": DEMO_USERS, "next": local_path(target), "error": error}
    return render(request, "signin.html", None, context, status_code=status_code)


@router.post("/signin")
def signin(
    request: Request,
    _: Annotated[None, Depends(anyone)],
    user: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/ward",
) -> Response:
    if user not in DEMO_USERS:
        return _signin(request, next, "Choose one of the demo clinicians.", status_code=422)
    response = RedirectResponse(local_path(next), status_code=303)
    response.set_cookie(DEMO_COOKIE, user, httponly=True, samesite="lax")
    return response


@router.post("/signout")
def signout(_: Annotated[None, Depends(anyone)]) -> RedirectResponse:
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(DEMO_COOKIE)
    return response


# ---------------------------------------------------------------- the worklist


def _unit(unit: str | None) -> str | None:
    return unit.strip() or None if unit else None


def _worklist_context(conn: Connection, svc: Services, at: datetime, unit: str | None) -> dict:
    beds = ward.worklist(conn, at=at, unit=unit, book=svc.book)
    context = {"beds": beds, "unit": unit, "now": at, "alert_badges": views.alert_badges,
               "score_lag": views.score_lag}  # fmt: skip
    context["key"] = ward.worklist_key(conn, at=at, unit=unit, book=svc.book)
    context["rows_html"] = _rows_html(context["key"], context)
    return context


_ROWS: LRU[tuple, Markup] = LRU(32)
_PAGES: LRU[tuple, bytes] = LRU(32)  # whole worklist pages, per clinician


def _rows_html(key: tuple, context: dict) -> Markup:
    """The rows as HTML, rendered once per worklist state: every screen of a unit polls them
    every 5 s, and rendering dominates the cost of an unchanged answer."""
    html = _ROWS.get(key)
    if html is None:
        html = Markup(templates.get_template("_rows.html").render(context))
        _ROWS.put(key, html)
    return html


@router.get("/ward")
def worklist(
    request: Request,
    actor: Annotated[Actor, Depends(signed_in)],
    conn: Annotated[Connection, Depends(connection)],
    at: Annotated[datetime, Depends(now)],
    svc: Annotated[Services, Depends(services)],
    unit: str | None = None,
) -> HTMLResponse:
    """The unit worklist, highest risk first (the rows refresh themselves every 5 s)."""
    started = time.perf_counter()
    context = _worklist_context(conn, svc, at, _unit(unit))
    page_key = (context["key"], actor.user_id, actor.role)
    kept = _PAGES.get(page_key)
    if kept is None:
        everyone = ward.worklist(conn, at=at, book=svc.book)  # kept: no query when unchanged
        context["units"] = sorted({bed.unit for bed in everyone if bed.unit})
        kept = bytes(render(request, "worklist.html", actor, context).body)
        _PAGES.put(page_key, kept)
    return _timed(HTMLResponse(kept), started)


@router.get("/ward/rows")
def worklist_rows(
    request: Request,
    actor: Annotated[Actor, Depends(signed_in)],
    conn: Annotated[Connection, Depends(connection)],
    at: Annotated[datetime, Depends(now)],
    svc: Annotated[Services, Depends(services)],
    unit: str | None = None,
) -> HTMLResponse:
    """The worklist's rows alone: what htmx swaps into the table every 5 s."""
    started = time.perf_counter()
    context = _worklist_context(conn, svc, at, _unit(unit))
    return _timed(HTMLResponse(context["rows_html"]), started)


def _timed(response: HTMLResponse, started: float) -> HTMLResponse:
    """Say how long the server took (Server-Timing): measurable from any browser."""
    elapsed = (time.perf_counter() - started) * 1000
    response.headers["Server-Timing"] = f"render;dur={elapsed:.1f}"
    return response


# ---------------------------------------------------------------- the model card


@cache
def _card() -> tuple[dict, Markup, str]:
    """The shipped card (verified against its manifest), its Markdown as HTML, its version."""
    card = load_card(SHIPPED)
    html = (
        MarkdownIt("commonmark", {"html": False})
        .enable("table")
        .render((SHIPPED / "card.md").read_text(encoding="utf-8"))
    )
    return card, Markup(html), model_version(verified_files(SHIPPED))


@router.get("/model")
def model_card(
    request: Request,
    actor: Annotated[Actor, Depends(signed_in)],
    svc: Annotated[Services, Depends(services)],
) -> HTMLResponse:
    """The active model's card: what it is for, how it was validated, its limits."""
    card, html, card_version = _card()
    context = {"card": card, "card_html": html, "card_version": card_version,
               "active_version": svc.model.version}  # fmt: skip
    return render(request, "model.html", actor, context)


# ---------------------------------------------------------------- feedback


@router.post("/feedback")
def send_feedback(
    actor: Annotated[Actor, Depends(signed_in)],
    conn: Annotated[Connection, Depends(connection)],
    at: Annotated[datetime, Depends(now)],
    text: Annotated[str, Form()] = "",
    page: Annotated[str, Form()] = "/ward",
    encounter_id: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Store a clinician's free-text feedback about a page; back to the page, which thanks."""
    text = text.strip()
    if not text:
        raise FormError("Feedback is empty: write what you noticed, then send it.")
    page = local_path(page)
    row = {"at": at, "actor": actor.user_id, "role": actor.role, "page": page[:200],
           "encounter_id": encounter_id or None, "text": text[:FEEDBACK_LIMIT]}  # fmt: skip
    conn.execute(insert(feedback).values(**row))
    return RedirectResponse(_thanked(page), status_code=303)


def _thanked(page: str) -> str:
    """`page` with `feedback=sent` in its query, so the page shows a thank-you."""
    parts = urlsplit(page)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("feedback", "done")]
    return f"{parts.path}?{urlencode([*query, ('feedback', 'sent')])}#feedback"
