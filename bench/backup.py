"""Backup, incremental backup, verify and restore of the 1M-customer workspace.

Uses bench/out/ws-seg (1,000,000 customers, ~9M orders, ~28M events; built by
bench/segments.py if missing). The baseline, measured in the same run, is a cold copy of
the workspace folder (``cp -a``), which is what an operator had before: ``tierwise backup``
should cost about as much while the workspace keeps running, and an incremental backup
less. Every step starts after ``sync`` (the dirty pages of the step before written out).
Each step runs ``--runs`` times in its own process; medians are reported.

    .venv/bin/python bench/backup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from common import OUT, measure, median, report
from segments import WS, ensure_workspace

TIERWISE = str(Path(sys.executable).with_name("tierwise"))


def _size(path: Path) -> int:
    """Bytes the folder takes on disk (hard links to an earlier backup counted once,
    with ``du`` given that backup first)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _disk(*paths: Path) -> list[int]:
    found = subprocess.run(["du", "-sb", *map(str, paths)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    return [int(line.split()[0]) for line in found]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ensure_workspace()
    work = OUT / "backup"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    times: dict[str, list[float]] = {k: [] for k in ("cp -a (baseline)", "backup",
                                                      "backup --base", "backup verify",
                                                      "restore")}
    rss: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for run in range(args.runs):
        copy, full, incr, restored = (work / f"{name}-{run}" for name in
                                      ("copy", "full", "incr", "restored"))
        steps = [
            ("cp -a (baseline)", ["cp", "-a", str(WS), str(copy)]),
            ("backup", [TIERWISE, "backup", str(full), "-w", str(WS)]),
            ("backup --base", [TIERWISE, "backup", str(incr), "--base", str(full),
                               "-w", str(WS)]),
            ("backup verify", [TIERWISE, "backup", "verify", str(incr)]),
            ("restore", [TIERWISE, "restore", str(incr), str(restored), "--keys-from",
                         str(WS / "keys")]),
        ]
        for name, argv in steps:
            # the previous step's writes go to disk first, or they slow down this one
            subprocess.run(["sync"], check=True)
            seconds, peak = measure(argv)
            times[name].append(seconds)
            rss[name] = max(rss.get(name, 0.0), peak)
        sizes["workspace"] = _size(WS)
        sizes["backup"], sizes["backup --base (new bytes)"] = _disk(full, incr)
        for path in (copy, full, incr, restored):
            shutil.rmtree(path)
    base = median(times["cp -a (baseline)"])
    report("backup", [
        {"step": name, "median_seconds": round(median(t), 2),
         "runs": [round(x, 2) for x in t], "ratio_to_cp": round(median(t) / base, 2),
         "peak_rss_mb": round(rss[name])} for name, t in times.items()
    ] + [{"size": name, "mb": round(n / 1e6)} for name, n in sizes.items()])


if __name__ == "__main__":
    main()
