"""Every error the app answers with, in one shape: RFC 9457 (formerly 7807) problem details.

Machine clients (the JSON API, FHIR out, CDS Hooks: the paths in `PROBLEM_PATHS`) get
`application/problem+json`; people (the HTML pages) get `templates/error.html`, which says
what went wrong and what to do, and a page that needs a sign-in sends them to it instead.

    exception                                   status  problem type
    ──────────────────────────────────────────  ──────  ──────────────────────────
    HTTPException (unknown route, 405, 401 ...)  its     about:blank
    RequestValidationError (FastAPI)             422     PROBLEM_TYPES["invalid-request"]
    NotPermitted (PermissionError)               403     ... "not-permitted"
    AlertNotFound, ChartNotFound (LookupError)   404     ... "not-found"
    IllegalTransition (ValueError)               409     ... "illegal-transition"
    WhatIfError, ValueError raised by wardwatch  422     ... "unprocessable"
    anything else                                500     ... "server-error" (logged, no details)

A ValueError counts as the client's mistake only when wardwatch's own code raised it: that is
how the domain modules say "bad input" (an unknown dismissal reason, a pause that ends in the
past). One raised inside a library is a bug of ours and stays a 500, so it is found and fixed
rather than blamed on the caller.

Problem types are relative URI references (RFC 9457 §3.1.1) naming the kind of problem; they
identify, they are not (yet) pages. Plain HTTP errors use "about:blank" with the status phrase
as the title, as the RFC asks.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from wardwatch import fhir_resources
from wardwatch.alerts.silent import SilentMode
from wardwatch.alerts.workflow import AlertNotFound, IllegalTransition, NotPermitted
from wardwatch.chart import ChartNotFound
from wardwatch.explain import WhatIfError

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
PROBLEM_PATHS = ("/api", "/fhir", "/cds-services")
SIGN_IN = "/signin"
WORKLIST = "/"
SCHEMA_REF = "#/components/schemas/Problem"

_WEB = Path(__file__).resolve().parent
_PACKAGE = _WEB.parent
_TEMPLATES = Jinja2Templates(directory=_WEB / "templates")

PROBLEM_TYPES: Mapping[str, str] = {
    slug: f"/problems/{slug}"
    for slug in ("invalid-request", "not-permitted", "not-found", "illegal-transition",
                 "unprocessable", "unreadable-document", "server-error", "silent-mode")
}  # fmt: skip

# What a person should do next, by status (the HTML error page's second paragraph).
_ADVICE: Mapping[int, str] = {
    400: "Check what you entered or sent, and try again.",
    403: "Your role may not do this. Ask a colleague whose role may (for example a provider).",
    404: "Check the address, or go back to the worklist and open the patient from there.",
    405: "This address does not accept that kind of request; use the links and buttons instead.",
    409: "Someone may have acted on this first. Reload the page to see where things stand now.",
    413: "What you sent is too large. Send it in smaller parts.",
    422: "Check what you entered, correct it, and try again.",
}
_DEFAULT_ADVICE = "Go back to the worklist and try again."
_SERVER_ADVICE = (
    "Something went wrong on our side. Try again; if it keeps happening, tell the support team "
    "and quote the reference below."
)


class ProblemException(Exception):
    """Raise to answer with a specific problem (a type, extension members) from a route."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str = "about:blank",
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.type, self.headers = status, detail, type_, headers
        self.title = title or HTTPStatus(status).phrase
        self.extensions = extensions


# ---------------------------------------------------------------- building answers


def is_problem_path(path: str) -> bool:
    """Whether `path` belongs to a machine client (JSON problems) rather than a person (HTML)."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PROBLEM_PATHS)


def problem_response(request: Request, problem: ProblemException) -> Response:
    """The problem as JSON for machine paths, as the HTML error page for people, and as an
    OperationOutcome under /fhir (a FHIR client reads nothing else)."""
    if request.url.path.startswith("/fhir/"):
        return _operation_outcome(problem)
    if not is_problem_path(request.url.path):
        return _html_error(request, problem)
    body = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extensions,
    }
    return JSONResponse(body, problem.status, headers=problem.headers, media_type=MEDIA_TYPE)


_FHIR_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 422: "invalid",
               503: "transient"}  # fmt: skip


def _operation_outcome(problem: ProblemException) -> Response:
    code = _FHIR_CODES.get(problem.status, "exception")
    resource = fhir_resources.validate(fhir_resources.operation_outcome(code, problem.detail))
    return JSONResponse(resource, problem.status, headers=problem.headers,
                        media_type=fhir_resources.FHIR_JSON)  # fmt: skip


def _html_error(request: Request, problem: ProblemException) -> Response:
    if problem.status == HTTPStatus.UNAUTHORIZED:
        target = f"{SIGN_IN}?next={quote(request.url.path, safe='/')}"
        return RedirectResponse(target, status_code=HTTPStatus.SEE_OTHER)
    server_error = problem.status >= HTTPStatus.INTERNAL_SERVER_ERROR
    context = {
        "status": problem.status,
        "title": problem.title,
        "detail": problem.detail,
        "advice": _SERVER_ADVICE if server_error else _ADVICE.get(problem.status, _DEFAULT_ADVICE),
        "reference": problem.extensions.get("incident"),
        "errors": problem.extensions.get("errors", []),
        "worklist": WORKLIST,
        "stylesheet": (_WEB / "static" / "app.css").exists(),
    }
    return _TEMPLATES.TemplateResponse(
        request, "error.html", context, status_code=problem.status, headers=problem.headers
    )


# ---------------------------------------------------------------- the handlers


def _from_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = _routing_detail(request, exc) or str(exc.detail)
    return problem_response(request, ProblemException(exc.status_code, detail, headers=exc.headers))


def _routing_detail(request: Request, exc: HTTPException) -> str | None:
    """Say what the router's bare "Not Found" and "Method Not Allowed" are about."""
    if exc.detail != HTTPStatus(exc.status_code).phrase:
        return None  # a route's own words
    path = request.url.path
    if exc.status_code == HTTPStatus.NOT_FOUND:
        return f"Nothing is at {path}."
    if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow", "")
        return f"{path} does not accept {request.method}; it accepts {allowed}."
    return None


