"""What headless Chromium actually drew: the platform fonts behind an element's text.

Without a CJK font every Chinese character is a blank box, and a screenshot test that only looks
for the element passes anyway. Chromium's DevTools protocol says which installed font drew how
many glyphs of a node (``CSS.getPlatformFontsForNode``), so a test can require that the Chinese
text was drawn by a CJK font, glyph for glyph.
"""

from __future__ import annotations

from typing import Any

#: words in the family names of the common CJK fonts on Linux (Noto / Source Han, WenQuanYi, Droid)
CJK_FAMILIES = ("CJK", "Source Han", "WenQuanYi", "Droid Sans Fallback", "Hei", "Song", "Kai")


def _is_cjk(ch: str) -> bool:
    return (
        "\u3400" <= ch <= "\u9fff"
        or "\uf900" <= ch <= "\ufaff"
        or "\u3000" <= ch <= "\u303f"
        or "\uff00" <= ch <= "\uffef"
    )


def fonts_drawing(driver: Any, selector: str) -> list[dict[str, Any]]:
    """The fonts Chromium used for the text of the first element matching ``selector``."""
    driver.execute_cdp_cmd("DOM.enable", {})
    driver.execute_cdp_cmd("CSS.enable", {})
    root = driver.execute_cdp_cmd("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = driver.execute_cdp_cmd("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    if not node:
        raise AssertionError(f"no element matches {selector!r}")
    fonts: list[dict[str, Any]] = driver.execute_cdp_cmd("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    return fonts


def cjk_drawn_by(driver: Any, selector: str, text: str) -> dict[str, int]:
    """CJK font family -> glyphs it drew for ``selector``; asserts every CJK character of ``text``
    (the element's text) was drawn by a CJK font, not by a fallback's blank box."""
    wanted = sum(1 for ch in text if _is_cjk(ch))
    fonts = fonts_drawing(driver, selector)
    cjk = {f["familyName"]: int(f["glyphCount"]) for f in fonts if any(m in f["familyName"] for m in CJK_FAMILIES)}
    assert wanted, f"{text!r} has no CJK character to check"
    assert sum(cjk.values()) >= wanted, f"{selector}: {wanted} CJK characters, drawn by {fonts}"
    return cjk
