"""Shared pieces of the survey tests: a config builder, a runtime on a test store, checkouts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from kit.surveys import config_text

from hub.registry import ConnectorInfo
from hub.sdk.connector import ConnectorOptions, Destination, OutboundMessage, Receipt
from hub.sdk.testing import FakeClock
from hub.store import Store


class RecordingDestination(Destination):
    """A destination that only records (the delivery worker is someone else's part)."""

    kind = "test_recording"
    title = "records messages (tests)"

    class Options(ConnectorOptions):
        pass

    sent: ClassVar[list[OutboundMessage]] = []

    def send(self, message: OutboundMessage) -> Receipt:
        self.sent.append(message)
        return Receipt(message_id=message.key)


@pytest.fixture(autouse=True)
def test_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``test_recording`` a registered connector for the configs these tests load."""
    import hub.registry

    recording = ConnectorInfo("test_recording", "tests", RecordingDestination, None)
    real = hub.registry.lookup
    monkeypatch.setattr(hub.registry, "lookup", lambda name: recording if name == "test_recording" else real(name))


@pytest.fixture
def make_runtime(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., Any]]:
    """``make_runtime(surveys=..., store=...)`` -> a migrated Runtime on the fake clock."""
    from kit.runtime import build_runtime

    made: list[Any] = []

    def make(surveys: dict[str, Any] | None = None, store: Store | None = None, **server: Any) -> Any:
        rt = build_runtime(
            config_text(surveys, **server),
            path=tmp_path / "cxhub.yaml",
            store=store if store is not None else f"sqlite:///{tmp_path / 'cxhub.db'}",
            clock=clock,
        )
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()
