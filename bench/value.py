"""Customer value on 10M orders / 1M customers: RFM summary, CLV fits, `tierwise compute`.

    python bench/value.py [--repeat 3]

Uses the workspace that bench/import_orders.py builds (created here if missing). Baselines
in the same run, on the same Parquet files:
- RFM summary (recency, orders, revenue per customer; ``stats.rfm_summary``) against a
  plain pandas groupby computing the same columns after reading the columns it needs;
- the CLV summary (``stats.clv_summary``: purchase days in the local time zone, x, t_x,
  T, mean repeat-day value) against ``lifetimes.utils.summary_data_from_transaction_data``
  (frequency, recency, T, monetary value per day: the same content), run in a separate
  virtual environment ``bench/out/venv-lifetimes`` so that lifetimes never enters
  tierwise's own; the full ``stats.customer_stats`` (all of the above plus periods,
  profit, gaps) is timed beside it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, measure, median, report  # noqa: E402

import tierwise  # noqa: E402
from tierwise.models import clv, stats  # noqa: E402

AS_OF = datetime(2025, 11, 15, tzinfo=UTC)
LIFETIMES = OUT / "venv-lifetimes"
LIFETIMES_RUN = """
import glob, sys, time, pandas as pd
from lifetimes.utils import summary_data_from_transaction_data
files = sorted(glob.glob(sys.argv[1] + "/*.parquet"))
df = pd.concat([pd.read_parquet(f, columns=["customer_id", "ordered_at", "amount", "status"])
                for f in files])
df = df[df.status == "paid"]
t = time.perf_counter()
s = summary_data_from_transaction_data(df, "customer_id", "ordered_at",
    monetary_value_col="amount", observation_period_end=pd.Timestamp(sys.argv[2]), freq="D")
print(time.perf_counter() - t, len(s))
"""


def ensure_workspace() -> Path:
    ws = OUT / "ws-import"
    if not (ws / "tierwise.toml").exists() or tierwise.open(ws).count("orders") < 10_000_000:
        subprocess.run([sys.executable, str(Path(__file__).with_name("import_orders.py")),
                        "--repeat", "1"], check=True, stdout=subprocess.DEVNULL)
    return ws


def pandas_summary(files: list[Path]) -> pd.DataFrame:
    df = pd.concat([pd.read_parquet(f, columns=["customer_id", "ordered_at", "amount",
                                                "status"]) for f in files])
    df = df[(df["status"] == "paid") & (df["ordered_at"] <= pd.Timestamp(AS_OF))]
    out = df.groupby("customer_id").agg(last=("ordered_at", "max"),
                                        orders=("amount", "size"), revenue=("amount", "sum"))
    out["recency_days"] = (pd.Timestamp(AS_OF) - out["last"]).dt.days
    return out


def ensure_lifetimes() -> bool:
    if not (LIFETIMES / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LIFETIMES)], check=True)
        done = subprocess.run([str(LIFETIMES / "bin" / "pip"), "install", "-q",
                               "lifetimes==0.11.3", "pandas<2.2", "numpy<2", "scipy<1.13",
                               "pyarrow<20"], capture_output=True)
        if done.returncode != 0:
            return False
    return True


def timed(fn, repeat: int) -> tuple[list[float], object]:  # type: ignore[no-untyped-def]
    seconds, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t0)
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = ensure_workspace()
    ws = tierwise.open(root)
    files = sorted((root / "facts" / "orders").glob("*.parquet"))
    period = stats.Period(None)
    ours, rfm_table = timed(lambda: stats.rfm_summary(ws, AS_OF, period), args.repeat)
    base, frame = timed(lambda: pandas_summary(files), args.repeat)
    assert rfm_table.num_rows == len(frame)  # type: ignore[union-attr]
    full, table = timed(lambda: stats.customer_stats(ws, AS_OF, period), args.repeat)
    light, _ = timed(lambda: stats.clv_summary(ws, AS_OF), args.repeat)
    x = table["x"].to_numpy().astype(float)  # type: ignore[index]
    t_x = table["t_x_days"].to_numpy() / 7  # type: ignore[index]
    T = table["t_days"].to_numpy() / 7  # type: ignore[index]
    bg, _ = timed(lambda: clv.fit_bgnbd(clv.Summary.compress(x, t_x, T)), args.repeat)
    pareto, _ = timed(lambda: clv.fit_pareto_nbd(clv.Summary.compress(x, t_x, T)), 1)
    compute_runs = [measure([sys.executable, "-m", "tierwise.cli.main", "compute", "-w", str(root),
                             "--as-of", "2025-11-15"]) for _ in range(args.repeat)]
    lifetimes_seconds = None
    if ensure_lifetimes():
        run = subprocess.run([str(LIFETIMES / "bin" / "python"), "-c", LIFETIMES_RUN,
                              str(root / "facts" / "orders"), "2025-11-15"],
                             capture_output=True, text=True, check=True)
        lifetimes_seconds = float(run.stdout.split()[0])
    t_ours, t_base = median(ours), median(base)
    report("customer_value", [{
        "orders": int(ws.count("orders")), "customers": int(table.num_rows),  # type: ignore[union-attr]
        "rfm_summary_seconds": [round(s, 2) for s in ours],
        "pandas_groupby_seconds": [round(s, 2) for s in base],
        "ratio_pandas_over_tierwise_rfm": round(t_base / t_ours, 2),
        "customer_stats_seconds": [round(s, 2) for s in full],
        "ratio_pandas_groupby_over_customer_stats": round(t_base / median(full), 2),
        "clv_summary_seconds": [round(s, 2) for s in light],
        "lifetimes_summary_seconds": round(lifetimes_seconds, 2) if lifetimes_seconds else None,
        "ratio_lifetimes_over_clv_summary": round(lifetimes_seconds / median(light), 1)
        if lifetimes_seconds else None,
        "ratio_lifetimes_over_customer_stats": round(lifetimes_seconds / median(full), 1)
        if lifetimes_seconds else None,
        "bgnbd_fit_seconds_incl_compression": [round(s, 2) for s in bg],
        "pareto_nbd_fit_seconds_incl_compression": [round(s, 2) for s in pareto],
        "compute_seconds": [round(s, 1) for s, _ in compute_runs],
        "compute_peak_rss_mb": round(max(m for _, m in compute_runs)),
        "unique_rows_after_compression": int(len(clv.Summary.compress(x, t_x, T).x)),
    }])


if __name__ == "__main__":
    main()
