"""The model registry: every model version with its card and lineage, which one is active
where, which run in shadow, and every change as a single audited action.

    register(conn, store, source, by=)      copy a saved artifact in, checksummed (a version)
    promote(conn, version, scope=, by=, reason=)   make it the scope's active model
    rollback(conn, scope=, by=, reason=)    back to the model active before the last promotion
    shadow / unshadow(conn, version, scope=)       score in shadow (stored, never shown)
    retire(conn, version, by=, reason=)     no longer eligible; never the active one

**Where.** Metadata lives in the database (`model_versions`, `model_slots`, `model_events`);
the files in an artifact directory (`<home>/models/<version>/`), each listed with its sha256
in the artifact's manifest. The shipped model is registered in place (`shipped:`), so a fresh
install has an active model without copying anything.

**Scopes.** `hospital` (the default) or `unit:<name>` (e.g. `unit:MICU`): exactly one active
model per scope, which the table's primary key enforces; a stay is scored by its unit's active
model if its unit has one, else by the hospital's (`model.serving`). Any number of shadows.

**Safety.** Promoting and rolling back load and verify the artifact first: a corrupted one
raises `ArtifactError` and nothing changes, so the active model stays in service. Every
change bumps `generation`, which the scoring service checks before each round: a promotion or
rollback takes effect for the next observation, without a restart. A newly active or shadow
model starts its scoring mark at the newest observation, so it scores what arrives from now
on and the stays on the ward, not years of history.

Who may: `model.manage` (data scientists) registers and shadows; `model.promote` (governance)
promotes, rolls back and retires. Gates (`model.gates`) are checked by the caller before
`promote`; an override needs a reason, and both are stored on the event.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from wardwatch.model.artifact import SHIPPED, ArtifactError, load_model, model_version
from wardwatch.model.artifact import verified_files as verified
from wardwatch.model.risk import RiskModel
from wardwatch.security import audit
from wardwatch.store.schema import UtcDateTime, metadata, observations, scoring_marks

HOSPITAL = "hospital"
SHIPPED_PATH = "shipped:"
ACTIVE, SHADOW = "active", "shadow"

model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(64), primary_key=True),  # content-addressed: sepsis-<sha256[:12]>
    Column("label", String(100), nullable=False, default=""),
    Column("artifact", String(500), nullable=False),  # a directory, or "shipped:"
    Column("card", Text, nullable=False),  # the model card, JSON
    Column("lineage", Text, nullable=False),  # data hash, code, parameters (from the card)
    Column("threshold", String(32), nullable=False),
    Column("registered_at", UtcDateTime, nullable=False),
    Column("registered_by", String(64), nullable=False),
    Column("retired_at", UtcDateTime),
    Column("retired_by", String(64)),
)

model_slots = Table(  # who serves where now: one active per scope (the primary key), shadows
    "model_slots",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("role", String(8), primary_key=True),  # active | shadow
    Column("version", String(64), primary_key=True),
    Column("since", UtcDateTime, nullable=False),
)

model_events = Table(  # the registry's history, append-only (and in the audit chain)
    "model_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # register promote rollback shadow ...
    Column("scope", String(64)),
    Column("version", String(64), nullable=False),
    Column("previous", String(64)),  # the version this one replaced (promote, rollback)
    Column("reason", Text, nullable=False, default=""),
    Column("detail", Text),  # JSON: gate results, an override, site-config lineage
)

registry_state = Table(  # one row: bumped on every change, polled by the scoring service
    "registry_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("generation", Integer, nullable=False),
)


class RegistryError(ValueError):
    """A registry action that cannot be done; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    version: str
    label: str
    artifact: str
    card: dict[str, Any]
    lineage: dict[str, Any]
    threshold: float
    registered_at: datetime
    registered_by: str
    retired_at: datetime | None

    @property
    def directory(self) -> Path:
        return SHIPPED if self.artifact == SHIPPED_PATH else Path(self.artifact)


def _now(at: datetime | None) -> datetime:
    return (at or datetime.now(UTC)).astimezone(UTC)


