"""Security, privacy and audit: users, roles, MFA, sessions, the audit chain, consent and
de-identification."""
