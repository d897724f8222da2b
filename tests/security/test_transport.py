"""Transport security: MLLP over TLS (and mutual TLS), `serve` over HTTPS, and the errors an
operator sees when a certificate cannot be used. Real sockets on 127.0.0.1, real
certificates made here with `cryptography`, the real CLI."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import func, select
from tests.conftest import wait_for_port

from wardwatch.ingest import mllp, mllp_tls
from wardwatch.ingest.listener import hl7_handler
from wardwatch.ingest.pipeline import Pipeline
from wardwatch.settings import Settings
from wardwatch.store import init_db, open_engine
from wardwatch.store.schema import observations

if sys.platform == "win32":  # pragma: no cover - signals differ
    pytestmark = pytest.mark.skip("POSIX signals")


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Credential:
    cert: Path
    key: Path
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_credential(
    folder: Path, name: str, *, issuer: Credential | None = None, ca: bool = False,
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH,
) -> Credential:  # fmt: skip
    """A key and certificate written as PEM files: self-signed, or signed by `issuer`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer.certificate.subject if issuer else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)  # fmt: skip
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    signer = issuer.private_key if issuer else key
    certificate = builder.sign(signer, hashes.SHA256())
    cert, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return Credential(cert, key_file, certificate, key)


@dataclass(frozen=True)
class Pki:
    server: Credential  # self-signed, for 127.0.0.1
    other: Credential  # another self-signed pair: its key does not match `server`
    client_ca: Credential  # the CA that signs the interface engines' certificates
    engine: Credential  # an interface engine's client certificate, signed by client_ca
    stranger: Credential  # a client certificate signed by some other CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    client_ca = make_credential(folder, "hospital-ca", ca=True)
    other_ca = make_credential(folder, "other-ca", ca=True)
    client = ExtendedKeyUsageOID.CLIENT_AUTH
    return Pki(
        server=make_credential(folder, "server"),
        other=make_credential(folder, "other"),
        client_ca=client_ca,
        engine=make_credential(folder, "engine", issuer=client_ca, usage=client),
        stranger=make_credential(folder, "stranger", issuer=other_ca, usage=client),
    )


def client_context(pki: Pki, credential: Credential | None = None) -> ssl.SSLContext:
    """What an interface engine configures: trust the server's certificate, maybe show ours."""
    context = ssl.create_default_context(cafile=str(pki.server.cert))
    if credential is not None:
        context.load_cert_chain(credential.cert, credential.key)
    return context


# ---------------------------------------------------------------- MLLP over TLS


def oru(control_id: str) -> str:
    return "\r".join([
        f"MSH|^~\\&|LAB|TLS|WARDWATCH|ICU|20240301080000||ORU^R01|{control_id}|P|2.5.1",
        "PID|1||MRN-TLS-1^^^HOSP^MR||DOE^JANE||19600101|F",
        "OBR|1||R1|24331-1^PANEL^LN|||20240301075500",
        "OBX|1|NM|8867-4^HEART RATE^LN||88|/min|||||F|||20240301075500",
    ])  # fmt: skip


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Pipeline]:
    """The real ingest pipeline on a fresh SQLite file (what `wardwatch mllp` runs)."""
    settings = Settings(home=tmp_path)
    engine = open_engine(settings.resolved_database_url)
    init_db(engine)
    yield Pipeline.from_settings(engine, settings)
    engine.dispose()


def stored_observations(pipeline: Pipeline) -> int:
    with pipeline.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(observations)).scalar_one()


