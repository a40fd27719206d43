"""No secret reaches a person or a log: a config with a distinct value in every secret option of
every installed connector, then the commands (stdout, stderr, DEBUG logs in both formats) against a
local platform that fails and echoes the URL it was called at; plus the redaction itself."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import types
import typing
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import yaml
from pydantic import BaseModel, SecretBytes, SecretStr

ROOT = Path(__file__).resolve().parents[2]

#: valid values of the options that are not secrets, per connector (``{base}``: the fake platform)
BASE_OPTIONS: dict[str, dict[str, Any]] = {
    "alipay": {"app_id": "2021000000000001", "alipay_public_key": "{alipay_public}"},
    "alipay_message": {"app_id": "2021000000000001", "gateway": "{base}/gateway.do", "template_id": "TPL-ALI"},
    "dianping_reviews": {"app_key": "dp-app", "shops": ["shop-1"], "base_url": "{base}"},
    "dingtalk_events": {"app_key": "ding-app"},
    "dingtalk_robot": {"base_url": "{base}"},
    "dingtalk_work": {"app_key": "ding-app", "agent_id": 7, "base_url": "{base}"},
    "email": {"host": "127.0.0.1", "port": "{closed_port}", "security": "none", "sender": "cx@example.com"},
    "example_nps": {"base_url": "{base}"},
    "example_nps_followup": {"base_url": "{base}"},
    "feishu_app": {"app_id": "cli_test", "base_url": "{base}"},
    "feishu_bot": {"base_url": "{base}"},
    "feishu_events": {},
    # a base URL with credentials in it is a secret too, though typed str
    "http_feed": {
        "base_url": "http://feeduser:{feed_password}@{host}",
        "path": "/feed",
        "records": "items",
        "id": "id",
        "auth": {"type": "query", "name": "access_token"},
        "sign": "top",
        "app_key": "top-app",
        "retries": 1,
    },
    "jd_reviews": {"app_key": "jd-app", "base_url": "{base}"},
    "jsonl": {"path": "{tmp}", "id_path": "id"},
    "sms": {"access_key_id": "LTAI-test", "sign_name": "cxhub", "template_code": "SMS_1", "base_url": "{base}"},
    "sms_http": {
        "url": "{base}/sms/send",
        "body": {"mobiles": "{to_list}", "content": "{text}"},
        "headers": {"Authorization": "Bearer {token}"},
        "sign": {"field": "sign", "message": "{timestamp}{nonce}"},
    },
    "sql": {"table": "orders", "cursor": ["updated_at", "id"]},
    "taobao_reviews": {"app_key": "tb-app", "base_url": "{base}"},
    "webhook": {},
    "wechat_message": {"app_id": "wx-test", "template_id": "TPL1", "base_url": "{base}"},
    "wechat_mp": {"app_id": "wx-mp"},
    "wechat_oa": {"app_id": "wx-oa"},
    "wecom": {"corp_id": "ww-corp"},
    "wecom_app": {"corp_id": "ww-corp", "agent_id": 1000002, "base_url": "{base}"},
    "wecom_robot": {"base_url": "{base}"},
}
AES_FIELDS = {"encoding_aes_key"}
#: a recipient each destination accepts, so that send-test reaches the platform
RECIPIENTS = {
    "alipay_message": "2088000000000001",
    "dingtalk_work": "user-1",
    "email": "ops@example.com",
    "feishu_app": "ou_1",
    "sms": "13812345678",
    "sms_http": "13812345678",
    "wechat_message": "openid-1",
    "wecom_app": "user-1",
}


def _is_secret(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, SecretStr | SecretBytes)


def _members(tp: Any) -> list[Any]:
    """The types inside an annotation (unions, Optional, Annotated)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for a in typing.get_args(tp) for m in _members(a)]
    return [tp]


