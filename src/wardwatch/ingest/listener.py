"""HL7 v2 results into the pipeline, one message at a time, acknowledged after commit."""

from __future__ import annotations

import hashlib
import logging

from wardwatch.domain import Rejection, rejection_frame, reported_frame
from wardwatch.ingest import hl7v2
from wardwatch.ingest.mllp import Handler
from wardwatch.ingest.pipeline import IngestSummary, Pipeline, store_parsed
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


def _note(summary: IngestSummary) -> str:
    if summary.duplicate_messages:
        return "already received; nothing stored twice"
    note = f"stored {summary.accepted}, duplicates {summary.duplicates}"
    if summary.quarantined_total:
        note += f", quarantined {summary.quarantined_total} (see wardwatch quarantine list)"
    return note


def store_hl7_message(pipeline: Pipeline, text: str, origin: str = "") -> tuple[IngestSummary, str]:
    """Parse and commit one message; returns the summary and the ACK to send back.

    AA means committed (individual results may still have been quarantined: MSA-3 says how
    many, because an AE would only make the interface engine resend the same message).
    A message we cannot use is kept whole in quarantine and answered AE or AR.
    """
    try:
        message = hl7v2.parse_message(text)
    except hl7v2.HL7Error as error:
        summary = store_unparseable(pipeline, "hl7v2", text, error.reason, origin)
        return summary, hl7v2.error_ack(text, error)
    receipt = Receipt("hl7v2", message.message_id)
    summary = store_parsed(pipeline, message.parsed, receipt)
    return summary, hl7v2.ack(message, "AA", _note(summary))


def hl7_handler(pipeline: Pipeline) -> Handler:
    """The MLLP server's handler: returns only after the message is committed."""

    def handle(text: str) -> str:
        summary, answer = store_hl7_message(pipeline, text)
        log.info("HL7 message: %s", _note(summary))
        return answer

    return handle
