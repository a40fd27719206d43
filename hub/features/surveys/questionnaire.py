"""Questionnaires in YAML and their composition per invitation.

A questionnaire file::

    name: retail
    locale: zh-CN
    title: 感谢您光临{store_name}
    intro: 您刚刚购买了{items}。占用您一分钟，告诉我们体验如何？
    invite: {title: 邀请您评价本次购物, body: 您在{store_name}购买了{items}，点击参与一分钟问卷。}
    max_blocks: 3
    base:                                   # always asked, first
      - {id: nps, type: nps, text: 您有多大可能向朋友推荐{store_name}？}
    blocks:                                 # chosen by the basket (and store type, channel)
      - id: fresh
        title: 生鲜
        when: {category: 生鲜}
        questions:
          - {id: fresh_quality, type: csat, text: 您对所购生鲜的新鲜度满意吗？}
    closing:                                # always asked, last
      - {id: comment, type: text, text: 还有什么想告诉我们的吗？}

Question types: ``nps`` (0-10), ``csat`` (1-5), ``ces`` (1-7), ``rating`` (1..``scale``, stars),
``single`` / ``multiple`` (``options``), ``text``. Texts may pipe ``{store_name}``, ``{items}``,
``{brand}`` and, inside a block, ``{category}``; any other placeholder is an error at load.

Composition (``compose``): base questions, then the blocks whose ``when`` matches, ordered by the
share of the basket (by amount, else quantity) of the category that chose them, then the blocks
chosen by store type / channel only; de-duplicated (by block and by question id), at most
``max_blocks`` blocks; then the closing questions.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.errors import ConfigError, ConfigErrors
from hub.features.surveys.presets import PRESET_DIR, preset_exists, preset_names
from hub.model import OrderItem
from hub.yamlio import Lines, dotted, load_yaml

QuestionType = Literal["nps", "csat", "ces", "rating", "single", "multiple", "text"]
#: fixed scales of the scored types (rating uses the question's ``scale``)
SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
PIPED = frozenset({"store_name", "items", "brand", "category"})


def _check_placeholders(text: str, allowed: frozenset[str] = PIPED) -> str:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise ValueError(f"bad text {text!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    unknown = sorted(n for n in names if n not in allowed)
    if unknown:
        raise ValueError(f"unknown placeholder(s) {unknown} in {text!r}; allowed: {sorted(allowed)}")
    return text


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Option(_Model):
    """A choice: ``value`` is stored, ``label`` is shown (a bare string is both). ``exclusive``: in
    a multiple choice, it cannot be ticked with another option (``没有遇到问题``)."""

    value: str = Field(min_length=1, max_length=64)
    label: str
    exclusive: bool = False


class Question(_Model):
    """One question. ``required`` defaults to true, except for free text."""

    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    type: QuestionType
    text: str = Field(min_length=1)
    required: bool | None = None
    options: list[Option] = Field(default_factory=list)
    scale: int = Field(default=5, ge=2, le=10, description="rating: 1..scale")
    min_choices: int = Field(default=0, ge=0)
    max_choices: int | None = Field(default=None, ge=1)
    max_length: int = Field(default=500, ge=1, le=5000)
    low_label: str | None = None
    high_label: str | None = None

    @field_validator("options", mode="before")
    @classmethod
    def _bare_options(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"value": o, "label": o} if isinstance(o, str | int) else o for o in v]
        return v

    @field_validator("text")
    @classmethod
    def _piped(cls, v: str) -> str:
        return _check_placeholders(v)

    @model_validator(mode="after")
    def _shape(self) -> Question:
        if self.type in ("single", "multiple"):
            if len(self.options) < 2:
                raise ValueError(f"question {self.id!r}: a {self.type} choice needs at least 2 options")
            values = [o.value for o in self.options]
            if len(set(values)) != len(values):
                raise ValueError(f"question {self.id!r}: option values must be unique")
            if self.type == "single" and any(o.exclusive for o in self.options):
                raise ValueError(f"question {self.id!r}: `exclusive` is for multiple choice (single is exclusive)")
        elif self.options:
            raise ValueError(f"question {self.id!r}: options are only for single / multiple questions")
        return self

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.type != "text"

    @property
    def bounds(self) -> tuple[int, int] | None:
        """The (low, high) of a scored question; None for choices and text."""
        if self.type in SCALES:
            return SCALES[self.type]
        if self.type == "rating":
            return (1, self.scale)
        return None


StrOrList = str | list[str]


class BlockWhen(_Model):
    """When a block is asked: any of ``category`` in the basket, and/or the store type, and/or channel."""

    category: StrOrList | None = None
    store_type: StrOrList | None = None
    channel: StrOrList | None = None

    @staticmethod
    def _list(v: StrOrList | None) -> list[str]:
        return [] if v is None else [v] if isinstance(v, str) else list(v)

    @property
    def categories(self) -> list[str]:
        return self._list(self.category)

    def matches_context(self, store_type: str | None, channel: str | None) -> bool:
        st, ch = self._list(self.store_type), self._list(self.channel)
        return (not st or store_type in st) and (not ch or channel in ch)


class Block(_Model):
    """A group of questions asked when its ``when`` matches the invitation's context."""

    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    title: str | None = None
    when: BlockWhen
    questions: list[Question] = Field(min_length=1)

    @model_validator(mode="after")
    def _has_condition(self) -> Block:
        w = self.when
        if w.category is None and w.store_type is None and w.channel is None:
            raise ValueError(f"block {self.id!r}: `when` needs a category, store_type or channel")
        return self


