"""The JSON API, under /api: the worklist, charts, alerts and their evaluation, what-if, FHIR
ingest and the quarantine, for machine clients and the integration engineer's scripts.

    GET  /patients                          the worklist (?unit=)
    GET  /patients/{encounter_id}           the chart: bed line, starred measurements, alerts
    GET  /patients/{encounter_id}/scores    the risk over time (?since=)
    POST /patients/{encounter_id}/what-if   the risk if some values were different
    GET  /alerts                            open and paused alerts
    GET  /alerts/{alert_id}                 one alert, its events and checklist
    POST /alerts/{alert_id}/evaluation      confirm, dismiss or pause it
    POST /ingest/fhir                       a FHIR R4 Bundle or resource in
    GET  /quarantine                        what was kept out, and why (?reason=&limit=&offset=)
    GET  /quarantine/summary                how much, by reason
    GET  /quarantine/{item_id}              one item with its whole payload

Every route declares its permission (`access.Require`): people sign in (session cookie, CSRF
token on writes), machine clients send `Authorization: Bearer` API tokens whose SMART scopes
name the FHIR resource an endpoint serves (the worklist is `Patient.s`, a chart `Patient.r`,
scores `RiskAssessment.r`, alerts `Flag.rs`, ingest `Bundle.c` or `Observation.c`).
Evaluating an alert and reading the quarantine are for people only. Reads of patient data are
audited. The routes only translate: reads come from
the same read models as the pages (`ward`, `chart`, `alerts.records`), writes go through the
alert workflow and the ingest pipeline, and every error becomes a problem (`problems`).

Ingest keeps what it cannot read (design rule 3): a body that is not JSON, not FHIR, or not
sent as JSON is stored in quarantine with the reason before the 4xx goes back. Only a body
over `MAX_BODY_BYTES` is refused unread (413): the sender still has it and must split it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

import pydantic_core
from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, Security
from fastapi.security import APIKeyCookie, HTTPBearer
from sqlalchemy import Connection, func, select
from starlette.concurrency import run_in_threadpool

from wardwatch.alerts import workflow
from wardwatch.alerts.records import get_alert, open_alerts
from wardwatch.alerts.silent import require_shown
from wardwatch.alerts.workflow import Actor
from wardwatch.chart import ChartNotFound, open_chart, stay_history
from wardwatch.chart import risk_history as risk_history  # the chart's rule: a re-score wins
from wardwatch.explain import what_if
from wardwatch.ingest import fhir
from wardwatch.ingest.listener import store_unparseable
from wardwatch.ingest.pipeline import Pipeline, store_parsed
from wardwatch.scoring import OPTED_OUT
from wardwatch.security import sessions
from wardwatch.store.reads import quarantine_counts
from wardwatch.store.schema import quarantine
from wardwatch.ward import Bed, beds, worklist
from wardwatch.web import deps
from wardwatch.web.access import Require
from wardwatch.web.api_models import (
    NOT_SCORED_YET,
    Alert,
    AlertDetail,
    AlertEvent,
    AlertList,
    ChecklistEntry,
    Confirm,
    Dismiss,
    Evaluation,
    IngestResult,
    Moment,
    PatientChart,
    PatientLine,
    QuarantineItem,
    QuarantinePage,
    QuarantineSummary,
    RiskHistory,
    ScorePoint,
    WhatIfAnswer,
    WhatIfQuestion,
    Worklist,
)
from wardwatch.web.deps import Services
from wardwatch.web.problems import PROBLEM_TYPES, ProblemException, problem_responses
from wardwatch.web.problems import install_problem_handlers as install_problem_handlers

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
FHIR_MEDIA_TYPES = ("application/fhir+json", "application/json")
PREVIEW_CHARS = 2000  # of each payload in a quarantine list; the item itself has it whole

SESSION = APIKeyCookie(
    name=sessions.COOKIE, scheme_name="session", auto_error=False,
    description="A person's session (sign in at /signin); writes also need X-CSRF-Token.",
)  # fmt: skip
BEARER = HTTPBearer(
    scheme_name="apiToken", auto_error=False,
    description="An API token (`wardwatch tokens issue`), limited by its SMART scopes.",
)  # fmt: skip
router = APIRouter(dependencies=[Security(SESSION), Security(BEARER)], tags=["api"])

ListsPatients = Annotated[
    Actor, Depends(Require("patient.read", scopes=[("Patient", "s")], audit="patient.search"))
]
ReadsPatient = Annotated[
    Actor,
    Depends(Require("patient.read", scopes=[("Patient", "r")], patient=True, audit="patient.read")),
]
ReadsScores = Annotated[
    Actor,
    Depends(
        Require(
            "patient.read", scopes=[("RiskAssessment", "r")], patient=True, audit="patient.read"
        )
    ),
]
AsksWhatIf = Annotated[
    Actor,
    Depends(Require("whatif", scopes=[("RiskAssessment", "r")], patient=True, audit="what_if")),
]
ListsAlerts = Annotated[
    Actor, Depends(Require("patient.read", scopes=[("Flag", "s")], audit="patient.search"))
]
ReadsAlert = Annotated[
    Actor, Depends(Require("patient.read", scopes=[("Flag", "r")], audit="patient.read"))
]
EvaluatesAlert = Annotated[Actor, Depends(Require("alert.evaluate"))]  # a person decides
Ingests = Annotated[
    Actor, Depends(Require("ingest.write", scopes=[("Bundle", "c"), ("Observation", "c")]))
]
ReadsQuarantine = Annotated[Actor, Depends(Require("quarantine.read", audit="quarantine.read"))]
ConnDep = Annotated[Connection, Depends(deps.connection)]
NowDep = Annotated[datetime, Depends(deps.now)]
ServicesDep = Annotated[Services, Depends(deps.services)]
EncounterId = Annotated[str, Path(
    min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f/]+$", description="The stay's id.",
)]  # fmt: skip
AlertId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # PostgreSQL's INTEGER
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Unit = Annotated[str | None, Query(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$")]
Since = Annotated[Moment | None, Query(description="Only scores at or after this time.")]
Reason = Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,32}$", description="A reason code.")]


# ---------------------------------------------------------------- patients


@router.get("/patients", responses=problem_responses(401, 403, 422))
def list_patients(
    actor: ListsPatients, conn: ConnDep, now: NowDep, services: ServicesDep, unit: Unit = None
) -> Worklist:
    """The worklist: every stay on the ward (or on `unit`), highest risk first."""
    found = worklist(conn, at=now, unit=unit, book=services.book)
    return Worklist(at=now, unit=unit, patients=[PatientLine.of(bed) for bed in found])


@router.get("/patients/{encounter_id}", responses=problem_responses(401, 403, 404, 422, 503))
def get_patient(
    encounter_id: EncounterId,
    actor: ReadsPatient,
    conn: ConnDep,
    now: NowDep,
    services: ServicesDep,
) -> PatientChart:
    """The chart: the worklist line, the starred measurements behind the risk, the alerts."""
    require_shown(conn)
    model = services.stay_model(conn, encounter_id)
    chart = open_chart(conn, encounter_id, model, at=now, book=services.book)
    return PatientChart.of(chart)


@router.get("/patients/{encounter_id}/scores", responses=problem_responses(401, 403, 404, 422, 503))
def get_scores(
    encounter_id: EncounterId,
    actor: ReadsScores,
    conn: ConnDep,
    now: NowDep,
    services: ServicesDep,
    since: Since = None,
) -> RiskHistory:
    """The active model's risk over time, with its uncertainty; none for an opted-out patient."""
    require_shown(conn)
    if _bed(conn, encounter_id, now, services).opted_out:
        return RiskHistory(encounter_id=encounter_id, not_scored_reason=OPTED_OUT, scores=[])
    frame = risk_history(conn, encounter_id, now)
    reason = None if len(frame) else NOT_SCORED_YET
    if since is not None:
        frame = frame.loc[frame["as_of"] >= since]
    points = [ScorePoint(**row) for row in frame.to_dict("records")]
    return RiskHistory(encounter_id=encounter_id, not_scored_reason=reason, scores=points)


