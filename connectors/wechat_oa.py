"""WeChat official account (公众号) message push: URL verification, plain and safe (AES) mode.

- ``GET /hooks/{source}?signature&timestamp&nonce&echostr``: the 3-field signature is checked and
  ``echostr`` echoed verbatim (wechatpy's scheme, constant-time compare).
- ``POST``: XML. Safe mode (``encrypt_type=aes&msg_signature=..``) is verified over the ciphertext
  and decrypted with wechatpy; plain mode's signature does not cover the body, so once an
  ``encoding_aes_key`` is configured plain pushes are refused unless ``allow_plain: true``
  (compatible mode during a migration).
- The reply is ``success`` (WeChat stops retrying), or, with ``auto_reply`` set, a passive text
  reply to text messages, encrypted in safe mode (wechatpy ``WeChatCrypto.encrypt_message``).
- Once verified, a message that does not parse (not UTF-8, not XML, nested too deeply) is
  quarantined with its raw bytes and still answered ``success``: WeChat would retry it three
  times, and it would never parse. Before verification (a safe-mode envelope that is not XML) it
  is a 400, nothing stored: nothing proves where it came from.
- Dedup: ``MsgId``; events: FromUserName + CreateTime + Event (see ``wechat_message_id``).

All XML goes through defusedxml (no DTDs, no entities).
"""

from __future__ import annotations

from typing import Any, ClassVar

from hub.errors import PayloadError, SignatureError
from hub.sdk.callbacks import (
    GuardedPushSource,
    MsgCrypt,
    MsgCryptOptions,
    clean,
    decode_utf8,
    parse_epoch,
    parse_xml,
    query_value,
    unparsable,
    wechat_message_id,
)
from hub.sdk.connector import InboundRequest, PushResult, RawRecord, Reply

SUCCESS = Reply.text("success")


class WeChatOAOptions(MsgCryptOptions):
    """``token`` and ``encoding_aes_key`` from 公众号后台 > 基本配置; ``app_id`` is the AppID."""

    app_id: str
    allow_plain: bool = False
    auto_reply: str | None = None


class WeChatOfficialAccountSource(GuardedPushSource):
    """WeChat official account messages and events (text/image/voice, subscribe, scan, menu click,
    template-send-finished), plain or safe mode, with URL verification."""

    kind = "wechat_oa"
    title = "WeChat official account push (URL verification, plain / AES safe mode, wechatpy)"
    Options = WeChatOAOptions
    options: WeChatOAOptions
    requires = ("wechatpy", "defusedxml")
    default_mapping = "wechat_oa"
    content_types: ClassVar[tuple[str, ...]] = ("text/xml", "application/xml", "text/plain")
    max_body_bytes = 256 * 1024
    #: wording used in error messages for the id the ciphertext is sealed for
    receive_id_option: ClassVar[str] = "app_id"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        aes = self.options.encoding_aes_key
        self.crypt = MsgCrypt(
            self.options.token.get_secret_value(),
            aes.get_secret_value() if aes else None,
            self.receive_id(),
            source=self.name,
        )

    def receive_id(self) -> str:
        """The id the platform seals ciphertext for (appid here)."""
        return str(getattr(self.options, "app_id", ""))

    # ------------------------------------------------------------ verification

    def verify_url(self, request: InboundRequest) -> Reply:
        ts = query_value(request, "timestamp") or ""
        nonce = query_value(request, "nonce") or ""
        echostr = query_value(request, "echostr")
        if echostr is None:
            raise SignatureError("echostr is missing", source=self.name)
        self.crypt.check_plain(query_value(request, "signature"), ts, nonce)
        self.guard(request, parse_epoch(ts, field="timestamp", source=self.name), nonce, echostr)
        return Reply.text(echostr)

    def encrypted(self, request: InboundRequest) -> bool:
        """Safe mode (or compatible mode delivering the ciphertext)."""
        return request.query.get("encrypt_type", "").lower() == "aes"

    def verified_plaintext(self, request: InboundRequest) -> bytes:
        """Check the request and return the message bytes (decrypted in safe mode), not decoded:
        a verified message that is not UTF-8 is quarantined, not refused."""
        ts = query_value(request, "timestamp") or ""
        nonce = query_value(request, "nonce") or ""
        sent = parse_epoch(ts, field="timestamp", source=self.name)
        if self.encrypted(request):
            signature = query_value(request, "msg_signature")
            envelope = self.parse(request.text(), request)
            encrypt = envelope.get("Encrypt")
            if not isinstance(encrypt, str) or not encrypt:
                raise SignatureError("Encrypt is missing", source=self.name)
            self.crypt.check(signature, ts, nonce, encrypt)
            self.guard(request, sent, nonce, signature)
            return self.crypt.decrypt_bytes(encrypt)
        if self.crypt.key is not None and not self.options.allow_plain:
            raise SignatureError(
                "plain push refused: encoding_aes_key is set (safe mode); set allow_plain for compatible mode",
                source=self.name,
            )
        signature = query_value(request, "signature")
        self.crypt.check_plain(signature, ts, nonce)
        self.guard(request, sent, nonce, signature)
        return request.body

    # ------------------------------------------------------------ parsing

    def parse(self, text: str, request: InboundRequest) -> dict[str, Any]:
        """The body (or decrypted plaintext) as a dict."""
        return parse_xml(text, source=self.name)

    def handle(self, request: InboundRequest) -> PushResult:
        plaintext = self.verified_plaintext(request)
        # verified from here on: whatever does not parse is quarantined and WeChat still gets
        # "success" (a 4xx would only make it retry something that will never parse)
        try:
            msg = clean(self.parse(decode_utf8(plaintext, what="message", source=self.name), request))
        except PayloadError as exc:
            return PushResult([], self.ack(), rejected=[unparsable(plaintext, exc.reason)])
        except RecursionError:  # clean() on a structure just under the parser's depth limit
            return PushResult([], self.ack(), rejected=[unparsable(plaintext, "message is nested too deeply")])
        record = RawRecord(self.name, wechat_message_id(msg), msg, request.received_at)
        return PushResult([record], self.reply(msg, request))

    def ack(self) -> Reply:
        """The plain acknowledgement that stops the platform's retries."""
        return SUCCESS

    def reply(self, msg: dict[str, Any], request: InboundRequest) -> Reply:
        """``success``, or the configured passive reply to a text message (encrypted in safe mode)."""
        text = getattr(self.options, "auto_reply", None)
        if not text or msg.get("MsgType") != "text":
            return self.ack()
        from wechatpy.replies import TextReply

        reply = TextReply(source=msg.get("ToUserName", ""), target=msg.get("FromUserName", ""), content=text)
        xml = reply.render()
        if not self.encrypted(request):
            return Reply(body=xml.encode("utf-8"), content_type="application/xml; charset=utf-8")
        from wechatpy.crypto import WeChatCrypto

        aes = self.options.encoding_aes_key
        assert aes is not None  # encrypted() requests were decrypted with it
        crypto = WeChatCrypto(self.options.token.get_secret_value(), aes.get_secret_value(), self.receive_id())
        nonce = request.query.get("nonce") or "0"
        sealed = crypto.encrypt_message(xml, nonce, str(int(self.context.clock().timestamp())))
        return Reply(body=sealed.encode("utf-8"), content_type="application/xml; charset=utf-8")
