"""The CDS Hooks card: one stay's sepsis risk, why, and what to do, as an EHR shows it.

Pure: `CardFacts` (read by `web.cds_hooks` from the worklist's read model and `explain`) in,
card JSON out. The card says what the worklist says, in the same words (`ward.Bed`,
`terminology.wording`), so a risk cannot read differently in the EHR and on the ward screen.

    indicator   critical   a sepsis alert is open
                warning    a sepsis alert is paused, a nurse's concern or a needs-human-review
                           flag awaits an answer, or the risk is in the high band without alert
                info       otherwise
    suggestions only while a sepsis alert is active (open or paused), at most one chosen:
                1 "confirm sepsis and order the SEP-1 bundle" (accepting it confirms the alert)
                2 "measure lactate first" (accepting it pauses the alert until new data)
    overrideReasons  the workflow's dismissal reasons, whenever the card presents an active
                alert: overriding with one dismisses that alert (see `cds_hooks.feedback`)

**Card and suggestion uuids carry what they are about.** Feedback names only the card's uuid,
so the uuid must lead back to the alert without a lookup table that could be lost or differ
between server processes. `card_uuid` packs (alert id, score id, item) into the 122 free bits
of an RFC 9562 version-8 UUID behind a fixed 48-bit tag; `read_card_uuid` unpacks it and
refuses any uuid that is not ours. Deterministic: the same alert and score give the same card
uuid on every request and every server. Not a secret: knowing an alert id gives no power that
the actor's own permissions (checked by the workflow) do not.

The orders are FHIR R4 resources (ServiceRequest, MedicationRequest) with status "draft" and
intent "proposal": the EHR shows them for a clinician to sign, wardwatch never orders. They are
validated with fhir.resources' R4B models like everything we send (`fhir_resources.validate`).
Fluids (30 mL/kg crystalloid) are proposed only when the record shows their SEP-1 indication
(hypotension or lactate ≥ 4 mmol/L in the last 24 h); otherwise the card says why not.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from wardwatch.alerts.records import AlertRecord, Kind, State
from wardwatch.alerts.workflow import DISMISS_REASONS
from wardwatch.explain import Explanation
from wardwatch.fhir_resources import (
    CANONICAL,
    DISMISS_REASON_SYSTEM,
    LOINC,
    OOD_SENTENCE,
    UCUM,
    Resource,
    reference,
    validate,
)
from wardwatch.terminology import wording
from wardwatch.ward import Bed

SUMMARY_LIMIT = 140  # CDS Hooks: a summary is under 140 characters

# ---------------------------------------------------------------- card uuids

_TAG = 0x7761_7264_7761  # "wardwa": the 48 bits that mark a uuid as one of our cards
_FORMAT = 1  # layout version, 4 bits
_ALERT_BITS, _SCORE_BITS = 30, 32
CARD, BUNDLE, LACTATE_FIRST = 0, 1, 2  # the item a uuid names: the card or a suggestion
SUGGESTION_LABELS = {
    BUNDLE: "Confirm sepsis and order the SEP-1 bundle",
    LACTATE_FIRST: "Not sure yet: measure lactate first (pauses the alert until new data)",
}


@dataclass(frozen=True, slots=True)
class CardRef:
    """What a card (or suggestion) uuid names."""

    alert_id: int | None  # the alert the card presented, None when it presented none
    score_id: int | None
    item: int  # CARD, BUNDLE or LACTATE_FIRST


def card_uuid(alert_id: int | None, score_id: int | None, item: int = CARD) -> str:
    """The deterministic uuid of a card (item CARD) or of one of its suggestions."""
    alert, score = alert_id or 0, score_id or 0
    if not (0 <= alert < 2**_ALERT_BITS and 0 <= score < 2**_SCORE_BITS and 0 <= item < 256):
        raise ValueError(f"cannot pack alert {alert_id}, score {score_id}, item {item} in a uuid")
    value = (_TAG << 80) | (8 << 76) | (((_FORMAT << 8) | item) << 64) | (0b10 << 62)
    return str(uuid.UUID(int=value | (alert << _SCORE_BITS) | score))


def read_card_uuid(text: str) -> CardRef:
    """Unpack `card_uuid`; ValueError when `text` is not a uuid wardwatch made."""
    try:
        value = uuid.UUID(text.removeprefix("urn:uuid:")).int
    except (AttributeError, ValueError):
        raise ValueError(f"{text!r} is not a uuid") from None
    head = (value >> 80, (value >> 76) & 0xF, (value >> 72) & 0xF, (value >> 62) & 0b11)
    if head != (_TAG, 8, _FORMAT, 0b10):
        raise ValueError(f"{text!r} is not the uuid of a wardwatch card")
    alert = (value >> _SCORE_BITS) & (2**_ALERT_BITS - 1)
    score = value & (2**_SCORE_BITS - 1)
    return CardRef(alert or None, score or None, (value >> 64) & 0xFF)


# ---------------------------------------------------------------- what a card is built from


@dataclass(frozen=True)
class CardFacts:
    """One stay as the card shows it, read at `at` (see `web.cds_hooks.read_facts`)."""

    at: datetime
    bed: Bed
    score_id: int | None
    present: bool  # on the ward at `at` (not discharged)
    explanation: Explanation | None  # of the stored score; None without one
    explanation_note: str | None  # why there is no explanation, when there is a score

    @property
    def alert(self) -> AlertRecord | None:
        """The active alert the card presents: sepsis first, then a nurse's concern, then a
        needs-human-review flag (the worklist's order)."""
        for record in (self.bed.sepsis, self.bed.escalation, self.bed.review):
            if record is not None and record.active:
                return record
        return None


def _model_label(version: str) -> str:
    return f"wardwatch sepsis model {version}"


def _source(version: str) -> Resource:
    topic = {"system": f"{CANONICAL}/CodeSystem/cds-topic",
             "code": "sepsis-early-warning", "display": "Sepsis early warning"}  # fmt: skip
    return {"label": _model_label(version), "topic": topic}


def _links(base_url: str, encounter_id: str) -> list[Resource]:
    url = f"{base_url}/patients/{quote(encounter_id, safe='')}"
    return [{"label": "Open the patient in wardwatch", "url": url, "type": "absolute"}]


def _clock(moment: datetime) -> str:
    return f"{moment:%d %b %H:%M} UTC"


# ---------------------------------------------------------------- the risk card


def indicator(facts: CardFacts) -> str:
    alert = facts.alert
    if alert is not None and alert.kind is Kind.SEPSIS and alert.state is State.OPEN:
        return "critical"
    if alert is not None or facts.bed.band == "high":
        return "warning"
    return "info"


def summary(facts: CardFacts) -> str:
    """ "Sepsis risk 8.1% (high) — sepsis alert open", under 140 characters."""
    bed = facts.bed
    assert bed.risk is not None  # the risk card is only built for a scored stay
    text = f"Sepsis risk {wording.percent(bed.risk)} ({bed.band})"
    if facts.alert is not None:
        text += f" — {bed.alert_state}"
    elif bed.band == "high":
        text += " — no alert open"
    if bed.ood:
        text += "; unusual inputs, trust it less"
    return text if len(text) < SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 2] + "…"