@router.post(
    "/patients/{encounter_id}/what-if", responses=problem_responses(401, 403, 404, 422, 503)
)
def ask_what_if(
    encounter_id: EncounterId,
    question: WhatIfQuestion,
    actor: AsksWhatIf,
    conn: ConnDep,
    now: NowDep,
    services: ServicesDep,
) -> WhatIfAnswer:
    """The risk if the named variables' latest values were the given ones."""
    require_shown(conn)
    edits = question.edits()
    if _bed(conn, encounter_id, now, services).opted_out:
        return WhatIfAnswer.unscored(edits, OPTED_OUT)
    history = stay_history(conn, encounter_id, now)
    if history.empty:
        return WhatIfAnswer.unscored(edits, "no measurements yet")
    return WhatIfAnswer.of(what_if(services.stay_model(conn, encounter_id), history, edits))


def _bed(conn: Connection, encounter_id: str, now: datetime, services: Services) -> Bed:
    found = beds(conn, [encounter_id], at=now, book=services.book)
    if not found:
        raise ChartNotFound(f"no stay {encounter_id!r}")
    return found[0]


# ---------------------------------------------------------------- alerts


@router.get("/alerts", responses=problem_responses(401, 403, 503))
def list_alerts(actor: ListsAlerts, conn: ConnDep) -> AlertList:
    """Every open or paused alert on the ward, newest first."""
    require_shown(conn)
    return AlertList(alerts=[Alert.of(record) for record in open_alerts(conn)])


