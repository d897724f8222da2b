"""Break the glass: opening one patient's record without the usual permission.

Emergencies do not respect role tables: the administrator restoring service during a
resuscitation, the integration engineer chasing one patient's missing lactate, a clinician
covering another unit. Refusing them harms patients; allowing them silently harms privacy.
So access is possible, but only with a written reason, only for one encounter, only for an
hour, and every grant waits in a review queue (`pending_reviews`) until an auditor has read
it. A reviewer may not review their own grant.

A grant gives `patient.read` on that encounter and nothing else: it lets a person see, not
act (evaluating an alert still needs the role that may).

Both the grant (`break_glass`) and its review (`break_glass.review`) are in the audit trail,
with the patient, in the caller's transaction: the review queue is a table an administrator
could edit, the chain is what proves the access happened and who judged it.

So is every attempt that was refused (`break_glass.refused`: who, which stay, why refused,
and the reason they gave): a role that may not break the glass trying anyway, or a reason too
short to judge, is what a privacy officer most needs to see. `break_glass` records its own
refusals (`refuse`) and then raises; callers that refuse for reasons of their own (a stay
that does not exist, a role refused before the call) record them with `refuse` too. The
record is written in the caller's transaction, which must therefore commit although the
attempt failed: catch the error inside the transaction, or the refusal is rolled back with it.
`refused_attempts` and `refusals_by_person` read them back from the trail for governance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
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

from wardwatch.alerts.records import utc_time
from wardwatch.alerts.workflow import Actor, NotPermitted
from wardwatch.security import audit, roles
from wardwatch.security.audit_actions import clipped
from wardwatch.security.users import User
from wardwatch.store.schema import UtcDateTime, encounters, metadata

MIN_REASON = 10
DEFAULT_DURATION = timedelta(hours=1)

grants = Table(
    "break_glass_grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(64), ForeignKey("users.user_id"), nullable=False),
    Column("role", String(32), nullable=False),  # the role they held when they broke the glass
    Column("encounter_id", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("granted_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("reviewed", Boolean, nullable=False, default=False),
    Column("reviewed_by", String(64)),
    Column("reviewed_at", UtcDateTime),
    Column("review_note", Text),
    Index("ix_break_glass_user_encounter", "user_id", "encounter_id"),
    Index("ix_break_glass_reviewed", "reviewed"),
)


@dataclass(frozen=True, slots=True)
class BreakGlassGrant:
    grant_id: int
    user_id: str
    role: str
    encounter_id: str
    reason: str
    granted_at: datetime
    expires_at: datetime
    reviewed: bool
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str | None

    def active_at(self, at: datetime) -> bool:
        return self.granted_at <= at < self.expires_at


def _grant(row: Any) -> BreakGlassGrant:
    return BreakGlassGrant(row.id, row.user_id, row.role, row.encounter_id, row.reason,
                           row.granted_at, row.expires_at, row.reviewed, row.reviewed_by,
                           row.reviewed_at, row.review_note)  # fmt: skip


def break_glass(
    conn: Connection,
    user: Actor | User,
    encounter_id: str,
    reason: str,
    at: datetime,
    *,
    duration: timedelta = DEFAULT_DURATION,
    source: str = "cli",
) -> BreakGlassGrant:
    """Grant `user` an hour's read access to one encounter, for a reason, flagged for review.

    Raises NotPermitted if the role may not break the glass, ValueError for a reason shorter
    than `MIN_REASON` characters (a reason is what the reviewer judges). Either refusal is
    recorded first, in `conn`'s transaction (module docstring: commit it).
    """
    actor = Actor(user.user_id, user.role)
    reason = " ".join(reason.split())
    try:
        _check(actor, reason)
    except (NotPermitted, ValueError) as error:
        refuse(conn, actor, encounter_id, str(error), reason=reason, source=source)
        raise
    at = utc_time(at)
    result = conn.execute(
        insert(grants).values(
            user_id=user.user_id, role=user.role, encounter_id=encounter_id, reason=reason,
            granted_at=at, expires_at=at + duration, reviewed=False,
        )
    )  # fmt: skip
    grant_id = result.inserted_primary_key[0]  # type: ignore[index]
    grant = _grant(conn.execute(select(grants).where(grants.c.id == grant_id)).one())
    _audit(conn, "break_glass", actor, grant.encounter_id, f"break_glass/{grant.grant_id}",
           source, {"reason": clipped(reason),
                    "expires_at": grant.expires_at.isoformat()})  # fmt: skip
    return grant


def _check(actor: Actor, reason: str) -> None:
    roles.require_permission(actor, "break_glass")
    if len(reason) < MIN_REASON:
        raise ValueError(f"say why (at least {MIN_REASON} characters): it will be reviewed")


def refuse(
    conn: Connection, actor: Actor | User, encounter_id: str, why: str, *, reason: str = "",
    source: str = "cli", at: datetime | None = None,
) -> None:  # fmt: skip
    """Record a refused attempt to break the glass: who, which stay, why it was refused and
    the reason they gave, in the caller's transaction (which must commit: module docstring).
    `at` is when it was refused: now (the wall clock, as every audit record) unless given."""
    detail = {"refused": clipped(why)}
    if reason.strip():
        detail["reason"] = clipped(" ".join(reason.split()))
    # the id as asked for: it may name no stay, and may be longer than a stored one
    who = Actor(actor.user_id[:64], actor.role[:32])  # an API token's client name may be long
    _audit(conn, "break_glass.refused", who, encounter_id[:64],
           f"encounter/{encounter_id}"[:200], source, detail, outcome="denied", at=at)  # fmt: skip


def active_grant(
    conn: Connection, user_id: str, encounter_id: str, at: datetime
) -> BreakGlassGrant | None:
    """The user's grant for that encounter that is live at `at` (the newest), or None."""
    at = utc_time(at)
    row = conn.execute(
        select(grants)
        .where(grants.c.user_id == user_id, grants.c.encounter_id == encounter_id,
               grants.c.granted_at <= at, grants.c.expires_at > at)
        .order_by(grants.c.expires_at.desc()).limit(1)
    ).first()  # fmt: skip
    return None if row is None else _grant(row)


