"""Who may open which page, call which endpoint and take which action: declared, per route.

Every route declares what it needs with an explicit dependency, and
`tests/web/test_permissions.py` walks every route of the app and fails if one declares
nothing:

    Public(why)         no sign-in: the sign-in page, the FHIR CapabilityStatement, CDS
                        discovery. `why` says why that is safe.
    SignedIn()          any person signed in (a session), whatever the role: signing out,
                        the model card.
    Require(p)          a principal (session or token, see `auth`) allowed permission `p` of
                        `security.roles.PERMISSIONS`. People are allowed by their role
                        (`roles.MATRIX`); API tokens by their SMART scopes: `scopes=[(resource,
                        action), ...]` names those that grant the endpoint (any one will do),
                        and without any the endpoint is for people only. State-changing
                        requests made with a session must carry the CSRF token.
    Require(p, cds=True) also accepts a registered CDS Hooks client's JWT (`auth`).
    Require(p, patient=True)
                        also: this one patient (the `encounter_id` in the path) may be shown
                        to the principal: by a role with `patient.read`, or by a live
                        break-the-glass grant (`security.break_glass`), which only people
                        can have. A role that could break the glass but has not is told how
                        (`NeedsBreakGlass`, a page with the form).

Reads of patient data are audited: `Require(..., audit="...")` queues one audit record per
request, written by `deps.connection` in the same transaction just before it commits, so a
page that failed leaves no record of a read that did not happen. The worklist's automatic
refresh is not a new read of anything (the same list, re-fetched) and is not recorded.

`PageRoute` turns the refusals a person can meet into pages a person can read, never a 500:
not signed in → the sign-in page (htmx requests get `HX-Redirect`), a role that may not act →
403, break the glass first → the form, two clinicians acting at once (an illegal transition)
→ 409, an unknown patient or alert → 404, a form that does not make sense → 422.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy import Connection

from wardwatch.alerts.records import AlertNotFound
from wardwatch.alerts.silent import SilentMode
from wardwatch.alerts.workflow import Actor, IllegalTransition, NotPermitted
from wardwatch.chart import ChartNotFound
from wardwatch.security import audit, break_glass, roles
from wardwatch.security.audit import AuditEvent
from wardwatch.web.auth import (
    CsrfRefused,
    Principal,
    csrf_protected,
    optional_principal,
    resolve_principal,
    wall_clock,
)
from wardwatch.web.deps import Services, connection, queue_audit, services
from wardwatch.web.rendering import render


class FormError(ValueError):
    """A submitted form that cannot be acted on (unknown reason, missing note, not a number)."""


class NeedsBreakGlass(NotPermitted):
    """The role may see this patient only by breaking the glass (with a reason)."""

    def __init__(self, actor: Actor, encounter_id: str) -> None:
        super().__init__(f"{actor.user_id} ({actor.role}) does not see patients by role: "
                         "break the glass, with a reason, to open this record")  # fmt: skip
        self.encounter_id = encounter_id


class Public:
    """A route anyone may call; `why` says why that is safe (read by the permission test)."""

    def __init__(self, why: str) -> None:
        self.why = why

    async def __call__(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"Public({self.why!r})"


class SignedIn:
    """A dependency: any person signed in with a session, whatever their role (signing out,
    the model card). API tokens and CDS client JWTs are refused: these are pages for people."""

    async def __call__(self, who: Principal = Depends(csrf_protected)) -> Actor:  # noqa: B008
        if who.session is None:
            raise NotPermitted("this page is for people signed in, not API tokens or EHRs")
        return who.actor

    def __repr__(self) -> str:
        return "SignedIn()"


signed_in_person = SignedIn()


class Require:
    """A dependency: the principal's actor, if allowed `permission` (module docstring).

    An instance (not a closure) so that a route's declaration can be read back by the test.
    """

    def __init__(
        self,
        permission: str,
        *,
        scopes: Sequence[tuple[str, str]] = (),
        patient: bool = False,
        audit: str | None = None,
        cds: bool = False,
    ) -> None:
        if permission not in roles.PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}")
        self.permission, self.scopes = permission, tuple(scopes)
        self.patient, self.audit, self.cds = patient, audit, cds

    def __call__(
        self,
        request: Request,
        who: Principal = Depends(csrf_protected),  # noqa: B008
        conn: Connection = Depends(connection),  # noqa: B008
    ) -> Actor:
        self._allowed(who)
        grant = self._patient_access(request, conn, who) if self.patient else None
        if self.audit:
            queue_audit(request, self._read(request, who, grant))
        return who.actor

    def _allowed(self, who: Principal) -> None:
        if who.cds_client is not None:
            if not self.cds:
                raise NotPermitted("a CDS Hooks client's JWT is accepted by the CDS service only")
        elif who.token is not None:
            if not any(who.token.allows(*scope) for scope in self.scopes):
                needs = " or ".join(f"{r}.{a}" for r, a in self.scopes) or "a person signed in"
                raise NotPermitted(f"API token {who.token.token_id} may not do this: needs {needs}")
        elif not (self.patient and self.permission == "patient.read"):
            roles.require_permission(who.actor, self.permission)

    def _patient_access(self, request: Request, conn: Connection, who: Principal) -> int | None:
        """None if the role may read patients; the grant id if a break-the-glass grant does."""
        if roles.has_permission(who.actor.role, "patient.read") or who.session is None:
            return None
        encounter_id = str(request.path_params.get("encounter_id", ""))
        grant = break_glass.active_grant(conn, who.actor.user_id, encounter_id, wall_clock())
        if grant is None:
            if roles.has_permission(who.actor.role, "break_glass"):
                raise NeedsBreakGlass(who.actor, encounter_id)
            roles.require_permission(who.actor, "patient.read")
        return grant.grant_id if grant else None

    def _read(self, request: Request, who: Principal, grant: int | None) -> AuditEvent:
        route = request.scope.get("route")
        detail: dict[str, Any] = {"via": who.via}
        if grant is not None:
            detail["break_glass"] = grant
        if request.url.query:
            detail["query"] = request.url.query[:200]
        if named := {k: str(v) for k, v in request.path_params.items() if k != "encounter_id"}:
            detail["path"] = named
        return AuditEvent(
            action=self.audit or "", actor=who.actor.user_id, role=who.actor.role,
            encounter_id=request.path_params.get("encounter_id"), source=who.source,
            object=f"{request.method} {getattr(route, 'path', request.url.path)}", detail=detail,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"Require({self.permission!r}, scopes={self.scopes!r}, patient={self.patient!r})"


class RequireAtOnce(Require):
    """`Require`, checked and audited in a transaction of its own that commits before the
    route runs. For routes that write in transactions of their own (the CDS service ingests
    prefetched data and re-scores): on SQLite, a request transaction still open from the
    check would hold the write lock those need."""

    def __call__(  # type: ignore[override]
        self,
        request: Request,
        svc: Services = Depends(services),  # noqa: B008
    ) -> Actor:
        with svc.engine.begin() as conn:
            who = resolve_principal(request, conn)
            self._allowed(who)
            if self.audit:
                audit.record(conn, self._read(request, who, None))
        return who.actor


def for_action(action: str, **kwargs: Any) -> Require:
    """The requirement of a workflow action (its permission in `roles.WORKFLOW_ACTIONS`)."""
    return Require(roles.permission_for_action(action), **kwargs)


sees_patients = Require("patient.read")  # the worklist's rows, and the like
may_confirm = for_action("confirm")
may_dismiss = for_action("dismiss")
may_pause = for_action("pause")
may_escalate = for_action("escalate")
may_assess = for_action("assess")
may_complete_item = for_action("complete_item")


def optional_actor(request: Request) -> Actor | None:
    """The signed-in person if a dependency resolved one (for pages that explain a refusal)."""
    who = optional_principal(request)
    return who.actor if who else None


def local_path(target: str | None, default: str = "/ward") -> str:
    """`target` if it is a path on this site, else `default` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


# ---------------------------------------------------------------- refusals as pages

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
REFUSALS: tuple[tuple[type[Exception], int, str], ...] = (
    (SilentMode, 503, "Silent mode"),
    (NeedsBreakGlass, 403, "Break the glass to open this record"),
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
            except CsrfRefused as error:
                return _refused(request, FormError(error.detail), status=403)
            except HTTPException as error:
                if error.status_code != 401:
                    raise
                return sign_in_first(request)
            except _REFUSED as error:
                return _refused(request, error)

        return guarded


def _refused(request: Request, error: Exception, status: int | None = None) -> Response:
    code, title = next((s, t) for kind, s, t in REFUSALS if isinstance(error, kind))
    status = status or code
    encounter_id = request.path_params.get("encounter_id")
    context = {"title": title, "message": str(error), "encounter_id": encounter_id,
               "page_path": f"/patients/{encounter_id}" if encounter_id else "/ward",
               "break_glass": isinstance(error, NeedsBreakGlass),
               "min_reason": break_glass.MIN_REASON}  # fmt: skip
    return render(request, "refused.html", optional_actor(request), context, status_code=status)