def _alert_lines(alert: AlertRecord) -> list[str]:
    name = {Kind.SEPSIS: "Sepsis alert", Kind.REVIEW: "Needs human review",
            Kind.ESCALATION: "Nurse concern"}[alert.kind]  # fmt: skip
    lines = [f"**{name} {alert.state.value}** since {_clock(alert.opened_at)}:"]
    return lines + [f"- {reason}" for reason in alert.reasons]


def _why_lines(facts: CardFacts) -> list[str]:
    explanation = facts.explanation
    if explanation is None:
        return [f"*{facts.explanation_note}*"] if facts.explanation_note else []
    when = _clock(facts.bed.scored_at) if facts.bed.scored_at else "the last score"
    lines = [f"**Why** — the measurements that raise the risk most (★), as of {when}:"]
    starred = explanation.starred
    if not starred:
        return [*lines, "- no single measurement raises it above a typical patient's value"]
    return lines + [f"- ★ {m.sentence}" for m in starred]


def _trust_line(bed: Bed) -> str:
    spread = f"**Uncertainty** ± {100 * (bed.uncertainty or 0.0):.1f}% (spread of the model's "
    ood = f"**{OOD_SENTENCE}**" if bed.ood else "Inputs lie within the training population."
    return f"{spread}bagged members). {ood}"


