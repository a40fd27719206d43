"""Pausing Python's cyclic garbage collector over a batch: what a pull source that builds many
objects per batch calls (the hub's ingest does the same around every batch it stores)."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterator

_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_restore = True
_gc_since = 0.0
_GC_MAX_PAUSE_S = 10.0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch is processed.

    A batch keeps thousands of freshly built events (each a few dozen container objects) alive at
    once; with the collector on, every few hundred allocations it traverses all of them again:
    measured at ~40 us per event on retail checkouts, as much as the mapping itself. The batch's
    objects are freed by reference counting when it ends; the collector runs again between
    batches. Reentrant and shared by threads: the collector restarts when the last pauser leaves,
    and a pause that lasts is broken by a full collection every ``_GC_MAX_PAUSE_S`` seconds
    (:func:`gc_checkpoint`).
    """
    global _gc_pausers, _gc_restore, _gc_since
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_restore = gc.isenabled()
            _gc_since = time.monotonic()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_restore:
                gc.enable()
        gc_checkpoint()


def gc_checkpoint() -> None:
    """While the collector is paused (:func:`gc_paused`), run a full collection when the pause has
    lasted over ``_GC_MAX_PAUSE_S``: a long pull stream, or threads whose batches overlap without
    end, would otherwise never collect cyclic garbage. Called as pauses end and between batches."""
    global _gc_since
    with _gc_lock:
        due = _gc_pausers > 0 and _gc_restore and time.monotonic() - _gc_since > _GC_MAX_PAUSE_S
        if due:
            _gc_since = time.monotonic()
    if due:
        gc.collect()
