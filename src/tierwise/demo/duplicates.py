"""Customer records with known duplicates, for measuring a matcher.

Takes generated customers and adds, for a share of them, one to three more records of the
same person or company as another system would have typed them: a different id, the
phone in another format, e-mail in other case or with a domain typo, names in traditional
characters or with a typo, company legal-form suffix variants, fields left empty, the
city in its long form. ``truth`` says which records belong together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

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


@dataclass
class DuplicateSet:
    records: pa.Table  # customers-shaped table, originals and duplicates
    truth: dict[str, str]  # record id → entity id (the original's id)


def _vary_name(rng: np.random.Generator, name: str) -> str:
    for suffix in _SUFFIXES[:-1]:
        if name.endswith(suffix):
            return name[: -len(suffix)] + str(rng.choice(_SUFFIXES))
    choice = rng.integers(0, 4)
    if choice == 0:
        return name.translate(_TRADITIONAL)
    if choice == 1 and len(name) > 2:
        return name[0] + " " + name[1:]
    if choice == 2 and len(name) > 2:  # a typo: one character replaced
        position = int(rng.integers(1, len(name)))
        return name[:position] + str(rng.choice(list("伟芳娜敏静丽强磊"))) + name[position + 1:]
    return name


def _vary_phone(rng: np.random.Generator, phone: str | None) -> str | None:
    if phone is None:
        return None
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


def with_duplicates(customers: int, share: float = 0.1, seed: int = 1) -> DuplicateSet:
    """``customers`` generated customers plus duplicates of about ``share`` of them."""
    spec = DemoSpec(customers=customers, seed=seed)
    chunks = max(1, -(-customers // CHUNK))
    table = pa.concat_tables([generate_chunk(spec, i)["customers"] for i in range(chunks)])
    originals = table.to_pylist()
    rng = np.random.default_rng(seed + 1000)
    records = []
    truth: dict[str, str] = {}
    for row in originals:
        truth[row["customer_id"]] = row["customer_id"]
        records.append(row)
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
            for field in ("email", "phone", "birth_date"):
                if rng.random() < 0.25:
                    dup[field] = None
            truth[dup["customer_id"]] = row["customer_id"]
            records.append(dup)
    return DuplicateSet(pa.Table.from_pylist(records, schema=table.schema), truth)
