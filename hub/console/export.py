"""Exports of the console: CSV (streamed) and Excel (openpyxl) from rows and columns, masked as on
screen.

Every page that offers a download builds the same two things and hands them here::

    columns = [("occurred_at", t("...at")), ("store", t("common.store")), ("text", "...")]
    rows = query_rows(app.rt.store, stmt)              # dicts, read while the response streams
    return export_response(app, me, fmt, "touchpoints", columns, rows,
                           action="export.touchpoints", target=f"customer:{cid}")

- :func:`csv_response` streams UTF-8 CSV with a byte-order mark (Excel on a Chinese Windows opens
  it as UTF-8 only with one), written as the rows are read: a large export holds no list in memory.
- :func:`xlsx_response` writes a write-only workbook (constant memory per row) and sends it whole.
- :func:`export_response` checks the format, writes the audit row and picks one of the two.

Masking: every text cell goes through :func:`hub.privacy.mask_text` (mobile numbers and email
addresses inside free text), dicts and lists through :func:`hub.privacy.mask_payload`; ``masks``
maps a column key to its own mask (``{"openid": lambda v: mask_identity("openid", v)}``). Cells
that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first) get a leading ``'``.
Datetimes are written in ``zone`` (the config's timezone), ``%Y-%m-%d %H:%M:%S``.

Rows beyond ``max_rows`` (default :data:`MAX_ROWS`) are left out and the last line says so: an
export is a report, not a dump of the store; callers scope and filter the query as the page does.

An export is the one thing a page asks for that costs whole CPU seconds (10,000 cases as Excel:
about a second of Python), and a thread that holds the interpreter for that long makes every other
request of the process wait its turn at each database round trip. So a process writes
:data:`AT_ONCE` exports at a time (the others wait for their turn, up to :data:`WAIT_SECONDS`,
then answer 503), and an export gives the interpreter away every :data:`YIELD_EVERY` rows: the
pages of the other users stay fast while a download is written.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Executable

from hub.privacy import mask_payload

if TYPE_CHECKING:
    from hub.console.app import ConsoleApp
    from hub.console.scope import Principal
    from hub.store import Store

#: ``(key of the row dict, header shown in the file)``
ExportColumn = tuple[str, str]
#: a column's own mask: the cell's value -> what the file shows
Mask = Callable[[Any], Any]

FORMATS = ("csv", "xlsx")
#: rows an export holds at most (a note line says when more matched)
MAX_ROWS = 100_000
CSV_MEDIA = "text/csv; charset=utf-8"
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: exports a process writes at the same time
AT_ONCE = 1
#: how long an export waits for its turn before it answers 503
WAIT_SECONDS = 60.0
#: rows an export writes between two pauses that let the other requests run
YIELD_EVERY = 25
_turns = threading.BoundedSemaphore(AT_ONCE)


class ExportError(ValueError):
    """An export the console cannot make (an unknown format); the page answers 400 with it."""


class ExportBusy(RuntimeError):
    """Every export slot of the process stayed taken for :data:`WAIT_SECONDS`."""


class _Turn:
    """Holds one of the process's export slots, from the first row to the last."""

    def __init__(self) -> None:
        if not _turns.acquire(timeout=WAIT_SECONDS):
            raise ExportBusy("other exports are being written; try again in a minute")
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            _turns.release()


def query_rows(store: Store, stmt: Executable, *, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """The rows of ``stmt`` as dicts, read in chunks on a connection of their own that lives as
    long as the iteration (the response streams them after the route returned)."""
    with store.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk).execute(stmt)
        for part in result.mappings().partitions(chunk):
            for row in part:
                yield dict(row)


