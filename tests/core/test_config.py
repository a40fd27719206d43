"""Config loading: every error names file, line and key path; secrets are masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import load_config, parse_duration
from hub.errors import ConfigError, ConfigErrors

GOOD = """\
secret_key: ${TEST_SECRET}
store: {url: "sqlite:///x.db"}
sources:
  drops:
    connector: jsonl
    mapping: retail_checkout
    schedule: {every: 5m}
    options: {path: /tmp, id_path: receipt_no}
  reviews:
    connector: webhook
    mapping: generic_review
    options: {secret: whsec_c2VjcmV0LXZhbHVlLXRoYXQtaXMtbG9uZw==}
"""


def load(text: str, env: dict[str, str] | None = None):
    return load_config("cfg.yaml", text=text, env=env if env is not None else {"TEST_SECRET": "s3cr3t"})


def test_good_config_loads_with_connectors_and_mappings() -> None:
    cfg = load(GOOD)
    assert cfg.secret_key == b"s3cr3t"
    assert cfg.sources["drops"].config.schedule.every == 300
    assert cfg.sources["drops"].mapping is not None and cfg.sources["drops"].mapping.name == "retail_checkout"
    assert cfg.sources["reviews"].cls.kind == "webhook"


@pytest.mark.parametrize(
    ("text", "where", "needle"),
    [
        (GOOD.replace("connector: jsonl", "connector: jsonn"), "cfg.yaml:5", "unknown connector 'jsonn'"),
        (
            GOOD.replace("id_path: receipt_no}", "id_path: receipt_no, colour: red}"),
            "cfg.yaml:8",
            "sources.drops.options.colour: Extra inputs are not permitted",
        ),
        (GOOD.replace("{every: 5m}", "{every: soon}"), "cfg.yaml:7", "'soon' is not a duration"),
        (GOOD.replace("{every: 5m}", "{cron: '61 * * * *'}"), "cfg.yaml:7", "bad cron expression"),
        (GOOD.replace("mapping: retail_checkout", "mapping: no_such_preset"), "cfg.yaml:6", "no preset mapping"),
        (
            GOOD.replace("store: {url", "stor: {url"),
            "cfg.yaml:2",
            "stor: unknown section; no installed feature reads it",
        ),
        (GOOD + "  reviews:\n    connector: webhook\n", "cfg.yaml:13", "duplicate key 'reviews'"),
        (
            GOOD.replace("connector: webhook", "connector: webhook\n    schedule: {every: 1m}"),
            "cfg.yaml:11",
            "push source: it has no schedule",
        ),
        ("sources: [1, 2\n", "cfg.yaml:2", "invalid YAML"),
    ],
)
def test_errors_name_file_line_and_key(text: str, where: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(text)
    msg = str(info.value)
    assert needle in msg, msg
    assert where + ":" in msg, msg


def test_every_error_is_reported_at_once() -> None:
    text = GOOD.replace("connector: jsonl", "connector: nope").replace("connector: webhook", "connector: nope2")
    with pytest.raises(ConfigErrors) as info:
        load(text)
    assert len(info.value.errors) == 2


def test_missing_environment_variable_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"cfg.yaml:1: secret_key: environment variable TEST_SECRET is not set"):
        load(GOOD, env={})


def test_env_default_is_used() -> None:
    cfg = load(GOOD.replace("${TEST_SECRET}", "${NOPE:-fallback}"), env={})
    assert cfg.secret_key == b"fallback"


def test_masked_config_shows_no_secret() -> None:
    cfg = load(GOOD.replace("sqlite:///x.db", "postgresql://cx:pw123@db/cx"))
    text = repr(cfg.masked())
    for secret in ("s3cr3t", "whsec_c2VjcmV0", "pw123"):
        assert secret not in text
    assert "***" in text and "postgresql://cx:***@db/cx" in text


def test_mapping_file_errors_point_into_the_mapping_file(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("name: m\nkind: review\nfields:\n  occurred_at: at\n  feedback.stars: s\n")
    cfg = tmp_path / "cxhub.yaml"
    cfg.write_text(GOOD.replace("mapping: generic_review", "mapping: ./m.yaml"))
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={"TEST_SECRET": "x"})
    assert f"{tmp_path / 'm.yaml'}:5: fields.feedback.stars: feedback.stars: unknown target field" in str(info.value)


def test_non_utf8_config_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_bytes(b"store: {url: '\xff\xfe'}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(p)


@pytest.mark.parametrize(
    ("raw", "seconds"), [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), (90, 90), ("250ms", 0.25)]
)
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == seconds
