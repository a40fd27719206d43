"""Personal data at rest (docs/privacy.md): no store holds a plain phone number after an ingest
that invites by SMS (the identity is a keyed hash plus an encrypted contact, the outbox recipient
is sealed, a number in a review's text is masked and kept encrypted beside it), yet the SMS still
reaches the number; quarantined payloads are deleted after the retention and masked when shown.
SQLite and the real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from kit.runtime import build_runtime
from sqlalchemy import func, select, text

from hub.features.delivery import build_worker
from hub.outbox.messages import message_from_dict, recipients
from hub.privacy import Sealer, Vault, is_sealed, mask_payload, unseal
from hub.sdk.connector import RawRecord
from hub.sdk.testing import FakeClock
from hub.store import Store
from hub.store.schema import metadata, outbox, quarantine, touchpoints

PHONE, OTHER = "13812345678", "13900001111"
SECRET = "test-secret-key"

CONFIG = f"""\
secret_key: {SECRET}
server: {{public_url: "https://cx.example.com"}}
destinations:
  sms: {{connector: sms, options: {{access_key_id: k, access_key_secret: s, sign_name: 鲜超市, template_code: SMS_1,
        base_url: "https://sms.test"}}}}
sources:
  pos:
    connector: webhook
    options: {{secret: whsec_dGVzdA==, id_path: id}}
    mapping:
      name: pos
      fields:
        kind: kind
        occurred_at: {{path: at, type: datetime}}
        org.store: store
        order.amount: {{path: total, type: decimal}}
        feedback.rating: {{path: rating, type: decimal}}
        feedback.text: text
        attributes.note: note
        customer.identities: {{phone: mobile, member_id: member}}
surveys:
  quiet_hours: {{start: "23:59", end: "00:00"}}
  channels: [{{channel: sms, destination: sms, template: SMS_1}}]
  questionnaires: {{retail: retail}}
  rules: [{{name: after_checkout, questionnaire: retail, when: {{kind: transaction}}, delay: 30m, expires: 3d}}]
