"""Cleaning on import (recorded, reversible), matching keys, and the data-quality report."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import write

import tierwise
from tierwise.ingest.cleaning import (
    clean_email,
    clean_name,
    clean_region,
    match_key,
    phone_cleaner,
)
from tierwise.ingest.quality import cleaning_entries, report, undo_cleaning


@pytest.mark.parametrize(("value", "expected"), [
    (" Zhang.San@Example.COM ", ("zhang.san@example.com", "email_case")),
    ("li@gmial.com", ("li@gmial.com", "flag_email_typo")),
    ("wang@qq.con", ("wang@qq.con", "flag_email_typo")),
    ("not-an-email", ("not-an-email", "flag_email_invalid")),
    ("ok@example.cn", ("ok@example.cn", None)),
])
def test_emails(value, expected):
    assert clean_email(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("13800138000", ("+8613800138000", "phone_e164")),
    ("138 0013 8000", ("+8613800138000", "phone_e164")),
    ("+86-138-0013-8000", ("+8613800138000", "phone_e164")),
    ("１３８００１３８０００", ("+8613800138000", "phone_e164")),  # full-width digits
    ("021-6234 5678", ("+862162345678", "phone_e164")),
    ("+8613800138000", ("+8613800138000", None)),
    ("12345", ("12345", "flag_phone_invalid")),
    ("call me", ("call me", "flag_phone_invalid")),
])
def test_phones_default_to_china(value, expected):
    assert phone_cleaner("CN")(value) == expected


def test_phone_region_setting():
    assert phone_cleaner("US")("(415) 555-2671") == ("+14155552671", "phone_e164")


@pytest.mark.parametrize(("value", "expected"), [
    ("张 三", "张三"), ("ＡＢＣ　Ｃｏｍｐａｎｙ", "ABC Company"), ("  Li   Wei ", "Li Wei"),
])
def test_names(value, expected):
    assert clean_name(value)[0] == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("上海市", "上海"), ("广东省", "广东"), ("广西壮族自治区", "广西"),
    ("新疆维吾尔自治区", "新疆"),
    ("香港特别行政区", "香港"), ("沙市", "沙市"), ("上海", "上海"), ("New York", "New York"),
])
def test_regions(value, expected):
    assert clean_region(value)[0] == expected


def test_match_keys():
    assert match_key("廣州華盛有限公司", company=True) == match_key("广州华盛", company=True)
    assert match_key("上海华盛有限责任公司", company=True) == "上海华盛"
    assert match_key("Acme Co., Ltd.", company=True) == match_key("ACME Inc.", company=True)
    assert match_key("張偉") == match_key("张伟")
    assert match_key("  ") is None and match_key(None) is None


CRM = """customer_id,姓名,手机,邮箱,城市,省份
K1,张 三,138 0013 8000, Zhang@GMIAL.com ,上海市,上海市
K2,ＡＢＣ公司,12345,bad-email,广州,广东省
K3,李四,+8613900139000,li@example.com,北京,北京
"""


def test_cleaning_is_recorded_and_undone(ws: tierwise.Workspace, tmp_path: Path):
    result = ws.import_file("customers", write(tmp_path / "crm.csv", CRM))
    assert result.cleaned == {"phone_e164": 1, "flag_email_typo": 1, "flag_email_invalid": 1,
                              "flag_phone_invalid": 1, "name_width_spaces": 2,
                              "region_short_name": 3}
    rows = ws.customers().set_index("customer_id")
    assert rows.loc["K1", "phone"] == "+8613800138000" and rows.loc["K1", "name"] == "张三"
    assert rows.loc["K1", "city"] == "上海" and rows.loc["K1", "email"] == "zhang@gmial.com"
    assert rows.loc["K2", "phone"] == "12345"  # flagged, kept as given
    log = cleaning_entries(ws, result.import_id)
    assert {(e["customer_id"], e["column_name"], e["before"], e["after"]) for e in log} >= {
        ("K1", "phone", "138 0013 8000", "+8613800138000"), ("K1", "name", "张 三", "张三")}
    # Re-importing the same file changes and records nothing new.
    again = ws.import_file("customers", tmp_path / "crm.csv")
    assert again.unchanged == 3 and again.cleaned == {}
    # A value edited since is left alone by undo.
    write(tmp_path / "fix.csv", "customer_id,城市\nK1,杭州\n")
    ws.import_file("customers", tmp_path / "fix.csv")
    restored = undo_cleaning(ws, result.import_id)
    rows = ws.customers().set_index("customer_id")
    assert rows.loc["K1", "phone"] == "138 0013 8000" and rows.loc["K1", "name"] == "张 三"
    assert rows.loc["K1", "city"] == "杭州"
    # phone, two names, two provinces and the lower-cased e-mail; not the edited city
    assert restored == 6
    with pytest.raises(tierwise.TierwiseError, match="no cleaning to undo"):
        undo_cleaning(ws, result.import_id)


def test_quality_report(ws: tierwise.Workspace, tmp_path: Path):
    ws.import_file("customers", write(tmp_path / "crm.csv", CRM + "K4,王五,13800138000,"
                                      "ZHANG@gmial.com,深圳,广东\n"))
    write(tmp_path / "o.csv", "order_id,customer_id,ordered_at,amount\nA,K1,2025-01-01,1\n"
          "B,NEW,2025-01-02,2\n")
    ws.import_file("orders", tmp_path / "o.csv", unknown_customers="create")
    data = report(ws)
    assert data["customers"] == 5 and data["stub_customers"] == 1
    assert data["completeness"]["customer_id"] == 1.0
    assert data["completeness"]["email"] == pytest.approx(4 / 5)
    assert data["invalid"] == {"email": 1, "phone": 1}
    # K1 and K4 share a phone and (case-insensitively) an e-mail: likely the same person.
    assert data["shared_contacts"]["phone"] == {"groups": 1, "customers": 2}
    assert data["shared_contacts"]["email"] == {"groups": 1, "customers": 2}
    assert data["orphans"]["orders"] == 0
    assert data["freshness"]["orders"]["latest_fact"] is not None
    assert data["cleaning"]["flag_email_typo"] == 2
