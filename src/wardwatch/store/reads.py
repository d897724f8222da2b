"""Queries the rest of the system asks of the store."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, func, select

from wardwatch.store.schema import encounters, observations, patients, quarantine

_CHUNK = 900  # stays under SQLite's bound-parameter limit on old builds


def known_patients(conn: Connection, patient_ids: Iterable[str]) -> set[str]:
    """Which of `patient_ids` the store already knows."""
    wanted = sorted(set(patient_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        query = select(patients.c.patient_id).where(patients.c.patient_id.in_(chunk))
        found.update(conn.scalars(query))
    return found


def patient_observations(
    conn: Connection, patient_id: str, until: datetime | None = None
) -> pd.DataFrame:
    """A patient's observations in time order (the order they happened, not arrived)."""
    query = select(observations).where(observations.c.patient_id == patient_id)
    if until is not None:
        query = query.where(observations.c.effective_at <= until)
    query = query.order_by(observations.c.effective_at, observations.c.id)
    rows = conn.execute(query).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in observations.columns])


def quarantine_items(
    conn: Connection, reason_code: str | None = None, limit: int = 100
) -> list[dict[str, object]]:
    query = select(quarantine).order_by(quarantine.c.id.desc()).limit(limit)
    if reason_code:
        query = query.where(quarantine.c.reason_code == reason_code)
    return [dict(r) for r in conn.execute(query).mappings()]


def quarantine_counts(conn: Connection) -> dict[str, int]:
    query = select(quarantine.c.reason_code, func.count()).group_by(quarantine.c.reason_code)
    return {code: int(n) for code, n in conn.execute(query)}


def table_counts(conn: Connection) -> dict[str, int]:
    return {
        table.name: int(conn.scalar(select(func.count()).select_from(table)) or 0)
        for table in (patients, encounters, observations, quarantine)
    }
