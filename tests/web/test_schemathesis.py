"""Property tests of the whole app against its own OpenAPI document (schemathesis 4).

Every operation in /openapi.json is called with generated requests, valid and invalid, signed
in; each response must not be a 500 and must match what the document
promises (status codes, content types, bodies, headers). Each request is signed in with a
real session (`SignedInPerson`): the provider's, or the integration engineer's for ingest and
the quarantine, which a provider may not use. Each operation runs against the real
app on its own copy of the replayed ward (the `ward` fixture), so evaluations and ingests made
while testing one operation are seen by that operation's later examples only.

How it is wired, and why:
- schemathesis parametrizes at collection, so it loads the document when this module is
  imported, before any fixture exists. It loads it from `APP`, an ASGI app that forwards to
  the app of the running test: at import an app without services (the document depends on
  the routes alone), during each test the app on that test's ward. Every request schemathesis
  makes, its own probes included (e.g. the same request without the sign-in), goes there.
  schemathesis's lazy `from_fixture` loader would avoid this, but it does not run on pytest
  9.2 (it writes `request.node._nodeid`, which pytest 9.2 nodes no longer have).
- Hypothesis settings come from `@settings` (max_examples, derandomize, no deadline), which
  schemathesis merges with its own config; that config sets only the seed, the sign-in and
  the one check widened below. max_examples bounds the fuzzing phase; the examples and
  coverage phases are bounded by the schema itself (one case per boundary or scenario).
- Generated ids almost never name a stay on the ward, so the chart, the risk history and
  what-if would be checked on their 404s alone. Two more tests ask about real stays (every
  stay on the ward, one of them opted out; generated what-if questions about one), so their
  200 answers are checked against the document too.
- A schema-valid request may still be refused with 422 where validity depends on the ward's
  state, which no schema can say: pausing an alert until a time the ward clock has passed,
  dismissing it for reason "other" without a note. For that one operation, the
  positive_data_acceptance check also accepts 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import ignored_auth
from schemathesis.config import SchemathesisConfig
from sqlalchemy import update
from starlette.types import ASGIApp, Receive, Scope, Send

from wardwatch import ward as ward_model
from wardwatch.security import sessions
from wardwatch.store.schema import patients
from wardwatch.web.app import create_app
from wardwatch.web.auth import wall_clock
from wardwatch.web.deps import Services

POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis's default
# Who calls each operation: the provider, except where only the integration engineer may.
ENGINEER_PATHS = ("/api/ingest/", "/api/quarantine")
SIGNED_IN: dict[str, sessions.NewSession] = {}  # user id → this test's session (per ward)
# Cases built by hand carry the session set on them; schemathesis cannot tell it from a
# generated one, so its "is auth ignored?" probe would call our valid session invalid.
HAND_SIGNED = [ignored_auth]
CONFIG = SchemathesisConfig.from_dict({
    "seed": 20260,
    "operations": [{
        "include-path": "/api/alerts/{alert_id}/evaluation",
        "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE, "422"]}},
    }],
})  # fmt: skip


class AppUnderTest:
    """An ASGI app that forwards every request to `app`, which each test replaces."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


# Building the document runs no route, so no service is needed for it.
WITHOUT_SERVICES = create_app(cast(Services, None))
APP = AppUnderTest(WITHOUT_SERVICES)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)


@schemathesis.auth()
class SignedInPerson:
    """A real session on the test's ward: its cookie, and the CSRF header for writes."""

    def get(self, case, context) -> sessions.NewSession | None:
        engineer = case.operation.path.startswith(ENGINEER_PATHS)
        return SIGNED_IN.get("eng.hopper" if engineer else "dr.snow")  # None outside a test

    def set(self, case, data: sessions.NewSession | None, context) -> None:
        if data is None:
            return
        case.cookies = {**(case.cookies or {}), sessions.COOKIE: data.token}
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.headers = {**headers, sessions.CSRF_HEADER: data.csrf_token}  # a person, no token


@pytest.fixture
def app_on_the_ward(ward: Services) -> Iterator[None]:
    with ward.engine.begin() as conn:
        for user_id in ("dr.snow", "eng.hopper"):
            SIGNED_IN[user_id] = sessions.create_session(conn, user_id, at=wall_clock())
    APP.app = create_app(ward)
    yield
    APP.app = WITHOUT_SERVICES
    SIGNED_IN.clear()


@schema.parametrize()
@settings(
    max_examples=10,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_the_app_keeps_the_promises_of_its_openapi_document(case, app_on_the_ward):
    case.call_and_validate()


@pytest.fixture
def stays(ward: Services) -> list[str]:
    """Every stay on the ward; the first one's patient has opted out of AI scoring."""
    with ward.engine.begin() as conn:
        beds = ward_model.worklist(conn, book=ward.book)
        query = update(patients).where(patients.c.patient_id == beds[0].patient_id)
        conn.execute(query.values(opted_out_scoring=True))
    return [bed.encounter_id for bed in beds]


@pytest.mark.parametrize(
    "path", ["/api/patients/{encounter_id}", "/api/patients/{encounter_id}/scores"]
)
def test_every_stay_on_the_ward_is_answered_as_documented(app_on_the_ward, stays, path):
    operation = schema[path]["GET"]
    for encounter_id in stays:
        case = operation.Case(path_parameters={"encounter_id": encounter_id})
        SignedInPerson().set(case, SIGNED_IN["dr.snow"], None)
        assert case.call_and_validate(excluded_checks=HAND_SIGNED).status_code == 200


@given(data=st.data())
@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_any_valid_what_if_about_a_stay_is_answered_as_documented(app_on_the_ward, stays, data):
    questions = schema["/api/patients/{encounter_id}/what-if"]["POST"].as_strategy(
        path_parameters={"encounter_id": data.draw(st.sampled_from(stays[:2]))}
    )
    case = data.draw(questions)
    SignedInPerson().set(case, SIGNED_IN["dr.snow"], None)
    assert case.call_and_validate(excluded_checks=HAND_SIGNED).status_code == 200
