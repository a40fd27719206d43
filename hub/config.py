"""The deployment config: one YAML file validated by pydantic when it loads.

Every error names the file, the line and the key path (``cxhub.yaml:12: sources.pos.options.url:
...``). ``${ENV_VAR}`` (and ``${ENV_VAR:-default}``) are replaced from the environment; secrets
also come from pydantic-settings with the ``CXHUB_`` prefix. ``Config.masked()`` is what may be
printed: secrets never are.
"""

from __future__ import annotations

import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.errors import ConfigError, ConfigErrors, did_you_mean
from hub.mapping import CompiledMapping, compile_mapping, fixtures_path_for, resolve_mapping_ref
from hub.mapping.targets import known_namespaces
from hub.masking import URL_PASSWORD, mask_by_model, mask_secrets, secret_values_of
from hub.redact import remember
from hub.registry import get as get_connector
from hub.sdk.connector import Connector, ConnectorOptions
from hub.sdk.durations import parse_duration
from hub.yamlio import Lines, dotted, interpolate, load_yaml, load_yaml_text

DEFAULT_CONFIG = "cxhub.yaml"


class Settings(BaseSettings):
    """Environment settings (``CXHUB_`` prefix): where secrets belong."""

    model_config = SettingsConfigDict(env_prefix="CXHUB_", extra="ignore")

    config: str = DEFAULT_CONFIG
    secret_key: SecretStr | None = None
    store_url: str | None = None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreConfig(_Section):
    """Where touchpoints live: SQLite (embedded default) or PostgreSQL."""

    url: str = "sqlite:///cxhub.db"
    #: keep every raw payload in the inbox (audit); off by default because raw payloads carry
    #: personal data in plain text. Quarantined records always keep theirs, for replay.
    keep_raw_payloads: bool = False
    #: days a quarantined record (its raw payload, personal data included) is kept for replay; older
    #: ones are deleted by the hourly ``quarantine-retention`` job of ``cxhub run`` (docs/privacy.md).
    #: Deprecated: ``privacy.retention.quarantine`` says it (and wins when both are given)
    quarantine_retention_days: int = Field(default=30, ge=1, le=3650)
    echo: bool = False
    pool_size: int = Field(default=5, ge=1, le=100)


class ServerConfig(_Section):
    """The HTTP side of ``cxhub run``."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    replay_window_seconds: float = Field(default=300, ge=0)
    # bounds the listener enforces before the app sees a request (hub/listener.py)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_headers: int = Field(default=100, ge=10)
    max_url_bytes: int = Field(default=8 * 1024, ge=256)
    head_timeout_seconds: float = Field(default=10, gt=0)
    body_timeout_seconds: float = Field(default=60, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    #: bearer token for the operator endpoints (/metrics, /openapi.json; hub/operator.py); give it
    #: as ``${CXHUB_OPERATOR_TOKEN}``. Without one they answer only on a loopback-bound server.
    operator_token: SecretStr | None = None


#: the console's roles (hub/console/scope.py says what each may see and do)
RoleName = Literal["admin", "integrator", "hq_analyst", "region_manager", "district_manager", "store_manager", "agent"]


class OAuthProviderConfig(_Section):
    """One platform's sign-in (its OAuth code flow) for the console; secrets as ``${ENV}``."""

    enabled: bool = True
    #: DingTalk: the app's client id (AppKey); Feishu: app_id; WeCom: the corp id
    client_id: str
    #: DingTalk: client secret (AppSecret); Feishu: app_secret; WeCom: the app's secret
    client_secret: SecretStr
    #: WeCom: the agent id of the self-built app that signs people in
    agent_id: str | None = None
    #: the platform's base URLs (a local fake in tests; the real ones by default)
    base_url: str | None = None
    auth_url: str | None = None


