"""The JSON API's bodies, as Pydantic models: what the OpenAPI document promises, exactly.

The read models (`ward.Bed`, `chart.Chart`, `alerts.records.AlertRecord`, ...) stay plain
dataclasses; each model here has an `of(...)` that turns one into its JSON shape, so the API
says what the pages say (ward.py's rule: one read model behind every view).

Inputs are as strict as the domain allows, so that a request the schema calls valid is one the
domain accepts: what-if values carry each variable's plausible range (the same table
`explain.what_if` checks), an evaluation is one of three shapes told apart by `action`, and
times must carry their zone. Unknown members are refused, never ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    create_model,
    model_validator,
)

from wardwatch.alerts.checklist import ChecklistItem
from wardwatch.alerts.records import AlertRecord
from wardwatch.alerts.workflow import DISMISS_REASONS
from wardwatch.chart import Chart
from wardwatch.explain import Measurement, WhatIf
from wardwatch.ingest.pipeline import IngestSummary
from wardwatch.ingest.psv import MEASURED
from wardwatch.scoring import OPTED_OUT
from wardwatch.terminology import wording
from wardwatch.ward import Bed, Reading

NOT_SCORED_YET = "no score in the last 24 hours (no data yet, or the stay is not scored)"


def _plain_time(value: Any) -> Any:
    """pandas Timestamps (the read models' frames) as plain datetimes."""
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def _text_only(value: Any) -> Any:
    """Refuse numbers: Pydantic would read one as a Unix time, the schema promises text."""
    if isinstance(value, int | float):
        raise ValueError("a time is ISO 8601 text with its zone, e.g. 2026-01-01T08:00:00Z")
    return value


def _utc_in_range(value: datetime) -> datetime:
    """An aware time as UTC; a ValueError (so a 422) if it cannot be expressed in UTC."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


Time = Annotated[datetime, BeforeValidator(_plain_time)]
Moment = Annotated[AwareDatetime, BeforeValidator(_text_only), AfterValidator(_utc_in_range)]
Note = Annotated[str, Field(max_length=2000)]
# Input numbers and flags as JSON types only: no "1.5" for a number, no 0 for false.
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Flag = Annotated[bool, Strict()]


class Strict(BaseModel):
    """Request bodies: members the API does not know are an error (fail loud)."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- problems


class ProblemIssue(BaseModel):
    loc: list[str | int] = Field(description="Where: e.g. ['body', 'changes', 'Lactate'].")
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details; members beyond these may be added (e.g. `incident`)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI reference naming the kind of problem; 'about:blank' "
                                  "when the HTTP status says it all.")  # fmt: skip
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str = Field(description="The path of the request that failed.")
    errors: list[ProblemIssue] | None = Field(None, description="Validation errors, one each.")


# ---------------------------------------------------------------- alerts


class Alert(BaseModel):
    alert_id: int
    encounter_id: str
    patient_id: str
    kind: Literal["sepsis", "review", "escalation"]
    state: Literal["open", "paused", "confirmed", "dismissed"]
    active: bool = Field(description="Open or paused: still waiting for a clinician's answer.")
    opened_at: Time
    risk: float | None
    model_version: str | None
    reasons: list[str]
    paused_at: Time | None
    paused_until: Time | None
    pause_until_new_data: bool
    escalated: bool
    updated_at: Time
    closed_at: Time | None
    closed_risk: float | None

    @classmethod
    def of(cls, record: AlertRecord) -> Alert:
        fields = {name: getattr(record, name) for name in cls.model_fields if name != "active"}
        fields |= {"kind": record.kind.value, "state": record.state.value}
        return cls(**fields | {"active": record.active, "reasons": list(record.reasons)})


class AlertEvent(BaseModel):
    at: Time
    actor: str
    role: str
    action: str
    from_state: str | None
    to_state: str
    reason_code: str | None
    note: str | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> AlertEvent:
        return cls(**{name: row[name] for name in cls.model_fields})


class ChecklistEntry(BaseModel):
    item: str
    title: str
    due_at: Time
    applicable: bool
    why: str | None
    done_at: Time | None
    done_by: str | None
    note: str | None
    status: Literal["done", "due", "overdue", "not applicable"]
    minutes_left: int | None
    late: bool

    @classmethod
    def of(cls, entry: ChecklistItem) -> ChecklistEntry:
        fields = {name: getattr(entry, name) for name in cls.model_fields}
        return cls(**fields | {"status": entry.status.value})


class AlertDetail(Alert):
    events: list[AlertEvent] = Field(description="Who did what, when; oldest first.")
    checklist: list[ChecklistEntry] = Field(description="The treatment bundle, once confirmed.")


class AlertList(BaseModel):
    alerts: list[Alert]


# ---------------------------------------------------------------- evaluation (input)

