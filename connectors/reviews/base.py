"""What the review presets share: short options, turned into full ``http_feed`` options."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator

from connectors.http_feed import HttpFeedOptions, HttpFeedSource
from hub.sdk.connector import ConnectorOptions
from hub.sdk.durations import parse_duration


def _dur(v: Any) -> float:
    return parse_duration(v)


class ReviewFeedOptions(ConnectorOptions):
    """Credentials, where to call, how far back and how fast. Durations accept ``30s``, ``10m``, ``1d``."""

    app_key: str
    app_secret: SecretStr
    session: SecretStr | None = Field(default=None, description="the seller's session / access token")
    base_url: str | None = Field(default=None, description="default: the platform's gateway")
    initial: float = Field(default=7 * 86400, description="how far back the first run reads")
    span: float = Field(default=86400, description="longest time window per request series")
    overlap: float = Field(default=3600, description="re-read before the last committed window end")
    lag: float = Field(default=120, description="stay this far behind now")
    page_size: int | None = None
    rate_limit: float = Field(default=5.0, gt=0, description="requests per second")
    retries: int = Field(default=5, ge=1, le=20)
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("initial", "span", "overlap", "lag", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return _dur(v)


class ReviewFeedSource(HttpFeedSource):
    """Base of the review presets: subclasses fill :meth:`feed` with the platform's request shape."""

    Options: ClassVar[type[ConnectorOptions]] = ReviewFeedOptions
    default_base_url: ClassVar[str] = ""

    @classmethod
    def feed(cls, o: Any) -> dict[str, Any]:
        """The platform-specific part of the feed options."""
        raise NotImplementedError

    @classmethod
    def build_options(cls, options: ConnectorOptions) -> HttpFeedOptions:
        if isinstance(options, HttpFeedOptions):
            return options
        o = options
        assert isinstance(o, ReviewFeedOptions)
        common: dict[str, Any] = {
            "base_url": o.base_url or cls.default_base_url,
            "app_key": o.app_key,
            "app_secret": o.app_secret,
            "session": o.session,
            "rate_limit": {"limit": 1, "per_seconds": 1 / o.rate_limit},
            "retries": o.retries,
            "timeout": o.timeout,
        }
        spec = cls.feed(o)
        window = spec.pop("window")
        window.update(initial=o.initial, span=o.span, overlap=o.overlap, lag=o.lag)
        return HttpFeedOptions.model_validate({**common, **spec, "window": window})
