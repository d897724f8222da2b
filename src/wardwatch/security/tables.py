"""Every security module that defines a table, imported once so `init_db` creates them all."""

from wardwatch.security import (
    audit,
    break_glass,
    cds_clients,
    consent,
    login,
    mfa,
    sessions,
    tokens,
    users,
)

__all__ = ["audit", "break_glass", "cds_clients", "consent", "login", "mfa", "sessions",
           "tokens", "users"]  # fmt: skip
