"""A replayed sample ward behind the real app, shared by the web tests.

The ward (24 sample patients, the first 48 hours of their replay through the live pipeline)
is built once per test session in an SQLite file; each test gets its own copy of the file,
so tests may confirm, dismiss and ingest without seeing each other's changes.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from wardwatch.alerts.policy import PolicyBook
from wardwatch.demo import sample_patients
from wardwatch.ingest.pipeline import Pipeline
from wardwatch.model.artifact import load_shipped_model
from wardwatch.replay import Replay, load_replay_cohort, plan_replay
from wardwatch.security import cds_clients, mfa, sessions, tokens, users
from wardwatch.settings import Settings
from wardwatch.store import init_db, open_engine
from wardwatch.web.app import create_app
from wardwatch.web.auth import wall_clock
from wardwatch.web.deps import Services

WARD_PATIENTS = 24
WARD_HOURS = 48
PASSWORD = "correct horse battery staple 24"  # the test accounts' password (policy-strong)
# user id → role: one person per role, created once in the ward template (see `people`).
PEOPLE = {
    "dr.snow": "provider",
    "nurse.nightingale": "nurse",
    "admin.root": "admin",
    "auditor.ada": "auditor",
    "eng.hopper": "integration_engineer",
    "ds.fisher": "data_scientist",
}


@pytest.fixture(scope="session")
def model():
    return load_shipped_model()


@pytest.fixture(scope="session")
def ward_template(tmp_path_factory: pytest.TempPathFactory, model) -> Path:
    home = tmp_path_factory.mktemp("ward")
    settings = Settings(home=home)
    engine = open_engine(settings.resolved_database_url)
    init_db(engine)
    plan = plan_replay(load_replay_cohort(sample_patients(), WARD_PATIENTS), stagger_hours=1.0)
    Replay(Pipeline.from_settings(engine, settings), model, plan).run(last=WARD_HOURS)
    with engine.begin() as conn:
        for user_id, role in PEOPLE.items():
            users.add_user(conn, user_id, role, PASSWORD, at=wall_clock(), by="tests")
            secret = mfa.enrol(conn, user_id, at=wall_clock(), by="tests").secret
            (home / f"{user_id}.totp").write_text(secret)
        cds_clients.register_client(conn, EHR_ISSUER, "test EHR", ehr_jwks(), at=wall_clock(),
                                    by="tests")  # fmt: skip
    engine.dispose()
    return home / "wardwatch.db"


EHR_ISSUER = "https://ehr.example.org"
EHR_KEY = ec.generate_private_key(ec.SECP384R1())  # the test EHR's signing key (ES384)
EHR_KID = "ehr-test-1"


def ehr_jwks() -> dict:
    public = jwt.algorithms.ECAlgorithm.to_jwk(EHR_KEY.public_key(), as_dict=True)
    return {"keys": [{**public, "kid": EHR_KID, "use": "sig", "alg": "ES384"}]}


def ehr_jwt(audience: str, **claims: object) -> str:
    """A CDS Hooks client JWT as the spec describes it, signed by the test EHR."""
    now = int(wall_clock().timestamp())
    body = {"iss": EHR_ISSUER, "sub": "ehr-client", "aud": audience, "iat": now,
            "exp": now + 300, "jti": uuid.uuid4().hex, **claims}  # fmt: skip
    return jwt.encode(body, EHR_KEY, algorithm="ES384", headers={"kid": EHR_KID})


class Ehr:
    """The registered test EHR, as the `ehr` fixture: its issuer and a JWT minter."""

    issuer = EHR_ISSUER

    @staticmethod
    def jwt(audience: str, **claims: object) -> str:
        return ehr_jwt(audience, **claims)


@pytest.fixture
def ehr() -> Ehr:
    return Ehr()


class EhrJwt(httpx.Auth):
    """Signs every CDS service call the way an EHR does, unless a person is signed in."""

    def auth_flow(self, request: httpx.Request):  # type: ignore[override]
        signed_in = sessions.COOKIE in request.headers.get("cookie", "")
        if request.url.path.startswith("/cds-services/") and not signed_in:
            audience = str(request.url.copy_with(query=None, fragment=None))
            request.headers["Authorization"] = f"Bearer {ehr_jwt(audience)}"
        yield request


@pytest.fixture(scope="session")
def totp_secrets(ward_template: Path) -> dict[str, str]:
    """Each test account's TOTP secret (to compute a valid code at sign-in)."""
    return {uid: (ward_template.parent / f"{uid}.totp").read_text() for uid in PEOPLE}


@pytest.fixture
def ward(ward_template: Path, tmp_path: Path, model) -> Iterator[Services]:
    """A private copy of the replayed ward, with the ward clock at its 48th hour."""
    shutil.copy(ward_template, tmp_path / "wardwatch.db")
    settings = Settings(home=tmp_path)
    engine = open_engine(settings.resolved_database_url)
    yield Services(engine, model, PolicyBook(), Pipeline.from_settings(engine, settings))
    engine.dispose()


@pytest.fixture
def client(ward: Services) -> Iterator[TestClient]:
    """The app over HTTPS (its session cookie is `Secure`), nobody signed in; calls to the
    CDS service are signed as the registered test EHR signs them."""
    with TestClient(create_app(ward), base_url="https://testserver") as test_client:
        test_client.auth = EhrJwt()
        yield test_client


def sign_in_as(client: TestClient, ward: Services, user_id: str) -> TestClient:
    """A real session for `user_id` (as after password + TOTP), its cookie and CSRF header
    set on `client`: every form and htmx request the client sends carries the token."""
    with ward.engine.begin() as conn:
        new = sessions.create_session(conn, user_id, at=wall_clock(), source="testclient")
    client.cookies.set(sessions.COOKIE, new.token)
    client.headers[sessions.CSRF_HEADER] = new.csrf_token
    return client


@pytest.fixture
def sign_in(client: TestClient, ward: Services):
    """`sign_in("nurse.nightingale")` → the client, signed in as that person."""
    return lambda user_id: sign_in_as(client, ward, user_id)


@pytest.fixture
def provider(client: TestClient, ward: Services) -> TestClient:
    return sign_in_as(client, ward, "dr.snow")


@pytest.fixture
def nurse(client: TestClient, ward: Services) -> TestClient:
    return sign_in_as(client, ward, "nurse.nightingale")


@pytest.fixture
def engineer(client: TestClient, ward: Services) -> TestClient:
    """The integration engineer: sends data in, reads the quarantine, sees no patients."""
    return sign_in_as(client, ward, "eng.hopper")


@pytest.fixture
def issue_token(client: TestClient, ward: Services):
    """`issue_token("system/Bundle.c", ...)` → the client, sending that API token."""

    def issue(*scopes: str, user_id: str | None = None) -> TestClient:
        with ward.engine.begin() as conn:
            issued = tokens.issue_token(conn, client="test-feed", scopes=scopes,
                                        at=wall_clock(), by="tests", user_id=user_id)  # fmt: skip
        client.headers["Authorization"] = f"Bearer {issued.token}"
        return client

    return issue


@pytest.fixture
def admin(client: TestClient, ward: Services) -> TestClient:
    return sign_in_as(client, ward, "admin.root")
