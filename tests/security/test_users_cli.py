"""`wardwatch users …` as an administrator runs it, on a private SQLite home."""

from __future__ import annotations

import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.security.accounts import HASHER, PASSWORD, code
from typer.testing import CliRunner

from wardwatch.security import login, passwords, sessions, users
from wardwatch.security.users_cli import users_app
from wardwatch.settings import Settings
from wardwatch.store import engine_from_settings


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("WARDWATCH_HOME", str(tmp_path))
    monkeypatch.delenv("WARDWATCH_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(passwords, "HASHER", HASHER)  # the CLI hashes with the default
    return tmp_path


@pytest.fixture
def cli(home):
    runner = CliRunner()
    return lambda *args, input=None: runner.invoke(users_app, list(args), input=input)


@pytest.fixture
def db(home):
    engine = engine_from_settings(Settings(home=home))
    yield engine
    engine.dispose()


def secret_in(output: str) -> str:
    return re.search(r"TOTP secret:\s+([A-Z2-7]+)", output).group(1)


def sign_in(db, user_id, secret, password=PASSWORD):
    now = datetime.now(UTC)
    with db.begin() as conn:
        return login.authenticate(conn, user_id, password, code(secret, now), at=now, source="t",
                                  hasher=HASHER)  # fmt: skip


def test_add_with_password_on_stdin_enrols_mfa(cli, home, db):
    result = cli("add", "Dr.Lee", "--role", "physician", "--display-name", "Dr Lee",
                 "--password-stdin", input=PASSWORD + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "added dr.lee (provider)" in result.output
    assert "otpauth://totp/wardwatch:dr.lee?secret=" in result.output
    assert len(re.findall(r"^  ([2-9A-HJ-NP-Z]{4}-){3}[2-9A-HJ-NP-Z]{4}$", result.output,
                          re.MULTILINE)) == 10  # fmt: skip
    assert PASSWORD not in result.output
    qr = home / "mfa" / "dr.lee-totp.svg"
    assert str(qr) in result.output and "<svg" in qr.read_text()
    assert stat.S_IMODE(qr.stat().st_mode) == 0o600
    assert sign_in(db, "dr.lee", secret_in(result.output)).ok


def test_add_prompts_for_the_password_twice(cli, tmp_path, db):
    qr = tmp_path / "elsewhere" / "qr.svg"
    result = cli("add", "n-ada", "--role", "nurse", "--qr", str(qr),
                 input=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.count("password for n-ada") == 1 and "Repeat" in result.output
    assert qr.is_file()
    assert sign_in(db, "n-ada", secret_in(result.output)).ok


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("n-ada", "--role", "nurse"), "short\n", "at least 12"),
        (("n-ada", "--role", "pharmacist"), PASSWORD + "\n", "unknown role"),
        (("bad id", "--role", "nurse"), PASSWORD + "\n", "user id"),
    ],
)
def test_add_refusals_exit_2_with_the_reason(cli, db, args, stdin, message):
    result = cli("add", *args, "--password-stdin", input=stdin)
    assert result.exit_code == 2
    assert message in result.output
    with db.connect() as conn:
        assert users.list_users(conn) == []


def test_add_twice_is_refused(cli):
    cli("add", "n-ada", "--role", "nurse", "--password-stdin", input=PASSWORD + "\n")
    again = cli("add", "n-ada", "--role", "nurse", "--password-stdin", input=PASSWORD + "\n")
    assert again.exit_code == 2 and "already exists" in again.output


def test_disable_ends_sessions_and_refuses_sign_in_then_enable(cli, db):
    added = cli("add", "n-ada", "--role", "nurse", "--password-stdin", input=PASSWORD + "\n")
    with db.begin() as conn:
        live = sessions.create_session(conn, "n-ada", at=datetime.now(UTC))
    result = cli("disable", "n-ada")
    assert result.exit_code == 0 and "1 session(s) ended" in result.output
    assert sign_in(db, "n-ada", secret_in(added.output)).outcome == "disabled"
    with db.begin() as conn, pytest.raises(sessions.SessionInvalid, match="revoked"):
        sessions.resume(conn, live.token, at=datetime.now(UTC))
    assert cli("enable", "n-ada").exit_code == 0
    with db.begin() as conn:
        conn.execute(users.users.update().values(totp_last_step=None))  # same step, new login
    assert sign_in(db, "n-ada", secret_in(added.output)).ok


def test_reset_mfa_replaces_the_secret(cli, db):
    added = cli("add", "n-ada", "--role", "nurse", "--password-stdin", input=PASSWORD + "\n")
    reset = cli("reset-mfa", "N-Ada")
    assert reset.exit_code == 0, reset.output
    old, new = secret_in(added.output), secret_in(reset.output)
    assert old != new
    assert sign_in(db, "n-ada", old).outcome == "bad_code"
    assert sign_in(db, "n-ada", new).ok


def test_list_shows_users_and_their_state(cli):
    assert "no users yet" in cli("list").output
    cli("add", "n-ada", "--role", "nurse", "--password-stdin", input=PASSWORD + "\n")
    cli("add", "admin-al", "--role", "admin", "--password-stdin", input=PASSWORD + "\n")
    cli("disable", "admin-al")
    listed = cli("list").output
    assert re.search(r"admin-al .*admin .*yes .*disabled .*never", listed)
    assert re.search(r"n-ada .*nurse .*yes .*active", listed)


@pytest.mark.parametrize("command", ["disable", "enable", "reset-mfa"])
def test_unknown_user_exits_2(cli, command):
    result = cli(command, "nobody")
    assert result.exit_code == 2 and "no user 'nobody'" in result.output
