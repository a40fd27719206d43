"""Fixtures for the feedback tests."""

from __future__ import annotations

import pytest
from kit.cases import make_service

from hub.features.feedback.cases import CaseService
from hub.sdk.testing import FakeClock
from hub.store import Store


@pytest.fixture
def service(store: Store, clock: FakeClock) -> CaseService:
    return make_service(store, clock)
