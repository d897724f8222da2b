"""Every route declares what it needs, and the app enforces it for every role.

The declarations are read back from the routes themselves (`access.Public`, `SignedIn`,
`Require`), so a route added without one fails here; then each declared route is called as
each role, and a role the matrix does not allow must be refused (403), whatever the route
would otherwise have answered.
"""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from wardwatch.clock import ward_now
from wardwatch.security import audit, roles
from wardwatch.security.audit_verify import verify
from wardwatch.security.break_glass import pending_break_glass_reviews
from wardwatch.ward import worklist
from wardwatch.web import access
from wardwatch.web.app import create_app

# FastAPI's own documentation routes and the static files: no patient data, no actions.
FRAMEWORK_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/static"}
DECLARATIONS = (access.Public, access.SignedIn, access.Require)


def all_routes(routes, prefix: str = "") -> list[tuple[str, object]]:
    """Every route of the app with its full path, included routers opened (FastAPI keeps
    them nested, each with the prefix it was included under)."""
    found = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found += all_routes(inner.routes, prefix + route.include_context.prefix)
        else:
            found.append((prefix + route.path, route))
    return found


def declarations(route: APIRoute) -> list:
    calls, stack = [], list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        calls.append(dependency.call)
        stack += dependency.dependencies
    return [c for c in calls if isinstance(c, DECLARATIONS)]


class Declared:
    def __init__(self, path: str, route: APIRoute, declared: object) -> None:
        self.path, self.methods, self.declared = path, route.methods, declared


def declared_routes(ward) -> list[Declared]:
    found = []
    for path, route in all_routes(create_app(ward).routes):
        if isinstance(route, APIRoute):
            top = [d.call for d in route.dependant.dependencies if isinstance(d.call, DECLARATIONS)]
            assert len(top) == 1, f"{path} {route.methods} declares {top}"
            found.append(Declared(path, route, top[0]))
        else:
            assert isinstance(route, Route | Mount) and path in FRAMEWORK_PATHS, path
    return found


def test_every_route_declares_exactly_one_permission_and_public_ones_say_why(ward):
    found = declared_routes(ward)
    assert len(found) >= 35
    for route in found:
        declared = route.declared
        if isinstance(declared, access.Public):
            assert len(declared.why) > 20, route.path
        if isinstance(declared, access.Require):
            assert declared.permission in roles.PERMISSIONS, route.path
    public = {route.path for route in found if isinstance(route.declared, access.Public)}
    assert public == {"/", "/signin", "/fhir/metadata", "/fhir/{path:path}", "/cds-services"}


def test_patient_data_routes_are_audited_reads(ward):
    for route in declared_routes(ward):
        declared = route.declared
        reads = isinstance(declared, access.Require) and declared.permission == "patient.read"
        if reads and "GET" in route.methods and route.path != "/ward/rows":
            assert declared.audit, f"{route.path} reads patient data without an audit record"


def fill(path: str, bed) -> str:
    values = {"encounter_id": bed.encounter_id, "alert_id": str(bed.sepsis.alert_id),
              "item_id": "1", "item": "lactate", "resource_id": "1", "service_id":
              "wardwatch-sepsis", "path": "Nothing"}  # fmt: skip
    for name, value in values.items():
        path = path.replace("{" + name + "}", value).replace("{" + name + ":path}", value)
    return path


@pytest.mark.parametrize("role_user", ["dr.snow", "nurse.nightingale", "admin.root",
                                       "auditor.ada", "eng.hopper", "ds.fisher"])  # fmt: skip
def test_each_role_is_refused_every_route_its_role_does_not_allow(ward, client, sign_in, role_user):
    with ward.engine.connect() as conn:
        bed = next(b for b in worklist(conn, at=ward_now(conn), book=ward.book) if b.sepsis)
    who = sign_in(role_user)
    role = {"dr.snow": "provider", "nurse.nightingale": "nurse", "admin.root": "admin",
            "auditor.ada": "auditor", "eng.hopper": "integration_engineer",
            "ds.fisher": "data_scientist"}[role_user]  # fmt: skip
    checked = 0
    for route in declared_routes(ward):
        declared = route.declared
        if not isinstance(declared, access.Require):
            continue
        allowed = roles.has_permission(role, declared.permission)
        if declared.patient and declared.permission == "patient.read":
            allowed = roles.has_permission(role, "patient.read")
        if allowed:
            continue
        for method in route.methods - {"HEAD"}:
            response = who.request(method, fill(route.path, bed), follow_redirects=False)
            assert response.status_code == 403, (role, method, route.path, response.status_code)
            checked += 1
    assert checked >= (0 if role == "provider" else 3)


def test_nobody_signed_in_gets_nothing_but_the_public_routes(ward, client):
    with ward.engine.connect() as conn:
        bed = next(b for b in worklist(conn, at=ward_now(conn), book=ward.book) if b.sepsis)
    client.auth = None
    for route in declared_routes(ward):
        if isinstance(route.declared, access.Public):
            continue
        for method in route.methods - {"HEAD"}:
            response = client.request(method, fill(route.path, bed), follow_redirects=False)
            assert response.status_code in (401, 303), (method, route.path, response.status_code)
            if response.status_code == 303:
                assert response.headers["location"].startswith("/signin")


# ---------------------------------------------------------------- break the glass