@router.get("/alerts/{alert_id}", responses=problem_responses(401, 403, 404, 422, 503))
def get_alert_detail(
    alert_id: AlertId, actor: ReadsAlert, conn: ConnDep, now: NowDep
) -> AlertDetail:
    """One alert with its timeline and, once confirmed, its treatment checklist."""
    require_shown(conn)
    return _detail(conn, alert_id, now)


@router.post(
    "/alerts/{alert_id}/evaluation", responses=problem_responses(401, 403, 404, 409, 422, 503)
)
def evaluate_alert(
    alert_id: AlertId,
    evaluation: Annotated[Evaluation, Body()],
    actor: EvaluatesAlert,
    conn: ConnDep,
    now: NowDep,
) -> AlertDetail:
    """A provider's answer to the alert: confirm, dismiss (with a reason) or pause.

    403 for a role that may not evaluate; 409 when the alert is already closed, or someone
    answered it first; 422 for a pause that ends before the ward clock.
    """
    require_shown(conn)
    note = evaluation.note
    if isinstance(evaluation, Confirm):
        workflow.confirm(
            conn, alert_id, actor, at=now, note=note,
            lactate=evaluation.lactate, hypotension=evaluation.hypotension,
        )  # fmt: skip
    elif isinstance(evaluation, Dismiss):
        workflow.dismiss(conn, alert_id, actor, evaluation.reason_code.value, note=note, at=now)
    else:
        workflow.pause(
            conn, alert_id, actor, until=evaluation.until,
            until_new_data=evaluation.until_new_data, at=now, note=note,
        )  # fmt: skip
    return _detail(conn, alert_id, now)


def _detail(conn: Connection, alert_id: int, now: datetime) -> AlertDetail:
    alert = Alert.of(get_alert(conn, alert_id))
    events = [AlertEvent.of(row) for row in workflow.alert_events_for(conn, alert_id)]
    items = [ChecklistEntry.of(item) for item in workflow.checklist(conn, alert_id, now)]
    return AlertDetail(**alert.model_dump(), events=events, checklist=items)


# ---------------------------------------------------------------- FHIR ingest

_FHIR_DOCUMENT: dict[str, Any] = {
    "description": "A FHIR R4 Bundle (any type), or one Patient, Encounter or Observation. "
    "Resources wardwatch does not use are counted as ignored; a wrong resource is quarantined.",
    "oneOf": [
        {"type": "object", "required": ["resourceType", "type"],
         "properties": {
             "resourceType": {"const": "Bundle"},
             "type": {"enum": sorted(fhir.BUNDLE_TYPES)},
             "entry": {"type": ["array", "null"], "description": "Each entry is read on its "
                       "own: a wrong one is quarantined, the rest stored. null: no entries."},
         }},
        {"type": "object", "required": ["resourceType"],
         "properties": {"resourceType": {"enum": ["Patient", "Encounter", "Observation"]}}},
    ],
}  # fmt: skip
_INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": IngestResult, "description": "Read; nothing new stored (all duplicates, "
          "quarantined or ignored)."},
    201: {"description": "Read; new observations stored."},
    **problem_responses(400, 401, 403, 413, 415, 422),
}  # fmt: skip


@router.post(
    "/ingest/fhir",
    status_code=201,
    responses=_INGEST_RESPONSES,
    openapi_extra={"requestBody": {"required": True, "content": {
        media: {"schema": _FHIR_DOCUMENT} for media in FHIR_MEDIA_TYPES}}},
)  # fmt: skip
async def ingest_fhir(
    request: Request, response: Response, actor: Ingests, services: ServicesDep
) -> IngestResult:
    """Store a FHIR R4 document: parse, normalize, gate, store, as every other ingest path.

    400: not JSON; 415: not sent as JSON; 422: JSON but not a FHIR document wardwatch reads.
    Each of these is kept whole in quarantine (reason code "unreadable"). 413: over 10 MB.
    """
    body = await _read_body(request)
    content_type = request.headers.get("content-type", "")
    result = await run_in_threadpool(_ingest, services.pipeline, content_type, body)
    response.status_code = 201 if result.accepted else 200
    return result


