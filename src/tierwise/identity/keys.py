"""Comparison keys: the forms of a customer record that the matcher compares.

Each key is computed once per distinct value (a million records hold far fewer distinct
names, cities and addresses), with the same cleaners imports use:

- ``name_key`` — simplified characters, lower case, no punctuation; companies without
  legal-form suffix (廣州華盛有限公司 → 广州华盛).
- ``name_canonical`` — the name's tokens sorted, Chinese names in pinyin (张伟, Zhang Wei
  and Wei Zhang all give ``wei zhang``); companies without a leading place and a branch.
- ``name_forms`` — spellings of the same name: Chinese names in pinyin with the tokens
  sorted (张伟, Zhang Wei and Wei Zhang all give ``wei zhang``), Latin names with tokens
  sorted and each first name also as its nickname family (Bob Smith ~ Robert Smith),
  companies also without a leading city or province and without a branch
  (北京华盛科技 ~ 华盛科技, 华盛科技上海分公司 ~ 华盛科技).
- ``name_initials`` — a full Latin name with each token but one reduced to its initial,
  and ``name_abbreviated`` — a name that holds an initial, as written: R. Smith agrees with
  Robert Smith, but Steven Smith does not with Sam Smith.
- ``email_key``, ``email_user`` — the cleaned address, and its part before the @ (a typo in
  the domain still agrees on the user; shared mailboxes such as info@ or kefu@ have none).
- ``company_key`` — ``name_key`` of companies only (a company name is rare enough to compare
  all records that carry it).
- ``phone_key`` — E.164; ``city_key``; ``birth_date``; ``gender`` (unknown is missing);
  ``address_key`` — simplified, without the leading province and city, without spaces and
  punctuation, common street words shortened, 幢 and 号楼 written 栋.
- ``industry_key``, ``size_key`` — a company's industry and size class.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import pyarrow as pa

from tierwise.ingest.cleaning import clean_email, clean_region, match_key, phone_cleaner

#: Provinces and the larger cities, as they lead company names and addresses (北京华盛科技,
#: 上海市浦东新区…). Longest first so 黑龙江 is tried before a two-character prefix.
_PLACES = sorted({
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江",
    "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州",
    "云南", "陕西", "甘肃", "青海", "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港",
    "澳门", "广州", "深圳", "杭州", "南京", "苏州", "成都", "武汉", "西安", "郑州", "长沙",
    "青岛", "济南", "厦门", "福州", "宁波", "无锡", "合肥", "东莞", "佛山", "沈阳", "大连",
    "哈尔滨", "长春", "昆明", "南宁", "贵阳", "南昌", "太原", "石家庄", "乌鲁木齐", "兰州",
    "呼和浩特", "海口", "三亚", "珠海", "温州", "绍兴", "嘉兴", "金华", "台州", "常州",
    "南通", "徐州", "扬州", "烟台", "潍坊", "泉州", "惠州", "中山", "汕头", "洛阳", "唐山",
    "保定", "银川", "西宁", "拉萨",
}, key=len, reverse=True)
_PLACE_PREFIX = re.compile(
    "^(?:" + "|".join(_PLACES) + ")(?:省|市|自治区|特别行政区)?")
# A branch after the company's own name: 上海分公司, 北京办事处, (深圳), 杭州分店.
_BRANCH = re.compile(r"(?:[（(][^)）]*[)）]|(?:" + "|".join(_PLACES)
                     + r")(?:省|市)?(?:分公司|分店|分行|办事处|分部)|\s+(?:branch|office)\b.*)$")
_STREET_WORDS = {"street": "st", "avenue": "ave", "road": "rd", "boulevard": "blvd",
                 "drive": "dr", "lane": "ln", "suite": "ste", "apartment": "apt",
                 "floor": "fl", "north": "n", "south": "s", "east": "e", "west": "w"}
_STREET_WORD = re.compile(r"\b(?:" + "|".join(_STREET_WORDS) + r")\b")
_LATIN_TOKEN = re.compile(r"[a-z]+")
# Compound surnames, so 欧阳娜娜 reads as ouyang + nana rather than ou + yangnana.
_COMPOUND_SURNAMES = {"欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "慕容", "司徒", "令狐",
                      "夏侯", "尉迟", "公孙", "长孙", "宇文", "端木", "申屠", "独孤"}

#: The customer columns the keys are made from.
RECORD_COLUMNS = ("customer_id", "name", "email", "phone", "city", "province", "birth_date",
                  "gender", "address", "industry", "company_size")

# Mailboxes a whole company shares: their user part says nothing about who wrote.
_ROLE_MAILBOXES = frozenset({
    "info", "admin", "sales", "service", "contact", "support", "office", "hr", "mail",
    "hello", "help", "team", "marketing", "finance", "account", "accounts", "billing",
    "noreply", "no-reply", "webmaster", "kefu", "fuwu", "xiaoshou", "caiwu", "test"})
# Words of Chinese addresses that are written in more than one way.
_ADDRESS_SYNONYMS = (("号楼", "栋"), ("幢", "栋"))


def _is_cjk(text: str) -> bool:
    return bool(text) and all("\u4e00" <= c <= "\u9fff" for c in text)


@cache
def _nicknames() -> Any:
    from nicknames import NickNamer

    return NickNamer()


@cache
def _name_family(token: str) -> frozenset[str]:
    """A first name and the names it is a nickname of or has as nicknames."""
    namer = _nicknames()
    return frozenset({token} | namer.canonicals_of(token) | namer.nicknames_of(token))


def _pinyin_tokens(name: str) -> list[str]:
    """张伟明 → ['zhang', 'weiming']: surname and given name, each one word of pinyin."""
    from pypinyin import Style, lazy_pinyin

    split = 2 if name[:2] in _COMPOUND_SURNAMES else 1
    surname, given = name[:split], name[split:]
    syllables = [lazy_pinyin(part, style=Style.NORMAL) for part in (surname, given) if part]
    return ["".join(s) for s in syllables]


def _person_forms(text: str) -> tuple[str | None, list[str], list[str], str | None]:
    """The name's tokens (pinyin for Chinese) sorted, its sorted-token spellings with
    nickname families, the abbreviations of a full name (each token but one as its
    initial), and the name itself when it is abbreviated (holds an initial)."""
    compact = re.sub(r"\s+", "", text)
    tokens = _pinyin_tokens(compact) if _is_cjk(compact) else _LATIN_TOKEN.findall(text)
    if not tokens:
        return None, [], [], None
    canonical = " ".join(sorted(tokens))
    forms = {canonical}
    for i, token in enumerate(tokens):
        if len(token) > 1:
            for variant in _name_family(token):
                forms.add(" ".join(sorted(tokens[:i] + [variant] + tokens[i + 1:])))
    abbreviated = any(len(t) == 1 for t in tokens)
    initials: set[str] = set()
    if len(tokens) > 1 and not abbreviated and not _is_cjk(compact):
        for keep in range(len(tokens)):  # the surname may stand first or last
            initials.add(" ".join(sorted(
                t if i == keep else t[0] for i, t in enumerate(tokens))))
    return canonical, sorted(forms), sorted(initials), canonical if abbreviated else None


def _company_forms(key: str | None) -> tuple[str | None, list[str]]:
    """The company's name without place and branch, and all the forms."""
    if key is None:
        return None, []
    forms = {key}
    core = _BRANCH.sub("", key) or key
    forms.add(core)
    without_place = _PLACE_PREFIX.sub("", core)
    if len(without_place) >= 2:
        forms.add(without_place)
        core = without_place
    return core, sorted(forms)


