"""The funnel (both flows, per tier) and customer economics (per tier) on 1M customers: time
and peak RSS, against pandas computing the same numbers from the same files.

    python bench/economics.py [--repeat 3] [--period 2026Q2]

Workspace: bench/out/ws-seg (1M customers, ~9M orders, ~28M events; built by
bench/segments.py if missing). When it has no opportunities yet, a pipeline is added for
its B2B accounts (customers with an industry: ~1.6 opportunities each, moving through the
default stages with the demo's odds) and the demo's economics settings are saved.

Each measurement is a child process (so peak RSS is its own): ``services.funnel.funnel``
for the orders and the opportunities flows by tier, and ``services.economics.economics`` by
tier; the baseline child reads the same Parquet files with pandas and computes the same
step counts and per-tier sums. The two must agree (counts exactly, money to the cent);
the ratio is tierwise's median time over pandas'.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, measure, median, python, report  # noqa: E402
from segments import WS, ensure_workspace  # noqa: E402

PIPELINE = r"""
import sys
from datetime import UTC, datetime
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
import tierwise
from tierwise.demo.load import SHOWCASE_ECONOMICS
from tierwise.models import compute

ws = tierwise.open(sys.argv[1])
out = sys.argv[2]
people = ws.table("customers").select(["customer_id", "industry", "signup_at", "owner"])
b2b = people.filter(pa.compute.is_valid(people["industry"]))
rng = np.random.default_rng(11)
end = datetime(2026, 6, 30, 16, tzinfo=UTC).timestamp()
signup = b2b["signup_at"].cast(pa.int64()).to_numpy(zero_copy_only=False) / 1e6
count = rng.poisson(1.6, b2b.num_rows)
idx = np.repeat(np.arange(b2b.num_rows), count)
created = signup[idx] + rng.random(len(idx)) * np.maximum(end - 86400 - signup[idx], 86400)
amount = np.round(rng.gamma(3, 4000, len(idx)), -2) + 1000
ids = [f"D{i:08d}" for i in range(len(idx))]
stages = ["线索", "商机", "方案", "谈判"]
moves = {k: [] for k in ("opportunity_id", "customer_id", "stage", "from_stage", "at")}
final, final_at = [], []
cust = b2b["customer_id"].to_pylist()
for j, k in enumerate(idx.tolist()):
    at, stage, prev = float(created[j]), stages[0], None
    moves["opportunity_id"].append(ids[j]); moves["customer_id"].append(cust[k])
    moves["stage"].append(stage); moves["from_stage"].append(None); moves["at"].append(at)
    for step, odds in enumerate((0.6, 0.65, 0.7, 0.6)):
        later = at + rng.exponential((10, 14, 18, 12)[step]) * 86400
        if later > end:
            break
        prev, at = stage, later
        stage = (stages[step + 1] if step + 1 < 4 else "赢单") if rng.random() < odds else "输单"
        moves["opportunity_id"].append(ids[j]); moves["customer_id"].append(cust[k])
        moves["stage"].append(stage); moves["from_stage"].append(prev); moves["at"].append(at)
        if stage in ("赢单", "输单"):
            break
    final.append(stage); final_at.append(at)
us = lambda v: pa.array((np.asarray(v) * 1e6).astype("int64"), pa.int64()).cast(
    pa.timestamp("us", tz="UTC"))
closed = [a if s in ("赢单", "输单") else None for s, a in zip(final, final_at)]
pq.write_table(pa.table({
    "opportunity_id": ids, "customer_id": [cust[k] for k in idx.tolist()], "stage": final,
    "amount": amount, "created_at": us(created), "stage_at": us(final_at),
    "closed_at": pa.array([None if c is None else int(c * 1e6) for c in closed],
                          pa.int64()).cast(pa.timestamp("us", tz="UTC"))}), out + "/o.parquet")
