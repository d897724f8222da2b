"""HL7 v2 results into the pipeline, one message at a time, acknowledged after commit."""

from __future__ import annotations

import hashlib
import logging

from wardwatch.domain import Rejection, rejection_frame, reported_frame
from wardwatch.ingest import hl7v2
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


class HL7Handler:
    """The MLLP listener's handler: answers only after the message is committed.

    The server hands it every message that has arrived, on all connections, while the
    previous group was committing (`handle_many`): they share one transaction, and each
    connection still gets its own ACK, sent after that commit. If a group fails as a whole,
    the server retries its messages one by one (`__call__`), so one poisoned message cannot
    take the others down with it.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def __call__(self, text: str) -> str:
        summary, ack = store_hl7_message(self.pipeline, text)
        log.info("HL7 message: %s", _note(summary))
        return ack

    def handle_many(self, texts: list[str]) -> list[str]:
        answers = store_hl7_messages(self.pipeline, texts)
        for summary, _ in answers:
            log.info("HL7 message: %s", _note(summary))
        return [ack for _, ack in answers]


def hl7_handler(pipeline: Pipeline) -> HL7Handler:
    """The MLLP server's handler: returns only after the message is committed."""
    return HL7Handler(pipeline)
