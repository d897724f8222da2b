"""What every route needs, as FastAPI dependencies: a database connection, the active model,
the alert policy, the ward clock. Who is asking is `auth.principal`; what they may do,
`access.Require`.

`connection` is one transaction per request. Audit records a route queued (`queue_audit`:
reads of patient data) are appended just before it commits, last, because appending holds
the audit chain's head lock until the commit (see `security.audit`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine, select

from wardwatch.alerts.policy import PolicyBook
from wardwatch.clock import ward_now
from wardwatch.ingest.pipeline import Pipeline
from wardwatch.model.risk import RiskModel
from wardwatch.model.serving import Lineup, ServingModels
from wardwatch.security import audit
from wardwatch.store.schema import encounters


@dataclass(frozen=True)
class Services:
    """Everything the app was started with (stored on `app.state.services`).

    `models` is a fixed model (tests, offline tools) or the registry's `ServingModels`, in
    which case `model` is whatever the registry has active now and `book` the alert policy
    it runs with (the site's own thresholds, if a site configuration is active): a
    promotion, rollback or new site configuration shows on the next request, no restart.
    """

    engine: Engine
    models: RiskModel | ServingModels
    default_book: PolicyBook
    pipeline: Pipeline

    def _lineup(self, conn: Connection | None = None) -> Lineup:
        """The models in service; on `conn` if the caller has one (no second connection)."""
        if isinstance(self.models, RiskModel):
            return Lineup.only(self.models)
        return self.models.lineup(conn) if conn is not None else self.models.current(self.engine)

    @property
    def model(self) -> RiskModel:
        """The hospital's active model (the card; stays whose unit has no model of its own)."""
        return self._lineup().hospital

    @property
    def book(self) -> PolicyBook:
        """The alert policy the hospital's active model runs with (thresholds shown)."""
        lineup = self._lineup()
        return lineup.policy(lineup.hospital, self.default_book)

    def model_for(self, unit: str | None) -> RiskModel:
        """The model that scores a stay on `unit`: explanations and what-ifs must use it."""
        return self._lineup().for_unit(unit)

    def stay_model(self, conn: Connection, encounter_id: str) -> RiskModel:
        """`model_for` the unit of stay `encounter_id`."""
        if isinstance(self.models, RiskModel):
            return self.models
        query = select(encounters.c.unit).where(encounters.c.encounter_id == encounter_id)
        return self._lineup(conn).for_unit(conn.execute(query).scalar())


async def services(request: Request) -> Services:  # no I/O: run inline, not in the thread pool
    return request.app.state.services


def connection(request: Request, svc: Services = Depends(services)) -> Iterator[Connection]:  # noqa: B008
    """One transaction per request: committed when the route returns, rolled back on error."""
    with svc.engine.begin() as conn:
        yield conn
        if pending := getattr(request.state, "audit", None):
            audit.record_many(conn, _with_patients(conn, pending))


def queue_audit(request: Request, event: audit.AuditEvent) -> None:
    """Append `event` to the audit chain if and when this request's transaction commits."""
    if not hasattr(request.state, "audit"):
        request.state.audit = []
    request.state.audit.append(event)


def _with_patients(conn: Connection, events: list[audit.AuditEvent]) -> list[audit.AuditEvent]:
    """The events, each with the patient of its encounter (the audit trail names both)."""
    wanted = {e.encounter_id for e in events if e.encounter_id and not e.patient_id}
    if not wanted:
        return events
    query = select(encounters.c.encounter_id, encounters.c.patient_id).where(
        encounters.c.encounter_id.in_(wanted))  # fmt: skip
    patient_of = {row.encounter_id: row.patient_id for row in conn.execute(query)}
    return [e if e.patient_id or not e.encounter_id else
            replace(e, patient_id=patient_of.get(e.encounter_id)) for e in events]  # fmt: skip


def now(conn: Connection = Depends(connection)) -> datetime:  # noqa: B008
    return ward_now(conn)
