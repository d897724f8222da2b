"""One patient's chart as the TREWS page shows it: the read model behind the patient page,
the JSON API's patient resource and the CDS Hooks card.

Everything a provider needs to evaluate an alert, in one read: the stay's worklist line (risk,
band, vitals with their ages), the risk over time with its uncertainty, why the model says
what it says (starred measurements, contributions: `explain`), the alerts with their history
and treatment checklists, the nursing assessments, and which model said it. The explanation
is computed on demand from the stay's record as of the chart's time with the active model;
for an opted-out patient there is no score and no explanation, and the chart says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, select

from wardwatch.alerts import workflow
from wardwatch.alerts.checklist import ChecklistItem
from wardwatch.alerts.policy import PolicyBook
from wardwatch.alerts.records import AlertRecord, alert_events_for, current_alerts
from wardwatch.clock import ward_now
from wardwatch.explain import Explanation, explain
from wardwatch.model.risk import RiskModel
from wardwatch.store.cohort import load_wide
from wardwatch.store.schema import nursing_assessments, scores
from wardwatch.ward import Bed, beds


class ChartNotFound(LookupError):
    """No stay with that id (or it has no admission time: nothing to chart)."""


@dataclass(frozen=True)
class AlertHistory:
    alert: AlertRecord
    events: list[dict]
    checklist: list[ChecklistItem]


@dataclass(frozen=True)
class Chart:
    at: datetime
    bed: Bed
    risk_history: pd.DataFrame  # as_of, risk, uncertainty, ood (active model, oldest first)
    explanation: Explanation | None  # None: opted out, or not scored yet
    alerts: list[AlertHistory]  # newest first
    assessments: list[dict]  # newest first
    model_version: str
    threshold: float | None

    @property
    def active_alert(self) -> AlertRecord | None:
        """The alert a provider is asked to evaluate now (open or paused), if any."""
        return next((h.alert for h in self.alerts if h.alert.active), None)


def open_chart(
    conn: Connection,
    encounter_id: str,
    model: RiskModel,
    *,
    at: datetime | None = None,
    book: PolicyBook | None = None,
) -> Chart:
    at = at or ward_now(conn)
    found = beds(conn, [encounter_id], at=at, book=book)
    if not found:
        raise ChartNotFound(f"no stay {encounter_id!r}")
    bed = found[0]
    return Chart(
        at=at,
        bed=bed,
        risk_history=risk_history(conn, encounter_id, at) if not bed.opted_out else _empty(),
        explanation=None if bed.opted_out else _explanation(conn, encounter_id, model, at),
        alerts=[_history(conn, a, at) for a in current_alerts(conn, encounter_id)],
        assessments=_assessments(conn, encounter_id),
        model_version=model.version,
        threshold=bed.threshold if bed.threshold is not None else model.threshold,
    )


def stay_history(conn: Connection, encounter_id: str, at: datetime) -> pd.DataFrame:
    """The stay's hourly record as of `at`, one stay as one patient (the model's unit)."""
    wide = load_wide(conn, encounter_ids=[encounter_id], until=at)
    return wide.assign(patient_id=wide["encounter_id"])


def _explanation(
    conn: Connection, encounter_id: str, model: RiskModel, at: datetime
) -> Explanation | None:
    history = stay_history(conn, encounter_id, at)
    return explain(model, history) if len(history) else None


def risk_history(conn: Connection, encounter_id: str, at: datetime) -> pd.DataFrame:
    query = (
        select(scores.c.as_of, scores.c.risk, scores.c.uncertainty, scores.c.ood)
        .where(scores.c.encounter_id == encounter_id, scores.c.role == "active")
        .where(scores.c.as_of <= at)
        .order_by(scores.c.id)
    )
    frame = pd.DataFrame(conn.execute(query).all(), columns=list(_empty().columns))
    return frame.groupby("as_of", as_index=False).last()  # a re-score of an hour supersedes


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=["as_of", "risk", "uncertainty", "ood"])


def _history(conn: Connection, alert: AlertRecord, at: datetime) -> AlertHistory:
    items = workflow.checklist(conn, alert.alert_id, at) if alert.state.value == "confirmed" else []
    return AlertHistory(alert, alert_events_for(conn, alert.alert_id), items)


def _assessments(conn: Connection, encounter_id: str) -> list[dict]:
    query = (
        select(nursing_assessments)
        .where(nursing_assessments.c.encounter_id == encounter_id)
        .order_by(nursing_assessments.c.id.desc())
    )
    rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        row["answers"] = json.loads(row["answers"])
    return rows
