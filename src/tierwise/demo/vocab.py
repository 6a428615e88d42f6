"""Word lists for generated customers: names, places, industries, products (zh-CN and en)."""

from __future__ import annotations

SURNAMES_ZH = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓"
                   "曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢")
GIVEN_ZH = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂兰华建国红玉萍"
                "鹏辉宇浩然子轩梓涵欣怡俊凯雪梅志文博思雨晨嘉琪佳一诺婷晓东海波慧颖")
# (city, province, weight) — weights loosely follow population and online retail activity.
CITIES_ZH = [
    ("上海", "上海", 10), ("北京", "北京", 10), ("深圳", "广东", 8), ("广州", "广东", 8),
    ("杭州", "浙江", 6), ("成都", "四川", 6), ("南京", "江苏", 5), ("武汉", "湖北", 5),
    ("苏州", "江苏", 5), ("西安", "陕西", 4), ("重庆", "重庆", 5), ("天津", "天津", 4),
    ("长沙", "湖南", 3), ("郑州", "河南", 3), ("青岛", "山东", 3), ("宁波", "浙江", 3),
    ("厦门", "福建", 2), ("合肥", "安徽", 2), ("济南", "山东", 2), ("昆明", "云南", 2),
    ("沈阳", "辽宁", 2), ("大连", "辽宁", 2), ("福州", "福建", 2), ("无锡", "江苏", 2),
    ("东莞", "广东", 2), ("佛山", "广东", 2), ("哈尔滨", "黑龙江", 1), ("南宁", "广西", 1),
    ("贵阳", "贵州", 1), ("石家庄", "河北", 1), ("太原", "山西", 1), ("南昌", "江西", 1),
    ("兰州", "甘肃", 1), ("乌鲁木齐", "新疆", 1), ("呼和浩特", "内蒙古", 1), ("海口", "海南", 1),
]
INDUSTRIES_ZH = ["制造业", "零售", "互联网", "金融", "教育", "医疗健康", "物流", "餐饮",
                 "房地产", "专业服务"]
CATEGORIES_ZH = ["数码电子", "家居家装", "服饰鞋包", "美妆个护", "食品生鲜", "母婴用品",
                 "运动户外", "图书文具", "企业软件", "办公设备"]
CHANNELS_ZH = ["天猫", "京东", "微信小程序", "官网", "线下门店", "抖音", "销售代表"]
OWNERS_ZH = [f"销售{i:02d}" for i in range(1, 21)]
TICKET_CATEGORIES_ZH = ["物流配送", "退换货", "产品质量", "账户问题", "发票", "使用咨询"]
COMMENTS_ZH = ["很满意，会再买", "物流有点慢", "客服回复及时", "质量一般", "价格偏高",
               "推荐给朋友了", "包装破损", "功能很好用", "希望多些优惠", ""]
TAGS_ZH = ["vip", "高价值", "价格敏感", "老客户", "企业采购", "促销响应"]

FIRST_EN = ["James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda",
            "William", "Elizabeth", "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica",
            "Thomas", "Sarah", "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa",
            "Anthony", "Betty", "Mark", "Sandra", "Steven", "Ashley", "Paul", "Emily", "Andrew",
            "Donna", "Joshua", "Michelle", "Kevin", "Carol", "Brian", "Amanda"]
LAST_EN = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
           "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson",
           "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
           "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young"]
CITIES_EN = [
    ("New York", "NY", 10), ("Los Angeles", "CA", 8), ("Chicago", "IL", 6),
    ("Houston", "TX", 5), ("Phoenix", "AZ", 3), ("Philadelphia", "PA", 3),
    ("San Antonio", "TX", 2), ("San Diego", "CA", 3), ("Dallas", "TX", 3),
    ("San Jose", "CA", 3), ("Austin", "TX", 3), ("Seattle", "WA", 4), ("Denver", "CO", 2),
    ("Boston", "MA", 4), ("Atlanta", "GA", 3), ("Miami", "FL", 3), ("Portland", "OR", 2),
]
INDUSTRIES_EN = ["Manufacturing", "Retail", "Software", "Finance", "Education", "Healthcare",
                 "Logistics", "Hospitality", "Real estate", "Professional services"]
CATEGORIES_EN = ["Electronics", "Home", "Apparel", "Beauty", "Grocery", "Baby", "Outdoor",
                 "Books", "Business software", "Office equipment"]
CHANNELS_EN = ["Web shop", "Amazon", "Mobile app", "Retail store", "Marketplace", "Sales rep"]
OWNERS_EN = [f"rep{i:02d}" for i in range(1, 21)]
TICKET_CATEGORIES_EN = ["Shipping", "Returns", "Product quality", "Account", "Billing",
                        "How-to"]
COMMENTS_EN = ["Great, will buy again", "Delivery was slow", "Support answered fast",
               "Quality is average", "A bit expensive", "Recommended to a friend",
               "Box arrived damaged", "Works really well", "More discounts please", ""]
TAGS_EN = ["vip", "high_value", "price_sensitive", "loyal", "b2b", "promo_responder"]

COMPANY_SIZES = ["1-10", "11-50", "51-200", "201-1000", "1000+"]
EVENT_PAGES = ["/", "/products", "/pricing", "/docs", "/blog", "/cart", "/checkout"]
CAMPAIGNS = ["spring_sale", "618", "double11", "newsletter", "webinar", "retargeting"]

#: Why opportunities were won or lost (the demo's pipeline).
WIN_REASONS_ZH = ["价格有优势", "产品功能匹配", "客户关系好", "交付周期短"]
LOSS_REASONS_ZH = ["价格过高", "选择了竞品", "预算取消", "需求变更", "决策延迟"]
WIN_REASONS_EN = ["Better price", "Product fit", "Relationship", "Faster delivery"]
LOSS_REASONS_EN = ["Too expensive", "Chose a competitor", "Budget cut", "Needs changed",
                   "Decision postponed"]
DEAL_NAMES_ZH = ["年度采购", "系统升级", "新项目", "续约", "扩容", "试点"]
DEAL_NAMES_EN = ["Annual purchase", "System upgrade", "New project", "Renewal", "Expansion",
                 "Pilot"]
