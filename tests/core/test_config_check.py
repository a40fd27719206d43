"""`cxhub check` and config loading: undeclared identity namespaces, "did you mean" for every
unknown name, and every error of a run (config and mappings) listed at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from hub.config import load_config
from hub.errors import ConfigError, ConfigErrors

BASE = """\
secret_key: test-secret
store: {url: "sqlite:///x.db"}
server: {port: 8080}
identity_namespaces: [loyalty_card]
destinations:
  store_robot:
    connector: dingtalk_robot
    options: {access_token: t0ken}
  sms_gateway:
    connector: wecom_robot
    options: {key: k3y}
sources:
  pos:
    connector: jsonl
    mapping: retail_checkout
    options: {path: /tmp, id_path: receipt_no}
  crm:
    connector: jsonl
    options: {path: /tmp, id_path: member_no}
    mapping:
      name: crm
      kind: member
      lookups:
        level: {"1": silver}
      fields:
        occurred_at: {path: at, type: datetime}
        customer.member_level: {path: level, lookup: level}
        customer.identities: {member_id: member_no, email: mail, loyalty_card: card}
        order.items:
          each: lines
          fields:
            sku: sku
surveys:
  channels:
    - {channel: sms, destination: sms_gateway}
    - {channel: wechat_template, destination: store_robot, namespace: openid}
  rules:
    - {name: after_checkout, questionnaire: retail}
feedback:
  contacts:
    manager: {endpoints: [{destination: store_robot}]}
  routing:
    - {notify: [manager]}
  recovery_survey: {enabled: true, survey: after_checkout}
