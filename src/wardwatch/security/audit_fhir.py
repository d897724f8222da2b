"""The audit trail as FHIR R4 AuditEvent resources, one per line (NDJSON), for a hospital's
audit repository (an IHE BALP / ATNA consumer) or an auditor's own tools.

    audit_event(record)                      one stored record -> AuditEvent (a dict)
    export_ndjson(conn, out, since, patient) stream records as NDJSON, each one validated

How a record maps (R4 4.0.1; validated with fhir.resources' R4B models, identical here):

- `type` / `subtype`: the standard code where one fits (`rest` + the FHIR interaction for
  reads and writes of clinical records, DICOM 110114 User Authentication + 110122 Login for
  logins, 110113 Security Alert + 110127 Emergency Override for break-glass, 110106 Export,
  ...), and always our own action code as a second subtype, so nothing is lost in mapping.
- `action`: C/R/U/D/E by the same table; `outcome`: success 0, denied 4 (minor failure: the
  request was refused), error 8 (serious failure).
- `agent`: the actor, `requestor` true (every record names who asked), its role as text, and
  the source as `network.address` when it is an IP address.
- `source.observer`: wardwatch, an application server (security-source-type 4).
- `entity`: the patient (audit-entity-type 1, object-role 1), the encounter, the object with
  the detail JSON, and the chain itself (seq, source, field_sums, prev_hash, hash), so that
  an auditor holding only the export can recompute every hash.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Connection

from wardwatch.fhir_resources import CANONICAL, InvalidResource, instant
from wardwatch.security.audit import AuditRecord, records

Resource = dict[str, Any]

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ACTION_SYSTEM = f"{CANONICAL}/CodeSystem/audit-action"
CHAIN_SYSTEM = f"{CANONICAL}/audit-chain"
USER_SYSTEM = f"{CANONICAL}/users"

_REST = (EVENT_TYPE, "rest", "RESTful Operation")
_ACTIVITY = (DCM, "110100", "Application Activity")
_LOGIN = (DCM, "110114", "User Authentication")
_SECURITY = (DCM, "110113", "Security Alert")
_EXPORT = (DCM, "110106", "Export")
_AUDIT_LOG = (DCM, "110101", "Audit Log Used")
_Code = tuple[str, str, str]

# action -> (type, standard subtype or None, FHIR action code C/R/U/D/E)
_MAP: dict[str, tuple[_Code, _Code | None, str]] = {
    "patient.read": (_REST, (INTERACTION, "read", "read"), "R"),
    "patient.search": (_REST, (INTERACTION, "search", "search"), "E"),
    "worklist.read": (_REST, (INTERACTION, "search", "search"), "E"),
    "what_if": (_ACTIVITY, None, "E"),
    "export": (_EXPORT, None, "R"),
    "audit.export": (_EXPORT, None, "R"),
    "audit.verify": (_AUDIT_LOG, None, "R"),
    "audit.anchor": (_AUDIT_LOG, None, "C"),
    "model.promote": (_ACTIVITY, None, "U"),
    "model.rollback": (_ACTIVITY, None, "U"),
    "login.success": (_LOGIN, (DCM, "110122", "Login"), "E"),
    "login.failure": (_LOGIN, (DCM, "110122", "Login"), "E"),
    "logout": (_LOGIN, (DCM, "110123", "Logout"), "E"),
    "permission.change": (_SECURITY, (DCM, "110136", "Security Roles Changed"), "U"),
    "user.create": (_SECURITY, (DCM, "110137", "User Security Attributes Changed"), "C"),
    "break_glass": (_SECURITY, (DCM, "110127", "Emergency Override Started"), "E"),
    "break_glass.refused": (_SECURITY, (DCM, "110127", "Emergency Override Started"), "E"),
    "break_glass.review": (_AUDIT_LOG, None, "U"),
    "account.lock": (_SECURITY, (DCM, "110137", "User Security Attributes Changed"), "U"),
    "mfa.enrol": (_SECURITY, (DCM, "110137", "User Security Attributes Changed"), "C"),
    "mfa.reset": (_SECURITY, (DCM, "110137", "User Security Attributes Changed"), "U"),
    "mfa.confirm": (_LOGIN, None, "E"),  # the person proved the new factor works
    "mfa.confirm_failure": (_LOGIN, None, "E"),
    "session.revoke": (_SECURITY, (DCM, "110137", "User Security Attributes Changed"), "U"),
    "token.issue": (_SECURITY, (DCM, "110137", "User Security Attributes Changed"), "C"),
    "token.revoke": (_SECURITY, (DCM, "110137", "User Security Attributes Changed"), "U"),
}
_CREATE = (_REST, (INTERACTION, "create", "create"), "C")
_UPDATE = (_REST, (INTERACTION, "update", "update"), "U")
for _action in ("score.create", "alert.open", "evaluation.create", "assessment.create"):
    _MAP[_action] = _CREATE
for _action in ("alert.confirm", "alert.dismiss", "alert.pause", "alert.escalate",
                "consent.change"):  # fmt: skip
    _MAP[_action] = _UPDATE
_OUTCOME = {"success": "0", "denied": "4", "error": "8"}


def _coding(code: _Code) -> Resource:
    return {"system": code[0], "code": code[1], "display": code[2]}


def _agent(row: AuditRecord) -> Resource:
    agent: Resource = {
        "who": {"identifier": {"system": USER_SYSTEM, "value": row.actor}, "display": row.actor},
        "name": row.actor,
        "requestor": True,
    }
    if row.role:
        agent["role"] = [{"text": row.role}]
    with contextlib.suppress(ValueError):  # "cli", "mllp", "replay": not a network address
        agent["network"] = {"address": str(ipaddress.ip_address(row.source)), "type": "2"}
    return agent


def _entity(what: Resource, kind: str, **extra: Any) -> Resource:
    names = {"1": "Person", "2": "System Object"}
    return {"what": what, "type": {"system": ENTITY_TYPE, "code": kind, "display": names[kind]},
            **extra}  # fmt: skip


def _entities(row: AuditRecord) -> list[Resource]:
    found = []
    if row.patient_id:
        role = {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}
        found.append(_entity({"reference": f"Patient/{row.patient_id}"}, "1", role=role))
    if row.encounter_id:
        found.append(_entity({"reference": f"Encounter/{row.encounter_id}"}, "2"))
    if row.object or row.detail:
        extra = {"detail": [{"type": "detail", "valueString": row.detail}]} if row.detail else {}
        found.append(_entity({"display": row.object or row.action}, "2", **extra))
    chain = [("seq", str(row.seq)), ("source", row.source), ("field_sums", row.field_sums),
             ("prev_hash", row.prev_hash), ("hash", row.hash)]  # fmt: skip
    found.append(_entity({"identifier": {"system": CHAIN_SYSTEM, "value": str(row.seq)}}, "2",
                         name="wardwatch audit chain",
                         detail=[{"type": k, "valueString": v} for k, v in chain]))  # fmt: skip
    return found


def audit_event(row: AuditRecord) -> Resource:
    """One stored record as an R4 AuditEvent (a JSON-ready dict)."""
    kind, subtype, action = _MAP.get(row.action, (_ACTIVITY, None, "E"))
    subtypes = [_coding(subtype)] if subtype else []
    subtypes.append({"system": ACTION_SYSTEM, "code": row.action})
    event: Resource = {
        "resourceType": "AuditEvent",
        "id": f"audit-{row.seq}",
        "type": _coding(kind),
        "subtype": subtypes,
        "action": action,
        "recorded": instant(row.recorded),
        "outcome": _OUTCOME.get(row.outcome, "8"),  # "8": an outcome we never write
        "agent": [_agent(row)],
        "source": {
            "observer": {"display": "wardwatch"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": _entities(row),
    }
    reason = row.details.get("reason") if row.outcome != "success" else None
    if reason:
        event["outcomeDesc"] = str(reason)
    return event


def _validated(resource: Mapping[str, Any]) -> None:
    from fhir.resources.R4B.auditevent import AuditEvent  # slow to import: only on export

    try:
        AuditEvent.model_validate(resource)
    except ValueError as error:  # pydantic.ValidationError is a ValueError
        raise InvalidResource(f"AuditEvent fails R4B validation: {error}") from error


def export_ndjson(
    conn: Connection,
    out: TextIO,
    *,
    since: datetime | None = None,
    patient_id: str | None = None,
) -> int:
    """Write the records (from `since`, about `patient_id`) as NDJSON AuditEvents to `out`,
    in seq order, each validated against the R4B model; returns how many were written."""
    written = 0
    for row in records(conn, since=since, patient_id=patient_id, batch=2_000):
        resource = audit_event(row)
        _validated(resource)
        out.write(json.dumps(resource, ensure_ascii=False, separators=(",", ":")) + "\n")
        written += 1
    return written
