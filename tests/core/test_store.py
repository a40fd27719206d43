"""Store mechanics: the shared key-value store and its cross-process lock, the schema check."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text

from hub.store import Store


def test_kv_round_trip_and_expiry(store: Store, clock) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    store.put("token:x", "abc", clock() + timedelta(seconds=60))
    assert store.get("token:x")[0] == "abc"  # type: ignore[index]
    clock.advance(seconds=61)
    assert store.get("token:x") is None
    store.put("token:x", "def")
    assert store.get("token:x") == ("def", None)


def test_many_waiting_threads_do_not_exhaust_the_pool(pg_store: Store) -> None:
    """The holder needs a connection of its own inside the lock (a token refresh writes the kv):
    waiters must not be sitting on every pooled connection meanwhile."""
    inside = 0
    most = 0
    done: list[int] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def work(i: int) -> None:
        nonlocal inside, most
        try:
            with pg_store.lock("token-refresh"):
                with guard:
                    inside += 1
                    most = max(most, inside)
                pg_store.put("token:y", str(i))  # a second connection while holding the lock
                time.sleep(0.005)
                with guard:
                    inside -= 1
            done.append(i)
        except BaseException as exc:  # pool timeout would land here
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(24)]  # pool: 5 + 5 overflow
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:1]
    assert len(done) == 24 and most == 1
    assert time.monotonic() - started < 25  # well under the pool's 30 s checkout timeout


def test_the_schema_check_agrees_with_alembic(tmp_path: Path) -> None:
    """The heads read off the revision files are Alembic's heads, and a migrated store is current
    (so commands skip Alembic), while a fresh or half-migrated one is not."""
    from alembic.script import ScriptDirectory

    from hub.store.engine import _heads, alembic_config, migration_folders

    assert _heads(tuple(migration_folders())) == set(ScriptDirectory.from_config(alembic_config()).get_heads())

    store = Store(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert not store.schema_is_current()
    store.migrate()
    assert store.schema_is_current()
    with store.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version WHERE version_num = '0009_lean_keys'"))
    assert not store.schema_is_current()
    store.dispose()
