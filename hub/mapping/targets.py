"""Target fields: which ``TouchpointEvent`` (and ``OrderItem``) fields a mapping may write, and how.

Each field of the model is classified once (text, number, date-time, enum, list...): the compiler
checks a field spec's ``type`` against it and gives a bare path the field's natural coercion.
The identity namespaces ``customer.identities`` may use are here too (``BUILTIN_NAMESPACES``).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from pydantic import AwareDatetime, BaseModel

from hub.model import OrderItem, TouchpointEvent

# Fields the hub sets itself; a mapping may not write them.
HUB_OWNED = {"id", "source", "external_id", "received_at", "raw_ref", "customer.customer_id"}


@dataclass(frozen=True)
class Target:
    kind: str  # str int decimal float bool datetime enum list_str model_list any
    item_model: type[BaseModel] | None = None


def _classify(annotation: Any) -> Target:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _classify(args[0])
    if origin is list:
        (inner,) = typing.get_args(annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return Target("model_list", inner)
        return Target("list_str")
    if origin is dict:
        return Target("any")
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return Target("enum")
        if issubclass(annotation, bool):
            return Target("bool")
        if issubclass(annotation, datetime):
            return Target("datetime")
        if issubclass(annotation, Decimal):
            return Target("decimal")
        if issubclass(annotation, int):
            return Target("int")
        if issubclass(annotation, float):
            return Target("float")
        if issubclass(annotation, str):
            return Target("str")
    # aware datetimes are Annotated[datetime, ...]
    if typing.get_origin(annotation) is typing.Annotated:
        return _classify(typing.get_args(annotation)[0])
    if annotation is Any:
        return Target("any")
    return Target("any")


def model_targets(model: type[BaseModel], prefix: str = "") -> dict[str, Target]:
    out: dict[str, Target] = {}
    for name, info in model.model_fields.items():
        dotted_name = prefix + name
        ann = info.annotation
        inner = [a for a in typing.get_args(ann) if a is not type(None)]
        sub = inner[0] if len(inner) == 1 and typing.get_origin(ann) in (typing.Union, types.UnionType) else ann
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out.update(model_targets(sub, dotted_name + "."))
        else:
            # pydantic's AwareDatetime is a class of its own, not a datetime subclass
            if ann is AwareDatetime or ann is datetime:
                out[dotted_name] = Target("datetime")
            else:
                out[dotted_name] = _classify(ann)
    return out


EVENT_TARGETS = {k: v for k, v in model_targets(TouchpointEvent).items() if k not in HUB_OWNED}
ITEM_TARGETS = model_targets(OrderItem)

# coercion type -> target kinds it may feed
COMPATIBLE: dict[str, set[str]] = {
    "str": {"str", "enum", "any", "list_str"},
    "int": {"int", "decimal", "float", "str", "any"},
    "decimal": {"decimal", "float", "int", "str", "any"},
    "float": {"decimal", "float", "any"},
    "bool": {"bool", "any"},
    "datetime": {"datetime", "any", "str"},
    "date": {"any", "str"},
    "json": {"any", "list_str", "model_list"},
}
NATURAL = {
    "str": "str",
    "enum": "str",
    "int": "int",
    "decimal": "decimal",
    "float": "float",
    "bool": "bool",
    "datetime": "datetime",
    "list_str": "json",
    "any": "json",
}


def event_targets() -> dict[str, str]:
    """Target field -> kind, for docs and error messages."""
    return {k: v.kind for k, v in EVENT_TARGETS.items()}


#: identity namespaces cxhub itself gives meaning to (privacy, reach, presets); a config declares
#: its own under ``identity_namespaces:``. Identities join a customer only within one namespace,
#: so a misspelt one (``emial``) would never merge: mappings may use only these and the declared.
BUILTIN_NAMESPACES: dict[str, str] = {
    "openid": "WeChat openid (per official account / mini-program; the channel's scope is its app id)",
    "unionid": "WeChat unionid (one per person across a brand's WeChat apps)",
    "alipay_uid": "Alipay user id (2088...)",
    "alipay_openid": "Alipay openid (per app)",
    "external_userid": "WeCom external contact id",
    "feishu_open_id": "Feishu user open_id",
    "phone": "phone number (stored as a keyed hash; reached by SMS)",
    "mobile": "phone number, as some systems name it (stored as a keyed hash)",
    "email": "email address (stored as a keyed hash; reached by email)",
    "id_card": "national id card number (stored as a keyed hash)",
    "member_id": "the brand's member / loyalty number",
    "cxhub_customer": "a cxhub customer id (hosted survey answers link back to the invited customer)",
    "dianping_user": "Dianping / Meituan user id",
    "jd_pin": "JD account pin",
    "taobao_nick": "Taobao / Tmall buyer nick",
    "platform_user": "a review platform's user name (generic_review)",
}


def known_namespaces(declared: Iterable[str] = ()) -> frozenset[str]:
    """The built-in identity namespaces plus ``declared`` (the config's ``identity_namespaces``)."""
    return frozenset(BUILTIN_NAMESPACES) | frozenset(declared)
