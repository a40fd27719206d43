"""SMS through an HTTP SMS gateway; the preset is Aliyun SMS (``dysmsapi`` ``SendSms``).

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
import uuid
from typing import Literal
from urllib.parse import quote

from pydantic import SecretStr

from hub.connector import OutboundMessage, Receipt
from hub.delivery.base import DestinationOptions, HttpDestination
from hub.delivery.http import call_json
from hub.delivery.policy import ErrorTable
from hub.errors import PermanentError

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
