"""Signing in for real: password + TOTP, the session cookie, CSRF, sign-out, idle timeout,
API tokens and CDS Hooks client JWTs — against the real app on a real SQLite file."""

from __future__ import annotations

import re
from datetime import timedelta

import jwt
import pyotp
import pytest
from sqlalchemy import select, update

from wardwatch.alerts.records import get_alert
from wardwatch.clock import ward_now
from wardwatch.security import audit, sessions
from wardwatch.ward import worklist
from wardwatch.web.auth import wall_clock

PASSWORD = "correct horse battery staple 24"  # tests/web/conftest.py's test accounts


def signin_page_token(client) -> str:
    """Open the sign-in page, as a browser does: its cookie is set, its form's token returned."""
    page = client.get("/signin")
    assert page.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def sign_in_form(client, user: str, password: str, code: str, next_: str = ""):
    """The sign-in form filled in and sent from the sign-in page (opened first)."""
    data = {"user": user, "password": password, "code": code, "next": next_,
            "csrf_token": signin_page_token(client)}  # fmt: skip
    return client.post("/signin", data=data, follow_redirects=False)


def set_cookie(response, name: str) -> str:
    """The response's one Set-Cookie header for cookie `name`."""
    (found,) = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    return found


def alerted_bed(ward):
    with ward.engine.connect() as conn:
        beds = worklist(conn, at=ward_now(conn), book=ward.book)
    return next(b for b in beds if b.sepsis is not None)


# ---------------------------------------------------------------- password + TOTP


def test_password_and_totp_sign_in_sets_a_host_only_secure_httponly_cookie(client, totp_secrets):
    code = pyotp.TOTP(totp_secrets["dr.snow"]).now()
    response = sign_in_form(client, "dr.snow", PASSWORD, code, "/model")
    assert response.status_code == 303 and response.headers["location"] == "/model"
    cookie = set_cookie(response, sessions.COOKIE)
    for flag in ("Secure", "HttpOnly", "SameSite=lax", "Path=/"):
        assert flag in cookie, flag
    assert "Domain" not in cookie and "Max-Age" not in cookie
    page = client.get("/ward")
    assert page.status_code == 200 and "Signed in as <strong>dr.snow</strong>" in page.text


def test_a_person_who_does_not_see_patients_lands_on_their_own_page(client, totp_secrets):
    code = pyotp.TOTP(totp_secrets["auditor.ada"]).now()
    response = sign_in_form(client, "auditor.ada", PASSWORD, code)
    assert response.headers["location"] == "/governance"
    code = pyotp.TOTP(totp_secrets["admin.root"]).now()
    response = sign_in_form(client, "admin.root", PASSWORD, code)
    assert response.headers["location"] == "/model"


@pytest.mark.parametrize(
    ("user", "password", "good_code"),
    [("dr.snow", "wrong password entirely", True), ("dr.snow", PASSWORD, False),
     ("dr.nobody", PASSWORD, True)],
    ids=["wrong-password", "wrong-totp", "unknown-user"],
)  # fmt: skip
def test_a_wrong_password_code_or_user_is_refused_with_the_same_words(
    client, totp_secrets, user, password, good_code
):
    secret = totp_secrets["dr.snow"]
    code = (
        pyotp.TOTP(secret).now()
        if good_code
        else pyotp.TOTP(secret).at(wall_clock() - timedelta(minutes=5))
    )
    response = sign_in_form(client, user, password, code)
    assert response.status_code == 401
    assert "wrong user, password or code" in response.text
    assert sessions.COOKIE not in response.headers.get("set-cookie", "")
    assert client.get("/ward", follow_redirects=False).status_code == 303


def test_five_failures_lock_the_account_even_against_the_right_password(client, totp_secrets):
    for _ in range(5):
        assert sign_in_form(client, "dr.snow", "not the password", "000000").status_code == 401
    code = pyotp.TOTP(totp_secrets["dr.snow"]).now()
    response = sign_in_form(client, "dr.snow", PASSWORD, code)
    assert response.status_code == 401 and "account locked until" in response.text


def test_sign_in_never_redirects_off_site(client, totp_secrets):
    code = pyotp.TOTP(totp_secrets["dr.snow"]).now()
    response = sign_in_form(client, "dr.snow", PASSWORD, code, "//evil.example/")
    assert response.headers["location"] == "/ward"


# ---------------------------------------------------------------- CSRF before a session


def test_the_signin_page_sets_its_forms_token_in_a_strict_short_lived_cookie(client):
    page = client.get("/signin")
    cookie = set_cookie(page, sessions.SIGNIN_COOKIE)
    token = client.cookies.get(sessions.SIGNIN_COOKIE)
    assert token and f'name="csrf_token" value="{token}"' in page.text
    for flag in ("Secure", "HttpOnly", "SameSite=strict", "Path=/",
                 f"Max-Age={sessions.SIGNIN_MAX_AGE}"):  # fmt: skip
        assert flag in cookie, flag
    assert "Domain" not in cookie and sessions.SIGNIN_MAX_AGE <= 3600
    assert signin_page_token(client) == token  # a second tab: the same token, both work


