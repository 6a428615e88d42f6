"""The values a workspace's rules may name, with the labels it shows for them: the fixed
enumerations of ``definitions.vocabulary`` plus the tiers and RFM segments of its current
settings (``segments.literals`` asks for them through ``vocabulary``)."""

from __future__ import annotations

from tierwise.definitions.vocabulary import FIXED, Enumeration, Vocabulary
from tierwise.models.compute import load_settings
from tierwise.workspace import Workspace


def vocabulary(ws: Workspace) -> Vocabulary:
    settings = load_settings(ws)
    tiers = Enumeration.of("tier", settings.tiers.labels, settings.tiers.tiers)
    segments = Enumeration.of("rfm.segment", settings.scheme.labels)
    return Vocabulary((*FIXED, tiers, segments), ws.config.locale)
