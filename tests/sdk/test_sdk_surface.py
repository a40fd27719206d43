"""The SDK's public surface: ``import hub.sdk`` is cheap, every exported name resolves to the object
of its home module, connectors in separate packages import nothing else of ``hub``, and the
conformance suites catch what they promise to catch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from standardwebhooks.webhooks import Webhook

import hub.sdk
from hub.sdk.connector import ConnectorContext, InboundRequest
from hub.sdk.testing import ConnectorConformance, FakeClock, PullSourceConformance, PushSourceConformance

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cxhub-connector-example"

#: modules a bare ``import hub.sdk`` must not load: HTTP, validation, vendor SDKs, crypto, the engine
HEAVY = (
    "httpx",
    "pydantic",
    "requests",
    "tenacity",
    "jmespath",
    "cryptography",
    "wechatpy",
    "lark_oapi",
    "alipay",
    "sqlalchemy",
    "hub.sdk.connector",
    "hub.config",
    "hub.store",
)
#: what using the core classes may load, and what it still must not
CORE_MUST_NOT = ("requests", "tenacity", "jmespath", "cryptography", "wechatpy", "lark_oapi", "alipay", "sqlalchemy")


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return set(json.loads(res.stdout))


def _top(mods: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in mods or any(m.startswith(n + ".") for m in mods))


def test_import_hub_sdk_loads_nothing_heavy() -> None:
    assert _top(_loaded_after("import hub.sdk"), HEAVY) == []


def test_the_core_classes_load_only_what_they_need() -> None:
    mods = _loaded_after("from hub.sdk import PullSource, RawRecord, Batch, RetriableError, ConnectorOptions")
    assert "hub.sdk.connector" in mods
    assert _top(mods, CORE_MUST_NOT) == []
    assert "hub.sdk.callbacks" not in mods and "hub.sdk.tokens" not in mods


def test_every_exported_name_resolves_to_its_home_object() -> None:
    import importlib

    assert len(hub.sdk.__all__) == len(set(hub.sdk.__all__))
    homes = {name: module for module, names in hub.sdk._EXPORTS.items() for name in names}
    assert set(homes) == set(hub.sdk.__all__), "every export has a home module, and only exports"
    for name in hub.sdk.__all__:
        assert getattr(hub.sdk, name) is getattr(importlib.import_module(homes[name]), name), name
    assert set(hub.sdk.__all__) <= set(dir(hub.sdk))


def test_star_import_and_submodules() -> None:
    namespace: dict[str, Any] = {}
    exec("from hub.sdk import *", namespace)
    assert set(hub.sdk.__all__) <= set(namespace)
    assert hub.sdk.testing.FakeClock is FakeClock
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = hub.sdk.nope


def test_the_guide_covers_the_roles_errors_and_registration() -> None:
    doc = hub.sdk.__doc__ or ""
    for topic in (
        "PullSource",
        "PushSource",
        "Destination",
        "RetriableError",
        "PermanentError",
        "SignatureError",
        "SecretStr",
        "ConnectorContext",
        "MockTransport",
        "TokenCache",
        "conformance",
        "cxhub.connectors",
    ):
        assert topic in doc, topic


def _hub_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return [m for m in out if m == "hub" or m.startswith("hub.")]


def test_the_example_package_imports_only_the_sdk() -> None:
    files = sorted((EXAMPLE / "cxhub_connector_example").glob("*.py"))
    assert files
    for f in files:
        for module in _hub_imports(f):
            assert module == "hub.sdk", f"{f.name} imports {module}; connectors import hub.sdk only"


# ------------------------------------------------------------------ the suites on the generic connectors

SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="


class TestWebhookPushConformance(PushSourceConformance):
    connector_kind = "webhook"
    options: ClassVar[dict[str, Any]] = {"secret": SECRET, "id_path": "review_id"}

    def signed_request(self, clock: FakeClock) -> InboundRequest:
        body = json.dumps({"review_id": "r1", "rating": 1, "content": "太慢了"}, ensure_ascii=False).encode()
        headers = {
            "content-type": "application/json",
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(clock().timestamp())),
            "webhook-signature": Webhook(SECRET).sign("msg_1", clock(), body.decode()),
        }
        return InboundRequest("POST", "/hooks/conformance", {}, headers, body, received_at=clock())


class TestJsonlPullConformance(PullSourceConformance):
    connector_kind = "jsonl"
    options: ClassVar[dict[str, Any]] = {"path": "", "id_path": "id", "batch_size": 2}
    min_records = 5

    @pytest.fixture(autouse=True)
    def _drop(self, tmp_path: Path) -> None:
        (tmp_path / "a.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in range(5)))
        self.folder = tmp_path

    def make_connector(self, context: ConnectorContext | None = None) -> Any:
        from connectors.jsonl import JsonlOptions, JsonlSource

        opts = JsonlOptions.model_validate({**self.options, "path": str(self.folder)})
        return JsonlSource(self.connector_name, opts, context or self.make_context())


def test_the_secret_check_catches_a_leak() -> None:
    from pydantic import SecretStr, model_validator

    from hub.sdk.connector import ConnectorOptions

    class Leaky(ConnectorOptions):
        token: SecretStr

        @model_validator(mode="before")
        @classmethod
        def _known(cls, data: Any) -> Any:
            if set(data) - {"token"}:
                raise ValueError(f"unknown keys in {data}")  # quotes the raw input, token included
            return data

    class Suite(ConnectorConformance):
        connector_kind = "webhook"
        options: ClassVar[dict[str, Any]] = {"token": "tok-9a8b7c"}

        def connector_class(self) -> Any:
            cls = super().connector_class()
            return type("LeakyConnector", (cls,), {"Options": Leaky, "__doc__": "x"})

    with pytest.raises(AssertionError, match="secret #1"):
        Suite().test_secrets_never_in_validation_errors()
