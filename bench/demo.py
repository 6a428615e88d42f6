"""`tierwise demo --customers N`: time and peak RSS, against generation alone in the same run.

    python bench/demo.py [--customers 1000000] [--repeat 1]

The baseline writes the same generated tables to Parquet without importing them, so the
ratio is what validation, the control store and the fact store add to generation.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, measure, median, python, report  # noqa: E402

GENERATE_ONLY = """
import sys, datetime, pathlib
from tierwise.demo.generator import DemoSpec, write_demo_files
spec = DemoSpec(customers=int(sys.argv[1]), seed=7, end=datetime.date(2026, 6, 30))
print(write_demo_files(spec, pathlib.Path(sys.argv[2])))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    full, base = [], []
    for _ in range(args.repeat):
        ws, files = OUT / "ws-demo", OUT / "demo-files"
        shutil.rmtree(ws, ignore_errors=True)
        shutil.rmtree(files, ignore_errors=True)
        full.append(measure([sys.executable, "-m", "tierwise.cli.main", "demo", "-w", str(ws),
                             "--customers", str(args.customers), "--seed", "7",
                             "--end", "2026-06-30"]))
        base.append(measure(python(GENERATE_ONLY, str(args.customers), str(files))))
    from tierwise import open as open_ws

    counts = open_ws(OUT / "ws-demo").summary()
    t_full, t_base = median([s for s, _ in full]), median([s for s, _ in base])
    report("demo", [{
        "customers": args.customers,
        "rows": {name: info["rows"] for name, info in counts.items()},
        "demo_seconds": [round(s, 1) for s, _ in full],
        "demo_peak_rss_mb": round(max(m for _, m in full)),
        "generate_only_seconds": [round(s, 1) for s, _ in base],
        "generate_only_peak_rss_mb": round(max(m for _, m in base)),
        "ratio_demo_over_generate_only": round(t_full / t_base, 2),
    }])


if __name__ == "__main__":
    main()
