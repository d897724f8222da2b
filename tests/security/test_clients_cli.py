"""`wardwatch tokens …` and `wardwatch cds-clients …` as an administrator runs them, on a
private SQLite home; then what the token or the registered EHR may do against the real app."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select

from wardwatch.alerts.policy import PolicyBook
from wardwatch.ingest.pipeline import Pipeline
from wardwatch.model.artifact import load_shipped_model
from wardwatch.security import audit
from wardwatch.security.audit_actions import cli_operator
from wardwatch.security.tokens import api_tokens
from wardwatch.settings import Settings
from wardwatch.store import init_db, open_engine
from wardwatch.web.app import create_app
from wardwatch.web.auth import wall_clock
from wardwatch.web.deps import Services

TOKEN = re.compile(r"^(wwt_\S+)$", re.MULTILINE)
TOKEN_ID = re.compile(r"\b(tok_[0-9a-f]{12})\b")
ENGINE_SCOPES = ["system/Bundle.c", "system/Observation.c"]  # an interface engine sends data
EHR_SCOPES = "system/RiskAssessment.rs system/Flag.rs"  # an EHR reads scores and alerts
EHR_ISSUER = "https://ehr.example.org/epic"
SERVICE = "https://testserver/cds-services/wardwatch-sepsis"
FHIR_JSON = {"content-type": "application/fhir+json"}
LOCK_WAIT_MS = 1000  # SQLite's busy timeout here: a lock held by mistake fails fast


@pytest.fixture(scope="module")
def model():
    return load_shipped_model()


@pytest.fixture
def db(run, tmp_path: Path) -> Iterator[Engine]:
    """The database the CLI writes to (`run` points WARDWATCH_HOME at tmp_path)."""
    engine = open_engine(Settings(home=tmp_path).resolved_database_url)
    event.listen(engine, "connect", _short_lock_wait)  # after open_engine's own: it wins
    init_db(engine)
    yield engine
    engine.dispose()


def _short_lock_wait(dbapi_connection, _record) -> None:
    dbapi_connection.execute(f"PRAGMA busy_timeout={LOCK_WAIT_MS}")


@pytest.fixture
def app(db: Engine, tmp_path: Path, model) -> Iterator[TestClient]:
    """The real app over HTTPS on the same database, nobody signed in."""
    pipeline = Pipeline.from_settings(db, Settings(home=tmp_path))
    with TestClient(create_app(Services(db, model, PolicyBook(), pipeline)),
                    base_url="https://testserver") as client:  # fmt: skip
        yield client


def issue(run, *args: str) -> tuple[str, str, str]:
    """Run `tokens issue`; (token, token id, output)."""
    result = run("tokens", "issue", *args)
    assert result.exit_code == 0, result.output
    [token] = TOKEN.findall(result.output)  # printed once, on a line of its own
    return token, TOKEN_ID.search(result.output).group(1), result.output


def trail(db: Engine) -> list[audit.AuditRecord]:
    with db.connect() as conn:
        return list(audit.records(conn))


def flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


# ---------------------------------------------------------------- tokens


def test_issue_prints_the_token_once_and_stores_only_its_hash(run, db):
    scopes = [arg for scope in ENGINE_SCOPES for arg in ("--scope", scope)]
    token, token_id, output = issue(run, "--client", "lab-interface", *scopes, "--days", "30")
    assert output.count(token) == 1
    assert f"issued {token_id} to lab-interface" in output
    assert "system/Bundle.c system/Observation.c" in output
    assert "shown this once" in output and "acts for: the client" in output
    with db.connect() as conn:
        row = conn.execute(select(api_tokens)).mappings().one()
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps({k: str(v) for k, v in row.items()})
    assert (row["created_by"], (row["expires_at"] - row["created_at"]).days) == (
        cli_operator(), 30)  # fmt: skip
    [record] = [r for r in trail(db) if r.action == "token.issue"]
    assert (record.actor, record.object) == (cli_operator(), f"token/{token_id}")
    assert token not in str(record)


def test_list_shows_every_token_without_the_token_and_revoke_ends_one(run, db):
    token, token_id, _ = issue(run, "--client", "epic-prod", "--scope", EHR_SCOPES)
    listed = run("tokens", "list")
    assert listed.exit_code == 0
    row = next(line for line in listed.output.splitlines() if token_id in line)
    assert "epic-prod" in row and "system/RiskAssessment.rs system/Flag.rs" in row
    assert "live" in row and "never" in row and token not in listed.output
    revoked = run("tokens", "revoke", token_id)
    assert revoked.exit_code == 0 and f"revoked {token_id}" in revoked.output
    row = next(line for line in run("tokens", "list").output.splitlines() if token_id in line)
    assert "revoked" in row
    again = run("tokens", "revoke", token_id)
    assert again.exit_code == 2
    assert f"no live token '{token_id}'" in flat(again.output)
    counts = [json.loads(r.detail)["count"] for r in trail(db) if r.action == "token.revoke"]
    assert counts == [1, 0]  # the second, a revocation that found nothing, is recorded too


def test_list_without_tokens_says_how_to_issue_one(run, db):
    result = run("tokens", "list")
    assert result.exit_code == 0 and "wardwatch tokens issue" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "system/Observation.write-ish"], "is not a scope like system/Observation.c"),
        (["--scope", "patient/Observation.r"], "patient/ scopes need a SMART launch context"),
        (["--scope", "system/Medication.r"], "unknown resource"),
        (["--scope", "user/Patient.r"], "user/ scopes need the user the token acts for"),
        (["--scope", "user/Patient.r", "--user", "nobody"], "no user 'nobody'"),
        (["--scope", "system/Flag.r", "--days", "400"], "should be less than or equal to 366"),
    ],
)
def test_issue_refuses_what_it_cannot_grant_and_stores_nothing(run, db, args, message):
    result = run("tokens", "issue", "--client", "x", *args)
    assert result.exit_code == 2
    assert message in flat(result.output)
    assert "wwt_" not in result.output
    with db.connect() as conn:
        assert conn.execute(select(api_tokens)).first() is None


def test_an_interface_engine_token_reads_nothing(run, db, app):
    token, _, _ = issue(run, "--client", "lab-interface", "--scope", " ".join(ENGINE_SCOPES))
    app.headers["Authorization"] = f"Bearer {token}"
    assert app.get("/fhir/RiskAssessment").status_code == 403
    assert app.get("/api/patients").status_code == 403
    assert app.get("/fhir/Flag").status_code == 403


def test_an_interface_engine_token_sends_a_bundle(run, db, app):
    token, _, _ = issue(run, "--client", "lab-interface", "--scope", " ".join(ENGINE_SCOPES))
    app.headers["Authorization"] = f"Bearer {token}"
    sent = app.post("/api/ingest/fhir", json=bundle("p-tok-1"), headers=FHIR_JSON)
    assert sent.status_code == 201, sent.text
    assert sent.json()["accepted"] == 1


def test_an_ehr_token_reads_scores_and_alerts_and_sends_nothing_until_revoked(run, db, app):
    token, token_id, _ = issue(run, "--client", "epic-prod", "--scope", EHR_SCOPES)
    app.headers["Authorization"] = f"Bearer {token}"
    assert app.get("/fhir/RiskAssessment").status_code == 200
    assert app.get("/fhir/Flag").status_code == 200
    assert app.get("/api/patients").status_code == 403  # no Patient scope
    refused = app.post("/api/ingest/fhir", json=bundle("p-tok-2"), headers=FHIR_JSON)
    assert refused.status_code == 403
    assert run("tokens", "revoke", token_id).exit_code == 0
    revoked = app.get("/fhir/RiskAssessment")
    assert revoked.status_code == 401 and "revoked" in revoked.text


def bundle(patient_id: str) -> dict:
    """A FHIR R4 collection: one patient and one heart rate (LOINC, UCUM)."""
    heart_rate = {
        "resourceType": "Observation", "id": f"{patient_id}-hr", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2024-03-01T08:00:00Z",
        "valueQuantity": {"value": 88, "unit": "/min", "system": "http://unitsofmeasure.org",
                          "code": "/min"},
    }  # fmt: skip
    patient = {"resourceType": "Patient", "id": patient_id}
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": patient}, {"resource": heart_rate}]}  # fmt: skip


# ---------------------------------------------------------------- CDS Hooks clients


@pytest.fixture(scope="module")
def ehr_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def write_jwks(folder: Path, key: ec.EllipticCurvePrivateKey, *, private: bool = False) -> Path:
    """The EHR's JWKS file, as its team would hand it over (public keys only, unless not)."""
    jwk_of = jwt.algorithms.ECAlgorithm.to_jwk
    jwk = jwk_of(key if private else key.public_key(), as_dict=True)
    path = folder / ("private-jwks.json" if private else "jwks.json")
    path.write_text(json.dumps({"keys": [{**jwk, "kid": "epic-1", "alg": "ES384"}]}))
    return path


