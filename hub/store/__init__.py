"""The store: SQLAlchemy 2 on SQLite (embedded default, WAL) or PostgreSQL (psycopg 3)."""

from hub.store.engine import (
    DeferredCopy,
    JsonText,
    Store,
    bulk_insert_ignore,
    copy_deferred,
    copy_new_rows,
    dumps,
    insert_ignore,
    upsert,
)

__all__ = [
    "DeferredCopy",
    "JsonText",
    "Store",
    "bulk_insert_ignore",
    "copy_deferred",
    "copy_new_rows",
    "dumps",
    "insert_ignore",
    "upsert",
]
