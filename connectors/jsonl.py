"""Generic pull source: JSON-lines files (one file or a folder), resumed by byte offset."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import Field

from hub.errors import ConnectorError
from hub.sdk.columns import ColumnBatch
from hub.sdk.connector import Batch, ConnectorOptions, PullSource, RawRecord, Rejected, utcnow
from hub.sdk.expressions import compile_expression, plain_path

#: 19 digits in a row: an integer that may not fit 64 bits, which orjson would read as a float
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


class JsonlOptions(ConnectorOptions):
    """``path``: a ``.jsonl`` file or a folder; ``id_path``: JMESPath of each record's id."""

    path: str
    pattern: str = "*.jsonl"
    id_path: str = Field(description="JMESPath expression giving each record's unique id")
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    columnar: bool = Field(
        default=True,
        description="ingest as Arrow columns (vectorised mapping, COPY) when the mapping allows; false: row by row",
    )


class Lines:
    """One batch of a file's lines as read (blank lines left out), before they are parsed: what
    the row read parses line by line and the columnar read in one go."""

    def __init__(self, source: JsonlSource, received_at: datetime):
        self.source = source
        self.received_at = received_at
        self.lines: list[bytes] = []
        #: each line's ``file:offset``, what a rejected line is known by
        self.refs: list[str] = []
        self.state: dict[str, Any] = {}

    def batch(self) -> Batch:
        """The lines parsed one by one: records and rejected lines with their reasons."""
        records: list[RawRecord] = []
        rejected: list[Rejected] = []
        for line, ref in zip(self.lines, self.refs, strict=True):
            self.source._parse(line, ref, records, rejected, self.received_at)
        return Batch(records, self.state, rejected)

    def payloads(self) -> list[Any]:
        """Each line as the row read parses it (every line here is JSON: the columns were read)."""
        out: list[Any] = []
        for line in self.lines:
            records: list[RawRecord] = []
            rejected: list[Rejected] = []
            self.source._parse(line, "", records, rejected, self.received_at)
            out.append(records[0].payload if records else rejected[0].payload)
        return out