class Planter:
    """Distinct secret values, one per secret option; every value planted is in ``secrets``."""

    def __init__(self, rsa_private: str):
        self.rsa_private = rsa_private
        self.secrets: list[str] = []
        self.fields: list[str] = []  # "kind.path" of each secret option filled
        self.names: dict[str, str] = {}  # secret -> where it was planted (failures name that, not it)

    def value(self, where: str, field: str) -> str:
        n = len(self.secrets)
        if where == "webhook.secret":
            value = "whsec_" + base64.b64encode(f"S{n:02d}-webhook-sEcReT".encode()).decode()
        elif field in AES_FIELDS:  # 43 base64 characters that decode to 32 bytes
            value = base64.b64encode(hashlib.sha256(where.encode()).digest()).decode().rstrip("=")
        elif field == "private_key":
            value = self.rsa_private
        elif where == "sql.url":  # the whole URL is the secret; its password too
            password = f"Pg+pw/{n:02d}=sEcReT"
            self.secrets.append(password)
            self.names[password] = f"{where} (password)"
            value = f"postgresql+psycopg://cxuser:{quote(password, safe='')}@127.0.0.1:1/cx"
        else:  # characters that URL-encode differently, to catch the encoded forms too
            value = f"S{n:02d}+{where.replace('.', '-')}/sEcReT=x"
        self.secrets.append(value)
        self.fields.append(where)
        self.names[value] = where
        return value

    def fill(self, model: type[BaseModel], data: dict[str, Any], where: str) -> dict[str, Any]:
        """``data`` with every secret field of ``model`` (nested models included) given a value."""
        out = dict(data)
        for name, info in model.model_fields.items():
            members = _members(info.annotation)
            if any(_is_secret(m) for m in members):
                out[name] = self.value(f"{where}.{name}", name)
                continue
            for m in members:
                if isinstance(m, type) and issubclass(m, BaseModel) and _has_secret(m):
                    nested = out.get(name) if isinstance(out.get(name), dict) else {}
                    out[name] = self.fill(m, nested, f"{where}.{name}")
        return out


def _has_secret(model: type[BaseModel]) -> bool:
    for info in model.model_fields.values():
        for m in _members(info.annotation):
            if _is_secret(m) or (isinstance(m, type) and issubclass(m, BaseModel) and _has_secret(m)):
                return True
    return False


