"""Helpers for benchmarks: run a command in a child process, report wall time and peak RSS."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

OUT = Path(__file__).resolve().parent / "out"


def measure(argv: list[str], cwd: Path | None = None,
            env: dict[str, str] | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a child process, sampling its whole process tree."""
    start = time.perf_counter()
    proc = psutil.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs))
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{err.decode()[-3000:]}")
    return seconds, peak / 1e6


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def report(name: str, rows: list[dict[str, object]]) -> None:
    print(json.dumps({"benchmark": name, "results": rows}, indent=2, ensure_ascii=False))


def median(values: list[float]) -> float:
    return statistics.median(values)
