"""``CompiledMapping``: one payload -> a ``TouchpointEvent`` (or ``None`` when ``when`` skips it).

The document is built by the function ``codegen`` generated for the mapping; ``interpret`` walks the
specs instead, the reference that function must match. Pydantic validates the document into the
event; a bad value is a ``RecordError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from hub.errors import MappingError, RecordError
from hub.mapping.codegen import generate
from hub.mapping.specs import (
    MISSING,
    Builder,
    FieldSpec,
    IdentitySpec,
    ListSpec,
    const_spec,
    item_field,
    not_a_list,
)
from hub.model import TouchpointEvent
from hub.sdk.expressions import Getter


@dataclass
class CompiledMapping:
    """A compiled mapping. Use :meth:`apply`."""

    name: str
    file: str
    kind: FieldSpec | None
    when: Getter | None
    fields: list[FieldSpec] = field(default_factory=list)
    lists: list[ListSpec] = field(default_factory=list)
    identities: list[IdentitySpec] = field(default_factory=list)
    fixtures_path: Path | None = None
    #: the ``when`` expression as written (the columnar path evaluates simple ones on columns)
    when_text: str | None = None
    #: the generated document builder (made by compile_mapping, else on first use) and its source
    _build: Builder | None = field(default=None, repr=False, compare=False)
    builder_source: str = field(default="", repr=False, compare=False)

    def apply(
        self,
        payload: Any,
        *,
        source: str,
        external_id: str,
        received_at: datetime | None = None,
    ) -> TouchpointEvent | None:
        """Map one payload. ``None`` when ``when`` filters it out; ``RecordError`` when it is bad."""
        doc = (self._build or self._make_builder())(payload, source, external_id, received_at)
        if doc is None:
            return None
        try:
            return TouchpointEvent.model_validate(doc)
        except ValidationError as exc:
            raise RecordError(_validation_reason(exc)) from None

    def build_doc(
        self, payload: Any, *, source: str, external_id: str, received_at: datetime | None = None
    ) -> dict[str, Any] | None:
        """What :meth:`apply` validates into the event: a dict, or ``None`` when ``when`` skips it."""
        return (self._build or self._make_builder())(payload, source, external_id, received_at)

    def bind_options(self, options: Mapping[str, Any]) -> None:
        """Give identities with ``scope: {option: ...}`` their scope: that option of the source's
        connector (the config calls it when a source loads). ``MappingError`` when it has none."""
        bound = False
        for ident in self.identities:
            if not ident.scope_option:
                continue
            target = f"customer.identities.{ident.namespace}.scope"
            value: Any = options.get(ident.scope_option)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is None or str(value).strip() == "":
                raise MappingError(
                    f"{target}: the scope is the source's option {ident.scope_option!r}, which is not set",
                    file=self.file,
                )
            ident.scope = const_spec(target, str(value).strip())
            bound = True
        if bound:
            self._build = None  # generated again with the scope

    def _make_builder(self) -> Builder:
        self.builder_source, self._build = generate(self)
        return self._build

    def interpret(
        self, payload: Any, source: str, external_id: str, received_at: datetime | None = None
    ) -> dict[str, Any] | None:
        """:meth:`build_doc` by walking the specs: the reference the generated builder must match.

        Used as the builder of mappings whose targets nest inside one another (``attributes``
        and ``attributes.x``), where the order of writes decides the result."""
        if self.when is not None and not self.when(payload):
            return None
        doc: dict[str, Any] = {"source": source, "external_id": external_id}
        if received_at is not None:
            doc["received_at"] = received_at
        if self.kind is not None:
            kind = self.kind.value(payload, payload)
            if kind is not MISSING:
                doc["kind"] = kind
        for spec in self.fields:
            v = spec.value(payload, payload)
            if v is not MISSING:
                _put(doc, spec.target, v)
        for lst in self.lists:
            elements = lst.each(payload)
            if elements is None:
                continue
            if isinstance(elements, Mapping):
                elements = [elements]
            if not isinstance(elements, list):
                raise RecordError(not_a_list(elements), field=lst.target)
            items = []
            for i, element in enumerate(elements):
                if lst.when is not None and not lst.when(element):
                    continue
                item: dict[str, Any] = {}
                for spec in lst.fields:
                    try:
                        v = spec.value(element, payload)
                    except RecordError as exc:
                        raise RecordError(exc.reason, field=item_field(lst.target, i, spec.target)) from None
                    if v is not MISSING:
                        item[spec.target] = v
                items.append(item)
            _put(doc, lst.target, items)
        if self.identities:
            ids: list[dict[str, Any]] = []
            for ident in self.identities:
                ident.put(payload, ids)
            if ids:
                doc.setdefault("customer", {}).setdefault("identities", []).extend(ids)
        return doc


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _put(doc: dict[str, Any], dotted_name: str, value: Any) -> None:
    parts = dotted_name.split(".")
    cur = doc
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