class EchoingPlatform(http.server.BaseHTTPRequestHandler):
    """Fails every call and quotes the request (its URL, credentials and all) in the answer, as
    platforms' error messages do: robots answer 200 with an errcode, everything else HTTP 400."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        echo = f"invalid request {self.command} http://{self.headers.get('host')}{self.path} body={body[:300]}"
        robot = self.path.startswith(("/robot/send", "/cgi-bin/webhook/send"))
        data = {"errcode": 310000, "errmsg": echo, "code": 9499, "msg": echo, "message": echo, "error": echo}
        raw = json.dumps(data).encode()
        self.send_response(200 if robot else 400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:  # the test reads the CLI's output, not the fake's
        pass


@pytest.fixture
def platform() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoingPlatform)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _subst(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in values and value[1:-1] == "closed_port":
            return int(values["closed_port"])
        for k, v in values.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {k: _subst(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_subst(v, values) for v in value]
    return value


def planted_config(tmp: Path, host: str, rsa_keys: tuple[str, str]) -> tuple[Path, Planter, list[str], list[str]]:
    """A config using every installed connector once, each secret option filled; returns the file,
    the planter, the destination names and the source names."""
    from hub.registry import discover

    planter = Planter(rsa_keys[0])
    feed_password = "feed+pw/" + "sEcReT=1"
    planter.secrets.append(feed_password)
    planter.names[feed_password] = "http_feed.base_url (password)"
    values = {"base": f"http://{host}", "host": host, "tmp": str(tmp), "closed_port": str(_closed_port())}
    values["alipay_public"] = rsa_keys[1]
    values["feed_password"] = quote(feed_password, safe="")
    doc: dict[str, Any] = {
        "secret_key": planter.value("secret_key", "secret_key"),
        "store": {"url": "sqlite:///cx.db"},
        "sources": {},
        "destinations": {},
    }
    sources, destinations = [], []
    for name, info in sorted(discover().items()):
        assert info.cls is not None, f"{name} cannot load: {info.error}"
        assert name in BASE_OPTIONS, f"add valid options of the new connector {name!r} to BASE_OPTIONS"
        options = planter.fill(info.cls.Options, _subst(BASE_OPTIONS[name], values), name)
        if "destination" in info.roles:
            doc["destinations"][name] = {"connector": name, "options": options}
            destinations.append(name)
        else:
            entry: dict[str, Any] = {"connector": name, "options": options}
            if info.cls.default_mapping is None:
                entry["mapping"] = "pos_order"
            doc["sources"][name] = entry
            sources.append(name)
    path = tmp / "cxhub.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path, planter, destinations, sources


def _forms(secret: str) -> set[str]:
    """A secret as written and URL-encoded; a multi-line one (a PEM key) by its long lines."""
    out: set[str] = set()
    lines = [ln for ln in secret.splitlines() if len(ln) >= 16 and "-----" not in ln] if "\n" in secret else [secret]
    for p in lines:
        out.update({p, quote(p, safe=""), quote_plus(p), quote(p)})
    return out


def _leaks(text: str, planter: Planter) -> list[str]:
    """Where each secret found in ``text`` was planted (never the secret itself)."""
    return sorted({planter.names.get(s, "?") for s in planter.secrets if any(f in text for f in _forms(s))})


@pytest.fixture
def planted(tmp_path: Path, platform: str, rsa_keys: tuple[str, str]) -> tuple[Path, Planter, list[str], list[str]]:
    return planted_config(tmp_path, platform, rsa_keys)


def test_every_secret_option_of_every_connector_is_planted(
    planted: tuple[Path, Planter, list[str], list[str]],
) -> None:
    from hub.config import load_config
    from hub.registry import discover

    cfg_path, planter, destinations, sources = planted
    assert len(destinations) + len(sources) == len(discover())
    cfg = load_config(cfg_path)  # the planted config is valid
    expected = sum(1 for d in planter.fields if d != "secret_key")
    found = sum(len(_secret_fields(spec.options)) for spec in [*cfg.sources.values(), *cfg.destinations.values()])
    assert found == expected >= 25


def _secret_fields(value: Any) -> list[str]:
    if isinstance(value, SecretStr | SecretBytes):
        return ["x"]
    if isinstance(value, BaseModel):
        return [f for name in type(value).model_fields for f in _secret_fields(getattr(value, name))]
    return []


def _run(args: list[str], cwd: Path, fmt: str) -> str:
    env = {
        **os.environ,
        "CXHUB_LOG_LEVEL": "DEBUG",
        "CXHUB_LOG_FORMAT": fmt,
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "400",  # no wrapping: a secret cut in two would hide from the search
        "NO_COLOR": "1",
    }
    env.pop("CXHUB_CONFIG", None)
    env.pop("CXHUB_SECRET_KEY", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    return f"$ cxhub {' '.join(args)} (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}"


def _enqueue_one_per_destination(cfg_path: Path, destinations: list[str]) -> None:
    from hub.config import load_config
    from hub.outbox import enqueue
    from hub.runtime import Runtime
    from hub.sdk.connector import OutboundMessage

    rt = Runtime(load_config(cfg_path), features=())
    try:
        rt.migrate()
        with rt.store.begin() as conn:
            for name in destinations:
                message = OutboundMessage(key=f"t:{name}", title="差评 13812345678", body="b", to=["13812345678"])
                enqueue(conn, destination=name, message=message, now=datetime.now(UTC))
    finally:
        rt.close()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_command_shows_a_secret(fmt: str, planted: tuple[Path, Planter, list[str], list[str]]) -> None:
    cfg_path, planter, destinations, _ = planted
    cwd = cfg_path.parent
    c = ["--config", str(cfg_path)]
    _enqueue_one_per_destination(cfg_path, destinations)
    # send-test every destination with the text log format, the three robots (--json output) with
    # the JSON one; the outbox flush sends to every destination in both
    robots = ["dingtalk_robot", "wecom_robot", "feishu_bot"]

    def send_test(d: str, *extra: str) -> list[str]:
        return ["send-test", d, *extra, *c, *(["--to", RECIPIENTS[d]] if d in RECIPIENTS else [])]

    commands = [
        ["config", *c],
        ["check", *c],
        *([["connectors"], ["connectors", "--json"], ["events", *c]] if fmt == "text" else []),
        ["sync", "http_feed", *c],
        ["outbox", "flush", *c],
        *([send_test(d) for d in destinations] if fmt == "text" else [send_test(d, "--json") for d in robots]),
    ]
    with ThreadPoolExecutor(2) as pool:
        outputs = list(pool.map(lambda a: _run(a, cwd, fmt), commands))
    outputs += [_run(["outbox", *c], cwd, fmt)] if fmt == "text" else []
    outputs += [_run(["outbox", "--json", *c], cwd, fmt)]
    text = "\n".join(outputs)
    # the runs did what they are meant to: logged the platform calls, failed, recorded the errors
    assert "/robot/send" in text and "/open-apis/bot/v2/hook/" in text and "/cgi-bin/webhook/send" in text
    assert "exit 1" in text
    if fmt == "json":
        lines = [ln for ln in text.splitlines() if ln.startswith('{"time"')]
        assert lines and all({"time", "level", "logger", "message"} <= json.loads(ln).keys() for ln in lines)
    leaks = {o.splitlines()[0]: _leaks(o, planter) for o in outputs}
    assert {k: v for k, v in leaks.items() if v} == {}
    # phone numbers in log lines are masked too (the command lines heading each output aside)
    assert all("13812345678" not in o.split("\n", 1)[1] for o in outputs)


def test_config_is_masked_by_type_and_keeps_the_rest(
    planted: tuple[Path, Planter, list[str], list[str]],
) -> None:
    from hub.config import load_config

    cfg_path, planter, _, _ = planted
    cfg = load_config(cfg_path)
    shown = yaml.safe_dump(cfg.masked(), allow_unicode=True)
    assert _leaks(shown, planter) == []
    masked = cfg.masked()
    assert masked["destinations"]["wecom_robot"]["options"]["key"] == "***"
    assert masked["destinations"]["feishu_bot"]["options"]["hook"] == "***"
    assert masked["sources"]["http_feed"]["options"]["auth"] == {
        "type": "query",
        "name": "access_token",
        "token": "***",
    }
    assert masked["sources"]["http_feed"]["options"]["base_url"].startswith("http://feeduser:***@")
    assert masked["destinations"]["sms_http"]["options"]["sign"]["secret"] == "***"
    assert masked["destinations"]["dingtalk_work"]["options"]["app_key"] == "ding-app"  # not a secret


REDACTIONS = [
    (
        'HTTP Request: POST http://h/robot/send?access_token=AbC123&timestamp=1700000000000&sign=x%2By%3D "HTTP/1.1 200 OK"',
        'HTTP Request: POST http://h/robot/send?access_token=***&timestamp=1700000000000&sign=*** "HTTP/1.1 200 OK"',
    ),
    (
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7x",
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***",
    ),
    (
        "https://open.feishu.cn/open-apis/bot/v2/hook/2d0e-44ab?x=1",
        "https://open.feishu.cn/open-apis/bot/v2/hook/***?x=1",
    ),
    ("postgresql://cx:pa55@db:5432/cx", "postgresql://cx:***@db:5432/cx"),
    ("GET /cgi-bin/gettoken?corpid=ww1&corpsecret=zzz", "GET /cgi-bin/gettoken?corpid=ww1&corpsecret=***"),
    ("/gettoken?appkey=k1&appsecret=s1", "/gettoken?appkey=***&appsecret=***"),
    ("a=1&app_secret=q&Signature=Z&client_token=t&b=2", "a=1&app_secret=***&Signature=***&client_token=***&b=2"),
    ("'https://h/p?token=abc'", "'https://h/p?token=***'"),
    ("sign_name=cxhub&template=T1&timestamp=5", "sign_name=cxhub&template=T1&timestamp=5"),
    ("no secrets here: key words, tokens", "no secrets here: key words, tokens"),
    ("http://user@host/path", "http://user@host/path"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), REDACTIONS)
def test_redact(text: str, expected: str) -> None:
    from hub.redact import redact

    assert redact(text) == expected


def test_redact_masks_remembered_values_plain_and_url_encoded() -> None:
    from hub.redact import forget_all, redact, remember

    remember(["s3cr+t/v=1", "ab"])  # too short to search for: ordinary text would suffer
    try:
        assert redact("x s3cr+t/v=1 y s3cr%2Bt%2Fv%3D1 z s3cr%2Bt/v%3D1 about") == "x *** y *** z *** about"
    finally:
        forget_all()


def test_log_filter_redacts_httpx_request_lines_and_exceptions() -> None:
    from hub.redact import install

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install(handler)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("httpx")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        transport = httpx.MockTransport(lambda r: httpx.Response(400, json={}))
        with httpx.Client(transport=transport) as client:
            resp = client.post("http://h/robot/send", params={"access_token": "Tok-sEcReT", "sign": "Sg+sEcReT="})
            client.post("http://h/open-apis/bot/v2/hook/Hook-sEcReT")
            try:
                resp.raise_for_status()
            except httpx.HTTPStatusError:
                logger.exception("send failed")
            logger.warning("to %s", "13812345678")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    out = stream.getvalue()
    assert "HTTP Request: POST http://h/robot/send?access_token=***&sign=***" in out
    assert "/open-apis/bot/v2/hook/***" in out
    assert "sEcReT" not in out and "Sg%2B" not in out
    assert "HTTPStatusError" in out  # the exception is still there, redacted
