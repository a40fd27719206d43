"""A batch of records as Arrow columns: what a columnar pull source's ``read_arrow`` yields.

A pull source that can read columns (``columnar = True``, a ``read_arrow(state, *, full=False)``
method) hands the hub :class:`ColumnBatch` objects instead of :class:`hub.sdk.Batch` ones (a
``Batch`` among them is taken by the row path); the hub maps them with the mapping's vector form
and writes them with ``COPY``. The fields say what the hub may assume about the records, so the
columns and the row path read the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from hub.sdk.connector import Batch, Rejected


def bytes_value(value: bytes) -> str | dict[str, str]:
    """Bytes (a ``bytea`` column) as a record holds them: their UTF-8 text, or ``{"$base64": ...}``."""
    import base64

    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"$base64": base64.b64encode(value).decode("ascii")}


if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(kw_only=True)
class ColumnBatch:
    """Records as Arrow columns, with their ids, the state to resume from and the rejects.

    ``table``: one row per record, its columns the record's fields (dotted names for a flattened
    object's); ``children``: per nested list of the mapping (``lines``), a table of the elements
    with an ``__row`` column (int32, the record's index in ``table``); ``present``: per nested
    list, whether each record has it (default: all do); ``numeric``: columns holding exact
    decimals as text (a child's as ``child.column``); ``payloads``: the records as the row path
    reads them, when the source has them at hand; ``load_payloads``: reads them on demand (else
    the hub rebuilds them from the columns); ``opaque``: the keys records hold outside the columns
    (nested values), a child's as ``child.key``; None: not known, any key may be. ``received``:
    each record's receipt time (a timestamp with a time zone) when they differ (records pushed one
    by one); None: every record's is ``received_at``."""

    table: pa.Table
    ids: pa.Array
    state: dict[str, Any]
    received_at: datetime
    children: dict[str, pa.Table] = field(default_factory=dict)
    present: dict[str, pa.Array] = field(default_factory=dict)
    numeric: frozenset[str] = frozenset()
    rejected: list[Rejected] = field(default_factory=list)
    payloads: list[dict[str, Any]] | None = None
    load_payloads: Callable[[], list[Any]] | None = None
    opaque: frozenset[str] | None = None
    received: pa.Array | None = None

    #: True: ``table`` holds the records as parsed (objects as structs, every list a list column);
    #: the hub flattens it, or takes :meth:`row_batch` when it cannot lay it out as rows would be
    nested: ClassVar[bool] = False

    def row_batch(self) -> Batch:
        """The same records for the row path (a nested batch the hub cannot lay out as columns)."""
        raise NotImplementedError(f"{type(self).__name__} has no row form: set nested = False or implement row_batch")
