"""Triggers, playbooks and lead scoring as stored: each change a new version; the latest
enabled ones read once per text (the specs are ``definitions.automations``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

from tierwise.definitions.automations import (
    DEFAULT_FIRE_ON,
    EVENTS,
    MODELS,
    LeadScoring,
    Notify,
    Playbook,
    Sms,
    Trigger,
    Webhook,
    _Strict,
    duration,
    load_yaml,
    parse_definition,
)
from tierwise.definitions.vocabulary import Vocabulary
from tierwise.errors import NotFoundError, TierwiseError
from tierwise.security import targets
from tierwise.store import versions
from tierwise.store.control import Connection


def _stored(model: _Strict) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _actions(model: Any) -> list[Any]:
    return [model.action] if isinstance(model, Trigger) else \
        [s.action for s in model.steps] if isinstance(model, Playbook) else []


def webhook_urls(model: Any) -> list[str]:
    """The webhook URLs a trigger or playbook sends to."""
    return [a.url for a in _actions(model) if isinstance(a, Webhook)]


def robot_names(model: Any) -> list[str]:
    """The team chat robots a trigger or playbook posts to."""
    return [a.robot for a in _actions(model) if isinstance(a, Notify)]


def sender_names(model: Any) -> list[str]:
    """The SMS senders a trigger or playbook sends through."""
    return [a.sender for a in _actions(model) if isinstance(a, Sms)]


_KIND_ZH = {"trigger": "触发器", "playbook": "行动手册", "lead_scoring": "线索评分"}


def in_codes(model: Any, words: Vocabulary) -> Any:
    """``model`` with the tiers and stages it names as codes: a trigger on tier, lifecycle
    or opportunity stage changes ``from`` / ``to`` and a playbook's ``applies_to.tier`` may
    use the
    labels the workspace shows (``'A 类'``, ``'流失预警'``); a value that names none is an
    error with the valid ones, never a trigger that silently never fires."""
    try:
        if isinstance(model, Trigger) and model.on.event in ("tier_change",
                                                             "lifecycle_change",
                                                             "stage_change"):
            name = {"tier_change": "tier", "lifecycle_change": "lifecycle",
                    "stage_change": "opportunities.stage"}[model.on.event]
            on = model.on.model_copy(update={
                "from_": None if model.on.from_ is None else
                [words.code(name, v) for v in model.on.from_],
                "to": None if model.on.to is None else [words.code(name, v)
                                                        for v in model.on.to]})
            return model.model_copy(update={"on": on})
        if isinstance(model, Playbook) and model.applies_to.tier is not None:
            applies = model.applies_to.model_copy(
                update={"tier": words.code("tier", model.applies_to.tier)})
            return model.model_copy(update={"applies_to": applies})
    except TierwiseError as exc:
        raise TierwiseError.about(model.key, exc) from None
    return model


def save(conn: Connection, kind: str, model: Any, note: str | None = None, *,
         allowed_targets: Iterable[str], vocabulary: Vocabulary | None,
         robots: Iterable[str] | None = None, senders: Iterable[str] | None = None) -> int:
    """Store a validated definition as the next version; returns the version. Webhook
    targets of an enabled definition must be allowed (``security.targets``;
    ``allowed_targets`` is the workspace's ``webhook_allowed_targets``). Tiers and stages
    it names are stored as codes (``in_codes`` with the workspace's ``vocabulary``; None
    only to store again a definition read back as it is)."""
    if vocabulary is not None:
        model = in_codes(model, vocabulary)
    allowed = list(allowed_targets)
    for url in webhook_urls(model) if getattr(model, "enabled", True) else []:
        try:
            targets.check_at_save(url, allowed)
        except targets.TargetRefused as exc:
            raise TierwiseError.about(f"{kind} {model.key}", exc) from None
    for setting, named, given in (("robots", robot_names, robots),
                                  ("sms_senders", sender_names, senders)):
        known = sorted(given or ())
        for name in named(model) if given is not None else []:
            if name not in known:
                raise TierwiseError(
                    f"{kind} {model.key}: no {name!r} in tierwise.toml's {setting}; there "
                    f"are {', '.join(known) or 'none'}",
                    zh=f"{_KIND_ZH.get(kind, kind)} {model.key}：tierwise.toml 的 {setting} "
                       f"中没有 {name!r}；已有：{'、'.join(known) or '无'}")
    return versions.save(conn, kind, model.key, _stored(model), note)


def all_of(conn: Connection, kind: str, enabled_only: bool = False) -> dict[str, Any]:
    """The latest version of every definition of ``kind``, validated, by key."""
    found = {key: _validated(kind, spec) for key, _, spec in versions.latest_specs(conn, kind)}
    return {k: v for k, v in found.items() if not enabled_only or getattr(v, "enabled", True)}


@functools.lru_cache(maxsize=1024)
def _validated(kind: str, spec: str) -> Any:
    """A stored definition, validated once per text (every membership change of the
    real-time worker asks for the triggers and playbooks). Shared: read, never change."""
    return MODELS[kind].model_validate(json.loads(spec))


def get(conn: Connection, kind: str, key: str) -> Any:
    latest = versions.latest(conn, kind, key)
    if latest is None:
        raise NotFoundError(f"no {kind.replace('_', ' ')} {key!r}",
                            zh=f"没有{_KIND_ZH.get(kind, kind)} {key!r}")
    return MODELS[kind].model_validate(latest.spec)


def disable(conn: Connection, kind: str, key: str, note: str | None = None) -> int:
    model = get(conn, kind, key)
    return save(conn, kind, model.model_copy(update={"enabled": False}), note or "disabled",
                allowed_targets=(), vocabulary=None)


__all__ = ["DEFAULT_FIRE_ON", "EVENTS", "LeadScoring", "Playbook", "Trigger", "all_of",
           "disable", "duration", "get", "load_yaml", "parse_definition", "save"]
