"""Triggers, playbooks and lead scoring as data: YAML files or API bodies, validated here,
stored as versioned definitions in the control store (kinds ``trigger``, ``playbook``,
``lead_scoring``).

A trigger (``triggers/welcome_vip.yaml``)::

    key: welcome_vip
    on: {event: enter, segment: vip}          # enter | exit | tier_change | lifecycle_change
                                              # | lead_qualified | sla_breach | stage_change
    action: {type: webhook, url: "https://crm.example.com/hooks/vip"}
    fire: every_entry                         # or once (per customer, ever)
    cooldown: 7d                              # no second firing within 7 days
    fire_on: [data_change, time, manual]      # add rule_change / backfill to fire on those
    holdout: 0.1                              # 10 % of customers get nothing (a control group)

Actions: ``webhook`` (url, channel), ``email`` (template per language), ``task`` (title,
role, due_hours, priority), ``tag`` (tag, op add|remove), ``notify`` (a team chat robot)
and ``sms`` (sender, template, params, purpose).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tierwise.definitions import invalid
from tierwise.definitions.segment_fields import RuleError, validate
from tierwise.definitions.segment_parser import parse
from tierwise.errors import Invalid, TierwiseError

_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
EVENTS = ("enter", "exit", "tier_change", "lifecycle_change", "lead_qualified", "sla_breach",
          "stage_change")
#: Reasons a membership change fires triggers by default: a rule edit or a backfill that
#: moves 10,000 customers does not send 10,000 webhooks unless asked to.
Reason = Literal["data_change", "time", "manual", "rule_change", "backfill"]
DEFAULT_FIRE_ON: tuple[Reason, ...] = ("data_change", "time", "manual")


def duration(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d`` or ``2w`` as a timedelta."""
    found = _DURATION.match(text.strip())
    if not found:
        raise Invalid(f"{text!r} is not a duration such as 30m, 12h, 7d or 2w",
                      zh=f"{text!r} 不是时长，应为例如 30m、12h、7d 或 2w")
    amount, unit = int(found.group(1)), found.group(2)
    return timedelta(minutes=amount) if unit == "m" else timedelta(
        hours=amount * {"h": 1, "d": 24, "w": 168}[unit])