"""


class SmsGateway:
    """Aliyun's SendSms as httpx sees it: records each request's PhoneNumbers."""

    def __init__(self) -> None:
        self.phones: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = {**parse_qs(request.url.query.decode()), **parse_qs(request.content.decode() or "")}
        self.phones += params.get("PhoneNumbers", [])
        return httpx.Response(200, json={"Code": "OK", "BizId": "b1", "RequestId": "r1"})


def record(ext: str, clock: FakeClock, **fields: Any) -> RawRecord:
    base = {"id": ext, "kind": "transaction", "at": clock().isoformat(), "store": "S001", "total": "60.00"}
    return RawRecord("pos", ext, {**base, **fields}, clock())


def every_row(store: Store) -> str:
    """Every row of every table of the store, as text."""
    out = []
    with store.connect() as conn:
        for t in metadata.sorted_tables:
            if store.engine.dialect.has_table(conn, t.name):
                out += [repr(tuple(r)) for r in conn.execute(text(f'SELECT * FROM "{t.name}"'))]
    return "\n".join(out)


def test_no_plain_phone_at_rest_and_the_sms_still_reaches_it(tmp_path: Path, store: Store, clock: FakeClock) -> None:
    gateway = SmsGateway()
    rt = build_runtime(
        CONFIG, path=tmp_path / "cxhub.yaml", store=store, clock=clock, transport=httpx.MockTransport(gateway)
    )
    try:
        ingest = rt.ingestor.ingest
        ingest("pos", rt.mapping("pos"), [record("T1", clock, mobile=PHONE, member="M1")])
        review = record("V1", clock, kind="review", member="M1", rating=1, text=f"打电话 {OTHER} 也没人管",
                        note=f"callback {PHONE}")  # fmt: skip
        ingest("pos", rt.mapping("pos"), [review])
        stored = every_row(rt.store)
        assert PHONE not in stored and OTHER not in stored
        # the review's text is masked in the touchpoint; the numbers are kept encrypted beside it
        with rt.store.connect() as conn:
            doc = conn.execute(select(touchpoints.c.doc).where(touchpoints.c.external_id == "V1")).scalar_one()
            [row] = conn.execute(select(outbox.c.message)).scalars().all()
        assert (
            doc["feedback"]["text"] == "打电话 139****1111 也没人管"
            and doc["attributes"]["note"] == "callback 138****5678"
        )
        vault = Vault(SECRET.encode())
        assert [vault.decrypt(t) for t in doc["attributes"]["sealed_phones"]] == [OTHER, PHONE]
        # the outbox row's recipient is sealed; read back to be sent, it is the number again
        assert is_sealed(row["to"]) and recipients(row["to"]) == [PHONE]
        assert message_from_dict(row).to == [PHONE]
        clock.advance(hours=1)
        worker = build_worker(rt)
        worker.drain()
        assert gateway.phones == [PHONE]
        with rt.store.connect() as conn:
            assert conn.execute(select(outbox.c.status)).scalars().all() == ["sent"]
        assert PHONE not in every_row(rt.store)  # nor after sending (receipts, rate buckets, send log)
    finally:
        rt.close()


def test_identity_hashes_are_hmac_sha256_of_the_normalised_value() -> None:
    """Stored identities are matched by these hashes: the form must never change."""
    import hashlib
    import hmac

    from hub.privacy import normalize

    for secret in (b"k", SECRET.encode(), b"x" * 100):
        vault = Vault(secret)
        key = hashlib.sha256(b"cxhub-identity-hash\x00" + secret).digest()
        for ns, value in (("phone", "+86 138-1234-5678"), ("email", "A@B.cn"), ("member_id", "会员" * 40)):
            want = hmac.digest(key, f"{ns}\x00{normalize(ns, value)}".encode(), "sha256")[:16].hex()
            assert vault.hash(ns, value) == "h:" + want


def test_a_value_sealed_with_another_key_is_a_clear_error() -> None:
    token = Sealer(b"another-secret-key-of-some-other-deployment").seal('["13812345678"]')
    assert unseal(token) == '["13812345678"]'  # a sealer of that key was made in this process
    forged = token.replace(token.split(":")[1], "00000000", 1)
    with pytest.raises(ValueError, match="secret key changed"):
        unseal(forged)
    with pytest.raises(ValueError, match="cannot be opened with this secret key"):
        Sealer(SECRET.encode()).unseal(token)


def test_quarantine_is_kept_for_its_retention_then_deleted(tmp_path: Path, store: Store, clock: FakeClock) -> None:
    rt = build_runtime(
        CONFIG + "store: {quarantine_retention_days: 30}\n", path=tmp_path / "cxhub.yaml", store=store, clock=clock
    )
    try:
        bad = record("Q1", clock, mobile=PHONE, total="not a number")
        assert rt.ingestor.ingest("pos", rt.mapping("pos"), [bad]).quarantined == 1
        clock.advance(days=20)
        assert rt.ingestor.ingest("pos", rt.mapping("pos"), [record("Q2", clock, total="x")]).quarantined == 1
        [job] = [j for j in rt.jobs if j.name == "quarantine-retention"]
        assert job.leader_only and job.seconds == 3600
        clock.advance(days=10, minutes=1)  # Q1 is 30 days and a minute old, Q2 ten days
        assert job.func() == 1
        with rt.store.connect() as conn:
            left = conn.execute(select(quarantine.c.external_id)).scalars().all()
            assert left == ["Q2"] and conn.execute(select(func.count()).select_from(quarantine)).scalar() == 1
        clock.advance(days=30)  # Q2 too, now
        assert job.func() == 1
    finally:
        rt.close()


def test_a_quarantined_payload_is_masked_when_shown() -> None:
    row = {
        "id": 7,
        "reason": f"order.amount: '{PHONE}' is not a number",
        "payload": {
            "member": {"mobile": PHONE, "name": "张三丰", "email": "li.lei@example.com", "number": "M1"},
            "text": f"打电话 {OTHER}，或写信 li.lei@example.com",
            "tel": 13812345678,
        },
    }
    shown = repr(mask_payload(row))
    for plain in (PHONE, OTHER, "张三丰", "li.lei@example.com", "13812345678"):
        assert plain not in shown, plain
    assert mask_payload(row)["payload"]["member"] == {
        "mobile": "138****5678",
        "name": "张**",
        "email": "l***@example.com",
        "number": "M1",
    }


def test_cxhub_quarantine_shows_payloads_masked(tmp_path: Path, clock: FakeClock) -> None:
    from typer.testing import CliRunner

    from cli import app

    path = tmp_path / "cxhub.yaml"
    db = f"sqlite:///{tmp_path / 'cxhub.db'}"
    rt = build_runtime(CONFIG, path=path, store=db, clock=clock)
    try:
        bad = record("Q1", clock, mobile=PHONE, note=f"邮件 li.lei@example.com 电话 {OTHER}", total="x")
        assert rt.ingestor.ingest("pos", rt.mapping("pos"), [bad]).quarantined == 1
    finally:
        rt.close()
    env = {"CXHUB_STORE_URL": db, "CXHUB_SECRET_KEY": SECRET}
    out = CliRunner().invoke(app, ["quarantine", "--json", "-c", str(path)], env=env)
    assert out.exit_code == 0, out.output
    [shown] = [json.loads(line) for line in out.output.splitlines() if line.startswith("{")]
    assert shown["external_id"] == "Q1" and shown["payload"]["mobile"] == "138****5678"
    for plain in (PHONE, OTHER, "li.lei@example.com"):
        assert plain not in out.output