def _vitals_line(bed: Bed) -> str:
    parts = [
        f"{r.name} {r.text}" + ("" if r.hours_ago is None else f" ({wording.ago(r.hours_ago)})")
        for r in bed.vitals
    ]
    return "**Latest vital signs** (24 h): " + " · ".join(parts)


def detail(facts: CardFacts, fluids_note: str | None) -> str:
    """The card's GitHub-flavoured markdown: alert, why, how sure, vitals, model."""
    bed = facts.bed
    blocks: list[list[str]] = []
    if (alert := facts.alert) is not None:
        blocks.append(_alert_lines(alert))
    blocks += [_why_lines(facts), [_trust_line(bed)], [_vitals_line(bed)]]
    if fluids_note:
        blocks.append([fluids_note])
    scored = _clock(bed.scored_at) if bed.scored_at else "unknown time"
    footer = f"*{_model_label(bed.model_version or '?')}, score of {scored}. The model informs; "
    blocks.append([footer + "the clinician decides.*"])
    return "\n\n".join("\n".join(block) for block in blocks if block)


def risk_card(facts: CardFacts, base_url: str) -> Resource:
    """The card for a scored stay (see the module docstring)."""
    bed, alert = facts.bed, facts.alert
    fluids, fluids_note = fluids_indication(bed, facts.explanation)
    card: Resource = {
        "uuid": card_uuid(None if alert is None else alert.alert_id, facts.score_id),
        "summary": summary(facts),
        "indicator": indicator(facts),
        "detail": detail(facts, fluids_note if _orders_apply(alert) else None),
        "source": _source(bed.model_version or "?"),
        "links": _links(base_url, bed.encounter_id),
    }
    if alert is not None:
        card["overrideReasons"] = override_reasons()
    if _orders_apply(alert):
        assert alert is not None
        card["suggestions"] = suggestions(bed, alert, facts.score_id, fluids)
        card["selectionBehavior"] = "at-most-one"
    return card


def _orders_apply(alert: AlertRecord | None) -> bool:
    return alert is not None and alert.kind is Kind.SEPSIS and alert.active


def not_scored_card(facts: CardFacts, base_url: str, version: str) -> Resource:
    """A stay on the ward without a score in the last 24 h: say so, because a silent card
    would read as "low risk" (missing is not normal)."""
    return {
        "summary": "Sepsis risk not available: no score for this stay in the last 24 h",
        "indicator": "info",
        "detail": "wardwatch has no current score for this stay (no data yet, or scoring is "
        "behind). Assess sepsis risk clinically; the card updates once the stay is scored.",
        "source": _source(version),
        "links": _links(base_url, facts.bed.encounter_id),
    }


def opted_out_card(version: str) -> Resource:
    """The patient opted out of AI scoring: no risk, and the clinician is told why."""
    return {
        "summary": "Not scored: the patient opted out of AI sepsis scoring",
        "indicator": "info",
        "detail": "This patient asked not to be scored by wardwatch's AI model, so there is no "
        "sepsis risk to show. Assess sepsis risk clinically and with the usual early-warning "
        "scores.",
        "source": _source(version),
    }


def override_reasons() -> list[Resource]:
    """The workflow's dismissal reasons, as CDS Hooks override reasons (Coding)."""
    return [
        {"code": code, "system": DISMISS_REASON_SYSTEM, "display": display}
        for code, display in DISMISS_REASONS.items()
    ]


# ---------------------------------------------------------------- the SEP-1 orders


def fluids_indication(bed: Bed, explanation: Explanation | None) -> tuple[bool, str]:
    """Whether the record shows SEP-1's indication for 30 mL/kg crystalloid (hypotension,
    or lactate ≥ 4 mmol/L, in the last 24 h), and the sentence saying why or why not."""
    readings = {r.variable: r.value for r in bed.vitals if r.value is not None}
    low_bp = readings.get("SBP", 999.0) < 90 or readings.get("MAP", 999.0) < 65
    lactate = _recent_lactate(explanation)
    if low_bp or (lactate is not None and lactate >= 4):
        why = "hypotension" if low_bp else f"lactate {wording.value_of('Lactate', lactate or 0)}"
        return True, f"**Fluids**: 30 mL/kg crystalloid proposed ({why})."
    missing = [name for name, absent in (("lactate", lactate is None),
               ("blood pressure", not {"SBP", "MAP"} & readings.keys())) if absent]  # fmt: skip
    if missing:
        return False, (f"**Fluids** not proposed: no {' and no '.join(missing)} in the last 24 h "
                       "— check for hypotension or lactate ≥ 4 mmol/L.")  # fmt: skip
    return False, "**Fluids** not proposed: no hypotension, and lactate < 4 mmol/L."


