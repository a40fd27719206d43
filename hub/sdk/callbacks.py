"""What the push connectors share: the WXBizMsgCrypt scheme (WeChat OA / mini-program, WeCom,
DingTalk), the replay window, the nonce cache, safe XML parsing and payload hygiene.

WXBizMsgCrypt (PLATFORMS.md section 1): AES-256-CBC with ``key = b64decode(EncodingAESKey + "=")``,
IV = key[:16], PKCS#7 padding to 32-byte blocks, plaintext ``random16 | len | msg | receive_id``,
signature ``sha1(sorted([token, timestamp, nonce, encrypt]))``. The crypto itself is wechatpy's
(``WeChatCipher``, ``PrpCrypto``, ``WeChatSigner``) over the ``cryptography`` backend; this module
adds constant-time comparison, error translation and the receive-id check, and reads the decrypted
frame itself: wechatpy decodes the message as UTF-8 before checking whose it is, which would refuse
an authentic message that is not UTF-8 as undecryptable instead of quarantining it.

**Verified means kept.** Once a request has passed verification, nothing it carries is answered
with a 4xx: a payload that does not parse (not UTF-8, not XML / JSON, not an object, nested past
what the parsers take) becomes a :class:`~hub.sdk.connector.Rejected` made by :func:`unparsable`,
with the raw bytes (:func:`raw_body`), quarantined in the request's transaction, and the platform
gets its usual success reply: it would only retry a payload that will never parse.

Replay protection has two parts:

- the **window**: the platform's timestamp must be within ``replay_window_seconds`` of the hub's
  clock (0 disables);
- the **nonce cache**: a (timestamp, nonce, signature) seen before with a *different* body is
  refused. The same body again is a platform retry and goes on (the inbox dedups it by message
  id). This matters most for WeChat's plain mode, whose signature does not cover the body.

wechatpy (about 100 ms to import) and defusedxml are imported by the functions that use them, so
that loading a push connector's class (every CLI command does, to validate the config) stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr, field_validator

from hub.errors import PayloadError, SignatureError
from hub.sdk.connector import ConnectorOptions, InboundRequest, NonceStore, PushSource, Rejected

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

#: at most this many (timestamp, nonce) pairs are remembered per source
NONCE_CACHE_SIZE = 100_000


class WrongApp(SignatureError):
    """Authentic for some app, but not for the one configured (appid / corpid / app_id / token)."""

    status_code = 403


# ---------------------------------------------------------------- options


class PushOptions(ConnectorOptions):
    """Options every push connector has."""

    replay_window_seconds: float | None = Field(
        default=None, ge=0, description="overrides server.replay_window_seconds for this source; 0 disables"
    )


def check_encoding_aes_key(value: SecretStr | None) -> SecretStr | None:
    """An EncodingAESKey is 43 base64 characters that decode to 32 bytes."""
    if value is None:
        return None
    raw = value.get_secret_value()
    if len(raw) != 43:
        raise ValueError(f"must be 43 characters, got {len(raw)}")
    try:
        key = base64.b64decode(raw + "=", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 (43 characters of A-Z a-z 0-9 + /)") from None
    if len(key) != 32:
        raise ValueError("does not decode to a 32-byte AES key")
    return value


class MsgCryptOptions(PushOptions):
    """Token and EncodingAESKey of a WXBizMsgCrypt-family callback."""

    token: SecretStr
    encoding_aes_key: SecretStr | None = None

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key(cls, v: SecretStr | None) -> SecretStr | None:
        return check_encoding_aes_key(v)


# ---------------------------------------------------------------- WXBizMsgCrypt


def wx_signature(*parts: str) -> str:
    """``sha1`` of the sorted parts joined (wechatpy's ``WeChatSigner``)."""
    from wechatpy.utils import WeChatSigner

    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


def same(a: str | None, b: str) -> bool:
    """Constant-time comparison of two signatures (None never matches)."""
    return a is not None and hmac.compare_digest(a.lower().encode(), b.lower().encode())


class MsgCrypt:
    """The WXBizMsgCrypt scheme for one app: verify, decrypt and encrypt.

    ``receive_id`` is the appid (WeChat), corpid (WeCom) or appKey / corpId / suiteKey (DingTalk).
    """

    def __init__(self, token: str, encoding_aes_key: str | None, receive_id: str, *, source: str):
        self.token = token
        self.receive_id = receive_id
        self.source = source
        self.key = base64.b64decode(encoding_aes_key + "=") if encoding_aes_key else None

    def check_plain(self, signature: str | None, timestamp: str, nonce: str) -> None:
        """Plain-mode signature: ``sha1(sorted([token, timestamp, nonce]))``."""
        if not same(signature, wx_signature(self.token, timestamp, nonce)):
            raise SignatureError("signature does not match", source=self.source)

    def check(self, signature: str | None, timestamp: str, nonce: str, encrypt: str) -> None:
        """Safe-mode signature over the ciphertext."""
        if not same(signature, wx_signature(self.token, timestamp, nonce, encrypt)):
            raise SignatureError("msg_signature does not match", source=self.source)

    def decrypt(self, encrypt: str) -> str:
        """Decrypt a verified ``Encrypt`` value to text (URL checks); see :meth:`decrypt_bytes`."""
        try:
            return self.decrypt_bytes(encrypt).decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureError("cannot decrypt Encrypt (check encoding_aes_key)", source=self.source) from None

    def decrypt_bytes(self, encrypt: str) -> bytes:
        """Decrypt a verified ``Encrypt`` value to the message bytes, not decoded: a message that is
        not UTF-8 is the caller's to quarantine. ``WrongApp`` when it was sealed for another app;
        ``SignatureError`` when it does not decrypt with the configured key."""
        from wechatpy.crypto import WeChatCipher

        if self.key is None:
            raise SignatureError("encrypted push but no encoding_aes_key configured", source=self.source)
        undecryptable = SignatureError("cannot decrypt Encrypt (check encoding_aes_key)", source=self.source)
        try:
            blob = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("Encrypt is not base64", source=self.source) from None
        if not blob or len(blob) % 16:
            raise SignatureError("Encrypt is not whole AES blocks", source=self.source)
        plain = WeChatCipher(self.key).decrypt(blob)
        # random16 | len (4 bytes, big-endian) | msg | receive_id, PKCS#7-padded to 32 bytes: a wrong
        # key gives garbage that fails these checks
        pad = plain[-1]
        if not 1 <= pad <= 32 or plain[-pad:] != bytes([pad]) * pad or len(plain) - pad < 20:
            raise undecryptable
        frame = plain[16:-pad]
        size = int.from_bytes(frame[:4], "big")
        if size > len(frame) - 4:
            raise undecryptable
        message, receive_id = frame[4 : 4 + size], frame[4 + size :]
        if not hmac.compare_digest(receive_id, self.receive_id.encode("utf-8")):
            if receive_id.isascii() and receive_id.decode("ascii").isprintable():
                raise WrongApp("sealed for another app id (check app_id / corp_id)", source=self.source)
            raise undecryptable
        return message

    def encrypt(self, text: str) -> str:
        """Encrypt ``text`` for the platform (replies)."""
        from wechatpy.crypto import PrpCrypto

        if self.key is None:
            raise SignatureError("no encoding_aes_key configured", source=self.source)
        return str(PrpCrypto(self.key).encrypt(text, self.receive_id).decode("ascii"))


# ---------------------------------------------------------------- replay protection


class NonceCache:
    """Remembers which body went with each (timestamp, nonce, signature) for ``ttl`` seconds.

    With ``shared`` (the hub gives one through ``ConnectorContext.nonces``: a table of the store,
    or the transport's key-value bucket), every process of the hub consults the same memory, so
    that a (timestamp, nonce) replayed with another body is refused whichever process receives it.
    Without it the memory is this process's own (at most ``size`` keys)."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        ttl: float = 300.0,
        size: int = NONCE_CACHE_SIZE,
        *,
        shared: NonceStore | None = None,
        namespace: str = "",
    ):
        self._clock = clock
        self.ttl = ttl
        self._size = size
        self.shared = shared
        self._namespace = namespace
        self._seen: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: str, body: bytes) -> bool:
        """True for a new key or the same body again (a retry); False: same key, different body."""
        digest = hashlib.blake2b(body, digest_size=16).digest()
        if self.shared is not None:
            return self.shared.claim(f"{self._namespace}|{key}", digest, self.ttl)
        now = self._clock().timestamp()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] <= self.ttl:
                return hmac.compare_digest(seen[1], digest)
            self._seen[key] = (now, digest)
            self._seen.move_to_end(key)
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True


def parse_epoch(value: str | None, *, field: str, source: str, millis: bool = False) -> datetime:
    """A platform timestamp (seconds, or milliseconds for DingTalk) as aware UTC."""
    if not value:
        raise SignatureError(f"{field} is missing", source=source)
    try:
        n = int(value)
        return datetime.fromtimestamp(n / 1000 if millis else n, UTC)
    except (ValueError, OverflowError, OSError):
        raise SignatureError(f"{field} is not a Unix timestamp", source=source) from None


class GuardedPushSource(PushSource):
    """A push source with a replay window and a nonce cache (subclasses call :meth:`guard`)."""

    options: PushOptions

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.nonces = NonceCache(
            self.context.clock, ttl=max(self.window, 300.0), shared=self.context.nonces, namespace=self.name
        )

    @property
    def window(self) -> float:
        """Seconds a request's timestamp may differ from now (0: not checked)."""
        own = self.options.replay_window_seconds
        return self.replay_window_seconds if own is None else own

    def guard(self, request: InboundRequest, sent: datetime, nonce: str | None, signature: str | None) -> None:
        """Refuse a stale request, or a (timestamp, nonce) replayed with another body. Call it
        after the signature check, so that only authentic requests fill the cache."""
        window = self.window
        self.nonces.ttl = max(window, 300.0)  # the receiver may change the window after __init__
        if window and abs((self.context.clock() - sent).total_seconds()) > window:
            raise SignatureError(f"timestamp outside the {window:g}s replay window", source=self.name)
        key = f"{int(sent.timestamp() * 1000)}|{nonce or ''}|{signature or ''}"
        if not self.nonces.claim(key, request.body):
            raise SignatureError("nonce replayed with a different body", source=self.name)


# ---------------------------------------------------------------- payloads


def _element_to_value(el: Element) -> Any:
    children = list(el)
    if not children:
        return el.text or ""
    out: dict[str, Any] = {}
    repeated: set[str] = set()  # tags already turned into a list (a value itself is never a list)
    for child in children:
        value = _element_to_value(child)
        if child.tag in repeated:
            out[child.tag].append(value)  # in place: copying the list per item is quadratic
        elif child.tag in out:
            # repeated tags (<item>...</item><item>...</item>) become a list
            out[child.tag] = [out[child.tag], value]
            repeated.add(child.tag)
        else:
            out[child.tag] = value
    return out


def parse_xml(text: str | bytes, *, source: str) -> dict[str, Any]:
    """Parse an XML message (``<xml>...</xml>``) into a dict with defusedxml: no DTDs, no entities,
    no external references. Repeated tags become lists; text is kept as text."""
    from xml.etree.ElementTree import ParseError

    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    try:
        root = SafeET.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        value = _element_to_value(root)
    except DefusedXmlException as exc:
        raise PayloadError(f"XML refused: {type(exc).__name__}", source=source) from None
    except (ParseError, ValueError) as exc:
        raise PayloadError(f"body is not XML: {exc}", source=source) from None
    except RecursionError:
        raise PayloadError("XML is nested too deeply", source=source) from None
    if not isinstance(value, dict):
        raise PayloadError("XML has no fields", source=source)
    return value


def decode_utf8(data: bytes, *, what: str = "body", source: str) -> str:
    """``data`` as UTF-8 text; ``PayloadError`` naming the first bad byte when it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"{what} is not UTF-8 (byte {exc.start})", source=source) from None


def parse_json(raw: bytes | str, *, what: str = "body", source: str, want_object: bool = True) -> Any:
    """Parse JSON (an object unless ``want_object`` is false); ``PayloadError`` with the reason
    when it is not UTF-8, not JSON, not an object, or nested past the parser's limit."""
    text = decode_utf8(raw, what=what, source=source) if isinstance(raw, bytes) else raw
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not JSON: {exc.msg} at column {exc.colno}", source=source) from None
    except RecursionError:
        raise PayloadError(f"{what} is JSON nested too deeply", source=source) from None
    if want_object and not isinstance(data, dict):
        raise PayloadError(f"{what} is not a JSON object", source=source)
    return data


def raw_body(data: bytes | str) -> dict[str, str]:
    """A payload that did not parse, kept whole for the quarantine: ``{"body": text}``, or
    ``{"body_base64": ..}`` when it is not UTF-8 or holds a NUL (which PostgreSQL's JSON cannot
    store), so that the exact bytes can always be read back."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        return {"body_base64": base64.b64encode(raw).decode("ascii")}
    return {"body": text}


def unparsable(data: bytes | str, reason: str, *, external_id: str | None = None) -> Rejected:
    """The quarantine item for a verified payload that does not parse: the raw bytes, the reason,
    and an id (the platform's when known, else a hash of the bytes, so a retry is recognisable)."""
    return Rejected(external_id or content_hash(data), raw_body(data), reason)


def clean(value: Any) -> Any:
    """Replace NUL characters, which PostgreSQL cannot store in JSON, so that a verified payload
    can always be stored (or quarantined) rather than failing its transaction forever."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def content_hash(data: bytes | str) -> str:
    """A stable id for payloads without one of their own (retries of the same push dedup)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def wechat_message_id(msg: dict[str, Any]) -> str:
    """WeChat / WeCom dedup key: ``MsgId`` (``MsgID`` on template-send events), otherwise
    sender + CreateTime + event and whatever distinguishes events of the same second."""
    for key in ("MsgId", "MsgID", "msgid"):
        v = msg.get(key)
        if isinstance(v, str | int) and str(v):
            return str(v)
    parts = [str(msg.get(k, "")) for k in ("FromUserName", "CreateTime", "Event")]
    for extra in ("ChangeType", "ExternalUserID", "UserID", "EventKey", "Ticket"):
        v = msg.get(extra)
        if isinstance(v, str) and v:
            parts.append(v)
    if not msg.get("FromUserName") and not msg.get("CreateTime"):
        return content_hash(repr(sorted(msg.items())))
    return ":".join(parts)


def query_value(request: InboundRequest, *names: str) -> str | None:
    """The first of ``names`` present in the query string."""
    for n in names:
        v = request.query.get(n)
        if v:
            return v
    return None


__all__ = [
    "GuardedPushSource",
    "MsgCrypt",
    "MsgCryptOptions",
    "NonceCache",
    "PushOptions",
    "WrongApp",
    "check_encoding_aes_key",
    "clean",
    "content_hash",
    "decode_utf8",
    "parse_epoch",
    "parse_json",
    "parse_xml",
    "query_value",
    "raw_body",
    "same",
    "unparsable",
    "wechat_message_id",
    "wx_signature",
]
