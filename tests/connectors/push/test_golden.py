"""Golden vectors: worked examples published by the platforms and the SDKs' own tests, sent through
the receiver as the platform would send them."""

from __future__ import annotations

import base64
import json

from kit.peers import feishu_signed
from kit.push import (
    DING_AES_KEY,
    DING_APP_KEY,
    DING_TOKEN,
    FEISHU_ENCRYPT_KEY,
    FEISHU_TOKEN,
    WECOM_CORP_ID,
    Hub,
    at,
)
from sqlalchemy import select
from wechatpy.crypto import PrpCrypto, _get_signature

from hub.store.schema import inbox

# Official WXBizMsgCrypt Python sample (Sample.py, jonyqin 2014): token spamtest, appid wx2c2769f8efd9abc2
OA_SAMPLE_XML = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]>"
    "</FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]>"
    "</Content><MsgId>6054768590064713728</MsgId><Encrypt><![CDATA[hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655H"
    "uD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZ"
    "kyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZ"
    "bGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM"
    "9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=]]></Encrypt></xml>"
)
OA_SAMPLE_QUERY = {
    "msg_signature": "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
    "timestamp": "1409735669",
    "nonce": "1320562132",
    "encrypt_type": "aes",
}

# wechatpy tests/test_crypto.py (WeCom): token 123456, corp id wx49f0ab532d5d035a
WECOM_ECHO = {
    "msg_signature": "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96",
    "timestamp": "1411443780",
    "nonce": "437374425",
    "echostr": "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==",
}
WECOM_XML = (
    "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0"
    "gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z"
    "1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7v"
    "XUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCp"
    "QVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]></Encrypt>\n<AgentID><![CDATA[1]]></AgentID>\n</xml>"
)
WECOM_QUERY = {
    "msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
    "timestamp": "1411525903",
    "nonce": "461056294",
}

# open-dingtalk/DingTalk-Callback-Crypto DingCallbackCrypto3.py: the check_url callback
DING_QUERY = {
    "signature": "03044561471240d4a14bb09372dfcfd4fd0e40cb",
    "timestamp": "1608001896814",
    "nonce": "WL4PK6yA",
}
DING_BODY = {
    "encrypt": "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3"
}

# Feishu encryption doc example (配置 Encrypt Key): a v1 user_status_change event, key "kudryavka"
FEISHU_ENCRYPT = (
    "FIAfJPGRmFZWkaxPQ1XrJZVbv2JwdjfLk4jx0k/U1deAqYK3AXOZ5zcHt/cC4ZNTqYwWUW/EoL+b2hW/C4zoAQQ5CeMtbxX2zHjm+E4nX/Aww+FHUL6iu"
    "IMaeL2KLxqdtbHRC50vgC2YI7xohnb3KuCNBMUzLiPeNIpVdnYaeteCmSaESb+AZpJB9PExzTpRDzCRv+T6o5vlzaE8UgIneC1sYu85BnPBEMTSuj1ZZz"
    "fdQi7ZW992Z4dmJxn9e8FL2VArNm99f5Io3c2O4AcNsQENNKtfAAxVjCqc3mg5jF0nKabA+u/5vrUD76flX1UOF5fzJ0sApG2OEn9wfyPDRBsApn9o+fc"
    "eF9hNrYBGsdtZrZYyGG387CGOtKsuj8e2E8SNp+Pn4E9oYejOTR+ZNLNi+twxaXVlJhr6l+RXYwEiMGQE9zGFBD6h2dOhKh3W84p1GEYnSRIz1+9/Hp66"
    "arjC7RCrhuW5OjCj4QFEQJiwgL45XryxHtiZ7JdAlPmjVsL03CxxFZarzxzffryrWUG3VkRdHRHbTsC34+ScoL5MTDU1QAWdqUC1T7xT0lCvQELaIhBTX"
    "AYrznJl6PlA83oqlMxpHh0gZBB1jFbfoUr7OQbBs1xqzpYK6Yjux6diwpQB1zlZErYJUfCqK7G/zI9yK/60b4HW0k3M+AvzMcw="
)

XML = {"Content-Type": "text/xml"}


