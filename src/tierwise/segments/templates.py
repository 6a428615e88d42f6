"""Built-in segment templates for what users ask for first, with names and descriptions in
zh-CN and en. Each rule follows the words of its name: 高价值活跃客户 is *more than* two
orders in 30 days, 待唤醒客户 a *high-value* customer who has not bought for 90 days.

``template(key, lang)`` gives a template with its description in one language (what the CLI
writes to a new segment file and the demo saves); ``DESCRIPTIONS`` holds both.
"""

from __future__ import annotations

from tierwise.errors import NotFoundError
from tierwise.segments.catalog import SegmentDefinition


def _template(key: str, zh: str, en: str, rule: str, zh_text: str, en_text: str,
              *tags: str) -> tuple[SegmentDefinition, dict[str, str]]:
    return (SegmentDefinition(key=key, names={"zh-CN": zh, "en": en}, description=en_text,
                              rule=rule, tags=list(tags)),
            {"zh-CN": zh_text, "en": en_text})


_ALL = (
    _template("high_value_active", "高价值活跃客户", "High-value active",
              "COUNT(orders, LAST 30d) > 2 AND AVG(orders.amount, LAST 30d) > 5000",
              "近 30 天下单超过 2 次，且平均客单价高于 5,000。",
              "More than 2 orders in the last 30 days with an average order above 5,000.",
              "value"),
    _template("to_be_awakened", "待唤醒客户", "To be awakened",
              "rfm.m >= 4 AND DAYS_SINCE_LAST(orders) > 90",
              "高价值客户（RFM 金额得分前 40%）已超过 90 天没有复购（需先运行 tierwise compute）。",
              "High-value customers (RFM monetary score in the top 40%) who have not bought "
              "for more than 90 days (run `tierwise compute` first).", "value", "retention"),
    _template("churn_risk", "流失风险客户", "Churn risk",
              "churn_risk = 'high' AND lifecycle != 'churned'",
              "CLV 模型判断为高流失风险、尚未流失的客户（需先运行 tierwise compute）。",
              "High churn risk by the CLV model and not churned yet (run `tierwise compute` "
              "first).", "retention"),
    _template("new_customers", "新客户", "New customers", "DAYS_SINCE_FIRST(orders) <= 30",
              "最近 30 天内首次购买的客户。", "First purchase within the last 30 days.",
              "lifecycle"),
    _template("vip_key_accounts", "VIP / 重点客户", "VIP / key accounts",
              "tier = 'A' OR tags CONTAINS 'vip'",
              "A 类客户，或带有 vip 标签的客户。", "Tier A, or tagged vip.", "value"),
    _template("big_spenders_at_risk", "高消费流失预警", "Big spenders at risk",
              "SUM(orders.amount, LAST 1y) > 20000 AND churn_risk IN ('medium', 'high')",
              "近一年消费超过 20,000，且流失风险为中或高。",
              "Spent over 20,000 in the last year and churn risk is medium or high.",
              "value", "retention"),
    _template("birthday_care", "生日关怀", "Birthday care",
              "DAYS_UNTIL_ANNIVERSARY(birth_date) <= 7",
              "7 天内过生日的客户（按工作区时区；2 月 29 日生日在平年按 2 月 28 日）。",
              "Customers whose birthday is within the next 7 days (in the workspace's time "
              "zone; 29 February birthdays fall on 28 February in common years).", "care"),
    _template("membership_anniversary", "入会周年关怀", "Membership anniversary",
              "DAYS_UNTIL_ANNIVERSARY(signup_at) <= 7 AND signup_at < -1y",
              "注册满一年以上、7 天内迎来入会周年的客户。",
              "Customers of at least a year whose signup anniversary is within 7 days.",
              "care"),
    _template("spring_festival_care", "春节关怀", "Spring Festival care",
              "DAYS_UNTIL_HOLIDAY('spring_festival') <= 14 AND COUNT(orders, LAST 1y) >= 1",
              "春节前 14 天内、近一年有购买的客户：节日问候与礼遇。",
              "Customers who bought in the last year, in the 14 days before the Spring "
              "Festival: greetings and holiday offers.", "care"),
    _template("stalled_key_deals", "重点客户停滞商机", "Stalled deals of key accounts",
              "tier = 'A' AND COUNT(opportunities WHERE closed_at IS NULL AND stage_at < -14d)"
              " >= 1",
              "A 类客户有进行中的商机在同一阶段停留超过 14 天：商机 SLA，配合触发器给负责人派"
              "紧急任务。",
              "Tier A accounts with an open opportunity in the same stage for more than 14 "
              "days: an opportunity SLA (pair it with a trigger that gives the owner an "
              "urgent task).", "sales"),
    _template("engaged_buying_committee", "决策链活跃的客户", "Engaged buying committees",
              "COUNT(contacts WHERE role = 'decision_maker') >= 1 AND COUNT(account_events "
              "WHERE type IN ('webinar', 'demo_request', 'page_view'), LAST 30d) >= 3",
              "有决策者在册、且客户及其联系人近 30 天至少 3 次浏览、参会或申请演示：销售跟进的"
              "好时机。",
              "Accounts with a decision maker on record whose people (or the account) viewed, "
              "attended or asked for a demo at least 3 times in 30 days: time for sales to "
              "follow up.", "sales"),
    _template("deals_without_decision_maker", "商机缺少决策者", "Open deals without a decision "
              "maker",
              "COUNT(opportunities WHERE closed_at IS NULL) >= 1 AND "
              "COUNT(contacts WHERE role = 'decision_maker') = 0",
              "有进行中的商机、却没有登记任何决策者的客户：补齐决策链，降低单线联系的风险。",
              "Accounts with an open opportunity but no decision maker among their people: "
              "reach the decision chain before the deal depends on one contact.", "sales"),
    _template("promoters", "推荐者（NPS 9–10）", "Promoters (NPS 9–10)",
              "nps_class = 'promoter'",
              "最近一次 NPS 评分为 9–10 分：适合邀请推荐、评价和案例。",
              "Latest NPS score 9–10: ask for referrals, reviews and case studies.",
              "satisfaction"),
    _template("detractors", "贬损者（NPS 0–6）", "Detractors (NPS 0–6)",
              "nps_class = 'detractor'",
              "最近一次 NPS 评分为 0–6 分：需要回访和服务补救。",
              "Latest NPS score 0–6: call back and recover.", "satisfaction", "retention"),
)

TEMPLATES: dict[str, SegmentDefinition] = {t.key: t for t, _ in _ALL}
DESCRIPTIONS: dict[str, dict[str, str]] = {t.key: texts for t, texts in _ALL}


def described(definition: SegmentDefinition, lang: str) -> str:
    """A segment's description in ``lang`` when it is a template's own text (in either
    language, as saved); a description the user wrote stays as written."""
    texts = DESCRIPTIONS.get(definition.key, {})
    if definition.description and definition.description in texts.values():
        return texts.get(lang, definition.description)
    return definition.description


def template(key: str, lang: str) -> SegmentDefinition:
    """The template ``key`` with its description in ``lang``."""
    if key not in TEMPLATES:
        raise NotFoundError(f"no template {key!r}; the templates are "
                            f"{', '.join(TEMPLATES)}",
                            zh=f"没有模板 {key!r}；可用的模板：{', '.join(TEMPLATES)}")
    return TEMPLATES[key].model_copy(
        update={"description": DESCRIPTIONS[key].get(lang, TEMPLATES[key].description)})
