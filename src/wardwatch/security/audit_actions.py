"""The audit trail's vocabulary on one screen: every action the code base records, and what
it means. A reviewer checks here that each thing rule 5 names has its action; a test checks
that every action written anywhere in `src` is listed.

Names are dotted, lower case, `noun.verb` where a noun has several verbs ("alert.pause"). The
names `audit.ACTIONS` already knew are kept as they were: the FHIR export
(`audit_fhir._MAP`) maps them to standard AuditEvent codes, so renaming one would change
what a hospital's audit repository receives. A new name here still exports (as Application
Activity) until `audit_fhir` learns its standard code.

Outcomes are `audit.OUTCOMES`: success; denied (refused: a wrong password, a locked
account); error (it failed).
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping

ACTIONS: Mapping[str, str] = {
    # patient data read, scored, changed in value or exported
    "patient.read": "a person opened one patient's record",
    "patient.search": "a person searched for patients",
    "worklist.read": "a person read a unit's worklist (many patients at once)",
    "what_if": "a clinician asked what the risk would be were a value different",
    "quarantine.read": "a person read rejected input (its payload may hold patient data)",
    "cds.card": "an EHR (CDS Hooks client) fetched a patient's sepsis card",
    "score.create": "the system stored a risk score for a stay (one record per stay and round)",
    "export": "patient data left the system de-identified (format and counts, no identifiers)",
    # alerts and the decisions on them (alerts.workflow)
    "alert.open": "the system opened an alert (sepsis, or needs human review)",
    "alert.confirm": "a provider confirmed an alert: sepsis",
    "alert.dismiss": "a provider dismissed an alert, with a reason code",
    "alert.pause": "a provider paused an alert until more information comes",
    "alert.resume": "a paused alert came back (its pause ended, or new data)",
    "alert.escalate": "a nurse or provider escalated an alert",
    "evaluation.create": "a clinician recorded an evaluation of a patient",
    "assessment.create": "a nurse or provider recorded a bedside assessment on an alert",
    "checklist.complete": "an item of an alert's sepsis checklist was done",
    # models and their monitoring
    "model.promote": "a model version became the active one",
    "model.rollback": "the active model went back to an earlier version",
    "monitor.run": "a monitoring run (drift, calibration, fairness) stored its findings",
    "monitor.acknowledge": "a person acknowledged a monitoring notice",
    # signing in
    "login.success": "a person signed in (detail: the second factor; a recovery code is news)",
    "login.failure": "a sign-in was refused (detail: why, for the auditor only)",
    "logout": "a person signed out",
    "account.lock": "repeated failures locked a sign-in id (detail: failures, until when)",
    # accounts, credentials and permissions
    "user.create": "an administrator added a user, with a role",
    "user.disable": "an administrator disabled a user: no more sign-in",
    "user.enable": "an administrator enabled a user again, clearing any lockout",
    "user.password": "a user's password was replaced (never the password itself)",
    "permission.change": "a user's role changed (detail: old and new role)",
    "mfa.enrol": "a user was given a TOTP secret and recovery codes (detail: whether they "
    "replaced earlier ones; never the secrets)",
    "mfa.reset": "a user's TOTP secret and recovery codes were replaced (never the secrets)",
    "mfa.confirm": "the first code of a user's new TOTP secret was accepted: enrolment complete",
    "mfa.confirm_failure": "a code was refused for a TOTP secret not yet confirmed (a wrong "
    "code, a phone clock that is off, the wrong account scanned; never the code)",
    "session.revoke": "sessions were ended by someone else or everywhere (detail: how many)",
    "token.issue": "an API token was issued (detail: client, owner, scopes; never the token)",
    "token.revoke": "API tokens were revoked (one by id, or every token of a user)",
    "cds_client.add": "an administrator registered a CDS Hooks client (an EHR) as trusted",
    "cds_client.disable": "an administrator stopped trusting a CDS Hooks client (JWTs refused)",
    "model.register": "a model version was registered (checksummed artifact, card, lineage)",
    "model.shadow": "a model version started scoring in shadow (stored, never shown)",
    "model.unshadow": "a model version stopped scoring in shadow",
    "model.retire": "a model version was taken out of eligibility",
    "site_config.activate": "per-unit thresholds set from the site's own data were activated",
    "deployment.silent": "the deployment entered silent mode: nothing shown to clinicians",
    "deployment.live": "governance took the deployment live: risks and alerts are shown",
    # patient privacy
    "break_glass": "a person opened a patient's record without the usual permission",
    "break_glass.refused": "an attempt to break the glass was refused (detail: why, and the "
    "reason the person gave)",
    "break_glass.review": "an auditor reviewed a break-the-glass access",
    "consent.change": "a patient's consent to AI scoring or to training was recorded",
    # the audit trail itself
    "audit.verify": "someone verified the audit chain",
    "audit.anchor": "someone wrote the chain's head out to keep elsewhere",
    "audit.export": "someone exported the audit trail (FHIR AuditEvent)",
}

DETAIL_TEXT = 500  # characters of a free-text reason or note kept in an audit record


def clipped(text: str, limit: int = DETAIL_TEXT) -> str:
    """`text` short enough for a record's detail: the full text stays in its own table."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cli_operator() -> str:
    """Who runs a command at the server's console: `cli:` and the operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"