async def _read_body(request: Request) -> bytes:
    """The body, or a 413 as soon as it is known to be over `MAX_BODY_BYTES`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(int(declared))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large(size)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int) -> ProblemException:
    log.warning("refused a FHIR document of at least %d bytes (limit %d)", size, MAX_BODY_BYTES)
    return ProblemException(
        413, f"The document is over the limit of {MAX_BODY_BYTES // (1024 * 1024)} MB and was "
        "not read or stored. Send it in smaller Bundles (or as several requests).",
    )  # fmt: skip


def _ingest(pipeline: Pipeline, content_type: str, body: bytes) -> IngestResult:
    media = content_type.split(";")[0].strip().lower()
    if media not in FHIR_MEDIA_TYPES:
        sent = f"sent as {media!r}" if media else "sent without a content type"
        raise _unreadable(pipeline, body, 415, f"{sent}; send FHIR JSON as "
                          + " or ".join(FHIR_MEDIA_TYPES))  # fmt: skip
    try:
        document = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as error:
        raise _unreadable(pipeline, body, 400, f"not valid JSON: {error}") from None
    try:  # a document that is not an object: parse the text again, for fhir's own message
        result = fhir.parse_json(document if isinstance(document, dict) else body)
    except fhir.FHIRError as error:
        raise _unreadable(pipeline, body, 422, str(error)) from None
    summary = store_parsed(pipeline, result.parsed)
    summary.ignored.update(result.ignored)
    return IngestResult.of(summary)


def _unreadable(pipeline: Pipeline, body: bytes, status: int, reason: str) -> ProblemException:
    """Keep the whole body in quarantine, then say why it could not be read."""
    text = body.decode("utf-8", errors="backslashreplace")
    store_unparseable(pipeline, fhir.SOURCE, text, reason)
    return ProblemException(
        status, f"The document cannot be used: {reason}. It is kept in quarantine "
        "(reason code 'unreadable') for the integration team.",
        type_=PROBLEM_TYPES["unreadable-document"], title="The document cannot be read",
        quarantine_reason="unreadable",
    )  # fmt: skip


# ---------------------------------------------------------------- quarantine


@router.get("/quarantine", responses=problem_responses(401, 403, 422))
def list_quarantine(
    actor: ReadsQuarantine,
    conn: ConnDep,
    reason: Reason = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> QuarantinePage:
    """What the gate kept out, newest first, each with its reason and (the start of) its
    payload."""
    matching = [quarantine.c.reason_code == reason] if reason else []
    total = conn.scalar(select(func.count()).select_from(quarantine).where(*matching)) or 0
    query = _quarantine_query(PREVIEW_CHARS).where(*matching).order_by(quarantine.c.id.desc())
    rows = conn.execute(query.limit(limit).offset(offset)).mappings()
    items = [QuarantineItem(**row) for row in rows]
    return QuarantinePage(total=total, limit=limit, offset=offset, reason=reason, items=items)


@router.get("/quarantine/summary", responses=problem_responses(401, 403))
def summarize_quarantine(actor: ReadsQuarantine, conn: ConnDep) -> QuarantineSummary:
    """How many items are in quarantine, by reason code."""
    counts = quarantine_counts(conn)
    return QuarantineSummary(total=sum(counts.values()), by_reason=dict(sorted(counts.items())))


@router.get("/quarantine/{item_id}", responses=problem_responses(401, 403, 404, 422))
def get_quarantine_item(item_id: ItemId, actor: ReadsQuarantine, conn: ConnDep) -> QuarantineItem:
    """One quarantined item with its whole payload, as it was sent."""
    row = conn.execute(_quarantine_query().where(quarantine.c.id == item_id)).mappings().first()
    if row is None:
        raise ProblemException(404, f"no quarantine item {item_id}",
                               type_=PROBLEM_TYPES["not-found"], title="Not found")  # fmt: skip
    return QuarantineItem(**row)


def _quarantine_query(preview: int | None = None) -> Any:
    payload = quarantine.c.payload
    shown = payload if preview is None else func.substr(payload, 1, preview)
    names = ("id", "received_at", "source", "source_id", "patient_id", "reason_code", "reason")
    columns = [quarantine.c[name] for name in names]
    return select(*columns, shown.label("payload"), func.length(payload).label("payload_chars"))
