"""One-tap actions from cards: find the button value cxhub put on a card in whatever shape the
platform sends it back, and who pressed it."""

from __future__ import annotations

from typing import Any

from hub.model import TouchpointEvent


def find_case_value(data: Any, depth: int = 0) -> dict[str, Any] | None:
    """The button value we put on a card (``{"cxhub_case": id, "op": ..., "t": ...}``), wherever the
    platform's payload nests it (Feishu ``action.value``, DingTalk ``cardPrivateData.params``...)."""
    if depth > 6:
        return None
    if isinstance(data, dict):
        if "cxhub_case" in data:
            return data
        for v in data.values():
            found = find_case_value(v, depth + 1)
            if found is not None:
                return found
    elif isinstance(data, list):
        for v in data:
            found = find_case_value(v, depth + 1)
            if found is not None:
                return found
    elif isinstance(data, str) and data.startswith("cxhub:"):
        parts = data.split(":", 3)
        if len(parts) == 4 and parts[1].isdigit():
            return {"cxhub_case": parts[1], "op": parts[2], "t": parts[3]}
    elif isinstance(data, str) and "cxhub_case" in data and data.lstrip().startswith("{"):
        import json

        try:
            return find_case_value(json.loads(data), depth + 1)
        except ValueError:
            return None
    return None


def card_actor(ev: TouchpointEvent) -> str:
    """Who pressed the button: the platform user id the push connector mapped."""
    if ev.org.staff:
        return ev.org.staff
    for key in ("operator", "user_id", "userid", "open_id", "staff"):
        v = ev.attributes.get(key)
        if isinstance(v, str) and v:
            return v
    for ident in ev.customer.identities:
        return f"{ident.namespace}:{ident.value}"
    return f"card:{ev.source}"
