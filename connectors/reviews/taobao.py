"""Taobao/Tmall reviews: TOP ``taobao.traderates.get`` (reviews buyers gave the shop).

Seller-side API: ``rate_type=get&role=buyer`` returns the reviews buyers left for you, only for the
last 180 days; ``page_no`` stops at 200, so the date range is sliced (and split again when a slice
still has more than 200 pages). ``use_has_next=true`` is the fast mode without a total.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from connectors.reviews.base import ReviewFeedOptions, ReviewFeedSource

TRADERATE_FIELDS = "tid,oid,role,nick,result,created,rated_nick,item_title,item_price,content,reply,num_iid,valid_score"


class TaobaoReviewsOptions(ReviewFeedOptions):
    """TOP credentials (``session``: the seller's authorisation) and the review filter."""

    sign_method: Literal["md5", "hmac", "hmac-sha256"] = "hmac-sha256"
    result: Literal["good", "neutral", "bad"] | None = Field(default=None, description="only this result")
    fields: str = TRADERATE_FIELDS
    page_size: int | None = Field(default=100, ge=1, le=150)


class TaobaoReviewsSource(ReviewFeedSource):
    """Taobao / Tmall buyer reviews of the shop (TOP ``taobao.traderates.get``), signed md5 / hmac /
    hmac-sha256, in date slices under the 200-page limit."""

    kind = "taobao_reviews"
    title = "Taobao/Tmall reviews (TOP taobao.traderates.get)"
    Options = TaobaoReviewsOptions
    default_mapping = "taobao_traderate"
    default_base_url = "https://eco.taobao.com/router/rest"

    @classmethod
    def feed(cls, o: Any) -> dict[str, Any]:
        assert isinstance(o, TaobaoReviewsOptions)
        params: dict[str, Any] = {
            "method": "taobao.traderates.get",
            "fields": o.fields,
            "rate_type": "get",
            "role": "buyer",
            "use_has_next": "true",
        }
        if o.result:
            params["result"] = o.result
        return {
            "method": "POST",
            "body": "form",
            "params": params,
            "sign": "top",
            "sign_method": o.sign_method,
            "records": "traderates_get_response.trade_rates.trade_rate",
            "id": "join(':', [to_string(tid), to_string(oid), to_string(role)])",
            "pagination": {
                "type": "page",
                "page_param": "page_no",
                "size_param": "page_size",
                "size": o.page_size or 100,
                "max_page": 200,
                "has_more_path": "traderates_get_response.has_next",
            },
            "window": {"start_param": "start_date", "end_param": "end_date", "max_age": 180 * 86400},
            "errors": {
                "code_path": "error_response.code",
                "sub_code_path": "error_response.sub_code",
                "message_path": "error_response.sub_msg || error_response.msg",
                # 11-13 insufficient permissions, 24-29 signature / session / app key problems
                "token": ["11", "12", "13", "24", "25", "26", "27", "28", "29", "isv.session-expired*"],
                "throttle": ["7", "isv.access-limited*", "accesscontrol.limited-by-api-access-count*"],
                "retry": ["1", "10", "isp.*"],
            },
        }
