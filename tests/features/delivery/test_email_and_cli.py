"""Email against a local SMTP server (aiosmtpd), and the outbox commands."""

from __future__ import annotations

import email
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from kit.fakes import FakePlatform
from kit.runtime import build_runtime
from typer.testing import CliRunner

from hub.errors import PermanentError, RetriableError
from hub.registry import get
from hub.sdk.connector import Button, ConnectorContext, OutboundMessage


class Recorder:
    """aiosmtpd handler: records messages; refuses ``nobody@`` (550) and ``later@`` (451)."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.sessions: list[int] = []  # the SMTP session (connection) of each message

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("later@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        if not hasattr(session, "cxhub_n"):  # id() of a closed session may be reused: number them
            session.cxhub_n = len(set(self.sessions)) + 1
        self.sessions.append(session.cxhub_n)
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as s:  # aiosmtpd's readiness check needs the real port up front
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = Recorder()
    controller = Controller(rec, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield rec, port
    finally:
        controller.stop()


def mailer(port: int, **options: Any) -> Any:
    cls = get("email")
    opts = cls.Options.model_validate(
        {"host": "127.0.0.1", "port": port, "security": "none", "sender": "cx@shop.example", "timeout": 5, **options}
    )
    return cls("mail", opts, ConnectorContext())


@pytest.mark.parametrize(("keep_alive", "sessions"), [(30.0, 1), (0.0, 4)])
def test_a_thread_reuses_its_smtp_session(smtp: tuple[Recorder, int], keep_alive: float, sessions: int) -> None:
    rec, port = smtp
    dst = mailer(port, keep_alive_seconds=keep_alive)
    for i in range(4):
        dst.send(OutboundMessage(key=f"k{i}", title="t", body="b", to=["a@example.com"]))
    dst.close()
    assert len(rec.messages) == 4 and len(set(rec.sessions)) == sessions


def test_a_session_the_server_closed_is_replaced(smtp: tuple[Recorder, int]) -> None:
    import socket

    rec, port = smtp
    dst = mailer(port)
    dst.send(OutboundMessage(key="k1", title="t", body="b", to=["a@example.com"]))
    dst._local.smtp.sock.shutdown(socket.SHUT_RDWR)  # the connection was dropped while idle
    dst.send(OutboundMessage(key="k2", title="t", body="b", to=["a@example.com"]))
    with pytest.raises(PermanentError):  # an error drops the session; the next send opens another
        dst.send(OutboundMessage(key="k3", title="t", body="b", to=["nobody@example.com"]))
    dst.send(OutboundMessage(key="k4", title="t", body="b", to=["a@example.com"]))
    dst.close()
    assert [m["X-Cxhub-Idempotency-Key"] for m in rec.messages] == ["k1", "k2", "k4"]
    assert len(set(rec.sessions)) == 3


def test_email_is_delivered_with_a_message_id_from_the_key(smtp: tuple[Recorder, int]) -> None:
    rec, port = smtp
    dst = mailer(port)
    msg = OutboundMessage(
        key="survey:tp-1",
        title="请评价您的购物体验",
        body="您好，感谢光临 **SH-001**。\n\n[评价](https://hub.example/s/abc)",
        to=["alice@example.com"],
        buttons=[Button("开始评价", "https://hub.example/s/abc")],
    )
    r1 = dst.send(msg)
    r2 = dst.send(msg)  # a retry: same Message-ID, so the receiver sees the same message
    assert len(rec.messages) == 2
    got = rec.messages[0]
    assert got["Message-ID"] == r1.message_id == r2.message_id == rec.messages[1]["Message-ID"]
    assert got["X-Cxhub-Idempotency-Key"] == "survey:tp-1"
    assert str(email.header.make_header(email.header.decode_header(got["Subject"]))) == "请评价您的购物体验"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in got.walk() if not p.is_multipart()}
    assert "评价 https://hub.example/s/abc" in parts["text/plain"]
    assert '<a href="https://hub.example/s/abc"' in parts["text/html"]


@pytest.mark.parametrize(
    ("to", "error"), [("nobody@example.com", PermanentError), ("later@example.com", RetriableError)]
)
def test_smtp_refusals_are_classified(smtp: tuple[Recorder, int], to: str, error: type[Exception]) -> None:
    _, port = smtp
    with pytest.raises(error):
        mailer(port).send(OutboundMessage(key="k", title="t", body="b", to=[to]))


def test_unreachable_smtp_server_is_retriable() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(RetriableError, match="cannot reach"):
        mailer(port).send(OutboundMessage(key="k", title="t", body="b", to=["a@example.com"]))


# ------------------------------------------------------------------ CLI


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[typer.Typer, Path, FakePlatform]:
    """A config with one Feishu bot destination served by the fake (through a patched transport)."""
    from commands.outbox import register

    fake = FakePlatform()
    cfg = tmp_path / "cxhub.yaml"
    cfg.write_text(
        f"""