def _name_keys(name: str, company: bool
               ) -> tuple[str | None, str | None, list[str], list[str], str | None]:
    """name_key, name_canonical, name_forms, name_initials, name_abbreviated of a name."""
    text = unicodedata.normalize("NFKC", name).strip()
    key = match_key(text, company=company)
    if company:
        simplified = match_key(_BRANCH.sub("", text.lower()).strip(), company=True) or key
        core, forms = _company_forms(simplified)
        return key, core, forms, [], None
    simplified_text = match_key(text) or ""
    # Forms are built from the simplified text, with the spaces of Latin names kept.
    spaced = text if not _is_cjk(simplified_text) else simplified_text
    canonical, forms, initials, abbreviated = _person_forms(spaced.lower())
    return key, canonical, forms, initials, abbreviated


def address_key(address: str) -> str | None:
    """上海市浦东新区张江路８８号 → 浦东新区张江路88号; 12 Main Street → 12mainst."""
    text = unicodedata.normalize("NFKC", address).lower()
    text = _STREET_WORD.sub(lambda m: _STREET_WORDS[m.group(0)], text)
    text = match_key(text) or ""
    for written, meant in _ADDRESS_SYNONYMS:
        text = text.replace(written, meant)
    for _ in range(2):  # province then city
        text = _PLACE_PREFIX.sub("", text)
    return text or None


