"""SMS through an HTTP SMS gateway: Aliyun SMS (``sms``, ``dysmsapi`` ``SendSms``) and any other
gateway described in options (``sms_http``: URL, method, JSON / form / query template, token or
HMAC / digest signature, success condition, error codes).

Aliyun RPC signature (version 1.0): sort the query parameters, percent-encode them (RFC 3986:
space ``%20``, ``*`` ``%2A``, ``~`` kept), sign ``GET&%2F&`` + the encoded query with HMAC-SHA1
and key ``AccessKeySecret + "&"``. Message fields: ``to`` = mobile numbers (one call, comma
joined), ``template`` = template code (or the option), ``data`` = template parameters; ``OutId``
carries a hash of the idempotency key so delivery receipts can be matched.

Result codes: ``OK``; per-number limits (``isv.BUSINESS_LIMIT_CONTROL``) are retried later for that
message only (they do not block the gateway); bad numbers, templates or signatures are permanent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from hub.errors import PermanentError
from hub.sdk.connector import OutboundMessage, Receipt
from hub.sdk.destination import DestinationOptions, HttpDestination
from hub.sdk.http import call, call_json, check_status
from hub.sdk.policy import ErrorTable
from hub.sdk.render import flatten_markdown

ERRORS = ErrorTable(
    ok=frozenset({"OK"}),
    throttle=frozenset({"Throttling.User", "Throttling.Api", "Throttling"}),
    retry=frozenset(
        {
            "isp.SYSTEM_ERROR",
            "isv.BUSINESS_LIMIT_CONTROL",
            "isv.DAY_LIMIT_CONTROL",
            "isv.AMOUNT_NOT_ENOUGH",
            "ServiceUnavailable",
        }
    ),
    permanent=frozenset(
        {
            "isv.MOBILE_NUMBER_ILLEGAL",
            "isv.MOBILE_COUNT_OVER_LIMIT",
            "isv.TEMPLATE_MISSING_PARAMETERS",
            "isv.SMS_TEMPLATE_ILLEGAL",
            "isv.SMS_SIGNATURE_ILLEGAL",
            "isv.INVALID_PARAMETERS",
            "isv.PARAM_LENGTH_LIMIT",
            "isv.BLACK_KEY_CONTROL_LIMIT",
            "isv.ACCOUNT_NOT_EXISTS",
            "isv.ACCOUNT_ABNORMAL",
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId.NotFound",
            "Forbidden.RAM",
        }
    ),
    reasons={
        "isv.BUSINESS_LIMIT_CONTROL": "per-number frequency limit",
        "isv.MOBILE_NUMBER_ILLEGAL": "invalid mobile number",
        "SignatureDoesNotMatch": "request signature rejected (check the access key secret)",
    },
)


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun's signature requires."""
    return quote(value, safe="~")


def aliyun_signature(params: dict[str, str], secret: str, method: str = "GET") -> str:
    """The Aliyun RPC signature of ``params`` (without ``Signature``)."""
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(params[k])}" for k in sorted(params))
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


class SmsOptions(DestinationOptions):
    """Aliyun SMS: access key, sign name (签名) and a default template code."""

    preset: Literal["aliyun"] = "aliyun"
    access_key_id: str
    access_key_secret: SecretStr
    sign_name: str
    template_code: str | None = None
    base_url: str = "https://dysmsapi.aliyuncs.com"
    region: str = "cn-hangzhou"


