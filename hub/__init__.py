"""cxhub engine: model, config, mapping engine, store, ingest, rules, outbox, scheduler, web.

``hub`` knows no platform: connectors plug in through :mod:`hub.sdk.connector` and the entry-point
group ``cxhub.connectors``.
"""

__version__ = "0.1.0"