secret_key: test-secret-key
store: {{url: "sqlite:///{tmp_path}/hub.db"}}
destinations:
  ops:
    connector: feishu_bot
    options: {{hook: feishu-hook-id, secret: feishu-secret, base_url: "http://fake"}}
""",
        encoding="utf-8",
    )
    import hub.runtime

    real = hub.runtime.Runtime.__init__

    def init(self: Any, config: Any, **kw: Any) -> None:
        kw.setdefault("transport", httpx.MockTransport(fake.handler))
        real(self, config, **kw)

    monkeypatch.setattr(hub.runtime.Runtime, "__init__", init)
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    register(app)
    return app, cfg, fake


def test_outbox_commands_list_retry_flush_and_send_test(cli_env: tuple[typer.Typer, Path, FakePlatform]) -> None:
    import json

    from hub.outbox import enqueue

    app, cfg, fake = cli_env
    runner = CliRunner()
    rt = build_runtime(cfg)
    with rt.store.begin() as conn:
        enqueue(
            conn,
            destination="ops",
            message=OutboundMessage(key="a", title="顾客 13812345678 差评", body="x"),
            now=rt.clock(),
        )
        enqueue(conn, destination="ops", message=OutboundMessage(key="b", title="b", body="y"), now=rt.clock())
    rt.close()

    res = runner.invoke(app, ["outbox", "--config", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    listed = [json.loads(line) for line in res.output.splitlines()]
    assert {r["status"] for r in listed} == {"pending"}
    assert any(r["title"] == "顾客 138****5678 差评" for r in listed)  # masked for whoever reads the listing
    assert "13812345678" not in res.output

    fake.fail_next = 100
    res = runner.invoke(app, ["outbox", "flush", "--config", str(cfg), "--json"])
    assert json.loads(res.output)["failed"] == 2
    fake.fail_next = 0
    res = runner.invoke(app, ["outbox", "--config", str(cfg), "--status", "failed"])
    assert res.exit_code == 0 and "code 500" in res.output and "failed 2" in res.output
    ids = [str(r["id"]) for r in listed]
    res = runner.invoke(app, ["outbox", "retry", *ids, "--config", str(cfg)])
    assert "2 row(s) queued again" in res.output
    res = runner.invoke(app, ["outbox", "flush", "--config", str(cfg), "--json"])
    assert json.loads(res.output)["sent"] == 2
    assert fake.keys() == {"a": 1, "b": 1}
    res = runner.invoke(app, ["outbox", "retry", "--dead", "--config", str(cfg)])
    assert "0 row(s)" in res.output
    res = runner.invoke(app, ["outbox", "--config", str(cfg), "--status", "bogus"])
    assert res.exit_code == 1

    res = runner.invoke(app, ["send-test", "ops", "--config", str(cfg), "--json"])
    out = json.loads(res.output)
    assert out["ok"] is True and "code 0" in out["detail"]
    res = runner.invoke(app, ["send-test", "nope", "--config", str(cfg)])
    assert res.exit_code == 1
    fake.fail_next = 1
    res = runner.invoke(app, ["send-test", "ops", "--config", str(cfg), "--json"])
    assert res.exit_code == 1 and json.loads(res.output)["error"] == "RetriableError"
