"""The store: SQLAlchemy 2 on SQLite (embedded default, WAL) or PostgreSQL (psycopg 3)."""

from typing import TYPE_CHECKING, Any

from hub.store.engine import (
    JsonText,
    Store,
    bulk_insert_ignore,
    copy_deferred,
    copy_new_rows,
    dumps,
    insert_ignore,
    upsert,
)

if TYPE_CHECKING:
    from hub.store.pgcopy import DeferredCopy


def __getattr__(name: str) -> Any:
    # psycopg loads only when a PostgreSQL store needs it
    if name == "DeferredCopy":
        from hub.store.pgcopy import DeferredCopy

        return DeferredCopy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
