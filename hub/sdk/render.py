"""Text helpers every destination uses: byte-safe trimming and splitting, Markdown flattening,
buttons as links, masking personal data, and digests.

Platform limits are in **bytes of UTF-8** (WeCom markdown: 4096), while Chinese text is three bytes
a character: cutting a ``str`` by characters overshoots and cutting ``bytes`` can split a character.
:func:`trim_utf8` and :func:`split_utf8` cut on code-point boundaries (preferring line breaks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence

from hub.sdk.connector import OutboundMessage

ELLIPSIS = "…"
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
_EMPHASIS = re.compile(r"(\*\*|__|~~|`)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.MULTILINE)
DIGEST_SEPARATOR = "\n\n---\n\n"


def utf8_len(text: str) -> int:
    """Length of ``text`` in UTF-8 bytes."""
    return len(text.encode("utf-8"))


def trim_utf8(text: str, max_bytes: int, ellipsis: str = ELLIPSIS) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes on a character boundary, marked with
    ``ellipsis`` when it was cut."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    room = max_bytes - utf8_len(ellipsis)
    if room <= 0:
        return data[:max_bytes].decode("utf-8", "ignore")
    # errors="ignore" drops the partial character left at the cut
    return data[:room].decode("utf-8", "ignore") + ellipsis


def split_utf8(text: str, max_bytes: int) -> list[str]:
    """Split ``text`` into parts of at most ``max_bytes`` UTF-8 bytes each, at line breaks where
    possible and on character boundaries otherwise. Nothing is lost: ``"".join(parts) == text``."""
    if max_bytes < 4:
        raise ValueError("max_bytes must leave room for one UTF-8 character")
    parts: list[str] = []
    current = ""
    size = 0
    for line in text.splitlines(keepends=True):
        n = utf8_len(line)
        if size + n <= max_bytes:
            current += line
            size += n
            continue
        if current:
            parts.append(current)
            current, size = "", 0
        while n > max_bytes:  # one line longer than a part: cut it on character boundaries
            head = line.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
            parts.append(head)
            line = line[len(head) :]
            n = utf8_len(line)
        current, size = line, n
    if current or not parts:
        parts.append(current)
    return parts


def flatten_markdown(text: str) -> str:
    """Markdown-ish text as plain text (SMS, text messages): links become ``label url``."""
    text = _LINK.sub(lambda m: f"{m.group(1)} {m.group(2)}".strip(), text)
    text = _HEADING.sub("", text)
    return _EMPHASIS.sub("", text)


def buttons_as_links(message: OutboundMessage, separator: str = "  ") -> str:
    """The message's buttons (and its primary url) as Markdown links, for platforms without
    buttons and for digests."""
    links = [f"[{b.label}]({b.url})" for b in message.buttons]
    if message.url and all(b.url != message.url for b in message.buttons):
        links.append(f"[查看详情]({message.url})")
    return separator.join(links)


def markdown_with_links(message: OutboundMessage, *, heading: str = "### ") -> str:
    """Title, body and buttons as one Markdown text."""
    parts = []
    if message.title:
        parts.append(f"{heading}{message.title}")
    if message.body:
        parts.append(message.body)
    links = buttons_as_links(message)
    if links:
        parts.append(links)
    return "\n\n".join(parts)


def mask_message(message: OutboundMessage) -> OutboundMessage:
    """``message`` with phone numbers masked in what people read (title, body, string data).
    Recipients and mentions are left alone: they are where the message goes, not what it says."""
    from hub.privacy import mask_text  # imports cryptography: only when something is masked

    data = {k: (mask_text(v) if isinstance(v, str) else v) for k, v in message.data.items()}
    return dataclasses.replace(message, title=mask_text(message.title), body=mask_text(message.body), data=data)


def digest_key(keys: Sequence[str]) -> str:
    """The idempotency key of a digest: derived from its members' keys, so a retried digest keeps it."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode("utf-8")).hexdigest()
    return f"digest:{digest[:40]}"


def _section(message: OutboundMessage) -> str:
    return markdown_with_links(message, heading="#### ")


def digest_title(count: int) -> str:
    """Title of a digest of ``count`` messages."""
    return f"{count} 条消息汇总 ({count} messages)"


def pack_digests(messages: Sequence[OutboundMessage], max_bytes: int) -> list[list[int]]:
    """Group message indexes (in order) into as few digests as fit ``max_bytes`` each.

    A message whose own section is larger than a digest is trimmed when rendered (see
    :func:`render_digest`), so it travels alone.
    """
    budget = max(max_bytes - 200, 64)  # room for the digest's own heading and separators
    groups: list[list[int]] = []
    size = 0
    for i, m in enumerate(messages):
        n = utf8_len(_section(m)) + utf8_len(DIGEST_SEPARATOR)
        if groups and size + n <= budget:
            groups[-1].append(i)
            size += n
        else:
            groups.append([i])
            size = n
    return groups


def render_digest(messages: Sequence[OutboundMessage], max_bytes: int) -> OutboundMessage:
    """One message combining ``messages`` (same destination), within ``max_bytes`` of body.

    Recipients and mentions are the union of the members'; every member's buttons become links
    in its section, so one-tap links keep working inside a digest.
    """
    keys = [m.key for m in messages]
    to: list[str] = []
    mention: list[str] = []
    for m in messages:
        to.extend(x for x in m.to if x not in to)
        mention.extend(x for x in m.mention if x not in mention)
    sections = [_section(m) for m in messages]
    room = max(max_bytes - 200, 64)
    if len(sections) == 1:
        sections = [trim_utf8(sections[0], room)]
    body = DIGEST_SEPARATOR.join(sections)
    body = trim_utf8(body, max_bytes)
    return OutboundMessage(
        key=digest_key(keys),
        title=digest_title(len(messages)),
        body=body,
        to=to,
        mention=mention,
        data={"digest_of": keys},
    )


__all__ = [
    "buttons_as_links",
    "digest_key",
    "digest_title",
    "flatten_markdown",
    "markdown_with_links",
    "mask_message",
    "pack_digests",
    "render_digest",
    "split_utf8",
    "trim_utf8",
    "utf8_len",
]