def ehr_jwt(key: ec.EllipticCurvePrivateKey, audience: str = SERVICE) -> str:
    now = int(wall_clock().timestamp())
    claims = {"iss": EHR_ISSUER, "sub": "epic-client", "aud": audience, "iat": now,
              "exp": now + 300, "jti": uuid.uuid4().hex}  # fmt: skip
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": "epic-1"})


def call_card(app: TestClient, token: str):
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "nobody-here"}}  # fmt: skip
    return app.post(SERVICE, json=body, headers={"Authorization": f"Bearer {token}"})


def test_a_registered_ehr_is_listed_and_its_jwt_calls_the_service_until_disabled(
    run, db, app, ehr_key, tmp_path
):
    added = run("cds-clients", "add", EHR_ISSUER, "--name", "Epic production",
                "--jwks", str(write_jwks(tmp_path, ehr_key)))  # fmt: skip
    assert added.exit_code == 0, added.output
    assert f"registered {EHR_ISSUER} (Epic production), keys: epic-1" in flat(added.output)
    assert "/cds-services/wardwatch-sepsis" in added.output
    listed = run("cds-clients", "list").output
    row = next(line for line in listed.splitlines() if EHR_ISSUER in line)
    assert "Epic production" in row and "epic-1" in row and "enabled" in row
    assert cli_operator() in row

    assert call_card(app, ehr_jwt(ehr_key)).status_code == 200
    disabled = run("cds-clients", "disable", EHR_ISSUER)
    assert disabled.exit_code == 0 and f"disabled {EHR_ISSUER}" in disabled.output
    refused = call_card(app, ehr_jwt(ehr_key))
    assert refused.status_code == 401 and "not registered" in refused.text
    listed = run("cds-clients", "list").output
    assert "disabled" in next(line for line in listed.splitlines() if EHR_ISSUER in line)
    assert "already disabled" in run("cds-clients", "disable", EHR_ISSUER).output
    actions = [(r.action, r.object, r.actor) for r in trail(db) if r.action.startswith("cds_")]
    where = f"cds_client/{EHR_ISSUER}"
    assert actions == [("cds_client.add", where, cli_operator()),
                       ("cds_client.disable", where, cli_operator()),
                       ("cds_client.disable", where, cli_operator())]  # fmt: skip


