"""50 typical segments over 1M customers: DuckDB, Spark and a pandas implementation.

    python bench/segments.py [--engines duckdb,pandas,spark]

Data: ``tierwise demo --customers 1000000 --activity 5 --seed 7 --end 2026-06-30`` and
``tierwise compute --as-of 2026-06-30`` into bench/out/ws-seg (built here if missing).
Each variant runs in its own process (time and peak RSS of the whole process, reading
included). The engines use the batch path of ``tierwise segments evaluate``: all 50 rules
compiled together, one aggregate pass per source, then the rules as the columns of one
query. The
pandas variant implements the same 50 rules with vectorised groupbys; its member sets
must equal DuckDB's (and Spark's).

    python bench/segments.py --evaluate-all [--repeat 3] [--baseline COMMIT]

The product command the engines' variant stands for (with ``--baseline``, alternately with a
commit's, checked out as ``bench/compute.py`` does): the 50 rules saved as segments in a
copy of the workspace (bench/out/ws-seg-eval: its fact files linked, its control store
copied), evaluated once so that their members are stored, then ``evaluate_all`` (what
``tierwise segments evaluate`` runs) timed in a fresh process per run, with nothing to
change: the rules' evaluation, reading each segment's stored members and comparing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ENVIRONMENT, OUT, ROOT, baseline_source, measure, median, report  # noqa: E402

WS = OUT / "ws-seg"
AS_OF = "2026-06-30T23:59:59+08:00"


def rules() -> list[tuple[str, str, dict[str, object]]]:
    """(rule text, template, parameters) for 50 segments."""
    out: list[tuple[str, str, dict[str, object]]] = []
    for d, k in ((30, 1), (30, 2), (90, 2), (180, 3), (365, 5)):
        out.append((f"COUNT(orders, LAST {d}d) >= {k}", "count", {"d": d, "k": k}))
    for m, x in ((1, 500), (3, 1000), (6, 2000), (12, 5000), (12, 20000)):
        out.append((f"SUM(orders.amount, LAST {m}m) > {x}", "sum", {"m": m, "x": x}))
    for x in (200, 500, 1000, 3000, 10000):
        out.append((f"AVG(orders.amount) > {x}", "avg", {"x": x}))
    for d in (30, 60, 90, 180, 365):
        out.append((f"DAYS_SINCE_LAST(orders) > {d}", "recency", {"d": d}))
    for d, k in ((7, 1), (14, 1), (30, 1), (30, 2), (90, 3)):
        out.append((f"COUNT(events WHERE type = 'page_view' AND properties.page = '/pricing', "
                    f"LAST {d}d) >= {k}", "pricing", {"d": d, "k": k}))
    for d, k in ((7, 1), (30, 1), (30, 3), (90, 5), (180, 10)):
        out.append((f"COUNT(events WHERE type = 'email_open', LAST {d}d) >= {k}", "email",
                    {"d": d, "k": k}))
    for d in (30, 60, 90, 180, 365):
        out.append((f"city IN ('上海', '北京') AND COUNT(orders, LAST {d}d) >= 1", "city",
                    {"d": d}))
    for d in (30, 60, 90, 180, 365):
        out.append((f"tier IN ('A', 'B') AND DAYS_SINCE_LAST(orders) > {d}", "tier_recency",
                    {"d": d}))
    for seg in ("champions", "loyal_customers", "at_risk", "hibernating", "lost"):
        out.append((f"rfm.segment = '{seg}'", "rfm", {"seg": seg}))
    for stage, x in (("active", 1000), ("loyal", 5000), ("at_risk", 2000),
                     ("dormant", 1000), ("churned", 500)):
        out.append((f"lifecycle = '{stage}' AND SUM(orders.amount) > {x}", "lifecycle",
                    {"stage": stage, "x": x}))
    return out


ENGINE_RUN = """
import json, sys, time
from datetime import datetime
import tierwise
from tierwise.compile.segments import compile_batch
from tierwise.definitions.segment_parser import parse
from tierwise.engines import make_engine
from tierwise.segments.evaluate import Evaluation
from tierwise.segments.vocabulary import vocabulary
sys.path.insert(0, sys.argv[3])
from segments import rules
ws = tierwise.open(sys.argv[1])
ws.engine = make_engine(sys.argv[2])
as_of = datetime.fromisoformat(sys.argv[4])
t0 = time.perf_counter()
texts = [text for text, _, _ in rules()]
batch = compile_batch({str(i): parse(t) for i, t in enumerate(texts)}, ws.engine.name, as_of,
                      ws.config.zone, vocabulary=vocabulary(ws))