def may_read_patient(conn: Connection, actor: Actor, encounter_id: str, at: datetime) -> bool:
    """`patient.read` by role, or by a live break-the-glass grant for this encounter."""
    if roles.has_permission(actor.role, "patient.read"):
        return True
    return active_grant(conn, actor.user_id, encounter_id, at) is not None


def pending_break_glass_reviews(conn: Connection) -> list[BreakGlassGrant]:
    """Every grant no auditor has reviewed yet, oldest first."""
    query = select(grants).where(grants.c.reviewed.is_(False)).order_by(grants.c.granted_at)
    return [_grant(row) for row in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class RefusedAttempt:
    """One refused attempt to break the glass, as its audit record tells it."""

    at: datetime
    user_id: str
    role: str  # the role they held when they tried
    encounter_id: str  # the stay asked for: it may name none that exists
    why: str  # why it was refused
    reason: str  # what they typed, shortened as the record keeps it ("" if nothing)


def _refusals_since(since: datetime) -> Any:
    # ix_audit_events_action_at: the query reads this kind's window only, not the whole trail
    return (audit.audit_events.c.at > utc_time(since),
            audit.audit_events.c.action == "break_glass.refused")  # fmt: skip


def refused_attempts(conn: Connection, since: datetime, limit: int = 50) -> list[RefusedAttempt]:
    """The refused attempts recorded after `since`, newest first, at most `limit`: read from
    the audit trail, which is where they are kept (there is no table of refusals to edit)."""
    events = audit.audit_events.c
    query = (select(events.at, events.actor, events.role, events.encounter_id, events.detail)
             .where(*_refusals_since(since)).order_by(events.at.desc(), events.seq.desc())
             .limit(limit))  # fmt: skip
    return [_refused(row) for row in conn.execute(query)]


def _refused(row: Any) -> RefusedAttempt:
    detail = json.loads(row.detail) if row.detail else {}
    why, reason = str(detail.get("refused", "")), str(detail.get("reason", ""))
    return RefusedAttempt(row.at, row.actor, row.role, row.encounter_id or "", why, reason)


def refusals_by_person(conn: Connection, since: datetime) -> list[tuple[str, int]]:
    """(who, how many refusals) after `since`, most first: one person refused again and again
    is what a privacy officer looks for. Counted in full, however many `refused_attempts`
    lists."""
    events = audit.audit_events.c
    count = func.count().label("refusals")
    query = (select(events.actor, count).where(*_refusals_since(since))
             .group_by(events.actor).order_by(count.desc(), events.actor))  # fmt: skip
    return [(row.actor, int(row.refusals)) for row in conn.execute(query)]


def review(
    conn: Connection, grant_id: int, reviewer: Actor, note: str, at: datetime, *,
    source: str = "cli",
) -> BreakGlassGrant:  # fmt: skip
    """Mark a grant reviewed, with the reviewer's note (required; not one's own grant)."""
    roles.require_permission(reviewer, "break_glass.review")
    row = conn.execute(select(grants).where(grants.c.id == grant_id)).first()
    if row is None:
        raise LookupError(f"no break-the-glass grant {grant_id}")
    if row.user_id == reviewer.user_id:
        raise NotPermitted("nobody reviews their own break-the-glass access")
    if not note.strip():
        raise ValueError("write what the review found (appropriate, or what follows)")
    conn.execute(
        update(grants).where(grants.c.id == grant_id)
        .values(reviewed=True, reviewed_by=reviewer.user_id, reviewed_at=utc_time(at),
                review_note=note.strip())
    )  # fmt: skip
    grant = _grant(conn.execute(select(grants).where(grants.c.id == grant_id)).one())
    _audit(conn, "break_glass.review", reviewer, grant.encounter_id,
           f"break_glass/{grant.grant_id}", source,
           {"note": clipped(note.strip()), "grant_of": grant.user_id})  # fmt: skip
    return grant


def _audit(conn: Connection, action: str, actor: Actor, encounter_id: str, what: str,
           source: str, detail: dict[str, str], outcome: str = "success",
           at: datetime | None = None) -> None:  # fmt: skip
    """Append the record of a grant, a review or a refusal, naming the patient, in the
    caller's transaction (rule 5)."""
    patient_id = conn.execute(
        select(encounters.c.patient_id).where(encounters.c.encounter_id == encounter_id)
    ).scalar()  # None: a stay not (yet) in the store, still audited by its encounter
    audit.record(conn, audit.AuditEvent(
        action, actor=actor.user_id, role=actor.role, patient_id=patient_id,
        encounter_id=encounter_id, object=what, source=source[:64], outcome=outcome,
        detail=detail, at=at,
    ))  # fmt: skip