def _from_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemException)
    return problem_response(request, exc)


def _issues(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """FastAPI's validation errors without `input` and `ctx`: they can echo a whole body and
    hold objects JSON cannot carry."""
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
             "type": str(e.get("type", ""))} for e in errors]  # fmt: skip


def _summary(issues: list[dict[str, Any]]) -> str:
    first = issues[0] if issues else {"loc": [], "msg": "the request is not valid"}
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"


def _from_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = _issues(exc.errors())
    problem = ProblemException(
        422, _summary(issues), type_=PROBLEM_TYPES["invalid-request"],
        title="The request is not valid", errors=issues,
    )  # fmt: skip
    return problem_response(request, problem)


_DOMAIN: Sequence[tuple[type[Exception], int, str, str]] = (
    (NotPermitted, 403, "not-permitted", "Not permitted for your role"),
    (AlertNotFound, 404, "not-found", "Not found"),
    (ChartNotFound, 404, "not-found", "Not found"),
    (IllegalTransition, 409, "illegal-transition", "Not allowed in the alert's current state"),
    (WhatIfError, 422, "unprocessable", "The question cannot be answered"),
    (SilentMode, 503, "silent-mode", "Silent mode: nothing is shown to clinicians yet"),
)


def _domain_handler(status: int, slug: str, title: str) -> Callable[[Request, Exception], Response]:
    def handle(request: Request, exc: Exception) -> Response:
        problem = ProblemException(status, str(exc), type_=PROBLEM_TYPES[slug], title=title)
        return problem_response(request, problem)

    return handle


def raised_by_wardwatch(exc: BaseException) -> bool:
    """Whether the innermost frame of the traceback is wardwatch's own code."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and Path(frames[-1].filename).is_relative_to(_PACKAGE)


def _from_value_error(request: Request, exc: Exception) -> Response:
    if not raised_by_wardwatch(exc):
        return _from_anything(request, exc)
    problem = ProblemException(
        422,
        str(exc),
        type_=PROBLEM_TYPES["unprocessable"],
        title="The request cannot be carried out",
    )
    return problem_response(request, problem)


def _from_anything(request: Request, exc: Exception) -> Response:
    """Last resort: log the traceback under an incident id; tell the client only the id."""
    incident = uuid.uuid4().hex[:12]
    log.error("incident %s: %s %s failed", incident, request.method, request.url.path,
              exc_info=exc)  # fmt: skip
    problem = ProblemException(
        500, f"An internal error occurred; it has been logged as incident {incident}.",
        type_=PROBLEM_TYPES["server-error"], incident=incident,
    )  # fmt: skip
    return problem_response(request, problem)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error with a problem (or the HTML error page), and say so in the spec."""
    app.add_exception_handler(HTTPException, _from_http)
    app.add_exception_handler(ProblemException, _from_problem)
    app.add_exception_handler(RequestValidationError, _from_validation)
    for error, status, slug, title in _DOMAIN:
        app.add_exception_handler(error, _domain_handler(status, slug, title))
    app.add_exception_handler(ValueError, _from_value_error)
    app.add_exception_handler(Exception, _from_anything)
    document_problems(app)


# ---------------------------------------------------------------- the OpenAPI document


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status documented as an application/problem+json."""
    return {status: _documented(status) for status in statuses}


def _documented(status: int) -> dict[str, Any]:
    return {"description": HTTPStatus(status).phrase,
            "content": {MEDIA_TYPE: {"schema": {"$ref": SCHEMA_REF}}}}  # fmt: skip


def document_problems(app: FastAPI) -> None:
    """Add the Problem schema to the app's OpenAPI document, and document on machine paths the
    errors FastAPI answers by itself as the problems they really are: 422 for a request that
    fails validation (FastAPI documents its own error shape) and 400 for a body that is not
    JSON (FastAPI does not document it at all)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            _add_problem_schema(spec)
            _document_automatic_errors(spec)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_problem_schema(spec: dict[str, Any]) -> None:
    from wardwatch.web.api_models import Problem  # the models import this module

    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas["Problem"] = schema


def _document_automatic_errors(spec: dict[str, Any]) -> None:
    for path, operations in spec.get("paths", {}).items():
        if not is_problem_path(path):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses and "application/json" in responses["422"].get("content", {}):
                responses["422"] = _documented(422)
            if "requestBody" in operation:
                responses.setdefault("400", _documented(400))
