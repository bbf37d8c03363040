"""Benchmark: GX validation through our core path vs bare Great Expectations on the same data.

1M rows x 20 columns, 60 expectations. "ours" is ``validate_dataset(uri, suite, report_uri=...)`` end to end:
resolve the parquet file, read the columns the suite needs, fingerprint the file, run GX, write the JSON and HTML
reports. "bare GX" is an ephemeral context validating the same suite on the frame already in memory (reading is
not timed), once with GX's default result format (SUMMARY) and once with the BASIC format our path uses.
Each side runs in its own fresh process, so the peak RSS printed is that side's alone.

Run: ``python bench/validation.py`` (``MLOPS_BENCH_ROWS`` changes the row count).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import best_of, emit, peak_rss_mb

ROWS = int(os.environ.get("MLOPS_BENCH_ROWS", "1000000"))
REPEAT = int(os.environ.get("MLOPS_BENCH_REPEAT", "2"))
N_NUM, N_INT, N_STR = 10, 5, 5


def make_suite() -> list[dict[str, Any]]:
    """60 expectations over all 20 columns, a realistic mix of map and aggregate expectations."""
    suite: list[dict[str, Any]] = []
    for i in range(N_NUM):
        col = f"num_{i}"
        suite += [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": col, "mostly": 0.95}},
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": col, "min_value": -6, "max_value": 6},
            },
        ]
        if i < N_NUM // 2:
            suite.append(
                {
                    "type": "expect_column_mean_to_be_between",
                    "kwargs": {"column": col, "min_value": -0.5, "max_value": 0.5},
                }
            )
    for i in range(N_INT):
        col = f"int_{i}"
        suite += [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": col}},
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": col, "min_value": 0, "max_value": 999},
            },
            {
                "type": "expect_column_max_to_be_between",
                "kwargs": {"column": col, "min_value": 0, "max_value": 1000},
            },
        ]
    for i in range(N_STR):
        col = f"str_{i}"
        suite += [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": col}},
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": col, "value_set": ["a", "b", "c", "d"]},
            },
            {
                "type": "expect_column_distinct_values_to_be_in_set",
                "kwargs": {"column": col, "value_set": list("abcde")},
            },
        ]
    suite += [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": columns()}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "int_0"}},  # fails: 1000 values
        {"type": "expect_column_values_to_be_increasing", "kwargs": {"column": "num_0"}},  # fails
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "str_0", "regex": "^[a-d]$"}},
    ]
    assert len(suite) == 60, len(suite)
    return suite


def columns() -> list[str]:
    return (
        [f"num_{i}" for i in range(N_NUM)]
        + [f"int_{i}" for i in range(N_INT)]
        + [f"str_{i}" for i in range(N_STR)]
    )


def write_data(path: str) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    frame: dict[str, Any] = {}
    for i in range(N_NUM):
        values = rng.normal(size=ROWS)
        values[rng.random(ROWS) < 0.01] = np.nan
        frame[f"num_{i}"] = values
    for i in range(N_INT):
        frame[f"int_{i}"] = rng.integers(0, 1000, size=ROWS)
    letters = np.array(list("abcd"))
    for i in range(N_STR):
        frame[f"str_{i}"] = letters[rng.integers(0, 4, size=ROWS)]
    pd.DataFrame(frame).to_parquet(path, row_group_size=128_000)


def _quiet() -> Any:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def bare_gx(path: str, result_format: str, queue: Any) -> None:
    """Bare GX: the frame is read before timing; the timed part is context + suite + validate."""
    gx = _quiet()
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    frame = pd.read_parquet(path)
    specs = make_suite()
    counter = iter(range(1_000_000))

    cpu: list[float] = []

    def run() -> bool:
        start = time.process_time()
        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch_def = (
            ctx.data_sources.add_pandas(f"ds{next(counter)}")
            .add_dataframe_asset(name="frame")
            .add_batch_definition_whole_dataframe("whole")
        )
        suite = gx.ExpectationSuite(
            name="bench",
            expectations=[
                ExpectationConfiguration(type=s["type"], kwargs=s["kwargs"]).to_domain_obj() for s in specs
            ],
        )
        batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
        success = bool(batch.validate(suite, result_format=result_format).success)
        cpu.append(time.process_time() - start)
        return success

    seconds, success = best_of(run, REPEAT)
    queue.put({"seconds": seconds, "cpu_s": min(cpu), "success": success, "peak_rss_mb": peak_rss_mb()})


def ours(path: str, report_dir: str, queue: Any) -> None:
    _quiet()  # import cost is paid once per worker process in production too; not part of the timed path
    from airflow_mlops.core import lineage
    from airflow_mlops.core.validation import validate_dataset

    specs = make_suite()

    cpu: list[float] = []

    def run() -> Any:
        start = time.process_time()
        lineage._cache.clear()  # hash the file on every repeat, as a fresh task process would
        result = validate_dataset(path, specs, report_uri=report_dir)
        cpu.append(time.process_time() - start)
        return result

    seconds, result = best_of(run, REPEAT)
    assert Path(result.report_uri).exists() and Path(result.report_json_uri).exists()
    queue.put(
        {"seconds": seconds, "cpu_s": min(cpu), "success": result.success, "peak_rss_mb": peak_rss_mb()}
    )


def in_fresh_process(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:
        try:
            result: dict[str, Any] = queue.get(timeout=1)
            break
        except Empty:
            if not proc.is_alive():
                raise RuntimeError(f"{target.__name__} exited with {proc.exitcode} and no result") from None
    proc.join()
    return result


def main() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with tempfile.TemporaryDirectory(prefix="mlops-bench-validation-") as tmp:
        path = os.path.join(tmp, "data.parquet")
        in_fresh_process_write(path)
        size_mb = os.path.getsize(path) / 1e6
        bare_summary = in_fresh_process(bare_gx, path, "SUMMARY")
        bare_basic = in_fresh_process(bare_gx, path, "BASIC")
        mine = in_fresh_process(ours, path, os.path.join(tmp, "reports"))
    assert bare_summary["success"] == mine["success"] is False, (bare_summary, mine)
    emit(
        {
            "validation_rows": ROWS,
            "validation_columns": N_NUM + N_INT + N_STR,
            "validation_expectations": 60,
            "validation_parquet_mb": round(size_mb, 1),
            "validation_bare_gx_summary_s": round(bare_summary["seconds"], 3),
            "validation_bare_gx_basic_s": round(bare_basic["seconds"], 3),
            "validation_ours_s": round(mine["seconds"], 3),
            "validation_ratio_vs_bare_gx_default": round(mine["seconds"] / bare_summary["seconds"], 3),
            "validation_ratio_vs_bare_gx_basic": round(mine["seconds"] / bare_basic["seconds"], 3),
            # CPU time of the same runs: steadier than wall time on a shared machine
            "validation_bare_gx_basic_cpu_s": round(bare_basic["cpu_s"], 3),
            "validation_ours_cpu_s": round(mine["cpu_s"], 3),
            "validation_cpu_ratio_vs_bare_gx_basic": round(mine["cpu_s"] / bare_basic["cpu_s"], 3),
            "validation_bare_gx_peak_rss_mb": round(bare_basic["peak_rss_mb"], 1),
            "validation_ours_peak_rss_mb": round(mine["peak_rss_mb"], 1),
        }
    )


def _write(path: str, queue: Any) -> None:
    write_data(path)
    queue.put({})


def in_fresh_process_write(path: str) -> None:
    in_fresh_process(_write, path)


if __name__ == "__main__":
    main()
