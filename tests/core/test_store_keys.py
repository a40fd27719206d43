"""Migration 0009 (leaner keys): the inbox keyed by its dedup key, no touchpoints-by-store index,
identifier columns in byte order on PostgreSQL; upgrade from 0008 keeps the rows, downgrade
restores the old shape, and the migrated schema matches the models in ``hub.store.schema``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from kit.databases import temporary_postgres_database
from sqlalchemy import inspect, text

from hub.store import Store
from hub.store.engine import MIGRATIONS
from hub.store.schema import metadata

KEY_COLUMNS = {
    ("inbox", "source"),
    ("inbox", "external_id"),
    ("touchpoints", "id"),
    ("touchpoints", "source"),
    ("touchpoints", "kind"),
    ("touchpoints", "customer_id"),
    ("customers", "id"),
    ("identities", "namespace"),
    ("identities", "scope"),
    ("identities", "value"),
    ("identities", "customer_id"),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty database (no migration run yet) on each backend."""
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'keys.db'}")
        yield store
        store.dispose()
        return
    with temporary_postgres_database() as url:
        store = Store(url)
        yield store
        store.dispose()


def _alembic(store: Store) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = store.engine
    return cfg


def _insert_old_inbox(store: Store, *ids: str) -> None:
    with store.begin() as conn:
        for ext in ids:
            conn.execute(
                text(
                    "INSERT INTO inbox (source, external_id, received_at, status) "
                    "VALUES ('pos', :ext, '2026-01-01 00:00:00', 'stored')"
                ),
                {"ext": ext},
            )


def test_upgrade_from_0008_keeps_rows_and_keys_inbox_by_source_and_external_id(fresh_store: Store) -> None:
    cfg = _alembic(fresh_store)
    command.upgrade(cfg, "0008_touchpoint_doc_json")
    _insert_old_inbox(fresh_store, "R1", "R2")
    command.upgrade(cfg, "heads")
    insp = inspect(fresh_store.engine)
    assert insp.get_pk_constraint("inbox")["constrained_columns"] == ["source", "external_id"]
    assert "id" not in {c["name"] for c in insp.get_columns("inbox")}
    assert "ix_touchpoints_store" not in {i["name"] for i in insp.get_indexes("touchpoints")}
    with fresh_store.begin() as conn:
        assert conn.execute(text("SELECT external_id FROM inbox ORDER BY external_id")).scalars().all() == ["R1", "R2"]
    # the primary key still rejects a duplicate record
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        _insert_old_inbox(fresh_store, "R1")


def test_downgrade_restores_the_numbered_inbox(fresh_store: Store) -> None:
    cfg = _alembic(fresh_store)
    command.upgrade(cfg, "heads")
    _insert_old_inbox(fresh_store, "R1", "R2")
    command.downgrade(cfg, "0008_touchpoint_doc_json")
    insp = inspect(fresh_store.engine)
    assert insp.get_pk_constraint("inbox")["constrained_columns"] == ["id"]
    assert "ix_touchpoints_store" in {i["name"] for i in insp.get_indexes("touchpoints")}
    _insert_old_inbox(fresh_store, "R3")
    with fresh_store.begin() as conn:
        rows = conn.execute(text("SELECT id, external_id FROM inbox ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(1, "R1"), (2, "R2"), (3, "R3")]
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        _insert_old_inbox(fresh_store, "R2")
    command.upgrade(cfg, "heads")  # and up again
    assert inspect(fresh_store.engine).get_pk_constraint("inbox")["constrained_columns"] == ["source", "external_id"]


def test_migrated_schema_matches_the_models(fresh_store: Store) -> None:
    fresh_store.migrate()
    with fresh_store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(ctx, metadata) if d[0] not in ("remove_table", "remove_index")]
        # tables of the feature packages live in their own metadata: only what ours says is compared
        removed_ours = [
            d
            for d in compare_metadata(ctx, metadata)
            if d[0] in ("remove_table", "remove_index") and _table_of(d) in metadata.tables
        ]
    assert diffs == [] and removed_ours == []


def _table_of(diff: tuple) -> str:  # type: ignore[type-arg]
    obj = diff[1]
    return obj.name if diff[0] == "remove_table" else obj.table.name


def test_identifier_columns_compare_bytes_on_postgresql(pg_url: str) -> None:
    with temporary_postgres_database() as url:
        store = Store(url)
        store.migrate()
        with store.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                    "WHERE table_name IN ('inbox', 'touchpoints', 'customers', 'identities')"
                )
            ).all()
        store.dispose()
    collated = {(t, c) for t, c, coll in rows if coll == "C"}
    assert collated == KEY_COLUMNS