class ConsoleConfig(_Section):
    """The web console at ``/console`` of ``cxhub run`` (docs/console.md)."""

    enabled: bool = True
    #: the language of the pages unless a user picks another (zh / en)
    locale: Literal["zh", "en"] = "zh"
    session_hours: float = Field(default=12, gt=0, le=24 * 30)
    idle_minutes: float = Field(default=120, gt=0, le=24 * 60)
    #: sign-in attempts allowed per login and per address in ``login_window_minutes``
    login_attempts: int = Field(default=5, ge=1, le=1000)
    login_window_minutes: float = Field(default=15, gt=0, le=24 * 60)
    #: roles that may reveal a masked phone number, openid or name (an audited action)
    reveal_roles: list[RoleName] = Field(default_factory=lambda: list[RoleName](["admin"]))
    #: sign-in through the platforms: dingtalk / feishu / wecom
    oauth: dict[Literal["dingtalk", "feishu", "wecom"], OAuthProviderConfig] = Field(default_factory=dict)


class TransportConfig(_Section):
    """Between the push receivers and the ingest: ``direct`` (the receiver commits to the store
    itself, the embedded default) or ``nats`` (receivers publish each verified record to a
    JetStream stream and ingest workers commit it; see hub/transport and docs/deploy.md)."""

    kind: Literal["direct", "nats"] = "direct"
    #: NATS server(s), comma-separated (``nats://host:4222``; credentials in the URL are masked)
    url: str = "nats://127.0.0.1:4222"
    #: the JetStream stream of verified records; its subjects are ``cxhub.<stream>.<source>``
    stream: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "CXHUB_INGEST"
    #: deliveries of one record before it goes to the dead-letter stream (``<stream>_DLQ``)
    max_deliver: int = Field(default=20, ge=2, le=1000)
    #: a worker that neither acks nor renews a record within this time loses it to another worker
    ack_wait_seconds: float = Field(default=30, ge=1, le=3600)
    #: records a worker pulls and commits at once
    batch_size: int = Field(default=256, ge=1, le=10_000)
    #: a receiver answers 503 (the platform retries) when JetStream has not acknowledged by then
    publish_timeout_seconds: float = Field(default=4, gt=0, le=30)
    #: JetStream drops a record published again with the same id within this window
    duplicate_window_seconds: float = Field(default=600, ge=1, le=86_400)
    #: copies of the stream in a NATS cluster (1 for one server; 3 for a three-node cluster)
    replicas: int = Field(default=1, ge=1, le=5)


class Schedule(_Section):
    """When a pull source syncs: ``every: 5m`` or ``cron: "*/5 * * * *"``."""

    every: float | None = None
    cron: str | None = None

    @field_validator("every", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)

    def model_post_init(self, _: Any) -> None:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of every or cron")
        if self.cron is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.cron)
            except ValueError as exc:
                raise ValueError(f"bad cron expression {self.cron!r}: {exc}") from None


class SourceConfig(_Section):
    """One source: a connector, its options and the mapping of its records."""

    connector: str
    mapping: str | dict[str, Any] | None = None
    schedule: Schedule | None = None
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class DestinationConfig(_Section):
    """Somewhere messages go."""

    connector: str
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


#: the identities table's namespace column holds 64 characters
NamespaceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


