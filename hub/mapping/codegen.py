"""Code generation: one Python document builder per mapping, compiled with ``exec`` at load.

``CompiledMapping.interpret`` walks the specs for every record: per field a method call, a few
branches, a dotted name split, a coercion dispatched on its name. ``generate`` writes the same
steps out as one Python function per mapping, specialised at load: plain paths become chained
``dict.get`` calls (shared prefixes looked up once), each field's coercion function and
passthrough type are bound names, nested documents are built through locals. Everything that
comes from the mapping file (keys, literals, lookups, defaults, names) enters the function as a
constant bound in its namespace (``c0``, ``c1``...), never as source text: the source only holds
names the generator made up.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hub.errors import RecordError
from hub.mapping.specs import MISSING, Builder, FieldSpec, Missing, getter_of, item_field, lookup_miss, not_a_list

if TYPE_CHECKING:
    from hub.mapping.apply import CompiledMapping


class _Scope:
    """Where plain paths are looked up: the payload, or a list element (its own loop body)."""

    def __init__(self, var: str, getter: str):
        self.var = var
        self.getters: dict[tuple[str, ...], str] = {}
        self.root_getter = getter


class _Codegen:
    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "RecordError": RecordError,
            "Mapping": Mapping,
            "NOT_FOUND": _NOT_FOUND,
            "getter_of": getter_of,
            "lookup_miss": lookup_miss,
            "item_field": item_field,
            "not_a_list": not_a_list,
        }
        self.lines: list[str] = []
        self.nodes: dict[tuple[str, ...], str] = {}
        self._strings: dict[str, str] = {}
        self._n = 0

    def bind(self, value: Any) -> str:
        """A name for ``value`` in the function's namespace."""
        if type(value) is str and value in self._strings:
            return self._strings[value]
        name = f"c{self._n}"
        self._n += 1
        self.ns[name] = value
        if type(value) is str:
            self._strings[value] = name
        return name

    def local(self, prefix: str) -> str:
        name = f"{prefix}{self._n}"
        self._n += 1
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    # ------------------------------------------------------------ reading

    def getter(self, scope: _Scope, prefix: tuple[str, ...], depth: int) -> str:
        """The local holding ``get`` of the value at ``prefix`` (emitted where first needed)."""
        g = scope.getters.get(prefix)
        if g is not None:
            return g
        if not prefix:
            g = scope.root_getter
            self.emit(depth, f"{g} = {scope.var}.get if type({scope.var}) is dict else getter_of({scope.var})")
        else:
            parent = self.getter(scope, prefix[:-1], depth)
            value, g = self.local("o"), self.local("g")
            self.emit(depth, f"{value} = {parent}({self.bind(prefix[-1])})")
            self.emit(depth, f"{g} = {value}.get if type({value}) is dict else getter_of({value})")
        scope.getters[prefix] = g
        return g

    def raw(self, spec: FieldSpec, scope: _Scope, root: _Scope, depth: int) -> str:
        """An expression of the field's raw value (emitting the path lookups it needs)."""
        if spec.is_root:
            if scope is root and spec.keys is not None:
                return f"{self.getter(root, spec.keys[:-1], depth)}({self.bind(spec.keys[-1])})"
            return f"{self.bind(spec.getter)}({root.var})"
        if spec.keys is not None:
            return f"{self.getter(scope, spec.keys[:-1], depth)}({self.bind(spec.keys[-1])})"
        return f"{self.bind(spec.getter)}({scope.var})"

    # ------------------------------------------------------------ writing

    def node(self, path: tuple[str, ...], depth: int) -> str:
        """The local of the nested dict at ``path`` in the document, created when first written."""
        if not path:
            return "doc"
        var = self.nodes.get(path)
        if var is None:
            var = self.nodes[path] = self.local("n")
        parent = self.node(path[:-1], depth)
        self.emit(depth, f"if {var} is None:")
        self.emit(depth + 1, f"{var} = {parent}[{self.bind(path[-1])}] = {{}}")
        return var

    def put_doc(self, target: str) -> Callable[[int, str], None]:
        parts = tuple(target.split("."))

        def put(depth: int, expr: str) -> None:
            node = self.node(parts[:-1], depth)
            self.emit(depth, f"{node}[{self.bind(parts[-1])}] = {expr}")

        return put

    def put_item(self, target: str) -> Callable[[int, str], None]:
        def put(depth: int, expr: str) -> None:
            self.emit(depth, f"item[{self.bind(target)}] = {expr}")

        return put

    def put_identity(self, namespace: str) -> Callable[[int, str], None]:
        def put(depth: int, expr: str) -> None:
            self.emit(depth, f'if {expr} is not None and {expr} != "":')
            self.emit(depth + 1, f'ids.append({{"namespace": {self.bind(namespace)}, "value": {expr}}})')

        return put

    # ------------------------------------------------------------ one field (``FieldSpec.value``)

    def field(
        self,
        spec: FieldSpec,
        scope: _Scope,
        root: _Scope,
        depth: int,
        put: Callable[[int, str], None],
        where: str,
    ) -> None:
        """Emit ``spec.value`` and ``put`` of its value; ``where`` is the expression of the field's name."""
        blank = 'v is None or v == ""' if spec.type not in ("str", "json") else "v is None"
        if spec.is_const:  # the same value every time: settle it now
            raw = spec.getter(None)
            if raw is None or (raw == "" and spec.type not in ("str", "json")):
                self.missing(spec, depth, put, where)
            else:
                put(depth, self.bind(raw))
            return
        self.emit(depth, f"v = {self.raw(spec, scope, root, depth)}")
        if spec.default is MISSING and not spec.required:
            self.emit(depth, "if v is not None:" if blank == "v is None" else f"if not ({blank}):")
        else:
            self.emit(depth, f"if {blank}:")
            self.missing(spec, depth + 1, put, where)
            self.emit(depth, "else:")
        depth += 1
        if spec.lookup is not None:
            self.emit(depth, f"k = {self.bind(spec.lookup)}.get(str(v), NOT_FOUND)")
            self.emit(depth, "if k is NOT_FOUND:")
            if spec.default is not MISSING:
                put(depth + 1, self.bind(spec.default))
            else:
                self.emit(depth + 1, f"raise RecordError(lookup_miss(v, {self.bind(spec.lookup_name)}), field={where})")
            self.emit(depth, "else:")
            depth += 1
            self.emit(depth, "v = k")
        if spec.type != "json":
            inner = depth
            if spec.passthrough is not None:
                self.emit(depth, f"if type(v) is not {self.bind(spec.passthrough)}:")
                inner += 1
            self.emit(inner, "try:")
            self.emit(inner + 1, f"v = {self.bind(spec.coerce_fn)}(v)")
            self.emit(inner, "except ValueError as exc:")
            self.emit(inner + 1, f"raise RecordError(str(exc), field={where}) from None")
        put(depth, "v")

    def missing(self, spec: FieldSpec, depth: int, put: Callable[[int, str], None], where: str) -> None:
        if spec.default is not MISSING:
            put(depth, self.bind(spec.default))
        elif spec.required:
            self.emit(depth, f'raise RecordError("required value is missing", field={where})')
        else:
            self.emit(depth, "pass")

    # ------------------------------------------------------------ the mapping

    def mapping(self, m: CompiledMapping) -> str:
        root = _Scope("payload", "pg")
        if m.when is not None:
            self.emit(1, f"if not {self.bind(m.when)}(payload):")
            self.emit(2, "return None")
        self.emit(1, 'doc = {"source": source, "external_id": external_id}')
        self.emit(1, "if received_at is not None:")
        self.emit(2, 'doc["received_at"] = received_at')
        for spec in [m.kind, *m.fields] if m.kind is not None else m.fields:
            self.field(spec, root, root, 1, self.put_doc(spec.target), self.bind(spec.target))
        for lst in m.lists:
            if lst.each_keys is not None:
                each = f"{self.getter(root, lst.each_keys[:-1], 1)}({self.bind(lst.each_keys[-1])})"
            else:
                each = f"{self.bind(lst.each)}(payload)"
            target = self.bind(lst.target)
            self.emit(1, f"els = {each}")
            self.emit(1, "if els is not None:")
            self.emit(2, "if type(els) is not list:")
            self.emit(3, "if isinstance(els, Mapping):")
            self.emit(4, "els = [els]")
            self.emit(3, "elif not isinstance(els, list):")
            self.emit(4, f"raise RecordError(not_a_list(els), field={target})")
            self.emit(2, "items = []")
            self.emit(2, "for i, el in enumerate(els):")
            if lst.when is not None:
                self.emit(3, f"if not {self.bind(lst.when)}(el):")
                self.emit(4, "continue")
            self.emit(3, "item = {}")
            scope = _Scope("el", "eg")
            for spec in lst.fields:
                where = f"item_field({target}, i, {self.bind(spec.target)})"
                self.field(spec, scope, root, 3, self.put_item(spec.target), where)
            self.emit(3, "items.append(item)")
            self.put_doc(lst.target)(2, "items")
        if m.identities:
            self.emit(1, "ids = []")
            for ident in m.identities:
                if ident.scope is not None or ident.scope_option:  # value and scope together, as the reference does
                    self.emit(1, f"{self.bind(ident.put)}(payload, ids)")
                    continue
                spec = ident.spec
                self.field(spec, root, root, 1, self.put_identity(ident.namespace), self.bind(spec.target))
            self.emit(1, "if ids:")
            customer = self.node(("customer",), 2)
            self.emit(2, f'{customer}.setdefault("identities", []).extend(ids)')
        self.emit(1, "return doc")
        head = ["def build(payload, source, external_id, received_at):"]
        if self.nodes:
            head.append("    " + " = ".join(self.nodes.values()) + " = None")
        return "\n".join(head + self.lines) + "\n"


_NOT_FOUND: Any = Missing()


def _nested_targets(m: CompiledMapping) -> bool:
    """True when a target is inside another (``attributes`` and ``attributes.x``)."""
    paths = {tuple(s.target.split(".")) for s in m.fields}
    paths |= {tuple(lst.target.split(".")) for lst in m.lists}
    if m.identities:
        paths.add(("customer", "identities"))
    return any(p[:i] in paths for p in paths for i in range(1, len(p)))


def generate(m: CompiledMapping) -> tuple[str, Builder]:
    """The Python source of ``m``'s document builder and the function compiled from it."""
    if _nested_targets(m):
        return "", m.interpret
    gen = _Codegen()
    source = gen.mapping(m)
    code = compile(source, f"<mapping {m.name}>", "exec")
    exec(code, gen.ns)  # noqa: S102 - source made above from generated names only (see _Codegen)
    return source, typing.cast(Builder, gen.ns["build"])
