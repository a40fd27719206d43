"""The store: SQLAlchemy 2 on SQLite (embedded default, WAL) or PostgreSQL (psycopg 3)."""

from hub.store.engine import JsonText, Store, bulk_insert_ignore, copy_new_rows, dumps, insert_ignore, upsert

__all__ = ["JsonText", "Store", "bulk_insert_ignore", "copy_new_rows", "dumps", "insert_ignore", "upsert"]
