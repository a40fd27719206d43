"""A third-party connector package, end to end: examples/cxhub-connector-example installed with pip
next to cxhub, found through its entry points, and run by the real ``cxhub`` command against a
fake of its platform served over HTTP; then the package's own tests (the SDK's conformance suites).

The example's tests run here, in a subprocess rooted at the example (its own pytest config), rather
than from cxhub's ``testpaths``: they are the tests a third party runs in its own repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cxhub-connector-example"
DIST = "cxhub-connector-example"
CXHUB = str(Path(sys.executable).with_name("cxhub"))
API_KEY = "nps-key-e2e-5d1c"


def _installed_from_here() -> bool:
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        return False
    # an editable install records where it points; a copy installed from elsewhere is not ours
    direct = dist.read_text("direct_url.json")
    return direct is None or EXAMPLE.as_uri() in direct


@pytest.fixture(scope="session")
def example_installed() -> Iterator[None]:
    """The example package installed (editable) into this interpreter's environment, once.

    Offline: no index, no dependencies (cxhub is already here) and no build isolation (the
    environment's own setuptools builds it)."""
    if not _installed_from_here():
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--no-deps",
                "--no-build-isolation",
                "-e",
                str(EXAMPLE),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, f"pip install -e {EXAMPLE} failed:\n{res.stdout}\n{res.stderr}"
    yield


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k not in ("CXHUB_STORE_URL", "CXHUB_CONFIG")}
    return {**keep, "CXHUB_SECRET_KEY": "example-e2e-secret", "NPS_API_KEY": API_KEY}


def cxhub(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CXHUB, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def write_config(tmp_path: Path, base_url: str) -> Path:
    cfg = tmp_path / "cxhub.yaml"
    cfg.write_text(
        f"""\
secret_key: ${{CXHUB_SECRET_KEY}}
store: {{url: "sqlite:///{tmp_path / "store.db"}"}}
sources:
  vendor_nps:
    connector: example_nps
    options:
      base_url: {base_url}
      api_key: ${{NPS_API_KEY}}
      page_size: 2
    mapping:
      name: vendor_nps_answer
      kind: survey_response
      timezone: Asia/Shanghai
      fields:
        occurred_at: {{path: submitted_at, type: datetime}}
        channel: {{const: nps_vendor}}
        org.store: store_code
        feedback.nps: {{path: score, type: int}}
        feedback.text: comment
        customer.identities:
          member_id: respondent.member_no
          phone: respondent.mobile
        attributes.survey_id: survey_id
""",
        encoding="utf-8",
    )
    return cfg


def summary(res: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert res.returncode == 0, res.stdout + res.stderr
    loaded: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return loaded


def test_cxhub_connectors_lists_the_example(example_installed: None, env: dict[str, str], tmp_path: Path) -> None:
    res = cxhub(env, tmp_path, "connectors", "--json")
    assert res.returncode == 0, res.stderr
    listed = {row["name"]: row for row in map(json.loads, res.stdout.splitlines())}
    assert listed["example_nps"]["status"] == "ok" and listed["example_nps"]["roles"] == ["pull"]
    assert listed["example_nps_followup"]["status"] == "ok"
    assert listed["example_nps_followup"]["roles"] == ["destination"]


def test_cxhub_sync_stores_touchpoints_once(
    example_installed: None, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the fake platform runs in this process; an install made by this session is not on its path yet
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from cxhub_connector_example.fake import FakeNpsApi, sample_answers

    api = FakeNpsApi(API_KEY)
    with api.serve() as base_url:
        cfg = write_config(tmp_path, base_url)
        checked = cxhub(env, tmp_path, "check", "-c", str(cfg))
        assert checked.returncode == 0, checked.stdout + checked.stderr

        first = summary(cxhub(env, tmp_path, "sync", "vendor_nps", "-c", str(cfg), "--json"))
        assert first["read"] == 5 and first["stored"] == 5 and first["quarantined"] == 0, first

        again = summary(cxhub(env, tmp_path, "sync", "vendor_nps", "-c", str(cfg), "--json"))
        assert again["read"] == 0 and again["stored"] == 0, again  # resumed from the saved cursor

        full = summary(cxhub(env, tmp_path, "sync", "vendor_nps", "-c", str(cfg), "--full", "--json"))
        assert full["read"] == 5 and full["stored"] == 0, full  # everything again: dedup keeps one copy

        api.add(*[dict(a, id=f"ans_late_{i}") for i, a in enumerate(sample_answers(2))])
        late = summary(cxhub(env, tmp_path, "sync", "vendor_nps", "-c", str(cfg), "--json"))
        assert late["read"] == 2 and late["stored"] == 2, late

        events = cxhub(env, tmp_path, "events", "-c", str(cfg), "--json")
    assert events.returncode == 0, events.stderr
    rows = [json.loads(line) for line in events.stdout.splitlines()]
    assert len(rows) == 7 and len({r["external_id"] for r in rows}) == 7
    first_answer = next(r for r in rows if r["external_id"] == "ans_0001")
    assert first_answer["kind"] == "survey_response" and first_answer["feedback"]["nps"] == 3
    assert first_answer["org"]["store"] == "S002" and first_answer["channel"] == "nps_vendor"
    assert "13800000001" not in events.stdout  # phone numbers are kept sealed, never printed
    assert API_KEY not in events.stdout + events.stderr


def test_the_example_packages_own_tests_pass(example_installed: None) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and "failed" not in res.stdout
