"""Request signing of the Chinese open platforms, by name (the ``http_feed`` source's ``sign: top``...).

A strategy gets the credentials (:class:`SigningOptions`: ``app_key``, ``app_secret``, ``session``,
``sign_method``; the ``http_feed`` options are one), the request's parameters and the hub's clock,
and returns the parameters to send. Strategies know nothing of the source that calls them, so the
source imports this registry and nothing here imports the source.

- ``top`` (Taobao/Tmall Open Platform): system parameters ``method, app_key, session, timestamp
  (yyyy-MM-dd HH:mm:ss, GMT+8), format=json, v=2.0, sign_method``; the parameters sorted by name,
  concatenated as ``k1v1k2v2...`` (empty values left out), then ``md5`` = MD5(secret + s + secret),
  ``hmac`` = HMAC-MD5(secret, s), ``hmac-sha256`` = HMAC-SHA256(secret, s); upper-case hex.
- ``jd`` (JD JOS ``routerjson``): business parameters travel as one JSON string
  ``360buy_param_json``; system parameters ``method, app_key, access_token, timestamp, v=2.0,
  format=json, sign_method=md5``; sign = upper-case MD5(secret + sorted k+v + secret).
- ``dianping`` (Dianping/Meituan open platform): ``app_key, timestamp, session, format=json, v=1,
  sign_method=MD5`` with the business parameters; sign = lower-case MD5(secret + sorted k+v + secret)
  (from public SDKs, not the official doc: see docs/pull.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from pydantic import SecretStr

CHINA = timezone(timedelta(hours=8))


def china_timestamp(now: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in GMT+8, as TOP, JOS and Dianping expect."""
    return now.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def concat_sorted(params: Mapping[str, Any], *, skip: tuple[str, ...] = ("sign",)) -> str:
    """``k1v1k2v2...`` over the parameters sorted by name, empty values and ``skip`` left out."""
    return "".join(
        k + _text(v) for k, v in sorted(params.items()) if k not in skip and v is not None and _text(v) != ""
    )


def top_sign(params: Mapping[str, Any], secret: str, method: str = "md5") -> str:
    """The TOP signature of ``params`` (upper-case hex)."""
    s = concat_sorted(params)
    key = secret.encode("utf-8")
    if method == "md5":
        digest = hashlib.md5((secret + s + secret).encode("utf-8")).hexdigest()  # noqa: S324 - the platform's scheme
    elif method == "hmac":
        digest = hmac.new(key, s.encode("utf-8"), hashlib.md5).hexdigest()
    elif method == "hmac-sha256":
        digest = hmac.new(key, s.encode("utf-8"), hashlib.sha256).hexdigest()
    else:
        raise ValueError(f"unknown TOP sign_method {method!r}; use md5, hmac or hmac-sha256")
    return digest.upper()


def md5_wrapped(params: Mapping[str, Any], secret: str) -> str:
    """MD5(secret + sorted k+v + secret), lower-case hex (JOS upper-cases it)."""
    return hashlib.md5((secret + concat_sorted(params) + secret).encode("utf-8")).hexdigest()  # noqa: S324


class SigningOptions(Protocol):
    """What a signing strategy reads: the app's key and secret, the seller's session and the TOP
    ``sign_method``."""

    @property
    def app_key(self) -> str | None: ...

    @property
    def app_secret(self) -> SecretStr | None: ...

    @property
    def session(self) -> SecretStr | None: ...

    @property
    def sign_method(self) -> str: ...


def _creds(o: SigningOptions) -> tuple[str, str, str | None]:
    assert o.app_key is not None and o.app_secret is not None  # checked by the options
    return o.app_key, o.app_secret.get_secret_value(), o.session.get_secret_value() if o.session else None


def sign_none(o: SigningOptions, params: dict[str, Any], now: datetime) -> dict[str, Any]:
    """No signature."""
    return params


def sign_top(o: SigningOptions, params: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Taobao/Tmall TOP gateway signature."""
    app_key, secret, session = _creds(o)
    out = {k: _text(v) for k, v in params.items() if v is not None}
    out.update(
        app_key=app_key,
        timestamp=china_timestamp(now),
        format="json",
        v="2.0",
        sign_method=o.sign_method,
    )
    if session:
        out["session"] = session
    out["sign"] = top_sign(out, secret, o.sign_method)
    return out


JD_SYSTEM = ("method", "app_key", "access_token", "timestamp", "v", "format", "sign_method")


def sign_jd(o: SigningOptions, params: dict[str, Any], now: datetime) -> dict[str, Any]:
    """JD JOS ``routerjson`` signature: business parameters in ``360buy_param_json``."""
    app_key, secret, session = _creds(o)
    business = {k: v for k, v in params.items() if k not in JD_SYSTEM and v is not None}
    out: dict[str, Any] = {
        "method": params.get("method", ""),
        "app_key": app_key,
        "timestamp": china_timestamp(now),
        "v": "2.0",
        "format": "json",
        "sign_method": "md5",
        "360buy_param_json": json.dumps(business, ensure_ascii=False, separators=(",", ":"), sort_keys=True),
    }
    if session:
        out["access_token"] = session
    out["sign"] = md5_wrapped(out, secret).upper()
    return out


def sign_dianping(o: SigningOptions, params: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Dianping/Meituan open platform signature (MD5)."""
    app_key, secret, session = _creds(o)
    out = {k: _text(v) for k, v in params.items() if v is not None}
    out.update(app_key=app_key, timestamp=china_timestamp(now), format="json", v="1", sign_method="MD5")
    if session:
        out["session"] = session
    out["sign"] = md5_wrapped(out, secret)
    return out


Signer = Callable[[SigningOptions, dict[str, Any], datetime], dict[str, Any]]

SIGNERS: dict[str, Signer] = {"none": sign_none, "top": sign_top, "jd": sign_jd, "dianping": sign_dianping}
