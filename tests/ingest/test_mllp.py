"""MLLP framing, and the server on a real TCP socket (127.0.0.1, a free port), no mocks."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import itertools
import logging
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import hl7
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wardwatch.ingest import hl7v2, mllp
from wardwatch.ingest.mllp import MLLPDecoder, MLLPError, frame

DATA = Path(__file__).resolve().parents[1] / "data" / "hl7v2"
LAB = (DATA / "lab_oru_1.hl7").read_text()
SAMPLE = (DATA / "sample_oru_r01.hl7").read_text()


def oru(control_id: str, value: str = "5.5", charset: str = "") -> str:
    msh = f"MSH|^~\\&|LAB|NORTH|WW|ICU|20240301101500||ORU^R01|{control_id}|P|2.5.1"
    msh += f"||||||{charset}" if charset else ""
    return "\r".join([msh, "PID|1||M1", "OBR|1", f"OBX|1|NM|2345-7^GLU^LN||{value}|mmol/L"])


def accept(text: str) -> str:
    return hl7v2.ack(text, "AA")


def msa(ack: str) -> list[str]:
    return [str(f) for f in hl7.parse(ack).segment("MSA")]


def read_acks(sock: socket.socket, count: int) -> list[str]:
    decoder, acks = MLLPDecoder(), []
    while len(acks) < count:
        data = sock.recv(65536)
        assert data, "connection closed before all ACKs arrived"
        acks.extend(mllp.decode(raw)[0] for raw in decoder.feed(data))
    return acks


# -- framing ------------------------------------------------------------------------------------


def test_frame():
    assert frame("MSH|a\nPID|b\r\nOBX|c") == b"\x0bMSH|a\rPID|b\rOBX|c\x1c\r"
    with pytest.raises(ValueError, match="0x0B or 0x1C"):
        frame("MSH|\x1c")


def test_frame_uses_the_declared_character_set():
    assert frame(oru("C1", "µ", charset="8859/1")).count("µ".encode("latin-1")) == 1
    assert frame(oru("C1", "µ")).count("µ".encode()) == 1
    assert frame("MSH|µ", "ascii", "replace") == b"\x0bMSH|?\x1c\r"


def test_decoder_messages_split_and_joined():
    decoder = MLLPDecoder()
    assert decoder.feed(b"\x0bMSH|1") == []
    assert decoder.feed(b"\x1c") == []
    assert decoder.feed(b"\r\r\n\x0bMSH|2\x1c\r\x0bMSH|3\x1c\r\x0bMS") == [
        b"MSH|1",
        b"MSH|2",
        b"MSH|3",
    ]
    assert decoder.feed(b"H|4\x1c\r") == [b"MSH|4"]
    assert decoder.feed(b"") == []


@pytest.mark.parametrize(
    ("stream", "words"),
    [
        (b"MSH|1\x1c\r", "expected start block"),
        (b"\x0bMSH|1\x1c\rjunk\x0bMSH|2\x1c\r", "expected start block"),
        (b"\x0bMSH|1\x0bMSH|2\x1c\r", "start block 0x0B inside a frame"),
        (b"\x0bMSH|1\x1cX", "not followed by 0x0D"),
        (b"\x0b" + b"x" * 101, "longer than 100 bytes"),
        (b"\x0b" + b"x" * 101 + b"\x1c\r", "longer than 100 bytes"),
    ],
)
def test_decoder_errors(stream, words):
    decoder = MLLPDecoder(max_message_bytes=100)
    with pytest.raises(MLLPError, match=words):
        for byte in range(len(stream)):  # byte by byte: errors do not depend on read sizes
            decoder.feed(stream[byte : byte + 1])
        decoder.feed(b"")


def test_decoder_returns_complete_messages_before_an_error():
    decoder = MLLPDecoder()
    assert decoder.feed(b"\x0bMSH|1\x1c\rjunk") == [b"MSH|1"]
    with pytest.raises(MLLPError, match="junk"):
        decoder.feed(b"")
    with pytest.raises(MLLPError):  # the stream stays broken
        decoder.feed(b"\x0bMSH|2\x1c\r")


MESSAGES = st.lists(st.binary().map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b"")))


@given(MESSAGES, st.lists(st.integers(min_value=0, max_value=10_000)))
def test_decoder_property_any_split_decodes_the_same(messages, cuts):
    stream = b"".join(b"\x0b" + m + b"\x1c\r" for m in messages)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    decoder, decoded = MLLPDecoder(), []
    for start, end in itertools.pairwise(points):
        decoded.extend(decoder.feed(stream[start:end]))
    assert decoded == messages


def test_decode_character_sets(caplog):
    assert mllp.decode("MSH|µ".encode()) == ("MSH|µ", "utf-8")
    assert mllp.decode("MSH|µ".encode("latin-1")) == ("MSH|µ", "latin-1")  # not UTF-8
    latin = oru("C1", "µ", charset="8859/1")
    assert mllp.decode(latin.encode("latin-1")) == (latin, "iso8859-1")
    ascii_declared = oru("C1", "µ", charset="ASCII")
    with caplog.at_level(logging.WARNING, logger="wardwatch.ingest.mllp"):
        assert mllp.decode(ascii_declared.encode("latin-1")) == (ascii_declared, "latin-1")
        unknown = oru("C1", charset="KLINGON")
        assert mllp.decode(unknown.encode()) == (unknown, "utf-8")
    assert "not valid ascii" in caplog.text and "KLINGON" in caplog.text


# -- the server ---------------------------------------------------------------------------------


def test_each_message_is_acked_with_its_control_id_in_order():
    seen: list[str] = []

    def handler(text: str) -> str:
        seen.append(text)
        return accept(text)

    messages = [oru(f"C{n}") for n in range(5)] + [LAB, SAMPLE]
    with mllp.background_server(handler) as (host, port):
        acks = mllp.send(host, port, messages)
    assert [msa(a)[1:3] for a in acks] == [["AA", f"C{n}"] for n in range(5)] + [
        ["AA", "182"],
        ["AA", "CNTRL-3456"],
    ]
    assert seen == [m.replace("\n", "\r") for m in messages]


def test_handler_exception_answers_ae_and_the_server_keeps_serving(caplog):
    def handler(text: str) -> str:
        if "BOOM" in text:
            raise RuntimeError("database is locked")
        return accept(text)

    with mllp.background_server(handler) as (host, port):
        acks = mllp.send(host, port, [oru("C1"), oru("C2", "BOOM"), oru("C3")])
        again = mllp.send(host, port, [oru("C4")])
    assert [msa(a)[1:3] for a in acks + again] == [
        ["AA", "C1"],
        ["AE", "C2"],
        ["AA", "C3"],
        ["AA", "C4"],
    ]
    assert "RuntimeError: database is locked" in hl7v2.unescape(msa(acks[1])[3])
    err = [str(f) for f in hl7.parse(acks[1]).segment("ERR")]
    assert err[3].startswith("207^")
    assert "MLLP handler failed" in caplog.text


def test_hl7_errors_are_answered_ae_or_ar():
    handler = functools.partial(hl7v2.acknowledge, commit=lambda message: None)
    adt = oru("C2").replace("ORU^R01", "ADT^A01")
    truncated = oru("C3").split("\rPID")[0]
    with mllp.background_server(handler) as (host, port):
        acks = mllp.send(host, port, [LAB, adt, truncated, "garbage", oru("C5")])
    assert [msa(a)[1:3] for a in acks] == [
        ["AA", "182"],
        ["AR", "C2"],
        ["AE", "C3"],
        ["AR", ""],
        ["AA", "C5"],
    ]
    assert "not ORU^R01" in hl7v2.unescape(msa(acks[1])[3])
    assert "no PID" in msa(acks[2])[3]


def test_two_messages_in_one_write_are_both_acked_in_order():
    with (
        mllp.background_server(accept) as (host, port),
        socket.create_connection((host, port), timeout=10) as sock,
    ):
        sock.sendall(frame(oru("A")) + frame(oru("B")))
        acks = read_acks(sock, 2)
    assert [msa(a)[2] for a in acks] == ["A", "B"]


def test_a_message_sent_byte_by_byte():
    with (
        mllp.background_server(accept) as (host, port),
        socket.create_connection((host, port), timeout=10) as sock,
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in frame(oru("SLOW")):
            sock.sendall(bytes([byte]))
        assert msa(read_acks(sock, 1)[0])[2] == "SLOW"


def test_the_ack_waits_for_the_handler_to_return():
    committed = threading.Event()
    release = threading.Event()

    def handler(text: str) -> str:
        release.wait(10)
        committed.set()
        return accept(text)

    with (
        mllp.background_server(handler) as (host, port),
        socket.create_connection((host, port), timeout=0.3) as sock,
    ):
        sock.sendall(frame(oru("SLOW")))
        with pytest.raises(TimeoutError):
            sock.recv(1024)  # no ACK while the handler has not returned
        assert not committed.is_set()
        release.set()
        sock.settimeout(10)
        assert msa(read_acks(sock, 1)[0])[2] == "SLOW"
        assert committed.is_set()


def test_stopping_answers_the_message_in_hand_first():
    started, release = threading.Event(), threading.Event()

    def handler(text: str) -> str:
        started.set()
        release.wait(10)
        return accept(text)

    server = contextlib.ExitStack()
    host, port = server.enter_context(mllp.background_server(handler))
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(frame(oru("LAST")))
        assert started.wait(10)
        stopper = threading.Thread(target=server.close)
        stopper.start()
        time.sleep(0.2)  # the server is stopping while the handler still works
        release.set()
        assert msa(read_acks(sock, 1)[0])[2] == "LAST"
        assert sock.recv(1024) == b""  # then the connection is closed
        stopper.join()


def test_messages_on_one_connection_are_handled_one_at_a_time():
    active, overlaps = [0], []

    def handler(text: str) -> str:
        active[0] += 1
        overlaps.append(active[0])
        time.sleep(0.01)
        active[0] -= 1
        return accept(text)

    with mllp.background_server(handler) as (host, port):
        acks = mllp.send_pipelined(host, port, [oru(f"P{n}") for n in range(20)])
    assert [msa(a)[2] for a in acks] == [f"P{n}" for n in range(20)]
    assert max(overlaps) == 1


def test_framing_garbage_closes_that_connection_only(caplog):
    with mllp.background_server(accept) as (host, port):
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(frame(oru("OK")) + b"garbage")
            assert msa(read_acks(sock, 1)[0])[2] == "OK"  # answered before the garbage
            assert sock.recv(1024) == b""  # then closed
        assert msa(mllp.send(host, port, [oru("NEXT")])[0])[2] == "NEXT"
    assert "framing error" in caplog.text


def test_a_handler_that_returns_no_text_is_answered_ae():
    with mllp.background_server(lambda text: None) as (host, port):  # type: ignore[arg-type,return-value]
        [ack] = mllp.send(host, port, [oru("C1")])
    assert msa(ack)[1:3] == ["AE", "C1"] and "TypeError" in msa(ack)[3]


def test_latin1_messages_are_read_and_answered_in_latin1():
    received: list[str] = []
    message = oru("L1", charset="8859/1").replace("mmol/L", "µmol/L")

    def handler(text: str) -> str:
        received.append(text)
        return hl7v2.ack(text, "AE", "unit µmol/L")

    with (
        mllp.background_server(handler) as (host, port),
        socket.create_connection((host, port), timeout=10) as sock,
    ):
        sock.sendall(frame(message))
        raw = sock.recv(65536)
    assert received == [message]
    assert "unit µmol/L".encode("latin-1") in raw


def test_client_reports_a_server_that_closes(caplog):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def close_at_once() -> None:
            connection, _ = listener.accept()
            connection.recv(65536)
            connection.close()

        thread = threading.Thread(target=close_at_once)
        thread.start()
        with pytest.raises(MLLPError, match="closed the connection"):
            mllp.send("127.0.0.1", port, [oru("C1")])
        thread.join()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls(certificate):
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    with mllp.background_server(accept, ssl=server_context) as (host, port):
        acks = mllp.send(host, port, [oru("T1"), oru("T2")], ssl=client_context)
    assert [msa(a)[2] for a in acks] == ["T1", "T2"]


def test_run_forever_stops_on_sigterm():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "from wardwatch.ingest import hl7v2, mllp\n"
        f"mllp.run_forever('127.0.0.1', {port}, lambda t: hl7v2.ack(t, 'AA'))\n"
    )
    with subprocess.Popen([sys.executable, "-c", code]) as server:
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    [ack] = mllp.send("127.0.0.1", port, [oru("R1")])
                    break
                except ConnectionRefusedError:
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.05)
            assert msa(ack)[2] == "R1"
            server.terminate()
            assert server.wait(timeout=20) == 0
        finally:
            if server.poll() is None:
                server.kill()


# -- group commit: a handler that answers several messages at once ------------------------------


class Grouping:
    """A group handler that records each group; the first group waits until let go."""

    def __init__(self, poison: str = "") -> None:
        self.groups: list[list[str]] = []
        self.singles: list[str] = []
        self.first_started, self.release = threading.Event(), threading.Event()
        self.poison = poison

    def __call__(self, text: str) -> str:
        self.singles.append(text)
        if self.poison and self.poison in text:
            raise RuntimeError("cannot store this one")
        return accept(text)

    def handle_many(self, texts: list[str]) -> list[str]:
        self.groups.append([hl7v2.normalize(t).split("|")[9] for t in texts])
        if len(self.groups) == 1:
            self.first_started.set()
            self.release.wait(10)
        if self.poison and any(self.poison in t for t in texts):
            raise RuntimeError("the group's transaction failed")
        return [accept(t) for t in texts]


def _send_each(host: str, port: int, ids: list[str]) -> list[list[str]]:
    with concurrent.futures.ThreadPoolExecutor(len(ids)) as pool:
        jobs = [pool.submit(mllp.send, host, port, [oru(i)]) for i in ids]
        return [[msa(a) for a in job.result()] for job in jobs]


def test_messages_arriving_during_a_commit_share_the_next_one():
    handler = Grouping()
    results: list[list[list[str]]] = []
    with (
        mllp.background_server(handler) as (host, port),
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):
        held = pool.submit(mllp.send, host, port, [oru("FIRST")])
        assert handler.first_started.wait(10)
        later = pool.submit(_send_each, host, port, [f"N{n}" for n in range(6)])
        time.sleep(0.5)  # all six are queued behind the first commit
        handler.release.set()
        results = later.result(10)
        assert msa(held.result()[0])[1:3] == ["AA", "FIRST"]
    assert handler.groups[0] == ["FIRST"]
    assert sorted(handler.groups[1]) == [f"N{n}" for n in range(6)]  # one commit for six
    assert sorted(r[0][2] for r in results) == [f"N{n}" for n in range(6)]
    assert all(r[0][1] == "AA" for r in results)
    assert handler.singles == []


def test_a_failing_group_is_answered_message_by_message(caplog):
    handler = Grouping(poison="BAD")
    handler.release.set()
    with mllp.background_server(handler) as (host, port):
        answers = _send_each(host, port, ["OK1", "BAD1", "OK2"])
    by_id = {a[0][2]: a[0][1] for a in answers}
    assert by_id == {"OK1": "AA", "BAD1": "AE", "OK2": "AA"}
    assert "answering them one by one" in caplog.text
    assert any("BAD1" in text for text in handler.singles)
