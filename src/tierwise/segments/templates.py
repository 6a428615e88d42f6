"""Built-in segment templates for what users ask for first (zh-CN and en names)."""

from __future__ import annotations

from tierwise.segments.catalog import SegmentDefinition

TEMPLATES: dict[str, SegmentDefinition] = {t.key: t for t in (
    SegmentDefinition(
        key="high_value_active", names={"zh-CN": "高价值活跃客户", "en": "High-value active"},
        description="At least 2 orders in the last 30 days with an average order above 5,000.",
        rule="COUNT(orders, LAST 30d) >= 2 AND AVG(orders.amount, LAST 30d) > 5000",
        tags=["value"]),
    SegmentDefinition(
        key="to_be_awakened", names={"zh-CN": "待唤醒客户", "en": "To be awakened"},
        description="Bought at least twice, but nothing in the last 90 days.",
        rule="COUNT(orders) >= 2 AND DAYS_SINCE_LAST(orders) > 90", tags=["retention"]),
    SegmentDefinition(
        key="churn_risk", names={"zh-CN": "流失风险客户", "en": "Churn risk"},
        description="High churn risk by the CLV model (run `tierwise compute` first).",
        rule="churn_risk = 'high' AND lifecycle != 'churned'", tags=["retention"]),
    SegmentDefinition(
        key="new_customers", names={"zh-CN": "新客户", "en": "New customers"},
        description="First purchase within the last 30 days.",
        rule="DAYS_SINCE_FIRST(orders) <= 30", tags=["lifecycle"]),
    SegmentDefinition(
        key="vip_key_accounts", names={"zh-CN": "VIP / 重点客户", "en": "VIP / key accounts"},
        description="Tier A, or tagged vip.",
        rule="tier = 'A' OR tags CONTAINS 'vip'", tags=["value"]),
    SegmentDefinition(
        key="big_spenders_at_risk", names={"zh-CN": "高消费流失预警", "en": "Big spenders at risk"},
        description="Spent over 20,000 in the last year and churn risk is medium or high.",
        rule="SUM(orders.amount, LAST 1y) > 20000 AND churn_risk IN ('medium', 'high')",
        tags=["value", "retention"]),
)}
