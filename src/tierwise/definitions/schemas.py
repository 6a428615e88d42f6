"""The canonical tables every import lands in.

A schema is plain data: the ingest stage reads it to convert and validate values, the fact
store reads it to build Parquet schemas, and the control store mirrors the customers table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

ColumnKind = Literal["string", "float", "int", "timestamp", "date", "json", "tags", "enum"]

#: Longest text accepted in an ordinary string cell; free-text columns allow more.
MAX_TEXT = 2_000
MAX_LONG_TEXT = 65_536


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    required: bool = False
    max_length: int = MAX_TEXT
    #: Inclusive bounds for numbers.
    min_value: float | None = None
    max_value: float | None = None
    #: Canonical values for ``enum`` columns mapped from accepted spellings (lower-cased).
    choices: dict[str, str] = field(default_factory=dict)
    #: Value used when the column is absent from the source or the cell is empty.
    default: str | None = None
    #: Header spellings recognised without a mapping (lower-cased, compared trimmed).
    synonyms: tuple[str, ...] = ()

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.kind]


_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "enum": pa.string(),
    "json": pa.string(),
    "tags": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    #: Columns that identify a row; re-importing a row with the same key replaces it.
    #: ``None`` means the table has no natural key and rows are identified by their content.
    key: tuple[str, ...] | None
    #: Columns that must name a known customer.
    customer_refs: tuple[str, ...] = ()
    #: The column that places a row in time (None for customers).
    time_column: str | None = None
    #: Where the rows live: the control store (small, mutable) or the fact store (large, append).
    home: Literal["control", "facts"] = "facts"
    #: Column that receives source columns no mapping names (a JSON object), if any.
    extras_column: str | None = None
    #: For a table without a key: the columns that identify a row (a row with the same
    #: values replaces it); empty: all of them.
    identity: tuple[str, ...] = ()

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def arrow_schema(self) -> pa.Schema:
        """Parquet schema of the fact-store files: canonical columns plus the source row."""
        fields = [pa.field(c.name, c.arrow_type) for c in self.columns]
        fields.append(pa.field("_row", pa.int64()))
        return pa.schema(fields)


def _c(name: str, kind: ColumnKind, *synonyms: str, **kw: object) -> Column:
    return Column(name, kind, synonyms=tuple(s.lower() for s in synonyms), **kw)  # type: ignore[arg-type]


_CUSTOMER_ID = ("customer_id", "客户id", "客户编号", "客户编码", "会员id", "会员编号", "用户id",
                "customer", "customer id", "cust_id", "client_id")

ORDER_STATUS = {
    "paid": "paid", "completed": "paid", "complete": "paid", "success": "paid",
    "已支付": "paid", "已付款": "paid", "已完成": "paid", "完成": "paid", "成功": "paid",
    "refunded": "refunded", "refund": "refunded", "已退款": "refunded", "退款": "refunded",
    "cancelled": "cancelled", "canceled": "cancelled", "已取消": "cancelled", "取消": "cancelled",
}

GENDER = {
    "male": "male", "m": "male", "man": "male", "男": "male", "先生": "male",
    "female": "female", "f": "female", "woman": "female", "女": "female", "女士": "female",
    "unknown": "unknown", "未知": "unknown", "other": "other", "其他": "other",
}

#: A contact's role in its account's decision chain: accepted spellings → code
#: (``definitions.vocabulary.ROLE_VALUES`` labels the codes in both languages).
ROLE = {
    "decision_maker": "decision_maker", "decision maker": "decision_maker",
    "decision-maker": "decision_maker", "dm": "decision_maker", "决策者": "decision_maker",
    "决策人": "decision_maker", "拍板人": "decision_maker",
    "influencer": "influencer", "影响者": "influencer", "影响人": "influencer",
    "user": "user", "end user": "user", "使用者": "user", "用户": "user", "最终用户": "user",
    "purchasing": "purchasing", "procurement": "purchasing", "buyer": "purchasing",
    "采购": "purchasing", "采购员": "purchasing",
    "finance": "finance", "财务": "finance",
    "technical": "technical", "technical evaluator": "technical", "it": "technical",
    "技术": "technical", "技术评估": "technical",
    "other": "other", "其他": "other",
}

CUSTOMERS = TableSchema(
    name="customers",
    home="control",
    key=("customer_id",),
    extras_column="attributes",
    columns=(
        _c("customer_id", "string", *_CUSTOMER_ID, required=True, max_length=128),
        _c("name", "string", "姓名", "客户名称", "名称", "客户姓名", "full_name", "customer_name"),
        _c("email", "string", "邮箱", "电子邮箱", "e-mail", "mail", max_length=320),
        _c("phone", "string", "手机", "手机号", "手机号码", "电话", "联系电话", "mobile", "tel",
           max_length=64),
        _c("address", "string", "地址", "联系地址", "详细地址", "收货地址", "street",
           "street_address"),
        _c("gender", "enum", "性别", "sex", choices=GENDER),
        _c("birth_date", "date", "生日", "出生日期", "birthday", "dob"),
        _c("city", "string", "城市", "所在城市"),
        _c("province", "string", "省份", "省", "所在省份", "state"),
        _c("country", "string", "国家", "国家/地区"),
        _c("industry", "string", "行业", "所属行业"),
        _c("company_size", "string", "公司规模", "企业规模", "员工人数", "employees"),
        _c("channel", "string", "渠道", "来源渠道", "获客渠道", "source"),
        _c("owner", "string", "负责人", "客户经理", "销售", "account_owner"),
        # a contact (a person) names the account (a company, also a customer) it works
        # for, and its role there; an account and a private customer leave both empty
        _c("account_id", "string", "所属客户", "所属账户", "所属公司", "公司编号", "客户账户",
           "account", "account id", "company_id", max_length=128),
        _c("role", "enum", "角色", "联系人角色", "决策角色", "contact_role", choices=ROLE),
        _c("signup_at", "timestamp", "注册时间", "注册日期", "创建时间", "created_at",
           "signup_date", "registered_at"),
        _c("acquisition_cost", "float", "获客成本", "cac", min_value=0),
        _c("tags", "tags", "标签"),
        _c("attributes", "json", "属性", "扩展属性", max_length=MAX_LONG_TEXT),
    ),
)

ORDERS = TableSchema(
    name="orders",
    key=("order_id",),
    customer_refs=("customer_id",),
    time_column="ordered_at",
    # columns of an order file beyond these (payment method, store, device, …) are kept
    extras_column="properties",
    columns=(
        _c("order_id", "string", "订单号", "订单编号", "订单id", "order id", "order_no",
           required=True, max_length=128),
        _c("customer_id", "string", *_CUSTOMER_ID, required=True, max_length=128),
        _c("ordered_at", "timestamp", "下单时间", "订单时间", "订单日期", "下单日期", "order_date",
           "date", "created_at", "time", required=True),
        _c("amount", "float", "金额", "订单金额", "实付金额", "支付金额", "order_amount", "total",
           "revenue", "price", required=True),
        _c("currency", "string", "币种", "货币", max_length=8),
        _c("status", "enum", "状态", "订单状态", "order_status", choices=ORDER_STATUS,
           default="paid"),
        _c("quantity", "int", "数量", "件数", "qty", min_value=0),
        _c("product_id", "string", "商品id", "商品编号", "产品id", "sku", max_length=128),
        _c("category", "string", "品类", "类目", "商品类目", "产品类别"),
        _c("cost", "float", "成本", min_value=None),
        _c("discount", "float", "折扣", "优惠金额", "优惠"),
        _c("channel", "string", "渠道", "销售渠道", "下单渠道"),
        _c("properties", "json", "订单属性", "扩展属性", "props", max_length=MAX_LONG_TEXT),
    ),
)

EVENTS = TableSchema(
    name="events",
    key=None,
    customer_refs=("customer_id",),
    time_column="occurred_at",
    extras_column="properties",
    columns=(
        _c("event_id", "string", "事件id", "事件编号", max_length=128),
        _c("customer_id", "string", *_CUSTOMER_ID, required=True, max_length=128),
        _c("occurred_at", "timestamp", "发生时间", "时间", "事件时间", "timestamp", "time",
           "event_time", required=True),
        _c("type", "string", "类型", "事件类型", "event", "event_type", "name", required=True,
           max_length=128),
        _c("properties", "json", "属性", "事件属性", "props", max_length=MAX_LONG_TEXT),
    ),
)

TICKETS = TableSchema(
    name="tickets",
    key=("ticket_id",),
    customer_refs=("customer_id",),
    time_column="opened_at",
    columns=(
        _c("ticket_id", "string", "工单号", "工单编号", "工单id", "ticket id", required=True,
           max_length=128),
        _c("customer_id", "string", *_CUSTOMER_ID, required=True, max_length=128),
        _c("opened_at", "timestamp", "创建时间", "提交时间", "开单时间", "created_at",
           required=True),
        _c("closed_at", "timestamp", "关闭时间", "解决时间", "resolved_at"),
        _c("priority", "string", "优先级", "紧急程度"),
        _c("status", "string", "状态", "工单状态"),
        _c("category", "string", "类别", "分类", "问题类型"),
        _c("csat", "int", "满意度", "satisfaction", min_value=1, max_value=5),
        _c("channel", "string", "渠道", "受理渠道", "来源渠道", "工单渠道", "source"),
    ),
)

FEEDBACK = TableSchema(
    name="feedback",
    key=None,
    customer_refs=("customer_id",),
    time_column="at",
    columns=(
        _c("customer_id", "string", *_CUSTOMER_ID, required=True, max_length=128),
        _c("at", "timestamp", "时间", "反馈时间", "日期", "date", "submitted_at", required=True),
        _c("nps", "int", "推荐值", "nps评分", "nps_score", min_value=0, max_value=10),
        _c("csat", "int", "满意度", "satisfaction", min_value=1, max_value=5),
        _c("comment", "string", "评论", "意见", "反馈内容", "备注", max_length=MAX_LONG_TEXT),
    ),
)

REFERRALS = TableSchema(
    name="referrals",
    key=None,
    customer_refs=("referrer_id", "referred_id"),
    time_column="at",
    columns=(
        _c("referrer_id", "string", "推荐人", "推荐人id", "推荐人编号", required=True,
           max_length=128),
        _c("referred_id", "string", "被推荐人", "被推荐人id", "被推荐人编号", required=True,
           max_length=128),
        _c("at", "timestamp", "时间", "推荐时间", "日期", "date", required=True),
    ),
)

_OPPORTUNITY_ID = ("opportunity_id", "商机编号", "商机id", "商机号", "机会编号", "opportunity id",
                   "opportunity", "opp_id", "deal_id", "deal id")
_ACCOUNT_ID = (*_CUSTOMER_ID, "account_id", "account id", "account", "客户账户", "企业id",
               "公司编号", "公司id")

#: Sales opportunities of an account (a customer): one row per opportunity, its current
#: state; re-importing it with another stage moves it and records the move in
#: ``opportunity_stages``. ``stage`` takes the workspace's ``opportunity_stages``;
#: ``stage_at`` (when it reached its stage) and ``closed_at`` are filled in when the source
#: does not give them (``ingest.opportunities``).
OPPORTUNITIES = TableSchema(
    name="opportunities",
    key=("opportunity_id",),
    customer_refs=("customer_id",),
    time_column="created_at",
    extras_column="properties",
    columns=(
        _c("opportunity_id", "string", *_OPPORTUNITY_ID, required=True, max_length=128),
        _c("customer_id", "string", *_ACCOUNT_ID, required=True, max_length=128),
        _c("name", "string", "商机名称", "机会名称", "项目名称", "opportunity_name", "deal_name",
           "title"),
        _c("stage", "string", "阶段", "商机阶段", "销售阶段", "stage_name", "deal_stage",
           required=True, max_length=64),
        _c("amount", "float", "金额", "商机金额", "预计金额", "合同金额", "deal_amount", "value",
           min_value=0),
        _c("probability", "float", "赢率", "成交概率", "win_probability", min_value=0,
           max_value=100),
        _c("created_at", "timestamp", "创建时间", "创建日期", "立项时间", "created",
           "create_time", "created_date", required=True),
        _c("expected_close", "date", "预计成交日期", "预计签约日期", "预计结单日期", "close_date",
           "expected_close_date"),
        _c("stage_at", "timestamp", "阶段时间", "进入阶段时间", "阶段变更时间", "stage_changed_at",
           "stage_date"),
        _c("closed_at", "timestamp", "成交时间", "结单时间", "关闭时间", "closed", "closed_date"),
        _c("owner", "string", "负责人", "销售", "商机负责人", "销售负责人", "owner_name"),
        _c("reason", "string", "输赢原因", "赢单原因", "输单原因", "win_loss_reason",
           "lost_reason", "loss_reason"),
        _c("properties", "json", "商机属性", "扩展属性", "props", max_length=MAX_LONG_TEXT),
    ),
)

#: Each move of an opportunity into a stage (``from_stage`` None for a new one), written
#: by the opportunity imports; importing it directly adds history from another system.
OPPORTUNITY_STAGES = TableSchema(
    name="opportunity_stages",
    key=None,
    identity=("opportunity_id", "stage", "at"),
    customer_refs=("customer_id",),
    time_column="at",
    columns=(
        _c("opportunity_id", "string", *_OPPORTUNITY_ID, required=True, max_length=128),
        _c("customer_id", "string", *_ACCOUNT_ID, required=True, max_length=128),
        _c("stage", "string", "阶段", "新阶段", "to_stage", required=True, max_length=64),
        _c("from_stage", "string", "原阶段", "上一阶段", "previous_stage", max_length=64),
        _c("at", "timestamp", "时间", "变更时间", "日期", "changed_at", "date", required=True),
        _c("amount", "float", "金额", "商机金额", min_value=0),
        _c("owner", "string", "负责人", "销售"),
    ),
)

TABLES: dict[str, TableSchema] = {
    t.name: t for t in (CUSTOMERS, ORDERS, EVENTS, TICKETS, FEEDBACK, REFERRALS, OPPORTUNITIES,
                        OPPORTUNITY_STAGES)
}
FACT_TABLES = [t for t in TABLES.values() if t.home == "facts"]

#: An account's rows together with its contacts': the rows of the table named, each
#: contact's counted for the account it works for (what segment rules and the account-level
#: measures read as ``account_orders`` and ``account_events``).
ROLLUPS: dict[str, str] = {"account_orders": "orders", "account_events": "events"}

#: The contacts of accounts as a source rules aggregate (``COUNT(contacts WHERE role =
#: '决策者')``): customers that name an account, counted for it. Not imported as such (a
#: contact is imported as a customer with ``account_id``); without their personal data.
#: ``added_at`` places a contact in time: its sign-up, else when it was first stored.
CONTACTS = TableSchema(
    name="contacts",
    home="control",
    key=("customer_id",),
    customer_refs=("account_id",),
    time_column="added_at",
    columns=(
        Column("customer_id", "string"), Column("account_id", "string"),
        CUSTOMERS.column("role"), CUSTOMERS.column("gender"),
        Column("birth_date", "date"), Column("city", "string"),
        Column("province", "string"), Column("country", "string"),
        Column("channel", "string"), Column("owner", "string"),
        Column("signup_at", "timestamp"), Column("added_at", "timestamp"),
        Column("tags", "tags"),
    ),
)


def source_schema(source: str) -> TableSchema:
    """The schema of a source segment rules aggregate (a fact table, a roll-up of one, or
    the contacts)."""
    if source == "contacts":
        return CONTACTS
    return TABLES[ROLLUPS.get(source, source)]


def table_schema(name: str) -> TableSchema:
    """The canonical schema called ``name``; a clear error lists the valid names."""
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(
            f"unknown table {name!r}; expected one of: {', '.join(TABLES)}"
        ) from None
