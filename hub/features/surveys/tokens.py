"""Signed survey links: ``/s/{token}`` where the token binds one invitation and its expiry.

``token = b64url(invitation uuid (16 bytes) + expiry (4 bytes, Unix seconds)) "." b64url(HMAC-SHA256[:16])``
-- 50 characters, short enough for an SMS. The key is derived from the deployment's secret key,
so a token cannot be forged or moved to another invitation; single use is enforced by the
invitation's status in the store (and by the response's dedup key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime


class TokenError(ValueError):
    """A token that cannot be used: ``reason`` is ``malformed``, ``tampered`` or ``expired``."""

    def __init__(self, reason: str, invitation_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.invitation_id = invitation_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says."""

    invitation_id: str
    expires_at: datetime


class TokenSigner:
    """Signs and verifies survey tokens with a key derived from ``secret_key``."""

    def __init__(self, secret_key: bytes):
        if not secret_key:
            raise ValueError("a secret key is required to sign survey links")
        self._key = hashlib.sha256(b"cxhub-survey-token\x00" + secret_key).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]

    def sign(self, invitation_id: str, expires_at: datetime) -> str:
        """The token for ``invitation_id`` (a UUID string), valid until ``expires_at``."""
        payload = uuid.UUID(invitation_id).bytes + int(expires_at.timestamp()).to_bytes(4, "big")
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now: datetime | None = None, *, check_expiry: bool = True) -> TokenClaims:
        """The claims of a genuine, unexpired token; ``TokenError`` otherwise."""
        body, sep, mac = token.partition(".")
        if not sep or len(body) != 27 or len(mac) != 22:
            raise TokenError("malformed")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise TokenError("malformed") from None
        if len(payload) != 20 or not hmac.compare_digest(given, self._mac(payload)):
            raise TokenError("tampered")
        inv = str(uuid.UUID(bytes=payload[:16]))
        expires = datetime.fromtimestamp(int.from_bytes(payload[16:], "big"), UTC)
        if check_expiry and (now is None or now >= expires):
            raise TokenError("expired", inv)
        return TokenClaims(inv, expires)