class SmsMessage(HttpDestination):
    """SMS through the Aliyun SMS API (signed RPC call); template code plus parameters."""

    kind = "sms"
    title = "SMS (Aliyun SMS SendSms, signed RPC; template code + parameters)"
    Options = SmsOptions
    options: SmsOptions

    def params(self, message: OutboundMessage) -> dict[str, str]:
        """The signed query parameters for ``message``."""
        template = message.template or self.options.template_code
        if not template:
            raise PermanentError("no template: set message.template or the template_code option", target=self.name)
        fields = {k: str(v) for k, v in message.data.items() if not k.startswith("_")}
        params = {
            "AccessKeyId": self.options.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "PhoneNumbers": ",".join(message.to),
            "RegionId": self.options.region,
            "SignName": self.options.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "TemplateCode": template,
            "TemplateParam": json.dumps(fields, ensure_ascii=False, separators=(",", ":")),
            "Timestamp": self.context.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
            "OutId": hashlib.sha256(message.key.encode()).hexdigest()[:32],
        }
        params["Signature"] = aliyun_signature(params, self.options.access_key_secret.get_secret_value())
        return params

    def send(self, message: OutboundMessage) -> Receipt:
        """Send the template SMS to the numbers in ``message.to``."""
        if not message.to:
            raise PermanentError("no recipient: `to` needs mobile numbers", target=self.name)
        data, _ = call_json(
            self.client,
            "GET",
            self.options.base_url.rstrip("/") + "/",
            target=self.name,
            params=self.params(message),
            headers=self.headers(message),
            allow_error_status=True,
        )
        code = str(data.get("Code", ""))
        retry_after = 60.0 if code == "isv.BUSINESS_LIMIT_CONTROL" else None
        ERRORS.check(code, str(data.get("Message", "")), target=self.name, retry_after=retry_after)
        return Receipt(message_id=str(data.get("BizId") or "") or None, detail=f"Code {code}")


# --------------------------------------------------------------------------- generic HTTP gateway

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z_][a-z0-9_]*(?:\.[A-Za-z0-9_\-]+)?)\}")
#: placeholders every template may use (``data.NAME`` too); ``body``/``sorted_params``/``secret``
#: only in ``sign.message``, ``sign`` only in ``headers``
PLACEHOLDERS = frozenset(
    {
        "to",
        "to_list",
        "phone",
        "text",
        "title",
        "template",
        "params",
        "params_json",
        "sign_name",
        "key",
        "key_hash",
        "timestamp",
        "timestamp_ms",
        "iso_time",
        "nonce",
        "token",
    }
)


