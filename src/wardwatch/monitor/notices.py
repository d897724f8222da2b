"""Operations notices: drift a person must look at, stored, shown, acknowledged, and sent on.

A monitor run (`monitor_runs`, one row each) compares recent data with the reference; every
threshold it finds crossed becomes an `operations_notices` row with the figure, the limit, a
sentence a governance committee reads and what to do. The governance dashboard lists the open
ones (`open_notices`); someone who has reviewed one acknowledges it (`acknowledge`), by name.

While a notice of the same kind about the same subject is still open, a later run does not
raise it again (the run's summary still holds its figure): a drift that persists is one
question to answer, not one per run.

Both the run and each acknowledgement are in the audit chain, in the same transaction.

When the settings name a webhook (`[monitor] webhook_url`, or `WARDWATCH_MONITOR_WEBHOOK_URL`),
the new notices are POSTed to it as JSON *after* the run is committed; the outcome (delivered,
or why not) is written on each notice. A webhook that is down never stops monitoring.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)

from wardwatch.monitor.drift import DriftReport, Finding, monitor_table
from wardwatch.security import audit
from wardwatch.store.schema import UtcDateTime, metadata

STORE = "store"  # the source of incremental runs: what was ingested since the last run
WEBHOOK_ENV = "WARDWATCH_MONITOR_WEBHOOK_URL"
DEFAULT_WEBHOOK_TIMEOUT = 5.0

monitor_runs = Table(
    "monitor_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=False),
    Column("source", String(200), nullable=False),  # "store", or the PSV path of a --data run
    Column("reference", String(200), nullable=False),  # which reference profile, which model
    # How far a store run read: the next one starts after these ids (NULL for --data runs).
    Column("through_observation_id", Integer),
    Column("through_score_id", Integer),
    Column("hours", Integer, nullable=False),
    Column("patients", Integer, nullable=False),
    Column("notices", Integer, nullable=False),
    Column("summary", Text, nullable=False),  # the drift report as JSON
)

operations_notices = Table(
    "operations_notices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("monitor_runs.id"), nullable=False),
    Column("raised_at", UtcDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("subject", String(64), nullable=False),  # the variable, or risk / alerts / ood / ...
    Column("figure", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("message", Text, nullable=False),
    Column("recommendation", Text, nullable=False),
    Column("acknowledged_by", String(64)),
    Column("acknowledged_at", UtcDateTime),
    Column("acknowledgement", Text),  # what the reviewer decided, in their words
    Column("webhook", Text),  # NULL: no webhook; else "delivered ..." or why it failed
    Index("ix_operations_notices_open", "acknowledged_at", "kind", "subject"),
)


class NoticeNotFound(LookupError):
    """No operations notice has that id."""


@dataclass(frozen=True)
class RunMarks:
    """Where a store run stopped reading: observations and scores up to these ids."""

    observation_id: int = 0
    score_id: int = 0


def last_marks(conn: Connection) -> RunMarks:
    """The marks of the newest store run (zeros before the first)."""
    query = (
        select(monitor_runs.c.through_observation_id, monitor_runs.c.through_score_id)
        .where(monitor_runs.c.source == STORE)
        .order_by(monitor_runs.c.id.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return RunMarks(int(row[0] or 0), int(row[1] or 0)) if row else RunMarks()


def _open_subjects(conn: Connection) -> set[tuple[str, str]]:
    query = select(operations_notices.c.kind, operations_notices.c.subject).where(
        operations_notices.c.acknowledged_at.is_(None)
    )
    return {(kind, subject) for kind, subject in conn.execute(query).all()}


def record_run(
    conn: Connection,
    report: DriftReport,
    *,
    source: str,
    started_at: datetime,
    marks: RunMarks | None = None,
    actor: str = audit.SYSTEM,
) -> tuple[int, list[int]]:
    """Store the run and its new notices, and audit it; returns the run id and notice ids.

    Call inside the caller's transaction, last (the audit append holds the chain's lock)."""
    now = datetime.now(UTC)
    already = _open_subjects(conn)
    new = [f for f in report.findings if (f.kind, f.subject) not in already]
    run_id = _insert_run(conn, report, source, started_at, now, marks, len(new))
    ids = [_insert_notice(conn, run_id, f, now) for f in new]
    audit.record(conn, audit.AuditEvent(
        action="monitor.run", actor=actor, role="system" if actor == audit.SYSTEM else "user",
        object=f"monitor_run/{run_id}", source="cli" if source != STORE else audit.SYSTEM,
        detail={"source": source[-200:], "hours": report.hours, "patients": report.patients,
                "findings": len(report.findings), "notices": ids[:50],
                "model_version": report.reference.get("model_version")},
    ))  # fmt: skip
    return run_id, ids


def _insert_run(
    conn: Connection,
    report: DriftReport,
    source: str,
    started_at: datetime,
    finished_at: datetime,
    marks: RunMarks | None,
    notices: int,
) -> int:
    reference = f"{report.reference.get('source') or 'reference'} " + (
        f"(model {report.reference.get('model_version')})"
    )
    row = {
        "started_at": started_at, "finished_at": finished_at, "source": source[-200:],
        "reference": reference[:200], "hours": report.hours, "patients": report.patients,
        "notices": notices, "summary": json.dumps(report.to_dict(), allow_nan=False),
        "through_observation_id": marks.observation_id if marks else None,
        "through_score_id": marks.score_id if marks else None,
    }  # fmt: skip
    return int(conn.execute(insert(monitor_runs).values(**row)).inserted_primary_key[0])


def _insert_notice(conn: Connection, run_id: int, finding: Finding, at: datetime) -> int:
    row = {
        "run_id": run_id, "raised_at": at, "kind": finding.kind, "subject": finding.subject,
        "figure": float(finding.figure), "threshold": float(finding.threshold),
        "message": finding.message, "recommendation": finding.recommendation,
    }  # fmt: skip
    return int(conn.execute(insert(operations_notices).values(**row)).inserted_primary_key[0])


def open_notices(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Notices nobody has acknowledged yet, newest first (the governance dashboard's list)."""
    query = (
        select(operations_notices)
        .where(operations_notices.c.acknowledged_at.is_(None))
        .order_by(operations_notices.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def notices_of_run(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    query = select(operations_notices).where(operations_notices.c.run_id == run_id)
    return [dict(r) for r in conn.execute(query.order_by(operations_notices.c.id)).mappings()]


def runs(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    """The newest monitor runs, without their summaries."""
    columns = [c for c in monitor_runs.columns if c.name != "summary"]
    query = select(*columns).order_by(monitor_runs.c.id.desc()).limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def acknowledge(
    conn: Connection, notice_id: int, by: str, note: str = "", at: datetime | None = None
) -> dict[str, Any]:
    """Mark a notice reviewed by `by` (with what they decided), and audit it."""
    if not by.strip():
        raise ValueError("who acknowledges the notice? give a user name")
    notice = conn.execute(
        select(operations_notices).where(operations_notices.c.id == notice_id)
    ).mappings().first()  # fmt: skip
    if notice is None:
        raise NoticeNotFound(f"no operations notice {notice_id}; see `wardwatch monitor notices`")
    if notice["acknowledged_at"] is not None:
        raise ValueError(
            f"notice {notice_id} was already acknowledged by {notice['acknowledged_by']} "
            f"at {notice['acknowledged_at']:%Y-%m-%d %H:%M}"
        )
    at = at or datetime.now(UTC)
    conn.execute(
        update(operations_notices).where(operations_notices.c.id == notice_id)
        .values(acknowledged_by=by, acknowledged_at=at, acknowledgement=note or None)
    )  # fmt: skip
    audit.record(conn, audit.AuditEvent(
        action="monitor.acknowledge", actor=by, role="user", object=f"notice/{notice_id}",
        source="cli", detail={"kind": notice["kind"], "subject": notice["subject"]}, at=at,
    ))  # fmt: skip
    return dict(notice) | {"acknowledged_by": by, "acknowledged_at": at}


def count_open(conn: Connection) -> int:
    query = select(func.count()).where(operations_notices.c.acknowledged_at.is_(None))
    return int(conn.scalar(query.select_from(operations_notices)) or 0)


# ---------------------------------------------------------------- the webhook


@dataclass(frozen=True)
class Webhook:
    url: str
    timeout: float = DEFAULT_WEBHOOK_TIMEOUT


def webhook_from_settings(config_file: Path | None = None) -> Webhook | None:
    """The webhook named by the environment or the `[monitor]` table; None when neither does."""
    table, source = monitor_table(config_file)
    url = os.environ.get(WEBHOOK_ENV) or table.get("webhook_url") or ""
    if not url:
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"{source}: [monitor] webhook_url must be an http(s) URL, not {url!r}")
    timeout = table.get("webhook_timeout_seconds", DEFAULT_WEBHOOK_TIMEOUT)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError(f"{source}: [monitor] webhook_timeout_seconds must be positive")
    return Webhook(url, float(timeout))


def _payload(run_id: int, notices: Sequence[dict[str, Any]]) -> bytes:
    fields = ("id", "kind", "subject", "figure", "threshold", "message", "recommendation")
    items = [{k: n[k] for k in fields} | {"raised_at": n["raised_at"].isoformat()}
             for n in notices]  # fmt: skip
    body = {"source": "wardwatch", "event": "operations_notices", "run_id": run_id,
            "notices": items}  # fmt: skip
    return json.dumps(body, allow_nan=False).encode()


def post(webhook: Webhook, body: bytes) -> str:
    """POST `body` as JSON; the outcome in words. Never raises: monitoring must go on."""
    request = urllib.request.Request(
        webhook.url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "wardwatch-monitor"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=webhook.timeout) as response:
            return f"delivered (HTTP {response.status})"
    except urllib.error.HTTPError as error:
        return f"failed: HTTP {error.code} {error.reason}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return f"failed: {reason}"


def deliver(engine: Engine, webhook: Webhook | None, run_id: int) -> str | None:
    """Send a committed run's notices to the webhook and write the outcome on each notice."""
    if webhook is None:
        return None
    with engine.connect() as conn:
        notices = notices_of_run(conn, run_id)
    if not notices:
        return None
    outcome = post(webhook, _payload(run_id, notices))
    stamped = f"{outcome} at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    with engine.begin() as conn:
        conn.execute(
            update(operations_notices).where(operations_notices.c.run_id == run_id)
            .values(webhook=stamped)
        )  # fmt: skip
    return outcome
