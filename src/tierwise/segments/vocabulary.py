"""A workspace's vocabulary: the enumerated values its rules may name, with its labels.

The tiers and RFM segments depend on a workspace's settings, which ``models`` loads; that
layer sits above this one, so it provides the vocabulary here when ``tierwise`` is imported
(``provide``), as the action hooks listen to ``store.changes``. Compiling a rule without it
is an error, never a rule whose labels silently match nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tierwise.definitions.vocabulary import Vocabulary
from tierwise.workspace import Workspace

Provider = Callable[[Workspace], Vocabulary]
_provider: list[Provider] = []

def provide(provider: Provider) -> None:
    """Install how this process builds a workspace's vocabulary (``tierwise`` does)."""
    _provider[:] = [provider]


def vocabulary(ws: Workspace, lang: str | None = None) -> Vocabulary:
    """The workspace's vocabulary, its messages in ``lang`` (default: the workspace's
    locale; the API passes the caller's language)."""
    if not _provider:
        raise RuntimeError("no vocabulary provider: import tierwise (the package), which "
                           "installs models.labels.vocabulary; rules must not be compiled "
                           "without their enumerated values")
    words = _provider[0](ws)
    return words if lang is None or lang == words.lang else replace(words, lang=lang)
