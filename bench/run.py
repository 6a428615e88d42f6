"""Run every benchmark in turn (each prints its own JSON)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["import_orders.py", "demo.py", "value.py", "segments.py", "compute.py",
           "duplicates.py",
           "match_arrivals.py",
           "clustering.py", "churn.py", "api_reads.py", "realtime.py", "realtime_batch.py",
           "dashboard.py", "backup.py", "delivery_log.py", "channels.py", "economics.py"]

if __name__ == "__main__":
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script)], check=True)