def _entry(row: Any) -> ModelEntry:
    return ModelEntry(row.version, row.label, row.artifact, json.loads(row.card),
                      json.loads(row.lineage), float(row.threshold), row.registered_at,
                      row.registered_by, row.retired_at)  # fmt: skip


# ---------------------------------------------------------------- reading


def generation(conn: Connection) -> int:
    return conn.execute(select(registry_state.c.generation)).scalar() or 0


def get_model(conn: Connection, version: str) -> ModelEntry:
    """The registered version (a unique prefix will do); RegistryError if none or several."""
    rows = conn.execute(
        select(model_versions).where(model_versions.c.version.startswith(version, autoescape=True))
    ).all()
    exact = [r for r in rows if r.version == version]
    if len(exact) == 1 or len(rows) == 1:
        return _entry((exact or rows)[0])
    if not rows:
        raise RegistryError(f"no registered model {version!r}: see `wardwatch models list`")
    raise RegistryError(f"{version!r} names {len(rows)} models: give more of the version")


def list_models(conn: Connection) -> list[ModelEntry]:
    rows = conn.execute(select(model_versions).order_by(model_versions.c.registered_at))
    return [_entry(r) for r in rows]


def slots(conn: Connection) -> list[tuple[str, str, str, datetime]]:
    """(scope, role, version, since) for every model in service, actives first."""
    query = select(model_slots).order_by(model_slots.c.scope, model_slots.c.role,
                                         model_slots.c.since)  # fmt: skip
    return [(r.scope, r.role, r.version, r.since) for r in conn.execute(query)]


def active_version(conn: Connection, scope: str = HOSPITAL) -> str | None:
    query = select(model_slots.c.version).where(model_slots.c.scope == scope,
                                                model_slots.c.role == ACTIVE)  # fmt: skip
    return conn.execute(query).scalar()


def shadow_versions(conn: Connection, scope: str = HOSPITAL) -> list[str]:
    query = select(model_slots.c.version).where(model_slots.c.scope == scope,
                                                model_slots.c.role == SHADOW)  # fmt: skip
    return sorted(conn.execute(query).scalars())


def history(conn: Connection, limit: int | None = None) -> list[dict[str, Any]]:
    """The registry's events, newest first."""
    query = select(model_events).order_by(model_events.c.id.desc()).limit(limit)
    return [{**r._asdict(), "detail": json.loads(r.detail) if r.detail else None}
            for r in conn.execute(query)]  # fmt: skip


def load_entry(entry: ModelEntry) -> RiskModel:
    """The model of a registered version, after verifying every checksum (ArtifactError)."""
    model = load_model(entry.directory)
    if model.version != entry.version:
        raise ArtifactError(f"{entry.directory}: holds {model.version}, registered as "
                            f"{entry.version}; the artifact was replaced")  # fmt: skip
    return model


# ---------------------------------------------------------------- changing


def _event(conn: Connection, action: str, version: str, *, by: str, role: str, at: datetime,
           scope: str | None = None, previous: str | None = None, reason: str = "",
           detail: dict[str, Any] | None = None, source: str = "cli") -> None:  # fmt: skip
    row = {
        "at": at,
        "actor": by,
        "action": action,
        "scope": scope,
        "version": version,
        "previous": previous,
        "reason": reason,
        "detail": json.dumps(detail, sort_keys=True, default=str) if detail else None,
    }
    row["action"] = action.removeprefix("model.")  # the registry's own history: "promote"
    conn.execute(insert(model_events).values(**row))
    small = {k: v for k, v in {"scope": scope, "previous": previous, "override":
             (detail or {}).get("override")}.items() if v}  # fmt: skip
    audit.record(conn, audit.AuditEvent(
        action=action, actor=by, role=role, object=f"model/{version}",
        detail={**small, "reason": reason[:300]} if reason else small or None, at=at,
        source=source,
    ))  # fmt: skip
    bump_generation(conn)


def bump_generation(conn: Connection) -> None:
    """Tell the scoring service the lineup changed (models, or their site configurations)."""
    if conn.execute(update(registry_state).values(generation=registry_state.c.generation + 1)
                    ).rowcount == 0:  # fmt: skip
        conn.execute(insert(registry_state).values(id=1, generation=1))


