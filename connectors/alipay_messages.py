"""Alipay mini-program template message: ``alipay.open.app.mini.templatemessage.send``.

A signed gateway call (no access token): common parameters plus ``biz_content``, signed RSA2
(SHA256withRSA) with the app private key by alipay-sdk-python's ``SignatureUtils`` (which needs a
PKCS#1 key: a PKCS#8 key from Alipay's key tool is converted first). The answer's ``sign`` is
verified with the Alipay public key when it is configured.

Message fields: ``to`` = [user id (``2088...``) or open id], ``template`` (or the option),
``data`` = template fields, ``url`` = mini-program page (a path; a web link is never sent as
``page``, the ``page`` option is used instead), ``data["_form_id"]`` = the form id the push is
bound to: the trade number (``trade_no``) of the user's payment, or the id of a form they
submitted in the mini-program. The API requires it: a message without one is refused here. Result codes: ``10000`` ok; ``20000`` retry; ``40004`` read
``sub_code``: frequency limits back off, the rest is permanent (bad form id, user...).
"""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from typing import Any

from pydantic import SecretStr

from hub.errors import PermanentError, RetriableError
from hub.sdk.connector import OutboundMessage, Receipt
from hub.sdk.destination import DestinationOptions, HttpDestination
from hub.sdk.http import call_json
from hub.sdk.policy import ErrorTable, Throttled

METHOD = "alipay.open.app.mini.templatemessage.send"
CHINA = timezone(timedelta(hours=8))

ERRORS = ErrorTable(
    ok=frozenset({"10000"}),
    retry=frozenset({"20000"}),
    permanent=frozenset({"20001", "40001", "40002", "40004", "40006"}),
    reasons={
        "20001": "invalid auth token",
        "40001": "missing parameter",
        "40002": "illegal parameter",
        "40004": "business failure",
        "40006": "insufficient permission",
    },
)


def _pkcs1(private_key: str) -> str:
    """The key as PKCS#1 PEM (``BEGIN RSA PRIVATE KEY``), which ``SignatureUtils`` requires."""
    key = private_key.strip()
    if "BEGIN RSA PRIVATE KEY" in key:
        return key
    from cryptography.hazmat.primitives import serialization

    pem = key if key.startswith("-----") else f"-----BEGIN PRIVATE KEY-----\n{key}\n-----END PRIVATE KEY-----"
    loaded = serialization.load_pem_private_key(pem.encode(), password=None)
    return loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


class AlipayMessagesOptions(DestinationOptions):
    """``app_id``, the app ``private_key`` (PEM or bare base64) and optionally ``alipay_public_key``."""

    app_id: str
    private_key: SecretStr
    alipay_public_key: str | None = None
    gateway: str = "https://openapi.alipay.com/gateway.do"
    template_id: str | None = None
    page: str | None = None


class AlipayTemplateMessage(HttpDestination):
    """Alipay mini-program template message (RSA2-signed gateway call)."""

    kind = "alipay_message"
    title = "Alipay mini-program template message (RSA2-signed gateway call)"
    Options = AlipayMessagesOptions
    options: AlipayMessagesOptions
    requires = ("alipay",)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._key = _pkcs1(self.options.private_key.get_secret_value())

    def params(self, message: OutboundMessage) -> dict[str, str]:
        """The signed form parameters for ``message``."""
        from alipay.aop.api.util.SignatureUtils import get_sign_content, sign_with_rsa2

        template = message.template or self.options.template_id
        if not template:
            raise PermanentError("no template: set message.template or the template_id option", target=self.name)
        user = message.to[0]
        form_id = str(message.data.get("_form_id") or "").strip()
        if not form_id:
            raise PermanentError(
                "no form id: data._form_id must carry the trade number or form id the message is bound to",
                target=self.name,
            )
        url = message.url if message.url and "://" not in message.url else None
        biz: dict[str, Any] = {
            "to_user_id" if user.startswith("2088") else "to_open_id": user,
            "form_id": form_id,
            "user_template_id": template,
            "page": url or self.options.page or "",
            "data": json.dumps(
                {
                    k: (v if isinstance(v, dict) else {"value": str(v)})
                    for k, v in message.data.items()
                    if not k.startswith("_")
                },
                ensure_ascii=False,
            ),
        }
        params = {
            "app_id": self.options.app_id,
            "method": METHOD,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": self.context.clock().astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        params["sign"] = sign_with_rsa2(self._key, get_sign_content(params), "utf-8")
        return params

    def _verify(self, raw: str, data: dict[str, Any]) -> None:
        from alipay.aop.api.util.SignatureUtils import verify_with_rsa

        if not self.options.alipay_public_key:
            return
        key = METHOD.replace(".", "_") + "_response"
        start = raw.find(f'"{key}"')
        sign = data.get("sign")
        if start < 0 or not sign:
            raise RetriableError("answer is not signed", target=self.name)
        # the signed text is the response object exactly as sent, between the key and ',"sign"'
        body_start = raw.index("{", start + len(key) + 2)
        body_end = raw.rfind(',"sign"')
        try:
            ok = verify_with_rsa(self.options.alipay_public_key, raw[body_start:body_end].encode("utf-8"), sign)
        except Exception:
            ok = False
        if not ok:
            raise RetriableError("answer signature does not verify with the Alipay public key", target=self.name)

    def send(self, message: OutboundMessage) -> Receipt:
        """Push the template message to the one user in ``message.to``."""
        if len(message.to) != 1:
            raise PermanentError(f"exactly one user in `to` (got {len(message.to)})", target=self.name)
        data, resp = call_json(
            self.client,
            "POST",
            self.options.gateway,
            target=self.name,
            params={"charset": "utf-8"},
            data=self.params(message),
            headers=self.headers(message),
        )
        self._verify(resp.text, data)
        result = data.get(METHOD.replace(".", "_") + "_response") or data.get("error_response") or {}
        code = str(result.get("code", ""))
        sub = str(result.get("sub_code", ""))
        text = f"{result.get('msg', '')} {sub} {result.get('sub_msg', '')}".strip()
        if code == "40004" and ("LIMIT" in sub.upper() or "FREQUEN" in sub.upper()):
            raise Throttled(text, target=self.name, code=sub, retry_after=60.0)
        ERRORS.check(code, text, target=self.name)
        return Receipt(detail=f"code {code}")