def _email_user(email: str | None) -> str | None:
    user = email.split("@")[0] if email and "@" in email else None
    return None if user is None or user in _ROLE_MAILBOXES else user


def _mapped(values: Iterable[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """``fn`` of each value, computed once per distinct value; None stays None."""
    seen: dict[Any, Any] = {}
    out: list[Any] = []
    for value in values:
        if value is None or value == "":
            out.append(None)
            continue
        if value not in seen:
            seen[value] = fn(value)
        out.append(seen[value])
    return out


def _column(records: pa.Table, name: str) -> list[Any]:
    return records[name].to_pylist() if name in records.column_names else \
        [None] * records.num_rows


def comparison_table(records: pa.Table, phone_region: str = "CN") -> pa.Table:
    """The columns the matcher compares, one row per record (see the module's doc)."""
    phone = phone_cleaner(phone_region)
    names = _column(records, "name")
    companies = [i is not None for i in _column(records, "industry")]
    # computed once per distinct name in this table (a cache across calls would keep every
    # name of a million-customer scan in the server's memory for good)
    keyed = _mapped([(n, c) if n else None for n, c in zip(names, companies, strict=True)],
                    lambda pair: _name_keys(*pair))
    emails = _mapped(_column(records, "email"), lambda v: clean_email(v)[0])
    genders = [g if g in ("male", "female") else None for g in _column(records, "gender")]
    births = _column(records, "birth_date")
    cities, provinces = (_mapped(_column(records, column), lambda v: match_key(
        clean_region(v)[0])) for column in ("city", "province"))
    return pa.table({
        "unique_id": records["customer_id"],
        "name_key": pa.array([k[0] if k else None for k in keyed], pa.string()),
        "company_key": pa.array([k[0] if k and c else None for k, c in zip(
            keyed, companies, strict=True)], pa.string()),
        "name_canonical": pa.array([k[1] if k else None for k in keyed], pa.string()),
        "name_forms": pa.array([k[2] if k else None for k in keyed], pa.list_(pa.string())),
        "name_initials": pa.array([k[3] if k and k[3] else None for k in keyed],
                                  pa.list_(pa.string())),
        "name_abbreviated": pa.array([[k[4]] if k and k[4] else None for k in keyed],
                                     pa.list_(pa.string())),
        "email_key": pa.array(emails, pa.string()),
        "email_user": pa.array([_email_user(e) for e in emails], pa.string()),
        "phone_key": pa.array(_mapped(_column(records, "phone"), lambda v: phone(v)[0]),
                              pa.string()),
        "city_key": pa.array(cities, pa.string()),
        "region_keys": pa.array([[r for r in (c, p) if r] or None for c, p in zip(
            cities, provinces, strict=True)], pa.list_(pa.string())),
        "birth_date": pa.array([str(b) if b else None for b in births], pa.string()),
        "gender": pa.array(genders, pa.string()),
        "address_key": pa.array(_mapped(_column(records, "address"), address_key),
                                pa.string()),
        "industry_key": pa.array(_mapped(_column(records, "industry"), match_key),
                                 pa.string()),
        "size_key": pa.array(_mapped(_column(records, "company_size"), match_key),
                             pa.string()),
    })