def register(conn: Connection, store: Path, source: Path, *, by: str, role: str,
             label: str = "", at: datetime | None = None) -> ModelEntry:  # fmt: skip
    """Copy the artifact in `source` into `store/<version>/` and register it (idempotent)."""
    at = _now(at)
    files = verified(Path(source))  # refuses a corrupted or unlisted artifact
    version = model_version(files)
    existing = conn.execute(select(model_versions).where(model_versions.c.version == version))
    if (row := existing.first()) is not None:
        return _entry(row)
    target = Path(store) / version
    if Path(source).resolve() != SHIPPED.resolve():
        _copy_verified(Path(source), target, files)
    artifact = SHIPPED_PATH if Path(source).resolve() == SHIPPED.resolve() else str(target)
    return _insert(conn, version, artifact, files, by=by, role=role, label=label, at=at)


def _copy_verified(source: Path, target: Path, files: dict[str, bytes]) -> None:
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    if model_version(verified(staging)) != model_version(files):
        raise ArtifactError(f"{source}: the copy does not verify; nothing registered")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _insert(conn: Connection, version: str, artifact: str, files: dict[str, bytes], *,
            by: str, role: str, label: str, at: datetime) -> ModelEntry:  # fmt: skip
    card = json.loads(files["card.json"]) if "card.json" in files else {}
    spec = json.loads(files["model.json"])
    lineage = card.get("lineage") or spec.get("metadata", {}).get("lineage") or {}
    conn.execute(insert(model_versions).values(
        version=version, label=label or card.get("name", "") or "", artifact=artifact,
        card=json.dumps(card), lineage=json.dumps(lineage), threshold=str(spec["threshold"]),
        registered_at=at, registered_by=by,
    ))  # fmt: skip
    _event(conn, "model.register", version, by=by, role=role, at=at, reason=label)
    return get_model(conn, version)


def ensure_shipped_active(conn: Connection, at: datetime | None = None) -> str:
    """On a fresh store: register the shipped model and make it the hospital's active one."""
    current = active_version(conn, HOSPITAL)
    if current is not None:
        return current
    entry = register(conn, SHIPPED.parent, SHIPPED, by=audit.SYSTEM, role="system",
                     label="shipped model (PhysioNet 2019 set A)", at=at)  # fmt: skip
    # The first model of a store owes every stay its scores: its mark starts at the beginning.
    _set_active(conn, HOSPITAL, entry.version, _now(at), start_now=False)
    _event(conn, "model.promote", entry.version, by=audit.SYSTEM, role="system", at=_now(at),
           scope=HOSPITAL, reason="first start: the shipped model")  # fmt: skip
    return entry.version


def _start_mark(conn: Connection, version: str) -> None:
    """A model new to service scores from the newest observation on (module docstring)."""
    exists = select(scoring_marks.c.model_version).where(scoring_marks.c.model_version == version)
    if conn.execute(exists).first() is None:
        newest = conn.execute(select(func.max(observations.c.id))).scalar() or 0
        conn.execute(insert(scoring_marks).values(model_version=version,
                                                  through_observation_id=newest))  # fmt: skip


def _set_active(conn: Connection, scope: str, version: str, at: datetime,
                *, start_now: bool = True) -> None:  # fmt: skip
    conn.execute(delete(model_slots).where(model_slots.c.scope == scope,
                                           model_slots.c.version == version))  # fmt: skip
    conn.execute(delete(model_slots).where(model_slots.c.scope == scope,
                                           model_slots.c.role == ACTIVE))  # fmt: skip
    conn.execute(insert(model_slots).values(scope=scope, role=ACTIVE, version=version, since=at))
    if start_now:
        _start_mark(conn, version)


def _servable(conn: Connection, version: str) -> ModelEntry:
    entry = get_model(conn, version)
    if entry.retired_at is not None:
        raise RegistryError(f"{entry.version} is retired: register a new version instead")
    load_entry(entry)  # ArtifactError for a corrupted artifact: nothing changes
    return entry


