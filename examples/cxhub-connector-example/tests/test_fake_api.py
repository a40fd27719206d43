"""The fake API over real HTTP, as ``cxhub sync`` in another process sees it."""

from __future__ import annotations

import httpx

from cxhub_connector_example.fake import FakeNpsApi


def test_serves_the_feed_over_http() -> None:
    api = FakeNpsApi("k")
    with api.serve() as base_url:
        page = httpx.get(f"{base_url}/v1/answers", params={"limit": 3}, headers={"Authorization": "Bearer k"})
        refused = httpx.get(f"{base_url}/v1/answers")
    assert page.status_code == 200 and page.json()["next_cursor"] == "3" and page.json()["has_more"] is True
    assert refused.status_code == 401
