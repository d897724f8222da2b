"""Who may do what: the role → permission matrix, as data.

Why data and not `if role == ...` scattered through routes: a reviewer (or a test) can read
the whole policy in one screen, and every route and API endpoint names one permission from
`PERMISSIONS`, so "who can see patient data?" is a question about this table alone.

    role                  permissions (see MATRIX below for the exact sets)
    nurse                 patient.read, alert.assess, alert.escalate, checklist.complete,
                          whatif, feedback, break_glass
    provider (physician)  the nurse's, plus alert.evaluate (confirm, dismiss, pause)
    integration_engineer  quarantine.read, ingest.write, break_glass
    data_scientist        cohort.deidentified.read, model.manage, governance.read,
                          monitor.acknowledge — never identified data
    auditor (governance)  audit.read, break_glass.review, model.promote, governance.read,
                          monitor.acknowledge
    admin                 users.manage, break_glass — no patient.read: an administrator sees
                          a patient only by breaking the glass, which is flagged for review
    system                the scoring loop and ingest: alert.resume, ingest.write

The alert workflow keeps its own action → roles table (`workflow.PERMISSIONS`), which the
state machine enforces. `WORKFLOW_ACTIONS` maps each workflow action to one permission here,
and `tests/security/test_roles.py` checks that the two tables agree role for role, so a page
can never allow what the workflow refuses (or the reverse).

MFA is required for every human role (`MFA_REQUIRED`): all of them but the data scientist
see identified patient data or can change who does, and the data scientist's de-identified
cohorts are still re-identifiable in the small; one rule for all is also the one nobody can
misconfigure.
"""

from __future__ import annotations

from collections.abc import Mapping

from wardwatch.alerts.workflow import Actor, NotPermitted

# Every permission a route or endpoint may name, with what it lets a person do.
PERMISSIONS: Mapping[str, str] = {
    "patient.read": "see identified patient data: worklist, patient page, alerts",
    "alert.assess": "record a nursing assessment of an alert",
    "alert.escalate": "escalate an alert (or a concern) to the provider",
    "alert.evaluate": "confirm, dismiss or pause an alert",
    "alert.resume": "resume a paused alert when its pause ends (the system's scoring loop)",
    "checklist.complete": "tick an item of the sepsis treatment checklist",
    "whatif": "ask the model what the risk would be if a measurement were different",
    "feedback": "tell the model's owners an alert was helpful or not",
    "quarantine.read": "read rejected input, payloads included (may hold patient data)",
    "ingest.write": "send observations in (HL7 v2, FHIR, files)",
    "cohort.deidentified.read": "read de-identified cohorts for training and validation",
    "model.manage": "train, register and shadow-run candidate models",
    "model.promote": "promote or roll back the active model",
    "audit.read": "read and verify the audit trail",
    "users.manage": "add, disable and enable users, reset their MFA, change roles",
    "break_glass": "open one patient's record without the usual permission, with a reason",
    "break_glass.review": "review break-the-glass accesses",
    "governance.read": (
        "see the governance dashboard: registry, drift, fairness, incidents; no patient data"
    ),
    "monitor.acknowledge": "acknowledge a drift notice as reviewed, with what was decided",
}

_CLINICIAN = frozenset(
    {
        "patient.read",
        "alert.assess",
        "alert.escalate",
        "checklist.complete",
        "whatif",
        "feedback",
        "break_glass",
    }
)

MATRIX: Mapping[str, frozenset[str]] = {
    "nurse": _CLINICIAN,
    "provider": _CLINICIAN | {"alert.evaluate"},
    "integration_engineer": frozenset({"quarantine.read", "ingest.write", "break_glass"}),
    "data_scientist": frozenset(
        {"cohort.deidentified.read", "model.manage", "governance.read", "monitor.acknowledge"}
    ),
    "auditor": frozenset(
        {
            "audit.read",
            "break_glass.review",
            "model.promote",
            "governance.read",
            "monitor.acknowledge",
        }
    ),
    "admin": frozenset({"users.manage", "break_glass"}),
    "system": frozenset({"alert.resume", "ingest.write"}),
}

# Other names people use for a role; stored and compared by the canonical name only.
ALIASES: Mapping[str, str] = {
    "physician": "provider",
    "doctor": "provider",
    "governance": "auditor",
    "integration": "integration_engineer",
}

# Roles a person can sign in with ("system" is the software itself and never signs in).
HUMAN_ROLES: frozenset[str] = frozenset(MATRIX) - {"system"}
MFA_REQUIRED: frozenset[str] = HUMAN_ROLES

# Permissions that show identified patient data (the privacy-relevant part of the matrix).
PATIENT_DATA: frozenset[str] = frozenset(
    {
        "patient.read",
        "alert.assess",
        "alert.escalate",
        "alert.evaluate",
        "checklist.complete",
        "whatif",
        "quarantine.read",
    }
)

# workflow action → the permission it needs here (see the module docstring).
WORKFLOW_ACTIONS: Mapping[str, str] = {
    "confirm": "alert.evaluate",
    "dismiss": "alert.evaluate",
    "pause": "alert.evaluate",
    "resume": "alert.resume",
    "escalate": "alert.escalate",
    "assess": "alert.assess",
    "complete_item": "checklist.complete",
}


class UnknownRole(ValueError):
    """A role name that is neither a role nor an alias of one."""


def canonical_role(name: str) -> str:
    """The stored name of role `name` ("physician" → "provider"); UnknownRole if none."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = ALIASES.get(key, key)
    if key not in MATRIX:
        known = ", ".join(sorted(HUMAN_ROLES | set(ALIASES)))
        raise UnknownRole(f"unknown role {name!r}; roles: {known}")
    return key


def permissions_of(role: str) -> frozenset[str]:
    """Everything `role` may do; the empty set for a role nobody defined (deny by default)."""
    return MATRIX.get(ALIASES.get(role, role), frozenset())


def has_permission(role: str, permission: str) -> bool:
    """Whether `role` holds `permission`. Unknown permissions are a bug, so they raise."""
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return permission in permissions_of(role)


def roles_with(permission: str) -> frozenset[str]:
    """The roles holding `permission` (for messages and for the consistency test)."""
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return frozenset(role for role, granted in MATRIX.items() if permission in granted)


def require_permission(actor: Actor, permission: str) -> None:
    """Raise `NotPermitted` (a PermissionError; the pages turn it into 403) unless allowed."""
    if not has_permission(actor.role, permission):
        roles = " or ".join(sorted(roles_with(permission))) or "nobody"
        raise NotPermitted(
            f"{actor.user_id} ({actor.role}) is not allowed to {PERMISSIONS[permission]}: "
            f"only a {roles} is ({permission})"
        )


def permission_for_action(action: str) -> str:
    """The permission a workflow action needs (KeyError for an action nobody mapped)."""
    return WORKFLOW_ACTIONS[action]


def sees_patient_data(role: str) -> bool:
    """Whether `role` sees identified patient data without breaking the glass."""
    return bool(permissions_of(role) & PATIENT_DATA)


def requires_mfa(role: str) -> bool:
    """Whether signing in as `role` needs a second factor (every human role does)."""
    return ALIASES.get(role, role) in MFA_REQUIRED
