"""Words of the dashboard and reports in zh-CN and en, and which language a request wants."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from tierwise.definitions.vocabulary import CHURN_RISK

LANGUAGES = ("zh-CN", "en")
LANG_COOKIE = "tierwise_lang"

#: key -> (zh-CN, en)
_WORDS: dict[str, tuple[str, str]] = {
    "app": ("tierwise 客户分层", "tierwise"),
    "overview": ("总览", "Overview"),
    "rfm": ("RFM 分析", "RFM"),
    "tiers": ("客户分级", "Tiers"),
    "lifecycle": ("生命周期", "Lifecycle"),
    "segments": ("客户分群", "Segments"),
    "customers": ("客户", "Customers"),
    "customer": ("客户", "Customer"),
    "clv": ("CLV 与流失", "CLV and churn"),
    "actions": ("自动化动作", "Actions"),
    "review": ("定期复盘", "Review"),
    "imports": ("数据导入", "Imports"),
    "duplicates": ("重复客户", "Duplicates"),
    "dup_intro": ("匹配模型无法确定的客户对：并排比较两条记录和每个字段的证据，"
                  "再决定合并（保留哪一条）或标记为不同客户。",
                  "Pairs the matcher was not sure of: compare the two records and each "
                  "field's evidence, then merge (keeping either record) or mark them as "
                  "different customers."),
    "dup_pending": ("待审核", "Pending"), "dup_merged": ("已合并", "Merged"),
    "dup_rejected": ("不是同一客户", "Not the same"),
    "dup_probability": ("匹配概率", "Match probability"),
    "dup_when_found": ("发现时", "when found"),
    "dup_keep_left": ("合并，保留左侧", "Merge, keep left"),
    "dup_keep_right": ("合并，保留右侧", "Merge, keep right"),
    "dup_not_same": ("不是同一客户", "Not the same customer"),
    "dup_field": ("字段", "Field"), "dup_agreement": ("一致程度", "Agreement"),
    "dup_weight": ("证据（比特）", "Evidence (bits)"),
    "dup_prior": ("先验：随机两条记录是同一客户", "Prior: two records picked at random"),
    "dup_total": ("合计", "Total"),
    "dup_capped": ("姓名完全不同且没有共同的个人邮箱：概率最高 0.3"
                   "（家人、同事常共用电话和地址）。",
                   "The names differ outright and no personal e-mail is shared: at most 0.3 "
                   "(families and colleagues share phones and addresses)."),
    "dup_rarity": ("其中来自取值的稀有程度", "of which from the value's rarity"),
    "sign_out": ("退出登录", "Sign out"),
    "language": ("语言", "Language"),
    "main_nav": ("主导航", "Main navigation"),
    "skip": ("跳到正文", "Skip to content"),
    "signed_in_as": ("当前用户", "Signed in as"),
    "no_snapshot": ("还没有计算结果：请先运行 tierwise compute 或点击“立即计算”。",
                    "No computed values yet: run `tierwise compute` or press “Compute now”."),
    "compute_now": ("立即计算", "Compute now"),
    "as_of": ("数据截至", "As of"),
    "active_customers": ("活跃客户", "Active customers"),
    "revenue": ("销售额", "Revenue"),
    "revenue_share": ("销售额占比", "Revenue share"),
    "customer_share": ("客户占比", "Customer share"),
    "tier_mix": ("客户等级构成", "Tier mix"),
    "churn_risk": ("流失风险", "Churn risk"),
    "risk_unknown": ("未购买", "No purchase"),
    "churn_high": ("高流失风险客户", "High churn risk"),
    "trend": ("趋势", "Trend"),
    "monthly_revenue": ("月度销售额与下单客户数", "Monthly revenue and buyers"),
    "buyers": ("下单客户", "Buyers"),
    "orders": ("订单", "Orders"),
    "rf_heatmap_count": ("R × F 客户数", "R × F customers"),
    "rf_heatmap_revenue": ("R × F 销售额", "R × F revenue"),
    "rfm_treemap": ("RFM 客户群", "RFM segments"),
    "segment": ("客户群", "Segment"),
    "avg_order_value": ("客单价", "Average order value"),
    "avg_recency": ("平均距今天数", "Mean days since last order"),
    "avg_frequency": ("平均购买次数", "Mean orders"),
    "share": ("占比", "Share"),
    "tier": ("等级", "Tier"),
    "rfm_segment": ("RFM 客户群", "RFM segment"),
    "distribution": ("分布", "Distribution"),
    "pareto": ("帕累托曲线（累计销售额占比）", "Pareto curve (cumulative revenue share)"),
    "top_customers_share": ("客户累计占比", "Share of customers, best first"),
    "migration": ("等级迁移", "Tier migration"),
    "before": ("之前", "Before"),
    "after": ("之后", "After"),
    "now": ("现在", "Now"),
    "change": ("变化", "Change"),
    "moved": ("等级变化的客户", "Customers changing tier"),
    "tier_rules": ("分级规则", "Tier rules"),
    "plan": ("预览变化", "Preview the change"),
    "save": ("保存", "Save"),
    "saved": ("已保存", "Saved"),
    "tier_rules_help": ("规则以 JSON 编辑：方法（pareto / percentile / threshold / rules）、"
                        "切分点和权重；rules 方法为每个等级写一条分群规则（如 "
                        "SUM(orders.amount, LAST 12m) >= 50000），按顺序首条命中，"
                        "其余归最后一级。先预览再保存；保存后下次计算生效。",
                        "Edit the rule as JSON: method (pareto / percentile / threshold / "
                        "rules), cuts and weights; with rules, each tier gets a segment rule "
                        "(such as SUM(orders.amount, LAST 12m) >= 50000), the first match "
                        "wins and everyone else gets the last tier. Preview, then save; the "
                        "next compute applies it."),
    "tier_method": ("分级方法", "Method"),
    "method_pareto": ("帕累托（按累计销售额）", "Pareto (cumulative revenue)"),
    "method_percentile": ("按人数比例", "Percentile (share of customers)"),
    "method_threshold": ("按价值分阈值", "Threshold (value score)"),
    # why a membership changed (segments.membership, store.memberships)
    "reason_data_change": ("数据变化", "Data change"),
    "reason_time": ("时间推移", "Time passed"),
    "reason_manual": ("手动调整", "Manual"),
    "reason_rule_change": ("规则变更", "Rule change"),
    "reason_backfill": ("历史回填", "Backfill"),
    "method_rules": ("按规则（如近 12 个月消费 ≥ 50,000 为 VIP）",
                     "Rules (e.g. spent ≥ 50,000 in 12 months → VIP)"),
    "tier_cuts": ("切分点（逗号分隔）", "Cuts (comma-separated)"),
    "tier_cuts_help": ("帕累托：累计销售额占比，递增，如 0.5, 0.8, 0.95；按人数比例：各级人数占比，"
                       "如 0.05, 0.15, 0.3；按阈值：价值分下限，递减，如 80, 60, 40。",
                       "Pareto: cumulative revenue shares, ascending (0.5, 0.8, 0.95); "
                       "percentile: each tier's share of customers (0.05, 0.15, 0.3); "
                       "threshold: value-score floors, descending (80, 60, 40)."),
    "tier_weights": ("价值分权重", "Value-score weights"),
    "metric_monetary": ("消费金额", "Monetary"),
    "metric_frequency": ("购买频次", "Frequency"),
    "metric_recency": ("最近购买", "Recency"),
    "metric_profit": ("利润", "Profit"),
    "metric_clv": ("CLV", "CLV"),
    "metric_referrals": ("推荐", "Referrals"),
    "metric_growth": ("增长", "Growth"),
    "snapshots": ("快照", "Snapshots"),
    "stage_funnel": ("生命周期阶段", "Lifecycle stages"),
    "stage_flows": ("阶段流转", "Flows between stages"),
    "stage": ("阶段", "Stage"),
    "size": ("人数", "Size"),
    "last_run": ("最近计算", "Last computed"),
    "duration": ("耗时", "Duration"),
    "new_segment": ("新建客户群", "New segment"),
    "edit": ("编辑", "Edit"),
    "key": ("标识", "Key"),
    "name_zh": ("中文名称", "Name (Chinese)"),
    "name_en": ("英文名称", "Name (English)"),
    "description": ("说明", "Description"),
    "rule": ("规则", "Rule"),
    "conditions": ("条件", "Conditions"),
    "join": ("组合方式", "Combine"),
    "match_all": ("满足全部条件 (AND)", "Match all (AND)"),
    "match_any": ("满足任一条件 (OR)", "Match any (OR)"),
    "add_condition": ("添加条件", "Add condition"),
    "remove": ("删除", "Remove"),
    "field": ("字段或指标", "Field or measure"),
    "operator": ("运算符", "Operator"),
    "value": ("值", "Value"),
    "live_count": ("实时人数", "Live count"),
    "counting": ("计算中…", "Counting…"),
    "visual_note": ("此规则嵌套了 AND/OR，只能以文本编辑。",
                    "This rule nests AND and OR: edit it as text."),
    "plan_result": ("变更预览", "Plan"),
    "entering": ("将进入", "Entering"),
    "leaving": ("将离开", "Leaving"),
    "members": ("成员", "Members"),
    "search": ("搜索", "Search"),
    "search_customers": ("按客户编号、姓名、邮箱或手机号搜索",
                         "Search by id, name, e-mail or phone"),
    "contact": ("联系许可", "May we contact them"),
    "channel": ("渠道", "Channel"),
    "purpose_marketing": ("营销", "Marketing"),
    "purpose_service": ("服务", "Service"),
    "allowed": ("可以", "Yes"),
    "not_allowed": ("不可以", "No"),
    "search_customers_by_id": ("按客户编号搜索", "Search by customer id"),
    "search_by_id_only": ("你的角色不能查看个人信息，只能按客户编号搜索"
                          "（不能按姓名、邮箱或手机号）。",
                          "Your role may not read personal data: search looks at customer ids "
                          "only, not names, e-mails or phones."),
    "next_page": ("下一页", "Next page"),
    "previous_page": ("上一页", "Previous page"),
    "tasks_shown": ("第 {first}–{last} 项任务", "Tasks {first}–{last}"),
    "first_page": ("第一页", "First page"),
    "newest_page": ("最新", "Newest"),
    "breakdown": ("分组对比", "Breakdown"),
    "filter_tasks": ("筛选任务", "Filter tasks"),
    "team": ("团队", "Team"),
    "overdue_only": ("只看逾期", "Overdue only"),
    "strategic": ("重点客户", "Strategic"),
    "strategic_hint": ("客户属于最高等级", "The customer is in the best tier"),
    "strategic_overdue": ("个重点客户任务已逾期", "overdue for strategic customers"),
    "assign_to": ("指派给", "Assign to"),
    "assign": ("指派", "Assign"),
    "group_by": ("分组依据", "Group by"),
    "no_value": ("（未填写）", "(none)"),
    "all_customers_filtered": ("筛选后的全部客户", "All customers filtered"),
    "more_groups": ("图中只画出收入最高的 20 组；表格列出全部分组。",
                    "The charts draw the 20 groups with the most revenue; the table lists all."),
    "revenue_per_customer": ("客均收入", "Revenue per customer"),
    "dim_tier": ("等级", "Tier"), "dim_lifecycle": ("生命周期", "Lifecycle"),
    "dim_rfm_segment": ("RFM 分群", "RFM segment"), "dim_churn_risk": ("流失风险", "Churn risk"),
    "dim_city": ("城市", "City"), "dim_province": ("省份", "Province"),
    "dim_country": ("国家", "Country"), "dim_industry": ("行业", "Industry"),
    "dim_company_size": ("企业规模", "Company size"), "dim_channel": ("渠道", "Channel"),
    "dim_owner": ("负责人", "Owner"), "dim_gender": ("性别", "Gender"),
    "dim_tag": ("标签", "Tag"), "dim_segment": ("分群", "Segment"),
    "break_down_members": ("成员分组对比", "Break the members down"),
    "period_hint": ("填写期间（如 2026、2026H2、2026Q3、2026-07 或 2026-07-01..2026-08-15）"
                    "即加上各组在该期间与上一期间的购买",
                    "A period (2026, 2026H2, 2026Q3, 2026-07 or 2026-07-01..2026-08-15) adds "
                    "what each group bought in it and in the period before"),
    "nps_score": ("NPS 净推荐值", "NPS"),
    "csat_mean": ("CSAT 满意度", "CSAT"),
    "satisfied": ("满意", "satisfied"),
    "nps_by_tier": ("各等级的推荐者与贬损者", "Promoters and detractors by tier"),
    "nps_promoter": ("推荐者", "Promoters"),
    "nps_passive": ("中立者", "Passives"),
    "nps_detractor": ("贬损者", "Detractors"),
    "nps_class_promoter": ("推荐者", "promoter"),
    "nps_class_passive": ("中立者", "passive"),
    "nps_class_detractor": ("贬损者", "detractor"),
    "older_page": ("更早 →", "Older →"),
    "filter_deliveries": ("筛选投递记录", "Filter deliveries"),
    "filter": ("筛选", "Filter"),
    "any": ("全部", "Any"),
    "source": ("来源", "Source"),
    "from_day": ("从", "From"),
    "to_day": ("到", "To"),
    "export_csv": ("导出 CSV", "Export CSV"),
    "export_xlsx": ("导出 XLSX", "Export XLSX"),
    "history": ("进出记录", "Entries and exits"),
    "entered_at": ("进入时间", "Entered"),
    "exited_at": ("离开时间", "Left"),
    "reason": ("原因", "Reason"),
    "runs": ("计算记录", "Evaluations"),
    "profile": ("客户档案", "Profile"),
    "timeline": ("时间线", "Timeline"),
    "values": ("价值指标", "Values"),
    "playbook": ("跟进策略", "Playbook"),
    "no_playbook": ("没有适用的跟进策略", "No playbook applies"),
    "service_level": ("服务等级", "Service level"),
    "sla_hours": ("SLA 响应时长（小时）", "SLA response hours"),
    "owner_role": ("负责角色", "Owner role"),
    "cadence": ("联系频率", "Cadence"),
    "channels": ("渠道", "Channels"),
    "offers": ("权益", "Offers"),
    "clv_distribution": ("各等级 CLV", "CLV by tier"),
    "at_risk": ("流失预警名单", "At-risk customers"),
    "value_at_risk": ("风险价值（预期损失）", "Expected value at risk"),
    "reasons": ("原因", "Reasons"),
    "value_at_risk_help": ("风险价值 = Σ（1 − 存活概率）× 年化销售额"
                           "（累计销售额 ÷ 首单至今年数，不足一年按一年）。",
                           "Value at risk = Σ (1 − P(alive)) × yearly revenue (revenue to date ÷ "
                           "years since the first order, at least one)."),
    "p_alive": ("存活概率", "P(alive)"),
    "churn_probability": ("流失概率", "Churn probability"),
    "triggers": ("触发器", "Triggers"),
    "deliveries": ("投递记录", "Deliveries"),
    "tasks": ("任务", "Tasks"),
    "status": ("状态", "Status"),
    "attempts": ("尝试次数", "Attempts"),
    "replay": ("重新投递", "Replay"),
    "replay_dead": ("重新投递全部失败项", "Replay all dead"),
    "complete": ("完成", "Complete"),
    "start_task": ("开始处理", "Start"),
    "snooze_day": ("推迟一天", "Snooze a day"),
    "overdue": ("逾期", "Overdue"),
    "in_progress": ("处理中", "In progress"),
    "owner": ("负责人", "Owner"),
    "due": ("截止", "Due"),
    "kind": ("类型", "Kind"),
    "event": ("事件", "Event"),
    "enabled": ("启用", "Enabled"),
    "period": ("周期", "Period"),
    "compare_with": ("对比周期", "Compared with"),
    "repurchase_rate": ("复购率", "Repurchase rate"),
    "retention_rate": ("留存率", "Retention rate"),
    "action_effect": ("效果", "Effect"),
    "effect_days": ("观察天数", "Days observed"),
    "effect_about": ("每位客户从动作到期的时刻起观察；实验组包括所有应收到动作的客户"
                     "（投递失败或被抑制的也算），留出组是按留出比例稳定抽出、从未收到的客户。",
                     "Each customer is observed from the instant the action was due for them; "
                     "the treated group is everyone it was meant for (failed or suppressed "
                     "deliveries included), the held-out group the stable share that never "
                     "got it."),
    "treated": ("实验组", "Treated"),
    "held_out": ("留出组", "Held out"),
    "metric": ("指标", "Metric"),
    "difference": ("差值", "Difference"),
    "ci95": ("95% 置信区间", "95% CI"),
    "relative_change": ("相对变化", "Relative"),
    "effect_significant": ("* 表示区间不含 0（差异显著）；比率的区间以百分点表示。",
                           "* the interval excludes zero (a significant difference); "
                           "intervals of rates are in percentage points."),
    "cost_and_return": ("成本与回报", "Cost and return"),
    "messages_delivered": ("已送达消息", "Messages delivered"),
    "cost": ("成本", "Cost"),
    "incremental_revenue": ("增量收入", "Incremental revenue"),
    "return_on_cost": ("投入产出比", "Return on cost"),
    "holdout_share": ("留出比例", "Holdout"),
    "conversion_rate": ("转化率", "Conversion rate"),
    "reactivation_rate": ("唤醒率", "Reactivation rate"),
    "churn_rate": ("流失率", "Churn rate"),
    "biggest_movers": ("变化最大的客户", "Biggest movers"),
    "movers_up": ("收入增加最多的客户", "Biggest increases in revenue"),
    "movers_down": ("收入减少最多的客户", "Biggest decreases in revenue"),
    "satisfaction": ("满意度", "Satisfaction"),
    "funnel": ("营销→销售→服务漏斗", "Funnel: marketing → sales → service"),
    "funnel_about": ("某期进入的线索（注册时间，没有则取首次行为或首单），至今走到了哪一步；"
                     "每一步都在上一步之内。",
                     "The leads who came in during a period (at signup, else their first event "
                     "or first order) and how far they have gone since; each step is within the "
                     "one before."),
    "nav_funnel": ("漏斗", "Funnel"),
    "nav_economics": ("经济价值", "Economics"),
    "economics": ("客户经济价值", "Customer economics"),
    "economics_about": ("每位客户在本期带来的毛利，减去服务成本（工单、客户经理时间）、营销成本"
                        "（已发送消息）与本期获客成本，即利润贡献；推荐价值单独列出（被推荐客户"
                        "的毛利已计入其本人）。公式见 docs/customer-value.md。",
                        "What each customer's gross margin in the period leaves after the cost "
                        "to serve (tickets, account manager's time), marketing (messages "
                        "delivered) and acquisition in the period: the profit contribution. "
                        "Referral value is shown beside it (the referred customers' margin is "
                        "in their own). Formulas: docs/customer-value.md."),
    "m_revenue": ("收入", "Revenue"),
    "m_gross_margin": ("毛利", "Gross margin"),
    "m_acquisition_cost": ("获客成本", "Acquisition cost"),
    "m_ticket_cost": ("工单成本", "Ticket cost"),
    "m_manager_cost": ("客户经理成本", "Account manager cost"),
    "m_service_message_cost": ("服务消息成本", "Service messages"),
    "m_cost_to_serve": ("服务成本", "Cost to serve"),
    "m_marketing_cost": ("营销成本", "Marketing cost"),
    "m_profit_contribution": ("利润贡献", "Profit contribution"),
    "m_referral_value": ("推荐价值", "Referral value"),
    "economics_top": ("按{measure}排序的客户", "Customers by {measure}"),
    "lowest_first": ("从低到高", "Lowest first"),
    "sort_by": ("排序依据", "Sort by"),
    "nav_pipeline": ("商机管道", "Pipeline"),
    "pipeline": ("商机管道", "Sales pipeline"),
    "pipeline_about": ("进行中的商机（当前）各阶段的数量、金额、按赢率加权的金额和在本阶段停留的"
                       "天数（中位数）；以及本期赢单与输单（按结束时间）。每个数字都可点开对应商机。",
                       "Open opportunities now, per stage: how many, their amount, the amount "
                       "weighted by win probability and the median days in the stage; and "
                       "those won and lost in the period (by when they closed). Every number "
                       "opens its opportunities."),
    "open_count": ("进行中", "Open"),
    "weighted_amount": ("加权金额", "Weighted amount"),
    "median_days_in_stage": ("本阶段天数（中位数）", "Median days in stage"),
    "won": ("赢单", "Won"), "lost": ("输单", "Lost"),
    "win_rate": ("赢率", "Win rate"),
    "median_days_to_win": ("赢单周期（天，中位数）", "Median days to win"),
    "rfm_r": ("R 分", "R score"),
    "was_tier": ("当时等级", "Tier then"),
    "bought": ("下单月份", "Bought in"),
    "answered": ("评分月份（NPS）", "Gave an NPS score in"),
    "top": ("销售额最高的前几位", "Top by revenue"),
    "was_lifecycle": ("当时阶段", "Stage then"),
    "rfm_f": ("F 分", "F score"),
    "step": ("步骤", "Step"),
    "step_leads": ("线索", "Leads"),
    "step_qualified": ("合格线索", "Qualified"),
    "step_first_order": ("首单客户", "First order"),
    "step_repeat": ("复购客户", "Repeat customers"),
    "step_opportunity": ("有商机", "Opportunity"),
    "step_won": ("赢单", "Won"),
    "step_renewal": ("续约 / 再次赢单", "Renewal / won again"),
    "flow": ("漏斗", "Flow"),
    "closed_in_period": ("本期结束的商机", "Closed in the period"),
    "opportunity": ("商机", "Opportunity"),
    "probability": ("赢率", "Win probability"),
    "expected_close": ("预计成交", "Expected close"),
    "in_stage_since": ("进入本阶段", "In this stage since"),
    "pipeline_summary": ("进行中 {open} 个（金额 {open_amount}，按赢率加权 {weighted}）· "
                         "赢单 {won} 个（{won_amount}）· 输单 {lost} 个",
                         "{open} open ({open_amount}, weighted by win probability {weighted}) · "
                         "{won} won ({won_amount}) · {lost} lost"),
    "flow_orders": ("下单", "Orders"),
    "flow_opportunities": ("商机（B2B 销售）", "Opportunities (B2B sales)"),
    "industry": ("行业", "Industry"),
    "by_grouping": ("按{by}", "By {by}"),
    "rate_from_previous": ("上一步转化率", "From the step before"),
    "of_leads": ("占线索", "Of leads"),
    "median_days": ("距上一步天数（中位数）", "Median days from the step before"),
    "by_tier": ("按等级", "By tier"),
    "all_customers": ("全部客户", "All customers"),
    "funnel_trend": ("最近几期", "Recent periods"),
    "funnel_partial": ("本期尚未结束：只含截至 {until} 进入的线索。",
                       "This period is still under way: only the leads who came in until "
                       "{until}."),
    "no_lead_scoring": ("没有线索评分规则：漏斗略去“合格线索”一步"
                        "（`tierwise lead-scoring FILE`）。",
                        "No lead-scoring rules: the funnel leaves out the qualified step "
                        "(`tierwise lead-scoring FILE`)."),
    "bought_unqualified": ("另有 {n} 位线索未经合格就下单，不计入之后的步骤。",
                           "{n} more leads bought without qualifying; they are not counted in "
                           "the later steps."),
    "funnel_step_needed": ("请给出 step：{steps} 之一。", "Give a step: one of {steps}."),
    "nps_trend": ("每月 NPS 与 CSAT（当月的回答）", "NPS and CSAT by month (that month's answers)"),
    "partial": ("未满", "partial"),
    "nps_latest": ("最近一次 NPS", "Latest NPS"),
    "respondents": ("回答 NPS 的客户", "NPS respondents"),
    "rated": ("评 CSAT 的客户", "CSAT raters"),
    "nps_of_period": ("本期回答的 NPS", "NPS of the period's answers"),
    "partial_period": ("本期尚未结束：数据截至 {until}，与上期开头同样的 {days} 天"
                       "（{previous}）对比。",
                       "This period is still under way: figures run to {until} and are compared "
                       "with the first {days} days of {previous}."),
    "closing_late": ("本期结束前没有快照：客户等级取自期末之后 {at} 的快照。",
                     "No snapshot was taken before this period ended: the tiers are those of "
                     "the snapshot of {at}, after the period."),
    "no_migration_snapshot": ("没有快照，无法显示等级迁移：请先运行 tierwise compute。",
                              "No snapshot, so no tier migration: run `tierwise compute` first."),
    "no_migration_same": ("本期首尾是同一个快照（{at}），没有等级迁移可显示。",
                          "The same snapshot ({at}) opens and closes this period: no tier "
                          "migration to show."),
    "made_at": ("生成于", "Made"),
    "font_note": ("本 PDF 的中文使用阅读器自带的 STSong-Light 字体（系统中没有可嵌入的中文"
                  "字体：安装 fonts-wqy-zenhei 或设置 TIERWISE_PDF_FONT）。",
                  "Chinese text in this PDF uses the reader's STSong-Light font (no embeddable "
                  "CJK font was found: install fonts-wqy-zenhei or set TIERWISE_PDF_FONT)."),
    "download_html": ("下载 HTML 报告", "Download HTML report"),
    "download_pdf": ("下载 PDF 报告", "Download PDF report"),
    "upload": ("上传文件", "Upload a file"),
    "table": ("数据表", "Table"),
    "file": ("文件", "File"),
    "mapping": ("字段映射", "Column mapping"),
    "preview": ("预览", "Preview"),
    "ignore": ("（忽略）", "(ignore)"),
    "unknown_customers": ("未知客户", "Unknown customers"),
    "reject": ("拒绝", "Reject"),
    "create": ("创建", "Create"),
    "dry_run": ("仅校验，不写入", "Check only, write nothing"),
    "import": ("导入", "Import"),
    "past_imports": ("导入记录", "Past imports"),
    "rows": ("行", "rows"),
    "accepted": ("接受", "Accepted"),
    "inserted": ("新增", "Inserted"),
    "unchanged_rows": ("未变", "Unchanged"),
    "import_result": ("导入结果", "Import result"),
    "updated": ("更新", "Updated"),
    "rejected": ("拒绝", "Rejected"),
    "rejected_rows": ("被拒绝的行", "Rejected rows"),
    "progress": ("进度", "Progress"),
    "queued": ("排队中", "Queued"),
    "running": ("运行中", "Running"),
    "done": ("完成", "Done"),
    "failed": ("失败", "Failed"),
    "when": ("时间", "When"),
    "none": ("暂无", "None yet"),
    "total": ("合计", "Total"),
    "mean": ("均值", "Mean"),
    "median": ("中位数", "Median"),
    "forbidden": ("你的角色无权查看此页面。", "Your role may not see this page."),
    "not_found": ("未找到", "Not found"),
    "new": ("新建", "new"),
    "changed": ("修改", "changed"),
    "unchanged": ("无变化", "unchanged"),
    "city": ("城市", "City"),
    "email": ("邮箱", "E-mail"),
    "phone": ("手机号", "Phone"),
    "province": ("省份", "Province"),
    "address": ("地址", "Address"),
    "birth_date": ("生日", "Birth date"),
    "gender": ("性别", "Gender"),
    "signup_at": ("注册时间", "Signed up"),
    "name": ("姓名", "Name"),
    "amount": ("金额", "Amount"),
    "tickets": ("工单", "Tickets"),
    "opportunities": ("商机", "Opportunities"),
    "people": ("联系人", "People at this account"),
    "people_summary": ("{people} 位联系人；连同联系人：{orders} 笔已付订单，销售额 {revenue}，"
                       "近 30 天 {events} 个行为事件",
                       "{people} people; with theirs: {orders} paid orders, revenue {revenue}, "
                       "{events} events in the last 30 days"),
    "role": ("角色", "Role"),
    "account": ("所属客户", "Account"),
    "events_30d": ("近 30 天事件", "Events, 30 days"),
    "last_event": ("最近事件", "Last event"),
    "feedback": ("反馈", "Feedback"),
    "events": ("行为事件", "Events"),
    "segment_changes": ("分群变化", "Segment changes"),
    "tier_change": ("等级变化", "Tier change"),
    "stage_change": ("阶段变化", "Stage change"),
    "open": ("打开", "Open"),
    "report": ("复盘报告", "Review report"),
    "kpis": ("客户群指标", "Segment KPIs"),
    "customers_count": ("客户数", "Customers"),
}


# codes the pages show in words (the codes stay in links, filters and the raw JSON)
_WORDS.update({
    "ds_pending": ("待发送", "Pending"), "ds_delivered": ("已送达", "Delivered"),
    "ds_dead": ("发送失败", "Dead"), "ds_held_out": ("对照组留出", "Held out"),
    "ds_suppressed": ("已拦截（无同意）", "Suppressed (no consent)"),
    "ds_held": ("暂停中", "Held"),
    "ev_segment.entered": ("进入分群", "Entered segment"),
    "ev_segment.exited": ("离开分群", "Left segment"),
    "ev_tier.changed": ("等级变化", "Tier changed"),
    "ev_lifecycle.changed": ("生命周期变化", "Lifecycle changed"),
    "ev_lead.qualified": ("线索合格", "Lead qualified"),
    "ev_ticket.sla_breached": ("工单超出 SLA", "Ticket SLA breached"),
    "ev_playbook.step": ("行动手册步骤", "Playbook step"),
    "ev_opportunity.stage_changed": ("商机阶段变化", "Opportunity stage changed"),
    "on_enter": ("进入分群", "Enters segment"), "on_exit": ("离开分群", "Leaves segment"),
    "on_tier_change": ("等级变化", "Tier change"),
    "on_lifecycle_change": ("生命周期变化", "Lifecycle change"),
    "on_lead_qualified": ("线索合格", "Lead qualified"),
    "on_sla_breach": ("超出 SLA", "SLA breach"),
    "on_stage_change": ("商机阶段变化", "Opportunity stage change"),
    "src_trigger": ("触发器", "Trigger"), "src_playbook": ("行动手册", "Playbook"),
    "act_webhook": ("Webhook", "Webhook"), "act_email": ("邮件", "E-mail"),
    "act_task": ("任务", "Task"), "act_tag": ("标签", "Tag"),
    "act_notify": ("群机器人", "Team chat"),
    "act_sms": ("短信", "Text message"),
    "pri_low": ("低", "Low"), "pri_normal": ("普通", "Normal"), "pri_high": ("高", "High"),
    "pri_urgent": ("紧急", "Urgent"),
    "ch_email": ("邮件", "E-mail"), "ch_sms": ("短信", "SMS"), "ch_phone": ("电话", "Phone"),
    "ch_webhook": ("Webhook", "Webhook"), "ch_wechat": ("微信", "WeChat"),
    "ch_all": ("全部渠道", "All channels"),
    "kind_dynamic": ("动态", "Dynamic"), "kind_static": ("静态名单", "Static list"),
    "kind_snapshot": ("快照", "Snapshot"),
    "segstatus_active": ("启用", "Active"), "segstatus_paused": ("已暂停", "Paused"),
})


def code_label(prefix: str, code: object, lang: str) -> str:
    """A code the pages show (a delivery status, an event, a segment kind…) in words;
    the code itself where none is known."""
    text = "" if code is None else str(code)
    return table(lang).get(f"{prefix}_{text}", text)


# the churn-risk bands are labelled where rules read their labels too
_WORDS.update({f"risk_{code}": (CHURN_RISK.label(code, "zh-CN"), CHURN_RISK.label(code, "en"))
               for code in CHURN_RISK.codes})


def words(lang: str) -> dict[str, str]:
    """Every word in one language."""
    index = 0 if lang == "zh-CN" else 1
    return {key: pair[index] for key, pair in _WORDS.items()}


_CACHE = {lang: words(lang) for lang in LANGUAGES}


def table(lang: str) -> dict[str, str]:
    return _CACHE.get(lang, _CACHE["en"])


def language(request: Request, default: str) -> str:
    """``?lang=`` first, then the cookie, then the browser's Accept-Language, then the
    workspace's locale."""
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if asked in LANGUAGES:
        return asked
    accept = request.headers.get("accept-language", "").lower()
    if accept.startswith("zh"):
        return "zh-CN"
    if accept.startswith("en"):
        return "en"
    return default if default in LANGUAGES else "en"


def reason_label(code: str | None, lang: str) -> str | None:
    """A membership change's reason (``data_change``, ``time``, …) in words."""
    if not code:
        return None
    return table(lang).get(f"reason_{code}", code)


def with_reason_labels(rows: list[dict[str, Any]], lang: str) -> list[dict[str, Any]]:
    """Membership rows with ``enter_reason_label`` and ``exit_reason_label`` beside the
    codes (the codes stay: they are what programs match on)."""
    return [{**r, "enter_reason_label": reason_label(r.get("enter_reason"), lang),
             "exit_reason_label": reason_label(r.get("exit_reason"), lang)} for r in rows]
