"""The values a workspace's rules may name, with the labels it shows for them: the fixed
enumerations of ``definitions.vocabulary`` plus the tiers and RFM segments of its current
settings and its opportunity stages (``segments.vocabulary`` asks for them through
``vocabulary``)."""

from __future__ import annotations

from collections.abc import Sequence

from tierwise.definitions.opportunities import DEFAULT_STAGES, stage_enumerations
from tierwise.definitions.vocabulary import FIXED, Enumeration, Vocabulary
from tierwise.models.compute import load_settings
from tierwise.models.rfm import RF_MAP, SegmentScheme
from tierwise.models.tiers import TierSpec
from tierwise.workspace import Workspace


def vocabulary_of(tiers: TierSpec, scheme: SegmentScheme, lang: str,
                  stages: Sequence[str] = DEFAULT_STAGES) -> Vocabulary:
    return Vocabulary((*FIXED, Enumeration.of("tier", tiers.labels, tiers.tiers),
                       Enumeration.of("rfm.segment", scheme.labels),
                       *stage_enumerations(stages)), lang)


def vocabulary(ws: Workspace) -> Vocabulary:
    settings = load_settings(ws, for_compute=False)
    return vocabulary_of(settings.tiers, settings.scheme, ws.config.locale,
                         ws.config.opportunity_stages)


#: The vocabulary of default settings (tiers A–D, the R×F map), messages in English.
DEFAULT = vocabulary_of(TierSpec(), RF_MAP, "en")
