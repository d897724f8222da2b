"""Silent mode: the whole live pipeline runs — ingest, scores, the alert policy, would-be
alerts stored — but nothing reaches clinicians, so a new hospital can see what the model
would have done on its own patients before anyone is alerted (`wardwatch validate-site`
reads the store).

While silent:
    - alerts the policy opens are stored with `silent = true` (their timing, rate and
      suppression are exactly what a live deployment would have had);
    - the worklist shows no risk and no alert, the patient page and the clinical API say
      "silent mode", FHIR out serves no RiskAssessment or Flag, the CDS service returns no
      card (see `web`).
Leaving silent mode is a governance action (the auditor role), audited with a reason.
Would-be alerts never surface afterwards: the ones still open are closed by the system
("silent mode ended", on their timeline), and the alert policy forgets silent alerts, so a
patient still at risk gets a fresh, visible alert at the next ward round rather than being
held back by a suppression window nobody saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select
from sqlalchemy import update as sql_update

from wardwatch.alerts import records
from wardwatch.alerts.records import ACTIVE_STATES, find_alerts
from wardwatch.alerts.workflow import NotPermitted
from wardwatch.security import audit
from wardwatch.store.schema import alert_events, alerts, deployment_mode

ENDED = "silent mode ended: this alert was never shown to clinicians"
GOVERNANCE = "auditor"
MAY_SILENCE = frozenset({GOVERNANCE, "admin", "operator"})


class SilentMode(PermissionError):
    """Asked to show clinicians something while the deployment is silent."""

    def __init__(self) -> None:
        super().__init__(
            "silent mode: wardwatch is running on this hospital's patients without showing "
            "anything to clinicians until governance approves go-live"
        )


@dataclass(frozen=True, slots=True)
class Mode:
    silent: bool
    since: datetime | None
    changed_by: str
    reason: str


def mode(conn: Connection) -> Mode:
    row = conn.execute(select(deployment_mode).where(deployment_mode.c.id == 1)).first()
    if row is None:
        return Mode(False, None, "", "never set: live")
    return Mode(bool(row.silent), row.since, row.changed_by, row.reason)


def require_shown(conn: Connection) -> None:
    """Raise `SilentMode` if the deployment is silent (for the clinicians' surfaces)."""
    if records.deployment_silent(conn):
        raise SilentMode()


def set_silent(conn: Connection, silent: bool, *, by: str, role: str, reason: str,
               at: datetime | None = None, source: str = "cli") -> Mode:  # fmt: skip
    """Enter or leave silent mode; leaving is for governance alone (module docstring)."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    if not reason.strip():
        raise ValueError("say why (--reason): the change is on the record")
    if not silent and role != GOVERNANCE:
        raise NotPermitted(f"{by} ({role}) may not take the deployment live: that is a "
                           "governance decision (the auditor role)")  # fmt: skip
    if silent and role not in MAY_SILENCE:
        raise NotPermitted(f"{by} ({role}) may not put the deployment in silent mode")
    values = {"silent": silent, "since": at, "changed_by": by, "reason": reason.strip()}
    if conn.execute(sql_update(deployment_mode).where(deployment_mode.c.id == 1)
                    .values(**values)).rowcount == 0:  # fmt: skip
        conn.execute(insert(deployment_mode).values(id=1, **values))
    closed = [] if silent else _close_would_be_alerts(conn, at)
    audit.record(conn, audit.AuditEvent(
        action="deployment.silent" if silent else "deployment.live", actor=by, role=role,
        object="deployment", detail={"reason": reason.strip()[:300],
                                     "would_be_alerts_closed": len(closed)},
        at=at, source=source,
    ))  # fmt: skip
    return mode(conn)


def _close_would_be_alerts(conn: Connection, at: datetime) -> list[int]:
    """Close the silent alerts still open, each with an event saying why (the system did)."""
    found = find_alerts(conn, alerts.c.silent.is_(True), alerts.c.state.in_(ACTIVE_STATES))
    for alert in found:
        conn.execute(sql_update(alerts).where(alerts.c.alert_id == alert.alert_id)
                     .values(state="dismissed", closed_at=at, updated_at=at))  # fmt: skip
        conn.execute(insert(alert_events).values(
            alert_id=alert.alert_id, encounter_id=alert.encounter_id, at=at,
            actor=audit.SYSTEM, role="system", action="dismiss", from_state=alert.state.value,
            to_state="dismissed", reason_code="silent_mode_ended", note=ENDED,
        ))  # fmt: skip
    return [a.alert_id for a in found]
