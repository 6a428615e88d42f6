"""Workspace settings: ``tierwise.toml`` at the workspace root."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import typing
from dataclasses import asdict, dataclass, field
from datetime import time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomli_w

from tierwise.definitions.opportunities import DEFAULT_LOST, DEFAULT_STAGES, DEFAULT_WON
from tierwise.definitions.opportunities import stage_problem as opportunity_stage_problem
from tierwise.definitions.partitions import BUCKETS
from tierwise.definitions.schemas import FACT_TABLES
from tierwise.errors import WorkspaceError

CONFIG_FILE = "tierwise.toml"
ENV_WORKSPACE = "TIERWISE_WORKSPACE"
LOCALES = ("zh-CN", "en")
ENGINES = ("duckdb", "spark")


ROBOT_PLATFORMS = ("wecom", "dingtalk", "feishu")
#: The name of an environment variable, which also names a kept channel credential.
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


def _robot_problem(name: str, robot: object) -> tuple[str, str] | None:
    """What is wrong with one robot setting (English, Chinese), or None."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", name):
        return ("a robot's name is lower-case letters, digits and _",
                "机器人名称由小写字母、数字和 _ 组成")
    if not isinstance(robot, dict) or not all(isinstance(v, str) for v in robot.values()):
        return ("expected a table such as {platform = \"dingtalk\", url_env = \"TW_URL\"}",
                "应为表，例如 {platform = \"dingtalk\", url_env = \"TW_URL\"}")
    unknown = sorted(set(robot) - {"platform", "url_env", "secret_env"})
    if unknown:
        return (f"unknown key(s) {', '.join(unknown)}; expected platform, url_env, secret_env",
                f"未知的键 {', '.join(unknown)}；可用：platform、url_env、secret_env")
    if robot.get("platform") not in ROBOT_PLATFORMS:
        return (f"platform {robot.get('platform')!r}: expected one of "
                f"{', '.join(ROBOT_PLATFORMS)}",
                f"platform {robot.get('platform')!r}：应为 {'、'.join(ROBOT_PLATFORMS)} 之一")
    for key in ("url_env", "secret_env"):
        value = robot.get(key)
        if (key == "url_env" or value is not None) and not ENV_NAME.match(value or ""):
            return (f"{key} {value!r}: expected the name of an environment variable "
                    "(TW_SALES_ROBOT_URL)",
                    f"{key} {value!r}：应为环境变量名（TW_SALES_ROBOT_URL）")
    return None


#: How each table setting looks, for the error that says one is not a table.
TABLE_EXAMPLES = {
    "rate_limits": '{"sms:shop" = 600}', "message_costs": '{"sms:shop" = 0.045}',
    "contact_cap": "{messages = 3, days = 7}",
    "robots": '{sales = {platform = "dingtalk", url_env = "TW_SALES_ROBOT_URL"}}',
    "sms_senders": '{shop = {provider = "aliyun", sign_name = "某某商城", key_id_env = '
                   '"TW_SMS_KEY_ID", secret_env = "TW_SMS_SECRET"}}',
}
SMS_PROVIDERS = ("aliyun", "tencent")
_SMS_KEYS = ("provider", "sign_name", "key_id_env", "secret_env", "url_env", "region",
             "app_id")