DismissReason = StrEnum("DismissReason", {code: code for code in DISMISS_REASONS})  # type: ignore[misc]

_LACTATE = wording.reference("Lactate")


class Confirm(Strict):
    """Sepsis confirmed: the alert closes and its treatment checklist starts."""

    action: Literal["confirm"]
    note: Note | None = None
    lactate: Number | None = Field(
        None, ge=float(_LACTATE["low"]), le=float(_LACTATE["high"]),  # type: ignore[arg-type]
        description="mmol/L, if known: decides whether fluids and a repeat lactate apply.",
    )  # fmt: skip
    hypotension: Flag | None = None


class Dismiss(Strict):
    """Not sepsis, with a reason from the list ('other' needs a note)."""

    action: Literal["dismiss"]
    reason_code: DismissReason = Field(  # type: ignore[valid-type]
        description="; ".join(f"{code}: {text}" for code, text in DISMISS_REASONS.items())
    )
    note: Note | None = None


class Pause(Strict):
    """Ask again later: at a time (after the ward clock), when new data arrives, or both."""

    action: Literal["pause"]
    until: Moment | None = None
    until_new_data: Flag = False
    note: Note | None = None


Evaluation = Annotated[Confirm | Dismiss | Pause, Field(discriminator="action")]


# ---------------------------------------------------------------- patients


class VitalSign(BaseModel):
    variable: str
    name: str
    value: float | None = Field(description="None: not measured in the last 24 hours.")
    text: str
    at: Time | None
    hours_ago: float | None

    @classmethod
    def of(cls, reading: Reading) -> VitalSign:
        return cls(**{name: getattr(reading, name) for name in cls.model_fields})


class PatientLine(BaseModel):
    """One stay as the worklist shows it. Risk fields are None when the stay is not scored
    (`not_scored_reason` says why, e.g. the patient opted out of AI scoring)."""

    encounter_id: str
    patient_id: str
    unit: str | None
    admitted_at: Time
    hours_on_unit: float
    opted_out: bool
    risk: float | None
    uncertainty: float | None
    ood: bool | None = Field(description="Input unlike the training population.")
    band: Literal["high", "raised", "low", "none"]
    trend: Literal["up", "down", "steady"] | None
    threshold: float | None
    scored_at: Time | None
    model_version: str | None
    not_scored_reason: str | None
    last_data_at: Time | None
    vitals: list[VitalSign]
    alert_state: str
    alerts: list[Alert] = Field(description="The newest alert of each kind.")

    @classmethod
    def of(cls, bed: Bed) -> PatientLine:
        same = ("encounter_id", "patient_id", "unit", "admitted_at", "hours_on_unit", "opted_out",
                "band", "trend", "threshold", "last_data_at", "alert_state")  # fmt: skip
        scored = bed.risk is not None
        return cls(
            **{name: getattr(bed, name) for name in same},
            risk=bed.risk, uncertainty=bed.uncertainty, ood=bed.ood if scored else None,
            scored_at=bed.scored_at, model_version=bed.model_version,
            not_scored_reason=None if scored else not_scored_reason(bed.opted_out),
            vitals=[VitalSign.of(r) for r in bed.vitals],
            alerts=[Alert.of(a) for a in (bed.sepsis, bed.escalation, bed.review) if a],
        )  # fmt: skip


def not_scored_reason(opted_out: bool) -> str:
    return OPTED_OUT if opted_out else NOT_SCORED_YET


class Worklist(BaseModel):
    at: Time = Field(description="The ward clock the worklist was read at.")
    unit: str | None
    patients: list[PatientLine] = Field(description="Highest risk first.")


class StarredMeasurement(BaseModel):
    variable: str
    display: str
    value: float | None
    unit: str
    measured_at: Time | None = Field(description="The end of the stay's hour it was measured in.")
    hours_ago: int | None
    normal: str
    risk_change: float | None = Field(description="Risk minus the risk were it typical.")
    sentence: str

    @classmethod
    def of(cls, m: Measurement, admitted_at: datetime) -> StarredMeasurement:
        fields = {name: getattr(m, name) for name in cls.model_fields if name != "measured_at"}
        hour = m.measured_hour
        at = None if hour is None else _plain_time(admitted_at) + timedelta(hours=hour)
        return cls(**fields, measured_at=at)


class Assessment(BaseModel):
    id: int
    at: Time
    actor: str
    alert_id: int | None
    answers: dict[str, str]
    concern: bool
    note: str | None


