"""The ``feedback:`` section of the config: detection, severity, SLA, org hierarchy, contacts,
rosters and routing rules. Pure pydantic (it must not import ``hub.config``, which imports it).

A complete example is in ``docs/feedback.md``; cross-references (a routing rule naming an unknown
contact, a store naming an unknown district) are errors at load time, with file:line.
"""

from __future__ import annotations

import re
from datetime import time
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from hub.errors import ConfigError, did_you_mean
from hub.sdk.durations import Duration

if TYPE_CHECKING:  # hub.config imports this module: no import at run time
    from hub.config import Config

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Severity = Literal["low", "medium", "high"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high")


def _clock_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads 09:00 as a sexagesimal integer (540); take it back as minutes
        return time(value // 60 % 24, value % 60) if value < 24 * 60 else time(23, 59)
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", str(value).strip())
    if not m or int(m.group(1)) > 24 or int(m.group(2)) > 59:
        raise ValueError(f"{value!r} is not a time of day (HH:MM)")
    h, mi = int(m.group(1)), int(m.group(2))
    return time(23, 59, 59, 999999) if h == 24 else time(h, mi)


ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
    return value


def _check_days(days: list[str]) -> list[str]:
    out = [d.lower()[:3] for d in days]
    bad = [d for d in out if d not in DAYS]
    if bad:
        raise ValueError(f"unknown day(s) {bad}; use {', '.join(DAYS)}")
    return out


class Thresholds(_Section):
    """When a score is negative, on normalised scales (rating via ``Feedback.rating5``)."""

    rating5_max: float = Field(default=2, ge=0, le=5, description="rating <= this (of 5) is negative")
    nps_max: int = Field(default=6, ge=0, le=10, description="NPS score <= this (detractor) is negative")
    csat_max: int = Field(default=2, ge=1, le=5)
    ces_min: int = Field(default=5, ge=1, le=7, description="effort score >= this is negative")


class HighThresholds(_Section):
    """Scores bad enough to be high severity on their own."""

    rating5_max: float = Field(default=1, ge=0, le=5)
    nps_max: int = Field(default=3, ge=0, le=10)
    csat_max: int = Field(default=1, ge=1, le=5)
    ces_min: int = Field(default=7, ge=1, le=7)


class QuestionPrior(_Section):
    """How the question a text answers moves the verdict: answers to 哪里需要改进？ name a fault
    even when the customer is content, so the bar for "negative" is raised by ``shift`` (added to the
    negative probability's log-odds: below 0 is more lenient); an answer of nothing (没有 / 无 / 都挺好)
    is never negative."""

    match: list[str] = Field(min_length=1, description="the question contains one of these")
    shift: float = Field(default=-1.5, ge=-10, le=10)


def _default_questions() -> list[QuestionPrior]:
    return [
        QuestionPrior(
            match=["改进", "改善", "建议", "提升", "哪里不好", "不足", "不满意的地方", "希望我们"], shift=-1.5
        )
    ]


ENGINE_THRESHOLDS = {"snownlp": 0.25, "lexicon": 0.5, "model": 0.5, "none": 0.5}


class SentimentConfig(_Section):
    """Text sentiment. ``engine``: ``model`` (the feedback model shipped with cxhub, or a version
    trained by ``cxhub model train`` in ``model_dir``), ``snownlp`` (its offline Bayes model),
    ``lexicon`` (built-in word list), ``none``, or ``package.module:Class`` of your own implementing
    ``hub.features.feedback.sentiment.SentimentAnalyzer``."""

    engine: str = "model"
    negative_below: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="probability-positive under this means negative text (default: 0.5 for the model, "
        "0.25 for snownlp)",
    )
    by_source: dict[str, float] = Field(default_factory=dict, description="negative_below per source name")
    by_channel: dict[str, float] = Field(default_factory=dict, description="negative_below per channel")
    model_dir: str | None = Field(
        default=None,
        description="where `cxhub model train` keeps model versions (relative to the config file); "
        "the promoted one is used; none promoted: the shipped model",
    )
    min_chars: int = Field(default=1, ge=1, description="shorter texts are not judged on sentiment")
    kinds: list[str] = Field(
        default_factory=lambda: ["review", "survey_response"],
        description="event kinds whose text alone may open a case; chat messages ('请问营业时间?') are "
        "questions, not verdicts: there only scores and alarm keywords count",
    )
    questions: list[QuestionPrior] = Field(default_factory=_default_questions)

    @field_validator("by_source", "by_channel")
    @classmethod
    def _probabilities(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not 0 <= x <= 1}
        if bad:
            raise ValueError(f"thresholds must be between 0 and 1: {bad}")
        return v

    def threshold(self, source: str | None = None, channel: str | None = None) -> float:
        """``negative_below`` for a touchpoint of ``source`` on ``channel`` (source wins)."""
        if source is not None and source in self.by_source:
            return self.by_source[source]
        if channel is not None and channel in self.by_channel:
            return self.by_channel[channel]
        if self.negative_below is not None:
            return self.negative_below
        return ENGINE_THRESHOLDS.get(self.engine, 0.5)


class TopicsConfig(_Section):
    """Topic tagging (服务态度, 配送/物流...): the taxonomy file and extra words per topic id."""

    enabled: bool = True
    taxonomy: str | None = Field(default=None, description="a YAML taxonomy (default: the one shipped)")
    extra: dict[str, list[str]] = Field(default_factory=dict, description="more words for topics, by id")


DEFAULT_ALARM_KEYWORDS = [
    "食品安全",
    "食物中毒",
    "吃出虫子",
    "报警",
    "拉肚子",
    "过期",
    "变质",
    "发霉",
    "异物",
    "虫子",
    "投诉",
    "12315",
    "12345",
    "消协",
    "工商",
    "曝光",
    "媒体",
    "律师",
    "起诉",
    "骗",
    "欺诈",
    "假货",
    "打人",
    "受伤",
]


class SlaTarget(_Section):
    """How long staff have, for one severity."""

    ack: Duration = Field(description="acknowledge within")
    resolve: Duration = Field(description="resolve within")
    warn_before: Duration = Field(default=0, description="warn this long before the acknowledge deadline (0: 20%)")
    escalate_every: Duration | None = Field(
        default=None, description="after a breach, climb one level every (default: the ack target)"
    )


def _default_sla() -> dict[Severity, SlaTarget]:
    return {
        "high": SlaTarget(ack=600, resolve=86400),
        "medium": SlaTarget(ack=1800, resolve=2 * 86400),
        "low": SlaTarget(ack=4 * 3600, resolve=3 * 86400),
    }


class BusinessHours(_Section):
    """Opening hours: SLA clocks only run while open (a 22:00 review is due after opening)."""

    days: list[str] = Field(default_factory=lambda: list(DAYS))
    open: ClockTime = time(9, 0)
    close: ClockTime = time(22, 0)

    _days = field_validator("days")(classmethod(lambda cls, v: _check_days(v)))

    @model_validator(mode="after")
    def _order(self) -> BusinessHours:
        if self.close <= self.open:
            raise ValueError("close must be after open (overnight hours: split them or leave hours out)")
        return self


class Endpoint(_Section):
    """Where one contact is reached: a destination of the config and, for user-addressed
    destinations, the recipients (DingTalk userid, WeCom userid, Feishu open_id...)."""

    destination: str = Field(min_length=1)
    to: list[str] = Field(default_factory=list)
    mention: list[str] = Field(default_factory=list, description="people to @ in a group robot message")


class Contact(_Section):
    """A person or a group (a store's DingTalk group robot, a regional Feishu chat)."""

    name: str | None = None
    kind: Literal["person", "group"] = "person"
    endpoints: list[Endpoint] = Field(min_length=1)
    ids: list[str] = Field(
        default_factory=list,
        description="this person's platform user ids that are no endpoint (a Feishu open_id, a WeCom or "
        "DingTalk userid in a group): a card button they press is recorded under their name",
    )


class Shift(_Section):
    """Who is on duty on ``days`` between ``start`` and ``end`` (end before start: overnight)."""

    days: list[str] = Field(default_factory=lambda: list(DAYS))
    start: ClockTime = Field(alias="from")
    end: ClockTime = Field(alias="to")
    contacts: list[str] = Field(min_length=1)

    _days = field_validator("days")(classmethod(lambda cls, v: _check_days(v)))


class Roster(_Section):
    """An on-duty rota. Naming a roster where a contact is expected means "whoever is on shift now"."""

    timezone: str | None = None
    shifts: list[Shift] = Field(min_length=1)
    fallback: list[str] = Field(default_factory=list, description="when nobody is on shift")

    _tz = field_validator("timezone")(classmethod(lambda cls, v: v if v is None else _check_zone(v)))


class OrgNode(_Section):
    """A store, district, region or HQ: a name, its contacts, and its parent."""

    name: str | None = None
    parent: str | None = Field(default=None, description="district of a store, region of a district")
    contacts: list[str] = Field(default_factory=list)
    timezone: str | None = None
    business_hours: BusinessHours | None = None

    _tz = field_validator("timezone")(classmethod(lambda cls, v: v if v is None else _check_zone(v)))


class Org(_Section):
    """The hierarchy escalation climbs: store -> district -> region -> HQ."""

    hq: OrgNode = Field(default_factory=OrgNode)
    regions: dict[str, OrgNode] = Field(default_factory=dict)
    districts: dict[str, OrgNode] = Field(default_factory=dict)
    stores: dict[str, OrgNode] = Field(default_factory=dict)


ROUTE_FIELDS = (
    "brand", "region", "district", "store", "channel", "category", "severity", "source", "kind", "topic",
)  # fmt: skip


class RouteMatch(_Section):
    """Conditions on the touchpoint; each given field must match one of its values (``*`` globs)."""

    brand: list[str] | None = None
    region: list[str] | None = None
    district: list[str] | None = None
    store: list[str] | None = None
    channel: list[str] | None = None
    category: list[str] | None = None
    severity: list[Severity] | None = None
    source: list[str] | None = None
    kind: list[str] | None = None
    topic: list[str] | None = Field(default=None, description="topic ids (food_safety...), any polarity")

    @field_validator("*", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str | int) and not isinstance(v, bool) else v


class RouteRule(_Section):
    """``when`` matches -> ``notify`` these contacts / rosters first; escalation then climbs the
    org hierarchy from the case's store unless ``escalate: false``. First match wins unless
    ``continue: true``."""

    name: str | None = None
    when: RouteMatch = Field(default_factory=RouteMatch)
    notify: list[str] = Field(min_length=1)
    escalate: bool = True
    continue_: bool = Field(default=False, alias="continue")


class RecoverySurvey(_Section):
    """After a case is resolved, invite the customer to a short survey (hub.features.surveys)."""

    enabled: bool = False
    survey: str | None = Field(default=None, description="name of the survey in the surveys section")
    delay: Duration = 3600


class FeedbackConfig(_Section):
    """The whole ``feedback:`` section."""

    enabled: bool = True
    kinds: list[str] = Field(
        default_factory=lambda: ["review", "survey_response", "message", "service_contact"],
        description="event kinds that are judged",
    )
    thresholds: Thresholds = Field(default_factory=Thresholds)
    high: HighThresholds = Field(default_factory=HighThresholds)
    sentiment: SentimentConfig = Field(default_factory=SentimentConfig)
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    alarm_keywords: list[str] = Field(default_factory=lambda: list(DEFAULT_ALARM_KEYWORDS))
    join_window: Duration = Field(default=86400, description="repeats within this join the open case")
    timezone: str = "Asia/Shanghai"
    sla: dict[Severity, SlaTarget] = Field(default_factory=_default_sla)
    business_hours: BusinessHours | None = None
    remind_every: Duration = Field(default=600, description="reminders at the top level, until acknowledged")
    max_reminders: int = Field(default=12, ge=0)
    sweep_every: Duration = Field(default=15, gt=0)
    link_ttl: Duration = Field(default=7 * 86400, gt=0)
    org: Org = Field(default_factory=Org)
    contacts: dict[str, Contact] = Field(default_factory=dict)
    rosters: dict[str, Roster] = Field(default_factory=dict)
    routing: list[RouteRule] = Field(default_factory=list)
    fallback: list[str] = Field(default_factory=list, description="who gets a case when nothing else matches")
    recovery_survey: RecoverySurvey = Field(default_factory=RecoverySurvey)

    _tz = field_validator("timezone")(classmethod(lambda cls, v: _check_zone(v)))

    @model_validator(mode="after")
    def _references(self) -> FeedbackConfig:
        for sev in SEVERITIES:
            self.sla.setdefault(sev, _default_sla()[sev])
        names = set(self.contacts) | set(self.rosters) | {"@store", "@district", "@region", "@hq"}
        clash = set(self.contacts) & set(self.rosters)
        if clash:
            raise ValueError(f"{sorted(clash)} name both a contact and a roster")
        problems: list[str] = []

        def check(where: str, refs: list[str]) -> None:
            unknown = [r for r in refs if r not in names]
            if unknown:
                problems.append(
                    f"{where} names unknown contact(s)/roster(s) {unknown}; known: {sorted(names)}"
                    + did_you_mean(unknown[0], names)
                )

        for rname, roster in self.rosters.items():
            for i, shift in enumerate(roster.shifts):
                unknown = [c for c in shift.contacts if c not in self.contacts]
                if unknown:
                    problems.append(
                        f"rosters.{rname}.shifts[{i}] names unknown contact(s) {unknown}"
                        + did_you_mean(unknown[0], self.contacts)
                    )
            check(f"rosters.{rname}.fallback", roster.fallback)
        for i, rule in enumerate(self.routing):
            check(f"routing[{i}].notify", rule.notify)
        check("fallback", self.fallback)
        check("org.hq.contacts", self.org.hq.contacts)
        for level, nodes, parents in (
            ("regions", self.org.regions, None),
            ("districts", self.org.districts, self.org.regions),
            ("stores", self.org.stores, self.org.districts),
        ):
            for key, node in nodes.items():
                check(f"org.{level}.{key}.contacts", node.contacts)
                if parents is not None and node.parent is not None and node.parent not in parents:
                    problems.append(
                        f"org.{level}.{key}.parent {node.parent!r} is not in org.{_PARENT[level]}"
                        + did_you_mean(node.parent, parents)
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def check(self, cfg: Config) -> list[ConfigError]:
        """What needs the rest of the config (called by ``hub.config.load_config``, so ``cxhub
        check`` reports it with file:line:key, not only ``cxhub run``): every contact endpoint's
        destination is declared under ``destinations:``; the recovery survey names a rule of
        ``surveys.rules``. Each problem is its own error."""
        errors: list[ConfigError] = []
        declared = sorted(cfg.raw.destinations)
        for name, contact in self.contacts.items():
            for i, ep in enumerate(contact.endpoints):
                if ep.destination not in cfg.raw.destinations:
                    errors.append(
                        cfg.lines.error(
                            ("feedback", "contacts", name, "endpoints", i, "destination"),
                            f"no destination {ep.destination!r}; destinations: {declared}"
                            + did_you_mean(ep.destination, declared),
                        )
                    )
        survey = self.recovery_survey.survey
        if self.recovery_survey.enabled and survey is not None:
            # the surveys section's rules, read by name only: features never import each other
            surveys = cfg.section("surveys")
            rules = sorted(str(getattr(r, "name", "")) for r in getattr(surveys, "rules", []))
            if survey not in rules:
                errors.append(
                    cfg.lines.error(
                        ("feedback", "recovery_survey", "survey"),
                        f"no survey rule {survey!r} under `surveys.rules`; rules: {rules}{did_you_mean(survey, rules)}",
                    )
                )
        return errors


_PARENT = {"districts": "regions", "stores": "districts"}
