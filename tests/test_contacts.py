"""Accounts and their contacts: imports that link them (or refuse the whole file), rules
over an account's contacts and over its and its contacts' events and orders, and the
account-level measures that roll the contacts' orders up."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import write

import tierwise
from tierwise.errors import ImportRejected

ACCOUNTS = ("customer_id,name,industry,owner\n"
            "A1,甲公司,制造业,王\nA2,乙公司,零售,李\nA3,丙公司,金融,王\n")
CONTACTS = ("客户编号,姓名,邮箱,所属客户,角色\n"
            "P1,张三,zs@a1.cn,A1,决策者\n"
            "P2,李四,ls@a1.cn,A1,Influencer\n"
            "P3,王五,ww@a2.cn,A2,采购\n"
            "P4,赵六,zl@a2.cn,A2,\n")


def _links(ws: tierwise.Workspace) -> dict[str, tuple[str | None, str | None]]:
    rows = ws.sql("SELECT customer_id, account_id, role FROM customers").to_pylist()
    return {r["customer_id"]: (r["account_id"], r["role"]) for r in rows}


@pytest.fixture
def accounts(ws: tierwise.Workspace, tmp_path: Path) -> tierwise.Workspace:
    ws.import_file("customers", write(tmp_path / "a.csv", ACCOUNTS))
    ws.import_file("customers", write(tmp_path / "p.csv", CONTACTS))
    return ws


def test_contacts_name_their_account_and_role(accounts: tierwise.Workspace):
    links = _links(accounts)
    assert links["P1"] == ("A1", "decision_maker")  # the role is stored as its code
    assert links["P2"] == ("A1", "influencer")
    assert links["P3"] == ("A2", "purchasing")
    assert links["P4"] == ("A2", None)
    assert links["A1"] == (None, None)


@pytest.mark.parametrize(("rows", "column", "value", "words"), [
    ("P9,钱七,A9,决策者\n", "所属客户", "A9", "names no customer"),
    ("P9,钱七,P9,决策者\n", "所属客户", "P9", "its own account"),
    ("P9,钱七,P1,决策者\n", "所属客户", "P1", "is itself a contact of A1"),
    # A3 is P8's account in this file: it cannot become a contact (and P8's row, naming
    # a contact as its account, is refused too)
    ("A3,丙公司,A1,\n", "所属客户", "A1", "account of 1 contact(s) (e.g. P8)"),
    ("A1,甲公司,A2,\n", "所属客户", "A2", "account of 2 contact(s)"),
    ("P9,钱七,,决策者\n", "角色", "decision_maker", "a role is for contacts"),
    ("P9,钱七,A1,boss\n", "角色", "boss", None),  # an unknown role: the column's check
])
def test_a_bad_link_rejects_the_whole_file(accounts: tierwise.Workspace, tmp_path: Path,
                                           rows: str, column: str, value: str,
                                           words: str | None):
    before = _links(accounts)
    text = "客户编号,姓名,所属客户,角色\n" + "P8,孙八,A3,技术\n" + rows
    with pytest.raises(ImportRejected) as caught:
        accounts.import_file("customers", write(tmp_path / "bad.csv", text),
                             report_path=tmp_path / "r.csv")
    reject = next(r for r in caught.value.rejects if r["row"] == 3)
    assert (reject["row"], reject["column"], reject["value"]) == (3, column, value)
    if words is not None:
        assert words in str(reject["reason"])
    assert _links(accounts) == before  # P8 (a good row) was not imported either


def test_a_link_can_name_an_account_in_the_same_file(ws: tierwise.Workspace,
                                                     tmp_path: Path):
    ws.import_file("customers", write(tmp_path / "both.csv", (
        "customer_id,name,account_id,role\nP1,张三,A1,decision maker\nA1,甲公司,,\n")))
    assert _links(ws)["P1"] == ("A1", "decision_maker")


def test_a_contact_of_a_contact_in_one_file_is_refused(ws: tierwise.Workspace,
                                                       tmp_path: Path):
    with pytest.raises(ImportRejected, match="2 row.*P2.*cannot become a contact"):
        ws.import_file("customers", write(tmp_path / "chain.csv", (
            "customer_id,account_id\nA1,\nP1,A1\nP2,P1\n")), report_path=tmp_path / "r.csv")
    assert ws.sql("SELECT count(*) AS n FROM customers").column(0)[0].as_py() == 0


def test_an_import_without_the_columns_keeps_the_links(accounts: tierwise.Workspace,
                                                       tmp_path: Path):
    accounts.import_file("customers", write(tmp_path / "upd.csv",
                                            "customer_id,city\nP1,上海\n"))
    assert _links(accounts)["P1"] == ("A1", "decision_maker")
