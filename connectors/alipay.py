"""Alipay (支付宝) async notifications: trade notify and the open-platform message gateway.

Both arrive as ``application/x-www-form-urlencoded`` POSTs signed with Alipay's RSA2 key:

- the **sign content** is every parameter except ``sign`` and ``sign_type``, with an empty value
  left out, sorted by name, ``k=v`` joined by ``&`` (URL-decoded values, the body's ``charset``);
- it is verified with the Alipay public key by alipay-sdk-python's
  ``SignatureUtils.verify_with_rsa``; ``sign_type`` must be ``RSA2`` (SHA256withRSA);
- ``app_id`` is cross-checked against the configured one (403 otherwise);
- the reply is exactly ``success``; anything else makes Alipay retry (8 times over 25 hours).

**Trade notify** (``notify_type=trade_status_sync``): the preset mapping turns ``TRADE_SUCCESS`` /
``TRADE_FINISHED`` into a transaction touchpoint (buyer id identity, amount, store); other
statuses are filtered (counted, kept in the inbox). **Message gateway** (``msg_method`` present):
``biz_content`` is parsed from JSON into ``biz`` for the ``alipay_gateway`` mapping.

Once the signature checks, a ``biz_content`` that does not parse (not JSON, nested too deeply)
is quarantined with the verified fields (``biz_content`` kept as it came) and answered ``success``:
Alipay would retry it for 25 hours. A form that cannot be read far enough to check its signature
(not URL-encoded ASCII, an unknown charset, a parameter given twice) is a 400, nothing stored;
Alipay never sends one.

Dedup on ``notify_id``. No timestamp window: Alipay's retries over 25 hours carry the original
notify, so a window would drop a notify the hub failed to store the first time; the RSA signature
plus ``notify_id`` dedup make a replay harmless.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from pydantic import Field, field_validator

from hub.errors import PayloadError, SignatureError
from hub.sdk.callbacks import GuardedPushSource, PushOptions, WrongApp, clean, content_hash, parse_json
from hub.sdk.connector import InboundRequest, PushResult, RawRecord, Rejected, Reply

SUCCESS = Reply.text("success")
_CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb2312": "gbk", "gb18030": "gb18030"}


class AlipayOptions(PushOptions):
    """``app_id`` of your Alipay app; ``alipay_public_key``: the *Alipay* public key (支付宝公钥,
    base64 body or PEM) from the open-platform console, not your app's key."""

    app_id: str
    alipay_public_key: str = Field(min_length=64)

    @field_validator("alipay_public_key")
    @classmethod
    def _rsa_public_key(cls, v: str) -> str:
        import rsa
        from alipay.aop.api.util.SignatureUtils import fill_public_key_marker

        try:
            rsa.PublicKey.load_pkcs1_openssl_pem(fill_public_key_marker(_key_body(v)))
        except Exception:
            raise ValueError("is not an RSA public key (base64 body or PEM of the Alipay public key)") from None
        return v


def _key_body(key: str) -> str:
    """The base64 body of a PEM public key (the SDK adds its own markers)."""
    lines = [ln.strip() for ln in key.strip().splitlines() if ln.strip() and not ln.startswith("-----")]
    return "".join(lines)


def sign_content(params: dict[str, str]) -> str:
    """What Alipay signs: every non-empty parameter but ``sign`` / ``sign_type``, sorted."""
    from alipay.aop.api.util.SignatureUtils import get_sign_content

    return str(get_sign_content({k: v for k, v in params.items() if k not in ("sign", "sign_type") and v != ""}))


class AlipayNotifySource(GuardedPushSource):
    """Alipay async trade notifications and open-platform gateway messages (RSA2, ``success``)."""

    kind = "alipay"
    title = "Alipay async notify and open-platform message gateway (RSA2 via alipay-sdk-python)"
    Options = AlipayOptions
    options: AlipayOptions
    requires = ("alipay", "rsa")
    default_mapping = "alipay_trade"
    content_types = ("application/x-www-form-urlencoded",)
    max_body_bytes = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._public_key = _key_body(self.options.alipay_public_key)

    def form(self, request: InboundRequest) -> dict[str, str]:
        """The form parameters, decoded in the charset the notify declares (utf-8 or gbk)."""
        try:
            raw = request.body.decode("ascii")
        except UnicodeDecodeError:
            raise PayloadError("form body is not URL-encoded ASCII", source=self.name) from None
        charset = "utf-8"
        for k, v in parse_qsl(raw, keep_blank_values=True, encoding="latin-1"):
            if k == "charset":
                charset = _CHARSETS.get(v.strip().lower(), "")
                if not charset:
                    raise PayloadError(f"unsupported charset {v[:20]!r}", source=self.name)
        try:
            pairs = parse_qsl(raw, keep_blank_values=True, encoding=charset, errors="strict", max_num_fields=200)
        except (UnicodeDecodeError, ValueError) as exc:
            raise PayloadError(f"form body cannot be decoded: {exc}", source=self.name) from None
        params: dict[str, str] = {}
        for k, v in pairs:
            if k in params:
                raise PayloadError(f"parameter {k[:40]!r} given twice", source=self.name)
            params[k] = v
        return params

    def verify(self, params: dict[str, str]) -> None:
        """RSA2 signature with the Alipay public key, then the app id."""
        from alipay.aop.api.util.SignatureUtils import verify_with_rsa

        sign = params.get("sign")
        if not sign:
            raise SignatureError("sign is missing", source=self.name)
        if params.get("sign_type", "").upper() != "RSA2":
            raise SignatureError("sign_type must be RSA2", source=self.name)
        charset = _CHARSETS.get(params.get("charset", "utf-8").lower(), "utf-8")
        try:
            ok = verify_with_rsa(self._public_key, sign_content(params).encode(charset), sign)
        except Exception:  # rsa.VerificationError, binascii.Error, UnicodeEncodeError
            ok = False
        if not ok:
            raise SignatureError("sign does not verify with the Alipay public key", source=self.name)
        if params.get("app_id") != self.options.app_id:
            raise WrongApp("app_id is not the configured app_id", source=self.name)

    def handle(self, request: InboundRequest) -> PushResult:
        params = self.form(request)
        self.verify(params)
        # verified from here on: what does not parse is quarantined and still answered "success"
        payload: dict[str, Any] = clean({k: v for k, v in params.items() if k not in ("sign",)})
        ext = params.get("notify_id") or content_hash(request.body)
        if "biz_content" in params:
            try:
                payload["biz"] = clean(
                    parse_json(params["biz_content"], what="biz_content", source=self.name, want_object=False)
                )
            except PayloadError as exc:
                return PushResult([], SUCCESS, rejected=[Rejected(ext, payload, exc.reason)])
            except RecursionError:  # clean() on a structure just under the parser's depth limit
                bad = Rejected(ext, payload, "biz_content is JSON nested too deeply")
                return PushResult([], SUCCESS, rejected=[bad])
        return PushResult([RawRecord(self.name, ext, payload, request.received_at)], SUCCESS)
