"""The ``sql`` source's options: what to read, the cursor, children or grouping, batch sizes."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from hub.sdk.connector import ConnectorOptions
from hub.sdk.durations import parse_duration


def _duration(value: Any) -> float:
    return parse_duration(value)


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


class ChildQuery(ConnectorOptions):
    """A child collection (order lines...): ``query`` selects the child rows, ``key`` is the column
    that matches the header's ``parent_key`` (default: the same name)."""

    query: str
    key: str
    parent_key: str | None = None
    order_by: list[str] = Field(default_factory=list, description="extra ORDER BY columns inside one parent")

    @field_validator("order_by", mode="before")
    @classmethod
    def _split(cls, v: Any) -> list[str]:
        return _names(v or [])


class SqlOptions(ConnectorOptions):
    """Options of the ``sql`` source (see the module docstring and docs/pull.md)."""

    url: SecretStr = Field(description="SQLAlchemy URL; postgresql:// and mysql:// pick psycopg / PyMySQL")
    table: str | None = Field(default=None, description="schema.table to read (or give query)")
    query: str | None = Field(default=None, description="any SELECT; the cursor condition is wrapped around it")
    cursor: list[str] = Field(description="cursor column(s), e.g. [updated_at, id]; strict-greater")
    id: list[str] = Field(default_factory=lambda: ["id"], description="column(s) forming each record's external id")
    cursor_style: Literal["auto", "row", "expanded"] = "auto"
    lookback: float = Field(default=0, ge=0, description="seconds (or 10m...) re-read before the cursor")
    initial: list[Any] | None = Field(default=None, description="cursor to start from on the first / --full run")
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    children: dict[str, ChildQuery] = Field(default_factory=dict)
    group_by: list[str] = Field(default_factory=list, description="fold consecutive rows with this key")
    line_columns: list[str] = Field(default_factory=list, description="with group_by: the columns of each line")
    lines_field: str = Field(default="lines", description="with group_by: the name of the list of lines")
    count: bool = Field(default=True, description="count the rows first for the progress bar")
    init_sql: list[str] = Field(default_factory=list, description="statements run on each read connection")
    connect_args: dict[str, Any] = Field(default_factory=dict)
    columnar: bool = Field(
        default=True,
        description="ingest as Arrow columns (vectorised mapping, COPY) when the mapping allows; false: row by row",
    )

    @field_validator("cursor", "id", "group_by", "line_columns", mode="before")
    @classmethod
    def _split(cls, v: Any) -> list[str]:
        return _names(v or [])

    @field_validator("lookback", mode="before")
    @classmethod
    def _lookback(cls, v: Any) -> float:
        return _duration(v)

    @model_validator(mode="after")
    def _check(self) -> SqlOptions:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        if not self.cursor:
            raise ValueError("cursor: at least one column")
        if not self.id:
            raise ValueError("id: at least one column")
        if self.group_by and self.children:
            raise ValueError("use children or group_by, not both")
        if self.group_by:
            if not self.line_columns:
                raise ValueError("group_by needs line_columns (the columns of each line)")
            missing = [c for c in self.group_by if c not in self.cursor]
            if missing:
                # rows of one header are consecutive in cursor order only when the key is in the cursor
                raise ValueError(f"group_by columns {missing} must be part of the cursor {self.cursor}")
        if self.initial is not None and len(self.initial) != len(self.cursor):
            raise ValueError(f"initial needs {len(self.cursor)} value(s), one per cursor column")
        return self


#: a query's closing semicolons, with the comments and blank space after them
_TAIL = re.compile(r";(\s*--[^\n']*)*\s*$")


def subquery(query: str) -> str:
    """An integrator's query as the body of ``SELECT ... FROM (body\n) alias``: its closing
    semicolon removed (also before a closing ``-- comment``), which the caller closes on a new
    line, so that a comment on the query's last line ends there."""
    text = query.strip()
    while True:
        cut = _TAIL.sub(lambda m: m.group(1) or "", text).rstrip()
        if cut == text:
            return text
        text = cut