def test_wechat_official_sample_through_the_receiver(sqlite_hub: Hub) -> None:
    sqlite_hub.clock.set(at(1409735669 + 2))
    r = sqlite_hub.client.post("/hooks/oa", params=OA_SAMPLE_QUERY, content=OA_SAMPLE_XML, headers=XML)
    assert (r.status_code, r.text) == (200, "success")
    (event,) = sqlite_hub.events("oa")
    assert event["external_id"] == "6054768590064713728"
    assert event["kind"] == "message"
    assert event["feedback"]["text"] == "abcdteT"
    assert event["customer"]["identities"][0]["value"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"


def test_wechat_official_sample_with_one_changed_digit_is_refused(sqlite_hub: Hub) -> None:
    sqlite_hub.clock.set(at(1409735669))
    bad = {**OA_SAMPLE_QUERY, "nonce": "1320562133"}
    r = sqlite_hub.client.post("/hooks/oa", params=bad, content=OA_SAMPLE_XML, headers=XML)
    assert r.status_code == 401
    assert sqlite_hub.stored_anything() == 0


def test_wechat_official_sample_is_stale_after_the_window(sqlite_hub: Hub) -> None:
    sqlite_hub.clock.set(at(1409735669 + 301))
    r = sqlite_hub.client.post("/hooks/oa", params=OA_SAMPLE_QUERY, content=OA_SAMPLE_XML, headers=XML)
    assert r.status_code == 401 and "replay window" in r.text
    assert sqlite_hub.stored_anything() == 0


def test_wecom_url_verification_vector(sqlite_hub: Hub) -> None:
    sqlite_hub.clock.set(at(1411443780))
    r = sqlite_hub.client.get("/hooks/wecom", params=WECOM_ECHO)
    assert r.status_code == 200
    # the plaintext, returned as is (what wechatpy's own check_signature decrypts)
    from kit.push import WECOM_AES_KEY, WECOM_TOKEN
    from wechatpy.enterprise.crypto import WeChatCrypto

    expected = WeChatCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID).check_signature(
        WECOM_ECHO["msg_signature"], WECOM_ECHO["timestamp"], WECOM_ECHO["nonce"], WECOM_ECHO["echostr"]
    )
    assert r.text == expected and r.text
    wrong = sqlite_hub.client.get("/hooks/wecom", params={**WECOM_ECHO, "nonce": "437374424"})
    assert wrong.status_code == 401


def test_wecom_message_vector(sqlite_hub: Hub) -> None:
    sqlite_hub.clock.set(at(1411525903))
    r = sqlite_hub.client.post("/hooks/wecom", params=WECOM_QUERY, content=WECOM_XML, headers=XML)
    assert (r.status_code, r.content) == (200, b"")
    (event,) = sqlite_hub.events("wecom")
    assert event["org"]["staff"] == "messense"
    assert event["feedback"]["text"] == "test"


def test_dingtalk_check_url_vector_gets_an_encrypted_success(sqlite_hub: Hub) -> None:
    sqlite_hub.clock.set(at(1608001896))
    r = sqlite_hub.client.post("/hooks/ding", params=DING_QUERY, json=DING_BODY)
    assert r.status_code == 200
    reply = r.json()
    assert set(reply) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    # DingTalk checks the reply the same way: signature over the ciphertext, plaintext "success"
    assert reply["msg_signature"] == _get_signature(DING_TOKEN, reply["timeStamp"], reply["nonce"], reply["encrypt"])
    key = base64.b64decode(DING_AES_KEY + "=")
    assert PrpCrypto(key).decrypt(reply["encrypt"], DING_APP_KEY) == "success"
    assert sqlite_hub.stored_anything() == 0  # check_url stores nothing


def test_feishu_doc_example_through_the_receiver(sqlite_hub: Hub) -> None:
    sqlite_hub.clock.set(at(1589970805))
    body = json.dumps({"encrypt": FEISHU_ENCRYPT}).encode()
    headers = feishu_signed(body, encrypt_key=FEISHU_ENCRYPT_KEY, ts=1589970806, nonce="n-1")
    r = sqlite_hub.client.post("/hooks/feishu", content=body, headers=headers)
    assert (r.status_code, r.json()) == (200, {})
    (event,) = sqlite_hub.events("feishu")
    assert event["external_id"] == "5226cd85b4d843dccee2e279d93f3ed3"  # the v1 uuid
    assert event["attributes"]["event_type"] == "user_status_change"
    # the verification token is a credential: not stored
    with sqlite_hub.rt.store.connect() as conn:
        payloads = [row[0] for row in conn.execute(select(inbox.c.payload))]
    assert payloads and FEISHU_TOKEN not in json.dumps(payloads, ensure_ascii=False)