def _forge(client, how: str) -> dict[str, str]:
    """The form field another site's page could send, and the cookie this browser holds."""
    if how == "no token at all":
        return {}
    if how == "no field":
        signin_page_token(client)
        return {}
    if how == "no cookie":
        token = signin_page_token(client)
        client.cookies.clear()
        return {"csrf_token": token}
    signin_page_token(client)  # the victim's browser has its own token; the attacker's differs
    return {"csrf_token": sessions.signin_token(None)}


@pytest.mark.parametrize("how", ["no token at all", "no field", "no cookie", "another token"])
def test_a_signin_without_the_pages_token_is_refused_and_checks_nothing(
    client, ward, totp_secrets, how
):
    """Login CSRF: another site posts its own valid credentials to sign this browser in."""
    code = pyotp.TOTP(totp_secrets["dr.snow"]).now()
    with ward.engine.connect() as conn:
        before = len(list(audit.records(conn)))
    data = {"user": "dr.snow", "password": PASSWORD, "code": code} | _forge(client, how)
    response = client.post("/signin", data=data, follow_redirects=False)
    assert response.status_code == 403
    assert "expired or was not sent from this site" in response.text
    assert 'value="dr.snow"' not in response.text  # the other site's user name is not kept
    assert sessions.COOKIE not in response.headers.get("set-cookie", "")
    assert client.get("/ward", follow_redirects=False).status_code == 303
    with ward.engine.connect() as conn:
        assert len(list(audit.records(conn))) == before  # not an attempt: nothing counted
    assert sign_in_form(client, "dr.snow", PASSWORD, code).status_code == 303  # code unused


def test_the_refusal_offers_a_fresh_form_that_works_and_signing_in_ends_its_token(
    client, totp_secrets
):
    refused = client.post("/signin", data={"user": "dr.snow", "password": PASSWORD})
    assert refused.status_code == 403
    token = re.search(r'name="csrf_token" value="([^"]+)"', refused.text).group(1)
    assert token == client.cookies.get(sessions.SIGNIN_COOKIE)
    code = pyotp.TOTP(totp_secrets["dr.snow"]).now()
    data = {"user": "dr.snow", "password": PASSWORD, "code": code, "csrf_token": token}
    response = client.post("/signin", data=data, follow_redirects=False)
    assert response.status_code == 303
    assert "Max-Age=0" in set_cookie(response, sessions.SIGNIN_COOKIE)
    assert client.cookies.get(sessions.SIGNIN_COOKIE) is None


# ---------------------------------------------------------------- the session


def test_signing_out_ends_the_session_on_the_server(provider):
    token = provider.cookies.get(sessions.COOKIE)
    assert provider.post("/signout", follow_redirects=False).headers["location"] == "/signin"
    provider.cookies.set(sessions.COOKIE, token)  # a stolen copy of the cookie
    assert provider.get("/ward", follow_redirects=False).status_code == 303


def test_signing_out_everywhere_ends_every_session_of_that_person(provider, ward):
    with ward.engine.begin() as conn:
        other = sessions.create_session(conn, "dr.snow", at=wall_clock())
    provider.post("/signout?everywhere=1")
    provider.cookies.set(sessions.COOKIE, other.token)
    assert provider.get("/ward", follow_redirects=False).status_code == 303


