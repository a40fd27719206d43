"""``cxhub users``: accounts, platform links, sessions and API tokens from the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kit.console import console_config
from sqlalchemy import select
from typer.testing import CliRunner

from cli import app
from hub.config import load_config
from hub.console.accounts import Accounts
from hub.console.schema import console_audit
from hub.store import Store

runner = CliRunner()


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "cxhub.yaml"
    path.write_text(yaml.safe_dump(console_config(f"sqlite:///{tmp_path / 'store.db'}"), allow_unicode=True))
    return path


def cx(cfg: Path, *args: str, input: str | None = None) -> Any:
    return runner.invoke(app, ["users", *args, "-c", str(cfg)], input=input, catch_exceptions=False)


def accounts(cfg: Path) -> Accounts:
    return Accounts(Store(load_config(cfg).store_url))


def initial_password(output: str) -> str:
    found = re.search(r"initial password \([^)]*\): (\S+)", output)
    assert found, output
    return found.group(1)


def test_add_prints_a_strong_password_once(cfg: Path) -> None:
    r = cx(cfg, "add", "li.si", "--role", "store_manager", "--unit", "S001", "--name", "李四")
    assert r.exit_code == 0, r.output
    password = initial_password(r.output)
    assert len(password) >= 16 and re.search(r"\d", password) and re.search(r"[A-Za-z]", password)
    user = accounts(cfg).authenticate("li.si", password)
    assert user is not None and user.must_change_password and user.display_name == "李四"
    listed = cx(cfg, "list")
    assert listed.exit_code == 0 and "li.si" in listed.output
    as_json = cx(cfg, "list", "--json").output
    row = json.loads(as_json.splitlines()[0])
    assert row["login"] == "li.si" and row["must_change_password"] is True and row["unit"] == "S001"
    for text in (listed.output, as_json):
        assert password not in text and "argon2" not in text and "hash" not in text


def test_add_from_stdin_and_without_password(cfg: Path) -> None:
    r = cx(cfg, "add", "ops", "--role", "integrator", "--password-stdin", input="a long enough secret\n")
    assert r.exit_code == 0 and "initial password" not in r.output and "a long enough secret" not in r.output
    assert accounts(cfg).authenticate("ops", "a long enough secret") is not None
    r = cx(cfg, "add", "weak", "--role", "integrator", "--password-stdin", input="short\n")
    assert r.exit_code == 1 and "too short" in r.output
    r = cx(cfg, "add", "ding.only", "--role", "agent", "--unit", "S101", "--no-password")
    assert r.exit_code == 0 and "link a platform account" in r.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--role", "overlord"], "unknown role 'overlord'"),
        (["--role", "store_manager", "--unit", "S999"], "unknown store 'S999'"),
        (["--role", "district_manager"], "needs a district"),
        (["--role", "admin", "--unit", "east"], "HQ-wide"),
    ],
)
def test_add_names_what_is_wrong(cfg: Path, args: list[str], words: str) -> None:
    r = cx(cfg, "add", "someone", *args)
    assert r.exit_code == 1
    assert words in r.output
    assert accounts(cfg).find_user("someone") is None


def test_a_taken_login(cfg: Path) -> None:
    assert cx(cfg, "add", "boss", "--role", "admin").exit_code == 0
    r = cx(cfg, "add", "boss", "--role", "hq_analyst")
    assert r.exit_code == 1 and "login 'boss' is taken" in r.output


def test_disable_enable_passwd_logout(cfg: Path) -> None:
    first = initial_password(cx(cfg, "add", "wang", "--role", "region_manager", "--unit", "east").output)
    acc = accounts(cfg)
    user = acc.require_user("wang")
    acc.start_session(user)
    r = cx(cfg, "disable", "wang")
    assert r.exit_code == 0 and acc.get_user(user.id).disabled and acc.sessions_of(user.id) == 0
    assert acc.authenticate("wang", first) is None
    assert cx(cfg, "enable", "wang").exit_code == 0
    assert acc.authenticate("wang", first) is not None
    acc.start_session(user)
    r = cx(cfg, "passwd", "wang")
    assert r.exit_code == 0
    second = initial_password(r.output)
    assert second != first and acc.sessions_of(user.id) == 0
    assert acc.authenticate("wang", first) is None
    assert acc.authenticate("wang", second).must_change_password  # type: ignore[union-attr]
    acc.start_session(user)
    acc.start_session(user)
    r = cx(cfg, "logout", "wang")
    assert r.exit_code == 0 and "2 session(s) ended" in r.output
    assert cx(cfg, "disable", "nobody").exit_code == 1
    with acc.store.connect() as conn:
        actions = list(conn.execute(select(console_audit.c.action).where(console_audit.c.actor == "cli")).scalars())
    assert actions == ["user.add", "user.disable", "user.enable", "user.password_reset", "user.logout_all"]


def test_link_and_unlink(cfg: Path) -> None:
    cx(cfg, "add", "zhao", "--role", "agent", "--unit", "S002", "--no-password")
    r = cx(cfg, "link", "zhao", "--provider", "dingtalk", "--subject", "union-zhao")
    assert r.exit_code == 0 and "console.oauth.dingtalk is not configured" in r.output
    acc = accounts(cfg)
    assert acc.linked_user("dingtalk", ["union-zhao"]).login == "zhao"  # type: ignore[union-attr]
    r = cx(cfg, "link", "zhao", "--provider", "dingtalk", "--subject", "union-zhao")
    assert r.exit_code == 1 and "already linked" in r.output
    r = cx(cfg, "link", "zhao", "--provider", "github", "--subject", "x")
    assert r.exit_code == 1 and "unknown provider 'github'" in r.output
    assert "dingtalk:union-zhao" in cx(cfg, "list", "--json").output
    assert cx(cfg, "link", "zhao", "--provider", "dingtalk", "--subject", "union-zhao", "--unlink").exit_code == 0
    assert acc.linked_user("dingtalk", ["union-zhao"]) is None


def test_tokens(cfg: Path) -> None:
    cx(cfg, "add", "bi", "--role", "hq_analyst")
    r = cx(cfg, "token", "create", "bi", "--name", "nightly", "--days", "30")
    assert r.exit_code == 0
    token = re.search(r"cxt_\S+", r.output).group(0)  # type: ignore[union-attr]
    acc = accounts(cfg)
    assert acc.token_user(token).login == "bi"  # type: ignore[union-attr]
    listed = cx(cfg, "token", "list", "--json")
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert rows[0]["name"] == "nightly" and rows[0]["state"] == "active"
    assert token not in listed.output
    r = cx(cfg, "token", "create", "bi", "--name", "forever", "--days", "0", "--json")
    forever = json.loads(r.output)
    assert forever["token"].startswith("cxt_")
    assert cx(cfg, "token", "revoke", str(rows[0]["id"])).exit_code == 0
    assert acc.token_user(token) is None
    r = cx(cfg, "token", "revoke", str(rows[0]["id"]))
    assert r.exit_code == 1 and f"no live API token with id {rows[0]['id']}" in r.output
    assert cx(cfg, "token", "create", "ghost", "--name", "x").exit_code == 1