class InviteText(_Model):
    """The invitation message; may pipe ``{store_name}``, ``{items}``, ``{brand}``."""

    title: str = "邀请您参与一分钟问卷"
    body: str = "感谢您光临{store_name}，您购买了{items}。诚邀您花一分钟告诉我们您的体验。"

    @field_validator("title", "body")
    @classmethod
    def _piped(cls, v: str) -> str:
        return _check_placeholders(v, PIPED - {"category"})


class Questionnaire(_Model):
    """A questionnaire: base questions, category / context blocks, closing questions."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    locale: str = "zh-CN"
    title: str = "感谢您光临{store_name}"
    intro: str | None = None
    thanks: str = "感谢您的反馈！我们会认真阅读每一条意见。"
    invite: InviteText = Field(default_factory=InviteText)
    max_blocks: int | None = Field(default=None, ge=0)
    base: list[Question] = Field(default_factory=list)
    blocks: list[Block] = Field(default_factory=list)
    closing: list[Question] = Field(default_factory=list)

    @field_validator("title", "intro", "thanks")
    @classmethod
    def _piped(cls, v: str | None) -> str | None:
        return None if v is None else _check_placeholders(v, PIPED - {"category"})

    @model_validator(mode="after")
    def _unique(self) -> Questionnaire:
        fixed = [q.id for q in (*self.base, *self.closing)]
        dupes = sorted({i for i in fixed if fixed.count(i) > 1})
        if dupes:
            raise ValueError(f"question ids repeated in base/closing: {dupes}")
        blocks = [b.id for b in self.blocks]
        if len(set(blocks)) != len(blocks):
            raise ValueError("block ids must be unique")
        if not (self.base or self.blocks or self.closing):
            raise ValueError("a questionnaire needs at least one question")
        return self


# ---------------------------------------------------------------- loading


def _errors(exc: ValidationError, lines: Lines, prefix: tuple[str | int, ...] = ()) -> ConfigError:
    errs = [
        ConfigError(e["msg"], file=lines.file, line=lines.line((*prefix, *e["loc"])), key=dotted((*prefix, *e["loc"])))
        for e in exc.errors()
    ]
    return errs[0] if len(errs) == 1 else ConfigErrors(errs)


def parse_questionnaire(data: Any, lines: Lines, prefix: tuple[str | int, ...] = ()) -> Questionnaire:
    """Validate questionnaire data; errors name ``file:line`` and the key."""
    if not isinstance(data, dict):
        raise lines.error(prefix, "a questionnaire must be a YAML mapping")
    try:
        return Questionnaire.model_validate(data)
    except ValidationError as exc:
        raise _errors(exc, lines, prefix) from None


def load_questionnaire_file(path: str | Path) -> Questionnaire:
    """Load and validate one questionnaire file."""
    data, lines = load_yaml(path)
    return parse_questionnaire(data, lines)


def resolve_questionnaire_ref(ref: str, base_dir: Path) -> Path:
    """A preset name (``retail``) or a file path relative to the config's folder."""
    if preset_exists(ref):
        return PRESET_DIR / f"{ref}.yaml"
    path = Path(ref)
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise FileNotFoundError(f"questionnaire {ref!r} is neither a file nor a preset (presets: {preset_names()})")
    return path