with Evaluation(ws, as_of) as ev:
    t_ready = time.perf_counter()
    ev.prepare(batch)
    t_shared = time.perf_counter()
    # as `segments evaluate` does: every rule in one query, one by one if they cannot
    # share one; each rule's members as the Arrow array its diff against the stored
    # members is taken in (`membership.changes_between`)
    together = ev.run_many(batch.rules) or {
        k: ev.run(c)["customer_id"] for k, c in batch.rules.items()}
total = time.perf_counter() - t0
counts = {text: sorted(together[str(i)].to_pylist()) for i, text in enumerate(texts)}

json.dump({"seconds": total, "setup": t_ready - t0, "shared_pass": t_shared - t_ready,
           "members": counts}, open(sys.argv[5], "w"))
"""

PANDAS_RUN = """
import json, sys, time
import numpy as np, pandas as pd
sys.path.insert(0, sys.argv[3])
from segments import rules
root = sys.argv[1]
as_of = pd.Timestamp(sys.argv[4]).tz_convert("UTC")
t0 = time.perf_counter()
import glob
def read(table, columns):
    files = sorted(glob.glob(f"{root}/facts/{table}/*.parquet"))
    return pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)
customers = pd.read_parquet(glob.glob(f"{root}/facts/_mirror/*.parquet")[0],
                            columns=["customer_id", "city"])
snap = pd.read_parquet(sorted(glob.glob(f"{root}/snapshots/*.parquet"))[-1],
                       columns=["customer_id", "tier", "rfm_segment", "lifecycle"])
orders = read("orders", ["customer_id", "ordered_at", "amount", "status"])
orders = orders[(orders.status == "paid") & (orders.ordered_at <= as_of)]
events = read("events", ["customer_id", "occurred_at", "type", "properties"])
events = events[events.occurred_at <= as_of]
page = events.properties.str.extract(r'"page":"([^"]*)"', expand=False)
last = orders.groupby("customer_id").ordered_at.max()
days_since = np.floor((as_of - last).dt.total_seconds() / 86400)
total = orders.groupby("customer_id").amount.sum()
def ids(index): return sorted(index)
def window(frame, column, delta): return frame[frame[column] > as_of - delta]
members = {}
for text, kind, p in rules():
    if kind == "count":
        size = window(orders, "ordered_at", pd.Timedelta(days=p["d"])).groupby("customer_id").size()
        got = size[size >= p["k"]].index
    elif kind == "sum":
        w = window(orders, "ordered_at", pd.DateOffset(months=p["m"]))
        s = w.groupby("customer_id").amount.sum()
        got = s[s > p["x"]].index
    elif kind == "avg":
        a = orders.groupby("customer_id").amount.mean()
        got = a[a > p["x"]].index
    elif kind == "recency":
        got = days_since[days_since > p["d"]].index
    elif kind in ("pricing", "email"):
        e = window(events, "occurred_at", pd.Timedelta(days=p["d"]))
        if kind == "pricing":
            e = e[(e.type == "page_view") & (page.loc[e.index] == "/pricing")]
        else:
            e = e[e.type == "email_open"]
        size = e.groupby("customer_id").size()
        got = size[size >= p["k"]].index
    elif kind == "city":
        size = window(orders, "ordered_at", pd.Timedelta(days=p["d"])).groupby("customer_id").size()
        local = set(customers.customer_id[customers.city.isin(["上海", "北京"])])
        got = [c for c in size[size >= 1].index if c in local]
    elif kind == "tier_recency":
        ab = set(snap.customer_id[snap.tier.isin(["A", "B"])])
        got = [c for c in days_since[days_since > p["d"]].index if c in ab]
    elif kind == "rfm":
        got = snap.customer_id[snap.rfm_segment == p["seg"]]
    else:
        stage = set(snap.customer_id[snap.lifecycle == p["stage"]])
        got = [c for c in total[total > p["x"]].index if c in stage]
    members[text] = ids(got)
json.dump({"seconds": time.perf_counter() - t0, "members": members}, open(sys.argv[5], "w"))
"""


EVALUATE_ALL_RUN = """
import json, sys, time
from datetime import datetime
import tierwise
from tierwise.segments.membership import evaluate_all
ws = tierwise.open(sys.argv[1])
t0 = time.perf_counter()
runs = evaluate_all(ws, datetime.fromisoformat(sys.argv[2]))
json.dump({"seconds": time.perf_counter() - t0,
           "members": sum(r.members or 0 for r in runs),
           "changes": sum((r.entered or 0) + (r.exited or 0) for r in runs),
           "errors": [r.error for r in runs if r.error]}, open(sys.argv[3], "w"))
