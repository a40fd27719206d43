"""docs/push.md's instructions for signing a generic ``webhook`` request, run as written: the
config block becomes the hub's source, and the Python (standard library, ``standardwebhooks``) and
shell (curl + openssl) examples are taken from the page and sent to a hub served on a real port,
so the page cannot drift from what the receiver accepts."""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kit.runtime import build_runtime
from sqlalchemy import select

from hub.store.schema import touchpoints

DOC = Path(__file__).resolve().parents[3] / "docs" / "push.md"
SECRET = "whsec_" + base64.b64encode(b"the documented examples' secret!").decode()


def examples() -> dict[str, str]:
    """Every ``<!-- webhook-example: NAME -->`` marker and the fenced code block right after it."""
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"<!-- webhook-example: ([\w-]+) -->\n```\w*\n(.*?)\n```", text, flags=re.S)
    return dict(found)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """A hub whose sources are the documented config block, served by uvicorn on the real clock
    (the examples sign with the time of day); yields (runtime, the source's URL)."""
    import uvicorn

    from hub.web import create_app

    sources = yaml.safe_load(examples()["config"])["sources"]
    assert sources["reviews"]["options"]["secret"] == "${CXHUB_WEBHOOK_SECRET}"
    sources["reviews"]["options"]["secret"] = SECRET  # what ${CXHUB_WEBHOOK_SECRET} gives
    db = tmp_path_factory.mktemp("webhook-docs") / "hub.db"
    config = {"secret_key": "test-secret-key", "store": {"url": f"sqlite:///{db}"}, "sources": sources}
    rt = build_runtime(config)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield rt, f"http://127.0.0.1:{port}/hooks/reviews"
    finally:
        server.should_exit = True
        thread.join(10)
        rt.close()


def stored(rt: Any) -> dict[str, dict[str, Any]]:
    with rt.store.connect() as conn:
        docs = [r[0] for r in conn.execute(select(touchpoints.c.doc).where(touchpoints.c.source == "reviews")).all()]
    return {d["attributes"]["response_id"]: d for d in docs}


def run(argv: list[str], url: str, secret: str = SECRET) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CXHUB_WEBHOOK_URL": url, "CXHUB_WEBHOOK_SECRET": secret}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_page_has_every_example() -> None:
    assert set(examples()) == {"config", "python-stdlib", "python-standardwebhooks", "shell"}
    text = DOC.read_text(encoding="utf-8")
    for needle in ("webhook-id", "webhook-timestamp", "webhook-signature", "whsec_", "tolerance_seconds"):
        assert needle in text


@pytest.mark.parametrize(
    ("example", "response_id", "nps"), [("python-stdlib", "wjx-1001", 9), ("python-standardwebhooks", "wjx-1002", 4)]
)
def test_documented_python_example_is_stored(served: tuple[Any, str], example: str, response_id: str, nps: int) -> None:
    rt, url = served
    code = examples()[example]
    done = run([sys.executable, "-c", code], url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("200 ") and '"received":1' in done.stdout, done.stdout
    assert stored(rt)[response_id]["feedback"]["nps"] == nps
    # the same example with another secret is refused and stores nothing
    before = len(stored(rt))
    wrong = run([sys.executable, "-c", code], url, secret="whsec_" + base64.b64encode(b"x" * 32).decode())
    assert wrong.returncode != 0 and "401" in wrong.stderr
    assert len(stored(rt)) == before


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("curl")), reason="needs openssl and curl")
def test_documented_shell_example_is_stored(served: tuple[Any, str]) -> None:
    rt, url = served
    done = run(["bash", "-euo", "pipefail", "-c", examples()["shell"]], url)
    assert done.returncode == 0, done.stderr
    assert '"received":1' in done.stdout, done.stdout
    assert stored(rt)["wjx-1003"]["feedback"]["nps"] == 10
    wrong = run(["bash", "-euo", "pipefail", "-c", examples()["shell"]], url, secret="whsec_" + "eHh4eA==")
    assert wrong.returncode != 0 and "signature does not match" in wrong.stdout + wrong.stderr
