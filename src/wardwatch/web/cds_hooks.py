"""CDS Hooks 2.0: the sepsis card inside the EHR, and what clinicians do with it.

    GET  /cds-services                          discovery: one patient-view service
    POST /cds-services/wardwatch-sepsis         patient-view → {"cards": [...]} (see `cards`)
    POST /cds-services/wardwatch-sepsis/feedback  accepted / overridden → the alert workflow

**Which stay.** `context.encounterId` when we know it as a bedded stay of `context.patientId`;
otherwise the patient's latest bedded stay admitted by now. An encounter of another patient is
a malformed request (400): a card must never show one patient's risk on another's chart. An
unknown patient gets no cards (the spec's "no card" rather than an error), an opted-out
patient one info card without a risk, a stay on the ward without a score an info card saying
so, a stay long discharged none.

**Honouring prefetch** means: when the CDS client sends `prefetch.vitals` (the Bundle of the
vitals search in our discovery document), its Observations go through the same ingest as
any interface's — `ingest.fhir.parse_json` then `pipeline.store_parsed`: normalized, gated,
quarantined with a reason when wrong, stored idempotently (a resent Observation id is a
duplicate, not a second row) — *before* the card is read. If anything new was accepted, the
stay is re-scored at once (`scoring.score_stays` for that stay only, then the alert policy,
`alerts.watch.watch`), so the card reflects the freshest data. An Observation without an
encounter is attributed to the card's stay (a search by patient returns them so). Prefetched
data of another patient is refused (400). Without prefetch the card reads the store. We never
call `fhirServer` ourselves: the server makes no outbound requests. `prefetch.patient` is not
read (demographics come from the admission feed). For an opted-out patient nothing is ingested.

**Cost.** An explanation (`explain`, 35–60 ms) dominates a card, and the worklist's read of
one bed costs ~15 ms of pandas. Both are cached per app (`CardCache`): explanations by
(stay, score id, model version) — a score is immutable, so the entry is exact — and the card's
facts by a fingerprint read in one small query: the newest score, observation and alert event
of the stay, the opt-out flag and the ward-clock minute. A repeated card therefore costs that
query; any change the card shows (a new score, a new value, a dismissal) changes the key.

**Feedback** writes the same evaluation records as the web page: "overridden" with one of
the card's `overrideReasons` (the workflow's `DISMISS_REASONS`) → `workflow.dismiss` with
`userComment` as the note; "accepted" with suggestion 1 → `workflow.confirm`, with suggestion
2 → `workflow.pause` until new data. An override without a reason, or feedback on a card that
presented no alert, leaves the alert as it is and is kept in the `feedback` table for the
deployment team. All items of one request are applied in one transaction, or none. The
event's time is the ward clock, as on the web page (in a replay, `outcomeTimestamp` — the
EHR's wall clock — would lie outside the replayed day); `outcomeTimestamp` is required by the
spec and checked, not stored.

**Who acts (not authentication yet).** The demo sign-in cookie's clinician if present; else
the user a CDS client names in the feedback's `extension` {"wardwatch.userId":
"Practitioner/123"} — CDS Hooks 2.0 feedback carries no user — taken as a provider for a
Practitioner or PractitionerRole. The spec requires CDS clients to send a signed JWT bearer
token; the security work verifies it and will only trust a user named by a verified client.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, Select, bindparam, func, insert, select
from starlette.concurrency import run_in_threadpool

from wardwatch.alerts import workflow
from wardwatch.alerts.records import deployment_silent
from wardwatch.alerts.watch import watch
from wardwatch.chart import stay_history
from wardwatch.clock import ward_now
from wardwatch.explain import Explanation, explain
from wardwatch.fhir_resources import DISMISS_REASON_SYSTEM
from wardwatch.ingest.fhir import FHIRError, parse_json
from wardwatch.ingest.pipeline import store_parsed
from wardwatch.lru import LRU
from wardwatch.scoring import MAX_STAY_DAYS, NOT_BEDDED, score_stays
from wardwatch.store.schema import (
    UtcDateTime,
    alert_events,
    alerts,
    encounters,
    observations,
    patients,
    scores,
)
from wardwatch.store.schema import feedback as feedback_table
from wardwatch.ward import RECENT, Bed, beds
from wardwatch.web import cards
from wardwatch.web.access import Public, RequireAtOnce
from wardwatch.web.auth import Principal, optional_principal
from wardwatch.web.deps import Services

_PROBLEM = {"content": {"application/problem+json": {"schema": {"type": "object"}}}}
router = APIRouter(
    tags=["CDS Hooks"],
    responses={
        400: {"description": "a malformed hook call (problem details)", **_PROBLEM},
        401: {"description": "no valid client JWT, API token or session", **_PROBLEM},
        403: {"description": "the caller may not use this service", **_PROBLEM},
        404: {"description": "no such CDS service here (problem details)", **_PROBLEM},
    },
)

SERVICE_ID = "wardwatch-sepsis"
HOOK = "patient-view"
PROBLEM_JSON = "application/problem+json"
USER_EXTENSION = "wardwatch.userId"
PROVIDER_TYPES = frozenset({"Practitioner", "PractitionerRole"})
SERVICE: dict[str, Any] = {
    "hook": HOOK,
    "id": SERVICE_ID,
    "title": "wardwatch sepsis early warning",
    "description": "The patient's sepsis risk from wardwatch's calibrated model, why (the "
    "measurements that raise it), how sure, and — while a sepsis alert is open — the SEP-1 "
    "bundle orders to propose and the reasons to dismiss it.",
    "prefetch": {
        "patient": "Patient/{{context.patientId}}",
        "vitals": "Observation?patient={{context.patientId}}&category=vital-signs"
        "&_sort=-date&_count=50",
    },
}


class HookError(ValueError):
    """A malformed CDS Hooks request (400)."""


class NotSignedIn(LookupError):
    """Feedback without anyone to attribute it to (401)."""


def problem(status: int, detail: str) -> JSONResponse:
    """An RFC 9457 problem response."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
            "detail": detail}  # fmt: skip
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