"""


def evaluate_all_runs(repeat: int, baseline: str | None = None) -> None:
    """``evaluate_all`` of the 50 rules as saved segments, members settled; alternately
    with a baseline commit's (``--baseline``)."""
    import os
    import shutil

    from tierwise import open as open_ws
    from tierwise.segments import catalog as defs
    from tierwise.segments.membership import evaluate_all

    copy = OUT / "ws-seg-eval"
    if not (copy / "control.db").exists():
        shutil.rmtree(copy, ignore_errors=True)
        # fact files and snapshots are written once and never changed in place: links
        shutil.copytree(WS, copy, copy_function=os.link,
                        ignore=shutil.ignore_patterns("control.db*"))
        for part in WS.glob("control.db*"):  # with its write-ahead log, if any
            shutil.copy2(part, copy / part.name)
        ws = open_ws(copy)
        for i, (text, _, _) in enumerate(rules()):
            defs.save(ws, defs.SegmentDefinition(key=f"s{i:02d}", rule=text), "benchmark")
        evaluate_all(ws, datetime.fromisoformat(AS_OF))  # every member enters (minutes)
        ws.close()
    target = OUT / "seg-evaluate-all.json"
    sides = {"this": ROOT / "src"}
    if baseline:
        sides = {f"baseline {baseline}": baseline_source(baseline), **sides}
    results: dict[str, list[dict[str, object]]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, source in sides.items():
            seconds, peak = measure([sys.executable, "-c", EVALUATE_ALL_RUN, str(copy), AS_OF,
                                     str(target)],
                                    env={**ENVIRONMENT, "PYTHONPATH": str(source)})
            data = json.loads(target.read_text())
            if data["errors"] or data["changes"]:
                raise SystemExit(f"the settled run was not settled: {data}")
            results[name].append({"evaluate_all_seconds": round(data["seconds"], 2),
                                  "process_seconds": round(seconds, 1),
                                  "peak_rss_mb": round(peak), "members": data["members"]})
    rows: list[dict[str, object]] = []
    for name, done in results.items():
        rows.append({"code": name, "runs": done, "median_evaluate_all_seconds": round(
            median([float(r["evaluate_all_seconds"]) for r in done]), 2)})
    report("segments_50_evaluate_all", rows)


def ensure_workspace() -> None:
    if (WS / "snapshots").exists():
        return
    subprocess.run([sys.executable, "-m", "tierwise.cli.main", "demo", "-w", str(WS), "--customers",
                    "1000000", "--activity", "5", "--seed", "7", "--end", "2026-06-30"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "tierwise.cli.main", "compute", "-w", str(WS),
                    "--as-of", "2026-06-30"], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engines", default="duckdb,pandas,spark")
    parser.add_argument("--evaluate-all", action="store_true",
                        help="time evaluate_all of the rules saved as segments instead")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default=None,
                        help="with --evaluate-all: a commit whose run alternates with this one")
    args = parser.parse_args()
    ensure_workspace()
    if args.evaluate_all:
        evaluate_all_runs(args.repeat, args.baseline)
        return
    here = str(Path(__file__).resolve().parent)
    results: dict[str, dict[str, object]] = {}
    for engine in args.engines.split(","):
        target = OUT / f"seg-{engine}.json"
        code = PANDAS_RUN if engine == "pandas" else ENGINE_RUN
        argv = [sys.executable, "-c", code, str(WS)]
        argv += ([engine] if engine != "pandas" else ["pandas"]) + [here, AS_OF, str(target)]
        seconds, peak = measure(argv)
        data = json.loads(target.read_text())
        results[engine] = {"process_seconds": round(seconds, 1), "peak_rss_mb": round(peak),
                           "work_seconds": round(data["seconds"], 2),
                           "setup_seconds": round(data.get("setup", 0.0), 2),
                           "shared_aggregate_pass_seconds": round(data.get("shared_pass", 0.0),
                                                                  2),
                           "members": data["members"]}
    reference = results.get("duckdb", {}).get("members")
    for result in results.values():
        if reference is not None:
            result["same_members_as_duckdb"] = result["members"] == reference
        result.pop("members")
    from tierwise import open as open_ws

    ws = open_ws(WS)
    summary: dict[str, object] = {"customers": ws.count("customers"),
                                  "orders": ws.count("orders"), "events": ws.count("events"),
                                  "segments": len(rules()), **results}
    if "duckdb" in results and "pandas" in results:
        summary["ratio_pandas_over_duckdb"] = round(
            float(results["pandas"]["work_seconds"])  # type: ignore[arg-type]
            / float(results["duckdb"]["work_seconds"]), 2)  # type: ignore[arg-type]
    report("segments_50", [summary])


if __name__ == "__main__":
    main()
