"""Opening the database: SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, create_engine, event, inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import ExecutableDDLElement

from wardwatch.settings import Settings
from wardwatch.store.schema import metadata


class StoreError(RuntimeError):
    """The database cannot be opened or used; the message says what to check."""


def _null(value: None) -> None:
    return value


# Python's sqlite3 binds str, int and float as they are, but looks for an adapter for None:
# it finds none only after an AttributeError is raised and cleared (on Python 3.11), a
# quarter of a microsecond for every NULL bound. Registered, None binds as the same NULL.
sqlite3.register_adapter(type(None), _null)


def _sqlite_pragmas(synchronous: str) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers (the web page) never block the writer (the ingest), and a killed
        # process loses only its uncommitted transaction.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return on_connect


def open_engine(url: str, *, sqlite_synchronous: str = "NORMAL") -> Engine:
    """An engine for `url`, with SQLite's directory created and its pragmas set."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        if sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise StoreError(f"sqlite_synchronous must be NORMAL or FULL, not {sqlite_synchronous}")
        event.listen(engine, "connect", _sqlite_pragmas(sqlite_synchronous.upper()))
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        return create_engine(url, pool_pre_ping=True)
    except Exception as error:
        raise StoreError(f"cannot open database {url!r}: {error}") from error


def engine_from_settings(settings: Settings) -> Engine:
    return open_engine(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )


def add_missing_columns(engine: Engine) -> list[str]:
    """Add columns a newer version declares to tables an older one created (no data moves).

    Only columns that can be added in place qualify: nullable, or with a server default (a
    new column must not need a value for existing rows). Anything else is a real migration
    and raises, naming the column, rather than leaving a store the code cannot read.
    """
    added: list[str] = []
    existing = inspect(engine)
    for table in metadata.sorted_tables:
        if not existing.has_table(table.name):
            continue
        present = {column["name"] for column in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable and column.server_default is None:
                raise RuntimeError(f"{table.name}.{column.name} is new and needs a value for "
                                   "existing rows: migrate the store by hand")  # fmt: skip
            with engine.begin() as conn:
                conn.execute(AddColumn(table.name, column))
            added.append(f"{table.name}.{column.name}")
    return added


def add_missing_indexes(engine: Engine) -> list[str]:
    """Create indexes a newer version declares on tables an older one created.

    `create_all` makes a table's indexes only with the table; a store made before an index
    was declared would otherwise scan where the code expects to seek.
    """
    existing = inspect(engine)
    added: list[str] = []
    for table in metadata.sorted_tables:
        if not existing.has_table(table.name):
            continue
        present = {index["name"] for index in existing.get_indexes(table.name)}
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            if index.name in present:
                continue
            try:
                index.create(engine)
            except DBAPIError as error:  # a unique index the stored rows already break
                raise RuntimeError(f"cannot create index {index.name} on {table.name} "
                                   f"({error.orig}): migrate the store by hand") from error
            added.append(str(index.name))
    return added


class AddColumn(ExecutableDDLElement):
    """ALTER TABLE ... ADD COLUMN ..., compiled by the dialect's own column DDL."""

    def __init__(self, table: str, column: Column[Any]) -> None:
        self.table, self.column = table, column


@compiles(AddColumn)
def _add_column(element: AddColumn, compiler: Any, **kw: Any) -> str:
    definition = compiler.get_column_specification(element.column)
    default = compiler.get_column_default_string(element.column)
    if default is not None and "DEFAULT" not in definition:
        definition += f" DEFAULT {default}"
    table = compiler.preparer.quote(element.table)
    return f"ALTER TABLE {table} ADD COLUMN {definition}"


def init_db(engine: Engine) -> None:
    """Create missing tables; existing data is never touched.

    The security tables live beside the code that owns them; importing those modules puts
    them on the shared metadata (imported here, lazily: they import the store themselves).
    """
    from wardwatch.model import registry  # noqa: F401 (its tables join the shared metadata)
    from wardwatch.monitor import notices  # noqa: F401 (its tables join the shared metadata)
    from wardwatch.security import tables
    from wardwatch.security.audit import install_guards
    from wardwatch.site import registry as site_registry  # noqa: F401 (the same)

    metadata.create_all(engine)
    add_missing_columns(engine)
    add_missing_indexes(engine)
    # The audit trail is append-only in the database too: triggers refuse UPDATE and DELETE
    # (reinstalled here if someone dropped them; the chain detects what happened meanwhile).
    install_guards(engine)
    del tables  # imported for its side effect: the security tables on the shared metadata
