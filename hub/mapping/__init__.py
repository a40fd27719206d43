"""YAML mappings: a raw payload (dict from JSON, XML, a form or a SQL row) -> ``TouchpointEvent``.

One module per job:

- ``compile``: the mapping file format, and checking and compiling a parsed file into a
  ``CompiledMapping`` (every problem a ``MappingError`` naming ``file:line`` and the field);
- ``targets``: which event fields a mapping may write, and the coercions each accepts;
- ``coerce``: raw values -> str, int, decimal, float, bool, datetime, date;
- ``specs``: the compiled fields, and the helpers both document builders call per record;
- ``codegen``: one Python document builder per mapping, generated and ``exec``-compiled at load;
- ``apply``: ``CompiledMapping``: a payload -> document -> validated event;
- ``load``: mapping files, YAML text, the presets in ``mappings/``, references from a config;
- ``fixtures``: the ``NAME.fixtures.yaml`` cases beside a mapping, run by ``cxhub map test``.

JMESPath expressions are compiled by ``hub.sdk.expressions`` (connectors use them too).
"""

from hub.mapping.apply import CompiledMapping
from hub.mapping.coerce import coerce, coercer
from hub.mapping.compile import compile_mapping
from hub.mapping.load import (
    PRESET_DIR,
    fixtures_path_for,
    list_presets,
    load_mapping_file,
    load_mapping_text,
    preset_path,
    resolve_mapping_ref,
)
from hub.mapping.specs import MISSING
from hub.mapping.targets import event_targets
from hub.sdk.expressions import compile_expression

__all__ = [
    "MISSING",
    "PRESET_DIR",
    "CompiledMapping",
    "coerce",
    "coercer",
    "compile_expression",
    "compile_mapping",
    "event_targets",
    "fixtures_path_for",
    "list_presets",
    "load_mapping_file",
    "load_mapping_text",
    "preset_path",
    "resolve_mapping_ref",
]
