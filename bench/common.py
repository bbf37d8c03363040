"""Helpers shared by the benchmark scripts: timing, peak RSS, and the results file."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    Read from /proc/self/status (VmHWM): ``ru_maxrss`` keeps the parent's high-water mark across exec, so it
    over-reports in a child process.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(results: dict[str, Any]) -> None:
    """Print the figures and hand them to bench/run_all.py through MLOPS_BENCH_OUT."""
    for key, value in results.items():
        print(f"{key}: {value}")
    out = os.environ.get("MLOPS_BENCH_OUT")
    if out:
        Path(out).write_text(json.dumps(results, indent=2, default=float))
