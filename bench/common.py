"""Helpers for benchmarks: run a command in a child process, report wall time and peak RSS."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
#: The environment the benchmark started with, for child processes: importing tierwise in
#: the benchmark's own process adds settings (MIMALLOC_ALLOW_THP) that a baseline's
#: process must not inherit.
ENVIRONMENT = dict(os.environ)


def compiled(source: Path) -> Path:
    """``source`` with its bytecode written, as an installed package has it (pip compiles
    on install; ``make setup`` does for this checkout): a process started with
    ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module it imports, each time
    (~0.12 s of every command's start-up). Files already compiled are skipped."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(source)], check=True)
    return source


# This checkout's source, for the benchmarks that import it in child processes.
compiled(ROOT / "src")


def measure(argv: list[str], cwd: Path | None = None,
            env: dict[str, str] | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a child process, sampling its whole process tree; its
    environment is the one the benchmark started with unless ``env`` is given."""
    start = time.perf_counter()
    proc = psutil.Popen(argv, cwd=cwd, env=ENVIRONMENT if env is None else env,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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


def baseline_source(commit: str) -> Path:
    """The ``src`` folder of ``commit``, checked out once beside the benchmarks' data."""
    resolved = subprocess.run(["git", "rev-parse", "--short", commit], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    tree = OUT / f"baseline-{resolved}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), resolved], cwd=ROOT,
                       check=True, capture_output=True)
    return compiled(tree / "src")


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def report(name: str, rows: list[dict[str, object]]) -> None:
    print(json.dumps({"benchmark": name, "results": rows}, indent=2, ensure_ascii=False))


def median(values: list[float]) -> float:
    return statistics.median(values)