def load_questionnaires(
    refs: dict[str, str | dict[str, Any]],
    rule_refs: Iterable[str],
    base_dir: Path,
    lines: Lines,
) -> dict[str, Questionnaire]:
    """Every questionnaire the config names (inline, file or preset) plus presets rules use by name."""
    out: dict[str, Questionnaire] = {}
    errors: list[ConfigError] = []
    wanted: dict[str, str | dict[str, Any]] = dict(refs)
    for r in rule_refs:
        wanted.setdefault(r, r)
    for name, ref in wanted.items():
        key: tuple[str | int, ...] = ("surveys", "questionnaires", name)
        try:
            if isinstance(ref, dict):
                out[name] = parse_questionnaire(ref, lines.sub(key), ())
            else:
                try:
                    path = resolve_questionnaire_ref(ref, base_dir)
                except FileNotFoundError as exc:
                    raise lines.error(key, str(exc)) from None
                out[name] = load_questionnaire_file(path)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return out


# ---------------------------------------------------------------- composition


def _item_weight(item: OrderItem) -> Decimal:
    if item.amount is not None:
        return item.amount
    if item.price is not None:
        return item.price * item.qty
    return Decimal(0)


def basket_shares(items: Sequence[OrderItem]) -> list[tuple[str, Decimal]]:
    """Categories with their share of the basket (by amount; by quantity when no prices),
    largest first; ties keep basket order."""
    by_amount: dict[str, Decimal] = {}
    by_qty: dict[str, Decimal] = {}
    for item in items:
        if not item.category:
            continue
        by_amount[item.category] = by_amount.get(item.category, Decimal(0)) + _item_weight(item)
        by_qty[item.category] = by_qty.get(item.category, Decimal(0)) + item.qty
    weights = by_amount if sum(by_amount.values(), Decimal(0)) > 0 else by_qty
    total = sum(weights.values(), Decimal(0))
    if total <= 0:
        return [(c, Decimal(0)) for c in weights]
    order = list(weights)
    ranked = sorted(order, key=lambda c: (-weights[c], order.index(c)))
    return [(c, (weights[c] / total).quantize(Decimal("0.0001"))) for c in ranked]


def items_text(items: Sequence[OrderItem], limit: int = 3) -> str:
    """``有机菠菜、鲜牛奶 1L等3件商品``: the largest lines by amount, for piping into texts."""
    named = [i for i in items if i.name]
    if not named:
        cats = list(dict.fromkeys(i.category for i in items if i.category))
        return "、".join(cats[:limit]) + ("等商品" if len(cats) > limit else "") if cats else "商品"
    ranked = sorted(named, key=lambda i: -_item_weight(i))
    names = list(dict.fromkeys(i.name for i in ranked if i.name))
    text = "、".join(names[:limit])
    return f"{text}等{len(names)}件商品" if len(names) > limit else text


class _Pipe(dict[str, str]):
    def __missing__(self, key: str) -> str:  # a placeholder validated at load but not known here
        return ""