def test_an_idle_session_expires_and_polling_does_not_keep_it_alive(provider, ward):
    token = provider.cookies.get(sessions.COOKIE)
    ten_ago = wall_clock() - timedelta(minutes=10)
    with ward.engine.begin() as conn:
        conn.execute(update(sessions.sessions).values(last_seen_at=ten_ago))
    poll = {"HX-Request": "true", "HX-Trigger": "worklist-rows"}
    assert provider.get("/ward/rows", headers=poll).status_code == 200
    with ward.engine.connect() as conn:
        seen = conn.execute(select(sessions.sessions.c.last_seen_at)).scalar_one()
    assert seen == ten_ago  # an automatic refresh is not a person's activity
    with ward.engine.begin() as conn:
        conn.execute(
            update(sessions.sessions).values(last_seen_at=wall_clock() - timedelta(minutes=16))
        )
    provider.cookies.set(sessions.COOKIE, token)
    response = provider.get("/ward", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/signin")


# ---------------------------------------------------------------- CSRF


def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(provider, ward):
    bed = alerted_bed(ward)
    url = f"/patients/{bed.encounter_id}/alerts/{bed.sepsis.alert_id}/dismiss"
    del provider.headers[sessions.CSRF_HEADER]
    for token in (None, "forged", sessions.csrf_token("another session's cookie")):
        data = {"reason": "not_infected"} | ({"csrf_token": token} if token else {})
        response = provider.post(url, data=data, follow_redirects=False)
        assert response.status_code == 403, token
        assert "security token" in response.text
    with ward.engine.connect() as conn:
        assert get_alert(conn, bed.sepsis.alert_id).state.value == "open"


def test_the_csrf_token_in_the_form_field_is_accepted(provider, ward):
    bed = alerted_bed(ward)
    token = sessions.csrf_token(provider.cookies.get(sessions.COOKIE))
    del provider.headers[sessions.CSRF_HEADER]
    url = f"/patients/{bed.encounter_id}/alerts/{bed.sepsis.alert_id}/dismiss"
    response = provider.post(url, data={"reason": "not_infected", "csrf_token": token},
                             follow_redirects=False)  # fmt: skip
    assert response.status_code == 303


def test_every_form_on_the_patient_page_carries_the_csrf_token(provider, ward):
    page = provider.get(f"/patients/{alerted_bed(ward).encounter_id}").text
    token = sessions.csrf_token(provider.cookies.get(sessions.COOKIE))
    forms = page.count('<form method="post"')
    assert forms >= 5 and page.count(f'name="csrf_token" value="{token}"') == forms
    assert f'hx-headers=\'{{"X-CSRF-Token": "{token}"}}\'' in page


# ---------------------------------------------------------------- API tokens


def test_an_api_token_is_allowed_what_its_scopes_allow_and_nothing_else(issue_token):
    feed = issue_token("system/Patient.rs")
    assert feed.get("/api/patients").status_code == 200
    assert feed.get("/fhir/RiskAssessment").status_code == 403
    assert feed.get("/api/quarantine").status_code == 403  # for people only
    assert feed.get("/ward", follow_redirects=False).status_code == 403


def test_an_unknown_or_revoked_token_is_a_401(client):
    client.headers["Authorization"] = "Bearer wwt_not-a-token"
    response = client.get("/api/patients")
    assert response.status_code == 401 and "API token unknown" in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_user_token_is_bounded_by_its_owners_role(issue_token):
    engineer = issue_token("user/Patient.rs", user_id="eng.hopper")  # no patient.read
    assert engineer.get("/api/patients").status_code == 403


# ---------------------------------------------------------------- CDS Hooks client JWTs


SERVICE = "https://testserver/cds-services/wardwatch-sepsis"


def call_card(client, token: str, ward):
    bed = alerted_bed(ward)
    body = {"hook": "patient-view", "hookInstance": "8b2f1c1e-0000-4000-8000-000000000001",
            "context": {"userId": "Practitioner/1", "patientId": bed.patient_id}}  # fmt: skip
    client.auth = None
    return client.post(SERVICE, json=body, headers={"Authorization": f"Bearer {token}"})


def test_a_registered_ehrs_jwt_gets_the_card_and_the_read_is_audited(client, ward, ehr):
    response = call_card(client, ehr.jwt(SERVICE), ward)
    assert response.status_code == 200 and response.json()["cards"]
    with ward.engine.connect() as conn:
        last = list(audit.records(conn))[-1]
    assert (last.action, last.role) == ("cds.card", "system")
    assert last.actor == f"cds:{ehr.issuer}"


@pytest.mark.parametrize(
    "why", ["wrong-audience", "expired", "too-long", "unregistered", "unsigned", "hmac"]
)
def test_a_jwt_that_proves_nothing_is_refused(client, ward, ehr, why):
    now = int(wall_clock().timestamp())
    token = {
        "wrong-audience": lambda: ehr.jwt("https://testserver/cds-services/other"),
        "expired": lambda: ehr.jwt(SERVICE, iat=now - 900, exp=now - 600),
        "too-long": lambda: ehr.jwt(SERVICE, exp=now + 3600),
        "unregistered": lambda: ehr.jwt(SERVICE, iss="https://mallory.example"),
        "unsigned": lambda: jwt.encode({"iss": ehr.issuer, "aud": SERVICE}, None, "none"),
        "hmac": lambda: jwt.encode(
            {"iss": ehr.issuer, "aud": SERVICE, "iat": now, "exp": now + 60, "jti": "x"},
            "k" * 32,
            "HS256",
        ),
    }[why]()
    assert call_card(client, token, ward).status_code == 401


def test_a_replayed_jwt_is_refused(client, ward, ehr):
    token = ehr.jwt(SERVICE)
    assert call_card(client, token, ward).status_code == 200
    response = call_card(client, token, ward)
    assert response.status_code == 401 and "already used" in response.json()["detail"]


def test_a_cds_jwt_opens_nothing_but_the_cds_service(client, ehr):
    client.auth = None
    client.headers["Authorization"] = f"Bearer {ehr.jwt('https://testserver/api/patients')}"
    assert client.get("/api/patients").status_code == 403
    client.headers["Authorization"] = f"Bearer {ehr.jwt('https://testserver/model')}"
    assert client.get("/model", follow_redirects=False).status_code == 403  # pages for people
