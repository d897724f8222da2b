"""HL7 v2 results into the pipeline, one message at a time, acknowledged after commit."""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from concurrent.futures import Future

from wardwatch.domain import Rejection, rejection_frame, reported_frame
from wardwatch.ingest import hl7v2
from wardwatch.ingest.mllp import Handler
from wardwatch.ingest.pipeline import IngestSummary, Pipeline, store_messages
from wardwatch.store import Batch, Receipt, write_batch

log = logging.getLogger(__name__)


def store_unparseable(
    pipeline: Pipeline, source: str, payload: str, reason: str, origin: str = ""
) -> IngestSummary:
    """Keep a whole message or document we could not read, with the reason."""
    ident = origin or hashlib.sha256(payload.encode()).hexdigest()[:16]
    rejection = Rejection(source, ident, "unreadable", reason, payload)
    with pipeline.engine.begin() as conn:
        write_batch(conn, Batch(reported_frame([]), rejection_frame([rejection])))
    summary = IngestSummary(messages=1)
    summary.quarantined["unreadable"] += 1
    summary.errors.append(f"{origin or source}: {reason}")
    return summary


def receipt_of(message: hl7v2.ParsedMessage) -> Receipt:
    return Receipt("hl7v2", message.message_id)


def _note(summary: IngestSummary) -> str:
    if summary.duplicate_messages:
        return "already received; nothing stored twice"
    note = f"stored {summary.accepted}, duplicates {summary.duplicates}"
    if summary.quarantined_total:
        note += f", quarantined {summary.quarantined_total} (see wardwatch quarantine list)"
    return note


def store_hl7_messages(
    pipeline: Pipeline, texts: list[str], origin: str = ""
) -> list[tuple[IngestSummary, str]]:
    """Parse and commit several messages in one transaction; a summary and ACK for each.

    AA means committed (individual results may still have been quarantined: MSA-3 says how
    many, because an AE would only make the interface engine resend the same message).
    A message we cannot use is kept whole in quarantine and answered AE or AR.
    """
    answers: list[tuple[IngestSummary, str] | None] = [None] * len(texts)
    parsed: list[tuple[int, hl7v2.ParsedMessage]] = []
    for i, text in enumerate(texts):
        try:
            parsed.append((i, hl7v2.parse_message(text)))
        except hl7v2.HL7Error as error:
            summary = store_unparseable(pipeline, "hl7v2", text, error.reason, origin)
            answers[i] = (summary, hl7v2.error_ack(text, error))
    summaries = store_messages(pipeline, [(m.parsed, receipt_of(m)) for _, m in parsed])
    for (i, message), summary in zip(parsed, summaries, strict=True):
        answers[i] = (summary, hl7v2.ack(message, "AA", _note(summary)))
    return [a for a in answers if a is not None]


def store_hl7_message(pipeline: Pipeline, text: str, origin: str = "") -> tuple[IngestSummary, str]:
    """Parse and commit one message; returns the summary and the ACK to send back."""
    return store_hl7_messages(pipeline, [text], origin)[0]


class GroupCommit:
    """The MLLP handler: messages arriving at once on several connections share one commit.

    Each connection still waits for its own ACK, which is sent only after the transaction
    holding its message has committed. If a group fails as a whole, its messages are retried
    one by one, so one poisoned message cannot take the others down with it.
    """

    def __init__(self, pipeline: Pipeline, max_group: int = 64) -> None:
        self.pipeline = pipeline
        self.max_group = max_group
        self._waiting: queue.Queue[tuple[str, Future[str]] | None] = queue.Queue()
        self._committer = threading.Thread(target=self._run, name="hl7-commit", daemon=True)
        self._committer.start()

    def __call__(self, text: str) -> str:
        answer: Future[str] = Future()
        self._waiting.put((text, answer))
        return answer.result()

    def close(self) -> None:
        self._waiting.put(None)
        self._committer.join()

    def _next_group(self) -> list[tuple[str, Future[str]]] | None:
        first = self._waiting.get()
        if first is None:
            return None
        group = [first]
        while len(group) < self.max_group:
            try:
                item = self._waiting.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._waiting.put(None)
                break
            group.append(item)
        return group

    def _run(self) -> None:
        while (group := self._next_group()) is not None:
            try:
                answers = store_hl7_messages(self.pipeline, [text for text, _ in group])
            except Exception:
                log.exception("group of %d HL7 messages failed; retrying one by one", len(group))
                self._one_by_one(group)
            else:
                for (_, answer), (summary, ack) in zip(group, answers, strict=True):
                    log.info("HL7 message: %s", _note(summary))
                    answer.set_result(ack)

    def _one_by_one(self, group: list[tuple[str, Future[str]]]) -> None:
        for text, answer in group:
            try:
                answer.set_result(store_hl7_message(self.pipeline, text)[1])
            except Exception as error:  # noqa: BLE001 - the MLLP server answers AE with it
                answer.set_exception(error)


def hl7_handler(pipeline: Pipeline) -> Handler:
    """The MLLP server's handler: returns only after the message is committed."""
    return GroupCommit(pipeline)
