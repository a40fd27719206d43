"""One-tap actions from cards: find the button value cxhub put on a card in whatever shape the
platform sends it back, and who pressed it.

Who: the push connectors verify the callback (Feishu ``X-Lark-Signature``, WeCom and DingTalk
``msg_signature`` over the encrypted body), and the preset mappings put the presser's platform user
id in ``org.staff`` / ``attributes.operator``. :class:`StaffDirectory` turns that id into the staff
member's name from ``feedback.contacts`` (each person's endpoint recipients and ``ids``), so the
audit trail reads "张店长 (dingtalk:zhangsan01)", not an opaque id; an id nobody configured is
recorded as it is, qualified by its platform.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.model import TouchpointEvent

if TYPE_CHECKING:
    from hub.features.feedback.config import FeedbackConfig

PLATFORM_ZH = {"dingtalk": "钉钉", "feishu": "飞书", "wecom": "企业微信"}


def find_case_value(data: Any, depth: int = 0) -> dict[str, Any] | None:
    """The button value we put on a card (``{"cxhub_case": id, "op": ..., "t": ...}``), wherever the
    platform's payload nests it (Feishu ``action.value``, DingTalk ``cardPrivateData.params``, a
    WeCom ``EventKey`` ``cxhub:12:ack:<token>``)."""
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
        try:
            return find_case_value(json.loads(data), depth + 1)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Presser:
    """Who pressed a card button: the platform and its user id, and the staff name when known."""

    platform: str
    user_id: str
    name: str | None = None

    @property
    def actor(self) -> str:
        """What the case's trail records: ``张店长 (dingtalk:zhangsan01)``, or ``dingtalk:zhangsan01``."""
        qualified = f"{self.platform}:{self.user_id}"
        return f"{self.name} ({qualified})" if self.name else qualified


@dataclass
class StaffDirectory:
    """Platform user id -> staff name, from the person contacts of ``feedback.contacts``."""

    names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: FeedbackConfig) -> StaffDirectory:
        """Every person contact's endpoint recipients and ``ids`` point to its name."""
        names: dict[str, str] = {}
        for key, contact in cfg.contacts.items():
            if contact.kind != "person":
                continue
            name = contact.name or key
            for uid in [*contact.ids, *(r for ep in contact.endpoints for r in ep.to)]:
                names.setdefault(uid, name)
        return cls(names)

    def presser(self, ev: TouchpointEvent) -> Presser:
        """Who pressed the button of the card action ``ev`` (the first of its ids the directory
        knows, else its first id)."""
        platform = str(ev.attributes.get("platform") or ev.channel or ev.source)
        ids = [v for v in _user_ids(ev) if v]
        for uid in ids:
            if uid in self.names:
                return Presser(platform, uid, self.names[uid])
        if ids:
            return Presser(platform, ids[0])
        return Presser(platform, f"source {ev.source}")


def _user_ids(ev: TouchpointEvent) -> list[str]:
    out: list[str] = []
    for v in (ev.org.staff, *(ev.attributes.get(k) for k in ("operator", "user_id", "userid", "open_id", "staff"))):
        if isinstance(v, str) and v and v not in out:
            out.append(v)
    return out


def card_actor(ev: TouchpointEvent, directory: StaffDirectory | None = None) -> str:
    """Who pressed the button, as the case's trail records it."""
    return (directory or StaffDirectory()).presser(ev).actor
