"""An example cxhub connector package.

- :class:`~cxhub_connector_example.nps.NpsAnswersSource` (``example_nps``): a pull source reading
  NPS answers from a survey vendor's paged JSON API, incrementally by the API's cursor.
- :class:`~cxhub_connector_example.followup.NpsFollowUpDestination` (``example_nps_followup``):
  a destination posting follow-up notes back to the same vendor.
- :mod:`cxhub_connector_example.fake`: an in-memory fake of that API, for tests and demos.

Both connectors import only ``hub.sdk``, and register through the ``cxhub.connectors`` entry
points in ``pyproject.toml``.
"""

__version__ = "0.1.0"
