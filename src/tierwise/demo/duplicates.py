"""Customer records with known duplicates, for measuring a matcher.

Takes generated customers, gives them street addresses, and adds for a share of them one to
three more records of the same person or company as another system would have typed them:
a different id, the phone in another format, e-mail in other case or with a domain typo,
names in traditional characters or with a typo, company legal-form suffix variants, fields
left empty, the city in its long form — and on top one harder change each (``KINDS``):
the name in pinyin in either order (张伟 / Zhang Wei / Wei Zhang), a nickname or initial
(Robert → Bob, R.), a company with or without its city and branch, a landline instead of
the mobile, the address written differently, two phone digits transposed, or no e-mail and
no phone at all.

It also adds records of *other* people that look alike (``LOOKALIKES``): a family member
at the same address with the same phone, and colleagues who give the company switchboard
as their phone. ``truth`` says which records belong together; ``kinds`` says how each
added record was made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from tierwise.demo import vocab
from tierwise.demo.generator import CHUNK, DemoSpec, generate_chunk

# Simplified → traditional for characters common in generated names and cities.
_TRADITIONAL = str.maketrans({
    "张": "張", "刘": "劉", "陈": "陳", "杨": "楊", "黄": "黃", "赵": "趙", "吴": "吳",
    "周": "週", "孙": "孫", "马": "馬", "郑": "鄭", "罗": "羅", "谢": "謝", "韩": "韓",
    "冯": "馮", "邓": "鄧", "萧": "蕭", "董": "董", "叶": "葉", "苏": "蘇", "吕": "呂",
    "伟": "偉", "丽": "麗", "强": "強", "军": "軍", "艳": "艷", "杰": "傑", "涛": "濤",
    "华": "華", "国": "國", "红": "紅", "鹏": "鵬", "辉": "輝", "轩": "軒", "凯": "凱",
    "东": "東", "海": "海", "波": "波", "广": "廣", "州": "州", "深": "深", "圳": "圳",
    "京": "京", "汉": "漢", "庆": "慶", "阳": "陽", "长": "長",
})
_SUFFIXES = ["有限公司", "有限责任公司", "股份有限公司", ""]
_TYPO_DOMAINS = {"example.com": "exmaple.com", "example.cn": "example.con",
                 "example.net": "exampel.net"}


_DISTRICTS_ZH = ["朝阳区", "海淀区", "浦东新区", "徐汇区", "天河区", "南山区", "西湖区",
                 "武侯区", "江汉区", "鼓楼区", "雁塔区", "历下区"]
_STREETS_ZH = ["人民路", "中山路", "解放路", "建设路", "和平路", "新华路", "长江路", "黄河路",
               "学府路", "科技路", "文化路", "光明路", "胜利路", "东风路", "花园路", "青年路",
               "滨江路", "湖滨路", "幸福路", "金桥路"]
_STREETS_EN = ["Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill",
               "Park", "Sunset", "Lincoln", "Jackson", "River", "Church", "Highland"]
_STREET_TYPES = [("Street", "St"), ("Avenue", "Ave"), ("Road", "Rd"), ("Drive", "Dr")]
_AREA_CODES = ["010", "021", "020", "0755", "0571", "028", "027", "025"]
_NICKNAMES = {"James": ["Jim", "Jimmy"], "Robert": ["Bob", "Rob"], "John": ["Jack", "Johnny"],
              "Michael": ["Mike"], "William": ["Bill", "Will"], "David": ["Dave"],
              "Richard": ["Rick", "Dick"], "Joseph": ["Joe"], "Thomas": ["Tom"],
              "Charles": ["Charlie", "Chuck"], "Christopher": ["Chris"], "Daniel": ["Dan"],
              "Matthew": ["Matt"], "Anthony": ["Tony"], "Patricia": ["Pat", "Patty"],
              "Jennifer": ["Jen", "Jenny"], "Elizabeth": ["Liz", "Beth"],
              "Barbara": ["Barb"], "Susan": ["Sue"], "Jessica": ["Jess"],
              "Margaret": ["Maggie", "Peggy"], "Katherine": ["Kate", "Kathy"]}

#: The harder change each duplicate gets, on top of the typing variations.
KINDS = ("pinyin_or_nickname", "company_prefix", "landline", "address", "transposed",
         "no_contact")
#: Records of other people that look like a customer (must not match).
LOOKALIKES = ("family", "switchboard")


@dataclass
class DuplicateSet:
    records: pa.Table  # customers-shaped table, originals and duplicates
    truth: dict[str, str]  # record id → entity id (the original's id)
    kinds: dict[str, str] = field(default_factory=dict)  # added record → how it was made


def _vary_name(rng: np.random.Generator, name: str) -> str:
    for suffix in _SUFFIXES[:-1]:
        if name.endswith(suffix):
            return name[: -len(suffix)] + str(rng.choice(_SUFFIXES))
    latin = name.isascii()
    choice = rng.integers(0, 4)
    if choice == 0:
        return name.upper() if latin else name.translate(_TRADITIONAL)
    if choice == 1 and len(name) > 2:
        return "  ".join(name.split(" ")) if latin else name[0] + " " + name[1:]
    if choice == 2 and len(name) > 2:  # a typo: one character replaced
        position = int(rng.integers(1, len(name)))
        if latin and name[position] == " ":
            position -= 1
        typed = rng.choice(list("aeiourn")) if latin else rng.choice(list("伟芳娜敏静丽强磊"))
        return name[:position] + str(typed) + name[position + 1:]
    return name


def _vary_phone(rng: np.random.Generator, phone: str | None) -> str | None:
    if phone is None:
        return None
    if not phone.startswith("+86"):
        return str(rng.choice([phone, re.sub(r"\D", "", phone), phone.replace(" ", "-")]))
    digits = phone.replace("+86", "").replace(" ", "")
    return str(rng.choice([digits, f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}",
                           f"{digits[:3]}-{digits[3:7]}-{digits[7:]}", phone]))


def _vary_email(rng: np.random.Generator, email: str | None) -> str | None:
    if email is None:
        return None
    user, domain = email.split("@")
    if rng.random() < 0.3:
        domain = _TYPO_DOMAINS.get(domain, domain)
    return (user.upper() if rng.random() < 0.5 else user) + "@" + domain


def _address(rng: np.random.Generator, city: str, zh: bool) -> str:
    number = int(rng.integers(1, 400))
    if zh:
        return (f"{city}市{rng.choice(_DISTRICTS_ZH)}{rng.choice(_STREETS_ZH)}{number}号"
                f"{int(rng.integers(1, 30))}栋{int(rng.integers(101, 2400))}室")
    kind = _STREET_TYPES[int(rng.integers(0, len(_STREET_TYPES)))][0]
    return f"{number} {rng.choice(_STREETS_EN)} {kind}, Apt {int(rng.integers(1, 60))}"


def _rewrite_address(rng: np.random.Generator, address: str | None) -> str | None:
    """The same address as someone else types it."""
    if address is None:
        return None
    if "号" in address:
        city = address.split("市", 1)
        rest = city[1] if len(city) == 2 else address
        style = int(rng.integers(0, 3))
        if style == 0:  # no city, full-width digits
            return rest.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
        if style == 1:  # city without 市, spaces between the parts
            return city[0] + " " + re.sub(r"(\d+号)", r" \1 ", rest).strip()
        return rest.replace("栋", "幢")
    for long, short in _STREET_TYPES:
        if long in address:
            address = address.replace(long, short + ("." if rng.random() < 0.5 else ""))
    return address.replace("Apt", "#") if rng.random() < 0.5 else address.upper()


def _pinyin_name(rng: np.random.Generator, name: str) -> str:
    from tierwise.identity.keys import _pinyin_tokens

    surname, *given = [t.capitalize() for t in _pinyin_tokens(name)]
    parts = [surname, *given] if rng.random() < 0.5 else [*given, surname]
    return " ".join(parts)


def _nickname(rng: np.random.Generator, name: str) -> str:
    first, _, last = name.partition(" ")
    if rng.random() < 0.4 or first not in _NICKNAMES:
        return f"{first[0]}. {last}"
    return f"{rng.choice(_NICKNAMES[first])} {last}"


def _company_variant(rng: np.random.Generator, name: str, city: str) -> str:
    core = name[len(city):] if name.startswith(city) else name
    style = int(rng.integers(0, 3))
    if style == 0:  # without the city in front: 北京华盛科技有限公司 → 华盛科技有限公司
        return core
    if style == 1:  # a branch: 华盛科技有限公司上海分公司
        return f"{core}{rng.choice(['上海', '深圳', '广州', '杭州'])}分公司"
    return f"{core}（{city}）"


def _transpose(rng: np.random.Generator, phone: str | None) -> str | None:
    """Two neighbouring different digits swapped, past the operator or area prefix."""
    if phone is None:
        return None
    places = [i for i, c in enumerate(phone) if c.isdigit()]
    pairs = [(a, b) for a, b in zip(places[5:], places[6:], strict=False)
             if phone[a] != phone[b]]
    if not pairs:
        return phone
    a, b = pairs[int(rng.integers(0, len(pairs)))]
    chars = list(phone)
    chars[a], chars[b] = chars[b], chars[a]
    return "".join(chars)


def _hard_change(rng: np.random.Generator, dup: dict, row: dict, zh: bool) -> str:
    """Apply one of ``KINDS`` to ``dup`` (a copy of ``row``); return the kind applied."""
    kind = KINDS[int(rng.integers(0, len(KINDS)))]
    company = row.get("industry") is not None
    if kind == "pinyin_or_nickname" and not company:
        dup["name"] = _pinyin_name(rng, row["name"]) if zh else _nickname(rng, row["name"])
    elif kind in ("pinyin_or_nickname", "company_prefix") and company and zh:
        kind = "company_prefix"
        dup["name"] = _company_variant(rng, row["name"], row["city"])
    elif kind == "landline":
        code = rng.choice(_AREA_CODES) if zh else str(int(rng.integers(201, 990)))
        dup["phone"] = f"{code}-{int(rng.integers(2, 9))}{int(rng.integers(0, 10**6)):07d}" \
            if zh else f"+1 {code} 555 {int(rng.integers(0, 10**4)):04d}"
    elif kind == "address":
        dup["address"] = _rewrite_address(rng, row.get("address"))
    elif kind == "transposed" and row.get("phone"):
        dup["phone"] = _transpose(rng, row["phone"])
    elif kind == "no_contact":
        dup["email"] = dup["phone"] = None
    else:
        kind = "typed"
    return kind


def _lookalike(rng: np.random.Generator, row: dict, index: int, zh: bool,
               kind: str) -> dict:
    """Another person who shares the customer's phone (family) or switchboard."""
    other = dict(row)
    other["customer_id"] = f"{row['customer_id']}-{kind[0].upper()}{index}"
    given = "".join(rng.choice(vocab.GIVEN_ZH, 2))
    if zh:
        surname = row["name"][0] if kind == "family" else rng.choice(list("王李赵孙周吴郑冯"))
        other["name"] = surname + given
    else:
        first = str(rng.choice(["Alex", "Sam", "Jordan", "Taylor", "Casey", "Morgan"]))
        last = row["name"].split(" ")[-1] if kind == "family" else str(
            rng.choice(["Reed", "Hale", "Price", "Stone", "Wells"]))
        other["name"] = f"{first} {last}"
    other["email"] = None if rng.random() < 0.5 else \
        f"{other['customer_id'].lower().replace('-', '')}@example.org"
    other["gender"] = str(rng.choice(["male", "female"]))
    other["birth_date"] = None
    if kind == "switchboard":
        other["address"] = row.get("address")
    return other


