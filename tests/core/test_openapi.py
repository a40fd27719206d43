"""The published OpenAPI description of ``cxhub run`` (hub/operator.py), fuzzed by schemathesis
against a live process running the demo config (webhooks, survey page, staff links, health, metrics).

Every operation is called with generated requests (valid and invalid paths, bodies, forms); each
answer must be one the description promises, never a 5xx, and conform to its documented schema.
The operator endpoints answer only with the token.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parents[2]
CXHUB = str(Path(sys.executable).with_name("cxhub"))
TOKEN = "op-token-for-the-openapi-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `cxhub run` of config/demo.yaml on a fresh SQLite store, with an operator token."""
    tmp = tmp_path_factory.mktemp("openapi")
    shutil.copytree(ROOT / "config", tmp / "config")
    shutil.copytree(ROOT / "mappings", tmp / "mappings")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXHUB_")}
    env |= {
        "CXHUB_SECRET_KEY": "openapi-test-secret-key",
        "CXHUB_OPERATOR_TOKEN": TOKEN,
        "CXHUB_STORE_URL": f"sqlite:///{tmp}/store.db",
        "CXHUB_DEMO_DIR": str(tmp / "drops"),
    }
    proc = subprocess.Popen(
        [CXHUB, "run", "-c", "config/demo.yaml", "--port", str(port)],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            proc.kill()
            pytest.fail("cxhub run did not become healthy: " + proc.communicate()[0].decode()[-2000:])
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out = proc.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0].decode()
        # a 5xx that schemathesis did not see would still leave its traceback here
        assert "Traceback" not in out, out[-3000:]


@pytest.fixture(scope="module")
def api(live: str) -> Any:
    return schemathesis.openapi.from_url(f"{live}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})


def test_every_operation_answers_as_described(api: Any, live: str) -> None:
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 8, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answers(case: Any) -> None:
            case.call_and_validate(base_url=live, headers={"Authorization": f"Bearer {TOKEN}"})

        answers()


def test_the_description_covers_every_route(live: str) -> None:
    doc = httpx.get(f"{live}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    paths = doc["paths"]
    for path in ("/hooks/{source}", "/healthz", "/readyz", "/metrics", "/s/{token}", "/openapi.json"):
        assert path in paths, sorted(paths)
    assert set(paths["/hooks/{source}"]) == {"get", "post"}
    assert "503" in paths["/hooks/{source}"]["post"]["responses"]
    assert doc["components"]["securitySchemes"]["operator"]["scheme"] == "bearer"


def test_operator_endpoints_need_the_token(live: str) -> None:
    for path in ("/openapi.json", "/metrics"):
        assert httpx.get(f"{live}{path}").status_code == 401
        assert httpx.get(f"{live}{path}", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.get(f"{live}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert TOKEN not in ok.text
    # health stays open for load balancers
    assert httpx.get(f"{live}/healthz").status_code == 200