def _recent_lactate(explanation: Explanation | None) -> float | None:
    if explanation is None:
        return None
    found = [m for m in explanation.measurements if m.variable == "Lactate"]
    lactate = found[0] if found else None
    if lactate is None or lactate.hours_ago is None or lactate.hours_ago > 24:
        return None
    return lactate.value


def _subject(bed: Bed) -> Resource:
    return {"subject": reference("Patient", bed.patient_id),
            "encounter": reference("Encounter", bed.encounter_id)}  # fmt: skip


def _reason(alert: AlertRecord) -> list[Resource]:
    return [{"text": f"Sepsis early warning (wardwatch alert {alert.alert_id}, "
                     f"time zero {_clock(alert.opened_at)})"}]  # fmt: skip


def _lab(bed: Bed, alert: AlertRecord, code: str, display: str, note: str) -> Resource:
    category = {"system": "http://snomed.info/sct", "code": "108252007",
                "display": "Laboratory procedure"}  # fmt: skip
    return {
        "resourceType": "ServiceRequest", "status": "draft", "intent": "proposal",
        "priority": "stat", "category": [{"coding": [category]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        **_subject(bed), "reasonCode": _reason(alert), "note": [{"text": note}],
    }  # fmt: skip


def _medication(bed: Bed, alert: AlertRecord, text: str, dosage: Resource) -> Resource:
    return {
        "resourceType": "MedicationRequest", "status": "draft", "intent": "proposal",
        "priority": "stat", "medicationCodeableConcept": {"text": text}, **_subject(bed),
        "reasonCode": _reason(alert), "dosageInstruction": [dosage],
    }  # fmt: skip


def _orders(bed: Bed, alert: AlertRecord) -> dict[str, Resource]:
    fluids_dose = {"value": 30, "unit": "mL/kg", "system": UCUM, "code": "mL/kg"}
    return {
        "lactate": _lab(bed, alert, "2524-7", "Lactate [Moles/volume] in Serum or Plasma",
                        "SEP-1: within 3 h of time zero; repeat within 6 h if > 2 mmol/L."),
        "blood_cultures": _lab(bed, alert, "600-7", "Bacteria identified in Blood by Culture",
                               "SEP-1: two sets, drawn before antibiotics."),
        "antibiotics": _medication(bed, alert, "Broad-spectrum antibiotic per local sepsis "
                                   "protocol", {"text": "Per local sepsis protocol, after blood "
                                                "cultures are drawn, within 3 h of time zero."}),
        "fluids": _medication(bed, alert, "Crystalloid (lactated Ringer's or 0.9% sodium "
                              "chloride)", {"text": "30 mL/kg IV within 3 h of time zero",
                                            "route": {"text": "intravenous"},
                                            "doseAndRate": [{"doseQuantity": fluids_dose}]}),
    }  # fmt: skip


_DESCRIPTIONS = {
    "lactate": "Order a lactate (stat)",
    "blood_cultures": "Order blood cultures, two sets, before antibiotics",
    "antibiotics": "Propose broad-spectrum antibiotics per local protocol",
    "fluids": "Propose 30 mL/kg crystalloid",
}


def _action(name: str, resource: Resource) -> Resource:
    return {"type": "create", "description": _DESCRIPTIONS[name], "resource": validate(resource)}


def suggestions(bed: Bed, alert: AlertRecord, score_id: int | None, fluids: bool) -> list[Resource]:
    """1: confirm sepsis and order the SEP-1 bundle; 2: measure lactate first and pause."""
    orders = _orders(bed, alert)
    bundle = ["lactate", "blood_cultures", "antibiotics", *(["fluids"] if fluids else [])]
    return [
        {"label": SUGGESTION_LABELS[BUNDLE], "isRecommended": True,
         "uuid": card_uuid(alert.alert_id, score_id, BUNDLE),
         "actions": [_action(name, orders[name]) for name in bundle]},
        {"label": SUGGESTION_LABELS[LACTATE_FIRST],
         "uuid": card_uuid(alert.alert_id, score_id, LACTATE_FIRST),
         "actions": [_action("lactate", orders["lactate"])]},
    ]  # fmt: skip
