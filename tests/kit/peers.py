"""Platform peers: build requests exactly as each platform sends them, with the platforms' SDKs
(wechatpy encrypts like WeChat / WeCom / DingTalk, alipay-sdk-python signs like Alipay) or, for
Feishu, with ``cryptography`` following the encryption doc (lark-oapi only decrypts)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any
from urllib.parse import urlencode

import xmltodict
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def wechat_safe(
    xml: str | bytes, *, token: str, aes_key: str, appid: str, ts: int, nonce: str
) -> tuple[dict[str, str], bytes]:
    """A safe-mode push: wechatpy seals the message (bytes are sealed as they are, UTF-8 or not);
    the signature travels in the query."""
    from wechatpy.crypto import WeChatCrypto

    sealed = xmltodict.parse(WeChatCrypto(token, aes_key, appid).encrypt_message(xml, nonce, str(ts)))["xml"]
    body = f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt></xml>"
    plain_sig = hashlib.sha1("".join(sorted([token, str(ts), nonce])).encode()).hexdigest()
    query = {
        "signature": plain_sig,
        "timestamp": str(ts),
        "nonce": nonce,
        "openid": "oUser",
        "encrypt_type": "aes",
        "msg_signature": sealed["MsgSignature"],
    }
    return query, body.encode()


def wechat_plain(xml: str | bytes, *, token: str, ts: int, nonce: str) -> tuple[dict[str, str], bytes]:
    """A plain-mode push: the signature covers token, timestamp and nonce only."""
    sig = hashlib.sha1("".join(sorted([token, str(ts), nonce])).encode()).hexdigest()
    body = xml if isinstance(xml, bytes) else xml.encode()
    return {"signature": sig, "timestamp": str(ts), "nonce": nonce, "openid": "oUser"}, body


def _plaintext(data: dict[str, Any] | bytes) -> str | bytes:
    """A message to seal: a dict as JSON, bytes as they are (to seal what does not parse)."""
    return data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False)


def wechat_json_safe(
    data: dict[str, Any] | bytes, *, token: str, aes_key: str, appid: str, ts: int, nonce: str
) -> tuple[dict[str, str], bytes]:
    """A mini-program push in JSON safe mode (``{"ToUserName", "Encrypt"}``)."""
    from wechatpy.crypto import PrpCrypto, _get_signature

    key = base64.b64decode(aes_key + "=")
    encrypt = PrpCrypto(key).encrypt(_plaintext(data), appid).decode()
    sig = _get_signature(token, str(ts), nonce, encrypt)
    body = json.dumps({"ToUserName": "gh_mp", "Encrypt": encrypt}).encode()
    return {"timestamp": str(ts), "nonce": nonce, "encrypt_type": "aes", "msg_signature": sig}, body


def wecom_push(
    xml: str | bytes, *, token: str, aes_key: str, corp_id: str, ts: int, nonce: str
) -> tuple[dict[str, str], bytes]:
    """A WeCom callback: wechatpy's enterprise crypto seals it."""
    from wechatpy.enterprise.crypto import WeChatCrypto

    sealed = xmltodict.parse(WeChatCrypto(token, aes_key, corp_id).encrypt_message(xml, nonce, str(ts)))["xml"]
    body = (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><AgentID><![CDATA[1]]></AgentID>"
        f"<Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt></xml>"
    )
    return {"msg_signature": sealed["MsgSignature"], "timestamp": str(ts), "nonce": nonce}, body.encode()


def dingtalk_push(
    event: dict[str, Any] | bytes, *, token: str, aes_key: str, app_key: str, ts_ms: int, nonce: str
) -> tuple[dict[str, str], bytes]:
    """A DingTalk callback (same scheme as WeChat's, sealed for the app key, ms timestamps)."""
    from wechatpy.crypto import PrpCrypto, _get_signature

    key = base64.b64decode(aes_key + "=")
    encrypt = PrpCrypto(key).encrypt(_plaintext(event), app_key).decode()
    sig = _get_signature(token, str(ts_ms), nonce, encrypt)
    return {"signature": sig, "timestamp": str(ts_ms), "nonce": nonce}, json.dumps({"encrypt": encrypt}).encode()


def feishu_encrypt(plaintext: str | bytes, encrypt_key: str) -> str:
    """Feishu's event encryption: AES-256-CBC, key SHA256(encrypt_key), random IV prefixed."""
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    raw = plaintext if isinstance(plaintext, bytes) else plaintext.encode()
    data = padder.update(raw) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + enc.update(data) + enc.finalize()).decode()


def feishu_signed(body: bytes, *, encrypt_key: str, ts: int, nonce: str) -> dict[str, str]:
    """The three signature headers Feishu adds when an Encrypt Key is set."""
    sig = hashlib.sha256((str(ts) + nonce + encrypt_key).encode() + body).hexdigest()
    return {
        "X-Lark-Request-Timestamp": str(ts),
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": sig,
        "Content-Type": "application/json",
    }


def feishu_push(
    event: dict[str, Any] | bytes, *, encrypt_key: str, ts: int, nonce: str
) -> tuple[dict[str, str], bytes]:
    """An encrypted, signed Feishu event push: (headers, body)."""
    body = json.dumps({"encrypt": feishu_encrypt(_plaintext(event), encrypt_key)}).encode()
    return feishu_signed(body, encrypt_key=encrypt_key, ts=ts, nonce=nonce), body


def alipay_notify(params: dict[str, str], private_key_pkcs1: str, *, sign_type: str = "RSA2") -> bytes:
    """An Alipay async notify: alipay-sdk-python signs the sorted content like Alipay does."""
    from alipay.aop.api.util.SignatureUtils import get_sign_content, sign_with_rsa, sign_with_rsa2

    content = get_sign_content({k: v for k, v in params.items() if v != ""})
    signer = sign_with_rsa2 if sign_type == "RSA2" else sign_with_rsa
    sign = signer(private_key_pkcs1, content, "utf-8")
    return urlencode({**params, "sign": sign, "sign_type": sign_type}).encode()


def standard_webhook(body: bytes, *, secret: str, msg_id: str, ts: int) -> dict[str, str]:
    """Standard Webhooks headers for ``body`` (HMAC-SHA256 over the raw bytes, so a body that is
    not UTF-8 can be signed too, as any sender's HMAC library would)."""
    import hmac

    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "Content-Type": "application/json",
    }