def _names(value: Any) -> set[str]:
    """The placeholders used anywhere in a template value."""
    if isinstance(value, str):
        return {m.group(1) for m in _PLACEHOLDER.finditer(value) if m.group(1)}
    if isinstance(value, dict):
        return set().union(*(_names(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_names(v) for v in value)) if value else set()
    return set()


def render_template(value: Any, values: Mapping[str, Any]) -> Any:
    """``value`` with its placeholders filled in (``{{``/``}}`` are literal braces).

    A string that is exactly one placeholder takes the value itself (``"{to_list}"`` -> a JSON
    list, ``"{params}"`` -> an object); otherwise placeholders are formatted into the string.
    """
    if isinstance(value, dict):
        return {k: render_template(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render_template(v, values) for v in value]
    if not isinstance(value, str):
        return value
    whole = _PLACEHOLDER.fullmatch(value)
    if whole and whole.group(1):
        return _lookup(whole.group(1), values)

    def one(m: re.Match[str]) -> str:
        if m.group(0) in ("{{", "}}"):
            return m.group(0)[0]
        v = _lookup(m.group(1), values)
        return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    return _PLACEHOLDER.sub(one, value)


def _lookup(name: str, values: Mapping[str, Any]) -> Any:
    if name.startswith("data."):
        return values["params"].get(name[5:], "")
    return values[name]


def _path(data: Any, path: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"`` (list indexes allowed: ``"result.0.sid"``); None if absent."""
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


class GatewaySign(BaseModel):
    """A request signature: HMAC (or a plain digest) of a string built from a template."""

    model_config = ConfigDict(extra="forbid")

    secret: SecretStr
    algorithm: Literal["sha256", "sha1", "md5"] = "sha256"
    mode: Literal["hmac", "digest"] = Field(
        default="hmac", description="hmac: keyed with the secret; digest: hash(message), put {secret} in the message"
    )
    message: str = Field(
        default="{timestamp}{nonce}{body}",
        description="string to sign; placeholders as in the body, plus {body} (the exact body or query sent, "
        "not with `field`), {sorted_params} (k=v&... of the body's top-level fields, sorted) and {secret}",
    )
    encoding: Literal["hex", "HEX", "base64"] = "hex"
    field: str | None = Field(default=None, description="add the signature to the body / query under this name")


class HttpSmsOptions(DestinationOptions):
    """Any HTTP SMS gateway: URL, method, body template, token or signature, success condition."""

    url: str = Field(description="the gateway's send URL")
    method: Literal["POST", "GET"] = "POST"
    body_format: Literal["json", "form"] = Field(default="json", description="POST body; GET sends a query string")
    body: dict[str, Any] = Field(description="request fields (templates, see docs/delivery.md)")
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers (templates; {sign} allowed)")
    token: SecretStr | None = Field(default=None, description="API key / token, used as {token}")
    sign: GatewaySign | None = None
    sign_name: str = Field(default="", description="SMS signature text (签名), used as {sign_name}")
    template_code: str | None = Field(default=None, description="default {template} when the message has none")
    separator: str = Field(default=",", description="between numbers in {to}")
    max_recipients: int = Field(default=1000, ge=1, description="numbers per call; 1 for single-number gateways")
    success_field: str | None = Field(
        default=None, description="dotted path of the result code in the JSON answer; unset: any 2xx is success"
    )
    success_values: list[str] = Field(default_factory=lambda: ["0"], description="result codes meaning sent")
    message_id_field: str | None = Field(default=None, description="dotted path of the gateway's message id")
    error_field: str | None = Field(default=None, description="dotted path of the error text")
    throttle_codes: list[str] = Field(default_factory=list, description="codes meaning 'too fast': back off")
    permanent_codes: list[str] = Field(default_factory=list, description="codes meaning 'never': dead at once")
    retry_codes: list[str] = Field(default_factory=list, description="codes meaning 'try later'")
    unknown_codes: Literal["retry", "permanent"] = "retry"

    @model_validator(mode="after")
    def _placeholders_known(self) -> HttpSmsOptions:
        def check(where: str, used: set[str], extra: frozenset[str] = frozenset()) -> None:
            unknown = sorted(n for n in used if n not in PLACEHOLDERS | extra and not n.startswith("data."))
            if unknown:
                raise ValueError(f"{where}: unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}")

        check("body", _names(self.body))
        check("headers", _names(self.headers), frozenset({"sign"}))
        if self.sign is not None:
            extra = frozenset({"sorted_params", "secret"} | ({"body"} if self.sign.field is None else set()))
            check("sign.message", _names(self.sign.message), extra)
        elif "sign" in _names(self.headers):
            raise ValueError("headers use {sign} but no `sign` is configured")
        if "token" in _names([self.body, self.headers, self.sign.message if self.sign else ""]) and not self.token:
            raise ValueError("{token} is used but the `token` option is not set")
        if self.method == "GET" and any(isinstance(v, dict | list) for v in self.body.values()):
            raise ValueError("GET sends a query string: body values must be strings")
        return self


class HttpSmsGateway(HttpDestination):
    """SMS through any HTTP gateway described in options (templates, token or HMAC, success code)."""

    kind = "sms_http"
    title = "SMS through a generic HTTP gateway (URL, JSON / form / query template, token or HMAC signature)"
    Options = HttpSmsOptions
    options: HttpSmsOptions

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        o = self.options
        self.errors = ErrorTable(
            ok=frozenset(o.success_values),
            throttle=frozenset(o.throttle_codes),
            retry=frozenset(o.retry_codes),
            permanent=frozenset(o.permanent_codes),
            default=o.unknown_codes,
        )

    def values(self, message: OutboundMessage) -> dict[str, Any]:
        """What the placeholders stand for, for ``message``."""
        o = self.options
        template = message.template or o.template_code or ""
        params = {k: v for k, v in message.data.items() if not k.startswith("_")}
        now = self.context.clock()
        text = flatten_markdown(message.body or "").strip() or (message.title or "")
        return {
            "to": o.separator.join(message.to),
            "to_list": list(message.to),
            "phone": message.to[0] if message.to else "",
            "text": text,
            "title": message.title or "",
            "template": template,
            "params": params,
            "params_json": json.dumps(params, ensure_ascii=False, separators=(",", ":")),
            "sign_name": o.sign_name,
            "key": message.key,
            "key_hash": hashlib.sha256(message.key.encode()).hexdigest()[:32],
            "timestamp": str(int(now.timestamp())),
            "timestamp_ms": str(int(now.timestamp() * 1000)),
            "iso_time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "nonce": uuid.uuid4().hex,
            "token": o.token.get_secret_value() if o.token else "",
        }

    def request(self, message: OutboundMessage) -> tuple[str, dict[str, str], bytes | None, str]:
        """(method, headers, body bytes or None, url with query) for ``message``, signed."""
        o = self.options
        values = self.values(message)
        fields = render_template(o.body, values)
        sign = ""
        if o.sign is not None:
            sign = self._sign(o.sign, values, fields)
            if o.sign.field:
                fields[o.sign.field] = sign
        url, content, ctype = o.url, None, None
        if o.method == "GET":
            query = urlencode({k: _scalar(v) for k, v in fields.items()})
            url = f"{url}{'&' if '?' in url else '?'}{query}"
        elif o.body_format == "json":
            content = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
            ctype = "application/json; charset=utf-8"
        else:
            content = urlencode({k: _scalar(v) for k, v in fields.items()}).encode()
            ctype = "application/x-www-form-urlencoded; charset=utf-8"
        headers = {**self.headers(message), **render_template(o.headers, {**values, "sign": sign})}
        if ctype:
            headers["Content-Type"] = ctype
        return o.method, headers, content, url

    def _sign(self, sign: GatewaySign, values: dict[str, Any], fields: dict[str, Any]) -> str:
        o = self.options
        body = ""
        if sign.field is None:  # the exact bytes sent (the signature is not part of them)
            if o.method == "GET":
                body = urlencode({k: _scalar(v) for k, v in fields.items()})
            elif o.body_format == "json":
                body = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
            else:
                body = urlencode({k: _scalar(v) for k, v in fields.items()})
        secret = sign.secret.get_secret_value()
        sorted_params = "&".join(f"{k}={_scalar(fields[k])}" for k in sorted(fields))
        text = render_template(sign.message, {**values, "body": body, "sorted_params": sorted_params, "secret": secret})
        data = str(text).encode("utf-8")
        if sign.mode == "hmac":
            digest = hmac.new(secret.encode(), data, getattr(hashlib, sign.algorithm)).digest()
        else:
            digest = hashlib.new(sign.algorithm, data).digest()
        if sign.encoding == "base64":
            return base64.b64encode(digest).decode("ascii")
        return digest.hex().upper() if sign.encoding == "HEX" else digest.hex()

    def send(self, message: OutboundMessage) -> Receipt:
        """Send ``message`` to the numbers in ``message.to`` through the gateway."""
        o = self.options
        if not message.to:
            raise PermanentError("no recipient: `to` needs mobile numbers", target=self.name)
        if len(message.to) > o.max_recipients:
            raise PermanentError(
                f"{len(message.to)} numbers but the gateway takes {o.max_recipients} per call", target=self.name
            )
        method, headers, content, url = self.request(message)
        if o.success_field is None:
            response = call(self.client, method, url, target=self.name, headers=headers, content=content)
            check_status(response, target=self.name)
            return Receipt(message_id=None, detail=f"HTTP {response.status_code}")
        data, response = call_json(
            self.client, method, url, target=self.name, headers=headers, content=content, allow_error_status=True
        )
        code = _path(data, o.success_field)
        code_text = "" if code is None else str(code).lower() if isinstance(code, bool) else str(code)
        error = _path(data, o.error_field) if o.error_field else None
        if response.status_code >= 400 and self.errors.listed(code_text) in (None, "ok"):
            check_status(response, target=self.name)  # 4xx without a code we know: the HTTP status says it
        # gateways echo numbers in their errors; last_error is read by staff
        from hub.privacy import mask_text  # imports cryptography: not at class load

        self.errors.check(code_text, mask_text(str(error or f"result code {code_text!r}")), target=self.name)
        mid = _path(data, o.message_id_field) if o.message_id_field else None
        return Receipt(message_id=str(mid) if mid not in (None, "") else None, detail=f"code {code_text}")


def _scalar(value: Any) -> str:
    """A form / query value: strings as they are, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