_RETENTION = re.compile(r"^\s*(\d+)\s*(h|d|w|y)\s*$")
_RETENTION_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_retention(value: Any) -> float | None:
    """``365d`` / ``52w`` / ``3y`` / ``12h`` -> seconds; ``forever`` (or null) -> None."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "forever"):
        return None
    m = _RETENTION.match(str(value)) if not isinstance(value, bool | int | float) else None
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a retention (a duration such as 30d, 52w, 3y, 12h, or forever)")
    return float(int(m.group(1)) * _RETENTION_UNITS[m.group(2)])


#: how long a data class is kept: seconds, or None for ``forever``
Retention = Annotated[float | None, BeforeValidator(parse_retention)]


class RetentionConfig(_Section):
    """How long each class of personal data is kept (docs/privacy.md); ``forever`` keeps it."""

    #: ``inbox.payload``, the raw payloads ``store.keep_raw_payloads`` keeps (the inbox row stays: dedup)
    raw_payloads: Retention = None
    #: touchpoints (but survey answers, below), with the features' rows that hang on them
    touchpoints: Retention = None
    #: survey answers (``survey_response`` touchpoints) and invitations: anonymised, their scores kept
    survey_answers: Retention = None
    #: identities and customers not seen for this long and with no touchpoint left: forgotten
    identities: Retention = None
    #: the console's audit log and the cases' audit trail
    audit: Retention = None
    #: quarantined records (raw payloads kept for replay); None here: ``store.quarantine_retention_days``
    quarantine: Retention = None


class PrivacyConfig(_Section):
    """Retention per data class, enforced by the hourly ``privacy-retention`` job of ``cxhub run``
    (the leader) and by ``cxhub privacy purge``, in batches of ``batch_size`` rows."""

    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    #: batches per class and run at most: an hourly run never holds the store for long
    max_batches: int = Field(default=100, ge=1, le=100_000)


class RawConfig(_Section):
    """The YAML file's shape. Any other top-level key is a feature's section: the feature that
    declares it (``Feature.section``) validates it with its own model (``Config.sections``)."""

    model_config = ConfigDict(extra="allow")

    secret_key: SecretStr | None = None
    store: StoreConfig = Field(default_factory=StoreConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    transport: TransportConfig = Field(default_factory=TransportConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: the zone people read times in (CLI tables, cards, pages); the store keeps UTC
    timezone: str = "Asia/Shanghai"
    #: identity namespaces of your own (a loyalty card, a partner's user id), beside the built-in
    #: ones (``hub.mapping.targets.BUILTIN_NAMESPACES``): a plain list, or name -> description.
    #: A mapping may use no other, so a misspelt namespace is an error instead of a customer
    #: who silently never merges.
    identity_namespaces: dict[NamespaceName, str] = Field(default_factory=dict)

    @field_validator("identity_namespaces", mode="before")
    @classmethod
    def _namespace_list(cls, v: Any) -> Any:
        # a plain list is the short form: the namespaces without descriptions
        if v is None:
            return {}
        if isinstance(v, list):
            return {name: "" for name in v}
        if isinstance(v, dict):
            return {k: "" if d is None else d for k, d in v.items()}
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as Asia/Shanghai)") from None
        return v

    @property
    def namespaces(self) -> frozenset[str]:
        """Every namespace a mapping may use: the built-in ones and the declared ones."""
        return known_namespaces(self.identity_namespaces)


@dataclass
class SourceSpec:
    """A source ready to use: its connector class, validated options and compiled mapping."""

    name: str
    config: SourceConfig
    cls: type[Connector]
    options: ConnectorOptions
    mapping: CompiledMapping | None


@dataclass
class DestinationSpec:
    """A destination ready to use."""

    name: str
    config: DestinationConfig
    cls: type[Connector]
    options: ConnectorOptions


@dataclass
class Config:
    """The loaded, validated config."""

    file: str
    raw: RawConfig
    data: dict[str, Any]
    lines: Lines
    secret_key: bytes
    sources: dict[str, SourceSpec] = field(default_factory=dict)
    destinations: dict[str, DestinationSpec] = field(default_factory=dict)
    #: feature sections present in the file, validated by their feature's model
    sections: dict[str, BaseModel] = field(default_factory=dict)
    #: what `cxhub check` points out without failing (a setting that works but will surprise):
    #: loaders, connectors' and features' checks append plain sentences that name the setting
    warnings: list[str] = field(default_factory=list)

    def section(self, name: str) -> Any:
        """The validated section ``name`` (None when the file has none)."""
        return self.sections.get(name)

    @property
    def base_dir(self) -> Path:
        return Path(self.file).resolve().parent

    @property
    def store_url(self) -> str:
        return Settings().store_url or _resolve_sqlite(self.raw.store.url, self.base_dir)

    def masked(self) -> dict[str, Any]:
        """The config as data with every secret replaced by ``***``: safe to print.

        Secrets are found by type: every field a config model declares ``SecretStr`` (the core
        sections, each source's and destination's connector ``Options``, feature sections), in
        nested models, lists and dicts. Then the key-name rule catches what no model describes,
        and every string loses URL credentials, secret query parameters and the secret values
        themselves wherever else they were written (a token repeated inside a URL)."""
        data = mask_by_model(self.data, RawConfig)
        for section, specs in (("sources", self.sources), ("destinations", self.destinations)):
            entries = data.get(section)
            for name, spec in specs.items():
                entry = entries.get(name) if isinstance(entries, dict) else None
                if isinstance(entry, dict) and isinstance(entry.get("options"), dict):
                    entries[name] = {**entry, "options": mask_by_model(entry["options"], spec.cls.Options)}
        for name, section_model in self.sections.items():
            if name in data:
                data[name] = mask_by_model(data[name], type(section_model))
        remember(self.secret_values())
        masked: dict[str, Any] = mask_secrets(data)
        return masked

    def secret_values(self) -> list[str]:
        """Every secret value of this config (validated ``SecretStr`` fields, URL passwords), for
        :func:`hub.redact.remember` to mask wherever one shows up."""
        models: list[Any] = [self.raw, Settings()]
        models += [s.options for s in self.sources.values()] + [d.options for d in self.destinations.values()]
        models += list(self.sections.values())
        found: list[str] = []
        for m in models:
            secret_values_of(m, found)
        for url in (self.raw.store.url, Settings().store_url or "", *self.raw.transport.url.split(",")):
            password = URL_PASSWORD.search(url)
            if password:
                found.append(password.group(1))
        return found


def _resolve_sqlite(url: str, base: Path) -> str:
    # sqlite:///relative.db is relative to the config file, not to wherever cxhub was started
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////") and ":memory:" not in url:
        return prefix + str((base / url[len(prefix) :]).resolve())
    return url


def _pydantic_error(
    exc: ValidationError, lines: Lines, prefix: tuple[str | int, ...], model: type[BaseModel] | None = None
) -> ConfigError:
    errors: list[ConfigError] = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden" and model is not None and err["loc"]:
            msg += did_you_mean(err["loc"][-1], _keys_at(model, err["loc"][:-1]))
        errors.append(ConfigError(msg, file=lines.file, line=lines.line(loc), key=dotted(loc)))
    return errors[0] if len(errors) == 1 else ConfigErrors(errors)


def _keys_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys the model nested at ``loc`` accepts (field names and aliases): the choices for
    "did you mean" when pydantic refuses an extra key there."""
    ann: Any = model
    for part in loc:
        ann = _unwrap_optional(ann)
        if typing.get_origin(ann) in (dict, list):
            # ``part`` is a key or an index: what follows is the value's or item's shape
            ann = typing.get_args(ann)[-1]
            continue
        found = _model_in(ann)
        if found is None:
            return []
        fields = [f for n, f in found.model_fields.items() if part in (n, f.alias)]
        if not fields:
            return []
        ann = fields[0].annotation
    found = _model_in(_unwrap_optional(ann))
    if found is None:
        return []
    return [*found.model_fields, *(f.alias for f in found.model_fields.values() if f.alias)]


