"""Site configurations in the model registry: the thresholds a hospital set from its own data
(`wardwatch calibrate-site`), kept with their lineage and applied by the live alert policy.

A configuration belongs to one model version (its thresholds are that model's); activating
one replaces the version's previous configuration, is audited with the person and the
reason, and bumps the registry's generation, so the scoring service applies it from the next
ward round, without a restart (`model.serving`). The document is stored whole (per-unit
thresholds, optional prior shift, method, budget, data hash of the files it was calibrated
on, date, achieved figures): what was decided, on what evidence, is readable years later.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Column, Connection, Integer, String, Table, Text, insert, select
from sqlalchemy import update as sql_update

from wardwatch.model import registry
from wardwatch.security import audit
from wardwatch.site.config import SiteConfig
from wardwatch.store.schema import UtcDateTime, metadata

site_configs = Table(
    "site_configs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_version", String(64), nullable=False),
    Column("document", Text, nullable=False),  # SiteConfig.to_json()
    Column("data_hash", String(80), nullable=False),
    Column("method", String(64), nullable=False),
    Column("activated_at", UtcDateTime, nullable=False),
    Column("activated_by", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("active", Boolean, nullable=False),
)


def activate_site_config(conn: Connection, config: SiteConfig, *, by: str, role: str,
                         reason: str, at: datetime | None = None) -> int:  # fmt: skip
    """Store `config` and make it the one its model version runs with; returns its id."""
    if not reason.strip():
        raise registry.RegistryError("say why these thresholds (--reason): it is on the record")
    entry = registry.get_model(conn, config.model_version)  # must be a registered version
    at = (at or datetime.now(UTC)).astimezone(UTC)
    conn.execute(sql_update(site_configs).where(site_configs.c.model_version == entry.version)
                 .values(active=False))  # fmt: skip
    new_id = conn.execute(insert(site_configs).values(
        model_version=entry.version, document=config.to_json(), data_hash=config.data_hash,
        method=config.method, activated_at=at, activated_by=by, reason=reason.strip(),
        active=True,
    )).inserted_primary_key[0]  # fmt: skip
    audit.record(conn, audit.AuditEvent(
        action="site_config.activate", actor=by, role=role, object=f"site_config/{new_id}",
        detail={"model_version": entry.version, "method": config.method,
                "data_hash": config.data_hash, "thresholds": dict(config.thresholds)},
        at=at, source="cli",
    ))  # fmt: skip
    registry.bump_generation(conn)
    return int(new_id)


def active_site_configs(conn: Connection) -> dict[str, SiteConfig]:
    """Model version → its active site configuration."""
    query = select(site_configs.c.model_version, site_configs.c.document).where(
        site_configs.c.active.is_(True))  # fmt: skip
    return {row.model_version: SiteConfig.from_json(row.document) for row in conn.execute(query)}


def site_config_history(conn: Connection) -> list[dict[str, Any]]:
    query = select(site_configs).order_by(site_configs.c.id.desc())
    return [{**row._asdict(), "document": json.loads(row.document)} for row in conn.execute(query)]
