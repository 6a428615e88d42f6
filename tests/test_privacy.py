"""Privacy rights: erasure leaves nothing behind, subject-access export, retention, consent."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.api_helpers import Served, build, wait_for_job

from tierwise import open as tierwise_open
from tierwise.security import consent, privacy
from tierwise.store import audit


@pytest.fixture
def served(tmp_path: Path, control_url: str) -> Served:
    """On each control store (SQLite, PostgreSQL)."""
    found = build(tmp_path, control_url)
    yield found  # type: ignore[misc]
    found.ws.close()


def _texts(root: Path) -> dict[str, str]:
    """Every file of the workspace as text: Parquet decoded to its values, the rest raw."""
    out = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        text = raw.decode("utf-8", errors="replace")
        if path.suffix == ".parquet" and raw[:4] == b"PAR1":
            text += json.dumps(pq.read_table(path).to_pylist(), ensure_ascii=False, default=str)
        out[path.relative_to(root).as_posix()] = text
    return out


def test_erasure_leaves_no_trace(served: Served, tmp_path: Path) -> None:
    ws = served.ws
    client = served.client("admin")
    # Leave the customer's data in every kind of place: a rejected import's report, a file
    # replaced by compaction but not yet collected, the customers mirror, a snapshot.
    bad = "customer_id,邮箱,注册时间\nC001,zhang.san@example.com,not-a-date\n"
    job = client.post("/v1/imports", data={"table": "customers"},
                      files={"file": ("c.csv", bad.encode(), "text/csv")}).json()["job_id"]
    assert wait_for_job(client, job)["status"] == "failed"
    more = tmp_path / "more.csv"
    more.write_text("order_id,customer_id,ordered_at,amount\nO7,C001,2025-08-01,5\n"
                    "O8,C002,2025-08-01,6\n", encoding="utf-8")
    ws.import_file("orders", more)
    ws.compact()
    ws.compute()
    ws.table("customers")  # builds the mirror
    needles = ["zhang.san@example.com", "Zhang.San@Example.com", "+8613800138000",
               "13800138000", "张三", "世纪大道"]
    before = _texts(ws.root)
    assert any(n in t for t in before.values() for n in needles)  # the search can see them

    erased = client.delete("/v1/privacy/customers/C001")
    assert erased.status_code == 200, erased.text
    assert erased.json()["fact_rows"]["orders"] == 3
    assert erased.json()["fact_rows"]["events"] == 1

    found = {name: [n for n in needles if n in text]
             for name, text in _texts(ws.root).items()}
    assert {k: v for k, v in found.items() if v} == {}
    assert client.get("/v1/customers/C001").status_code == 404
    assert ws.sql("SELECT count(*) AS n FROM orders WHERE customer_id = 'C001'"
                  ).column("n")[0].as_py() == 0
    assert ws.sql("SELECT count(*) AS n FROM orders").column("n")[0].as_py() == 5
    assert client.get("/v1/customers/C002").status_code == 200
    members = client.get("/v1/segments/vip_list/members").json()
    assert [m["customer_id"] for m in members["items"]] == ["C004"]
    entry = client.get("/v1/audit", params={"action": "erase_customer"}).json()[0]
    assert entry["target"] == privacy.customer_ref(ws, "C001")
    assert entry["target"].startswith("hmac:") and "C001" not in entry["target"]
    with ws.control.read() as conn:
        assert audit.verify(conn).ok


def test_subject_access_export(served: Served) -> None:
    client = served.client("admin")
    data = client.get("/v1/privacy/customers/C002").json()
    assert data["customer"]["email"] == "lisi@example.cn"
    assert sorted(o["order_id"] for o in data["facts"]["orders"]) == ["O3", "O6"]
    assert [e["type"] for e in data["facts"]["events"]] == ["page_view"]
    assert {m["segment_key"] for m in data["segment_memberships"]} == {"buyers"}
    assert data["computed_values"][0]["customer_id"] == "C002"
    assert served.client("analyst").get("/v1/privacy/customers/C002").status_code == 403
    logged = client.get("/v1/audit", params={"action": "export_pii"}).json()[0]
    assert logged["target"] == "customer:C002"


def test_retention_deletes_old_facts_only(served: Served) -> None:
    ws = served.ws
    before = ws.count("events")
    done = privacy.apply_retention(ws, {"orders": 100_000})
    assert done == {"orders": 0}
    # Every demo order is from 2025: keeping 30 days drops them all, events alike.
    done = privacy.apply_retention(ws, {"events": 30})
    assert done == {"events": before}
    assert ws.count("events") == 0 and ws.count("orders") == 6
    with pytest.raises(Exception, match="not a fact table"):
        privacy.apply_retention(ws, {"customers": 10})


def test_consent_and_unsubscribe(served: Served) -> None:
    ws = served.ws
    assert consent.may_contact(ws, "C002", "email") == consent.Decision(
        True, "no objection (service messages)")
    assert consent.may_contact(ws, "C002", "email", "marketing") == consent.Decision(
        False, "no consent to marketing on email")
    client = served.client("analyst")
    assert client.put("/v1/customers/C002/preferences",
                      json={"channel": "email", "consent": True}).status_code == 204
    assert consent.may_contact(ws, "C002", "email", "marketing").allowed
    assert client.put("/v1/customers/C002/preferences",
                      json={"channel": "email", "unsubscribed": True}).status_code == 204
    found = consent.may_contact(ws, "C002", "email", "service")
    assert not found.allowed and found.reason.startswith("unsubscribed (email)")
    assert consent.may_contact(ws, "C002", "sms").allowed
    consent.set_preference(ws, "C002", "all", consent=False)
    assert consent.may_contact(ws, "C002", "sms") == consent.Decision(
        False, "consent withdrawn (all)")
    bad = client.put("/v1/customers/C002/preferences", json={"channel": "pigeon"})
    assert bad.status_code == 422
    unknown = client.get("/v1/customers/C002/consent", params={"channel": "pigeon"})
    assert unknown.status_code == 400 and "未知渠道 'pigeon'" in unknown.json()["detail"]


def test_retention_runs_with_the_server(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tierwise.config import read_config, write_config
    from tierwise.server.app import create_app

    served = build(tmp_path)
    root = served.ws.root
    served.ws.close()
    config = read_config(root)
    write_config(root, type(config)(**{**vars(config), "retention_days": {"events": 30}}))
    ws = tierwise_open(root)
    assert ws.count("events") == 2
    with TestClient(create_app(ws)):  # the lifespan starts the maintenance thread
        for _ in range(100):
            if ws.count("events") == 0:
                break
            import time

            time.sleep(0.05)
    assert ws.count("events") == 0
    with ws.control.read() as conn:
        assert audit.entries(conn, action="retention")[0]["actor"] == "system:retention"
    ws.close()


def test_rejected_rows_hold_no_pii_in_clear_and_erasure_reaches_every_report(
        tmp_path: Path) -> None:
    import tierwise

    ws = tierwise.init(tmp_path / "ws")
    good = tmp_path / "good.csv"
    good.write_text("customer_id,name,email,phone,address,微信号\n"
                    "C1,Zephyrine Quill,zephyrine.q@mail.test,13712345678,Quill Street 9,"
                    "wx_zephyrine\n", encoding="utf-8")
    ws.import_file("customers", good)
    bad = tmp_path / "bad.csv"
    long_email = "octavian.brume." + "x" * 320 + "@mail.test"  # over the 320 allowed
    bad.write_text("customer_id,name,email,phone,signup_at,微信号\n"
                   f"C2,Octavian Brume,{long_email},13700000000,2025-01-01,wx_octavian\n"
                   "C3,Octavia Brume,octavia@mail.test,13700000001,yesterday-ish,wx_octo\n",
                   encoding="utf-8")
    report = ws.root / "reports" / "imports" / "bad.rejected.csv"
    with pytest.raises(tierwise.errors.ImportRejected) as rejected:
        ws.import_file("customers", bad, report_path=report)
    text = report.read_text(encoding="utf-8-sig")
    assert rejected.value.total == 2
    assert "yesterday-ish" in text  # not personal data: shown as read
    assert ",email,o***@mail.test… (345 characters)," in text  # row and column say where
    shown = json.dumps(rejected.value.rejects, ensure_ascii=False) + str(rejected.value)
    for secret in ("octavian.brume", "xxxxxxxx"):
        assert secret not in text and secret not in shown, secret
    # A report written before masking (or by hand) still names the customer in clear:
    # erasure finds every value that names them, in CSV and in any other report file.
    legacy = ws.root / "reports" / "imports" / "old.rejected.csv"
    legacy.write_text("file,row,column,value,reason\nx.csv,2,name,Zephyrine Quill,bad\n"
                      "x.csv,3,name,Someone Else,bad\n", encoding="utf-8-sig")
    note = ws.root / "reports" / "notes.html"
    note.write_text("<p>call wx_zephyrine at Quill Street 9</p>", encoding="utf-8")
    done = privacy.erase_customer(ws, "C1")
    assert done.report_lines >= 3
    assert "Zephyrine" not in legacy.read_text(encoding="utf-8-sig")
    assert "Someone Else" in legacy.read_text(encoding="utf-8-sig")
    assert note.read_text(encoding="utf-8") == "<p>call [erased] at [erased]</p>"
    ws.close()