def _model_in(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    models = [a for a in typing.get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def _unwrap_optional(ann: Any) -> Any:
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return ann


def _collect(errors: list[ConfigError], fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ConfigErrors as exc:
        errors.extend(exc.errors)
        return None
    except ConfigError as exc:
        errors.append(exc)
        return None


def _validate_raw(data: dict[str, Any], lines: Lines, errors: list[ConfigError]) -> RawConfig:
    """``RawConfig`` of ``data``, with the entries pydantic refuses left out (their errors go to
    ``errors``), so the rest of the file (other sources, their mappings, feature sections) is
    still checked in the same run."""
    data = dict(data)
    for _ in range(len(data) + 1):
        try:
            return RawConfig.model_validate(data)
        except ValidationError as exc:
            found = _pydantic_error(exc, lines, (), RawConfig)
            errors.extend(found.errors if isinstance(found, ConfigErrors) else [found])
            for err in exc.errors():
                _drop(data, err["loc"])
    return RawConfig()


def _drop(data: dict[str, Any], loc: tuple[str | int, ...]) -> None:
    # one bad source or destination leaves out that entry only; anything else its whole key
    if not loc:
        return
    top = str(loc[0])
    if top in ("sources", "destinations") and len(loc) > 1 and isinstance(data.get(top), dict):
        data[top] = {k: v for k, v in data[top].items() if k != loc[1]}
    else:
        data.pop(top, None)


def load_config(
    path: str | Path | None = None, *, text: str | None = None, env: dict[str, str] | None = None
) -> Config:
    """Load, interpolate and validate a config; raises ``ConfigError`` / ``ConfigErrors``."""
    settings = Settings()
    file = str(path or os.environ.get("CXHUB_CONFIG") or settings.config)
    data, lines = load_yaml_text(text, file) if text is not None else load_yaml(file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise lines.error((), "the config must be a YAML mapping")
    data = interpolate(data, lines, (), env)
    # every error of the run (config, its mappings, feature sections) is collected, then raised
    # together: `cxhub check` lists them all at once
    errors: list[ConfigError] = []
    raw = _validate_raw(data, lines, errors)
    key = settings.secret_key or raw.secret_key
    cfg = Config(
        file=file,
        raw=raw,
        data=data,
        lines=lines,
        secret_key=key.get_secret_value().encode("utf-8") if key else b"",
    )
    if "quarantine_retention_days" in raw.store.model_fields_set:
        cfg.warnings.append(
            "store.quarantine_retention_days is deprecated: write privacy.retention.quarantine"
            f" ({raw.store.quarantine_retention_days}d), which wins when both are given"
        )
    for name, src in raw.sources.items():
        spec = _collect(errors, _source_spec, cfg, name, src)
        if spec is not None:
            cfg.sources[name] = spec
    for name, dst in raw.destinations.items():
        dspec = _collect(errors, _destination_spec, cfg, name, dst)
        if dspec is not None:
            cfg.destinations[name] = dspec
    for section_name, value in (raw.model_extra or {}).items():
        section = _collect(errors, _feature_section, cfg, section_name, value)
        if section is not None:
            cfg.sections[section_name] = section
    errors.extend(_feature_checks(cfg))
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return cfg


def _feature_section(cfg: Config, key: str, value: Any) -> BaseModel | None:
    """Validate top-level ``key`` with the model of the feature that reads it."""
    from hub.feature import FeatureInfo
    from hub.registry import discover_features

    infos: dict[str, FeatureInfo] = {}
    for i in discover_features():
        name = i.feature.section if i.feature else i.name
        if name:
            infos[name] = i
    info = infos.get(key)
    if info is None:
        known = sorted(_CORE_SECTIONS | {k for k, i in infos.items() if i.feature is not None})
        raise cfg.lines.error(
            (key,),
            f"unknown section; no installed feature reads it (sections: {', '.join(known)}){did_you_mean(key, known)}",
        )
    if info.feature is None:
        raise cfg.lines.error((key,), f"the feature {info.name!r} that reads this section cannot run: {info.error}")
    model = info.feature.config_model()
    if model is None:
        raise cfg.lines.error((key,), f"the feature {info.name!r} takes no configuration")
    if value is None:
        return None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _pydantic_error(exc, cfg.lines, (key,), model) from None


_CORE_SECTIONS = set(RawConfig.model_fields)


def _feature_checks(cfg: Config) -> list[ConfigError]:
    """Cross-section checks of feature sections, so ``cxhub check`` reports what would otherwise
    only fail when the Runtime starts (a channel naming an unknown destination, a missing file).

    The extension point: a section model (a core one, or a feature's) may define
    ``check(cfg: Config) -> list[ConfigError]``; it gets the config being loaded (``cfg.raw``,
    ``cfg.lines`` for file:line errors, ``cfg.base_dir``) and returns every error it finds.
    ``cfg.destinations`` / ``cfg.sources`` hold only the entries that loaded; the declared names
    are in ``cfg.raw.destinations`` / ``cfg.raw.sources`` (their own errors are reported anyway).
    """
    errors: list[ConfigError] = []
    sections = [getattr(cfg.raw, name) for name in type(cfg.raw).model_fields] + list(cfg.sections.values())
    for section in sections:
        check = getattr(section, "check", None)
        if isinstance(section, BaseModel) and callable(check):
            try:
                errors.extend(check(cfg))
            except ConfigErrors as exc:
                errors.extend(exc.errors)
            except ConfigError as exc:
                errors.append(exc)
    return errors


def _connector(cfg: Config, section: str, name: str, connector: str) -> type[Connector]:
    try:
        return get_connector(connector)
    except KeyError as exc:
        from hub.registry import connector_names

        hint = "" if connector in connector_names() else did_you_mean(connector, connector_names())
        raise cfg.lines.error((section, name, "connector"), str(exc.args[0]) + hint) from None


def _options(cfg: Config, section: str, name: str, cls: type[Connector], options: dict[str, Any]) -> ConnectorOptions:
    try:
        return cls.Options.model_validate(options)
    except ValidationError as exc:
        raise _pydantic_error(exc, cfg.lines, (section, name, "options"), cls.Options) from None


def _source_spec(cfg: Config, name: str, src: SourceConfig) -> SourceSpec:
    from hub.sdk.connector import PullSource, PushSource

    # every problem of the source in one run: a misspelt connector does not hide its mapping's
    errors: list[ConfigError] = []
    cls: type[Connector] | None = _collect(errors, _connector, cfg, "sources", name, src.connector)
    options = None
    if cls is not None:
        if not issubclass(cls, PushSource | PullSource):
            errors.append(
                cfg.lines.error(("sources", name, "connector"), f"{src.connector!r} is not a source connector")
            )
        elif src.schedule is not None and not issubclass(cls, PullSource):
            errors.append(
                cfg.lines.error(
                    ("sources", name, "schedule"), f"{src.connector!r} is a push source: it has no schedule"
                )
            )
        options = _collect(errors, _options, cfg, "sources", name, cls, src.options)
    mapping = None
    if cls is not None or src.mapping is not None:
        mapping = _collect(errors, load_source_mapping, cfg, name, src, cls)
    if mapping is not None and options is not None:  # identities scoped by an option (scope: {option: app_id})
        try:
            mapping.bind_options(options.model_dump())
        except ConfigError as exc:
            errors.append(cfg.lines.error(("sources", name, "options"), str(exc)))
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    assert cls is not None and options is not None  # no error: both were made
    return SourceSpec(name, src, cls, options, mapping)


def load_source_mapping(
    cfg: Config, name: str, src: SourceConfig, cls: type[Connector] | None
) -> CompiledMapping | None:
    """Compile the source's mapping: a preset name, a file relative to the config, or inline YAML
    (``cls``: the source's connector, whose default mapping applies when the source names none)."""
    ref = src.mapping if src.mapping is not None else cls.default_mapping if cls is not None else None
    if ref is None:
        raise cfg.lines.error(("sources", name), "mapping: required (a preset name, a file, or inline)")
    if isinstance(ref, dict):
        return compile_mapping(
            ref, cfg.lines.sub(("sources", name, "mapping")), name=name, namespaces=cfg.raw.namespaces
        )
    try:
        path = resolve_mapping_ref(ref, cfg.base_dir)
    except FileNotFoundError as exc:
        raise cfg.lines.error(("sources", name, "mapping"), str(exc)) from None
    data, lines = load_yaml(path)
    m = compile_mapping(data, lines, namespaces=cfg.raw.namespaces)
    fx = fixtures_path_for(path)
    m.fixtures_path = fx if fx.exists() else None
    return m


def _destination_spec(cfg: Config, name: str, dst: DestinationConfig) -> DestinationSpec:
    cls = _connector(cfg, "destinations", name, dst.connector)
    from hub.sdk.connector import Destination

    if not issubclass(cls, Destination):
        raise cfg.lines.error(("destinations", name, "connector"), f"{dst.connector!r} is not a destination connector")
    return DestinationSpec(name, dst, cls, _options(cfg, "destinations", name, cls, dst.options))