class PatientChart(BaseModel):
    at: Time
    bed: PatientLine
    model_version: str = Field(description="The active model, which explains the risk.")
    threshold: float | None
    starred: list[StarredMeasurement] = Field(description="The measurements driving the risk.")
    alerts: list[Alert] = Field(description="Newest first.")
    assessments: list[Assessment] = Field(description="Nursing assessments, newest first.")

    @classmethod
    def of(cls, chart: Chart) -> PatientChart:
        starred = chart.explanation.starred if chart.explanation is not None else ()
        return cls(
            at=chart.at, bed=PatientLine.of(chart.bed), model_version=chart.model_version,
            threshold=chart.threshold,
            starred=[StarredMeasurement.of(m, chart.bed.admitted_at) for m in starred],
            alerts=[Alert.of(h.alert) for h in chart.alerts],
            assessments=[Assessment(**{k: row[k] for k in Assessment.model_fields})
                         for row in chart.assessments],
        )  # fmt: skip


class ScorePoint(BaseModel):
    as_of: Time
    risk: float
    uncertainty: float
    ood: bool


class RiskHistory(BaseModel):
    encounter_id: str
    not_scored_reason: str | None = Field(description="Set when the stay is not scored.")
    scores: list[ScorePoint] = Field(description="The active model's scores, oldest first.")


# ---------------------------------------------------------------- what-if


def _change(variable: str) -> Any:
    ref = wording.reference(variable)
    return (Number, Field(
        None, ge=float(ref["low"]), le=float(ref["high"]),  # type: ignore[arg-type]
        description=f"{wording.display(variable)}, {wording.unit(variable) or 'no unit'}",
        json_schema_extra=lambda schema: schema.pop("default", None),
    ))  # fmt: skip


def _at_least_one(model: BaseModel) -> BaseModel:
    if not model.model_dump(exclude_none=True):
        raise ValueError("name at least one variable to change, e.g. {'Lactate': 1.0}")
    return model


Changes = create_model(  # type: ignore[call-overload]
    "Changes",
    __config__=ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1}),
    __doc__="Variables (by code) and the value to try, in the canonical unit.",
    __validators__={"at_least_one": model_validator(mode="after")(_at_least_one)},
    **{variable: _change(variable) for variable in MEASURED},
)


class WhatIfQuestion(Strict):
    changes: Changes  # type: ignore[valid-type]

    def edits(self) -> dict[str, float]:
        return self.changes.model_dump(exclude_none=True)  # type: ignore[attr-defined]


class WhatIfAnswer(BaseModel):
    changes: dict[str, float]
    risk_before: float | None
    uncertainty_before: float | None
    risk_after: float | None
    uncertainty_after: float | None
    ood_after: bool | None
    sentence: str
    not_scored_reason: str | None

    @classmethod
    def of(cls, answer: WhatIf) -> WhatIfAnswer:
        fields = {name: getattr(answer, name) for name in
                  ("risk_before", "uncertainty_before", "risk_after", "uncertainty_after",
                   "ood_after", "sentence")}  # fmt: skip
        return cls(**fields, changes=dict(answer.changes), not_scored_reason=None)

    @classmethod
    def unscored(cls, changes: dict[str, float], reason: str) -> WhatIfAnswer:
        return cls(
            changes=changes, risk_before=None, uncertainty_before=None, risk_after=None,
            uncertainty_after=None, ood_after=None, not_scored_reason=reason,
            sentence=f"No what-if: this stay is not scored ({reason}).",
        )  # fmt: skip


# ---------------------------------------------------------------- ingest and quarantine


class IngestResult(BaseModel):
    """What became of everything in the document: nothing is left out of these counts."""

    received: int = Field(description="Observations (and rejected resources) read.")
    accepted: int = Field(description="New observations stored.")
    duplicates: int = Field(description="Observations already stored (same source id).")
    quarantined: dict[str, int] = Field(description="Kept out, by reason code.")
    quarantined_total: int
    ignored: dict[str, int] = Field(description="Resources wardwatch does not use, by type.")
    patients: int

    @classmethod
    def of(cls, summary: IngestSummary) -> IngestResult:
        return cls(
            received=summary.received, accepted=summary.accepted,
            duplicates=summary.duplicates, quarantined=dict(summary.quarantined),
            quarantined_total=summary.quarantined_total, ignored=dict(summary.ignored),
            patients=summary.patients,
        )  # fmt: skip


class QuarantineItem(BaseModel):
    id: int
    received_at: Time
    source: str
    source_id: str
    patient_id: str | None
    reason_code: str
    reason: str
    payload: str = Field(description="What was sent: whole from /api/quarantine/{id}, the "
                                     "first characters in a list.")  # fmt: skip
    payload_chars: int = Field(description="The length of the whole payload.")


class QuarantinePage(BaseModel):
    total: int = Field(description="Items matching the filter, on all pages.")
    limit: int
    offset: int
    reason: str | None
    items: list[QuarantineItem] = Field(description="Newest first.")


class QuarantineSummary(BaseModel):
    total: int
    by_reason: dict[str, int]
