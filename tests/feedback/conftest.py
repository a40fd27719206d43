"""Fixtures for the feedback tests."""

from __future__ import annotations

import pytest
from casekit import make_service

from hub.feedback.cases import CaseService
from hub.store import Store
from hub.testing import FakeClock


@pytest.fixture
def service(store: Store, clock: FakeClock) -> CaseService:
    return make_service(store, clock)