class JsonlSource(PullSource):
    """Reads JSON lines from a file or every matching file of a folder (sorted by name). State is
    ``{"files": {name: byte offset}}``: a restart resumes after the last committed line. A line
    still being written (no newline yet) waits for the next pass; a bad line is quarantined."""

    overlap_commits = True  # reads never wait long: the sync overlaps them with the last commit
    #: the hub may ingest this source's batches as columns (flat records; ``columnar: false`` opts out)
    columnar = True
    kind = "jsonl"
    title = "JSON-lines files or folder (byte-offset cursor)"
    Options = JsonlOptions
    options: JsonlOptions

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        try:
            self._id = compile_expression(self.options.id_path)
            #: the keys of a plain ``a.b`` id path (read from the columns), else None
            self._id_keys = plain_path(self.options.id_path)
        except ValueError as exc:
            raise ConnectorError(f"id_path: {exc}", target=self.name) from None

    def _files(self) -> list[Path]:
        p = Path(self.options.path)
        if p.is_dir():
            return sorted(f for f in p.glob(self.options.pattern) if f.is_file())
        if p.is_file():
            return [p]
        raise ConnectorError(f"path {str(p)!r} does not exist", target=self.name)

    def estimate(self, state: dict[str, Any] | None) -> int | None:
        """The lines after the committed offsets, counted in 1 MiB chunks (C speed, bounded memory):
        the progress bar's total, percentage and time left. None when the path is not there yet
        (the read then says why)."""
        offsets: dict[str, int] = dict((state or {}).get("files", {}))
        total = 0
        try:
            for f in self._files():
                start = offsets.get(f.name, 0)
                if f.stat().st_size < start:
                    start = 0
                with f.open("rb") as fh:
                    fh.seek(start)
                    last = b"\n"
                    while chunk := fh.read(1 << 20):
                        total += chunk.count(b"\n")
                        last = chunk[-1:]
                    total += last != b"\n"  # a last line without its newline
        except (OSError, ConnectorError):
            return None
        return total

    def read(self, state: dict[str, Any] | None, *, full: bool = False) -> Iterator[Batch]:
        for chunk in self._chunks(state, full=full):
            yield chunk.batch()

    def read_arrow(self, state: dict[str, Any] | None, *, full: bool = False) -> Iterator[ColumnBatch | Batch]:
        """The batches of :meth:`read`, each parsed straight into Arrow columns by pyarrow's JSON
        reader (:class:`JsonlColumns`) when it reads the lines exactly as the row read does, else
        the row read's :class:`Batch` (a line that is not JSON, a field whose type changes from
        line to line, numbers that could be integers or floats: see :mod:`connectors.jsonl_arrow`)."""
        from connectors.jsonl_arrow import columns_of

        for chunk in self._chunks(state, full=full):
            columns = columns_of(chunk, self._id_keys)
            yield columns if columns is not None else chunk.batch()

    def _chunks(self, state: dict[str, Any] | None, *, full: bool) -> Iterator[Lines]:
        offsets: dict[str, int] = {} if full or not state else dict(state.get("files", {}))
        for f in self._files():
            key = f.name
            start = offsets.get(key, 0)
            if f.stat().st_size < start:  # truncated or replaced: read it again; dedup absorbs repeats
                start = 0
            chunk = Lines(self, utcnow())  # one receipt time per batch, as the sql source
            with f.open("rb") as fh:
                fh.seek(start)
                pos = start
                for line in fh:
                    if not line.endswith(b"\n"):
                        break  # still being written
                    line_start, pos = pos, pos + len(line)
                    if line.isspace():
                        continue  # a blank line is no record
                    chunk.refs.append(f"{key}:{line_start}")
                    chunk.lines.append(line)
                    if len(chunk.lines) >= self.options.batch_size:
                        offsets[key] = pos
                        chunk.state = {"files": dict(offsets)}
                        yield chunk
                        chunk = Lines(self, utcnow())
                offsets[key] = pos
            if chunk.lines or offsets.get(key) != start:
                chunk.state = {"files": dict(offsets)}
                yield chunk

    def _parse(self, line: bytes, ref: str, records: list[RawRecord], rejected: list[Rejected], now: datetime) -> None:
        stripped = line.strip()
        if not stripped:
            return
        data: Any = None
        if not _LONG_DIGITS.search(stripped):
            # the common case, in a third of json.loads' time: orjson takes strict UTF-8 JSON and
            # gives what json.loads gives; what it refuses (NaN, 1E400, lone surrogates, bad bytes)
            # goes the stdlib way below, which accepts it or names the error as it always did
            try:
                data = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                data = None
        if data is None:
            self._parse_slow(stripped, ref, records, rejected, now)
            return
        self._record(data, ref, records, rejected, now)

    def _parse_slow(
        self, stripped: bytes, ref: str, records: list[RawRecord], rejected: list[Rejected], now: datetime
    ) -> None:
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError as exc:
            payload = {"$base64": base64.b64encode(stripped).decode()}
            rejected.append(Rejected(ref, payload, f"{ref}: not UTF-8 (byte {exc.start})"))
            return
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            rejected.append(Rejected(ref, {"$line": text}, f"{ref}: invalid JSON: {exc.msg} at column {exc.colno}"))
            return
        self._record(data, ref, records, rejected, now)

    def _record(self, data: Any, ref: str, records: list[RawRecord], rejected: list[Rejected], now: datetime) -> None:
        ext = self._id(data)
        if ext is None or ext == "" or isinstance(ext, dict | list):
            rejected.append(Rejected(ref, data, f"{ref}: id_path {self.options.id_path!r} gives no usable id"))
            return
        records.append(RawRecord(self.name, str(ext), data, now))
