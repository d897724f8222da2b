"""The role matrix: who may do what, and that it agrees with the alert workflow."""

from __future__ import annotations

import pytest

from wardwatch.alerts import workflow
from wardwatch.alerts.workflow import Actor, NotPermitted
from wardwatch.security import roles


def test_nurse_assesses_but_cannot_evaluate():
    assert roles.has_permission("nurse", "alert.assess")
    assert roles.has_permission("nurse", "alert.escalate")
    assert not roles.has_permission("nurse", "alert.evaluate")


def test_provider_evaluates_and_does_what_a_nurse_does():
    assert roles.has_permission("provider", "alert.evaluate")
    assert roles.permissions_of("nurse") < roles.permissions_of("provider")


def test_physician_is_the_provider_role():
    assert roles.canonical_role("Physician") == "provider"
    assert roles.has_permission("physician", "alert.evaluate")


def test_admin_manages_users_but_sees_no_patient_data():
    assert roles.has_permission("admin", "users.manage")
    assert not roles.has_permission("admin", "patient.read")
    assert not roles.permissions_of("admin") & roles.PATIENT_DATA
    assert roles.has_permission("admin", "break_glass")


def test_data_scientist_reads_deidentified_cohorts_only():
    granted = roles.permissions_of("data_scientist")
    assert "cohort.deidentified.read" in granted
    assert not granted & roles.PATIENT_DATA
    assert "break_glass" not in granted
    # the governance dashboard shows aggregates only (its break-the-glass queue: reviewers only)
    assert {p for p in granted if "read" in p} == {"cohort.deidentified.read", "governance.read"}


def test_auditor_reads_the_audit_trail_and_reviews_break_glass():
    assert roles.has_permission("governance", "audit.read")
    assert roles.has_permission("auditor", "break_glass.review")
    assert not roles.has_permission("auditor", "patient.read")
    assert not roles.has_permission("nurse", "audit.read")


def test_only_admins_manage_users():
    assert roles.roles_with("users.manage") == {"admin"}


@pytest.mark.parametrize(
    ("role", "sees"),
    [("nurse", True), ("provider", True), ("integration_engineer", True),
     ("data_scientist", False), ("auditor", False), ("admin", False)],
)  # fmt: skip
def test_who_sees_identified_patient_data(role, sees):
    assert roles.sees_patient_data(role) is sees


@pytest.mark.parametrize("action", sorted(workflow.PERMISSIONS))
def test_the_matrix_agrees_with_the_workflow_role_for_role(action):
    permission = roles.permission_for_action(action)
    assert roles.roles_with(permission) == workflow.PERMISSIONS[action]


def test_every_workflow_action_is_mapped_and_every_granted_permission_defined():
    assert set(roles.WORKFLOW_ACTIONS) == set(workflow.PERMISSIONS)
    for granted in roles.MATRIX.values():
        assert granted <= set(roles.PERMISSIONS)
    assert set(roles.WORKFLOW_ACTIONS.values()) <= set(roles.PERMISSIONS)


def test_every_human_role_needs_mfa_and_system_is_not_a_person():
    assert roles.MFA_REQUIRED == roles.HUMAN_ROLES
    assert "system" not in roles.HUMAN_ROLES
    assert all(roles.requires_mfa(role) for role in ("nurse", "admin", "physician"))


def test_unknown_roles_are_refused_or_denied():
    with pytest.raises(roles.UnknownRole, match="pharmacist"):
        roles.canonical_role("pharmacist")
    assert roles.permissions_of("pharmacist") == frozenset()
    assert not roles.has_permission("pharmacist", "patient.read")


def test_unknown_permission_is_a_bug():
    with pytest.raises(KeyError):
        roles.has_permission("nurse", "patients.read")


def test_require_permission_raises_not_permitted_with_who_may():
    roles.require_permission(Actor("dr-lee", "provider"), "alert.evaluate")
    with pytest.raises(NotPermitted, match="only a provider") as caught:
        roles.require_permission(Actor("n-ada", "nurse"), "alert.evaluate")
    assert isinstance(caught.value, PermissionError)


# The matrix as reviewed: changing who holds a permission must change this table too, on
# purpose, in the same commit (a privacy review reads this diff).
REVIEWED = {
    "patient.read": {"nurse", "provider"},
    "alert.assess": {"nurse", "provider"},
    "alert.escalate": {"nurse", "provider"},
    "alert.evaluate": {"provider"},
    "alert.resume": {"system"},
    "checklist.complete": {"nurse", "provider"},
    "whatif": {"nurse", "provider"},
    "feedback": {"nurse", "provider"},
    "quarantine.read": {"integration_engineer"},
    "ingest.write": {"integration_engineer", "system"},
    "cohort.deidentified.read": {"data_scientist"},
    "model.manage": {"data_scientist"},
    "model.promote": {"auditor"},
    "audit.read": {"auditor"},
    "users.manage": {"admin"},
    "break_glass": {"nurse", "provider", "integration_engineer", "admin"},
    "break_glass.review": {"auditor"},
    "governance.read": {"auditor", "data_scientist"},
    "monitor.acknowledge": {"auditor", "data_scientist"},
}


@pytest.mark.parametrize("permission", sorted(roles.PERMISSIONS))
def test_the_matrix_is_the_reviewed_one(permission):
    assert roles.roles_with(permission) == REVIEWED[permission]