def test_a_tls_listener_stores_and_acknowledges_a_message_sent_over_tls(pki, ingest):
    context = mllp_tls.server_context(pki.server.cert, pki.server.key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2  # 1.0 and 1.1 are refused
    with mllp.background_server(hl7_handler(ingest), ssl=context) as (host, port):
        [ack] = mllp.send(host, port, [oru("TLS1")], ssl=client_context(pki))
    assert "MSA|AA|TLS1" in ack
    assert stored_observations(ingest) == 1


def test_a_plain_tcp_sender_gets_no_ack_and_nothing_is_stored(pki, ingest):
    context = mllp_tls.server_context(pki.server.cert, pki.server.key)
    # the server reads the frame as a bad TLS handshake and closes: no ACK, ever
    with (
        mllp.background_server(hl7_handler(ingest), ssl=context) as (host, port),
        pytest.raises((mllp.MLLPError, ConnectionError)),
    ):
        mllp.send(host, port, [oru("PLAIN1")], timeout=5)
    assert stored_observations(ingest) == 0


def refused(host: str, port: int, context: ssl.SSLContext) -> bool:
    """Whether the listener refuses this client (in the handshake, or on its first read: with
    TLS 1.3 the client learns its certificate was rejected only after the handshake)."""
    try:
        mllp.send(host, port, [oru("MTLS-X")], timeout=5, ssl=context)
    except (ssl.SSLError, mllp.MLLPError, ConnectionError):
        return True
    return False


def test_mutual_tls_accepts_only_clients_with_a_certificate_from_the_client_ca(pki, ingest):
    context = mllp_tls.server_context(pki.server.cert, pki.server.key, pki.client_ca.cert)
    with mllp.background_server(hl7_handler(ingest), ssl=context) as (host, port):
        assert refused(host, port, client_context(pki))  # no certificate
        assert refused(host, port, client_context(pki, pki.stranger))  # another CA's
        [ack] = mllp.send(host, port, [oru("MTLS1")], ssl=client_context(pki, pki.engine))
    assert "MSA|AA|MTLS1" in ack
    assert stored_observations(ingest) == 1  # the refused ones stored nothing


# ---------------------------------------------------------------- the CLI's TLS options


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wardwatch(*args: str, home: Path) -> subprocess.Popen[str]:
    environment = {**os.environ, "WARDWATCH_HOME": str(home), "COLUMNS": "200"}
    environment.pop("WARDWATCH_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "wardwatch", *args], env=environment,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM (the listener answers what is in hand, then exits), SIGKILL if it hangs."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


@pytest.mark.slow
def test_wardwatch_mllp_with_a_client_ca_serves_mutual_tls(pki, tmp_path):
    port = free_port()
    server = wardwatch("mllp", "--port", str(port), "--no-scoring",
                       "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
                       "--tls-client-ca", str(pki.client_ca.cert), home=tmp_path)  # fmt: skip
    try:
        wait_for_port(port, timeout=60)
        assert refused("127.0.0.1", port, client_context(pki))
        [ack] = mllp.send("127.0.0.1", port, [oru("CLI1")], ssl=client_context(pki, pki.engine))
    finally:
        output, _ = stop(server)
    assert "MSA|AA|CLI1" in ack
    assert "over MLLP over TLS (client certificates required)" in output


@pytest.mark.parametrize("command", ["serve", "mllp"])
@pytest.mark.parametrize(
    ("files", "message"),
    [
        (("server.crt", "other.key"), "cannot be used together (KEY_VALUES_MISMATCH)"),
        (("server.crt", "missing.key"), "missing.key does not exist"),
        (("server.key", "server.key"), "cannot be used together"),
        (("server.crt", None), "--tls-cert was given without --tls-key: give both, or neither"),
        ((None, "server.key"), "--tls-key was given without --tls-cert: give both, or neither"),
    ],
)
def test_a_certificate_that_cannot_be_used_stops_the_command_with_what_to_do(
    run, pki, command, files, message
):
    folder = pki.server.cert.parent
    args = [command, "--port", str(free_port()), "--no-scoring"]
    for option, name in zip(("--tls-cert", "--tls-key"), files, strict=True):
        args += [option, str(folder / name)] if name else []
    result = run(*args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert message in text
    assert f"what to do: `wardwatch {command} --help` explains the TLS options" in text


def test_mllp_refuses_a_client_ca_without_its_own_certificate(run, pki):
    result = run("mllp", "--tls-client-ca", str(pki.client_ca.cert))
    assert result.exit_code == 2
    assert "--tls-client-ca needs --tls-cert and --tls-key" in " ".join(result.output.split())


def test_an_encrypted_key_is_refused_without_prompting(run, pki, tmp_path):
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(pki.server.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"hunter2")))  # fmt: skip
    result = run("serve", "--tls-cert", str(pki.server.cert), "--tls-key", str(encrypted))
    assert result.exit_code == 2
    assert "is encrypted; give an unencrypted key" in " ".join(result.output.split())


@pytest.mark.slow
def test_serve_with_a_certificate_speaks_https_and_nothing_else(pki, tmp_path):
    port = free_port()
    tls = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
    server = wardwatch("serve", "--port", str(port), "--no-scoring", *tls, home=tmp_path)
    try:
        wait_for_port(port, timeout=60)
        url = f"https://127.0.0.1:{port}/fhir/metadata"
        with urllib.request.urlopen(url, context=client_context(pki), timeout=10) as response:
            assert response.status == 200
            assert b'"CapabilityStatement"' in response.read()
        with pytest.raises(OSError):  # plain HTTP gets no answer (uvicorn drops the bytes)
            urllib.request.urlopen(f"http://127.0.0.1:{port}/fhir/metadata", timeout=10)
    finally:
        output, errors = stop(server)
    assert f"serving on https://127.0.0.1:{port}/" in output
    assert "WARNING" not in errors


@pytest.mark.slow
def test_serve_on_the_network_without_tls_warns_loudly(tmp_path):
    port = free_port()
    server = wardwatch("serve", "--host", "0.0.0.0", "--port", str(port), "--no-scoring",
                       home=tmp_path)  # fmt: skip
    try:
        wait_for_port(port, timeout=60)
    finally:
        _, errors = stop(server)
    warning = " ".join(errors.split())
    assert "WARNING: serving plain HTTP on 0.0.0.0. Session cookies are Secure" in warning
    assert "Put TLS here (--tls-cert, --tls-key) or in a reverse proxy" in warning