def _sms_problem(name: str, sender: object) -> tuple[str, str] | None:
    """What is wrong with one SMS sender setting (English, Chinese), or None."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", name):
        return ("a sender's name is lower-case letters, digits and _",
                "短信发送方名称由小写字母、数字和 _ 组成")
    if not isinstance(sender, dict) or not all(isinstance(v, str) for v in sender.values()):
        return ("expected a table such as {provider = \"aliyun\", sign_name = \"某某商城\", "
                "key_id_env = \"TW_SMS_KEY_ID\", secret_env = \"TW_SMS_SECRET\"}",
                "应为表，例如 {provider = \"aliyun\", sign_name = \"某某商城\", "
                "key_id_env = \"TW_SMS_KEY_ID\", secret_env = \"TW_SMS_SECRET\"}")
    unknown = sorted(set(sender) - set(_SMS_KEYS))
    if unknown:
        return (f"unknown key(s) {', '.join(unknown)}; expected {', '.join(_SMS_KEYS)}",
                f"未知的键 {', '.join(unknown)}；可用：{'、'.join(_SMS_KEYS)}")
    if sender.get("provider") not in SMS_PROVIDERS:
        return (f"provider {sender.get('provider')!r}: expected one of "
                f"{', '.join(SMS_PROVIDERS)}",
                f"provider {sender.get('provider')!r}：应为 {'、'.join(SMS_PROVIDERS)} 之一")
    if not sender.get("sign_name", "").strip():
        return ("sign_name: the approved signature (签名) the messages go out under",
                "sign_name：短信签名（须已审核通过）")
    if sender["provider"] == "tencent" and not sender.get("app_id", "").strip():
        return ("app_id: Tencent Cloud's SmsSdkAppId of the application",
                "app_id：腾讯云短信应用的 SmsSdkAppId")
    for key in ("key_id_env", "secret_env", "url_env"):
        value = sender.get(key)
        if (key != "url_env" or value is not None) and not ENV_NAME.match(value or ""):
            return (f"{key} {value!r}: expected the name of an environment variable "
                    "(TW_SMS_SECRET)", f"{key} {value!r}：应为环境变量名（TW_SMS_SECRET）")
    return None


#: Messages a minute a team chat robot takes, as each platform documents it (企业微信 and
#: 钉钉: 20; 飞书: 100); ``rate_limits`` may set others.
ROBOT_RATES = {"wecom": 20, "dingtalk": 20, "feishu": 100}
_RATE_KEY = re.compile(r"^(webhook|email|(robot|sms):[a-z][a-z0-9_]{0,40})$")


@dataclass(frozen=True)
class WorkspaceConfig:
    """What ``tierwise init`` writes. Paths in ``control_store`` may be relative to the workspace.

    >>> WorkspaceConfig().timezone
    'Asia/Shanghai'
    """

    name: str = "tierwise"
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"
    locale: Literal["zh-CN", "en"] = "zh-CN"
    engine: Literal["duckdb", "spark"] = "duckdb"
    #: SQLAlchemy URL; the default is an SQLite file inside the workspace.
    control_store: str = "sqlite:///control.db"
    #: Region for phone numbers written without a country code (ISO 3166 alpha-2).
    phone_region: str = "CN"
    #: Key file for PII encryption when $TIERWISE_PII_KEY is not set (relative to the
    #: workspace or absolute; keep it outside the workspace in production).
    pii_key_file: str = "keys/pii.json"
    #: Key file of the audit chain when $TIERWISE_AUDIT_KEY is not set (keep it outside the
    #: workspace too: whoever holds it can write entries that verify).
    audit_key_file: str = "keys/audit.json"
    #: Days to keep facts per table, e.g. {events = 365}; `tierwise serve` applies it hourly.
    retention_days: dict[str, int] = field(default_factory=dict)
    #: Seconds between sweeps that move customers across time windows (LAST 30d, -90d, …).
    sweep_seconds: int = 10
    #: Seconds between sweeps of each clock-driven segment for everyone (the sweeps in
    #: between look only at the customers on a window's edge).
    full_sweep_seconds: int = 900
    #: Hours the intake remembers the keys of rows it has moved to the fact store: a row
    #: posted again within them is acknowledged as a duplicate (later, it is accepted and
    #: imported as unchanged).
    intake_keep_hours: float = 168.0
    #: Real-time workers that share the customers (docs/realtime.md, "Partitions"): each
    #: `tierwise serve` or `tierwise worker` process takes one partition's lease. More
    #: than 1 needs a PostgreSQL control store.
    realtime_partitions: int = 1
    #: Least seconds from the start of one real-time round to the start of the next while
    #: rows keep arriving: under steady load they gather into fewer, larger rounds (each
    #: round has a fixed cost), at the price of up to this much more delay before a
    #: posted row counts. A row that arrives while the worker is idle starts a round at
    #: once. 0 runs rounds back to back.
    realtime_round_seconds: float = 0.25
    #: Outgoing mail for e-mail actions: smtp://host:port, smtp+starttls://user@host:587 or
    #: smtps://user@host:465 (the password from $TIERWISE_SMTP_PASSWORD). Empty: e-mail
    #: actions wait (they are retried) until it is set.
    smtp_url: str = ""
    mail_from: str = "tierwise@localhost"
    #: Seconds a webhook receiver has to answer before the attempt counts as failed.
    webhook_timeout_seconds: float = 10.0
    #: Hosts (``crm.internal``) and networks (``10.20.0.0/16``) webhooks may reach although
    #: they are loopback, private, link-local or otherwise not public; by default webhooks
    #: only go to public addresses.
    webhook_allowed_targets: list[str] = field(default_factory=list)
    #: Attribute and event-property keys that hold personal data, beyond the common names
    #: tierwise knows (ID card, passport, WeChat, QQ, bank card, address, e-mail, phone…):
    #: encrypted at rest, masked like name, e-mail and phone, and only usable in rules by
    #: roles that may read PII.
    sensitive_attributes: list[str] = field(default_factory=list)
    #: Keys the common names would catch that are not personal data here.
    public_attributes: list[str] = field(default_factory=list)
    #: Team chat robots ``notify`` actions post to, by name: ``{sales = {platform =
    #: "dingtalk", url_env = "TW_SALES_ROBOT_URL", secret_env = "TW_SALES_ROBOT_SECRET"}}``
    #: — platform wecom (企业微信), dingtalk (钉钉) or feishu (飞书); the robot's webhook
    #: address (which holds its key) and its signing secret are read from the environment
    #: variables so named, else from the workspace's encrypted store (``tierwise secrets``);
    #: never written here.
    robots: dict[str, dict[str, str]] = field(default_factory=dict)
    #: SMS senders ``sms`` actions go out through, by name: ``{shop = {provider = "aliyun",
    #: sign_name = "某某商城", key_id_env = "TW_SMS_KEY_ID", secret_env = "TW_SMS_SECRET"}}``
    #: — provider aliyun (阿里云短信) or tencent (腾讯云短信, with ``app_id``, its
    #: SmsSdkAppId); ``region`` and ``url_env`` (another endpoint) are optional. The
    #: credentials are read from the environment variables so named, else from the
    #: workspace's encrypted store (``tierwise secrets``); never written here.
    sms_senders: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Most messages a minute per channel: ``{"robot:sales" = 20, "sms:shop" = 600,
    #: webhook = 3000, email = 300}``. A delivery over the limit waits (no attempt counted)
    #: until the minute has room. Robots default to their platform's documented limit.
    rate_limits: dict[str, int] = field(default_factory=dict)
    #: What one message costs per channel, in ``currency`` (same keys as ``rate_limits``):
    #: ``{"sms:shop" = 0.045, email = 0.001}``. Recorded with each delivered message, so
    #: each trigger's and playbook's cost and return can be computed.
    message_costs: dict[str, float] = field(default_factory=dict)
    #: Local hours when no marketing message reaches a customer ("21:00-08:00"; empty:
    #: none). A message due then waits for the end, no attempt counted.
    quiet_hours: str = ""
    #: Most marketing messages a customer gets across e-mail and SMS:
    #: ``{messages = 3, days = 7}`` (empty: no cap). Every delivered e-mail and text counts;
    #: a marketing message over the cap is suppressed. Service messages are never held.
    contact_cap: dict[str, int] = field(default_factory=dict)
    #: The dashboard's address as people reach it (``https://tierwise.example.com``):
    #: robot messages link to the customer's 360 page under it.
    dashboard_url: str = ""
    #: Longest life of an API key in days (``--no-expiry`` lets an admin go beyond).
    api_key_max_days: int = 366
    #: When ``tierwise serve`` recomputes values and re-evaluates every segment: a local
    #: time each day ("02:00"), or "off" (then run `tierwise schedule run compute` from
    #: your own scheduler).
    schedule_compute: str = "02:00"
    #: The periodic review written to reports/ (and mailed to ``review_subscribers``):
    #: "monthly" (the month before, on the 1st), "quarterly" (the quarter before, on
    #: 1 January, April, July and October) or "off"; at ``schedule_review_at`` local time.
    schedule_review: str = "monthly"
    schedule_review_at: str = "06:00"
    #: Addresses the scheduled review is e-mailed to (through smtp_url).
    review_subscribers: list[str] = field(default_factory=list)
    #: What tierwise keeps of its own records (`tierwise serve` prunes hourly; `tierwise
    #: prune` now): finished deliveries (delivered, dead, suppressed, held out) this many
    #: days after they were queued; snapshots this many days, except the last one of each
    #: month and the latest; rejected-row reports of imports this many days.
    keep_deliveries_days: int = 180
    keep_snapshots_days: int = 90
    keep_import_reports_days: int = 180
    #: The stages of a sales opportunity in pipeline order (imports, rules and triggers name
    #: them; the funnel counts them), and which of them close it won or lost.
    opportunity_stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))
    won_stage: str = DEFAULT_WON
    lost_stage: str = DEFAULT_LOST

    def __post_init__(self) -> None:
        self._check_types()
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise WorkspaceError(
                f"unknown time zone {self.timezone!r}; expected an IANA name such as "
                "'Asia/Shanghai' or 'UTC'",
                zh=f"未知时区 {self.timezone!r}：应为 IANA 时区名，例如 'Asia/Shanghai' 或 'UTC'"
            ) from None
        if self.locale not in LOCALES:
            raise WorkspaceError(f"unknown locale {self.locale!r}; expected one of {LOCALES}",
                                 zh=f"未知语言 {self.locale!r}：应为 {LOCALES} 之一")
        if self.engine not in ENGINES:
            raise WorkspaceError(f"unknown engine {self.engine!r}; expected one of {ENGINES}",
                                 zh=f"未知引擎 {self.engine!r}：应为 {ENGINES} 之一")
        kept = [t.name for t in FACT_TABLES if t.time_column is not None]
        for table, days in self.retention_days.items():
            if table not in kept:
                raise WorkspaceError(
                    f"retention_days.{table}: not a table with times; expected some of "
                    f"{', '.join(kept)}",
                    zh=f"retention_days.{table}：不是带时间的数据表；可用：{', '.join(kept)}")
            if not isinstance(days, int) or isinstance(days, bool) or days < 1:
                raise WorkspaceError(f"retention_days.{table} = {days!r}: expected a whole "
                                     "number of days, at least 1",
                                     zh=f"retention_days.{table} = {days!r}：应为至少 1 的"
                                     "整数天数")
        if not 1 <= self.sweep_seconds <= 3600:
            raise WorkspaceError(f"sweep_seconds = {self.sweep_seconds!r}: expected 1 to 3600",
                                 zh=f"sweep_seconds = {self.sweep_seconds!r}：应为 1 到 3600")
        if not self.sweep_seconds <= self.full_sweep_seconds <= 86400:
            raise WorkspaceError(f"full_sweep_seconds = {self.full_sweep_seconds!r}: expected "
                                 f"sweep_seconds ({self.sweep_seconds}) to 86400",
                                 zh=f"full_sweep_seconds = {self.full_sweep_seconds!r}：应为 "
                                 f"sweep_seconds（{self.sweep_seconds}）到 86400")
        if not 1 <= self.intake_keep_hours <= 24 * 366:
            raise WorkspaceError(f"intake_keep_hours = {self.intake_keep_hours!r}: expected 1 "
                                 "to 8784 (a year)",
                                 zh=f"intake_keep_hours = {self.intake_keep_hours!r}：应为 1 "
                                 "到 8784（一年）")
        if not 1 <= self.realtime_partitions <= BUCKETS:
            raise WorkspaceError(f"realtime_partitions = {self.realtime_partitions!r}: expected "
                                 f"1 to {BUCKETS}",
                                 zh=f"realtime_partitions = {self.realtime_partitions!r}：应为 1 "
                                 f"到 {BUCKETS}")
        if not 0 <= self.realtime_round_seconds <= 10:
            raise WorkspaceError(
                f"realtime_round_seconds = {self.realtime_round_seconds!r}: expected 0 to 10",
                zh=f"realtime_round_seconds = {self.realtime_round_seconds!r}：应为 0 到 10")
        if self.realtime_partitions > 1 and self.control_store.startswith("sqlite"):
            raise WorkspaceError(
                f"realtime_partitions = {self.realtime_partitions}: several real-time workers "
                "need a PostgreSQL control store (SQLite has one writer at a time)",
                zh=f"realtime_partitions = {self.realtime_partitions}：多个实时处理进程需要 "
                "PostgreSQL 控制库（SQLite 同一时间只有一个写入者）")
        if self.smtp_url and not self.smtp_url.startswith(("smtp://", "smtps://",
                                                          "smtp+starttls://")):
            raise WorkspaceError(f"smtp_url = {self.smtp_url!r}: expected smtp://host:port, "
                                 "smtps://… or smtp+starttls://…",
                                 zh=f"smtp_url = {self.smtp_url!r}：应为 smtp://主机:端口、"
                                 "smtps://… 或 smtp+starttls://…")
        for name in ("webhook_allowed_targets", "sensitive_attributes", "public_attributes"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                                      for v in value):
                raise WorkspaceError(f"{name} = {value!r}: expected a list of names",
                                     zh=f"{name} = {value!r}：应为名称列表")
        for entry in self.webhook_allowed_targets:
            if allowed_target(entry) is None:
                raise WorkspaceError(f"webhook_allowed_targets: {entry!r} is neither a host "
                                     "name (crm.internal) nor an address or network "
                                     "(10.0.0.5, 10.20.0.0/16, fd00::/8)",
                                     zh=f"webhook_allowed_targets：{entry!r} 既不是主机名"
                                     "（crm.internal），也不是地址或网段（10.0.0.5、"
                                     "10.20.0.0/16、fd00::/8）")
        if not isinstance(self.api_key_max_days, int) or not 1 <= self.api_key_max_days <= 3660:
            raise WorkspaceError(f"api_key_max_days = {self.api_key_max_days!r}: expected a "
                                 "whole number of days from 1 to 3660",
                                 zh=f"api_key_max_days = {self.api_key_max_days!r}：应为 1 到 "
                                 "3660 的整数天数")
        for name in ("keep_deliveries_days", "keep_snapshots_days",
                     "keep_import_reports_days"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 36600:
                raise WorkspaceError(f"{name} = {value!r}: expected a whole number of days "
                                     "from 1", zh=f"{name} = {value!r}：应为至少 1 的整数天数")
        for name in ("schedule_compute", "schedule_review_at"):
            value = getattr(self, name)
            if not (value == "off" and name == "schedule_compute") \
                    and local_time(value) is None:
                raise WorkspaceError(f"{name} = {value!r}: expected a local time such as "
                                     "'02:00'" + (" or 'off'" if name == "schedule_compute"
                                                  else ""),
                                     zh=f"{name} = {value!r}：应为本地时间，例如 '02:00'"
                                     + ("，或 'off'" if name == "schedule_compute" else ""))
        if self.schedule_review not in ("monthly", "quarterly", "off"):
            raise WorkspaceError(f"schedule_review = {self.schedule_review!r}: expected "
                                 "'monthly', 'quarterly' or 'off'",
                                 zh=f"schedule_review = {self.schedule_review!r}：应为 "
                                 "'monthly'、'quarterly' 或 'off'")
        if not isinstance(self.review_subscribers, list) or not all(
                isinstance(a, str) and re.fullmatch(r"[^@\s]+@[^@\s]+", a)
                for a in self.review_subscribers):
            raise WorkspaceError(f"review_subscribers = {self.review_subscribers!r}: "
                                 "expected a list of e-mail addresses",
                                 zh=f"review_subscribers = {self.review_subscribers!r}："
                                 "应为电子邮件地址列表")
        if self.quiet_hours and quiet_window(self.quiet_hours) is None:
            raise WorkspaceError(
                f"quiet_hours = {self.quiet_hours!r}: expected local hours such as "
                "'21:00-08:00' (two different times)",
                zh=f"quiet_hours = {self.quiet_hours!r}：应为本地时段，例如 '21:00-08:00'"
                   "（两个不同的时间）")
        if self.contact_cap and (set(self.contact_cap) != {"messages", "days"} or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1
                for v in self.contact_cap.values())):
            raise WorkspaceError(
                f"contact_cap = {self.contact_cap!r}: expected {{messages = 3, days = 7}} "
                "(whole numbers ≥ 1)",
                zh=f"contact_cap = {self.contact_cap!r}：应为 {{messages = 3, days = 7}}"
                   "（不小于 1 的整数）")
        for setting, entries, check in (("robots", self.robots, _robot_problem),
                                        ("sms_senders", self.sms_senders, _sms_problem)):
            for name, setting_value in entries.items():
                problem = check(name, setting_value)
                if problem is not None:
                    raise WorkspaceError(f"{setting}.{name}: {problem[0]}",
                                         zh=f"{setting}.{name}：{problem[1]}")
        for setting, values, valid, en, zh in (
                ("rate_limits", self.rate_limits,
                 lambda v: not isinstance(v, bool) and isinstance(v, int) and v >= 1,
                 "a whole number of messages a minute ≥ 1", "每分钟消息数（不小于 1 的整数）"),
                ("message_costs", self.message_costs,
                 lambda v: not isinstance(v, bool) and isinstance(v, int | float)
                 and 0 <= v < 1e6, "the cost of one message (≥ 0)", "单条消息的费用（不小于 0）")):
            for key, value in values.items():
                if not _RATE_KEY.match(key) or not valid(value):
                    raise WorkspaceError(
                        f"{setting}.{key} = {value!r}: expected a key webhook, email, "
                        f"robot:<name> or sms:<name> and {en}",
                        zh=f"{setting}.{key} = {value!r}：键应为 webhook、email、robot:<名称> 或 "
                           f"sms:<名称>，值为{zh}")
                # a robot or sender that is not set up would make the entry apply to nothing
                kind, _, name = key.partition(":")
                named = {"robot": ("robots", self.robots),
                         "sms": ("sms_senders", self.sms_senders)}.get(kind)
                if named is not None and name not in named[1]:
                    known = ", ".join(sorted(named[1])) or "none"
                    raise WorkspaceError(
                        f"{setting}.{key}: there is no {name!r} in {named[0]}; there are "
                        f"{known}",
                        zh=f"{setting}.{key}：{named[0]} 中没有 {name!r}；已有：{known}")
        stage_problem = opportunity_stage_problem(self.opportunity_stages, self.won_stage,
                                                  self.lost_stage)
        if stage_problem is not None:
            raise WorkspaceError(stage_problem[0], zh=stage_problem[1])
        if self.dashboard_url and not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?",
                                                   self.dashboard_url):
            raise WorkspaceError(f"dashboard_url = {self.dashboard_url!r}: expected an address "
                                 "such as https://tierwise.example.com",
                                 zh=f"dashboard_url = {self.dashboard_url!r}：应为网址，例如 "
                                 "https://tierwise.example.com")
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise WorkspaceError(
                f"currency {self.currency!r} is not a three-letter ISO 4217 code such as CNY",
                zh=f"币种 {self.currency!r} 不是三个字母的 ISO 4217 代码（例如 CNY）"
            )

    def _check_types(self) -> None:
        """Each setting has its declared type (TOML gives "10" where 10 was meant)."""
        for name, hint in typing.get_type_hints(type(self)).items():
            value = getattr(self, name)
            origin = typing.get_origin(hint)
            if origin is typing.Literal or hint is str:
                wanted, ok = ("text", "文本"), isinstance(value, str)
            elif hint is int:
                wanted = ("a whole number", "整数")
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif hint is float:
                wanted = ("a number", "数字")
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            elif origin is list:
                wanted, ok = ("a list such as [\"a\", \"b\"]", "列表，例如 [\"a\", \"b\"]"), \
                    isinstance(value, list)
            elif origin is dict:
                example = TABLE_EXAMPLES.get(name, "{events = 365}")
                wanted, ok = (f"a table such as {example}", f"表，例如 {example}"), \
                    isinstance(value, dict)
            else:  # pragma: no cover - a new kind of setting must be added here
                raise TypeError(f"setting {name}: no type check for {hint}")
            if not ok:
                raise WorkspaceError(f"{name} = {value!r}: expected {wanted[0]}",
                                     zh=f"{name} = {value!r}：应为{wanted[1]}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def control_store_url(self, root: Path) -> str:
        """The control-store URL with a relative SQLite path resolved against ``root``."""
        url = self.control_store
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str((root / url[len(prefix):]).resolve())
        return url


def local_time(text: str) -> tuple[int, int] | None:
    """(hour, minute) of "HH:MM", or None.

    >>> local_time("02:30"), local_time("24:00")
    ((2, 30), None)
    """
    found = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text.strip()) \
        if isinstance(text, str) else None
    return (int(found[1]), int(found[2])) if found else None


_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)"
                   r"(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$")


def quiet_window(text: str) -> tuple[time, time] | None:
    """``"21:00-08:00"`` as (start, end) local times; None when it is not such a window.

    >>> quiet_window("21:00-08:00")
    (datetime.time(21, 0), datetime.time(8, 0))
    """
    found = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not found:
        return None
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
        return None
    return time(h1, m1), time(h2, m2)


def allowed_target(entry: str) -> str | ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """An entry of ``webhook_allowed_targets`` as a network or a lower-case host name (None
    when it is neither).

    >>> allowed_target("10.20.0.0/16"), allowed_target("CRM.internal"), allowed_target("a b")
    (IPv4Network('10.20.0.0/16'), 'crm.internal', None)
    """
    text = entry.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    host = text.lower().rstrip(".")
    return host if _HOST.match(host) and not host.replace(".", "").isdigit() else None


def write_config(root: Path, config: WorkspaceConfig) -> None:
    (root / CONFIG_FILE).write_bytes(tomli_w.dumps({"workspace": asdict(config)}).encode())


def read_config(root: Path) -> WorkspaceConfig:
    path = root / CONFIG_FILE
    if not path.is_file():
        raise WorkspaceError(
            f"{root} is not a tierwise workspace (no {CONFIG_FILE}); "
            f"create one with `tierwise init {root}`",
            zh=f"{root} 不是 tierwise 工作区（没有 {CONFIG_FILE}）；"
            f"可用 `tierwise init {root}` 创建"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise WorkspaceError(f"{path}: {exc}", zh=f"{path}：TOML 格式错误：{exc}") from None
    section = data.get("workspace", {})
    known = set(WorkspaceConfig.__dataclass_fields__)
    unknown = set(section) - known
    if unknown:
        hints = {name: difflib.get_close_matches(name, known, n=1) for name in unknown}
        hint = "; ".join(f"{name}: did you mean {close[0]}?"
                         for name, close in sorted(hints.items()) if close)
        hint_zh = "；".join(f"{name}：是不是要写 {close[0]}？"
                           for name, close in sorted(hints.items()) if close)
        raise WorkspaceError(
            f"{path}: unknown setting(s) {sorted(unknown)}"
            f"{'; ' + hint if hint else ''}; expected some of {sorted(known)}",
            zh=f"{path}：未知设置 {sorted(unknown)}{'；' + hint_zh if hint_zh else ''}；"
            f"可用的设置：{sorted(known)}"
        )
    return WorkspaceConfig(**section)


def declared_locale(root: Path) -> str | None:
    """The locale ``root``'s settings file declares, read even when other settings are
    wrong (so that their errors are told in it); None without a readable one."""
    try:
        data = tomllib.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    section = data.get("workspace")
    locale = section.get("locale", WorkspaceConfig.locale) if isinstance(section, dict) \
        else None
    return locale if locale in LOCALES else None


def find_workspace(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The workspace to use: the explicit path, else ``$TIERWISE_WORKSPACE``, else the cwd."""
    chosen = explicit or os.environ.get(ENV_WORKSPACE) or "."
    return Path(chosen).expanduser().resolve()