def cell(value: Any, *, zone: ZoneInfo | None = None, mask: Mask | None = None) -> str | int | float:
    """One value as a file shows it: masked, formatted, safe from formula injection."""
    if mask is not None and value is not None and value != "":
        value = mask(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return value
    if isinstance(value, Decimal):
        return float(value) if abs(value) < 10**15 else str(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None and zone is not None:
            value = value.astimezone(zone)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        text = orjson.dumps(mask_payload(value if not isinstance(value, tuple) else list(value))).decode()
    else:
        text = str(value)
        if mask is None:
            text = mask_payload(text)  # mobile numbers and email addresses inside the text
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return text


def _cells(
    columns: Sequence[ExportColumn],
    rows: Iterable[Mapping[str, Any]],
    zone: ZoneInfo | None,
    masks: Mapping[str, Mask],
    max_rows: int,
) -> Iterator[list[Any]]:
    """The header, then each row's cells, then a note when rows were left out."""
    yield [header for _, header in columns]
    for n, row in enumerate(rows):
        if n >= max_rows:
            yield [f"… more than {max_rows} rows matched; narrow the filters"]
            return
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            time.sleep(0.0001)  # a pause that hands the interpreter to the other requests' threads
        yield [cell(row.get(key), zone=zone, mask=masks.get(key)) for key, _ in columns]


def disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the UTF-8 one (RFC 6266 / 5987)."""
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in filename) or "export"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _headers(filename: str) -> dict[str, str]:
    return {"Content-Disposition": disposition(filename)}


def csv_response(
    filename: str,
    columns: Sequence[ExportColumn],
    rows: Iterable[Mapping[str, Any]],
    *,
    zone: ZoneInfo | None = None,
    masks: Mapping[str, Mask] | None = None,
    max_rows: int = MAX_ROWS,
    turn: _Turn | None = None,
) -> StreamingResponse:
    """A streamed CSV download of ``rows`` (``filename`` gets ``.csv`` when it lacks it); ``turn``:
    the export slot taken by the caller, or one taken here (:class:`ExportBusy` when none frees)."""
    if not filename.endswith(".csv"):
        filename += ".csv"
    turn = turn or _Turn()  # taken before the answer starts, so that a busy process can still say 503

    def body() -> Iterator[bytes]:
        try:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\r\n")
            yield "\ufeff".encode()
            for i, line in enumerate(_cells(columns, rows, zone, masks or {}, max_rows)):
                writer.writerow(line)
                if i % 200 == 0 or buf.tell() > 64 * 1024:
                    yield buf.getvalue().encode("utf-8")
                    buf.seek(0)
                    buf.truncate()
            if buf.tell():
                yield buf.getvalue().encode("utf-8")
        finally:
            turn.release()

    try:
        return StreamingResponse(body(), media_type=CSV_MEDIA, headers=_headers(filename))
    except BaseException:
        turn.release()
        raise


def xlsx_bytes(
    columns: Sequence[ExportColumn],
    rows: Iterable[Mapping[str, Any]],
    *,
    zone: ZoneInfo | None = None,
    masks: Mapping[str, Mask] | None = None,
    max_rows: int = MAX_ROWS,
    sheet: str = "export",
) -> bytes:
    """An Excel workbook of one sheet (header row bold and frozen), as bytes."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet[:31] or "export")
    ws.freeze_panes = "A2"
    bold = Font(bold=True)
    for i, line in enumerate(_cells(columns, rows, zone, masks or {}, max_rows)):
        if i == 0:
            header = []
            for text in line:
                c = WriteOnlyCell(ws, value=text)
                c.font = bold
                header.append(c)
            ws.append(header)
        else:
            ws.append(line)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def xlsx_response(
    filename: str,
    columns: Sequence[ExportColumn],
    rows: Iterable[Mapping[str, Any]],
    *,
    zone: ZoneInfo | None = None,
    masks: Mapping[str, Mask] | None = None,
    max_rows: int = MAX_ROWS,
    sheet: str = "export",
    turn: _Turn | None = None,
) -> Response:
    """An Excel download of ``rows`` (``filename`` gets ``.xlsx`` when it lacks it). Call it in a
    thread (a sync route, or ``run_in_threadpool``): the workbook is written before it is sent.
    ``turn`` as for :func:`csv_response`."""
    if not filename.endswith(".xlsx"):
        filename += ".xlsx"
    turn = turn or _Turn()
    try:
        data = xlsx_bytes(columns, rows, zone=zone, masks=masks, max_rows=max_rows, sheet=sheet)
    finally:
        turn.release()
    return Response(data, media_type=XLSX_MEDIA, headers=_headers(filename))


def check_format(fmt: str) -> str:
    """``fmt`` when it is one of :data:`FORMATS`; :class:`ExportError` otherwise."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt[:16]!r}; one of {', '.join(FORMATS)}")
    return fmt


def export_response(
    app: ConsoleApp,
    principal: Principal,
    fmt: str,
    filename: str,
    columns: Sequence[ExportColumn],
    rows: Iterable[Mapping[str, Any]],
    *,
    action: str,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
    store: str | None = None,
    masks: Mapping[str, Mask] | None = None,
    max_rows: int = MAX_ROWS,
) -> Response:
    """Audit the export (``action``, ``target``, ``detail`` plus the format: ids and filters only,
    never personal data), then answer with the CSV or Excel file in the config's timezone. An
    unknown ``fmt`` is a 400 (:class:`~hub.console.app.ConsoleDenied`), no free export slot within
    :data:`WAIT_SECONDS` a 503 (not audited: nothing left). Call from a sync route."""
    from hub.console.app import ConsoleDenied

    try:
        check_format(fmt)
    except ExportError as exc:
        raise ConsoleDenied(400, str(exc)) from None
    try:
        turn = _Turn()
    except ExportBusy as exc:
        raise ConsoleDenied(503, str(exc)) from None
    try:
        app.audit(principal, action, target, {**(detail or {}), "format": fmt}, store=store)
    except BaseException:
        turn.release()
        raise
    if fmt == "csv":
        return csv_response(filename, columns, rows, zone=app.zone, masks=masks, max_rows=max_rows, turn=turn)
    return xlsx_response(filename, columns, rows, zone=app.zone, masks=masks, max_rows=max_rows, turn=turn)


__all__ = [
    "FORMATS",
    "MAX_ROWS",
    "ExportBusy",
    "ExportColumn",
    "ExportError",
    "Mask",
    "cell",
    "check_format",
    "csv_response",
    "disposition",
    "export_response",
    "query_rows",
    "xlsx_bytes",
    "xlsx_response",
]
