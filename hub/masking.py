"""What of a config may be printed: every secret masked by type (the ``SecretStr`` fields of the
models that validate it), by key name where no model describes the data, and every string
redacted (:mod:`hub.redact`: URL credentials, secret query parameters, remembered secret values).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, SecretStr

from hub.redact import MASK, redact

_SECRET_WORDS = (
    "secret",
    "password",
    "token",
    "aes_key",
    "encoding_aes_key",
    "private_key",
    "api_key",
    "apikey",
)


def mask_secrets(data: Any, key: str = "") -> Any:
    """Replace secret-looking values with ``***`` by key name (the fallback for data no model
    validated; :meth:`Config.masked` masks by type first) and redact every string
    (:func:`hub.redact.redact`: URL passwords, ``access_token=`` and the like, remembered secrets)."""
    from pydantic import SecretBytes

    if isinstance(data, dict):
        return {k: mask_secrets(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_secrets(v, key) for v in data]
    if isinstance(data, SecretStr | SecretBytes):
        return MASK
    low = key.lower()
    if data is not None and any(w in low for w in _SECRET_WORDS):
        return MASK
    if isinstance(data, str):
        return redact(data)
    return data


def mask_by_model(data: Any, model: type[BaseModel]) -> Any:
    """``data`` (what ``model`` validates) with the value of every field ``model`` declares as a
    secret replaced by ``***``, following nested models, lists, dicts and unions. A copy."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name, info in model.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        for key in {name, info.alias, alias}:
            if key is not None and key in out:
                out[key] = _mask_by_type(out[key], info.annotation)
    return out


def _mask_by_type(value: Any, tp: Any) -> Any:
    import types
    import typing
    from collections.abc import Mapping, Sequence

    from pydantic import SecretBytes

    if value is None or value == MASK:
        return value
    if isinstance(tp, type) and issubclass(tp, SecretStr | SecretBytes):
        return MASK
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return mask_by_model(value, tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _mask_by_type(value, args[0])
    if origin is typing.Union or origin is types.UnionType:  # a secret in any member masks it: the safe side
        for arg in args:
            value = _mask_by_type(value, arg)
        return value
    if isinstance(value, list) and args and origin in (list, tuple, set, frozenset, Sequence):
        return [_mask_by_type(v, args[0]) for v in value]
    if isinstance(value, dict) and len(args) == 2 and origin in (dict, Mapping):
        return {k: _mask_by_type(v, args[1]) for k, v in value.items()}
    return value


URL_PASSWORD = re.compile(r"://[^/\s:@]*:([^@/\s]+)@")


def secret_values_of(value: Any, found: list[str]) -> None:
    """Append every non-empty secret inside validated ``value`` to ``found``."""
    from pydantic import SecretBytes

    if isinstance(value, SecretStr):
        if value.get_secret_value():
            found.append(value.get_secret_value())
    elif isinstance(value, SecretBytes):
        if value.get_secret_value():
            found.append(value.get_secret_value().decode("utf-8", "replace"))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            secret_values_of(getattr(value, name, None), found)
    elif isinstance(value, dict):
        for v in value.values():
            secret_values_of(v, found)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            secret_values_of(v, found)
