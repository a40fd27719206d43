"""Signed, expiring staff-action links: ``{public_url}/cases/{id}/{action}?t={expiry}.{signature}``.

The signature is HMAC-SHA256 over ``case id, action, expiry`` with a key derived from the
deployment's secret key (its own derivation label, so a link token can never be replayed as a
survey token or anything else). Tokens are also what card buttons carry in their callback value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

from hub.errors import SignatureError

ACTIONS = ("view", "ack", "resolve", "not_negative")


class LinkSigner:
    """Signs and checks action tokens."""

    def __init__(self, secret_key: bytes, public_url: str):
        self._key = hashlib.sha256(b"cxhub-case-link\x00" + secret_key).digest()
        self.public_url = public_url.rstrip("/")

    def _sig(self, case_id: int, action: str, exp: int) -> str:
        mac = hmac.new(self._key, f"{case_id}\x1f{action}\x1f{exp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode("ascii")

    def token(self, case_id: int, action: str, expires: datetime) -> str:
        """``{expiry}.{signature}`` for ``action`` on ``case_id``."""
        if action not in ACTIONS:
            raise ValueError(f"unknown case action {action!r}")
        exp = int(expires.timestamp())
        return f"{exp}.{self._sig(case_id, action, exp)}"

    def url(self, case_id: int, action: str, expires: datetime) -> str:
        """The full link staff tap."""
        return f"{self.public_url}/cases/{case_id}/{action}?t={self.token(case_id, action, expires)}"

    def verify(self, case_id: int, action: str, token: str, now: datetime) -> None:
        """Raise ``SignatureError`` unless ``token`` is a valid, unexpired token for this action."""
        exp_s, _, sig = token.partition(".")
        if not exp_s.isdigit() or not sig:
            raise SignatureError("malformed link token")
        if not hmac.compare_digest(sig, self._sig(case_id, action, int(exp_s))):
            raise SignatureError("link signature does not match")
        if datetime.fromtimestamp(int(exp_s), UTC) < now:
            raise SignatureError("link has expired")
