"""Mapping engine micro-benchmark: CPU time per record of ``CompiledMapping.apply``.

    .venv/bin/python bench/mapping.py [--records 20000] [--repeat 3]

Two figures per mapping, in microseconds of CPU (``time.process_time``) per record:

- **doc**: everything ``apply`` does before the final ``TouchpointEvent.model_validate(doc)``
  (``CompiledMapping.build_doc``; for a ``hub/mapping.py`` from before it existed, ``apply`` with
  the model's validation swapped for one that returns the doc);
- **apply**: the whole ``apply``, validation included.

Mappings and records:

- ``retail_checkout``: the JSON checkouts of ``bench/ingest.py`` (``records()``: 3 items each);
- ``pos_order``: rows shaped like what the ``sql`` connector yields for the POS preset (a header
  row of driver values - ``datetime``, ``Decimal``, ``int``, ``str``, ``None`` - with a ``lines``
  list of 3 child rows).

Each measurement runs ``--repeat`` times; the best and the median are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def pos_rows(n: int) -> list[dict[str, Any]]:
    """Header rows + ``lines`` children as ``connectors/sql/`` yields them (driver types kept)."""
    start = datetime(2026, 1, 1)  # a `timestamp` column: naive, the mapping's time zone applies
    out = []
    for i in range(n):
        member = i % 50_000
        lines: list[dict[str, Any]] = [
            {
                "line_id": i * 10 + k,
                "order_id": i,
                "line_no": k,
                "sku": f"69{(i * 7 + k) % 2000:06d}",
                "product_name": f"商品{(i * 7 + k) % 2000}",
                "category_name": "乳制品",
                "qty": Decimal(f"{k + 1}.000"),
                "unit_price": Decimal(f"{(i * 7 + k) % 2000}.50"),
                "line_amount": Decimal(f"{((i * 7 + k) % 2000 + 0.5) * (k + 1):.2f}"),
            }
            for k in range(3)
        ]
        out.append(
            {
                "order_id": i,
                "order_no": f"S{i:09d}",
                "status": "PAID",
                "paid_at": start + timedelta(seconds=i),
                "updated_at": start + timedelta(seconds=i),
                "total_amount": sum((ln["line_amount"] for ln in lines), Decimal(0)),
                "currency": "CNY",
                "store_code": f"ST{i % 50:03d}",
                "store_name": f"门店{i % 50}",
                "region": "华东",
                "brand": "好邻居",
                "staff_id": 100 + i % 40,
                "terminal_id": f"T{i % 5}",
                "pay_method": "wechat" if i % 2 else "alipay",
                "member_no": None if i % 3 == 0 else f"M{member:08d}",
                "mobile": None if i % 3 == 0 else f"138{member:08d}",
                "member_level": None if i % 3 == 0 else "gold",
                "lines": lines,
            }
        )
    return out


class _DocOnly:
    """Stands in for ``TouchpointEvent`` inside ``hub.mapping``: validation returns the doc."""

    @staticmethod
    def model_validate(doc: Any) -> Any:
        return doc


def _time(fn: Callable[[], None], n: int, repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        c0 = time.process_time()
        fn()
        runs.append((time.process_time() - c0) / n * 1e6)
    return min(runs), statistics.median(runs)


def measure(name: str, rows: list[dict[str, Any]], repeat: int) -> None:
    import hub.mapping as hm

    mapping = hm.load_mapping_file(hm.preset_path(name))  # type: ignore[arg-type]
    ids = [str(i) for i in range(len(rows))]

    def run() -> None:
        apply = mapping.apply
        for row, ext in zip(rows, ids, strict=True):
            apply(row, source="bench", external_id=ext)

    # every record maps (no `when` skip, no error): the figures are per mapped record
    assert all(mapping.apply(r, source="bench", external_id="0") is not None for r in rows[:100])
    run()  # warm-up
    build_doc = getattr(mapping, "build_doc", None)
    if build_doc is not None:

        def docs() -> None:
            for row, ext in zip(rows, ids, strict=True):
                build_doc(row, source="bench", external_id=ext)

        doc_best, doc_med = _time(docs, len(rows), repeat)
    else:
        real = hm.TouchpointEvent
        hm.TouchpointEvent = _DocOnly  # type: ignore[misc,assignment]
        try:
            doc_best, doc_med = _time(run, len(rows), repeat)
        finally:
            hm.TouchpointEvent = real  # type: ignore[misc]
    all_best, all_med = _time(run, len(rows), repeat)
    print(
        f"{name:16s} doc: best {doc_best:6.1f} us/record, median {doc_med:6.1f}   "
        f"apply (with validation): best {all_best:6.1f}, median {all_med:6.1f}   ({len(rows):,} records x {repeat})"
    )


def main() -> None:
    from ingest import records  # bench/ingest.py

    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; CPU time")
    measure("retail_checkout", list(records(args.records)), args.repeat)
    measure("pos_order", pos_rows(args.records), args.repeat)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (a busy machine slows every figure)")


if __name__ == "__main__":
    main()
