"""Alerts as read: their states and kinds, and the queries every screen asks.

Kept apart from `workflow` (which changes alerts) so that the worklist, the patient page, the
policy's ward round and CDS Hooks read alerts one way, without importing the state machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select

from wardwatch.store.schema import alert_events, alerts, deployment_mode


class State(StrEnum):
    OPEN = "open"
    PAUSED = "paused"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


class Kind(StrEnum):
    SEPSIS = "sepsis"  # the model's risk crossed the threshold
    REVIEW = "review"  # the model cannot be trusted here (out of distribution, stale, unsure)
    ESCALATION = "escalation"  # a nurse's concern without a model alert


ACTIVE = (State.OPEN, State.PAUSED)
ACTIVE_STATES = [state.value for state in ACTIVE]  # what the database compares


def utc_time(at: datetime | None, name: str = "at") -> datetime:
    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), not naive {at.isoformat()}")
    return at.astimezone(UTC)


def parse_kind(kind: str) -> Kind:
    if kind not in set(Kind):
        raise ValueError(f"unknown alert kind {kind!r}; valid kinds: {', '.join(Kind)}")
    return Kind(kind)


class AlertNotFound(LookupError):
    """No alert has this id."""


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One row of `alerts`, as read."""

    alert_id: int
    encounter_id: str
    patient_id: str
    kind: Kind
    state: State
    opened_at: datetime
    score_id: int | None
    risk: float | None
    model_version: str | None
    reasons: tuple[str, ...]
    paused_at: datetime | None
    paused_until: datetime | None
    pause_until_new_data: bool
    escalated: bool
    updated_at: datetime
    closed_at: datetime | None
    closed_risk: float | None
    silent: bool = False  # a would-be alert of silent mode (`alerts.silent`): never shown

    @property
    def active(self) -> bool:
        """Open or paused: still a question waiting for an answer."""
        return self.state in ACTIVE

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AlertRecord:
        values = {**row, "kind": Kind(row["kind"]), "state": State(row["state"])}
        values["reasons"] = tuple(json.loads(row["reasons"]))
        values["pause_until_new_data"] = bool(row["pause_until_new_data"])
        values["escalated"] = bool(row["escalated"])
        values["silent"] = bool(row.get("silent", False))
        return cls(**values)


def get_alert(conn: Connection, alert_id: int) -> AlertRecord:
    row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).mappings().first()
    if row is None:
        raise AlertNotFound(f"no alert with id {alert_id}")
    return AlertRecord.from_row(row)


def find_alerts(conn: Connection, *conditions: Any) -> list[AlertRecord]:
    query = select(alerts).where(*conditions)
    query = query.order_by(alerts.c.opened_at.desc(), alerts.c.alert_id.desc())
    return [AlertRecord.from_row(row) for row in conn.execute(query).mappings()]


def current_alerts(conn: Connection, encounter_id: str) -> list[AlertRecord]:
    """All of the encounter's alerts, newest first."""
    return find_alerts(conn, alerts.c.encounter_id == encounter_id)


def latest_alert(conn: Connection, encounter_id: str, kind: str) -> AlertRecord | None:
    """The encounter's newest alert of `kind`, in any state."""
    found = find_alerts(
        conn, alerts.c.encounter_id == encounter_id, alerts.c.kind == parse_kind(kind).value
    )
    return found[0] if found else None


def open_alerts(conn: Connection) -> list[AlertRecord]:
    """Every open or paused alert, of any encounter, newest first."""
    return find_alerts(conn, alerts.c.state.in_(ACTIVE_STATES))


def due_resumptions(conn: Connection, at: datetime) -> list[AlertRecord]:
    """Paused alerts whose pause has run out by `at` (pauses until new data alone never do)."""
    when = utc_time(at)
    return find_alerts(conn, alerts.c.state == State.PAUSED.value, alerts.c.paused_until <= when)


def alert_events_for(conn: Connection, alert_id: int) -> list[dict[str, Any]]:
    """The alert's timeline: who did what, when, from which state to which, oldest first."""
    query = select(alert_events).where(alert_events.c.alert_id == alert_id)
    return [dict(row) for row in conn.execute(query.order_by(alert_events.c.id)).mappings()]


def deployment_silent(conn: Connection) -> bool:
    """Whether the deployment is in silent mode (`alerts.silent`)."""
    query = select(deployment_mode.c.silent).where(deployment_mode.c.id == 1)
    return conn.execute(query).scalar() is True


def latest_alerts(
    conn: Connection, encounter_ids: Iterable[str], *, shown_only: bool = False
) -> dict[tuple[str, str], AlertRecord]:
    """The newest alert of each kind of each encounter, keyed (encounter_id, kind).

    `shown_only` leaves out the would-be alerts of silent mode (`alerts.silent`)."""
    query = select(alerts).where(alerts.c.encounter_id.in_(list(encounter_ids)))
    if shown_only:
        query = query.where(alerts.c.silent.is_(False))
    latest: dict[tuple[str, str], AlertRecord] = {}
    for row in conn.execute(query.order_by(alerts.c.alert_id)).mappings():
        record = AlertRecord.from_row(row)
        latest[(record.encounter_id, record.kind.value)] = record
    return latest