"""


def errors_of(text: str, tmp_path: Path) -> list[ConfigError]:
    path = tmp_path / "cxhub.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, env={})
    except ConfigErrors as exc:
        return list(exc.errors)
    except ConfigError as exc:
        return [exc]
    return []


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_base_config_loads(tmp_path: Path) -> None:
    assert errors_of(BASE, tmp_path) == []


def test_a_misspelt_namespace_names_file_line_field_and_the_fix(tmp_path: Path) -> None:
    text = BASE.replace("email: mail", "emial: mail")
    (err,) = errors_of(text, tmp_path)
    assert err.file == str(tmp_path / "cxhub.yaml") and err.line == line_of(text, "emial")
    assert err.key == "fields.customer.identities.emial"
    assert "unknown identity namespace 'emial'" in str(err) and str(err).endswith("did you mean 'email'?")
    assert "identity_namespaces" in str(err)


def test_a_misspelt_namespace_in_a_mapping_file(tmp_path: Path) -> None:
    mapping = "name: m\nkind: member\nfields:\n  occurred_at: at\n  customer.identities:\n    emial: mail\n"
    (tmp_path / "m.yaml").write_text(mapping, encoding="utf-8")
    (err,) = errors_of(BASE.replace("mapping: retail_checkout", "mapping: ./m.yaml"), tmp_path)
    assert str(err).startswith(f"{tmp_path / 'm.yaml'}:6: fields.customer.identities.emial: ")
    assert "did you mean 'email'?" in str(err)


@pytest.mark.parametrize(
    "declaration",
    [
        "identity_namespaces: [loyalty_card]",
        "identity_namespaces:\n  loyalty_card: the number on the loyalty card",
        "identity_namespaces: {loyalty_card: null, partner_uid: a partner's user id}",
    ],
)
def test_a_declared_namespace_passes(tmp_path: Path, declaration: str) -> None:
    assert errors_of(BASE.replace("identity_namespaces: [loyalty_card]", declaration), tmp_path) == []


def test_an_undeclared_custom_namespace_is_an_error(tmp_path: Path) -> None:
    (err,) = errors_of(BASE.replace("identity_namespaces: [loyalty_card]\n", ""), tmp_path)
    assert err.key == "fields.customer.identities.loyalty_card"
    assert "unknown identity namespace 'loyalty_card'" in str(err)


def test_a_namespace_must_fit_the_identities_table(tmp_path: Path) -> None:
    errors = errors_of(BASE.replace("[loyalty_card]", "[loyalty card]"), tmp_path)
    assert any(e.key is not None and e.key.startswith("identity_namespaces") for e in errors), errors


@pytest.mark.parametrize(
    ("old", "new", "key", "hint", "at"),
    [
        # config keys, by pydantic's model at that place
        ("server: {port: 8080}", "server: {prot: 8080}", "server.prot", "port", None),
        ("    mapping: retail_checkout", "    maping: retail_checkout", "sources.pos.maping", "mapping", None),
        ("id_path: receipt_no}", "id_pth: receipt_no}", "sources.pos.options.id_pth", "id_path", None),
        (
            "{name: after_checkout, questionnaire",
            "{name: after_checkout, questionaire",
            "surveys.rules[0].questionaire",
            "questionnaire",
            None,
        ),
        ("  contacts:", "  contacs:", "feedback.contacs", "contacts", None),
        # top-level sections
        ("identity_namespaces:", "identity_namespace:", "identity_namespace", "identity_namespaces", None),
        ("surveys:", "survey:", "survey", "surveys", None),
        # connectors and presets
        ("connector: jsonl\n    mapping", "connector: jsnol\n    mapping", "sources.pos.connector", "jsonl", None),
        (
            "connector: dingtalk_robot",
            "connector: dingtalk_robo",
            "destinations.store_robot.connector",
            "dingtalk_robot",
            None,
        ),
        ("mapping: retail_checkout", "mapping: retail_chekout", "sources.pos.mapping", "retail_checkout", None),
        # mappings: target fields, lookups, namespaces, field spec keys and types, item fields, top keys
        (
            "customer.member_level:",
            "customer.member_levl:",
            "fields.customer.member_levl",
            "customer.member_level",
            None,
        ),
        ("lookup: level}", "lookup: levl}", "fields.customer.member_level.lookup", "level", None),
        ("email: mail", "emial: mail", "fields.customer.identities.emial", "email", None),
        ("{path: at, type: datetime}", "{path: at, typ: datetime}", "fields.occurred_at.typ", "type", None),
        ("{path: at, type: datetime}", "{path: at, type: datetme}", "fields.occurred_at.type", "datetime", None),
        ("sku: sku", "skuu: sku", "fields.order.items.fields.skuu", "sku", None),
        ("      lookups:", "      lookup:", "lookup", "lookups", None),
        # names the features' sections refer to
        (
            "destination: sms_gateway}",
            "destination: sms_gatway}",
            "surveys.channels[0].destination",
            "sms_gateway",
            None,
        ),
        ("namespace: openid}", "namespace: opnid}", "surveys.channels[1].namespace", "openid", None),
        ("questionnaire: retail}", "questionnaire: retial}", "surveys.rules[0].questionnaire", "retail", None),
        (
            "{destination: store_robot}",
            "{destination: store_robt}",
            "feedback.contacts.manager.endpoints",
            "store_robot",
            None,
        ),
        # the feedback section's cross-references are checked by its model: the section's line
        ("notify: [manager]", "notify: [manger]", "feedback", "manager", "feedback:"),
        (
            "survey: after_checkout}",
            "survey: after_chekout}",
            "feedback.recovery_survey.survey",
            "after_checkout",
            None,
        ),
    ],
)
def test_every_unknown_name_gets_a_suggestion(
    tmp_path: Path, old: str, new: str, key: str, hint: str, at: str | None
) -> None:
    assert BASE.count(old) == 1, old
    text = BASE.replace(old, new)
    errors = errors_of(text, tmp_path)
    found = [e for e in errors if f"did you mean {hint!r}?" in str(e)]
    assert found, "\n".join(map(str, errors))
    err = found[0]
    assert err.key is not None and err.key.startswith(key), str(err)
    assert err.file == str(tmp_path / "cxhub.yaml")
    assert err.line == line_of(text, at or new.splitlines()[0].strip()), str(err)


def test_check_lists_every_error_of_the_config_and_its_mappings_in_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CXHUB_SECRET_KEY", raising=False)
    (tmp_path / "a.yaml").write_text(
        "name: a\nkind: member\nfields:\n  occurred_at: at\n  order.amout: total\n  customer.identities: {emial: mail}\n",
        encoding="utf-8",
    )
    (tmp_path / "b.yaml").write_text(
        "name: b\nkind: review\nfields:\n  occurred_at: {path: at, typ: datetime}\n  feedback.stars: s\n",
        encoding="utf-8",
    )
    text = (
        BASE.replace("server: {port: 8080}", "server: {prot: 8080}")
        .replace("mapping: retail_checkout", "mapping: ./b.yaml")
        .replace(
            "    mapping:\n      name: crm",
            "    mapping: ./a.yaml\n    unused:\n      name: crm",
        )
    )
    # the inline mapping above became an unknown key of the source: drop it
    text = text.replace("    unused:\n", "    x_unused:\n")
    start = text.index("    x_unused:\n")
    end = text.index("surveys:")
    text = text[:start] + text[end:]
    cfg = tmp_path / "cxhub.yaml"
    cfg.write_text(text, encoding="utf-8")

    res = CliRunner().invoke(app, ["check", "-c", str(cfg)], catch_exceptions=False)

    assert res.exit_code == 1
    out = [line for line in res.output.splitlines() if line.startswith("✗")]
    expected = [
        f"{tmp_path / 'a.yaml'}:5: fields.order.amout: order.amout: unknown target field; see `cxhub schema`; "
        "did you mean 'order.amount'?",
        f"{tmp_path / 'a.yaml'}:6: fields.customer.identities.emial: ",
        f"{tmp_path / 'b.yaml'}:4: fields.occurred_at.typ: ",
        f"{tmp_path / 'b.yaml'}:5: fields.feedback.stars: ",
        f"{cfg}:3: server.prot: Extra inputs are not permitted; did you mean 'port'?",
    ]
    assert len(out) == len(expected), res.output
    for line, start_of in zip(out, expected, strict=True):
        assert line.startswith(f"✗ {start_of}"), res.output
    assert res.output.rstrip().endswith("5 error(s)")
