"""TLS for the MLLP listener (and the check `wardwatch serve` runs on its certificate).

HL7 v2 over MLLP is plain TCP: anyone on the path reads every result and can inject one. Over
TLS the listener proves who it is with its certificate; with a client CA it also requires
each sender to prove who *it* is (mutual TLS), which is how interface engines (Mirth/NextGen
Connect, Rhapsody, Cloverleaf) are usually connected to a new receiver.

Errors::

    TLSSetupError(ValueError)   a file is missing or unreadable, the certificate and key do
                                not belong together, the key is encrypted, the CA file holds
                                no certificate; the message says which, and what to do
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2  # 1.0 and 1.1 are broken and deprecated (RFC 8996)
HINT = ("`wardwatch {command} --help` explains the TLS options; README.md (Security and "
        "transport) shows how to make a test certificate")  # fmt: skip


class TLSSetupError(ValueError):
    """The certificate, key or CA file cannot be used; the message says why and what to do."""


def from_options(
    cert: Path | None, key: Path | None, client_ca: Path | None = None
) -> ssl.SSLContext | None:
    """The context `--tls-cert`/`--tls-key`/`--tls-client-ca` ask for; None for plain TCP."""
    if cert is None and key is None:
        if client_ca is not None:
            raise TLSSetupError("--tls-client-ca needs --tls-cert and --tls-key: the server's "
                                "own certificate comes first")  # fmt: skip
        return None
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise TLSSetupError(f"{given} was given without {missing}: give both, or neither")
    return server_context(cert, key, client_ca)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.1, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server-side TLS context for `cert`/`key`; with `client_ca`, client certificates
    signed by that CA are required (a client without one is refused in the handshake)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = MINIMUM_VERSION
    load_pair(context, cert, key)
    if client_ca is not None:
        _require_client_certificates(context, client_ca)
    return context


def load_pair(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Load the certificate chain and its private key into `context`, or TLSSetupError."""
    _readable(cert, "certificate")
    _readable(key, "private key")
    try:
        context.load_cert_chain(cert, key, password=_refuse_encrypted_key)
    except _EncryptedKey:
        raise TLSSetupError(
            f"the private key {key} is encrypted; give an unencrypted key (e.g. `openssl pkey "
            f"-in {key} -out plain.pem`) and protect the file instead (chmod 600)"
        ) from None
    except ssl.SSLError as error:
        raise TLSSetupError(
            f"the certificate {cert} and private key {key} cannot be used together "
            f"({error.reason or error}); check both are PEM and that the key is the one the "
            "certificate was issued for"
        ) from None


def _require_client_certificates(context: ssl.SSLContext, client_ca: Path) -> None:
    _readable(client_ca, "client CA certificate")
    try:
        context.load_verify_locations(cafile=client_ca)
    except ssl.SSLError as error:
        raise TLSSetupError(
            f"the client CA file {client_ca} holds no usable certificate ({error.reason or error});"
            " give the PEM certificate of the CA that signs the senders' certificates"
        ) from None
    context.verify_mode = ssl.CERT_REQUIRED


def _readable(path: Path, what: str) -> None:
    if not path.is_file():
        raise TLSSetupError(f"the {what} file {path} does not exist (or is not a file)")
    try:
        path.open("rb").close()
    except OSError as error:
        raise TLSSetupError(f"the {what} file {path} cannot be read: {error.strerror}") from None


class _EncryptedKey(Exception):
    pass


def _refuse_encrypted_key() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal, hanging a service at start-up.
    raise _EncryptedKey
