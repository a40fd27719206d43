"""JD (JOS) reviews: ``jingdong.pop.PopCommentJsfService.getVenderCommentsForJos``.

Business parameters (``beginTime, endTime, page, pageSize`` <= 50, ``score``...) travel as the JSON
string ``360buy_param_json``; the response is wrapped in ``<method>_responce`` (sic, JOS spelling).
The exact response nesting and the JOS error codes below come from public SDKs and samples, not
from the official doc: override ``records`` / ``token_codes`` / ``throttle_codes`` / ``retry_codes`` if your app sees
otherwise.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field

from connectors.reviews.base import ReviewFeedOptions, ReviewFeedSource

JD_METHOD = "jingdong.pop.PopCommentJsfService.getVenderCommentsForJos"
JD_RESPONSE = "jingdong_pop_PopCommentJsfService_getVenderCommentsForJos_responce"


class JdReviewsOptions(ReviewFeedOptions):
    """JOS credentials (``session``: the access_token) and filters."""

    page_size: int | None = Field(default=50, ge=1, le=50)
    score: int | None = Field(default=None, description="0 all, 3 good, 2 medium, 1 bad")
    sku_ids: str | None = Field(default=None, description="comma-separated skuids")
    records: str = f"{JD_RESPONSE}.comments"
    token_codes: list[str] = Field(
        default_factory=lambda: ["14", "15", "16", "18", "19"],
        validation_alias=AliasChoices("token_codes", "auth_codes"),
    )
    throttle_codes: list[str] = Field(
        default_factory=lambda: ["61", "62", "63"], validation_alias=AliasChoices("throttle_codes", "throttled_codes")
    )
    retry_codes: list[str] = Field(
        default_factory=lambda: ["66", "67"], validation_alias=AliasChoices("retry_codes", "transient_codes")
    )


class JdReviewsSource(ReviewFeedSource):
    """JD vendor comments (JOS ``getVenderCommentsForJos``), MD5-signed, paged by 50."""

    kind = "jd_reviews"
    title = "JD reviews (JOS getVenderCommentsForJos)"
    Options = JdReviewsOptions
    default_mapping = "jd_comment"
    default_base_url = "https://api.jd.com/routerjson"

    @classmethod
    def feed(cls, o: Any) -> dict[str, Any]:
        assert isinstance(o, JdReviewsOptions)
        params: dict[str, Any] = {"method": JD_METHOD}
        if o.score is not None:
            params["score"] = o.score
        if o.sku_ids:
            params["skuids"] = o.sku_ids
        return {
            "method": "POST",
            "body": "form",
            "params": params,
            "sign": "jd",
            "records": o.records,
            "id": "to_string(commentId)",
            "pagination": {"type": "page", "page_param": "page", "size_param": "pageSize", "size": o.page_size or 50},
            "window": {"start_param": "beginTime", "end_param": "endTime"},
            "errors": {
                "code_path": "error_response.code",
                "message_path": "error_response.zh_desc || error_response.en_desc",
                "token": o.token_codes,
                "throttle": o.throttle_codes,
                "retry": o.retry_codes,
            },
        }