def _setting_name(value: str, whose: str, whose_zh: str) -> str:
    """A robot's or SMS sender's name, as the workspace settings name it."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", value):
        raise Invalid(f"{whose} name is lower-case letters, digits and _",
                      zh=f"{whose_zh}名称由小写字母、数字和 _ 组成")
    return value


def _check_key(value: str) -> str:
    if not _KEY.match(value):
        raise Invalid("a key is lower-case letters, digits and _, starting with a letter "
                      "(at most 64)",
                      zh="key 由小写字母、数字和 _ 组成，以字母开头（最多 64 个字符）")
    return value


def _check_duration(value: str | None) -> str | None:
    if value is not None:
        duration(value)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Webhook(_Strict):
    type: Literal["webhook"]
    url: str
    #: The customer's contact channel this webhook reaches (sms, wechat, …), if any: the
    #: customer's consent and unsubscribes for it are honoured.
    channel: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        # Stored definitions are read with this check too; the stricter one (no control
        # characters or credentials, an allowed address) runs when a definition is saved
        # and at every delivery (``security.targets``).
        if not value.startswith(("http://", "https://")):
            raise Invalid("a webhook url starts with http:// or https://",
                          zh="webhook 的 url 应以 http:// 或 https:// 开头")
        return value


class Template(_Strict):
    subject: str
    body: str


class Email(_Strict):
    type: Literal["email"]
    #: Per language (zh-CN, en): the customer's ``attributes.language`` picks, else the
    #: workspace locale. Jinja2 (sandboxed) with ``customer``, ``event`` and ``segment``.
    templates: dict[Literal["zh-CN", "en"], Template]
    #: Marketing mail needs consent given; service mail only the absence of an unsubscribe.
    purpose: Literal["marketing", "service"] = "marketing"

    @field_validator("templates")
    @classmethod
    def _some(cls, value: dict[str, Template]) -> dict[str, Template]:
        if not value:
            raise Invalid("give a template for zh-CN or en (or both)",
                          zh="请给出 zh-CN 或 en 的模板（或两者）")
        return value


class Task(_Strict):
    type: Literal["task"]
    title: str
    body: str | None = None
    #: Assigned to the customer's owner; without one, to this role's queue.
    role: str = "operator"
    due_hours: float | None = None
    priority: Literal["low", "normal", "high", "urgent"] = "normal"


class Tag(_Strict):
    type: Literal["tag"]
    tag: str
    op: Literal["add", "remove"] = "add"


class Notify(_Strict):
    """A message to a team's chat (企业微信, 钉钉 or 飞书 group robot) about a customer: for
    the people who act, not the customer (no consent needed; personal data masked)."""

    type: Literal["notify"]
    #: A robot of the workspace's ``robots`` setting.
    robot: str
    #: Per language (the workspace locale picks): Jinja2 (sandboxed) with ``customer``
    #: (masked), ``event``, ``segment``, ``reason`` and ``link`` (the customer 360); empty:
    #: the built-in message (who, why, the link).
    text: dict[Literal["zh-CN", "en"], str] = Field(default_factory=dict)

    _robot = field_validator("robot")(classmethod(
        lambda cls, v: _setting_name(v, "a robot's", "机器人")))


class Sms(_Strict):
    """A text message to the customer through an SMS provider's approved template (短信):
    consent for ``sms`` and the purpose is checked when it is sent."""

    type: Literal["sms"]
    #: A sender of the workspace's ``sms_senders`` setting.
    sender: str
    #: The provider's template: Alibaba's TemplateCode (SMS_123456789), Tencent's
    #: TemplateId (1234567); or one per language (``{zh-CN: SMS_1, en: SMS_2}``: the
    #: customer's ``attributes.language``, else the workspace locale, picks).
    template: str | dict[Literal["zh-CN", "en"], str]
    #: The template's parameters, in its order (Tencent's are positional): each value a
    #: Jinja2 template (sandboxed) with ``customer``, ``event`` and ``segment``.
    params: dict[str, str] = Field(default_factory=dict)
    #: Marketing messages need consent given; service messages the absence of an opt-out.
    purpose: Literal["marketing", "service"] = "marketing"

    _sender = field_validator("sender")(classmethod(
        lambda cls, v: _setting_name(v, "a sender's", "短信发送方")))

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        for code in [value] if isinstance(value, str) else list(value.values()) or [""]:
            if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", code):
                raise Invalid(f"template {code!r}: the provider's template code or id, such "
                              "as SMS_123456789 or 1234567",
                              zh=f"template {code!r}：应为服务商的模板代码或 ID，例如 "
                                 "SMS_123456789 或 1234567")
        return value


Action = Annotated[Webhook | Email | Task | Tag | Notify | Sms, Field(discriminator="type")]


class On(_Strict):
    event: Literal["enter", "exit", "tier_change", "lifecycle_change", "lead_qualified",
                   "sla_breach", "stage_change"]
    segment: str | None = None
    #: For tier_change / lifecycle_change / stage_change (an opportunity's): only changes
    #: from / to these values.
    from_: list[str] | None = Field(default=None, alias="from")
    to: list[str] | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def model_post_init(self, _context: Any) -> None:
        if self.event in ("enter", "exit") and not self.segment:
            raise Invalid(f"on.event {self.event} needs on.segment",
                          zh=f"on.event {self.event} 需要 on.segment")
        if self.event not in ("enter", "exit") and self.segment:
            raise Invalid(f"on.segment applies to enter and exit, not {self.event}",
                          zh=f"on.segment 只用于 enter 和 exit，不用于 {self.event}")


class Trigger(_Strict):
    key: str
    names: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    on: On
    action: Action
    fire: Literal["every_entry", "once"] = "every_entry"
    cooldown: str | None = None
    fire_on: list[Reason] = Field(default_factory=lambda: list(DEFAULT_FIRE_ON))
    holdout: float = Field(default=0.0, ge=0.0, lt=1.0)
    max_attempts: int = Field(default=8, ge=1, le=50)
    #: First retry after this many seconds, doubling each time (capped at 6 hours).
    retry_seconds: float = Field(default=30.0, gt=0, le=3600)
    enabled: bool = True

    _key = field_validator("key")(classmethod(lambda cls, v: _check_key(v)))
    _cooldown = field_validator("cooldown")(classmethod(lambda cls, v: _check_duration(v)))


def _rule(value: str | None) -> str | None:
    """A condition on the customer, in the segment language (checked when saved); a
    mistake is that field's error."""
    if value is not None:
        try:
            validate(parse(value))
        except TierwiseError as exc:
            raise Invalid(getattr(exc, "en", None) or str(exc),
                          zh=getattr(exc, "zh", None)) from None
    return value


