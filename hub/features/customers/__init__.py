"""The customer view and churn risk (the ``customers:`` section; see docs/customers.md).

The feature adds the scoring job (a periodic job on the leader), the JSON API (``/api/customers``,
bearer keys with a scope in the org hierarchy) and ``cxhub customers ...``. Its public interface,
``runtime.features["customers"]``, is :class:`~hub.features.customers.service.CustomerService`.
Win-back cases go through the feedback feature's case API and recovery surveys through the surveys
feature's engine; both are installed first when present.

This module stays import-light: the ``cxhub`` command loads the feature object on every start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.feature import Feature

if TYPE_CHECKING:
    from pydantic import BaseModel

    from hub.runtime import Runtime


class Customers(Feature):
    """The customers plug-in: scores, the customer view, action rules, their tables."""

    name = "customers"
    title = "customer view, purchase model (BG/NBD), churn risk with reasons, win-back actions"
    section = "customers"
    after = ("surveys", "feedback")
    cli = "commands.customers:register"
    #: actions follow a merge; the absorbed customer's score is dropped (the next scoring redoes the survivor's)
    customer_columns = (("customer_actions", "customer_id"),)
    merge = "hub.features.customers.service:forget_scores"
    privacy = "hub.features.customers.privacy"  # retention and forgetting of its rows

    def config_model(self) -> type[BaseModel]:
        from hub.features.customers.config import CustomersConfig

        return CustomersConfig

    @property
    def migrations(self) -> Path:
        return Path(__file__).resolve().parent / "migrations"

    def install(self, runtime: Runtime) -> Any:
        """Add the scoring job and the JSON API to ``runtime``."""
        from hub.features.customers.service import install as _install

        return _install(runtime)


feature = Customers()


def install(runtime: Runtime) -> Any:
    """Install the feature on ``runtime`` by hand (tests and tools that build a runtime piecemeal)."""
    return feature.install(runtime)
