"""Issue 13: the edge's defaults live in one place, the settings."""

from __future__ import annotations

import dataclasses

from gitpaas.edge.config import EdgeConfig
from gitpaas.settings import load


def test_an_edge_built_without_settings_has_the_settings_defaults():
    settings = load({}, environ={})
    from_settings = EdgeConfig.from_settings(settings)
    bare = EdgeConfig(from_settings.directory, from_settings.listen,
                      from_settings.redis_url, from_settings.prefix)
    for field in dataclasses.fields(EdgeConfig):
        assert getattr(bare, field.name) == getattr(from_settings, field.name), field.name