def test_an_admin_opens_a_patient_only_by_breaking_the_glass_which_is_audited(ward, admin):
    with ward.engine.connect() as conn:
        bed = next(b for b in worklist(conn, at=ward_now(conn), book=ward.book) if b.sepsis)
    page = f"/patients/{bed.encounter_id}"
    refused = admin.get(page)
    assert refused.status_code == 403 and "Break the glass" in refused.text
    assert bed.patient_id not in refused.text or "risk" not in refused.text.lower()
    assert admin.get("/ward").status_code == 403
    short = admin.post(f"{page}/break-glass", data={"reason": "because"}, follow_redirects=False)
    assert short.status_code == 422  # a reason the reviewer can judge, or nothing
    why = "Resuscitation in bed 4: restoring the monitor feed, need the lactate trend"
    opened = admin.post(f"{page}/break-glass", data={"reason": why}, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == page
    assert admin.get(page).status_code == 200
    assert admin.post(f"{page}/what-if", data={"variable": "Lactate", "value": "1"}
                      ).status_code == 403  # a grant lets a person see, not act  # fmt: skip
    with ward.engine.connect() as conn:
        pending = pending_break_glass_reviews(conn)
        reads = [r for r in audit.records(conn, patient_id=bed.patient_id)
                 if r.action == "patient.read" and r.actor == "admin.root"]  # fmt: skip
    assert [g.reason for g in pending] == [why]
    assert len(reads) == 1 and reads[0].details["break_glass"] == pending[0].grant_id


def test_a_grant_opens_one_patient_not_the_next(ward, admin):
    with ward.engine.connect() as conn:
        first, second = worklist(conn, at=ward_now(conn), book=ward.book)[:2]
    why = "Chasing a missing lactate result reported by the lab for this patient"
    admin.post(f"/patients/{first.encounter_id}/break-glass", data={"reason": why})
    assert admin.get(f"/patients/{first.encounter_id}").status_code == 200
    assert admin.get(f"/patients/{second.encounter_id}").status_code == 403


def _refusals(ward, since: int) -> list:
    with ward.engine.connect() as conn:
        return [r for r in audit.records(conn) if r.seq > since
                and r.action == "break_glass.refused"]  # fmt: skip


def _head(ward) -> int:
    with ward.engine.connect() as conn:
        return max(r.seq for r in audit.records(conn))


@pytest.mark.parametrize(
    ("user_id", "stay", "reason", "status", "says"),
    [("auditor.ada", "known", "Curious how the new model scores this patient", 403,
      "Not allowed for your role"),
     ("admin.root", "known", "because", 422, "at least 10 characters"),
     ("admin.root", "unknown", "Restoring the monitor feed for this bed", 404,
      "There is no stay")],
    ids=["role-not-allowed", "reason-too-short", "unknown-stay"],
)  # fmt: skip
def test_a_refused_break_the_glass_is_committed_to_the_audit_trail(
    ward, sign_in, user_id, stay, reason, status, says
):
    with ward.engine.connect() as conn:
        bed = worklist(conn, at=ward_now(conn), book=ward.book)[0]
    encounter_id = bed.encounter_id if stay == "known" else "no-such-stay"
    start = _head(ward)
    who = sign_in(user_id)
    refused = who.post(f"/patients/{encounter_id}/break-glass", data={"reason": reason},
                       follow_redirects=False)  # fmt: skip
    assert refused.status_code == status and says in refused.text  # the page, as before
    (record,) = _refusals(ward, start)
    role = {"auditor.ada": "auditor", "admin.root": "admin"}[user_id]
    assert (record.actor, record.role, record.outcome) == (user_id, role, "denied")
    assert (record.encounter_id, record.object) == (encounter_id, f"encounter/{encounter_id}")
    assert record.patient_id == (bed.patient_id if stay == "known" else None)
    assert record.source == "testclient" and record.details["refused"]
    with ward.engine.connect() as conn:
        assert pending_break_glass_reviews(conn) == []
        assert verify(conn).intact


def test_an_api_token_refused_the_glass_is_on_record_too(ward, issue_token):
    with ward.engine.connect() as conn:
        bed = worklist(conn, at=ward_now(conn), book=ward.book)[0]
    start = _head(ward)
    feed = issue_token("system/Patient.rs")
    why = "Restoring the monitor feed for this bed"
    response = feed.post(f"/patients/{bed.encounter_id}/break-glass", data={"reason": why},
                         follow_redirects=False)  # fmt: skip
    assert response.status_code == 403
    (record,) = _refusals(ward, start)
    assert (record.actor, record.role) == ("client:test-feed", "system")
    assert record.patient_id == bed.patient_id and "API token" in record.details["refused"]


# ---------------------------------------------------------------- audited reads


def test_opening_a_patient_is_an_audit_record_and_polling_the_worklist_is_not(ward, provider):
    with ward.engine.connect() as conn:
        bed = worklist(conn, at=ward_now(conn), book=ward.book)[0]
        before = len(list(audit.records(conn)))
    provider.get(f"/patients/{bed.encounter_id}")
    provider.get("/ward")
    for _ in range(3):
        provider.get("/ward/rows", headers={"HX-Request": "true", "HX-Trigger": "worklist-rows"})
    with ward.engine.connect() as conn:
        new = list(audit.records(conn))[before:]
    assert [r.action for r in new] == ["patient.read", "worklist.read"]
    read = new[0]
    assert (read.actor, read.role, read.patient_id, read.encounter_id) == (
        "dr.snow", "provider", bed.patient_id, bed.encounter_id)  # fmt: skip
    assert read.object == "GET /patients/{encounter_id}" and read.source == "testclient"