def with_duplicates(customers: int, share: float = 0.1, seed: int = 1,
                    lookalikes: float | None = None, locale: str = "zh-CN") -> DuplicateSet:
    """``customers`` generated customers plus duplicates of about ``share`` of them, and
    look-alike other people next to about ``lookalikes`` of them (default ``share / 4``)."""
    spec = DemoSpec(customers=customers, seed=seed, locale=locale)
    chunks = max(1, -(-customers // CHUNK))
    table = pa.concat_tables([generate_chunk(spec, i)["customers"] for i in range(chunks)])
    originals = table.to_pylist()
    rng = np.random.default_rng(seed + 1000)
    zh = locale == "zh-CN"
    lookalike_share = share / 4 if lookalikes is None else lookalikes
    records = []
    truth: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for row in originals:
        row["address"] = _address(rng, row["city"], zh) if rng.random() < 0.8 else None
        truth[row["customer_id"]] = row["customer_id"]
        records.append(row)
        if rng.random() < lookalike_share and row.get("phone"):
            kind = LOOKALIKES[int(rng.integers(0, len(LOOKALIKES)))]
            if kind == "switchboard":  # the customer gives the switchboard too
                row["phone"] = (f"{rng.choice(_AREA_CODES)}-{int(rng.integers(2, 9))}"
                                f"{int(rng.integers(0, 10**6)):07d}") if zh else row["phone"]
            for index in range(1 if kind == "family" else int(rng.integers(2, 5))):
                other = _lookalike(rng, row, index + 1, zh, kind)
                truth[other["customer_id"]] = other["customer_id"]
                kinds[other["customer_id"]] = kind
                records.append(other)
        if rng.random() >= share:
            continue
        for copy in range(int(rng.integers(1, 4))):
            dup = dict(row)
            dup["customer_id"] = f"{row['customer_id']}-D{copy + 1}"
            dup["name"] = _vary_name(rng, row["name"])
            dup["phone"] = _vary_phone(rng, row["phone"])
            dup["email"] = _vary_email(rng, row["email"])
            if rng.random() < 0.3:
                dup["city"] = f"{row['city']}市"
            if rng.random() < 0.1:  # city and province typed into each other's column
                dup["city"], dup["province"] = row["province"], row["city"]
            for field_name in ("email", "phone", "birth_date", "address"):
                if rng.random() < 0.25:
                    dup[field_name] = None
            kinds[dup["customer_id"]] = _hard_change(rng, dup, row, zh)
            truth[dup["customer_id"]] = row["customer_id"]
            records.append(dup)
    schema = table.schema.append(pa.field("address", pa.string())) \
        if "address" not in table.schema.names else table.schema
    return DuplicateSet(pa.Table.from_pylist(records, schema=schema), truth, kinds)
