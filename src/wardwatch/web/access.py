"""Who may open which page and take which action: the pages' dependencies, named.

Every page route declares, with an explicit `Depends(...)`, the actor it needs, so that the
security work can list the routes and check that each one states its permission:

    anyone            the sign-in page and signing out: no actor needed
    signed_in         any signed-in clinician (worklist, patient page, what-if, feedback)
    Permission(a)     a clinician whose role may take workflow action `a`; the roles come from
                      `workflow.PERMISSIONS`, the same table the state machine enforces, so a
                      page can never allow what the workflow refuses (or the reverse)

`signed_in` wraps `deps.current_actor` (the demo sign-in until real sessions land), so
replacing that one function secures every page.

`PageRoute` turns the refusals a clinician can meet into pages a person can read, never a 500:
not signed in → the sign-in page (htmx requests get `HX-Redirect`), a role that may not act →
403, two clinicians acting at once (an illegal transition) → 409, an unknown patient or alert →
404, a form that does not make sense → 422. Anything else is a bug and propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from wardwatch.alerts import workflow
from wardwatch.alerts.records import AlertNotFound
from wardwatch.alerts.workflow import Actor, IllegalTransition, NotPermitted
from wardwatch.chart import ChartNotFound
from wardwatch.web import deps
from wardwatch.web.rendering import render


class FormError(ValueError):
    """A submitted form that cannot be acted on (unknown reason, missing note, not a number)."""


async def anyone() -> None:
    """The route needs no actor: the sign-in page itself, and signing out."""
    return None


async def signed_in(actor: Annotated[Actor, Depends(deps.current_actor)]) -> Actor:
    """Any signed-in clinician (401, turned into the sign-in page by `PageRoute`, if none)."""
    return actor


class Permission:
    """A dependency: the signed-in clinician, if their role may take workflow `action`.

    An instance (not a closure) so that a route's permission can be read back:
    `route.dependant.dependencies[i].call.action`.
    """

    def __init__(self, action: str) -> None:
        if action not in workflow.PERMISSIONS:
            raise ValueError(f"unknown workflow action {action!r}")
        self.action = action

    async def __call__(self, actor: Annotated[Actor, Depends(signed_in)]) -> Actor:
        workflow.require(actor, self.action)
        return actor

    def __repr__(self) -> str:
        return f"Permission({self.action!r})"


may_confirm = Permission("confirm")
may_dismiss = Permission("dismiss")
may_pause = Permission("pause")
may_escalate = Permission("escalate")
may_assess = Permission("assess")
may_complete_item = Permission("complete_item")


def optional_actor(request: Request) -> Actor | None:
    """The signed-in clinician if there is one (for pages that explain a refusal)."""
    try:
        return deps.actor_of(request)
    except HTTPException:
        return None


def local_path(target: str | None, default: str = "/ward") -> str:
    """`target` if it is a path on this site, else `default` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


# ---------------------------------------------------------------- refusals as pages

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
REFUSALS: tuple[tuple[type[Exception], int, str], ...] = (
    (NotPermitted, 403, "Not allowed for your role"),
    (IllegalTransition, 409, "Someone got there first"),
    (AlertNotFound, 404, "No such alert"),
    (ChartNotFound, 404, "No such patient"),
    (FormError, 422, "Please check the form"),
)
_REFUSED = tuple(kind for kind, _, _ in REFUSALS)


def sign_in_first(request: Request) -> Response:
    """Where a request without a signed-in clinician goes: the sign-in page, then back."""
    if request.method == "GET":
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    else:
        back = _path_of(request.headers.get("referer", ""))
    target = "/signin?next=" + quote(local_path(back), safe="/")
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _path_of(url: str) -> str:
    """The path (and query) of a same-site URL, e.g. a Referer header."""
    if url.startswith(("http://", "https://")):
        rest = url.split("://", 1)[1]
        return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return url


class PageRoute(APIRoute):
    """A page route whose refusals render as readable pages (see the module docstring)."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as error:
                if error.status_code != 401:
                    raise
                return sign_in_first(request)
            except _REFUSED as error:
                return _refused(request, error)

        return guarded


def _refused(request: Request, error: Exception) -> Response:
    status, title = next((s, t) for kind, s, t in REFUSALS if isinstance(error, kind))
    encounter_id = request.path_params.get("encounter_id")
    context = {"title": title, "message": str(error), "encounter_id": encounter_id,
               "page_path": f"/patients/{encounter_id}" if encounter_id else "/ward"}  # fmt: skip
    return render(request, "refused.html", optional_actor(request), context, status_code=status)
