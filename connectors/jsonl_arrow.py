"""A batch of JSON lines parsed into Arrow columns in one go (pyarrow's JSON reader, in C++).

The columns must be what the row read gives, line by line with orjson, so a batch is read this way
only when nothing can differ; otherwise :func:`columns_of` returns None and the batch is parsed
line by line as always. Read as columns:

- every line is one JSON object and every field keeps one JSON type across the batch (pyarrow
  refuses the rest: a line that is not JSON, a field that is a number here and a text there,
  a key twice in one object, a lone surrogate);
- text that pyarrow would take for a time stays text (the batch is read again with those fields
  declared as strings): the mapping parses times, as it does on the row path;
- a field of floating-point numbers is kept only when none of its values is integral or infinite:
  pyarrow reads ``1`` and ``1.5`` of one field both as floats, where the row read keeps ``1`` an
  integer, and ``1e20`` too;
- integers beyond 64 bits, field names with a dot (flattened names would be ambiguous), bytes
  that are not UTF-8, a byte-order mark and two objects on one line keep the row read, which
  quarantines them or reads them its own way.

The id (a plain ``id_path``) is read from its column; a line without a usable id is rejected with
the row read's reason.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from hub.sdk.columns import ColumnBatch
from hub.sdk.connector import Batch, Rejected

if TYPE_CHECKING:
    import pyarrow as pa

    from connectors.jsonl import Lines


_BOM = b"\xef\xbb\xbf"


@dataclass(kw_only=True)
class JsonlColumns(ColumnBatch):
    """A batch of JSON lines as Arrow columns: ``table`` holds the objects as parsed (nested
    objects as structs, lists as lists); the hub flattens them and splits the mapping's lists."""

    lines: Lines
    nested: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.load_payloads is None:  # each line as the row read parses it (for the row path's records)
            self.load_payloads = self.lines.payloads

    def row_batch(self) -> Batch:
        """The lines parsed one by one, as :meth:`JsonlSource.read` gives them."""
        return self.lines.batch()


def columns_of(chunk: Lines, id_keys: tuple[str, ...] | None) -> JsonlColumns | None:
    """``chunk`` as columns, or None when the row read must parse it (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.json as pj

    if not chunk.lines or id_keys is None:
        return None
    if any(line.lstrip().startswith(_BOM) for line in chunk.lines):
        return None  # pyarrow skips a byte-order mark that the line read refuses
    data = b"".join(line if line.endswith(b"\n") else line + b"\n" for line in chunk.lines)
    try:
        table = pj.read_json(io.BytesIO(data))
        if _has(table.schema, pa.types.is_timestamp):
            schema = pa.schema([_as_text(f) for f in table.schema])
            table = pj.read_json(
                io.BytesIO(data),
                parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
            )
        table.validate(full=True)  # pyarrow's reader takes bytes that are not UTF-8 into its strings
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(chunk.lines) or not _exact(table):  # two objects on one line, ...
        return None
    ids = _ids(table, id_keys)
    if ids is None:
        return None
    rejected: list[Rejected] = []
    if ids.null_count:
        import pyarrow.compute as pc

        payloads = None
        for i in pc.indices_nonzero(pc.is_null(ids)).to_pylist():
            payloads = payloads or chunk.payloads()
            ref = chunk.refs[i]
            rejected.append(
                Rejected(ref, payloads[i], f"{ref}: id_path {chunk.source.options.id_path!r} gives no usable id")
            )
    return JsonlColumns(
        table=table, ids=ids, state=chunk.state, received_at=chunk.received_at, lines=chunk, rejected=rejected
    )


def _has(schema: Any, test: Any) -> bool:
    """Whether any field of ``schema`` (or nested in one) has a type that passes ``test``."""
    return any(_type_has(f.type, test) for f in schema)


def _type_has(t: Any, test: Any) -> bool:
    import pyarrow as pa

    if test(t):
        return True
    if pa.types.is_struct(t):
        return any(_type_has(t.field(i).type, test) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _type_has(t.value_type, test)
    return False


def _as_text(f: Any) -> Any:
    """``f`` with every timestamp inside it declared a string."""
    return f.with_type(_text_type(f.type))


def _text_type(t: Any) -> Any:
    import pyarrow as pa

    if pa.types.is_timestamp(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_text_type(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_text_type(t.value_type)))
    return t


def _exact(table: pa.Table) -> bool:
    """No field whose values the row read would give differently (floats that may be integers,
    integers past 64 bits, dotted names)."""
    return all(_exact_column(f.name, table.column(f.name)) for f in table.schema)


def _exact_column(name: str, column: Any) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    if "." in name:
        return False
    t = column.type
    if pa.types.is_floating(t):
        values = column.drop_null()
        if len(values) == 0:
            return True
        finite = pc.all(pc.is_finite(values)).as_py()
        whole = pc.any(pc.equal(pc.floor(values), values)).as_py()
        return bool(finite) and not whole
    if pa.types.is_unsigned_integer(t) or pa.types.is_decimal(t):
        return False
    if pa.types.is_struct(t):
        flat = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        return all(_exact_column(t.field(i).name, flat.field(i)) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        flat = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        return _exact_column("", pc.list_flatten(flat))
    return True


def _ids(table: pa.Table, keys: tuple[str, ...]) -> pa.Array | None:
    """Each line's id as the row read makes it (``str`` of a text or an integer; null where none
    is usable), or None when the id's column holds other values (the row read decides)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if keys[0] not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    col: Any = table.column(keys[0]).combine_chunks()
    for k in keys[1:]:
        if not pa.types.is_struct(col.type):
            return None if not pa.types.is_null(col.type) else pa.nulls(table.num_rows, pa.string())
        if col.type.get_field_index(k) < 0:
            return pa.nulls(table.num_rows, pa.string())
        col = pc.struct_field(col, k)
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        text = col.cast(pa.string())
        return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    if pa.types.is_integer(t) and not pa.types.is_unsigned_integer(t):
        return col.cast(pa.string())
    if pa.types.is_null(t):
        return pa.nulls(table.num_rows, pa.string())
    return None  # floats, booleans, objects, lists: str() of them is the row read's to make


__all__ = ["JsonlColumns", "columns_of"]
