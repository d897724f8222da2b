"""Errors as RFC 9457 problems for machine clients, as a readable page for people, and never
a leak of internals; the OpenAPI document describes them as they are sent."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from wardwatch.alerts.records import parse_kind
from wardwatch.alerts.workflow import Actor, AlertNotFound, IllegalTransition, NotPermitted
from wardwatch.chart import ChartNotFound
from wardwatch.explain import WhatIfError
from wardwatch.security import sessions
from wardwatch.web import problems
from wardwatch.web.access import sees_patients
from wardwatch.web.app import create_app
from wardwatch.web.auth import wall_clock

PROBLEM = "application/problem+json"


def raise_(error: Exception) -> Callable[[], None]:
    def route() -> None:
        raise error

    return route


def library_value_error() -> None:
    int("not a number")  # raised inside Python, not by wardwatch


def wardwatch_value_error() -> None:
    parse_kind("no such kind")  # wardwatch's way of saying "bad input"


def needs_actor(actor: Actor = Depends(sees_patients)) -> dict[str, str]:  # noqa: B008
    return {"user": actor.user_id}


FAULTS: dict[str, tuple[Callable[[], None], int]] = {
    "not-permitted": (raise_(NotPermitted("nurses may not dismiss")), 403),
    "no-alert": (raise_(AlertNotFound("no alert with id 7")), 404),
    "no-chart": (raise_(ChartNotFound("no stay 'x'")), 404),
    "illegal": (raise_(IllegalTransition("cannot dismiss alert 7: it is confirmed")), 409),
    "what-if": (raise_(WhatIfError("'foo' is not a measured variable")), 422),
    "our-value-error": (wardwatch_value_error, 422),
    "library-value-error": (library_value_error, 500),
    "bug": (raise_(RuntimeError("password=hunter2 in table secret_things")), 500),
}


@pytest.fixture
def faulty(ward) -> Iterator[TestClient]:
    """The real app plus routes that fail on purpose, under a machine and a people path."""
    app: FastAPI = create_app(ward)
    for name, (route, _) in FAULTS.items():
        app.add_api_route(f"/api/faults/{name}", route)
        app.add_api_route(f"/faults/{name}", route)
    app.add_api_route("/faults/needs-actor", needs_actor)
    with TestClient(app, raise_server_exceptions=False, base_url="https://testserver") as client:
        yield client


def text_of(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


# ---------------------------------------------------------------- machine paths


@pytest.mark.parametrize("path", ["/api/nowhere", "/cds-services/a/b/c"])
def test_an_unknown_machine_path_is_a_404_problem(provider, path):
    response = provider.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {
        "type": "about:blank", "title": "Not Found", "status": 404,
        "detail": f"Nothing is at {path}.", "instance": path,
    }  # fmt: skip


def test_a_method_the_route_does_not_take_is_a_405_problem_with_allow(provider):
    response = provider.delete("/api/alerts")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["allow"] == "GET"
    assert response.json()["detail"] == "/api/alerts does not accept DELETE; it accepts GET."


def test_a_request_failing_validation_is_a_422_problem_listing_each_error(engineer):
    response = engineer.get("/api/quarantine", params={"limit": 0, "offset": -1})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == problems.PROBLEM_TYPES["invalid-request"]
    assert [e["loc"] for e in body["errors"]] == [["query", "limit"], ["query", "offset"]]
    assert all(set(e) == {"loc", "msg", "type"} for e in body["errors"])  # no input echoed
    assert body["detail"].startswith("query.limit: ") and body["detail"].endswith("(and 1 more)")


def test_a_body_that_is_not_even_text_is_a_400_problem(provider):
    response = provider.post(
        "/api/alerts/1/evaluation", content=b"\xff{", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(("name", "status"), [(n, s) for n, (_, s) in FAULTS.items()])
def test_each_error_has_its_status_as_a_problem(faulty, name, status):
    response = faulty.get(f"/api/faults/{name}")
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["instance"] == f"/api/faults/{name}"
    assert body["type"].startswith("/problems/")


def test_a_domain_error_says_what_the_domain_said(faulty):
    body = faulty.get("/api/faults/illegal").json()
    assert body["detail"] == "cannot dismiss alert 7: it is confirmed"
    assert body["type"] == problems.PROBLEM_TYPES["illegal-transition"]
    wrong_kind = faulty.get("/api/faults/our-value-error").json()
    assert "unknown alert kind 'no such kind'" in wrong_kind["detail"]


def test_a_server_error_is_logged_and_leaks_nothing(faulty, caplog):
    with caplog.at_level(logging.ERROR, logger="wardwatch.web.problems"):
        response = faulty.get("/api/faults/bug")
    body = response.json()
    assert "hunter2" not in response.text and "secret" not in response.text
    assert body["incident"] in body["detail"]
    [record] = [r for r in caplog.records if body["incident"] in r.getMessage()]
    assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])


def test_a_library_value_error_is_our_bug_not_the_clients(faulty, caplog):
    with caplog.at_level(logging.ERROR, logger="wardwatch.web.problems"):
        body = faulty.get("/api/faults/library-value-error").json()
    assert body["status"] == 500 and "not a number" not in body["detail"]
    assert any(body["incident"] in r.getMessage() for r in caplog.records)


def test_only_wardwatch_code_raising_is_wardwatchs(faulty):
    def caught(call: Callable[[], None]) -> BaseException:
        with pytest.raises(ValueError) as info:
            call()
        return info.value

    assert problems.raised_by_wardwatch(caught(wardwatch_value_error))
    assert not problems.raised_by_wardwatch(caught(library_value_error))
    assert not problems.raised_by_wardwatch(ValueError("never raised"))


# ---------------------------------------------------------------- pages


def test_an_unknown_page_is_a_readable_404_page(client):
    response = client.get("/ward/nowhere/at/all")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<html lang="en">' in page and '<link rel="stylesheet" href="/static/app.css">' in page
    assert '<a href="/">Back to the worklist</a>' in page
    text = text_of(page)
    assert "Not Found" in text and "Nothing is at /ward/nowhere/at/all." in text
    assert "go back to the worklist" in text


@pytest.mark.parametrize(("name", "status"), [(n, s) for n, (_, s) in FAULTS.items()])
def test_each_error_on_a_page_is_a_page_with_its_status(faulty, name, status):
    response = faulty.get(f"/faults/{name}")
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert f"Error {status}" in text_of(response.text)


def test_a_server_error_page_gives_a_reference_and_no_internals(faulty):
    response = faulty.get("/faults/bug")
    text = text_of(response.text)
    assert "hunter2" not in response.text and "Something went wrong on our side" in text
    assert re.search(r"Reference: [0-9a-f]{12}", text)


def test_a_page_that_needs_a_sign_in_sends_you_to_it(faulty, ward):
    response = faulty.get("/faults/needs-actor", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/faults/needs-actor"
    with ward.engine.begin() as conn:
        new = sessions.create_session(conn, "dr.snow", at=wall_clock())
    faulty.cookies.set(sessions.COOKIE, new.token)
    assert faulty.get("/faults/needs-actor").json() == {"user": "dr.snow"}


def test_a_method_a_page_does_not_take_is_a_405_page(faulty):
    response = faulty.delete("/faults/bug")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["allow"] == "GET"
    assert "/faults/bug does not accept DELETE; it accepts GET." in text_of(response.text)


# ---------------------------------------------------------------- the OpenAPI document


def api_operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, operations in spec["paths"].items():
        if path.startswith("/api/"):
            for method, operation in operations.items():
                yield path, method, operation


def test_the_document_describes_problems_as_they_are_sent(client):
    spec = client.get("/openapi.json").json()
    assert set(spec["components"]["schemas"]["Problem"]["required"]) == {
        "type",
        "title",
        "status",
        "detail",
        "instance",
    }
    for path, method, operation in api_operations(spec):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert list(response["content"]) == [PROBLEM], (path, method, status)
        assert "401" in operation["responses"], (path, method)
        assert operation["security"] == [{"session": []}, {"apiToken": []}], (path, method)
        if "requestBody" in operation:
            assert "400" in operation["responses"], (path, method)


