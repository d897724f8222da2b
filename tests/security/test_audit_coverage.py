"""Every security action and every stored score leaves its record in the audit chain (rule 5),
in the transaction that did it, naming who, what, which patient, from where and the outcome,
and never a password, TOTP secret, token or recovery code. SQLite and PostgreSQL."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine, insert, select
from tests.security.accounts import HASHER, PASSWORD, STEP, T0, code, make_user
from tests.security.samples import ingest_samples
from typer.testing import CliRunner

import wardwatch
from wardwatch.alerts import workflow
from wardwatch.ingest.pipeline import Pipeline
from wardwatch.model.artifact import load_shipped_model
from wardwatch.scoring import score_stays
from wardwatch.security import audit, mfa, passwords, sessions, tokens, users
from wardwatch.security import break_glass as bg
from wardwatch.security.audit import AuditRecord, records
from wardwatch.security.audit_actions import ACTIONS, cli_operator
from wardwatch.security.audit_verify import verify
from wardwatch.security.consent import set_consent
from wardwatch.security.deidentify import SALT_ENV, export_deidentified
from wardwatch.security.export_cli import consent_app, export_command
from wardwatch.security.login import UNKNOWN_ACTOR, authenticate
from wardwatch.security.users_cli import users_app
from wardwatch.settings import Settings
from wardwatch.store import engine_from_settings, init_db
from wardwatch.store.schema import encounters, patients, scores

SRC = Path(wardwatch.__file__).parent
ADMIN = workflow.Actor("admin-al", "admin")
AUDITOR = workflow.Actor("auditor-bo", "auditor")
IP = "10.20.30.40"
NEW_PASSWORD = "another horse battery staple"
SALT = b"0123456789abcdef0123456789abcdef"


# ---------------------------------------------------------------- helpers


def trail(engine: Engine, since_seq: int = 0) -> list[AuditRecord]:
    """The records after `since_seq`, each checked to use the vocabulary; the chain intact."""
    with engine.connect() as conn:
        found = [r for r in records(conn) if r.seq > since_seq]
        checked = verify(conn)
    assert checked.intact, [p.message for p in checked.problems]
    assert {r.action for r in found} <= set(ACTIONS)
    return found


def head(engine: Engine) -> int:
    with engine.connect() as conn:
        return max((r.seq for r in records(conn)), default=0)


def text_of(record: AuditRecord) -> str:
    """Everything a record holds, as one text to search for secrets."""
    return "|".join(str(value) for value in record)


def assert_no_secret(found: list[AuditRecord], *secrets: str) -> None:
    for record in found:
        for secret in secrets:
            assert secret not in text_of(record), (record.action, secret)


def assert_record(record: AuditRecord, action: str, actor: str, what: str, **fields: object):
    assert (record.action, record.actor, record.object) == (action, actor, what)
    assert record.outcome == fields.pop("outcome", "success")
    for name, value in fields.items():
        assert getattr(record, name) == value, name


@pytest.fixture
def admin(engine: Engine) -> workflow.Actor:
    with engine.begin() as conn:
        make_user(conn, ADMIN.user_id, ADMIN.role, enrol=False)
        make_user(conn, AUDITOR.user_id, AUDITOR.role, enrol=False)
    return ADMIN


def _stay(engine: Engine, patient_id: str = "p-77", encounter_id: str = "e-77") -> None:
    with engine.begin() as conn:
        conn.execute(insert(patients).values(patient_id=patient_id, created_at=T0))
        conn.execute(insert(encounters).values(encounter_id=encounter_id, patient_id=patient_id,
                                               admitted_at=T0, created_at=T0))  # fmt: skip


# ---------------------------------------------------------------- users and permissions


def test_adding_a_user_is_audited_without_the_password(engine, admin):
    start = head(engine)
    with engine.begin() as conn:
        users.add_user(conn, "n-bo", "nurse", PASSWORD, at=T0, by=admin.user_id, source=IP,
                       hasher=HASHER)  # fmt: skip
    (added,) = trail(engine, start)
    assert_record(added, "user.create", "admin-al", "user/n-bo", role="admin", source=IP,
                  patient_id=None)  # fmt: skip
    assert added.details == {"role": "nurse"}
    assert_no_secret([added], PASSWORD)


def test_password_role_disable_and_enable_are_audited(engine, admin):
    with engine.begin() as conn:
        make_user(conn, "n-bo", "nurse", enrol=False)
    start = head(engine)
    with engine.begin() as conn:
        users.set_password(conn, "n-bo", NEW_PASSWORD, at=T0, by="admin-al", source=IP,
                           hasher=HASHER)  # fmt: skip
        users.change_role(conn, "n-bo", "physician", at=T0, by="admin-al", source=IP)
        users.disable_user(conn, "n-bo", at=T0, by="admin-al", source=IP)
        users.enable_user(conn, "n-bo", at=T0, by="admin-al", source=IP)
    found = trail(engine, start)
    assert [r.action for r in found] == ["user.password", "permission.change", "user.disable",
                                         "user.enable"]  # fmt: skip
    for record in found:
        assert_record(record, record.action, "admin-al", "user/n-bo", role="admin", source=IP)
    assert found[1].details == {"old_role": "nurse", "new_role": "provider"}
    assert_no_secret(found, NEW_PASSWORD, PASSWORD)


def test_a_console_operator_is_recorded_as_such(engine):
    with engine.begin() as conn:
        users.add_user(conn, "n-cy", "nurse", PASSWORD, at=T0, by="cli:root", hasher=HASHER)
    (added,) = trail(engine)
    assert_record(added, "user.create", "cli:root", "user/n-cy", role="operator", source="cli")


def test_a_refused_change_leaves_no_record(engine, admin):
    start = head(engine)
    with pytest.raises(users.UserNotFound), engine.begin() as conn:
        users.disable_user(conn, "nobody", at=T0, by="admin-al")
    assert trail(engine, start) == []


# ---------------------------------------------------------------- sessions, tokens, MFA


def test_sign_out_everywhere_is_audited_with_the_count(engine, admin):
    with engine.begin() as conn:
        make_user(conn, "n-bo", "nurse", enrol=False)
        made = [sessions.create_session(conn, "n-bo", at=T0, source=IP) for _ in range(2)]
    start = head(engine)
    with engine.begin() as conn:
        assert sessions.revoke_all(conn, "n-bo", at=T0, by="admin-al", source=IP) == 2
        sessions.revoke_all(conn, "n-bo", at=T0, source=IP)  # the user, from their own page
    by_admin, by_self = trail(engine, start)
    assert_record(by_admin, "session.revoke", "admin-al", "user/n-bo", role="admin", source=IP)
    assert by_admin.details == {"count": 2, "reason": "signed_out_everywhere"}
    assert (by_self.actor, by_self.role, by_self.details["count"]) == ("n-bo", "nurse", 0)
    assert_no_secret([by_admin, by_self], *(s.token for s in made), *(s.csrf_token for s in made))


def test_api_tokens_issued_and_revoked_are_audited_never_the_token(engine, admin):
    with engine.begin() as conn:
        make_user(conn, "n-bo", "nurse", enrol=False)
    start = head(engine)
    with engine.begin() as conn:
        issued = tokens.issue_token(conn, client="epic-prod", scopes="user/Patient.rs",
                                    at=T0, by="admin-al", user_id="n-bo", source=IP)  # fmt: skip
        tokens.revoke_token(conn, issued.record.token_id, at=T0, by="admin-al", source=IP)
        tokens.revoke_tokens_of(conn, "n-bo", at=T0, by="admin-al", source=IP)
    made, revoked, of_user = trail(engine, start)
    token_id = issued.record.token_id
    assert_record(made, "token.issue", "admin-al", f"token/{token_id}", role="admin", source=IP)
    assert made.details["client"] == "epic-prod" and made.details["user_id"] == "n-bo"
    assert made.details["scopes"] == "user/Patient.rs"
    assert_record(revoked, "token.revoke", "admin-al", f"token/{token_id}", source=IP)
    assert revoked.details == {"count": 1}
    assert_record(of_user, "token.revoke", "admin-al", "user/n-bo", source=IP)
    assert of_user.details == {"count": 0}  # already revoked: the attempt is still on record
    assert_no_secret([made, revoked, of_user], issued.token, issued.token.removeprefix("wwt_"))


def test_an_mfa_reset_is_audited_without_secret_or_codes(engine, admin):
    with engine.begin() as conn:
        _, old = make_user(conn, "n-bo", "nurse")
    start = head(engine)
    with engine.begin() as conn:
        new = mfa.reset_mfa(conn, "n-bo", at=T0, by="admin-al", source=IP)
    (reset,) = trail(engine, start)
    assert_record(reset, "mfa.reset", "admin-al", "user/n-bo", role="admin", source=IP)
    assert reset.detail is None
    assert_no_secret([reset], new.secret, old.secret, *new.recovery_codes, *old.recovery_codes,
                     new.uri)  # fmt: skip


def test_an_enrolment_is_audited_by_whom_for_whom_without_secret_or_codes(engine, admin):
    with engine.begin() as conn:
        make_user(conn, "n-bo", "nurse", enrol=False)
    start = head(engine)
    with engine.begin() as conn:
        first = mfa.enrol(conn, "n-bo", at=T0, by="admin-al", source=IP)
        again = mfa.enrol(conn, "n-bo", at=T0, by="admin-al", source=IP)
    enrolled, replaced = trail(engine, start)
    for record in (enrolled, replaced):
        assert_record(record, "mfa.enrol", "admin-al", "user/n-bo", role="admin", source=IP,
                      patient_id=None)  # fmt: skip
    assert (enrolled.details, replaced.details) == ({"replaced": False}, {"replaced": True})
    assert_no_secret([enrolled, replaced], first.secret, again.secret, first.uri, again.uri,
                     *first.recovery_codes, *again.recovery_codes)  # fmt: skip


def _sign_in(engine: Engine, typed_code: str, at: datetime) -> bool:
    with engine.begin() as conn:
        return authenticate(conn, "n-ada", PASSWORD, typed_code, at=at, source=IP,
                            hasher=HASHER).ok  # fmt: skip


def test_the_first_code_of_a_new_secret_confirms_its_enrolment_and_refusals_before_it(
    engine, admin
):
    with engine.begin() as conn:
        _, enrolment = make_user(conn, "n-ada", "nurse")
    start = head(engine)
    wrong = code(enrolment.secret, T0 - 5 * STEP)
    assert not _sign_in(engine, wrong, T0)  # the phone's clock is off, say
    assert _sign_in(engine, code(enrolment.secret, T0), T0)
    assert _sign_in(engine, code(enrolment.secret, T0 + STEP), T0 + STEP)  # confirmed once
    found = trail(engine, start)
    expected = ["mfa.confirm_failure", "login.failure", "mfa.confirm", "login.success"]
    assert [r.action for r in found] == [*expected, "login.success"]
    enrolled_at = {"enrolled_at": T0.isoformat()}
    assert_record(found[0], "mfa.confirm_failure", "n-ada", "user/n-ada", outcome="denied",
                  role="nurse", source=IP, details=enrolled_at)  # fmt: skip
    assert_record(found[2], "mfa.confirm", "n-ada", "user/n-ada", role="nurse", source=IP,
                  details=enrolled_at)  # fmt: skip
    assert_no_secret(found, enrolment.secret, wrong, code(enrolment.secret, T0), PASSWORD)


def test_a_reset_secret_is_confirmed_anew_and_a_recovery_code_confirms_nothing(engine, admin):
    with engine.begin() as conn:
        _, enrolment = make_user(conn, "n-ada", "nurse")
    assert _sign_in(engine, code(enrolment.secret, T0), T0)
    later = T0 + timedelta(days=1)
    with engine.begin() as conn:
        new = mfa.reset_mfa(conn, "n-ada", at=later, by="admin-al", source=IP)
    start = head(engine)
    assert _sign_in(engine, new.recovery_codes[0], later)
    assert _sign_in(engine, code(new.secret, later), later)
    found = trail(engine, start)
    assert [r.action for r in found] == ["login.success", "mfa.confirm", "login.success"]
    assert found[1].details == {"enrolled_at": later.isoformat()}


# ---------------------------------------------------------------- signing in


def test_a_sign_in_is_audited_with_its_factor_and_no_secret(engine):
    with engine.begin() as conn:
        _, enrolment = make_user(conn, "n-ada", "nurse")
    start = head(engine)
    typed_code = code(enrolment.secret, T0)
    with engine.begin() as conn:
        result = authenticate(conn, "n-ada", PASSWORD, typed_code, at=T0, source=IP,
                              hasher=HASHER)  # fmt: skip
    confirmed, signed_in = trail(engine, start)  # the first code of the secret confirms it
    assert (confirmed.action, confirmed.actor) == ("mfa.confirm", "n-ada")
    session_id = result.session.session.session_id
    assert_record(signed_in, "login.success", "n-ada", f"session/{session_id[:12]}",
                  role="nurse", source=IP)  # fmt: skip
    assert signed_in.details == {"factor": "totp", "recovery_codes_left": 10}
    assert_no_secret([signed_in], PASSWORD, enrolment.secret, result.session.token, session_id)
    assert typed_code not in signed_in.object + (signed_in.detail or "")


def test_a_recovery_code_sign_in_says_so(engine):
    with engine.begin() as conn:
        _, enrolment = make_user(conn, "n-ada", "nurse")
    start = head(engine)
    recovery = enrolment.recovery_codes[3]
    with engine.begin() as conn:
        assert authenticate(conn, "n-ada", PASSWORD, recovery, at=T0, source=IP,
                            hasher=HASHER).ok  # fmt: skip
    (signed_in,) = trail(engine, start)
    assert signed_in.details == {"factor": "recovery_code", "recovery_codes_left": 9}
    assert_no_secret([signed_in], recovery, *enrolment.recovery_codes, PASSWORD)


def test_refusals_and_the_lock_are_committed_with_the_failure_count(engine):
    """A refusal is returned, not raised: the caller's transaction commits the failure count
    and the audit record together, and both survive into the next transaction."""
    with engine.begin() as conn:
        _, enrolment = make_user(conn, "n-ada", "nurse")
    start = head(engine)
    for _ in range(5):
        with engine.begin() as conn:
            assert not authenticate(conn, "n-ada", "wrong password 1", "000000", at=T0,
                                    source=IP, hasher=HASHER).ok  # fmt: skip
    with engine.begin() as conn:  # the right credentials, while locked
        locked = authenticate(conn, "n-ada", PASSWORD, code(enrolment.secret, T0), at=T0,
                              source=IP, hasher=HASHER)  # fmt: skip
    found = trail(engine, start)
    with engine.connect() as conn:
        assert users.require_user(conn, "n-ada").failed_logins == 5
    assert [r.action for r in found] == ["login.failure"] * 4 + ["account.lock",
                                         "login.failure", "login.failure"]  # fmt: skip
    for record in found:
        assert_record(record, record.action, "n-ada", "user/n-ada", outcome="denied",
                      role="nurse", source=IP)  # fmt: skip
    assert found[0].details == {"outcome": "bad_password"}
    assert found[4].details == {"failures": 5, "until": (T0 + timedelta(minutes=1)).isoformat()}
    assert found[-1].details == {"outcome": "locked"} and not locked.ok
    assert_no_secret(found, "wrong password 1", PASSWORD, enrolment.secret)


def test_an_unknown_id_is_recorded_by_a_digest_not_its_text(engine):
    typed = "correct-horse-battery-in-the-id-box"
    with engine.begin() as conn:
        authenticate(conn, typed, "whatever was typed", "123456", at=T0, source=IP,
                     hasher=HASHER)  # fmt: skip
        authenticate(conn, typed, "again", "123456", at=T0, source=IP, hasher=HASHER)
    first, second = trail(engine)
    assert_record(first, "login.failure", UNKNOWN_ACTOR, first.object, outcome="denied",
                  role="none", source=IP)  # fmt: skip
    assert re.fullmatch(r"login/[0-9a-f]{12}", first.object) and second.object == first.object
    assert first.details == {"outcome": "unknown_user"}
    assert_no_secret([first, second], typed, "whatever was typed")


# ---------------------------------------------------------------- patients


def test_breaking_the_glass_and_its_review_name_the_patient(engine, admin):
    _stay(engine)
    reason = "restoring the feed during a code blue on 4 West"
    start = head(engine)
    with engine.begin() as conn:
        grant = bg.break_glass(conn, admin, "e-77", reason, T0, source=IP)
        bg.review(conn, grant.grant_id, AUDITOR, "appropriate: code blue", T0, source="10.0.0.2")
    opened, reviewed = trail(engine, start)
    assert_record(opened, "break_glass", "admin-al", f"break_glass/{grant.grant_id}",
                  role="admin", patient_id="p-77", encounter_id="e-77", source=IP)  # fmt: skip
    assert opened.details == {"reason": reason, "expires_at": grant.expires_at.isoformat()}
    assert_record(reviewed, "break_glass.review", "auditor-bo", f"break_glass/{grant.grant_id}",
                  role="auditor", patient_id="p-77", encounter_id="e-77",
                  source="10.0.0.2")  # fmt: skip
    assert reviewed.details == {"note": "appropriate: code blue", "grant_of": "admin-al"}


@pytest.mark.parametrize(
    ("who", "reason", "error", "why"),
    [(AUDITOR, "curious about the patient", workflow.NotPermitted, "is not allowed"),
     (ADMIN, "because", ValueError, "at least 10 characters"),
     (ADMIN, "   ", ValueError, "at least 10 characters")],
    ids=["role-not-allowed", "reason-too-short", "no-reason"],
)  # fmt: skip
def test_a_refused_break_the_glass_leaves_no_grant_but_its_record(
    engine, admin, who, reason, error, why
):
    """The refusal is raised after its record is written: a caller that catches it inside
    its transaction commits the record (as the web route does)."""
    _stay(engine)
    start = head(engine)
    with engine.begin() as conn, pytest.raises(error):  # caught inside: the record commits
        bg.break_glass(conn, who, "e-77", reason, T0, source=IP)
    (refused,) = trail(engine, start)
    assert_record(refused, "break_glass.refused", who.user_id, "encounter/e-77",
                  outcome="denied", role=who.role, patient_id="p-77", encounter_id="e-77",
                  source=IP)  # fmt: skip
    assert why in refused.details["refused"]
    assert refused.details.get("reason") == (reason.strip() or None)
    with engine.connect() as conn:
        assert bg.pending_break_glass_reviews(conn) == []


def test_a_refusal_rolled_back_by_its_caller_leaves_nothing(engine, admin):
    """Why the caller must commit: raising out of the transaction erases the record too."""
    start = head(engine)
    with pytest.raises(workflow.NotPermitted), engine.begin() as conn:
        bg.break_glass(conn, AUDITOR, "e-77", "curious about the patient", T0)
    assert trail(engine, start) == []


def test_a_consent_decision_is_audited_with_before_and_after(engine):
    _stay(engine)
    at = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    with engine.begin() as conn:
        decision = set_consent(conn, "p-77", scoring=False, training=None, by="alice",
                               role="nurse", reason="patient asked at the bedside", at=at,
                               source=IP)  # fmt: skip
    (recorded,) = trail(engine)
    assert_record(recorded, "consent.change", "alice", f"consent/{decision.id}", role="nurse",
                  patient_id="p-77", source=IP)  # fmt: skip
    assert recorded.details == {
        "before": "AI scoring allowed, use in training allowed",
        "after": "AI scoring opted out, use in training allowed",
        "reason": "patient asked at the bedside", "decided_at": at.isoformat(),
    }  # fmt: skip


@pytest.fixture
def sample_ids(pipeline, tmp_path) -> list[str]:
    return ingest_samples(pipeline, tmp_path / "psv")


def _identifiers(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(encounters.c.patient_id, encounters.c.encounter_id)).all()
    return [value for row in rows for value in row]


def test_a_deidentified_export_is_audited_with_counts_never_identifiers(
    engine, sample_ids, tmp_path
):
    start = head(engine)
    with engine.begin() as conn:
        done = export_deidentified(conn, tmp_path / "out.parquet", salt=SALT, fmt="parquet",
                                   by="ds-cy", source=IP)  # fmt: skip
    (exported,) = trail(engine, start)
    assert_record(exported, "export", "ds-cy", "file:out.parquet", role="operator", source=IP,
                  patient_id=None)  # fmt: skip
    assert exported.details == {"format": "parquet", "stays": done.stays, "rows": done.rows,
                                "patients": done.patients, "excluded_stays": 0,
                                "since": None}  # fmt: skip
    assert done.stays == len(sample_ids)
    assert_no_secret([exported], *_identifiers(engine), SALT.decode())


def test_a_failed_export_leaves_no_record(engine, sample_ids, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    start = head(engine)
    with pytest.raises(FileExistsError), engine.begin() as conn:
        export_deidentified(conn, tmp_path / "taken", salt=SALT, by="ds-cy")
    assert trail(engine, start) == []


def test_every_stored_score_is_audited_once_without_clinical_values(engine, sample_ids):
    model = load_shipped_model()
    with engine.connect() as conn:
        stays = list(conn.execute(select(encounters.c.encounter_id)).scalars())
    start = head(engine)
    with engine.begin() as conn:
        scored = score_stays(conn, model, stays)
        stored = conn.execute(select(scores.c.id, scores.c.patient_id, scores.c.encounter_id,
                                     scores.c.risk)).all()  # fmt: skip
    found = trail(engine, start)
    assert len(found) == len(scored) == len(stored) == len(stays)
    by_object = {r.object: r for r in found}
    for score_id, patient_id, encounter_id, risk in stored:
        record = by_object[f"score/{score_id}"]
        assert_record(record, "score.create", audit.SYSTEM, f"score/{score_id}", role="system",
                      patient_id=patient_id, encounter_id=encounter_id,
                      source=audit.SYSTEM)  # fmt: skip
        assert record.details == {"model_version": model.version, "role": "active"}
        assert str(round(risk, 3)) not in (record.detail or "")


# ---------------------------------------------------------------- the commands


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("WARDWATCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WARDWATCH_DATABASE_URL", raising=False)
    monkeypatch.setenv(SALT_ENV, SALT.decode())
    monkeypatch.setattr(passwords, "HASHER", HASHER)  # the CLI hashes with the default
    return tmp_path / "home"


@pytest.fixture
def home_db(home) -> Engine:
    engine = engine_from_settings(Settings(home=home))
    init_db(engine)
    yield engine
    engine.dispose()


def test_the_users_command_records_the_console_operator(home_db):
    runner = CliRunner()
    added = runner.invoke(users_app, ["add", "n-bo", "--role", "nurse", "--password-stdin"],
                          input=PASSWORD + "\n")  # fmt: skip
    assert added.exit_code == 0, added.output
    with home_db.connect() as conn:
        enrolled = [r for r in records(conn) if r.action == "mfa.enrol"]
    assert_record(enrolled[-1], "mfa.enrol", cli_operator(), "user/n-bo", role="operator",
                  source="cli")  # fmt: skip
    start = head(home_db)
    disabled = runner.invoke(users_app, ["disable", "n-bo"])
    assert disabled.exit_code == 0, disabled.output
    found = trail(home_db, start)
    assert [r.action for r in found] == ["user.disable", "session.revoke", "token.revoke"]
    for record in found:
        assert_record(record, record.action, cli_operator(), "user/n-bo", role="operator",
                      source="cli")  # fmt: skip
    assert found[1].details == {"count": 0, "reason": "user_disabled"}


def test_the_export_command_commits_its_record(home, home_db, tmp_path):
    ids = ingest_samples(Pipeline.from_settings(home_db, Settings(home=home)), tmp_path / "psv")
    start = head(home_db)
    app = typer.Typer()  # registered as cli.py registers it
    app.command("export")(export_command)
    app.add_typer(consent_app, name="consent")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "out"), "--deidentify"])
    assert result.exit_code == 0, result.output
    (exported,) = trail(home_db, start)
    assert_record(exported, "export", cli_operator(), "file:out", role="operator", source="cli")
    assert exported.details["format"] == "psv" and exported.details["stays"] == len(ids)


# ---------------------------------------------------------------- the vocabulary


def test_no_audit_marker_is_left_in_the_source():
    left = [f"{path.relative_to(SRC)}:{n}" for path in SRC.rglob("*.py")
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if "# audit:" in line]  # fmt: skip
    assert left == []


_AUDIT_CALLS = {"AuditEvent", "_audit", "_event"}


def _written_actions() -> set[str]:
    """The action names the source passes to AuditEvent and to its local helpers."""
    found = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name not in _AUDIT_CALLS:
                continue
            candidates = [*node.args, *(k.value for k in node.keywords if k.arg == "action")]
            strings = [c.value for c in candidates
                       if isinstance(c, ast.Constant) and isinstance(c.value, str)]  # fmt: skip
            found.update(s for s in strings[:1] if re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", s))
    return found


def test_every_action_written_in_the_source_is_in_the_vocabulary():
    written = _written_actions()
    assert len(written) >= 20  # the scan sees the calls (a broken scan would find nothing)
    assert written <= set(ACTIONS), written - set(ACTIONS)
    assert set(workflow._AUDITED.values()) <= set(ACTIONS)


def test_the_vocabulary_holds_the_names_the_fhir_export_maps():
    assert set(ACTIONS) >= audit.ACTIONS
    for action, meaning in ACTIONS.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*", action) and len(action) <= 40
        assert meaning.strip()
