"""Merging duplicates: golden records, facts and history under the survivor, exact undo,
the review queue, and merges seen by both engines and by privacy rights."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.api_helpers import Served, build
from tests.conftest import sizes_agree
from tests.test_cli import tw
from tests.test_engines import ENGINES

import tierwise
from tierwise.identity import review
from tierwise.identity.merge import Survivorship, golden_record, merge, merges_of, undo
from tierwise.security import privacy
from tierwise.segments import membership


@pytest.fixture
def served(tmp_path: Path, control_url: str) -> Served:
    found = build(tmp_path, control_url)
    yield found  # type: ignore[misc]
    found.ws.close()


def _state(ws: tierwise.Workspace) -> dict[str, object]:
    people = {r["customer_id"]: {k: v for k, v in r.items() if k != "updated_at"}
              for r in ws.table("customers").to_pylist()}
    orders = sorted((r["order_id"], r["customer_id"]) for r in ws.table("orders").to_pylist())
    return {"people": people, "orders": orders,
            "segments": {c: membership.customer_segments(ws, c) for c in people}}


def test_golden_record_rules() -> None:
    survivor = {"customer_id": "A", "name": "张", "email": None, "phone": "+861",
                "signup_at": "2025-02-01", "tags": '["vip"]', "attributes": '{"a": 1}',
                "owner": None, "updated_at": datetime(2025, 1, 1, tzinfo=UTC), "channel": "crm"}
    other = {"customer_id": "B", "name": "张三", "email": "z@x.cn", "phone": "+862",
             "signup_at": "2024-05-01", "tags": '["new"]', "attributes": '{"a": 2, "b": 3}',
             "owner": "王经理", "updated_at": datetime(2025, 6, 1, tzinfo=UTC), "channel": "web"}
    values, sources = golden_record([survivor, other], Survivorship())
    assert values["name"] == "张三" and sources["name"] == "B"  # most complete
    assert values["phone"] == "+862"  # most recent
    assert values["email"] == "z@x.cn"
    assert values["signup_at"] == "2024-05-01"  # earliest
    assert values["owner"] == "王经理"  # survivor's is empty
    assert json.loads(values["tags"]) == ["new", "vip"]
    assert json.loads(values["attributes"]) == {"a": 1, "b": 3}
    picky = Survivorship(default="survivor", fields={}, source_priority=["web"])
    values, _ = golden_record([survivor, other], picky)
    assert values["phone"] == "+861"


def test_merge_moves_everything_and_undo_restores_it(served: Served) -> None:
    ws = served.ws
    # the merged customer holds a membership the survivor lacks: it moves to the survivor
    membership.edit_static(ws, "vip_list", add=["C003"], remove=["C001"])
    before = _state(ws)
    result = merge(ws, "C001", ["C003"], actor="test")
    assert result.fields["phone"] == "C001"
    sizes_agree(ws)
    people = {r["customer_id"]: r for r in ws.table("customers").to_pylist()}
    assert "C003" not in people
    # C003's order now counts for C001, in every query through the engine.
    orders = {r["order_id"]: r["customer_id"] for r in ws.table("orders").to_pylist()}
    assert orders["O4"] == "C001"
    assert ws.sql("SELECT count(*) AS n FROM orders WHERE customer_id = 'C001'"
                  ).column("n")[0].as_py() == 3
    history = {h["segment_key"] for h in membership.customer_segments(ws, "C001")}
    assert "buyers" in history
    runs = membership.evaluate_all(ws)
    assert not [r.error for r in runs if r.error]
    sizes_agree(ws)
    # New facts that still carry the merged id are accepted and land with the survivor.
    served.client("analyst")
    more = ws.root.parent / "late.csv"
    more.write_text("order_id,customer_id,ordered_at,amount\nO99,C003,2025-09-01,7\n",
                    encoding="utf-8")
    ws.import_file("orders", more)
    assert ws.sql("SELECT customer_id FROM orders WHERE order_id = 'O99'"
                  ).column(0)[0].as_py() == "C001"
    export = privacy.export_customer(ws, "C003")  # a merged id resolves to its person
    assert export["customer"]["customer_id"] == "C001" and export["merged_ids"] == ["C003"]
    assert "O4" in {o["order_id"] for o in export["facts"]["orders"]}
    undo(ws, result.merge_id, actor="test")
    sizes_agree(ws)
    after = _state(ws)
    after_orders = [o for o in after["orders"] if o[0] != "O99"]  # type: ignore[attr-defined]
    assert after_orders == before["orders"]
    assert after["people"] == before["people"]
    with pytest.raises(tierwise.TierwiseError, match="undone already"):
        undo(ws, result.merge_id, actor="test")


def test_review_queue(served: Served) -> None:
    import pyarrow as pa

    ws = served.ws
    pairs = pa.table({"unique_id_l": ["C001", "C002", "C004"],
                      "unique_id_r": ["C003", "C004", "C001"],
                      "match_probability": [0.99, 0.7, 0.3]})
    first = review.queue(ws, pairs, actor="test")
    assert [m.merged_ids for m in first.merged] == [["C003"]]
    assert first.queued == 1
    again = review.queue(ws, pairs, actor="test")
    assert again.queued == 0 and again.merged == [] and again.known == 2
    waiting = review.pending(ws)
    assert [(p["left_id"], p["right_id"]) for p in waiting] == [("C002", "C004")]
    review.reject(ws, waiting[0]["pair_id"], actor="test")
    assert review.pending(ws) == []
    assert review.queue(ws, pairs, actor="test").queued == 0  # rejected stays rejected
    with pytest.raises(tierwise.TierwiseError, match="rejected already"):
        review.accept(ws, waiting[0]["pair_id"], actor="test")


def test_erasing_a_merged_person_erases_every_record(served: Served) -> None:
    ws = served.ws
    merge(ws, "C001", ["C003"], actor="test")
    erased = privacy.erase_customer(ws, "C003")
    assert erased.fact_rows["orders"] == 3
    sizes_agree(ws)
    ids = {r["customer_id"] for r in ws.table("customers").to_pylist()}
    assert ids == {"C002", "C004"}
    assert ws.sql("SELECT count(*) FROM orders").column(0)[0].as_py() == 3


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_read_facts_through_redirects(tmp_path: Path, engine: str) -> None:
    served = build(tmp_path)
    merge(served.ws, "C002", ["C004"], actor="test")
    ws = tierwise.init(tmp_path / "copy", engine=engine) if False else served.ws
    ws.engine = tierwise.engines.make_engine(engine)
    rows = ws.sql("SELECT customer_id, count(*) AS n FROM orders GROUP BY 1 ORDER BY 1"
                  ).to_pylist()
    assert rows == [{"customer_id": "C001", "n": 2}, {"customer_id": "C002", "n": 3},
                    {"customer_id": "C003", "n": 1}]
    served.ws.close()


def test_identity_cli(tmp_path: Path) -> None:
    served = build(tmp_path)
    root = str(served.ws.root)
    out = tw("merge", "C002", "C004", "-w", root)
    assert "C004 → C002" in out and "name: from" in out
    assert "C002" in tw("merges", "-w", root)
    merge_id = out.split()[1].rstrip(":")
    assert "separate again" in tw("merges", "undo", merge_id, "-w", root)
    tw("merges", "undo", merge_id, "-w", root, code=1)
    served.ws.close()


def test_queue_and_match_at_import_cli(tmp_path: Path) -> None:
    from tierwise.demo.duplicates import with_duplicates
    from tierwise.ingest.readers import RecordsSource

    data = with_duplicates(400, share=0.2, seed=8)
    originals = data.records.filter(pa_is_original(data.records))
    copies = data.records.filter(pa_is_original(data.records, invert=True))
    ws = tierwise.init(tmp_path / "w")
    ws.import_source("customers", RecordsSource("crm", originals.column_names,
                                                iter([originals])))
    root = str(ws.root)
    copies.to_pandas().to_csv(tmp_path / "fair.csv", index=False)
    out = tw("import", "customers", str(tmp_path / "fair.csv"), "--match", "-w", root)
    assert "matching: merged" in out
    ws = tierwise.open(root)
    merges = merges_of(ws, 10_000)
    # Every automatic merge joined records of one person …
    assert merges and all({data.truth[i] for i in [m["survivor_id"], *m["merged_ids"]]}
                          == {data.truth[m["survivor_id"]]} for m in merges)
    # … and most copies were merged or are waiting for review.
    merged_away = {i for m in merges for i in m["merged_ids"]}
    waiting = {i for p in review.pending(ws, 10_000) for i in (p["left_id"], p["right_id"])}
    found = [c for c in copies["customer_id"].to_pylist() if c in merged_away | waiting]
    assert len(found) >= 0.8 * copies.num_rows, (len(found), copies.num_rows)
    ws.close()
    assert "probability" in tw("duplicates", "review", "-w", root)
    again = tw("duplicates", "--queue", "-w", root)  # nothing new: decided pairs are known
    assert "merged 0 group(s)" in again and "queued 0 pair(s)" in again


def pa_is_original(records, invert: bool = False):  # type: ignore[no-untyped-def]
    import pyarrow.compute as pc

    copy = pc.match_substring(records["customer_id"], "-D")
    return pc.invert(copy) if not invert else copy


def test_quality_counts_merges_and_reviews(tmp_path: Path) -> None:
    import pyarrow as pa

    served = build(tmp_path)
    ws = served.ws
    review.queue(ws, pa.table({"unique_id_l": ["C001", "C002"], "unique_id_r": ["C003", "C004"],
                               "match_probability": [0.99, 0.7]}), actor="test")
    report = served.client("viewer").get("/v1/quality").json()
    assert report["identity"] == {"merges": 1, "merged_records": 1,
                                  "pairs_waiting_for_review": 1, "pairs_rejected": 0}
    assert "1 merges (1 records merged), 1 pairs waiting" in tw("quality", "-w", str(ws.root))
    ws.close()