# ---------------------------------------------------------------- request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class HookContext(_Body):
    user_id: str = Field(alias="userId", min_length=1)
    patient_id: str = Field(alias="patientId", pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    encounter_id: str | None = Field(None, alias="encounterId", max_length=64)


class HookRequest(_Body):
    hook_instance: str = Field(alias="hookInstance", min_length=1)
    hook: str
    fhir_server: str | None = Field(None, alias="fhirServer")
    context: HookContext
    prefetch: dict[str, Any] | None = None


class Coding(_Body):
    code: str
    system: str | None = None
    display: str | None = None


class OverrideReason(_Body):
    reason: Coding | None = None
    user_comment: str | None = Field(None, alias="userComment")


class AcceptedSuggestion(_Body):
    id: str


class FeedbackItem(_Body):
    card: str
    outcome: Literal["accepted", "overridden"]
    accepted_suggestions: list[AcceptedSuggestion] = Field([], alias="acceptedSuggestions")
    override_reason: OverrideReason | None = Field(None, alias="overrideReason")
    outcome_timestamp: datetime = Field(alias="outcomeTimestamp")


class FeedbackRequest(_Body):
    feedback: list[FeedbackItem] = Field(min_length=1)
    extension: dict[str, Any] | None = None


_B = TypeVar("_B", bound=BaseModel)


def parse_body(model: type[_B], raw: bytes) -> _B:
    """The JSON body as `model`, or HookError naming each problem's element."""
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as error:
        found = [
            f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        ]
        raise HookError("; ".join(found[:5])) from None


# ---------------------------------------------------------------- the stay


@dataclass(frozen=True, slots=True)
class Stay:
    encounter_id: str
    patient_id: str
    admitted_at: datetime
    discharged_at: datetime | None
    unit: str | None
    opted_out: bool

    def present(self, at: datetime) -> bool:
        """On the ward at `at`, as the worklist counts it."""
        ended = self.discharged_at is not None and self.discharged_at < at
        too_long = at - self.admitted_at > timedelta(days=MAX_STAY_DAYS)
        return self.admitted_at <= at and not ended and not too_long


# Statements built once, executed with bound values: a card is read many times a second, and
# building a SELECT costs as much as running it.
_AT = bindparam("at", type_=UtcDateTime)
_STAY = select(
    encounters.c.encounter_id, encounters.c.patient_id, encounters.c.admitted_at,
    encounters.c.discharged_at, encounters.c.unit, patients.c.opted_out_scoring,
).join(patients, patients.c.patient_id == encounters.c.patient_id)  # fmt: skip
_NAMED_STAY = _STAY.where(encounters.c.encounter_id == bindparam("eid"))
_LATEST_STAY = (
    _STAY.where(encounters.c.patient_id == bindparam("pid"), encounters.c.admitted_at <= _AT)
    .where(encounters.c.unit.is_(None) | encounters.c.unit.not_in(NOT_BEDDED))
    .order_by(encounters.c.admitted_at.desc(), encounters.c.encounter_id.desc())
    .limit(1)
)


def find_stay(
    conn: Connection, patient_id: str, encounter_id: str | None, at: datetime
) -> Stay | None:
    """The stay a card is about (see the module docstring), or None."""
    if encounter_id:
        row = conn.execute(_NAMED_STAY, {"eid": encounter_id}).first()
        if row is not None and row.patient_id != patient_id:
            raise HookError(f"context.encounterId {encounter_id!r} is not an encounter of "
                            f"patient {patient_id!r}")  # fmt: skip
        bedded = row is not None and (row.unit is None or row.unit not in NOT_BEDDED)
        if bedded and row.admitted_at is not None and row.admitted_at <= at:
            return Stay(*row)
    row = conn.execute(_LATEST_STAY, {"pid": patient_id, "at": at}).first()
    return None if row is None else Stay(*row)


# ---------------------------------------------------------------- prefetch


def prefetched_vitals(hook: HookRequest) -> dict[str, Any] | None:
    """The prefetched vitals Bundle, None when not sent (or sent as null: no results)."""
    vitals = (hook.prefetch or {}).get("vitals")
    if vitals is None:
        return None
    if not isinstance(vitals, dict) or vitals.get("resourceType") != "Bundle":
        raise HookError("prefetch.vitals must be the Bundle the vitals search returned")
    return vitals


def _with_encounter(bundle: dict[str, Any], stay: Stay) -> dict[str, Any]:
    """The Bundle with the stay's encounter on every Observation that names none."""
    entries = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if (isinstance(resource, dict) and resource.get("resourceType") == "Observation"
                and "encounter" not in resource):  # fmt: skip
            encounter = {"reference": f"Encounter/{stay.encounter_id}"}
            entry = {**entry, "resource": {**resource, "encounter": encounter}}
        entries.append(entry)
    return {**bundle, "entry": entries} if "entry" in bundle else bundle


def honour_prefetch(svc: Services, stay: Stay, bundle: dict[str, Any]) -> int:
    """Ingest the prefetched vitals like any FHIR feed; the number of new observations."""
    try:
        parsed = parse_json(_with_encounter(bundle, stay)).parsed
    except FHIRError as error:
        raise HookError(f"prefetch.vitals: {error}") from None
    others = sorted({r.patient_id for r in parsed.reported} - {stay.patient_id})
    if others:
        raise HookError(f"prefetch.vitals holds observations of other patients: {others[:3]}")
    if not parsed.reported and not parsed.rejections:
        return 0
    return store_parsed(svc.pipeline, parsed).accepted


def rescore(svc: Services, stay: Stay) -> None:
    """Score this stay now and let the alert policy act on the score (one transaction).

    The scoring mark is left alone: it covers every stay, and the next ward round still owes
    the others their scores (it re-scores this one too, which only supersedes the hour)."""
    with svc.engine.begin() as conn:
        at = ward_now(conn)
        watch(conn, score_stays(conn, svc.model, [stay.encounter_id], at=at), svc.book)


# ---------------------------------------------------------------- facts, cached

_MISSING: Any = object()


@dataclass
class CardCache:
    """Per app: explanations by (stay, score, model), card facts by fingerprint."""

    explanations: LRU[tuple[str, int, str], Explanation | None] = field(
        default_factory=lambda: LRU(1024)
    )
    facts: LRU[tuple[Any, ...], cards.CardFacts] = field(default_factory=lambda: LRU(1024))


_CACHE_LOCK = threading.Lock()


def card_cache(request: Request) -> CardCache:
    """The app's card cache (made on first use): tied to the app, hence to its database."""
    state = request.app.state
    with _CACHE_LOCK:
        if getattr(state, "cds_card_cache", None) is None:
            state.cds_card_cache = CardCache()
    return state.cds_card_cache


def _fingerprint_statement() -> Select:
    eid, since = bindparam("eid"), bindparam("since", type_=UtcDateTime)
    score = select(func.max(scores.c.id)).where(
        scores.c.encounter_id == eid, scores.c.role == "active",
        scores.c.as_of <= _AT, scores.c.as_of > since,
    )  # fmt: skip
    newest = select(func.max(observations.c.id)).where(
        observations.c.patient_id == bindparam("pid"), observations.c.encounter_id == eid,
        observations.c.effective_at <= _AT,
    )  # fmt: skip
    event = (
        select(func.max(alert_events.c.id))
        .join(alerts, alerts.c.alert_id == alert_events.c.alert_id)
        .where(alerts.c.encounter_id == eid)
    )
    opted = select(patients.c.opted_out_scoring).where(patients.c.patient_id == bindparam("pid"))
    return select(*(part.scalar_subquery() for part in (score, newest, event, opted)))


_FINGERPRINT = _fingerprint_statement()


def fingerprint(conn: Connection, stay: Stay, at: datetime) -> tuple[Any, ...]:
    """(score id, newest observation id, newest alert event id, opted out) of the stay: what
    the card shows changes only when one of these does (or the clock moves). The score is the
    worklist's: the newest active one of the last 24 h."""
    values = {"eid": stay.encounter_id, "pid": stay.patient_id, "at": at, "since": at - RECENT}
    return tuple(conn.execute(_FINGERPRINT, values).one())


def _explanation(
    conn: Connection, svc: Services, bed: Bed, score_id: int | None, cache: CardCache
) -> tuple[Explanation | None, str | None]:
    """The explanation of the stored score (its own hour, not the clock's), or why none."""
    if score_id is None or bed.scored_at is None:
        return None, None
    model = svc.model_for(bed.unit)  # the unit's own active model, if it has one
    if bed.model_version != model.version:
        why = f"No explanation: this score is from model {bed.model_version}; the active model "
        return None, why + f"is {model.version} (the next ward round re-scores)."
    key = (bed.encounter_id, score_id, model.version)
    found = cache.explanations.get(key, _MISSING)
    if found is _MISSING:
        history = stay_history(conn, bed.encounter_id, bed.scored_at)
        found = explain(model, history) if len(history) else None
        cache.explanations.put(key, found)
    return found, None if found is not None else "No explanation: no hourly record yet."


def read_facts(
    conn: Connection, svc: Services, stay: Stay, at: datetime, cache: CardCache
) -> cards.CardFacts:
    """What the card shows, from the cache when nothing it shows has changed."""
    marks = fingerprint(conn, stay, at)
    key = (svc.model.version, stay.encounter_id, *marks, at.replace(second=0, microsecond=0))
    if (found := cache.facts.get(key)) is not None:
        return found
    bed = beds(conn, [stay.encounter_id], at=at, book=svc.book)[0]
    explanation, note = _explanation(conn, svc, bed, marks[0], cache)
    facts = cards.CardFacts(at, bed, marks[0], stay.present(at), explanation, note)
    cache.facts.put(key, facts)
    return facts


# ---------------------------------------------------------------- patient-view


def patient_view(
    svc: Services, cache: CardCache, hook: HookRequest, base_url: str
) -> list[dict[str, Any]]:
    """The cards for one patient-view call (see the module docstring)."""
    context = hook.context
    with svc.engine.connect() as conn:
        if deployment_silent(conn):  # silent mode: no card of any kind reaches the EHR
            return []
        at = ward_now(conn)
        stay = find_stay(conn, context.patient_id, context.encounter_id, at)
        if stay is None:
            return []
        if stay.opted_out:
            return [cards.opted_out_card(svc.model.version)]
        bundle = prefetched_vitals(hook)
        if bundle is None:
            facts = read_facts(conn, svc, stay, at, cache)
    if bundle is not None:
        if honour_prefetch(svc, stay, bundle) > 0:
            rescore(svc, stay)
        with svc.engine.connect() as conn:
            facts = read_facts(conn, svc, stay, ward_now(conn), cache)
    if facts.bed.opted_out:  # opted out since the stay was read
        return [cards.opted_out_card(svc.model.version)]
    if facts.bed.risk is None:
        return [cards.not_scored_card(facts, base_url, svc.model.version)] if facts.present else []
    return [cards.risk_card(facts, base_url)]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


DISCOVERY = Public("CDS Hooks discovery lists our one service and its prefetch: no patient data")
# A card is a read of one patient's risk; feedback evaluates an alert (the workflow then checks
# the clinician's role). A CDS client proves itself with its JWT (`auth`), or an API token.
READS_CARD = RequireAtOnce(
    "patient.read", scopes=[("RiskAssessment", "r")], cds=True, audit="cds.card"
)
GIVES_FEEDBACK = RequireAtOnce("feedback", scopes=[("Flag", "u")], cds=True)


@router.get("/cds-services", summary="CDS Hooks discovery")
def discovery(_: None = Depends(DISCOVERY)) -> dict[str, Any]:
    """The services this CDS server offers: one patient-view service."""
    return {"services": [SERVICE]}


@router.post("/cds-services/{service_id}", summary="Call a CDS service (patient-view)")
async def call_service(
    service_id: str,
    request: Request,
    _: workflow.Actor = Depends(READS_CARD),  # noqa: B008
) -> JSONResponse:
    """A patient-view hook call → `{"cards": [...]}`; 400 problem for a malformed call."""
    if service_id != SERVICE_ID:
        return problem(404, f"no CDS service {service_id!r}; this server offers {SERVICE_ID!r}")
    svc: Services = request.app.state.services
    try:
        hook = parse_body(HookRequest, await request.body())
        if hook.hook != HOOK:
            raise HookError(f"service {SERVICE_ID} answers the {HOOK} hook, not {hook.hook!r}")
        found = await run_in_threadpool(
            patient_view, svc, card_cache(request), hook, base_url(request)
        )
    except HookError as error:
        return problem(400, str(error))
    return JSONResponse({"cards": found})


# ---------------------------------------------------------------- feedback


def clinician(user: str) -> workflow.Actor:
    """The actor a CDS client's FHIR user reference stands for (until real authentication)."""
    kind, _, rid = user.partition("/")
    if not rid or len(user) > 64:
        raise HookError(f"{USER_EXTENSION} {user!r} is not a FHIR user reference such as "
                        "Practitioner/123")  # fmt: skip
    return workflow.Actor(user, "provider" if kind in PROVIDER_TYPES else kind.lower())


def feedback_actor(who: Principal, body: FeedbackRequest) -> workflow.Actor:
    """The clinician: the person signed in, or the user a trusted CDS client (JWT) or token
    names in the feedback's extension (the EHR authenticated them, not us)."""
    if who.session is not None:
        return who.actor
    user = (body.extension or {}).get(USER_EXTENSION)
    if not isinstance(user, str):
        how = f"the feedback's extension {{{USER_EXTENSION!r}: 'Practitioner/…'}}"
        raise NotSignedIn(f"who is giving this feedback? sign in, or name the user in {how}")
    return clinician(user)


def _note(conn: Connection, actor: workflow.Actor, at: datetime, ref: cards.CardRef,
          text: str) -> None:  # fmt: skip
    """Feedback that changes no alert, kept for the deployment team."""
    encounter = None
    if ref.alert_id is not None:
        encounter = workflow.get_alert(conn, ref.alert_id).encounter_id
    elif ref.score_id is not None:
        query = select(scores.c.encounter_id).where(scores.c.id == ref.score_id)
        encounter = conn.execute(query).scalar()
    row = {"at": at, "actor": actor.user_id, "role": actor.role, "encounter_id": encounter,
           "page": f"cds-hooks/{SERVICE_ID}", "text": text}  # fmt: skip
    conn.execute(insert(feedback_table).values(**row))


def _override(conn: Connection, item: FeedbackItem, ref: cards.CardRef,
              actor: workflow.Actor, at: datetime) -> None:  # fmt: skip
    reason = item.override_reason.reason if item.override_reason else None
    comment = item.override_reason.user_comment if item.override_reason else None
    if ref.alert_id is None or reason is None:
        left = "" if ref.alert_id is None else f"; alert {ref.alert_id} left as it was"
        _note(conn, actor, at, ref, f"CDS card overridden without a dismissal reason{left}"
              + (f": {comment}" if comment else ""))  # fmt: skip
        return
    if reason.system not in (None, DISMISS_REASON_SYSTEM) or reason.code not in (
        workflow.DISMISS_REASONS
    ):
        raise HookError(f"override reason {reason.code!r} is not one of the card's "
                        f"overrideReasons: {', '.join(workflow.DISMISS_REASONS)}")  # fmt: skip
    workflow.dismiss(conn, ref.alert_id, actor, reason.code, note=comment, at=at)


def _accept(conn: Connection, item: FeedbackItem, ref: cards.CardRef,
            actor: workflow.Actor, at: datetime) -> None:  # fmt: skip
    if len(item.accepted_suggestions) != 1:
        raise HookError("an accepted card names exactly one accepted suggestion (the card's "
                        "selectionBehavior is at-most-one)")  # fmt: skip
    chosen = cards.read_card_uuid(item.accepted_suggestions[0].id)
    if ref.alert_id is None or (chosen.alert_id, chosen.score_id) != (ref.alert_id, ref.score_id):
        raise HookError("the accepted suggestion is not one of this card's suggestions")
    note = f"accepted in the EHR (CDS Hooks): {cards.SUGGESTION_LABELS.get(chosen.item, '')}"
    if chosen.item == cards.BUNDLE:
        workflow.confirm(conn, ref.alert_id, actor, at=at, note=note)
    elif chosen.item == cards.LACTATE_FIRST:
        workflow.pause(conn, ref.alert_id, actor, at=at, until_new_data=True, note=note)
    else:
        raise HookError("the accepted suggestion is not one of this card's suggestions")


def apply_feedback(svc: Services, body: FeedbackRequest, actor: workflow.Actor) -> None:
    """Every item, in one transaction: all are recorded, or none (the error names the item)."""
    with svc.engine.begin() as conn:
        at = ward_now(conn)
        for i, item in enumerate(body.feedback):
            try:
                ref = cards.read_card_uuid(item.card)
                (_accept if item.outcome == "accepted" else _override)(conn, item, ref, actor, at)
            except (LookupError, PermissionError, ValueError) as error:
                raise type(error)(f"feedback[{i}]: {error}") from error


_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotSignedIn, 401), (workflow.NotPermitted, 403), (workflow.AlertNotFound, 404),
    (workflow.IllegalTransition, 409), (ValueError, 400), (PermissionError, 403),
    (LookupError, 404),
)  # fmt: skip


@router.post("/cds-services/{service_id}/feedback", summary="CDS Hooks feedback")
async def feedback(
    service_id: str,
    request: Request,
    _: workflow.Actor = Depends(GIVES_FEEDBACK),  # noqa: B008
) -> JSONResponse:
    """Record what a clinician did with a card (see the module docstring); 200 when recorded."""
    if service_id != SERVICE_ID:
        return problem(404, f"no CDS service {service_id!r}; this server offers {SERVICE_ID!r}")
    svc: Services = request.app.state.services
    try:
        body = parse_body(FeedbackRequest, await request.body())
        who = optional_principal(request)
        assert who is not None  # GIVES_FEEDBACK resolved it
        actor = feedback_actor(who, body)
        await run_in_threadpool(apply_feedback, svc, body, actor)
    except (LookupError, PermissionError, ValueError) as error:
        status = next(code for kind, code in _STATUS if isinstance(error, kind))
        return problem(status, str(error))
    return JSONResponse({})
