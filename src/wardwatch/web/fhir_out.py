"""FHIR out (R4, read-only, JSON): what wardwatch said, for the EHR and anyone downstream.

    GET /fhir/metadata                              CapabilityStatement
    GET /fhir/RiskAssessment?encounter=|patient=    searchset, newest first, paged (_count, _offset)
    GET /fhir/RiskAssessment/{score id}             one stored score
    GET /fhir/Flag?patient=|encounter=              searchset of alerts, newest first
    GET /fhir/Flag/{alert id}                       one alert
    GET /fhir/Observation/ww-{row id}               a stored measurement (the scores' basis)

The resources and the choices behind them (Flag rather than DetectedIssue, `ww-` observation
ids, "unknown" observation status) are in `wardwatch.fhir_resources`. Here: the store reads,
and FHIR's error and search conventions. Every body is validated with fhir.resources' R4B
models before it leaves (an invalid one is our bug: a 500, never a malformed 200) and sent as
`application/fhir+json`. Errors are OperationOutcomes: 404 for an id we do not have, 400 for a
search we cannot run (no subject, an unknown or repeated parameter, a bad number), 401
without a valid token or session, 403 when the token's SMART scopes do not cover the resource
(`system/RiskAssessment.rs`, `user/Flag.r`, ...). Every read is audited.

What is not served, on purpose: shadow-model scores (never shown, by design) and the scores of
a patient who opted out of AI scoring (the worklist hides their risk; so does FHIR). Their
alerts are served: an alert is a clinical record of what clinicians were asked and answered.

A RiskAssessment's `basis` is what the score read: for every measured variable, the stay's
latest value taken by the score's time (`as_of`) among the observations the score had seen
(`through_observation_id`), as `Observation/ww-<id>` references that this router resolves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection, Select, false, func, select

from wardwatch import fhir_resources as fhir
from wardwatch.alerts.records import (
    AlertNotFound,
    AlertRecord,
    Kind,
    alert_events_for,
    find_alerts,
    get_alert,
)
from wardwatch.alerts.silent import require_shown
from wardwatch.alerts.workflow import Actor
from wardwatch.ingest.psv import MEASURED
from wardwatch.store.schema import alerts, observations, patients, scores
from wardwatch.ward import band, unit_threshold
from wardwatch.web.access import Public, Require
from wardwatch.web.deps import Services, connection, services

RISKASSESSMENT_SEARCH = Require(
    "patient.read", scopes=[("RiskAssessment", "s")], audit="patient.search"
)
RISKASSESSMENT_READ = Require(
    "patient.read", scopes=[("RiskAssessment", "r")], audit="patient.read"
)
FLAG_SEARCH = Require("patient.read", scopes=[("Flag", "s")], audit="patient.search")
FLAG_READ = Require("patient.read", scopes=[("Flag", "r")], audit="patient.read")
OBSERVATION_READ = Require("patient.read", scopes=[("Observation", "r")], audit="patient.read")
CAPABILITIES = Public("FHIR servers publish their CapabilityStatement: no patient data in it")
UNKNOWN_PATH = Public("answers 404 (an OperationOutcome) and reads nothing")


class FHIRJSONResponse(JSONResponse):
    media_type = fhir.FHIR_JSON


_OUTCOME = {"content": {fhir.FHIR_JSON: {"schema": {"type": "object"}}}}
router = APIRouter(
    tags=["FHIR"],
    default_response_class=FHIRJSONResponse,
    responses={
        400: {"description": "OperationOutcome: a search this server cannot run", **_OUTCOME},
        401: {"description": "OperationOutcome: no valid session or API token", **_OUTCOME},
        403: {"description": "OperationOutcome: the token's scopes do not allow it", **_OUTCOME},
        404: {"description": "OperationOutcome: no such resource here", **_OUTCOME},
        503: {"description": "OperationOutcome: silent mode, nothing is served yet", **_OUTCOME},
    },
)

DEFAULT_COUNT, MAX_COUNT = 50, 500
IGNORED = frozenset({"_format"})  # JSON is all we speak; a client's _format=json is fine
_RISK_SEARCH = (
    ("encounter", "reference", "Encounter/<id> or <id>: the stay's scores"),
    ("patient", "reference", "Patient/<id> or <id>: every stay's scores (alias: subject)"),
    ("_count", "number", f"page size, 1 to {MAX_COUNT} (default {DEFAULT_COUNT})"),
    ("_offset", "number", "matches to skip (the next link sets it)"),
)
_FLAG_SEARCH = (
    ("patient", "reference", "Patient/<id> or <id> (alias: subject)"),
    ("encounter", "reference", "Encounter/<id> or <id>"),
)


class SearchError(ValueError):
    """A search we cannot run (400)."""


def fhir_response(resource: fhir.Resource, status: int = 200) -> JSONResponse:
    """The resource, validated (an invalid one raises: a bug of ours, never sent)."""
    return JSONResponse(fhir.validate(resource), status_code=status, media_type=fhir.FHIR_JSON)


def outcome(status: int, code: str, diagnostics: str) -> JSONResponse:
    return fhir_response(fhir.operation_outcome(code, diagnostics), status)


def not_found(what: str, why: str = "") -> JSONResponse:
    return outcome(404, "not-found", f"{what} is not known here{why}")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


# ---------------------------------------------------------------- search parameters


def search_params(request: Request, allowed: Sequence[str]) -> dict[str, str]:
    """The query's parameters, one value each; SearchError for anything else."""
    found: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in IGNORED:
            continue
        key = "patient" if name == "subject" else name
        if key not in allowed:
            raise SearchError(f"unsupported search parameter {name!r}; supported: "
                              f"{', '.join(allowed)}")  # fmt: skip
        if key in found:
            raise SearchError(f"{name!r} given twice; give each parameter once")
        found[key] = value
    return found


