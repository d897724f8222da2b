"""The clinicians' pages: sign-in, the unit worklist, the patient page, the model card.

Server-rendered HTML (Jinja2) that works without JavaScript; htmx (vendored) only refreshes
the worklist's rows every few seconds and answers what-if questions in place. Every form is a
plain POST that redirects back (303) after it acted, so a reload never repeats an action.

Routes and what each one needs (see `access`):

    GET  /                    Public       → the page for the role (worklist, or model card)
    GET  /signin, POST /signin
                              Public       password + TOTP (or a recovery code); the POST
                                           must carry the page's sign-in token (CSRF before
                                           a session: `sessions.SIGNIN_COOKIE`), else 403
    POST /signout             SignedIn     ends this session (`?everywhere=1`: all of them)
    GET  /ward                patient.read the unit worklist, highest risk first (audited)
    GET  /ward/rows           patient.read its rows (the htmx refresh; not a new read)
    GET  /model               SignedIn     the active model's card
    POST /feedback            feedback     free-text feedback about a page
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
from wardwatch.alerts.records import deployment_silent
from wardwatch.alerts.workflow import Actor
from wardwatch.lru import LRU
from wardwatch.model.artifact import SHIPPED, load_card, model_version, verified_files
from wardwatch.security import login, roles, sessions
from wardwatch.security.audit import AuditEvent
from wardwatch.store.schema import feedback
from wardwatch.web import governance_page, patient_page, views
from wardwatch.web.access import (
    FormError,
    PageRoute,
    Public,
    Require,
    local_path,
    sees_patients,
    signed_in_person,
)
from wardwatch.web.auth import (
    NotSignedIn,
    Principal,
    client_address,
    csrf_protected,
    resolve_principal,
    wall_clock,
)
from wardwatch.web.deps import Services, connection, now, queue_audit, services
from wardwatch.web.rendering import render, templates

router = APIRouter(route_class=PageRoute, default_response_class=HTMLResponse)
router.include_router(patient_page.router)
router.include_router(governance_page.router)

FEEDBACK_LIMIT = 4000  # characters: a paragraph or two, not a document
views_worklist = Require("patient.read", audit="worklist.read")
sends_feedback = Require("feedback")
sign_in_page = Public("the sign-in page shows nothing but the form")
SIGNIN_REFUSED = ("This sign-in form has expired or was not sent from this site, so nothing "
                  "was checked: sign in again.")  # fmt: skip


# ---------------------------------------------------------------- sign-in


def home_of(actor: Actor) -> str:
    """Where a person lands after signing in: the worklist if their role sees patients, the
    governance dashboard if it reads that, else the model card."""
    if roles.has_permission(actor.role, "patient.read"):
        return "/ward"
    return "/governance" if roles.has_permission(actor.role, "governance.read") else "/model"


@router.get("/")
def home(
    request: Request,
    _: Annotated[None, Depends(Public("a redirect, nothing shown"))],
    svc: Annotated[Services, Depends(services)],
) -> RedirectResponse:
    """The signed-in person's own page (`home_of`), else the sign-in page."""
    try:
        with svc.engine.begin() as conn:
            target = home_of(resolve_principal(request, conn).actor)
    except NotSignedIn:
        target = "/signin"
    return RedirectResponse(target, status_code=303)


@router.get("/signin")
def signin_page(
    request: Request,
    _: Annotated[None, Depends(sign_in_page)],
    next: str = "",
) -> HTMLResponse:
    return _signin(request, next)


def _signin(request: Request, target: str, error: str = "", user: str = "",
            status_code: int = 200) -> HTMLResponse:  # fmt: skip
    """The sign-in page, its form's token set in the cookie beside it (see `sessions`)."""
    token = sessions.signin_token(request.cookies.get(sessions.SIGNIN_COOKIE))
    context = {"next": local_path(target, ""), "error": error, "user": user,
               "signin_token": token}  # fmt: skip
    response = render(request, "signin.html", None, context, status_code=status_code)
    response.set_cookie(**sessions.signin_cookie_kwargs(token))
    return response


@router.post("/signin")
def signin(
    request: Request,
    _: Annotated[None, Depends(sign_in_page)],
    conn: Annotated[Connection, Depends(connection)],
    user: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    code: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Password and second factor; a session cookie on success. Failures are counted and
    committed (the lockout needs them), and say no more than "wrong user, password or code".

    A form without the sign-in page's token is refused first (403, the form again, without
    the user name typed: it may be the other site's): another site posting its own
    credentials must not sign this browser in, nor count as a failure towards a lockout."""
    if not sessions.signin_token_ok(request.cookies.get(sessions.SIGNIN_COOKIE), csrf_token):
        return _signin(request, next, SIGNIN_REFUSED, status_code=403)
    result = login.authenticate(conn, user, password, code, at=wall_clock(),
                                source=client_address(request))  # fmt: skip
    if not result.ok or result.session is None or result.user is None:
        return _signin(request, next, result.reason, user=user[:64], status_code=401)
    target = local_path(next, home_of(result.user.actor))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(**sessions.cookie_kwargs(result.session.token))
    response.delete_cookie(**sessions.delete_signin_cookie_kwargs())  # spent: the next is new
    return response


@router.post("/signout")
def signout(
    request: Request,
    who: Annotated[Principal, Depends(csrf_protected)],
    _: Annotated[Actor, Depends(signed_in_person)],
    conn: Annotated[Connection, Depends(connection)],
    everywhere: bool = False,
) -> RedirectResponse:
    """End this session, or (`everywhere`) every session of this person."""
    if everywhere:
        sessions.revoke_all(conn, who.actor.user_id, at=wall_clock(), source=who.source)
    elif who.session_token:
        sessions.revoke(conn, who.session_token, at=wall_clock())
        session_id = who.session.session_id[:12] if who.session else ""
        queue_audit(request, AuditEvent(action="logout", actor=who.actor.user_id,
                                        role=who.actor.role, object=f"session/{session_id}",
                                        source=who.source))  # fmt: skip
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(**sessions.delete_cookie_kwargs())
    return response


# ---------------------------------------------------------------- the worklist


def _unit(unit: str | None) -> str | None:
    return unit.strip() or None if unit else None


def _worklist_context(conn: Connection, svc: Services, at: datetime, unit: str | None) -> dict:
    book = svc.book  # read once: with the registry, each read checks its generation
    beds = ward.worklist(conn, at=at, unit=unit, book=book)
    context = {"beds": beds, "unit": unit, "now": at, "alert_badges": views.alert_badges,
               "score_lag": views.score_lag, "silent": deployment_silent(conn)}  # fmt: skip
    context["key"] = ward.worklist_key(conn, at=at, unit=unit, book=book)
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
    actor: Annotated[Actor, Depends(views_worklist)],
    who: Annotated[Principal, Depends(csrf_protected)],
    conn: Annotated[Connection, Depends(connection)],
    at: Annotated[datetime, Depends(now)],
    svc: Annotated[Services, Depends(services)],
    unit: str | None = None,
) -> HTMLResponse:
    """The unit worklist, highest risk first (the rows refresh themselves every 5 s)."""
    started = time.perf_counter()
    context = _worklist_context(conn, svc, at, _unit(unit))
    page_key = (context["key"], actor.user_id, actor.role, who.csrf_token)  # per session
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
    actor: Annotated[Actor, Depends(sees_patients)],
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
    actor: Annotated[Actor, Depends(signed_in_person)],
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
    actor: Annotated[Actor, Depends(sends_feedback)],
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