pq.write_table(pa.table({**{k: v for k, v in moves.items() if k != "at"},
                         "at": us(moves["at"])}), out + "/h.parquet")
ws.import_file("opportunities", out + "/o.parquet")
ws.import_file("opportunity_stages", out + "/h.parquet")
compute.save_setting(ws, "economics", SHOWCASE_ECONOMICS)
print(len(ids), len(moves["at"]))
"""

TIERWISE = r"""
import json, sys, time
from datetime import datetime, UTC
import tierwise
from tierwise.services import economics, funnel

ws = tierwise.open(sys.argv[1])
period, as_of = sys.argv[2], datetime(2026, 7, 1, tzinfo=UTC)
t0 = time.perf_counter()
orders = funnel.funnel(ws, period, "tier", as_of=as_of)
opportunities = funnel.funnel(ws, period, "tier", as_of=as_of, flow="opportunities")
t1 = time.perf_counter()
found = economics.economics(ws, period, "tier", as_of=as_of)
t2 = time.perf_counter()
json.dump({"funnel_seconds": t1 - t0, "economics_seconds": t2 - t1,
           "orders": {g["group"]: [s["customers"] for s in g["steps"]] for g in orders.groups
                      if g["group"] is not None},
           "opportunities": {g["group"]: [s["customers"] for s in g["steps"]]
                             for g in opportunities.groups if g["group"] is not None},
           "economics": {g["group"]: {k: g[k] for k in ("customers", "revenue",
                                                        "gross_margin", "ticket_cost",
                                                        "manager_cost",
                                                        "profit_contribution")}
                         for g in found.groups if g["group"] is not None}},
          open(sys.argv[3], "w"))
"""

PANDAS = r"""
import json, sys, time
from datetime import datetime, UTC
import numpy as np, pandas as pd
import tierwise
from tierwise.models import compute
from tierwise.models import leads as lead_model
from tierwise.services.periods import parse_period
from tierwise.store import leads as lead_store

ws = tierwise.open(sys.argv[1])
period = parse_period(sys.argv[2], ws.config.timezone)
as_of = pd.Timestamp(datetime(2026, 7, 1, tzinfo=UTC))
start = pd.Timestamp(period.start).tz_convert("UTC")
end = pd.Timestamp(period.end).tz_convert("UTC")
end = min(end, as_of)
# inputs tierwise also reads from the control store: customers, qualified leads, tiers,
# settings (not timed as computation: they are the same objects for both)
people = ws.table("customers").to_pandas()[["customer_id", "signup_at", "acquisition_cost",
                                             "channel"]]
leads = lead_store.as_qualified(ws.control).to_pandas()
snap = compute.load_snapshot(ws).table.select(["customer_id", "tier"]).to_pandas()
econ = compute.load_settings(ws).economics
files = lambda t: [f.path for f in sorted(ws.facts.scan(t).files, key=lambda f: f.seq)]
def read(t, cols):
    return pd.concat([pd.read_parquet(f, columns=cols) for f in files(t)], ignore_index=True)
t0 = time.perf_counter()
orders = read("orders", ["order_id", "customer_id", "ordered_at", "amount", "cost", "status",
                         "category"]).drop_duplicates("order_id", keep="last")
events = read("events", ["customer_id", "occurred_at"])
opps = read("opportunities", ["opportunity_id", "customer_id", "created_at"]).drop_duplicates(
    "opportunity_id", keep="last")
hist = read("opportunity_stages", ["opportunity_id", "customer_id", "stage", "at"])
hist = hist.drop_duplicates(["opportunity_id", "stage", "at"], keep="last")
cand = people[people.signup_at.isna() | ((people.signup_at >= start) & (people.signup_at < end))]
nosign = cand[cand.signup_at.isna()].customer_id
ev = events[events.customer_id.isin(nosign) & (events.occurred_at < as_of)]
first_event = ev.groupby("customer_id").occurred_at.min()
paid = orders[(orders.status == "paid") & (orders.ordered_at < as_of)
              & orders.customer_id.isin(cand.customer_id)].sort_values(
                  ["customer_id", "ordered_at", "order_id"])