def reference_id(value: str, rtype: str) -> str:
    """ "Encounter/x", an absolute URL ending in it, or plain "x" → "x"."""
    rid = value.rsplit(f"{rtype}/", 1)[-1] if f"{rtype}/" in value else value
    if not rid or "/" in rid:
        raise SearchError(f"{value!r} is not a {rtype} reference ({rtype}/<id> or <id>)")
    return rid


def _number(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise SearchError(f"{name} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


# ---------------------------------------------------------------- RiskAssessment


def _scores() -> Select:
    """Active-model scores of patients who have not opted out of AI scoring."""
    return (
        select(*scores.c)
        .join(patients, patients.c.patient_id == scores.c.patient_id)
        .where(scores.c.role == "active", patients.c.opted_out_scoring == false())
    )


def _latest_per_variable(rows: Sequence[Mapping[str, Any]], score: Mapping[str, Any]) -> list:
    """The latest row of each variable the score could see (rows in time order)."""
    latest: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        if row["effective_at"] > score["as_of"]:
            break
        if row["id"] <= score["through_observation_id"]:
            latest[row["variable"]] = row
    return [latest[v] for v in MEASURED if v in latest]


def basis_rows(
    conn: Connection, found: Sequence[Mapping[str, Any]]
) -> dict[int, list[Mapping[str, Any]]]:
    """Each score's basis (see the module docstring), by score id: one query per stay."""
    by_stay: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for score in found:
        by_stay[(score["patient_id"], score["encounter_id"])].append(score)
    basis: dict[int, list[Mapping[str, Any]]] = {}
    for (patient_id, encounter_id), mine in by_stay.items():
        query = (
            select(observations)
            .where(observations.c.patient_id == patient_id)
            .where(observations.c.encounter_id == encounter_id)
            .where(observations.c.variable.in_(MEASURED), observations.c.value.is_not(None))
            .where(observations.c.effective_at <= max(s["as_of"] for s in mine))
            .order_by(observations.c.effective_at, observations.c.id)
        )
        rows = list(conn.execute(query).mappings())
        for score in mine:
            basis[score["id"]] = _latest_per_variable(rows, score)
    return basis


def _risk_assessments(
    conn: Connection, svc: Services, found: Sequence[Mapping[str, Any]]
) -> list[fhir.Resource]:
    basis = basis_rows(conn, found)
    out = []
    for score in found:
        threshold = unit_threshold(svc.book, score["unit"], score["threshold"])
        out.append(fhir.risk_assessment(score, band(score["risk"], threshold), threshold,
                                        basis[score["id"]]))  # fmt: skip
    return out


def _risk_search(request: Request) -> tuple[Select, int, int]:
    params = search_params(request, [name for name, _, _ in _RISK_SEARCH])
    query = _scores()
    if "encounter" in params:
        query = query.where(scores.c.encounter_id == reference_id(params["encounter"],
                                                                  "Encounter"))  # fmt: skip
    if "patient" in params:
        query = query.where(scores.c.patient_id == reference_id(params["patient"], "Patient"))
    count = _number(params, "_count", DEFAULT_COUNT, 1, MAX_COUNT)
    return query, count, _number(params, "_offset", 0, 0, 10**9)


@router.get("/RiskAssessment", summary="Search scores as RiskAssessments")
def search_risk_assessments(
    request: Request,
    _: Actor = Depends(RISKASSESSMENT_SEARCH),  # noqa: B008
    conn: Connection = Depends(connection),  # noqa: B008
    svc: Services = Depends(services),  # noqa: B008
) -> JSONResponse:
    require_shown(conn)  # silent mode: no risk and no alert leave for the EHR
    try:
        query, count, offset = _risk_search(request)
    except SearchError as error:
        return outcome(400, "invalid", str(error))
    total = conn.execute(select(func.count()).select_from(query.subquery())).scalar() or 0
    page = query.order_by(scores.c.as_of.desc(), scores.c.id.desc()).limit(count).offset(offset)
    found = [dict(row) for row in conn.execute(page).mappings()]
    more = offset + len(found) < total
    next_url = str(request.url.include_query_params(_offset=offset + count)) if more else None
    resources = _risk_assessments(conn, svc, found)
    bundle = fhir.searchset(_base(request), str(request.url), resources, total, next_url)
    return fhir_response(bundle)


@router.get("/RiskAssessment/{resource_id}", summary="Read one score as a RiskAssessment")
def read_risk_assessment(
    resource_id: str,
    _: Actor = Depends(RISKASSESSMENT_READ),  # noqa: B008
    conn: Connection = Depends(connection),  # noqa: B008
    svc: Services = Depends(services),  # noqa: B008
) -> JSONResponse:
    require_shown(conn)  # silent mode: no risk and no alert leave for the EHR
    what = f"RiskAssessment/{resource_id}"
    if not resource_id.isdigit() or len(resource_id) > 18:
        return not_found(what)
    row = conn.execute(_scores().where(scores.c.id == int(resource_id))).mappings().first()
    if row is None:
        return not_found(what, " (or it is a shadow model's score, or the patient opted out)")
    return fhir_response(_risk_assessments(conn, svc, [dict(row)])[0])


# ---------------------------------------------------------------- Flag


def _author(alert: AlertRecord, events: list[dict[str, Any]]) -> fhir.Resource:
    """Who raised the flag: the model, or the clinician who escalated a concern."""
    if alert.kind is Kind.ESCALATION and events:
        return {"display": f"{events[0]['actor']} ({events[0]['role']})"}
    return fhir.model_reference(alert.model_version or "unknown version")


def _flag(conn: Connection, alert: AlertRecord) -> fhir.Resource:
    events = alert_events_for(conn, alert.alert_id)
    reason = next((e["reason_code"] for e in reversed(events) if e["action"] == "dismiss"), None)
    return fhir.flag(alert, _author(alert, events), reason)


@router.get("/Flag", summary="Search alerts as Flags")
def search_flags(
    request: Request,
    _: Actor = Depends(FLAG_SEARCH),  # noqa: B008
    conn: Connection = Depends(connection),  # noqa: B008
) -> JSONResponse:
    require_shown(conn)  # silent mode: no risk and no alert leave for the EHR
    try:
        params = search_params(request, [name for name, _, _ in _FLAG_SEARCH])
        conditions = []  # none: every alert, newest first
        if "patient" in params:
            conditions.append(alerts.c.patient_id == reference_id(params["patient"], "Patient"))
        if "encounter" in params:
            eid = reference_id(params["encounter"], "Encounter")
            conditions.append(alerts.c.encounter_id == eid)
    except SearchError as error:
        return outcome(400, "invalid", str(error))
    flags = [_flag(conn, alert) for alert in find_alerts(conn, *conditions)]
    url = str(request.url)
    return fhir_response(fhir.searchset(_base(request), url, flags, len(flags), None))


@router.get("/Flag/{resource_id}", summary="Read one alert as a Flag")
def read_flag(
    resource_id: str,
    _: Actor = Depends(FLAG_READ),  # noqa: B008
    conn: Connection = Depends(connection),  # noqa: B008
) -> JSONResponse:
    require_shown(conn)  # silent mode: no risk and no alert leave for the EHR
    if not resource_id.isdigit() or len(resource_id) > 18:
        return not_found(f"Flag/{resource_id}")
    try:
        alert = get_alert(conn, int(resource_id))
    except AlertNotFound:
        return not_found(f"Flag/{resource_id}")
    return fhir_response(_flag(conn, alert))


# ---------------------------------------------------------------- Observation and the rest


@router.get("/Observation/{resource_id}", summary="Read one stored measurement")
def read_observation(
    resource_id: str,
    _: Actor = Depends(OBSERVATION_READ),  # noqa: B008
    conn: Connection = Depends(connection),  # noqa: B008
) -> JSONResponse:
    row_id = fhir.observation_row_id(resource_id)
    query = select(observations).where(observations.c.id == row_id)
    row = None if row_id is None else conn.execute(query).mappings().first()
    if row is None:
        why = "" if row_id is not None else " (wardwatch's Observation ids look like ww-123)"
        return not_found(f"Observation/{resource_id}", why)
    return fhir_response(fhir.observation(row))


@router.get("/metadata", summary="CapabilityStatement")
def metadata(request: Request, _: None = Depends(CAPABILITIES)) -> JSONResponse:
    searches = {"RiskAssessment": _RISK_SEARCH, "Flag": _FLAG_SEARCH, "Observation": ()}
    version = request.app.version
    return fhir_response(fhir.capability_statement(_base(request), version, searches))


@router.get("/{path:path}", include_in_schema=False)
def unsupported(path: str, _: None = Depends(UNKNOWN_PATH)) -> JSONResponse:
    """Anything else under /fhir: a FHIR 404, not an HTML or problem page."""
    return outcome(404, "not-supported", f"{path!r} is not served here; this server offers "
                   "RiskAssessment, Flag and Observation (see /fhir/metadata)")  # fmt: skip
