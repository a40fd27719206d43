"""Negative feedback to staff: detection, cases, routing, SLA and escalation, one-tap actions.

``install(runtime)`` (listed in ``hub.runtime.FEATURES``) wires it in; this package's ``__init__``
stays import-light because ``hub.config`` imports ``hub.features.feedback.config``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.runtime import Runtime


def install(runtime: Runtime) -> Any:
    """Add the ingest hook, the SLA sweep job and the staff-action routes to ``runtime``."""
    from hub.features.feedback.feature import install as _install

    return _install(runtime)