class Step(_Strict):
    #: Delay after the customer entered (0d: at once).
    after: str = "0d"
    action: Action
    #: Carried out only if this holds for the customer when the step is due (a segment
    #: rule: ``COUNT(orders, LAST 3d) = 0``); otherwise skipped and the run moves on.
    only_if: str | None = None

    _after = field_validator("after")(classmethod(lambda cls, v: _check_duration(v)))
    _only_if = field_validator("only_if")(classmethod(lambda cls, v: _rule(v)))


class AppliesTo(_Strict):
    segment: str | None = None
    tier: str | None = None

    def model_post_init(self, _context: Any) -> None:
        if (self.segment is None) == (self.tier is None):
            raise Invalid("applies_to names a segment or a tier (one of them)",
                          zh="applies_to 指定一个分群或一个等级（二选一）")


class Playbook(_Strict):
    """差异化跟进策略: how customers of one tier or segment are served and followed up."""

    key: str
    names: dict[str, str] = Field(default_factory=dict)
    applies_to: AppliesTo
    #: Smaller first when several playbooks apply to a customer.
    priority: int = 100
    service_level: str = "standard"
    sla_response_hours: float | None = Field(default=None, gt=0)
    #: Priority given to tickets of these customers (escalation).
    ticket_priority: Literal["low", "normal", "high", "urgent"] | None = None
    owner_role: str | None = None
    cadence_days: int | None = Field(default=None, ge=1)
    channels: list[str] = Field(default_factory=list)
    offers: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    #: The customer's goal (a segment rule: ``COUNT(orders, LAST 7d) >= 1``): when it holds
    #: as a step falls due, the run ends as ``converted`` and no further step is taken.
    #: Leaving the segment or tier ends a run too (``stopped``).
    exit_when: str | None = None
    holdout: float = Field(default=0.0, ge=0.0, lt=1.0)
    enabled: bool = True

    _key = field_validator("key")(classmethod(lambda cls, v: _check_key(v)))
    _exit_when = field_validator("exit_when")(classmethod(lambda cls, v: _rule(v)))


class EventPoints(_Strict):
    #: A condition on an event's columns, as in ``COUNT(events WHERE …)``.
    when: str
    points: float

    @field_validator("when")
    @classmethod
    def _rule(cls, value: str) -> str:
        validate(parse(value), source="events")
        return value


class PropertyPoints(_Strict):
    #: A condition on the customer, as in a segment rule.
    when: str
    points: float

    @field_validator("when")
    @classmethod
    def _rule(cls, value: str) -> str:
        validate(parse(value))
        return value


class LeadScoring(_Strict):
    key: Literal["default"] = "default"
    events: list[EventPoints] = Field(default_factory=list)
    properties: list[PropertyPoints] = Field(default_factory=list)
    #: Points of an event halve every this many days.
    half_life_days: float = Field(default=30.0, gt=0)
    threshold: float = Field(default=50.0, gt=0)
    #: Work handed to sales when a lead qualifies (None: only the lead_qualified event).
    task: Task | None = None


MODELS: dict[str, type[_Strict]] = {"trigger": Trigger, "playbook": Playbook,
                                    "lead_scoring": LeadScoring}
FOLDERS = {"trigger": "triggers", "playbook": "playbooks", "lead_scoring": "lead_scoring"}


def parse_definition(kind: str, data: Any, where: str) -> Any:
    """Validate ``data`` as a ``kind`` definition; errors name ``where`` and each field."""
    if kind not in MODELS:
        raise TierwiseError(f"unknown kind {kind!r}; expected one of {', '.join(MODELS)}",
                            zh=f"未知的定义类型 {kind!r}：应为 {', '.join(MODELS)} 之一")
    try:
        return MODELS[kind].model_validate(data)
    except ValidationError as exc:
        raise TierwiseError.about(where, invalid.problems(exc, kind)) from None
    except (RuleError, ValueError) as exc:
        raise TierwiseError.about(where, exc) from None


def load_yaml(kind: str, text: str, where: str) -> Any:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise TierwiseError(f"{where}: not valid YAML: {exc}",
                            zh=f"{where}：不是有效的 YAML：{exc}") from None
    if isinstance(data, dict) and True in data and "on" not in data:
        data["on"] = data.pop(True)  # YAML 1.1 reads a bare ``on:`` key as true
    return parse_definition(kind, data, where)