def promote(conn: Connection, version: str, *, by: str, role: str, reason: str,
            scope: str = HOSPITAL, detail: dict[str, Any] | None = None,
            at: datetime | None = None) -> ModelEntry:  # fmt: skip
    """Make `version` the active model of `scope` (the one it replaces is kept for rollback)."""
    if not reason.strip():
        raise RegistryError("say why this model is promoted (--reason): it is on the record")
    entry, at = _servable(conn, version), _now(at)
    previous = active_version(conn, scope)
    if previous == entry.version:
        raise RegistryError(f"{entry.version} is already the active model of {scope}")
    _set_active(conn, scope, entry.version, at)
    _event(conn, "model.promote", entry.version, by=by, role=role, at=at, scope=scope,
           previous=previous, reason=reason.strip(), detail=detail)  # fmt: skip
    return entry


def rollback(conn: Connection, *, by: str, role: str, reason: str, scope: str = HOSPITAL,
             at: datetime | None = None) -> ModelEntry:  # fmt: skip
    """One step back: the model that was active before the current one became active."""
    if not reason.strip():
        raise RegistryError("say why you roll back (--reason): it is on the record")
    current = active_version(conn, scope)
    query = (select(model_events.c.previous)
             .where(model_events.c.scope == scope, model_events.c.version == current,
                    model_events.c.action.in_(("promote", "rollback")))
             .order_by(model_events.c.id.desc()).limit(1))  # fmt: skip
    previous = conn.execute(query).scalar()
    if previous is None:
        raise RegistryError(f"{scope} has no earlier active model to roll back to")
    entry, at = _servable(conn, previous), _now(at)
    _set_active(conn, scope, entry.version, at)
    _event(conn, "model.rollback", entry.version, by=by, role=role, at=at, scope=scope,
           previous=current, reason=reason.strip())  # fmt: skip
    return entry


def shadow(conn: Connection, version: str, *, by: str, role: str, scope: str = HOSPITAL,
           reason: str = "", at: datetime | None = None) -> ModelEntry:  # fmt: skip
    """Score `version` beside the active model of `scope`: stored, never shown."""
    entry, at = _servable(conn, version), _now(at)
    if active_version(conn, scope) == entry.version:
        raise RegistryError(f"{entry.version} is the active model of {scope}, not a shadow")
    if entry.version in shadow_versions(conn, scope):
        return entry
    conn.execute(insert(model_slots).values(scope=scope, role=SHADOW, version=entry.version,
                                            since=at))  # fmt: skip
    _start_mark(conn, entry.version)
    _event(conn, "model.shadow", entry.version, by=by, role=role, at=at, scope=scope, reason=reason)
    return entry


def unshadow(conn: Connection, version: str, *, by: str, role: str, scope: str = HOSPITAL,
             reason: str = "", at: datetime | None = None) -> None:  # fmt: skip
    entry = get_model(conn, version)
    gone = conn.execute(delete(model_slots).where(
        model_slots.c.scope == scope, model_slots.c.role == SHADOW,
        model_slots.c.version == entry.version)).rowcount  # fmt: skip
    if gone:
        _event(conn, "model.unshadow", entry.version, by=by, role=role, at=_now(at), scope=scope,
               reason=reason)  # fmt: skip


def retire(conn: Connection, version: str, *, by: str, role: str, reason: str,
           at: datetime | None = None) -> ModelEntry:  # fmt: skip
    """No longer eligible for service; refused for a model active anywhere."""
    entry, at = get_model(conn, version), _now(at)
    serving = [s for s, r, v, _ in slots(conn) if v == entry.version and r == ACTIVE]
    if serving:
        raise RegistryError(f"{entry.version} is active in {', '.join(serving)}: promote or "
                            "roll back to another model first")  # fmt: skip
    conn.execute(delete(model_slots).where(model_slots.c.version == entry.version))
    conn.execute(update(model_versions).where(model_versions.c.version == entry.version)
                 .values(retired_at=at, retired_by=by))  # fmt: skip
    _event(conn, "model.retire", entry.version, by=by, role=role, at=at, reason=reason)
    return get_model(conn, entry.version)