paid["n"] = paid.groupby("customer_id").cumcount() + 1
first_order = paid[paid.n == 1].set_index("customer_id").ordered_at
second_order = paid[paid.n == 2].set_index("customer_id").ordered_at
j = cand.set_index("customer_id")
j["entered_at"] = j.signup_at.fillna(first_event.reindex(j.index)).fillna(
    first_order.reindex(j.index))
j = j[(j.entered_at >= start) & (j.entered_at < end)]
q = leads[leads.qualified_at.notna()].set_index("customer_id").qualified_at
q = q[q < as_of]
j["qualified_at"] = q.reindex(j.index)
j["first_order"] = first_order.reindex(j.index)
j["second_order"] = second_order.reindex(j.index)
op = opps[(opps.created_at < as_of)].groupby("customer_id").created_at.min()
won = hist[(hist.stage == ws.config.won_stage) & (hist["at"] < as_of)]
won = won.groupby(["customer_id", "opportunity_id"])["at"].min().reset_index().sort_values(
    ["customer_id", "at", "opportunity_id"])
won["n"] = won.groupby("customer_id").cumcount() + 1
j["first_opportunity"] = op.reindex(j.index)
j["first_won"] = won[won.n == 1].set_index("customer_id")["at"].reindex(j.index)
j["second_won"] = won[won.n == 2].set_index("customer_id")["at"].reindex(j.index)
j["tier"] = snap.set_index("customer_id").tier.reindex(j.index)
def steps(cols):
    out = {}
    for tier, g in j.groupby("tier"):
        mask = np.ones(len(g), bool); counts = [len(g)]
        for c in cols:
            mask &= g[c].notna().to_numpy(); counts.append(int(mask.sum()))
        out[tier] = counts
    return out
# without lead-scoring rules the qualified step is left out, as tierwise does
qualified = ["qualified_at"] if lead_model.definition(ws) is not None else []
f_orders = steps([*qualified, "first_order", "second_order"])
f_opps = steps([*qualified, "first_opportunity", "first_won", "second_won"])
t1 = time.perf_counter()
# economics, per tier of the latest snapshot
o = orders[(orders.status == "paid") & (orders.ordered_at >= start) & (orders.ordered_at < end)]
margin = o.category.map(econ.category_margins)
gm = np.where(o.cost.notna(), o.amount - o.cost, np.where(margin.notna(), o.amount * margin,
              o.amount * econ.default_margin if econ.default_margin is not None else o.amount))
o = o.assign(gm=gm)
per = o.groupby("customer_id").agg(revenue=("amount", "sum"), gross_margin=("gm", "sum"))
tk = read("tickets", ["ticket_id", "customer_id", "opened_at", "priority"]).drop_duplicates(
    "ticket_id", keep="last")
tk = tk[(tk.opened_at >= start) & (tk.opened_at < end)]
tk = tk.assign(c=tk.priority.map(econ.ticket_costs).fillna(econ.ticket_cost))
per = per.join(tk.groupby("customer_id").c.sum().rename("ticket_cost"), how="outer")
firsts = orders[(orders.status == "paid") & (orders.ordered_at < end)].groupby(
    "customer_id").ordered_at.min()
p = people.set_index("customer_id")
acquired = p.signup_at.fillna(firsts.reindex(p.index))
cac = p.acquisition_cost.fillna(p.channel.map(econ.channel_cac)).fillna(0)
acq = cac.where((acquired >= start) & (acquired < end), 0)
t = snap.set_index("customer_id").tier
months = (end - start).total_seconds() / 86400 / 30.4375
manager = t.map(econ.manager_hours).fillna(0) * econ.hourly_cost * months
frame = pd.DataFrame(index=p.index)
frame = frame.join(per).fillna(0)
frame["acquisition_cost"] = acq
frame["manager_cost"] = manager.reindex(frame.index).fillna(0)
frame["profit_contribution"] = (frame.gross_margin - frame.ticket_cost - frame.manager_cost
                                - frame.acquisition_cost)