def pipe(text: str, values: dict[str, str]) -> str:
    """Fill ``{store_name}``-style placeholders."""
    return text.format_map(_Pipe(values))


@dataclass
class Composed:
    """What one invitation asks: rendered questions (JSON-able), chosen block ids, page texts."""

    questionnaire: str
    blocks: list[str]
    questions: list[dict[str, Any]]
    title: str
    intro: str | None
    thanks: str
    invite_title: str
    invite_body: str
    categories: list[str] = field(default_factory=list)
    shares: dict[str, str] = field(default_factory=dict)


#: id(question) -> (question, its JSON dump): dumping a pydantic model for every question of every
#: invitation was the largest cost of composing; the question is kept so its id is never reused
_DUMPS: dict[int, tuple[Question, dict[str, Any]]] = {}


def _dumped(q: Question) -> dict[str, Any]:
    hit = _DUMPS.get(id(q))
    if hit is None or hit[0] is not q:
        if len(_DUMPS) > 10_000:  # configs reloaded many times (tests): start again
            _DUMPS.clear()
        hit = _DUMPS[id(q)] = (q, q.model_dump(mode="json", exclude_none=True, exclude_defaults=True))
    return hit[1]


def _rendered(q: Question, values: dict[str, str], block: str | None) -> dict[str, Any]:
    # a shallow copy: nested values (options) are shared between invitations and never mutated
    # (composed questions are only serialised into the invitation row)
    doc = dict(_dumped(q))
    doc["text"] = pipe(q.text, values)
    doc["required"] = q.is_required
    if block:
        doc["block"] = block
    return doc


def compose(
    q: Questionnaire,
    *,
    items: Sequence[OrderItem] = (),
    store_name: str | None = None,
    brand: str | None = None,
    store_type: str | None = None,
    channel: str | None = None,
    max_blocks: int | None = None,
) -> Composed:
    """Compose the questionnaire for one transaction (see the module docstring for the order)."""
    limit = max_blocks if max_blocks is not None else q.max_blocks
    shares = basket_shares(items)
    chosen: list[tuple[Block, str | None]] = []
    seen: set[str] = set()
    # the blocks this context allows, with their categories: worked out once, not per category
    allowed = [(b, b.when.categories) for b in q.blocks if b.when.matches_context(store_type, channel)]
    for category, _share in shares:
        for block, cats in allowed:
            if block.id not in seen and category in cats:
                chosen.append((block, category))
                seen.add(block.id)
    for block, cats in allowed:
        if block.id not in seen and not cats:
            chosen.append((block, None))
            seen.add(block.id)
    if limit is not None:
        chosen = chosen[:limit]
    values = {
        "store_name": store_name or "本店",
        "items": items_text(items),
        "brand": brand or "",
    }
    questions: list[dict[str, Any]] = []
    ids: set[str] = set()

    def add(question: Question, block: Block | None, piped: dict[str, str], block_title: str | None = None) -> None:
        if question.id in ids:  # shared questions are asked once
            return
        ids.add(question.id)
        doc = _rendered(question, piped, block.id if block else None)
        if block is not None:
            doc["block_title"] = block_title
        questions.append(doc)

    for question in q.base:
        add(question, None, values)
    for chosen_block, chosen_by in chosen:
        piped = {**values, "category": chosen_by or chosen_block.title or ""}
        title = pipe(chosen_block.title, piped) if chosen_block.title else chosen_block.id
        for question in chosen_block.questions:
            add(question, chosen_block, piped, title)
    for question in q.closing:
        add(question, None, values)
    return Composed(
        questionnaire=q.name,
        blocks=[b.id for b, _ in chosen],
        questions=questions,
        title=pipe(q.title, values),
        intro=pipe(q.intro, values) if q.intro else None,
        thanks=pipe(q.thanks, values),
        invite_title=pipe(q.invite.title, values),
        invite_body=pipe(q.invite.body, values),
        categories=[c for c, _ in shares],
        shares={c: str(s) for c, s in shares},
    )
