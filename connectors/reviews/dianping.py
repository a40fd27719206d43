"""Dianping / Meituan in-store reviews: ``POST /router/ugc/queryshopreview`` (one shop per call).

Offset/limit paging, ``begintime``/``endtime`` windows, ``platform`` 1 = Dianping, 2 = Meituan.
Responses carry ``code`` (200 = OK) and ``msg``; the review list is ``data.reviewInfoDTOList``
(public SDK samples; verify on your app). ``shops`` lists the ``open_shop_uuid`` values to read.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field

from connectors.reviews.base import ReviewFeedOptions, ReviewFeedSource


class DianpingReviewsOptions(ReviewFeedOptions):
    """Open-platform credentials (``session`` from router/oauth/token) and the shops to read."""

    shops: list[str] = Field(min_length=1, description="open_shop_uuid of each shop")
    platform: Literal[1, 2] = 1
    page_size: int | None = Field(default=50, ge=1, le=100)
    records: str = "data.reviewInfoDTOList"
    token_codes: list[str] = Field(
        default_factory=lambda: ["401", "403", "601", "602", "603"],
        validation_alias=AliasChoices("token_codes", "auth_codes"),
    )
    throttle_codes: list[str] = Field(
        default_factory=lambda: ["429", "701"], validation_alias=AliasChoices("throttle_codes", "throttled_codes")
    )
    retry_codes: list[str] = Field(
        default_factory=lambda: ["500", "502", "503", "504"],
        validation_alias=AliasChoices("retry_codes", "transient_codes"),
    )


class DianpingReviewsSource(ReviewFeedSource):
    """Dianping / Meituan shop reviews (open platform ``router/ugc/queryshopreview``), MD5-signed,
    offset paged, one shop after the other."""

    kind = "dianping_reviews"
    title = "Dianping/Meituan shop reviews (router/ugc/queryshopreview)"
    Options = DianpingReviewsOptions
    default_mapping = "dianping_review"
    default_base_url = "https://openapi.dianping.com/router/ugc/queryshopreview"

    @classmethod
    def feed(cls, o: Any) -> dict[str, Any]:
        assert isinstance(o, DianpingReviewsOptions)
        return {
            "method": "POST",
            "body": "form",
            "params": {"platform": o.platform},
            "sign": "dianping",
            "records": o.records,
            "id": "to_string(reviewId)",
            "fan_out": {"param": "open_shop_uuid", "values": o.shops},
            "pagination": {
                "type": "offset",
                "offset_param": "offset",
                "size_param": "limit",
                "size": o.page_size or 50,
            },
            "window": {"start_param": "begintime", "end_param": "endtime"},
            "errors": {
                "code_path": "code",
                "message_path": "msg",
                "ok": ["200"],
                "token": o.token_codes,
                "throttle": o.throttle_codes,
                "retry": o.retry_codes,
            },
        }
