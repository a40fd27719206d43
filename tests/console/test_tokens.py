"""API tokens: created once in clear, kept as a digest, read the console's JSON, refused when
revoked, expired or their user is disabled; their last use is written at most once a minute."""

from __future__ import annotations

from typing import Any

import pytest
from kit.console import ConsoleKit
from sqlalchemy import select, text

from hub.console.accounts import TOKEN_PREFIX, AccountError, Accounts
from hub.console.schema import console_audit, console_tokens


def token_for(kit: ConsoleKit, role: str, unit: str | None = None, *, days: float | None = 30) -> tuple[int, str, int]:
    login = kit.add_user(role, unit)
    accounts = Accounts(kit.rt.store)
    user = accounts.require_user(login)
    tid, token = accounts.create_token(user.id, "nightly export", days, actor="test")
    return tid, token, user.id


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_reads_the_json_routes_in_its_scope(console: ConsoleKit) -> None:
    console.ingest_review(1, store="S001")
    console.ingest_review(2, store="S101")
    _, token, _ = token_for(console, "store_manager", "S001")
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    client = console.client()  # no cookie at all
    r = client.get("/console/api/cases", headers=bearer(token))
    assert r.status_code == 200, r.text
    stores = {c.get("store") for c in r.json()["cases"]}
    assert stores == {"S001"}
    assert client.get("/console/", headers=bearer(token)).status_code == 200


def test_an_admin_token_reads_the_audit_log(console: ConsoleKit) -> None:
    _, token, _ = token_for(console, "admin")
    r = console.client().get("/console/api/audit", headers=bearer(token))
    assert r.status_code == 200
    assert any(row["action"] == "token.create" for row in r.json()["rows"])


def test_a_token_needs_no_csrf_token(console: ConsoleKit) -> None:
    _, token, _ = token_for(console, "store_manager", "S001")
    r = console.client().post("/console/logout-all", headers=bearer(token))
    assert r.status_code == 303  # not 403: a script has no session to forge requests for


@pytest.mark.parametrize(
    "header",
    ["Bearer cxt_not-a-real-token", "Bearer ", "Bearer " + "cxt_" + "x" * 300, "Basic dXNlcjpwYXNz", "Bearer abc"],
)
def test_unknown_tokens_are_401(console: ConsoleKit, header: str) -> None:
    r = console.client().get("/console/api/cases", headers={"Authorization": header})
    assert r.status_code == 401
    assert "error" in r.json()


@pytest.mark.parametrize("console", ["sqlite", "postgresql"], indirect=True)
def test_a_revoked_token_is_401(console: ConsoleKit) -> None:
    tid, token, _ = token_for(console, "store_manager", "S001")
    client = console.client()
    assert client.get("/console/api/cases", headers=bearer(token)).status_code == 200
    accounts = Accounts(console.rt.store)
    assert accounts.revoke_token(tid, actor="test") is True
    assert accounts.revoke_token(tid, actor="test") is False  # once
    assert client.get("/console/api/cases", headers=bearer(token)).status_code == 401
    assert [t.state(console.rt.clock()) for t in accounts.list_tokens()] == ["revoked"]


def test_an_expired_token_is_401(console: ConsoleKit, clock: Any) -> None:
    _, token, _ = token_for(console, "store_manager", "S001", days=2)
    client = console.client()
    clock.advance(days=1, hours=23)
    assert client.get("/console/api/cases", headers=bearer(token)).status_code == 200
    clock.advance(hours=1, seconds=1)
    assert client.get("/console/api/cases", headers=bearer(token)).status_code == 401


def test_a_token_without_expiry_lasts(console: ConsoleKit, clock: Any) -> None:
    _, token, _ = token_for(console, "store_manager", "S001", days=None)
    clock.advance(days=3000)
    assert console.client().get("/console/api/cases", headers=bearer(token)).status_code == 200


def test_a_disabled_users_token_is_401(console: ConsoleKit) -> None:
    _, token, uid = token_for(console, "store_manager", "S001")
    Accounts(console.rt.store).set_disabled(uid, True, actor="test")
    assert console.client().get("/console/api/cases", headers=bearer(token)).status_code == 401


@pytest.mark.parametrize("console", ["sqlite", "postgresql"], indirect=True)
def test_last_use_is_written_at_most_once_a_minute(console: ConsoleKit, clock: Any) -> None:
    tid, token, _ = token_for(console, "store_manager", "S001")
    client = console.client()

    def last_used() -> Any:
        with console.rt.store.connect() as conn:
            return conn.execute(select(console_tokens.c.last_used_at).where(console_tokens.c.id == tid)).scalar()

    assert last_used() is None
    client.get("/console/api/cases", headers=bearer(token))
    first = last_used()
    assert first == clock()
    clock.advance(seconds=30)
    client.get("/console/api/cases", headers=bearer(token))
    assert last_used() == first
    clock.advance(seconds=31)
    client.get("/console/api/cases", headers=bearer(token))
    assert last_used() == clock()


def test_the_store_keeps_only_a_digest(console: ConsoleKit) -> None:
    _, token, _ = token_for(console, "admin")
    with console.rt.store.connect() as conn:
        dump = "\n".join(
            str(row)
            for table in ("console_tokens", "console_audit", "console_users")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        )
    assert token not in dump
    assert token[len(TOKEN_PREFIX) :][:20] not in dump


def test_listing_and_bad_requests(console: ConsoleKit) -> None:
    accounts = Accounts(console.rt.store)
    login = console.add_user("agent", "S002")
    user = accounts.require_user(login)
    with pytest.raises(AccountError, match="token name"):
        accounts.create_token(user.id, "  ", 10)
    with pytest.raises(AccountError, match="between 1 and 3650"):
        accounts.create_token(user.id, "x", 0)
    t1, _ = accounts.create_token(user.id, "a", 10, actor="admin-1")
    t2, _ = accounts.create_token(user.id, "b", None, actor="admin-1")
    listed = accounts.list_tokens(user.id)
    assert [t.id for t in listed] == [t2, t1]
    assert listed[0].login == login and listed[0].expires_at is None
    with console.rt.store.connect() as conn:
        actions = conn.execute(select(console_audit.c.action).where(console_audit.c.actor == "admin-1")).scalars()
        assert list(actions) == ["token.create", "token.create"]
