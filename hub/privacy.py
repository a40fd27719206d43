"""Personal data: keyed hashes for matching, encryption for reaching, masks for people to read."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Any

#: identity namespaces whose values are personal data: stored as keyed hashes, never plain
SENSITIVE_NAMESPACES = frozenset({"phone", "mobile", "email", "id_card"})
_V2 = "v2:"
_AAD = b"cxhub-contact"
_PHONE_SEPARATORS = re.compile(r"[\s\-()]")
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
#: the same numbers for engines without look-around (Polars, PostgreSQL): a wider net is fine there,
#: the finds go to the code above
PHONE_PATTERN = r"(?:^|\D)1[3-9]\d{9}(?:\D|$)"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
#: keys of a raw payload whose values are personal data whatever they look like
_PERSONAL_KEY = re.compile(
    r"phone|mobile|^tel$|email|e_?mail|id_?card|id_?no|address|^addr|^name$|real_?name|nick|receiver|contact",
    re.IGNORECASE,
)


def normalize(namespace: str, value: str) -> str:
    """Canonical form before hashing: ``+86 138-0000-0000`` and ``13800000000`` match."""
    v = value.strip()
    if namespace in ("phone", "mobile"):
        if not (v.isascii() and v.isdigit()):  # the common case needs no regex
            v = _PHONE_SEPARATORS.sub("", v)
        if v.startswith("+86"):
            v = v[3:]
        elif v.startswith("0086"):
            v = v[4:]
        elif len(v) == 13 and v.startswith("86"):
            v = v[2:]
    elif namespace == "email":
        v = v.lower()
    return v


class Vault:
    """Hashes and encrypts personal data with keys derived from the deployment's secret key."""

    def __init__(self, secret_key: bytes):
        # cryptography loads here, not with the module: masking (every log line, every printed
        # row) needs none of it
        from cryptography.fernet import Fernet
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not secret_key:
            raise ValueError("a secret key is required (set CXHUB_SECRET_KEY)")
        hash_key = hashlib.sha256(b"cxhub-identity-hash\x00" + secret_key).digest()
        # HMAC-SHA256 with its key's inner and outer pads hashed once (RFC 2104; what hmac.HMAC
        # keeps too): per value, two copies of a hash state. ``hmac.digest`` sets the key up on
        # every call: ~4 us a value against ~1, and a sync hashes every distinct phone of a batch.
        block = hash_key.ljust(64, b"\x00")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        fkey = base64.urlsafe_b64encode(hashlib.sha256(b"cxhub-contact-enc\x00" + secret_key).digest())
        self._fernet = Fernet(fkey)  # contacts written before v2 tokens; still decrypted
        self._aead = AESGCM(hashlib.sha256(b"cxhub-contact-aead\x00" + secret_key).digest())

    def hash(self, namespace: str, value: str) -> str:
        """``h:`` + HMAC-SHA256 of the normalised value (first 32 hex chars)."""
        plain = normalize(namespace, value)
        inner = self._inner.copy()
        inner.update(f"{namespace}\x00{plain}".encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return "h:" + outer.digest()[:16].hex()

    def encrypt(self, namespace: str, value: str) -> str:
        """``v2:`` + base64url(nonce + AES-256-GCM ciphertext and tag) of the normalised value.

        AES-GCM rather than Fernet (AES-CBC + HMAC): one call instead of a cipher context, a
        padder and an HMAC object per value, ~5x faster on the ingest of first-seen contacts."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, normalize(namespace, value).encode(), _AAD)
        return _V2 + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, token: str) -> str:
        from cryptography.exceptions import InvalidTag
        from cryptography.fernet import InvalidToken

        try:
            if token.startswith(_V2):
                raw = base64.urlsafe_b64decode(token[len(_V2) :])
                return self._aead.decrypt(raw[:12], raw[12:], _AAD).decode()
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, InvalidTag, ValueError):
            raise ValueError("contact cannot be decrypted with this secret key") from None


#: ``s1:<key id>:<base64url(nonce + AES-256-GCM ciphertext and tag)>``: a value sealed at rest
_SEALED = "s1:"
_SEAL_AAD = b"cxhub-sealed"
#: every sealer made in this process, by key id: a sealed value names the key that opens it
_SEALERS: dict[str, Sealer] = {}


def key_id(secret_key: bytes) -> str:
    """A short public id of a secret key (8 hex chars of a keyed digest: names, never reveals)."""
    return hashlib.sha256(b"cxhub-key-id\x00" + secret_key).hexdigest()[:8]


class Sealer:
    """Encrypts values that must be readable again later (an outbox message's recipients) with a
    key derived from the deployment's secret key. Cheap to make: ``cryptography`` loads on the
    first seal or unseal, not with the runtime (a command that only reads never loads it)."""

    def __init__(self, secret_key: bytes):
        if not secret_key:
            raise ValueError("a secret key is required (set CXHUB_SECRET_KEY)")
        self._key = hashlib.sha256(b"cxhub-seal\x00" + secret_key).digest()
        self.key_id = key_id(secret_key)
        self._aead: Any = None
        _SEALERS.setdefault(self.key_id, self)

    def _cipher(self) -> Any:
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(self._key)
        return self._aead

    def tag(self, text: str) -> str:
        """A stable keyed digest of ``text`` (24 hex chars): a name for a value that must not be
        stored (a rate bucket per phone number), the same in every process with this key."""
        return hmac.digest(self._key, b"cxhub-tag\x00" + text.encode(), "sha256")[:12].hex()

    def seal(self, text: str) -> str:
        nonce = os.urandom(12)
        sealed = self._cipher().encrypt(nonce, text.encode(), _SEAL_AAD)
        return f"{_SEALED}{self.key_id}:" + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def unseal(self, token: str) -> str:
        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.urlsafe_b64decode(token.split(":", 2)[2])
            return str(self._cipher().decrypt(raw[:12], raw[12:], _SEAL_AAD).decode())
        except (InvalidTag, ValueError, IndexError):
            raise ValueError("a sealed value cannot be opened with this secret key") from None


def is_sealed(value: object) -> bool:
    """Whether ``value`` is a value sealed by a :class:`Sealer`."""
    return isinstance(value, str) and value.startswith(_SEALED)


def unseal(token: str) -> str:
    """Open a sealed value with the sealer of its key (made in this process from the config's
    secret key); ``ValueError`` when no such key is here (the secret key changed)."""
    kid = token[len(_SEALED) :].split(":", 1)[0]
    sealer = _SEALERS.get(kid)
    if sealer is None:
        raise ValueError(
            f"a value sealed with secret key {kid}, which this process does not have (secret key changed?)"
        )
    return sealer.unseal(token)


def mask_phone(value: str) -> str:
    """``13812345678`` -> ``138****5678``."""
    v = normalize("phone", value)
    if len(v) >= 7:
        return v[:3] + "*" * (len(v) - 7) + v[-4:]
    return "*" * len(v)


#: whether a text holds a mainland mobile number (one C-level scan; most texts have none)
has_phone = _PHONE.search


def phones_in(text: str) -> list[str]:
    """The mainland mobile numbers inside free text, in order, each once."""
    return list(dict.fromkeys(m.group(0) for m in _PHONE.finditer(text)))


def mask_text(text: str) -> str:
    """Mask every mainland mobile number inside free text (review text, notes)."""
    return _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)


def mask_payload(value: Any, key: str = "") -> Any:
    """A raw payload (a quarantined record, a dead letter) with its personal data masked, for
    anything a person reads: values under personal keys (``mobile``, ``email``, ``name``,
    ``address``...) masked whole, mobile numbers and email addresses masked inside any text."""
    if isinstance(value, dict):
        return {k: mask_payload(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_payload(v, key) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool) and key and _PERSONAL_KEY.search(key):
        return mask_payload(str(value), key)
    if not isinstance(value, str):
        return value
    if key and _PERSONAL_KEY.search(key) and value:
        if "@" in value:
            return mask_email(value)
        if sum(c.isdigit() for c in value) >= 7:
            return mask_phone(value)
        return mask_name(value)
    text = mask_text(value)
    return _EMAIL.sub(lambda m: mask_email(m.group(0)), text) if "@" in text else text


def mask_name(name: str) -> str:
    """``张三丰`` -> ``张**``; ``Alice`` -> ``A****``."""
    name = name.strip()
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    return (local[:1] + "***@" + domain) if domain else mask_name(value)


def mask_identity(namespace: str, value: str) -> str:
    """A masked form of an identity value for anything a person reads."""
    if value.startswith("h:"):
        return value[:8] + "…"
    if namespace in ("phone", "mobile"):
        return mask_phone(value)
    if namespace == "email":
        return mask_email(value)
    if len(value) > 8:
        return value[:4] + "…" + value[-2:]
    return value
