"""The ``surveys:`` section of the config (pydantic; validated when the config loads).

This module must not import ``hub.config`` (that module imports this one), so it carries its own
small duration parser. Every model forbids unknown keys, so a typo is an error naming
``file:line: surveys.rules[0].delay``.

Shape (see docs/surveys.md for the walk-through)::

    surveys:
      timezone: Asia/Shanghai            # stores without their own time zone
      quiet_hours: {start: "21:30", end: "08:30"}
      stores:
        S001: {name: 徐汇店, timezone: Asia/Shanghai, type: supermarket}
      caps:                              # global, across every survey
        - {max: 1, per: 7d}
      channel_caps:
        sms: [{max: 2, per: 30d}]
      channels:                          # preference order; the first reachable one is used
        - {channel: wechat_template, destination: wechat_oa, template: TPL_ID, scope: wx_oa_appid}
        - {channel: sms, destination: sms, template: SMS_123}
      questionnaires:
        retail: retail                   # a preset name, a file (relative to the config) or inline
      rules:
        - name: after_checkout
          questionnaire: retail
          when: {kind: transaction, categories: {any: [生鲜, 乳制品]}, amount: {min: 20}}
          delay: 30m
          expires: 3d
          sample: 0.5
          caps: [{max: 1, per: 30d}]
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.features.surveys.presets import preset_exists, preset_names
from hub.features.surveys.questionnaire import load_questionnaires
from hub.sdk.durations import parse_duration

if TYPE_CHECKING:  # hub.config imports this module: no import at run time
    from hub.config import Config
    from hub.errors import ConfigError

DEFAULT_TIMEZONE = "Asia/Shanghai"

#: channel kinds cxhub knows how to address, in the default preference order
CHANNEL_KINDS = ("wechat_template", "wechat_subscribe", "miniprogram", "alipay", "sms", "email")
ChannelKind = Literal["wechat_template", "wechat_subscribe", "miniprogram", "alipay", "sms", "email"]

#: the identity namespace each channel kind reaches a customer through (overridable per channel)
DEFAULT_NAMESPACE: dict[str, str] = {
    "wechat_template": "openid",
    "wechat_subscribe": "openid",
    "miniprogram": "openid",
    "alipay": "alipay_uid",
    "sms": "phone",
    "email": "email",
}


#: identity namespaces whose ids belong to one app (an openid is the official account's or the
#: mini-program's, never both; an Alipay openid too, unlike the 2088 user id): a channel reaching
#: them should say which app (``scope:``)
APP_SCOPED_NAMESPACES = frozenset({"openid", "alipay_openid"})

#: channel kinds whose message opens a page of the mini-program (a path, never the https link)
PAGE_CHANNELS = frozenset({"miniprogram", "alipay"})
#: the survey page of the mini-program when a channel names none (``?token=...`` is appended)
DEFAULT_PAGE = "pages/survey/index"
#: channel kinds whose platform template shows only the fields the channel maps (``fields:``)
TEMPLATE_CHANNELS = frozenset({"wechat_template", "wechat_subscribe", "miniprogram", "alipay"})

seconds = parse_duration  # the name the survey rules use


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Asia/Shanghai)") from None
    return name


def _warn(cfg: Config, text: str) -> None:
    """Something ``cxhub check`` points out without failing (``Config.warnings``)."""
    warnings = getattr(cfg, "warnings", None)
    if isinstance(warnings, list):
        warnings.append(text)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cap(_Model):
    """At most ``max`` invitations per customer within any ``per`` window (``7d``, ``30d``)."""

    max: int = Field(ge=0)
    per: float = Field(gt=0, description="window length in seconds; config takes 7d, 12h...")

    @field_validator("per", mode="before")
    @classmethod
    def _per(cls, v: Any) -> float:
        return seconds(v)


class QuietHours(_Model):
    """Local times (in the store's time zone) when nothing is sent; ``start > end`` spans midnight."""

    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            # YAML 1.1 reads an unquoted 21:30 as the sexagesimal integer 1290
            return time(v // 60 % 24, v % 60)
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet_hours: start and end are equal; remove quiet_hours to send at any time")
        return self


class StoreInfo(_Model):
    """What the survey needs to know about a store: its name (piped into texts), zone and type."""

    name: str | None = None
    timezone: str | None = None
    type: str | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _zone(v)


class ChannelConfig(_Model):
    """One way of reaching a customer, tried in the configured order.

    ``destination`` names an entry of ``destinations:``; ``scope`` restricts openids to one app
    (openids are per app: the official account's openid is not the mini-program's); ``namespace``
    overrides the identity namespace the channel reads (default per kind).
    """

    channel: ChannelKind
    destination: str = Field(min_length=1)
    template: str | None = None
    scope: str | None = None
    namespace: str | None = None
    page: str | None = Field(
        default=None,
        description="mini-program page the message opens (miniprogram, alipay); ?token=... is appended",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="template field -> text with {store_name} {items} {survey} {body} {link} {expires}",
    )
    form_id: str = Field(
        default="attributes.trade_no",
        description="alipay: the touchpoint field holding the form id the message is bound to (the trade number)",
    )
    enabled: bool = True

    @property
    def identity_namespace(self) -> str:
        return self.namespace or DEFAULT_NAMESPACE[self.channel]

    @property
    def opens_page(self) -> bool:
        """Whether the message opens a mini-program page (a path) rather than the https survey link."""
        return self.channel in PAGE_CHANNELS

    @property
    def page_path(self) -> str:
        """The mini-program page the message opens (without the token)."""
        return self.page or DEFAULT_PAGE


class Range(_Model):
    """A numeric range (inclusive): ``{min: 20}``, ``{min: 20, max: 500}``."""

    min: Decimal | None = None
    max: Decimal | None = None


class CategoryMatch(_Model):
    """Item categories: ``any`` (at least one present), ``all`` (every one present), ``none``."""

    any: list[str] = Field(default_factory=list)
    all: list[str] = Field(default_factory=list)
    none: list[str] = Field(default_factory=list)


StrOrList = str | list[str]


class Trigger(_Model):
    """Which touchpoints a rule fires on; every given field must match (lists mean "one of")."""

    kind: StrOrList = "transaction"
    channel: StrOrList | None = None
    source: StrOrList | None = None
    store: StrOrList | None = None
    brand: StrOrList | None = None
    region: StrOrList | None = None
    store_type: StrOrList | None = None
    amount: Range | None = None
    categories: CategoryMatch | list[str] | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, description="attribute -> value or list of values")

    @field_validator("categories", mode="after")
    @classmethod
    def _cats(cls, v: CategoryMatch | list[str] | None) -> CategoryMatch | list[str] | None:
        # a bare list is the common case: "any of these categories"
        return CategoryMatch(any=v) if isinstance(v, list) else v


class Rule(_Model):
    """One survey rule: trigger -> questionnaire, with delay, expiry, sampling and caps."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    questionnaire: str
    when: Trigger = Field(default_factory=Trigger)
    delay: float = 0.0
    expires: float = 3 * 86400.0
    sample: float = Field(default=1.0, ge=0, le=1)
    caps: list[Cap] = Field(default_factory=list)
    channels: list[ChannelKind] | None = Field(default=None, description="restrict / reorder channels for this rule")
    max_blocks: int | None = Field(default=None, ge=0)
    enabled: bool = True

    @field_validator("delay", "expires", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> float:
        return seconds(v)

    @field_validator("expires")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("expires must be longer than 0 (e.g. 3d)")
        return v


class OpenCaseExclusion(_Model):
    """Skip customers with an open case: looked up in ``table`` when that table exists."""

    enabled: bool = True
    table: str = "cases"
    customer_column: str = "customer_id"
    status_column: str = "status"
    closed_statuses: list[str] = Field(default_factory=lambda: ["resolved", "closed", "cancelled"])


class Exclusions(_Model):
    """Who is never invited: customers who opted out; customers with an open (negative) case."""

    opted_out: bool = True
    open_case: OpenCaseExclusion = Field(default_factory=OpenCaseExclusion)


class PageConfig(_Model):
    """The hosted survey page (``/s/{token}``)."""

    source: str = Field(default="survey_page", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    #: the name the customer knows you by; unset, the page shows the store's name (never "cxhub")
    brand_name: str | None = Field(default=None, min_length=1)
    accent_color: str = Field(default="#07c160", pattern=r"^#[0-9a-fA-F]{6}$")


class SurveysConfig(_Model):
    """The ``surveys:`` section."""

    enabled: bool = True
    timezone: str = DEFAULT_TIMEZONE
    quiet_hours: QuietHours | None = None
    stores: dict[str, StoreInfo] = Field(default_factory=dict)
    caps: list[Cap] = Field(default_factory=list)
    channel_caps: dict[ChannelKind, list[Cap]] = Field(default_factory=dict)
    channels: list[ChannelConfig] = Field(default_factory=list)
    questionnaires: dict[str, str | dict[str, Any]] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    exclusions: Exclusions = Field(default_factory=Exclusions)
    page: PageConfig = Field(default_factory=PageConfig)
    max_blocks: int = Field(default=3, ge=0)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v)

    @model_validator(mode="after")
    def _consistent(self) -> SurveysConfig:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {dupes}")
        kinds = {c.channel for c in self.channels}
        for rule in self.rules:
            missing = [c for c in rule.channels or [] if c not in kinds]
            if missing:
                raise ValueError(f"rule {rule.name!r} uses channel(s) {missing} that `channels:` does not configure")
        return self

    def check(self, cfg: Config) -> list[ConfigError]:
        """What needs the rest of the config (called by ``hub.config.load_config``, so ``cxhub
        check`` reports it with file:line:key): every channel's destination is declared under
        ``destinations:`` and its namespace is known; every rule's questionnaire exists; every
        questionnaire (file, preset or inline) loads. Each problem is its own error."""
        from hub.errors import ConfigError, ConfigErrors, did_you_mean

        errors: list[ConfigError] = []
        declared = sorted(cfg.raw.destinations)
        namespaces = cfg.raw.namespaces
        for i, ch in enumerate(self.channels):
            if ch.destination not in cfg.raw.destinations:
                errors.append(
                    cfg.lines.error(
                        ("surveys", "channels", i, "destination"),
                        f"no destination {ch.destination!r} under `destinations:`; configured: {declared}"
                        + did_you_mean(ch.destination, declared),
                    )
                )
            if ch.channel in TEMPLATE_CHANNELS and not ch.fields:
                where = cfg.lines.error(("surveys", "channels", i), "")
                _warn(
                    cfg,
                    f"{str(where).rstrip(': ')}: a {ch.channel} channel without `fields:` sends its template "
                    'with every field empty; map the template\'s fields, e.g. fields: {first: "{survey}", '
                    'keyword1: "{store_name}", remark: "有效期至{expires}"}',
                )
            if ch.identity_namespace in APP_SCOPED_NAMESPACES and ch.scope is None:
                where = cfg.lines.error(("surveys", "channels", i), "")
                _warn(
                    cfg,
                    f"{str(where).rstrip(': ')}: a {ch.channel} channel without `scope:` reaches only "
                    f"{ch.identity_namespace} identities stored without an app; {ch.identity_namespace}s are per "
                    "app, so name the app whose ids it may use, e.g. scope: wx1234567890abcdef (the AppID) "
                    "and the same scope on the mapping's identity",
                )
            # `scope` is an app id (openids are per app), not a namespace: only `namespace` is checked
            if ch.namespace is not None and ch.namespace not in namespaces:
                errors.append(
                    cfg.lines.error(
                        ("surveys", "channels", i, "namespace"),
                        f"unknown identity namespace {ch.namespace!r} (a namespace of your own is declared under "
                        f"`identity_namespaces:`){did_you_mean(ch.namespace, namespaces)}",
                    )
                )
        names = [*self.questionnaires, *preset_names()]
        rule_refs = []
        for i, rule in enumerate(self.rules):
            if rule.questionnaire in self.questionnaires or preset_exists(rule.questionnaire):
                rule_refs.append(rule.questionnaire)
                continue
            errors.append(
                cfg.lines.error(
                    ("surveys", "rules", i, "questionnaire"),
                    f"rule {rule.name!r}: questionnaire {rule.questionnaire!r} is neither under `questionnaires:` "
                    f"nor a preset (presets: {preset_names()}){did_you_mean(rule.questionnaire, names)}",
                )
            )
        try:
            load_questionnaires(self.questionnaires, rule_refs, cfg.base_dir, cfg.lines)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
        except ConfigError as exc:
            errors.append(exc)
        return errors

    def store_zone(self, store: str | None) -> ZoneInfo:
        """The time zone of ``store`` (the section's default when the store has none)."""
        info = self.stores.get(store or "")
        return ZoneInfo(info.timezone if info and info.timezone else self.timezone)