def test_list_without_cds_clients_says_how_to_add_one(run, db):
    result = run("cds-clients", "list")
    assert result.exit_code == 0 and "wardwatch cds-clients add" in result.output


def test_the_same_issuer_twice_is_refused(run, db, ehr_key, tmp_path):
    jwks = str(write_jwks(tmp_path, ehr_key))
    assert run("cds-clients", "add", EHR_ISSUER, "--name", "Epic", "--jwks", jwks).exit_code == 0
    again = run("cds-clients", "add", EHR_ISSUER, "--name", "Epic 2", "--jwks", jwks)
    assert again.exit_code == 2 and "is already registered" in flat(again.output)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "holds private keys"),
        ("not json", "is not JSON"),
        ('{"kty": "EC"}', "is not a JSON Web Key Set"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "symmetric (oct) keys are not accepted"),
    ],
)
def test_a_jwks_that_proves_nothing_is_refused(run, db, ehr_key, tmp_path, content, message):
    if content is None:
        path = write_jwks(tmp_path, ehr_key, private=True)
    else:
        path = tmp_path / "bad.json"
        path.write_text(content)
    result = run("cds-clients", "add", EHR_ISSUER, "--name", "Epic", "--jwks", str(path))
    assert result.exit_code == 2
    assert message in flat(result.output)
    assert EHR_ISSUER not in run("cds-clients", "list").output


def test_a_missing_jwks_file_or_unknown_issuer_is_an_error_with_what_to_do(run, db, tmp_path):
    missing = run("cds-clients", "add", EHR_ISSUER, "--name", "Epic",
                  "--jwks", str(tmp_path / "nowhere.json"))  # fmt: skip
    assert missing.exit_code == 2 and "cannot read" in flat(missing.output)
    unknown = run("cds-clients", "disable", "https://nobody.example")
    assert unknown.exit_code == 2
    assert "no CDS client 'https://nobody.example' is registered" in flat(unknown.output)
    assert "what to do: `wardwatch cds-clients list` shows the issuers" in flat(unknown.output)