frame["tier"] = t.reindex(frame.index)
sums = frame.groupby("tier").agg(customers=("revenue", "size"), revenue=("revenue", "sum"),
                                 gross_margin=("gross_margin", "sum"),
                                 ticket_cost=("ticket_cost", "sum"),
                                 manager_cost=("manager_cost", "sum"),
                                 profit_contribution=("profit_contribution", "sum"))
t2 = time.perf_counter()
json.dump({"funnel_seconds": t1 - t0, "economics_seconds": t2 - t1, "orders": f_orders,
           "opportunities": f_opps,
           "economics": {k: {c: float(v) for c, v in row.items()} for k, row in
                         sums.round(2).to_dict("index").items()}}, open(sys.argv[3], "w"))
"""


def _agree(a: dict[str, object], b: dict[str, object]) -> list[str]:
    """Where tierwise's numbers and pandas' differ (counts exactly, money to a cent per
    million)."""
    problems = []
    for flow in ("orders", "opportunities"):
        if a[flow] != b[flow]:
            problems.append(f"{flow} funnel: {a[flow]} != {b[flow]}")
    for tier, row in a["economics"].items():  # type: ignore[attr-defined]
        other = b["economics"].get(tier, {})  # type: ignore[attr-defined]
        for name, value in row.items():
            if abs(float(value) - float(other.get(name, float("nan")))) > max(
                    0.01, abs(float(value)) * 1e-9):
                problems.append(f"economics {tier} {name}: {value} != {other.get(name)}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--period", default="2026Q2")
    args = parser.parse_args()
    ensure_workspace()
    marker = WS / "facts" / "opportunities"
    if not marker.exists() or not any(marker.rglob("*.parquet")):
        work = OUT / "pipeline"
        work.mkdir(exist_ok=True)
        seconds, _ = measure(python(PIPELINE, str(WS), str(work)))
        print(f"pipeline added in {seconds:.0f} s", file=sys.stderr)
    rows = []
    for name, code in (("tierwise", TIERWISE), ("pandas", PANDAS)):
        runs = []
        for i in range(args.repeat):
            target = OUT / f"economics-{name}-{i}.json"
            seconds, peak = measure(python(code, str(WS), args.period, str(target)))
            found = json.loads(target.read_text())
            runs.append((seconds, peak, found))
        rows.append({"name": name,
                     "funnel_seconds_median": round(median([r[2]["funnel_seconds"]
                                                            for r in runs]), 2),
                     "economics_seconds_median": round(median([r[2]["economics_seconds"]
                                                               for r in runs]), 2),
                     "process_seconds_median": round(median([r[0] for r in runs]), 1),
                     "peak_rss_mb_median": round(median([r[1] for r in runs])),
                     "result": runs[0][2]})
    ours, theirs = rows
    disagreements = _agree(ours["result"], theirs["result"])  # type: ignore[arg-type]
    summary = {
        "period": args.period, "repeat": args.repeat, "agree": not disagreements,
        "disagreements": disagreements[:20],
        "funnel_ratio_tierwise_over_pandas": round(
            ours["funnel_seconds_median"] / theirs["funnel_seconds_median"], 2),  # type: ignore[operator]
        "economics_ratio_tierwise_over_pandas": round(
            ours["economics_seconds_median"] / theirs["economics_seconds_median"], 2),  # type: ignore[operator]
        "peak_rss_ratio_tierwise_over_pandas": round(
            ours["peak_rss_mb_median"] / theirs["peak_rss_mb_median"], 2)}  # type: ignore[operator]
    for row in rows:
        row.pop("result")
    report("economics", [*rows, summary])


if __name__ == "__main__":
    main()
