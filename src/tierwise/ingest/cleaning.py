"""Cleaning of customer master data on import: normalise what means the same, flag what
looks wrong, and keep a record of every change so it can be undone.

Each cleaner maps one distinct text to (cleaned text, rule) — the rule names what was done
("email_case", "phone_e164", …) or flagged ("flag_email_typo", "flag_phone_invalid") —
and is applied once per distinct value, so millions of rows cost little.

Matching keys (``match_key``) go further — traditional → simplified characters, company
legal-form suffixes dropped — but only for comparing records; stored values keep them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import phonenumbers

Cleaner = Callable[[str], tuple[str, str | None]]

_EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$")
#: Misspelt domains seen in Chinese and international sign-up forms → the intended one.
EMAIL_DOMAIN_TYPOS = {
    "gmial.com": "gmail.com", "gmai.com": "gmail.com", "gmail.con": "gmail.com",
    "gamil.com": "gmail.com", "hotmial.com": "hotmail.com", "hotmail.con": "hotmail.com",
    "yaho.com": "yahoo.com", "yahoo.con": "yahoo.com", "qq.con": "qq.com", "qq.cn": "qq.com",
    "163.con": "163.com", "126.con": "126.com", "sina.con": "sina.com",
    "outlook.con": "outlook.com", "foxmial.com": "foxmail.com",
}

# Official long forms → the short names people (and the demo data) use.
_REGION_SUFFIXES = ("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "省", "市")
_COMPANY_SUFFIXES = re.compile(
    r"(股份有限公司|有限责任公司|集团有限公司|有限公司|集团|公司|"
    r"\bco\.?,?\s*ltd\.?|\bcompany\s+limited|\blimited|\bltd\.?|\binc\.?|\bllc|\bcorp\.?|"
    r"\bcorporation|\bgmbh|\bplc)\s*$", re.IGNORECASE)


def clean_email(value: str) -> tuple[str, str | None]:
    text = value.strip()
    lowered = text.lower()
    if not _EMAIL.match(lowered):
        return text, "flag_email_invalid"
    domain = lowered.rsplit("@", 1)[1]
    if domain in EMAIL_DOMAIN_TYPOS:
        return lowered, "flag_email_typo"
    return lowered, "email_case" if lowered != text else None


def phone_cleaner(region: str) -> Cleaner:
    def clean(value: str) -> tuple[str, str | None]:
        text = unicodedata.normalize("NFKC", value).strip()
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            return value, "flag_phone_invalid"
        if not phonenumbers.is_valid_number(number):
            return value, "flag_phone_invalid"
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        return e164, "phone_e164" if e164 != value else None

    return clean


def _is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


def clean_name(value: str) -> tuple[str, str | None]:
    """Full-width letters/digits/spaces to half-width; spaces collapsed, and removed between
    Chinese characters (张 三 → 张三)."""
    text = unicodedata.normalize("NFKC", value)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"(?<=[\u3400-\u9fff]) (?=[\u3400-\u9fff])", "", text)
    return text, "name_width_spaces" if text != value else None


def clean_region(value: str) -> tuple[str, str | None]:
    """上海市 → 上海, 广东省 → 广东, 广西壮族自治区 → 广西 (names of 2+ characters kept)."""
    text = unicodedata.normalize("NFKC", value).strip()
    for suffix in _REGION_SUFFIXES:
        if text.endswith(suffix) and len(text) - len(suffix) >= 2 and all(
                _is_cjk(c) for c in text):
            text = text[: -len(suffix)]
            break
    return text, "region_short_name" if text != value else None


CUSTOMER_CLEANERS: dict[str, str] = {
    "email": "email", "phone": "phone", "name": "name", "city": "region",
    "province": "region",
}


def cleaners(region: str) -> dict[str, Cleaner]:
    kinds: dict[str, Cleaner] = {"email": clean_email, "phone": phone_cleaner(region),
                                 "name": clean_name, "region": clean_region}
    return {column: kinds[kind] for column, kind in CUSTOMER_CLEANERS.items()}


@cache
def _to_simplified() -> Callable[[str], str]:
    try:
        import opencc
    except ImportError:  # matching then compares as written
        return lambda text: text
    converter = opencc.OpenCC("t2s")
    return converter.convert


def match_key(value: str | None, company: bool = False) -> str | None:
    """A comparison key: simplified characters, half-width, lower case, no punctuation or
    spaces, and (for companies) no legal-form suffix. 廣州華盛有限公司 → 广州华盛."""
    if value is None:
        return None
    text = _to_simplified()(unicodedata.normalize("NFKC", value)).lower().strip()
    if company:
        previous = None
        while previous != text:
            previous = text
            text = _COMPANY_SUFFIXES.sub("", text).strip(" ,.")
    key = re.sub(r"[\W_]+", "", text)
    return key or None


@dataclass(frozen=True)
class Change:
    row: int
    customer_id: str
    column: str
    before: str
    after: str
    rule: str
