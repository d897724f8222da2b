"""The store: schema and queries (SQLAlchemy 2); SQLite by default, PostgreSQL by URL."""

from wardwatch.store.engine import StoreError, engine_from_settings, init_db, open_engine
from wardwatch.store.writes import (
    Batch,
    ObservationRows,
    Receipt,
    WriteResult,
    bulk_connection,
    seen_messages,
    write_batch,
)

__all__ = [
    "Batch",
    "ObservationRows",
    "Receipt",
    "StoreError",
    "WriteResult",
    "bulk_connection",
    "engine_from_settings",
    "init_db",
    "open_engine",
    "seen_messages",
    "write_batch",
]
